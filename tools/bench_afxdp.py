"""AF_XDP ingest against Python socket loops, on the same kernel-generated UDP traffic.

    python tools/bench_afxdp.py [--json] [--packets N] [--sender auto|xdp|udp] [--rate PPS]
                                [--repeats R] [--quick]

Creates two network namespaces it owns (``hb<pid>r`` receives, ``hb<pid>t`` sends) joined by a
veth pair, and for each receiver in turn (alternating, ``--repeats`` times) sends the same
bounded burst of 64-byte UDP datagrams from the sender namespace and counts what the receiver
got:

* ``afxdp``: ``engine.producers.afxdp.AfXdpProducer`` (native XDP, filter ``udp dst port P``
  in the kernel) into a hugering ring, its @njit loop busy-polling;
* ``socket``: a Python ``recv_into`` loop on a bound UDP socket (4 MiB receive buffer);
* ``afpacket``: a Python ``recv_into`` loop on an ``AF_PACKET`` raw socket on the interface,
  keeping the frames of that UDP flow.

The senders (C programs in ``tools/reference``, compiled with gcc into its build folder):

* ``--sender xdp`` (default): ``xdp_blast.c``, the kernel's XDP "live frames" test run
  (``BPF_PROG_RUN`` with ``BPF_F_TEST_XDP_LIVE_FRAMES``) redirecting one prepared
  Ethernet/IPv4/UDP frame out of the sending veth ``--packets`` times -- no socket, qdisc or
  IP stack on the sending side, the way a traffic generator (pktgen, xdp-trafficgen, TRex)
  loads a link.  The receiving veth gets GRO switched on (``ethtool -K``), which gives it
  the NAPI instance frames sent this way need when no XDP program is attached (the socket
  and AF_PACKET runs).
* ``--sender udp``: ``udp_blast.c``, ``sendmmsg`` on a UDP socket in batches of 32, flat out
  or paced at ``--rate``.
* ``--sender auto`` (the default): xdp where the kernel allows live-frame test runs, else udp.
  Some kernels refuse them outright (seen: a 6.18 kernel in a sandbox without
  ``CAP_SYS_RESOURCE`` answers ``EPERM`` for any program); one frame is sent first to find
  out, and the JSON says which sender ran and why (``sender``, ``sender_note``).  An explicit
  ``--sender xdp`` on such a kernel is an error that says so.

Where the work lands (a veth has no hardware queue of its own): the receiving veth's NAPI --
the XDP program and the copy into the UMEM for AF_XDP, the whole IPv4/UDP receive path and the
socket queue for the other two -- runs on the *sender's* CPU, right after the sender hands a
batch over; the receiver's own loop runs on the other CPU.  So the offered rate is the
sender's rate *with the kernel's receive work for that receiver included*: what the kernel
does per packet before a socket sees it slows the sender, and what a receiver cannot drain
in time is lost.  That is the comparison the benchmark makes.

Each receiver runs in the receiving namespace as a child process (``--role``) and reports
frames received and the time between its first and last one; the rate is received frames over
that span, the loss ``1 - received / sent``.  Reported: medians over the repeats, per receiver,
and ``offered_pps`` (the sender's own rate, median over all runs).  ``--json`` prints one object
with ``offered_pps``, ``afxdp_pps``, ``afxdp_loss``, ``socket_pps``, ``socket_loss``,
``afpacket_pps``, ``afpacket_loss``, ``ratio_vs_socket`` (afxdp_pps / socket_pps) and the
details.  Everything it creates (namespaces, veth, XDP program, ring) is removed at the end,
also after an error or Ctrl-C.  Root only; the xdp sender also needs ``ethtool``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools import bench_common as bc  # noqa: E402

PORT = 39001
PAYLOAD = 22                 # 64-byte frames: 14 + 20 + 8 + 22
REFERENCE = Path(__file__).resolve().parent / "reference"
SENDERS = {"xdp": REFERENCE / "xdp_blast.c", "udp": REFERENCE / "udp_blast.c"}



def sh(*argv, check=True, timeout=30):
    out = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                         timeout=timeout)
    if check and out.returncode != 0:
        raise bc.BenchError(f"{' '.join(map(str, argv))}: {out.stderr.strip()}")
    return out


class Pair:
    """Namespaces ``rx``/``tx`` and a veth between them (10.199.<pid>.1 receives)."""

    def __init__(self, gro: bool = False):
        self.gro = gro
        pid = os.getpid()
        self.rx, self.tx = f"hb{pid}r", f"hb{pid}t"
        self.rx_if, self.tx_if = f"hb{pid}r0", f"hb{pid}t0"
        self.rx_ip, self.tx_ip = f"10.199.{pid & 255}.1", f"10.199.{pid & 255}.2"

    def __enter__(self):
        try:
            for ns in (self.rx, self.tx):
                sh("ip", "netns", "add", ns)
                sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "link", "add", self.rx_if, "netns", self.rx, "type", "veth", "peer",
               "name", self.tx_if, "netns", self.tx)
            for ns, dev, ip in ((self.rx, self.rx_if, self.rx_ip),
                                (self.tx, self.tx_if, self.tx_ip)):
                sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
                sh("ip", "-n", ns, "link", "set", dev, "up")
            if self.gro:                # NAPI on the receiving veth for XDP-sent frames
                sh("ip", "netns", "exec", self.rx, "ethtool", "-K", self.rx_if, "gro", "on")
            sh("ip", "netns", "exec", self.tx, "ping", "-c", "1", "-W", "2", self.rx_ip)
            self.rx_mac, self.tx_mac = (json.loads(sh("ip", "-n", ns, "-j", "link", "show",
                                                      dev).stdout)[0]["address"]
                                        for ns, dev in ((self.rx, self.rx_if),
                                                        (self.tx, self.tx_if)))
        except BaseException:
            self.close()
            raise
        return self

    def close(self):
        for ns in (self.rx, self.tx):
            sh("ip", "netns", "del", ns, check=False)

    def __exit__(self, *exc):
        self.close()


# --- receivers (child processes in the receiving namespace) -----------------------------------
def _report(received: int, span_s: float, extra: dict | None = None) -> None:
    print(json.dumps({"received": received, "span_s": span_s, **(extra or {})}), flush=True)


def role_afxdp(a) -> None:
    from engine.producers.afxdp import AfXdpProducer
    from shm import layout as L
    from shm.ring import Ring
    name = f"benchafxdp{os.getpid()}"
    slots = 1 << max(10, (a.expect - 1).bit_length())     # room for every frame: no consumer
    ring = Ring.create(name, slots=slots, slot_size=128)
    try:
        with AfXdpProducer(ring, a.iface, filter=f"udp dst port {PORT}", xdp_mode=a.mode,
                           frames=32768, idle="busy", burst=64) as p:
            p.warmup()
            print("ready " + p.mode_line(), flush=True)
            state = {"last": 0, "t": time.monotonic(), "started": False}
            deadline = time.monotonic() + a.timeout

            def stop():
                n = int(ring.ctrl[L.PS_PUBLISHED])
                t = time.monotonic()
                if n != state["last"]:
                    state.update(last=n, t=t, started=True)
                return n >= a.expect or t > deadline or \
                    (state["started"] and t - state["t"] > a.idle)
            rep = p.run(stop=stop)
            n = rep["published"]
            span = 0.0
            if n > 1:
                ts = ring.slots["ts_ns"]
                span = (int(ts[n - 1]) - int(ts[0])) / 1e9
            _report(n, span, {"nic_drops": rep["nic_drops"], "mode": p.describe()["xdp_mode"]})
    finally:
        ring.close()
        Ring.remove(name)


def _recv_loop(s, a, keep) -> None:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 200_000))
    buf = bytearray(2048)
    mv = memoryview(buf)
    print("ready", flush=True)
    n, first, last = 0, 0.0, 0.0
    deadline = time.monotonic() + a.timeout
    clock = time.perf_counter
    while n < a.expect:
        try:
            k = s.recv_into(buf)
        except (BlockingIOError, TimeoutError, socket.timeout):
            if (n and clock() - last > a.idle) or time.monotonic() > deadline:
                break
            continue
        if keep is None or keep(mv, k):
            if n == 0:
                first = clock()
            n += 1
            last = clock()
    _report(n, last - first if n > 1 else 0.0)


def role_socket(a) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(("", PORT))
    _recv_loop(s, a, None)


def role_afpacket(a) -> None:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((a.iface, 0))
    port = struct.pack("!H", PORT)
    ipv4_udp = b"\x08\x00"

    def keep(mv, k):                 # the UDP flow, IPv4 without options (as sent)
        return k >= 42 and mv[12:14] == ipv4_udp and mv[23] == 17 and mv[36:38] == port
    _recv_loop(s, a, keep)


# --- the driver --------------------------------------------------------------------------------
def xdp_live_frames_refused() -> str | None:
    """Send one frame with the xdp sender on a throw-away pair: None when the kernel runs it,
    else its error (e.g. "BPF_PROG_RUN: Operation not permitted")."""
    exe = bc.compile_c(SENDERS["xdp"], include_dirs=(), libs=("-lbpf",))
    with Pair() as pair:
        out = subprocess.run(["ip", "netns", "exec", pair.tx, str(exe), pair.tx_if, "1",
                              pair.rx_mac, pair.tx_mac, pair.tx_ip, pair.rx_ip, str(PORT),
                              str(PAYLOAD + 42)], capture_output=True, text=True, timeout=60)
    if out.returncode == 0:
        return None
    return out.stderr.strip().removeprefix("xdp_blast: ") or f"exit status {out.returncode}"


def measure(pair: Pair, kind: str, sender: Path, args) -> dict:
    cmd = ["ip", "netns", "exec", pair.rx, sys.executable, str(Path(__file__).resolve()),
           "--role", kind, "--iface", pair.rx_if, "--expect", str(args.packets),
           "--timeout", str(args.timeout), "--mode", args.mode]
    rx = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=bc.child_env())
    try:
        line = rx.stdout.readline()
        if not line.startswith("ready"):
            rx.kill()
            raise bc.BenchError(f"{kind} receiver did not start: {line}{rx.stderr.read()}")
        mode = line[6:].strip()
        time.sleep(0.1)
        if args.sender == "xdp":
            argv = [sender, pair.tx_if, args.packets, pair.rx_mac, pair.tx_mac, pair.tx_ip,
                    pair.rx_ip, PORT, PAYLOAD + 42]
        else:
            argv = [sender, pair.rx_ip, PORT, args.packets, PAYLOAD, args.rate or 0]
        out = sh("ip", "netns", "exec", pair.tx, *argv,
                 timeout=args.timeout + 60).stdout.split()
        sent, elapsed = int(out[1]), int(out[3]) / 1e9
        res, err = rx.communicate(timeout=args.timeout + 60)
        if rx.returncode != 0:
            raise bc.BenchError(f"{kind} receiver failed: {err.strip()[-2000:]}")
        r = json.loads(res.strip().splitlines()[-1])
    finally:
        if rx.poll() is None:
            rx.send_signal(signal.SIGINT)
            try:
                rx.wait(timeout=10)
            except subprocess.TimeoutExpired:
                rx.kill()
    got = r["received"]
    rate = got / r["span_s"] if r["span_s"] > 0 else 0.0
    return {"sent": sent, "offered_pps": sent / elapsed if elapsed > 0 else 0.0,
            "received": got, "pps": rate, "loss": 1 - got / sent if sent else 0.0,
            **({"mode": mode} if mode else {}),
            **{k: v for k, v in r.items() if k not in ("received", "span_s")}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=300_000, help="datagrams per run")
    ap.add_argument("--sender", choices=("auto", *SENDERS), default="auto",
                    help="xdp: the kernel's XDP live-frames generator; udp: sendmmsg on a UDP "
                         "socket; auto (default): xdp where the kernel allows it, else udp")
    ap.add_argument("--rate", type=float, default=0,
                    help="offered packets/s for --sender udp (0: flat out)")
    ap.add_argument("--mode", choices=("native", "skb"), default="native",
                    help="XDP mode of the AF_XDP receiver (default native)")
    ap.add_argument("--timeout", type=float, default=60.0, help=argparse.SUPPRESS)
    ap.add_argument("--idle", type=float, default=0.5, help=argparse.SUPPRESS)
    ap.add_argument("--role", choices=("afxdp", "socket", "afpacket"), help=argparse.SUPPRESS)
    ap.add_argument("--iface", help=argparse.SUPPRESS)
    ap.add_argument("--expect", type=int, default=0, help=argparse.SUPPRESS)
    bc.add_common_args(ap, default_repeats=3)
    args = ap.parse_args(argv)
    if args.role:
        {"afxdp": role_afxdp, "socket": role_socket, "afpacket": role_afpacket}[args.role](args)
        return 0
    bc.set_quiet(args.json)
    if os.geteuid() != 0:
        print("bench_afxdp: needs root (namespaces, XDP)", file=sys.stderr)
        return 1
    if args.quick:
        args.packets = min(args.packets, 30_000)
    n_rep = bc.repeats(args)
    if args.sender == "auto" and args.rate:     # only the udp sender can be paced
        args.sender = "udp"
    if args.rate and args.sender != "udp":
        print("bench_afxdp: --rate paces the udp sender only (--sender udp)", file=sys.stderr)
        return 2
    if args.sender in ("xdp", "auto") and not shutil.which("ethtool"):
        if args.sender == "xdp":
            print("bench_afxdp: --sender xdp needs ethtool (Debian package ethtool)",
                  file=sys.stderr)
            return 1
        args.sender = "udp"
    note = None
    if args.sender in ("xdp", "auto"):
        refusal = xdp_live_frames_refused()
        if refusal and args.sender == "xdp":
            print(f"bench_afxdp: --sender xdp: this kernel refuses XDP live-frame test runs "
                  f"({refusal}); use --sender udp", file=sys.stderr)
            return 1
        if refusal:
            note = f"xdp sender refused by the kernel ({refusal}): udp sender used"
            bc.progress(note)
        args.sender = "udp" if refusal else "xdp"
    sender = bc.compile_c(SENDERS[args.sender], include_dirs=(),
                          libs=("-lbpf",) if args.sender == "xdp" else ())
    kinds = ("afxdp", "socket", "afpacket")
    with Pair(gro=args.sender == "xdp") as pair:
        bc.progress(f"veth {pair.rx_if} <- {pair.tx_if}: {args.packets:,} datagrams of "
                    f"{PAYLOAD + 42} B per run from the {args.sender} sender, "
                    f"{'flat out' if not args.rate else args.rate}")
        runs = bc.run_alternating({k: (lambda r, k=k: measure(pair, k, sender, args))
                                   for k in kinds}, n_rep)
    med = {k: {m: bc.summarize(r[m] for r in runs[k])["median"]
               for m in ("pps", "loss", "offered_pps")} for k in kinds}
    offered = bc.summarize(r["offered_pps"] for k in kinds for r in runs[k])["median"]
    out = {
        "offered_pps": offered,
        "afxdp_pps": med["afxdp"]["pps"], "afxdp_loss": med["afxdp"]["loss"],
        "socket_pps": med["socket"]["pps"], "socket_loss": med["socket"]["loss"],
        "afpacket_pps": med["afpacket"]["pps"], "afpacket_loss": med["afpacket"]["loss"],
        "ratio_vs_socket": (med["afxdp"]["pps"] / med["socket"]["pps"]
                            if med["socket"]["pps"] else None),
        "offered_pps_by_receiver": {k: med[k]["offered_pps"] for k in kinds},
        "packets": args.packets, "sender": args.sender, "sender_note": note,
        "rate": args.rate or None,
        "repeats": n_rep,
        "frame_bytes": PAYLOAD + 42, "afxdp_mode": runs["afxdp"][0].get("mode"),
        "runs": runs, "machine": bc.machine_info(),
    }

    def table(o):
        rows = [(k, o[f"{k}_pps"], o[f"{k}_loss"] * 100, o["offered_pps_by_receiver"][k])
                for k in kinds]
        return (bc.format_table(["receiver", "received pps", "loss %", "offered pps"], rows)
                + f"\nAF_XDP / socket: {o['ratio_vs_socket']:.2f}x  ({o['afxdp_mode']})")
    bc.emit(out, args.json, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
