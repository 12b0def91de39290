"""``hugering dpdk CONFIG.yaml``: run one port of a ``dpdk_config`` file into rings, as their
producer (``engine.producers.dpdk``: the C program ``hugering-dpdk`` on DPDK 22.11)."""
from __future__ import annotations

import argparse
import json
import signal
import sys

from engine.cli import (EXIT_INTERRUPTED, EXIT_OK, EXIT_RUNTIME, PROG, UsageError, _ring_name,
                        _seconds, command, fields)
from engine.verbs.afxdp import _cpus

EXIT_UNAVAILABLE = 3

_EPILOG = """\
what it does
  Checks the file and this machine (cores of core_mask, NUMA nodes of socket_mem, huge pages,
  the device), builds hugering-dpdk if needed, starts EAL with the file's arguments, sets up
  dpdk_config.ports[--port] (RX/TX queues, descriptors, MTU, its buffer pool) and busy-polls
  each RX queue on its own lcore into its ring: NAME for one RX queue, NAME.q0 .. NAME.q{N-1}
  for N.  The rings must exist (hugering ring create, or hugering run).  Without --ring, the
  ring of the file's `kind: dpdk` producer for that port is used.

devices
  device_id is a PCI address (a NIC bound to vfio-pci, see README) or a vdev string:
  net_pcap0,rx_pcap=FILE   net_af_packet0,iface=IF   net_af_xdp0,iface=IF   net_null0

memory
  EAL gets huge pages from hugepages_mount (socket_mem as written) when the free ones hold the
  buffer pools; otherwise it runs on ordinary pages (--no-huge) and says so.  --memory forces
  one or the other.

output
  The startup report (what EAL, the pool and the port really got: queues, descriptors, MTU,
  pool size and element size, the lcore and cpu of each queue, memory channels) on stderr as
  soon as every lcore polls, the final counters on stdout at exit; --json prints both as one
  object on stdout instead.  Port statistics and
  mempool counts go into each ring every second: hugering stat / hugering ring info show them.

stopping
  Ctrl-C or SIGTERM: the lcores stop, the port is stopped and closed, the pool freed, EAL
  cleaned up (runtime directory removed).

exit status
  0 done (--duration); 130 stopped by a signal; 1 this machine lacks what the file asks for,
  or the program failed; 2 a bad file or command line; 3 DPDK or its build tools missing."""


@command("dpdk", "receive from a DPDK port (NIC or vdev) into rings, from a dpdk_config file")
def _dpdk(p):
    p.description = ("Run one port of a dpdk_config file (the seed's YAML format) into hugering\n"
                     "rings through DPDK 22.11, one lcore busy-polling each RX queue.")
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = _EPILOG
    p.add_argument("config", metavar="CONFIG.yaml", help="a file with a dpdk_config section")
    p.add_argument("--port", type=int, default=0, metavar="I",
                   help="dpdk_config.ports[I] (default 0)")
    p.add_argument("--ring", type=_ring_name, metavar="NAME",
                   help="the ring(s) to fill: NAME, or NAME.q0 .. for several RX queues "
                        "(default: the ring of the file's kind: dpdk producer for the port)")
    p.add_argument("--tx-ring", type=_ring_name, metavar="NAME",
                   help="also transmit: frames published into this lossless ring leave on TX "
                        "queue 0")
    p.add_argument("--cpu", type=_cpus, metavar="N[,N...]",
                   help="one lcore per RX queue instead of core_mask's cores")
    p.add_argument("--memory", choices=("auto", "hugepages", "no-huge"), default="auto",
                   help="EAL memory (default auto: huge pages when the pools fit in them)")
    p.add_argument("--duration", type=_seconds, metavar="S", help="stop after S seconds")
    p.add_argument("--stats-ms", type=int, default=1000, metavar="MS",
                   help="port statistics into the rings every MS ms (default 1000)")
    p.add_argument("--hugetlbfs", metavar="PATH",
                   help="look for the rings on this hugetlbfs mount (default /dev/hugepages)")
    p.add_argument("--json", action="store_true",
                   help='print one JSON object: {"startup", "final", "memory", "notes", '
                        '"eal_argv", "rings"}')
    p.set_defaults(handler=_dpdk_run)


def _rings_from_file(cfg, port: int):
    """(ring, tx_ring, cpus) of the file's kind: dpdk producer for ``port``, or Nones."""
    h = cfg.hugering
    if h is None:
        return None, None, None
    for pr in h.producers:
        if pr.kind == "dpdk" and pr.options.port == port:
            rc = h.ring(pr.ring)
            cpus = pr.cpus(rc.queues)
            return pr.ring, pr.options.tx_ring, list(cpus) if cpus else None
    return None, None, None


