"""L2–L4 header parsers: plain ``@njit`` functions over a flat ``uint8`` array.

Entry points
------------
``parse_frame(buf, base, caplen, rec) -> int``
    ``buf`` is a C-contiguous 1-D ``uint8`` array (read-only is fine).  Parse the frame whose first byte is ``buf[base]`` and whose captured bytes are
    ``buf[base : base + caplen]`` into ``rec`` (one element of a ``parsers.record.RECORD_DTYPE``
    array).  Returns the absolute index in ``buf`` of the first byte no parser decoded (the
    payload), or -1 when a header was truncated or malformed.  Never raises, never reads outside
    ``buf[base : base + caplen]`` (nor outside ``buf``: a ``caplen`` running past the array is
    clamped and flagged ``F_TRUNCATED``).
``parse_slots(slot_bytes, stride, slot_size, first, count, capacity, recs) -> int``
    The burst verb: parse ``count`` slots into ``recs[0:count]`` in place (zero-copy, no
    allocation).  Works on a live ring and on a slot array read from a pcap file, see its
    docstring.  ``parse_slot_array(slots, recs=None)`` is the plain-Python convenience for the
    latter.
``parse_frames(buf, bases, caplens, count, recs) -> int``
    Frames anywhere in one buffer (a capture file's bytes, packets longer than any slot).

Offset convention
-----------------
All offsets *inside* the parsers are absolute indices into ``buf`` so that a ring's slot area (one
flat array: frame ``i`` starts at ``slot * stride + 32``) is parsed where it lies, with no slice
and no copy.  The per-layer functions keep the design's shape ``parse_x(buf, off, end, rec)``:
``off`` is the absolute index of the layer's first byte and ``end`` the absolute index one past
the last byte this layer may read (``base + caplen``, or less when an enclosing length field
says the datagram ends earlier).  For a frame that starts at ``buf[0]`` these are exactly the
``(off, caplen)`` of the design.  Offsets *stored in the record* (``l3_off``, ``l4_off``,
``payload_off``) are relative to the frame start (``base``), as ``parsers.record`` documents.

Hot path
--------
``parse_slots`` and ``parse_frame`` take the array's data pointer once and run the layers
(``_eth`` ... ``_icmp``, the bodies of the public ``parse_x``) over ``(pointer, length)``:
passing the array itself from function to function costs an atomic reference-count update per
call and a negative-index fix-up per byte read, more than the parsing.  ``_frame`` and the
common layers are inlined (``inline="always"``); the rest are plain calls.  Under
``NUMBA_BOUNDSCHECK=1`` every byte read (``_b``) is checked against the array length and
raises ``IndexError``, as a checked array read would: the fuzz suite runs that way.

Record reset
------------
``parse_frame`` starts by storing every field of the record (0, or -1 for the three offsets;
``caplen``).  The stores are constants to consecutive addresses, which LLVM merges into a few
wide stores, so a reused record never keeps a field from the previous packet and the cost is a
handful of vector stores.  ``tests/test_parsers.py`` fills a record with 0xff and checks that
every byte is reset, so a field added to the table without a line in ``_reset`` fails there.

Flags (``parsers.record.F_*``) — what each one means here
----------------------------------------------------------
``F_TRUNCATED``   a header this parser decodes (Ethernet, VLAN tag, ARP, IPv4 incl. options,
                  IPv6 + extension headers, UDP, TCP incl. options, ICMP's 8 bytes) does not fit
                  in the captured bytes, or a length field (802.3 length, IPv4 total length,
                  IPv6 payload length) claims more bytes than were captured.  Bytes cut after
                  the last length-delimited header — Ethernet padding, the unknown payload of
                  an unsupported ethertype, an ARP trailer — are *not* truncation: a frame cut
                  exactly at such a complete boundary is not flagged.
``F_MALFORMED``   an impossible value: IP version != the ethertype's, IHL < 5, IPv4 total length
                  < IHL*4, ethertype 1501..1535, UDP length < 8, TCP data offset < 5, a TCP
                  option length < 2 or past the header, a known TCP option of the wrong length,
                  or a header that crosses the end of an IP datagram that was captured whole
                  (the IP length field says the datagram ends inside that header) -- a first
                  fragment too short to hold its L4 header included: RFC 791 allows one, but
                  it is RFC 1858's tiny-fragment evasion, which firewalls drop.
``F_LEN_MISMATCH`` UDP length != the IP layer's remaining length (not checked for fragments,
                  whose UDP length covers the reassembled datagram).
``F_PADDED``      bytes after the IP datagram / ARP packet / 802.3 payload (Ethernet padding).
``F_UNSUPPORTED`` an ethertype, IP protocol or ARP kind that is not decoded further: the rest
                  is reported as payload.
``F_LLC``         802.3 length field (<= 1500), after the addresses or after the last VLAN tag
                  (802.1Q keeps the Length/Type field): ``ethertype`` = 0, payload = LLC
                  header + data, bounded by the length field.
``F_VLAN``/``F_QINQ``/``F_VLAN_TOO_DEEP``  one / two / more than two tags (TPIDs 0x8100,
                  0x88a8, 0x9100).  A third tag stops the parse (``ethertype`` = its TPID).
``F_FRAGMENT``/``F_NONFIRST_FRAGMENT``  IPv4 MF or offset, IPv6 fragment header M or offset;
                  a non-first fragment has no L4 header: its data is the payload.
``F_IPV6_EXT``/``F_EXT_CHAIN_LIMIT``  extension headers walked (0, 43, 44, 51, 60), at most
                  ``MAX_EXT``; a longer chain stops the parse.

Payload
-------
``payload_off`` is the first byte after the last decoded header when the parse ended normally
(L4 header, non-first fragment, unsupported ethertype or protocol, 802.3/LLC, ARP), else -1.
``payload_len`` counts the bytes from there to the smallest of: the captured end, the IP
datagram's end (total length / 40 + payload length), the UDP length, the 802.3 length.
``l4_off`` is set only when the L4 (or ARP) header's fixed part -- UDP 8, TCP 20, ICMP 8, ARP
8 bytes -- lies inside the datagram's captured bytes, so its fields were read from the packet;
a header cut off before that leaves ``l4_off`` -1 and the fields 0 (``hugering parse`` prints
them as null: 0 is a real port and ICMP type).

Field notes: ``ip_frag_flags`` holds the three IPv4 flag bits as on the wire (bit 2 reserved,
bit 1 DF, bit 0 MF).  ``ip_len`` for IPv6 is 40 + payload length, saturated at 65535.  IPv6
jumbograms (payload length 0 + hop-by-hop option) are not supported (never on Ethernet).
Frames longer than ``MAX_CAPLEN`` (pcap's largest record, 256 KiB) are parsed over their first
``MAX_CAPLEN`` bytes.  The stored offsets fit ``i2`` whatever the frame's length (the deepest
header ends before byte ~16.5 K: two tags, eight IPv6 extension headers of at most 2 KiB, TCP
with options); ``payload_len`` is a ``u2`` that saturates at ``PAYLOAD_LEN_MAX`` (65535): every
IP payload fits, only a non-IP frame longer than 64 KiB can reach it.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import njit

from shm.pointers import byte_pointer as _byte_ptr

from .record import (F_EXT_CHAIN_LIMIT, F_FRAGMENT, F_IP_OPTIONS, F_IPV6_EXT, F_LEN_MISMATCH,
                     F_LLC, F_MALFORMED, F_NONFIRST_FRAGMENT, F_PADDED, F_QINQ, F_TCP_OPTIONS,
                     F_TRUNCATED, F_UNSUPPORTED, F_VLAN, F_VLAN_TOO_DEEP, RECORD_DTYPE,
                     TO_MSS, TO_SACK, TO_SACK_PERM, TO_TIMESTAMP, TO_WSCALE, new_records)

ETH_HLEN = 14
ETH_P_IPV4 = 0x0800
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
TPID_8021Q = 0x8100
TPID_8021AD = 0x88A8
TPID_9100 = 0x9100
MAX_VLAN = 2            # tags decoded; a third sets F_VLAN_TOO_DEEP
MAX_EXT = 8             # IPv6 extension headers walked; a ninth sets F_EXT_CHAIN_LIMIT
MAX_CAPLEN = 1 << 18    # pcap's MAXIMUM_SNAPLEN (parsers.pcap.MAX_RECORD)
PAYLOAD_LEN_MAX = 0xFFFF  # payload_len is u2: saturates here (only non-IP frames > 64 KiB)
IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_FRAGMENT = 0, 43, 44
IPPROTO_AH, IPPROTO_DSTOPTS = 51, 60
IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMPV6 = 1, 6, 17, 58
SLOT_HEADER_BYTES = 32  # shm.layout.SLOT_HEADER_BYTES (checked by the tests)
SLOT_CAP_LEN = 20       # byte offset of cap_len (u32, little-endian) in a slot header


# --- byte access -------------------------------------------------------------------------------
# The hot code reads through a raw pointer to the array's data (no reference counting, no
# negative-index wrap-around per byte: both cost more than the parsing itself); every read
# goes through _b, which under NUMBA_BOUNDSCHECK=1 checks the index against the array's
# length and raises IndexError exactly as a checked array read would (the fuzz suite runs
# that way).  Callers still check every read against the frame's captured length.  The flag is
# frozen into the compiled code and Numba's cache does not key on it: a NUMBA_BOUNDSCHECK=1 run
# needs its own NUMBA_CACHE_DIR.
_BOUNDSCHECK = bool(numba.config.BOUNDSCHECK)


@njit(cache=True, nogil=True)
def _b(p, n, i):
    if _BOUNDSCHECK:
        if i < 0 or i >= n:
            raise IndexError("parsers.l2l4: read outside the buffer")
    return np.int64(p[i])


# widen to int64 before shifting (uint8 << 8 must not stay 8-bit)
@njit(cache=True, nogil=True)
def _u16(p, n, i):
    return (_b(p, n, i) << 8) | _b(p, n, i + 1)


@njit(cache=True, nogil=True)
def _u32(p, n, i):
    return ((_b(p, n, i) << 24) | (_b(p, n, i + 1) << 16)
            | (_b(p, n, i + 2) << 8) | _b(p, n, i + 3))


@njit(cache=True, nogil=True)
def _short(rec):
    """The flag for a header that crosses ``end`` below the IP layer: truncation if the IP
    datagram itself was cut by the capture (or there is no IP layer), else the IP length field
    ends the datagram inside the header: malformed."""
    if rec.ip_version == 0 or (rec.flags & F_TRUNCATED) != 0:
        return F_TRUNCATED
    return F_MALFORMED


@njit(cache=True, nogil=True)
def _reset(rec, caplen):
    # every field, in table order (tests/test_parsers.py checks that no byte is left out)
    rec.flags = 0
    rec.caplen = caplen
    rec.l3_off = -1
    rec.l4_off = -1
    rec.payload_off = -1
    rec.payload_len = 0
    rec.ethertype = 0
    rec.vlan_count = 0
    rec.ip_version = 0
    rec.vlan_tpid = 0
    rec.vlan_id0 = 0
    rec.vlan_id1 = 0
    rec.vlan_pcp0 = 0
    rec.vlan_pcp1 = 0
    rec.ip_proto = 0
    rec.ttl = 0
    rec.ip_hlen = 0
    rec.ip_len = 0
    rec.tos = 0
    rec.ip_frag_flags = 0
    rec.frag_offset = 0
    rec.ext_count = 0
    rec.icmp_type = 0
    rec.ip_id = 0
    rec.flow_label = 0
    rec.icmp_code = 0
    rec.tcp_opts = 0
    rec.sport = 0
    rec.dport = 0
    rec.udp_len = 0
    rec.src4 = 0
    rec.dst4 = 0
    s6 = rec.src6
    d6 = rec.dst6
    for j in range(16):
        s6[j] = 0
        d6[j] = 0
    rec.tcp_flags = 0
    rec.tcp_window = 0
    rec.tcp_seq = 0
    rec.tcp_ack = 0
    rec.tcp_hlen = 0
    rec.tcp_wscale = 0
    rec.tcp_mss = 0
    rec.arp_op = 0
    rec.l4_csum = 0
    rec.tcp_tsval = 0
    rec.tcp_tsecr = 0


# --- L2 -------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _eth(p, n, off, end, rec):
    """Ethernet II header; 802.3 length frames are flagged ``F_LLC`` (ethertype 0) and their
    length field cross-checked.  Returns the offset after the 14 bytes, or -1."""
    if off + ETH_HLEN > end:
        rec.flags |= F_TRUNCATED
        return -1
    t = _u16(p, n, off + 12)
    if t >= 0x0600:                     # fast path: an Ethernet II type
        rec.ethertype = t
        return off + ETH_HLEN
    return _length_field(t, off + ETH_HLEN, end, rec)


@njit(cache=True, nogil=True)
def _length_field(t, off, end, rec):
    """An 802.3 Length/Type field below 0x0600 -- after the MAC addresses, or after the last
    VLAN tag (802.1Q keeps the field, so a tagged frame can be 802.3 too): a length up to 1500
    is ``F_LLC`` (ethertype 0), cross-checked with the ``end - off`` bytes captured after it;
    1501..1535 is neither a length nor a type (``F_MALFORMED``, -1).  Returns ``off``."""
    rec.ethertype = 0
    if t > 1500:
        rec.flags |= F_MALFORMED
        return -1
    avail = end - off
    fl = F_LLC
    if t > avail:
        fl |= F_TRUNCATED
    elif t < avail:
        fl |= F_PADDED
    rec.flags |= fl
    return off


@njit(cache=True, nogil=True)
def _vlan(p, n, off, end, rec):
    """One 802.1Q/802.1ad tag: ``off`` is its TCI (the TPID was read as ``rec.ethertype``).
    Records id and priority of up to two tags, replaces ``rec.ethertype`` with the type that
    follows.  A third tag sets ``F_VLAN_TOO_DEEP`` and returns -1."""
    cnt = rec.vlan_count
    if cnt >= MAX_VLAN:
        rec.flags |= F_VLAN_TOO_DEEP
        return -1
    if off + 4 > end:
        rec.flags |= F_TRUNCATED
        return -1
    tci = _u16(p, n, off)
    if cnt == 0:
        rec.vlan_tpid = rec.ethertype
        rec.vlan_id0 = tci & 0x0FFF
        rec.vlan_pcp0 = tci >> 13
        rec.flags |= F_VLAN
    else:
        rec.vlan_id1 = tci & 0x0FFF
        rec.vlan_pcp1 = tci >> 13
        rec.flags |= F_QINQ
    rec.vlan_count = cnt + 1
    rec.ethertype = _u16(p, n, off + 2)
    return off + 4


@njit(cache=True, nogil=True)
def _arp(p, n, off, end, rec):
    """ARP: operation for any kind; sender/target protocol addresses into src4/dst4 for
    Ethernet/IPv4 ARP (others are ``F_UNSUPPORTED``).  Returns the offset after the packet."""
    if off + 8 > end:
        rec.flags |= F_TRUNCATED
        return -1
    htype = _u16(p, n, off)
    ptype = _u16(p, n, off + 2)
    hlen = _b(p, n, off + 4)
    plen = _b(p, n, off + 5)
    rec.arp_op = _u16(p, n, off + 6)
    total = 8 + 2 * (hlen + plen)
    if htype == 1 and ptype == ETH_P_IPV4 and hlen == 6 and plen == 4:
        if off + total > end:
            rec.flags |= F_TRUNCATED
            return -1
        rec.src4 = _u32(p, n, off + 14)
        rec.dst4 = _u32(p, n, off + 24)
    else:
        rec.flags |= F_UNSUPPORTED
        if off + total > end:
            rec.flags |= F_TRUNCATED
            return -1
    if off + total < end:
        rec.flags |= F_PADDED
    return off + total


# --- L3 -------------------------------------------------------------------------------------
@njit(cache=True, nogil=True, inline="always")
def _ipv4(p, n, off, end, rec):
    """IPv4 header incl. options; total length cross-checked with the captured bytes.  Returns
    the offset after the header (for a non-first fragment: its data), or -1."""
    if off + 20 > end:
        rec.flags |= F_TRUNCATED
        return -1
    b0 = _b(p, n, off)
    hlen = (b0 & 15) * 4
    if (b0 >> 4) != 4 or hlen < 20:
        rec.flags |= F_MALFORMED
        return -1
    rec.ip_version = 4
    rec.tos = _b(p, n, off + 1)
    tot = _u16(p, n, off + 2)
    rec.ip_len = tot
    rec.ip_hlen = hlen
    rec.ip_id = _u16(p, n, off + 4)
    ff = _u16(p, n, off + 6)
    rec.ip_frag_flags = ff >> 13
    fo = ff & 0x1FFF
    rec.frag_offset = fo
    rec.ttl = _b(p, n, off + 8)
    rec.ip_proto = _b(p, n, off + 9)
    rec.src4 = _u32(p, n, off + 12)
    rec.dst4 = _u32(p, n, off + 16)
    fl = 0
    if hlen > 20:
        fl |= F_IP_OPTIONS
    if (ff & 0x3FFF) != 0:              # MF or an offset
        fl |= F_FRAGMENT
        if fo != 0:
            fl |= F_NONFIRST_FRAGMENT
    avail = end - off
    if tot < hlen:
        rec.flags |= fl | F_MALFORMED
        return -1
    if hlen > avail:
        rec.flags |= fl | F_TRUNCATED
        return -1
    if tot > avail:
        fl |= F_TRUNCATED
    elif tot < avail:
        fl |= F_PADDED
    rec.flags |= fl
    return off + hlen


@njit(cache=True, nogil=True, inline="always")
def _ipv6(p, n, off, end, rec):
    """IPv6 header and extension headers (hop-by-hop, routing, fragment, destination options,
    AH), walked to the upper-layer protocol, at most ``MAX_EXT`` of them.  Payload length
    cross-checked with the captured bytes.  Returns the offset of the upper-layer header (for a
    non-first fragment: the fragment data), or -1."""
    if off + 40 > end:
        rec.flags |= F_TRUNCATED
        return -1
    b0 = _b(p, n, off)
    if (b0 >> 4) != 6:
        rec.flags |= F_MALFORMED
        return -1
    b1 = _b(p, n, off + 1)
    rec.ip_version = 6
    rec.tos = ((b0 & 15) << 4) | (b1 >> 4)
    rec.flow_label = ((b1 & 15) << 16) | _u16(p, n, off + 2)
    iplen = 40 + _u16(p, n, off + 4)
    rec.ip_len = iplen if iplen <= 0xFFFF else 0xFFFF
    nh = _b(p, n, off + 6)
    rec.ttl = _b(p, n, off + 7)
    s6 = rec.src6
    d6 = rec.dst6
    for j in range(16):
        s6[j] = _b(p, n, off + 8 + j)
        d6[j] = _b(p, n, off + 24 + j)
    fl = 0
    avail = end - off
    lim = end
    short = F_TRUNCATED                 # how a header crossing `lim` is flagged
    if iplen > avail:
        fl |= F_TRUNCATED
    else:
        if iplen < avail:
            fl |= F_PADDED
        lim = off + iplen
        short = F_MALFORMED
    h = off + 40
    count = 0
    ok = True
    # slow path: extension headers (most traffic goes straight to the upper layer)
    while (nh == IPPROTO_HOPOPTS or nh == IPPROTO_ROUTING or nh == IPPROTO_FRAGMENT
           or nh == IPPROTO_DSTOPTS or nh == IPPROTO_AH):
        if count >= MAX_EXT:
            fl |= F_EXT_CHAIN_LIMIT
            ok = False
            break
        if nh == IPPROTO_FRAGMENT:
            if h + 8 > lim:
                fl |= short
                ok = False
                break
            fw = _u16(p, n, h + 2)
            fo = fw >> 3
            rec.frag_offset = fo
            rec.ip_frag_flags = fw & 1
            rec.ip_id = _u32(p, n, h + 4)
            if fo != 0 or (fw & 1) != 0:
                fl |= F_FRAGMENT
            nh = _b(p, n, h)
            h += 8
            count += 1
            if fo != 0:                 # what follows is fragment data, not a header
                fl |= F_NONFIRST_FRAGMENT
                break
            continue
        if h + 2 > lim:
            fl |= short
            ok = False
            break
        if nh == IPPROTO_AH:
            hl = (_b(p, n, h + 1) + 2) * 4
        else:
            hl = (_b(p, n, h + 1) + 1) * 8
        if h + hl > lim:
            fl |= short
            ok = False
            break
        nh = _b(p, n, h)
        h += hl
        count += 1
    rec.ip_proto = nh
    rec.ext_count = count
    rec.ip_hlen = h - off
    if count > 0:
        fl |= F_IPV6_EXT
    rec.flags |= fl
    if not ok:
        return -1
    return h


# --- L4 -------------------------------------------------------------------------------------
@njit(cache=True, nogil=True, inline="always")
def _udp(p, n, off, end, rec):
    """UDP header; the length field is cross-checked against the IP layer's length
    (``F_LEN_MISMATCH``).  Returns the payload offset, or -1."""
    if off + 8 > end:
        rec.flags |= _short(rec)
        return -1
    rec.sport = _u16(p, n, off)
    rec.dport = _u16(p, n, off + 2)
    ulen = _u16(p, n, off + 4)
    rec.udp_len = ulen
    rec.l4_csum = _u16(p, n, off + 6)
    if ulen < 8:
        rec.flags |= F_MALFORMED
        return -1
    if rec.ip_version != 0 and (rec.flags & F_FRAGMENT) == 0:
        if ulen != np.int64(rec.ip_len) - np.int64(rec.ip_hlen):
            rec.flags |= F_LEN_MISMATCH
    return off + 8


@njit(cache=True, nogil=True, inline="always")
def _tcp(p, n, off, end, rec):
    """TCP header: ports, seq/ack, 9 flag bits, window, data offset, and the options MSS,
    window scale, SACK-permitted, SACK, timestamps (walked within the header and the captured
    bytes; a bad option length is ``F_MALFORMED`` and ends the walk).  Returns the payload
    offset, or -1 when the header is not all there."""
    if off + 20 > end:
        rec.flags |= _short(rec)
        return -1
    rec.sport = _u16(p, n, off)
    rec.dport = _u16(p, n, off + 2)
    rec.tcp_seq = _u32(p, n, off + 4)
    rec.tcp_ack = _u32(p, n, off + 8)
    b12 = _b(p, n, off + 12)
    hlen = (b12 >> 4) * 4
    rec.tcp_hlen = hlen
    rec.tcp_flags = ((b12 & 1) << 8) | _b(p, n, off + 13)
    rec.tcp_window = _u16(p, n, off + 14)
    rec.l4_csum = _u16(p, n, off + 16)
    if hlen < 20:
        rec.flags |= F_MALFORMED
        return -1
    if hlen == 20:
        return off + 20                 # fast path: no options
    hend = off + hlen
    oend = hend if hend <= end else end
    fl = F_TCP_OPTIONS
    opts = 0
    i = off + 20
    while i < oend:
        kind = _b(p, n, i)
        if kind == 0:                   # EOL
            break
        if kind == 1:                   # NOP
            i += 1
            continue
        if i + 2 > oend:                # no room for the length byte
            if hend <= end:
                fl |= F_MALFORMED
            break
        ln = _b(p, n, i + 1)
        if ln < 2:
            fl |= F_MALFORMED
            break
        if i + ln > oend:
            if hend <= end:
                fl |= F_MALFORMED
            break
        if kind == 2:
            if ln == 4:
                opts |= TO_MSS
                rec.tcp_mss = _u16(p, n, i + 2)
            else:
                fl |= F_MALFORMED
        elif kind == 3:
            if ln == 3:
                opts |= TO_WSCALE
                rec.tcp_wscale = _b(p, n, i + 2)
            else:
                fl |= F_MALFORMED
        elif kind == 4:
            if ln == 2:
                opts |= TO_SACK_PERM
            else:
                fl |= F_MALFORMED
        elif kind == 5:
            if ln >= 10 and (ln - 2) % 8 == 0:
                opts |= TO_SACK
            else:
                fl |= F_MALFORMED
        elif kind == 8:
            if ln == 10:
                opts |= TO_TIMESTAMP
                rec.tcp_tsval = _u32(p, n, i + 2)
                rec.tcp_tsecr = _u32(p, n, i + 6)
            else:
                fl |= F_MALFORMED
        i += ln
    rec.tcp_opts = opts
    if hend > end:
        rec.flags |= fl | _short(rec)
        return -1
    rec.flags |= fl
    return hend


@njit(cache=True, nogil=True)
def _icmp(p, n, off, end, rec):
    """ICMP or ICMPv6: type, code, checksum; the header is taken as 8 bytes (type, code,
    checksum and the 4 type-specific bytes every message has).  Returns the payload offset."""
    if off + 8 > end:
        rec.flags |= _short(rec)
        return -1
    rec.icmp_type = _b(p, n, off)
    rec.icmp_code = _b(p, n, off + 1)
    rec.l4_csum = _u16(p, n, off + 2)
    return off + 8


# --- the frame --------------------------------------------------------------------------------
@njit(cache=True, nogil=True, inline="always")
def _frame(p, n, base, caplen, rec):
    """``parse_frame`` over a raw pointer ``p`` to ``n`` bytes."""
    fl = 0
    if base < 0 or base > n:
        base = 0
        caplen = 0
        fl = F_TRUNCATED
    if caplen < 0:
        caplen = 0
    if caplen > n - base:               # the caller's length runs past the array
        caplen = n - base
        fl = F_TRUNCATED
    if caplen > MAX_CAPLEN:
        caplen = MAX_CAPLEN
    _reset(rec, caplen)
    rec.flags = fl
    end = base + caplen
    o = _eth(p, n, base, end, rec)
    if o < 0:
        return -1
    et = np.int64(rec.ethertype)
    while et == TPID_8021Q or et == TPID_8021AD or et == TPID_9100:
        o = _vlan(p, n, o, end, rec)
        if o < 0:
            return -1
        et = np.int64(rec.ethertype)
    if et < 0x0600:                     # slow path: 802.3 (untagged: _eth flagged it already)
        if (rec.flags & F_LLC) == 0:    # a length field behind a tag
            if _length_field(et, o, end, rec) < 0:
                return -1
        lim = o + _u16(p, n, o - 2)     # the payload is bounded by the length (just before o)
        if lim > end:
            lim = end
        rec.payload_off = o - base
        rec.payload_len = min(lim - o, PAYLOAD_LEN_MAX)
        return o
    rec.l3_off = o - base
    if et == ETH_P_IPV4:
        q = _ipv4(p, n, o, end, rec)
    elif et == ETH_P_IPV6:
        q = _ipv6(p, n, o, end, rec)
    elif et == ETH_P_ARP:
        if o + 8 <= end:                # l4_off only for a header whose fixed part is there
            rec.l4_off = o - base
        q = _arp(p, n, o, end, rec)
        if q < 0:
            return -1
        rec.payload_off = q - base
        return q
    else:
        rec.l3_off = -1
        rec.flags |= F_UNSUPPORTED
        rec.payload_off = o - base
        rec.payload_len = min(end - o, PAYLOAD_LEN_MAX)
        return o
    if q < 0:
        return -1
    dend = o + np.int64(rec.ip_len)     # the datagram's end, bounded by the capture
    if dend > end:
        dend = end
    if (rec.flags & F_NONFIRST_FRAGMENT) != 0:
        r = q
    else:
        proto = np.int64(rec.ip_proto)
        # l4_off is set only where the L4 header's fixed part lies inside the datagram's
        # captured bytes: its fields are then read from the packet (a cut-off header leaves them
        # 0, and 0 is a real port and ICMP type: l4_off -1 says there is none)
        if proto == IPPROTO_UDP:
            if q + 8 <= dend:
                rec.l4_off = q - base
            r = _udp(p, n, q, dend, rec)
            if r >= 0:
                ulim = q + np.int64(rec.udp_len)
                if ulim < dend:
                    dend = ulim
        elif proto == IPPROTO_TCP:
            if q + 20 <= dend:
                rec.l4_off = q - base
            r = _tcp(p, n, q, dend, rec)
        elif proto == IPPROTO_ICMP or proto == IPPROTO_ICMPV6:
            if q + 8 <= dend:
                rec.l4_off = q - base
            r = _icmp(p, n, q, dend, rec)
        else:
            rec.flags |= F_UNSUPPORTED
            r = q
        if r < 0:
            return -1
    rec.payload_off = r - base
    rec.payload_len = min(dend - r, PAYLOAD_LEN_MAX)
    return r


# --- public entry points over arrays ------------------------------------------------------------
@njit(cache=True, nogil=True)
def parse_eth(buf, off, end, rec):
    """Ethernet II header; 802.3 length frames are flagged ``F_LLC`` (ethertype 0) and their
    length field cross-checked.  Returns the offset after the 14 bytes, or -1."""
    n = buf.shape[0]
    if off < 0 or off > n:
        rec.flags |= F_TRUNCATED
        return -1
    return _eth(_byte_ptr(buf), n, off, min(end, n), rec)


@njit(cache=True, nogil=True)
def parse_vlan(buf, off, end, rec):
    """One 802.1Q/802.1ad tag: ``off`` is its TCI (the TPID was read as ``rec.ethertype``).
    Records id and priority of up to two tags, replaces ``rec.ethertype`` with the type that
    follows.  A third tag sets ``F_VLAN_TOO_DEEP`` and returns -1."""
    n = buf.shape[0]
    if off < 0 or off > n:
        rec.flags |= F_TRUNCATED
        return -1
    return _vlan(_byte_ptr(buf), n, off, min(end, n), rec)


@njit(cache=True, nogil=True)
def parse_arp(buf, off, end, rec):
    """ARP: operation for any kind; sender/target protocol addresses into src4/dst4 for
    Ethernet/IPv4 ARP (others are ``F_UNSUPPORTED``).  Returns the offset after the packet."""
    n = buf.shape[0]
    if off < 0 or off > n:
        rec.flags |= F_TRUNCATED
        return -1
    return _arp(_byte_ptr(buf), n, off, min(end, n), rec)


@njit(cache=True, nogil=True)
def parse_ipv4(buf, off, end, rec):
    """IPv4 header incl. options; total length cross-checked with the captured bytes.  Returns
    the offset after the header (for a non-first fragment: its data), or -1."""
    n = buf.shape[0]
    if off < 0 or off > n:
        rec.flags |= F_TRUNCATED
        return -1
    return _ipv4(_byte_ptr(buf), n, off, min(end, n), rec)


@njit(cache=True, nogil=True)
def parse_ipv6(buf, off, end, rec):
    """IPv6 header and extension headers (hop-by-hop, routing, fragment, destination options,
    AH) walked to the upper-layer protocol, at most ``MAX_EXT`` of them; payload length
    cross-checked with the captured bytes.  Returns the offset of the upper-layer header (for
    a non-first fragment: the fragment data), or -1."""
    n = buf.shape[0]
    if off < 0 or off > n:
        rec.flags |= F_TRUNCATED
        return -1
    return _ipv6(_byte_ptr(buf), n, off, min(end, n), rec)


@njit(cache=True, nogil=True)
def parse_udp(buf, off, end, rec):
    """UDP header; the length field is cross-checked against the IP layer's length already in
    ``rec`` (``F_LEN_MISMATCH``).  Returns the payload offset, or -1."""
    n = buf.shape[0]
    if off < 0 or off > n:
        rec.flags |= F_TRUNCATED
        return -1
    return _udp(_byte_ptr(buf), n, off, min(end, n), rec)


@njit(cache=True, nogil=True)
def parse_tcp(buf, off, end, rec):
    """TCP header and options (MSS, window scale, SACK-permitted, SACK, timestamps).  Returns
    the payload offset, or -1 when the header is not all there."""
    n = buf.shape[0]
    if off < 0 or off > n:
        rec.flags |= F_TRUNCATED
        return -1
    return _tcp(_byte_ptr(buf), n, off, min(end, n), rec)


@njit(cache=True, nogil=True)
def parse_icmp(buf, off, end, rec):
    """ICMP or ICMPv6 type, code and checksum (an 8-byte header).  Returns the payload offset."""
    n = buf.shape[0]
    if off < 0 or off > n:
        rec.flags |= F_TRUNCATED
        return -1
    return _icmp(_byte_ptr(buf), n, off, min(end, n), rec)


@njit(cache=True, nogil=True)
def parse_frame(buf, base, caplen, rec):
    """Parse one frame (``buf[base : base + caplen]``) into ``rec``; see the module docstring.
    Returns the absolute payload offset, or -1."""
    return _frame(_byte_ptr(buf), buf.shape[0], base, caplen, rec)


# --- bursts -------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def slot_window(nbytes, stride, slot_size, first, count, capacity):
    """(count, mask) of a burst of ``count`` slots from ``first`` in ``nbytes`` of slot area:
    with ``capacity`` > 0 slot i is ``(first + i) & (capacity - 1)`` (a ring), else ``first + i``
    (an array, count clamped to what it holds).  Inconsistent geometry gives count 0.  Shared by
    every burst verb that walks slots (``parse_slots``, ``filters.match_slots``)."""
    if stride <= 0 or slot_size < 0 or slot_size > stride - SLOT_HEADER_BYTES or first < 0:
        return 0, -1
    nslots = nbytes // stride
    if capacity > 0:
        if (capacity & (capacity - 1)) != 0 or capacity > nslots:
            return 0, -1
        return count, capacity - 1
    if first >= nslots:
        return 0, -1
    return min(count, nslots - first), -1


@njit(cache=True, nogil=True)
def parse_slots(slot_bytes, stride, slot_size, first, count, capacity, recs):
    """Parse ``count`` slots into ``recs[0:count]``; returns how many were parsed.

    ``slot_bytes`` is the slot area as one flat ``uint8`` array (slot ``s`` at ``s * stride``,
    its frame at ``s * stride + 32``, its ``cap_len`` a little-endian u32 at ``+20``).  Slot
    ``i`` of the burst is ``(first + i) & (capacity - 1)`` when ``capacity`` > 0 (a ring:
    ``first`` is the consumer's free-running cursor), or ``first + i`` when ``capacity`` is 0
    (a plain array of slot records, e.g. ``parsers.pcap.read_capture(...).slots``).

    * live ring, zero-copy::

          k = peek(ctrl, cstate, n)
          parse_slots(ring.slot_bytes, ring.slot_stride, ring.slot_size,
                      cstate[CS_CURSOR], k, ring.capacity, recs)
          ...                                    # filter / handle recs[0:k]
          release(ctrl, cstate, k)

    * a lossy ring's ``receive`` copy (``out`` int64 words): ``out.view(np.uint8)``, first 0,
      capacity 0; a pcap capture: ``slots.view(np.uint8)``, ``slots.dtype.itemsize``,
      ``slot_size``, 0, ``len(slots)``, 0 (or ``parse_slot_array``).

    ``cap_len`` is never trusted: a value above ``slot_size`` (a lying or broken producer) is
    clamped to it and the record flagged ``F_TRUNCATED``.  ``count`` is clamped to
    ``len(recs)`` and, without wrapping, to the slots the array holds; a ring whose
    ``capacity * stride`` exceeds the array, or a ``slot_size`` that does not fit the stride,
    parses nothing (returns 0).  No allocation, no exception.
    """
    n = slot_bytes.shape[0]
    count, mask = slot_window(n, stride, slot_size, first, min(count, recs.shape[0]), capacity)
    p = _byte_ptr(slot_bytes)
    for i in range(count):
        sb = ((first + i) & mask) * stride
        cl = (_b(p, n, sb + SLOT_CAP_LEN) | (_b(p, n, sb + SLOT_CAP_LEN + 1) << 8)
              | (_b(p, n, sb + SLOT_CAP_LEN + 2) << 16) | (_b(p, n, sb + SLOT_CAP_LEN + 3) << 24))
        lying = cl > slot_size          # never trust the producer's length
        if lying:
            cl = slot_size
        rec = recs[i]
        _frame(p, n, sb + SLOT_HEADER_BYTES, cl, rec)
        if lying:
            rec.flags |= F_TRUNCATED
    return count


@njit(cache=True, nogil=True)
def parse_frames(buf, bases, caplens, count, recs):
    """Parse ``count`` frames of one buffer, frame ``i`` at ``buf[bases[i] : bases[i] +
    caplens[i]]``, into ``recs[i]``; returns how many were parsed (``count`` clamped to the
    shortest array).  For frames that are not in ring slots: a capture file's bytes as
    ``read_capture(path, keep_bytes=True)`` keeps them, each packet whole however long.  The
    same guarantees as ``parse_frame`` (a range outside ``buf`` is clamped and flagged)."""
    m = min(count, bases.shape[0], caplens.shape[0], recs.shape[0])
    p = _byte_ptr(buf)
    n = buf.shape[0]
    for i in range(m):
        _frame(p, n, np.int64(bases[i]), np.int64(caplens[i]), recs[i])
    return m


def parse_slot_array(slots: np.ndarray, recs: np.ndarray | None = None) -> np.ndarray:
    """Plain-Python convenience: parse a contiguous array of ``shm.layout.slot_dtype`` records
    (e.g. ``read_capture(path).slots``) into ``recs`` (allocated when None); returns the
    records actually parsed (``recs[:n]``)."""
    slots = np.ascontiguousarray(slots)
    n = len(slots)
    if recs is None:
        recs = new_records(n)
    stride = slots.dtype.itemsize
    slot_size = slots.dtype.fields["payload"][0].shape[0]
    k = parse_slots(slots.view(np.uint8).reshape(-1), stride, slot_size, 0, n, 0, recs)
    return recs[:k]


def parse_bytes(frame: bytes, rec: np.ndarray | None = None) -> np.ndarray:
    """Plain-Python convenience for tests and notebooks: parse ``frame`` into a fresh (or the
    given) one-element record array; returns that array."""
    if rec is None:
        rec = np.zeros(1, dtype=RECORD_DTYPE)
    buf = np.frombuffer(bytes(frame), dtype=np.uint8) if len(frame) else np.zeros(0, np.uint8)
    parse_frame(buf, 0, len(frame), rec[0])
    return rec
