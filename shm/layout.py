"""The ring's byte layout: the single source of truth for every byte of a ring file.

Everything else is generated from, or checked against, the tables in this module:

* the numpy structured dtypes (``HEADER_DTYPE``, ``CONSUMER_DTYPE``, ``slot_dtype``),
* the int64 word indices the ``@njit`` kernels use (``H_*``, ``P_*``, ``C_*``, ``S_*``),
* the C header ``shm/include/hugering_layout.h`` (``python -m shm.layout --write-header``;
  ``tests/test_layout.py`` fails if the committed file differs),
* the table below (``python -m shm.layout --doc`` prints it; a test compares it with this
  docstring).

A ring file is two regions.  The *control region* (read-write for every process) holds the
header, the producer's lines and one 64-byte line per consumer.  The *slot region* starts at
``slots_offset``, a multiple of the backing's page size (2 MiB on hugetlbfs), so that consumers
can map it read-only on its own.  All integers are little-endian (the host's: x86-64 and arm64).

.. layout-table-begin

=====================  ========  =========  ====  ===========================================================
field                  offset    size       type  meaning
=====================  ========  =========  ====  ===========================================================
**header**             0         128
magic                  0         8          u64   0x474e495245475548, "HUGERING" in ASCII
layout_version         8         4          u32   bumped on any change to these tables
mode                   12        4          u32   0 lossless, 1 lossy
capacity               16        8          i64   number of slots, a power of two
slot_size              24        4          u32   payload bytes per slot (64 .. 9216)
slot_stride            28        4          u32   bytes from one slot to the next (multiple of 64)
max_consumers          32        4          u32   consumer lines after the producer lines
full_policy            36        4          u32   lossless and full: 0 drop and count, 1 wait
slots_offset           40        8          i64   byte offset of slot 0 (multiple of the page size)
file_size              48        8          i64   total bytes; checked against the file before mapping
created_ns             56        8          i64   CLOCK_REALTIME at creation
backing                64        4          u32   0 hugetlbfs file, 1 POSIX shared memory
page_size              68        4          u32   page size of the backing (bytes)
consumer_timeout_ns    72        8          i64   a consumer holding the producer back this long is evicted
producer_pid           80        8          i64   pid of the producer that last attached (0 none)
producer_start_ns      88        8          i64   CLOCK_REALTIME when that producer attached
**producer**           128       64               written by the producer only; cursor alone on its line
cursor                 128       8          i64   next sequence number to publish (free-running)
heartbeat_ns           136       8          i64   CLOCK_REALTIME of the producer's last publish or idle tick
**producer_stats**     192       64               written by the producer only
published              192       8          i64   slots published
dropped_full           200       8          i64   slots dropped because the ring was full (lossless, drop)
evictions              208       8          i64   consumers evicted (dead pid or no progress for the timeout)
full_waits             216       8          i64   reserve calls that found the ring full
nic_drops              224       8          i64   drops upstream of the ring, as the source reports them
**source_stats**       256       64               written by the producer only, about once a second
src_packets            256       8          i64   packets the source received (NIC queue / socket), before the ring
src_missed             264       8          i64   dropped by the NIC or socket for want of RX descriptors (imissed)
src_errors             272       8          i64   erroneous packets reported by the NIC (ierrors)
src_nombuf             280       8          i64   RX buffer allocation failures (rx_nombuf, fill ring empty)
pool_size              288       8          i64   buffers in the source's pool (mempool elements, UMEM frames); 0 none
pool_in_use            296       8          i64   buffers of that pool not free (the leak monitor watches it)
tx_dropped             304       8          i64   frames a TX path could not send (counted, never silent)
src_stats_ns           312       8          i64   CLOCK_REALTIME of the last refresh of this line (0 never)
**consumer[k]**        320+64k   64               one line per consumer, written by that consumer only
cursor                 +0        8          i64   next sequence number to read (free-running)
state                  +8        8          i64   0 free, 1 claimed, 2 active, 3 evicted (by the producer)
pid                    +16       8          i64   pid of the consumer process
heartbeat_ns           +24       8          i64   CLOCK_REALTIME of the consumer's last poll
lost                   +32       8          i64   sequence numbers skipped: lapped (lossy) or evicted
delivered              +40       8          i64   slots handed to the consumer
rejoins                +48       8          i64   times it resynchronised after a lap or an eviction
joined_ns              +56       8          i64   CLOCK_REALTIME when it joined
**slot[i]**                      stride           at slots_offset + i * slot_stride; stride = 32 + slot_size rounded up to 64
seq                    +0        8          i64   sequence number written in the slot; -1 while being written
ts_ns                  +8        8          i64   timestamp, ns since the epoch (NIC, pcap or producer clock)
wire_len               +16       4          u32   length of the frame on the wire
cap_len                +20       4          u32   bytes captured in payload; readers clamp it to slot_size
port                   +24       2          u16   port (interface) index of the source
queue                  +26       2          u16   RX queue index of the source
flags                  +28       4          u32   producer flags (bit 0: truncated to the slot)
payload                +32       slot_size  u8    the frame, starting at its Ethernet header
=====================  ========  =========  ====  ===========================================================

.. layout-table-end
"""
from __future__ import annotations

