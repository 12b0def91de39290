"""The @njit ring verbs against a naive Python model, driven by random interleavings.

The model is the ring's contract written as plainly as possible: a list of published frames,
one integer cursor per consumer, and the rules for lossless (never overwrite what an active
consumer has not released) and lossy (never wait; a reader more than a ring behind loses the
difference and restarts half a ring behind).
"""
from __future__ import annotations

import random

import numpy as np
import pytest

from shm import Ring
from shm import kernels as K
from shm import layout as L
from shm.clock import now_ns


def frame_for(seq: int, size: int) -> bytes:
    """A frame whose every byte depends on seq, so a mixed-up slot is visible."""
    return bytes((seq * 31 + i * 7) & 0xFF for i in range(size))


class NaiveRing:
    def __init__(self, capacity: int, lossy: bool):
        self.capacity, self.lossy = capacity, lossy
        self.frames: list[bytes] = []
        self.cursors: dict[int, int] = {}
        self.lost: dict[int, int] = {}
        self.invalid_below = 0   # lossy: reserving k slots invalidates the k oldest at once

    @property
    def head(self) -> int:
        return len(self.frames)

    def join(self, c: int) -> None:
        self.cursors[c] = self.head
        self.lost[c] = 0

    def free(self) -> int:
        if self.lossy or not self.cursors:
            return self.capacity
        return self.capacity - (self.head - min(self.cursors.values()))

    def reserved(self, k: int) -> None:
        if self.lossy:
            self.invalid_below = max(self.invalid_below, self.head + k - self.capacity)

    def publish(self, frames) -> None:
        self.frames.extend(frames)

    def available(self, c: int) -> int:
        return self.head - self.cursors[c]

    def take(self, c: int, n: int) -> list[tuple[int, bytes]]:
        cur = self.cursors[c]
        if self.lossy and self.head - cur > self.capacity:
            target = self.head - self.capacity // 2
            self.lost[c] += target - cur
            cur = target
        out = []
        while len(out) < n and cur < self.head:
            if self.lossy and cur < self.invalid_below:      # overwritten or being written
                target = self.head - self.capacity // 2
                if target > cur:
                    self.lost[c] += target - cur
                    cur = target
                break
            out.append((cur, self.frames[cur]))
            cur += 1
        self.cursors[c] = cur
        return out


def _slot_frame(records, j) -> tuple[int, bytes]:
    r = records[j]
    return int(r["seq"]), bytes(r["payload"][: int(r["cap_len"])])


@pytest.mark.parametrize("mode", ["lossless", "lossy"])
@pytest.mark.parametrize("seed", range(4))
def test_random_interleaving_matches_naive_model(ring_name, mode, seed):
    rng = random.Random(seed)
    cap, size = 64, 64
    ring = Ring.create(ring_name, slots=cap, slot_size=size, mode=mode, shm=True)
    model = NaiveRing(cap, lossy=(mode == "lossy"))
    producer = ring.producer()
    consumers = {}
    try:
        for c in range(3):
            consumers[c] = ring.consumer()
            model.join(c)
        seq = 0
        for _ in range(3000):
            if rng.random() < 0.5:
                n = rng.randint(1, 40)
                k = producer.reserve(n)
                assert k == min(n, model.free()), "reserve disagrees with the model"
                model.reserved(k)
                submit = rng.randint(0, k)
                frames = [frame_for(seq + j, rng.randint(1, size)) for j in range(submit)]
                for j, fr in enumerate(frames):
                    producer.write(j, fr, ts_ns=seq + j)
                producer.submit(submit)
                model.publish(frames)
                seq += submit
            else:
                c = rng.randrange(3)
                n = rng.randint(1, 40)
                cons = consumers[c]
                if mode == "lossless":
                    k = K.peek(cons.ctrl, cons.cstate, n)
                    assert k == min(n, model.available(c))
                    take = rng.randint(0, k)
                    expected = model.take(c, take)
                    for j, (s, fr) in enumerate(expected):
                        idx = K.consumer_slot(cons.cstate, j)
                        assert _slot_frame(ring.slots, idx) == (s, fr)
                    assert K.release(cons.ctrl, cons.cstate, take) == take
                else:
                    buf = np.zeros(n, dtype=L.slot_dtype(size))
                    k = K.receive(cons.ctrl, cons.words, cons.cstate, buf.view(np.int64), n)
                    expected = model.take(c, n)
                    assert k == len(expected)
                    for j, (s, fr) in enumerate(expected):
                        assert _slot_frame(buf, j) == (s, fr)
                    assert int(ring.consumer_lines[cons.index]["lost"]) == model.lost[c]
            assert int(ring.ctrl[L.P_CURSOR]) == model.head
        for c, cons in consumers.items():
            line = ring.consumer_lines[cons.index]
            assert int(line["cursor"]) == model.cursors[c]
    finally:
        for cons in consumers.values():
            cons.close()
        producer.close()
        ring.close()


def test_lossless_reserve_is_bounded_by_slowest_consumer(ring_name):
    ring = Ring.create(ring_name, slots=16, slot_size=64, shm=True)
    p, fast, slow = ring.producer(), ring.consumer(), ring.consumer()
    try:
        assert p.publish([b"x" * 10] * 16) == 16
        assert p.reserve(1) == 0                      # full: nobody released anything
        k = K.peek(fast.ctrl, fast.cstate, 16)
        K.release(fast.ctrl, fast.cstate, k)
        assert p.reserve(1) == 0                      # the slow one still holds all 16
        K.release(slow.ctrl, slow.cstate, K.peek(slow.ctrl, slow.cstate, 5))
        assert p.reserve(16) == 5
        assert int(ring.ctrl[L.PS_FULL_WAITS]) >= 2
        # drop policy: what does not fit is dropped and counted
        assert p.publish([b"y"] * 8) == 5
        assert int(ring.ctrl[L.PS_DROPPED_FULL]) == 3
    finally:
        for h in (fast, slow, p):
            h.close()
        ring.close()


