"""The AF_XDP producer on a real veth pair, with traffic the kernel generates.

Each test owns a namespace and a veth pair (``HostPeer``: the producer's end ``hx<pid>n<k>h`` in
this process's namespace, the sender's end in namespace ``hx<pid>n<k>``), sends UDP datagrams,
pings and TCP connections from the peer namespace through ordinary kernel sockets, and checks:

* every frame the filter selects arrives in the ring exactly once, in order, byte for byte as
  the sender's kernel put it on the wire (a tcpdump capture on the sender's end is the oracle,
  and the UDP payloads are the ones the sender wrote);
* traffic the filter does not select still reaches the kernel stack (a UDP socket of this test
  receives it, ping answers, a TCP connection is accepted);
* the XDP mode and bind mode obtained are reported; the kernel's per-rule counters agree;
* filter changes at run time, ring overload policies, NIC drops in the ring's counters;
* lifecycle: everything released after an exception, a stale program of a SIGKILLed run
  removed and reported, and each setup error reads clearly.

Everything a test creates (namespace, veth, XDP program, rings) is removed in a ``finally``;
``sweep_stale`` removes what test processes that died left behind.  Root only (CI runs it as
root, where nothing may skip); libxdp, libbpf, clang and tcpdump come from .ci/run.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from shm import layout as L
from shm.ring import Ring

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]
_counter = itertools.count()
_LINK = re.compile(r"^hx(\d+)n\d+h$")
_NS = re.compile(r"^hx(\d+)n\d+$")
FRAMES = 4096          # UMEM frames per producer in these tests (8 MiB of huge pages)


def _need():
    if os.geteuid() != 0:
        pytest.skip("AF_XDP tests need root (namespaces, XDP programs, AF_XDP sockets)")
    for tool in ("ip", "tcpdump", "ping"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool} (see .ci/run)")
    try:
        from engine.producers import xsk_lib
        xsk_lib.load()
        xsk_lib.bpf_object_path()
    except Exception as e:               # MissingDependency names the Debian package
        pytest.skip(f"AF_XDP unavailable: {e}")


@pytest.fixture(autouse=True)
def _requirements():
    _need()


def sh(*argv, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    out = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                         timeout=timeout)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))}: rc {out.returncode}: "
                           f"{out.stderr.strip()[-2000:]}")
    return out


def sweep_stale() -> None:
    """Links and namespaces of test processes that no longer exist."""
    for line in sh("ip", "-o", "link", "show", check=False).stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
        m = _LINK.match(name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            sh("ip", "link", "del", name, check=False)
    for line in sh("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = _NS.match(name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            sh("ip", "netns", "del", name, check=False)


class HostPeer:
    """A veth pair: ``host`` in this namespace (the producer's side), ``peer`` in namespace
    ``ns`` (the sender's side), on a /30 of 198.18.0.0/15 and a /64 of fd00::/8 derived from
    the pid and a counter.  ``send`` runs a Python snippet in the peer namespace."""

    def __init__(self, queues: int = 1):
        pid, k = os.getpid(), next(_counter)
        self.queues = queues
        if k > 60:
            raise RuntimeError("too many pairs in one test process")
        self.ns = f"hx{pid}n{k}"
        self.host, self.peer = self.ns + "h", self.ns + "p"
        self.host_ip = f"198.18.{pid & 255}.{4 * k + 1}"
        self.peer_ip = f"198.18.{pid & 255}.{4 * k + 2}"
        self.host_ip6 = f"fd00:6872:{pid & 0xFFFF:x}:{k:x}::1"
        self.peer_ip6 = f"fd00:6872:{pid & 0xFFFF:x}:{k:x}::2"
        self._procs: list[subprocess.Popen] = []

    def __enter__(self):
        sweep_stale()
        try:
            sh("ip", "netns", "add", self.ns)
            nq = ["numtxqueues", self.queues, "numrxqueues", self.queues]
            sh("ip", "link", "add", self.host, *nq, "type", "veth", "peer", "name", self.peer,
               *nq, "netns", self.ns)
            sh("sysctl", "-qw", f"net.ipv6.conf.{self.host}.accept_dad=0")
            sh("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host)
            sh("ip", "-6", "addr", "add", f"{self.host_ip6}/64", "dev", self.host, "nodad")
            sh("ip", "link", "set", self.host, "up")
            self.exec("sysctl", "-qw", f"net.ipv6.conf.{self.peer}.accept_dad=0")
            sh("ip", "-n", self.ns, "addr", "add", f"{self.peer_ip}/30", "dev", self.peer)
            sh("ip", "-n", self.ns, "-6", "addr", "add", f"{self.peer_ip6}/64", "dev",
               self.peer, "nodad")
            sh("ip", "-n", self.ns, "link", "set", "lo", "up")
            sh("ip", "-n", self.ns, "link", "set", self.peer, "up")
            deadline = time.monotonic() + 10
            while "LOWER_UP" not in sh("ip", "-o", "link", "show", self.host).stdout:
                if time.monotonic() > deadline:
                    raise RuntimeError("veth pair did not come up")
                time.sleep(0.02)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        for p in self._procs:
            if p.poll() is None:
                p.kill()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        sh("ip", "netns", "del", self.ns, check=False)     # takes the peer, hence the pair
        sh("ip", "link", "del", self.host, check=False)

    def __exit__(self, *exc):
        self.close()

    def exec(self, *argv, check=True, timeout=30):
        return sh("ip", "netns", "exec", self.ns, *argv, check=check, timeout=timeout)

    def popen(self, *argv, **kw) -> subprocess.Popen:
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        p = subprocess.Popen(["ip", "netns", "exec", self.ns, *map(str, argv)], **kw)
        self._procs.append(p)
        return p

    def send(self, datagrams, family=socket.AF_INET) -> None:
        """Send [(port, payload bytes)] from the peer to the host, in order, through one
        ordinary UDP socket (the kernel builds the frames)."""
        dst = self.host_ip if family == socket.AF_INET else self.host_ip6
        spec = json.dumps([(p, b.hex()) for p, b in datagrams])
        code = ("import json, socket, sys\n"
                f"s = socket.socket({int(family)}, socket.SOCK_DGRAM)\n"
                "for port, data in json.loads(sys.stdin.read()):\n"
                f"    s.sendto(bytes.fromhex(data), ({dst!r}, port))\n")
        out = subprocess.run(["ip", "netns", "exec", self.ns, sys.executable, "-c", code],
                             input=spec, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr

    def ping(self, v6: bool = False, count: int = 2) -> None:
        """From the peer (resolves ARP / neighbours both ways); fails the test if no answer."""
        dst = self.host_ip6 if v6 else self.host_ip
        self.exec("ping", "-6" if v6 else "-4", "-c", count, "-i", "0.2", "-W", "2", dst)

    def xdp_prog_id(self) -> int | None:
        """The id of the XDP program attached to the host end (None: none)."""
        info = json.loads(sh("ip", "-j", "-d", "link", "show", self.host).stdout)[0]
        x = info.get("xdp")
        if not x:
            return None
        prog = x.get("prog") or (x.get("attached") or [{}])[0].get("prog") or {}
        return prog.get("id") or x.get("id") or -1


def start_tcpdump(hp: HostPeer, path: Path, expr: str) -> subprocess.Popen:
    """tcpdump on the sender's end, egress only: the frames exactly as the kernel sent them.
    Immediate mode (else libpcap reads the kernel's capture ring a block at a time, and frames
    in the block still open at SIGINT are counted as received but never written) and a 32 MiB
    buffer (a burst of 400 frames overran the default one)."""
    p = hp.popen("tcpdump", "-i", hp.peer, "-Q", "out", "--immediate-mode", "-B", "32768",
                 "-U", "-n", "-w", str(path), expr, text=True)
    deadline = time.monotonic() + 10
    line = ""
    while "listening on" not in line:
        assert time.monotonic() < deadline and p.poll() is None, "tcpdump did not start"
        line = p.stderr.readline()
    return p


def stop_tcpdump(p: subprocess.Popen) -> None:
    time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    p.wait(timeout=10)
    stats = p.stderr.read()
    assert re.search(r"^0 packets dropped by kernel$", stats, re.M), \
        f"the tcpdump oracle lost frames: {stats}"


def read_pcap(path: Path) -> list[bytes]:
    d = path.read_bytes()
    magic = struct.unpack_from("<I", d)[0]
    end = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    out, off = [], 24
    while off + 16 <= len(d):
        _, _, incl, orig = struct.unpack_from(end + "IIII", d, off)
        assert incl == orig, "tcpdump cut a frame"
        out.append(d[off + 16:off + 16 + incl])
        off += 16 + incl
    return out


def ring_frames(ring: Ring, first: int, count: int) -> list[tuple[bytes, int, dict]]:
    """(frame bytes, wire_len, header fields) of slots first .. first+count-1."""
    out = []
    for s in range(first, first + count):
        rec = ring.slots[s & (ring.capacity - 1)]
        assert int(rec["seq"]) == s, f"slot {s} holds seq {int(rec['seq'])}"
        cap = int(rec["cap_len"])
        out.append((bytes(rec["payload"][:cap]), int(rec["wire_len"]),
                    {"ts": int(rec["ts_ns"]), "port": int(rec["port"]),
                     "queue": int(rec["queue"]), "flags": int(rec["flags"])}))
    return out


def udp_payload(frame: bytes) -> tuple[int, bytes]:
    """(destination port, payload) of an Ethernet/IPv4-or-IPv6/UDP frame."""
    et = struct.unpack_from("!H", frame, 12)[0]
    if et == 0x0800:
        ihl = (frame[14] & 15) * 4
        l4 = 14 + ihl
    else:
        assert et == 0x86DD
        l4 = 14 + 40
    dport, ulen = struct.unpack_from("!HxxH", frame, l4 + 2)[0], \
        struct.unpack_from("!H", frame, l4 + 4)[0]
    return dport, frame[l4 + 8:l4 + ulen]


def host_udp_socket(hp: HostPeer, port: int, v6: bool = False) -> socket.socket:
    s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    s.bind((hp.host_ip6 if v6 else hp.host_ip, port))
    s.settimeout(5)
    return s


def drain(s: socket.socket, n: int) -> list[bytes]:
    got = []
    for _ in range(n):
        got.append(s.recv(65536))
    return got


def payloads(tag: bytes, n: int, sizes=(18, 1400)) -> list[bytes]:
    """n distinct payloads of varied sizes, starting with tag and a sequence number."""
    rng = np.random.default_rng(len(tag) * 7919 + n)
    out = []
    for i in range(n):
        size = int(rng.integers(sizes[0], sizes[1] + 1))
        head = tag + b"%06d" % i
        body = bytes(rng.integers(0, 256, size=max(0, size - len(head)), dtype=np.uint8))
        out.append((head + body)[:max(size, len(head))])
    return out


def producer(ring, hp: HostPeer, **kw):
    from engine.producers.afxdp import AfXdpProducer
    kw.setdefault("frames", FRAMES)
    return AfXdpProducer(ring, hp.host, **kw)


# --- receive -------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["native", "skb"])
def test_selected_frames_arrive_once_in_order_byte_identical(mode, ring_name, tmp_path):
    sel, other = 30001, 30002
    n_sel, n_other = 300, 100
    with HostPeer() as hp, Ring.create(ring_name, slots=4096) as ring:
        sock = host_udp_socket(hp, other)
        listener = socket.create_server((hp.host_ip, 30003))
        listener.settimeout(5)
        p = producer(ring, hp, filter=f"udp and dst port {sel}", xdp_mode=mode)
        try:
            d = p.describe()
            assert d["xdp_mode"] == mode
            assert d["bind"] == "copy"                   # veth: zero-copy is refused
            assert any("zero-copy bind failed" in n for n in d["notes"])
            assert d["pushdown"]["exact"] and not d["user_space_check"]
            assert f"xdp {mode} mode, copy bind" in p.mode_line()
            assert hp.xdp_prog_id() == d["program_id"]
            p.warmup()
            cap = tmp_path / "sent.pcap"
            dump = start_tcpdump(hp, cap, "udp")
            hp.ping()                                    # ARP both ways, ICMP to the stack
            sent_sel = payloads(b"SEL", n_sel)
            sent_other = payloads(b"OTH", n_other, sizes=(10, 200))
            mixed = []
            for i in range(n_sel):                       # interleaved: 3 selected, 1 other
                mixed.append((sel, sent_sel[i]))
                if i % 3 == 2 and i // 3 < n_other:
                    mixed.append((other, sent_other[i // 3]))
            mixed += [(other, b) for b in sent_other[len(range(2, n_sel, 3)):]]
            hp.send(mixed)
            # a TCP connection and ping while the program is attached: the stack still works
            hp.exec(sys.executable, "-c", "import socket; s = socket.create_connection("
                    f"({hp.host_ip!r}, 30003), timeout=5); s.sendall(b'hello'); s.close()")
            conn, _ = listener.accept()
            assert conn.recv(5) == b"hello"
            conn.close()
            hp.ping()
            rep = p.run(count=n_sel, duration=20)
            assert rep["stopped_by"] == "count", rep
            rep2 = p.run(duration=0.3)                   # nothing more may come
            stop_tcpdump(dump)
            assert rep2["accepted"] == 0, rep2
            assert rep["published"] == n_sel and rep["dropped"] == 0
            assert rep["user_rejected"] == 0 and rep["nic_drops"] == 0
            assert sorted(drain(sock, n_other)) == sorted(sent_other)   # to the stack
            frames = ring_frames(ring, 0, n_sel)
            # exactly once, in order, the sender's payloads
            assert [udp_payload(f)[1] for f, _, _ in frames] == sent_sel
            assert all(udp_payload(f)[0] == sel for f, _, _ in frames)
            # byte-identical with the frames the sender's kernel put on the wire
            on_wire = [f for f in read_pcap(cap) if udp_payload(f)[0] == sel]
            assert len(on_wire) == n_sel
            assert [f for f, _, _ in frames] == on_wire
            assert all(w == len(f) for f, w, _ in frames)
            hdr = frames[0][2]
            assert hdr["queue"] == 0 and hdr["port"] == p.ifindex & 0xFFFF
            assert abs(hdr["ts"] - time.time_ns()) < 60e9
            kc = p.kernel_counters()
            assert kc["rules"][0][1] == n_sel and kc["redirected"] == n_sel
            assert kc["passed"] >= n_other + 4           # the others, ARP, ICMP, TCP
            info = ring.info()["producer"]
            assert info["published"] == n_sel and info["nic_drops"] == 0
        finally:
            p.close()
            sock.close()
            listener.close()
        assert hp.xdp_prog_id() is None                  # detached on close


def test_filter_split_user_space_rechecks_and_ipv6(ring_name):
    """A filter the kernel cannot evaluate exactly: the kernel redirects its UDP-port half,
    user space checks the payload; IPv6 rules in the kernel's LPM tries and port maps."""
    p4, p6, other6 = 31001, 31002, 31003
    flt = (f'(udp dst port {p4} and payload contains "KEEP") or '
           f'(ip6 and src net {{net}} and udp dst port {p6})')
    with HostPeer() as hp, Ring.create(ring_name, slots=4096) as ring:
        net6 = hp.peer_ip6.rsplit("::", 1)[0] + "::/64"
        s6 = host_udp_socket(hp, other6, v6=True)
        with producer(ring, hp, filter=flt.format(net=net6)) as p:
            pd = p.describe()["pushdown"]
            assert not pd["exact"] and p.describe()["user_space_check"]
            assert any("payload contains" in u for u in pd["user_space"])
            assert len(pd["rules"]) == 2 and any("ip6" in r and "src net" in r
                                                 for r in pd["rules"])
            assert "user space re-checks" in p.mode_line()
            hp.ping()
            hp.ping(v6=True)
            v4 = [(p4, (b"KEEP" if i % 2 else b"DROP") + b"%04d" % i) for i in range(100)]
            hp.send(v4)
            v6 = [(p6, b"six%04d" % i) for i in range(50)] + \
                 [(other6, b"stack%04d" % i) for i in range(20)]
            hp.send(v6, family=socket.AF_INET6)
            rep = p.run(count=100, duration=20)
            assert rep["published"] == 100 and rep["user_rejected"] == 50, rep
            got = [udp_payload(f)[1] for f, _, _ in ring_frames(ring, 0, 100)]
            assert got == [b for _, b in v4 if b.startswith(b"KEEP")] + [b for _, b in v6[:50]]
            assert sorted(drain(s6, 20)) == sorted(b for _, b in v6[50:])
            kc = p.kernel_counters()
            assert [h for _, h in kc["rules"]] == [100, 50]
        s6.close()


def test_filter_change_at_run_time_keeps_the_socket(ring_name):
    a, b = 32001, 32002
    with HostPeer() as hp, Ring.create(ring_name, slots=4096) as ring:
        sa, sb = host_udp_socket(hp, a), host_udp_socket(hp, b)
        with producer(ring, hp, filter=f"udp dst port {a}") as p:
            fd, v0 = p.fd, p.maps.version
            stop = threading.Event()
            reps = []
            t = threading.Thread(target=lambda: reps.append(p.run(stop=stop.is_set)))
            t.start()
            try:
                hp.ping()
                hp.send([(a, b"a1-%d" % i) for i in range(50)] +
                        [(b, b"b1-%d" % i) for i in range(50)])
                assert sorted(drain(sb, 50)) == sorted(b"b1-%d" % i for i in range(50))
                rep = p.set_filter(f"udp dst port {b}")
                assert rep["exact"] and "dst port 32002" in rep["rules"][0]
                time.sleep(0.05)                      # the loop picks up the new user side
                hp.send([(a, b"a2-%d" % i) for i in range(50)] +
                        [(b, b"b2-%d" % i) for i in range(50)])
                assert sorted(drain(sa, 50)) == sorted(b"a2-%d" % i for i in range(50))
                deadline = time.monotonic() + 10
                while int(ring.ctrl[L.PS_PUBLISHED]) < 100 and time.monotonic() < deadline:
                    time.sleep(0.01)
            finally:
                stop.set()
                t.join(timeout=10)
            assert p.fd == fd and p.maps.version == v0 + 1       # same socket, one flip
            got = [udp_payload(f)[1] for f, _, _ in ring_frames(ring, 0, 100)]
            assert got == [b"a1-%d" % i for i in range(50)] + [b"b2-%d" % i for i in range(50)]
            assert reps and reps[0]["published"] == 100 and reps[0]["user_rejected"] == 0
            assert p.kernel_counters()["rules"][0][1] == 50      # the new rule's own count
        sa.close()
        sb.close()


# --- overload: the ring's policies and drops at the socket -------------------------------------
def test_ring_full_policies_and_nic_drops(ring_name):
    port = 33001
    with HostPeer() as hp:
        hp.ping()
        # lossless + drop, a consumer that never reads: 16 published, the rest counted
        with Ring.create(ring_name + ".d", slots=16, full_policy="drop",
                         consumer_timeout=60) as ring, ring.consumer():
            with producer(ring, hp, filter=f"udp dst port {port}") as p:
                hp.send([(port, b"d%d" % i) for i in range(100)])
                rep = p.run(count=100, duration=20)
                assert (rep["published"], rep["dropped"]) == (16, 84), rep
                assert ring.info()["producer"]["dropped_full"] == 84
        # lossy: never waits, never drops
        with Ring.create(ring_name + ".l", slots=16, mode="lossy") as ring, ring.consumer():
            with producer(ring, hp, filter=f"udp dst port {port}") as p:
                hp.send([(port, b"l%d" % i) for i in range(100)])
                rep = p.run(count=100, duration=20)
                assert (rep["published"], rep["dropped"]) == (100, 0), rep
                assert [udp_payload(f)[1] for f, _, _ in ring_frames(ring, 84, 16)] == \
                    [b"l%d" % i for i in range(84, 100)]
        # the socket's own drops: a 64-frame UMEM not drained while 300 frames arrive
        with Ring.create(ring_name + ".n", slots=1024) as ring:
            with producer(ring, hp, filter=f"udp dst port {port}", frames=64) as p:
                hp.send([(port, b"n%d" % i) for i in range(300)])
                rep = p.run(duration=0.5)
                assert rep["published"] == 64, rep
                assert rep["nic_drops"] == 300 - 64, rep
                assert rep["xdp_statistics"]["rx_fill_ring_empty_descs"] >= 300 - 64 - 1
                assert ring.info()["producer"]["nic_drops"] == 300 - 64
                stat = subprocess.run([sys.executable, "-m", "engine.cli", "stat",
                                       ring_name + ".n", "--json"], cwd=ROOT,
                                      capture_output=True, text=True, timeout=60)
                assert stat.returncode == 0, stat.stderr
                assert json.loads(stat.stdout)["producer"]["nic_drops"] == 300 - 64
        # frames longer than a slot: cut to it, flagged, wire length kept
        with Ring.create(ring_name + ".t", slots=64, slot_size=64) as ring:
            with producer(ring, hp, filter=f"udp dst port {port}") as p:
                big = [(port, bytes([i]) * 300) for i in range(10)]
                hp.send(big)
                rep = p.run(count=10, duration=20)
                assert rep["published"] == 10 and rep["truncated"] == 10, rep
                for f, wire, hdr in ring_frames(ring, 0, 10):
                    assert len(f) == 64 and wire == 14 + 20 + 8 + 300
                    assert hdr["flags"] & L.SLOT_FLAG_TRUNCATED
                    assert f[36:38] == struct.pack("!H", port)
        for suffix in (".d", ".l", ".n", ".t"):
            Ring.remove(ring_name + suffix)


def test_lossless_wait_loses_nothing(ring_name):
    """lossless + wait with a slow consumer: the producer waits, nothing is dropped."""
    port = 33501
    with HostPeer() as hp, Ring.create(ring_name, slots=32, full_policy="wait") as ring:
        hp.ping()
        got = []
        with ring.consumer() as c, producer(ring, hp, filter=f"udp dst port {port}") as p:
            hp.send([(port, b"w%d" % i) for i in range(400)])
            reps = []
            t = threading.Thread(target=lambda: reps.append(p.run(count=400, duration=30)))
            t.start()
            deadline = time.monotonic() + 30
            while len(got) < 400 and time.monotonic() < deadline:
                for r in c.poll(8):
                    got.append(bytes(r["payload"][:int(r["cap_len"])]))
                c.release()
                time.sleep(0.001)                     # slower than the producer
            t.join(timeout=30)
        assert [udp_payload(f)[1] for f in got] == [b"w%d" % i for i in range(400)]
        assert reps[0]["published"] == 400 and reps[0]["dropped"] == 0
        assert reps[0]["full_spins"] > 0 and reps[0]["nic_drops"] == 0


# --- lifecycle ---------------------------------------------------------------------------------
def test_exception_releases_everything(ring_name):
    from engine.producers import afxdp
    with HostPeer() as hp, Ring.create(ring_name, slots=1024) as ring:
        with pytest.raises(RuntimeError, match="boom"):
            with producer(ring, hp) as p:
                owner = p.locks.owner_path
                assert owner.exists() and hp.xdp_prog_id() == p.prog_id
                assert int(ring.header["producer_pid"]) == os.getpid()
                raise RuntimeError("boom")
        assert hp.xdp_prog_id() is None
        assert not owner.exists()
        assert int(ring.header["producer_pid"]) == 0
        # and the queue can be taken again at once (the EBUSY window is retried)
        with producer(ring, hp) as p:
            assert p.stale_removed is None
        assert hp.xdp_prog_id() is None
        assert afxdp.LOCK_DIR.exists()


def test_stale_program_after_kill9_is_removed_and_reported(ring_name, caplog):
    port = 34001
    with HostPeer() as hp, Ring.create(ring_name, slots=1024) as ring:
        proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "afxdp", hp.host, "--ring",
                                 ring_name, "--filter", f"udp dst port {port}", "--frames",
                                 "1024"], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            line = proc.stderr.readline()
            assert "af_xdp" in line and "mode" in line, line + proc.stderr.read()
            old = hp.xdp_prog_id()
            assert old is not None
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert hp.xdp_prog_id() == old                   # the kernel keeps it attached
        caplog.set_level("WARNING", logger="hugering.afxdp")
        with producer(ring, hp, filter=f"udp dst port {port}") as p:
            assert p.stale_removed is not None
            assert p.stale_removed["program_id"] == old
            assert p.stale_removed["left_by"][0]["pid"] == proc.pid
            msg = [r.getMessage() for r in caplog.records if "stale" in r.getMessage()]
            assert msg and f"left by pid {proc.pid}" in msg[0] and "no longer running" in msg[0]
            assert hp.xdp_prog_id() == p.prog_id != old
            hp.ping()
            hp.send([(port, b"after%d" % i) for i in range(20)])
            rep = p.run(count=20, duration=20)
            assert rep["published"] == 20
        assert hp.xdp_prog_id() is None


def test_cli_reports_mode_and_counts_and_reloads_the_filter_on_sighup(ring_name, tmp_path):
    a, b = 35001, 35002
    with HostPeer() as hp, Ring.create(ring_name, slots=1024) as ring:
        hp.ping()
        sa = host_udp_socket(hp, a)
        rules = tmp_path / "filter.txt"
        rules.write_text(f"# the port the test sends to first\nudp dst port {a}\n")
        proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "afxdp", hp.host, "--ring",
                                 ring_name, "--filter-file", str(rules), "--mode", "skb",
                                 "--frames", "1024", "--count", "40", "--duration", "30",
                                 "--json"], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            line = proc.stderr.readline()
            assert "xdp skb mode, copy bind" in line and "1 kernel rule, exact" in line, line
            hp.send([(a, b"a%d" % i) for i in range(20)])
            deadline = time.monotonic() + 20
            while int(ring.ctrl[L.PS_PUBLISHED]) < 20 and time.monotonic() < deadline:
                time.sleep(0.02)
            rules.write_text(f"udp dst port {b}\n")
            proc.send_signal(signal.SIGHUP)
            line = ""
            while "filter now" not in line and proc.poll() is None:
                line = proc.stderr.readline()
            assert f"filter now 'udp dst port {b}': 1 kernel rule" in line, line
            hp.send([(a, b"a2-%d" % i) for i in range(20)] + [(b, b"b%d" % i) for i in range(20)])
            assert sorted(drain(sa, 20)) == sorted(b"a2-%d" % i for i in range(20))
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            sa.close()
        assert proc.returncode == 0, err
        rep = json.loads(out)
        assert rep["published"] == 40 and rep["stopped_by"] == "count"
        assert rep["setup"]["xdp_mode"] == "skb" and rep["setup"]["bind"] == "copy"
        assert rep["kernel_counters"]["rules"][0][1] == 20       # the new generation's rule
        got = [udp_payload(f)[1] for f, _, _ in ring_frames(ring, 0, 40)]
        assert got == [b"a%d" % i for i in range(20)] + [b"b%d" % i for i in range(20)]
        assert hp.xdp_prog_id() is None


