"""The processes ``hugering run`` starts: one per (consumer or producer, queue).

    python -m engine.child consumer CONFIG NAME QUEUE
    python -m engine.child producer CONFIG NAME QUEUE

Each child loads and validates the configuration itself (the file is the only thing the
supervisor passes), pins itself, applies the jitter controls, says in one line what it got
(``engine.placement.startup_line``), runs, and at the end prints its final counters: one text
line on stderr for the operator and one JSON object on stdout for the supervisor.  SIGINT and
SIGTERM stop it cleanly (counters still printed); it also asks the kernel for SIGTERM if the
supervisor dies (``PR_SET_PDEATHSIG``), so a ``kill -9`` of ``hugering run`` leaves no orphan
busy-polling a core.

Exit status: 0 done (count, duration, stop), 1 runtime error, 2 configuration error, 3 the
producer kind is not available in this build.
"""
from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import sys
import time

log = logging.getLogger("hugering")
PR_SET_PDEATHSIG = 1
EXIT_UNAVAILABLE = 3


def set_death_signal(sig: int) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies (kill -9 included).
    ``PR_SET_PDEATHSIG`` survives exec, so a ``preexec_fn`` can set it for a program started
    through others (``ip netns exec``)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _die_with_parent() -> None:
    set_death_signal(signal.SIGTERM)
    if os.getppid() == 1:            # the parent died before prctl: do not start at all
        sys.exit(1)


def _label(name: str, queue: int, queues: int) -> str:
    return name if queues == 1 else f"{name}.q{queue}"


def _lat(v) -> str:
    if v is None:
        return "-"
    return f"{v / 1e3:.1f} us" if v >= 10_000 else f"{v} ns"


def run_consumer(cfg, name: str, queue: int) -> int:
    from engine import placement as PL
    from engine.loop import ConsumerEngine
    h = cfg.hugering
    (c,) = [x for x in h.consumers if x.name == name]
    rc = h.ring(c.ring)
    ring_name = rc.ring_names()[queue]
    cpus = c.cpus(rc.queues)
    cpu = cpus[queue] if cpus else None
    label = _label(c.name, queue, rc.queues)
    if cpu is not None:
        PL.pin(cpu)                  # before compiling and allocating: memory on cpu's node
    for d in (cfg.base_dir, os.getcwd()):   # "module:function" handlers next to the file
        if d and d not in sys.path:
            sys.path.insert(0, d)
    state = None
    eng = ConsumerEngine(ring_name, name=label, handler=c.handler, filter=c.compile_filter(),
                         burst=c.burst, state_size=c.state_size, idle=c.idle,
                         spin=c.spin_before_idle, max_sleep_us=c.max_sleep_us, cpu=cpu,
                         hugetlbfs=rc.hugetlbfs, state=state, join=False)
    try:
        warnings = PL.check_placement(cpu, memory=eng.ring.slot_bytes) if cpu is not None \
            else []
        jit = PL.apply_jitter_controls(lock_memory=c.lock_memory, realtime=c.realtime,
                                       prefault=[eng.ring.slot_bytes])
        print(f"consumer {label}: ring {ring_name}, warm-up {eng.warm_up_s:.2f} s; "
              + PL.startup_line(cpu, warnings, jit, hugepages=eng.ring.backing.kind == 0,
                                memory=eng.ring.slot_bytes), file=sys.stderr, flush=True)
        rep = eng.run(count=c.count, duration=c.duration_s)
        parts = c.handler_parts()           # a handler module may name its state words
        mod = sys.modules.get(parts[0]) if parts else None
        if mod is not None and callable(getattr(mod, "describe", None)):
            rep["handler_state"] = mod.describe(eng.state)
        lat = rep["latency_ns"]
        print(f"consumer {label}: {rep['status']}: received {rep['received']:,}, filtered out "
              f"{rep['filtered_out']:,}, handled {rep['handled']:,}, handler errors "
              f"{rep['handler_errors']:,}, lost {rep['lost']:,}; latency p50 {_lat(lat['p50'])}"
              f" p99 {_lat(lat['p99'])} p99.99 {_lat(lat['p99_99'])} max {_lat(lat['max'])}",
              file=sys.stderr, flush=True)
        print(json.dumps({"kind": "consumer", "name": label, **rep}), flush=True)
        return 0
    finally:
        eng.close()


