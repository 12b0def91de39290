"""Is the ring's producer still there?  End-of-stream detection for consumers.

A consumer polling an empty ring cannot tell a quiet producer from a dead one by the cursor
alone, and without help it would spin forever, silently, after a ``kill -9`` of the producer.
The producer leaves three traces in the ring's header and producer line (``shm.layout``): its
pid (``producer_pid``; 0 after a clean detach), when it attached (``producer_start_ns``) and its
heartbeat (``heartbeat_ns``: written at every ``submit`` and every idle tick,
``kernels.producer_idle``).  ``producer_status`` reads them:

=========  ======================================================  ==============
state      meaning                                                 end of stream
=========  ======================================================  ==============
never      no producer has attached yet (start time 0)             no: wait
starting   its pid exists, no heartbeat since it attached          no: wait
live       its pid exists, heartbeat younger than the timeout      no
detached   pid 0 after one attached: it closed cleanly             yes
dead       the recorded pid is gone, or is a zombie                yes
stale      the pid exists but its heartbeat is older than timeout  yes (stopped, hung)
=========  ======================================================  ==============

A consumer reports end of stream once the producer is *gone* (detached, dead or stale) **and**
it has read everything that producer published (its cursor is at the producer's cursor): a
lossless producer blocked on a full ring is never mistaken for a dead one, since the ring is
then not drained.  ``dead`` is seen at the next check; ``stale`` after ``timeout_s`` without a
heartbeat.  A producer started later on the same ring (``Producer`` resumes at the cursor)
makes the state ``live`` again; ``ProducerWatch`` reports both transitions once each.

``starting``: a producer is timed only from its first heartbeat.  Between attaching and its
first publish or idle tick it may be compiling its loop (tens of seconds with a cold Numba
cache: the matching engine of ``hugering market``), waiting for a NIC, or replaying a file it
is still reading; calling that "stale" would end every consumer's stream before it began.
A producer that hangs before its first heartbeat is therefore reported only if it dies.

Who calls: any process that has the ring mapped, from Python (not the hot path): the engine's
driver checks it between loop chunks (``engine.loop.ConsumerEngine.run``), ``hugering stat``
shows it.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from . import layout as L
from .clock import pid_alive

DEFAULT_TIMEOUT_S = 5.0      # heartbeat age after which a live pid counts as a stale producer
ZOMBIE_CHECK_AFTER_NS = 100_000_000   # read /proc for a zombie only once the heartbeat is this old
GONE = ("detached", "dead", "stale")


@dataclass
class ProducerStatus:
    state: str                     # never / starting / live / detached / dead / stale
    pid: int                       # the recorded pid (0: none or detached)
    cursor: int                    # the producer's cursor when read
    heartbeat_age_s: float | None  # None: no heartbeat ever
    message: str
    started_ns: int = 0            # when this producer attached (which producer it is)

    @property
    def gone(self) -> bool:
        return self.state in GONE

    def as_dict(self) -> dict:
        return asdict(self)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")   # the comm field may hold spaces


def producer_status(ring, timeout_s: float = DEFAULT_TIMEOUT_S,
                    now_ns: int | None = None) -> ProducerStatus:
    """The ring's producer as one of the states of the module table, with a one-line message."""
    now = time.time_ns() if now_ns is None else now_ns
    ctrl = ring.ctrl
    pid = int(ctrl[L.H_PRODUCER_PID])
    started = int(ctrl[L.H_PRODUCER_START])
    beat = int(ctrl[L.P_HEARTBEAT])
    cursor = int(ctrl[L.P_CURSOR])
    age_ns = now - max(beat, started) if (beat or started) else None
    age = None if age_ns is None else max(0.0, age_ns / 1e9)
    seen = "" if age is None else f" (last heartbeat {age:.1f} s ago)"
    if pid == 0:
        if started == 0 and beat == 0:
            return ProducerStatus("never", 0, cursor, age, "no producer has attached yet",
                                  started)
        return ProducerStatus("detached", 0, cursor, age,
                              f"the producer detached (closed cleanly) at seq {cursor}{seen}",
                              started)
    if not pid_alive(pid) or (age_ns is not None and age_ns > ZOMBIE_CHECK_AFTER_NS
                              and _is_zombie(pid)):
        return ProducerStatus("dead", pid, cursor, age,
                              f"producer pid {pid} died at seq {cursor}{seen}", started)
    if beat < started:                 # attached, no heartbeat of its own yet: not timed
        return ProducerStatus("starting", pid, cursor, age,
                              f"producer pid {pid} attached {age:.1f} s ago and has not "
                              f"published yet", started)
    if age_ns is not None and age_ns > timeout_s * 1e9:
        return ProducerStatus("stale", pid, cursor, age,
                              f"producer pid {pid} exists but has been silent for {age:.1f} s "
                              f"(timeout {timeout_s:g} s: stopped or hung) at seq {cursor}",
                              started)
    return ProducerStatus("live", pid, cursor, age, f"producer pid {pid} is live{seen}",
                          started)


class ProducerWatch:
    """Tracks one consumer's view of the producer and reports each change once.

    ``check(cursor)`` with the consumer's cursor returns ``("end", status)`` the first time
    the producer is gone and the consumer has read all it published, ``("back", status)`` the
    first time a producer is live again after that -- or a new one has attached since, even if
    it is already gone again (a short stream published and closed between two checks) -- and
    None otherwise."""

    def __init__(self, ring, timeout_s: float = DEFAULT_TIMEOUT_S):
        if not timeout_s > 0:
            raise ValueError(f"producer timeout must be > 0 seconds, got {timeout_s!r}")
        self.ring = ring
        self.timeout_s = timeout_s
        self.ended: ProducerStatus | None = None
        self.status: ProducerStatus | None = None

    def check(self, cursor: int, now_ns: int | None = None):
        st = producer_status(self.ring, self.timeout_s, now_ns)
        self.status = st
        if self.ended is None:
            if st.gone and cursor >= st.cursor:
                self.ended = st
                return "end", st
            return None
        if st.state == "live" or (st.started_ns != self.ended.started_ns
                                  and st.state in ("detached", "dead", "stale")):
            self.ended = None
            return "back", st
        return None