import sys

import numpy as np

MAGIC = 0x474E495245475548  # b"HUGERING" read as a little-endian u64
LAYOUT_VERSION = 2          # 2: the source_stats line (consumers moved from 256 to 320)
LINE = 64  # cache line; every region below starts on one
SLOT_HEADER_BYTES = 32
MIN_SLOT_SIZE = 64
MAX_SLOT_SIZE = 9216
DEFAULT_SLOT_SIZE = 2048
MAX_CAPACITY = 1 << 26
MAX_CONSUMERS_LIMIT = 256
DEFAULT_MAX_CONSUMERS = 16

MODE_LOSSLESS, MODE_LOSSY = 0, 1
MODES = {"lossless": MODE_LOSSLESS, "lossy": MODE_LOSSY}
FULL_DROP, FULL_WAIT = 0, 1
FULL_POLICIES = {"drop": FULL_DROP, "wait": FULL_WAIT}
BACKING_HUGETLBFS, BACKING_SHM = 0, 1
CONSUMER_FREE, CONSUMER_CLAIMED, CONSUMER_ACTIVE, CONSUMER_EVICTED = 0, 1, 2, 3
SEQ_BUSY = -1  # slot stamp while the producer writes it (lossy mode readers see it as "lapped")
SLOT_FLAG_TRUNCATED = 1

# --- the tables --------------------------------------------------------------------------
# (name, byte offset within the region, numpy type, meaning).  Offsets are explicit so that a
# reordering is a visible diff; _check() proves they are contiguous and aligned.
HEADER_FIELDS = [
    ("magic", 0, "u8", '0x474e495245475548, "HUGERING" in ASCII'),
    ("layout_version", 8, "u4", "bumped on any change to these tables"),
    ("mode", 12, "u4", "0 lossless, 1 lossy"),
    ("capacity", 16, "i8", "number of slots, a power of two"),
    ("slot_size", 24, "u4", "payload bytes per slot (64 .. 9216)"),
    ("slot_stride", 28, "u4", "bytes from one slot to the next (multiple of 64)"),
    ("max_consumers", 32, "u4", "consumer lines after the producer lines"),
    ("full_policy", 36, "u4", "lossless and full: 0 drop and count, 1 wait"),
    ("slots_offset", 40, "i8", "byte offset of slot 0 (multiple of the page size)"),
    ("file_size", 48, "i8", "total bytes; checked against the file before mapping"),
    ("created_ns", 56, "i8", "CLOCK_REALTIME at creation"),
    ("backing", 64, "u4", "0 hugetlbfs file, 1 POSIX shared memory"),
    ("page_size", 68, "u4", "page size of the backing (bytes)"),
    ("consumer_timeout_ns", 72, "i8", "a consumer holding the producer back this long is evicted"),
    ("producer_pid", 80, "i8", "pid of the producer that last attached (0 none)"),
    ("producer_start_ns", 88, "i8", "CLOCK_REALTIME when that producer attached"),
]
HEADER_BYTES = 128

