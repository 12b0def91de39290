"""``hugering consume NAME``: one engine consumer from the command line (no YAML file).

What ``hugering run`` starts for each consumer entry, for trying a handler or a filter on a
live ring: pin (``--cpu``), check placement (``--nic`` adds the NIC's NUMA node to the
checks), apply the jitter controls, compile and warm up, then poll until ``--count``,
``--duration``, Ctrl-C / SIGTERM or ``hugering stat``'s stop flag, and print the final
counters (``--json``: the consumer's report, the keys of ``hugering stat --json``'s consumer
entries).
"""
from __future__ import annotations

import json
import os
import sys

from engine.cli import EXIT_OK, UsageError, _add_json, _add_location, command


@command("consume", "run one engine consumer (handler, filter, idle strategy, cpu) on a ring")
def _consume(p):
    p.add_argument("name", help="ring name")
    _add_location(p)
    p.add_argument("--handler", dest="handler_ref", metavar="MODULE:FUNCTION", default=None,
                   help="an @njit handler (see engine/loop.py); default: count only")
    p.add_argument("--filter", metavar="EXPR", default=None, help="pcap-filter expression")
    p.add_argument("--cpu", type=int, default=None, metavar="N", help="pin the poll loop")
    p.add_argument("--nic", metavar="IF", default=None,
                   help="the interface feeding the ring: warn if it is on another NUMA node")
    p.add_argument("--idle", choices=["busy", "spin_yield", "backoff"], default="busy",
                   help="idle strategy (default busy: for a pinned, isolated core)")
    p.add_argument("--burst", type=int, default=32, metavar="N")
    p.add_argument("--state-size", type=int, default=64, metavar="WORDS")
    p.add_argument("--count", type=int, default=None, metavar="N", help="stop after N packets")
    p.add_argument("--duration", type=float, default=None, metavar="S")
    p.add_argument("--realtime", action="store_true", help="SCHED_FIFO for the poll thread")
    p.add_argument("--name-as", dest="label", default=None, metavar="LABEL",
                   help="consumer name shown by hugering stat (default consume-PID)")
    _add_json(p)
    p.set_defaults(handler=_consume_run)


def _consume_run(a) -> int:
    from engine import placement as PL
    from engine.loop import ConsumerEngine, HandlerError
    from parsers.filters import FilterSyntaxError
    if a.cpu is not None:
        try:
            PL.pin(a.cpu)
        except ValueError as e:
            raise UsageError(f"consume: --cpu: {e}") from None
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        eng = ConsumerEngine(a.name, name=a.label or f"consume-{os.getpid()}",
                             handler=a.handler_ref, filter=a.filter, burst=a.burst,
                             state_size=a.state_size, idle=a.idle, cpu=a.cpu,
                             hugetlbfs=a.hugetlbfs, join=False)
    except (HandlerError, FilterSyntaxError) as e:
        raise UsageError(f"consume: {e}") from None
    try:
        warnings = (PL.check_placement(a.cpu, interface=a.nic, memory=eng.ring.slot_bytes)
                    if a.cpu is not None or a.nic else [])
        jit = PL.apply_jitter_controls(realtime=a.realtime, prefault=[eng.ring.slot_bytes])
        print(f"consume {a.name}: warm-up {eng.warm_up_s:.2f} s; "
              + PL.startup_line(a.cpu, warnings, jit, hugepages=eng.ring.backing.kind == 0,
                                memory=eng.ring.slot_bytes), file=sys.stderr, flush=True)
        rep = eng.run(count=a.count, duration=a.duration)
    finally:
        eng.close()
    if a.json:
        print(json.dumps(rep))
    else:
        lat = rep["latency_ns"]
        print(f"{rep['status']}: received {rep['received']:,}, filtered out "
              f"{rep['filtered_out']:,}, handled {rep['handled']:,}, handler errors "
              f"{rep['handler_errors']:,}, lost {rep['lost']:,}; latency ns p50 {lat['p50']} "
              f"p99 {lat['p99']} p99.9 {lat['p99_9']} p99.99 {lat['p99_99']} max {lat['max']}")
    return EXIT_OK
