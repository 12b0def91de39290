"""shm.liveness: the producer states a consumer sees (never, starting, live, stale, detached),
read from a real ring the test attaches a real producer to.  (Dead producers, kill -9 and
SIGSTOP, are tests/faults/test_process_faults.py.)"""
from __future__ import annotations

import time

from shm import liveness as LV
from shm.ring import Ring


def test_states_from_attach_to_detach(ring_name):
    ring = Ring.create(ring_name, slots=64, slot_size=64, shm=True)
    try:
        assert LV.producer_status(ring).state == "never"
        watch = LV.ProducerWatch(ring, timeout_s=1.0)
        with ring.producer() as p:
            # attached, nothing published yet (compiling, say): not timed, however long
            later = time.time_ns() + 3600 * 10**9
            st = LV.producer_status(ring, 1.0, now_ns=later)
            assert st.state == "starting" and not st.gone, st
            assert "has not published yet" in st.message
            assert watch.check(0, now_ns=later) is None
            p.publish([b"x" * 60])
            st = LV.producer_status(ring, 1.0)
            assert st.state == "live" and st.cursor == 1
            # from its first heartbeat on, silence is timed
            st = LV.producer_status(ring, 1.0, now_ns=time.time_ns() + 2 * 10**9)
            assert st.state == "stale" and "silent for" in st.message
            assert watch.check(0, now_ns=time.time_ns() + 2 * 10**9) is None   # unread slot
            ev = watch.check(1, now_ns=time.time_ns() + 2 * 10**9)
            assert ev is not None and ev[0] == "end"
            assert watch.check(1)[0] == "back"                                  # beating again
        st = LV.producer_status(ring)
        assert st.state == "detached" and st.gone and "closed cleanly" in st.message
    finally:
        ring.close()


def test_a_new_producer_that_came_and_went_between_two_checks_is_reported(ring_name):
    """After an end of stream, a second producer publishes its whole (short) stream and
    detaches before the consumer looks again: the watch still reports it came back (then the
    new end), instead of leaving the consumer believing it never returned."""
    ring = Ring.create(ring_name, slots=64, slot_size=64, shm=True)
    try:
        watch = LV.ProducerWatch(ring, timeout_s=1.0)
        with ring.producer() as p:
            p.publish([b"a" * 60])
        ev = watch.check(1)
        assert ev[0] == "end" and ev[1].state == "detached"
        first = ev[1].started_ns
        time.sleep(0.001)
        with ring.producer() as p:
            p.publish([b"b" * 60, b"c" * 60])
        ev = watch.check(1)
        assert ev[0] == "back" and ev[1].state == "detached" and ev[1].started_ns > first
        ev = watch.check(3)
        assert ev[0] == "end" and ev[1].cursor == 3
        assert watch.check(3) is None
    finally:
        ring.close()
