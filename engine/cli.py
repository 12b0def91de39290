"""The ``hugering`` command line.

Verbs mirror DPDK and xdp-tools habits::

    hugering ring create NAME [--slots N] [--slot-size B] [--mode lossless|lossy] ...
    hugering ring info NAME [--json]          # layout, cursors, producer and consumers
    hugering ring ls [--json]                 # every ring on this machine
    hugering ring rm NAME...
    hugering synth NAME [--rate PPS] [--count N | --duration S] [--min-size B --max-size B]
    hugering demo [--duration S] [--rate PPS]
    hugering parse FILE [--filter EXPR] [--jsonl] [--count N]   # L2-L4 fields of a capture
    hugering dpdk CONFIG.yaml [--port I] [--ring NAME] [--json]  # a DPDK port into rings

Each verb is one ``@command`` function that builds its sub-parser and sets its ``handler``; a
later verb (stat, dump, replay, run, dpdk) is one more such function, nothing else changes.

Errors are one line on stderr, ``hugering: error: ...``: exit status 2 for a usage error (bad
argument, bad name, bad setting), 1 for a runtime error (``shm.RingError``: missing ring, no
memory, permissions), 130 after Ctrl-C.  Log records (the backing's hugepage fallback warning)
print as ``hugering: warning: ...``.  A traceback means a bug.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import time

PROG = "hugering"
EXIT_OK, EXIT_RUNTIME, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """A bad command line or setting: exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with hugering's one-line errors (``hugering: error: ring create: ...``)."""

    def error(self, message):
        where = self.prog[len(PROG):].strip()
        hint = f" (see '{self.prog} --help')"
        raise UsageError((f"{where}: {message}" if where else message) + hint)


# --- argument types (validated at the edge; argparse names the option in the message) ---------
def _ring_name(text: str) -> str:
    from shm.backing import RingNameError, validate_name
    try:
        return validate_name(text)
    except RingNameError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


_SUFFIX = {"k": 1e3, "K": 1e3, "m": 1e6, "M": 1e6, "g": 1e9, "G": 1e9}


def _number(text: str) -> float:
    """1000, 1e6, 2.5M, 100k."""
    t = text.strip()
    mult = 1.0
    if t and t[-1] in _SUFFIX:
        mult, t = _SUFFIX[t[-1]], t[:-1]
    try:
        return float(t) * mult
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number like 1000, 1e6 or 2.5M, "
                                         f"got {text!r}") from None


def _rate(text: str) -> float:
    v = _number(text)
    if not 0 <= v < 1e10:
        raise argparse.ArgumentTypeError(f"expected frames per second >= 0 (0: flat out), "
                                         f"got {text!r}")
    return v


def _count(text: str) -> int:
    v = _number(text)
    if v < 0 or v != int(v):
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return int(v)


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not 0 < v < 1e9:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text!r}")
    return v


def _int_in(lo: int, hi: int, pow2: bool = False):
    def parse(text: str) -> int:
        try:
            v = int(text, 0)                       # 4096, 0x1000
        except ValueError:
            try:
                f = _number(text)                  # 1e3, 64k
            except argparse.ArgumentTypeError:
                f = 0.5
            if f != int(f):
                raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") \
                    from None
            v = int(f)
        if not lo <= v <= hi or (pow2 and v & (v - 1)):
            what = "a power of two" if pow2 else "a whole number"
            raise argparse.ArgumentTypeError(f"expected {what} from {lo} to {hi}, got {text!r}")
        return v
    parse.__name__ = "int"
    return parse


# --- the command registry ----------------------------------------------------------------------
COMMANDS: dict = {}   # verb -> (one-line help, builder(parser) that sets the handler)


def command(name: str, help: str):
    """Register a verb: ``builder(parser)`` adds its arguments (and sub-verbs) and sets
    ``handler`` (a function of the parsed arguments returning the exit status)."""
    def register(builder):
        COMMANDS[name] = (help, builder)
        return builder
    return register


def _load_verb_modules() -> None:
    """Import every module of ``engine.verbs`` (each registers its verb)."""
    import importlib
    import pkgutil
    from engine import verbs
    for info in sorted(pkgutil.iter_modules(verbs.__path__), key=lambda m: m.name):
        importlib.import_module(f"engine.verbs.{info.name}")


def build_parser() -> _Parser:
    _load_verb_modules()
    p = _Parser(prog=PROG, description="Kernel-bypass packet rings in hugepage shared memory, "
                "busy-polled from Numba.",
                epilog="Run 'hugering VERB --help' for a verb's options.")
    p.add_argument("-v", "--verbose", action="store_true", help="log more (info level)")
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name, (help_, builder) in COMMANDS.items():
        builder(sub.add_parser(name, help=help_, description=help_))
    return p


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("hugering")
    except Exception:
        return "unknown"


