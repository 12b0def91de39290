"""``hugering dump NAME -w FILE``: what crosses a ring, to a pcap file (``engine.dump``), as
``dpdk-pdump`` or ``xdpdump`` do for a NIC that tcpdump cannot see."""
from __future__ import annotations

import argparse
import json
import math
import sys

from engine.cli import EXIT_INTERRUPTED, EXIT_OK, EXIT_RUNTIME, PROG, UsageError, command

_EPILOG = """\
output
  A classic pcap file (nanosecond timestamps, link type Ethernet) that tcpdump -r, tshark and
  libpcap read.  Each record: the slot's timestamp (publish time, or the capture's with
  'hugering replay --original-timestamps'), its wire length as the original length, and its
  captured bytes.  '-w -' writes the pcap to stdout:
      hugering dump md -w - | tcpdump -n -r -
  Status lines go to stderr: one when the dump has joined the ring, then a summary like
  tcpdump's:
      N packets captured
      M packets seen, K filtered out, L lost
  --json prints the report as one JSON object instead (on stdout, or stderr with '-w -').

the ring
  dump joins as one more consumer.  On a lossless ring it holds the producer back until it
  has written what it read (the producer drops or waits, by the ring's policy, if the dump
  cannot keep up); on a lossy ring it is lapped instead, and counts what it lost.

exit status
  0 stopped by --count, --duration, Ctrl-C/SIGTERM (without --count or --duration) or a closed
  output pipe; 1 no such ring, no free consumer line, the output cannot be written; 2 a bad
  command line or --filter expression; 130 Ctrl-C/SIGTERM before --count or --duration was
  reached.  The file is complete and readable in every case."""


def _ring_name(text: str) -> str:
    from shm.backing import RingNameError, validate_name
    try:
        return validate_name(text)
    except RingNameError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _count(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = -1
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return v


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not (math.isfinite(v) and 0 < v < 1e9):
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text!r}")
    return v


def _snaplen(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if not 1 <= v <= 262144:
        raise argparse.ArgumentTypeError(f"expected 1..262144 bytes, got {text!r}")
    return v


@command("dump", "write the frames crossing a ring to a pcap file (like dpdk-pdump)")
def _dump(p):
    p.description = ("Join a ring as a consumer and write the frames that cross it (those that\n"
                     "pass --filter, if given) to a pcap file that tcpdump reads.  Without\n"
                     "--count or --duration it runs until Ctrl-C.")
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = _EPILOG
    p.add_argument("name", metavar="NAME", type=_ring_name, help="an existing ring")
    p.add_argument("-w", dest="write", metavar="FILE", required=True,
                   help="pcap file to write ('-': stdout)")
    p.add_argument("-c", "--count", type=_count, metavar="N",
                   help="stop after writing N packets")
    p.add_argument("--duration", type=_seconds, metavar="S", help="stop after S seconds")
    p.add_argument("--filter", metavar="EXPR",
                   help="pcap-filter expression (the subset of parsers.pcap_filter), e.g. "
                        "'udp and dst port 53'")
    p.add_argument("-s", "--snaplen", type=_snaplen, metavar="B",
                   help="keep at most B bytes of each frame (default: the whole slot)")
    p.add_argument("--hugetlbfs", metavar="PATH",
                   help="look for the ring on this hugetlbfs mount (default: every mount, then "
                        "POSIX shm)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(handler=_dump_run)


def _filter_error(e) -> str:
    """One line: where (column and token), then why."""
    if not e.text:
        return f"dump: --filter: {e.reason}"
    tok = e.text[e.pos:e.pos + e.length]
    where = f"column {e.column} {tok!r}" if tok else f"column {e.column} (end of expression)"
    return f"dump: --filter: {where}: {e.reason}"


def _dump_run(a) -> int:
    from engine.dump import DumpOutputError, StopSignals, dump
    from parsers.filters import FilterSyntaxError

    to_stdout = a.write == "-"
    where = "stdout" if to_stdout else a.write

    def ready(info):
        mode = info["mode"] + (f"/{info['full_policy']}" if info["mode"] == "lossless" else "")
        flt = f", filter {a.filter!r}" if a.filter is not None else ""
        print(f"{PROG} dump: dumping ring {info['name']} ({mode}) to {where}{flt}, "
              f"Ctrl-C to stop", file=sys.stderr, flush=True)

    with StopSignals() as stop:
        try:
            rep = dump(a.name, a.write, hugetlbfs=a.hugetlbfs, count=a.count,
                       filter_expr=a.filter, duration=a.duration, stop=stop, snaplen=a.snaplen,
                       ready=ready)
        except FilterSyntaxError as e:
            raise UsageError(_filter_error(e)) from None
        except DumpOutputError as e:
            print(f"{PROG}: error: dump: {e}", file=sys.stderr)
            return EXIT_RUNTIME
    if rep["stopped_by"] == "stop" and stop.signum is not None:
        rep["stopped_by"] = "interrupt"
    if a.json:
        text = json.dumps(rep, indent=2)
        if to_stdout or rep["stopped_by"] == "broken_pipe":
            print(text, file=sys.stderr)
        else:
            print(text)
    else:
        print(f"{rep['captured']} packets captured\n"
              f"{rep['seen']} packets seen, {rep['filtered_out']} filtered out, "
              f"{rep['lost']} lost", file=sys.stderr)
    if rep["stopped_by"] == "interrupt" and (a.count is not None or a.duration is not None):
        return EXIT_INTERRUPTED
    return EXIT_OK