def _dpdk_run(a) -> int:
    from engine import config as C
    from engine.producers import dpdk as D
    from shm.ring import Ring
    cfg = C.load(a.config)
    if cfg.dpdk is None or not cfg.dpdk.ports:
        raise C.ConfigError("dpdk_config", "the file has no dpdk_config ports to run",
                            cfg.source)
    if not 0 <= a.port < len(cfg.dpdk.ports):
        raise UsageError(f"dpdk: --port: the file has {len(cfg.dpdk.ports)} port(s), "
                         f"0..{len(cfg.dpdk.ports) - 1}")
    C.require_machine(cfg, ["dpdk_config"])         # MachineError: every problem, each key
    ring, tx_ring, cpus = _rings_from_file(cfg, a.port)
    ring = a.ring or ring
    tx_ring = a.tx_ring or tx_ring
    cpus = a.cpu or cpus
    if ring is None:
        raise UsageError("dpdk: give --ring NAME (or a kind: dpdk producer for port "
                         f"{a.port} in the file's hugering section)")
    pc = cfg.dpdk.ports[a.port]
    if cpus is not None and len(cpus) != pc.rx_queues:
        if len(cpus) != 1:
            raise UsageError(f"dpdk: --cpu: one cpu, or one per RX queue ({pc.rx_queues}), "
                             f"got {len(cpus)}")
        cpus = cpus * pc.rx_queues
    for name in C.ring_names(ring, pc.rx_queues) + ((tx_ring,) if tx_ring else ()):
        Ring.open(name, a.hugetlbfs).close()        # RingError names a missing ring
    try:
        plan = D.launch_plan(cfg, port=a.port, ring=ring, tx_ring=tx_ring, cpus=cpus,
                             memory=a.memory, hugetlbfs=a.hugetlbfs, duration=a.duration,
                             stats_ms=a.stats_ms)
    except D.DpdkUnavailable as e:
        print(f"{PROG}: error: dpdk: {e}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    for note in plan.notes:
        print(f"{PROG}: note: {note}", file=sys.stderr, flush=True)
    prod = D.DpdkProducer(plan, echo=True)
    signals = []

    def forward(signum, frame):
        signals.append(signum)
        prod.send_signal(signum)
    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            prod.start()
        except D.DpdkError as e:
            print(f"{PROG}: error: dpdk: {e}", file=sys.stderr)
            return EXIT_RUNTIME
        if signals:                                  # a signal during startup
            prod.send_signal(signals[0])
        for line in startup_lines(prod.startup):       # stderr: stdout is --json's alone
            print(f"dpdk: {line}", file=sys.stderr, flush=True)
        final = prod.wait()
    finally:
        prod.kill()
        for s, h in old.items():
            signal.signal(s, h)
    rc = prod.returncode()
    if a.json:
        print(json.dumps({"startup": prod.startup, "final": final, "memory": plan.memory,
                          "notes": plan.notes, "eal_argv": plan.eal_argv, "rings": plan.rings,
                          "exit_status": rc, "stop_s": prod.stop_s}))
    elif final is not None:
        print(format_final(final, plan))
    if rc != 0 or final is None:
        print(f"{PROG}: error: dpdk: hugering-dpdk exited with status {rc}", file=sys.stderr)
        return EXIT_RUNTIME
    return EXIT_INTERRUPTED if signals else EXIT_OK


def startup_lines(s: dict) -> list[str]:
    e = s["eal"]
    out = [f"{s['dpdk']}, pid {s['pid']}, lcores {','.join(map(str, e['lcores']))} (main "
           f"{e['main_lcore']}), memory channels {e['memory_channels']}, "
           f"{'huge pages' if e['huge_pages'] else 'ordinary pages'}, heap "
           f"{'/'.join(str(b >> 20) for b in e['heap_bytes_per_socket'])} MB per socket"]
    for p in s["pools"]:
        out.append(f"pool {p['name']}: {p['size']} mbufs, data room {p['data_room']} B "
                   f"({p['object_bytes']} B objects), cache {p['cache_size']}/lcore, "
                   f"{p['available']} free")
    for p in s["ports"]:
        out.append(f"port {p['index']} {p['device']} ({p['driver']}, port id {p['port_id']}): "
                   f"{p['rx_queues']} RX / {p['tx_queues']} TX queues x {p['rx_desc']} "
                   f"descriptors, mtu {p['mtu']}, pool {p['pool']}, timestamps "
                   f"{p['timestamps']}" + (f", TX from ring {p['tx_ring']}" if p['tx_ring']
                                           else ""))
        for q in p["queues"]:
            out.append(f"  queue {q['queue']} -> ring {q['ring']} ({q['mode']}) on lcore "
                       f"{q['lcore']} (cpu {q['cpu']})")
    return out


def format_final(f: dict, plan) -> str:
    rows = []
    for p in f["ports"]:
        rows.append((f"port {p['index']}", f"{p['ipackets']:,} received by the NIC, "
                                           f"{p['imissed']:,} missed, {p['ierrors']:,} errors, "
                                           f"{p['rx_nombuf']:,} no-mbuf"))
        for q in p["queues"]:
            rows.append((f"  queue {q['queue']}", f"{q['published']:,} published into "
                                                  f"{plan.rings[q['queue']]}, {q['dropped']:,} "
                                                  f"dropped (ring full), {q['truncated']:,} "
                                                  "truncated"))
        if "tx" in p:
            t = p["tx"]
            rows.append(("  transmit", f"{t['sent']:,} sent, {t['dropped']:,} not taken by the "
                                       f"NIC, {t['too_long']:,} too long"))
        rows.append(("  pool", f"{p['pool_in_use']:,} in use, {p['pool_available']:,} free"))
    rows.append(("elapsed", f"{f['elapsed_s']:.3f} s, stopped by {f['stopped_by']}, "
                            f"rte_eal_cleanup {f['eal_cleanup']}"))
    return fields(rows)


__all__ = ["EXIT_UNAVAILABLE", "startup_lines", "format_final"]
