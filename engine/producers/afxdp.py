"""The AF_XDP producer: frames off an interface's RX queue, through an XDP program that keeps
what the filter does not want in the kernel stack, into a hugering ring.

    from shm.ring import Ring
    from engine.producers.afxdp import AfXdpProducer
    ring = Ring.create("md", slots=65536)
    with AfXdpProducer(ring, "eth1", queue=0, filter="udp and dst port 30001") as p:
        print(p.describe())          # mode obtained: xdp native/skb, bind zerocopy/copy, ...
        rep = p.run(duration=10)     # published, dropped, nic drops, user-space rejects ...
        p.set_filter("udp")          # new rules for the next frames, same socket

Data path
---------
::

    NIC queue q ──XDP program (rules in maps; xdp_filter.bpf.c)──┬─ no rule: XDP_PASS (stack)
                                                                 └─ rule: redirect xsks_map[q]
    AF_XDP socket: kernel copies (copy mode) or DMAs (zero-copy) the frame into a UMEM frame
    and posts {addr, len} on the RX ring
    rx_loop (@njit): RX descs ─► [user-space filter if the pushdown is inexact] ─► ring slots
                     (reserve / copy / submit, one timestamp per burst) ─► frame address back
                     on the fill ring

The UMEM is ``frames`` x ``frame_size`` bytes on a hugetlbfs file (unlinked at once: nothing is
left behind however the process ends), or anonymous memory with one warning line when no huge
pages are free.  The UMEM holds exactly as many frames as the fill ring has entries, so the fill
ring can never overflow and a frame is always in exactly one place: fill ring, kernel, RX ring,
or being copied.  The four XSK rings are read through ``numba.carray`` views over their mmapped
addresses (``_ptr_*`` intrinsics below); their u32 producer/consumer indices only through
``engine.producers.xsk_atomics`` (the barrier labels RX-C, RX-D, FQ-B are explained there).

Overload behaviour (the ring's, decided at its creation, as in ``synthetic.py``): *lossless +
drop* publishes what fits, counts the rest (``kernels.count_dropped``) and recycles their
frames; *lossless + wait* leaves the descriptors that do not fit on the RX ring and spins on
``reserve`` until consumers make room -- the kernel then drops at the socket (``rx_ring_full``)
and those drops show up as NIC drops; *lossy* never waits.  NIC-side drops (``XDP_STATISTICS``
rx_dropped + rx_ring_full; fill-ring-empty events are part of rx_dropped) are folded into the
ring's ``nic_drops`` counter (``shm.layout.PS_NIC_DROPS``) every ``STATS_EVERY_S``, so
``hugering stat`` shows them; the same fold fills the ring's source_stats line (``L.SS_*``:
frames taken, missed, invalid descriptors, fill-ring-empty events, and the UMEM as a pool --
frames the kernel cannot fill are in use -- which ``engine.leak`` watches).

Idle: the loop spins on the RX ring; after ``spin`` empty polls it hands back to Python, which
sleeps in ``poll()`` on the socket for at most ``poll_ms`` (in copy mode the fill ring's
need-wakeup flag is never set, so a sleeping reader must poll).  ``idle="busy"`` never sleeps.

Lifecycle: ``close()`` (also on an exception in ``with``, and at interpreter exit through a
finalizer) removes the socket, detaches the program when no other hugering producer on the
interface still uses it, frees the UMEM and leaves the ring.  A run killed with SIGKILL leaves
its program attached (the kernel keeps an XDP program on the interface until someone detaches
it); the next start finds it -- hugering's program, and no live owner holding the interface's
queue locks -- removes it and says so (``stale_removed`` in ``describe()``, one warning line).

Transmit (``tx_ring=``): the producer is also a consumer of a lossless hugering ring; each
pass of the loop takes completed TX frames back, copies new slots into free TX frames of the
UMEM, posts them on the XSK TX ring and calls ``sendto`` while the kernel has descriptors to
take (``tx_step``).  A slow NIC leaves slots in the TX ring (back-pressure), nothing is dropped;
failures are counted with their errno; ``close`` waits (bounded) for outstanding completions.

Several queues: one ``AfXdpProducer`` per (interface, queue), each with its own socket, UMEM
and ring (``AfXdpQueues`` runs them in threads, one cpu each).  The XDP program and its rules
belong to the interface: the first producer attaches it, the others -- in this process or
another -- share it (same filter required), the last one to close detaches it.

Single producer per ring (the ring refuses a second live one), one socket per (interface,
queue) per machine (a queue lock refuses a second).
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import logging
import mmap
import os
import resource
import select
import time
import weakref
from pathlib import Path

import numpy as np
from llvmlite import ir
from numba import carray, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from parsers.filters import match as K_match
from parsers.l2l4 import parse_frame as K_parse
from shm import backing as B
from shm import kernels as K
from shm import layout as L
from shm.clock import now_ns
from shm.ring import Producer, Ring

from .xsk_atomics import load_acquire_u32, load_relaxed_u32, store_release_u32

log = logging.getLogger("hugering.afxdp")

PROGRAM_NAME = "hugering_xdp"         # the C function name: how a stale program is recognised
LOCK_DIR = Path(os.environ.get("HUGERING_RUN_DIR", "/run/hugering")) / "afxdp"
NET_SYSFS = Path("/sys/class/net")
STATS_EVERY_S = 0.1                   # XDP_STATISTICS -> ring counters, at most this often
EBUSY_RETRY_S = 1.5                   # xsk_socket__create may say EBUSY just after a close
DEFAULT_FRAMES = 16384                # 2048-entry rings overflow during stalls on small VMs

# capabilities (linux/capability.h)
CAP_NET_ADMIN, CAP_NET_RAW, CAP_IPC_LOCK, CAP_SYS_ADMIN, CAP_BPF = 12, 13, 14, 21, 39

# --- xs: the socket's rings and UMEM as int64 words (addresses and sizes) ----------------------
XS_RX_PROD, XS_RX_CONS, XS_RX_RING, XS_RX_SIZE = 0, 1, 2, 3
XS_FQ_PROD, XS_FQ_CONS, XS_FQ_RING, XS_FQ_SIZE, XS_FQ_FLAGS = 4, 5, 6, 7, 8
XS_UMEM, XS_UMEM_SIZE, XS_FRAME_SIZE, XS_FRAMES = 9, 10, 11, 12
XS_TX_PROD, XS_TX_CONS, XS_TX_RING, XS_TX_SIZE, XS_TX_FLAGS = 13, 14, 15, 16, 17
XS_CQ_PROD, XS_CQ_CONS, XS_CQ_RING, XS_CQ_SIZE = 18, 19, 20, 21
XS_FD, XS_TX_FRAMES = 22, 23
XS_WORDS = 32

# --- st: private state of the loop (process-local) ---------------------------------------------
ST_RX_CONS = 0       # our copy of the RX consumer index (u32, free-running)
ST_FQ_PROD = 1       # our copy of the fill producer index (u32, free-running)
ST_RX = 2            # descriptors taken off the RX ring
ST_ACCEPTED = 3      # frames the filter selected (published + dropped)
ST_PUBLISHED = 4
ST_DROPPED = 5       # ring full (lossless + drop)
ST_REJECTED = 6      # redirected by the kernel, rejected by the user-space filter
ST_BYTES = 7         # bytes published (wire lengths)
ST_BURSTS = 8
ST_FULL_SPINS = 9    # reserve calls that found the ring full while waiting
ST_TRUNCATED = 10    # frames longer than a slot (cut, flagged)
ST_WAKEUPS = 11      # fill-ring need-wakeup seen
ST_EMPTY = 12        # empty polls handed back to Python
ST_TX_PROD = 16      # our copy of the TX producer index (u32)
ST_CQ_CONS = 17      # our copy of the completion consumer index (u32)
ST_TX_FREE = 18      # TX frames on the free stack (txfree[0 .. ST_TX_FREE-1])
ST_TX_QUEUED = 19    # frames put on the XSK TX ring
ST_TX_DONE = 20      # completions: frames the kernel has sent (or given up on)
ST_TX_BYTES = 21
ST_TX_TOO_LONG = 22  # TX slots longer than a UMEM frame (or empty): counted, not sent
ST_TX_KICKS = 23     # sendto() wake-ups
ST_TX_ERRORS = 24    # sendto() failures other than "try again"
ST_TX_ERRNO = 25     # the last such errno
ST_TX_LOST = 26      # TX ring slots missed after an eviction by the TX ring's producer
STATE_WORDS = 32

RET_COUNT, RET_DEADLINE, RET_CHUNK, RET_IDLE, RET_WAKEUP = 0, 1, 2, 3, 4
CHUNK_NS = 20_000_000          # hand back to Python this often (stop flags, statistics)
M32 = 0xFFFFFFFF


class AfXdpError(RuntimeError):
    """A setup problem, in one readable sentence.  ``kind``: interface, permission, memlock,
    queue, unsupported, busy, config, system."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


# --- raw addresses into Numba ------------------------------------------------------------------
def _ptr_intrinsic(nbtype):
    @intrinsic
    def _ptr(typingctx, addr):
        if not isinstance(addr, types.Integer):
            return None
        sig = types.CPointer(nbtype)(addr)

        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], ir.PointerType(context.get_data_type(nbtype)))

        return sig, codegen
    return _ptr


_ptr_u32 = _ptr_intrinsic(types.uint32)
_ptr_i64 = _ptr_intrinsic(types.int64)
_ptr_u8 = _ptr_intrinsic(types.uint8)


