"""An independent pure-Python reference for ``parsers.l2l4`` (stumpy's ``tests/naive.py`` idea),
and builders for the frames the tests feed both.

``naive_parse(frame) -> dict`` returns the record's fields by name (``src6``/``dst6`` as 16
bytes, everything else int).  It is written from the semantics in the docstring of
``parsers.l2l4`` — not from its code: the frame is cut to its captured bytes once and every
read is a ``struct.unpack_from`` on a ``bytes`` object limited to what the current layer may
read, so running off the end raises ``_Short`` instead of being checked by hand.
``record_to_dict(rec)`` turns a numpy record into the same shape for comparison.

The builders make real frames byte by byte (checksums included, so tshark and the kernel are
happy with them), with knobs to lie in every length field.
"""
from __future__ import annotations

import struct

from parsers import record as R

MAX_CAPLEN = 1 << 18        # pcap's largest record
PAYLOAD_LEN_MAX = 0xFFFF    # payload_len is a u2 and saturates
NAMES = [f[0] for f in R.FIELDS]
L2_FIELDS = ("ethertype", "vlan_count", "vlan_tpid", "vlan_id0", "vlan_id1", "vlan_pcp0",
             "vlan_pcp1", "l3_off")
L3_FIELDS = ("ip_version", "ip_proto", "ttl", "ip_hlen", "ip_len", "tos", "ip_frag_flags",
             "frag_offset", "ext_count", "ip_id", "flow_label", "src4", "dst4", "src6", "dst6",
             "arp_op")
# l4_off belongs to L4: it is set once the L4 header's fixed part is captured
L4_FIELDS = ("l4_off", "sport", "dport", "udp_len", "tcp_flags", "tcp_window", "tcp_seq",
             "tcp_ack", "tcp_hlen", "tcp_wscale", "tcp_mss", "tcp_opts", "tcp_tsval",
             "tcp_tsecr", "icmp_type", "icmp_code", "l4_csum", "payload_off")

VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
EXT_HEADERS = (0, 43, 44, 51, 60)


class _Short(Exception):
    """A read ran past the bytes the current layer may see."""


def _rd(fmt: str, data: bytes, at: int, limit: int):
    """struct.unpack_from on data[:limit] — the slice makes a read past ``limit`` fail."""
    try:
        return struct.unpack_from("!" + fmt, data[:limit], at)
    except struct.error:
        raise _Short from None


def default_record(caplen: int) -> dict:
    r = {n: 0 for n in NAMES}
    r.update(caplen=caplen, l3_off=-1, l4_off=-1, payload_off=-1, src6=bytes(16),
             dst6=bytes(16))
    return r


def record_to_dict(rec) -> dict:
    out = {}
    for n in NAMES:
        v = rec[n]
        out[n] = bytes(bytearray(v)) if n in ("src6", "dst6") else int(v)
    return out


