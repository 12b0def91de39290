"""``hugering stat NAME``: a live view of a ring's producer and engine consumers.

Like ``aeron-stat`` / ``dpdk-proc-info``: it maps the ring and its stats region
(``engine.stats``) read-only-in-spirit (it writes nothing) from any process, and refreshes a
table in place: per producer published / dropped / evictions / NIC drops and their rates, per
consumer received / filtered out / handled / errors / lost, rates per second, lag (slots
published and not yet read), and the latency producer timestamp -> handler (p50, p99, p99.9,
p99.99, max) from the consumer's histogram; what the packet source reports (NIC-level drops:
missed, errors, no buffer; its buffer pool in use); and the leak monitor (``engine.leak``: slots
and pool buffers outstanding, an alarm when they grow without bound).  ``--json`` prints one
snapshot and exits; with ``--count N``, N snapshots one per line ``--interval`` apart (the leak
monitor judges a window of samples: ``--leak-window``); without ``--json``, ``--count N``
refreshes N times then exits (scripts); Ctrl-C leaves the live view.

Snapshot keys (``--json``): ``ring``, ``mode``, ``capacity``, ``time_ns``, ``producer``
(``pid``, ``alive``, ``status`` -- never/live/detached/dead/stale, ``shm.liveness`` --,
``status_message``, ``cursor``, ``published``, ``dropped_full``, ``evictions``, ``full_waits``,
``nic_drops``), ``source`` (``src_packets``, ``src_missed``, ``src_errors``, ``src_nombuf``,
``pool_size``, ``pool_in_use``, ``tx_dropped``, ``src_stats_ns``: ``shm.layout``'s
source_stats line), ``leak`` (``alarm``, ``samples``, ``slots`` and, when the source has a pool,
``pool``: value, size, floor, window, alarm, reason, message; see ``engine.leak``),
``consumers`` (one per occupied line, plus engine consumers
that have left -- ``ring_state`` "left", their final counters kept until the line is reused:
``index``, ``name``,
``pid``, ``alive``, ``ring_state``, ``engine_state``, ``cursor``, ``lag``, ``received``,
``filtered_out``, ``handled``, ``handler_errors``, ``lost``, ``delivered``, ``bursts``,
``latency_ns`` {count, mean, min, max, p50, p90, p99, p99_9, p99_99, relative_error}), and,
live only, ``rates`` per second between refreshes.  A consumer that is not an engine loop
(e.g. ``hugering dump``, a plain ``shm.ring.Consumer``) has ring counters only.
"""
from __future__ import annotations

import json
import sys
import time

from engine.cli import EXIT_OK, _add_json, _add_location, _ring_name, command


def snapshot(ring, stats, monitor=None) -> dict:
    """One reading of the ring and its stats region (``stats`` may be None); with a
    ``LeakMonitor``, one sample of it too (``"leak"``)."""
    from shm.liveness import producer_status
    info = ring.info()
    live = producer_status(ring)
    info["producer"]["status"] = live.state
    info["producer"]["status_message"] = live.message
    consumers = []
    for c in info["consumers"]:
        d = {"index": c["index"], "name": "", "pid": c["pid"], "alive": c["alive"],
             "ring_state": c["state"], "engine_state": None, "cursor": c["cursor"],
             "lag": c["lag"], "delivered": c["delivered"], "lost": c["lost"],
             "rejoins": c["rejoins"]}
        if stats is not None:
            s = stats.snapshot(c["index"])
            if s["pid"] == c["pid"] and s["state"] != "free":
                d.update({"name": s["name"], "engine_state": s["state"], "cpu": s["cpu"],
                          "received": s["received"], "filtered_out": s["filtered_out"],
                          "handled": s["handled"], "handler_errors": s["handler_errors"],
                          "bursts": s["bursts"], "idle_polls": s["idle_polls"],
                          "last_seq": s["last_seq"], "latency_ns": s["latency_ns"]})
        consumers.append(d)
    if stats is not None:       # engine consumers that have left: their final counters stay
        seen = {c["index"] for c in consumers}
        for k in range(stats.max_consumers):
            if k in seen:
                continue
            s = stats.snapshot(k)
            if s["state"] == "free":
                continue
            consumers.append({
                "index": k, "name": s["name"], "pid": s["pid"], "alive": False,
                "ring_state": "left", "engine_state": s["state"], "cursor": None, "lag": 0,
                "delivered": s["received"], "lost": s["lost"], "rejoins": 0, "cpu": s["cpu"],
                "received": s["received"], "filtered_out": s["filtered_out"],
                "handled": s["handled"], "handler_errors": s["handler_errors"],
                "bursts": s["bursts"], "idle_polls": s["idle_polls"], "last_seq": s["last_seq"],
                "latency_ns": s["latency_ns"]})
        consumers.sort(key=lambda c: c["index"])
    snap = {"ring": info["name"], "mode": info["mode"], "full_policy": info["full_policy"],
            "capacity": info["capacity"], "time_ns": time.time_ns(),
            "producer": info["producer"], "source": info["source"], "fill": info["fill"],
            "consumers": consumers}
    if monitor is not None:
        snap["leak"] = monitor.sample()
    return snap