PRODUCER_OFFSET = 128
PRODUCER_FIELDS = [
    ("cursor", 0, "i8", "next sequence number to publish (free-running)"),
    ("heartbeat_ns", 8, "i8", "CLOCK_REALTIME of the producer's last publish or idle tick"),
]
PRODUCER_STATS_OFFSET = 192
PRODUCER_STATS_FIELDS = [
    ("published", 0, "i8", "slots published"),
    ("dropped_full", 8, "i8", "slots dropped because the ring was full (lossless, drop)"),
    ("evictions", 16, "i8", "consumers evicted (dead pid or no progress for the timeout)"),
    ("full_waits", 24, "i8", "reserve calls that found the ring full"),
    ("nic_drops", 32, "i8", "drops upstream of the ring, as the source reports them"),
]
# What the packet source itself reports (a DPDK port and its mempool, an AF_XDP socket and its
# UMEM), refreshed by the producer about once a second: the NIC-level drops of the seed's
# scenario A and the buffer accounting the leak monitor watches (scenario B).  Producers with no
# such source (synthetic, replay) leave the line zero.
SOURCE_STATS_OFFSET = 256
SOURCE_STATS_FIELDS = [
    ("src_packets", 0, "i8", "packets the source received (NIC queue / socket), before the ring"),
    ("src_missed", 8, "i8", "dropped by the NIC or socket for want of RX descriptors (imissed)"),
    ("src_errors", 16, "i8", "erroneous packets reported by the NIC (ierrors)"),
    ("src_nombuf", 24, "i8", "RX buffer allocation failures (rx_nombuf, fill ring empty)"),
    ("pool_size", 32, "i8", "buffers in the source's pool (mempool elements, UMEM frames); 0 none"),
    ("pool_in_use", 40, "i8", "buffers of that pool not free (the leak monitor watches it)"),
    ("tx_dropped", 48, "i8", "frames a TX path could not send (counted, never silent)"),
    ("src_stats_ns", 56, "i8", "CLOCK_REALTIME of the last refresh of this line (0 never)"),
]
CONSUMERS_OFFSET = 320
CONSUMER_FIELDS = [
    ("cursor", 0, "i8", "next sequence number to read (free-running)"),
    ("state", 8, "i8", "0 free, 1 claimed, 2 active, 3 evicted (by the producer)"),
    ("pid", 16, "i8", "pid of the consumer process"),
    ("heartbeat_ns", 24, "i8", "CLOCK_REALTIME of the consumer's last poll"),
    ("lost", 32, "i8", "sequence numbers skipped: lapped (lossy) or evicted"),
    ("delivered", 40, "i8", "slots handed to the consumer"),
    ("rejoins", 48, "i8", "times it resynchronised after a lap or an eviction"),
    ("joined_ns", 56, "i8", "CLOCK_REALTIME when it joined"),
]
SLOT_FIELDS = [
    ("seq", 0, "i8", "sequence number written in the slot; -1 while being written"),
    ("ts_ns", 8, "i8", "timestamp, ns since the epoch (NIC, pcap or producer clock)"),
    ("wire_len", 16, "u4", "length of the frame on the wire"),
    ("cap_len", 20, "u4", "bytes captured in payload; readers clamp it to slot_size"),
    ("port", 24, "u2", "port (interface) index of the source"),
    ("queue", 26, "u2", "RX queue index of the source"),
    ("flags", 28, "u4", "producer flags (bit 0: truncated to the slot)"),
]

REGIONS = [
    # (title, base offset for the docs, fields, size, comment)
    ("header", "0", HEADER_FIELDS, HEADER_BYTES, ""),
    ("producer", str(PRODUCER_OFFSET), PRODUCER_FIELDS, LINE,
     "written by the producer only; cursor alone on its line"),
    ("producer_stats", str(PRODUCER_STATS_OFFSET), PRODUCER_STATS_FIELDS, LINE,
     "written by the producer only"),
    ("source_stats", str(SOURCE_STATS_OFFSET), SOURCE_STATS_FIELDS, LINE,
     "written by the producer only, about once a second"),
    ("consumer[k]", f"{CONSUMERS_OFFSET}+64k", CONSUMER_FIELDS, LINE,
     "one line per consumer, written by that consumer only"),
]


def _dtype(fields, itemsize):
    return np.dtype({
        "names": [f[0] for f in fields],
        "formats": ["<" + f[2] for f in fields],
        "offsets": [f[1] for f in fields],
        "itemsize": itemsize,
    })


