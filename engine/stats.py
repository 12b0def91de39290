"""Engine counters and latency histograms in shared memory, readable by ``hugering stat``.

Each ring gets a companion *stats region*, ``/dev/shm/hugering-stats.NAME`` (tmpfs: it is
small, and a counter page must never take a huge page away from the rings), with one block
per consumer line of the ring: block ``k`` belongs to whichever engine consumer holds the
ring's consumer line ``k``, so ``hugering stat`` can join the ring's own per-line counters
(delivered, lost, rejoins) with the engine's (filtered out, handled, handler errors) and the
latency histogram.  The producer's counters stay in the ring's header (``shm.layout``).

Layout (little-endian; one table per region, as for the ring; ``python -m engine.stats
--doc`` prints it)::

    header      0                 STATS_HEADER_FIELDS (128 bytes)
    block[k]    blocks_offset + k * block_bytes
        counters  +0               COUNTER_FIELDS (128 bytes: written by the consumer only)
        control   +128             CONTROL_FIELDS (64 bytes: written by others -- stop
                                   requests -- so they never share a line with the counters)
        histogram +192             HIST_BUCKETS u64 counts (written by the consumer only)

Writers: one consumer per block (plain stores of its own counters, once per burst); readers
(stat, the supervisor) load them without locks and may see a burst's counters half updated
-- a snapshot is consistent once the consumer has stopped, which is when tests compare.

Latency histogram (HdrHistogram's log-linear scheme): values below ``2**(SUB_BITS + 1)`` ns
have a bucket each (1 ns resolution); above, each power-of-two range ``[2**e, 2**(e+1))`` is
split into ``2**SUB_BITS`` equal buckets, so a bucket's width is at most ``2**-SUB_BITS`` of
its lower bound: percentiles carry a relative error of at most ``REL_ERROR`` (0.78 % with
SUB_BITS = 7).  Values at or above ``2**MAX_EXP`` ns (about 18 minutes) land in the last
bucket.  Fixed memory: ``HIST_BUCKETS`` u64 per consumer (34 KiB).  Recording is an index
computation and one increment: no allocation, no branch on the data beyond the two ranges.
"""
from __future__ import annotations

import fcntl
import mmap
import os
import sys

import numpy as np
from numba import njit

from shm import layout as L
from shm.atomics import load_relaxed, store_relaxed

STATS_DIR = "/dev/shm"
STATS_PREFIX = "hugering-stats."   # not "hugering.": ``ring ls`` must not take it for a ring
STATS_MAGIC = 0x3153544152475548   # b"HUGRATS1" read as a little-endian u64
STATS_VERSION = 1

SUB_BITS = 7
MAX_EXP = 40
LINEAR = 1 << (SUB_BITS + 1)                   # 256 exact buckets: 0 .. 255 ns
HIST_BUCKETS = LINEAR + (MAX_EXP - SUB_BITS - 1) * (1 << SUB_BITS)
REL_ERROR = 2.0 ** -SUB_BITS

STATS_HEADER_FIELDS = [
    ("magic", 0, "u8", '0x3153544152475548, "HUGRATS1" in ASCII'),
    ("version", 8, "u4", "bumped on any change to these tables"),
    ("max_consumers", 12, "u4", "blocks (the ring's consumer lines)"),
    ("sub_bits", 16, "u4", "histogram: log2 of the buckets per power of two"),
    ("max_exp", 20, "u4", "histogram: values >= 2**max_exp ns go to the last bucket"),
    ("buckets", 24, "u4", "histogram buckets per block"),
    ("block_bytes", 32, "i8", "bytes per block"),
    ("blocks_offset", 40, "i8", "byte offset of block 0"),
    ("file_size", 48, "i8", "total bytes"),
    ("ring_created_ns", 56, "i8", "the ring's created_ns: a recreated ring resets its stats"),
]
STATS_HEADER_BYTES = 128