def rates(prev: dict, cur: dict) -> dict:
    """Per-second rates between two snapshots (producer and, by line index, consumers)."""
    dt = (cur["time_ns"] - prev["time_ns"]) / 1e9
    if dt <= 0:
        return {}
    out = {"producer": {k: (cur["producer"][k] - prev["producer"][k]) / dt
                        for k in ("published", "dropped_full", "nic_drops")},
           "source": {k: (cur["source"][k] - prev["source"][k]) / dt
                      for k in ("src_packets", "src_missed", "src_errors", "src_nombuf")}}
    before = {c["index"]: c for c in prev["consumers"]}
    for c in cur["consumers"]:
        p = before.get(c["index"])
        if p is None or p["pid"] != c["pid"]:
            continue
        out[c["index"]] = {k: (c[k] - p[k]) / dt for k in ("received", "handled", "lost",
                                                           "delivered") if k in c and k in p}
    return out


def _ns(v) -> str:
    if v is None:
        return "-"
    if v < 10_000:
        return f"{v} ns"
    if v < 10_000_000:
        return f"{v / 1e3:.1f} us"
    if v < 10_000_000_000:
        return f"{v / 1e6:.1f} ms"
    return f"{v / 1e9:.1f} s"


def _rate(v) -> str:
    if v is None:
        return "-"
    if v >= 1e6:
        return f"{v / 1e6:.2f} M/s"
    if v >= 1e3:
        return f"{v / 1e3:.1f} k/s"
    return f"{v:.0f} /s"