@intrinsic
def _kick(typingctx, fd):
    """``sendto(fd, NULL, 0, MSG_DONTWAIT, NULL, 0)``: ask the kernel to process the TX ring
    (copy mode sends in this call, at most 32 frames per call).  Returns the result, or -errno."""
    if not isinstance(fd, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        i32, i64, i8p = ir.IntType(32), ir.IntType(64), ir.IntType(8).as_pointer()
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(i64, [i32, i8p, i64, i32, i8p, i32]), "sendto")
        null = ir.Constant(i8p, None)
        r = builder.call(fn, [builder.trunc(args[0], i32), null, ir.Constant(i64, 0),
                              ir.Constant(i32, 0x40), null, ir.Constant(i32, 0)])
        efn = cgutils.get_or_insert_function(builder.module,
                                             ir.FunctionType(i32.as_pointer(), []),
                                             "__errno_location")
        err = builder.sext(builder.load(builder.call(efn, [])), i64)
        neg = builder.icmp_signed("<", r, ir.Constant(i64, 0))
        return builder.select(neg, builder.neg(err), r)

    return types.int64(fd), codegen


# --- the hot loop --------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def fill_frames(xs, st, txfree):
    """Put every RX frame of the UMEM on the fill ring (setup: the ring is empty and as large
    as the RX part of the UMEM), and every TX frame (the ones after) on the TX free stack."""
    for i in range(xs[XS_TX_FRAMES]):
        txfree[i] = (xs[XS_FRAMES] + i) * xs[XS_FRAME_SIZE]
    st[ST_TX_FREE] = xs[XS_TX_FRAMES]
    fq_prod = carray(_ptr_u32(xs[XS_FQ_PROD]), 1)
    fq = carray(_ptr_i64(xs[XS_FQ_RING]), xs[XS_FQ_SIZE])
    mask = xs[XS_FQ_SIZE] - 1
    p = load_acquire_u32(fq_prod, 0)
    for i in range(xs[XS_FRAMES]):
        fq[(p + i) & mask] = i * xs[XS_FRAME_SIZE]
    p = (p + xs[XS_FRAMES]) & M32
    store_release_u32(fq_prod, 0, p)            # FQ-B: pairs with the kernel's FQ-C
    st[ST_FQ_PROD] = p


@njit(cache=True, nogil=True)
def tx_step(xs, st, tctrl, twords, cstate, txfree, umem, umem_w, burst):
    """One pass of the transmit side; returns the work done (0: nothing to do).

    1. completions: frames the kernel is done with go back on the TX free stack;
    2. up to ``burst`` slots of the TX hugering ring (this producer is one of its consumers)
       are copied into free TX frames and posted on the XSK TX ring -- as many as the TX
       ring, the free frames and the slots allow: when the NIC is slower, slots stay in the
       hugering ring (lossless back-pressure on the engine), nothing is dropped;
    3. while the TX ring holds descriptors the kernel has not taken, ``sendto`` (the TX
       ring's need-wakeup flag; in copy mode it is always set).  A failure other than
       EAGAIN/EBUSY/ENOBUFS ("try again") is counted with its errno."""
    cq_prod = carray(_ptr_u32(xs[XS_CQ_PROD]), 1)
    cq_cons = carray(_ptr_u32(xs[XS_CQ_CONS]), 1)
    cq_size = xs[XS_CQ_SIZE]
    cq = carray(_ptr_i64(xs[XS_CQ_RING]), cq_size)
    tx_prod = carray(_ptr_u32(xs[XS_TX_PROD]), 1)
    tx_cons = carray(_ptr_u32(xs[XS_TX_CONS]), 1)
    tx_flags = carray(_ptr_u32(xs[XS_TX_FLAGS]), 1)
    tx_size = xs[XS_TX_SIZE]
    tx = carray(_ptr_i64(xs[XS_TX_RING]), 2 * tx_size)
    frame_size = xs[XS_FRAME_SIZE]
    frame_mask = ~(frame_size - 1)
    work = 0
    # 1. completions
    c = st[ST_CQ_CONS]
    nc = (load_acquire_u32(cq_prod, 0) - c) & M32        # CQ-C: pairs with the kernel's CQ-B
    if nc > 0:
        for i in range(nc):
            txfree[st[ST_TX_FREE]] = cq[(c + i) & (cq_size - 1)] & frame_mask
            st[ST_TX_FREE] += 1
        c = (c + nc) & M32
        st[ST_CQ_CONS] = c
        store_release_u32(cq_cons, 0, c)                 # CQ-D: pairs with the kernel's CQ-A
        st[ST_TX_DONE] += nc
        work += nc
    # 2. new frames from the TX hugering ring
    txp = st[ST_TX_PROD]
    room = tx_size - ((txp - load_acquire_u32(tx_cons, 0)) & M32)   # TX-A: pairs with TX-D
    want = burst
    if room < want:
        want = room
    if st[ST_TX_FREE] < want:
        want = st[ST_TX_FREE]
    if want > 0:
        k = K.peek(tctrl, cstate, want)
        if k < 0:                        # evicted by the TX ring's producer: count, rejoin
            missed = K.rejoin(tctrl, cstate, now_ns())
            if missed > 0:
                st[ST_TX_LOST] += missed
            k = 0
        if k > 0:
            tsw = cstate[K.CS_STRIDE_W]
            tslot = cstate[K.CS_SLOT_SIZE]
            for j in range(k):
                sb = K.consumer_slot(cstate, j) * tsw
                cap = (twords[sb + L.S_LENS] >> 32) & M32
                if cap > tslot:
                    cap = tslot
                if cap == 0 or cap > frame_size:
                    st[ST_TX_TOO_LONG] += 1
                    continue
                st[ST_TX_FREE] -= 1
                addr = txfree[st[ST_TX_FREE]]
                aw = addr >> 3
                pw = sb + L.S_PAYLOAD
                nw = cap >> 3
                for w in range(nw):          # whole words inside the frame, then the tail
                    umem_w[aw + w] = twords[pw + w]
                for b in range(nw << 3, cap):
                    umem[addr + b] = (twords[pw + (b >> 3)] >> ((b & 7) << 3)) & 0xFF
                d = (txp & (tx_size - 1)) << 1
                tx[d] = addr
                tx[d + 1] = cap
                txp += 1
                st[ST_TX_QUEUED] += 1
                st[ST_TX_BYTES] += cap
            txp &= M32
            st[ST_TX_PROD] = txp
            store_release_u32(tx_prod, 0, txp)           # TX-B: pairs with the kernel's TX-C
            K.release(tctrl, cstate, k)
            work += k
    # 3. wake the kernel while it has descriptors to take
    if ((txp - load_acquire_u32(tx_cons, 0)) & M32) != 0:
        work += 1
        if (load_relaxed_u32(tx_flags, 0) & 1) != 0:     # XDP_RING_NEED_WAKEUP
            r = _kick(xs[XS_FD])
            st[ST_TX_KICKS] += 1
            if r < 0 and r != -11 and r != -16 and r != -105:   # EAGAIN, EBUSY, ENOBUFS
                st[ST_TX_ERRORS] += 1
                st[ST_TX_ERRNO] = -r
    elif st[ST_TX_FREE] < xs[XS_TX_FRAMES]:
        work += 1                        # completions still to come
    return work


@njit(cache=True, nogil=True)
def tx_flush(xs, st, tctrl, twords, cstate, txfree, burst):
    """One ``tx_step`` outside the loop (close: wait for what was queued to complete)."""
    umem = carray(_ptr_u8(xs[XS_UMEM]), xs[XS_UMEM_SIZE])
    umem_w = carray(_ptr_i64(xs[XS_UMEM]), xs[XS_UMEM_SIZE] >> 3)
    return tx_step(xs, st, tctrl, twords, cstate, txfree, umem, umem_w, burst)


