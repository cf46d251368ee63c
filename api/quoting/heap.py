"""Keeping a serving process's long-lived objects out of the cyclic collector's passes.

A service's rendered quotes are hundreds of thousands of long-lived objects that every full pass of the
collector walked again (11% of a worker's CPU at 32 connections, py-spy). Once a state is rendered and swapped
in, they are frozen (`gc.freeze()`): later passes skip them, and reference counting still frees them when a later
state replaces them, because a state holds no reference cycle (`tests/test_quoting_reload.py` checks that a
replaced state is freed with the collector disabled).

What is frozen is never examined again, so garbage caught in a cycle there would stay. Handing every frozen
object back to the collector for one full pass at each swap (`gc.unfreeze(); gc.collect()`) reclaimed it, but
held the GIL for 0.3-0.6 s per worker on a 20,000-firm region: the quotes' maximum latency while a new batch was
absorbed. So a swap only collects the young generations and freezes; the full pass runs on the first settle
(before which nothing is frozen) and when the process's resident memory has grown beyond `growth` times what it
was after the last full pass (something frozen is not being freed). Memory, not `gc.get_freeze_count()`: that
count walks every frozen object with the GIL held (~50 ms at 540,000 objects, py-spy).
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


def resident_bytes() -> int | None:
    """The process's resident memory (Linux's /proc), or None where it cannot be read."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class HeapSettler:
    def __init__(self, growth: float = 2.0, measure: Callable[[], int | None] = resident_bytes) -> None:
        if growth <= 1.0:
            raise ValueError("growth must be above 1")
        self.growth = growth
        self.measure = measure
        self.kept: int | None = None  # resident bytes after the last full pass (None: none yet)
        self._lock = threading.Lock()

    def settle(self) -> bool:
        """Freeze what a swapped-in state left; returns whether that took a full pass."""
        started = time.perf_counter()
        with self._lock:
            size = self.measure()
            full = self.kept is None or (size is not None and size > self.growth * self.kept)
            if full:
                gc.unfreeze()
                gc.collect()
                gc.freeze()
                self.kept = self.measure() or 0
            else:
                gc.collect(1)  # young garbage cycles, before they are frozen with the rest
                gc.freeze()
        log.info("heap settled in %.3f s (%s); resident %.0f MB", time.perf_counter() - started,
                 "full pass" if full else "young generations", (size or 0) / 1e6)
        return full


SETTLER = HeapSettler()  # one per process: the collector's generations are the process's


def settle_heap() -> bool:
    """Once a state's quotes are rendered and swapped in (see the module's text)."""
    return SETTLER.settle()
