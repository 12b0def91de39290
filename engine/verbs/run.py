"""``hugering run CONFIG.yaml``: start a deployment described by a YAML file (see
``engine.supervisor`` for the order of events and ``engine.config`` for the file)."""
from __future__ import annotations

import json
import sys

from engine.cli import EXIT_INTERRUPTED, EXIT_OK, EXIT_RUNTIME, _add_json, command


@command("run", "create the rings of a YAML deployment, start its producers and consumers, "
                "supervise them")
def _run(p):
    p.add_argument("config", metavar="CONFIG.yaml", help="deployment file (see hugering check)")
    p.add_argument("--duration", type=float, default=None, metavar="S",
                   help="stop everything after S seconds (default: when every child is done, "
                        "or Ctrl-C / SIGTERM)")
    p.add_argument("--keep-rings", action="store_true",
                   help="leave the rings this run created (and their counters) in place")
    _add_json(p)
    p.set_defaults(handler=_run_run)


def _run_run(a) -> int:
    from engine import config as C
    from engine.supervisor import SupervisorError, run
    cfg = C.load(a.config)
    if cfg.hugering is None:
        raise C.ConfigError("hugering", "nothing to run: the file has no 'hugering' section",
                            cfg.source)
    sections = ["hugering.rings", "hugering.producers", "hugering.consumers"]
    if any(p.kind == "dpdk" for p in cfg.hugering.producers):
        sections.append("dpdk_config")
    C.require_machine(cfg, sections)
    try:
        rep = run(cfg, a.config, keep_rings=a.keep_rings, duration=a.duration)
    except SupervisorError as e:
        print(f"hugering: error: {e}", file=sys.stderr)
        return EXIT_RUNTIME
    failed = [c for c in rep["children"] if any(x["status"] not in (0, -15, 130, -2)
                                                for x in c["exits"][-1:])]
    if a.json:
        print(json.dumps(rep, default=str))
    else:
        for c in rep["children"]:
            f = c["final"] or {}
            if c["role"] == "consumer" and f:
                print(f"{c['name']}: received {f.get('received', 0):,}, handled "
                      f"{f.get('handled', 0):,}, filtered out {f.get('filtered_out', 0):,}, "
                      f"errors {f.get('handler_errors', 0):,}, lost {f.get('lost', 0):,}"
                      + (f", state {f['handler_state']}" if f.get("handler_state") else ""))
    if rep["stopped_by"] == "SIGINT":
        return EXIT_INTERRUPTED
    return EXIT_RUNTIME if failed else EXIT_OK