HEADER_DTYPE = _dtype(HEADER_FIELDS, HEADER_BYTES)
PRODUCER_DTYPE = _dtype(PRODUCER_FIELDS, LINE)
PRODUCER_STATS_DTYPE = _dtype(PRODUCER_STATS_FIELDS, LINE)
SOURCE_STATS_DTYPE = _dtype(SOURCE_STATS_FIELDS, LINE)
CONSUMER_DTYPE = _dtype(CONSUMER_FIELDS, LINE)


def slot_stride(slot_size: int) -> int:
    """Bytes from one slot to the next: header + payload rounded up to a cache line."""
    return (SLOT_HEADER_BYTES + slot_size + LINE - 1) // LINE * LINE


def slot_dtype(slot_size: int) -> np.dtype:
    """The structured record of one slot, padded to its stride."""
    fields = SLOT_FIELDS + [("payload", SLOT_HEADER_BYTES, None, "")]
    return np.dtype({
        "names": [f[0] for f in fields],
        "formats": ["<" + f[2] for f in SLOT_FIELDS] + [("u1", (slot_size,))],
        "offsets": [f[1] for f in fields],
        "itemsize": slot_stride(slot_size),
    })


def control_bytes(max_consumers: int) -> int:
    return CONSUMERS_OFFSET + LINE * max_consumers


def round_up(n: int, to: int) -> int:
    return (n + to - 1) // to * to


# --- int64 word indices for the @njit kernels ---------------------------------------------
# The kernels see the control region as one int64 array and the slot region as another; these
# module-level ints are compile-time constants to Numba.  Only 8-byte fields get an index.
def _word(base: int, fields, name: str) -> int:
    for fname, off, typ, _ in fields:
        if fname == name:
            assert typ in ("i8", "u8") and (base + off) % 8 == 0, name
            return (base + off) // 8
    raise KeyError(name)


H_CAPACITY = _word(0, HEADER_FIELDS, "capacity")
H_SLOTS_OFFSET = _word(0, HEADER_FIELDS, "slots_offset")
H_CONSUMER_TIMEOUT = _word(0, HEADER_FIELDS, "consumer_timeout_ns")
H_PRODUCER_PID = _word(0, HEADER_FIELDS, "producer_pid")
H_PRODUCER_START = _word(0, HEADER_FIELDS, "producer_start_ns")
P_CURSOR = _word(PRODUCER_OFFSET, PRODUCER_FIELDS, "cursor")
P_HEARTBEAT = _word(PRODUCER_OFFSET, PRODUCER_FIELDS, "heartbeat_ns")
PS_PUBLISHED = _word(PRODUCER_STATS_OFFSET, PRODUCER_STATS_FIELDS, "published")
PS_DROPPED_FULL = _word(PRODUCER_STATS_OFFSET, PRODUCER_STATS_FIELDS, "dropped_full")
PS_EVICTIONS = _word(PRODUCER_STATS_OFFSET, PRODUCER_STATS_FIELDS, "evictions")
PS_FULL_WAITS = _word(PRODUCER_STATS_OFFSET, PRODUCER_STATS_FIELDS, "full_waits")
PS_NIC_DROPS = _word(PRODUCER_STATS_OFFSET, PRODUCER_STATS_FIELDS, "nic_drops")
SS_PACKETS = _word(SOURCE_STATS_OFFSET, SOURCE_STATS_FIELDS, "src_packets")
SS_MISSED = _word(SOURCE_STATS_OFFSET, SOURCE_STATS_FIELDS, "src_missed")
SS_ERRORS = _word(SOURCE_STATS_OFFSET, SOURCE_STATS_FIELDS, "src_errors")
SS_NOMBUF = _word(SOURCE_STATS_OFFSET, SOURCE_STATS_FIELDS, "src_nombuf")
SS_POOL_SIZE = _word(SOURCE_STATS_OFFSET, SOURCE_STATS_FIELDS, "pool_size")
SS_POOL_IN_USE = _word(SOURCE_STATS_OFFSET, SOURCE_STATS_FIELDS, "pool_in_use")
SS_TX_DROPPED = _word(SOURCE_STATS_OFFSET, SOURCE_STATS_FIELDS, "tx_dropped")
SS_STATS_NS = _word(SOURCE_STATS_OFFSET, SOURCE_STATS_FIELDS, "src_stats_ns")
C_BASE = CONSUMERS_OFFSET // 8
C_WORDS = LINE // 8
C_CURSOR = _word(0, CONSUMER_FIELDS, "cursor")
C_STATE = _word(0, CONSUMER_FIELDS, "state")
C_PID = _word(0, CONSUMER_FIELDS, "pid")
C_HEARTBEAT = _word(0, CONSUMER_FIELDS, "heartbeat_ns")
C_LOST = _word(0, CONSUMER_FIELDS, "lost")
C_DELIVERED = _word(0, CONSUMER_FIELDS, "delivered")
C_REJOINS = _word(0, CONSUMER_FIELDS, "rejoins")
C_JOINED = _word(0, CONSUMER_FIELDS, "joined_ns")
S_SEQ = _word(0, SLOT_FIELDS, "seq")
S_TS = _word(0, SLOT_FIELDS, "ts_ns")
# wire_len | cap_len << 32, and port | queue << 16 | flags << 32, as the kernels pack them
S_LENS = 2
S_PORTQ = 3
S_PAYLOAD = SLOT_HEADER_BYTES // 8


