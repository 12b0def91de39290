"""``hugering parse``: crafted frames written with ``parsers.pcap.write_pcap``, printed as text
and as JSON lines (checked field by field), ``--filter`` / ``--count`` select the right
packets, a damaged capture prints the packets before the damage and the byte offset (exit 1),
a bad filter names its token (exit 2)."""
from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from engine import cli
from parsers.pcap import write_pcap
from shm.layout import slot_dtype

pytestmark = pytest.mark.pure          # computation only: as root, as any user (conftest)

MAC = bytes.fromhex("020000000001") + bytes.fromhex("020000000002")
TS0 = 1_700_000_000_123_456_789


def eth(etype: int, vlan: int | None = None) -> bytes:
    if vlan is None:
        return MAC + struct.pack("!H", etype)
    return MAC + struct.pack("!HHH", 0x8100, vlan, etype)


def ipv4(proto: int, src: str, dst: str, l4: bytes, ttl: int = 64) -> bytes:
    a = bytes(int(x) for x in src.split("."))
    b = bytes(int(x) for x in dst.split("."))
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 7, 0x4000, ttl, proto, 0, a,
                       b) + l4


def ipv6(nh: int, src: bytes, dst: bytes, l4: bytes, hlim: int = 33) -> bytes:
    return struct.pack("!IHBB16s16s", 0x60000000, len(l4), nh, hlim, src, dst) + l4


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def tcp(sport, dport, seq, ack, flags, win, payload=b"") -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 0x50, flags, win, 0, 0) + payload


V6A = bytes.fromhex("20010db8000000000000000000000001")
V6B = bytes.fromhex("20010db8000000000000000000000002")

FRAMES = [
    # 0: IPv4 UDP 10.0.0.1:1000 -> 10.0.0.2:53, 4-byte payload
    eth(0x0800) + ipv4(17, "10.0.0.1", "10.0.0.2", udp(1000, 53, b"abcd")),
    # 1: IPv4 TCP SYN+ACK 10.1.2.3:80 -> 10.9.9.9:40000
    eth(0x0800) + ipv4(6, "10.1.2.3", "10.9.9.9", tcp(80, 40000, 1000, 2000, 0x12, 512), ttl=5),
    # 2: VLAN 100, IPv6 UDP 2001:db8::1:5000 -> 2001:db8::2:5001
    eth(0x86DD, vlan=100) + ipv6(17, V6A, V6B, udp(5000, 5001, b"xyz")),
    # 3: IPv4 ICMP echo request
    eth(0x0800) + ipv4(1, "192.168.1.1", "192.168.1.2", bytes([8, 0, 0, 0, 0, 1, 0, 1])),
    # 4: ARP request 10.0.0.1 -> 10.0.0.2
    eth(0x0806) + struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, MAC[6:], bytes([10, 0, 0, 1]),
                              b"\0" * 6, bytes([10, 0, 0, 2])),
    # 5: IPv4 UDP cut short (wire 60 bytes, 30 captured): truncated
    eth(0x0800) + ipv4(17, "10.0.0.3", "10.0.0.4", udp(7, 8, b"\0" * 18)),
]
CAPLENS = [len(f) for f in FRAMES]
CAPLENS[5] = 30


def write_capture(path, frames=FRAMES, caplens=CAPLENS) -> None:
    slots = np.zeros(len(frames), dtype=slot_dtype(256))
    for i, (f, cl) in enumerate(zip(frames, caplens)):
        slots[i]["payload"][:len(f)] = np.frombuffer(f, np.uint8)
        slots[i]["cap_len"] = cl
        slots[i]["wire_len"] = len(f)
        slots[i]["ts_ns"] = TS0 + i * 1000
        slots[i]["seq"] = i
    write_pcap(path, slots)


@pytest.fixture()
def capture(tmp_path):
    p = tmp_path / "t.pcap"
    write_capture(p)
    return p


