"""Embed a hugering consumer in your own @njit loop: the pattern a strategy process copies.

    python examples/ring_consumer.py            # makes its own ring and producer, then exits
    python examples/ring_consumer.py --ring md  # joins an existing ring (Ctrl-C to stop)

The hot loop below is one plain @njit function over arrays: peek a burst, read each slot in
place (zero copy, read-only), hand it to your handler, release the burst.  Nothing in it
allocates, locks or makes a system call; the only Python left is the setup and the final print.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from numba import njit

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from shm import Ring  # noqa: E402
from shm import kernels as K  # noqa: E402
from shm import layout as L  # noqa: E402
from shm.clock import now_ns  # noqa: E402

# user state: a few int64 counters the handler keeps across calls (no Python objects)
ST_FRAMES, ST_BYTES, ST_UDP, ST_LAT_SUM, ST_LAT_MAX = range(5)


@njit(cache=True, nogil=True)
def on_frame(slot_bytes, off, cap_len, ts_ns, now, state):
    """Your code goes here.  ``slot_bytes[off:off+cap_len]`` is the frame (Ethernet first)."""
    state[ST_FRAMES] += 1
    state[ST_BYTES] += cap_len
    # ethertype IPv4 and protocol UDP, reading only what was captured
    if cap_len >= 34 and slot_bytes[off + 12] == 0x08 and slot_bytes[off + 13] == 0x00 \
            and slot_bytes[off + 23] == 17:
        state[ST_UDP] += 1
    lat = now - ts_ns
    state[ST_LAT_SUM] += lat
    if lat > state[ST_LAT_MAX]:
        state[ST_LAT_MAX] = lat


@njit(cache=True, nogil=True)
def poll(ctrl, words, slot_bytes, cstate, state, burst, max_empty_polls):
    """Busy-poll until ``max_empty_polls`` polls in a row find nothing; returns frames seen.
    Returns -1 if the producer evicted us (the caller rejoins)."""
    stride_w = cstate[K.CS_STRIDE_W]
    size = cstate[K.CS_SLOT_SIZE]
    seen = 0
    empty = 0
    while empty < max_empty_polls:
        k = K.peek(ctrl, cstate, burst)
        if k < 0:
            return -1
        if k == 0:
            empty += 1
            continue
        empty = 0
        now = now_ns()                               # one clock read per burst
        for j in range(k):
            base = K.consumer_slot(cstate, j) * stride_w
            cap_len = (words[base + L.S_LENS] >> 32) & 0xFFFFFFFF
            if cap_len > size:                       # never trust a length field
                cap_len = size
            on_frame(slot_bytes, base * 8 + L.SLOT_HEADER_BYTES, cap_len, words[base + L.S_TS],
                     now, state)
        if K.release(ctrl, cstate, k) < 0:
            return -1
        seen += k
    return seen


def run(ring: Ring, duration: float | None, warm_up: bool = False,
        producer_pid: int | None = None) -> np.ndarray:
    """Poll for ``duration`` seconds (forever if None), or until ``producer_pid`` has exited
    and everything it published has been read."""
    state = np.zeros(8, dtype=np.int64)
    if warm_up:   # compile before joining, so the first packets do not wait for the compiler
        scratch = np.zeros(K.CSTATE_WORDS, dtype=np.int64)
        # max_empty_polls=0: the call compiles poll and returns without touching the ring
        poll(ring.ctrl, ring.words, ring.slot_bytes, scratch, state, 32, 0)
    consumer = ring.consumer()
    try:
        end = None if duration is None else time.monotonic() + duration
        producer_done = False
        while end is None or time.monotonic() < end:
            if poll(ring.ctrl, ring.words, ring.slot_bytes, consumer.cstate, state, 32,
                    100_000) < 0:
                K.rejoin(ring.ctrl, consumer.cstate, now_ns())
            if producer_done:
                break                                 # that last poll drained the ring
            if producer_pid is not None and os.waitpid(producer_pid, os.WNOHANG)[0]:
                producer_done = True
            os.sched_yield()                          # idle: let a producer on this core run
    finally:
        consumer.close()
    return state


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ring", help="join this existing ring instead of making a demo one")
    ap.add_argument("--duration", type=float, default=None, help="seconds to run")
    args = ap.parse_args()
    if args.ring:
        state = run(Ring.open(args.ring), args.duration)
    else:
        name = f"example-{os.getpid()}"
        ring = Ring.create(name, slots=1024, slot_size=256)
        try:
            pid = os.fork()
            if pid == 0:                              # the child plays the producer
                child_ring = Ring.open(name, writable_slots=True)
                # a consumer sees what is published after it joined: wait for it to join
                # (its first compile can take seconds on a cold cache), then publish
                while not (child_ring.consumer_lines["state"] == L.CONSUMER_ACTIVE).any():
                    time.sleep(0.01)
                with child_ring.producer() as p:
                    frame = bytes(14 + 20 + 8 + 32)
                    frame = frame[:12] + b"\x08\x00" + b"\x45" + frame[15:23] + b"\x11" + frame[24:]
                    for _ in range(100):
                        p.publish([frame] * 100)
                        time.sleep(0.001)
                os._exit(0)
            state = run(ring, args.duration, warm_up=True, producer_pid=pid)
        finally:
            ring.close()
            Ring.remove(name)
    n = max(1, int(state[ST_FRAMES]))
    print(f"frames {state[ST_FRAMES]}  bytes {state[ST_BYTES]}  udp {state[ST_UDP]}  "
          f"latency mean {state[ST_LAT_SUM] / n / 1e3:.1f} us  max {state[ST_LAT_MAX] / 1e3:.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