@njit(cache=True, nogil=True)
def rx_loop(ctrl, words, slot_bytes, pstate, xs, st, verdict, code, consts, ac_next, ac_out,
            recs, check, parse, limit, until_ns, chunk_ns, burst, wait_full, portq, spin,
            has_tx, tctrl, twords, cstate, txfree):
    """Move frames from the socket's RX ring into the hugering ring until ``limit`` accepted
    frames (-1: none), ``until_ns`` (CLOCK_REALTIME, 0: none), ``chunk_ns`` elapsed, or ``spin``
    empty polls in a row (0: never); returns RET_*.  Single producer only; allocates nothing.

    ``check``: run the user-space filter (``code .. ac_out``, a ``parsers.filters`` program) on
    each frame, ``parse``: parse it first (the filter reads the payload).  ``has_tx``: also
    drain the TX hugering ring (``tctrl``/``twords``/``cstate``: this producer's consumer of
    it; ``txfree``: the TX frame stack) with ``tx_step`` on every pass."""
    prog = (code, consts, ac_next, ac_out)
    rx_prod = carray(_ptr_u32(xs[XS_RX_PROD]), 1)
    rx_cons = carray(_ptr_u32(xs[XS_RX_CONS]), 1)
    rx_size = xs[XS_RX_SIZE]
    rx = carray(_ptr_i64(xs[XS_RX_RING]), 2 * rx_size)   # xdp_desc {u64 addr; u32 len; u32 opt}
    fq_prod = carray(_ptr_u32(xs[XS_FQ_PROD]), 1)
    fq_flags = carray(_ptr_u32(xs[XS_FQ_FLAGS]), 1)
    fq_size = xs[XS_FQ_SIZE]
    fq = carray(_ptr_i64(xs[XS_FQ_RING]), fq_size)
    umem = carray(_ptr_u8(xs[XS_UMEM]), xs[XS_UMEM_SIZE])
    umem_w = carray(_ptr_i64(xs[XS_UMEM]), xs[XS_UMEM_SIZE] >> 3)
    rx_mask = rx_size - 1
    fq_mask = fq_size - 1
    frame_mask = ~(xs[XS_FRAME_SIZE] - 1)
    slot_size = pstate[K.PS_SLOT_SIZE]
    now = now_ns()
    chunk_end = now + chunk_ns
    empty = 0
    while True:
        if limit >= 0 and st[ST_ACCEPTED] >= limit:
            return RET_COUNT
        if now >= chunk_end:
            return RET_CHUNK
        if until_ns != 0 and now >= until_ns:
            return RET_DEADLINE
        did = 0
        if has_tx:
            did = tx_step(xs, st, tctrl, twords, cstate, txfree, umem, umem_w, burst)
        cons = st[ST_RX_CONS]
        avail = (load_acquire_u32(rx_prod, 0) - cons) & M32   # RX-C: pairs with kernel RX-B
        if avail == 0:
            # slow path: nothing there.  Read the clock now and then (deadlines), and after
            # `spin` empty polls let Python sleep in poll()
            if did > 0:
                empty = 0
                now = now_ns()
                continue
            empty += 1
            if (empty & 255) == 0:
                now = now_ns()
            if spin > 0 and empty >= spin:
                st[ST_EMPTY] += 1
                return RET_IDLE
            continue
        empty = 0
        n = avail if avail < burst else burst
        now = now_ns()                                  # one timestamp per burst
        # pass 1: verdicts (how many slots this burst needs)
        acc = 0
        for i in range(n):
            d = ((cons + i) & rx_mask) << 1
            addr = rx[d]
            ln = rx[d + 1] & M32
            v = 1
            if check:
                if parse:
                    K_parse(umem, addr, ln, recs[0])
                v = 1 if K_match(recs[0], umem, addr, ln, ln, prog) else 0
            verdict[i] = v
            acc += v
            if limit >= 0 and st[ST_ACCEPTED] + acc >= limit:
                n = i + 1
                break
        k = 0
        if acc > 0:
            k = K.reserve(ctrl, words, pstate, acc)
            if k < acc:
                if wait_full:
                    if k == 0:
                        # lossless + wait and full: leave the descriptors where they are
                        # (the kernel drops at the socket when its RX ring fills; counted)
                        st[ST_FULL_SPINS] += 1
                        now = now_ns()
                        continue
                    seen = 0                            # take only the frames that fit
                    for i in range(n):
                        seen += verdict[i]
                        if seen == k:
                            n = i + 1
                            break
                    acc = k
                else:
                    K.count_dropped(ctrl, pstate, acc - k)   # lossless + drop: count, go on
                    st[ST_DROPPED] += acc - k
        # pass 2: copy the accepted frames into slots 0..k-1; every frame back to the fill ring
        j = 0
        nbytes = 0
        fp = st[ST_FQ_PROD]
        for i in range(n):
            d = ((cons + i) & rx_mask) << 1
            addr = rx[d]
            ln = rx[d + 1] & M32
            if verdict[i] != 0 and j < k:
                base = K.slot_base(pstate, j)
                cap = ln
                flags = 0
                if cap > slot_size:
                    cap = slot_size
                    flags = L.SLOT_FLAG_TRUNCATED
                    st[ST_TRUNCATED] += 1
                words[base + L.S_TS] = now
                words[base + L.S_LENS] = ln | (cap << 32)
                words[base + L.S_PORTQ] = portq | (flags << 32)
                pw = base + L.S_PAYLOAD
                if (addr & 7) == 0:
                    # whole words: up to 7 bytes past the frame are read from its own UMEM frame
                    # and land in the slot's own padding (stride >= 32 + slot_size rounded to 8)
                    aw = addr >> 3
                    for w in range((cap + 7) >> 3):
                        words[pw + w] = umem_w[aw + w]
                else:
                    off = pw << 3
                    for b in range(cap):
                        slot_bytes[off + b] = umem[addr + b]
                j += 1
                nbytes += ln
            elif verdict[i] == 0:
                st[ST_REJECTED] += 1
            fq[fp & fq_mask] = addr & frame_mask        # copy mode: addr includes the headroom
            fp += 1
        fp &= M32
        st[ST_RX_CONS] = (cons + n) & M32
        store_release_u32(rx_cons, 0, st[ST_RX_CONS])  # RX-D: pairs with the kernel's RX-A
        store_release_u32(fq_prod, 0, fp)               # FQ-B: pairs with the kernel's FQ-C
        st[ST_FQ_PROD] = fp
        st[ST_RX] += n
        st[ST_ACCEPTED] += acc
        if k > 0:
            K.submit(ctrl, words, pstate, k, now)
            st[ST_PUBLISHED] += k
            st[ST_BYTES] += nbytes
            st[ST_BURSTS] += 1
        if (load_relaxed_u32(fq_flags, 0) & 1) != 0:   # XDP_RING_NEED_WAKEUP (zero-copy)
            st[ST_WAKEUPS] += 1
            return RET_WAKEUP



# --- setup helpers (plain Python) ----------------------------------------------------------------
def _cap_eff() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def _netns_id() -> int:
    try:
        return os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return 0


def interfaces() -> list[str]:
    try:
        return sorted(p.name for p in NET_SYSFS.iterdir())
    except OSError:
        return []


def rx_queues(ifname: str) -> list[int]:
    """The interface's RX queue numbers, from sysfs (``ethtool -l`` shows the same count)."""
    try:
        return sorted(int(q.name[3:]) for q in (NET_SYSFS / ifname / "queues").iterdir()
                      if q.name.startswith("rx-"))
    except (OSError, ValueError):
        return []


def check_interface(ifname: str) -> int:
    """The interface's index, or AfXdpError(kind="interface") naming the ones that exist."""
    if not isinstance(ifname, str) or not ifname or len(ifname) > 15 or "/" in ifname:
        raise AfXdpError("interface", f"invalid interface name {ifname!r}")
    try:
        return int((NET_SYSFS / ifname / "ifindex").read_text())
    except (OSError, ValueError):
        here = ", ".join(interfaces()) or "none"
        raise AfXdpError("interface", f"no network interface {ifname!r} in this network "
                                      f"namespace (interfaces here: {here})") from None


def check_privileges() -> None:
    """AfXdpError(kind="permission") unless this process may load XDP programs and open AF_XDP
    sockets."""
    cap = _cap_eff()
    missing = [n for n, b in (("CAP_NET_ADMIN", CAP_NET_ADMIN), ("CAP_NET_RAW", CAP_NET_RAW))
               if not cap >> b & 1]
    if not (cap >> CAP_BPF & 1 or cap >> CAP_SYS_ADMIN & 1):
        missing.append("CAP_BPF (or CAP_SYS_ADMIN)")
    if missing:
        who = "root without those capabilities" if os.geteuid() == 0 else \
            f"uid {os.geteuid()}, not root"
        raise AfXdpError("permission", f"AF_XDP needs root (or CAP_NET_ADMIN, CAP_NET_RAW and "
                                       f"CAP_BPF): this process ({who}) lacks "
                                       f"{', '.join(missing)}; run it as root, e.g. "
                                       f"'sudo hugering afxdp ...'")


def check_queue(ifname: str, queue: int) -> None:
    qs = rx_queues(ifname)
    if not isinstance(queue, int) or queue < 0 or (qs and queue not in qs):
        have = f"{len(qs)} RX queue{'s' if len(qs) != 1 else ''} " \
               f"({', '.join(map(str, qs[:8]))}{' ...' if len(qs) > 8 else ''})" if qs else \
            "no RX queue listed in sysfs"
        raise AfXdpError("queue", f"queue {queue} is out of range for {ifname}: it has {have}; "
                                  f"'ethtool -l {ifname}' shows and sets the count")


def _fmt_bytes(n: int) -> str:
    if n >= 1 << 30 and n % (1 << 30) == 0:
        return f"{n >> 30} GiB"
    if n >= 1 << 20:
        return f"{n / (1 << 20):.0f} MiB"
    return f"{n >> 10} KiB"


def check_memlock(need: int) -> str:
    """Make sure ``need`` bytes may be locked (the kernel pins the UMEM and charges it to
    RLIMIT_MEMLOCK unless the process has CAP_IPC_LOCK).  Raises the soft limit up to the hard
    one when that is enough; AfXdpError(kind="memlock") otherwise.  Returns what it found."""
    if _cap_eff() >> CAP_IPC_LOCK & 1:
        return "CAP_IPC_LOCK (no memlock limit applies)"
    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    inf = resource.RLIM_INFINITY
    if soft == inf or soft >= need:
        return f"RLIMIT_MEMLOCK {'unlimited' if soft == inf else _fmt_bytes(soft)}"
    if hard == inf or hard >= need:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (hard, hard))
        return f"RLIMIT_MEMLOCK raised to {'unlimited' if hard == inf else _fmt_bytes(hard)}"

    def show(v):
        return "unlimited" if v == inf else f"{_fmt_bytes(v)} (ulimit -l {v >> 10})"
    raise AfXdpError("memlock", f"memlock limit too low: RLIMIT_MEMLOCK is {show(soft)}, hard "
                                f"limit {show(hard)}, and the UMEM needs {_fmt_bytes(need)} of "
                                f"locked memory (the kernel pins it and, without CAP_IPC_LOCK, "
                                f"charges it to this limit, summed over the user's sockets).  "
                                f"Raise it: 'ulimit -l unlimited' in the (root) shell that "
                                f"starts hugering, 'prlimit "
                                f"--memlock=unlimited:unlimited --pid PID', LimitMEMLOCK="
                                f"infinity in a systemd unit, or a 'memlock' line in "
                                f"/etc/security/limits.conf; or use fewer --frames")


