"""``parsers.l2l4`` against the naive reference (``tests/naive_parsers.py``) on handcrafted frames
of every kind, plus the burst verb on a live ring and on a slot array, record reset, caller
mistakes and NRT allocations.

Each case states the fields that matter by hand *and* requires the @njit record to equal the
naive reference field by field, so the two implementations check each other and the hand-written
numbers check both.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from parsers import l2l4 as P
from parsers import record as R
from parsers.l2l4 import parse_bytes, parse_frame, parse_slot_array, parse_slots
from shm import layout as L

sys.path.insert(0, str(Path(__file__).resolve().parent))
import naive_parsers as N  # noqa: E402
from naive_parsers import (EOL, NOP, arp, chain, eth, ext, icmp, ip4, ip6, ipv4, ipv6,  # noqa: E402
                           llc_frame, opt_mss, opt_sack, opt_sack_perm, opt_ts, opt_ws, tcp, udp)

pytestmark = pytest.mark.pure          # computation only: as root, as any user (conftest)

ROOT = Path(__file__).resolve().parents[1]
FLAG_BY_NAME = {v: k for k, v in R.FLAG_NAMES.items()}


def flags_of(*names) -> int:
    return sum(FLAG_BY_NAME[n] for n in names)


def parsed(frame: bytes) -> dict:
    got = N.record_to_dict(parse_bytes(frame)[0])
    want = N.naive_parse(frame)
    diff = {k: (got[k], want[k]) for k in got if got[k] != want[k]}
    assert not diff, f"@njit vs naive (got, want): {diff}"
    return got


def U4(segment):
    return eth(ipv4(segment, 17), 0x0800)


def T4(segment):
    return eth(ipv4(segment, 6), 0x0800)


PAY = b"hello"
UDP4 = eth(ipv4(udp(PAY, 1111, 2222), 17, ttl=7, tos=0x10, df=True), 0x0800)
TCP_ALL = opt_mss(1400) + opt_sack_perm() + opt_ts(0xDEADBEEF, 0x01020304) + NOP + opt_ws(9)

# (id, frame, expected flag names, expected fields)
CASES = [
    ("udp4", UDP4, (), dict(
        ethertype=0x0800, ip_version=4, ip_proto=17, ttl=7, tos=0x10, ip_frag_flags=2,
        src4=N.u32(ip4("10.0.0.1")), dst4=N.u32(ip4("10.0.0.2")), sport=1111, dport=2222,
        udp_len=13, l3_off=14, l4_off=34, payload_off=42, payload_len=5, ip_len=33, ip_hlen=20,
        ip_id=0x1234, caplen=47)),
    ("udp4-padded", eth(ipv4(udp(PAY), 17), 0x0800, pad_to=60), ("padded",),
     dict(payload_off=42, payload_len=5, caplen=60)),
    ("udp4-evil-bit", eth(ipv4(udp(PAY), 17, evil=True, df=True, mf=False), 0x0800), (),
     dict(ip_frag_flags=6)),
    ("vlan", eth(ipv4(udp(PAY), 17), 0x0800, tags=[(0x8100, 100, 5)]), ("vlan",), dict(
        vlan_count=1, vlan_tpid=0x8100, vlan_id0=100, vlan_pcp0=5, l3_off=18, l4_off=38,
        ethertype=0x0800)),
    ("qinq", eth(ipv6(udp(PAY), 17), 0x86DD, tags=[(0x88A8, 200, 3), (0x8100, 4095, 1)]),
     ("vlan", "qinq"), dict(vlan_count=2, vlan_tpid=0x88A8, vlan_id0=200, vlan_pcp0=3,
                            vlan_id1=4095, vlan_pcp1=1, l3_off=22, ip_version=6)),
    ("vlan-9100", eth(ipv4(udp(PAY), 17), 0x0800, tags=[(0x9100, 7, 0), (0x8100, 8, 7)]),
     ("vlan", "qinq"), dict(vlan_tpid=0x9100, vlan_id0=7, vlan_id1=8, vlan_pcp1=7)),
    ("vlan-too-deep", eth(ipv4(udp(PAY), 17), 0x0800,
                          tags=[(0x88A8, 1, 0), (0x8100, 2, 0), (0x8100, 3, 0)]),
     ("vlan", "qinq", "vlan_too_deep"), dict(vlan_count=2, ethertype=0x8100, l3_off=-1,
                                            payload_off=-1, ip_version=0)),
    ("vlan-truncated-tag", eth(b"", 0x0800, tags=[(0x8100, 5, 0)])[:16], ("truncated",),
     dict(vlan_count=0, payload_off=-1)),
    ("vlan-unsupported-inner", eth(b"\x01\x02\x03", 0x88CC, tags=[(0x8100, 9, 0)]),
     ("vlan", "unsupported"), dict(ethertype=0x88CC, payload_off=18, payload_len=3)),
    ("arp-request-padded", eth(arp(1, "192.168.1.1", "192.168.1.2"), 0x0806, pad_to=60),
     ("padded",), dict(arp_op=1, src4=0xC0A80101, dst4=0xC0A80102, l3_off=14, l4_off=14,
                       payload_off=42, payload_len=0, ip_version=0, ethertype=0x0806)),
    ("arp-reply", eth(arp(2, "10.1.2.3", "10.3.2.1"), 0x0806), (),
     dict(arp_op=2, src4=0x0A010203, dst4=0x0A030201)),
    ("arp-vlan", eth(arp(1), 0x0806, tags=[(0x8100, 10, 0)]), ("vlan",),
     dict(arp_op=1, l3_off=18, l4_off=18, payload_off=46)),
    ("arp-other-kind", eth(arp(1, htype=6, hlen=8, plen=4), 0x0806), ("unsupported",),
     dict(arp_op=1, src4=0, payload_off=14 + 8 + 24)),
    ("arp-truncated", eth(arp(1), 0x0806)[:14 + 20], ("truncated",),
     dict(arp_op=1, src4=0, payload_off=-1, l4_off=14)),
    ("arp-fixed-part-cut", eth(arp(2), 0x0806)[:14 + 7], ("truncated",),
     dict(arp_op=0, l3_off=14, l4_off=-1, payload_off=-1)),
    ("ipv4-options", eth(ipv4(tcp(), 6, options=NOP * 3 + EOL), 0x0800), ("ip_options",),
     dict(ip_hlen=24, l4_off=38, sport=40000, dport=80, payload_off=58, payload_len=0)),
    ("ipv4-options-max", eth(ipv4(udp(PAY), 17, options=bytes([7, 39, 4]) + bytes(37)),
                             0x0800), ("ip_options",), dict(ip_hlen=60, l4_off=74)),
    ("ipv4-first-fragment", eth(ipv4(udp(bytes(100))[:32], 17, mf=True), 0x0800),
     ("fragment",), dict(udp_len=108, ip_frag_flags=1, frag_offset=0, l4_off=34,
                         payload_off=42, payload_len=24)),
    ("ipv4-middle-fragment", eth(ipv4(bytes(48), 17, mf=True, frag=6), 0x0800),
     ("fragment", "nonfirst_fragment"), dict(frag_offset=6, ip_frag_flags=1, l4_off=-1,
                                             sport=0, payload_off=34, payload_len=48,
                                             ip_proto=17)),
    ("ipv4-last-fragment", eth(ipv4(bytes(16), 6, frag=12), 0x0800, pad_to=60),
     ("fragment", "nonfirst_fragment", "padded"), dict(frag_offset=12, ip_frag_flags=0,
                                                       payload_len=16)),
    ("ipv4-total-len-lies-long", eth(ipv4(udp(PAY), 17, total_len=200), 0x0800),
     ("truncated", "len_mismatch"), dict(ip_len=200, payload_off=42, payload_len=5)),
    ("ipv4-total-len-lies-short", eth(ipv4(udp(PAY), 17, total_len=30), 0x0800),
     ("padded", "len_mismatch"), dict(ip_len=30, payload_off=42, payload_len=2)),
    ("ipv4-total-len-below-ihl", eth(ipv4(udp(PAY), 17, total_len=19), 0x0800),
     ("malformed",), dict(ip_len=19, l4_off=-1, payload_off=-1)),
    ("ipv4-ihl-below-5", eth(ipv4(udp(PAY), 17, ihl=4), 0x0800), ("malformed",),
     dict(ip_version=0, l3_off=14, payload_off=-1)),
    ("ipv4-wrong-version", eth(ipv4(udp(PAY), 17, version=6), 0x0800), ("malformed",),
     dict(ip_version=0)),
    ("ipv4-options-truncated", eth(ipv4(udp(PAY), 17, options=bytes(20)), 0x0800)[:14 + 30],
     ("truncated", "ip_options"), dict(ip_hlen=40, l4_off=-1)),
    ("ipv4-header-truncated", UDP4[:14 + 19], ("truncated",), dict(ip_version=0, l3_off=14)),
    ("ipv4-no-ip-bytes", UDP4[:14], ("truncated",), dict(ethertype=0x0800, l3_off=14)),
    ("ipv4-unsupported-proto", eth(ipv4(b"GREGRE", 47), 0x0800), ("unsupported",),
     dict(ip_proto=47, l4_off=-1, payload_off=34, payload_len=6)),
    ("udp-len-below-8", U4(udp(PAY, length=7)), ("malformed",),
     dict(udp_len=7, payload_off=-1, l4_off=34)),
    ("udp-len-too-long", U4(udp(PAY, length=100)), ("len_mismatch",),
     dict(udp_len=100, payload_len=5)),
    ("udp-len-short", U4(udp(PAY, length=10)), ("len_mismatch",),
     dict(udp_len=10, payload_len=2)),
    ("udp-header-past-datagram", eth(ipv4(udp(PAY), 17, total_len=24), 0x0800),
     ("malformed", "padded"), dict(sport=0, payload_off=-1, l4_off=-1)),
    # an L4 header cut off before its fixed part ends: nothing read, so no l4_off (0 is a real
    # port and ICMP type: the CLI prints null for them)
    ("udp-truncated-capture", UDP4[:40], ("truncated",), dict(sport=0, payload_off=-1,
                                                              l4_off=-1)),
    ("tcp-header-cut-by-capture", T4(tcp(options=TCP_ALL))[:14 + 20 + 19], ("truncated",),
     dict(sport=0, tcp_seq=0, tcp_hlen=0, l4_off=-1, payload_off=-1)),
    ("tcp-header-past-datagram", eth(ipv4(tcp(), 6, total_len=30), 0x0800),
     ("malformed", "padded"), dict(sport=0, dport=0, l4_off=-1)),
    # RFC 1858's tiny fragment: a first fragment that ends inside its TCP header
    ("tcp-tiny-first-fragment", eth(ipv4(tcp()[:12], 6, mf=True), 0x0800),
     ("fragment", "malformed"), dict(frag_offset=0, ip_frag_flags=1, sport=0, l4_off=-1)),
    ("tcp6-header-past-datagram", eth(ipv6(tcp(), 6, plen=10), 0x86DD),
     ("malformed", "padded"), dict(sport=0, l4_off=-1, ip_version=6)),
    # the fixed part is there, the options are cut: fields read, l4_off set
    ("tcp-options-cut-by-capture", T4(tcp(options=TCP_ALL))[:14 + 20 + 24], ("truncated",
                                                                             "tcp_options"),
     dict(sport=40000, dport=80, tcp_hlen=40, tcp_mss=1400, l4_off=34, payload_off=-1)),
    ("udp-payload-truncated", UDP4[:44], ("truncated",),
     dict(sport=1111, payload_off=42, payload_len=2)),
    ("udp6", eth(ipv6(udp(PAY, 53, 5353), 17, tc=0xAB, flow=0x12345, hlim=3), 0x86DD), (),
     dict(ip_version=6, tos=0xAB, flow_label=0x12345, ttl=3, ip_len=53, ip_hlen=40,
          src6=ip6("fd00::1"), dst6=ip6("fd00::2"), sport=53, dport=5353, l4_off=54,
          payload_off=62, payload_len=5, ip_proto=17)),
    ("ipv6-plen-lies-long", eth(ipv6(udp(PAY), 17, plen=500), 0x86DD),
     ("truncated", "len_mismatch"), dict(ip_len=540, payload_len=5)),
    ("ipv6-plen-lies-short", eth(ipv6(udp(PAY), 17, plen=10), 0x86DD),
     ("padded", "len_mismatch"), dict(ip_len=50, payload_len=2)),
    ("ipv6-plen-saturates", eth(ipv6(udp(PAY), 17, plen=65535), 0x86DD),
     ("truncated", "len_mismatch"), dict(ip_len=65535)),
    ("ipv6-wrong-version", eth(ipv6(udp(PAY), 17, version=4), 0x86DD), ("malformed",),
     dict(ip_version=0)),
    ("ipv6-truncated", eth(ipv6(udp(PAY), 17), 0x86DD)[:14 + 39], ("truncated",),
     dict(ip_version=0)),
    ("icmp-echo", eth(ipv4(icmp(8, 0), 1), 0x0800), (),
     dict(icmp_type=8, icmp_code=0, l4_off=34, payload_off=42, payload_len=4)),
    ("icmp-unreachable", eth(ipv4(icmp(3, 3, payload=bytes(28)), 1), 0x0800), (),
     dict(icmp_type=3, icmp_code=3, payload_len=28)),
    ("icmp-truncated", eth(ipv4(icmp(8, 0), 1), 0x0800)[:14 + 20 + 6], ("truncated",),
     dict(icmp_type=0, payload_off=-1, l4_off=-1)),
    ("icmp-past-datagram", eth(ipv4(icmp(8, 0), 1, total_len=26), 0x0800),
     ("malformed", "padded"), dict(icmp_type=0, payload_off=-1, l4_off=-1)),
    ("icmp6-echo", eth(ipv6(icmp(128, 0), 58, hlim=255), 0x86DD), (),
     dict(icmp_type=128, icmp_code=0, ip_proto=58, ttl=255)),
    ("icmp6-ns", eth(ipv6(icmp(135, 0, rest=bytes(4), payload=ip6("fd00::9")), 58), 0x86DD),
     (), dict(icmp_type=135, payload_len=16)),
    ("llc", llc_frame(b"x" * 10), ("llc",),
     dict(ethertype=0, payload_off=14, payload_len=13, l3_off=-1)),
    ("llc-padded", llc_frame(b"x" * 10, pad_to=60), ("llc", "padded"),
     dict(payload_off=14, payload_len=13)),
    ("llc-length-lies", llc_frame(b"x" * 10, length=100, pad_to=60), ("llc", "truncated"),
     dict(payload_off=14, payload_len=46)),
    ("llc-length-1500", llc_frame(b"x" * 10, length=1500), ("llc", "truncated"),
     dict(payload_len=13)),
    ("ethertype-1501-1535", eth(b"abc", 0x05FF), ("malformed",),
     dict(ethertype=0, payload_off=-1)),
    # 802.1Q keeps 802.3's Length/Type field: behind a tag a value up to 1500 is a length
    ("llc-vlan", eth(b"\x42\x42\x03" + b"x" * 35, 30, tags=[(0x8100, 8, 3)]),
     ("vlan", "llc", "padded"),
     dict(ethertype=0, vlan_id0=8, vlan_pcp0=3, vlan_tpid=0x8100, payload_off=18,
          payload_len=30, l3_off=-1)),
    ("llc-qinq-length-lies", eth(b"\xaa\xaa\x03" + bytes(5) + b"x" * 4, 200,
                                 tags=[(0x88A8, 8, 0), (0x8100, 9, 0)]),
     ("vlan", "qinq", "llc", "truncated"),
     dict(ethertype=0, vlan_id0=8, vlan_id1=9, payload_off=22, payload_len=12)),
    ("llc-vlan-length-0", eth(b"", 0, tags=[(0x8100, 7, 0)], pad_to=60), ("vlan", "llc",
                                                                           "padded"),
     dict(ethertype=0, payload_off=18, payload_len=0)),
    ("vlan-ethertype-1501-1535", eth(b"abc", 0x05F0, tags=[(0x8100, 5, 0)]),
     ("vlan", "malformed"), dict(ethertype=0, vlan_id0=5, payload_off=-1)),
    ("ethertype-0x0600", eth(b"abc", 0x0600), ("unsupported",),
     dict(ethertype=0x0600, payload_off=14, payload_len=3)),
    ("lldp", eth(b"\x02\x07" + bytes(20), 0x88CC), ("unsupported",),
     dict(ethertype=0x88CC, payload_off=14, payload_len=22, l3_off=-1)),
    ("empty", b"", ("truncated",), dict(caplen=0, ethertype=0)),
    ("runt", UDP4[:13], ("truncated",), dict(caplen=13)),
]

# --- TCP -------------------------------------------------------------------------------------------
CASES += [
    ("tcp-all-options", T4(tcp(b"data", 1, 2, 0xFFFFFFFF, 0x80000000,
                               N.TCP_SYN | N.TCP_ECE | N.TCP_CWR | N.TCP_NS, 29200, TCP_ALL))[:],
     ("tcp_options",), dict(
         sport=1, dport=2, tcp_seq=0xFFFFFFFF, tcp_ack=0x80000000, tcp_flags=0x1C2,
         tcp_window=29200, tcp_hlen=40, tcp_mss=1400, tcp_wscale=9, tcp_tsval=0xDEADBEEF,
         tcp_tsecr=0x01020304, tcp_opts=R.TO_MSS | R.TO_SACK_PERM | R.TO_TIMESTAMP | R.TO_WSCALE,
         l4_csum=0xBEEF, payload_off=74, payload_len=4, ip_proto=6)),
    ("tcp-sack", T4(tcp(b"", options=NOP + NOP + opt_sack(((1, 2), (3, 4), (5, 6))))),
     ("tcp_options",), dict(tcp_opts=R.TO_SACK, tcp_hlen=48)),
    ("tcp-eol-stops-walk", T4(tcp(options=opt_mss(1) + EOL + bytes([2, 4, 9, 9]))),
     ("tcp_options",), dict(tcp_opts=R.TO_MSS, tcp_mss=1)),
    ("tcp-no-options-flags", T4(tcp(b"x", flags=N.TCP_ACK | N.TCP_PSH | N.TCP_FIN | N.TCP_URG)),
     (), dict(tcp_flags=0x39, tcp_hlen=20, tcp_opts=0, payload_len=1)),
    ("tcp-doff-below-5", T4(tcp(b"abcd", doff=4)), ("malformed",),
     dict(tcp_hlen=16, sport=40000, payload_off=-1)),
    ("tcp-option-len-0", T4(tcp(options=bytes([8, 0]) + opt_mss(5))), ("tcp_options", "malformed"),
     dict(tcp_opts=0, payload_off=62)),
    ("tcp-option-len-1", T4(tcp(options=bytes([3, 1, 0, 0]))), ("tcp_options", "malformed"),
     dict(tcp_opts=0)),
    ("tcp-option-past-header", T4(tcp(options=bytes([1, 1, 8, 10]))),
     ("tcp_options", "malformed"), dict(tcp_opts=0, payload_off=58)),
    ("tcp-option-len-byte-past-header", T4(tcp(options=NOP * 3 + bytes([8]))),
     ("tcp_options", "malformed"), dict(tcp_opts=0)),
    ("tcp-mss-wrong-length", T4(tcp(options=bytes([2, 5, 1, 1, 1]) + NOP * 3 + opt_ts(7, 8))),
     ("tcp_options", "malformed"), dict(tcp_opts=R.TO_TIMESTAMP, tcp_tsval=7, tcp_mss=0)),
    ("tcp-sack-bad-length", T4(tcp(options=bytes([5, 6, 0, 0, 0, 0]) + NOP * 2)),
     ("tcp_options", "malformed"), dict(tcp_opts=0)),
    ("tcp-unknown-option", T4(tcp(options=bytes([30, 6, 1, 2, 3, 4]) + opt_ws(3) + NOP)),
     ("tcp_options",), dict(tcp_opts=R.TO_WSCALE, tcp_wscale=3)),
    ("tcp-doff-15", T4(tcp(options=opt_ts() + NOP * 30)), ("tcp_options",),
     dict(tcp_hlen=60, tcp_opts=R.TO_TIMESTAMP)),
    ("tcp-header-past-capture", T4(tcp(options=opt_mss(999) + opt_ts(5, 6)))[:34 + 28],
     ("truncated", "tcp_options"), dict(tcp_opts=R.TO_MSS, tcp_mss=999, payload_off=-1,
                                        tcp_hlen=36)),
    ("tcp-doff-past-datagram", T4(tcp(b"abcdefgh", doff=8)), ("tcp_options", "malformed"),
     dict(tcp_hlen=32, payload_off=-1)),
    ("tcp-doff-past-capture", eth(ipv4(tcp(b"", doff=15), 6, total_len=60), 0x0800),
     ("tcp_options", "truncated"), dict(tcp_hlen=60, payload_off=-1)),
    ("tcp6", eth(ipv6(tcp(b"zz", 443, 51000, 7, 8, N.TCP_ACK, 100, opt_ts(1, 2) + NOP * 2), 6),
                 0x86DD), ("tcp_options",),
     dict(sport=443, dport=51000, tcp_tsval=1, tcp_tsecr=2, ip_proto=6, payload_len=2)),
]

# --- IPv6 extension headers ---------------------------------------------------------------------------
def _v6chain(kinds, final=17, sizes=None, payload=None, frag=None):
    if frag is not None:
        nh0, hdrs = (44, ext(44, final, frag_offset=frag[0], m=frag[1]))
    else:
        nh0, hdrs = chain(kinds, final, sizes)
    body = udp(PAY) if payload is None else payload
    return eth(ipv6(hdrs + body, nh0), 0x86DD)


CASES += [
    ("ipv6-hop-by-hop", _v6chain([0]), ("ipv6_ext",),
     dict(ext_count=1, ip_hlen=48, ip_proto=17, l4_off=62, sport=1234)),
    ("ipv6-hop-by-hop-24", _v6chain([0], sizes=[24]), ("ipv6_ext",),
     dict(ext_count=1, ip_hlen=64)),
    ("ipv6-routing", _v6chain([43], sizes=[24]), ("ipv6_ext",), dict(ip_hlen=64)),
    ("ipv6-dstopts", _v6chain([60]), ("ipv6_ext",), dict(ext_count=1)),
    ("ipv6-ah", _v6chain([51], sizes=[12]), ("ipv6_ext",), dict(ip_hlen=52, l4_off=66)),
    ("ipv6-ah-24", _v6chain([51], sizes=[24]), ("ipv6_ext",), dict(ip_hlen=64)),
    ("ipv6-fragment-first", _v6chain(None, frag=(0, True), payload=udp(bytes(40))[:24]),
     ("ipv6_ext", "fragment"), dict(ip_frag_flags=1, frag_offset=0, ip_id=0xABCDEF01,
                                    sport=1234, udp_len=48, l4_off=62, payload_len=16)),
    ("ipv6-fragment-nonfirst", _v6chain(None, frag=(185, False), payload=bytes(30)),
     ("ipv6_ext", "fragment", "nonfirst_fragment"),
     dict(frag_offset=185, ip_frag_flags=0, ip_proto=17, l4_off=-1, payload_off=62,
          payload_len=30, sport=0)),
    ("ipv6-atomic-fragment", _v6chain(None, frag=(0, False)), ("ipv6_ext",),
     dict(ip_id=0xABCDEF01, sport=1234)),
    ("ipv6-chain", _v6chain([0, 60, 43, 51, 60], final=6, sizes=[8, 16, 24, 12, 8],
                            payload=tcp(b"p")), ("ipv6_ext",),
     dict(ext_count=5, ip_hlen=40 + 68, ip_proto=6, tcp_seq=1000, payload_len=1)),
    ("ipv6-chain-8", _v6chain([60] * 8), ("ipv6_ext",), dict(ext_count=8, sport=1234)),
    ("ipv6-chain-9", _v6chain([60] * 9), ("ipv6_ext", "ext_chain_limit"),
     dict(ext_count=8, ip_proto=60, ip_hlen=40 + 64, sport=0, l4_off=-1, payload_off=-1)),
    ("ipv6-ext-unsupported-upper", _v6chain([0], final=50, payload=bytes(12)),
     ("ipv6_ext", "unsupported"), dict(ip_proto=50, payload_off=62, payload_len=12)),
    ("ipv6-no-next-header", _v6chain([60], final=59, payload=b""),
     ("ipv6_ext", "unsupported"), dict(ip_proto=59, payload_len=0)),
    ("ipv6-ext-past-datagram",
     eth(ipv6(ext(0, 17, 8, hdr_len=2) + udp(PAY), 0), 0x86DD),
     ("malformed",), dict(ext_count=0, ip_proto=0, payload_off=-1)),
    ("ipv6-ext-past-capture", _v6chain([0], sizes=[32])[:14 + 40 + 20],
     ("truncated",), dict(ext_count=0, ip_proto=0, ip_hlen=40)),
    ("ipv6-ext-len-byte-missing", _v6chain([0])[:14 + 41], ("truncated",), dict(ext_count=0)),
    ("ipv6-fragment-header-cut", _v6chain(None, frag=(1, False))[:14 + 40 + 7],
     ("truncated",), dict(ext_count=0, frag_offset=0)),
]


@pytest.mark.parametrize("name,frame,flag_names,fields", CASES, ids=[c[0] for c in CASES])
def test_handcrafted_frames(name, frame, flag_names, fields):
    got = parsed(frame)
    assert R.flag_names(got["flags"]) == R.flag_names(flags_of(*flag_names)), name
    for k, v in fields.items():
        assert got[k] == v, f"{name}: {k} = {got[k]!r}, expected {v!r}"


def test_cases_cover_every_flag():
    seen = 0
    for _, _, names, _ in CASES:
        seen |= flags_of(*names)
    assert seen == sum(R.FLAG_NAMES), R.flag_names(sum(R.FLAG_NAMES) & ~seen)


# --- record reset ---------------------------------------------------------------------------------
def test_reset_writes_every_byte():
    recs = R.new_records(1)
    recs.view(np.uint8)[:] = 0xFF
    parse_frame(np.zeros(4, np.uint8), 0, 0, recs[0])
    want = N.default_record(0)
    want["flags"] = R.F_TRUNCATED
    assert N.record_to_dict(recs[0]) == want


def test_reused_record_keeps_nothing_from_the_previous_packet():
    frames = [c[1] for c in CASES]
    recs = R.new_records(1)
    for a in frames:
        for b in (frames[0], frames[17], frames[-1], frames[40]):
            parse_bytes(a, recs)
            parse_bytes(b, recs)
            assert recs.tobytes() == parse_bytes(b).tobytes()


# --- caller mistakes --------------------------------------------------------------------------------
def test_caller_lengths_are_clamped_to_the_array():
    buf = np.frombuffer(UDP4, np.uint8)
    recs = R.new_records(1)
    assert parse_frame(buf, 0, 10_000, recs[0]) == 42
    assert recs[0]["caplen"] == len(UDP4) and recs[0]["flags"] & R.F_TRUNCATED
    parse_frame(buf, 30, 10_000, recs[0])
    assert recs[0]["caplen"] == len(UDP4) - 30 and recs[0]["flags"] & R.F_TRUNCATED
    for base, caplen in ((len(UDP4) + 1, 5), (-3, 5), (0, -7), (len(UDP4), 0)):
        assert parse_frame(buf, base, caplen, recs[0]) == -1
        assert recs[0]["flags"] & R.F_TRUNCATED and recs[0]["ethertype"] == 0


def test_long_frames_are_parsed_whole_and_only_a_non_ip_payload_saturates():
    # a 40000-byte UDP datagram that claims 65535 bytes: parsed over all it has (the offsets
    # stay small), truncated because the IP length says more was sent
    big = eth(ipv4(udp(bytes(40000)), 17, total_len=65535), 0x0800)
    got = parsed(big)
    assert got["caplen"] == len(big) and got["flags"] & R.F_TRUNCATED
    assert got["payload_off"] == 42 and got["payload_len"] == 40000
    # loopback's MTU: a 65535-byte IPv4 datagram in a 65549-byte frame, whole
    whole = eth(ipv4(udp(bytes(65535 - 28)), 17), 0x0800)
    got = parsed(whole)
    assert got["caplen"] == 65549 and got["flags"] == 0 and got["payload_len"] == 65535 - 28
    # an unsupported ethertype's payload is the rest of the frame: u2, saturated
    other = eth(bytes(100_000), 0x88B5)
    got = parsed(other)
    assert got["flags"] == R.F_UNSUPPORTED and got["payload_len"] == P.PAYLOAD_LEN_MAX
    # beyond pcap's largest record: the first MAX_CAPLEN bytes
    huge = eth(bytes(P.MAX_CAPLEN), 0x88B5)
    assert parsed(huge)["caplen"] == P.MAX_CAPLEN


def test_slot_constants_match_the_ring_layout():
    assert P.SLOT_HEADER_BYTES == L.SLOT_HEADER_BYTES
    assert L.slot_dtype(64).fields["cap_len"][1] == P.SLOT_CAP_LEN
    assert L.slot_dtype(64).fields["cap_len"][0] == np.dtype("<u4")


# --- bursts ----------------------------------------------------------------------------------------
FRAMES = [c[1] for c in CASES if len(c[1]) <= 256]


def _slot_array(frames, slot_size=256):
    slots = np.zeros(len(frames), dtype=L.slot_dtype(slot_size))
    for i, f in enumerate(frames):
        n = min(len(f), slot_size)
        slots[i]["cap_len"] = n
        slots[i]["wire_len"] = len(f)
        slots[i]["payload"][:n] = np.frombuffer(f[:n], np.uint8)
    return slots


def test_parse_slots_on_a_slot_array():
    slots = _slot_array(FRAMES)
    recs = parse_slot_array(slots)
    assert len(recs) == len(FRAMES)
    for f, r in zip(FRAMES, recs):
        assert N.record_to_dict(r) == N.naive_parse(f)
    # a window in the middle, no wrapping (capacity 0), count clamped to the array
    recs2 = R.new_records(len(FRAMES))
    sb = slots.view(np.uint8).reshape(-1)
    assert parse_slots(sb, slots.dtype.itemsize, 256, 5, 1000, 0, recs2) == len(FRAMES) - 5
    assert recs2[:len(FRAMES) - 5].tobytes() == recs[5:].tobytes()


def test_parse_slots_wraps_around_a_ring_sized_array():
    slots = _slot_array(FRAMES[:16])
    sb = slots.view(np.uint8).reshape(-1)
    recs = R.new_records(8)
    first = 16 * 1000 + 12                          # free-running cursor
    assert parse_slots(sb, slots.dtype.itemsize, 256, first, 8, 16, recs) == 8
    for i in range(8):
        assert N.record_to_dict(recs[i]) == N.naive_parse(FRAMES[(12 + i) % 16])


def test_lying_cap_len_is_clamped_to_the_slot_and_flagged():
    frame = eth(ipv4(udp(bytes(60)), 17), 0x0800)  # 102 bytes
    slots = _slot_array([frame, frame, UDP4], slot_size=64)
    slots[0]["cap_len"] = 5000
    slots[1]["cap_len"] = 0xFFFFFFFF
    recs = parse_slot_array(slots)
    for r in recs[:2]:
        assert r["caplen"] == 64 and r["flags"] & R.F_TRUNCATED and r["payload_len"] == 22
    assert N.record_to_dict(recs[2]) == N.naive_parse(UDP4)


def test_parse_slots_refuses_inconsistent_geometry():
    slots = _slot_array(FRAMES[:8])
    sb = slots.view(np.uint8).reshape(-1)
    st = slots.dtype.itemsize
    recs = R.new_records(8)
    assert parse_slots(sb, st, 256, 0, 8, 16, recs) == 0      # capacity beyond the array
    assert parse_slots(sb, st, 256, 0, 8, 6, recs) == 0       # not a power of two
    assert parse_slots(sb, st, st, 0, 8, 8, recs) == 0        # slot_size beyond the stride
    assert parse_slots(sb, 0, 256, 0, 8, 8, recs) == 0
    assert parse_slots(sb, st, 256, 9, 8, 0, recs) == 0       # past the array's end
    assert parse_slots(sb, st, 256, -1, 8, 0, recs) == 0
    assert parse_slots(sb, st, 256, 0, 8, 8, recs) == 8


def test_parse_slots_zero_copy_on_a_live_ring(ring_name):
    from shm import Ring
    from shm import kernels as K

    ring = Ring.create(ring_name, slots=16, slot_size=256, shm=True)
    try:
        with ring.consumer() as c, ring.producer() as p:
            cons_view = Ring.open(ring_name)                  # read-only slot mapping
            recs = R.new_records(16)
            seen = []
            for rnd in range(4):                              # 4 rounds of 12: wraps the ring
                batch = [FRAMES[(rnd * 12 + i) % len(FRAMES)] for i in range(12)]
                assert p.publish(batch) == 12
                k = K.peek(c.ctrl, c.cstate, 16)
                assert k == 12
                n = parse_slots(cons_view.slot_bytes, ring.slot_stride, ring.slot_size,
                                c.cstate[K.CS_CURSOR], k, ring.capacity, recs)
                assert n == 12
                for i in range(k):
                    assert N.record_to_dict(recs[i]) == N.naive_parse(batch[i])
                seen.append(int(c.cstate[K.CS_CURSOR]))
                assert K.release(c.ctrl, c.cstate, k) == k
            assert seen == [0, 12, 24, 36]
            assert not cons_view.slot_bytes.flags.writeable
            cons_view.close()
    finally:
        ring.close()


def test_pcap_round_trip_parses_like_the_frames():
    pcap = pytest.importorskip("parsers.pcap")
    import tempfile
    slots = _slot_array(FRAMES)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "x.pcap")
        pcap.write_pcap(path, slots)
        cap = pcap.read_capture(path, slot_size=256)
    assert cap.error is None and cap.count == len(FRAMES)
    recs = parse_slot_array(cap.slots[:cap.count])
    for f, r in zip(FRAMES, recs):
        assert N.record_to_dict(r) == N.naive_parse(f)


# --- zero allocation -------------------------------------------------------------------------------
NRT_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[1] + "/tests")
    import numpy as np
    from numba import njit
    from numba.core.runtime import rtsys
    from parsers import record as R
    from parsers.l2l4 import parse_slots
    from test_parsers import FRAMES, _slot_array

    @njit
    def loop(sb, stride, size, cap, recs, rounds):
        acc = 0
        for r in range(rounds):
            n = parse_slots(sb, stride, size, r * 7, recs.shape[0], cap, recs)
            for i in range(n):
                acc += recs[i].payload_len + recs[i].flags
        return acc

    slots = _slot_array(FRAMES[:32])
    sb = slots.view(np.uint8).reshape(-1)
    recs = R.new_records(32)
    def allocs(rounds):
        before = rtsys.get_allocation_stats()
        loop(sb, slots.dtype.itemsize, 256, 32, recs, rounds)
        after = rtsys.get_allocation_stats()
        return after.alloc - before.alloc, after.free - before.free

    loop(sb, slots.dtype.itemsize, 256, 32, recs, 2)   # compile (starts the NRT), first touch
    short, long = allocs(10), allocs(20000)
    # the call itself may box/unbox (a constant); anything per burst shows up as the difference
    print(long[0] - short[0], long[1] - short[1], short[0])
""")


def test_parse_loop_makes_no_nrt_allocations():
    env = dict(os.environ, NUMBA_NRT_STATS="1")          # counters only: cached code is fine
    out = subprocess.run([sys.executable, "-c", NRT_SCRIPT, str(ROOT)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    alloc, free, per_call = out.stdout.split()
    assert (alloc, free) == ("0", "0"), out.stdout
    assert int(per_call) <= 4, out.stdout