def _add_location(p, create: bool = False) -> None:
    """--hugetlbfs PATH (and for create, --shm): where the ring lives."""
    if create:
        g = p.add_mutually_exclusive_group()
        g.add_argument("--hugetlbfs", metavar="PATH",
                       help="create on this hugetlbfs mount (an error if it cannot serve the "
                            "ring); default: /dev/hugepages, else POSIX shm with a warning")
        g.add_argument("--shm", action="store_true",
                       help="create in POSIX shared memory (4 KiB pages)")
    else:
        p.add_argument("--hugetlbfs", metavar="PATH",
                       help="look on this hugetlbfs mount (default: every mount, then POSIX shm)")


def _add_json(p) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


# --- formatting helpers ----------------------------------------------------------------------
def _bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n // size} {unit}" if n % size == 0 else f"{n / size:.1f} {unit}"
    return f"{n} B"


def _age(seconds) -> str:
    if seconds is None:
        return "never"
    if seconds < 0:
        return "now"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms ago"
    if seconds < 120:
        return f"{seconds:.1f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.1f} days ago"


def _mpps(pps) -> str:
    return "-" if pps is None else f"{pps / 1e6:.3f} Mpps"


def table(rows: list[list], header: list[str], right: set[int] = frozenset(),
          indent: str = "") -> str:
    """Aligned columns; ``right`` holds the indices of right-aligned (numeric) columns."""
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    out = []
    for r in cells:
        parts = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(r, widths))]
        out.append((indent + "  ".join(parts)).rstrip())
    return "\n".join(out)


def fields(pairs: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in pairs)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in pairs)


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, sort_keys=False))


# --- ring ------------------------------------------------------------------------------------
@command("ring", "create, inspect, list and remove rings")
def _ring(p):
    sub = p.add_subparsers(dest="ring_verb", metavar="SUBVERB", required=True)

    c = sub.add_parser("create", help="create a ring", description="Create a ring (exclusively). "
                       "Its slots live in 2 MiB huge pages on hugetlbfs, or in POSIX shared "
                       "memory when no huge pages can serve it (with a warning saying why).")
    c.add_argument("name", metavar="NAME", type=_ring_name, help="ring name (letters, digits, "
                   "'.', '_', '-'; at most 64)")
    c.add_argument("--slots", type=_int_in(2, 1 << 26, pow2=True), default=4096,
                   help="number of slots, a power of two (default 4096)")
    c.add_argument("--slot-size", type=_int_in(64, 9216), default=2048, metavar="B",
                   help="payload bytes per slot, 64..9216 (default 2048)")
    c.add_argument("--mode", choices=("lossless", "lossy"), default="lossless",
                   help="lossless: the producer never overwrites an unread slot; lossy: it "
                        "never waits and slow consumers are lapped (default lossless)")
    c.add_argument("--full-policy", choices=("drop", "wait"), default="drop",
                   help="lossless and full: drop and count, or wait (default drop)")
    c.add_argument("--consumer-timeout", type=_seconds, default=1.0, metavar="S",
                   help="evict a consumer that holds the producer back this long without "
                        "progress (default 1.0)")
    c.add_argument("--max-consumers", type=_int_in(1, 256), default=16, metavar="N",
                   help="consumer lines, 1..256 (default 16)")
    c.add_argument("--group", metavar="G", help="make the ring file mode 0660, owned by this "
                   "group (default: 0600, this user only)")
    _add_location(c, create=True)
    _add_json(c)
    c.set_defaults(handler=_ring_create)

    i = sub.add_parser("info", help="show a ring's layout, cursors, producer and consumers",
                       description="Show a ring's layout, cursors, producer and consumers "
                                   "(pid, liveness, lag, heartbeat age) and fill level.")
    i.add_argument("name", metavar="NAME", type=_ring_name)
    _add_location(i)
    _add_json(i)
    i.set_defaults(handler=_ring_info)

    ls = sub.add_parser("ls", help="list the rings on this machine",
                        description="List the rings on this machine (hugetlbfs mounts and "
                                    "POSIX shared memory).")
    _add_location(ls)
    _add_json(ls)
    ls.set_defaults(handler=_ring_ls)

    rm = sub.add_parser("rm", help="remove rings",
                        description="Remove rings by name.  Processes that have one mapped keep "
                                    "their mapping until they exit.")
    rm.add_argument("names", metavar="NAME", type=_ring_name, nargs="+")
    _add_location(rm)
    rm.set_defaults(handler=_ring_rm)