def render(snap: dict, rt: dict):
    """A rich renderable of a snapshot (and its rates)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text
    p = snap["producer"]
    pr = rt.get("producer", {})
    head = Table(title=f"ring {snap['ring']} ({snap['mode']}/{snap['full_policy']}, "
                       f"{snap['capacity']:,} slots)", title_justify="left", expand=False)
    for col in ("producer pid", "published", "rate", "dropped (full)", "drop rate",
                "evictions", "NIC drops", "fill"):
        head.add_column(col, justify="right")
    status = p.get("status", "live")
    head.add_row(f"{p['pid']}{'' if status in ('live', 'never') else f' ({status})'}",
                 f"{p['published']:,}", _rate(pr.get("published")), f"{p['dropped_full']:,}",
                 _rate(pr.get("dropped_full")), f"{p['evictions']:,}", f"{p['nic_drops']:,}",
                 "-" if snap["fill"] is None else f"{snap['fill']:.0%}")
    parts = [head]
    src = snap.get("source") or {}
    if src.get("src_stats_ns"):
        # what the NIC / socket and its buffer pool report, before the ring (seed scenario A/B)
        sr = rt.get("source", {})
        st = Table(expand=False)
        for col in ("source packets", "rate", "missed", "errors", "no buffer", "pool in use",
                    "TX dropped"):
            st.add_column(col, justify="right")
        pool = (f"{src['pool_in_use']:,} / {src['pool_size']:,}" if src["pool_size"] else "-")
        st.add_row(f"{src['src_packets']:,}", _rate(sr.get("src_packets")),
                   f"{src['src_missed']:,}", f"{src['src_errors']:,}", f"{src['src_nombuf']:,}",
                   pool, f"{src['tx_dropped']:,}")
        parts.append(st)
    t = Table(expand=False)
    for col in ("#", "name", "pid", "state", "received", "rate", "filtered", "handled",
                "errors", "lost", "lag", "p50", "p99", "p99.9", "p99.99", "max"):
        t.add_column(col, justify="left" if col in ("name", "state") else "right")
    for c in snap["consumers"]:
        r = rt.get(c["index"], {})
        lat = c.get("latency_ns") or {}
        state = c["engine_state"] or c["ring_state"]
        if not c["alive"]:
            state += " (dead)"
        t.add_row(str(c["index"]), c["name"] or "-", str(c["pid"]), state,
                  f"{c.get('received', c['delivered']):,}",
                  _rate(r.get("received", r.get("delivered"))),
                  f"{c['filtered_out']:,}" if "filtered_out" in c else "-",
                  f"{c['handled']:,}" if "handled" in c else "-",
                  f"{c['handler_errors']:,}" if "handler_errors" in c else "-",
                  f"{c['lost']:,}", f"{c['lag']:,}", _ns(lat.get("p50")), _ns(lat.get("p99")),
                  _ns(lat.get("p99_9")), _ns(lat.get("p99_99")), _ns(lat.get("max")))
    parts.append(t)
    if status not in ("live", "never"):
        parts.append(Text(f"producer {status}: {p['status_message']}", style="bold yellow"))
    leak = snap.get("leak")
    if leak is not None:
        parts.append(Text("leak monitor: " + "; ".join(leak["messages"]),
                          style="bold red" if leak["alarm"] else ""))
    return Group(*parts)


@command("stat", "live counters, rates, lag and latency percentiles of a ring's producer "
                 "and consumers")
def _stat(p):
    p.add_argument("name", type=_ring_name, metavar="NAME", help="ring name")
    _add_location(p)
    _add_json(p)
    p.add_argument("--interval", type=float, default=1.0, metavar="S",
                   help="refresh period of the live view (default 1 s)")
    p.add_argument("--count", type=int, default=0, metavar="N",
                   help="refresh N times, then exit (default: until Ctrl-C); with --json, "
                        "N snapshots one per line")
    p.add_argument("--leak-window", type=int, default=10, metavar="N",
                   help="samples the leak monitor judges (engine.leak; default 10)")
    p.set_defaults(handler=_stat_run)


def _stat_run(a) -> int:
    from engine.cli import UsageError
    from engine.stats import StatsRegion
    from shm.ring import Ring
    from engine.leak import LeakMonitor
    if a.interval <= 0:
        raise UsageError(f"stat: --interval must be > 0, got {a.interval}")
    if a.leak_window < 2:
        raise UsageError(f"stat: --leak-window must be >= 2 samples, got {a.leak_window}")
    ring = Ring.open(a.name, a.hugetlbfs)
    stats = StatsRegion.open_existing(ring)
    monitor = LeakMonitor(ring, interval_s=a.interval, window=a.leak_window)
    try:
        if a.json:
            for i in range(max(1, a.count)):
                if i:
                    time.sleep(a.interval)
                    if stats is None:
                        stats = StatsRegion.open_existing(ring)
                print(json.dumps(snapshot(ring, stats, monitor)), flush=True)
            return EXIT_OK
        from rich.console import Console
        from rich.live import Live
        console = Console() if sys.stdout.isatty() else Console(width=200)
        prev = snapshot(ring, stats, monitor)
        n = 0
        with Live(render(prev, {}), console=console, auto_refresh=False,
                  transient=False) as live:
            while a.count <= 0 or n < a.count:
                time.sleep(a.interval)
                if stats is None:
                    stats = StatsRegion.open_existing(ring)   # an engine may attach later
                cur = snapshot(ring, stats, monitor)
                live.update(render(cur, rates(prev, cur)), refresh=True)
                prev = cur
                n += 1
        return EXIT_OK
    finally:
        if stats is not None:
            stats.close()
        ring.close()
        sys.stdout.flush()