# --- locks: who uses which interface queue -------------------------------------------------------
class _Locks:
    """``.mutex``: one lock for the machine, held while a program is inspected, attached or
    detached (short; never removed, so no unlink race); ``<netns>-<ifindex>-q<queue>.owner``:
    held (flock) for a producer's whole life, with its pid and ring inside.  flock locks die with their process, so after a SIGKILL the owner file is
    still there (the pid of the dead run) but unlocked: that is how a stale program is told from
    a live one."""

    def __init__(self, ifindex: int, queue: int):
        LOCK_DIR.mkdir(parents=True, exist_ok=True)
        self.prefix = f"{_netns_id()}-{ifindex}"
        self.mutex_path = LOCK_DIR / ".mutex"
        self.owner_path = LOCK_DIR / f"{self.prefix}-q{queue}.owner"
        self._mutex = None
        self._owner = None
        self.previous: dict = {}
        self._sweep()

    @staticmethod
    def _sweep() -> None:
        """Owner files of dead runs on interfaces that no longer exist (a veth deleted after a
        kill -9) go; those of existing interfaces stay, to name the dead run later."""
        here = set()
        for d in interfaces():
            try:
                here.add(int((NET_SYSFS / d / "ifindex").read_text()))
            except (OSError, ValueError):
                pass
        for p in LOCK_DIR.glob(f"{_netns_id()}-*-q*.owner"):
            try:
                ifindex = int(p.name.split("-")[1])
            except (IndexError, ValueError):
                continue
            if ifindex in here:
                continue
            try:
                with open(p, "r") as f:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    p.unlink()
            except (OSError, BlockingIOError):
                pass

    def lock_interface(self) -> None:
        self._mutex = open(self.mutex_path, "a+")
        fcntl.flock(self._mutex, fcntl.LOCK_EX)

    def unlock_interface(self) -> None:
        if self._mutex is not None:
            fcntl.flock(self._mutex, fcntl.LOCK_UN)
            self._mutex.close()
            self._mutex = None

    def take_queue(self, info: dict) -> None:
        f = open(self.owner_path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            who = _read_owner(f.read())
            f.close()
            raise AfXdpError("busy", f"queue {info['queue']} of {info['interface']} is already "
                                     f"used by hugering pid {who.get('pid', '?')} (ring "
                                     f"{who.get('ring', '?')!r})") from None
        f.seek(0)
        self.previous = _read_owner(f.read())     # a run that died holding this queue, if any
        f.seek(0)
        f.truncate()
        f.write(json.dumps(info))
        f.flush()
        self._owner = f

    def release_queue(self) -> None:
        if self._owner is not None:
            try:
                self.owner_path.unlink()
            except OSError:
                pass
            fcntl.flock(self._owner, fcntl.LOCK_UN)
            self._owner.close()
            self._owner = None

    def others(self) -> tuple[list[dict], list[dict]]:
        """(live, dead) owner records of the other queues of this interface."""
        live, dead = [], []
        for p in LOCK_DIR.glob(f"{self.prefix}-q*.owner"):
            if p == self.owner_path and self._owner is not None:
                continue
            try:
                f = open(p, "r")
            except OSError:
                continue
            with f:
                rec = _read_owner(f.read())
                try:
                    fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    fcntl.flock(f, fcntl.LOCK_UN)
                    dead.append(rec)
                except BlockingIOError:
                    live.append(rec)
        return live, dead


def _read_owner(text: str) -> dict:
    try:
        return json.loads(text) if text.strip() else {}
    except ValueError:
        return {}


# --- UMEM memory -------------------------------------------------------------------------------
class _Umem:
    """``size`` bytes for the UMEM: a hugetlbfs file mapped shared and populated, unlinked at
    once; or anonymous memory (one warning line saying why)."""

    def __init__(self, lib, size: int, hugetlbfs: str | None):
        self.lib = lib
        libc = lib.libc
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                              ctypes.c_int, ctypes.c_long]
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        self.addr = None
        self.kind = "anonymous"
        why = None
        mount = hugetlbfs or B.DEFAULT_HUGETLBFS
        page = B.mount_page_size(mount)
        prot = mmap.PROT_READ | mmap.PROT_WRITE
        populate = getattr(mmap, "MAP_POPULATE", 0x8000)
        if page is None:
            why = f"{mount} is not a hugetlbfs mount"
        elif not os.access(mount, os.W_OK):
            why = f"this user may not write to {mount}"
        else:
            length = (size + page - 1) // page * page
            if B.free_hugepages(page) < length // page:
                why = (f"{B.free_hugepages(page)} huge pages of {page >> 10} KiB are free and the "
                       f"UMEM needs {length // page}")
            else:
                path = os.path.join(mount, f".hugering-umem.{os.getpid()}.{id(self):x}")
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    os.unlink(path)          # the mapping keeps it; nothing is left behind
                    a = libc.mmap(None, length, prot, mmap.MAP_SHARED | populate, fd, 0)
                    if a in (None, ctypes.c_void_p(-1).value):
                        why = f"mmap of {length} bytes on {mount} failed: " \
                              f"{os.strerror(ctypes.get_errno())}"
                    else:
                        self.addr, self.length, self.kind, self.page = a, length, "hugetlbfs", page
                finally:
                    os.close(fd)
        if self.addr is None:
            length = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE
            a = libc.mmap(None, length, prot, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | populate,
                          -1, 0)
            if a in (None, ctypes.c_void_p(-1).value):
                raise AfXdpError("system", f"cannot allocate a {_fmt_bytes(length)} UMEM: "
                                           f"{os.strerror(ctypes.get_errno())}")
            self.addr, self.length, self.page = a, length, mmap.PAGESIZE
            log.warning("AF_XDP UMEM uses anonymous memory (4 KiB pages) because %s; to use "
                        "huge pages, %s", why, B.HOW_TO_ENABLE)
        self.why = why

    def close(self) -> None:
        if self.addr is not None:
            self.lib.libc.munmap(self.addr, self.length)
            self.addr = None


def _prog_map_fds(lib, prog_fd: int) -> dict:
    """{map name: fd} of a loaded program (BPF_OBJ_GET_INFO_BY_FD: map ids, then each map's
    fd and name).  Offsets of struct bpf_prog_info / bpf_map_info from <linux/bpf.h>."""
    info = (ctypes.c_uint8 * 232)()
    ln = ctypes.c_uint32(232)
    if lib.bpf.bpf_obj_get_info_by_fd(prog_fd, info, ctypes.byref(ln)) < 0:
        raise AfXdpError("system", "cannot read the XDP program's info")
    n = int.from_bytes(bytes(info[52:56]), "little")          # nr_map_ids
    ids = (ctypes.c_uint32 * max(n, 1))()
    info2 = (ctypes.c_uint8 * 232)()
    ctypes.memmove(ctypes.addressof(info2) + 52, ctypes.byref(ctypes.c_uint32(n)), 4)
    ctypes.memmove(ctypes.addressof(info2) + 56,
                   ctypes.byref(ctypes.c_uint64(ctypes.addressof(ids))), 8)
    ln = ctypes.c_uint32(232)
    if lib.bpf.bpf_obj_get_info_by_fd(prog_fd, info2, ctypes.byref(ln)) < 0:
        raise AfXdpError("system", "cannot read the XDP program's map ids")
    out = {}
    for i in range(n):
        fd = lib.bpf.bpf_map_get_fd_by_id(ids[i])
        if fd < 0:
            continue
        minfo = (ctypes.c_uint8 * 88)()
        ln = ctypes.c_uint32(88)
        if lib.bpf.bpf_obj_get_info_by_fd(fd, minfo, ctypes.byref(ln)) < 0:
            os.close(fd)
            continue
        name = bytes(minfo[24:40]).split(b"\0", 1)[0].decode()
        out[name] = fd
    return out


def _compile(filter):
    """pcap-filter text, a ``parsers.filters.Filter`` or None -> a Filter or None."""
    if filter is None:
        return None
    from parsers.filters import Filter
    if isinstance(filter, Filter):
        return filter
    if isinstance(filter, str):
        from parsers.pcap_filter import compile_pcap_filter
        return compile_pcap_filter(filter)
    raise AfXdpError("config", f"filter: expected pcap-filter text or a Filter, got "
                               f"{type(filter).__name__}")