def _ring_create(a) -> int:
    from shm import Ring
    ring = Ring.create(a.name, slots=a.slots, slot_size=a.slot_size, mode=a.mode,
                       full_policy=a.full_policy, hugetlbfs=a.hugetlbfs, shm=a.shm,
                       max_consumers=a.max_consumers, consumer_timeout=a.consumer_timeout,
                       group=a.group)
    with ring:
        info = ring.info()
    if a.json:
        _print_json(info)
    else:
        print(f"created ring {info['name']}: {info['capacity']} slots x {info['slot_size']} B, "
              f"{info['mode']}" + (f"/{info['full_policy']}" if info["mode"] == "lossless"
                                   else "") +
              f", {info['backing']} ({info['path']}, {_bytes(info['file_size'])})")
    return EXIT_OK


def _open(name, hugetlbfs):
    from shm import Ring
    return Ring.open(name, hugetlbfs)


def _ring_info(a) -> int:
    with _open(a.name, a.hugetlbfs) as ring:
        info = ring.info()
    if a.json:
        _print_json(info)
    else:
        print(format_info(info))
    return EXIT_OK


def format_info(info: dict) -> str:
    p = info["producer"]
    created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["created_ns"] / 1e9))
    if p["pid"]:
        producer = (f"pid {p['pid']} {'alive' if p['alive'] else 'gone'}, heartbeat "
                    f"{_age(p['heartbeat_age_s'])}")
    else:
        producer = "none attached" + (f" (last heartbeat {_age(p['heartbeat_age_s'])})"
                                      if p["heartbeat_age_s"] is not None else "")
    if info["fill"] is None:
        fill = "n/a (lossy: the producer never waits for consumers)"
    else:
        used = round(info["fill"] * info["capacity"])
        fill = f"{info['fill'] * 100:.1f}% ({used} of {info['capacity']} slots not yet released)"
    mode = info["mode"] + (f", when full: {info['full_policy']}" if info["mode"] == "lossless"
                           else ", slow consumers are lapped")
    active = sum(1 for c in info["consumers"] if c["state"] == "active")
    out = fields([
        ("ring", info["name"]),
        ("path", info["path"]),
        ("backing", f"{info['backing']}, {_bytes(info['page_size'])} pages"),
        ("layout", f"version {info['layout_version']}; slots at offset "
                   f"{_bytes(info['slots_offset'])}; file {_bytes(info['file_size'])}"),
        ("slots", f"{info['capacity']} x {info['slot_size']} B (stride {info['slot_stride']} B)"),
        ("mode", mode),
        ("consumers", f"{len(info['consumers'])} of {info['max_consumers']} lines in use, "
                      f"{active} active; evicted after {info['consumer_timeout_s']:g} s "
                      "without progress"),
        ("created", f"{created} ({_age(time.time() - info['created_ns'] / 1e9)})"),
        ("producer", producer),
        ("cursor", f"{p['cursor']:,}"),
        ("published", f"{p['published']:,}"),
        ("drops", f"{p['dropped_full']:,} when full, {p['nic_drops']:,} upstream (NIC)"),
        ("full waits", f"{p['full_waits']:,}"),
        ("evictions", f"{p['evictions']:,}"),
        ("fill", fill),
    ])
    if info["consumers"]:
        rows = [[c["index"], c["state"], c["pid"], "yes" if c["alive"] else "no",
                 f"{c['cursor']:,}", f"{c['lag']:,}", _age(c["heartbeat_age_s"]),
                 f"{c['delivered']:,}", f"{c['lost']:,}", c["rejoins"]]
                for c in info["consumers"]]
        out += "\n\n" + table(rows, ["consumer", "state", "pid", "alive", "cursor", "lag",
                                     "heartbeat", "delivered", "lost", "rejoins"],
                              right={0, 2, 4, 5, 7, 8, 9})
    return out


def _ring_ls(a) -> int:
    from shm import Ring, RingError
    from shm.backing import list_rings
    entries = []
    for name, path in list_rings(a.hugetlbfs):
        try:
            with Ring.open(name, a.hugetlbfs) as ring:
                if ring.backing.path != path:  # same name on another mount: open found the first
                    raise RingError(f"shadowed by {ring.backing.path}")
                entries.append(ring.info())
        except RingError as e:
            entries.append({"name": name, "path": path, "error": str(e)})
    if a.json:
        _print_json(entries)
        return EXIT_OK
    if not entries:
        print("no rings")
        return EXIT_OK
    rows = []
    for e in entries:
        if "error" in e:
            rows.append([e["name"], "?", "", "", "", "", "", "", e["path"] + "  (" + e["error"]
                         + ")"])
            continue
        p = e["producer"]
        active = sum(1 for c in e["consumers"] if c["state"] == "active")
        rows.append([e["name"], e["backing"], e["capacity"], e["slot_size"],
                     e["mode"] + (f"/{e['full_policy']}" if e["mode"] == "lossless" else ""),
                     f"{p['pid']} ({'alive' if p['alive'] else 'gone'})" if p["pid"] else "-",
                     active, "-" if e["fill"] is None else f"{e['fill'] * 100:.1f}%", e["path"]])
    print(table(rows, ["NAME", "BACKING", "SLOTS", "SLOT SIZE", "MODE", "PRODUCER", "CONSUMERS",
                       "FILL", "PATH"], right={2, 3, 6, 7}))
    return EXIT_OK


