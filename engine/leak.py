"""Leak monitor: slots and source buffers outstanding, and an alarm when they grow without bound.

The seed's scenario B: a pool of packet buffers in hugepage memory is never garbage collected,
so a path that takes buffers and forgets to return them leaks silently until the pool is empty
and the source starts dropping.  The cure is accounting plus a watchdog that looks at it (DPDK's
mempool audit and its tests' "in use returns to the baseline" checks, Aeron's loss reports).
Two quantities are watched, read from any process that maps the ring (nothing is written):

* **slots outstanding**: the producer's cursor minus the slowest active consumer's cursor, i.e.
  slots published and not yet released (bounded by the capacity).  In a lossy ring the producer
  never waits and the value is the slowest consumer's lag, capped at the capacity.
* **pool in use**: ``source_stats.pool_in_use`` of ``pool_size`` (``shm.layout``), which the
  producer refreshes about once a second: AF_XDP UMEM frames the kernel cannot fill (in the RX
  ring, being copied, on the TX path), DPDK mempool elements not in the pool.  Ignored while the
  source reports no pool (``pool_size`` 0 or ``src_stats_ns`` 0).

The rule, per quantity, with ``size`` the capacity or the pool size, over the last ``window``
samples taken every ``interval_s`` (defaults: 10 samples, 1 s):

1. **growing** -- the window is full, the value never decreased from one sample to the next,
   it rose by at least ``max(1, min_rise * size)`` from the first sample to the last (default
   1 %), and the last value is above the floor ``floor * size`` (default 0.5); or
2. **exhausted** -- the window is full and every sample in it is at ``size`` or more.

Either raises the alarm, which then stays raised (latched) until the value falls back below
the floor: a pool that leaked down to empty stays in alarm; one that drained recovers.  Below
the floor nothing alarms, however steady the rise (a ring filling to a quarter is a burst, not a
leak).  "Never decreased" is strict: a leak whose sample-to-sample noise is larger than what it
leaks per interval is only caught once the pool is exhausted (rule 2) -- lengthen the interval
for slow leaks.  What the alarm cannot tell apart: a consumer that never releases, and one that has
stopped keeping up -- in a lossless ring both end in a full ring and a stalled producer, which
is what it is there to say (a dead or stalled consumer is evicted after the ring's
``consumer_timeout``, and the count falls back).

Use::

    mon = LeakMonitor(ring)            # or LeakMonitor(ring, interval_s=0.1, window=5)
    mon.start()                        # background thread, one sample per interval
    ...
    mon.report()["alarm"]              # True while either quantity is in alarm
    mon.stop()

``sample()`` takes one sample now (what ``hugering stat`` calls at each refresh; its ``--json``
snapshots carry ``report()`` under ``"leak"``).  ``verdict`` is the rule alone, on a list of
values, for tests and other callers.
"""
from __future__ import annotations

import threading
import time
from collections import deque

from shm import layout as L

DEFAULT_INTERVAL_S = 1.0
DEFAULT_WINDOW = 10
DEFAULT_FLOOR = 0.5
DEFAULT_MIN_RISE = 0.01


def verdict(values, size: int, floor: float = DEFAULT_FLOOR,
            min_rise: float = DEFAULT_MIN_RISE) -> str | None:
    """The rule on a full window of samples (oldest first): "growing", "exhausted" or None."""
    vals = list(values)
    if len(vals) < 2 or size <= 0:
        return None
    if all(v >= size for v in vals):
        return "exhausted"
    rises = all(b >= a for a, b in zip(vals, vals[1:]))
    if rises and vals[-1] - vals[0] >= max(1, min_rise * size) and vals[-1] > floor * size:
        return "growing"
    return None