# --- the producer ------------------------------------------------------------------------------
class AfXdpProducer:
    """One AF_XDP socket on (``interface``, ``queue``) feeding ``ring`` as its single producer.
    Setup only: ``run`` calls the ``@njit`` loop ``rx_loop`` with the arrays prepared here.

    ``filter``: pcap-filter text, a ``parsers.filters.Filter``, or None (every frame); the part
    the kernel can evaluate is pushed into the XDP program (``describe()["pushdown"]``).
    ``xdp_mode``: native, skb, or auto (native, else skb).  ``bind``: zerocopy, copy, or auto
    (zero-copy, else copy).  ``frames`` UMEM frames of ``frame_size`` bytes (2048 or 4096; the
    fill and RX rings get ``frames`` entries).  ``burst``: descriptors per pass (default 64,
    at most the ring's capacity).  ``idle``:
    "poll" (sleep in poll() after ``spin`` empty polls) or "busy".  ``verify``: run the
    user-space filter even when the pushdown is exact."""

    def __init__(self, ring: Ring, interface: str, queue: int = 0, filter=None,
                 xdp_mode: str = "auto", bind: str = "auto", frames: int = DEFAULT_FRAMES,
                 frame_size: int = 2048, burst: int | None = None, hugetlbfs: str | None = None,
                 idle: str = "poll", spin: int = 20000, poll_ms: int = 10,
                 verify: bool = False, tx_ring: Ring | None = None, tx_frames: int = 4096):
        # --- validate at the edge ------------------------------------------------------------
        if xdp_mode not in ("auto", "native", "skb"):
            raise AfXdpError("config", f"xdp_mode: expected auto, native or skb, got "
                                       f"{xdp_mode!r}")
        if bind not in ("auto", "zerocopy", "copy"):
            raise AfXdpError("config", f"bind: expected auto, zerocopy or copy, got {bind!r}")
        if frame_size not in (2048, 4096):
            raise AfXdpError("config", f"frame_size: expected 2048 or 4096, got {frame_size!r}")
        if not isinstance(frames, int) or frames < 64 or frames & (frames - 1) or frames > 1 << 20:
            raise AfXdpError("config", f"frames: expected a power of two from 64 to 1048576, got "
                                       f"{frames!r}")
        if burst is None:
            burst = min(64, frames, ring.capacity)
        if not isinstance(burst, int) or not 1 <= burst <= min(4096, frames, ring.capacity):
            raise AfXdpError("config", f"burst: expected 1..{min(4096, frames, ring.capacity)}, "
                                       f"got {burst!r}")
        if idle not in ("poll", "busy"):
            raise AfXdpError("config", f"idle: expected poll or busy, got {idle!r}")
        self.ring = ring
        self.interface = interface
        self.queue = queue
        self.xdp_mode_wanted = xdp_mode
        self.bind_wanted = bind
        self.frames = frames
        self.frame_size = frame_size
        self.burst = burst
        self.idle = idle
        self.spin = spin if idle == "poll" else 0
        self.poll_ms = poll_ms
        self.verify = verify
        if tx_ring is not None:
            if tx_ring.mode != L.MODE_LOSSLESS:
                raise AfXdpError("config", f"tx_ring: ring {tx_ring.name!r} is lossy; the TX "
                                           f"ring must be lossless (nothing leaves unsent)")
            if not isinstance(tx_frames, int) or tx_frames < 64 or tx_frames & (tx_frames - 1) \
                    or tx_frames > 1 << 16:
                raise AfXdpError("config", f"tx_frames: expected a power of two from 64 to "
                                           f"65536, got {tx_frames!r}")
        self.tx_ring = tx_ring
        self.tx_frames = tx_frames if tx_ring is not None else 0
        self._closed = False
        self._undo: list = []           # cleanup actions, run in reverse by close()
        self.stale_removed = None
        self.notes: list[str] = []
        self._filter_obj = None
        self.pushdown = None
        self.prog_id = None
        self.xdp_mode = None
        self.zerocopy = None
        self.need_wakeup = None
        self.shared_with: list = []
        self._map_fds = None
        self._rules_installed = False
        self._finalizer = weakref.finalize(self, AfXdpProducer._cleanup, self._undo)
        try:
            self._setup(hugetlbfs, filter)
        except BaseException:
            self.close()
            raise

    # --- setup ------------------------------------------------------------------------------
    def _setup(self, hugetlbfs, filter) -> None:
        from . import xsk_lib as X
        from .xsk_pushdown import RuleMaps
        ifname, queue = self.interface, self.queue
        self.ifindex = check_interface(ifname)
        check_privileges()
        check_queue(ifname, queue)
        umem_bytes = (self.frames + self.tx_frames) * self.frame_size
        self.memlock = check_memlock(umem_bytes)
        self.filter = _compile(filter)      # a bad expression fails before anything changes
        lib = X.load()
        self.lib = lib
        obj_path = X.bpf_object_path()
        os.environ.setdefault("LIBXDP_SKIP_DISPATCHER", "1")   # see the facts: EPERM

        # the ring first: it refuses a second producer before we touch the interface
        self.producer = Producer(self.ring)
        self._undo.append(self.producer.close)
        self.ctrl, self.words, self.slot_bytes = (self.producer.ctrl, self.producer.words,
                                                  self.producer.slot_bytes)
        self.pstate = self.producer.pstate

        locks = _Locks(self.ifindex, queue)
        self.locks = locks
        self.filter_key = None if self.filter is None else \
            (self.filter.source or str(self.filter.node))
        locks.take_queue({"pid": os.getpid(), "interface": ifname, "queue": queue,
                          "ring": self.ring.name, "filter": self.filter_key,
                          "started_ns": time.time_ns()})
        self._undo.append(locks.release_queue)
        locks.lock_interface()
        try:
            self._attach_program(lib, obj_path, locks)
            self.maps = RuleMaps(lib, self._map_fd)
            self._undo.append(self.maps.close)
            self._install(self.filter)
            self.umem_mem = _Umem(lib, umem_bytes, hugetlbfs)
            self._undo.append(self.umem_mem.close)
            self._create_socket(lib)
            r = lib.xdp.xsk_socket__update_xskmap(self.xsk, self._map_fd("xsks_map"))
            if r < 0:
                raise AfXdpError("system", f"cannot put the socket in the program's XSK map: "
                                           f"{os.strerror(-r)}{X.last_messages()}")
        finally:
            locks.unlock_interface()
        self.xs = self._ring_words()
        self.state = np.zeros(STATE_WORDS, dtype=np.int64)
        self.txfree = np.zeros(max(1, self.tx_frames), dtype=np.int64)
        fill_frames(self.xs, self.state, self.txfree)
        if self.tx_ring is not None:
            # this producer is one of the TX ring's consumers: it sees what is published from
            # now on (a consumer joins at the producer's cursor)
            self.tx_consumer = self.tx_ring.consumer()
            self._undo.append(self.tx_consumer.close)
            self._tx = (self.tx_consumer.ctrl, self.tx_ring.words, self.tx_consumer.cstate)
        else:
            dummy_words = np.zeros(8, dtype=np.int64)
            dummy_words.setflags(write=False)        # the same type as a consumer's mapping
            self._tx = (np.zeros(64, dtype=np.int64), dummy_words,
                        np.zeros(K.CSTATE_WORDS, dtype=np.int64))
        self.state[ST_RX_CONS] = int(ctypes.c_uint32.from_address(self.rx.consumer).value)
        self.verdict = np.zeros(max(self.burst, 1), dtype=np.int64)
        from parsers.record import new_records
        self.recs = new_records(1)
        self.wait_full = bool(self.ring.mode == L.MODE_LOSSLESS
                              and self.ring.full_policy == L.FULL_WAIT)
        self.portq = (self.ifindex & 0xFFFF) | ((queue & 0xFFFF) << 16)
        self.nic_base = int(self.ctrl[L.PS_NIC_DROPS])
        self._stats_t = 0.0
        self._stats_reported: dict = {}
        self._poller = select.poll()
        self._poller.register(self.fd, select.POLLIN)

    def _attach_program(self, lib, obj_path, locks) -> None:
        from . import xsk_lib as X
        shared = self._inspect_attached(lib, locks)
        if shared is not None:
            self._share(lib, locks, shared)
            return
        prog = lib.xdp.xdp_program__open_file(str(obj_path).encode(), b"xdp", None)
        err = lib.ptr_error(prog)
        if err:
            raise AfXdpError("system", f"cannot open {obj_path}: {os.strerror(-err)}"
                                       f"{X.last_messages()}")
        self.prog = prog
        self._undo.append(lambda: lib.xdp.xdp_program__close(prog))
        modes = {"native": [X.XDP_MODE_NATIVE], "skb": [X.XDP_MODE_SKB],
                 "auto": [X.XDP_MODE_NATIVE, X.XDP_MODE_SKB]}[self.xdp_mode_wanted]
        errs = []
        for mode in modes:
            X.recent_messages.clear()
            r = lib.xdp.xdp_program__attach(prog, self.ifindex, mode, 0)
            if r == 0:
                self.xdp_mode = X.MODE_NAMES[mode]
                break
            errs.append((mode, -r, X.last_messages()))
        else:
            mode, e, said = errs[-1]
            if e in (errno.EOPNOTSUPP, errno.ENOTSUPP if hasattr(errno, "ENOTSUPP") else 524,
                     524):
                raise AfXdpError("unsupported", f"XDP is not supported in {X.MODE_NAMES[mode]} "
                                                f"mode on {self.interface} (driver "
                                                f"{_driver(self.interface)}): "
                                                f"{os.strerror(e)}"
                                                + ("; use --mode skb (generic XDP works on any "
                                                   "interface)" if mode == X.XDP_MODE_NATIVE
                                                   else "") + said)
            if e == errno.EPERM:
                raise AfXdpError("permission", f"attaching XDP to {self.interface}: "
                                               f"{os.strerror(e)}{said}")
            raise AfXdpError("system", f"cannot attach the XDP program to {self.interface} "
                                       f"({X.MODE_NAMES[mode]} mode): {os.strerror(e)}{said}")
        if len(errs) == 1 and self.xdp_mode_wanted == "auto":
            self.notes.append(f"native XDP failed ({os.strerror(errs[0][1])}): using skb mode")
        attach_mode = modes[len(errs)]
        self.prog_id = int(lib.xdp.xdp_program__id(prog))
        self._set_detach(lib, locks, prog, attach_mode)
        self._obj = lib.xdp.xdp_program__bpf_obj(prog)

    def _set_detach(self, lib, locks, prog, attach_mode) -> None:
        def detach():
            live, _ = locks.others()
            if live:                 # another producer still uses the program (other queue)
                return
            r = lib.xdp.xdp_program__detach(prog, self.ifindex, attach_mode, 0)
            if r < 0 and -r != errno.ENOENT:
                log.warning("detaching the XDP program from %s: %s", self.interface,
                            os.strerror(-r))
        self._detach = detach
        self._undo.append(self._detach_locked)

    def _share(self, lib, locks, shared: dict) -> None:
        """Another queue's live producer attached hugering's program: use it (one program,
        one set of rules per interface), after checking that the filter and mode agree."""
        from . import xsk_lib as X
        mine = self.filter_key
        for o in shared["owners"]:
            if o.get("filter") != mine:
                raise AfXdpError("busy", f"{self.interface} is filtered by {o.get('filter')!r} "
                                         f"(pid {o.get('pid')}, queue {o.get('queue')}): every "
                                         f"queue of an interface shares the XDP program's "
                                         f"rules; start this one with the same filter")
        mode = shared["mode"]
        if self.xdp_mode_wanted != "auto" and X.MODE_NAMES.get(mode) != self.xdp_mode_wanted:
            raise AfXdpError("busy", f"{self.interface} already runs hugering's program in "
                                     f"{X.MODE_NAMES.get(mode)} mode (pid "
                                     f"{shared['owners'][0].get('pid')}); --mode "
                                     f"{self.xdp_mode_wanted} cannot be had alongside it")
        prog = lib.xdp.xdp_program__from_id(shared["id"])
        err = lib.ptr_error(prog)
        if err:
            raise AfXdpError("system", f"cannot open the XDP program id {shared['id']}: "
                                       f"{os.strerror(-err)}{X.last_messages()}")
        self.prog = prog
        self._undo.append(lambda: lib.xdp.xdp_program__close(prog))
        self.prog_id = shared["id"]
        self.xdp_mode = X.MODE_NAMES.get(mode, "?")
        self.shared_with = shared["owners"]
        self.notes.append("sharing hugering's XDP program (id %d) with %s" % (
            self.prog_id, ", ".join(f"pid {o.get('pid')} queue {o.get('queue')}"
                                    for o in shared["owners"])))
        self._map_fds = _prog_map_fds(lib, lib.xdp.xdp_program__fd(prog))
        self._undo.append(lambda: [os.close(fd) for fd in self._map_fds.values()])
        self._set_detach(lib, locks, prog, mode)
        self._rules_installed = True             # by the producer that attached it

    def _detach_locked(self) -> None:
        self.locks.lock_interface()
        try:
            self._detach()
        finally:
            self.locks.unlock_interface()

    def _inspect_attached(self, lib, locks) -> dict | None:
        """A program already on the interface: hugering's with no live owner is removed (and
        reported); hugering's with live owners is returned for sharing ({id, mode, owners});
        anybody else's is an error."""
        from . import xsk_lib as X
        mp = lib.xdp.xdp_multiprog__get_from_ifindex(self.ifindex)
        err = lib.ptr_error(mp)
        if err:
            return None                          # -ENOENT: nothing attached
        try:
            main = lib.xdp.xdp_multiprog__main_prog(mp)
            if not main or lib.ptr_error(main):
                return None                      # an hw-only program, or nothing
            name = (lib.xdp.xdp_program__name(main) or b"").decode(errors="replace")
            pid = int(lib.xdp.xdp_program__id(main))
            mode = X.MODE_NAMES.get(lib.xdp.xdp_multiprog__attach_mode(mp), "?")
            if name != PROGRAM_NAME:
                raise AfXdpError("busy", f"{self.interface} already has an XDP program that is "
                                         f"not hugering's ({name!r}, id {pid}, {mode} mode); "
                                         f"remove it with 'xdp-loader unload {self.interface} "
                                         f"--all' or 'ip link set dev {self.interface} xdp "
                                         f"off', or use another interface")
            live, dead = locks.others()
            if locks.previous:
                dead.insert(0, locks.previous)
            if live:
                return {"id": pid, "mode": lib.xdp.xdp_multiprog__attach_mode(mp),
                        "owners": live}
            r = lib.xdp.xdp_multiprog__detach(mp)
            if r < 0:
                raise AfXdpError("system", f"cannot remove the stale XDP program (id {pid}) "
                                           f"from {self.interface}: {os.strerror(-r)}"
                                           f"{X.last_messages()}")
            owners = [o for o in dead if o.get("pid")]
            by = ", ".join(f"pid {o['pid']} (ring {o.get('ring')!r}, queue {o.get('queue')})"
                           for o in owners) or "an earlier run"
            self.stale_removed = {"program_id": pid, "mode": mode, "left_by": owners}
            msg = (f"removed a stale hugering XDP program (id {pid}, {mode} mode) from "
                   f"{self.interface}, left by {by}, which is no longer running")
            self.notes.append(msg)
            log.warning("%s", msg)
            for o in dead:                        # their owner files are now meaningless
                q = o.get("queue")
                if q is not None and q != self.queue:
                    try:
                        (LOCK_DIR / f"{locks.prefix}-q{q}.owner").unlink()
                    except OSError:
                        pass
            return None
        finally:
            lib.xdp.xdp_multiprog__close(mp)

    def _map_fd(self, name: str) -> int:
        if self._map_fds is not None:
            if name not in self._map_fds:
                raise AfXdpError("system", f"the attached XDP program has no map {name!r} "
                                           f"(another hugering version?)")
            return self._map_fds[name]
        fd = self.lib.bpf.bpf_object__find_map_fd_by_name(self._obj, name.encode())
        if fd < 0:
            raise AfXdpError("system", f"the XDP program has no map {name!r} (stale build of "
                                       f"xdp_filter.bpf.o?)")
        return fd

    def _create_socket(self, lib) -> None:
        from . import xsk_lib as X
        binds = {"zerocopy": [X.XDP_ZEROCOPY], "copy": [X.XDP_COPY],
                 "auto": [X.XDP_ZEROCOPY, X.XDP_COPY]}[self.bind_wanted]
        r, first = -errno.EINVAL, 0
        for i, bflag in enumerate(binds):
            deadline = time.monotonic() + EBUSY_RETRY_S
            while True:
                r = self._try_socket(lib, bflag | X.XDP_USE_NEED_WAKEUP)
                if r == -errno.EBUSY and time.monotonic() < deadline:
                    time.sleep(0.05)            # the previous socket on this queue is going
                    continue
                break
            if r == 0:
                if i > 0:
                    self.notes.append(f"zero-copy bind failed ({os.strerror(-first)}): using "
                                      f"copy mode")
                break
            if i == 0:
                first = r
            if r not in (-errno.EOPNOTSUPP, -errno.EINVAL, -errno.EPROTONOSUPPORT):
                break
        if r != 0:
            e = -r
            said = X.last_messages()
            if e == errno.ENOBUFS:
                raise AfXdpError("memlock", f"the kernel refused to pin the "
                                            f"{_fmt_bytes(self.umem_mem.length)} UMEM "
                                            f"({os.strerror(e)}): memlock limit too low; "
                                            f"'ulimit -l unlimited' or CAP_IPC_LOCK{said}")
            if e == errno.EOPNOTSUPP:
                raise AfXdpError("unsupported", f"{self.interface} does not support a "
                                                f"{self.bind_wanted} AF_XDP bind: "
                                                f"{os.strerror(e)} (use --bind copy){said}")
            if e == errno.EINVAL and self.queue not in rx_queues(self.interface):
                raise AfXdpError("queue", f"queue {self.queue} is out of range for "
                                          f"{self.interface}")
            if e == errno.EAFNOSUPPORT:
                raise AfXdpError("unsupported", "this kernel has no AF_XDP sockets "
                                                "(CONFIG_XDP_SOCKETS)")
            if e == errno.EBUSY:
                raise AfXdpError("busy", f"queue {self.queue} of {self.interface} already has "
                                         f"an AF_XDP socket (another program?): "
                                         f"{os.strerror(e)}{said}")
            raise AfXdpError("system", f"cannot create the AF_XDP socket on {self.interface} "
                                       f"queue {self.queue}: {os.strerror(e)}{said}")
        opts = X.XdpOptions()
        ln = ctypes.c_uint32(ctypes.sizeof(opts))
        if lib.libc.getsockopt(self.fd, X.SOL_XDP, X.XDP_OPTIONS, ctypes.byref(opts),
                               ctypes.byref(ln)) == 0:
            self.zerocopy = bool(opts.flags & X.XDP_OPTIONS_ZEROCOPY)
        else:
            self.zerocopy = bflag == X.XDP_ZEROCOPY
        self.need_wakeup = True

    def _try_socket(self, lib, bind_flags: int) -> int:
        """UMEM registration + socket; 0 or -errno (everything undone on failure)."""
        from . import xsk_lib as X
        self.fill, self.comp, self.rx = X.XskRing(), X.XskRing(), X.XskRing()
        ucfg = X.XskUmemConfig(fill_size=self.frames, comp_size=max(64, self.tx_frames),
                               frame_size=self.frame_size, frame_headroom=0, flags=0)
        umem = ctypes.c_void_p()
        X.recent_messages.clear()
        r = lib.xdp.xsk_umem__create(ctypes.byref(umem), ctypes.c_void_p(self.umem_mem.addr),
                                     (self.frames + self.tx_frames) * self.frame_size,
                                     ctypes.byref(self.fill),
                                     ctypes.byref(self.comp), ctypes.byref(ucfg))
        if r < 0:
            return r
        self.tx = X.XskRing()
        scfg = X.XskSocketConfig(rx_size=self.frames, tx_size=self.tx_frames,
                                 libxdp_flags=X.XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD,
                                 xdp_flags=0, bind_flags=bind_flags)
        xsk = ctypes.c_void_p()
        r = lib.xdp.xsk_socket__create(ctypes.byref(xsk), self.interface.encode(), self.queue,
                                       umem, ctypes.byref(self.rx),
                                       ctypes.byref(self.tx) if self.tx_frames else None,
                                       ctypes.byref(scfg))
        if r < 0:
            lib.xdp.xsk_umem__delete(umem)
            return r
        self.umem, self.xsk = umem, xsk
        self.fd = int(lib.xdp.xsk_socket__fd(xsk))

        def delete():
            lib.xdp.xsk_socket__delete(xsk)
            lib.xdp.xsk_umem__delete(umem)
        self._undo.append(delete)
        return 0

    def _ring_words(self) -> np.ndarray:
        xs = np.zeros(XS_WORDS, dtype=np.int64)
        xs[XS_RX_PROD], xs[XS_RX_CONS] = self.rx.producer, self.rx.consumer
        xs[XS_RX_RING], xs[XS_RX_SIZE] = self.rx.ring, self.rx.size
        xs[XS_FQ_PROD], xs[XS_FQ_CONS] = self.fill.producer, self.fill.consumer
        xs[XS_FQ_RING], xs[XS_FQ_SIZE] = self.fill.ring, self.fill.size
        xs[XS_FQ_FLAGS] = self.fill.flags
        xs[XS_UMEM] = self.umem_mem.addr
        xs[XS_UMEM_SIZE] = (self.frames + self.tx_frames) * self.frame_size
        xs[XS_FRAME_SIZE], xs[XS_FRAMES] = self.frame_size, self.frames
        xs[XS_FD], xs[XS_TX_FRAMES] = self.fd, self.tx_frames
        if self.tx_frames:
            xs[XS_TX_PROD], xs[XS_TX_CONS] = self.tx.producer, self.tx.consumer
            xs[XS_TX_RING], xs[XS_TX_SIZE] = self.tx.ring, self.tx.size
            xs[XS_TX_FLAGS] = self.tx.flags
            xs[XS_CQ_PROD], xs[XS_CQ_CONS] = self.comp.producer, self.comp.consumer
            xs[XS_CQ_RING], xs[XS_CQ_SIZE] = self.comp.ring, self.comp.size
        assert self.fill.size >= self.frames and self.rx.size & (self.rx.size - 1) == 0
        return xs

    # --- filters ----------------------------------------------------------------------------
    def _install(self, flt, install: bool = True) -> None:
        from .xsk_pushdown import plan
        pd = plan(None if flt is None else flt.node)
        if install and not self._rules_installed:
            self.maps.install(pd.rules)
        else:
            self.maps.rules = list(pd.rules)      # the same rules, installed by another
        self._rules_installed = False
        self.pushdown = pd
        self._filter_obj = flt
        check = flt is not None and (not pd.exact or self.verify)
        if flt is None:
            from parsers.filters import Const, Filter
            flt_prog = Filter(Const(True)).prog
            parse = False
        else:
            flt_prog = flt.prog
            parse = bool(flt.needs_records)
        # one tuple, swapped whole: the loop picks it up at its next call
        self._user = (flt_prog, bool(check), parse)

    def set_filter(self, filter, install: bool = True) -> dict:
        """Replace the filter while running: the kernel's rules change with one generation flip
        (no reload, the socket stays), the user-space half at the loop's next chunk (<= 20 ms).
        Returns the new pushdown report.  Safe to call from another thread than ``run``.

        The rules are the interface's: with several queues (``AfXdpQueues``) they change for
        all of them; ``install=False`` only updates this producer's user-space half (the
        others' call, after the first one installed)."""
        flt = _compile(filter)
        self._install(flt, install)
        self.filter_key = None if flt is None else (flt.source or str(flt.node))
        return self.pushdown.report()

    # --- introspection ----------------------------------------------------------------------
    def describe(self) -> dict:
        """What was obtained: modes, memory, program, filter split."""
        return {
            "interface": self.interface, "ifindex": self.ifindex, "queue": self.queue,
            "ring": self.ring.name, "xdp_mode": self.xdp_mode,
            "bind": "zerocopy" if self.zerocopy else "copy", "need_wakeup": self.need_wakeup,
            "umem": self.umem_mem.kind, "umem_bytes": self.umem_mem.length,
            "frames": self.frames, "frame_size": self.frame_size, "rx_size": int(self.rx.size),
            "fill_size": int(self.fill.size), "program_id": self.prog_id,
            "memlock": self.memlock, "stale_removed": self.stale_removed,
            "shared_with": self.shared_with,
            "filter": None if self._filter_obj is None else
            (self._filter_obj.source or str(self._filter_obj.node)),
            "pushdown": self.pushdown.report(), "user_space_check": self._user[1],
            "tx_ring": None if self.tx_ring is None else self.tx_ring.name,
            "tx_frames": self.tx_frames,
            "notes": list(self.notes),
        }

    def mode_line(self) -> str:
        d = self.describe()
        pd = d["pushdown"]
        split = "no filter" if d["filter"] is None else (
            f"{len(pd['rules'])} kernel rule{'s' if len(pd['rules']) != 1 else ''}, "
            + ("exact" if pd["exact"] else "user space re-checks: " + "; ".join(pd["user_space"])))
        return (f"af_xdp {d['interface']} queue {d['queue']}: xdp {d['xdp_mode']} mode, "
                f"{d['bind']} bind, UMEM {d['frames']} x {d['frame_size']} B on {d['umem']}, "
                f"rings {d['rx_size']}"
                + (f", TX from ring {d['tx_ring']} ({d['tx_frames']} frames)" if d["tx_ring"]
                   else "") + f"; filter: {split}")

    def xdp_statistics(self) -> dict:
        from . import xsk_lib as X
        s = X.XdpStatistics()
        ln = ctypes.c_uint32(ctypes.sizeof(s))
        if self.lib.libc.getsockopt(self.fd, X.SOL_XDP, X.XDP_STATISTICS, ctypes.byref(s),
                                    ctypes.byref(ln)) != 0:
            return {}
        return {name: int(getattr(s, name)) for name, _ in X.XdpStatistics._fields_}

    def kernel_counters(self) -> dict:
        return self.maps.counters()

    def _fold_stats(self, force: bool = False) -> dict:
        t = time.monotonic()
        if not force and t - self._stats_t < STATS_EVERY_S:
            return {}
        self._stats_t = t
        s = self.xdp_statistics()
        if s:
            self.ctrl[L.PS_NIC_DROPS] = self.nic_base + s["rx_dropped"] + s["rx_ring_full"]
            self._fold_source_stats(s)
        return s

    def _fold_source_stats(self, s: dict) -> None:
        """The ring's source_stats line: this socket's counters since it was created, and its
        UMEM as the pool the leak monitor watches (``engine.leak``).  A frame is in use while
        the kernel cannot fill it: not on the fill ring (in the RX ring, being copied into the
        ring) or, for TX frames, not on the free stack (queued or awaiting completion)."""
        xs, st, c = self.xs, self.state, self.ctrl
        fq_cons = ctypes.c_uint32.from_address(int(xs[XS_FQ_CONS])).value   # kernel-written
        on_fill = (int(st[ST_FQ_PROD]) - fq_cons) & M32
        rx_in_use = max(0, self.frames - on_fill)
        tx_in_use = max(0, self.tx_frames - int(st[ST_TX_FREE])) if self.tx_frames else 0
        c[L.SS_PACKETS] = int(st[ST_RX])
        c[L.SS_MISSED] = s["rx_dropped"] + s["rx_ring_full"]
        c[L.SS_ERRORS] = s["rx_invalid_descs"]
        c[L.SS_NOMBUF] = s["rx_fill_ring_empty_descs"]
        c[L.SS_POOL_SIZE] = self.frames + self.tx_frames
        c[L.SS_POOL_IN_USE] = rx_in_use + tx_in_use
        c[L.SS_TX_DROPPED] = s["tx_invalid_descs"] + int(st[ST_TX_TOO_LONG])
        c[L.SS_STATS_NS] = time.time_ns()      # last: readers take a 0 as "never refreshed"

    # --- running ----------------------------------------------------------------------------
    def _call(self, limit: int, until_ns: int, chunk_ns: int) -> int:
        (code, consts, ac_next, ac_out), check, parse = self._user
        return rx_loop(self.ctrl, self.words, self.slot_bytes, self.pstate, self.xs, self.state,
                       self.verdict, code, consts, ac_next, ac_out, self.recs, check, parse,
                       limit, until_ns, chunk_ns, self.burst, self.wait_full, self.portq,
                       self.spin, self.tx_ring is not None, *self._tx, self.txfree)

    def warmup(self) -> float:
        """Compile (or load from the cache) the hot loop without taking a frame."""
        t = time.perf_counter()
        self._call(int(self.state[ST_ACCEPTED]), 0, 0)
        return time.perf_counter() - t

    def run(self, count: int | None = None, duration: float | None = None, stop=None) -> dict:
        """Take frames into the ring until ``count`` accepted frames (published + dropped), for
        ``duration`` seconds, or until ``stop()`` is true (checked at least every 20 ms) or
        Ctrl-C.  Returns the run's statistics; ``run`` again continues."""
        if count is not None and (not isinstance(count, int) or count < 0):
            raise AfXdpError("config", f"count: expected a frame count >= 0, got {count!r}")
        st = self.state
        before = st.copy()
        stats0 = self._stats_reported      # drops between two runs count in the next one
        limit = int(st[ST_ACCEPTED]) + count if count is not None else -1
        start = time.time_ns()
        until = start + int(duration * 1e9) if duration is not None else 0
        if duration is not None and duration <= 0:
            limit = int(st[ST_ACCEPTED])
        t0 = time.perf_counter()
        why = "stop"
        try:
            while True:
                r = self._call(limit, until, CHUNK_NS)
                if r == RET_COUNT:
                    why = "count"
                    break
                if r == RET_DEADLINE:
                    why = "duration"
                    break
                if r == RET_IDLE:
                    K.producer_idle(self.ctrl, self.pstate, now_ns())
                    wait = self.poll_ms
                    if until:
                        wait = max(0, min(wait, (until - time.time_ns()) // 1_000_000 + 1))
                    self._poller.poll(wait)
                elif r == RET_WAKEUP:
                    self.lib.libc.recvfrom(self.fd, None, 0, 0x40, None, None)
                self._fold_stats()
                if stop is not None and stop():
                    break
        except KeyboardInterrupt:
            why = "interrupt"
        elapsed = time.perf_counter() - t0
        s = self._fold_stats(force=True)
        d = {k: int(st[v] - before[v]) for k, v in (
            ("received", ST_RX), ("accepted", ST_ACCEPTED), ("published", ST_PUBLISHED),
            ("dropped", ST_DROPPED), ("user_rejected", ST_REJECTED), ("bytes", ST_BYTES),
            ("bursts", ST_BURSTS), ("full_spins", ST_FULL_SPINS), ("truncated", ST_TRUNCATED),
            ("wakeups", ST_WAKEUPS), ("tx_queued", ST_TX_QUEUED), ("tx_sent", ST_TX_DONE),
            ("tx_bytes", ST_TX_BYTES), ("tx_too_long", ST_TX_TOO_LONG),
            ("tx_kicks", ST_TX_KICKS), ("tx_errors", ST_TX_ERRORS), ("tx_lost", ST_TX_LOST))}
        d["tx_errno"] = int(st[ST_TX_ERRNO])
        nic = {k: s.get(k, 0) - stats0.get(k, 0) for k in s}
        self._stats_reported = s or stats0
        return {"ring": self.ring.name, "interface": self.interface, "queue": self.queue,
                "stopped_by": why, **d,
                "nic_drops": nic.get("rx_dropped", 0) + nic.get("rx_ring_full", 0),
                "xdp_statistics": nic, "elapsed_s": elapsed,
                "rate_pps": d["published"] / elapsed if elapsed > 0 else 0.0,
                "xdp_mode": self.xdp_mode, "bind": "zerocopy" if self.zerocopy else "copy"}

    # --- teardown ---------------------------------------------------------------------------
    @staticmethod
    def _cleanup(undo: list) -> None:
        while undo:
            fn = undo.pop()
            try:
                fn()
            except Exception as e:           # keep going: every resource gets its chance
                log.warning("AF_XDP cleanup: %s: %s", type(e).__name__, e)

    def close(self) -> None:
        """Remove the socket, detach the program (unless another queue's producer still uses
        it), free the UMEM, leave the ring.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._drain_tx()
        except Exception as e:
            log.warning("AF_XDP close: TX drain: %s", e)
        if getattr(self, "_poller", None) is not None and getattr(self, "fd", None) is not None:
            try:
                self._poller.unregister(self.fd)
            except (KeyError, ValueError):
                pass
        try:
            if getattr(self, "ctrl", None) is not None and getattr(self, "xsk", None) is not None:
                self._fold_stats(force=True)
        except Exception:
            pass
        self._cleanup(self._undo)
        self._finalizer.detach()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _drain_tx(self, timeout: float = 1.0) -> None:
        """Before the socket goes: wait (bounded) until the kernel has completed every frame
        put on the XSK TX ring; what it has not is said in a warning, never dropped silently."""
        if self.tx_ring is None or getattr(self, "state", None) is None or \
                getattr(self, "xsk", None) is None:
            return
        st = self.state
        deadline = time.monotonic() + timeout
        while st[ST_TX_QUEUED] > st[ST_TX_DONE] and time.monotonic() < deadline:
            tx_flush(self.xs, st, *self._tx, self.txfree, self.burst)
            time.sleep(0.0005)
        left = int(st[ST_TX_QUEUED] - st[ST_TX_DONE])
        if left:
            log.warning("AF_XDP %s queue %d: %d frames queued for transmit were not confirmed "
                        "sent when the socket closed", self.interface, self.queue, left)
        self.tx_unconfirmed = left


def queue_cpus(interface: str, n: int) -> list[int]:
    """One cpu per queue on the NIC's NUMA node (all online cpus when the node is unknown),
    isolated cpus first, round-robin when there are fewer cpus than queues."""
    from engine import placement as PL
    cpus = PL.online_cpus() or [0]
    node = PL.nic_numa_node(interface)
    if node is not None:
        on_node = [c for c in cpus if PL.cpu_node(c) == node]
        cpus = on_node or cpus
    iso = set(PL.isolated_cpus())
    cpus = sorted(cpus, key=lambda c: (c not in iso, c))
    return [cpus[i % len(cpus)] for i in range(n)]


class AfXdpQueues:
    """Several RX queues of one interface, each with its own socket, UMEM and ring, each loop in
    its own thread (``rx_loop`` releases the GIL) pinned to its cpu.  The XDP program and its
    rules are the interface's: attached by the first producer, shared by the others, detached
    by the last one to close.

        with AfXdpQueues([ring0, ring1], "eth1", queues=[0, 1], cpus=[2, 3],
                         filter="udp") as mq:
            rep = mq.run(duration=10)      # {"queues": [report per queue], "published": ...}

    ``queues``: NIC queue numbers (default 0..len(rings)-1); ``cpus``: one per queue, "auto"
    (``queue_cpus``: the NIC's NUMA node) or None (not pinned); other keyword arguments go to
    every ``AfXdpProducer``."""

    def __init__(self, rings, interface: str, queues=None, cpus=None, filter=None, **kw):
        queues = list(range(len(rings))) if queues is None else list(queues)
        if len(queues) != len(rings) or not rings:
            raise AfXdpError("config", f"queues: one NIC queue per ring ({len(rings)} rings, "
                                       f"{len(queues)} queues)")
        if cpus == "auto":
            cpus = queue_cpus(interface, len(rings))
        if cpus is not None and len(cpus) != len(rings):
            raise AfXdpError("config", f"cpus: one cpu per queue ({len(rings)} queues, "
                                       f"{len(cpus)} cpus)")
        self.cpus = cpus
        self.producers: list[AfXdpProducer] = []
        try:
            for ring, q in zip(rings, queues):
                self.producers.append(AfXdpProducer(ring, interface, queue=q, filter=filter,
                                                    **kw))
        except BaseException:
            self.close()
            raise

    def describe(self) -> list[dict]:
        return [p.describe() for p in self.producers]

    def mode_lines(self) -> list[str]:
        return [p.mode_line() for p in self.producers]

    def kernel_counters(self) -> dict:
        return self.producers[0].kernel_counters()          # one program, one set of rules

    def set_filter(self, filter) -> dict:
        rep = self.producers[0].set_filter(filter)
        for p in self.producers[1:]:
            p.set_filter(filter, install=False)
        return rep

    def warmup(self) -> None:
        for p in self.producers:
            p.warmup()

    def run(self, count: int | None = None, duration: float | None = None, stop=None) -> dict:
        """Run every queue until ``duration``, ``stop()``, Ctrl-C, or (each queue) ``count``
        frames; returns the per-queue reports and their totals."""
        import threading
        done = threading.Event()
        reps: list = [None] * len(self.producers)
        errors: list = []

        def work(i, p):
            try:
                if self.cpus is not None:
                    os.sched_setaffinity(0, {self.cpus[i]})     # this thread only
                reps[i] = p.run(count=count, duration=duration,
                                stop=lambda: done.is_set() or (stop is not None and stop()))
            except BaseException as e:      # surfaced in the calling thread
                errors.append(e)
                done.set()
        threads = [threading.Thread(target=work, args=(i, p), daemon=True,
                                    name=f"afxdp-q{p.queue}")
                   for i, p in enumerate(self.producers)]
        for t in threads:
            t.start()
        try:
            while any(t.is_alive() for t in threads):
                for t in threads:
                    t.join(timeout=0.05)
                if stop is not None and stop():
                    done.set()
        except KeyboardInterrupt:
            done.set()
            for t in threads:
                t.join()
        if errors:
            raise errors[0]
        keys = ("received", "accepted", "published", "dropped", "user_rejected", "bytes",
                "nic_drops", "tx_sent")
        out = {k: sum(r[k] for r in reps) for k in keys}
        out["queues"] = reps
        out["elapsed_s"] = max(r["elapsed_s"] for r in reps)
        out["rate_pps"] = out["published"] / out["elapsed_s"] if out["elapsed_s"] else 0.0
        out["stopped_by"] = reps[0]["stopped_by"]
        return out

    def close(self) -> None:
        for p in reversed(self.producers):
            p.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class KernelFilter:
    """hugering's XDP program loaded but attached nowhere, its maps filled from a filter, and
    frames run through it with BPF_PROG_TEST_RUN: what the kernel half of a filter selects.
    The oracle for the pushdown (``tests/test_afxdp.py`` compares it with the user-space
    matcher), and a way to check a filter's split before using it.  Root (it loads a program).

        with KernelFilter("udp and dst port 53") as kf:
            kf.selects(frame_bytes)     # True: the program would redirect it to the socket
    """

    def __init__(self, filter=None):
        from . import xsk_lib as X
        from .xsk_pushdown import RuleMaps
        check_privileges()
        lib = X.load()
        self.lib = lib
        path = X.bpf_object_path()
        obj = lib.bpf.bpf_object__open_file(str(path).encode(), None)
        if not obj or lib.bpf.libbpf_get_error(obj):
            raise AfXdpError("system", f"cannot open {path}{X.last_messages()}")
        self._obj = obj
        try:
            r = lib.bpf.bpf_object__load(obj)
            if r < 0:
                raise AfXdpError("system", f"cannot load {path}: {os.strerror(-r)}"
                                           f"{X.last_messages()}")
            prog = lib.bpf.bpf_object__find_program_by_name(obj, PROGRAM_NAME.encode())
            self.fd = lib.bpf.bpf_program__fd(prog)
            self.maps = RuleMaps(lib, lambda n: lib.bpf.bpf_object__find_map_fd_by_name(
                obj, n.encode()))
            self.set_filter(filter)
        except BaseException:
            self.close()
            raise

    def set_filter(self, filter) -> dict:
        from .xsk_pushdown import plan
        flt = _compile(filter)
        self.pushdown = plan(None if flt is None else flt.node)
        self.maps.install(self.pushdown.rules)
        return self.pushdown.report()

    def _selected_count(self) -> int:
        from .xsk_pushdown import CNT_NO_SOCKET
        buf = (ctypes.c_uint64 * self.lib.ncpus)()
        k = ctypes.c_uint32(CNT_NO_SOCKET)
        self.lib.bpf.bpf_map_lookup_elem(self.maps.fds["hr_counters"], ctypes.byref(k), buf)
        return int(sum(buf))

    def selects(self, frame: bytes) -> bool:
        """Would the program redirect this frame (queue 0) to a socket?  (No socket is bound,
        so the program falls back to XDP_PASS and counts the frame as "no_socket".)"""
        from . import xsk_lib as X
        if len(frame) < 14:
            return False                 # the kernel refuses to test-run a runt
        before = self._selected_count()
        data = ctypes.create_string_buffer(bytes(frame), len(frame))
        opts = X.BpfTestRunOpts(sz=ctypes.sizeof(X.BpfTestRunOpts), data_in=ctypes.cast(
            data, ctypes.c_void_p), data_size_in=len(frame), repeat=1)
        r = self.lib.bpf.bpf_prog_test_run_opts(self.fd, ctypes.byref(opts))
        if r < 0:
            raise AfXdpError("system", f"BPF_PROG_TEST_RUN: {os.strerror(-r)}")
        return self._selected_count() > before

    def close(self) -> None:
        if getattr(self, "maps", None) is not None:
            self.maps.close()
            self.maps = None
        if self._obj:
            self.lib.bpf.bpf_object__close(self._obj)
            self._obj = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _driver(ifname: str) -> str:
    try:
        return os.path.basename(os.readlink(NET_SYSFS / ifname / "device" / "driver"))
    except OSError:
        pass
    try:
        for line in (NET_SYSFS / ifname / "uevent").read_text().splitlines():
            if line.startswith("DEVTYPE="):
                return line.split("=", 1)[1]
    except OSError:
        pass
    return "unknown" if ifname != "lo" else "loopback"
