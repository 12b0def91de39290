#!/usr/bin/env python3
"""DPDK producer benchmark: hugering-dpdk into a ring, drained by a hugering consumer, against
``dpdk-testpmd --forward-mode=rxonly`` on the same virtual device, in the same run.

    python tools/bench_dpdk.py [--json] [--quick] [--repeats R] [--seconds S] [--cpus 0,1]
                               [--cases net_null,net_pcap] [--consumer seq|payload]

Two sources, each a DPDK vdev that needs no NIC:

* ``net_null``: ``net_null0`` -- 64-byte packets made up by the PMD (it allocates mbufs and sets
  their length; it writes no packet bytes);
* ``net_pcap``: ``net_pcap0,rx_pcap=FILE,infinite_rx=1`` -- FILE holds ``--pcap-frames``
  64-byte Ethernet/IPv4/UDP frames, preloaded and copied into fresh mbufs over and over.

For each source, alternating (``run_alternating``) ``--repeats`` times:

* **testpmd**: ``dpdk-testpmd -l C0,C1 -- --forward-mode=rxonly --nb-cores=1 --burst=32
  --no-flush-rx`` (the forwarding lcore on C1): receive and free, the ceiling of a DPDK loop on
  this source.  Its rate is the median of the per-second ``Rx-pps`` lines of ``--stats-period
  1``, the first one (start-up) left out.
* **hugering**: ``hugering-dpdk`` (``engine.producers.dpdk``) polling the same vdev on C1 into
  a lossless ring (full policy ``wait``: nothing is dropped, a slow consumer holds the
  producer back), while a Numba consumer process pinned to C0 drains it with ``peek`` /
  ``release``, checking every slot's sequence stamp and captured length (``--consumer
  payload``: also summing the payload words, as tools/bench_ring.py does).  Rates are counted
  over a ``--seconds`` window after a warm-up, from the ring's own counters (producer:
  ``published``; consumer: its line's ``delivered``); losses are everything the ring's
  counters say went missing in the window -- dropped when full, lost by the consumer (laps,
  evictions) and NIC drops.  After the producer stops, the consumer must have received
  every slot ever published with no sequence gap, or the benchmark fails.

Both use the same EAL setup (huge pages, ``--huge-unlink``, their own file prefixes, the same
pool size) and the same vdev string.  Reported per source: ``producer_mpps``,
``consumer_mpps``, ``consumer_loss`` (packets), ``testpmd_mpps``, ``ratio_vs_testpmd``
(producer / testpmd, medians over repeats); the top-level keys are those of the source with
the lowest ratio (``case``), ``consumer_loss`` summed over all sources.  Each side busy-polls,
so it should own its cpu: ``producer_cpu_share`` / ``consumer_cpu_share`` (cpu seconds over the
window, /proc) say how much of it each had -- under 1, another process took the rest, and the
rates fall with it (testpmd needs one cpu, the pipeline two).  ``--json`` prints one object.
Root only (EAL on huge pages); ``dpdk-testpmd`` is in Debian's ``dpdk-dev``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
ROOT = TOOLS.parent
for _p in (str(ROOT), str(TOOLS)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import bench_common as BC  # noqa: E402

BC.use_numba_cache("bench_dpdk", [Path(__file__).resolve(), *sorted((ROOT / "shm").glob("*.py"))])

import numpy as np  # noqa: E402
from numba import njit  # noqa: E402

from shm import layout as L  # noqa: E402
from shm.clock import mono_ns  # noqa: E402
from shm.kernels import CS_CURSOR, CS_SLOT_SIZE, CS_STRIDE_W, consumer_slot, peek, release  # noqa: E402,E501

CASES = ("net_null", "net_pcap")
FRAME = 64
POOL = 8191                    # mbufs: the pcap's frames + the RX descriptors + lcore caches
RX_PPS = re.compile(r"Rx-pps:\s+(\d+)")


# --- the consumer (a child process pinned to C0) ------------------------------------------------
@njit(cache=True, nogil=True)
def drain(ctrl, words, cstate, burst, payload, wait):
    """Drain until the producer has detached and nothing is left (``wait``: first wait for
    something to arrive).  Per slot: the sequence stamp must be the next one, the captured
    length is read (clamped); ``payload`` also sums the payload words.  Returns (received, bad
    stamps, checksum, t_first, t_last)."""
    sw = cstate[CS_STRIDE_W]
    size = cstate[CS_SLOT_SIZE]
    got = 0
    bad = 0
    total = 0
    t0 = 0
    t1 = 0
    while True:
        k = peek(ctrl, cstate, burst)
        if k <= 0:
            if k < 0:
                break                                    # evicted: counted as lost
            if (got > 0 or not wait) and ctrl[L.H_PRODUCER_PID] == 0 and \
                    peek(ctrl, cstate, burst) == 0:
                break                                    # the producer is gone and all read
            continue
        if got == 0:
            t0 = mono_ns()
        cur = cstate[CS_CURSOR]
        for j in range(k):
            base = consumer_slot(cstate, j) * sw
            if words[base + L.S_SEQ] != cur + j:
                bad += 1
            cap = (words[base + L.S_LENS] >> 32) & 0xFFFFFFFF
            if cap > size:
                cap = size                               # never trust a length field
            total += cap
            if payload:
                for w in range((cap + 7) >> 3):
                    total += words[base + L.S_PAYLOAD + w]
        if release(ctrl, cstate, k) < 0:
            break
        got += k
        t1 = mono_ns()
    return got, bad, total, t0, t1


def role_consumer(args) -> int:
    from shm.ring import Ring
    BC.pin(args.cpu)
    ring = Ring.open(args.ring)
    c = ring.consumer()
    drain(ring.ctrl, ring.words, c.cstate, 1, args.payload, False)   # compile: returns at once
    print("ready", flush=True)
    got, bad, total, t0, t1 = drain(ring.ctrl, ring.words, c.cstate, args.burst, args.payload,
                                    True)
    lost = int(c.line["lost"])
    c.close()
    print(json.dumps({"received": int(got), "bad_seq": int(bad), "lost": lost,
                      "seconds": (t1 - t0) / 1e9}), flush=True)
    return 0


# --- sources ---------------------------------------------------------------------------------
def write_feed(path: Path, n: int) -> None:
    """n 64-byte Ethernet/IPv4/UDP frames (no timestamps matter: infinite_rx ignores them)."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i in range(n):
            eth = bytes.fromhex("020000000002020000000001") + b"\x08\x00"
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, FRAME - 14, i, 0, 64, 17, 0,
                             bytes([10, 9, 0, 1]), bytes([10, 9, 0, 2]))
            udp = struct.pack("!HHHH", 40000 + i % 16, 26400, FRAME - 34, 0)
            fr = eth + ip + udp + struct.pack("!Q", i) + bytes(FRAME - 50)
            f.write(struct.pack("<IIII", 0, 0, len(fr), len(fr)) + fr)


