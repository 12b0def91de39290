"""The @njit parsers against tshark on captures the kernel makes in the test itself.

Two network namespaces joined by a veth pair (``tests/netns.py``); tcpdump captures on side b
while side a sends: UDP over IPv4 and IPv6 (small datagrams, and large ones the kernel
fragments), a real TCP connection over IPv4 and IPv6 (SYN options: MSS, SACK-permitted,
timestamps, window scale), ping and ping -6, and 802.1Q / QinQ / 802.1ad frames crafted here
and injected with an AF_PACKET socket on side a's veth (this kernel has no 8021q module, and
no configuration is needed for a raw socket).  The kernel adds ARP, neighbour discovery and
ICMP port-unreachable replies of its own.  Every packet of the capture is read with
``parsers.pcap.read_capture``, parsed by ``parse_slot_array``, and its fields compared with
``tshark -T fields`` on the same file (reassembly off, so tshark shows each fragment as it is).

Root only (namespaces); as an ordinary user the test skips through ``need_root``.  All traffic
stays inside the two namespaces, bounded in count and time.
"""
from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from parsers import record as R
from parsers.l2l4 import parse_slot_array

sys.path.insert(0, str(Path(__file__).resolve().parent))
import naive_parsers as N  # noqa: E402
from netns import VethPair  # noqa: E402

TOOLS = ("tcpdump", "tshark", "ip", "ping")

FIELDS = [
    "frame.cap_len", "eth.type", "eth.len", "vlan.id", "vlan.priority", "vlan.etype", "vlan.len",
    "ieee8021ad.id", "ieee8021ad.priority",
    "arp.opcode", "arp.src.proto_ipv4", "arp.dst.proto_ipv4",
    "ip.src", "ip.dst", "ip.proto", "ip.ttl", "ip.flags", "ip.len", "ip.hdr_len", "ip.id",
    "ip.frag_offset", "ip.dsfield",
    "ipv6.src", "ipv6.dst", "ipv6.nxt", "ipv6.hlim", "ipv6.plen", "ipv6.flow", "ipv6.tclass",
    "ipv6.fraghdr.offset", "ipv6.fraghdr.more", "ipv6.fraghdr.ident",
    "udp.srcport", "udp.dstport", "udp.length",
    "tcp.srcport", "tcp.dstport", "tcp.seq_raw", "tcp.ack_raw", "tcp.flags",
    "tcp.window_size_value", "tcp.hdr_len", "tcp.options.mss_val", "tcp.options.wscale.shift",
    "tcp.options.timestamp.tsval", "tcp.options.timestamp.tsecr", "tcp.option_kind",
    "icmp.type", "icmp.code", "icmpv6.type", "icmpv6.code",
]

UDP_SENDER = r"""
import socket, sys
v4, v6 = sys.argv[1], sys.argv[2]
for fam, dst in ((socket.AF_INET, v4), (socket.AF_INET6, v6)):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    for i in range(4):
        s.sendto(b"hugering-%d." % i * (i + 1), (dst, 40000 + i))   # no listener: port unreachable
    s.sendto(bytes(range(256)) * 12, (dst, 40100))                   # 3072 bytes: fragmented
    s.close()
"""

TCP_SERVER = r"""
import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
srv = socket.socket(fam, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
srv.listen(1)
srv.settimeout(20)
print("ready", flush=True)
c, _ = srv.accept()
c.settimeout(20)
data = b""
while True:
    b = c.recv(4096)
    if not b:
        break
    data += b
c.sendall(b"got %d bytes" % len(data))
c.close()
srv.close()
"""

TCP_CLIENT = r"""
import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
c.sendall(b"hello from hugering " * 5)
c.shutdown(socket.SHUT_WR)
reply = b""
while True:
    b = c.recv(4096)
    if not b:
        break
    reply += b
c.close()
assert reply == b"got 100 bytes", reply
"""

INJECTOR = r"""
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
for hexframe in sys.argv[2:]:
    s.send(bytes.fromhex(hexframe))
s.close()
"""


