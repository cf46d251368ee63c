"""State the worker processes of one service share: token buckets (rate limits), the key-revocation epoch and
when a quote write last failed or succeeded (for /readyz).

Both live in files under the runtime directory (setting `runtime_dir`; by default a folder of the system's
temporary directory named after the database URL, so every worker of one service, and the `indexloan keys`
command run on the same machine, find the same files; for a SQLite store, a hidden folder beside its
file). No Redis or other server is needed.

`SharedBuckets` is a fixed table of token buckets in one file (`BUCKET_SLOTS` slots of 32 bytes, fully
allocated at creation), read and written with pread/pwrite under an exclusive `flock`: a check is a few
system calls (~10 us), and the table never grows, however many keys or addresses are seen (a full
neighbourhood evicts its least recently used bucket). Files are read and written, never memory-mapped:
a failed write is an error, never a SIGBUS. If the files cannot be used (a full or read-only disk), limits
are not enforced (logged once) rather than refusing every request.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import struct
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from api.http import logs
from features.settings import get_settings

BUCKET_SLOTS = 4096
PROBE = 8  # slots looked at per key
_SLOT = struct.Struct("<16sdd")  # key digest, tokens, last update (CLOCK_MONOTONIC: one clock for all processes)
_EMPTY = b"\0" * 16

LIMITS_DOWN = logs.OutageLog("the shared rate-limit files", interval=300.0)


def runtime_dir(database_url: str) -> Path:
    """The directory the processes serving (or administering) `database_url` share on this machine."""
    configured = get_settings().runtime_dir
    url = sa.make_url(database_url)
    if configured is not None:
        path = Path(configured)
    elif url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        database = Path(url.database).resolve()  # the same file from any directory
        path = database.parent / f".{database.name}.runtime"
    else:
        digest = hashlib.sha256(url.render_as_string(hide_password=True).encode("utf-8")).hexdigest()[:16]
        path = Path(tempfile.gettempdir()) / f"indexloan-{os.getuid()}-{digest}"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def _open(path: Path, size: int) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if os.fstat(fd).st_size < size:
            with _locked(fd):
                if os.fstat(fd).st_size < size:
                    os.posix_fallocate(fd, 0, size)  # blocks allocated now: later writes need no new space
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def _locked(fd: int):  # type: ignore[no-untyped-def]
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


class SharedBuckets:
    """Token buckets shared by processes through one file."""

    def __init__(self, path: Path, slots: int = BUCKET_SLOTS) -> None:
        self.path = path
        self.slots = slots
        self._fd: int | None = None

    def _file(self) -> int:
        if self._fd is None:
            self._fd = _open(self.path, self.slots * _SLOT.size)
        return self._fd

    def take(self, key: str, rate: float, burst: float, cost: float = 1.0) -> float:
        """Take `cost` tokens from `key`'s bucket (`rate` tokens per second, at most `burst`): 0.0 when
        taken, else the seconds until they would be there (nothing taken). cost=0 only looks."""
        digest = hashlib.blake2b(key.encode("utf-8"), digest_size=16).digest()
        start = int.from_bytes(digest[:8], "little") % (self.slots - PROBE)
        offset = start * _SLOT.size
        try:
            fd = self._file()
            with _locked(fd):
                now = time.monotonic()
                window = os.pread(fd, PROBE * _SLOT.size, offset)
                found = None
                oldest, oldest_at = 0, float("inf")
                for i in range(PROBE):
                    slot_key, tokens, updated = _SLOT.unpack_from(window, i * _SLOT.size)
                    if slot_key == digest:
                        found = i
                        break
                    if slot_key == _EMPTY:
                        updated = -1.0  # free: used before evicting anything
                    if updated < oldest_at:
                        oldest, oldest_at = i, updated
                if found is None:
                    found, tokens = oldest, float(burst)
                else:
                    tokens = min(float(burst), tokens + (now - updated) * rate)
                need = cost if cost else 1.0  # a look needs one token there
                if tokens < need:
                    wait = (need - tokens) / rate
                    if cost:
                        os.pwrite(fd, _SLOT.pack(digest, tokens, now), offset + found * _SLOT.size)
                    return max(wait, 0.001)
                if cost:
                    os.pwrite(fd, _SLOT.pack(digest, tokens - cost, now), offset + found * _SLOT.size)
                return 0.0
        except OSError as error:
            LIMITS_DOWN.failure(error)
            return 0.0

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Epoch:
    """A counter in a file: bumped when a key is revoked, read on each request (one pread) so that every
    worker drops its cached keys at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def _file(self) -> int:
        if self._fd is None:
            self._fd = _open(self.path, 8)
        return self._fd

    def read(self) -> int:
        try:
            return int.from_bytes(os.pread(self._file(), 8, 0), "little")
        except OSError as error:
            LIMITS_DOWN.failure(error)
            return -1  # unknown: callers then do not trust their caches

    def bump(self) -> None:
        fd = self._file()
        with _locked(fd):
            value = int.from_bytes(os.pread(fd, 8, 0), "little") + 1
            os.pwrite(fd, value.to_bytes(8, "little"), 0)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class WriteRecord:
    """When a quote write last failed and last succeeded, in any worker (two doubles, CLOCK_MONOTONIC), so that
    every worker's /readyz tells the same story. A success costs one pread (and a pwrite only after a failure)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def _file(self) -> int:
        if self._fd is None:
            self._fd = _open(self.path, 16)
        return self._fd

    def _read(self, fd: int) -> tuple[float, float]:
        return struct.unpack("<dd", os.pread(fd, 16, 0))

    def failed(self) -> None:
        try:
            fd = self._file()
            with _locked(fd):
                ok, _ = self._read(fd)
                os.pwrite(fd, struct.pack("<dd", ok, time.monotonic()), 0)
        except OSError as error:
            LIMITS_DOWN.failure(error)

    def succeeded(self) -> None:
        try:
            fd = self._file()
            ok, failed = self._read(fd)
            if failed > ok:
                with _locked(fd):
                    _, failed = self._read(fd)
                    os.pwrite(fd, struct.pack("<dd", time.monotonic(), failed), 0)
        except OSError as error:
            LIMITS_DOWN.failure(error)

    def failing_since(self) -> float | None:
        """When the last failure happened, if no write has succeeded since (monotonic seconds), else None."""
        try:
            ok, failed = self._read(self._file())
        except OSError as error:
            LIMITS_DOWN.failure(error)
            return None
        return failed if failed > ok else None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Limits:
    """The service's limits, from settings: per key, per address, failed authentications per address."""

    def __init__(self, directory: Path) -> None:
        settings = get_settings()
        self.buckets = SharedBuckets(directory / "rate-buckets")
        self.key_epoch = Epoch(directory / "keys-epoch")
        self.writes = WriteRecord(directory / "write-outcomes")
        self.key_rate, self.key_burst = settings.rate_limit_key_per_second, settings.rate_limit_key_burst
        self.address_rate = settings.rate_limit_address_per_second
        self.address_burst = settings.rate_limit_address_burst
        self.auth_rate, self.auth_burst = settings.auth_failures_per_minute / 60.0, settings.auth_failures_burst

    def address(self, address: str) -> float:
        return self.buckets.take(f"a:{address}", self.address_rate, self.address_burst)

    def key(self, token: str) -> float:
        return self.buckets.take("k:" + hashlib.sha256(token.encode("utf-8")).hexdigest(), self.key_rate,
                                 self.key_burst)

    def auth_blocked(self, address: str) -> float:
        """Seconds this address must wait before another key look-up (0.0: it may look one up)."""
        return self.buckets.take(f"f:{address}", self.auth_rate, self.auth_burst, cost=0.0)

    def auth_failed(self, address: str) -> None:
        self.buckets.take(f"f:{address}", self.auth_rate, self.auth_burst)

    def close(self) -> None:
        self.buckets.close()
        self.key_epoch.close()
        self.writes.close()


def bump_key_epoch(database_url: str) -> None:
    """Tell every process serving `database_url` on this machine to forget its cached keys (a revocation)."""
    epoch = Epoch(runtime_dir(database_url) / "keys-epoch")
    try:
        epoch.bump()
    finally:
        epoch.close()
