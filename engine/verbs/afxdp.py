"""``hugering afxdp IFACE --ring NAME``: an AF_XDP socket on an interface's RX queue feeding a
ring, as its producer (``engine.producers.afxdp``), with the filter pushed into the XDP program.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys

from engine.cli import (EXIT_INTERRUPTED, EXIT_OK, EXIT_RUNTIME, EXIT_USAGE, PROG, UsageError,
                        command, fields)

EXIT_UNAVAILABLE = 3

_EPILOG = """\
what it does
  Attaches hugering's XDP program to IFACE (native mode, else generic/skb mode; --mode forces
  one), binds an AF_XDP socket to RX queue --queue (zero-copy when the driver can, else copy
  mode), and copies every frame the filter selects into the ring.  Frames the filter does not
  select stay in the kernel stack (ARP, ping, ssh keep working).  The first line on stderr says
  what was obtained: XDP mode, bind mode, UMEM memory, and the filter split (rules the kernel
  evaluates; what user space re-checks).

filters
  --filter takes pcap-filter syntax (as tcpdump).  host/net/port/portrange/proto/ip/ip6/arp
  without a vlan tag go into the kernel's maps; anything else is checked in user space on what
  the kernel redirected.  --filter-file PATH reads the expression from a file and reads it again
  on SIGHUP: the new rules apply to the next frames, without reloading the program or closing
  the socket.

stopping
  Ctrl-C or SIGTERM: frames queued for transmit are given a second to complete, the program
  is detached, the socket closed, the report printed.  After a
  kill -9 the program stays on the interface; the next start removes it and says so.