COUNTER_FIELDS = [
    ("received", 0, "i8", "packets taken from the ring (before the filter)"),
    ("filtered_out", 8, "i8", "packets the filter rejected"),
    ("handled", 16, "i8", "packets the handler processed without error"),
    ("handler_errors", 24, "i8", "packets of bursts whose handler raised or reported failure"),
    ("lost", 32, "i8", "sequence numbers lost: lapped (lossy) or missed while evicted"),
    ("bursts", 40, "i8", "non-empty bursts"),
    ("idle_polls", 48, "i8", "empty polls"),
    ("lat_count", 56, "i8", "latency samples (one per handled packet)"),
    ("lat_sum_ns", 64, "i8", "sum of the samples (mean = sum / count)"),
    ("lat_max_ns", 72, "i8", "largest sample"),
    ("lat_min_ns", 80, "i8", "smallest sample (0 before the first)"),
    ("last_seq", 88, "i8", "sequence number of the last packet taken (-1 none)"),
    ("pid", 96, "i8", "pid of the consumer process (0 none)"),
    ("state", 104, "i8", "0 free, 1 starting, 2 running, 3 stopped"),
    ("started_ns", 112, "i8", "CLOCK_REALTIME when the loop started"),
    ("updated_ns", 120, "i8", "CLOCK_REALTIME of the last counter update"),
]
COUNTERS_BYTES = 128
CONTROL_FIELDS = [
    ("stop", 0, "i8", "non-zero: the consumer stops at its next poll (cooperative)"),
    ("cpu", 8, "i8", "cpu the poll loop is pinned to (-1 not pinned)"),
    ("name", 16, "S32", "consumer name (ASCII, NUL padded)"),
]
CONTROL_OFFSET = COUNTERS_BYTES
CONTROL_BYTES = 64
HIST_OFFSET = CONTROL_OFFSET + CONTROL_BYTES
BLOCK_BYTES = L.round_up(HIST_OFFSET + 8 * HIST_BUCKETS, L.LINE)

STATE_FREE, STATE_STARTING, STATE_RUNNING, STATE_STOPPED = 0, 1, 2, 3
STATE_NAMES = {STATE_FREE: "free", STATE_STARTING: "starting", STATE_RUNNING: "running",
               STATE_STOPPED: "stopped"}

REGIONS = [
    ("header", "0", STATS_HEADER_FIELDS, STATS_HEADER_BYTES, ""),
    ("counters[k]", "128 + k*block_bytes", COUNTER_FIELDS, COUNTERS_BYTES,
     "written by consumer k only"),
    ("control[k]", "256 + k*block_bytes", CONTROL_FIELDS, CONTROL_BYTES,
     "written by stat / the supervisor"),
    ("histogram[k]", "320 + k*block_bytes", [], 8 * HIST_BUCKETS, f"{HIST_BUCKETS} u64 counts"),
]


def _dtype(fields, itemsize):
    return np.dtype({"names": [f[0] for f in fields],
                     "formats": [("<" + f[2]) if f[2][0] != "S" else f[2] for f in fields],
                     "offsets": [f[1] for f in fields], "itemsize": itemsize})


STATS_HEADER_DTYPE = _dtype(STATS_HEADER_FIELDS, STATS_HEADER_BYTES)
COUNTER_DTYPE = _dtype(COUNTER_FIELDS, COUNTERS_BYTES)
CONTROL_DTYPE = _dtype(CONTROL_FIELDS, CONTROL_BYTES)


def _w(fields, name):
    return L._word(0, fields, name)     # the ring layout's rule: 8-byte fields only