def _ring_rm(a) -> int:
    from shm import Ring, RingError
    status = EXIT_OK
    for name in a.names:
        try:
            path = Ring.remove(name, a.hugetlbfs)
            from engine.stats import remove as remove_stats
            remove_stats(name)                     # its engine counters go with it
        except RingError as e:
            print(f"{PROG}: error: {e}", file=sys.stderr)
            status = EXIT_RUNTIME
            continue
        print(f"removed ring {name} ({path})")
    return status


# --- synth -----------------------------------------------------------------------------------
# SyntheticProducer's keys, as this command line spells them
_SYNTH_FLAGS = {"rate": "--rate", "sizes": "--min-size/--max-size", "burst": "--burst",
                "producer_id": "--producer-id", "count": "--count", "duration": "--duration"}


@command("synth", "publish synthetic Ethernet/IPv4/UDP frames into a ring")
def _synth(p):
    p.description = ("Publish synthetic Ethernet/IPv4/UDP frames (valid checksums, varied sizes, "
                     "addresses and ports; producer id and sequence number at the start of the "
                     "UDP payload) into an existing ring, as its producer, then print a report. "
                     "Without --count or --duration it runs until Ctrl-C.")
    p.add_argument("name", metavar="NAME", type=_ring_name, help="an existing ring")
    p.add_argument("--rate", type=_rate, default=1e6, metavar="PPS",
                   help="frames per second, e.g. 500k or 2M; 0 = flat out (default 1M)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--count", type=_count, metavar="N", help="stop after N frames")
    g.add_argument("--duration", type=_seconds, metavar="S", help="stop after S seconds")
    p.add_argument("--min-size", type=_int_in(60, 9216), default=64, metavar="B",
                   help="smallest frame in bytes, without FCS (default 64)")
    p.add_argument("--max-size", type=_int_in(60, 9216), default=128, metavar="B",
                   help="largest frame in bytes, at most the ring's slot size (default 128)")
    p.add_argument("--burst", type=_int_in(1, 4096), default=32, metavar="N",
                   help="frames per reserve/submit (default 32)")
    p.add_argument("--seed", type=_int_in(0, 2**63 - 1), default=0,
                   help="seed of the frame templates (default 0)")
    p.add_argument("--producer-id", type=_int_in(0, 2**64 - 1), default=None, metavar="ID",
                   help="8-byte id written in every payload (default: this pid)")
    _add_location(p)
    _add_json(p)
    p.set_defaults(handler=_synth_run)


def _synth_run(a) -> int:
    from engine.producers.synthetic import SynthConfigError, SyntheticProducer
    from shm import Ring
    if a.min_size > a.max_size:
        raise UsageError(f"synth: --min-size {a.min_size} is larger than --max-size {a.max_size}")
    ring = Ring.open(a.name, a.hugetlbfs, writable_slots=True)
    try:
        try:
            sp = SyntheticProducer(ring, rate=a.rate, sizes=(a.min_size, a.max_size), seed=a.seed,
                                   burst=a.burst, producer_id=a.producer_id)
        except SynthConfigError as e:
            raise UsageError(f"synth: {_SYNTH_FLAGS.get(e.key, e.key)}: "
                             f"{str(e).split(': ', 1)[1]}") from None
        with sp, _term_as_interrupt():
            sp.warmup()
            stats = sp.run(count=a.count, duration=a.duration)   # Ctrl-C ends it, with a report
            info = ring.info()
    finally:
        ring.close()
    stats["ring_published"] = info["producer"]["published"]
    if a.json:
        _print_json(stats)
    else:
        print(format_synth(stats, ring_mode=info["mode"], policy=info["full_policy"]))
    if stats["stopped_by"] == "interrupt" and (a.count is not None or a.duration is not None):
        return EXIT_INTERRUPTED
    return EXIT_OK