def crafted_frames(v: VethPair) -> list[bytes]:
    """Tagged frames for side b, built byte by byte (addresses of the pair, so they look like
    the rest of the traffic)."""
    a, b = v.mac("a"), v.mac("b")
    ip4a, ip4b, ip6a, ip6b = v.ip4("a"), v.ip4("b"), v.ip6("a"), v.ip6("b")
    u4 = N.ipv4(N.udp(b"vlan-udp4", 5000, 6000), 17, ip4a, ip4b, ttl=33, df=True)
    u6 = N.ipv6(N.udp(b"qinq-udp6", 5001, 6001), 17, ip6a, ip6b, hlim=7, tc=0x28, flow=0xBEEF)
    t4 = N.ipv4(N.tcp(b"", 1234, 80, 7, 0, N.TCP_SYN, 1000, N.opt_mss(1200) + N.opt_sack_perm()
                      + N.opt_ts(11, 0) + N.NOP + N.opt_ws(5)), 6, ip4a, ip4b)
    i4 = N.ipv4(N.icmp(8, 0), 1, ip4a, ip4b)
    return [
        N.eth(u4, 0x0800, b, a, tags=[(0x8100, 100, 3)]),
        N.eth(t4, 0x0800, b, a, tags=[(0x8100, 4094, 7)]),
        N.eth(u6, 0x86DD, b, a, tags=[(0x88A8, 200, 5), (0x8100, 300, 1)]),
        N.eth(i4, 0x0800, b, a, tags=[(0x8100, 10, 0), (0x8100, 20, 2)]),
        N.eth(u4, 0x0800, b, a, tags=[(0x88A8, 2, 1)]),
        N.eth(i4, 0x0800, b, a, tags=[(0x9100, 77, 6), (0x8100, 78, 0)]),
        # 802.3 behind a tag: 802.1Q keeps the Length/Type field, here a length (an LLC
        # header and 35 bytes: spanning-tree's SAPs, as switches send it on a trunk)
        N.eth(b"\x42\x42\x03" + bytes(range(35)), 38, b, a, tags=[(0x8100, 55, 4)]),
    ]


def start_tcpdump(v: VethPair, path: str, *expr: str) -> subprocess.Popen:
    """tcpdump on side b writing ``path`` (whole frames), returned once it is listening."""
    dump = v.popen("b", ["tcpdump", "-i", v.ifname("b"), "-w", path, "-U", "-n", "-s", "0",
                         *expr], text=True)
    deadline = time.monotonic() + 20
    line = ""
    while "listening on" not in line:
        line = dump.stderr.readline()
        if not line and dump.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"tcpdump did not start: {line}{dump.stderr.read()}")
    return dump


def make_capture(v: VethPair, path: str) -> None:
    dump = start_tcpdump(v, path)
    try:
        v.run("a", ["ping", "-c", "2", "-i", "0.2", "-W", "2", v.ip4("b")])
        v.run("a", ["ping", "-6", "-c", "2", "-i", "0.2", "-W", "2", v.ip6("b")])
        v.python("a", UDP_SENDER, v.ip4("b"), v.ip6("b"))
        for port, addr in ((8080, v.ip4("b")), (8081, v.ip6("b"))):
            srv = v.python("b", TCP_SERVER, addr, str(port), background=True)
            assert srv.stdout.readline().strip() == "ready", srv.stderr.read()
            v.python("a", TCP_CLIENT, addr, str(port))
            assert srv.wait(timeout=20) == 0, srv.stderr.read()
        v.python("a", INJECTOR, v.ifname("a"), *(f.hex() for f in crafted_frames(v)))
        time.sleep(0.5)                          # let the last replies arrive
    finally:
        VethPair.stop(dump)


def tshark_fields(path: str) -> list[dict]:
    cmd = ["tshark", "-r", path, "-n", "-o", "ip.defragment:FALSE",
           "-o", "ipv6.defragment:FALSE", "-o", "tcp.analyze_sequence_numbers:FALSE",
           "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=,"]
    for f in FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = []
    for line in out.stdout.splitlines():
        cols = line.split("\t")
        assert len(cols) == len(FIELDS), line
        rows.append({f: [x for x in c.split(",") if x != ""] for f, c in zip(FIELDS, cols)})
    return rows


def num(s: str) -> int:
    return int(s, 0)


def first(row: dict, field: str):
    vals = row[field]
    return vals[0] if vals else None