def run(capsys, *argv):
    rc = cli.main(["parse", *map(str, argv)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def jsonl(capsys, *argv):
    rc, out, err = run(capsys, *argv, "--jsonl")
    return rc, [json.loads(line) for line in out.splitlines()], err


KEYS = {"index", "ts", "ts_ns", "caplen", "wire_len", "flags", "ethertype", "vlan",
        "ip_version", "src", "dst", "proto", "ttl", "sport", "dport", "tcp_flags", "tcp_seq",
        "tcp_ack", "tcp_window", "icmp_type", "icmp_code", "arp_op", "payload_off",
        "payload_len"}


def test_jsonl_fields(capture, capsys):
    rc, pk, err = jsonl(capsys, capture)
    assert rc == 0
    assert len(pk) == 6
    assert all(set(p) == KEYS for p in pk)
    assert "6 packets read, 6 matched, 6 printed" in err
    p = pk[0]
    assert p["index"] == 0 and p["ts_ns"] == TS0 and p["ts"] == pytest.approx(TS0 / 1e9)
    assert p["caplen"] == p["wire_len"] == len(FRAMES[0])
    assert p["flags"] == [] and p["ethertype"] == 0x0800 and p["vlan"] == []
    assert (p["ip_version"], p["src"], p["dst"], p["proto"], p["ttl"]) == \
        (4, "10.0.0.1", "10.0.0.2", 17, 64)
    assert (p["sport"], p["dport"], p["payload_off"], p["payload_len"]) == (1000, 53, 42, 4)
    assert p["tcp_flags"] is None and p["icmp_type"] is None and p["arp_op"] is None
    p = pk[1]
    assert (p["src"], p["dst"], p["proto"], p["ttl"], p["sport"], p["dport"]) == \
        ("10.1.2.3", "10.9.9.9", 6, 5, 80, 40000)
    assert p["tcp_flags"] == ["SYN", "ACK"]
    assert (p["tcp_seq"], p["tcp_ack"], p["tcp_window"], p["payload_len"]) == (1000, 2000, 512, 0)
    p = pk[2]
    assert p["vlan"] == [100] and p["flags"] == ["vlan"] and p["ethertype"] == 0x86DD
    assert (p["ip_version"], p["src"], p["dst"], p["proto"], p["ttl"]) == \
        (6, "2001:db8::1", "2001:db8::2", 17, 33)
    assert (p["sport"], p["dport"], p["payload_off"], p["payload_len"]) == (5000, 5001, 66, 3)
    p = pk[3]
    assert (p["proto"], p["icmp_type"], p["icmp_code"], p["sport"]) == (1, 8, 0, None)
    p = pk[4]
    assert (p["ip_version"], p["ethertype"], p["arp_op"], p["src"], p["dst"]) == \
        (None, 0x0806, 1, "10.0.0.1", "10.0.0.2")
    p = pk[5]
    assert p["caplen"] == 30 and p["wire_len"] == len(FRAMES[5])
    assert "truncated" in p["flags"]


def test_text_lines(capture, capsys):
    rc, out, err = run(capsys, capture)
    assert rc == 0
    lines = out.splitlines()
    assert len(lines) == 6
    assert lines[0] == (f"0 1700000000.123456789 IP 10.0.0.1.1000 > 10.0.0.2.53: UDP payload 4 "
                        f"ttl 64 len {len(FRAMES[0])}")
    assert lines[1] == (f"1 1700000000.123457789 IP 10.1.2.3.80 > 10.9.9.9.40000: TCP [S.] "
                        f"seq 1000 ack 2000 win 512 payload 0 ttl 5 len {len(FRAMES[1])}")
    assert lines[2] == (f"2 1700000000.123458789 vlan 100 IP6 2001:db8::1.5000 > "
                        f"2001:db8::2.5001: UDP payload 3 ttl 33 len {len(FRAMES[2])} [vlan]")
    assert lines[3].startswith("3 1700000000.123459789 IP 192.168.1.1 > 192.168.1.2: ICMP "
                               "type 8 code 0 ttl 64")
    assert lines[4] == f"4 1700000000.123460789 ARP 10.0.0.1 > 10.0.0.2: op 1 len {len(FRAMES[4])}"
    assert lines[5].endswith("[truncated]")
    assert "6 packets read" in err


@pytest.mark.parametrize("expr, want", [
    ("udp", [0, 5]),                     # 5 is cut inside the UDP header: its ports are absent
    ("udp and dst port 53", [0]),
    ("tcp[tcpflags] & tcp-syn != 0", [1]),
    ("vlan 100 and ip6 and udp", [2]),
    ("icmp or arp", [3, 4]),
    ("src net 10.0.0.0/8 and not tcp", [0, 4, 5]),
])
def test_filter_selects(capture, capsys, expr, want):
    rc, pk, err = jsonl(capsys, capture, "--filter", expr)
    assert rc == 0
    assert [p["index"] for p in pk] == want
    assert f"6 packets read, {len(want)} matched" in err


def test_count(capture, capsys):
    rc, pk, err = jsonl(capsys, capture, "--count", 2)
    assert rc == 0 and [p["index"] for p in pk] == [0, 1]
    assert "6 matched, 2 printed" in err


def test_corrupt_capture(tmp_path, capsys):
    p = tmp_path / "bad.pcap"
    write_capture(p, FRAMES[:3], CAPLENS[:3])
    data = p.read_bytes()
    # damage the third record's header: a captured length no capture allows
    off = 24 + 16 + len(FRAMES[0]) + 16 + len(FRAMES[1])
    bad = data[:off + 8] + struct.pack("<I", 0x7FFFFFFF) + data[off + 12:]
    p.write_bytes(bad)
    rc, out, err = run(capsys, p)
    assert rc == 1
    assert [line.split()[0] for line in out.splitlines()] == ["0", "1"]
    assert f"byte {off}" in err
    assert "2 packets read" in err
    # cut inside the second packet's data
    p.write_bytes(data[:24 + 16 + len(FRAMES[0]) + 16 + 10])
    rc, out, err = run(capsys, p, "--jsonl")
    assert rc == 1
    assert [json.loads(line)["index"] for line in out.splitlines()] == [0]
    assert f"byte {24 + 16 + len(FRAMES[0])}" in err


def test_a_header_cut_off_prints_no_fields_it_did_not_read(tmp_path, capsys):
    """An L4 header cut before its fixed part ends (by the capture or by the IP length) has
    null ports / TCP fields / ICMP type -- 0 is a real port and ICMP type, never invented --
    and an 802.3 length behind a VLAN tag is 802.3/LLC, as tshark decodes it."""
    udp_ = eth(0x0800) + ipv4(17, "10.0.0.3", "10.0.0.4", udp(7, 8, b"\0" * 18))
    tcp_ = eth(0x0800) + ipv4(6, "10.0.0.5", "10.0.0.6", tcp(80, 81, 5, 6, 0x02, 9))
    icmp_ = eth(0x0800) + ipv4(1, "10.0.0.7", "10.0.0.8", bytes([0, 0, 0, 0, 0, 1, 0, 1]))
    llc = MAC + struct.pack("!HHH", 0x8100, 42, 20) + b"\x42\x42\x03" + b"z" * 17
    frames = [udp_, tcp_, icmp_, llc, udp_]
    caplens = [38, 40, 40, len(llc), len(udp_)]
    p = tmp_path / "cut.pcap"
    write_capture(p, frames, caplens)
    rc, pk, err = jsonl(capsys, p)
    assert rc == 0 and len(pk) == 5
    for q in pk[:3]:
        assert q["ip_version"] == 4 and "truncated" in q["flags"]
        assert (q["sport"], q["dport"], q["tcp_flags"], q["tcp_seq"], q["icmp_type"]) == \
            (None,) * 5, q
        assert q["payload_off"] is None
    assert [q["proto"] for q in pk[:3]] == [17, 6, 1]
    assert pk[3]["flags"] == ["llc", "vlan"] and pk[3]["vlan"] == [42]
    assert (pk[3]["ethertype"], pk[3]["payload_off"], pk[3]["payload_len"]) == (0, 18, 20)
    assert (pk[4]["sport"], pk[4]["dport"]) == (7, 8)          # the whole one still has them
    rc, out, err = run(capsys, p)
    lines = out.splitlines()
    assert lines[0].split(" ", 2)[2].startswith("IP 10.0.0.3 > 10.0.0.4: UDP ttl 64")
    assert lines[1].split(" ", 2)[2].startswith("IP 10.0.0.5 > 10.0.0.6: TCP ttl 64")
    assert lines[2].split(" ", 2)[2].startswith("IP 10.0.0.7 > 10.0.0.8: ICMP ttl 64")
    assert lines[3].split(" ", 2)[2] == f"vlan 42 802.3/LLC len {len(llc)} [llc,vlan]"


def long_capture(path, sizes, linktype: int = 1) -> list[bytes]:
    """Classic pcap of UDP frames with ``sizes``-byte payloads (longer than any ring slot),
    written by hand: ``write_pcap`` writes slots, and no slot holds these."""
    frames = [eth(0x0800) + ipv4(17, "10.0.0.1", "10.0.0.2",
                                 udp(1000 + i, 2000, bytes([i + 1]) * n))
              for i, n in enumerate(sizes)]
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype))
        for i, fr in enumerate(frames):
            f.write(struct.pack("<IIII", 1_700_000_000 + i, 0, len(fr), len(fr)) + fr)
    return frames