def format_synth(s: dict, ring_mode: str = "", policy: str = "") -> str:
    target = "flat out" if not s["target_pps"] else _mpps(s["target_pps"])
    return fields([
        ("ring", f"{s['ring']} ({ring_mode}" + (f"/{policy}" if ring_mode == "lossless" else "")
         + ")"),
        ("producer id", str(s["producer_id"])),
        ("frames", f"{s['frames']:,} ({s['sizes'][0]}..{s['sizes'][1]} B), sequence "
                   f"{s['first_seq']:,} .. {s['next_seq'] - 1:,}" if s["frames"] else "0"),
        ("published", f"{s['published']:,} in {s['bursts']:,} bursts, "
                      f"{s['bytes'] / 1e6:.1f} MB"),
        ("dropped", f"{s['dropped']:,} (ring full)"),
        ("full waits", f"{s['full_waits']:,}"),
        ("elapsed", f"{s['elapsed_s']:.3f} s, stopped by {s['stopped_by']}"),
        ("rate", f"{_mpps(s['rate_pps'])} (target {target}), "
                 f"{s['bytes'] * 8 / max(s['elapsed_s'], 1e-9) / 1e9:.2f} Gbit/s"),
    ])


# --- demo ------------------------------------------------------------------------------------
@command("demo", "a live producer -> two consumers demonstration (what 'make demo' runs)")
def _demo(p):
    from engine import demo
    p.description = ("A live demonstration on a fresh ring (removed afterwards): a paced "
                     "synthetic producer and consumer processes that busy-poll it, verify "
                     "checksums and sequence numbers, and print their rates once a second, then "
                     "a summary.  Exit status 0 when every consumer received every frame, in "
                     "order.")
    p.add_argument("--duration", type=_seconds, default=demo.DEFAULT_DURATION, metavar="S",
                   help=f"seconds of traffic (default {demo.DEFAULT_DURATION:g})")
    p.add_argument("--rate", type=_rate, default=demo.DEFAULT_RATE, metavar="PPS",
                   help=f"producer rate, e.g. 500k or 2M; 0 = flat out (default "
                        f"{demo.DEFAULT_RATE / 1e6:g}M)")
    p.add_argument("--consumers", type=_int_in(1, 16), default=2, metavar="N",
                   help="consumer processes (default 2)")
    p.add_argument("--slots", type=_int_in(64, 1 << 22, pow2=True), default=demo.DEFAULT_SLOTS,
                   metavar="N",
                   help=f"ring slots (default {demo.DEFAULT_SLOTS})")
    p.add_argument("--min-size", type=_int_in(60, 9216), default=64, metavar="B",
                   help="smallest frame (default 64)")
    p.add_argument("--max-size", type=_int_in(60, 9216), default=128, metavar="B",
                   help="largest frame (default 128; the ring's slots are sized to it)")
    _add_location(p, create=True)
    _add_json(p)
    p.set_defaults(handler=_demo_run)


def _demo_run(a) -> int:
    from engine import demo
    if a.min_size > a.max_size:
        raise UsageError(f"demo: --min-size {a.min_size} is larger than --max-size {a.max_size}")
    return demo.run_demo(duration=a.duration, rate=a.rate, consumers=a.consumers, slots=a.slots,
                         sizes=(a.min_size, a.max_size), hugetlbfs=a.hugetlbfs, shm=a.shm,
                         json_out=a.json)


# --- parse -----------------------------------------------------------------------------------
_PARSE_EPILOG = """\
output
  One line per packet that passes --filter (all packets without one), in capture order, then
  a summary line on stderr (as tcpdump does), so that stdout holds only packet lines:
      hugering parse: N packets read, M matched, K printed

  text (default), tcpdump-like:
      INDEX TS [vlan ID[,ID]] IP|IP6 SRC[.SPORT] > DST[.DPORT]: PROTO ... ttl T len WIRE [FLAGS]
  e.g.
      3 1700000000.000003000 vlan 100 IP 10.1.0.7.4000 > 10.9.0.1.53: UDP payload 20 ttl 64 len 74
      4 1700000000.000004000 IP6 2001:db8::1.443 > 2001:db8::2.5001: TCP [S.] seq 1 ack 2 win
        512 payload 0 ttl 64 len 74
      5 1700000000.000005000 ARP 10.0.0.1 > 10.0.0.2: op 1 len 60

--jsonl: one JSON object per line, always with every key below (null when absent):
  index         packet number in the file, from 0
  ts            timestamp, seconds since the epoch (float, about microsecond precision)
  ts_ns         the same timestamp, integer nanoseconds (exact)
  caplen        bytes captured (the whole packet; its first B bytes with --slot-size B)
  wire_len      length on the wire
  flags         parser flags, names (parsers.record): truncated, malformed, unsupported, llc,
                vlan, qinq, vlan_too_deep, fragment, nonfirst_fragment, ip_options, ipv6_ext,
                ext_chain_limit, len_mismatch, tcp_options, padded
  ethertype     innermost ethertype (int; 0 for 802.3/LLC)
  vlan          list of VLAN ids, outer first ([] untagged)
  ip_version    4, 6, or null
  src, dst      IPv4 dotted quad / compressed IPv6 text (ARP: sender / target IPv4), or null
  proto         IP protocol after IPv6 extension headers (int), or null
  ttl           IPv4 TTL / IPv6 hop limit, or null
  sport, dport  UDP/TCP ports, or null
  tcp_flags     list of TCP flag names (FIN SYN RST PSH ACK URG ECE CWR NS), or null
  tcp_seq, tcp_ack, tcp_window   or null
  icmp_type, icmp_code           ICMP / ICMPv6, or null
  arp_op        ARP operation, or null
  payload_off   offset of the L4 payload from the frame start, or null
  payload_len   payload bytes captured

exit status
  0 ok; 1 the capture could not be read, is not Ethernet (link type 1), or is damaged: the
  packets before the damage are printed, then the error with its byte offset; 2 a bad
  command line or --filter expression (the message names the offending token and its
  column)."""

