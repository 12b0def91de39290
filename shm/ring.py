"""The plain-Python surface of a ring: create/open, producer and consumer handles.

This is for setup, tests and notebooks.  Hot loops call the ``@njit`` verbs of
``shm.kernels`` directly with the arrays these classes hand out (``ring.ctrl``,
``ring.words``, ``producer.pstate``, ``consumer.cstate`` ...)::

    ring = Ring.create("md", slots=4096, slot_size=2048)        # or Ring.open("md")
    with ring.producer() as p:
        p.publish([frame_bytes, ...])                            # or reserve / write / submit
    with Ring.open("md").consumer() as c:
        for batch in c.batches(max_batch=32, timeout=1.0):       # numpy structured records
            handle(batch["payload"], batch["cap_len"])

Consumers map the slot region read-only: a write into a slot raises (from Python:
``ValueError: assignment destination is read-only``; in ``@njit`` code it does not compile).
"""
from __future__ import annotations

import math
import os
import time

import numpy as np

from . import backing as B
from . import kernels as K
from . import layout as L
from .backing import RingError, RingFormatError, RingNameError  # noqa: F401  (re-exported)
from .clock import now_ns


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


class Ring:
    """A mapped ring.  ``ctrl`` is the control region as int64 words (read-write), ``words``
    and ``slot_bytes`` the slot region as int64 words / bytes, ``slots`` the same as structured
    records.  For a consumer these slot views are read-only."""

    def __init__(self, backing: B.Backing, writable_slots: bool):
        self.backing = backing
        self.name = backing.name
        h = B.read_header(backing)
        B.validate_header(h, backing)
        self.capacity = int(h["capacity"])
        self.slot_size = int(h["slot_size"])
        self.slot_stride = int(h["slot_stride"])
        self.mode = int(h["mode"])
        self.full_policy = int(h["full_policy"])
        self.max_consumers = int(h["max_consumers"])
        self.slots_offset = int(h["slots_offset"])
        self.file_size = int(h["file_size"])
        self.writable_slots = writable_slots
        self._ctrl_map = B.map_region(backing, self.slots_offset, 0, writable=True)
        self._slot_map = B.map_region(backing, self.file_size - self.slots_offset,
                                      self.slots_offset, writable=writable_slots)
        self.ctrl = np.frombuffer(self._ctrl_map, dtype=np.int64)
        self.header = np.frombuffer(self._ctrl_map, dtype=L.HEADER_DTYPE, count=1)[0]
        self.consumer_lines = np.frombuffer(self._ctrl_map, dtype=L.CONSUMER_DTYPE,
                                            count=self.max_consumers, offset=L.CONSUMERS_OFFSET)
        nbytes = self.capacity * self.slot_stride
        self.slot_bytes = np.frombuffer(self._slot_map, dtype=np.uint8, count=nbytes)
        self.words = np.frombuffer(self._slot_map, dtype=np.int64, count=nbytes // 8)
        self.slots = np.frombuffer(self._slot_map, dtype=L.slot_dtype(self.slot_size),
                                   count=self.capacity)
        self._closed = False
        try:
            _validate_cursors(self)
        except RingFormatError:
            self.close()
            raise

    # --- construction ---------------------------------------------------------------------
    @classmethod
    def create(cls, name: str, slots: int = 4096, slot_size: int = L.DEFAULT_SLOT_SIZE,
               mode: str = "lossless", full_policy: str = "drop", hugetlbfs: str | None = None,
               shm: bool = False, max_consumers: int = L.DEFAULT_MAX_CONSUMERS,
               consumer_timeout: float = 1.0, group: str | None = None) -> "Ring":
        """Create a ring (exclusively) and map it as its producer would (slots writable).

        Every argument is validated before anything is created; an error names the argument."""
        B.validate_name(name)
        if not isinstance(slots, int) or not _is_pow2(slots) or not 2 <= slots <= L.MAX_CAPACITY:
            raise RingError(f"slots must be a power of two from 2 to {L.MAX_CAPACITY}, "
                            f"got {slots!r}")
        if not isinstance(slot_size, int) or not L.MIN_SLOT_SIZE <= slot_size <= L.MAX_SLOT_SIZE:
            raise RingError(f"slot_size must be {L.MIN_SLOT_SIZE}..{L.MAX_SLOT_SIZE} bytes, "
                            f"got {slot_size!r}")
        if mode not in L.MODES:
            raise RingError(f"mode must be one of {sorted(L.MODES)}, got {mode!r}")
        if full_policy not in L.FULL_POLICIES:
            raise RingError(f"full_policy must be one of {sorted(L.FULL_POLICIES)}, "
                            f"got {full_policy!r}")
        if not isinstance(max_consumers, int) or not 1 <= max_consumers <= L.MAX_CONSUMERS_LIMIT:
            raise RingError(f"max_consumers must be 1..{L.MAX_CONSUMERS_LIMIT}, "
                            f"got {max_consumers!r}")
        if not (isinstance(consumer_timeout, (int, float)) and math.isfinite(consumer_timeout)
                and 0 < consumer_timeout < 9e9):
            raise RingError(f"consumer_timeout must be a finite number of seconds > 0, "
                            f"got {consumer_timeout!r}")
        stride = L.slot_stride(slot_size)
        ctrl_bytes = L.control_bytes(max_consumers)
        estimate = L.round_up(ctrl_bytes, 2 << 20) + slots * stride
        kind, directory, page, why = B.choose_backing(name, estimate, hugetlbfs, shm)
        slots_offset = L.round_up(ctrl_bytes, page)
        file_size = L.round_up(slots_offset + slots * stride, page)
        bk = B.create_file(name, kind, directory, page, file_size, group)
        try:
            m = B.map_region(bk, slots_offset, 0, writable=True)
            try:
                hdr = np.frombuffer(m, dtype=L.HEADER_DTYPE, count=1)
                hdr["layout_version"] = L.LAYOUT_VERSION
                hdr["mode"] = L.MODES[mode]
                hdr["capacity"] = slots
                hdr["slot_size"] = slot_size
                hdr["slot_stride"] = stride
                hdr["max_consumers"] = max_consumers
                hdr["full_policy"] = L.FULL_POLICIES[full_policy]
                hdr["slots_offset"] = slots_offset
                hdr["file_size"] = file_size
                hdr["created_ns"] = time.time_ns()
                hdr["backing"] = kind
                hdr["page_size"] = page
                hdr["consumer_timeout_ns"] = int(consumer_timeout * 1e9)
                # the magic last: until it is there, an opener refuses the file
                hdr["magic"] = L.MAGIC
                m.flush()
                del hdr
            finally:
                m.close()
            ring = cls(bk, writable_slots=True)
            B.warn_fallback(name, why)
            return ring
        except BaseException:
            bk.close()
            bk.unlink()
            raise

    @classmethod
    def open(cls, name: str, hugetlbfs: str | None = None, writable_slots: bool = False) -> "Ring":
        """Map an existing ring by name after validating its header (magic, version, sizes,
        file length).  Slots are read-only unless ``writable_slots`` (producers)."""
        bk = B.open_file(name, hugetlbfs)
        try:
            return cls(bk, writable_slots)
        except BaseException:
            bk.close()
            raise

    @staticmethod
    def remove(name: str, hugetlbfs: str | None = None) -> str:
        """Delete a ring's backing object; returns its path.  Processes that have it mapped keep
        their mapping until they exit (as with any unlinked file)."""
        bk = B.open_file(name, hugetlbfs)
        bk.close()
        bk.unlink()
        return bk.path

    # --- handles ----------------------------------------------------------------------------
    def producer(self) -> "Producer":
        return Producer(self)

    def consumer(self) -> "Consumer":
        return Consumer(self)

    # --- introspection ----------------------------------------------------------------------
    @property
    def mode_name(self) -> str:
        return {v: k for k, v in L.MODES.items()}[self.mode]

    def info(self) -> dict:
        """A snapshot of the layout, cursors and consumers (``hugering ring info``)."""
        now = time.time_ns()
        h = self.header
        head = int(self.ctrl[L.P_CURSOR])
        ppid = int(h["producer_pid"])
        consumers = []
        tail = head
        for k in range(self.max_consumers):
            c = self.consumer_lines[k]
            state = int(c["state"])
            if state == L.CONSUMER_FREE:
                continue
            cur = int(c["cursor"])
            pid = int(c["pid"])
            if state == L.CONSUMER_ACTIVE:
                tail = min(tail, cur)
            consumers.append({
                "index": k,
                "state": ["free", "claimed", "active", "evicted"][state] if state < 4 else state,
                "pid": pid, "alive": _pid_alive(pid), "cursor": cur, "lag": head - cur,
                "heartbeat_age_s": (now - int(c["heartbeat_ns"])) / 1e9,
                "delivered": int(c["delivered"]), "lost": int(c["lost"]),
                "rejoins": int(c["rejoins"]),
            })
        return {
            "name": self.name,
            "path": self.backing.path,
            "backing": "hugetlbfs" if int(h["backing"]) == L.BACKING_HUGETLBFS else "shm",
            "page_size": int(h["page_size"]),
            "layout_version": int(h["layout_version"]),
            "mode": self.mode_name,
            "full_policy": {v: k for k, v in L.FULL_POLICIES.items()}[self.full_policy],
            "capacity": self.capacity,
            "slot_size": self.slot_size,
            "slot_stride": self.slot_stride,
            "slots_offset": self.slots_offset,
            "file_size": self.file_size,
            "max_consumers": self.max_consumers,
            "consumer_timeout_s": int(h["consumer_timeout_ns"]) / 1e9,
            "created_ns": int(h["created_ns"]),
            "producer": {
                "pid": ppid, "alive": _pid_alive(ppid), "cursor": head,
                "heartbeat_age_s": ((now - int(self.ctrl[L.P_HEARTBEAT])) / 1e9
                                    if self.ctrl[L.P_HEARTBEAT] else None),
                "published": int(self.ctrl[L.PS_PUBLISHED]),
                "dropped_full": int(self.ctrl[L.PS_DROPPED_FULL]),
                "evictions": int(self.ctrl[L.PS_EVICTIONS]),
                "full_waits": int(self.ctrl[L.PS_FULL_WAITS]),
                "nic_drops": int(self.ctrl[L.PS_NIC_DROPS]),
            },
            # what the packet source reports (all zero for sources without a NIC or a pool)
            "source": {name: int(self.ctrl[(L.SOURCE_STATS_OFFSET + off) // 8])
                       for name, off, _, _ in L.SOURCE_STATS_FIELDS},
            "fill": (head - tail) / self.capacity if self.mode == L.MODE_LOSSLESS else None,
            "consumers": consumers,
        }

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # drop our views before the maps (mmap refuses to close under exported buffers)
        for attr in ("ctrl", "header", "consumer_lines", "slot_bytes", "words", "slots"):
            self.__dict__.pop(attr, None)
        for m in (self._ctrl_map, self._slot_map):
            try:
                m.close()
            except BufferError:
                pass  # a caller still holds a view; the mapping goes when that view goes
        self.backing.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return (f"Ring({self.name!r}, capacity={self.capacity}, slot_size={self.slot_size}, "
                f"mode={self.mode_name!r}, path={self.backing.path!r})")


def _validate_cursors(ring: "Ring") -> None:
    """Refuse a control region whose cursors cannot be true, naming the field: a consumer can
    never be ahead of the producer, and no cursor or state is negative or unknown.  Trusting
    such a cursor would make a consumer read slots nobody wrote, or a producer overwrite slots
    it thinks were released.  Consumer lines are read before the producer's cursor: that one
    only grows, so a live ring can never fail this check by a race."""
    where = f"ring {ring.name!r} ({ring.backing.path})"
    lines = ring.consumer_lines.copy()
    head = int(ring.ctrl[L.P_CURSOR])
    if head < 0:
        raise RingFormatError(f"{where}: field 'producer.cursor' is {head}, expected >= 0 "
                              "(corrupt control region)", "producer.cursor")
    for k in range(ring.max_consumers):
        state, cur = int(lines[k]["state"]), int(lines[k]["cursor"])
        field = f"consumer[{k}]"
        if not L.CONSUMER_FREE <= state <= L.CONSUMER_EVICTED:
            raise RingFormatError(f"{where}: field '{field}.state' is {state}, expected 0..3 "
                                  "(corrupt control region)", f"{field}.state")
        if state == L.CONSUMER_FREE:
            continue               # a free line's old values are reset when it is claimed
        if cur < 0 or cur > head:
            why = "negative" if cur < 0 else f"beyond the producer's cursor {head}"
            raise RingFormatError(f"{where}: field '{field}.cursor' is {cur}, {why} (corrupt "
                                  "control region)", f"{field}.cursor")


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.getpgid(pid)
        return True
    except ProcessLookupError:
        return False


def _is_zombie(pid: int) -> bool:
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")   # the comm field may hold spaces


class Producer:
    """The ring's single producer.  Attaching fails if another live process is the producer;
    a producer started after one died resumes at the same cursor."""

    def __init__(self, ring: Ring):
        if ring.writable_slots:
            self.ring = ring
            self._own_ring = None
        else:  # a consumer-side mapping: map the slots again, writable, for this producer
            self.ring = self._own_ring = Ring.open(ring.name, os.path.dirname(ring.backing.path)
                                                   if ring.backing.kind == L.BACKING_HUGETLBFS
                                                   else None, writable_slots=True)
        r = self.ring
        self.pid = os.getpid()
        old = int(r.ctrl[L.H_PRODUCER_PID])
        if old and _is_zombie(old):
            # a dead producer whose parent has not reaped it yet: getpgid still finds it, but
            # it will never publish again, so it must not block its replacement
            K.detach_producer(r.ctrl, old)
        resume = K.attach_producer(r.ctrl, self.pid)
        if resume < 0:
            raise RingError(f"ring {r.name!r} already has a live producer "
                            f"(pid {int(r.header['producer_pid'])}); one producer per ring")
        r.ctrl[L.H_PRODUCER_START] = time.time_ns()
        self.pstate = np.zeros(K.PSTATE_WORDS, dtype=np.int64)
        self.pstate[K.PS_HEAD] = resume
        # Unknown until the consumer lines are scanned: the consumers may not have read what
        # the previous producer published.  A tail a whole ring back makes the first reserve
        # scan them instead of overwriting unread slots.
        self.pstate[K.PS_CACHED_TAIL] = resume - r.capacity
        self.pstate[K.PS_MASK] = r.capacity - 1
        self.pstate[K.PS_CAPACITY] = r.capacity
        self.pstate[K.PS_STRIDE_W] = r.slot_stride // 8
        self.pstate[K.PS_MODE] = r.mode
        self.pstate[K.PS_MAX_CONSUMERS] = r.max_consumers
        self.pstate[K.PS_TIMEOUT] = int(r.header["consumer_timeout_ns"])
        self.pstate[K.PS_SLOT_SIZE] = r.slot_size
        self.pstate[K.PS_PUBLISHED] = int(r.ctrl[L.PS_PUBLISHED])
        self.pstate[K.PS_DROPPED] = int(r.ctrl[L.PS_DROPPED_FULL])
        self.pstate[K.PS_TRACK::2] = -1
        self.ctrl, self.words, self.slot_bytes = r.ctrl, r.words, r.slot_bytes
        self._closed = False

    @property
    def cursor(self) -> int:
        return int(self.pstate[K.PS_HEAD])

    def reserve(self, n: int) -> int:
        return K.reserve(self.ctrl, self.words, self.pstate, n)

    def write(self, j: int, frame, wire_len: int | None = None, ts_ns: int = 0, port: int = 0,
              queue: int = 0) -> int:
        buf = np.frombuffer(frame, dtype=np.uint8) if not isinstance(frame, np.ndarray) else frame
        return K.write_slot(self.words, self.slot_bytes, self.pstate, j, buf, len(buf),
                            len(buf) if wire_len is None else wire_len, ts_ns, port, queue)

    def submit(self, k: int) -> int:
        return K.submit(self.ctrl, self.words, self.pstate, k, now_ns())

    def publish(self, frames, ts_ns: int | None = None, timeout: float | None = None) -> int:
        """Publish a sequence of frames (bytes-like); returns how many were published.

        Honours the ring's full policy: *drop* publishes what fits and counts the rest as
        dropped; *wait* spins until consumers make room (or ``timeout`` seconds pass, after
        which the rest is dropped and counted)."""
        frames = list(frames)
        ts = time.time_ns() if ts_ns is None else ts_ns
        deadline = 0 if timeout is None else time.time_ns() + int(timeout * 1e9)
        done = 0
        while done < len(frames):
            want = min(len(frames) - done, self.ring.capacity)
            if self.ring.full_policy == L.FULL_WAIT and self.ring.mode == L.MODE_LOSSLESS:
                k = K.reserve_wait(self.ctrl, self.words, self.pstate, want, deadline)
            else:
                k = self.reserve(want)
            if k == 0:
                break
            for j in range(k):
                self.write(j, frames[done + j], ts_ns=ts)
            self.submit(k)
            done += k
        if done < len(frames):
            K.count_dropped(self.ctrl, self.pstate, len(frames) - done)
        return done

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            K.detach_producer(self.ring.ctrl, self.pid)
            if self._own_ring is not None:
                self._own_ring.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Consumer:
    """One consumer of a ring, with its own cursor and line.  Joins at the producer's current
    cursor (it sees what is published after it joined)."""

    def __init__(self, ring: Ring):
        self.ring = ring
        self.pid = os.getpid()
        k = K.claim_line(ring.ctrl, ring.max_consumers, self.pid)
        if k < 0:
            raise RingError(f"ring {ring.name!r} has no free consumer line: all "
                            f"{ring.max_consumers} are held by live consumers")
        self.index = k
        self.cstate = np.zeros(K.CSTATE_WORDS, dtype=np.int64)
        self.cstate[K.CS_LINE] = L.C_BASE + k * L.C_WORDS
        self.cstate[K.CS_MASK] = ring.capacity - 1
        self.cstate[K.CS_CAPACITY] = ring.capacity
        self.cstate[K.CS_STRIDE_W] = ring.slot_stride // 8
        self.cstate[K.CS_MODE] = ring.mode
        self.cstate[K.CS_SLOT_SIZE] = ring.slot_size
        self.cstate[K.CS_PID] = self.pid
        K.consumer_join(ring.ctrl, self.cstate, self.pid, now_ns())
        self.ctrl, self.words = ring.ctrl, ring.words
        self._pending = 0
        self._closed = False
        self._copy = None

    @property
    def cursor(self) -> int:
        return int(self.cstate[K.CS_CURSOR])

    @property
    def line(self):
        return self.ring.consumer_lines[self.index]

    def _copy_buffer(self, n: int) -> np.ndarray:
        if self._copy is None or len(self._copy) < n:
            self._copy = np.zeros(n, dtype=L.slot_dtype(self.ring.slot_size))
        return self._copy

    def poll(self, max_batch: int = 32) -> np.ndarray:
        """The next batch (possibly empty) as structured slot records.  Lossless: read-only
        views of the ring, valid until ``release()`` (called for you by the next ``poll``).
        Lossy: a private copy of slots that were intact (lapping is counted, never
        delivered torn)."""
        self.release()
        r = self.ring
        if r.mode == L.MODE_LOSSY:
            buf = self._copy_buffer(max_batch)
            k = K.receive(self.ctrl, self.words, self.cstate, buf.view(np.int64), max_batch)
            return buf[:k]
        k = K.peek(self.ctrl, self.cstate, max_batch)
        if k < 0:
            K.rejoin(self.ctrl, self.cstate, now_ns())
            return r.slots[:0]
        first = int(self.cstate[K.CS_CURSOR]) & (r.capacity - 1)
        k = min(k, r.capacity - first)             # a view cannot wrap around the ring's end
        self._pending = k
        return r.slots[first:first + k]

    def release(self) -> None:
        if self._pending:
            k, self._pending = self._pending, 0
            if K.release(self.ctrl, self.cstate, k) < 0:
                K.rejoin(self.ctrl, self.cstate, now_ns())

    def batches(self, max_batch: int = 32, timeout: float | None = None, idle_sleep: float = 0):
        """Iterate over non-empty batches until ``timeout`` seconds pass with nothing new
        (forever if None).  Each batch is released when the next one is requested."""
        last = time.monotonic()
        try:
            while True:
                b = self.poll(max_batch)
                if len(b):
                    last = time.monotonic()
                    yield b
                    continue
                if timeout is not None and time.monotonic() - last > timeout:
                    return
                if idle_sleep:
                    time.sleep(idle_sleep)
        finally:
            self.release()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.release()
            K.consumer_leave(self.ctrl, self.cstate)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


__all__ = ["Ring", "Producer", "Consumer", "RingError", "RingFormatError", "RingNameError"]
