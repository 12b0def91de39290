"""Worker programs for the multi-process ring tests (``tests/test_multiprocess.py``).

Each worker is a separate process started as ``python tests/mp_workers.py ROLE JSON-ARGS``:

* ``producer``       stamps ``(producer id, sequence)`` into every message and publishes;
* ``consumer``       lossless zero-copy consumer (peek / consumer_slot / release) that checks
                     every message is the expected next ``(producer, seq)``;
* ``lossy_consumer`` copying consumer (receive) that checks no slot is torn and that what it
                     gets is strictly increasing, counting the gaps it sees;
* ``warmup``         compiles every kernel here once (Numba cache) before a test starts four
                     processes at once.

Protocol with the test: one JSON object per line on stdout (``{"event": "ready", ...}`` once
the worker is attached or joined, ``{"event": "result", ...}`` at the end); commands one per
line on stdin (``go`` [JSON], ``stop``, ``fast``, ``attach``, ``hold burst|between``,
``resume``), read between bursts without blocking.  Errors go to stderr with a non-zero exit.
A worker dies with its parent (``PR_SET_PDEATHSIG``), so a failing or timed-out test never
leaves a spinner behind.

Stamp of a message (slot payload as int64 words): word 0 = producer id (``END_ID`` for the
end-of-stream marker), every other payload word = the sequence number, which is also the slot's
``seq`` stamp; the slot's ``ts_ns`` holds the producer's attempt index (strictly increasing per
producer; with the drop policy it skips what was dropped).  A torn or stale slot cannot pass.

Waiting: two cores serve four processes here, so nobody busy-spins for long.  The @njit loops
return after a bounded number of empty polls / full reserves and Python calls
``os.sched_yield()`` (after a while idle, a 200 us sleep) before re-entering.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from numba import njit  # noqa: E402

from shm import Ring  # noqa: E402
from shm import kernels as K  # noqa: E402
from shm import layout as L  # noqa: E402
from shm.atomics import load_relaxed  # noqa: E402
from shm.clock import now_ns  # noqa: E402
from tools.soak import Commands, Idle, die_with_parent, emit  # noqa: E402  (one protocol)

END_ID = 0x454E44   # "END": producer-id word of the end-of-stream marker

# --- producer private counters (int64 array ``st``) ---------------------------------------
PR_ATTEMPT = 0       # attempt index of the next message (stamped in ts_ns)
PR_LAST_PUB = 1      # CLOCK_REALTIME of the last submit
PR_NGAPS = 2         # gaps recorded in ``gaps``
PR_EVICT_SEEN = 3    # evictions counter last seen
PR_NEVICT = 4        # eviction times recorded in ``evict_t``
PR_WORDS = 8

# --- lossless consumer counters ------------------------------------------------------------
C_EXP = 0            # next expected sequence number
C_PROD = 1           # producer id currently expected
C_DATA = 2           # data messages accepted (the end marker not included)
C_ERRS = 3           # messages that were not the expected next (producer, seq)
C_END = 4            # sequence number of the end marker, -1 until seen
C_SWITCHES = 5       # producer id changes (a restarted producer)
C_SWITCH_SEQ = 6     # sequence number where the first change happened
C_LAST_ATT = 7       # last attempt index seen (strictly increasing per producer)
C_DISCARD = 8        # slots of the burst discarded because release said "evicted"
C_NOTICE = 9         # 1 eviction noticed by peek, 2 by release
C_FE = 10            # first error: expected, slot stamp, producer word, seq word, attempt
C_OVERWRITTEN = 15   # slots found overwritten while peeked and not yet released
C_NWORDS = 16        # payload words stamped
C_HOLD_SPINS = 17    # extra re-reads of a peeked burst before releasing it (widens the window)
C_VARY = 18          # peek sizes 1..burst in a scrambled order instead of ``burst``
C_WORDS = 24

RET_BUDGET, RET_IDLE, RET_EVICTED, RET_END = 0, 1, 2, 3
NOTICE_PEEK, NOTICE_RELEASE = 1, 2

# --- lossy consumer counters ---------------------------------------------------------------
Y_LAST = 0           # last sequence number delivered (join cursor - 1 at start)
Y_DELIV = 1          # messages delivered (the end marker included)
Y_TORN = 2           # delivered copies whose words disagree with their sequence number
Y_NONINC = 3         # deliveries not strictly above the previous one
Y_GAPS = 4           # jumps forward
Y_GAP_TOTAL = 5      # sequence numbers jumped over
Y_END = 6            # sequence number of the end marker, -1 until seen
Y_PROD = 7           # producer id expected
Y_NWORDS = 8
Y_FE = 9             # first torn copy: seq, word index, value
Y_WORDS = 16


# --- kernels ---------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def produce(ctrl, words, pstate, st, gaps, evict_t, producer_id, nwords, burst, budget, drop,
            max_spins, gap_ns, vary):
    """Attempt up to ``budget`` messages in bursts; returns how many were attempted.

    Wait policy: a full ring is retried; after ``max_spins`` full reserves in a row it returns
    early so that the caller can yield the CPU.  Drop policy: what does not fit is dropped and
    counted (``count_dropped``), and after ``max_spins`` wholly dropped bursts in a row it
    returns early too.  ``vary``: burst sizes 1..burst in a scrambled order instead of ``burst``
    (every fill level of the ring then occurs).  Gaps between submits longer than ``gap_ns``
    and the times at which the evictions counter moved are recorded for the test
    (CLOCK_REALTIME)."""
    attempted = 0
    spins = 0
    nbytes = np.int64(nwords * 8)
    while attempted < budget:
        want = burst
        if vary:
            want = 1 + ((st[PR_ATTEMPT] * 2654435761) >> 11) % burst
        if want > budget - attempted:
            want = budget - attempted
        k = K.reserve(ctrl, words, pstate, want)
        ev = ctrl[L.PS_EVICTIONS]
        if ev != st[PR_EVICT_SEEN]:
            st[PR_EVICT_SEEN] = ev
            if st[PR_NEVICT] < evict_t.shape[0]:
                evict_t[st[PR_NEVICT]] = now_ns()
                st[PR_NEVICT] += 1
        if k == 0 and not drop:
            spins += 1
            if spins >= max_spins:
                break
            continue
        if k > 0:
            head = pstate[K.PS_HEAD]
            att = st[PR_ATTEMPT]
            for j in range(k):
                b = K.slot_base(pstate, j)
                seq = head + j
                words[b + L.S_TS] = att + j
                words[b + L.S_LENS] = nbytes | (nbytes << 32)
                words[b + L.S_PORTQ] = 0
                words[b + L.S_PAYLOAD] = producer_id
                for w in range(1, nwords):
                    words[b + L.S_PAYLOAD + w] = seq
            now = now_ns()
            last = st[PR_LAST_PUB]
            if last != 0 and now - last > gap_ns and st[PR_NGAPS] < gaps.shape[0]:
                gaps[st[PR_NGAPS], 0] = last
                gaps[st[PR_NGAPS], 1] = now
                st[PR_NGAPS] += 1
            K.submit(ctrl, words, pstate, k, now)
            st[PR_LAST_PUB] = now
        if drop:
            if k < want:
                K.count_dropped(ctrl, pstate, want - k)
            attempted += want
            st[PR_ATTEMPT] += want
            if k == 0:
                spins += 1
                if spins >= max_spins:
                    break
            else:
                spins = 0
        else:
            spins = 0
            attempted += k
            st[PR_ATTEMPT] += k
    return attempted


@njit(cache=True, nogil=True)
def publish_end(ctrl, words, pstate, st, nwords, max_spins):
    """Publish the end-of-stream marker (never dropped: it waits for room); False if the ring
    stayed full for ``max_spins`` reserves (the caller yields and calls again)."""
    for _ in range(max_spins):
        if K.reserve(ctrl, words, pstate, 1) == 1:
            b = K.slot_base(pstate, 0)
            seq = pstate[K.PS_HEAD]
            words[b + L.S_TS] = st[PR_ATTEMPT]
            words[b + L.S_LENS] = np.int64(nwords * 8) | (np.int64(nwords * 8) << 32)
            words[b + L.S_PORTQ] = 0
            words[b + L.S_PAYLOAD] = END_ID
            for w in range(1, nwords):
                words[b + L.S_PAYLOAD + w] = seq
            K.submit(ctrl, words, pstate, 1, now_ns())
            st[PR_ATTEMPT] += 1
            return True
    return False


@njit(cache=True, nogil=True)
def consume(ctrl, words, cstate, st, burst, max_msgs, max_empty):
    """Lossless zero-copy consumer: peek a burst, check every slot in place, release.

    Each burst is checked into locals and committed only once ``release`` confirms that this
    consumer was not evicted meanwhile (an evicted consumer's slots may have been overwritten
    while it read them: the burst is discarded, as ``release``'s docstring says).  Returns why
    it stopped: budget used, ``max_empty`` empty polls in a row, evicted, or end marker seen."""
    sw = cstate[K.CS_STRIDE_W]
    nw = st[C_NWORDS]
    empty = 0
    got = 0
    vary = st[C_VARY]
    while got < max_msgs:
        n = burst
        if vary:
            n = 1 + ((st[C_EXP] * 40503) >> 7) % burst
        k = K.peek(ctrl, cstate, n)
        if k < 0:
            st[C_NOTICE] = NOTICE_PEEK
            st[C_DISCARD] = 0
            return RET_EVICTED
        if k == 0:
            empty += 1
            if empty >= max_empty:
                return RET_IDLE
            continue
        empty = 0
        exp = st[C_EXP]
        prod = st[C_PROD]
        last_att = st[C_LAST_ATT]
        errs = 0
        data = 0
        end = -1
        switches = 0
        switch_seq = st[C_SWITCH_SEQ]
        fe0 = fe1 = fe2 = fe3 = fe4 = np.int64(0)
        for j in range(k):
            b = K.consumer_slot(cstate, j) * sw
            stamp = words[b + L.S_SEQ]
            p = words[b + L.S_PAYLOAD]
            att = words[b + L.S_TS]
            ok = stamp == exp
            for w in range(1, nw):
                if words[b + L.S_PAYLOAD + w] != exp:
                    ok = False
            if p == END_ID:
                end = exp
            else:
                data += 1
                if p != prod:
                    if p > prod:               # a restarted producer takes over
                        if st[C_SWITCHES] + switches == 0:
                            switch_seq = exp
                        switches += 1
                        prod = p
                        last_att = -1
                    else:
                        ok = False
            if att <= last_att:
                ok = False
            last_att = att
            if not ok:
                if st[C_ERRS] + errs == 0:
                    fe0, fe1, fe2, fe3, fe4 = exp, stamp, p, words[b + L.S_PAYLOAD + 1], att
                errs += 1
            exp += 1
        # Lossless contract: a peeked slot is not overwritten before it is released.  Read the
        # stamps again just before releasing (and, if asked, a few more times) to catch a
        # producer that overwrote them while this consumer held them.
        overwritten = 0
        for _ in range(1 + st[C_HOLD_SPINS]):
            overwritten = 0
            for j in range(k):
                b = K.consumer_slot(cstate, j) * sw
                if load_relaxed(words, b + L.S_SEQ) != st[C_EXP] + j:
                    overwritten += 1
            if overwritten:
                break
        r = K.release(ctrl, cstate, k)
        if r < 0:
            st[C_NOTICE] = NOTICE_RELEASE
            st[C_DISCARD] = k
            return RET_EVICTED
        if errs != 0 and st[C_ERRS] == 0:
            st[C_FE] = fe0
            st[C_FE + 1] = fe1
            st[C_FE + 2] = fe2
            st[C_FE + 3] = fe3
            st[C_FE + 4] = fe4
        st[C_EXP] = exp
        st[C_PROD] = prod
        st[C_LAST_ATT] = last_att
        st[C_ERRS] += errs
        st[C_OVERWRITTEN] += overwritten
        st[C_DATA] += data
        st[C_SWITCHES] += switches
        st[C_SWITCH_SEQ] = switch_seq
        got += k
        if end >= 0:
            st[C_END] = end
            return RET_END
    return RET_BUDGET


@njit(cache=True, nogil=True)
def consume_lossy(ctrl, words, cstate, out, st, burst, max_calls, max_empty):
    """Copying consumer (``receive``): checks every delivered copy against its sequence number
    (no torn slot), that deliveries strictly increase, and counts the gaps it sees."""
    sw = cstate[K.CS_STRIDE_W]
    nw = st[Y_NWORDS]
    empty = 0
    for _ in range(max_calls):
        k = K.receive(ctrl, words, cstate, out, burst)
        if k == 0:
            empty += 1
            if empty >= max_empty:
                return RET_IDLE
            continue
        empty = 0
        for j in range(k):
            ob = j * sw
            seq = out[ob + L.S_SEQ]
            p = out[ob + L.S_PAYLOAD]
            torn_at = -1
            if p != st[Y_PROD] and p != END_ID:
                torn_at = 0
            for w in range(1, nw):
                if out[ob + L.S_PAYLOAD + w] != seq and torn_at < 0:
                    torn_at = w
            if torn_at >= 0:
                if st[Y_TORN] == 0:
                    st[Y_FE] = seq
                    st[Y_FE + 1] = torn_at
                    st[Y_FE + 2] = out[ob + L.S_PAYLOAD + torn_at]
                st[Y_TORN] += 1
            last = st[Y_LAST]
            if seq <= last:
                st[Y_NONINC] += 1
            elif seq != last + 1:
                st[Y_GAPS] += 1
                st[Y_GAP_TOTAL] += seq - last - 1
            st[Y_LAST] = seq
            st[Y_DELIV] += 1
            if p == END_ID:
                st[Y_END] = seq
                return RET_END
    return RET_BUDGET


# --- process plumbing ------------------------------------------------------------------------
def run_producer(a: dict, cmds: Commands) -> None:
    ring = Ring.open(a["ring"], writable_slots=True)
    if a.get("wait_attach", False):         # started ahead, attaches on command (a restart)
        emit("spawned")
        cmds.wait("attach")
    prod = ring.producer()
    nwords = ring.slot_size // 8
    st = np.zeros(PR_WORDS, dtype=np.int64)
    st[PR_EVICT_SEEN] = int(ring.ctrl[L.PS_EVICTIONS])
    gaps = np.zeros((256, 2), dtype=np.int64)
    evict_t = np.zeros(16, dtype=np.int64)
    drop = ring.full_policy == L.FULL_DROP and ring.mode == L.MODE_LOSSLESS
    if ring.mode == L.MODE_LOSSY:
        drop = True   # never waits; reserve always grants the burst
    resume = prod.cursor
    emit("ready", resume=resume, pid=os.getpid())
    go = {}
    if a.get("wait_go", True):
        rest = cmds.wait("go")
        go = json.loads(rest) if rest else {}
    count = a.get("count")                  # None: until a "stop" command
    burst = a.get("burst", 32)
    rate = a.get("rate", 0)                 # messages per second; 0 = as fast as allowed
    chunk = a.get("chunk", 4096)
    guard = go.get("guard", [])             # lossy: consumer lines to keep within max_lag
    max_lag = go.get("max_lag", ring.capacity // 2)
    gap_ns = int(a.get("gap_s", 0.02) * 1e9)
    idle = Idle()
    attempted = 0
    guard_waits = 0
    stop = False
    t0 = time.monotonic()
    t0_ns = time.time_ns()
    while not stop and (count is None or attempted < count):
        if "stop" in cmds.poll():
            stop = True
            break
        budget = chunk if count is None else min(chunk, count - attempted)
        if rate:
            allowed = int((time.monotonic() - t0) * rate) + burst - attempted
            if allowed <= 0:
                time.sleep(0.0002)
                continue
            budget = min(budget, allowed)
        if guard:
            head = int(ring.ctrl[L.P_CURSOR])
            lag = max(head - int(ring.ctrl[L.C_BASE + k * L.C_WORDS + L.C_CURSOR]) for k in guard)
            if lag + budget > max_lag:
                guard_waits += 1
                idle.idle()
                continue
        n = produce(ring.ctrl, ring.words, prod.pstate, st, gaps, evict_t, a["id"], nwords,
                    burst, budget, drop, a.get("max_spins", 256), gap_ns, a.get("vary", False))
        attempted += n
        if n < budget:
            idle.idle()
        else:
            idle.busy()
    while not publish_end(ring.ctrl, ring.words, prod.pstate, st, nwords, 256):
        idle.idle()
    elapsed = time.monotonic() - t0
    ctrl = ring.ctrl
    emit("result", id=a["id"], resume=resume, final=prod.cursor, attempted=attempted + 1,
         published=int(ctrl[L.PS_PUBLISHED]), dropped=int(ctrl[L.PS_DROPPED_FULL]),
         evictions=int(ctrl[L.PS_EVICTIONS]), full_waits=int(ctrl[L.PS_FULL_WAITS]),
         gaps=[[int(x), int(y)] for x, y in gaps[:st[PR_NGAPS]]],
         evict_t=[int(x) for x in evict_t[:st[PR_NEVICT]]], guard_waits=guard_waits,
         start_ns=t0_ns, elapsed=elapsed)
    prod.close()
    ring.close()


def _line_stats(ring: Ring, index: int) -> dict:
    line = ring.consumer_lines[index]
    return {f: int(line[f]) for f in ("cursor", "state", "lost", "delivered", "rejoins")}


def _hold(ring: Ring, cons, st, where: str, burst: int, cmds: Commands):
    """Stop polling until a "resume" command, like a consumer stuck in its handler.

    ``where`` = "burst": stuck holding a peeked, unreleased burst (an eviction meanwhile is
    noticed by ``release``).  "between": stuck between bursts with nothing peeked and its
    cached view of the producer used up (an eviction is noticed by the next ``peek``).
    Returns the rejoin record when the eviction was noticed here (the "burst" case)."""
    ctrl, cstate = ring.ctrl, cons.cstate
    if where == "between":
        # use up the cached producer cursor, so that the next peek must read the shared line
        while cstate[K.CS_CACHED_HEAD] - cstate[K.CS_CURSOR] >= burst:
            r = consume(ctrl, ring.words, cstate, st, burst, 1, 1)
            if r != RET_BUDGET:
                raise RuntimeError(f"hold between bursts: consume returned {r}")
        emit("holding", where=where, peeked=0)
        cmds.wait("resume")
        return None
    k = 0
    while k <= 0:
        k = K.peek(ctrl, cstate, burst)
        if k < 0:
            raise RuntimeError("hold in a burst: evicted before holding")
    emit("holding", where=where, peeked=int(k))
    cmds.wait("resume")
    expected = int(st[C_EXP])
    if K.release(ctrl, cstate, k) >= 0:
        # not evicted: these k slots were consumed without being checked; make that loud
        st[C_ERRS] += k
        st[C_EXP] += k
        return {"via": "not-evicted", "expected": expected, "cursor": cons.cursor,
                "missed": 0, "discarded": 0, "data_before": int(st[C_DATA]),
                "t_ns": time.time_ns()}
    missed = K.rejoin(ctrl, cstate, now_ns())
    st[C_EXP] = cons.cursor
    return {"via": "release", "expected": expected, "cursor": cons.cursor, "missed": int(missed),
            "discarded": int(k), "data_before": int(st[C_DATA]), "t_ns": time.time_ns()}


def run_consumer(a: dict, cmds: Commands) -> None:
    ring = Ring.open(a["ring"])
    cons = ring.consumer()
    st = np.zeros(C_WORDS, dtype=np.int64)
    join = cons.cursor
    st[C_EXP] = join
    st[C_PROD] = a.get("producer", 1)
    st[C_END] = -1
    st[C_SWITCH_SEQ] = -1
    st[C_LAST_ATT] = -1
    st[C_NWORDS] = ring.slot_size // 8
    st[C_HOLD_SPINS] = a.get("hold_spins", 0)
    st[C_VARY] = a.get("vary", False)
    emit("ready", index=cons.index, cursor=join, pid=os.getpid())
    idle = Idle()
    rejoins = []
    t0 = time.monotonic()
    burst = a.get("burst", 32)
    while True:
        r = consume(ring.ctrl, ring.words, cons.cstate, st, burst, 1 << 16, 2000)
        if r == RET_END:
            break
        if r == RET_EVICTED:
            expected = int(st[C_EXP])
            missed = K.rejoin(ring.ctrl, cons.cstate, now_ns())
            cursor = cons.cursor
            rejoins.append({"via": "peek" if st[C_NOTICE] == NOTICE_PEEK else "release",
                            "expected": expected, "cursor": cursor, "missed": int(missed),
                            "discarded": int(st[C_DISCARD]), "data_before": int(st[C_DATA]),
                            "t_ns": time.time_ns()})
            st[C_EXP] = cursor
            continue
        if r == RET_IDLE:
            idle.idle()
        else:
            idle.busy()
        for cmd in cmds.poll():
            if cmd.startswith("hold"):
                hold_result = _hold(ring, cons, st, cmd.split()[1], burst, cmds)
                if hold_result is not None:
                    rejoins.append(hold_result)
    emit("result", index=cons.index, join=join, data=int(st[C_DATA]), errors=int(st[C_ERRS]),
         overwritten=int(st[C_OVERWRITTEN]),
         first_error=[int(x) for x in st[C_FE:C_FE + 5]] if st[C_ERRS] else None,
         end=int(st[C_END]), switches=int(st[C_SWITCHES]), switch_seq=int(st[C_SWITCH_SEQ]),
         producer=int(st[C_PROD]), rejoins=rejoins, line=_line_stats(ring, cons.index),
         elapsed=time.monotonic() - t0)
    cons.close()
    ring.close()


def run_lossy_consumer(a: dict, cmds: Commands) -> None:
    ring = Ring.open(a["ring"])
    cons = ring.consumer()
    sw = ring.slot_stride // 8
    fast_burst = a.get("burst", 32)
    slow_sleep = a.get("slow_sleep", 0.0)      # seconds slept after each (1-message) receive
    out = np.zeros(max(fast_burst, 256) * sw, dtype=np.int64)
    st = np.zeros(Y_WORDS, dtype=np.int64)
    join = cons.cursor
    st[Y_LAST] = join - 1
    st[Y_END] = -1
    st[Y_PROD] = a.get("producer", 1)
    st[Y_NWORDS] = ring.slot_size // 8
    emit("ready", index=cons.index, cursor=join, pid=os.getpid())
    idle = Idle()
    slow = slow_sleep > 0
    t0 = time.monotonic()
    while True:
        if slow:
            r = consume_lossy(ring.ctrl, ring.words, cons.cstate, out, st, 1, 1, 1)
            time.sleep(slow_sleep)
            if "fast" in cmds.poll():
                slow = False
        else:
            r = consume_lossy(ring.ctrl, ring.words, cons.cstate, out, st, fast_burst, 4096,
                              2000)
            if r == RET_IDLE:
                idle.idle()
            else:
                idle.busy()
            cmds.poll()
        if r == RET_END:
            break
    emit("result", index=cons.index, join=join, delivered=int(st[Y_DELIV]),
         torn=int(st[Y_TORN]), first_torn=[int(x) for x in st[Y_FE:Y_FE + 3]] if st[Y_TORN]
         else None, nonincreasing=int(st[Y_NONINC]), gaps=int(st[Y_GAPS]),
         gap_total=int(st[Y_GAP_TOTAL]), end=int(st[Y_END]), line=_line_stats(ring, cons.index),
         elapsed=time.monotonic() - t0)
    cons.close()
    ring.close()


def run_warmup(a: dict, cmds: Commands) -> None:
    """Compile every kernel above with the argument types the workers use (slots writable for
    the producer, read-only for consumers), through a tiny ring of each mode."""
    for mode in ("lossless", "lossy"):
        name = f"{a['ring']}.{mode}"
        ring = Ring.create(name, slots=64, slot_size=64, mode=mode, full_policy="wait",
                           shm=True, max_consumers=2)
        try:
            view = Ring.open(name)
            cons = view.consumer()
            prod = ring.producer()
            nwords = ring.slot_size // 8
            pst = np.zeros(PR_WORDS, dtype=np.int64)
            gaps = np.zeros((4, 2), dtype=np.int64)
            ev = np.zeros(4, dtype=np.int64)
            assert produce(ring.ctrl, ring.words, prod.pstate, pst, gaps, ev, 1, nwords, 8, 40,
                           mode == "lossy", 4, 10**9, mode == "lossy") == 40
            assert publish_end(ring.ctrl, ring.words, prod.pstate, pst, nwords, 4)
            if mode == "lossless":
                st = np.zeros(C_WORDS, dtype=np.int64)
                st[C_PROD], st[C_END], st[C_LAST_ATT], st[C_NWORDS] = 1, -1, -1, nwords
                assert consume(view.ctrl, view.words, cons.cstate, st, 8, 1000, 10) == RET_END
                assert st[C_DATA] == 40 and st[C_ERRS] == 0, st
                assert K.rejoin(view.ctrl, cons.cstate, now_ns()) == -1   # not evicted
            else:
                out = np.zeros(8 * (ring.slot_stride // 8), dtype=np.int64)
                st = np.zeros(Y_WORDS, dtype=np.int64)
                st[Y_LAST], st[Y_END], st[Y_PROD], st[Y_NWORDS] = -1, -1, 1, nwords
                assert consume_lossy(view.ctrl, view.words, cons.cstate, out, st, 8, 100,
                                     10) == RET_END
                assert st[Y_DELIV] == 41 and st[Y_TORN] == 0, st
            cons.close()
            prod.close()
            view.close()
        finally:
            ring.close()
            Ring.remove(name)
    emit("result", ok=True)


ROLES = {"producer": run_producer, "consumer": run_consumer,
         "lossy_consumer": run_lossy_consumer, "warmup": run_warmup}


def main(argv: list[str]) -> int:
    die_with_parent()
    role, args = argv[0], json.loads(argv[1]) if len(argv) > 1 else {}
    try:
        ROLES[role](args, Commands())
    except SystemExit:
        raise
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    # Import this file as the module ``mp_workers`` so that the kernels compile and cache under
    # that name (not ``__main__``), the same whether the test or a worker loads them.
    import mp_workers
    sys.exit(mp_workers.main(sys.argv[1:]))