def run_producer(cfg, name: str, queue: int) -> int:
    from engine import placement as PL
    h = cfg.hugering
    (p,) = [x for x in h.producers if x.name == name]
    rc = h.ring(p.ring)
    ring_name = rc.ring_names()[queue]
    cpus = p.cpus(rc.queues)
    cpu = cpus[queue] if cpus else None
    label = _label(p.name, queue, rc.queues)
    if p.kind == "dpdk":
        # one process drives the whole port (every RX queue's ring): EAL pins its lcores to
        # the producer's cpus itself, this Python parent only waits
        label, cpu = p.name, None
    if cpu is not None:
        PL.pin(cpu)
    stopping = []

    def on_signal(signum, frame):
        stopping.append(signum)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    o = p.options
    t0 = time.time()
    if p.kind == "synthetic":
        from engine.producers.synthetic import SyntheticProducer
        from shm.ring import Ring
        ring = Ring.open(ring_name, rc.hugetlbfs)
        try:
            with SyntheticProducer(ring, rate=o.rate_pps or None, sizes=(o.min_size, o.max_size),
                                   seed=o.seed, queue=queue) as prod:
                print(f"producer {label}: synthetic into {ring_name}", file=sys.stderr,
                      flush=True)
                rep = prod.run(count=o.count, duration=o.duration_s,
                               stop=lambda: bool(stopping))
        finally:
            ring.close()
    elif p.kind == "replay":
        from engine.replay import replay
        print(f"producer {label}: replay {o.file} into {ring_name}", file=sys.stderr,
              flush=True)
        rep = replay(ring_name, str(cfg.resolve(o.file)), hugetlbfs=rc.hugetlbfs,
                     pps=o.pps, speed=None if (o.pps or o.topspeed) else o.speed,
                     topspeed=o.topspeed, loop=o.loop,
                     original_timestamps=o.original_timestamps, stop=lambda: bool(stopping))
    elif p.kind == "af_xdp":
        from engine.producers.afxdp import AfXdpProducer
        from engine.producers.xsk_lib import MissingDependency
        from shm.ring import Ring
        nic_queue = o.queues[queue] if o.queues is not None else queue
        ring = Ring.open(ring_name, rc.hugetlbfs)
        try:
            try:
                prod = AfXdpProducer(ring, o.interface, queue=nic_queue, xdp_mode=o.xdp_mode,
                                     bind=o.bind, hugetlbfs=rc.hugetlbfs, filter=o.filter)
            except MissingDependency as e:
                print(f"hugering: error: producer {label}: {e}", file=sys.stderr, flush=True)
                return EXIT_UNAVAILABLE
            with prod:
                print(f"producer {label}: {prod.mode_line()} into {ring_name}",
                      file=sys.stderr, flush=True)
                rep = prod.run(stop=lambda: bool(stopping))
                rep["setup"] = prod.describe()
        finally:
            ring.close()
    elif p.kind == "dpdk":
        from engine.producers import dpdk as D
        try:
            plan = D.launch_plan(cfg, port=o.port, ring=rc.name, tx_ring=o.tx_ring,
                                 cpus=list(cpus) if cpus else None, hugetlbfs=rc.hugetlbfs)
        except D.DpdkUnavailable as e:
            print(f"hugering: error: producer {label}: {e}", file=sys.stderr, flush=True)
            return EXIT_UNAVAILABLE
        for note in plan.notes:
            print(f"producer {label}: note: {note}", file=sys.stderr, flush=True)
        prod = D.DpdkProducer(plan, echo=True)
        try:
            prod.start()
            print(f"producer {label}: dpdk {cfg.dpdk.ports[o.port].device_id} into "
                  f"{', '.join(plan.rings)}", file=sys.stderr, flush=True)
            while not stopping and prod.running():
                time.sleep(0.02)
            final = prod.stop()
        except D.DpdkError as e:
            print(f"hugering: error: producer {label}: {e}", file=sys.stderr, flush=True)
            return 1
        finally:
            prod.kill()
        if final is None:
            print(f"hugering: error: producer {label}: hugering-dpdk exited with status "
                  f"{prod.returncode()}", file=sys.stderr, flush=True)
            return 1
        queues = [q for port in final["ports"] for q in port["queues"]]
        rep = {"published": sum(q["published"] for q in queues),
               "dropped": sum(q["dropped"] for q in queues),
               "startup": prod.startup, "final": final}
    else:
        print(f"hugering: error: producer {label}: kind {p.kind!r} is not available in this "
              "build yet", file=sys.stderr, flush=True)
        return EXIT_UNAVAILABLE
    rep = {k: v for k, v in rep.items() if isinstance(v, (int, float, str, bool, type(None),
                                                          dict, list))}
    print(f"producer {label}: done in {time.time() - t0:.1f} s: "
          + ", ".join(f"{k} {rep[k]:,}" for k in ("published", "sent", "dropped")
                      if isinstance(rep.get(k), int)), file=sys.stderr, flush=True)
    print(json.dumps({"kind": "producer", "name": label, **rep}, default=str), flush=True)
    return 0


def main(argv=None) -> int:
    from engine.cli import setup_logging
    from engine.config import ConfigError, load
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 4 or argv[0] not in ("consumer", "producer"):
        print("usage: python -m engine.child consumer|producer CONFIG NAME QUEUE",
              file=sys.stderr)
        return 2
    _die_with_parent()
    setup_logging()
    role, path, name, queue = argv[0], argv[1], argv[2], int(argv[3])
    try:
        cfg = load(path)
    except ConfigError as e:
        print(f"hugering: error: {e}", file=sys.stderr)
        return 2
    try:
        return (run_consumer if role == "consumer" else run_producer)(cfg, name, queue)
    except KeyboardInterrupt:
        return 130
    except Exception as e:           # one line for the operator; the supervisor reports it
        log.debug("child failed", exc_info=True)
        print(f"hugering: error: {role} {name}: {type(e).__name__}: {e}", file=sys.stderr,
              flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