exit status
  0 done; 1 a setup error (no such interface, not root, memlock limit, queue out of range, XDP
  not supported, the ring missing or busy); 2 a bad command line; 3 libxdp/libbpf/clang missing;
  130 stopped by a signal (the report is still printed)."""


def _ring_name(text: str) -> str:
    from shm.backing import RingNameError, validate_name
    try:
        return validate_name(text)
    except RingNameError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _nonneg(what: str, hi: int = 1 << 20):
    def parse(text: str) -> int:
        try:
            v = int(text, 0)
        except ValueError:
            v = -1
        if not 0 <= v <= hi:
            raise argparse.ArgumentTypeError(f"expected {what} from 0 to {hi}, got {text!r}")
        return v
    parse.__name__ = what
    return parse


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not 0 < v < 1e9:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text!r}")
    return v


def _queues(text: str):
    if text == "all":
        return "all"
    return _nonneg("a queue count or 'all'", 1024)(text)


def _cpus(text: str) -> list[int]:
    try:
        v = [int(x) for x in text.split(",")]
    except ValueError:
        v = [-1]
    if not v or any(not 0 <= c < 4096 for c in v):
        raise argparse.ArgumentTypeError(f"expected a cpu number or a list like 2,3, got "
                                         f"{text!r}")
    return v


@command("afxdp", "receive from a network interface into a ring through AF_XDP")
def _afxdp(p):
    p.description = ("Receive frames from IFACE's RX queue through an AF_XDP socket into an\n"
                     "existing ring, as its single producer, with the filter evaluated in the\n"
                     "kernel (XDP) where it can be.")
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = _EPILOG
    p.add_argument("interface", metavar="IFACE", help="network interface, e.g. eth1")
    p.add_argument("--ring", required=True, type=_ring_name, metavar="NAME",
                   help="an existing ring (hugering ring create NAME)")
    p.add_argument("--queue", type=_nonneg("a queue number", 1023), default=0, metavar="Q",
                   help="the NIC RX queue (default 0)")
    p.add_argument("--queues", type=_queues, default=1, metavar="N|all",
                   help="RX queues Q .. Q+N-1, one socket and one ring each: rings NAME.q0 .. "
                        "NAME.q{N-1} when N > 1 (as in the YAML configuration); 'all': as "
                        "many as the interface has (ethtool -l)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--filter", metavar="EXPR", help="pcap-filter expression (default: every "
                                                      "frame)")
    g.add_argument("--filter-file", metavar="PATH",
                   help="read the filter from PATH, and again on SIGHUP")
    p.add_argument("--mode", choices=("auto", "native", "skb"), default="auto",
                   help="XDP attach mode (default auto: native, else skb)")
    p.add_argument("--bind", choices=("auto", "zerocopy", "copy"), default="auto",
                   help="AF_XDP bind (default auto: zero-copy, else copy)")
    p.add_argument("--tx-ring", type=_ring_name, metavar="NAME",
                   help="also transmit: frames published into this (lossless) ring leave "
                        "through the socket")
    p.add_argument("--tx-frames", type=_nonneg("a frame count", 65536), default=4096,
                   metavar="N", help="UMEM frames for transmit (default 4096)")
    p.add_argument("--cpu", type=_cpus, metavar="N[,N...]",
                   help="pin the poll loop to this cpu (one per queue with --queues; default "
                        "with several queues: cpus of the NIC's NUMA node)")
    p.add_argument("--frames", type=_nonneg("a frame count"), default=16384, metavar="N",
                   help="UMEM frames, also the fill and RX ring sizes (power of two; default "
                        "16384)")
    p.add_argument("--frame-size", type=int, choices=(2048, 4096), default=2048,
                   help="UMEM frame size (default 2048)")
    p.add_argument("--busy", action="store_true",
                   help="busy-poll even when idle (default: sleep in poll() when idle)")
    p.add_argument("--count", type=_nonneg("a frame count", 1 << 62), metavar="N",
                   help="stop after N frames selected")
    p.add_argument("--duration", type=_seconds, metavar="S", help="stop after S seconds")
    p.add_argument("--hugetlbfs", metavar="PATH",
                   help="look for the ring on this hugetlbfs mount, and put the UMEM there "
                        "(default /dev/hugepages)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(handler=_afxdp_run)


def _read_filter(path: str) -> str | None:
    try:
        text = open(path).read()
    except OSError as e:
        raise UsageError(f"afxdp: --filter-file: cannot read {path}: {e.strerror}") from None
    lines = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    expr = " ".join(ln for ln in lines if ln)
    return expr or None


def _afxdp_run(a) -> int:
    from engine.dump import StopSignals
    from parsers.filters import FilterSyntaxError
    from shm.ring import Ring
    try:
        from engine.producers.afxdp import AfXdpError, AfXdpProducer, AfXdpQueues
        from engine.producers.xsk_lib import MissingDependency
    except ImportError as e:                    # numba & co. are there; this is belt and braces
        print(f"{PROG}: error: afxdp: {e}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if a.queues == "all":
        from engine.producers.afxdp import rx_queues
        a.queues = max(1, len(rx_queues(a.interface)) - a.queue)
    multi = a.queues > 1
    if a.queues == 0:
        raise UsageError("afxdp: --queues: expected at least 1")
    if a.cpu is not None and len(a.cpu) not in (1, a.queues):
        raise UsageError(f"afxdp: --cpu: one cpu, or one per queue ({a.queues}), got "
                         f"{len(a.cpu)}")
    if multi and a.tx_ring:
        raise UsageError("afxdp: --tx-ring: with one queue only (transmit on queue Q)")
    expr = _read_filter(a.filter_file) if a.filter_file else a.filter
    cpus = None if a.cpu is None else (a.cpu * a.queues if len(a.cpu) == 1 else a.cpu)
    if cpus is None and multi:
        cpus = "auto"                           # the NIC's NUMA node
    if a.cpu is not None and not multi:
        from engine import placement as PL
        PL.pin(cpus[0])
    from engine.config import ring_names
    rings = []
    reload = []
    txr = None
    try:
        for name in ring_names(a.ring, a.queues):
            rings.append(Ring.open(name, a.hugetlbfs))
        txr = Ring.open(a.tx_ring, a.hugetlbfs) if a.tx_ring else None
        kw = dict(filter=expr, xdp_mode=a.mode, bind=a.bind, frames=a.frames,
                  frame_size=a.frame_size, hugetlbfs=a.hugetlbfs,
                  idle="busy" if a.busy else "poll")
        try:
            if multi:
                prod = AfXdpQueues(rings, a.interface, queues=range(a.queue, a.queue + a.queues),
                                   cpus=cpus, **kw)
                members = prod.producers
            else:
                prod = AfXdpProducer(rings[0], a.interface, queue=a.queue, tx_ring=txr,
                                     tx_frames=a.tx_frames, **kw)
                members = [prod]
        except FilterSyntaxError as e:
            raise UsageError(f"afxdp: --filter: {e}") from None
        except MissingDependency as e:
            print(f"{PROG}: error: {e}", file=sys.stderr)
            return EXIT_UNAVAILABLE
        except AfXdpError as e:
            print(f"{PROG}: error: {e}", file=sys.stderr)
            return EXIT_USAGE if e.kind == "config" else EXIT_RUNTIME
        with prod, StopSignals() as stop:
            for m in members:
                print(m.mode_line(), file=sys.stderr, flush=True)
            for note in dict.fromkeys(n for m in members for n in m.notes):
                if not note.startswith("removed a stale"):   # that one was logged already
                    print(f"{PROG}: note: {note}", file=sys.stderr, flush=True)
            if a.filter_file:
                signal.signal(signal.SIGHUP, lambda s, f: reload.append(s))
            prod.warmup()

            def check() -> bool:
                if reload:
                    reload.clear()
                    try:
                        new = _read_filter(a.filter_file)
                        rep = prod.set_filter(new)
                        n = len(rep["rules"])
                        print(f"{PROG}: filter now {new!r}: {n} kernel rule{'s' * (n != 1)}"
                              + ("" if rep["exact"] else ", user space re-checks"),
                              file=sys.stderr, flush=True)
                    except (UsageError, FilterSyntaxError, AfXdpError) as e:
                        print(f"{PROG}: warning: filter not changed: {e}", file=sys.stderr,
                              flush=True)
                return stop()
            rep = prod.run(count=a.count, duration=a.duration, stop=check)
            if rep["stopped_by"] == "stop" and stop.signum is not None:
                rep["stopped_by"] = "interrupt"
            rep["setup"] = prod.describe()
            rep["kernel_counters"] = prod.kernel_counters()
    finally:
        for r in rings:
            r.close()
        if txr is not None:
            txr.close()
    if a.json:
        print(json.dumps(rep, indent=2, default=str))
    else:
        print(format_report(rep))
    return EXIT_INTERRUPTED if rep["stopped_by"] == "interrupt" else EXIT_OK


def format_report(r: dict) -> str:
    setups = r["setup"] if isinstance(r["setup"], list) else [r["setup"]]
    s = setups[0]
    k = r["kernel_counters"]
    rows = [
        ("interface", f"{s['interface']} queue{'s' if len(setups) > 1 else ''} "
                      f"{', '.join(str(x['queue']) for x in setups)}: xdp {s['xdp_mode']} "
                      f"mode, {s['bind']} bind"),
        ("ring", ", ".join(x["ring"] for x in setups)),
        ("published", f"{r['published']:,} frames, {r['bytes']:,} bytes "
                      f"({r['rate_pps']:,.0f} frames/s)"),
        ("dropped", f"{r['dropped']:,} (ring full), {r['nic_drops']:,} at the socket (NIC)"),
        ("user space", f"{r['user_rejected']:,} redirected frames rejected by the filter"),
    ]
    if s.get("tx_ring"):
        rows.append(("transmit", f"{r['tx_sent']:,} frames sent from ring {s['tx_ring']}, "
                                 f"{r['tx_too_long']:,} too long, {r['tx_errors']:,} send "
                                 f"errors"))
    rows += [
        ("kernel", f"{k['redirected']:,} redirected, {k['passed']:,} passed to the stack"),
    ]
    for text, hits in k["rules"]:
        rows.append(("  rule", f"{hits:,}  {text}"))
    for q in r.get("queues", []):
        rows.append((f"queue {q['queue']}", f"{q['published']:,} published, {q['dropped']:,} "
                                            f"dropped, {q['nic_drops']:,} NIC drops"))
    rows.append(("elapsed", f"{r['elapsed_s']:.3f} s, stopped by {r['stopped_by']}"))
    return fields(rows)