_TCP_FLAG_BITS = ((0x001, "FIN"), (0x002, "SYN"), (0x004, "RST"), (0x008, "PSH"),
                  (0x010, "ACK"), (0x020, "URG"), (0x040, "ECE"), (0x080, "CWR"),
                  (0x100, "NS"))
_TCP_FLAG_CHARS = ((0x002, "S"), (0x001, "F"), (0x004, "R"), (0x008, "P"), (0x020, "U"),
                   (0x040, "E"), (0x080, "W"), (0x100, "N"), (0x010, "."))


@command("parse", "parse a pcap/pcapng capture and print each packet's L2-L4 fields")
def _parse(p):
    p.description = ("Read a pcap or pcapng capture (Ethernet), parse every frame with the "
                     "@njit L2-L4 parsers (one burst call over the whole capture), keep the "
                     "packets that pass --filter, and print one line per packet.")
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = _PARSE_EPILOG
    p.add_argument("file", metavar="FILE", help="a pcap or pcapng file")
    p.add_argument("--filter", metavar="EXPR",
                   help="pcap-filter expression (the subset of parsers.pcap_filter), e.g. "
                        "'udp and dst port 53' or 'vlan 100 and tcp'")
    p.add_argument("--jsonl", action="store_true", help="one JSON object per packet")
    p.add_argument("--count", type=_count, metavar="N",
                   help="stop after printing N packets (as tcpdump -c)")
    p.add_argument("--slot-size", type=_int_in(64, 9216), default=None, metavar="B",
                   help="parse each packet over its first B bytes, 64..9216, as a ring slot "
                        "of that size holds it (default: every packet whole, however long)")
    p.set_defaults(handler=_parse_run)


def _filter_error(e) -> str:
    """One line: where (column and token), then why."""
    if not e.text:
        return f"parse: --filter: {e.reason}"
    tok = e.text[e.pos:e.pos + e.length]
    where = f"column {e.column} {tok!r}" if tok else f"column {e.column} (end of expression)"
    return f"parse: --filter: {where}: {e.reason}"