def naive_parse(frame: bytes) -> dict:
    data = bytes(frame[:MAX_CAPLEN])
    cap = len(data)
    r = default_record(cap)
    fl = set()

    def done(payload_at=None, payload_end=None):
        if payload_at is not None:
            r["payload_off"] = payload_at
            r["payload_len"] = min(PAYLOAD_LEN_MAX, max(0, min(payload_end, cap) - payload_at))
        r["flags"] = sum(fl)
        return r

    # --- Ethernet ---
    try:
        (etype,) = _rd("H", data, 12, cap)
    except _Short:
        fl.add(R.F_TRUNCATED)
        return done()
    pos = 14

    def length_field(length):
        # 802.3: a Length/Type value below 0x0600 (after the addresses or after a VLAN tag)
        r["ethertype"] = 0
        if length > 1500:
            fl.add(R.F_MALFORMED)
            return done()
        fl.add(R.F_LLC)
        if length > cap - pos:
            fl.add(R.F_TRUNCATED)
        elif length < cap - pos:
            fl.add(R.F_PADDED)
        return done(pos, pos + length)

    if etype < 0x600:
        return length_field(etype)
    r["ethertype"] = etype
    # --- VLAN tags ---
    tags = []
    while r["ethertype"] in VLAN_TPIDS:
        if len(tags) == 2:
            fl.add(R.F_VLAN_TOO_DEEP)
            return done()
        try:
            tci, inner = _rd("HH", data, pos, cap)
        except _Short:
            fl.add(R.F_TRUNCATED)
            return done()
        if not tags:
            r["vlan_tpid"] = r["ethertype"]
        tags.append(tci)
        r[f"vlan_id{len(tags) - 1}"] = tci & 0xFFF
        r[f"vlan_pcp{len(tags) - 1}"] = tci >> 13
        r["vlan_count"] = len(tags)
        r["ethertype"] = inner
        fl.add(R.F_VLAN if len(tags) == 1 else R.F_QINQ)
        pos += 4
    et = r["ethertype"]
    if et < 0x600:
        return length_field(et)
    if et not in (0x0800, 0x86DD, 0x0806):
        fl.add(R.F_UNSUPPORTED)
        return done(pos, cap)
    l3 = pos
    r["l3_off"] = l3

    # --- ARP ---
    if et == 0x0806:
        try:
            htype, ptype, hln, pln, op = _rd("HHBBH", data, l3, cap)
        except _Short:
            fl.add(R.F_TRUNCATED)
            return done()
        r["l4_off"] = l3
        r["arp_op"] = op
        size = 8 + 2 * (hln + pln)
        if (htype, ptype, hln, pln) == (1, 0x0800, 6, 4):
            try:
                r["src4"], r["dst4"] = _rd("14x I 6x I", data, l3, cap)
            except _Short:
                fl.add(R.F_TRUNCATED)
                return done()
        else:
            fl.add(R.F_UNSUPPORTED)
            if l3 + size > cap:
                fl.add(R.F_TRUNCATED)
                return done()
        if l3 + size < cap:
            fl.add(R.F_PADDED)
        r["payload_off"] = l3 + size
        r["payload_len"] = 0
        r["flags"] = sum(fl)
        return r

    # --- IPv4 / IPv6 ---
    if et == 0x0800:
        try:
            vihl, tos, tot, ident, ff, ttl, proto, _, src, dst = _rd("BBHHHBBHII", data, l3, cap)
        except _Short:
            fl.add(R.F_TRUNCATED)
            return done()
        ihl = (vihl & 15) * 4
        if vihl >> 4 != 4 or ihl < 20:
            fl.add(R.F_MALFORMED)
            return done()
        r.update(ip_version=4, tos=tos, ip_len=tot, ip_hlen=ihl, ip_id=ident,
                 ip_frag_flags=ff >> 13, frag_offset=ff & 0x1FFF, ttl=ttl, ip_proto=proto,
                 src4=src, dst4=dst)
        if ihl > 20:
            fl.add(R.F_IP_OPTIONS)
        if ff & 0x2000 or ff & 0x1FFF:
            fl.add(R.F_FRAGMENT)
        if ff & 0x1FFF:
            fl.add(R.F_NONFIRST_FRAGMENT)
        if tot < ihl:
            fl.add(R.F_MALFORMED)
            return done()
        if l3 + ihl > cap:
            fl.add(R.F_TRUNCATED)
            return done()
        if l3 + tot > cap:
            fl.add(R.F_TRUNCATED)
        elif l3 + tot < cap:
            fl.add(R.F_PADDED)
        dgram_end = l3 + tot
        l4 = l3 + ihl
        proto = r["ip_proto"]
    else:
        try:
            w0, plen, nh, hlim, src6, dst6 = _rd("IHBB16s16s", data, l3, cap)
        except _Short:
            fl.add(R.F_TRUNCATED)
            return done()
        if w0 >> 28 != 6:
            fl.add(R.F_MALFORMED)
            return done()
        r.update(ip_version=6, tos=(w0 >> 20) & 0xFF, flow_label=w0 & 0xFFFFF,
                 ip_len=min(40 + plen, 0xFFFF), ttl=hlim, src6=src6, dst6=dst6)
        dgram_end = l3 + 40 + plen
        if dgram_end > cap:
            fl.add(R.F_TRUNCATED)
            limit, crossing = cap, R.F_TRUNCATED
        else:
            if dgram_end < cap:
                fl.add(R.F_PADDED)
            limit, crossing = dgram_end, R.F_MALFORMED
        at, n, stopped = l3 + 40, 0, False
        while nh in EXT_HEADERS:
            if n == 8:
                fl.add(R.F_EXT_CHAIN_LIMIT)
                stopped = True
                break
            try:
                if nh == 44:
                    nxt, _, fw, ident = _rd("BBHI", data, at, limit)
                    size = 8
                else:
                    nxt, hl = _rd("BB", data, at, limit)
                    size = (hl + 2) * 4 if nh == 51 else (hl + 1) * 8
                    if at + size > limit:
                        raise _Short
            except _Short:
                fl.add(crossing)
                stopped = True
                break
            was_fragment = nh == 44
            n += 1
            at += size
            nh = nxt
            if was_fragment:
                r.update(frag_offset=fw >> 3, ip_frag_flags=fw & 1, ip_id=ident)
                if fw & 0xFFF9:
                    fl.add(R.F_FRAGMENT)
                if fw >> 3:
                    fl.add(R.F_NONFIRST_FRAGMENT)
                    break           # what follows is fragment data
        r.update(ip_proto=nh, ext_count=n, ip_hlen=at - l3)
        if n:
            fl.add(R.F_IPV6_EXT)
        if stopped:
            return done()
        l4 = at
        proto = nh
    # --- L4 ---
    end = min(dgram_end, cap)
    if R.F_NONFIRST_FRAGMENT in fl:
        return done(l4, end)
    if proto not in (1, 6, 17, 58):
        fl.add(R.F_UNSUPPORTED)
        return done(l4, end)
    crossing = R.F_TRUNCATED if R.F_TRUNCATED in fl else R.F_MALFORMED
    # l4_off only once the L4 header's fixed part was read (a cut-off one: -1, fields 0)
    try:
        if proto == 17:
            sport, dport, ulen, csum = _rd("HHHH", data, l4, end)
            r.update(l4_off=l4, sport=sport, dport=dport, udp_len=ulen, l4_csum=csum)
            if ulen < 8:
                fl.add(R.F_MALFORMED)
                return done()
            if R.F_FRAGMENT not in fl and ulen != dgram_end - l4:
                fl.add(R.F_LEN_MISMATCH)
            return done(l4 + 8, min(end, l4 + ulen))
        if proto in (1, 58):
            typ, code, csum = _rd("BBH4x", data, l4, end)
            r.update(l4_off=l4, icmp_type=typ, icmp_code=code, l4_csum=csum)
            return done(l4 + 8, end)
        # TCP
        sport, dport, seq, ack, offx, fbits, win, csum = _rd("HHIIBBHH2x", data, l4, end)
    except _Short:
        fl.add(crossing)
        return done()
    hlen = (offx >> 4) * 4
    r.update(l4_off=l4, sport=sport, dport=dport, tcp_seq=seq, tcp_ack=ack, tcp_hlen=hlen,
             tcp_flags=((offx & 1) << 8) | fbits, tcp_window=win, l4_csum=csum)
    if hlen < 20:
        fl.add(R.F_MALFORMED)
        return done()
    if hlen > 20:
        fl.add(R.F_TCP_OPTIONS)
    header_whole = l4 + hlen <= end
    opts = data[l4 + 20:min(l4 + hlen, end)]
    _tcp_options(opts, header_whole, r, fl)
    if not header_whole:
        fl.add(crossing)
        return done()
    return done(l4 + hlen, end)


