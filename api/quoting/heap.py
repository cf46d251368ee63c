"""Keeping a serving process's long-lived objects out of the cyclic collector's passes.

A service's rendered quotes are hundreds of thousands of long-lived objects that every full pass of the
collector walked again (11% of a worker's CPU at 32 connections, py-spy). Once a state is rendered and swapped
in, they are frozen (`gc.freeze()`): later passes skip them, and reference counting still frees them when a later
state replaces them, because a state holds no reference cycle (`tests/test_quoting_reload.py` checks that a
replaced state is freed with the collector disabled).

What is frozen is never examined again, so garbage caught in a cycle there would stay. Handing every frozen
object back to the collector for one full pass at each swap (`gc.unfreeze(); gc.collect()`) reclaimed it, but
held the GIL for 0.3-0.4 s per worker on a 20,000-firm region: the quotes' maximum latency while a new batch was
absorbed. So a swap only collects the young generations and freezes; the full pass runs when the frozen
objects have grown beyond `growth` times those the last full pass kept (something frozen is not being freed),
and on the first settle, before which nothing is frozen.
"""

from __future__ import annotations

import gc
import logging
import threading
import time

log = logging.getLogger(__name__)


class HeapSettler:
    def __init__(self, growth: float = 2.0) -> None:
        if growth <= 1.0:
            raise ValueError("growth must be above 1")
        self.growth = growth
        self.kept = 0  # objects frozen after the last full pass (0: none yet)
        self._lock = threading.Lock()

    def settle(self) -> bool:
        """Freeze what a swapped-in state left; returns whether that took a full pass."""
        started = time.perf_counter()
        with self._lock:
            full = self.kept == 0 or gc.get_freeze_count() > self.growth * self.kept
            if full:
                gc.unfreeze()
                gc.collect()
                gc.freeze()
                self.kept = gc.get_freeze_count()
            else:
                gc.collect(1)  # young garbage cycles, before they are frozen with the rest
                gc.freeze()
        log.info("heap settled in %.3f s (%s): %d objects frozen", time.perf_counter() - started,
                 "full pass" if full else "young generations", gc.get_freeze_count())
        return full


SETTLER = HeapSettler()  # one per process: the collector's generations are the process's


def settle_heap() -> bool:
    """Once a state's quotes are rendered and swapped in (see the module's text)."""
    return SETTLER.settle()