def _parse_run(a) -> int:
    import numpy as np
    from parsers.filters import FilterSyntaxError
    from parsers.l2l4 import parse_frames, parse_slot_array
    from parsers.pcap import LINKTYPE_ETHERNET, PcapError, read_capture
    from parsers.pcap_filter import compile_pcap_filter
    from parsers.record import new_records
    from shm import layout as L

    flt = None
    if a.filter is not None:
        try:
            flt = compile_pcap_filter(a.filter)
        except FilterSyntaxError as e:
            raise UsageError(_filter_error(e)) from None
    whole = a.slot_size is None
    try:
        # whole packets: the file's bytes are kept and every packet is parsed where it lies
        # (a GRO'd 64 KiB TCP segment too); the slots then only carry the metadata
        cap = read_capture(a.file, slot_size=L.MIN_SLOT_SIZE if whole else a.slot_size,
                           keep_bytes=whole)
    except PcapError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return EXIT_RUNTIME
    # the parsers read Ethernet frames: a cooked ('-i any'), raw-IP or loopback-BSD capture
    # would be parsed as garbage, so it is refused, naming its link type
    used = np.unique(cap.slots["port"]) if cap.count else np.zeros(0, np.int64)
    bad = sorted({cap.linktypes[int(k)] for k in used if int(k) < len(cap.linktypes)}
                 - {LINKTYPE_ETHERNET})
    if bad:
        names = {0: "NULL", 101: "RAW", 113: "LINUX_SLL", 276: "LINUX_SLL2", 228: "IPV4",
                 229: "IPV6"}
        kind = f" ({names[bad[0]]})" if bad[0] in names else ""
        print(f"{PROG}: error: {a.file}: link type {bad[0]}{kind} is not Ethernet "
              f"({LINKTYPE_ETHERNET}): the parsers read Ethernet frames (capture on one "
              f"interface, not 'any', or rewrite with 'tcprewrite --dlt=enet')", file=sys.stderr)
        return EXIT_RUNTIME
    if whole:
        recs = new_records(cap.count)
        parse_frames(cap.data, cap.frame_offsets, cap.frame_lengths, cap.count, recs)
    else:
        recs = parse_slot_array(cap.slots)
    if flt is None:
        verdict = np.ones(cap.count, dtype=bool)
    elif whole:
        verdict = flt.match_frames(cap.data, cap.frame_offsets, cap.frame_lengths,
                                   cap.slots["wire_len"], recs)
    else:
        verdict = flt.match_slot_array(cap.slots, recs)
    sel = np.nonzero(verdict)[0]
    matched = len(sel)
    if a.count is not None:
        sel = sel[:a.count]
    fmt = _packet_json if a.jsonl else _packet_text
    out = sys.stdout
    for pkt in _packet_dicts(cap.slots, recs, sel):
        out.write(fmt(pkt) + "\n")
    out.flush()
    print(f"{PROG} parse: {cap.count} packets read, {matched} matched, {len(sel)} printed",
          file=sys.stderr)
    if cap.error:
        print(f"{PROG}: error: {cap.error}", file=sys.stderr)
        return EXIT_RUNTIME
    return EXIT_OK


def _packet_dicts(slots, recs, sel):
    """The documented keys for the selected packets (column-wise conversion, then per row)."""
    import ipaddress

    from parsers.record import F_LLC, F_NONFIRST_FRAGMENT, F_UNSUPPORTED, flag_names

    names = ("flags", "caplen", "ethertype", "vlan_count", "vlan_id0", "vlan_id1", "ip_version",
             "src4", "dst4", "ip_proto", "ttl", "l4_off", "sport", "dport", "tcp_flags",
             "tcp_seq", "tcp_ack", "tcp_window", "icmp_type", "icmp_code", "arp_op",
             "payload_off", "payload_len")
    r = recs[sel]
    col = {n: r[n].tolist() for n in names}
    src6 = r["src6"]
    dst6 = r["dst6"]
    ts = slots["ts_ns"][sel].tolist()
    wire = slots["wire_len"][sel].tolist()
    for j, idx in enumerate(sel.tolist()):
        g = {n: col[n][j] for n in names}
        fl = g["flags"]
        ipv, proto, et = g["ip_version"], g["ip_proto"], g["ethertype"]
        has_l4 = g["l4_off"] >= 0 and not (fl & F_NONFIRST_FRAGMENT)
        arp = ipv == 0 and et == 0x0806 and g["l4_off"] >= 0
        src = dst = None
        if ipv == 4 or (arp and not fl & F_UNSUPPORTED and g["payload_off"] >= 0):
            src = str(ipaddress.IPv4Address(g["src4"]))
            dst = str(ipaddress.IPv4Address(g["dst4"]))
        elif ipv == 6:
            src = ipaddress.IPv6Address(src6[j].tobytes()).compressed
            dst = ipaddress.IPv6Address(dst6[j].tobytes()).compressed
        ports = has_l4 and proto in (6, 17)
        tcp = has_l4 and proto == 6
        icmp = has_l4 and proto in (1, 58)
        vl = [g["vlan_id0"], g["vlan_id1"]][:min(g["vlan_count"], 2)]
        yield {
            "index": idx,
            "ts": ts[j] / 1e9,
            "ts_ns": ts[j],
            "caplen": g["caplen"],
            "wire_len": wire[j],
            "flags": flag_names(fl),
            "ethertype": et,
            "vlan": vl,
            "ip_version": ipv or None,
            "src": src,
            "dst": dst,
            "proto": proto if ipv else None,
            "ttl": g["ttl"] if ipv else None,
            "sport": g["sport"] if ports else None,
            "dport": g["dport"] if ports else None,
            "tcp_flags": [nm for bit, nm in _TCP_FLAG_BITS if g["tcp_flags"] & bit]
            if tcp else None,
            "tcp_seq": g["tcp_seq"] if tcp else None,
            "tcp_ack": g["tcp_ack"] if tcp else None,
            "tcp_window": g["tcp_window"] if tcp else None,
            "icmp_type": g["icmp_type"] if icmp else None,
            "icmp_code": g["icmp_code"] if icmp else None,
            "arp_op": g["arp_op"] if arp else None,
            "payload_off": g["payload_off"] if g["payload_off"] >= 0 else None,
            "payload_len": g["payload_len"],
            "_llc": bool(fl & F_LLC),
            "_tcp_flags_raw": g["tcp_flags"],
        }