def compare(i: int, rec, row: dict) -> list[str]:
    """Differences between our record and tshark's fields for packet i (empty when equal)."""
    bad = []

    def eq(name, ours, theirs):
        if ours != theirs:
            bad.append(f"packet {i + 1}: {name}: ours {ours!r}, tshark {theirs!r}")

    r = N.record_to_dict(rec)
    eq("cap_len", r["caplen"], num(first(row, "frame.cap_len")))
    if r["flags"] & R.F_LLC:
        lens = row["eth.len"] + row["vlan.len"]          # untagged / behind a tag
        eq("802.3 length", True, bool(lens))
        if lens and not r["flags"] & R.F_TRUNCATED:
            eq("802.3 length (payload_len)", r["payload_len"], num(lens[-1]))
        if not r["vlan_count"]:
            return bad
    # VLAN tags: tshark reports the outer TPID as eth.type; 802.1ad tags under ieee8021ad.*
    outer = num(first(row, "eth.type"))
    eq("eth.type", r["vlan_tpid"] if r["vlan_count"] else r["ethertype"], outer)
    ids = [num(x) for x in row["ieee8021ad.id"] + row["vlan.id"]]
    pcps = [num(x) for x in row["ieee8021ad.priority"] + row["vlan.priority"]]
    ours_ids = [r["vlan_id0"], r["vlan_id1"]][:r["vlan_count"]]
    ours_pcp = [r["vlan_pcp0"], r["vlan_pcp1"]][:r["vlan_count"]]
    eq("vlan ids", ours_ids, ids[:2])
    eq("vlan priorities", ours_pcp, pcps[:2])
    if r["vlan_count"] and row["vlan.etype"]:
        eq("vlan.etype (inner)", r["ethertype"], num(row["vlan.etype"][-1]))
    if r["ethertype"] == 0x0806:
        eq("arp.opcode", r["arp_op"], num(first(row, "arp.opcode")))
        eq("arp.src", str(ipaddress.IPv4Address(r["src4"])), first(row, "arp.src.proto_ipv4"))
        eq("arp.dst", str(ipaddress.IPv4Address(r["dst4"])), first(row, "arp.dst.proto_ipv4"))
    if r["ip_version"] == 4:
        eq("ip.src", str(ipaddress.IPv4Address(r["src4"])), first(row, "ip.src"))
        eq("ip.dst", str(ipaddress.IPv4Address(r["dst4"])), first(row, "ip.dst"))
        eq("ip.proto", r["ip_proto"], num(first(row, "ip.proto")))
        eq("ip.ttl", r["ttl"], num(first(row, "ip.ttl")))
        eq("ip.flags", r["ip_frag_flags"], num(first(row, "ip.flags")))
        eq("ip.len", r["ip_len"], num(first(row, "ip.len")))
        eq("ip.hdr_len", r["ip_hlen"], num(first(row, "ip.hdr_len")))
        eq("ip.id", r["ip_id"], num(first(row, "ip.id")))
        eq("ip.frag_offset", r["frag_offset"], num(first(row, "ip.frag_offset")))
        eq("ip.dsfield", r["tos"], num(first(row, "ip.dsfield")))
    if r["ip_version"] == 6:
        eq("ipv6.src", ipaddress.IPv6Address(bytes(r["src6"])),
           ipaddress.IPv6Address(first(row, "ipv6.src")))
        eq("ipv6.dst", ipaddress.IPv6Address(bytes(r["dst6"])),
           ipaddress.IPv6Address(first(row, "ipv6.dst")))
        eq("ipv6.hlim", r["ttl"], num(first(row, "ipv6.hlim")))
        eq("ipv6.plen", r["ip_len"] - 40, num(first(row, "ipv6.plen")))
        eq("ipv6.flow", r["flow_label"], num(first(row, "ipv6.flow")))
        eq("ipv6.tclass", r["tos"], num(first(row, "ipv6.tclass")))
        if r["ext_count"] == 0:
            eq("ipv6.nxt", r["ip_proto"], num(first(row, "ipv6.nxt")))
        else:
            eq("ipv6.nxt is an extension header", True,
               num(first(row, "ipv6.nxt")) in N.EXT_HEADERS)
        if row["ipv6.fraghdr.offset"]:
            eq("ipv6.fraghdr.offset", r["frag_offset"], num(first(row, "ipv6.fraghdr.offset")))
            eq("ipv6.fraghdr.more", r["ip_frag_flags"],
               int(first(row, "ipv6.fraghdr.more") in ("1", "True")))
            eq("ipv6.fraghdr.ident", r["ip_id"], num(first(row, "ipv6.fraghdr.ident")))
    if r["l4_off"] < 0:
        return bad
    proto = r["ip_proto"]
    if proto == 17:
        eq("udp.srcport", r["sport"], num(first(row, "udp.srcport")))
        eq("udp.dstport", r["dport"], num(first(row, "udp.dstport")))
        eq("udp.length", r["udp_len"], num(first(row, "udp.length")))
    elif proto == 6:
        eq("tcp.srcport", r["sport"], num(first(row, "tcp.srcport")))
        eq("tcp.dstport", r["dport"], num(first(row, "tcp.dstport")))
        eq("tcp.seq_raw", r["tcp_seq"], num(first(row, "tcp.seq_raw")))
        eq("tcp.ack_raw", r["tcp_ack"], num(first(row, "tcp.ack_raw")))
        eq("tcp.flags", r["tcp_flags"], num(first(row, "tcp.flags")) & 0x1FF)
        eq("tcp.window_size_value", r["tcp_window"], num(first(row, "tcp.window_size_value")))
        eq("tcp.hdr_len", r["tcp_hlen"], num(first(row, "tcp.hdr_len")))
        kinds = {num(k) for k in row["tcp.option_kind"]}
        eq("mss present", bool(r["tcp_opts"] & R.TO_MSS), 2 in kinds)
        eq("wscale present", bool(r["tcp_opts"] & R.TO_WSCALE), 3 in kinds)
        eq("sack_perm present", bool(r["tcp_opts"] & R.TO_SACK_PERM), 4 in kinds)
        eq("timestamps present", bool(r["tcp_opts"] & R.TO_TIMESTAMP), 8 in kinds)
        if r["tcp_opts"] & R.TO_MSS:
            eq("tcp.options.mss_val", r["tcp_mss"], num(first(row, "tcp.options.mss_val")))
        if r["tcp_opts"] & R.TO_WSCALE:
            eq("tcp.options.wscale.shift", r["tcp_wscale"],
               num(first(row, "tcp.options.wscale.shift")))
        if r["tcp_opts"] & R.TO_TIMESTAMP:
            eq("tsval", r["tcp_tsval"], num(first(row, "tcp.options.timestamp.tsval")))
            eq("tsecr", r["tcp_tsecr"], num(first(row, "tcp.options.timestamp.tsecr")))
    elif proto == 1:
        eq("icmp.type", r["icmp_type"], num(first(row, "icmp.type")))
        eq("icmp.code", r["icmp_code"], num(first(row, "icmp.code")))
    elif proto == 58:
        eq("icmpv6.type", r["icmp_type"], num(first(row, "icmpv6.type")))
        eq("icmpv6.code", r["icmp_code"], num(first(row, "icmpv6.code")))
    return bad