# --- setup errors --------------------------------------------------------------------------------
_SNIPPET = """
import json, sys
sys.path.insert(0, {root!r})
from shm.ring import Ring
from engine.producers.afxdp import AfXdpProducer, AfXdpError
ring = Ring.open({ring!r})
try:
    AfXdpProducer(ring, {iface!r}, xdp_mode={mode!r}, frames={frames}).close()
    print(json.dumps({{"kind": None, "msg": "no error"}}))
except AfXdpError as e:
    print(json.dumps({{"kind": e.kind, "msg": str(e)}}))
"""


def _error_in_subprocess(prefix: list, ring: str, iface: str, mode="auto",
                         frames=FRAMES) -> dict:
    code = _SNIPPET.format(root=str(ROOT), ring=ring, iface=iface, mode=mode, frames=frames)
    out = subprocess.run(prefix + [sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_errors_read_clearly(ring_name):
    from engine.producers.afxdp import AfXdpError
    with HostPeer() as hp, Ring.create(ring_name, slots=1024) as ring:
        # interface missing
        from engine.producers.afxdp import AfXdpProducer
        with pytest.raises(AfXdpError) as e:
            AfXdpProducer(ring, "hxnosuch0")
        assert e.value.kind == "interface"
        assert "no network interface 'hxnosuch0'" in str(e.value) and hp.host in str(e.value)
        # queue out of range (a fresh veth lists as many queues as cpus; 1000 is beyond any)
        with pytest.raises(AfXdpError) as e:
            producer(ring, hp, queue=1000)
        assert e.value.kind == "queue" and "queue 1000 is out of range" in str(e.value)
        assert "ethtool -l" in str(e.value)
        # XDP not supported: native mode on a loopback device (the peer namespace's own lo)
        r = _error_in_subprocess(["ip", "netns", "exec", hp.ns], ring_name, "lo", "native")
        assert r["kind"] == "unsupported", r
        assert "XDP is not supported in native mode on lo" in r["msg"]
        assert "--mode skb" in r["msg"]
        # not root: this uid without any capability
        r = _error_in_subprocess(["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--"],
                                 ring_name, hp.host)
        assert r["kind"] == "permission", r
        assert "AF_XDP needs root" in r["msg"] and "CAP_NET_ADMIN" in r["msg"]
        # memlock: without CAP_IPC_LOCK and with a 1 MiB RLIMIT_MEMLOCK
        r = _error_in_subprocess(["prlimit", "--memlock=1048576:1048576", "setpriv",
                                  "--bounding-set=-ipc_lock", "--inh-caps=-ipc_lock", "--"],
                                 ring_name, hp.host)
        assert r["kind"] == "memlock", r
        assert "memlock limit too low: RLIMIT_MEMLOCK is 1 MiB (ulimit -l 1024)" in r["msg"]
        assert "ulimit -l unlimited" in r["msg"] and "8 MiB" in r["msg"]
        # nothing was left attached by any of them
        assert hp.xdp_prog_id() is None
        assert int(ring.header["producer_pid"]) == 0


# --- the kernel half of a filter against the user-space matcher ----------------------------------
_V4 = [0x0A000001, 0x0A000002, 0x0A010203, 0x0A01FF01, 0xC0A80001, 0x0A020001]   # 10.0.0.1 ...
_V6 = [bytes.fromhex("fd00" + "00" * 13 + "01"), bytes.fromhex("fd00" + "00" * 13 + "02"),
       bytes.fromhex("fd00000100" + "00" * 10 + "07"), bytes.fromhex("20010db8" + "00" * 11 + "01")]
_PORTS = [53, 80, 1000, 1234, 1500, 2000, 30001, 65535]


def _frames(n: int, seed: int = 5) -> list[bytes]:
    """Well-formed frames of every kind the kernel program tells apart: IPv4 (options,
    fragments) and IPv6 (fragment header) carrying UDP/TCP/SCTP/ICMP, ARP, RARP, a VLAN tag,
    another ethertype; addresses and ports drawn from small pools so that filters hit."""
    rng = np.random.default_rng(seed)

    def pick(seq):
        return seq[int(rng.integers(len(seq)))]
    eth = bytes.fromhex("020000000002020000000001")
    out = []
    for _ in range(n):
        kind = pick(["v4", "v4", "v4", "v6", "v6", "arp", "rarp", "vlan", "other"])
        proto = pick([17, 17, 6, 6, 132, 1, 58, 47])
        l4 = struct.pack("!HH", pick(_PORTS), pick(_PORTS)) + bytes(rng.integers(
            0, 256, 16, dtype=np.uint8)) + b"ABCD" * int(
            rng.integers(0, 30))
        if kind in ("v4", "vlan"):
            opts = b"\x01\x01\x01\x00" if rng.random() < 0.2 else b""
            frag = pick([0, 0, 0, 0x2000, 0x0010])           # MF first fragment, later fragment
            ip = struct.pack("!BBHHHBBHII", 0x40 | (5 + len(opts) // 4), 0, 20 + len(opts) +
                             len(l4), 1, frag, 64, proto, 0, pick(_V4), pick(_V4)) + opts
            body = b"\x08\x00" + ip + l4
            if kind == "vlan":
                body = b"\x81\x00" + struct.pack("!H", pick([10, 20])) + body
            out.append(eth + body)
        elif kind == "v6":
            nh, ext = proto, b""
            if rng.random() < 0.2:                              # a fragment header first
                nh, ext = 44, struct.pack("!BBHI", proto, 0, pick([0, 8]), 7)
            ip6 = struct.pack("!IHBB", 0x60000000, len(ext) + len(l4), nh, 64) + \
                pick(_V6) + pick(_V6)
            out.append(eth + b"\x86\xdd" + ip6 + ext + l4)
        elif kind in ("arp", "rarp"):
            arp = struct.pack("!HHBBH6sI6sI", 1, 0x0800, 6, 4, pick([1, 2]), eth[6:12],
                              pick(_V4), eth[:6], pick(_V4))
            out.append(eth + (b"\x08\x06" if kind == "arp" else b"\x80\x35") + arp + bytes(18))
        else:
            out.append(eth + b"\x88\xcc" + bytes(40))
    return out


EXACT_FILTERS = [
    "udp", "tcp port 80", "udp dst port 53 or tcp src port 1000", "portrange 1000-2000",
    "src portrange 1000-1500 and dst port 53", "sctp and port 30001", "host 10.0.0.1",
    "ip host 10.0.0.1", "arp host 10.0.0.2", "src net 10.0.0.0/8 and dst net 10.1.0.0/16",
    "net 10.0.0.0/8 and net 10.1.0.0/16", "ip6 and net fd00::/16", "src host fd00::1 and udp",
    "dst net fd00:0:100::/48 or src host 2001:db8::1", "icmp or icmp6", "arp", "rarp",
    "proto 132", "ip6 proto 17", "ip proto 47 or ip6 proto 47", "host 10.0.0.1 and host 10.0.0.2",
    "port 53 and port 1000", "udp and tcp", "ip or ip6",
    "(udp or tcp) and (port 53 or port 80) and net 10.0.0.0/8",
    "src host 10.0.0.1 and dst net 10.0.0.0/8 and udp dst portrange 50-1500",
]
INEXACT_FILTERS = ["ip and not udp", "tcp[13] & 2 != 0", "vlan and udp",
                   'udp and payload contains "ABCDABCD"', "greater 100 and tcp",
                   "ether proto 0x88cc"]


def test_kernel_half_of_each_filter_agrees_with_the_matcher():
    """BPF_PROG_TEST_RUN of the program with each filter's rules, frame by frame, against
    parsers.filters (tcpdump's semantics): equal where the pushdown says exact, a superset
    where user space re-checks."""
    from engine.producers.afxdp import KernelFilter
    from parsers.pcap_filter import compile_pcap_filter
    frames = _frames(1500)
    with KernelFilter() as kf:
        assert all(kf.selects(f) for f in frames[:50])      # no filter: every frame
        for expr in EXACT_FILTERS + INEXACT_FILTERS:
            flt = compile_pcap_filter(expr)
            rep = kf.set_filter(flt)
            assert rep["exact"] == (expr in EXACT_FILTERS), (expr, rep)
            want = [flt.match_frame(f) for f in frames]
            got = [kf.selects(f) for f in frames]
            if rep["exact"]:
                bad = [i for i in range(len(frames)) if want[i] != got[i]]
                assert not bad, (expr, rep["rules"], frames[bad[0]].hex(), want[bad[0]])
            else:
                assert all(g for w, g in zip(want, got) if w), (expr, rep)
                assert sum(got) < len(frames) or expr == "vlan and udp" \
                    or expr.startswith("ip and not")
            assert any(want) or expr in ("udp and tcp",), expr     # the frames exercise it


def test_yaml_af_xdp_producer_in_engine_child(ring_name, tmp_path):
    """``kind: af_xdp`` in the YAML configuration, run by engine/child.py as hugering run does:
    it says what it obtained, moves traffic into the ring, stops cleanly on SIGTERM."""
    with HostPeer() as hp, Ring.create(ring_name, slots=1024) as ring:
        hp.ping()                      # no filter: every frame goes to the ring, ARP included
        cfg = tmp_path / "afxdp.yaml"
        cfg.write_text(f"hugering:\n  rings:\n    - {{name: {ring_name}, slots: 1024}}\n"
                       f"  producers:\n    - {{kind: af_xdp, ring: {ring_name}, name: nic, "
                       f"options: {{interface: {hp.host}, xdp_mode: skb, bind: copy}}}}\n")
        proc = subprocess.Popen([sys.executable, "-m", "engine.child", "producer", str(cfg),
                                 "nic", "0"], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            line = proc.stderr.readline()
            assert line.startswith("producer nic: af_xdp") and "xdp skb mode" in line, \
                line + proc.stderr.read()
            sent = [(36001, b"yaml%d" % i) for i in range(30)]
            hp.send(sent)
            deadline = time.monotonic() + 20
            while int(ring.ctrl[L.PS_PUBLISHED]) < 30 and time.monotonic() < deadline:
                time.sleep(0.02)
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, err
        rep = json.loads(out.strip().splitlines()[-1])
        assert rep["kind"] == "producer" and rep["setup"]["xdp_mode"] == "skb"
        n = int(ring.ctrl[L.PS_PUBLISHED])
        assert rep["published"] == n >= 30
        got = [udp_payload(f)[1] for f, _, _ in ring_frames(ring, 0, n)
               if f[12:14] == b"\x08\x00" and f[23] == 17]
        assert got == [b for _, b in sent]
        assert hp.xdp_prog_id() is None


def test_yaml_af_xdp_filter(ring_name, tmp_path):
    """``options: {filter: ...}`` in the YAML: only the selected frames reach the ring (the
    rest stays with the kernel); a bad expression fails at load, naming the key."""
    from engine import config as C
    with HostPeer() as hp, Ring.create(ring_name, slots=1024) as ring:
        cfg = tmp_path / "afxdp.yaml"
        cfg.write_text(f"hugering:\n  rings:\n    - {{name: {ring_name}, slots: 1024}}\n"
                       f"  producers:\n    - {{kind: af_xdp, ring: {ring_name}, name: nic, "
                       f"options: {{interface: {hp.host}, xdp_mode: skb, "
                       f"filter: 'udp and dst port 36002'}}}}\n")
        proc = subprocess.Popen([sys.executable, "-m", "engine.child", "producer", str(cfg),
                                 "nic", "0"], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            line = proc.stderr.readline()
            assert line.startswith("producer nic: af_xdp"), line + proc.stderr.read()
            sent = [(36001 + i % 2, b"f%d" % i) for i in range(40)]
            hp.send(sent)
            deadline = time.monotonic() + 20
            while int(ring.ctrl[L.PS_PUBLISHED]) < 20 and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.2)
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, err
        n = int(ring.ctrl[L.PS_PUBLISHED])
        got = [udp_payload(f)[1] for f, _, _ in ring_frames(ring, 0, n)]
        assert got == [b for port, b in sent if port == 36002]
    cfg.write_text(cfg.read_text().replace("dst port 36002", "dst port"))
    with pytest.raises(C.ConfigError) as e:
        C.load(cfg)
    assert e.value.path == "hugering.producers[0].options.filter"


# --- transmit ----------------------------------------------------------------------------------
_RECEIVER = """
import json, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
s.bind((sys.argv[1], int(sys.argv[2])))
s.settimeout(10)
print("ready", flush=True)
got = []
try:
    while len(got) < int(sys.argv[3]):
        got.append(s.recv(65536).hex())
except socket.timeout:
    pass
print(json.dumps(got), flush=True)
"""


def test_tx_ring_frames_arrive_at_the_peer_byte_identical_and_counted(ring_name):
    """Frames written to a TX hugering ring leave through the socket's TX ring and arrive at a
    UDP socket in the peer namespace, byte for byte, counted; RX keeps working meanwhile."""
    from engine.producers.afxdp import ST_TX_DONE
    from engine.producers.synthetic import build_frame
    port, n = 37001, 500
    with HostPeer() as hp, Ring.create(ring_name, slots=1024) as ring, \
            Ring.create(ring_name + ".tx", slots=256, full_policy="wait") as txr:
        hp.ping()
        host_mac = bytes.fromhex(Path(f"/sys/class/net/{hp.host}/address").read_text()
                                 .strip().replace(":", ""))
        peer_mac = bytes.fromhex(hp.exec("cat", f"/sys/class/net/{hp.peer}/address").stdout
                                 .strip().replace(":", ""))
        ip = [int.from_bytes(socket.inet_aton(a), "big") for a in (hp.host_ip, hp.peer_ip)]
        frames = [build_frame(64 + (i * 37) % 1300, ip[0], ip[1], 40000 + i % 7, port, 77, i,
                              src_mac=host_mac, dst_mac=peer_mac) for i in range(n)]
        recv = hp.popen(sys.executable, "-c", _RECEIVER, hp.peer_ip, port, n, text=True)
        assert recv.stdout.readline().strip() == "ready"
        with producer(ring, hp, filter="udp dst port 37002", tx_ring=txr, tx_frames=128) as p:
            assert "TX from ring" in p.mode_line()
            stop = threading.Event()
            reps = []
            t = threading.Thread(target=lambda: reps.append(p.run(stop=stop.is_set)))
            t.start()
            try:
                with txr.producer() as tp:          # 500 frames through a 256-slot ring
                    assert tp.publish(frames, timeout=20) == n
                hp.send([(37002, b"rx%d" % i) for i in range(10)])    # RX at the same time
                out, err = recv.communicate(timeout=30)
            finally:
                deadline = time.monotonic() + 10
                while int(p.state[ST_TX_DONE]) < n and time.monotonic() < deadline:
                    time.sleep(0.01)
                stop.set()
                t.join(timeout=10)
        got = [bytes.fromhex(h) for h in json.loads(out.strip().splitlines()[-1])]
        assert got == [udp_payload(f)[1] for f in frames]        # all, in order, intact
        rep = reps[0]
        assert rep["tx_queued"] == n and rep["tx_sent"] == n, rep
        assert rep["tx_too_long"] == 0 and rep["tx_errors"] == 0 and rep["tx_lost"] == 0
        assert rep["published"] == 10                             # RX alongside
        assert p.tx_unconfirmed == 0
        Ring.remove(ring_name + ".tx")


# --- several RX queues -------------------------------------------------------------------------
_FLOWS = """
import socket, sys
host, port, flows, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
socks = []
for f in range(flows):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("", 20000 + f))
    socks.append(s)
for i in range(per):
    for f, s in enumerate(socks):
        s.sendto(b"f%02d-%03d" % (f, i), (host, port))
"""


def test_two_queues_share_one_program_and_split_the_flows(ring_name):
    """Native XDP on a two-queue veth: the sender's flows spread over both RX queues; one
    socket and ring per queue, one program for the interface.  Every frame arrives exactly
    once, each flow whole and in order in one ring, stamped with its queue."""
    from engine.producers.afxdp import AfXdpQueues
    port, flows, per = 38001, 40, 5
    with HostPeer(queues=2) as hp, Ring.create(ring_name + ".q0", slots=4096) as r0, \
            Ring.create(ring_name + ".q1", slots=4096) as r1:
        hp.ping()
        with AfXdpQueues([r0, r1], hp.host, filter=f"udp dst port {port}", xdp_mode="native",
                         frames=1024) as mq:
            d = mq.describe()
            assert d[0]["program_id"] == d[1]["program_id"] == hp.xdp_prog_id()
            assert d[1]["shared_with"][0]["queue"] == 0 and d[0]["shared_with"] == []
            mq.warmup()
            hp.exec(sys.executable, "-c", _FLOWS, hp.host_ip, port, flows, per)
            total = flows * per
            rep = mq.run(duration=20, stop=lambda: int(r0.ctrl[L.PS_PUBLISHED]) +
                         int(r1.ctrl[L.PS_PUBLISHED]) >= total)
            kc = mq.kernel_counters()
        assert rep["published"] == total and rep["user_rejected"] == 0, rep
        assert kc["rules"][0][1] == total and kc["no_socket"] == 0
        seen = {}
        for q, ring in enumerate((r0, r1)):
            n = int(ring.ctrl[L.PS_PUBLISHED])
            assert n > 0, f"queue {q} got nothing: the flows did not spread"
            for f, _, hdr in ring_frames(ring, 0, n):
                assert hdr["queue"] == q
                flow, i = udp_payload(f)[1].split(b"-")
                seen.setdefault(flow, []).append((q, int(i)))
        assert len(seen) == flows
        for flow, got in seen.items():
            assert len({q for q, _ in got}) == 1, flow           # a flow stays on its queue
            assert [i for _, i in got] == list(range(per)), flow  # whole, in order
        assert hp.xdp_prog_id() is None                          # the last one detached


def test_queues_of_one_interface_across_processes_share_filter_and_program(ring_name):
    """A second process on another queue of the same interface shares the program, must use
    the same filter, and leaves it attached for the first when it exits."""
    with HostPeer(queues=2) as hp, Ring.create(ring_name + ".a", slots=64) as ra, \
            Ring.create(ring_name + ".b", slots=64):
        with producer(ra, hp, queue=0, filter="udp port 53", frames=256) as p:
            pid = p.prog_id

            def cli(expr):
                return subprocess.run([sys.executable, "-m", "engine.cli", "afxdp", hp.host,
                                       "--ring", ring_name + ".b", "--queue", "1", "--filter",
                                       expr, "--frames", "256", "--count", "0", "--json"],
                                      cwd=ROOT, capture_output=True, text=True, timeout=60)
            r = cli("udp port 54")
            assert r.returncode == 1, r.stderr
            assert f"{hp.host} is filtered by 'udp port 53' (pid {os.getpid()}, queue 0)" \
                in r.stderr and "same filter" in r.stderr
            r = cli("udp port 53")
            assert r.returncode == 0, r.stderr
            setup = json.loads(r.stdout)["setup"]
            assert setup["program_id"] == pid and setup["shared_with"][0]["queue"] == 0
            assert "sharing hugering's XDP program" in r.stderr
            assert hp.xdp_prog_id() == pid                    # still there for queue 0
        assert hp.xdp_prog_id() is None


@pytest.fixture(scope="module")
def live_frames_refusal():
    """What the kernel says to one XDP live-frame test run (None: it runs them); some kernels
    refuse them to any program (bench_afxdp's docstring)."""
    _need()                              # module fixtures run before the autouse check
    sys.path.insert(0, str(ROOT / "tools"))
    import bench_afxdp
    return bench_afxdp.xdp_live_frames_refused()


@pytest.mark.parametrize("sender", ["auto", "xdp", "udp"])
def test_bench_afxdp_runs_and_reports_the_keys(sender, live_frames_refusal):
    """tools/bench_afxdp.py --quick --json with each sender: its own namespaces, the three
    receivers, the documented keys; nothing left behind (the numbers themselves are the
    program's business).  Where the kernel refuses live-frame test runs, auto falls back to
    the udp sender and says why, and an explicit xdp is a one-line error (exit 1)."""
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "bench_afxdp.py"), "--quick",
                          "--json", "--packets", "5000", "--repeats", "1", "--sender", sender],
                         cwd=ROOT, capture_output=True, text=True, timeout=110)
    assert not re.search(r"\bhb\d+[rt]\b", sh("ip", "netns", "list").stdout)
    if sender == "xdp" and live_frames_refusal:
        assert out.returncode == 1 and out.stdout == ""
        assert "refuses XDP live-frame test runs" in out.stderr
        assert live_frames_refusal in out.stderr and "--sender udp" in out.stderr
        return
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout)
    for k in ("offered_pps", "afxdp_pps", "afxdp_loss", "socket_pps", "socket_loss",
              "afpacket_pps", "afpacket_loss", "ratio_vs_socket"):
        assert isinstance(r[k], (int, float)), k
    for k in ("afxdp", "socket", "afpacket"):
        assert 0 <= r[f"{k}_loss"] <= 1 and r["runs"][k][0]["sent"] == 5000
    assert r["runs"]["afxdp"][0]["received"] > 0 and r["afxdp_mode"] == "native"
    ran = sender if sender != "auto" else ("udp" if live_frames_refusal else "xdp")
    assert r["sender"] == ran
    if sender == "auto" and live_frames_refusal:
        assert live_frames_refusal in r["sender_note"]
    else:
        assert r["sender_note"] is None
