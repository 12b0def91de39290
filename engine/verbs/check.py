"""``hugering check CONFIG.yaml [--json]``: validate a deployment configuration.

Exit status 0 when the file is valid -- what this machine lacks for it (cores, NUMA nodes, huge
pages, the NIC, an interface, a replay file) and advice about a valid file print as
``hugering: warning: ...`` lines, one each -- and 2 with one ``hugering: error: FILE: KEY:
message`` when it is not.  ``--json`` prints one object instead of the summary:
``{"ok", "source", "config", "derived", "counts", "warnings", "error"}``.
"""
from __future__ import annotations

import json
import sys

from engine.cli import EXIT_OK, EXIT_USAGE, PROG, command


@command("check", "validate a deployment configuration (dpdk_config / hugering YAML)")
def _check(p):
    p.description = ("Validate a deployment configuration file: its dpdk_config section (EAL "
                     "arguments, ports, buffer pools) and its hugering section (rings, "
                     "producers, consumers), then say what this machine lacks for it.  Exit "
                     "status 0: the file is valid (missing hardware prints as warnings); 2: it "
                     "is not (one error naming the file and the key).")
    p.add_argument("config", metavar="CONFIG.yaml", help="the configuration file")
    p.add_argument("--json", action="store_true",
                   help='print one JSON object: {"ok", "source", "config", "derived", '
                        '"counts", "warnings", "error"}')
    p.set_defaults(handler=_check_run)


def _check_run(a) -> int:
    from engine import config as C
    try:
        cfg = C.load(a.config)
    except C.ConfigError as e:
        if a.json:
            print(json.dumps({"ok": False, "source": a.config, "config": None, "derived": None,
                              "counts": None, "warnings": [],
                              "error": {"path": e.path, "message": e.reason, "text": str(e),
                                        "line": e.line, "column": e.column}}, indent=2))
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    warnings = C.machine_problems(cfg) + C.fallbacks(cfg) + C.advice(cfg)
    for w in warnings:
        print(f"{PROG}: warning: {w}", file=sys.stderr)
    if a.json:
        print(json.dumps({"ok": True, "source": cfg.source, "config": cfg.to_dict(),
                          "derived": cfg.derived(), "counts": C.counts(cfg),
                          "warnings": warnings, "error": None}, indent=2))
        return EXIT_OK
    n = C.counts(cfg)
    parts = [f"{n[k]} {what if n[k] == 1 else what + 's'}"
             for k, what in (("rings", "ring"), ("producers", "producer"),
                             ("consumers", "consumer"), ("dpdk_ports", "dpdk port"))]
    tail = f"; {len(warnings)} warning{'s' if len(warnings) != 1 else ''}" if warnings else ""
    print(f"{cfg.source}: ok ({', '.join(parts)}{tail})")
    for line in C.summary(cfg):
        print("  " + line)
    return EXIT_OK