def _check() -> None:
    """The tables are contiguous, aligned and agree with the dtypes and word constants."""
    for title, _, fields, size, _ in REGIONS + [("slot", "", SLOT_FIELDS, SLOT_HEADER_BYTES, "")]:
        pos = 0
        for name, off, typ, _ in fields:
            width = np.dtype(typ).itemsize
            if off != pos or off % width:
                raise AssertionError(f"{title}.{name}: offset {off}, expected {pos}")
            pos += width
        if pos > size:
            raise AssertionError(f"{title}: {pos} bytes do not fit in {size}")
    assert PRODUCER_OFFSET == HEADER_BYTES and PRODUCER_STATS_OFFSET == PRODUCER_OFFSET + LINE
    assert SOURCE_STATS_OFFSET == PRODUCER_STATS_OFFSET + LINE
    assert CONSUMERS_OFFSET == SOURCE_STATS_OFFSET + LINE
    assert (S_LENS * 8, S_PORTQ * 8) == (16, 24)
    d = slot_dtype(64)
    assert d.fields["wire_len"][1] == 16 and d.fields["cap_len"][1] == 20
    assert d.fields["port"][1] == 24 and d.fields["flags"][1] == 28


_check()


# --- generated artefacts ------------------------------------------------------------------
_TYPE_NAMES = {"i8": "i64", "u8": "u64", "u4": "u32", "u2": "u16"}

def doc_table() -> str:
    """The reStructuredText table of the module docstring, generated from the tables."""
    rule = "=" * 21 + "  " + "=" * 8 + "  " + "=" * 9 + "  " + "=" * 4 + "  " + "=" * 59
    out = [rule, f"{'field':<21}  {'offset':<8}  {'size':<9}  {'type':<4}  meaning", rule]

    def row(a, b, c, d, e=""):
        out.append(f"{a:<21}  {b:<8}  {c:<9}  {d:<4}  {e}".rstrip())

    for title, base, fields, size, comment in REGIONS:
        row(f"**{title}**", base, str(size), "", comment)
        for name, off, typ, meaning in fields:
            if title == "consumer[k]":
                where = f"+{off}"
            else:
                where = str(int(base) + off)
            row(name, where, str(np.dtype(typ).itemsize), _TYPE_NAMES[typ], meaning)
    row("**slot[i]**", "", "stride", "", "at slots_offset + i * slot_stride; stride = 32 + slot_size rounded up to 64")
    for name, off, typ, meaning in SLOT_FIELDS:
        row(name, f"+{off}", str(np.dtype(typ).itemsize), _TYPE_NAMES[typ], meaning)
    row("payload", f"+{SLOT_HEADER_BYTES}", "slot_size", "u8", "the frame, starting at its Ethernet header")
    out.append(rule)
    return "\n".join(out)


_CTYPES = {"u8": "uint64_t", "i8": "int64_t", "u4": "uint32_t", "u2": "uint16_t"}


