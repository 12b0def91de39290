"""``hugering replay FILE --ring NAME``: a pcap/pcapng capture into a ring, as its producer
(``engine.replay``), with a progress bar on a terminal and a report at the end."""
from __future__ import annotations

import argparse
import json
import math
import sys

from engine.cli import EXIT_INTERRUPTED, EXIT_OK, EXIT_RUNTIME, PROG, UsageError, command, fields

_EPILOG = """\
rate (one of them; default --speed 1)
  --speed X      the capture's own gaps divided by X, measured from the first packet of each
                 pass (--speed 2: twice as fast)
  --pps N        N packets per second, e.g. 1000, 250k, 2M
  --topspeed     as fast as the ring takes them

timestamps
  Each slot is stamped with the time it is published (CLOCK_REALTIME, the ring's time base)
  unless --original-timestamps keeps the capture's own.

when the ring is full
  The ring's policy decides: lossless/drop skips and counts the packets (reported as dropped,
  also in the ring's dropped_full counter), lossless/wait waits for the consumers, lossy never
  waits.  Frames longer than the ring's slot size are cut to it, flagged, and counted
  (truncated).

exit status
  0 done (a capture damaged part way is replayed up to the damage, with a warning naming the
  byte offset); 1 the file cannot be read (or is damaged before its first packet), the ring
  does not exist or already has a producer;
  2 a bad command line; 130 stopped by Ctrl-C or SIGTERM before the last pass (the report is
  still printed)."""


def _ring_name(text: str) -> str:
    from shm.backing import RingNameError, validate_name
    try:
        return validate_name(text)
    except RingNameError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


_SUFFIX = {"k": 1e3, "K": 1e3, "m": 1e6, "M": 1e6, "g": 1e9, "G": 1e9}


def _positive(what: str):
    def parse(text: str) -> float:
        t = text.strip()
        mult = 1.0
        if t and t[-1] in _SUFFIX:
            mult, t = _SUFFIX[t[-1]], t[:-1]
        try:
            v = float(t) * mult
        except ValueError:
            v = float("nan")
        if not (math.isfinite(v) and 0 < v < 1e10):
            raise argparse.ArgumentTypeError(f"expected {what} > 0, got {text!r}")
        return v
    parse.__name__ = what
    return parse


def _loops(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = -1
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a number of passes >= 0 (0: until "
                                         f"stopped), got {text!r}")
    return v


@command("replay", "replay a pcap/pcapng capture into a ring, as its producer")
def _replay(p):
    p.description = ("Replay a pcap or pcapng capture (Ethernet) into an existing ring, as its\n"
                     "single producer, at the capture's own pace (or --speed, --pps, --topspeed),\n"
                     "then print a report (as tcpreplay does).")
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = _EPILOG
    p.add_argument("file", metavar="FILE", help="a pcap or pcapng file")
    p.add_argument("--ring", required=True, type=_ring_name, metavar="NAME",
                   help="an existing ring")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--speed", type=_positive("a speed factor"), metavar="X",
                   help="multiply the capture's pace by X (default 1)")
    g.add_argument("--pps", type=_positive("packets per second"), metavar="N",
                   help="packets per second, e.g. 1000 or 2M")
    g.add_argument("--topspeed", action="store_true", help="as fast as the ring takes them")
    p.add_argument("--loop", type=_loops, default=1, metavar="N",
                   help="passes over the capture, 0 = until stopped (default 1)")
    p.add_argument("--original-timestamps", action="store_true",
                   help="stamp slots with the capture's timestamps, not the publish time")
    p.add_argument("--hugetlbfs", metavar="PATH",
                   help="look for the ring on this hugetlbfs mount (default: every mount, then "
                        "POSIX shm)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (there is none when stderr is not a terminal)")
    p.set_defaults(handler=_replay_run)


def _replay_run(a) -> int:
    from engine.dump import StopSignals
    from engine.replay import ReplayConfigError, replay
    from parsers.pcap import PcapError

    show = not (a.json or a.no_progress) and sys.stderr.isatty()
    with StopSignals() as stop, _Progress(show, a.file) as bar:
        try:
            rep = replay(a.ring, a.file, hugetlbfs=a.hugetlbfs, pps=a.pps, speed=a.speed,
                         topspeed=a.topspeed, loop=a.loop,
                         original_timestamps=a.original_timestamps,
                         progress=bar.update if show else None, stop=stop)
        except ReplayConfigError as e:
            raise UsageError(f"replay: --{e.key}: {str(e).split(': ', 1)[1]}") from None
        except PcapError as e:
            print(f"{PROG}: error: {e}", file=sys.stderr)
            return EXIT_RUNTIME
    if rep["stopped_by"] == "stop" and stop.signum is not None:
        rep["stopped_by"] = "interrupt"
    if a.json:
        print(json.dumps(rep, indent=2))
    else:
        print(format_report(rep))
    if rep["stopped_by"] == "interrupt" and a.loop != 0:
        return EXIT_INTERRUPTED
    return EXIT_OK


class _Progress:
    """A rich progress bar on stderr, or nothing."""

    def __init__(self, show: bool, label: str):
        self.show = show
        self.label = label
        self._p = None
        self._task = None

    def __enter__(self):
        if self.show:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)
            self._p = Progress(TextColumn("[bold]replay[/] {task.description}"), BarColumn(),
                               MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                               TimeElapsedColumn(), TimeRemainingColumn(),
                               console=Console(stderr=True), transient=True)
            self._p.start()
            self._task = self._p.add_task(self.label, total=None, rate="")
        return self

    def update(self, snap: dict) -> None:
        if self._p is None:
            return
        t = snap["elapsed_s"]
        rate = f"{snap['sent'] / t / 1e3:,.1f} kpps" if t > 0 else ""
        if snap["dropped"]:
            rate += f", {snap['dropped']:,} dropped"
        self._p.update(self._task, completed=snap["handled"], total=snap["total"], rate=rate)

    def __exit__(self, *exc):
        if self._p is not None:
            self._p.stop()


def _secs(s: float) -> str:
    return f"{s:.3f} s" if s >= 1 else f"{s * 1e3:.3f} ms"


def format_report(r: dict) -> str:
    if r["pacing"] == "pps":
        pace = f"target {r['target_pps']:,.0f} pps"
    elif r["pacing"] == "speed":
        pace = f"speed {r['speed']:g}x"
    else:
        pace = "top speed"

    mode = r["ring_mode"] + (f"/{r['full_policy']}" if r["ring_mode"] == "lossless" else "")
    rows = [
        ("ring", f"{r['ring']} ({mode}, {r['slot_size']} B slots)"),
        ("file", f"{r['file']} ({r['format']}, {r['file_packets']:,} packets)"),
    ]
    if r["capture_error"]:
        rows.append(("damaged", f"at byte {r['capture_error_offset']}: only the packets before "
                                f"it were replayed"))
    loops = "until stopped" if r["loop"] == 0 else f"{r['loop']}"
    rows += [
        ("sent", f"{r['sent']:,} packets, {r['bytes']:,} bytes on the wire "
                 f"({r['loops']} of {loops} passes)"),
        ("dropped", f"{r['dropped']:,} (ring full)"),
        ("truncated", f"{r['truncated']:,} (longer than the ring's slots)"),
        ("elapsed", f"{_secs(r['elapsed_s'])}, stopped by {r['stopped_by']}"),
        ("rate", f"{r['achieved_pps']:,.0f} pps, {r['achieved_mbps']:.2f} Mbit/s ({pace})"),
        ("timestamps", "the capture's" if r["original_timestamps"] else "publish time"),
    ]
    return fields(rows)