class _Series:
    """One watched quantity: its window, and the latched alarm."""

    def __init__(self, name: str, unit: str, window: int, floor: float, min_rise: float):
        self.name, self.unit = name, unit
        self.values: deque[int] = deque(maxlen=window)
        self.window, self.floor, self.min_rise = window, floor, min_rise
        self.size = 0
        self.alarm: str | None = None
        self.since_ns = 0
        self.rose = (0, 0)           # the window's first and last value when the alarm was raised
        self.alarms = 0              # times the alarm was raised

    def add(self, value: int, size: int, now: int) -> str | None:
        """Record a sample; returns "raised" or "cleared" when the alarm changed."""
        if size != self.size:        # a new ring or pool: old samples describe something else
            self.values.clear()
            self.size = size
        self.values.append(value)
        if self.alarm is not None:
            if value < self.floor * size:
                self.alarm = None
                return "cleared"
            return None
        if len(self.values) == self.window:
            why = verdict(self.values, size, self.floor, self.min_rise)
            if why is not None:
                self.alarm, self.since_ns = why, now
                self.rose = (self.values[0], value)
                self.alarms += 1
                return "raised"
        return None

    def message(self) -> str:
        if not self.values:
            return f"{self.name}: no samples"
        v, size = self.values[-1], self.size
        head = f"{self.name}: {v:,} of {size:,} {self.unit} outstanding"
        floor = int(self.floor * size)
        if self.alarm == "growing":
            return (f"{head}: LEAK SUSPECTED, rose from {self.rose[0]:,} to {self.rose[1]:,} over "
                    f"{self.window} samples without falling back (alarm held until below "
                    f"{floor:,})")
        if self.alarm == "exhausted":
            return (f"{head}: LEAK SUSPECTED, all {size:,} in use for {self.window} samples "
                    f"(alarm held until below {floor:,})")
        if len(self.values) < self.window:
            return f"{head} (watching: {len(self.values)}/{self.window} samples)"
        return f"{head} (ok)"

    def as_dict(self) -> dict:
        return {"value": self.values[-1] if self.values else None, "size": self.size,
                "floor": int(self.floor * self.size), "samples": len(self.values),
                "window": self.window, "first": self.values[0] if self.values else None,
                "alarm": self.alarm is not None, "reason": self.alarm,
                "since_ns": self.since_ns if self.alarm else None,
                "rose": list(self.rose) if self.alarm else None, "alarms": self.alarms,
                "message": self.message()}


def slots_outstanding(ring) -> int:
    """Slots published and not yet released by the slowest active consumer (0 without any)."""
    lines = ring.consumer_lines.copy()    # consumer cursors first: the producer's only grows
    head = int(ring.ctrl[L.P_CURSOR])
    tail = head
    for k in range(ring.max_consumers):
        if int(lines[k]["state"]) == L.CONSUMER_ACTIVE:
            tail = min(tail, int(lines[k]["cursor"]))
    return min(max(head - tail, 0), ring.capacity)


def pool_in_use(ring) -> tuple[int, int] | None:
    """(in use, pool size) as the producer last reported them, or None when it reports no pool."""
    size = int(ring.ctrl[L.SS_POOL_SIZE])
    if size <= 0 or int(ring.ctrl[L.SS_STATS_NS]) == 0:
        return None
    return int(ring.ctrl[L.SS_POOL_IN_USE]), size


class LeakMonitor:
    """Samples a ring's slots outstanding and its source's pool in use (see the module rule)."""

    def __init__(self, ring, interval_s: float = DEFAULT_INTERVAL_S, window: int = DEFAULT_WINDOW,
                 floor: float = DEFAULT_FLOOR, min_rise: float = DEFAULT_MIN_RISE,
                 on_change=None):
        if not interval_s > 0:
            raise ValueError(f"leak monitor: interval must be > 0 s, got {interval_s!r}")
        if not (isinstance(window, int) and window >= 2):
            raise ValueError(f"leak monitor: window must be an integer >= 2 samples, "
                             f"got {window!r}")
        if not 0 <= floor < 1:
            raise ValueError(f"leak monitor: floor must be a fraction in [0, 1), got {floor!r}")
        self.ring = ring
        self.interval_s = interval_s
        self.slots = _Series("ring slots", "slots", window, floor, min_rise)
        self.pool = _Series("source pool", "buffers", window, floor, min_rise)
        self.on_change = on_change      # on_change(series name, "raised"/"cleared", report)
        self.samples = 0
        self.last_ns = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self, now_ns: int | None = None) -> dict:
        now = time.time_ns() if now_ns is None else now_ns
        with self._lock:
            changes = [("slots", self.slots.add(slots_outstanding(self.ring),
                                                self.ring.capacity, now))]
            pool = pool_in_use(self.ring)
            if pool is not None:
                changes.append(("pool", self.pool.add(pool[0], pool[1], now)))
            self.samples += 1
            self.last_ns = now
            rep = self._report()
        if self.on_change is not None:
            for name, change in changes:
                if change is not None:
                    self.on_change(name, change, rep)
        return rep

    def _report(self) -> dict:
        series = {"slots": self.slots.as_dict()}
        if self.pool.values:
            series["pool"] = self.pool.as_dict()
        alarm = any(s["alarm"] for s in series.values())
        return {"alarm": alarm, "interval_s": self.interval_s, "samples": self.samples,
                "time_ns": self.last_ns, **series,
                "messages": [s["message"] for s in series.values()]}

    def report(self) -> dict:
        with self._lock:
            return self._report()

    # --- background ---------------------------------------------------------------------------
    def start(self) -> "LeakMonitor":
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="hugering-leak-monitor",
                                            daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
