"""``hugering run CONFIG.yaml``: create the rings, start the processes, supervise, shut down.

Order of events:

1. load and validate the file (``engine.config``); refuse, with the same messages as
   ``hugering check``, when this machine lacks what the file asks for;
2. create every ring (one per queue; a ring that already exists is reused when its geometry
   and mode match, refused otherwise);
3. start the consumers (``engine.child``), one process per (consumer, queue), and wait until
   each has compiled its loop and joined its ring -- so that nothing a producer publishes is
   missed, and a bad handler fails before traffic starts;
4. start the producers, one process per (producer, queue);
5. supervise: a child that exits is reported with its exit status (and signal); with
   ``restart: on-failure`` (the default) a failed child is started again, at most
   ``max_restarts`` times (``always`` restarts a clean exit too).  The run ends when every
   child has finished, when every producer has finished and the consumers have read all it
   published (a consumer without a count or duration would otherwise poll forever), after
   ``--duration``, or on SIGINT/SIGTERM;
6. shut down: ask every consumer to stop through its shared stop flag, SIGTERM every child,
   SIGKILL what is still alive after ``STOP_GRACE_S``; then make sure no ring keeps a line of a
   dead process that would hold a lossless producer back (such lines are freed, a dead
   producer is detached); rings the run created are removed unless ``--keep-rings``.

The final report has every child's last counters (the JSON line each prints at exit).
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger("hugering")
COOPERATIVE_S = 0.3         # stop flag -> SIGTERM
STOP_GRACE_S = 1.5          # stop flag -> SIGKILL (the whole stop stays under 2 s)
READY_TIMEOUT_S = 120.0     # a cold compile of a consumer loop takes a few seconds


class SupervisorError(RuntimeError):
    """Something ``hugering run`` cannot do (a ring in the way, a child that never started)."""


@dataclass
class Child:
    role: str                 # "consumer" | "producer"
    name: str                 # the config entry's name
    queue: int
    label: str
    restart: str
    max_restarts: int
    ring: str
    proc: subprocess.Popen | None = None
    restarts: int = 0
    exits: list = field(default_factory=list)     # (status, seconds it ran)
    final: dict | None = None
    started: float = 0.0
    done: bool = False


class Supervisor:
    def __init__(self, cfg, config_path: str, *, keep_rings: bool = False,
                 duration: float | None = None, out=sys.stderr):
        self.cfg = cfg
        self.path = os.path.abspath(config_path)
        self.keep_rings = keep_rings
        self.duration = duration
        self.out = out
        self.children: list[Child] = []
        self.created: list[str] = []
        self.rings = {}
        self.stopping = None

    def say(self, msg: str) -> None:
        print(f"run: {msg}", file=self.out, flush=True)

    # -- rings ----------------------------------------------------------------------------
    def create_rings(self) -> None:
        from shm.backing import RingError
        from shm.ring import Ring
        for rc in self.cfg.hugering.rings:
            kw = rc.create_kwargs()
            for name in rc.ring_names():
                try:
                    ring = Ring.open(name, rc.hugetlbfs)
                except RingError:
                    ring = Ring.create(name, **kw)
                    self.created.append(name)
                    self.say(f"ring {name}: created ({ring.capacity:,} slots of "
                             f"{ring.slot_size} B, {ring.mode_name}, "
                             f"{'hugetlbfs' if ring.backing.kind == 0 else 'POSIX shm'})")
                else:
                    if (ring.capacity, ring.slot_size, ring.mode_name) != \
                            (rc.slots, rc.slot_size, rc.mode):
                        got = (ring.capacity, ring.slot_size, ring.mode_name)
                        ring.close()
                        raise SupervisorError(
                            f"ring {name} already exists with {got[0]} slots of {got[1]} B, "
                            f"{got[2]}; the file asks for {rc.slots} of {rc.slot_size} B, "
                            f"{rc.mode} (remove it: hugering ring rm {name})")
                    self.say(f"ring {name}: reusing the existing ring")
                self.rings[name] = ring

    # -- children -------------------------------------------------------------------------
    def _plan(self) -> None:
        h = self.cfg.hugering
        for role, entries in (("consumer", h.consumers), ("producer", h.producers)):
            for e in entries:
                rc = h.ring(e.ring)
                names = rc.ring_names()
                if role == "producer" and e.kind == "dpdk":
                    names = names[:1]       # one EAL process drives every queue of its port
                for q, ring_name in enumerate(names):
                    label = e.name if len(names) == 1 else f"{e.name}.q{q}"
                    self.children.append(Child(role, e.name, q, label, e.restart,
                                               e.max_restarts, ring_name))

    def _spawn(self, c: Child) -> None:
        c.proc = subprocess.Popen(
            [sys.executable, "-m", "engine.child", c.role, self.path, c.name, str(c.queue)],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
            cwd=os.getcwd(), start_new_session=False)
        c.started = time.monotonic()

    def _consumer_ready(self, c: Child) -> bool:
        """Its stats block says running (the loop compiled and the ring line joined)."""
        from engine.stats import STATE_RUNNING, W_PID, W_STATE, StatsRegion
        ring = self.rings[c.ring]
        st = StatsRegion.open_existing(ring)
        if st is None:
            return False
        try:
            for k in range(st.max_consumers):
                b = st.block(k)
                if int(b[W_PID]) == c.proc.pid and int(b[W_STATE]) == STATE_RUNNING:
                    return True
            return False
        finally:
            b = None
            st.close()

    def start(self) -> None:
        self._plan()
        consumers = [c for c in self.children if c.role == "consumer"]
        for c in consumers:
            self._spawn(c)
        deadline = time.monotonic() + READY_TIMEOUT_S
        waiting = list(consumers)
        while waiting:
            for c in list(waiting):
                if c.proc.poll() is not None:
                    self._reap(c)
                    raise SupervisorError(f"consumer {c.label} exited with "
                                          f"{self._status(c.proc.returncode)} before it was "
                                          "ready (see its message above)")
                if self._consumer_ready(c):
                    waiting.remove(c)
                    self.say(f"consumer {c.label}: running (pid {c.proc.pid}, ring {c.ring})")
            if self.stopping:
                return
            if time.monotonic() > deadline:
                raise SupervisorError("consumers not ready after "
                                      f"{READY_TIMEOUT_S:.0f} s: "
                                      + ", ".join(c.label for c in waiting))
            time.sleep(0.02)
        for c in self.children:
            if c.role == "producer":
                self._spawn(c)
                self.say(f"producer {c.label}: started (pid {c.proc.pid}, ring {c.ring})")

    @staticmethod
    def _status(rc: int) -> str:
        if rc < 0:
            try:
                return f"signal {signal.Signals(-rc).name}"
            except ValueError:
                return f"signal {-rc}"
        return f"status {rc}"

    def _reap(self, c: Child) -> None:
        out = c.proc.stdout.read() if c.proc.stdout else ""
        for line in out.splitlines():
            try:
                c.final = json.loads(line)
            except ValueError:
                pass
        c.exits.append((c.proc.returncode, time.monotonic() - c.started))

    def supervise(self) -> None:
        end = time.monotonic() + self.duration if self.duration else None
        while not self.stopping:
            alive = 0
            for c in self.children:
                if c.proc is None or c.done:
                    continue
                rc = c.proc.poll()
                if rc is None:
                    alive += 1
                    continue
                self._reap(c)
                again = (c.restart == "always" or (c.restart == "on-failure" and rc != 0))
                if again and c.restarts < c.max_restarts and not self.stopping:
                    c.restarts += 1
                    self.say(f"{c.role} {c.label} (pid {c.proc.pid}) exited with "
                             f"{self._status(rc)}; restart {c.restarts}/{c.max_restarts}")
                    self._spawn(c)
                    alive += 1
                else:
                    c.done = True
                    self.say(f"{c.role} {c.label} (pid {c.proc.pid}) exited with "
                             f"{self._status(rc)}"
                             + (f" after {c.restarts} restarts" if c.restarts else ""))
            if alive == 0:
                return
            if self._drained():
                self.say("producers finished and consumers drained their rings")
                return
            if end is not None and time.monotonic() >= end:
                self.say(f"duration {self.duration:g} s reached")
                return
            time.sleep(0.05)

    def _drained(self) -> bool:
        """Every producer has finished and every live consumer has read all it published
        (then nothing more will come: the run is over)."""
        from shm import layout as L
        prods = [c for c in self.children if c.role == "producer"]
        if not prods or not all(c.done for c in prods):
            return False
        for ring in self.rings.values():
            head = int(ring.ctrl[L.P_CURSOR])
            for k in range(ring.max_consumers):
                line = L.C_BASE + k * L.C_WORDS
                if int(ring.ctrl[line + L.C_STATE]) == L.CONSUMER_ACTIVE and \
                        int(ring.ctrl[line + L.C_CURSOR]) < head:
                    return False
        return True

    def stop(self) -> None:
        """Stop every child: cooperative flag, SIGTERM, then SIGKILL after the grace time."""
        from engine.stats import W_PID, StatsRegion
        live = [c for c in self.children if c.proc is not None and c.proc.poll() is None]
        for ring in self.rings.values():
            st = StatsRegion.open_existing(ring)
            if st is not None:
                pids = {c.proc.pid for c in live if c.role == "consumer"}
                for k in range(st.max_consumers):
                    if int(st.block(k)[W_PID]) in pids:
                        st.request_stop(k)
                st.close()
        t0 = time.monotonic()
        polite = t0 + COOPERATIVE_S        # the stop flag first: a clean "stop requested"
        while time.monotonic() < polite and any(c.proc.poll() is None for c in live
                                                if c.role == "consumer"):
            time.sleep(0.01)
        for c in live:
            if c.proc.poll() is None:
                try:
                    c.proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = t0 + STOP_GRACE_S
        for c in live:
            left = deadline - time.monotonic()
            try:
                c.proc.wait(timeout=max(left, 0.01))
            except subprocess.TimeoutExpired:
                self.say(f"{c.role} {c.label} (pid {c.proc.pid}) ignored SIGTERM: killed")
                c.proc.kill()
                c.proc.wait()
        for c in live:
            if not c.done:
                self._reap(c)
                c.done = True

    def release_dead_lines(self) -> list[str]:
        """Free ring lines held by dead processes (a lossless producer must not wait on
        them) and detach a dead producer.  Returns what was done, one line each."""
        from shm import kernels as K
        from shm import layout as L
        from shm.clock import pid_alive
        done = []
        for name, ring in self.rings.items():
            for k in range(ring.max_consumers):
                line = L.C_BASE + k * L.C_WORDS
                state = int(ring.ctrl[line + L.C_STATE])
                pid = int(ring.ctrl[line + L.C_PID])
                if state in (L.CONSUMER_CLAIMED, L.CONSUMER_ACTIVE) and not pid_alive(pid):
                    cstate = np.zeros(K.CSTATE_WORDS, np.int64)
                    cstate[K.CS_LINE] = line
                    K.consumer_leave(ring.ctrl, cstate)
                    done.append(f"ring {name}: freed consumer line {k} of dead pid {pid}")
            ppid = int(ring.header["producer_pid"])
            if ppid and not pid_alive(ppid):
                K.detach_producer(ring.ctrl, ppid)
        return done

    def close(self) -> None:
        from engine.stats import remove as remove_stats
        from shm.ring import Ring
        for name, ring in self.rings.items():
            ring.close()
            if name in self.created and not self.keep_rings:
                Ring.remove(name)
                remove_stats(name)
        self.rings = {}

    def report(self) -> dict:
        return {"config": self.path,
                "stopped_by": self.stopping or "finished",
                "children": [{"role": c.role, "name": c.label, "ring": c.ring,
                              "exits": [{"status": s, "ran_s": round(t, 3)}
                                        for s, t in c.exits],
                              "restarts": c.restarts, "final": c.final}
                             for c in self.children],
                "rings_kept": [n for n in self.created if self.keep_rings]}


def run(cfg, config_path: str, *, keep_rings: bool = False, duration: float | None = None,
        out=sys.stderr) -> dict:
    """The whole of ``hugering run`` (see the module docstring); returns the report."""
    sup = Supervisor(cfg, config_path, keep_rings=keep_rings, duration=duration, out=out)

    def on_signal(signum, frame):
        if sup.stopping is None:
            sup.stopping = signal.Signals(signum).name
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        sup.create_rings()
        try:
            sup.start()
            sup.supervise()
        finally:
            t0 = time.monotonic()
            sup.stop()
            for line in sup.release_dead_lines():
                sup.say(line)
            if sup.stopping:
                sup.say(f"{sup.stopping}: stopped every child in "
                        f"{time.monotonic() - t0:.2f} s")
        return sup.report()
    finally:
        sup.close()
        for s, h in old.items():
            signal.signal(s, h)
