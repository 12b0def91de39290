"""A test-only packet source with a buffer pool, healthy or leaking, for the leak monitor tests.

    python tests/faults/leak_pool_worker.py RING healthy|leaking SECONDS

Every 20 ms it writes the ring's source_stats line (``shm.layout`` ``SS_*`` words) as a DPDK or
AF_XDP producer does: packets received, and its pool of ``POOL`` buffers.  *healthy*: the
buffers in use wander between 40 % and 80 % of the pool (bursts come and go; a window of
samples is never a steady rise).  *leaking*: every tick takes 64 more buffers that are never
returned (on top of up to 100 in flight), until the pool is empty; then every further
packet is an allocation failure (``src_nombuf``) and is missed.
"""
from __future__ import annotations

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from shm import layout as L  # noqa: E402
from shm.ring import Ring  # noqa: E402

POOL = 4096
TICK_S = 0.02


def main() -> int:
    name, kind, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    ring = Ring.open(name)
    c = ring.ctrl
    rng = random.Random(5)
    leaked = packets = nombuf = 0
    c[L.SS_POOL_SIZE] = POOL
    print("ready", flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        arrived = rng.randrange(50, 150)
        if kind == "leaking":
            leaked = min(POOL, leaked + 64)
            in_use = min(POOL, leaked + rng.randrange(0, 100))
            if in_use == POOL:
                nombuf += arrived
        else:
            in_use = rng.randrange(int(0.4 * POOL), int(0.8 * POOL))
        packets += arrived
        c[L.SS_PACKETS] = packets
        c[L.SS_NOMBUF] = nombuf
        c[L.SS_MISSED] = nombuf
        c[L.SS_POOL_IN_USE] = in_use
        c[L.SS_STATS_NS] = time.time_ns()
        time.sleep(TICK_S)
    ring.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
