"""The parsed-packet record: one table defines every field; dtype and C struct derive from it.

``parse_frame`` (``parsers.l2l4``) fills one record per frame.  Records live in preallocated
numpy structured arrays (``new_records(n)``) so a burst of N slots parses into N records with no
allocation.  Offsets are from the start of the frame (the slot payload); -1 means "absent".
Addresses keep network byte order semantics: IPv4 as a host-order u32 (10.0.0.1 is 0x0a000001),
IPv6 as the 16 bytes as they appear on the wire.

``python -m parsers.record --doc`` prints the table; ``--write-header`` writes
``parsers/include/hugering_record.h`` for the C reference kernels (a test checks it is current).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

# flags: why a record is incomplete or special.  A parser never raises; it sets one of these.
F_TRUNCATED = 1 << 0         # a header or a length field runs past the captured bytes
F_MALFORMED = 1 << 1         # a field has an impossible value (IHL < 5, TCP data offset < 5 ...)
F_UNSUPPORTED = 1 << 2       # an ethertype / protocol this parser does not decode further
F_LLC = 1 << 3               # IEEE 802.3 length field + LLC instead of an Ethernet II type
F_VLAN = 1 << 4              # at least one 802.1Q / 802.1ad tag
F_QINQ = 1 << 5              # two tags
F_VLAN_TOO_DEEP = 1 << 6     # more than two tags (the rest is not decoded)
F_FRAGMENT = 1 << 7          # IP fragment (MF set or offset != 0)
F_NONFIRST_FRAGMENT = 1 << 8  # offset != 0: no L4 header in this frame
F_IP_OPTIONS = 1 << 9        # IPv4 IHL > 5
F_IPV6_EXT = 1 << 10         # IPv6 extension headers were walked
F_EXT_CHAIN_LIMIT = 1 << 11  # the IPv6 extension chain was longer than the bound
F_LEN_MISMATCH = 1 << 12     # a length field disagrees with what was captured (see docs)
F_TCP_OPTIONS = 1 << 13      # TCP data offset > 5
F_PADDED = 1 << 14           # bytes after the IP datagram (Ethernet padding)

FLAG_NAMES = {
    F_TRUNCATED: "truncated", F_MALFORMED: "malformed", F_UNSUPPORTED: "unsupported",
    F_LLC: "llc", F_VLAN: "vlan", F_QINQ: "qinq", F_VLAN_TOO_DEEP: "vlan_too_deep",
    F_FRAGMENT: "fragment", F_NONFIRST_FRAGMENT: "nonfirst_fragment",
    F_IP_OPTIONS: "ip_options", F_IPV6_EXT: "ipv6_ext", F_EXT_CHAIN_LIMIT: "ext_chain_limit",
    F_LEN_MISMATCH: "len_mismatch", F_TCP_OPTIONS: "tcp_options", F_PADDED: "padded",
}

# tcp_opts bits: which options were present
TO_MSS, TO_WSCALE, TO_SACK_PERM, TO_TIMESTAMP, TO_SACK = 1, 2, 4, 8, 16

# (name, numpy type, meaning) -- offsets follow in order with natural alignment (checked)
FIELDS = [
    ("flags", "u4", "F_* bits: truncated, malformed, unsupported, llc, vlan, qinq, fragment ..."),
    ("caplen", "u4", "bytes parsed (the slot's captured length, clamped to the slot)"),
    ("l3_off", "i2", "offset of the network header (-1 none)"),
    ("l4_off", "i2", "offset of the transport / ICMP / ARP header (-1 none, or cut off "
                     "before its fixed part ends: its fields are then 0, not read)"),
    ("payload_off", "i2", "offset of the L4 payload (-1 none)"),
    ("payload_len", "u2", "payload bytes captured (IP/UDP lengths bound it; saturates at 65535)"),
    ("ethertype", "u2", "innermost ethertype (after VLAN tags); 0 for 802.3/LLC"),
    ("vlan_count", "u1", "VLAN tags seen (0..2 decoded)"),
    ("ip_version", "u1", "4, 6, or 0 when there is no IP header"),
    ("vlan_tpid", "u2", "TPID of the outer tag (0x8100 or 0x88a8)"),
    ("vlan_id0", "u2", "VLAN id of the outer tag"),
    ("vlan_id1", "u2", "VLAN id of the inner tag (QinQ)"),
    ("vlan_pcp0", "u1", "priority of the outer tag"),
    ("vlan_pcp1", "u1", "priority of the inner tag"),
    ("ip_proto", "u1", "upper-layer protocol (after IPv6 extension headers)"),
    ("ttl", "u1", "IPv4 TTL / IPv6 hop limit"),
    ("ip_hlen", "u2", "IPv4 header bytes, or IPv6 40 + extension header bytes"),
    ("ip_len", "u2", "IPv4 total length / IPv6 40 + payload length"),
    ("tos", "u1", "IPv4 TOS / IPv6 traffic class"),
    ("ip_frag_flags", "u1", "IPv4: bit 1 DF, bit 0 MF; IPv6 fragment header: bit 0 M"),
    ("frag_offset", "u2", "fragment offset in 8-byte units"),
    ("ext_count", "u1", "IPv6 extension headers walked"),
    ("icmp_type", "u1", "ICMP / ICMPv6 type"),
    ("ip_id", "u4", "IPv4 identification / IPv6 fragment identification"),
    ("flow_label", "u4", "IPv6 flow label"),
    ("icmp_code", "u1", "ICMP / ICMPv6 code"),
    ("tcp_opts", "u1", "TO_* bits: MSS, window scale, SACK-permitted, timestamps, SACK"),
    ("sport", "u2", "UDP/TCP source port"),
    ("dport", "u2", "UDP/TCP destination port"),
    ("udp_len", "u2", "UDP length field"),
    ("src4", "u4", "IPv4 source (or ARP sender protocol address)"),
    ("dst4", "u4", "IPv4 destination (or ARP target protocol address)"),
    ("src6", "(16,)u1", "IPv6 source address bytes"),
    ("dst6", "(16,)u1", "IPv6 destination address bytes"),
    ("tcp_flags", "u2", "TCP flags, 9 bits (NS CWR ECE URG ACK PSH RST SYN FIN)"),
    ("tcp_window", "u2", "TCP window (unscaled)"),
    ("tcp_seq", "u4", "TCP sequence number"),
    ("tcp_ack", "u4", "TCP acknowledgement number"),
    ("tcp_hlen", "u1", "TCP header bytes (data offset * 4)"),
    ("tcp_wscale", "u1", "window scale shift (valid when TO_WSCALE)"),
    ("tcp_mss", "u2", "MSS option (valid when TO_MSS)"),
    ("arp_op", "u2", "ARP operation (1 request, 2 reply)"),
    ("l4_csum", "u2", "UDP/TCP/ICMP checksum field as captured (not verified)"),
    ("tcp_tsval", "u4", "timestamp option value (valid when TO_TIMESTAMP)"),
    ("tcp_tsecr", "u4", "timestamp option echo reply"),
]


def _layout():
    names, formats, offsets, pos = [], [], [], 0
    for name, typ, _ in FIELDS:
        dt = np.dtype(typ)
        align = dt.base.itemsize
        if pos % align:
            raise AssertionError(f"record field {name} at {pos} is not {align}-aligned")
        names.append(name)
        formats.append(typ)
        offsets.append(pos)
        pos += dt.itemsize
    size = (pos + 7) // 8 * 8
    return names, formats, offsets, size


_NAMES, _FORMATS, _OFFSETS, RECORD_BYTES = _layout()
RECORD_DTYPE = np.dtype({"names": _NAMES, "formats": _FORMATS, "offsets": _OFFSETS,
                         "itemsize": RECORD_BYTES})
OFFSETS = dict(zip(_NAMES, _OFFSETS))


def new_records(n: int) -> np.ndarray:
    """A zeroed array of ``n`` parse records (allocate once, reuse for every burst)."""
    return np.zeros(n, dtype=RECORD_DTYPE)


def flag_names(flags: int) -> list[str]:
    return [name for bit, name in FLAG_NAMES.items() if flags & bit]


def doc_table() -> str:
    rows = [f"{'field':<14} {'offset':>6} {'type':<8} meaning"]
    for (name, typ, meaning), off in zip(FIELDS, _OFFSETS):
        rows.append(f"{name:<14} {off:>6} {typ:<8} {meaning}")
    rows.append(f"(record size {RECORD_BYTES} bytes)")
    return "\n".join(rows)


_C = {"u1": "uint8_t", "u2": "uint16_t", "u4": "uint32_t", "i2": "int16_t", "(16,)u1": "uint8_t"}


def c_header() -> str:
    out = ["/* GENERATED by `python -m parsers.record --write-header` from parsers/record.py.",
           " * Do not edit: tests fail when this file and the Python table disagree. */",
           "#ifndef HUGERING_RECORD_H", "#define HUGERING_RECORD_H", "#include <stdint.h>",
           "#include <stddef.h>", ""]
    for bit, name in FLAG_NAMES.items():
        out.append(f"#define HR_F_{name.upper()} 0x{bit:x}u")
    out += ["", "typedef struct hr_record {"]
    for (name, typ, meaning), _ in zip(FIELDS, _OFFSETS):
        arr = "[16]" if typ.startswith("(16,)") else ""
        out.append(f"    {_C[typ]} {name}{arr};  /* {meaning} */")
    used = _OFFSETS[-1] + np.dtype(FIELDS[-1][1]).itemsize
    if used < RECORD_BYTES:
        out.append(f"    uint8_t _pad[{RECORD_BYTES - used}];")
    out.append("} hr_record;")
    out.append(f'_Static_assert(sizeof(hr_record) == {RECORD_BYTES}, "hr_record size");')
    for name, off in zip(_NAMES, _OFFSETS):
        out.append(f'_Static_assert(offsetof(hr_record, {name}) == {off}, "hr_record.{name}");')
    out += ["", "#endif /* HUGERING_RECORD_H */", ""]
    return "\n".join(out)


def header_path() -> Path:
    return Path(__file__).with_name("include") / "hugering_record.h"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--write-header"]:
        header_path().parent.mkdir(exist_ok=True)
        header_path().write_text(c_header())
        print(f"wrote {header_path()}")
    elif argv == ["--doc"]:
        print(doc_table())
    else:
        print("usage: python -m parsers.record --write-header | --doc", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