def _packet_json(pkt: dict) -> str:
    return json.dumps({k: v for k, v in pkt.items() if not k.startswith("_")})


_PROTO_NAMES = {1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMP6"}


def _packet_text(pkt: dict) -> str:
    parts = [str(pkt["index"]), f"{pkt['ts_ns'] // 10**9}.{pkt['ts_ns'] % 10**9:09d}"]
    if pkt["vlan"]:
        parts.append("vlan " + ",".join(str(v) for v in pkt["vlan"]))
    ipv = pkt["ip_version"]
    if ipv:
        parts.append("IP" if ipv == 4 else "IP6")
        s, d = pkt["src"], pkt["dst"]
        if pkt["sport"] is not None:
            s, d = f"{s}.{pkt['sport']}", f"{d}.{pkt['dport']}"
        parts.append(f"{s} > {d}:")
        proto = pkt["proto"]
        if pkt["tcp_flags"] is not None:
            raw = pkt["_tcp_flags_raw"]
            fl = "".join(c for bit, c in _TCP_FLAG_CHARS if raw & bit) or "none"
            parts.append(f"TCP [{fl}] seq {pkt['tcp_seq']} ack {pkt['tcp_ack']} "
                         f"win {pkt['tcp_window']} payload {pkt['payload_len']}")
        elif pkt["icmp_type"] is not None:
            parts.append(f"{_PROTO_NAMES[proto]} type {pkt['icmp_type']} "
                         f"code {pkt['icmp_code']}")
        elif proto == 17 and pkt["sport"] is not None:
            parts.append(f"UDP payload {pkt['payload_len']}")
        else:                                       # no L4 header decoded
            parts.append(_PROTO_NAMES.get(proto, f"proto {proto}"))
        parts.append(f"ttl {pkt['ttl']}")
    elif pkt["arp_op"] is not None:
        parts.append("ARP")
        if pkt["src"] is not None:
            parts.append(f"{pkt['src']} > {pkt['dst']}:")
        parts.append(f"op {pkt['arp_op']}")
    elif pkt["_llc"]:
        parts.append("802.3/LLC")
    else:
        parts.append(f"ethertype 0x{pkt['ethertype']:04x}")
    parts.append(f"len {pkt['wire_len']}")
    if pkt["flags"]:
        parts.append("[" + ",".join(pkt["flags"]) + "]")
    return " ".join(parts)


@contextlib.contextmanager
def _term_as_interrupt():
    """SIGTERM (kill, systemd, docker stop) ends a long verb like Ctrl-C: cleanly, reported."""
    def handler(signum, frame):
        raise KeyboardInterrupt
    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:                              # not the main thread: leave it alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


# --- entry point -----------------------------------------------------------------------------
class _StderrHandler(logging.Handler):
    """``hugering: warning: ...``, written to whatever sys.stderr is at the time."""

    def emit(self, record):
        try:
            sys.stderr.write(f"{PROG}: {record.levelname.lower()}: {record.getMessage()}\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def setup_logging(verbose: bool = False) -> None:
    log = logging.getLogger("hugering")
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        log.addHandler(_StderrHandler())
    log.propagate = False
    log.setLevel(logging.INFO if verbose else logging.WARNING)


def main(argv=None) -> int:
    from shm.backing import RingError, RingNameError
    argv = sys.argv[1:] if argv is None else list(argv)
    setup_logging("-v" in argv or "--verbose" in argv)
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as e:                    # --help and --version
            return e.code if isinstance(e.code, int) else EXIT_OK
        return args.handler(args)
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except RingNameError as e:             # a ValueError too: before the clause below
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as e:
        from engine.config import ConfigError, MachineError
        if isinstance(e, MachineError):        # a valid file this machine cannot serve
            print(f"{PROG}: error: {e}", file=sys.stderr)
            return EXIT_RUNTIME
        if isinstance(e, ConfigError):
            print(f"{PROG}: error: {e}", file=sys.stderr)
            return EXIT_USAGE
        raise
    except RingError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:                        # `hugering ring ls | head`
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return EXIT_OK


if __name__ == "__main__":
    # ``python -m engine.cli``: run the imported module's main, not this __main__ copy's --
    # the verb modules register with ``engine.cli.COMMANDS``, which would be another dict
    from engine.cli import main as _main
    sys.exit(_main())