def test_packets_are_parsed_whole_however_long(tmp_path, capsys):
    p = tmp_path / "long.pcap"
    sizes = [10, 3000, 20_000, 65_000]
    frames = long_capture(p, sizes)
    rc, pk, err = jsonl(capsys, p)
    assert rc == 0 and "4 packets read, 4 matched" in err
    assert [q["caplen"] for q in pk] == [len(f) for f in frames]
    assert [q["payload_len"] for q in pk] == sizes
    assert all(q["flags"] == [] for q in pk), [q["flags"] for q in pk]
    # filters read the whole packet too: the byte at payload offset 15000 of packet 2 only
    rc, pk, _ = jsonl(capsys, p, "--filter", "udp[15008:1] = 3")
    assert rc == 0 and [q["index"] for q in pk] == [2]
    rc, pk, _ = jsonl(capsys, p, "--filter", "greater 20000")
    assert [q["index"] for q in pk] == [2, 3]
    # --slot-size B: each packet over its first B bytes, as a ring slot of B bytes holds it
    rc, pk, _ = jsonl(capsys, p, "--slot-size", 2048)
    assert [q["caplen"] for q in pk] == [len(frames[0]), 2048, 2048, 2048]
    assert ["truncated" in q["flags"] for q in pk] == [False, True, True, True]
    rc, pk, _ = jsonl(capsys, p, "--slot-size", 2048, "--filter", "udp[15008:1] = 3")
    assert rc == 0 and pk == []