def c_header() -> str:
    """The C header for producers and consumers written in C (shm/include/hugering_layout.h)."""
    out = [
        "/* GENERATED by `python -m shm.layout --write-header` from shm/layout.py. Do not edit:",
        " * tests/test_layout.py fails when this file and the Python table disagree. */",
        "#ifndef HUGERING_LAYOUT_H",
        "#define HUGERING_LAYOUT_H",
        "#include <stdint.h>",
        "#include <stddef.h>",
        "",
        f"#define HR_MAGIC 0x{MAGIC:016x}ULL",
        f"#define HR_LAYOUT_VERSION {LAYOUT_VERSION}u",
        f"#define HR_LINE {LINE}",
        f"#define HR_SLOT_HEADER_BYTES {SLOT_HEADER_BYTES}",
        f"#define HR_MIN_SLOT_SIZE {MIN_SLOT_SIZE}",
        f"#define HR_MAX_SLOT_SIZE {MAX_SLOT_SIZE}",
        f"#define HR_MAX_CAPACITY ({MAX_CAPACITY}LL)",
        f"#define HR_MAX_CONSUMERS_LIMIT {MAX_CONSUMERS_LIMIT}",
        f"#define HR_MODE_LOSSLESS {MODE_LOSSLESS}",
        f"#define HR_MODE_LOSSY {MODE_LOSSY}",
        f"#define HR_FULL_DROP {FULL_DROP}",
        f"#define HR_FULL_WAIT {FULL_WAIT}",
        f"#define HR_BACKING_HUGETLBFS {BACKING_HUGETLBFS}",
        f"#define HR_BACKING_SHM {BACKING_SHM}",
        f"#define HR_CONSUMER_FREE {CONSUMER_FREE}",
        f"#define HR_CONSUMER_CLAIMED {CONSUMER_CLAIMED}",
        f"#define HR_CONSUMER_ACTIVE {CONSUMER_ACTIVE}",
        f"#define HR_CONSUMER_EVICTED {CONSUMER_EVICTED}",
        f"#define HR_SEQ_BUSY ({SEQ_BUSY}LL)",
        f"#define HR_SLOT_FLAG_TRUNCATED {SLOT_FLAG_TRUNCATED}u",
        f"#define HR_PRODUCER_OFFSET {PRODUCER_OFFSET}",
        f"#define HR_PRODUCER_STATS_OFFSET {PRODUCER_STATS_OFFSET}",
        f"#define HR_SOURCE_STATS_OFFSET {SOURCE_STATS_OFFSET}",
        f"#define HR_CONSUMERS_OFFSET {CONSUMERS_OFFSET}",
        "",
    ]

    def struct(cname, fields, size):
        out.append(f"typedef struct __attribute__((aligned(8))) {cname} {{")
        pos = 0
        for name, off, typ, meaning in fields:
            out.append(f"    {_CTYPES[typ]} {name};{' ' * max(1, 24 - len(name))}/* +{off}: {meaning} */")
            pos = off + np.dtype(typ).itemsize
        if pos < size:
            out.append(f"    uint8_t _pad[{size - pos}];")
        out.append(f"}} {cname};")
        out.append(f"_Static_assert(sizeof({cname}) == {size}, \"{cname} size\");")
        for name, off, _, _ in fields:
            out.append(f"_Static_assert(offsetof({cname}, {name}) == {off}, \"{cname}.{name}\");")
        out.append("")

    struct("hr_header", HEADER_FIELDS, HEADER_BYTES)
    struct("hr_producer_line", PRODUCER_FIELDS, LINE)
    struct("hr_producer_stats", PRODUCER_STATS_FIELDS, LINE)
    struct("hr_source_stats", SOURCE_STATS_FIELDS, LINE)
    struct("hr_consumer_line", CONSUMER_FIELDS, LINE)
    struct("hr_slot_header", SLOT_FIELDS, SLOT_HEADER_BYTES)
    out += [
        "/* slot payload follows the slot header; a slot's stride is",
        " * (HR_SLOT_HEADER_BYTES + slot_size) rounded up to HR_LINE. */",
        "#define HR_SLOT_STRIDE(slot_size) \\",
        "    ((((HR_SLOT_HEADER_BYTES) + (slot_size)) + HR_LINE - 1) / HR_LINE * HR_LINE)",
        "",
        "#endif /* HUGERING_LAYOUT_H */",
        "",
    ]
    return "\n".join(out)


def header_path():
    from pathlib import Path
    return Path(__file__).with_name("include") / "hugering_layout.h"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--write-header"]:
        header_path().write_text(c_header())
        print(f"wrote {header_path()}")
    elif argv == ["--doc"]:
        print(doc_table())
    else:
        print("usage: python -m shm.layout --write-header | --doc", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