@pytest.fixture
def tools():
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (apt-get install tcpdump tshark iproute2 "
                    f"iputils-ping)")


def test_parsers_agree_with_tshark_on_kernel_traffic(need_root, tools, tmp_path):
    from parsers.pcap import read_capture

    path = str(tmp_path / "veth.pcap")
    with VethPair() as v:
        make_capture(v, path)
        ip4b = v.ip4("b")
    cap = read_capture(path, slot_size=9216)
    assert cap.error is None, cap.error
    assert cap.linktype == 1 and cap.count > 20
    recs = parse_slot_array(cap.slots[:cap.count])
    rows = tshark_fields(path)
    assert len(rows) == cap.count
    bad = []
    for i, (rec, row) in enumerate(zip(recs, rows)):
        bad += compare(i, rec, row)
    assert not bad, "\n".join(bad[:40])

    # the capture holds what the test meant to send, so the comparison covered it
    def count(pred):
        return sum(1 for r in recs if pred(r))

    f = R                                     # (short name for the flag bits below)
    assert count(lambda r: r["ip_version"] == 4 and r["ip_proto"] == 17
                 and r["l4_off"] >= 0) >= 5
    assert count(lambda r: r["ip_version"] == 6 and r["ip_proto"] == 17
                 and r["l4_off"] >= 0) >= 5
    assert count(lambda r: r["flags"] & f.F_NONFIRST_FRAGMENT and r["ip_version"] == 4) >= 1
    assert count(lambda r: r["flags"] & f.F_NONFIRST_FRAGMENT and r["ip_version"] == 6) >= 1
    assert count(lambda r: r["flags"] & f.F_FRAGMENT and r["ip_version"] == 6
                 and r["sport"] != 0) >= 1
    syns = [r for r in recs if r["ip_proto"] == 6 and r["tcp_flags"] == 0x002]
    assert len(syns) >= 3                     # v4, v6 and the crafted one
    for r in syns:
        assert r["tcp_opts"] & (f.TO_MSS | f.TO_SACK_PERM | f.TO_TIMESTAMP | f.TO_WSCALE) == \
            f.TO_MSS | f.TO_SACK_PERM | f.TO_TIMESTAMP | f.TO_WSCALE
    assert count(lambda r: r["ip_proto"] == 6 and r["payload_len"] > 0) >= 2
    assert count(lambda r: r["ip_version"] == 4 and r["icmp_type"] == 8) >= 2
    assert count(lambda r: r["ip_version"] == 4 and r["icmp_type"] == 3) >= 1
    assert count(lambda r: r["ip_version"] == 6 and r["icmp_type"] == 128) >= 2
    assert count(lambda r: r["ethertype"] == 0x0806) >= 1
    assert count(lambda r: r["vlan_count"] == 1) >= 3
    assert count(lambda r: r["vlan_count"] == 2 and r["vlan_tpid"] == 0x88A8) >= 1
    assert count(lambda r: r["vlan_count"] == 2 and r["vlan_tpid"] == 0x8100) >= 1
    assert count(lambda r: r["vlan_count"] == 2 and r["vlan_tpid"] == 0x9100) >= 1
    assert count(lambda r: r["vlan_count"] == 1 and r["flags"] & f.F_LLC
                 and r["payload_len"] == 38) >= 1
    assert count(lambda r: r["ip_version"] == 4 and r["dst4"] ==
                 int(ipaddress.IPv4Address(ip4b))) >= 5
    assert not any(r["flags"] & (f.F_TRUNCATED | f.F_MALFORMED) for r in recs)


