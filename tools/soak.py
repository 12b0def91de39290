#!/usr/bin/env python3
"""Soak: stamped messages through one ring, 1 producer -> 3 consumer processes, for a long time.

    tools/soak.py --messages 100000000          # 10^8 messages, then a verdict
    tools/soak.py --minutes 30                  # as many as 30 minutes allow
    tools/soak.py --messages 10000000 --json    # one JSON object on stdout

What it proves (the way DPDK's ring stress test and Agrona's concurrent ring tests do): a
producer stamps every message with ``(producer id, sequence number)`` -- word 0 of the payload
is the id, every other payload word the sequence, which is also the slot's ``seq`` -- and
publishes into a lossless ring (full policy *wait*).  Three consumer processes check, in
``@njit`` code, slot by slot in place, that each message is the next one, whole; and they pause
at random points (between bursts, or while holding a peeked burst unreleased), so the producer
keeps meeting a full ring.  Each consumer classifies every sequence number it sees against the
next one it expects: in order; **lost** (a jump forward: the numbers skipped); **reordered** (an
earlier number that fills one of those gaps: counted, and no longer lost); **duplicated** (an
earlier number that fills none); **corrupt** (a payload word or the producer id disagrees with
the stamp).  Memory is sampled from ``/proc/PID/status`` for every worker (``VmRSS``, and
``HugetlbPages``: the huge pages the process maps) once the stream is under way and again at the
end, while the workers are still alive.

Verdict: PASS when every consumer saw all N messages and the end marker with 0 lost, 0
duplicated, 0 reordered, 0 corrupt, its ring line agrees (delivered N + 1, lost 0, rejoins 0),
the producer published N + 1 and evicted nobody, and memory is flat: no worker's RSS grew by
more than ``RSS_SLACK`` (1 MiB: the allocator's noise, far below one message per consumer per
byte) and no worker's huge pages changed.  Exit status 0 on PASS, 1 on FAIL, 2 on bad usage.

The worker roles are also used by the fault suite (``tests/faults``), which kills and stops
them: ``tools/soak.py --role producer|consumer|lossy_consumer --ring NAME --args JSON`` speaks
one JSON object per line on stdout (``ready``, ``result`` ...) and reads commands from stdin
(``go``, ``stop``, ``quit``).  ``Worker`` below drives one.  Evicted consumers (a pause longer
than the ring's consumer timeout) rejoin and count the gap as lost, so a soak with evictions
fails, and a fault test can compare what a consumer saw missing with what its ring line says.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from numba import njit  # noqa: E402

from shm import kernels as K  # noqa: E402
from shm import layout as L  # noqa: E402
from shm.clock import now_ns  # noqa: E402

END_ID = 0x454E44        # "END": producer-id word of the end-of-stream marker
RSS_SLACK = 1 << 20      # bytes a worker's RSS may grow between the two samples
STALL_S = 60.0           # no progress this long: FAIL (a wedged ring or a dead worker)

# --- consumer state words (int64 array ``st``) --------------------------------------------
S_EXP = 0        # next sequence number expected
S_DATA = 1       # data messages received in order or late (the end marker excluded)
S_LOST = 2       # sequence numbers skipped and not (yet) seen late
S_DUP = 3        # earlier numbers that filled no gap
S_REORD = 4      # earlier numbers that filled a gap
S_CORRUPT = 5    # messages whose payload disagrees with the stamp
S_END = 6        # sequence number of the end marker, -1 until seen
S_NGAPS = 7      # gaps recorded in ``gaps`` (from, to)
S_GAP_OVER = 8   # gaps that did not fit in ``gaps``
S_PENDING = 9    # slots peeked and held unreleased across a pause
S_PROD = 10      # producer id expected (a higher one takes over: a restarted producer)
S_SWITCHES = 11  # producer id changes seen
S_NWORDS = 12    # payload words stamped
S_FIRST_BAD = 13  # sequence number of the first corrupt / duplicated message, -1 none
S_WORDS = 16
MAX_GAPS = 1024

RET_BUDGET, RET_IDLE, RET_EVICTED, RET_END, RET_HOLD = 0, 1, 2, 3, 4


# --- kernels --------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def produce(ctrl, words, pstate, producer_id, nwords, burst, budget, max_spins):
    """Publish up to ``budget`` stamped messages in bursts; returns how many.  A full ring is
    retried (the wait policy); after ``max_spins`` full reserves in a row it returns early so
    the caller can yield the CPU.  Lossy rings never wait (reserve grants every burst)."""
    done = 0
    spins = 0
    nbytes = np.int64(nwords * 8)
    while done < budget:
        want = min(burst, budget - done)
        k = K.reserve(ctrl, words, pstate, want)
        if k == 0:
            spins += 1
            if spins >= max_spins:
                break
            continue
        spins = 0
        head = pstate[K.PS_HEAD]
        for j in range(k):
            b = K.slot_base(pstate, j)
            seq = head + j
            words[b + L.S_TS] = 0
            words[b + L.S_LENS] = nbytes | (nbytes << 32)
            words[b + L.S_PORTQ] = 0
            words[b + L.S_PAYLOAD] = producer_id
            for w in range(1, nwords):
                words[b + L.S_PAYLOAD + w] = seq
        K.submit(ctrl, words, pstate, k, now_ns())
        done += k
    return done


@njit(cache=True, nogil=True)
def publish_end(ctrl, words, pstate, nwords, max_spins):
    """The end-of-stream marker (it waits for room, never dropped); False if still full."""
    for _ in range(max_spins):
        if K.reserve(ctrl, words, pstate, 1) == 1:
            b = K.slot_base(pstate, 0)
            seq = pstate[K.PS_HEAD]
            nbytes = np.int64(nwords * 8)
            words[b + L.S_LENS] = nbytes | (nbytes << 32)
            words[b + L.S_PORTQ] = 0
            words[b + L.S_PAYLOAD] = END_ID
            for w in range(1, nwords):
                words[b + L.S_PAYLOAD + w] = seq
            K.submit(ctrl, words, pstate, 1, now_ns())
            return True
    return False


@njit(cache=True, nogil=True)
def _account(st, gaps, seq):
    """Classify one sequence number against the next expected one (module docstring)."""
    exp = st[S_EXP]
    if seq == exp:
        st[S_EXP] = seq + 1
    elif seq > exp:
        st[S_LOST] += seq - exp
        if st[S_NGAPS] < gaps.shape[0]:
            gaps[st[S_NGAPS], 0] = exp
            gaps[st[S_NGAPS], 1] = seq
            st[S_NGAPS] += 1
        else:
            st[S_GAP_OVER] += 1
        st[S_EXP] = seq + 1
    else:
        late = False
        for g in range(st[S_NGAPS]):
            if gaps[g, 0] <= seq < gaps[g, 1]:
                late = True
                break
        if late:
            st[S_REORD] += 1
            st[S_LOST] -= 1
        else:
            st[S_DUP] += 1
            if st[S_FIRST_BAD] < 0:
                st[S_FIRST_BAD] = seq


@njit(cache=True, nogil=True)
def _check(words, b, seq_slot, st, gaps):
    """One message at word ``b`` (a slot in place, or a copy): returns True for the end marker."""
    pid = words[b + L.S_PAYLOAD]
    seq = words[b + L.S_PAYLOAD + 1]
    whole = seq == seq_slot
    for w in range(2, st[S_NWORDS]):
        if words[b + L.S_PAYLOAD + w] != seq:
            whole = False
    if pid == END_ID:
        if whole:
            _account(st, gaps, seq)
            st[S_END] = seq
            return True
    elif pid != st[S_PROD]:
        if pid > st[S_PROD]:           # a restarted producer took over the ring
            st[S_PROD] = pid
            st[S_SWITCHES] += 1
        else:
            whole = False
    if not whole:
        st[S_CORRUPT] += 1
        if st[S_FIRST_BAD] < 0:
            st[S_FIRST_BAD] = seq_slot
        return False
    _account(st, gaps, seq)
    st[S_DATA] += 1
    return False


@njit(cache=True, nogil=True)
def _check_burst(ctrl, words, cstate, st, gaps, saved, k):
    """Check ``k`` peeked slots, then release them.  If ``release`` says this consumer was
    evicted meanwhile, the burst may have been overwritten while it was read: the counters go
    back to before it (the slots count as lost when the consumer rejoins).  Returns -1 on
    eviction, 1 if the end marker was in the burst, else 0."""
    sw = cstate[K.CS_STRIDE_W]
    nw = st[S_NWORDS]
    for i in range(S_WORDS):
        saved[i] = st[i]
    end = False
    exp = st[S_EXP]
    prod = st[S_PROD]
    data = np.int64(0)
    for j in range(k):
        b = K.consumer_slot(cstate, j) * sw
        # fast path, in registers: the next message of the expected producer, whole
        ok = words[b + L.S_SEQ] == exp and words[b + L.S_PAYLOAD] == prod
        for w in range(1, nw):
            ok &= words[b + L.S_PAYLOAD + w] == exp
        if ok:
            exp += 1
            data += 1
            continue
        st[S_EXP] = exp                  # anything else: the careful path
        st[S_DATA] += data
        data = 0
        if _check(words, b, words[b + L.S_SEQ], st, gaps):
            end = True
        exp = st[S_EXP]
        prod = st[S_PROD]
    st[S_EXP] = exp
    st[S_DATA] += data
    if K.release(ctrl, cstate, k) < 0:
        for i in range(S_WORDS):
            st[i] = saved[i]
        return -1
    return 1 if end else 0


@njit(cache=True, nogil=True)
def consume(ctrl, words, cstate, st, gaps, saved, burst, budget, hold, max_empty):
    """Lossless zero-copy consumer: peek, check in place, release, until ``budget`` messages,
    ``max_empty`` empty polls in a row, an eviction or the end marker.  With ``hold``, the
    burst that reaches the budget is left peeked and unreleased (``S_PENDING``): the caller
    pauses holding it, and the next call checks and releases it first."""
    got = 0
    if st[S_PENDING] > 0:
        k = st[S_PENDING]
        st[S_PENDING] = 0
        r = _check_burst(ctrl, words, cstate, st, gaps, saved, k)
        if r < 0:
            return RET_EVICTED
        if r > 0:
            return RET_END
        got = k
    empty = 0
    while got < budget:
        k = K.peek(ctrl, cstate, burst)
        if k < 0:
            return RET_EVICTED
        if k == 0:
            empty += 1
            if empty >= max_empty:
                return RET_IDLE
            continue
        empty = 0
        if hold and got + k >= budget:
            st[S_PENDING] = k
            return RET_HOLD
        r = _check_burst(ctrl, words, cstate, st, gaps, saved, k)
        if r < 0:
            return RET_EVICTED
        if r > 0:
            return RET_END
        got += k
    return RET_BUDGET


@njit(cache=True, nogil=True)
def consume_lossy(ctrl, words, cstate, out, st, gaps, burst, budget, max_empty):
    """Lossy consumer: ``receive`` copies intact slots (laps are counted by the ring and seen
    here as gaps); the same checks on the copies."""
    sw = cstate[K.CS_STRIDE_W]
    got = 0
    empty = 0
    while got < budget:
        k = K.receive(ctrl, words, cstate, out, burst)
        if k == 0:
            empty += 1
            if empty >= max_empty:
                return RET_IDLE
            continue
        empty = 0
        for j in range(k):
            if _check(out, j * sw, out[j * sw + L.S_SEQ], st, gaps):
                return RET_END
        got += k
    return RET_BUDGET


# --- worker plumbing -------------------------------------------------------------------------
def die_with_parent() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)     # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:
        os._exit(3)


def emit(event: str, **fields) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


class Commands:
    """Command lines from stdin, read without blocking between bursts."""

    def __init__(self):
        self.buf, self.fd, self.closed = b"", sys.stdin.fileno(), False

    def poll(self) -> list[str]:
        while not self.closed and select.select([self.fd], [], [], 0)[0]:
            chunk = os.read(self.fd, 4096)
            if not chunk:
                self.closed = True
                break
            self.buf += chunk
        out = []
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            out.append(line.decode().strip())
        return out

    def wait(self, word: str, timeout: float = 600.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            for line in self.poll():
                if line.split(" ", 1)[0] == word:
                    return line[len(word):].strip()
            if self.closed or time.monotonic() > deadline:
                raise SystemExit(f"no {word!r} command on stdin")
            select.select([self.fd], [], [], 0.05)


class Idle:
    """Two cores serve four processes: yield after an empty spell, then sleep briefly."""

    def __init__(self):
        self.n = 0

    def busy(self) -> None:
        self.n = 0

    def idle(self) -> None:
        self.n += 1
        if self.n < 200:
            os.sched_yield()
        else:
            time.sleep(0.0002)


def _line(ring, index: int) -> dict:
    ln = ring.consumer_lines[index]
    return {f: int(ln[f]) for f in ("cursor", "state", "lost", "delivered", "rejoins")}


def role_producer(a: dict, cmds: Commands) -> None:
    from shm.ring import Ring
    ring = Ring.open(a["ring"], writable_slots=True)
    if a.get("wait_attach"):               # started ahead, attaches on command (a restart)
        emit("spawned", pid=os.getpid())
        cmds.wait("attach")
    prod = ring.producer()
    nwords = ring.slot_size // 8
    # compile (or load) every kernel before "ready": a compile during the run would stall it
    # and show up as memory growth
    produce(ring.ctrl, ring.words, prod.pstate, 1, nwords, 1, 0, 1)
    publish_end(ring.ctrl, ring.words, prod.pstate, nwords, 0)
    emit("ready", resume=prod.cursor, pid=os.getpid())
    if a.get("wait_go", True):
        cmds.wait("go")
    count = a.get("count")                 # None: until "stop"
    burst = a.get("burst", 32)
    chunk = a.get("chunk", 1 << 16)
    rate = a.get("rate", 0)                # messages/s; 0 = as fast as the ring allows
    idle = Idle()
    sent = 0
    t0 = time.monotonic()
    while count is None or sent < count:
        if "stop" in cmds.poll():
            break
        budget = chunk if count is None else min(chunk, count - sent)
        if rate:
            allowed = int((time.monotonic() - t0) * rate) + burst - sent
            if allowed <= 0:
                K.producer_idle(ring.ctrl, prod.pstate, now_ns())
                time.sleep(0.0005)
                continue
            budget = min(budget, allowed)
        n = produce(ring.ctrl, ring.words, prod.pstate, a.get("id", 1), nwords, burst, budget,
                    256)
        sent += n
        if n < budget:
            idle.idle()
        else:
            idle.busy()
    if not a.get("no_end"):
        while not publish_end(ring.ctrl, ring.words, prod.pstate, nwords, 256):
            idle.idle()
    c = ring.ctrl
    emit("result", id=a.get("id", 1), sent=sent, final=prod.cursor,
         published=int(c[L.PS_PUBLISHED]), evictions=int(c[L.PS_EVICTIONS]),
         full_waits=int(c[L.PS_FULL_WAITS]), elapsed=time.monotonic() - t0)
    if a.get("linger"):                # the soak samples memory now: nothing may load meanwhile
        cmds.wait("quit")
    prod.close()
    ring.close()


def _consumer_result(ring, cons, st, gaps, rejoins, pauses, max_pause, t0) -> dict:
    return {"index": cons.index, "data": int(st[S_DATA]), "lost": int(st[S_LOST]),
            "duplicated": int(st[S_DUP]), "reordered": int(st[S_REORD]),
            "corrupt": int(st[S_CORRUPT]), "end": int(st[S_END]),
            "first_bad": int(st[S_FIRST_BAD]), "gaps": [[int(x), int(y)] for x, y in
                                                         gaps[:st[S_NGAPS]][:16]],
            "gap_overflow": int(st[S_GAP_OVER]), "producer": int(st[S_PROD]),
            "switches": int(st[S_SWITCHES]), "rejoins": rejoins, "pauses": pauses,
            "max_pause_ms": round(max_pause * 1e3, 2), "line": _line(ring, cons.index),
            "elapsed": time.monotonic() - t0}


def _new_state(ring, join: int, producer: int) -> tuple[np.ndarray, np.ndarray]:
    st = np.zeros(S_WORDS, np.int64)
    st[S_EXP] = join
    st[S_END] = -1
    st[S_FIRST_BAD] = -1
    st[S_PROD] = producer
    st[S_NWORDS] = ring.slot_size // 8
    return st, np.zeros((MAX_GAPS, 2), np.int64)


def role_consumer(a: dict, cmds: Commands) -> None:
    """Lossless consumer with random pauses: after a random number of messages (exponential,
    mean ``pause_every``), it sleeps up to ``pause_max_ms``, half the time holding a peeked
    burst unreleased."""
    from shm.ring import Ring
    ring = Ring.open(a["ring"])
    cons = ring.consumer()
    st, gaps = _new_state(ring, cons.cursor, a.get("producer", 1))
    saved = np.zeros(S_WORDS, np.int64)
    rng = random.Random(a.get("seed", 0))
    pause_every = a.get("pause_every", 0)
    pause_max = a.get("pause_max_ms", 0) / 1e3
    burst = a.get("burst", 32)
    consume(ring.ctrl, ring.words, cons.cstate, st, gaps, saved, burst, 0, False, 1)
    K.rejoin(ring.ctrl, cons.cstate, now_ns())          # compiles; -1: not evicted
    emit("ready", index=cons.index, cursor=cons.cursor, pid=os.getpid())
    idle = Idle()
    rejoins, pauses, max_pause = [], 0, 0.0
    t0 = time.monotonic()
    while True:
        budget = (max(1, int(rng.expovariate(1.0 / pause_every))) if pause_every
                  else 1 << 16)
        hold = bool(pause_every) and rng.random() < 0.5
        r = consume(ring.ctrl, ring.words, cons.cstate, st, gaps, saved, burst, budget, hold,
                    2000)
        if r == RET_END:
            break
        if r == RET_EVICTED:
            before = cons.cursor
            missed = K.rejoin(ring.ctrl, cons.cstate, now_ns())
            rejoins.append({"from": before, "to": cons.cursor, "missed": int(missed)})
            continue
        if r == RET_IDLE:
            idle.idle()
        else:
            idle.busy()
            if pause_every:
                d = rng.uniform(0, pause_max)
                time.sleep(d)
                pauses += 1
                max_pause = max(max_pause, d)
        cmds.poll()
    emit("result", **_consumer_result(ring, cons, st, gaps, rejoins, pauses, max_pause, t0))
    if a.get("linger"):
        cmds.wait("quit")
    cons.close()
    ring.close()


def role_lossy_consumer(a: dict, cmds: Commands) -> None:
    from shm.ring import Ring
    ring = Ring.open(a["ring"])
    cons = ring.consumer()
    st, gaps = _new_state(ring, cons.cursor, a.get("producer", 1))
    burst = a.get("burst", 32)
    out = np.zeros(burst * (ring.slot_stride // 8), np.int64)
    consume_lossy(ring.ctrl, ring.words, cons.cstate, out, st, gaps, burst, 0, 1)
    emit("ready", index=cons.index, cursor=cons.cursor, pid=os.getpid())
    idle = Idle()
    t0 = time.monotonic()
    while True:
        r = consume_lossy(ring.ctrl, ring.words, cons.cstate, out, st, gaps, burst, 1 << 14,
                          2000)
        if r == RET_END:
            break
        if r == RET_IDLE:
            idle.idle()
        else:
            idle.busy()
        cmds.poll()
    emit("result", **_consumer_result(ring, cons, st, gaps, [], 0, 0.0, t0))
    if a.get("linger"):
        cmds.wait("quit")
    cons.close()
    ring.close()


ROLES = {"producer": role_producer, "consumer": role_consumer,
         "lossy_consumer": role_lossy_consumer}


# --- driving workers ---------------------------------------------------------------------------
class WorkerError(AssertionError):
    pass


class Worker:
    """One worker process: JSON events from its stdout, commands to its stdin.  Killed (and
    reaped) by ``close``; dies with its parent anyway (PR_SET_PDEATHSIG)."""

    def __init__(self, role: str, ring: str, tag: str = "", env=None, stderr=None, argv=None,
                 **args):
        """``argv``: another program speaking the same protocol (the fault suite's engine
        consumer); by default this file in ``role``."""
        self.role, self.tag = role, tag or role
        self.proc = subprocess.Popen(
            argv or [sys.executable, str(Path(__file__).resolve()), "--role", role, "--ring",
                     ring, "--args", json.dumps(args)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=stderr if stderr is not None else subprocess.DEVNULL,
            env=env, cwd=str(ROOT))
        self.pid = self.proc.pid
        self._buf = b""
        self.events: list[dict] = []

    def expect(self, event: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while True:
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                msg = json.loads(line)
                self.events.append(msg)
                if msg.get("event") == event:
                    return msg
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerError(f"{self.tag}: no {event!r} within {timeout} s{self.detail()}")
            if select.select([fd], [], [], min(left, 0.5))[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    rc = self.proc.wait(timeout=5)
                    raise WorkerError(f"{self.tag} exited (status {rc}) before {event!r}"
                                      f"{self.detail()}")
                self._buf += chunk

    def detail(self) -> str:
        """More to say when an event does not come (a subclass adds the worker's stderr)."""
        return ""

    def send(self, line: str) -> None:
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL without reaping: the pid stays a zombie (it still exists) until ``reap``."""
        if self.proc.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def reap(self, timeout: float = 10) -> int:
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        if self.proc.returncode is None:
            try:
                os.kill(self.pid, signal.SIGCONT)     # a stopped process cannot die of KILL
                os.kill(self.pid, signal.SIGKILL)     # until it runs again
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass


def memory(pid: int) -> dict:
    """RSS and huge pages mapped of a process, from /proc/PID/status (bytes)."""
    out = {"rss": 0, "hugetlb": 0}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    out["rss"] = int(line.split()[1]) * 1024
                elif line.startswith("HugetlbPages:"):
                    out["hugetlb"] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return out


def hugepages_free() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("HugePages_Free:"):
            return int(line.split()[1])
    return 0


def run_soak(messages: int | None, minutes: float | None, consumers: int = 3,
             slots: int = 1 << 16, slot_size: int = 64, pause_every: int = 200_000,
             pause_max_ms: float = 20.0, seed: int = 1, backing: str = "auto",
             progress=None) -> dict:
    """The soak (module docstring); returns the report ``--json`` prints."""
    from shm import backing as B
    from shm.ring import Ring
    name = f"soak-{os.getpid()}"
    if backing == "auto":
        size = B.mount_page_size(B.DEFAULT_HUGETLBFS)
        usable = (size is not None and os.access(B.DEFAULT_HUGETLBFS, os.W_OK)
                  and B.free_hugepages(size) >= 8)
        backing = "hugetlbfs" if usable else "shm"
    ring = Ring.create(name, slots=slots, slot_size=slot_size, mode="lossless",
                       full_policy="wait", max_consumers=consumers + 1, consumer_timeout=10.0,
                       shm=backing == "shm",
                       hugetlbfs=B.DEFAULT_HUGETLBFS if backing == "hugetlbfs" else None)
    workers: list[Worker] = []
    try:
        cons = [Worker("consumer", name, f"consumer {i}", seed=seed * 1000 + i,
                       pause_every=pause_every, pause_max_ms=pause_max_ms, linger=True,
                       stderr=sys.stderr)
                for i in range(consumers)]
        workers += cons
        prod = Worker("producer", name, "producer", id=1, count=messages, linger=True,
                      stderr=sys.stderr)
        workers.append(prod)
        ready = [c.expect("ready", 300) for c in cons]
        prod.expect("ready", 300)
        lines = [ring.consumer_lines[r["index"]] for r in ready]
        t0 = time.monotonic()
        prod.send("go")
        # the "start" memory sample: once the ring has gone round a few times (every slot
        # page touched by every process) and the stream is a twentieth done
        start_at = max(4 * slots, (messages or 0) // 20)
        mem_start = None
        mem_peak: dict[int, int] = {}
        last_progress, last_cursor, last_move = t0, -1, t0
        deadline = t0 + minutes * 60 if minutes else None
        stopped = False
        while True:
            now = time.monotonic()
            cursor = int(ring.ctrl[L.P_CURSOR])
            slowest = min(int(ln["cursor"]) for ln in lines)
            if mem_start is None and slowest >= start_at:
                mem_start = {w.pid: memory(w.pid) for w in workers}
            if mem_start is not None:
                for w in workers:
                    mem_peak[w.pid] = max(mem_peak.get(w.pid, 0), memory(w.pid)["rss"])
            if deadline is not None and not stopped and now >= deadline:
                prod.send("stop")
                stopped = True
            done = messages is not None and slowest >= messages + 1
            if stopped or done:
                break
            if slowest != last_cursor:
                last_cursor, last_move = slowest, now
            elif now - last_move > STALL_S:
                raise WorkerError(f"no consumer progress for {STALL_S:.0f} s at {slowest:,} "
                                  f"(producer at {cursor:,})")
            if progress and now - last_progress >= 10:
                last_progress = now
                progress(f"soak: {cursor:,} published, slowest consumer at {slowest:,}, "
                         f"{cursor / (now - t0) / 1e6:.2f} M msg/s")
            time.sleep(0.25)
        pres = prod.expect("result", STALL_S)
        results = [c.expect("result", STALL_S) for c in cons]
        elapsed = time.monotonic() - t0
        if mem_start is None:      # a stream shorter than the warm-up: compare with the end
            mem_start = {w.pid: memory(w.pid) for w in workers}
        mem_end = {w.pid: memory(w.pid) for w in workers}
        for w in workers:
            w.send("quit")
        evictions = int(ring.ctrl[L.PS_EVICTIONS])
        info = {"backing": ring.info()["backing"], "slots": slots, "slot_size": slot_size,
                "file_size": ring.file_size}
    finally:
        for w in workers:
            w.close()
        ring.close()
        Ring.remove(name)
    n = pres["sent"]
    failures = []
    if pres["published"] != n + 1:
        failures.append(f"producer published {pres['published']:,}, expected {n + 1:,}")
    if evictions:
        failures.append(f"{evictions} consumer(s) evicted")
    for i, r in enumerate(results):
        for key in ("lost", "duplicated", "reordered", "corrupt"):
            if r[key]:
                failures.append(f"consumer {i}: {key} {r[key]:,} (first bad seq {r['first_bad']})")
        if r["data"] != n or r["end"] != n:
            failures.append(f"consumer {i}: received {r['data']:,} of {n:,}, end marker at "
                            f"{r['end']}")
        ln = r["line"]
        if ln["delivered"] != n + 1 or ln["lost"] or ln["rejoins"]:
            failures.append(f"consumer {i}: ring line delivered {ln['delivered']:,} lost "
                            f"{ln['lost']} rejoins {ln['rejoins']}")
    mem = []
    for w in workers:
        a, b = mem_start[w.pid], mem_end[w.pid]
        row = {"worker": w.tag, "pid": w.pid, "rss_start": a["rss"], "rss_end": b["rss"],
               "rss_peak": mem_peak.get(w.pid, b["rss"]), "rss_growth": b["rss"] - a["rss"],
               "hugetlb_start": a["hugetlb"], "hugetlb_end": b["hugetlb"]}
        mem.append(row)
        if row["rss_growth"] > RSS_SLACK:
            failures.append(f"{w.tag}: RSS grew {row['rss_growth'] / 1024:.0f} KiB")
        if a["hugetlb"] != b["hugetlb"]:
            failures.append(f"{w.tag}: huge pages {a['hugetlb']} -> {b['hugetlb']} bytes")
    return {"verdict": "PASS" if not failures else "FAIL", "failures": failures,
            "messages": n, "consumers": consumers, "elapsed_s": round(elapsed, 3),
            "rate_msgs": round(n / elapsed) if elapsed > 0 else 0, "ring": info,
            "producer": pres, "results": results, "memory": mem,
            "hugepages_free_end": hugepages_free(),
            "pause": {"every": pause_every, "max_ms": pause_max_ms}, "seed": seed}


def verdict_line(rep: dict) -> str:
    res = rep["results"]

    def each(key):
        return "/".join(f"{r[key]:,}" for r in res)
    mem = rep["memory"]
    growth = "/".join(f"{m['rss_growth'] / 1024:+.0f}" for m in mem)
    huge = "/".join(f"{m['hugetlb_start'] >> 21}->{m['hugetlb_end'] >> 21}" for m in mem)
    line = (f"soak {rep['verdict']}: {rep['messages']:,} messages, 1 producer -> "
            f"{rep['consumers']} consumers (lossless, {rep['ring']['slots']:,} slots of "
            f"{rep['ring']['slot_size']} B on {rep['ring']['backing']}) in "
            f"{rep['elapsed_s']:.1f} s ({rep['rate_msgs'] / 1e6:.2f} M msg/s); per consumer: "
            f"received {each('data')}, lost {each('lost')}, duplicated {each('duplicated')}, "
            f"reordered {each('reordered')}, corrupt {each('corrupt')}, pauses "
            f"{each('pauses')}; evictions {rep['producer']['evictions']}; RSS growth KiB "
            f"{growth} (producer last), huge pages {huge}")
    if rep["failures"]:
        line += "\n  " + "\n  ".join(rep["failures"])
    return line


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--messages", type=int, metavar="N", help="messages to send (default 10^7)")
    g.add_argument("--minutes", type=float, metavar="M", help="run for M minutes instead")
    p.add_argument("--consumers", type=int, default=3, metavar="K")
    p.add_argument("--slots", type=int, default=1 << 16, metavar="N")
    p.add_argument("--slot-size", type=int, default=64, metavar="B")
    p.add_argument("--pause-every", type=int, default=200_000, metavar="N",
                   help="mean messages between a consumer's pauses (0: never pause)")
    p.add_argument("--pause-max-ms", type=float, default=20.0, metavar="MS")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--backing", choices=["auto", "hugetlbfs", "shm"], default="auto")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--role", choices=sorted(ROLES), help=argparse.SUPPRESS)
    p.add_argument("--ring", help=argparse.SUPPRESS)
    p.add_argument("--args", default="{}", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.role:
        die_with_parent()
        args = json.loads(a.args)
        args["ring"] = a.ring
        ROLES[a.role](args, Commands())
        return 0
    if a.minutes is None and a.messages is None:
        a.messages = 10 ** 7
    if (a.messages is not None and a.messages < 1) or (a.minutes is not None and a.minutes <= 0):
        p.error("--messages must be >= 1 and --minutes > 0")
    if a.consumers < 1 or a.consumers > 64:
        p.error("--consumers must be 1..64")
    rep = run_soak(a.messages, a.minutes, a.consumers, a.slots, a.slot_size, a.pause_every,
                   a.pause_max_ms, a.seed, a.backing,
                   progress=lambda s: print(s, file=sys.stderr, flush=True))
    if a.json:
        print(json.dumps(rep))
    else:
        print(verdict_line(rep))
    return 0 if rep["verdict"] == "PASS" else 1


if __name__ == "__main__":
    # Run as the module ``soak`` so the kernels compile and cache under that name, the same
    # whether this file is the program or imported by the fault suite.
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import soak
    sys.exit(soak.main())