@pytest.mark.parametrize("linktype, name", [(276, "LINUX_SLL2"), (113, "LINUX_SLL"),
                                            (101, "RAW"), (147, "")])
def test_a_capture_that_is_not_ethernet_is_refused(tmp_path, capsys, linktype, name):
    p = tmp_path / "cooked.pcap"
    long_capture(p, [10], linktype)
    rc, out, err = run(capsys, p)
    assert rc == 1 and out == ""
    assert f"link type {linktype}" in err and "not Ethernet" in err
    assert name in err


def test_not_a_capture(tmp_path, capsys):
    p = tmp_path / "x.pcap"
    p.write_bytes(b"hello world, not a capture")
    rc, out, err = run(capsys, p)
    assert rc == 1 and out == ""
    assert "byte 0" in err
    rc, out, err = run(capsys, tmp_path / "missing.pcap")
    assert rc == 1 and "error" in err


@pytest.mark.parametrize("expr, token", [
    ("udp and dst prot 53", "prot"),
    ("tcp and (port 80", None),
    ("udp and gateway foo", "gateway"),
])
def test_bad_filter(capture, capsys, expr, token):
    rc, out, err = run(capsys, capture, "--filter", expr)
    assert rc == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("hugering: error: parse: --filter:")
    assert "column" in lines[0]
    if token:
        assert repr(token) in lines[0]


def test_help_documents_keys(capsys):
    rc = cli.main(["parse", "--help"])
    out = capsys.readouterr().out
    assert rc == 0
    for k in KEYS:
        assert k in out, k
    assert "stderr" in out