def _tcp_options(opts: bytes, header_whole: bool, r: dict, fl: set) -> None:
    found = 0
    i = 0
    while i < len(opts):
        kind = opts[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(opts):
            if header_whole:
                fl.add(R.F_MALFORMED)
            break
        ln = opts[i + 1]
        if ln < 2:
            fl.add(R.F_MALFORMED)
            break
        if i + ln > len(opts):
            if header_whole:
                fl.add(R.F_MALFORMED)
            break
        body = opts[i + 2:i + ln]
        want = {2: 2, 3: 1, 4: 0, 8: 8}.get(kind)
        if kind == 5:
            if ln >= 10 and (ln - 2) % 8 == 0:
                found |= R.TO_SACK
            else:
                fl.add(R.F_MALFORMED)
        elif want is not None:
            if len(body) != want:
                fl.add(R.F_MALFORMED)
            elif kind == 2:
                found |= R.TO_MSS
                (r["tcp_mss"],) = struct.unpack("!H", body)
            elif kind == 3:
                found |= R.TO_WSCALE
                r["tcp_wscale"] = body[0]
            elif kind == 4:
                found |= R.TO_SACK_PERM
            else:
                found |= R.TO_TIMESTAMP
                r["tcp_tsval"], r["tcp_tsecr"] = struct.unpack("!II", body)
        i += ln
    r["tcp_opts"] = found


# --- frame builders ------------------------------------------------------------------------------
MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")


def ip4(s: str) -> bytes:
    return bytes(int(x) for x in s.split("."))


def ip6(s: str) -> bytes:
    import ipaddress
    return ipaddress.IPv6Address(s).packed


def u32(b: bytes) -> int:
    return struct.unpack("!I", b)[0]


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def eth(payload: bytes, etype: int, dst: bytes = MAC_B, src: bytes = MAC_A,
        tags=(), pad_to: int = 0) -> bytes:
    """Ethernet II frame; ``tags`` is a list of (tpid, vid, pcp) outermost first."""
    hdr = dst + src
    for tpid, vid, pcp in tags:
        hdr += struct.pack("!HH", tpid, (pcp << 13) | vid)
    f = hdr + struct.pack("!H", etype) + payload
    return f + bytes(max(0, pad_to - len(f)))


def llc_frame(payload: bytes, length: int | None = None, pad_to: int = 0) -> bytes:
    body = b"\x42\x42\x03" + payload
    f = MAC_B + MAC_A + struct.pack("!H", len(body) if length is None else length) + body
    return f + bytes(max(0, pad_to - len(f)))


def arp(op: int = 1, spa: str = "10.0.0.1", tpa: str = "10.0.0.2", sha: bytes = MAC_A,
        tha: bytes = bytes(6), htype: int = 1, ptype: int = 0x0800, hlen: int = 6,
        plen: int = 4) -> bytes:
    if (hlen, plen) == (6, 4):
        addrs = sha + ip4(spa) + tha + ip4(tpa)
    else:
        addrs = bytes(range(2 * (hlen + plen)))
    return struct.pack("!HHBBH", htype, ptype, hlen, plen, op) + addrs


def ipv4(payload: bytes, proto: int, src: str = "10.0.0.1", dst: str = "10.0.0.2",
         ttl: int = 64, tos: int = 0, ident: int = 0x1234, df: bool = False,
         mf: bool = False, frag: int = 0, options: bytes = b"", total_len: int | None = None,
         ihl: int | None = None, version: int = 4, evil: bool = False) -> bytes:
    opts = options + bytes(-len(options) % 4)
    hl = 20 + len(opts)
    ihl = hl // 4 if ihl is None else ihl
    tot = hl + len(payload) if total_len is None else total_len
    ff = (0x8000 if evil else 0) | (0x4000 if df else 0) | (0x2000 if mf else 0) | frag
    h = struct.pack("!BBHHHBBH4s4s", (version << 4) | ihl, tos, tot, ident, ff, ttl, proto, 0,
                    ip4(src), ip4(dst)) + opts
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + payload


def ipv6(payload: bytes, nh: int, src: str = "fd00::1", dst: str = "fd00::2",
         hlim: int = 64, tc: int = 0, flow: int = 0, plen: int | None = None,
         version: int = 6) -> bytes:
    w0 = (version << 28) | (tc << 20) | flow
    pl = len(payload) if plen is None else plen
    return struct.pack("!IHBB", w0, pl, nh, hlim) + ip6(src) + ip6(dst) + payload


def ext(kind: int, nh: int, size: int = 8, frag_offset: int = 0, m: bool = False,
        ident: int = 0xABCDEF01, hdr_len: int | None = None) -> bytes:
    """One IPv6 extension header of ``size`` bytes (a multiple of 8; AH: of 4) followed by
    next-header ``nh``.  Fragment headers are always 8 bytes."""
    if kind == 44:
        return struct.pack("!BBHI", nh, 0, (frag_offset << 3) | int(m), ident)
    if kind == 51:
        hl = size // 4 - 2 if hdr_len is None else hdr_len
        return struct.pack("!BB", nh, hl) + bytes(range(2, size))[:size - 2]
    hl = size // 8 - 1 if hdr_len is None else hdr_len
    body = bytes(size - 2)
    if kind in (0, 60):                 # PadN option filling the header
        body = bytes([1, size - 4]) + bytes(size - 4)
    elif kind == 43:                    # type 4 (segment routing-ish), segments left 0
        body = bytes([4, 0]) + bytes(size - 4)
    return struct.pack("!BB", nh, hl) + body


def chain(kinds, final_nh: int, sizes=None) -> tuple[int, bytes]:
    """IPv6 extension chain: returns (first next-header value, bytes)."""
    out = b""
    kinds = list(kinds)
    for i, k in enumerate(kinds):
        nxt = kinds[i + 1] if i + 1 < len(kinds) else final_nh
        size = 8 if sizes is None else sizes[i]
        out += ext(k, nxt, size)
    return (kinds[0] if kinds else final_nh), out


def udp(payload: bytes, sport: int = 1234, dport: int = 5678, length: int | None = None,
        checksum: int = 0) -> bytes:
    ln = 8 + len(payload) if length is None else length
    return struct.pack("!HHHH", sport, dport, ln, checksum) + payload


TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK, TCP_URG, TCP_ECE, TCP_CWR, TCP_NS = \
    1, 2, 4, 8, 16, 32, 64, 128, 256


def tcp(payload: bytes = b"", sport: int = 40000, dport: int = 80, seq: int = 1000,
        ack: int = 0, flags: int = TCP_SYN, window: int = 65535, options: bytes = b"",
        doff: int | None = None, checksum: int = 0xBEEF, pad_options: bool = True) -> bytes:
    opts = options + (bytes(-len(options) % 4) if pad_options else b"")
    d = (20 + len(opts)) // 4 if doff is None else doff
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, (d << 4) | (flags >> 8),
                       flags & 0xFF, window, checksum, 0) + opts + payload