# word indices into a block's counters (int64 view of the block) -- Numba constants
W_RECEIVED = _w(COUNTER_FIELDS, "received")
W_FILTERED = _w(COUNTER_FIELDS, "filtered_out")
W_HANDLED = _w(COUNTER_FIELDS, "handled")
W_ERRORS = _w(COUNTER_FIELDS, "handler_errors")
W_LOST = _w(COUNTER_FIELDS, "lost")
W_BURSTS = _w(COUNTER_FIELDS, "bursts")
W_IDLE = _w(COUNTER_FIELDS, "idle_polls")
W_LAT_COUNT = _w(COUNTER_FIELDS, "lat_count")
W_LAT_SUM = _w(COUNTER_FIELDS, "lat_sum_ns")
W_LAT_MAX = _w(COUNTER_FIELDS, "lat_max_ns")
W_LAT_MIN = _w(COUNTER_FIELDS, "lat_min_ns")
W_LAST_SEQ = _w(COUNTER_FIELDS, "last_seq")
W_PID = _w(COUNTER_FIELDS, "pid")
W_STATE = _w(COUNTER_FIELDS, "state")
W_STARTED = _w(COUNTER_FIELDS, "started_ns")
W_UPDATED = _w(COUNTER_FIELDS, "updated_ns")
W_STOP = (CONTROL_OFFSET // 8) + _w(CONTROL_FIELDS, "stop")
W_CPU = (CONTROL_OFFSET // 8) + _w(CONTROL_FIELDS, "cpu")
W_HIST = HIST_OFFSET // 8
COUNTER_WORDS = COUNTERS_BYTES // 8


def doc() -> str:
    """The layout tables as text (the module docstring's table, expanded)."""
    out = []
    for name, where, fields, size, note in REGIONS:
        out.append(f"{name} @ {where} ({size} bytes){': ' + note if note else ''}")
        for f, off, typ, what in fields:
            out.append(f"    +{off:<4d} {typ:<4s} {f:<16s} {what}")
    return "\n".join(out)


# --- the histogram kernels ----------------------------------------------------------------
@njit(cache=True, nogil=True)
def hist_index(v):
    """Bucket of value ``v`` (ns; negative counts as 0)."""
    if v < LINEAR:
        return v if v > 0 else 0
    e = 63 - _clz64(v)                            # floor(log2 v) >= SUB_BITS + 1
    if e >= MAX_EXP:
        return HIST_BUCKETS - 1
    return LINEAR + (e - SUB_BITS - 1) * (1 << SUB_BITS) + ((v >> (e - SUB_BITS)) - (1 << SUB_BITS))


@njit(cache=True, nogil=True)
def _clz64(v):
    # a binary search: Numba has no portable count-leading-zeros for int64 here, and this runs
    # only for values >= 256 (5-6 compare-and-shift steps)
    n = 0
    if v >> 32 == 0:
        n += 32
        v <<= 32
    if v >> 48 == 0:
        n += 16
        v <<= 16
    if v >> 56 == 0:
        n += 8
        v <<= 8
    if v >> 60 == 0:
        n += 4
        v <<= 4
    if v >> 62 == 0:
        n += 2
        v <<= 2
    if v >> 63 == 0:
        n += 1
    return n


@njit(cache=True, nogil=True)
def hist_lowest(i):
    """Smallest value that lands in bucket ``i``."""
    if i < LINEAR:
        return i
    j = i - LINEAR
    e = j // (1 << SUB_BITS) + SUB_BITS + 1
    return ((1 << SUB_BITS) + j % (1 << SUB_BITS)) << (e - SUB_BITS)


@njit(cache=True, nogil=True)
def hist_highest(i):
    """Largest value that lands in bucket ``i`` (the last bucket: 2**63 - 1)."""
    if i >= HIST_BUCKETS - 1:
        return (1 << 63) - 1
    return hist_lowest(i + 1) - 1


@njit(cache=True, nogil=True)
def record_latencies(block, lat_min, lat_max, lat_sum, n_samples):
    """Fold a burst's latency summary into the block's counters (the histogram buckets were
    incremented by ``record_one`` per sample)."""
    if n_samples <= 0:
        return
    store_relaxed(block, W_LAT_COUNT, block[W_LAT_COUNT] + n_samples)
    store_relaxed(block, W_LAT_SUM, block[W_LAT_SUM] + lat_sum)
    if lat_max > block[W_LAT_MAX]:
        store_relaxed(block, W_LAT_MAX, lat_max)
    cur_min = block[W_LAT_MIN]
    if cur_min == 0 or lat_min < cur_min:
        store_relaxed(block, W_LAT_MIN, lat_min if lat_min > 0 else 1)


@njit(cache=True, nogil=True, inline="always")
def record_one(block, v):
    """One latency sample into the block's histogram (single writer: a plain increment)."""
    i = W_HIST + hist_index(v)
    block[i] = block[i] + 1


@njit(cache=True, nogil=True)
def stop_requested(block):
    return load_relaxed(block, W_STOP) != 0


# --- Python side: percentiles and the region ----------------------------------------------
def bucket_bounds() -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(HIST_BUCKETS)
    lo = np.array([hist_lowest(int(i)) for i in idx], dtype=np.int64)
    hi = np.empty_like(lo)
    hi[:-1] = lo[1:] - 1
    hi[-1] = np.iinfo(np.int64).max
    return lo, hi


_BOUNDS: tuple[np.ndarray, np.ndarray] | None = None


def percentiles(hist: np.ndarray, qs=(50, 90, 99, 99.9, 99.99), max_value: int | None = None
                ) -> dict[str, int | None]:
    """Percentiles (ns) of a histogram: the value of the sample of rank ``ceil(q/100 * n)``,
    reported as its bucket's highest value (HdrHistogram's convention, so a percentile never
    under-reports) capped at ``max_value`` (the exact maximum when known).  Within
    ``REL_ERROR`` of the exact sample above the linear range, exact below it."""
    global _BOUNDS
    if _BOUNDS is None:
        _BOUNDS = bucket_bounds()
    hist = np.asarray(hist, dtype=np.int64)
    total = int(hist.sum())
    out: dict[str, int | None] = {}
    if total == 0:
        return {_qname(q): None for q in qs}
    cum = np.cumsum(hist)
    for q in qs:
        rank = max(1, int(np.ceil(q / 100.0 * total - 1e-9)))
        i = int(np.searchsorted(cum, rank))
        v = int(_BOUNDS[1][i])
        if max_value is not None and v > max_value:
            v = int(max_value)
        out[_qname(q)] = v
    return out


def _qname(q) -> str:
    return "p" + (f"{q:g}".replace(".", "_") if q != int(q) else str(int(q)))


def stats_path(ring_name: str) -> str:
    return os.path.join(STATS_DIR, STATS_PREFIX + ring_name)


def file_size(max_consumers: int) -> int:
    return L.round_up(STATS_HEADER_BYTES, L.LINE) + max_consumers * BLOCK_BYTES


class StatsRegion:
    """The stats region of one ring (setup only; the loop gets ``block(k)``, an int64 array)."""

    def __init__(self, path: str, mm: mmap.mmap):
        self.path = path
        self._mm = mm
        self.words = np.frombuffer(mm, dtype=np.int64)
        self.header = np.frombuffer(mm, dtype=STATS_HEADER_DTYPE, count=1)[0]
        self.max_consumers = int(self.header["max_consumers"])

    @classmethod
    def attach(cls, ring) -> "StatsRegion":
        """Open the ring's stats region, creating (or resetting, when it belongs to an older
        ring of the same name or an older layout) as needed.

        Safe to race.  The file is built under a temporary name and renamed into place (no
        reader sees half a header), and the whole open-or-build runs under an exclusive flock
        on the ring's own file, held for those few milliseconds only.  Without the lock, two
        consumers starting together on a fresh ring each built a region and the second's
        rename orphaned the first's: that consumer went on counting into an unlinked file,
        which ``hugering stat`` and stop requests never reach (the market demo's strategy
        that never stopped)."""
        fd = ring.backing.fd
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            return cls._open_or_build(ring)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    @classmethod
    def _open_or_build(cls, ring) -> "StatsRegion":
        path = stats_path(ring.name)
        created = int(ring.header["created_ns"])
        want = file_size(ring.max_consumers)
        for _ in range(3):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                cls._build(path, ring, want, created)
                continue
            try:
                st = os.fstat(fd)
                if st.st_size == want:
                    mm = mmap.mmap(fd, want)
                    h = np.frombuffer(mm, dtype=STATS_HEADER_DTYPE, count=1)[0]
                    if (int(h["magic"]) == STATS_MAGIC and int(h["version"]) == STATS_VERSION
                            and int(h["ring_created_ns"]) == created
                            and int(h["buckets"]) == HIST_BUCKETS
                            and int(h["max_consumers"]) == ring.max_consumers):
                        del h
                        return cls(path, mm)
                    del h
                    mm.close()
            finally:
                os.close(fd)
            cls._build(path, ring, want, created)          # stale: replace it
        raise OSError(f"cannot attach the stats region {path}")

    @staticmethod
    def _build(path, ring, size, created) -> None:
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        try:
            os.fchmod(fd, os.stat(ring.backing.path).st_mode & 0o666
                      if os.path.exists(ring.backing.path) else 0o666)
            os.ftruncate(fd, size)
            try:
                # reserve the pages now: on a full /dev/shm the header write below would
                # otherwise die of SIGBUS instead of raising
                os.posix_fallocate(fd, 0, size)
            except OSError as e:
                raise OSError(e.errno, f"cannot create the stats region {path} "
                                       f"({size} bytes): {e.strerror}; free space in "
                                       f"{STATS_DIR}") from None
            with mmap.mmap(fd, size) as mm:
                h = np.frombuffer(mm, dtype=STATS_HEADER_DTYPE, count=1)
                h["version"] = STATS_VERSION
                h["max_consumers"] = ring.max_consumers
                h["sub_bits"] = SUB_BITS
                h["max_exp"] = MAX_EXP
                h["buckets"] = HIST_BUCKETS
                h["block_bytes"] = BLOCK_BYTES
                h["blocks_offset"] = L.round_up(STATS_HEADER_BYTES, L.LINE)
                h["file_size"] = size
                h["ring_created_ns"] = created
                h["magic"] = STATS_MAGIC                  # last: marks the header complete
                del h
            os.rename(tmp, path)
        finally:
            os.close(fd)
            if os.path.exists(tmp):
                os.unlink(tmp)

    @classmethod
    def open_existing(cls, ring) -> "StatsRegion | None":
        """The region if it exists and belongs to this ring (read side: never creates)."""
        path = stats_path(ring.name)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except (FileNotFoundError, PermissionError):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return None
            writable = False
        else:
            writable = True
        try:
            size = os.fstat(fd).st_size
            if size != file_size(ring.max_consumers):
                return None
            mm = mmap.mmap(fd, size, prot=mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0))
        finally:
            os.close(fd)
        h = np.frombuffer(mm, dtype=STATS_HEADER_DTYPE, count=1)[0]
        ok = (int(h["magic"]) == STATS_MAGIC and int(h["version"]) == STATS_VERSION
              and int(h["ring_created_ns"]) == int(ring.header["created_ns"]))
        del h
        if not ok:
            mm.close()
            return None
        return cls(path, mm)

    def block(self, k: int) -> np.ndarray:
        """Block ``k`` as an int64 array (counters, control, histogram)."""
        if not 0 <= k < self.max_consumers:
            raise IndexError(f"consumer line {k} out of range (max_consumers "
                             f"{self.max_consumers})")
        off = int(self.header["blocks_offset"]) + k * BLOCK_BYTES
        return self.words[off // 8:(off + BLOCK_BYTES) // 8]

    def reset_block(self, k: int, pid: int, name: str, cpu: int | None) -> np.ndarray:
        """A new consumer took line ``k``: zero its block and label it."""
        b = self.block(k)
        b[:] = 0
        b[W_LAST_SEQ] = -1
        b[W_PID] = pid
        b[W_CPU] = -1 if cpu is None else cpu
        off = int(self.header["blocks_offset"]) + k * BLOCK_BYTES + CONTROL_OFFSET
        ctl = np.frombuffer(self._mm, dtype=CONTROL_DTYPE, count=1, offset=off)
        ctl["name"] = name.encode("ascii", "replace")[:32]
        b[W_STATE] = STATE_STARTING
        return b

    def request_stop(self, k: int | None = None) -> None:
        """Ask consumer ``k`` (all when None) to stop at its next poll."""
        for i in (range(self.max_consumers) if k is None else [k]):
            self.block(i)[W_STOP] = 1

    def snapshot(self, k: int) -> dict:
        """Block ``k``'s counters, name, percentiles (see ``percentiles``)."""
        b = self.block(k).copy()
        c = b[:COUNTER_WORDS].view(COUNTER_DTYPE)[0]
        off = int(self.header["blocks_offset"]) + k * BLOCK_BYTES + CONTROL_OFFSET
        ctl = np.frombuffer(self._mm, dtype=CONTROL_DTYPE, count=1, offset=off)[0]
        d = {f[0]: int(c[f[0]]) for f in COUNTER_FIELDS}
        d["state"] = STATE_NAMES.get(d["state"], str(d["state"]))
        d["name"] = bytes(ctl["name"]).rstrip(b"\0").decode("ascii", "replace")
        d["cpu"] = int(b[W_CPU])
        d["stop_requested"] = bool(b[W_STOP])
        hist = b[W_HIST:W_HIST + HIST_BUCKETS]
        d["latency_ns"] = {
            "count": d["lat_count"],
            "mean": (d["lat_sum_ns"] / d["lat_count"]) if d["lat_count"] else None,
            "min": d["lat_min_ns"] if d["lat_count"] else None,
            "max": d["lat_max_ns"] if d["lat_count"] else None,
            **percentiles(hist, max_value=d["lat_max_ns"] if d["lat_count"] else None),
            "relative_error": REL_ERROR,
        }
        return d

    def histogram(self, k: int) -> np.ndarray:
        return self.block(k)[W_HIST:W_HIST + HIST_BUCKETS].copy()

    def close(self) -> None:
        self.words = None
        self.header = None
        try:
            self._mm.close()
        except BufferError:           # an array still views it; the mapping goes with it
            pass


def remove(ring_name: str) -> None:
    try:
        os.unlink(stats_path(ring_name))
    except FileNotFoundError:
        pass


if __name__ == "__main__":
    if "--doc" in sys.argv:
        print(doc())