BULK_CLIENT = r"""
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
c.sendall(bytes(range(97, 123)) * 20000)          # 520 kB of a..z: the stack sends it in
c.shutdown(socket.SHUT_WR)                       # segments far larger than the MTU (TSO/GSO
assert c.recv(100) == b"got 520000 bytes"        # on a veth: they cross the pair whole)
c.close()
"""


def test_whole_packets_longer_than_any_slot_agree_with_tshark_and_tcpdump(need_root, tools,
                                                                          tmp_path, capsys):
    """A capture taken where the stack hands over TSO/GSO segments (tens of kB in one frame,
    as tcpdump on a busy host records them): ``hugering parse`` parses every packet whole --
    caplen and TCP payload length equal tshark's, nothing is flagged truncated --
    and ``--filter`` reading bytes past any slot size selects exactly what tcpdump does."""
    import json

    from engine import cli
    from parsers.pcap import read_capture

    path = str(tmp_path / "tso.pcap")
    with VethPair() as v:
        dump = start_tcpdump(v, path, "tcp")
        try:
            srv = v.python("b", TCP_SERVER, v.ip4("b"), "8090", background=True)
            assert srv.stdout.readline().strip() == "ready", srv.stderr.read()
            v.python("a", BULK_CLIENT, v.ip4("b"), "8090")
            assert srv.wait(timeout=20) == 0, srv.stderr.read()
            time.sleep(0.3)
        finally:
            VethPair.stop(dump)
    assert cli.main(["parse", path, "--jsonl"]) == 0
    pk = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    rows = subprocess.run(["tshark", "-r", path, "-n", "-T", "fields", "-E", "separator=\t",
                           "-e", "frame.cap_len", "-e", "tcp.len"],
                          capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(rows) == len(pk) > 10
    longest = max(p["caplen"] for p in pk)
    assert longest > 9216, f"no segment longer than the largest slot (longest {longest})"
    for p, row in zip(pk, rows):
        cap_len, tcp_len = (int(x) for x in row.split("\t"))
        assert (p["caplen"], p["payload_len"]) == (cap_len, tcp_len), (p, row)
        assert "truncated" not in p["flags"], p
    # filters that read past any slot: offsets into a 9 kB+ TCP payload, and the length
    for expr in ("greater 9300", "tcp[9000:1] > 0x6d", "tcp[9000:2] != 0x6162 and len > 9100",
                 "tcp and not tcp[9200:1] > 0x70"):
        assert cli.main(["parse", path, "--jsonl", "--filter", expr]) == 0
        got = sorted((q["ts_ns"], q["wire_len"])
                     for q in map(json.loads, capsys.readouterr().out.splitlines()))
        sel = str(tmp_path / "sel.pcap")
        subprocess.run(["tcpdump", "-r", path, "-w", sel, expr], capture_output=True,
                       check=True, timeout=60)
        chosen = read_capture(sel, slot_size=64).slots
        want = sorted(zip(chosen["ts_ns"].tolist(), chosen["wire_len"].tolist()))
        assert got == want, (expr, len(got), len(want))
        assert 0 < len(want) < len(pk), (expr, len(want))
