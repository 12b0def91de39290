"""pcap and pcapng files to and from ring slot arrays, in bulk.

Why our own reader instead of a library: the job is "bytes of a capture file -> a numpy array
of ring slots" and nothing else.  The file is read with one ``np.fromfile`` and walked by two
``@njit`` passes (count, then fill), which runs at memory speed (tens of millions of records a
second); the well-kept pure-Python readers (dpkt, python-pcapng, scapy) build a Python object
per packet and are one to two orders of magnitude slower.  The formats are small and stable:
classic pcap (https://www.tcpdump.org/manpages/pcap-savefile.5.html: microsecond or nanosecond
magic, either byte order) and pcapng (IETF draft-ietf-opsawg-pcapng: section header, interface
description with ``if_tsresol``/``if_tsoffset``, enhanced, simple and obsolete packet blocks;
several sections; either byte order).  The test suite checks both against files written by
tcpdump, tshark/editcap and an independent writer.

Damage is reported, not fatal: reading stops at the first record that cannot be trusted, the
packets before it are returned, and ``Capture.error`` says what was wrong at which byte offset
(``strict=True`` raises ``PcapError`` instead, with the same message and ``.packets``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from shm import layout as L

LINKTYPE_ETHERNET = 1
PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BOM = 0x1A2B3C4D
MAX_RECORD = 262144          # libpcap's MAXIMUM_SNAPLEN: a bigger record length is corruption
MAX_INTERFACES = 256

# error codes of the @njit walkers (message built in Python with the offset)
E_OK, E_TRUNC_HDR, E_TRUNC_DATA, E_BIG, E_BLOCK_LEN, E_BAD_BOM, E_IFACE, E_TOO_MANY_IF, \
    E_BLOCK_TRUNC, E_CAPLEN = range(10)
_MESSAGES = {
    E_TRUNC_HDR: "truncated record header",
    E_TRUNC_DATA: "truncated packet data",
    E_BIG: "record length larger than any capture allows (corrupt)",
    E_BLOCK_LEN: "block length is not a multiple of 4, is too small, or disagrees with its trailer",
    E_BAD_BOM: "section header with an unknown byte-order magic",
    E_IFACE: "packet refers to an interface that was not described",
    E_TOO_MANY_IF: f"more than {MAX_INTERFACES} interfaces in a section",
    E_BLOCK_TRUNC: "truncated block",
    E_CAPLEN: "captured length larger than the block that holds it",
}


class PcapError(ValueError):
    """A capture file that cannot be read (fully).  ``offset`` is the byte offset of the
    problem; ``packets`` holds the Capture of everything before it."""

    def __init__(self, message: str, offset: int, packets: "Capture | None" = None):
        super().__init__(message)
        self.offset = offset
        self.packets = packets


@dataclass
class Capture:
    slots: np.ndarray                 # shm.layout.slot_dtype(slot_size) records, seq = index
    count: int
    format: str                       # "pcap" or "pcapng"
    linktype: int                     # of the first interface (pcap: the file's)
    nanosecond: bool                  # pcap: ns magic; pcapng: resolution finer than 1 us
    error: str | None = None
    error_offset: int | None = None
    linktypes: list[int] = field(default_factory=list)   # pcapng: per interface (slot 'port')
    # read_capture(keep_bytes=True): the file's bytes, and each packet's place and captured
    # length in them (whole, however long its slot copy is)
    data: np.ndarray | None = None
    frame_offsets: np.ndarray | None = None
    frame_lengths: np.ndarray | None = None

    def __len__(self) -> int:
        return self.count


# --- @njit walkers ---------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _u16(d, o, swap):
    a = np.int64(d[o])
    b = np.int64(d[o + 1])
    return (a << 8) | b if swap else (b << 8) | a


@njit(cache=True, nogil=True)
def _u32(d, o, swap):
    if swap:
        return (np.int64(d[o]) << 24) | (np.int64(d[o + 1]) << 16) | \
            (np.int64(d[o + 2]) << 8) | np.int64(d[o + 3])
    return (np.int64(d[o + 3]) << 24) | (np.int64(d[o + 2]) << 16) | \
        (np.int64(d[o + 1]) << 8) | np.int64(d[o])


@njit(cache=True, nogil=True)
def _store(words, slot_bytes, stride, i, seq, ts_ns, wire_len, cap_len, port, d, src, size,
           index):
    if index.shape[0] != 0:             # where the whole packet lies in the file, and its length
        index[2 * i] = src
        index[2 * i + 1] = cap_len
    base = i * (stride // 8)
    flags = 0
    n = cap_len
    if n > size:
        n = size
        flags = L.SLOT_FLAG_TRUNCATED
    words[base + L.S_SEQ] = seq
    words[base + L.S_TS] = ts_ns
    words[base + L.S_LENS] = np.int64(wire_len) | (np.int64(n) << 32)
    words[base + L.S_PORTQ] = np.int64(port) | (np.int64(flags) << 32)
    off = i * stride + L.SLOT_HEADER_BYTES
    slot_bytes[off:off + n] = d[src:src + n]


@njit(cache=True, nogil=True)
def _walk_pcap(d, swap, nano, fill, words, slot_bytes, stride, size, limit, status, index):
    """Walk classic pcap records from byte 24.  status: [count, error code, error offset]."""
    o = 24
    n = 0
    end = d.shape[0]
    while o < end and n < limit:
        if o + 16 > end:
            status[1] = E_TRUNC_HDR
            status[2] = o
            break
        sec = _u32(d, o, swap)
        frac = _u32(d, o + 4, swap)
        incl = _u32(d, o + 8, swap)
        orig = _u32(d, o + 12, swap)
        if incl > MAX_RECORD:
            status[1] = E_BIG
            status[2] = o
            break
        if o + 16 + incl > end:
            status[1] = E_TRUNC_DATA
            status[2] = o
            break
        if fill:
            ts = sec * 1_000_000_000 + (frac if nano else frac * 1000)
            _store(words, slot_bytes, stride, n, n, ts, orig, incl, 0, d, o + 16, size, index)
        n += 1
        o += 16 + incl
    status[0] = n


@njit(cache=True, nogil=True)
def _ts_ns(ts, resol, offset_s):
    """pcapng timestamp units -> ns.  resol: if_tsresol byte (bit 7: power of 2)."""
    if resol & 0x80:
        shift = resol & 0x7F
        if shift > 62:
            return offset_s * 1_000_000_000
        whole = ts >> shift
        part = ts & ((np.int64(1) << shift) - 1)
        return offset_s * 1_000_000_000 + whole * 1_000_000_000 + \
            (part * 1_000_000_000 >> shift if shift <= 32 else
             (part >> (shift - 32)) * 1_000_000_000 >> 32)
    exp = resol
    ns = ts
    if exp <= 9:
        for _ in range(9 - exp):
            ns *= 10
    else:
        for _ in range(exp - 9):
            ns //= 10
    return offset_s * 1_000_000_000 + ns


@njit(cache=True, nogil=True)
def _walk_pcapng(d, fill, words, slot_bytes, stride, size, limit, if_link, if_resol, if_off,
                 if_snap, status, index):
    """Walk pcapng blocks.  status: [count, error code, error offset, interfaces (total),
    first linktype, finest resolution exponent seen]."""
    o = 0
    n = 0
    end = d.shape[0]
    swap = False
    nif = 0          # interfaces in the current section
    base_if = 0      # index of this section's first interface in the per-file tables
    while o < end and n < limit:
        if o + 12 > end:
            status[1] = E_BLOCK_TRUNC
            status[2] = o
            break
        btype = _u32(d, o, swap)
        if btype == PCAPNG_SHB:
            if o + 28 > end:
                status[1] = E_BLOCK_TRUNC
                status[2] = o
                break
            bom_le = _u32(d, o + 8, False)
            if bom_le == PCAPNG_BOM:
                swap = False
            elif _u32(d, o + 8, True) == PCAPNG_BOM:
                swap = True
            else:
                status[1] = E_BAD_BOM
                status[2] = o
                break
            base_if += nif
            nif = 0
        blen = _u32(d, o + 4, swap)
        if blen < 12 or blen % 4 != 0:
            status[1] = E_BLOCK_LEN
            status[2] = o
            break
        if o + blen > end:
            status[1] = E_BLOCK_TRUNC
            status[2] = o
            break
        if _u32(d, o + blen - 4, swap) != blen:
            status[1] = E_BLOCK_LEN
            status[2] = o
            break
        body = o + 8
        body_end = o + blen - 4
        if btype == 1:                                   # interface description
            if body + 8 > body_end:
                status[1] = E_BLOCK_LEN
                status[2] = o
                break
            if base_if + nif >= if_link.shape[0]:
                status[1] = E_TOO_MANY_IF
                status[2] = o
                break
            k = base_if + nif
            if_link[k] = _u16(d, body, swap)
            if_snap[k] = _u32(d, body + 4, swap)
            if_resol[k] = 6
            if_off[k] = 0
            p = body + 8
            while p + 4 <= body_end:                     # options: code, length, value, pad
                code = _u16(d, p, swap)
                olen = _u16(d, p + 2, swap)
                if code == 0 or p + 4 + olen > body_end:
                    break
                if code == 9 and olen >= 1:
                    if_resol[k] = d[p + 4]
                elif code == 14 and olen >= 8:
                    first = _u32(d, p + 4, swap)
                    second = _u32(d, p + 8, swap)
                    # an 8-byte field: which half comes first follows the section's byte order
                    if_off[k] = (first << 32) | second if swap else (second << 32) | first
                p += 4 + (olen + 3) // 4 * 4
            if nif == 0 and base_if == 0:
                status[4] = if_link[k]
            if (if_resol[k] & 0x80) == 0 and if_resol[k] > status[5]:
                status[5] = if_resol[k]
            nif += 1
        elif btype == 6 or btype == 2:                   # enhanced / obsolete packet block
            if body + 20 > body_end:
                status[1] = E_BLOCK_LEN
                status[2] = o
                break
            if btype == 6:
                iface = _u32(d, body, swap)
            else:
                iface = _u16(d, body, swap)
            if iface >= nif:
                status[1] = E_IFACE
                status[2] = o
                break
            hi = _u32(d, body + 4, swap)
            lo = _u32(d, body + 8, swap)
            cap = _u32(d, body + 12, swap)
            orig = _u32(d, body + 16, swap)
            if body + 20 + cap > body_end:
                status[1] = E_CAPLEN
                status[2] = o
                break
            if fill:
                k = base_if + iface
                ts = _ts_ns((hi << 32) | lo, if_resol[k], if_off[k])
                _store(words, slot_bytes, stride, n, n, ts, orig, cap, k, d, body + 20, size,
                       index)
            n += 1
        elif btype == 3:                                 # simple packet block (interface 0)
            if nif == 0:
                status[1] = E_IFACE
                status[2] = o
                break
            orig = _u32(d, body, swap)
            cap = orig
            snap = if_snap[base_if]
            if snap != 0 and cap > snap:
                cap = snap
            if cap > body_end - body - 4:
                cap = body_end - body - 4
            if fill:
                _store(words, slot_bytes, stride, n, n, 0, orig, cap, base_if, d, body + 4, size,
                       index)
            n += 1
        o += blen
    status[0] = n
    status[3] = base_if + nif


# --- Python surface ----------------------------------------------------------------------------
def read_capture(path, slot_size: int = L.DEFAULT_SLOT_SIZE, limit: int | None = None,
                 strict: bool = False, keep_bytes: bool = False) -> Capture:
    """Read a pcap or pcapng file into ring slot records (``shm.layout.slot_dtype``).

    ``seq`` is the packet index, ``ts_ns`` ns since the epoch, ``port`` the pcapng interface
    (0 for pcap).  Frames longer than ``slot_size`` are clamped and flagged truncated.

    ``keep_bytes=True`` also keeps the file's bytes (``Capture.data``) and where each whole
    packet lies in them (``frame_offsets``, ``frame_lengths``: its captured length, however
    long), so a packet longer than a slot can still be parsed and filtered whole
    (``parsers.l2l4.parse_frames``, ``Filter.match_frames``: ``hugering parse`` does)."""
    if not L.MIN_SLOT_SIZE <= slot_size <= L.MAX_SLOT_SIZE:
        raise ValueError(f"slot_size must be {L.MIN_SLOT_SIZE}..{L.MAX_SLOT_SIZE}")
    path = os.fspath(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise PcapError(f"{path}: cannot read: {e.strerror or e}", 0) from None
    limit = np.iinfo(np.int64).max if limit is None else int(limit)
    dtype = L.slot_dtype(slot_size)
    stride = dtype.itemsize
    if data.size < 4:
        raise PcapError(f"{path}: {data.size} bytes is too short to be a capture file", 0)
    magic_le = int(data[:4].view("<u4")[0])
    magic_be = int(data[:4].view(">u4")[0])
    empty_w = np.zeros(0, np.int64)
    empty_b = np.zeros(0, np.uint8)
    index = empty_w
    if magic_le == PCAPNG_SHB:
        status = np.zeros(6, np.int64)
        tables = [np.zeros(MAX_INTERFACES * 4, np.int64) for _ in range(4)]
        _walk_pcapng(data, False, empty_w, empty_b, stride, slot_size, limit, *tables, status,
                     empty_w)
        count = int(status[0])
        slots = np.zeros(count, dtype=dtype)
        status2 = np.zeros(6, np.int64)
        if keep_bytes:
            index = np.zeros(2 * count, np.int64)
        _walk_pcapng(data, True, slots.view(np.int64), slots.view(np.uint8), stride, slot_size,
                     count, *tables, status2, index)
        nif = int(status[3])
        cap = Capture(slots, count, "pcapng", int(status[4]), int(status[5]) > 6,
                      linktypes=[int(x) for x in tables[0][:nif]])
    elif magic_le in (PCAP_MAGIC_US, PCAP_MAGIC_NS) or magic_be in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
        swap = magic_le not in (PCAP_MAGIC_US, PCAP_MAGIC_NS)
        nano = (magic_be if swap else magic_le) == PCAP_MAGIC_NS
        if data.size < 24:
            raise PcapError(f"{path}: truncated pcap file header ({data.size} of 24 bytes)", 0)
        order = ">" if swap else "<"
        linktype = int(data[20:24].view(order + "u4")[0]) & 0x0FFFFFFF
        status = np.zeros(3, np.int64)
        _walk_pcap(data, swap, nano, False, empty_w, empty_b, stride, slot_size, limit, status,
                   empty_w)
        count = int(status[0])
        slots = np.zeros(count, dtype=dtype)
        if keep_bytes:
            index = np.zeros(2 * count, np.int64)
        _walk_pcap(data, swap, nano, True, slots.view(np.int64), slots.view(np.uint8), stride,
                   slot_size, count, np.zeros(3, np.int64), index)
        cap = Capture(slots, count, "pcap", linktype, nano, linktypes=[linktype])
    else:
        raise PcapError(f"{path}: byte 0: magic 0x{magic_le:08x} is neither pcap nor pcapng", 0)
    if keep_bytes:
        cap.data = data
        cap.frame_offsets = index[0::2]
        cap.frame_lengths = index[1::2]
    if int(status[1]) != E_OK:
        off = int(status[2])
        cap.error = (f"{path}: byte {off}: {_MESSAGES[int(status[1])]}; "
                     f"{cap.count} packets before it were read")
        cap.error_offset = off
        if strict:
            raise PcapError(cap.error, off, cap)
    return cap


@njit(cache=True, nogil=True)
def _encode_pcap(words, slot_bytes, stride, size, first, count, nano, out):
    """Serialise slots as classic pcap records (little-endian) into ``out``; returns bytes."""
    o = 0
    for i in range(first, first + count):
        base = i * (stride // 8)
        ts = words[base + L.S_TS]
        lens = words[base + L.S_LENS]
        wire = lens & 0xFFFFFFFF
        cap = (lens >> 32) & 0xFFFFFFFF
        if cap > size:
            cap = size
        sec = ts // 1_000_000_000
        frac = ts % 1_000_000_000
        if not nano:
            frac //= 1000
        for k, v in enumerate((sec, frac, cap, wire)):
            for b in range(4):
                out[o + 4 * k + b] = (v >> (8 * b)) & 0xFF
        src = i * stride + L.SLOT_HEADER_BYTES
        out[o + 16:o + 16 + cap] = slot_bytes[src:src + cap]
        o += 16 + cap
    return o


def pcap_file_header(linktype: int = LINKTYPE_ETHERNET, nanosecond: bool = True,
                     snaplen: int = MAX_RECORD) -> bytes:
    magic = PCAP_MAGIC_NS if nanosecond else PCAP_MAGIC_US
    return np.array([magic], "<u4").tobytes() + np.array([2, 4], "<u2").tobytes() + \
        np.array([0, 0, snaplen, linktype], "<u4").tobytes()


def encode_slots(slots: np.ndarray, nanosecond: bool = True) -> bytes:
    """Classic pcap records (no file header) for an array of slot records."""
    size = slots.dtype.fields["payload"][0].shape[0]
    caps = np.minimum(slots["cap_len"].astype(np.int64), size)
    out = np.zeros(int(16 * len(slots) + caps.sum()), np.uint8)
    n = _encode_pcap(slots.view(np.int64), slots.view(np.uint8), slots.dtype.itemsize, size, 0,
                     len(slots), nanosecond, out)
    return out[:n].tobytes()


def write_pcap(path, slots: np.ndarray, count: int | None = None,
               linktype: int = LINKTYPE_ETHERNET, nanosecond: bool = True) -> int:
    """Write slot records as a classic pcap file (nanosecond magic by default, which tcpdump,
    tshark and libpcap read); returns the number of packets written."""
    slots = slots[: len(slots) if count is None else count]
    with open(path, "wb") as f:
        f.write(pcap_file_header(linktype, nanosecond))
        f.write(encode_slots(slots, nanosecond))
    return len(slots)


class PcapWriter:
    """Append frames to a classic pcap file (for ``hugering dump``); flushes on close."""

    def __init__(self, path, linktype: int = LINKTYPE_ETHERNET, nanosecond: bool = True):
        self.nanosecond = nanosecond
        self._f = open(path, "wb")
        self._f.write(pcap_file_header(linktype, nanosecond))
        self.count = 0

    def write(self, data: bytes, ts_ns: int, wire_len: int | None = None) -> None:
        sec, frac = divmod(int(ts_ns), 1_000_000_000)
        if not self.nanosecond:
            frac //= 1000
        self._f.write(np.array([sec, frac, len(data), len(data) if wire_len is None else wire_len],
                               "<u4").tobytes())
        self._f.write(data)
        self.count += 1

    def write_slots(self, slots: np.ndarray) -> None:
        self._f.write(encode_slots(slots, self.nanosecond))
        self.count += len(slots)

    def close(self) -> None:
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
