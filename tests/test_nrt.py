"""Every poll/publish loop makes zero Numba NRT allocations in steady state.

Runs in a subprocess because ``NUMBA_NRT_STATS`` must be set before Numba is imported.  Each
case warms its loop up once (compilation, first touch), then compares the NRT allocation
counters around a second, long run.  A loop that allocated per burst would show thousands.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, sys.argv[1])
    name = sys.argv[2]
    import numpy as np
    from numba import njit
    from numba.core.runtime import rtsys
    from shm import Ring, kernels as K, layout as L
    from shm.clock import now_ns

    @njit
    def publish_loop(ctrl, words, slot_bytes, pstate, frame, bursts, burst):
        total = 0
        for _ in range(bursts):
            k = K.reserve(ctrl, words, pstate, burst)
            if k < burst:
                K.count_dropped(ctrl, pstate, burst - k)
            for j in range(k):
                K.write_slot(words, slot_bytes, pstate, j, frame, frame.shape[0],
                             frame.shape[0], 0, 0, 0)
            K.submit(ctrl, words, pstate, k, now_ns())
            total += k
        return total

    @njit
    def drain_lossless(ctrl, words, cstate, burst):
        got = 0
        while True:
            k = K.peek(ctrl, cstate, burst)
            if k <= 0:
                return got
            for j in range(k):
                got += words[K.consumer_slot(cstate, j) * cstate[K.CS_STRIDE_W] + L.S_SEQ] * 0 + 1
            K.release(ctrl, cstate, k)

    @njit
    def drain_copy(ctrl, words, cstate, out, burst):
        got = 0
        while True:
            k = K.receive(ctrl, words, cstate, out, burst)
            if k <= 0:
                return got
            got += k

    def stats():
        s = rtsys.get_allocation_stats()
        return s.alloc, s.free, s.mi_alloc, s.mi_free

    results = {}
    for mode in ("lossless", "lossy"):
        ring = Ring.create(f"{name}.{mode}", slots=1024, slot_size=64, mode=mode, shm=True)
        p = ring.producer()
        c = ring.consumer()
        frame = np.arange(60, dtype=np.uint8)
        out = np.zeros(32 * (ring.slot_stride // 8), dtype=np.int64)
        def one_round(calls, bursts):
            before = stats()
            for _ in range(calls):
                publish_loop(p.ctrl, p.words, p.slot_bytes, p.pstate, frame, bursts, 32)
                if mode == "lossless":
                    drain_lossless(c.ctrl, c.words, c.cstate, 32)
                else:
                    drain_copy(c.ctrl, c.words, c.cstate, out, 32)
            return [a - b for a, b in zip(stats(), before)]
        one_round(2, 2)                    # warm-up: compile and first touch
        # Calling from Python wraps each array argument in an NRT meminfo (a fixed cost per
        # call, outside any loop).  Same number of calls, 8x the packets per call: any
        # difference is an allocation inside the loops.
        small = one_round(200, 2)          # 200 calls, 12,800 slots
        large = one_round(200, 16)         # 200 calls, 102,400 slots
        results[mode] = {"small": small, "large": large}
        c.close(); p.close(); ring.close(); Ring.remove(f"{name}.{mode}")
    print(json.dumps(results))
""")


def test_ring_loops_make_no_nrt_allocations(ring_name):
    env = dict(os.environ, NUMBA_NRT_STATS="1")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(ROOT), ring_name],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(results) == {"lossless", "lossy"}
    for mode, r in results.items():
        assert r["small"] == r["large"], (mode, r)            # nothing scales with packets
        assert r["large"][0] == r["large"][1], (mode, r)      # and nothing leaks
        assert r["large"][0] <= 200 * 9, (mode, r)   # one boxing per array argument per call


def test_the_allocation_counter_does_count(ring_name):
    """The instrument works: a loop that allocates per iteration is seen allocating."""
    code = textwrap.dedent("""
        import numpy as np
        from numba import njit
        from numba.core.runtime import rtsys
        @njit
        def allocating(n):
            s = 0
            for i in range(n):
                s += np.empty(4, dtype=np.int64).shape[0]
            return s
        allocating(1)
        a = rtsys.get_allocation_stats().alloc
        allocating(100)
        print(rtsys.get_allocation_stats().alloc - a)
    """)
    env = dict(os.environ, NUMBA_NRT_STATS="1")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.strip()) >= 100