def opt_mss(v: int = 1460) -> bytes:
    return struct.pack("!BBH", 2, 4, v)


def opt_ws(shift: int = 7) -> bytes:
    return struct.pack("!BBB", 3, 3, shift)


def opt_sack_perm() -> bytes:
    return b"\x04\x02"


def opt_sack(blocks=((1, 2),)) -> bytes:
    return struct.pack("!BB", 5, 2 + 8 * len(blocks)) + b"".join(
        struct.pack("!II", a, b) for a, b in blocks)


def opt_ts(val: int = 0x01020304, ecr: int = 0x0A0B0C0D) -> bytes:
    return struct.pack("!BBII", 8, 10, val, ecr)


NOP, EOL = b"\x01", b"\x00"


def icmp(typ: int = 8, code: int = 0, rest: bytes = b"\x00\x01\x00\x01",
         payload: bytes = b"ping", checksum: int | None = None) -> bytes:
    body = struct.pack("!BBH", typ, code, 0) + rest + payload
    c = csum(body) if checksum is None else checksum
    return body[:2] + struct.pack("!H", c) + body[4:]


# --- frames of each kind, with the length below which they count as truncated -------------------
def required_len(frame: bytes) -> int:
    """Bytes of ``frame`` that must be captured for it not to be flagged truncated, for the
    well-formed frames the builders make: through the last length-delimited part (802.3
    length, IP datagram, ARP packet), else through the last decoded header."""
    (t,) = struct.unpack_from("!H", frame, 12)
    if t <= 1500:
        return 14 + t
    pos = 14
    while t in VLAN_TPIDS:
        if pos >= 14 + 8:               # a third tag: decoding stops before reading it
            return pos
        (t,) = struct.unpack_from("!H", frame, pos + 2)
        pos += 4
    if t == 0x0800:
        return pos + struct.unpack_from("!H", frame, pos + 2)[0]
    if t == 0x86DD:
        return pos + 40 + struct.unpack_from("!H", frame, pos + 4)[0]
    if t == 0x0806:
        hln, pln = frame[pos + 4], frame[pos + 5]
        return pos + 8 + 2 * (hln + pln)
    return pos