def vdev(case: str, tmp: Path) -> str:
    return "net_null0" if case == "net_null" else \
        f"net_pcap0,rx_pcap={tmp / 'feed.pcap'},infinite_rx=1"


def dpdk_yaml(dev: str, lcore: int) -> str:
    return (f'dpdk_config:\n'
            f'  eal_arguments: {{core_mask: "{1 << lcore:#x}", memory_channels: 4}}\n'
            f'  ports:\n'
            f'    - {{device_id: "{dev}", rx_queues: 1, tx_queues: 1, '
            f'ring_descriptor_size: 1024, mtu: 1500}}\n'
            f'  buffer_pools:\n'
            f'    - {{pool_name: bench_pool, element_count: {POOL}, element_size: 2176}}\n')


# --- one segment of each ---------------------------------------------------------------------
_seq = iter(range(1 << 30))


def _prefix(kind: str) -> str:
    return f"hugering-bench-{os.getpid()}-{kind}-{next(_seq)}"


def _remove_runtime_dir(prefix: str) -> None:
    for base in ("/var/run/dpdk", os.environ.get("XDG_RUNTIME_DIR", "") + "/dpdk"):
        shutil.rmtree(os.path.join(base, prefix), ignore_errors=True)


def run_testpmd(dev: str, opts) -> dict:
    c0, c1 = opts.cpus
    prefix = _prefix("testpmd")
    argv = ["dpdk-testpmd", "-l", f"{c0},{c1}", "--main-lcore", str(c0), "-n", "4",
            "--huge-dir", "/dev/hugepages", "--huge-unlink", "--file-prefix", prefix,
            "--no-pci", "--no-telemetry", f"--vdev={dev}", "--log-level=notice", "--",
            "--forward-mode=rxonly", "--nb-cores=1", "--rxq=1", "--txq=1", "--burst=32",
            "--rxd=1024", "--txd=1024", f"--total-num-mbufs={POOL}", "--no-flush-rx",
            "--stats-period=1"]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, text=True)
    try:
        time.sleep(opts.warmup + opts.seconds + 1.2)     # start-up, then whole stats periods
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        _remove_runtime_dir(prefix)
    pps = [int(x) for x in RX_PPS.findall(out)]
    steady = [x for x in pps[1:] if x > 0]               # the first period holds the start
    if not steady:
        raise BC.BenchError(f"testpmd on {dev} reported no rate:\n{out[-3000:]}")
    return {"mpps": float(np.median(steady)) / 1e6, "periods": len(steady)}


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_hugering(dev: str, opts) -> dict:
    from engine import config as C
    from engine.producers import dpdk as D
    from shm.ring import Ring
    c0, c1 = opts.cpus
    name = f"bdpdk{os.getpid()}-{next(_seq)}"
    ring = Ring.create(name, slots=opts.slots, slot_size=opts.slot_size, mode="lossless",
                       full_policy="wait", consumer_timeout=30.0)
    cons = None
    try:
        cons = subprocess.Popen([sys.executable, __file__, "--role", "consumer", "--ring", name,
                                 "--cpu", str(c0), "--burst", str(opts.burst)]
                                + (["--payload"] if opts.consumer == "payload" else []),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = cons.stdout.readline().strip()
        if line != "ready":
            raise BC.BenchError(f"consumer did not start: {line} {cons.stderr.read()[-2000:]}")
        cfg = C.loads(dpdk_yaml(dev, c1), source="bench")
        plan = D.launch_plan(cfg, ring=name, memory="hugepages", file_prefix=_prefix("hr"),
                             stats_ms=1000)
        line_k = int(np.nonzero(ring.consumer_lines["state"] == L.CONSUMER_ACTIVE)[0][0])

        def snap():
            cl = ring.consumer_lines[line_k]
            return (time.monotonic(), int(ring.ctrl[L.PS_PUBLISHED]), int(cl["delivered"]),
                    int(ring.ctrl[L.PS_DROPPED_FULL]) + int(cl["lost"])
                    + int(ring.ctrl[L.PS_NIC_DROPS]))
        with D.DpdkProducer(plan) as p:
            time.sleep(opts.warmup)
            cpu0 = cpu_seconds(p.pid), cpu_seconds(cons.pid)
            t0, pub0, del0, loss0 = snap()
            time.sleep(opts.seconds)
            t1, pub1, del1, loss1 = snap()
            cpu1 = cpu_seconds(p.pid), cpu_seconds(cons.pid)
            final = p.stop()
        out, err = cons.communicate(timeout=60)
        rep = json.loads(out.strip().splitlines()[-1])
    finally:
        if cons is not None and cons.poll() is None:
            cons.kill()
            cons.wait()
        ring.close()
        Ring.remove(name)
    published = final["ports"][0]["queues"][0]["published"]
    if rep["bad_seq"] or rep["received"] != published or rep["lost"]:
        raise BC.BenchError(f"consumer: {rep} but the producer published {published}")
    dt = t1 - t0
    return {"producer_mpps": (pub1 - pub0) / dt / 1e6, "consumer_mpps": (del1 - del0) / dt / 1e6,
            "consumer_loss": loss1 - loss0, "published": published,
            "full_polls": final["ports"][0]["queues"][0]["full_polls"],
            "imissed": final["ports"][0]["imissed"], "memory": plan.memory,
            # each side busy-polls: a share under 1 is a cpu taken by another process
            "producer_cpu_share": (cpu1[0] - cpu0[0]) / dt,
            "consumer_cpu_share": (cpu1[1] - cpu0[1]) / dt}


# --- main ------------------------------------------------------------------------------------
def table(res: dict) -> str:
    rows = [[c, r["producer_mpps"], r["consumer_mpps"], r["consumer_loss"], r["testpmd_mpps"],
             r["ratio_vs_testpmd"], f"{r['producer_cpu_share']:.2f}/{r['consumer_cpu_share']:.2f}"]
            for c, r in res["cases"].items()]
    head = (f"DPDK producer into a lossless ring ({res['slots']} slots of {res['slot_size']} B, "
            f"{FRAME} B frames), consumer '{res['consumer']}' on cpu {res['cpus'][0]}, "
            f"producer / testpmd lcore on cpu {res['cpus'][1]}; medians of {res['repeats']} "
            f"repeats of {res['seconds']} s")
    return head + "\n" + BC.format_table(
        ["source", "producer Mpps", "consumer Mpps", "loss", "testpmd Mpps", "ratio",
         "cpu share p/c"], rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="measured window per segment")
    ap.add_argument("--warmup", type=float, default=1.0, help=argparse.SUPPRESS)
    ap.add_argument("--cases", default=",".join(CASES),
                    help=f"sources, comma separated (default {','.join(CASES)})")
    ap.add_argument("--consumer", choices=("seq", "payload"), default="seq",
                    help="consumer work per slot: seq (stamp and length, default) or payload "
                         "(also sum the payload words)")
    ap.add_argument("--slots", type=int, default=4096, help="ring capacity (default 4096)")
    ap.add_argument("--slot-size", type=int, default=64, help="slot payload bytes (default 64)")
    ap.add_argument("--burst", type=int, default=256, help="consumer peek burst (default 256)")
    ap.add_argument("--pcap-frames", type=int, default=1024, help=argparse.SUPPRESS)
    ap.add_argument("--role", choices=("consumer",), help=argparse.SUPPRESS)
    ap.add_argument("--ring", help=argparse.SUPPRESS)
    ap.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--payload", action="store_true", help=argparse.SUPPRESS)
    BC.add_common_args(ap, default_repeats=3)
    args = ap.parse_args(argv)
    if args.role:
        return role_consumer(args)
    BC.set_quiet(args.json)
    if os.geteuid() != 0:
        print("bench_dpdk: needs root (EAL on huge pages)", file=sys.stderr)
        return 1
    if shutil.which("dpdk-testpmd") is None:
        print("bench_dpdk: needs dpdk-testpmd (Debian package dpdk-dev)", file=sys.stderr)
        return 1
    if len(args.cpus) != 2:
        print("bench_dpdk: --cpus: two cpus, consumer then producer", file=sys.stderr)
        return 2
    BC.check_cpus(args.cpus)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if not cases or any(c not in CASES for c in cases):
        print(f"bench_dpdk: --cases: some of {','.join(CASES)}", file=sys.stderr)
        return 2
    if args.quick:
        args.seconds, args.warmup = min(args.seconds, 1.0), min(args.warmup, 0.5)
    n_rep = BC.repeats(args)
    from engine.producers import dpdk as D
    D.program_path()                                    # built before anything is timed
    out_cases = {}
    with tempfile.TemporaryDirectory(prefix="bench_dpdk.") as tmp:
        tmp = Path(tmp)
        write_feed(tmp / "feed.pcap", args.pcap_frames)
        for case in cases:
            dev = vdev(case, tmp)
            BC.progress(f"{case}: {dev}")
            runs = BC.run_alternating({"testpmd": lambda r, d=dev: run_testpmd(d, args),
                                       "hugering": lambda r, d=dev: run_hugering(d, args)},
                                      n_rep, label=case)
            med = lambda xs: BC.summarize(xs)["median"]      # noqa: E731
            t = med(r["mpps"] for r in runs["testpmd"])
            p = med(r["producer_mpps"] for r in runs["hugering"])
            out_cases[case] = {
                "vdev": dev if case != "net_pcap" else "net_pcap0,rx_pcap=FEED,infinite_rx=1",
                "producer_mpps": p,
                "consumer_mpps": med(r["consumer_mpps"] for r in runs["hugering"]),
                "consumer_loss": int(sum(r["consumer_loss"] for r in runs["hugering"])),
                "testpmd_mpps": t, "ratio_vs_testpmd": p / t if t else None,
                "producer_cpu_share": med(r["producer_cpu_share"] for r in runs["hugering"]),
                "consumer_cpu_share": med(r["consumer_cpu_share"] for r in runs["hugering"]),
                "runs": runs}
    worst = min(out_cases, key=lambda c: out_cases[c]["ratio_vs_testpmd"] or 0)
    w = out_cases[worst]
    res = {"producer_mpps": w["producer_mpps"], "consumer_mpps": w["consumer_mpps"],
           "consumer_loss": sum(c["consumer_loss"] for c in out_cases.values()),
           "testpmd_mpps": w["testpmd_mpps"], "ratio_vs_testpmd": w["ratio_vs_testpmd"],
           "case": worst, "cases": out_cases, "consumer": args.consumer, "ring_mode":
           "lossless/wait", "slots": args.slots, "slot_size": args.slot_size,
           "frame_bytes": FRAME, "consumer_burst": args.burst, "seconds": args.seconds,
           "repeats": n_rep, "cpus": args.cpus, "machine": BC.machine_info()}
    BC.emit(res, args.json, table)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BC.BenchError as e:
        print(f"bench_dpdk: error: {e}", file=sys.stderr)
        sys.exit(1)