def test_no_consumers_means_producer_never_blocks(ring_name):
    ring = Ring.create(ring_name, slots=8, slot_size=64, shm=True)
    with ring.producer() as p:
        assert p.publish([b"z"] * 100) == 100
        assert p.cursor == 100
    ring.close()


def test_truncation_is_clamped_and_flagged(ring_name):
    ring = Ring.create(ring_name, slots=8, slot_size=64, shm=True)
    with ring.consumer() as c, ring.producer() as p:
        p.publish([bytes(range(100))])
        (rec,) = c.poll()
        assert int(rec["cap_len"]) == 64 and int(rec["wire_len"]) == 100
        assert int(rec["flags"]) & L.SLOT_FLAG_TRUNCATED
        assert bytes(rec["payload"]) == bytes(range(64))
    ring.close()


def test_consumer_leave_frees_the_line_and_unblocks(ring_name):
    ring = Ring.create(ring_name, slots=8, slot_size=64, shm=True, max_consumers=2)
    p = ring.producer()
    a, b = ring.consumer(), ring.consumer()
    with pytest.raises(Exception, match="no free consumer line"):
        ring.consumer()
    p.publish([b"a"] * 8)
    assert p.reserve(1) == 0
    a.close()
    b.close()
    assert p.reserve(8) == 8                          # nobody left to wait for
    c = ring.consumer()                               # and the line is reusable
    assert c.index in (0, 1)
    c.close()
    p.close()
    ring.close()


def test_second_live_producer_is_refused(ring_name):
    ring = Ring.create(ring_name, slots=8, slot_size=64, shm=True)
    p = ring.producer()
    try:
        with pytest.raises(Exception, match="already has a live producer"):
            ring.producer()
    finally:
        p.close()
    ring.producer().close()                           # after detach, attaching works again
    ring.close()


def test_stalled_consumer_is_evicted_and_rejoins_counting_loss(ring_name):
    """In one process: a consumer that stops releasing is evicted after the timeout; it then
    sees -1, rejoins at the head and counts exactly the sequence numbers it skipped."""
    ring = Ring.create(ring_name, slots=16, slot_size=64, shm=True, consumer_timeout=0.05)
    p, c = ring.producer(), ring.consumer()
    try:
        p.publish([b"q"] * 16)
        deadline = now_ns() + 2_000_000_000
        k = 0
        while k == 0 and now_ns() < deadline:        # the pid is alive: only the timeout evicts
            k = p.reserve(4)
        assert k == 4
        assert int(ring.ctrl[L.PS_EVICTIONS]) == 1
        p.submit(4)
        assert K.peek(c.ctrl, c.cstate, 4) == -1
        missed = K.rejoin(c.ctrl, c.cstate, now_ns())
        assert missed == 20 and int(ring.consumer_lines[c.index]["lost"]) == 20
        assert int(ring.consumer_lines[c.index]["rejoins"]) == 1
        p.publish([b"r"])
        assert K.peek(c.ctrl, c.cstate, 4) == 1
    finally:
        c.close()
        p.close()
        ring.close()


def test_zombie_producer_does_not_block_its_replacement(ring_name):
    """A producer that died but was not reaped yet (a zombie) still has a pid; a new producer
    must be able to take over anyway."""
    import os
    import signal

    ring = Ring.create(ring_name, slots=8, slot_size=64, shm=True)
    pid = os.fork()
    if pid == 0:
        try:
            Ring.open(ring_name, writable_slots=True).producer().publish([b"first"])
        finally:
            os.kill(os.getpid(), signal.SIGKILL)       # die attached, without detaching
    try:
        deadline = now_ns() + 30_000_000_000
        while int(ring.header["producer_pid"]) != pid and now_ns() < deadline:
            pass
        while open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
            assert now_ns() < deadline
        with ring.producer() as p:                  # the zombie is still there, unreaped
            assert p.cursor == 1
            p.publish([b"second"])
    finally:
        os.waitpid(pid, 0)
        ring.close()


def test_line_claimed_by_a_process_that_died_before_joining_is_reclaimed(ring_name):
    import subprocess
    import sys

    ring = Ring.create(ring_name, slots=8, slot_size=64, shm=True, max_consumers=1)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    line = L.C_BASE
    ring.ctrl[line + L.C_STATE] = L.CONSUMER_CLAIMED     # claimed, never joined
    ring.ctrl[line + L.C_PID] = dead_pid
    ring.ctrl[line + L.C_DELIVERED] = 99
    c = ring.consumer()
    assert c.index == 0 and int(ring.consumer_lines[0]["delivered"]) == 0
    assert int(ring.consumer_lines[0]["pid"]) == c.pid
    c.close()
    ring.ctrl[line + L.C_STATE] = L.CONSUMER_CLAIMED     # being claimed now (pid not yet in)
    ring.ctrl[line + L.C_PID] = 0
    with pytest.raises(Exception, match="no free consumer line"):
        ring.consumer()
    ring.close()
