"""NASDAQ TotalView-ITCH 5.0: one layout table per message type; everything else derives from it.

The tables (``HEADER`` + ``MESSAGES[t]``) give, for every field of every message type, its byte
offset, size, wire kind and the name of the decoded-record field it lands in.  From them come:

* ``DTYPES[t]`` -- a packed big-endian numpy structured dtype per message type (bulk and
  Python use: ``np.frombuffer(data, DTYPES['A'])``; the 48-bit timestamp is ``(6,)u1``, see
  ``timestamps``),
* ``ITCH_RECORD_DTYPE`` -- the decoded record (native endian): one record holds any message's
  fields, integers as int64 (prices keep their implied decimals: 4, MWCB levels 8), one-byte
  alpha codes as u1 (``side`` is ``ord('B')`` / ``ord('S')``), longer alpha fields as byte
  arrays (``stock``: 8 bytes, space padded),
* the per-type field offsets as module ints (``A_ORDER_REF = 11``, ``A_LEN = 36`` ...) so that
  other ``@njit`` code reads fields straight from the bytes with ``be16/be32/be48/be64``,
* the ``@njit`` decoders and encoders in the GENERATED section below (``python -m parsers.itch
  --write-generated`` rewrites it; ``tests/test_itch.py`` fails when it is stale),
* the C header ``parsers/include/hugering_itch.h`` (``--write-header``; checked the same way),
* the table printed by ``python -m parsers.itch --doc``.

Wire kinds: ``u1/u2/u4/u8`` unsigned big-endian integers; ``u6`` the 48-bit timestamp
(nanoseconds since midnight); ``alpha`` ASCII, left justified, padded with spaces (any size);
``price4`` / ``price8`` unsigned integers with 4 / 8 implied decimals.  Wire u64 fields (order
reference and match numbers, cross and imbalance shares, near execution time) are kept as int64
bit patterns: Numba turns uint64 mixed with int64 into float64, and these day-unique counters
never reach 2**63 (a value that did would read as negative; encoders take it back unchanged).

Entry points (all ``@njit``, no allocation, never raise, never read outside ``buf``)
----------------------------------------------------------------------------------
``decode_message(buf, off, end, rec) -> length | -1``
    One message at ``buf[off:end]`` into ``rec`` (an ``ITCH_RECORD_DTYPE`` record, every field
    reset first).  -1 when the type is unknown or fewer than the type's length bytes are left;
    extra bytes after the message are not read (a caller that framed the message with a
    length can compare).
``decode_stream(buf, off, end, recs, counters) -> n``
    Length-prefixed messages (u16 length + message, as in MoldUDP64 message blocks and
    SoupBinTCP) from ``buf[off:end]`` into ``recs[0:n]``.  A block with an unknown type, a
    length other than its type's, or length 0 is counted and skipped (never mis-read); a block
    cut by ``end`` stops the walk.  ``counters`` (int64, ``SC_WORDS``) accumulate over calls,
    ``counters[SC_END]`` is where the walk stopped (resume there with more bytes).
``be8/be16/be32/be48/be64(buf, off)``
    The fast path for order-book loops: one big-endian field straight from the bytes, a single
    (``movbe``) load.  The caller bounds the offsets (one length check per message, against
    ``MSG_LEN`` / ``<T>_LEN``); under ``NUMBA_BOUNDSCHECK=1`` every read is checked against the
    array and raises IndexError (the fuzz tests run that way).
``encode_<name>(buf, off, locate, tracking, timestamp, <fields in table order>) -> off + len``
    One message written at ``buf[off:]``; -1 (nothing written) when it does not fit.  Every
    argument is an integer; alpha fields are passed as their big-endian word (``alpha_word``:
    ``symbol(b"AAPL")`` for a stock, ``ord('B')`` for a side).  ``ENCODERS[t]`` names them.

Python: ``encode(t, **fields) -> bytes`` for every type (alpha fields as str/bytes or words),
``decode_bytes(data) -> record``, ``fields_of(rec) -> dict``, ``decode_all(data)``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numba
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

# --- the tables ---------------------------------------------------------------------------------
# Message lengths from the NASDAQ TotalView-ITCH 5.0 specification (the project's REFERENCES,
# "Market data and matching"): each table below must add up to exactly this (checked at import).
LENGTHS = {
    "S": 12, "R": 39, "H": 25, "Y": 20, "L": 26, "V": 35, "W": 12, "K": 28, "J": 35, "h": 21,
    "A": 36, "F": 40, "E": 31, "C": 36, "X": 23, "D": 19, "U": 35, "P": 44, "Q": 40, "B": 19,
    "I": 50, "N": 20, "O": 48,
}

# (record field, offset, size, kind, meaning).  Same record field name = same meaning in every
# message that has it, so one decoded record type serves them all.
HEADER = [
    ("msg_type", 0, 1, "alpha", "message type"),
    ("locate", 1, 2, "u2", "stock locate code (0: not stock specific)"),
    ("tracking", 3, 2, "u2", "Nasdaq internal tracking number"),
    ("timestamp", 5, 6, "u6", "nanoseconds since midnight"),
]
HEADER_LEN = 11

# type -> (name, title, body fields).  The name makes the encoder (encode_<name>) and the
# MSG_<NAME> type code; the constants are <P>_<FIELD>, P the type letter ('h': OH).
MESSAGES = {
    "S": ("system_event", "System Event", [
        ("event_code", 11, 1, "alpha", "O start of messages, S/E start/end of system hours, "
                                       "Q/M start/end of market hours, C end of messages"),
    ]),
    "R": ("stock_directory", "Stock Directory", [
        ("stock", 11, 8, "alpha", "stock symbol, space padded"),
        ("market_category", 19, 1, "alpha", "Q G S N A P Z V or space"),
        ("financial_status", 20, 1, "alpha", "financial status indicator (D E Q S G H J K C N)"),
        ("round_lot_size", 21, 4, "u4", "shares in a round lot"),
        ("round_lots_only", 25, 1, "alpha", "Y / N"),
        ("issue_classification", 26, 1, "alpha", "security class (appendix)"),
        ("issue_subtype", 27, 2, "alpha", "security sub-type (appendix)"),
        ("authenticity", 29, 1, "alpha", "P live/production, T test"),
        ("short_sale_threshold", 30, 1, "alpha", "Y / N / space"),
        ("ipo_flag", 31, 1, "alpha", "Y / N / space"),
        ("luld_tier", 32, 1, "alpha", "LULD reference price tier: 1 / 2 / space"),
        ("etp_flag", 33, 1, "alpha", "Y / N / space"),
        ("etp_leverage", 34, 4, "u4", "ETP leverage factor"),
        ("inverse", 38, 1, "alpha", "inverse ETP: Y / N"),
    ]),
    "H": ("trading_action", "Stock Trading Action", [
        ("stock", 11, 8, "alpha", "stock symbol, space padded"),
        ("trading_state", 19, 1, "alpha", "H halted, P paused, Q quotation only, T trading"),
        ("reserved", 20, 1, "alpha", "reserved"),
        ("reason", 21, 4, "alpha", "trading action reason (appendix)"),
    ]),
    "Y": ("reg_sho", "Reg SHO Short Sale Price Test Restricted Indicator", [
        ("stock", 11, 8, "alpha", "stock symbol, space padded"),
        ("reg_sho_action", 19, 1, "alpha", "0 none, 1 in effect (intraday drop), 2 remains"),
    ]),
    "L": ("participant_position", "Market Participant Position", [
        ("mpid", 11, 4, "alpha", "market participant identifier"),
        ("stock", 15, 8, "alpha", "stock symbol, space padded"),
        ("primary_market_maker", 23, 1, "alpha", "Y / N"),
        ("market_maker_mode", 24, 1, "alpha", "N P S R L"),
        ("participant_state", 25, 1, "alpha", "A E W S D"),
    ]),
    "V": ("mwcb_decline", "MWCB Decline Level", [
        ("level1", 11, 8, "price8", "MWCB level 1 (8 implied decimals)"),
        ("level2", 19, 8, "price8", "MWCB level 2 (8 implied decimals)"),
        ("level3", 27, 8, "price8", "MWCB level 3 (8 implied decimals)"),
    ]),
    "W": ("mwcb_status", "MWCB Status", [
        ("breached_level", 11, 1, "alpha", "1 / 2 / 3"),
    ]),
    "K": ("ipo_quoting_period", "IPO Quoting Period Update", [
        ("stock", 11, 8, "alpha", "stock symbol, space padded"),
        ("ipo_release_time", 19, 4, "u4", "IPO quotation release time, seconds since midnight"),
        ("ipo_release_qualifier", 23, 1, "alpha", "A anticipated, C canceled/postponed"),
        ("price", 24, 4, "price4", "IPO price"),
    ]),
    "J": ("luld_auction_collar", "LULD Auction Collar", [
        ("stock", 11, 8, "alpha", "stock symbol, space padded"),
        ("ref_price", 19, 4, "price4", "auction collar reference price"),
        ("upper_collar", 23, 4, "price4", "upper auction collar price"),
        ("lower_collar", 27, 4, "price4", "lower auction collar price"),
        ("collar_extension", 31, 4, "u4", "extensions to the reopening auction"),
    ]),
    "h": ("operational_halt", "Operational Halt", [
        ("stock", 11, 8, "alpha", "stock symbol, space padded"),
        ("market_code", 19, 1, "alpha", "Q Nasdaq, B BX, X PSX"),
        ("halt_action", 20, 1, "alpha", "H halted, T trading resumed"),
    ]),
    "A": ("add_order", "Add Order (no MPID attribution)", [
        ("order_ref", 11, 8, "u8", "order reference number (day unique)"),
        ("side", 19, 1, "alpha", "B buy, S sell"),
        ("shares", 20, 4, "u4", "displayed shares"),
        ("stock", 24, 8, "alpha", "stock symbol, space padded"),
        ("price", 32, 4, "price4", "display price"),
    ]),
    "F": ("add_order_mpid", "Add Order with MPID Attribution", [
        ("order_ref", 11, 8, "u8", "order reference number (day unique)"),
        ("side", 19, 1, "alpha", "B buy, S sell"),
        ("shares", 20, 4, "u4", "displayed shares"),
        ("stock", 24, 8, "alpha", "stock symbol, space padded"),
        ("price", 32, 4, "price4", "display price"),
        ("attribution", 36, 4, "alpha", "MPID of the entering participant"),
    ]),
    "E": ("order_executed", "Order Executed", [
        ("order_ref", 11, 8, "u8", "order reference number"),
        ("executed_shares", 19, 4, "u4", "shares executed"),
        ("match_number", 23, 8, "u8", "match number (day unique)"),
    ]),
    "C": ("order_executed_price", "Order Executed With Price", [
        ("order_ref", 11, 8, "u8", "order reference number"),
        ("executed_shares", 19, 4, "u4", "shares executed"),
        ("match_number", 23, 8, "u8", "match number (day unique)"),
        ("printable", 31, 1, "alpha", "Y printable, N non-printable"),
        ("price", 32, 4, "price4", "execution price"),
    ]),
    "X": ("order_cancel", "Order Cancel", [
        ("order_ref", 11, 8, "u8", "order reference number"),
        ("canceled_shares", 19, 4, "u4", "shares removed from the displayed size"),
    ]),
    "D": ("order_delete", "Order Delete", [
        ("order_ref", 11, 8, "u8", "order reference number"),
    ]),
    "U": ("order_replace", "Order Replace", [
        ("order_ref", 11, 8, "u8", "original order reference number"),
        ("new_order_ref", 19, 8, "u8", "new order reference number"),
        ("shares", 27, 4, "u4", "new displayed shares"),
        ("price", 31, 4, "price4", "new display price"),
    ]),
    "P": ("trade", "Trade (non-cross)", [
        ("order_ref", 11, 8, "u8", "order reference number (0 since 2010)"),
        ("side", 19, 1, "alpha", "B buy, S sell (always B since 2014)"),
        ("shares", 20, 4, "u4", "shares matched"),
        ("stock", 24, 8, "alpha", "stock symbol, space padded"),
        ("price", 32, 4, "price4", "match price"),
        ("match_number", 36, 8, "u8", "match number (day unique)"),
    ]),
    "Q": ("cross_trade", "Cross Trade", [
        ("shares", 11, 8, "u8", "shares matched in the cross"),
        ("stock", 19, 8, "alpha", "stock symbol, space padded"),
        ("price", 27, 4, "price4", "cross price"),
        ("match_number", 31, 8, "u8", "match number (day unique)"),
        ("cross_type", 39, 1, "alpha", "O opening, C closing, H IPO/halt, A extended close"),
    ]),
    "B": ("broken_trade", "Broken Trade / Order Execution", [
        ("match_number", 11, 8, "u8", "match number of the broken execution"),
    ]),
    "I": ("noii", "Net Order Imbalance Indicator", [
        ("paired_shares", 11, 8, "u8", "shares paired at the current reference price"),
        ("imbalance_shares", 19, 8, "u8", "shares not paired"),
        ("imbalance_direction", 27, 1, "alpha", "B S N O P"),
        ("stock", 28, 8, "alpha", "stock symbol, space padded"),
        ("far_price", 36, 4, "price4", "far (cross orders only) clearing price"),
        ("near_price", 40, 4, "price4", "near clearing price / near execution price"),
        ("ref_price", 44, 4, "price4", "current reference price"),
        ("cross_type", 48, 1, "alpha", "O opening, C closing, H IPO/halt, A extended close"),
        ("price_variation", 49, 1, "alpha", "L 1-9 A B C or space"),
    ]),
    "N": ("rpii", "Retail Price Improvement Indicator", [
        ("stock", 11, 8, "alpha", "stock symbol, space padded"),
        ("interest_flag", 19, 1, "alpha", "B S A N"),
    ]),
    "O": ("dlcr", "Direct Listing with Capital Raise Price Discovery", [
        ("stock", 11, 8, "alpha", "stock symbol, space padded"),
        ("open_eligibility", 19, 1, "alpha", "N not eligible, Y eligible"),
        ("min_price", 20, 4, "price4", "minimum allowable price"),
        ("max_price", 24, 4, "price4", "maximum allowable price"),
        ("near_price", 28, 4, "price4", "near execution price"),
        ("near_time", 32, 8, "u8", "near execution time"),
        ("lower_collar", 40, 4, "price4", "lower price range collar"),
        ("upper_collar", 44, 4, "price4", "upper price range collar"),
    ]),
}

KIND_SIZES = {"u1": 1, "u2": 2, "u4": 4, "u6": 6, "u8": 8, "price4": 4, "price8": 8}
ALPHA_SIZES = (1, 2, 4, 8)        # alpha sizes ITCH uses (words of a natural width)
# the order in which decode_message tests the type byte: the order flow first
DISPATCH_ORDER = "ADXEUFCPSRHYLVWKJhQBINO"


def table(t: str) -> list:
    """The full layout table of message type ``t`` (common header + body)."""
    return HEADER + MESSAGES[t][2]


def _prefix(t: str) -> str:
    return "OH" if t == "h" else t


def _check_tables() -> None:
    assert set(MESSAGES) == set(LENGTHS) and sorted(DISPATCH_ORDER) == sorted(LENGTHS)
    kinds: dict[str, tuple] = {}
    for t, (name, _, body) in MESSAGES.items():
        pos = 0
        for fname, off, size, kind, _m in table(t):
            if off != pos:
                raise AssertionError(f"ITCH {t}.{fname}: offset {off}, expected {pos}")
            if kind == "alpha":
                if size not in ALPHA_SIZES:
                    raise AssertionError(f"ITCH {t}.{fname}: alpha({size}) not supported")
            elif KIND_SIZES[kind] != size:
                raise AssertionError(f"ITCH {t}.{fname}: {kind} is {KIND_SIZES[kind]} bytes")
            cls = ("alpha", size) if kind == "alpha" else ("int",)
            if kinds.setdefault(fname, cls) != cls:
                raise AssertionError(f"ITCH field {fname} has two kinds of content")
            pos += size
        if pos != LENGTHS[t]:
            raise AssertionError(f"ITCH {t} table adds up to {pos} bytes, the spec says "
                                 f"{LENGTHS[t]}")


_check_tables()


# --- derived: dtypes -------------------------------------------------------------------------
def _wire_format(kind: str, size: int) -> str:
    if kind == "alpha":
        return f"S{size}"
    if kind == "u6":
        return "(6,)u1"
    return f">u{size}"


def _wire_dtype(t: str) -> np.dtype:
    rows = table(t)
    return np.dtype({"names": [r[0] for r in rows],
                     "formats": [_wire_format(r[3], r[2]) for r in rows],
                     "offsets": [r[1] for r in rows], "itemsize": LENGTHS[t]})


DTYPES = {t: _wire_dtype(t) for t in MESSAGES}


def _record_fields() -> list:
    """(name, numpy type, meaning) of the decoded record, generated from the message tables:
    int64 fields first (first appearance in DISPATCH_ORDER), then u2, u1, byte arrays."""
    seen: dict[str, list] = {}
    order = [("", HEADER)] + [(t, MESSAGES[t][2]) for t in DISPATCH_ORDER]
    for t, rows in order:
        for fname, _off, size, kind, meaning in rows:
            if fname not in seen:
                if kind == "alpha":
                    typ = "u1" if size == 1 else f"({size},)u1"
                elif fname in ("locate", "tracking"):
                    typ = "u2"
                else:
                    typ = "i8"
                seen[fname] = [typ, meaning, []]
            if t:
                seen[fname][2].append(t)
    rank = {"i8": 0, "u2": 1, "u1": 2}
    fields = []
    for fname, (typ, meaning, users) in seen.items():
        where = f" [{' '.join(users)}]" if users else " [all]"
        fields.append((fname, typ, meaning + where))
    fields.sort(key=lambda f: rank.get(f[1], 3))       # stable: keeps appearance order
    return fields


RECORD_FIELDS = _record_fields()


def _record_dtype():
    names, formats, offsets, pos = [], [], [], 0
    for name, typ, _ in RECORD_FIELDS:
        dt = np.dtype(typ)
        assert pos % dt.base.itemsize == 0, name
        names.append(name)
        formats.append(typ)
        offsets.append(pos)
        pos += dt.itemsize
    size = (pos + 7) // 8 * 8
    return np.dtype({"names": names, "formats": formats, "offsets": offsets,
                     "itemsize": size}), dict(zip(names, offsets))


ITCH_RECORD_DTYPE, RECORD_OFFSETS = _record_dtype()
RECORD_BYTES = ITCH_RECORD_DTYPE.itemsize

# message type byte -> length (0: unknown type).  A global array: Numba freezes it into the code.
MSG_LEN = np.zeros(256, dtype=np.int64)
for _t, _n in LENGTHS.items():
    MSG_LEN[ord(_t)] = _n
MSG_LEN.setflags(write=False)
MAX_LEN = max(LENGTHS.values())

# decode_stream counters (int64 words)
SC_DECODED = 0      # messages decoded into records
SC_BLOCKS = 1       # complete blocks walked (decoded + skipped)
SC_UNKNOWN = 2      # blocks whose message type is not ITCH 5.0 (skipped)
SC_BAD_LENGTH = 3   # blocks whose length differs from their type's (skipped, never read)
SC_EMPTY = 4        # zero-length blocks (skipped)
SC_TRUNCATED = 5    # walks that ended inside a block (a length prefix or message cut by end)
SC_FULL = 6         # walks that stopped because recs was full
SC_END = 7          # offset where the last walk stopped (the resume point)
SC_WORDS = 8
COUNTER_NAMES = {SC_DECODED: "decoded", SC_BLOCKS: "blocks", SC_UNKNOWN: "unknown_type",
                 SC_BAD_LENGTH: "bad_length", SC_EMPTY: "empty", SC_TRUNCATED: "truncated",
                 SC_FULL: "full", SC_END: "end"}


# --- byte access ------------------------------------------------------------------------------
# Big-endian fields are read and written with one unaligned load/store and a byte swap (movbe):
# LLVM is not left to recognise eight byte loads and shifts as one load.  The intrinsics take
# the array and an index and do not check it; be*/put* below check it only under
# NUMBA_BOUNDSCHECK=1 (frozen at import: a boundscheck run needs its own NUMBA_CACHE_DIR).
_BOUNDSCHECK = bool(numba.config.BOUNDSCHECK)


def _is_bytes(a) -> bool:
    return (isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C"
            and a.dtype == types.uint8)


def _addr(context, builder, arrty, arr, idx, width):
    ary = context.make_array(arrty)(context, builder, arr)
    return builder.bitcast(builder.gep(ary.data, [idx]), ir.IntType(width).as_pointer())


def _make_load(width: int):
    def load(typingctx, buf, idx):
        if not (_is_bytes(buf) and isinstance(idx, types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            i = context.cast(builder, args[1], sig.args[1], types.int64)
            v = builder.load(_addr(context, builder, sig.args[0], args[0], i, width), align=1)
            if width > 8:
                v = builder.bswap(v)
            return builder.zext(v, ir.IntType(64)) if width < 64 else v
        return types.int64(buf, idx), codegen
    load.__name__ = load.__qualname__ = f"_load_be{width}"
    return intrinsic(load)


def _make_store(width: int):
    def store(typingctx, buf, idx, val):
        if not (_is_bytes(buf) and buf.mutable and isinstance(idx, types.Integer)
                and isinstance(val, (types.Integer, types.Boolean))):
            return None

        def codegen(context, builder, sig, args):
            i = context.cast(builder, args[1], sig.args[1], types.int64)
            v = context.cast(builder, args[2], sig.args[2], types.int64)
            if width < 64:
                v = builder.trunc(v, ir.IntType(width))
            if width > 8:
                v = builder.bswap(v)
            builder.store(v, _addr(context, builder, sig.args[0], args[0], i, width), align=1)
            return context.get_dummy_value()
        return types.none(buf, idx, val), codegen
    store.__name__ = store.__qualname__ = f"_store_be{width}"
    return intrinsic(store)


_ld8, _ld16, _ld32, _ld64 = (_make_load(w) for w in (8, 16, 32, 64))
_st8, _st16, _st32, _st64 = (_make_store(w) for w in (8, 16, 32, 64))

# leaf functions: no NRT reference counting on their array argument (a call would otherwise
# cost an atomic increment and decrement); small enough for LLVM to inline into any loop
_LEAF = _HOT = dict(cache=True, nogil=True, _nrt=False)


@njit(**_LEAF)
def _oob(buf, off, n):
    if off < 0 or off + n > buf.shape[0]:
        raise IndexError("parsers.itch: access outside the buffer")


@njit(**_LEAF)
def be8(buf, off):
    """``buf[off]`` as int64 (the one-byte alpha codes: type, side, printable ...)."""
    if _BOUNDSCHECK:
        _oob(buf, off, 1)
    return _ld8(buf, off)


@njit(**_LEAF)
def be16(buf, off):
    """Big-endian u16 at ``buf[off:off+2]`` as int64."""
    if _BOUNDSCHECK:
        _oob(buf, off, 2)
    return _ld16(buf, off)


@njit(**_LEAF)
def be32(buf, off):
    """Big-endian u32 at ``buf[off:off+4]`` as int64."""
    if _BOUNDSCHECK:
        _oob(buf, off, 4)
    return _ld32(buf, off)


@njit(**_LEAF)
def be48(buf, off):
    """Big-endian 48-bit integer at ``buf[off:off+6]`` (the ITCH timestamp) as int64."""
    if _BOUNDSCHECK:
        _oob(buf, off, 6)
    return (_ld32(buf, off) << 16) | _ld16(buf, off + 4)


@njit(**_LEAF)
def be64(buf, off):
    """Big-endian u64 at ``buf[off:off+8]`` as an int64 bit pattern."""
    if _BOUNDSCHECK:
        _oob(buf, off, 8)
    return _ld64(buf, off)


@njit(**_LEAF)
def put8(buf, off, v):
    if _BOUNDSCHECK:
        _oob(buf, off, 1)
    _st8(buf, off, v)


@njit(**_LEAF)
def put16(buf, off, v):
    if _BOUNDSCHECK:
        _oob(buf, off, 2)
    _st16(buf, off, v)


@njit(**_LEAF)
def put32(buf, off, v):
    if _BOUNDSCHECK:
        _oob(buf, off, 4)
    _st32(buf, off, v)


@njit(**_LEAF)
def put48(buf, off, v):
    if _BOUNDSCHECK:
        _oob(buf, off, 6)
    _st32(buf, off, v >> 16)
    _st16(buf, off + 4, v)


@njit(**_LEAF)
def put64(buf, off, v):
    if _BOUNDSCHECK:
        _oob(buf, off, 8)
    _st64(buf, off, v)


# --- code generation (the GENERATED section is this function's output) -----------------------
_READ = {1: "be8", 2: "be16", 4: "be32", 6: "be48", 8: "be64"}
_WRITE = {1: "put8", 2: "put16", 4: "put32", 6: "put48", 8: "put64"}
# the markers are found only at the start of a line (these two assignments do not match)
_GEN_BEGIN = "# ---- BEGIN GENERATED (python -m parsers.itch --write-generated) ----"
_GEN_END = "# ---- END GENERATED ----"


def _const(t: str, fname: str) -> str:
    return f"{_prefix(t)}_{fname.upper()}"


def _wrap_def(name: str, args: list, width: int = 99) -> list:
    """``def name(args):`` broken at ``width`` columns, continuation under the first arg."""
    lines, cur = [], f"def {name}("
    indent = " " * len(cur)
    for k, a in enumerate(args):
        piece = a + ("):" if k == len(args) - 1 else ", ")
        if len(cur) + len(piece.rstrip()) > width:
            lines.append(cur.rstrip())
            cur = indent
        cur += piece
    return lines + [cur]


def _encoder_doc(t: str) -> str:
    name, title, _ = MESSAGES[t]
    for what in (title, name):
        doc = f'    """{t!r} {what} at buf[off:]; returns off + {LENGTHS[t]} (-1: no room)."""'
        if len(doc) <= 99:
            return doc
    raise AssertionError(t)


def generated_source() -> str:
    """The GENERATED section: constants, record reset, per-type decoders and encoders."""
    out = [_GEN_BEGIN, "# fmt: off", "LOCATE = 1", "TRACKING = 3", "TIMESTAMP = 5", ""]
    for t, (name, title, body) in MESSAGES.items():
        out.append(f"MSG_{name.upper()} = {ord(t)}  # {t!r}: {title}")
    out.append("")
    for t, (name, title, body) in MESSAGES.items():
        out.append(f"# {t} {name}: {title}")
        out.append(f"{_prefix(t)}_LEN = {LENGTHS[t]}")
        for fname, off, size, kind, _ in body:
            out.append(f"{_const(t, fname)} = {off}")
        out.append("")
    # record reset: every field (test_itch checks that no byte survives)
    out += ["", "@njit(**_HOT)", "def _reset(rec):"]
    for fname, typ, _ in RECORD_FIELDS:
        if typ.startswith("("):
            n = np.dtype(typ).shape[0]
            out.append(f"    a = rec.{fname}")
            out.append(f"    for j in range({n}):")
            out.append("        a[j] = 0")
        else:
            out.append(f"    rec.{fname} = 0")
    # decoders
    for t, (name, title, body) in MESSAGES.items():
        out += ["", "", "@njit(**_HOT)", f"def _decode_{name}(b, o, rec):"]
        for fname, off, size, kind, _ in body:
            c = _const(t, fname)
            if kind == "alpha" and size > 1:
                out.append(f"    a = rec.{fname}")
                out.append(f"    for j in range({size}):")
                out.append(f"        a[j] = be8(b, o + {c} + j)")
            else:
                out.append(f"    rec.{fname} = {_READ[size]}(b, o + {c})")
    out += ["", "", "@njit(**_HOT)", "def _decode_body(b, o, t, rec):",
            '    """Decode the body of a message of known type ``t`` (length already checked)."""']
    for k, t in enumerate(DISPATCH_ORDER):
        kw = "if" if k == 0 else "elif"
        out.append(f"    {kw} t == {ord(t)}:  # {t}")
        out.append(f"        _decode_{MESSAGES[t][0]}(b, o, rec)")
    # encoders
    for t, (name, title, body) in MESSAGES.items():
        args = ["buf", "off", "locate", "tracking", "timestamp"] + [f[0] for f in body]
        out += ["", "", "@njit(**_HOT)"] + _wrap_def(f"encode_{name}", args) + [
                _encoder_doc(t),
                f"    if off < 0 or off + {_prefix(t)}_LEN > buf.shape[0]:",
                "        return -1",
                f"    put8(buf, off, MSG_{name.upper()})",
                "    put16(buf, off + LOCATE, locate)",
                "    put16(buf, off + TRACKING, tracking)",
                "    put48(buf, off + TIMESTAMP, timestamp)"]
        for fname, off, size, kind, _ in body:
            out.append(f"    {_WRITE[size]}(buf, off + {_const(t, fname)}, {fname})")
        out.append(f"    return off + {_prefix(t)}_LEN")
    out += ["", "", "# type letter -> @njit encoder", "ENCODERS = {"]
    for t, (name, _, _) in MESSAGES.items():
        out.append(f"    {t!r}: encode_{name},")
    out += ["}", "# fmt: on", _GEN_END]
    return "\n".join(out) + "\n"


def _source_path() -> Path:
    return Path(__file__)


def _section(text: str) -> tuple[int, int]:
    """Start and end (past its newline) of the GENERATED section of ``text``."""
    i = text.index("\n" + _GEN_BEGIN + "\n") + 1
    j = text.index("\n" + _GEN_END + "\n", i) + len(_GEN_END) + 2
    return i, j


def committed_generated() -> str:
    text = _source_path().read_text()
    i, j = _section(text)
    return text[i:j]


def write_generated() -> None:
    text = _source_path().read_text()
    i, j = _section(text)
    _source_path().write_text(text[:i] + generated_source() + text[j:])


# ---- BEGIN GENERATED (python -m parsers.itch --write-generated) ----
# fmt: off
LOCATE = 1
TRACKING = 3
TIMESTAMP = 5

MSG_SYSTEM_EVENT = 83  # 'S': System Event
MSG_STOCK_DIRECTORY = 82  # 'R': Stock Directory
MSG_TRADING_ACTION = 72  # 'H': Stock Trading Action
MSG_REG_SHO = 89  # 'Y': Reg SHO Short Sale Price Test Restricted Indicator
MSG_PARTICIPANT_POSITION = 76  # 'L': Market Participant Position
MSG_MWCB_DECLINE = 86  # 'V': MWCB Decline Level
MSG_MWCB_STATUS = 87  # 'W': MWCB Status
MSG_IPO_QUOTING_PERIOD = 75  # 'K': IPO Quoting Period Update
MSG_LULD_AUCTION_COLLAR = 74  # 'J': LULD Auction Collar
MSG_OPERATIONAL_HALT = 104  # 'h': Operational Halt
MSG_ADD_ORDER = 65  # 'A': Add Order (no MPID attribution)
MSG_ADD_ORDER_MPID = 70  # 'F': Add Order with MPID Attribution
MSG_ORDER_EXECUTED = 69  # 'E': Order Executed
MSG_ORDER_EXECUTED_PRICE = 67  # 'C': Order Executed With Price
MSG_ORDER_CANCEL = 88  # 'X': Order Cancel
MSG_ORDER_DELETE = 68  # 'D': Order Delete
MSG_ORDER_REPLACE = 85  # 'U': Order Replace
MSG_TRADE = 80  # 'P': Trade (non-cross)
MSG_CROSS_TRADE = 81  # 'Q': Cross Trade
MSG_BROKEN_TRADE = 66  # 'B': Broken Trade / Order Execution
MSG_NOII = 73  # 'I': Net Order Imbalance Indicator
MSG_RPII = 78  # 'N': Retail Price Improvement Indicator
MSG_DLCR = 79  # 'O': Direct Listing with Capital Raise Price Discovery

# S system_event: System Event
S_LEN = 12
S_EVENT_CODE = 11

# R stock_directory: Stock Directory
R_LEN = 39
R_STOCK = 11
R_MARKET_CATEGORY = 19
R_FINANCIAL_STATUS = 20
R_ROUND_LOT_SIZE = 21
R_ROUND_LOTS_ONLY = 25
R_ISSUE_CLASSIFICATION = 26
R_ISSUE_SUBTYPE = 27
R_AUTHENTICITY = 29
R_SHORT_SALE_THRESHOLD = 30
R_IPO_FLAG = 31
R_LULD_TIER = 32
R_ETP_FLAG = 33
R_ETP_LEVERAGE = 34
R_INVERSE = 38

# H trading_action: Stock Trading Action
H_LEN = 25
H_STOCK = 11
H_TRADING_STATE = 19
H_RESERVED = 20
H_REASON = 21

# Y reg_sho: Reg SHO Short Sale Price Test Restricted Indicator
Y_LEN = 20
Y_STOCK = 11
Y_REG_SHO_ACTION = 19

# L participant_position: Market Participant Position
L_LEN = 26
L_MPID = 11
L_STOCK = 15
L_PRIMARY_MARKET_MAKER = 23
L_MARKET_MAKER_MODE = 24
L_PARTICIPANT_STATE = 25

# V mwcb_decline: MWCB Decline Level
V_LEN = 35
V_LEVEL1 = 11
V_LEVEL2 = 19
V_LEVEL3 = 27

# W mwcb_status: MWCB Status
W_LEN = 12
W_BREACHED_LEVEL = 11

# K ipo_quoting_period: IPO Quoting Period Update
K_LEN = 28
K_STOCK = 11
K_IPO_RELEASE_TIME = 19
K_IPO_RELEASE_QUALIFIER = 23
K_PRICE = 24

# J luld_auction_collar: LULD Auction Collar
J_LEN = 35
J_STOCK = 11
J_REF_PRICE = 19
J_UPPER_COLLAR = 23
J_LOWER_COLLAR = 27
J_COLLAR_EXTENSION = 31

# h operational_halt: Operational Halt
OH_LEN = 21
OH_STOCK = 11
OH_MARKET_CODE = 19
OH_HALT_ACTION = 20

# A add_order: Add Order (no MPID attribution)
A_LEN = 36
A_ORDER_REF = 11
A_SIDE = 19
A_SHARES = 20
A_STOCK = 24
A_PRICE = 32

# F add_order_mpid: Add Order with MPID Attribution
F_LEN = 40
F_ORDER_REF = 11
F_SIDE = 19
F_SHARES = 20
F_STOCK = 24
F_PRICE = 32
F_ATTRIBUTION = 36

# E order_executed: Order Executed
E_LEN = 31
E_ORDER_REF = 11
E_EXECUTED_SHARES = 19
E_MATCH_NUMBER = 23

# C order_executed_price: Order Executed With Price
C_LEN = 36
C_ORDER_REF = 11
C_EXECUTED_SHARES = 19
C_MATCH_NUMBER = 23
C_PRINTABLE = 31
C_PRICE = 32

# X order_cancel: Order Cancel
X_LEN = 23
X_ORDER_REF = 11
X_CANCELED_SHARES = 19

# D order_delete: Order Delete
D_LEN = 19
D_ORDER_REF = 11

# U order_replace: Order Replace
U_LEN = 35
U_ORDER_REF = 11
U_NEW_ORDER_REF = 19
U_SHARES = 27
U_PRICE = 31

# P trade: Trade (non-cross)
P_LEN = 44
P_ORDER_REF = 11
P_SIDE = 19
P_SHARES = 20
P_STOCK = 24
P_PRICE = 32
P_MATCH_NUMBER = 36

# Q cross_trade: Cross Trade
Q_LEN = 40
Q_SHARES = 11
Q_STOCK = 19
Q_PRICE = 27
Q_MATCH_NUMBER = 31
Q_CROSS_TYPE = 39

# B broken_trade: Broken Trade / Order Execution
B_LEN = 19
B_MATCH_NUMBER = 11

# I noii: Net Order Imbalance Indicator
I_LEN = 50
I_PAIRED_SHARES = 11
I_IMBALANCE_SHARES = 19
I_IMBALANCE_DIRECTION = 27
I_STOCK = 28
I_FAR_PRICE = 36
I_NEAR_PRICE = 40
I_REF_PRICE = 44
I_CROSS_TYPE = 48
I_PRICE_VARIATION = 49

# N rpii: Retail Price Improvement Indicator
N_LEN = 20
N_STOCK = 11
N_INTEREST_FLAG = 19

# O dlcr: Direct Listing with Capital Raise Price Discovery
O_LEN = 48
O_STOCK = 11
O_OPEN_ELIGIBILITY = 19
O_MIN_PRICE = 20
O_MAX_PRICE = 24
O_NEAR_PRICE = 28
O_NEAR_TIME = 32
O_LOWER_COLLAR = 40
O_UPPER_COLLAR = 44


@njit(**_HOT)
def _reset(rec):
    rec.timestamp = 0
    rec.order_ref = 0
    rec.shares = 0
    rec.price = 0
    rec.canceled_shares = 0
    rec.executed_shares = 0
    rec.match_number = 0
    rec.new_order_ref = 0
    rec.round_lot_size = 0
    rec.etp_leverage = 0
    rec.level1 = 0
    rec.level2 = 0
    rec.level3 = 0
    rec.ipo_release_time = 0
    rec.ref_price = 0
    rec.upper_collar = 0
    rec.lower_collar = 0
    rec.collar_extension = 0
    rec.paired_shares = 0
    rec.imbalance_shares = 0
    rec.far_price = 0
    rec.near_price = 0
    rec.min_price = 0
    rec.max_price = 0
    rec.near_time = 0
    rec.locate = 0
    rec.tracking = 0
    rec.msg_type = 0
    rec.side = 0
    rec.printable = 0
    rec.event_code = 0
    rec.market_category = 0
    rec.financial_status = 0
    rec.round_lots_only = 0
    rec.issue_classification = 0
    rec.authenticity = 0
    rec.short_sale_threshold = 0
    rec.ipo_flag = 0
    rec.luld_tier = 0
    rec.etp_flag = 0
    rec.inverse = 0
    rec.trading_state = 0
    rec.reserved = 0
    rec.reg_sho_action = 0
    rec.primary_market_maker = 0
    rec.market_maker_mode = 0
    rec.participant_state = 0
    rec.breached_level = 0
    rec.ipo_release_qualifier = 0
    rec.market_code = 0
    rec.halt_action = 0
    rec.cross_type = 0
    rec.imbalance_direction = 0
    rec.price_variation = 0
    rec.interest_flag = 0
    rec.open_eligibility = 0
    a = rec.stock
    for j in range(8):
        a[j] = 0
    a = rec.attribution
    for j in range(4):
        a[j] = 0
    a = rec.issue_subtype
    for j in range(2):
        a[j] = 0
    a = rec.reason
    for j in range(4):
        a[j] = 0
    a = rec.mpid
    for j in range(4):
        a[j] = 0


@njit(**_HOT)
def _decode_system_event(b, o, rec):
    rec.event_code = be8(b, o + S_EVENT_CODE)


@njit(**_HOT)
def _decode_stock_directory(b, o, rec):
    a = rec.stock
    for j in range(8):
        a[j] = be8(b, o + R_STOCK + j)
    rec.market_category = be8(b, o + R_MARKET_CATEGORY)
    rec.financial_status = be8(b, o + R_FINANCIAL_STATUS)
    rec.round_lot_size = be32(b, o + R_ROUND_LOT_SIZE)
    rec.round_lots_only = be8(b, o + R_ROUND_LOTS_ONLY)
    rec.issue_classification = be8(b, o + R_ISSUE_CLASSIFICATION)
    a = rec.issue_subtype
    for j in range(2):
        a[j] = be8(b, o + R_ISSUE_SUBTYPE + j)
    rec.authenticity = be8(b, o + R_AUTHENTICITY)
    rec.short_sale_threshold = be8(b, o + R_SHORT_SALE_THRESHOLD)
    rec.ipo_flag = be8(b, o + R_IPO_FLAG)
    rec.luld_tier = be8(b, o + R_LULD_TIER)
    rec.etp_flag = be8(b, o + R_ETP_FLAG)
    rec.etp_leverage = be32(b, o + R_ETP_LEVERAGE)
    rec.inverse = be8(b, o + R_INVERSE)


@njit(**_HOT)
def _decode_trading_action(b, o, rec):
    a = rec.stock
    for j in range(8):
        a[j] = be8(b, o + H_STOCK + j)
    rec.trading_state = be8(b, o + H_TRADING_STATE)
    rec.reserved = be8(b, o + H_RESERVED)
    a = rec.reason
    for j in range(4):
        a[j] = be8(b, o + H_REASON + j)


@njit(**_HOT)
def _decode_reg_sho(b, o, rec):
    a = rec.stock
    for j in range(8):
        a[j] = be8(b, o + Y_STOCK + j)
    rec.reg_sho_action = be8(b, o + Y_REG_SHO_ACTION)


@njit(**_HOT)
def _decode_participant_position(b, o, rec):
    a = rec.mpid
    for j in range(4):
        a[j] = be8(b, o + L_MPID + j)
    a = rec.stock
    for j in range(8):
        a[j] = be8(b, o + L_STOCK + j)
    rec.primary_market_maker = be8(b, o + L_PRIMARY_MARKET_MAKER)
    rec.market_maker_mode = be8(b, o + L_MARKET_MAKER_MODE)
    rec.participant_state = be8(b, o + L_PARTICIPANT_STATE)


@njit(**_HOT)
def _decode_mwcb_decline(b, o, rec):
    rec.level1 = be64(b, o + V_LEVEL1)
    rec.level2 = be64(b, o + V_LEVEL2)
    rec.level3 = be64(b, o + V_LEVEL3)


@njit(**_HOT)
def _decode_mwcb_status(b, o, rec):
    rec.breached_level = be8(b, o + W_BREACHED_LEVEL)


@njit(**_HOT)
def _decode_ipo_quoting_period(b, o, rec):
    a = rec.stock
    for j in range(8):
        a[j] = be8(b, o + K_STOCK + j)
    rec.ipo_release_time = be32(b, o + K_IPO_RELEASE_TIME)
    rec.ipo_release_qualifier = be8(b, o + K_IPO_RELEASE_QUALIFIER)
    rec.price = be32(b, o + K_PRICE)


@njit(**_HOT)
def _decode_luld_auction_collar(b, o, rec):
    a = rec.stock
    for j in range(8):
        a[j] = be8(b, o + J_STOCK + j)
    rec.ref_price = be32(b, o + J_REF_PRICE)
    rec.upper_collar = be32(b, o + J_UPPER_COLLAR)
    rec.lower_collar = be32(b, o + J_LOWER_COLLAR)
    rec.collar_extension = be32(b, o + J_COLLAR_EXTENSION)


@njit(**_HOT)
def _decode_operational_halt(b, o, rec):
    a = rec.stock
    for j in range(8):
        a[j] = be8(b, o + OH_STOCK + j)
    rec.market_code = be8(b, o + OH_MARKET_CODE)
    rec.halt_action = be8(b, o + OH_HALT_ACTION)


@njit(**_HOT)
def _decode_add_order(b, o, rec):
    rec.order_ref = be64(b, o + A_ORDER_REF)
    rec.side = be8(b, o + A_SIDE)
    rec.shares = be32(b, o + A_SHARES)
    a = rec.stock
    for j in range(8):
        a[j] = be8(b, o + A_STOCK + j)
    rec.price = be32(b, o + A_PRICE)


@njit(**_HOT)
def _decode_add_order_mpid(b, o, rec):
    rec.order_ref = be64(b, o + F_ORDER_REF)
    rec.side = be8(b, o + F_SIDE)
    rec.shares = be32(b, o + F_SHARES)
    a = rec.stock
    for j in range(8):
        a[j] = be8(b, o + F_STOCK + j)
    rec.price = be32(b, o + F_PRICE)
    a = rec.attribution
    for j in range(4):
        a[j] = be8(b, o + F_ATTRIBUTION + j)


@njit(**_HOT)
def _decode_order_executed(b, o, rec):
    rec.order_ref = be64(b, o + E_ORDER_REF)
    rec.executed_shares = be32(b, o + E_EXECUTED_SHARES)
    rec.match_number = be64(b, o + E_MATCH_NUMBER)


@njit(**_HOT)
def _decode_order_executed_price(b, o, rec):
    rec.order_ref = be64(b, o + C_ORDER_REF)
    rec.executed_shares = be32(b, o + C_EXECUTED_SHARES)
    rec.match_number = be64(b, o + C_MATCH_NUMBER)
    rec.printable = be8(b, o + C_PRINTABLE)
    rec.price = be32(b, o + C_PRICE)


@njit(**_HOT)
def _decode_order_cancel(b, o, rec):
    rec.order_ref = be64(b, o + X_ORDER_REF)
    rec.canceled_shares = be32(b, o + X_CANCELED_SHARES)


@njit(**_HOT)
def _decode_order_delete(b, o, rec):
    rec.order_ref = be64(b, o + D_ORDER_REF)


@njit(**_HOT)
def _decode_order_replace(b, o, rec):
    rec.order_ref = be64(b, o + U_ORDER_REF)
    rec.new_order_ref = be64(b, o + U_NEW_ORDER_REF)
    rec.shares = be32(b, o + U_SHARES)
    rec.price = be32(b, o + U_PRICE)


@njit(**_HOT)
def _decode_trade(b, o, rec):
    rec.order_ref = be64(b, o + P_ORDER_REF)
    rec.side = be8(b, o + P_SIDE)
    rec.shares = be32(b, o + P_SHARES)
    a = rec.stock
    for j in range(8):
        a[j] = be8(b, o + P_STOCK + j)
    rec.price = be32(b, o + P_PRICE)
    rec.match_number = be64(b, o + P_MATCH_NUMBER)


@njit(**_HOT)
def _decode_cross_trade(b, o, rec):
    rec.shares = be64(b, o + Q_SHARES)
    a = rec.stock
    for j in range(8):
        a[j] = be8(b, o + Q_STOCK + j)
    rec.price = be32(b, o + Q_PRICE)
    rec.match_number = be64(b, o + Q_MATCH_NUMBER)
    rec.cross_type = be8(b, o + Q_CROSS_TYPE)


@njit(**_HOT)
def _decode_broken_trade(b, o, rec):
    rec.match_number = be64(b, o + B_MATCH_NUMBER)


@njit(**_HOT)
def _decode_noii(b, o, rec):
    rec.paired_shares = be64(b, o + I_PAIRED_SHARES)
    rec.imbalance_shares = be64(b, o + I_IMBALANCE_SHARES)
    rec.imbalance_direction = be8(b, o + I_IMBALANCE_DIRECTION)
    a = rec.stock
    for j in range(8):
        a[j] = be8(b, o + I_STOCK + j)
    rec.far_price = be32(b, o + I_FAR_PRICE)
    rec.near_price = be32(b, o + I_NEAR_PRICE)
    rec.ref_price = be32(b, o + I_REF_PRICE)
    rec.cross_type = be8(b, o + I_CROSS_TYPE)
    rec.price_variation = be8(b, o + I_PRICE_VARIATION)


@njit(**_HOT)
def _decode_rpii(b, o, rec):
    a = rec.stock
    for j in range(8):
        a[j] = be8(b, o + N_STOCK + j)
    rec.interest_flag = be8(b, o + N_INTEREST_FLAG)


@njit(**_HOT)
def _decode_dlcr(b, o, rec):
    a = rec.stock
    for j in range(8):
        a[j] = be8(b, o + O_STOCK + j)
    rec.open_eligibility = be8(b, o + O_OPEN_ELIGIBILITY)
    rec.min_price = be32(b, o + O_MIN_PRICE)
    rec.max_price = be32(b, o + O_MAX_PRICE)
    rec.near_price = be32(b, o + O_NEAR_PRICE)
    rec.near_time = be64(b, o + O_NEAR_TIME)
    rec.lower_collar = be32(b, o + O_LOWER_COLLAR)
    rec.upper_collar = be32(b, o + O_UPPER_COLLAR)


@njit(**_HOT)
def _decode_body(b, o, t, rec):
    """Decode the body of a message of known type ``t`` (length already checked)."""
    if t == 65:  # A
        _decode_add_order(b, o, rec)
    elif t == 68:  # D
        _decode_order_delete(b, o, rec)
    elif t == 88:  # X
        _decode_order_cancel(b, o, rec)
    elif t == 69:  # E
        _decode_order_executed(b, o, rec)
    elif t == 85:  # U
        _decode_order_replace(b, o, rec)
    elif t == 70:  # F
        _decode_add_order_mpid(b, o, rec)
    elif t == 67:  # C
        _decode_order_executed_price(b, o, rec)
    elif t == 80:  # P
        _decode_trade(b, o, rec)
    elif t == 83:  # S
        _decode_system_event(b, o, rec)
    elif t == 82:  # R
        _decode_stock_directory(b, o, rec)
    elif t == 72:  # H
        _decode_trading_action(b, o, rec)
    elif t == 89:  # Y
        _decode_reg_sho(b, o, rec)
    elif t == 76:  # L
        _decode_participant_position(b, o, rec)
    elif t == 86:  # V
        _decode_mwcb_decline(b, o, rec)
    elif t == 87:  # W
        _decode_mwcb_status(b, o, rec)
    elif t == 75:  # K
        _decode_ipo_quoting_period(b, o, rec)
    elif t == 74:  # J
        _decode_luld_auction_collar(b, o, rec)
    elif t == 104:  # h
        _decode_operational_halt(b, o, rec)
    elif t == 81:  # Q
        _decode_cross_trade(b, o, rec)
    elif t == 66:  # B
        _decode_broken_trade(b, o, rec)
    elif t == 73:  # I
        _decode_noii(b, o, rec)
    elif t == 78:  # N
        _decode_rpii(b, o, rec)
    elif t == 79:  # O
        _decode_dlcr(b, o, rec)


@njit(**_HOT)
def encode_system_event(buf, off, locate, tracking, timestamp, event_code):
    """'S' System Event at buf[off:]; returns off + 12 (-1: no room)."""
    if off < 0 or off + S_LEN > buf.shape[0]:
        return -1
    put8(buf, off, MSG_SYSTEM_EVENT)
    put16(buf, off + LOCATE, locate)
    put16(buf, off + TRACKING, tracking)
    put48(buf, off + TIMESTAMP, timestamp)
    put8(buf, off + S_EVENT_CODE, event_code)
    return off + S_LEN


@njit(**_HOT)
def encode_stock_directory(buf, off, locate, tracking, timestamp, stock, market_category,
                           financial_status, round_lot_size, round_lots_only, issue_classification,
                           issue_subtype, authenticity, short_sale_threshold, ipo_flag, luld_tier,
                           etp_flag, etp_leverage, inverse):
    """'R' Stock Directory at buf[off:]; returns off + 39 (-1: no room)."""
    if off < 0 or off + R_LEN > buf.shape[0]:
        return -1
    put8(buf, off, MSG_STOCK_DIRECTORY)
    put16(buf, off + LOCATE, locate)
    put16(buf, off + TRACKING, tracking)
    put48(buf, off + TIMESTAMP, timestamp)
    put64(buf, off + R_STOCK, stock)
    put8(buf, off + R_MARKET_CATEGORY, market_category)
    put8(buf, off + R_FINANCIAL_STATUS, financial_status)
    put32(buf, off + R_ROUND_LOT_SIZE, round_lot_size)
    put8(buf, off + R_ROUND_LOTS_ONLY, round_lots_only)
    put8(buf, off + R_ISSUE_CLASSIFICATION, issue_classification)
    put16(buf, off + R_ISSUE_SUBTYPE, issue_subtype)
    put8(buf, off + R_AUTHENTICITY, authenticity)
    put8(buf, off + R_SHORT_SALE_THRESHOLD, short_sale_threshold)
    put8(buf, off + R_IPO_FLAG, ipo_flag)
    put8(buf, off + R_LULD_TIER, luld_tier)
    put8(buf, off + R_ETP_FLAG, etp_flag)
    put32(buf, off + R_ETP_LEVERAGE, etp_leverage)
    put8(buf, off + R_INVERSE, inverse)
    return off + R_LEN


@njit(**_HOT)
def encode_trading_action(buf, off, locate, tracking, timestamp, stock, trading_state, reserved,
                          reason):
    """'H' Stock Trading Action at buf[off:]; returns off + 25 (-1: no room)."""
    if off < 0 or off + H_LEN > buf.shape[0]:
        return -1
    put8(buf, off, MSG_TRADING_ACTION)
    put16(buf, off + LOCATE, locate)
    put16(buf, off + TRACKING, tracking)
    put48(buf, off + TIMESTAMP, timestamp)
    put64(buf, off + H_STOCK, stock)
    put8(buf, off + H_TRADING_STATE, trading_state)
    put8(buf, off + H_RESERVED, reserved)
    put32(buf, off + H_REASON, reason)
    return off + H_LEN


@njit(**_HOT)
def encode_reg_sho(buf, off, locate, tracking, timestamp, stock, reg_sho_action):
    """'Y' reg_sho at buf[off:]; returns off + 20 (-1: no room)."""
    if off < 0 or off + Y_LEN > buf.shape[0]:
        return -1
    put8(buf, off, MSG_REG_SHO)
    put16(buf, off + LOCATE, locate)
    put16(buf, off + TRACKING, tracking)
    put48(buf, off + TIMESTAMP, timestamp)
    put64(buf, off + Y_STOCK, stock)
    put8(buf, off + Y_REG_SHO_ACTION, reg_sho_action)
    return off + Y_LEN


@njit(**_HOT)
def encode_participant_position(buf, off, locate, tracking, timestamp, mpid, stock,
                                primary_market_maker, market_maker_mode, participant_state):
    """'L' Market Participant Position at buf[off:]; returns off + 26 (-1: no room)."""
    if off < 0 or off + L_LEN > buf.shape[0]:
        return -1
    put8(buf, off, MSG_PARTICIPANT_POSITION)
    put16(buf, off + LOCATE, locate)
    put16(buf, off + TRACKING, tracking)
    put48(buf, off + TIMESTAMP, timestamp)
    put32(buf, off + L_MPID, mpid)
    put64(buf, off + L_STOCK, stock)
    put8(buf, off + L_PRIMARY_MARKET_MAKER, primary_market_maker)
    put8(buf, off + L_MARKET_MAKER_MODE, market_maker_mode)
    put8(buf, off + L_PARTICIPANT_STATE, participant_state)
    return off + L_LEN


@njit(**_HOT)
def encode_mwcb_decline(buf, off, locate, tracking, timestamp, level1, level2, level3):
    """'V' MWCB Decline Level at buf[off:]; returns off + 35 (-1: no room)."""
    if off < 0 or off + V_LEN > buf.shape[0]:
        return -1
    put8(buf, off, MSG_MWCB_DECLINE)
    put16(buf, off + LOCATE, locate)
    put16(buf, off + TRACKING, tracking)
    put48(buf, off + TIMESTAMP, timestamp)
    put64(buf, off + V_LEVEL1, level1)
    put64(buf, off + V_LEVEL2, level2)
    put64(buf, off + V_LEVEL3, level3)
    return off + V_LEN


@njit(**_HOT)
def encode_mwcb_status(buf, off, locate, tracking, timestamp, breached_level):
    """'W' MWCB Status at buf[off:]; returns off + 12 (-1: no room)."""
    if off < 0 or off + W_LEN > buf.shape[0]:
        return -1
    put8(buf, off, MSG_MWCB_STATUS)
    put16(buf, off + LOCATE, locate)
    put16(buf, off + TRACKING, tracking)
    put48(buf, off + TIMESTAMP, timestamp)
    put8(buf, off + W_BREACHED_LEVEL, breached_level)
    return off + W_LEN


@njit(**_HOT)
def encode_ipo_quoting_period(buf, off, locate, tracking, timestamp, stock, ipo_release_time,
                              ipo_release_qualifier, price):
    """'K' IPO Quoting Period Update at buf[off:]; returns off + 28 (-1: no room)."""
    if off < 0 or off + K_LEN > buf.shape[0]:
        return -1
    put8(buf, off, MSG_IPO_QUOTING_PERIOD)
    put16(buf, off + LOCATE, locate)
    put16(buf, off + TRACKING, tracking)
    put48(buf, off + TIMESTAMP, timestamp)
    put64(buf, off + K_STOCK, stock)
    put32(buf, off + K_IPO_RELEASE_TIME, ipo_release_time)
    put8(buf, off + K_IPO_RELEASE_QUALIFIER, ipo_release_qualifier)
    put32(buf, off + K_PRICE, price)
    return off + K_LEN


@njit(**_HOT)
def encode_luld_auction_collar(buf, off, locate, tracking, timestamp, stock, ref_price,
                               upper_collar, lower_collar, collar_extension):
    """'J' LULD Auction Collar at buf[off:]; returns off + 35 (-1: no room)."""
    if off < 0 or off + J_LEN > buf.shape[0]:
        return -1
    put8(buf, off, MSG_LULD_AUCTION_COLLAR)
    put16(buf, off + LOCATE, locate)
    put16(buf, off + TRACKING, tracking)
    put48(buf, off + TIMESTAMP, timestamp)
    put64(buf, off + J_STOCK, stock)
    put32(buf, off + J_REF_PRICE, ref_price)
    put32(buf, off + J_UPPER_COLLAR, upper_collar)
    put32(buf, off + J_LOWER_COLLAR, lower_collar)
    put32(buf, off + J_COLLAR_EXTENSION, collar_extension)
    return off + J_LEN


@njit(**_HOT)
def encode_operational_halt(buf, off, locate, tracking, timestamp, stock, market_code,
                            halt_action):
    """'h' Operational Halt at buf[off:]; returns off + 21 (-1: no room)."""
    if off < 0 or off + OH_LEN > buf.shape[0]:
        return -1
    put8(buf, off, MSG_OPERATIONAL_HALT)
    put16(buf, off + LOCATE, locate)
    put16(buf, off + TRACKING, tracking)
    put48(buf, off + TIMESTAMP, timestamp)
    put64(buf, off + OH_STOCK, stock)
    put8(buf, off + OH_MARKET_CODE, market_code)
    put8(buf, off + OH_HALT_ACTION, halt_action)
    return off + OH_LEN


@njit(**_HOT)
def encode_add_order(buf, off, locate, tracking, timestamp, order_ref, side, shares, stock, price):
    """'A' Add Order (no MPID attribution) at buf[off:]; returns off + 36 (-1: no room)."""
    if off < 0 or off + A_LEN > buf.shape[0]:
        return -1
    put8(buf, off, MSG_ADD_ORDER)
    put16(buf, off + LOCATE, locate)
    put16(buf, off + TRACKING, tracking)
    put48(buf, off + TIMESTAMP, timestamp)
    put64(buf, off + A_ORDER_REF, order_ref)
    put8(buf, off + A_SIDE, side)
    put32(buf, off + A_SHARES, shares)
    put64(buf, off + A_STOCK, stock)
    put32(buf, off + A_PRICE, price)
    return off + A_LEN


@njit(**_HOT)
def encode_add_order_mpid(buf, off, locate, tracking, timestamp, order_ref, side, shares, stock,
                          price, attribution):
    """'F' Add Order with MPID Attribution at buf[off:]; returns off + 40 (-1: no room)."""
    if off < 0 or off + F_LEN > buf.shape[0]:
        return -1
    put8(buf, off, MSG_ADD_ORDER_MPID)
    put16(buf, off + LOCATE, locate)
    put16(buf, off + TRACKING, tracking)
    put48(buf, off + TIMESTAMP, timestamp)
    put64(buf, off + F_ORDER_REF, order_ref)
    put8(buf, off + F_SIDE, side)
    put32(buf, off + F_SHARES, shares)
    put64(buf, off + F_STOCK, stock)
    put32(buf, off + F_PRICE, price)
    put32(buf, off + F_ATTRIBUTION, attribution)
    return off + F_LEN


@njit(**_HOT)
def encode_order_executed(buf, off, locate, tracking, timestamp, order_ref, executed_shares,
                          match_number):
    """'E' Order Executed at buf[off:]; returns off + 31 (-1: no room)."""
    if off < 0 or off + E_LEN > buf.shape[0]:
        return -1
    put8(buf, off, MSG_ORDER_EXECUTED)
    put16(buf, off + LOCATE, locate)
    put16(buf, off + TRACKING, tracking)
    put48(buf, off + TIMESTAMP, timestamp)
    put64(buf, off + E_ORDER_REF, order_ref)
    put32(buf, off + E_EXECUTED_SHARES, executed_shares)
    put64(buf, off + E_MATCH_NUMBER, match_number)
    return off + E_LEN


@njit(**_HOT)
def encode_order_executed_price(buf, off, locate, tracking, timestamp, order_ref, executed_shares,
                                match_number, printable, price):
    """'C' Order Executed With Price at buf[off:]; returns off + 36 (-1: no room)."""
    if off < 0 or off + C_LEN > buf.shape[0]:
        return -1
    put8(buf, off, MSG_ORDER_EXECUTED_PRICE)
    put16(buf, off + LOCATE, locate)
    put16(buf, off + TRACKING, tracking)
    put48(buf, off + TIMESTAMP, timestamp)
    put64(buf, off + C_ORDER_REF, order_ref)
    put32(buf, off + C_EXECUTED_SHARES, executed_shares)
    put64(buf, off + C_MATCH_NUMBER, match_number)
    put8(buf, off + C_PRINTABLE, printable)
    put32(buf, off + C_PRICE, price)
    return off + C_LEN


@njit(**_HOT)
def encode_order_cancel(buf, off, locate, tracking, timestamp, order_ref, canceled_shares):
    """'X' Order Cancel at buf[off:]; returns off + 23 (-1: no room)."""
    if off < 0 or off + X_LEN > buf.shape[0]:
        return -1
    put8(buf, off, MSG_ORDER_CANCEL)
    put16(buf, off + LOCATE, locate)
    put16(buf, off + TRACKING, tracking)
    put48(buf, off + TIMESTAMP, timestamp)
    put64(buf, off + X_ORDER_REF, order_ref)
    put32(buf, off + X_CANCELED_SHARES, canceled_shares)
    return off + X_LEN


@njit(**_HOT)
def encode_order_delete(buf, off, locate, tracking, timestamp, order_ref):
    """'D' Order Delete at buf[off:]; returns off + 19 (-1: no room)."""
    if off < 0 or off + D_LEN > buf.shape[0]:
        return -1
    put8(buf, off, MSG_ORDER_DELETE)
    put16(buf, off + LOCATE, locate)
    put16(buf, off + TRACKING, tracking)
    put48(buf, off + TIMESTAMP, timestamp)
    put64(buf, off + D_ORDER_REF, order_ref)
    return off + D_LEN


@njit(**_HOT)
def encode_order_replace(buf, off, locate, tracking, timestamp, order_ref, new_order_ref, shares,
                         price):
    """'U' Order Replace at buf[off:]; returns off + 35 (-1: no room)."""
    if off < 0 or off + U_LEN > buf.shape[0]:
        return -1
    put8(buf, off, MSG_ORDER_REPLACE)
    put16(buf, off + LOCATE, locate)
    put16(buf, off + TRACKING, tracking)
    put48(buf, off + TIMESTAMP, timestamp)
    put64(buf, off + U_ORDER_REF, order_ref)
    put64(buf, off + U_NEW_ORDER_REF, new_order_ref)
    put32(buf, off + U_SHARES, shares)
    put32(buf, off + U_PRICE, price)
    return off + U_LEN


@njit(**_HOT)
def encode_trade(buf, off, locate, tracking, timestamp, order_ref, side, shares, stock, price,
                 match_number):
    """'P' Trade (non-cross) at buf[off:]; returns off + 44 (-1: no room)."""
    if off < 0 or off + P_LEN > buf.shape[0]:
        return -1
    put8(buf, off, MSG_TRADE)
    put16(buf, off + LOCATE, locate)
    put16(buf, off + TRACKING, tracking)
    put48(buf, off + TIMESTAMP, timestamp)
    put64(buf, off + P_ORDER_REF, order_ref)
    put8(buf, off + P_SIDE, side)
    put32(buf, off + P_SHARES, shares)
    put64(buf, off + P_STOCK, stock)
    put32(buf, off + P_PRICE, price)
    put64(buf, off + P_MATCH_NUMBER, match_number)
    return off + P_LEN


@njit(**_HOT)
def encode_cross_trade(buf, off, locate, tracking, timestamp, shares, stock, price, match_number,
                       cross_type):
    """'Q' Cross Trade at buf[off:]; returns off + 40 (-1: no room)."""
    if off < 0 or off + Q_LEN > buf.shape[0]:
        return -1
    put8(buf, off, MSG_CROSS_TRADE)
    put16(buf, off + LOCATE, locate)
    put16(buf, off + TRACKING, tracking)
    put48(buf, off + TIMESTAMP, timestamp)
    put64(buf, off + Q_SHARES, shares)
    put64(buf, off + Q_STOCK, stock)
    put32(buf, off + Q_PRICE, price)
    put64(buf, off + Q_MATCH_NUMBER, match_number)
    put8(buf, off + Q_CROSS_TYPE, cross_type)
    return off + Q_LEN


@njit(**_HOT)
def encode_broken_trade(buf, off, locate, tracking, timestamp, match_number):
    """'B' Broken Trade / Order Execution at buf[off:]; returns off + 19 (-1: no room)."""
    if off < 0 or off + B_LEN > buf.shape[0]:
        return -1
    put8(buf, off, MSG_BROKEN_TRADE)
    put16(buf, off + LOCATE, locate)
    put16(buf, off + TRACKING, tracking)
    put48(buf, off + TIMESTAMP, timestamp)
    put64(buf, off + B_MATCH_NUMBER, match_number)
    return off + B_LEN


@njit(**_HOT)
def encode_noii(buf, off, locate, tracking, timestamp, paired_shares, imbalance_shares,
                imbalance_direction, stock, far_price, near_price, ref_price, cross_type,
                price_variation):
    """'I' Net Order Imbalance Indicator at buf[off:]; returns off + 50 (-1: no room)."""
    if off < 0 or off + I_LEN > buf.shape[0]:
        return -1
    put8(buf, off, MSG_NOII)
    put16(buf, off + LOCATE, locate)
    put16(buf, off + TRACKING, tracking)
    put48(buf, off + TIMESTAMP, timestamp)
    put64(buf, off + I_PAIRED_SHARES, paired_shares)
    put64(buf, off + I_IMBALANCE_SHARES, imbalance_shares)
    put8(buf, off + I_IMBALANCE_DIRECTION, imbalance_direction)
    put64(buf, off + I_STOCK, stock)
    put32(buf, off + I_FAR_PRICE, far_price)
    put32(buf, off + I_NEAR_PRICE, near_price)
    put32(buf, off + I_REF_PRICE, ref_price)
    put8(buf, off + I_CROSS_TYPE, cross_type)
    put8(buf, off + I_PRICE_VARIATION, price_variation)
    return off + I_LEN


@njit(**_HOT)
def encode_rpii(buf, off, locate, tracking, timestamp, stock, interest_flag):
    """'N' Retail Price Improvement Indicator at buf[off:]; returns off + 20 (-1: no room)."""
    if off < 0 or off + N_LEN > buf.shape[0]:
        return -1
    put8(buf, off, MSG_RPII)
    put16(buf, off + LOCATE, locate)
    put16(buf, off + TRACKING, tracking)
    put48(buf, off + TIMESTAMP, timestamp)
    put64(buf, off + N_STOCK, stock)
    put8(buf, off + N_INTEREST_FLAG, interest_flag)
    return off + N_LEN


@njit(**_HOT)
def encode_dlcr(buf, off, locate, tracking, timestamp, stock, open_eligibility, min_price,
                max_price, near_price, near_time, lower_collar, upper_collar):
    """'O' dlcr at buf[off:]; returns off + 48 (-1: no room)."""
    if off < 0 or off + O_LEN > buf.shape[0]:
        return -1
    put8(buf, off, MSG_DLCR)
    put16(buf, off + LOCATE, locate)
    put16(buf, off + TRACKING, tracking)
    put48(buf, off + TIMESTAMP, timestamp)
    put64(buf, off + O_STOCK, stock)
    put8(buf, off + O_OPEN_ELIGIBILITY, open_eligibility)
    put32(buf, off + O_MIN_PRICE, min_price)
    put32(buf, off + O_MAX_PRICE, max_price)
    put32(buf, off + O_NEAR_PRICE, near_price)
    put64(buf, off + O_NEAR_TIME, near_time)
    put32(buf, off + O_LOWER_COLLAR, lower_collar)
    put32(buf, off + O_UPPER_COLLAR, upper_collar)
    return off + O_LEN


# type letter -> @njit encoder
ENCODERS = {
    'S': encode_system_event,
    'R': encode_stock_directory,
    'H': encode_trading_action,
    'Y': encode_reg_sho,
    'L': encode_participant_position,
    'V': encode_mwcb_decline,
    'W': encode_mwcb_status,
    'K': encode_ipo_quoting_period,
    'J': encode_luld_auction_collar,
    'h': encode_operational_halt,
    'A': encode_add_order,
    'F': encode_add_order_mpid,
    'E': encode_order_executed,
    'C': encode_order_executed_price,
    'X': encode_order_cancel,
    'D': encode_order_delete,
    'U': encode_order_replace,
    'P': encode_trade,
    'Q': encode_cross_trade,
    'B': encode_broken_trade,
    'I': encode_noii,
    'N': encode_rpii,
    'O': encode_dlcr,
}
# fmt: on
# ---- END GENERATED ----


# --- decoders ---------------------------------------------------------------------------------
@njit(**_HOT)
def _decode_at(b, o, t, rec):
    """Header + body of the message at ``b[o:]`` of type ``t`` (type known, length checked)."""
    _reset(rec)
    rec.msg_type = t
    rec.locate = be16(b, o + LOCATE)
    rec.tracking = be16(b, o + TRACKING)
    rec.timestamp = be48(b, o + TIMESTAMP)
    _decode_body(b, o, t, rec)


@njit(**_HOT)
def decode_message(buf, off, end, rec):
    """Decode the message at ``buf[off:end]`` into ``rec``; returns its length, or -1 when the
    type is unknown or ``end - off`` is below the type's length (``rec`` then untouched).
    ``end`` past the array is clamped to it."""
    if end > buf.shape[0]:
        end = buf.shape[0]
    if off < 0 or off >= end:
        return -1
    t = be8(buf, off)
    n = MSG_LEN[t]
    if n == 0 or end - off < n:
        return -1
    _decode_at(buf, off, t, rec)
    return n


@njit(**_HOT)
def decode_stream(buf, off, end, recs, counters):
    """Decode length-prefixed messages from ``buf[off:end]`` into ``recs[0:]``; returns how many.

    Each block is a big-endian u16 length and that many bytes of message.  A block whose type
    byte is unknown, whose length differs from the type's length, or that is empty is counted
    (SC_UNKNOWN, SC_BAD_LENGTH, SC_EMPTY) and skipped whole; its bytes are never decoded.  A
    block cut by ``end`` stops the walk (SC_TRUNCATED), as does a full ``recs`` (SC_FULL, before
    the block that did not fit).  ``counters[SC_END]`` is the offset of the first block not
    consumed.  Other counters accumulate over calls."""
    if end > buf.shape[0]:
        end = buf.shape[0]
    if off < 0:
        off = 0
    cap = recs.shape[0]
    n = 0
    blocks = 0
    pos = off
    while True:
        if pos + 2 > end:
            if pos < end:
                counters[SC_TRUNCATED] += 1
            break
        ln = be16(buf, pos)
        body = pos + 2
        if body + ln > end:
            counters[SC_TRUNCATED] += 1
            break
        if ln == 0:
            counters[SC_EMPTY] += 1
        else:
            t = be8(buf, body)
            want = MSG_LEN[t]
            if want == ln:
                # fast path: a known type with its own length
                if n == cap:
                    counters[SC_FULL] += 1
                    break
                _decode_at(buf, body, t, recs[n])
                n += 1
            elif want == 0:
                counters[SC_UNKNOWN] += 1
            else:
                counters[SC_BAD_LENGTH] += 1
        blocks += 1
        pos = body + ln
    counters[SC_DECODED] += n
    counters[SC_BLOCKS] += blocks
    counters[SC_END] = pos
    return n


# --- Python surface ---------------------------------------------------------------------------
NAMES = {t: m[0] for t, m in MESSAGES.items()}
TYPES_BY_NAME = {m[0]: t for t, m in MESSAGES.items()}


def type_key(msg_type) -> str:
    """'A', b'A', 65 or 'add_order' -> 'A'."""
    if isinstance(msg_type, (bytes, bytearray)) and len(msg_type) == 1:
        msg_type = msg_type.decode("latin-1")
    elif isinstance(msg_type, (int, np.integer)):
        msg_type = chr(int(msg_type))
    if isinstance(msg_type, str):
        if msg_type in MESSAGES:
            return msg_type
        if msg_type in TYPES_BY_NAME:
            return TYPES_BY_NAME[msg_type]
    raise KeyError(f"not an ITCH 5.0 message type: {msg_type!r}")


def alpha_bytes(value, size: int) -> bytes:
    """An alpha field as ``size`` bytes: str/bytes are left justified and space padded, an int
    is taken as the field's big-endian word."""
    if isinstance(value, (int, np.integer)):
        return int(value).to_bytes(size, "big")
    if isinstance(value, str):
        value = value.encode("ascii")
    value = bytes(value)
    if len(value) > size:
        raise ValueError(f"{value!r} is longer than {size} bytes")
    return value.ljust(size, b" ")


def alpha_word(value, size: int) -> int:
    """The big-endian integer an @njit encoder takes for an alpha field of ``size`` bytes."""
    return int.from_bytes(alpha_bytes(value, size), "big")


def symbol(stock) -> int:
    """A stock symbol (str/bytes, up to 8 characters) as the encoders' int64 word."""
    return alpha_word(stock, 8)


def encode(msg_type, **fields) -> bytes:
    """Any message type, from keyword fields (``locate``, ``tracking``, ``timestamp`` and the
    type's own; missing ones are 0, or spaces for alpha fields)."""
    t = type_key(msg_type)
    out = bytearray(LENGTHS[t])
    out[0] = ord(t)
    for fname, off, size, kind, _ in table(t)[1:]:
        v = fields.pop(fname, None)
        try:
            if kind == "alpha":
                out[off:off + size] = alpha_bytes(b"" if v is None else v, size)
            else:
                out[off:off + size] = int(v or 0).to_bytes(size, "big")
        except (OverflowError, ValueError, TypeError) as e:
            raise ValueError(f"ITCH {t}.{fname}: {e}") from None
    if fields:
        raise TypeError(f"ITCH {t} has no field(s) {sorted(fields)}")
    return bytes(out)


def new_records(n: int) -> np.ndarray:
    return np.zeros(n, dtype=ITCH_RECORD_DTYPE)


def new_counters() -> np.ndarray:
    return np.zeros(SC_WORDS, dtype=np.int64)


def _as_bytes_array(data) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data.view(np.uint8).reshape(-1))
    return np.frombuffer(bytes(data), dtype=np.uint8)


def decode_bytes(data):
    """One message -> an ``ITCH_RECORD_DTYPE`` record (np.void); ValueError if it is not one."""
    buf = _as_bytes_array(data)
    recs = new_records(1)
    if decode_message(buf, 0, buf.shape[0], recs[0]) < 0:
        raise ValueError(f"not a complete ITCH 5.0 message: {bytes(buf[:16]).hex()}")
    return recs[0]


def fields_of(rec) -> dict:
    """The fields of a decoded record that its message type has: alpha fields as bytes,
    integers as the wire's unsigned values."""
    t = chr(int(rec["msg_type"]))
    out = {}
    for fname, _off, size, kind, _ in table(t):
        v = rec[fname]
        if kind == "alpha":
            out[fname] = bytes([int(v)]) if size == 1 else bytes(np.asarray(v))
        else:
            out[fname] = int(v) & ((1 << 8 * size) - 1)     # the wire's unsigned value
    return out


def decode_all(data, max_messages: int | None = None):
    """Decode a whole length-prefixed stream: ``(records, counters)``."""
    buf = _as_bytes_array(data)
    n = buf.shape[0] // 3 + 1 if max_messages is None else int(max_messages)
    recs = new_records(n)
    counters = new_counters()
    k = decode_stream(buf, 0, buf.shape[0], recs, counters)
    return recs[:k], counters


def timestamps(arr: np.ndarray) -> np.ndarray:
    """The int64 timestamps of an array viewed with ``DTYPES[t]`` (their 6-byte field)."""
    b = arr["timestamp"].astype(np.int64)
    out = np.zeros(len(arr), dtype=np.int64)
    for j in range(6):
        out = (out << 8) | b[:, j]
    return out


def counters_dict(counters) -> dict:
    return {name: int(counters[i]) for i, name in COUNTER_NAMES.items()}


# --- documentation and the C header -------------------------------------------------------------
def doc_table() -> str:
    rows = []
    for t, (name, title, _) in MESSAGES.items():
        rows.append(f"{t}  {name}: {title} ({LENGTHS[t]} bytes)")
        rows.append(f"   {'field':<22} {'offset':>6} {'size':>4}  {'kind':<7} meaning")
        for fname, off, size, kind, meaning in table(t):
            k = f"alpha({size})" if kind == "alpha" else kind
            rows.append(f"   {fname:<22} {off:>6} {size:>4}  {k:<7} {meaning}")
        rows.append("")
    rows.append(f"decoded record ITCH_RECORD_DTYPE ({RECORD_BYTES} bytes, native endian)")
    rows.append(f"   {'field':<22} {'offset':>6} {'type':<8} meaning [message types]")
    for fname, typ, meaning in RECORD_FIELDS:
        rows.append(f"   {fname:<22} {RECORD_OFFSETS[fname]:>6} {typ:<8} {meaning}")
    return "\n".join(rows)


def c_header() -> str:
    out = ["/* GENERATED by `python -m parsers.itch --write-header` from parsers/itch.py.",
           " * Do not edit: tests fail when this file and the Python tables disagree.",
           " * NASDAQ TotalView-ITCH 5.0: message lengths and field offsets; every field is",
           " * big-endian on the wire (read with itch_be16/32/48/64). */",
           "#ifndef HUGERING_ITCH_H", "#define HUGERING_ITCH_H", "#include <stdint.h>",
           "#include <string.h>", "",
           "#define ITCH_HEADER_LEN 11", "#define ITCH_LOCATE 1", "#define ITCH_TRACKING 3",
           "#define ITCH_TIMESTAMP 5", f"#define ITCH_MAX_LEN {MAX_LEN}", ""]
    for t, (name, title, body) in MESSAGES.items():
        p = _prefix(t)
        out.append(f"/* '{t}' {name}: {title} */")
        out.append(f"#define ITCH_MSG_{name.upper()} '{t}'")
        out.append(f"#define ITCH_{p}_LEN {LENGTHS[t]}")
        for fname, off, size, kind, _ in body:
            k = f"alpha({size})" if kind == "alpha" else kind
            out.append(f"#define ITCH_{p}_{fname.upper()} {off}  /* {k} */")
        out.append("")
    init = ", ".join(f"['{t}'] = {n}" for t, n in LENGTHS.items())
    out += ["/* message type byte -> length, 0 for an unknown type */",
            f"static const uint8_t itch_msg_len[256] = {{{init}}};", "",
            "static inline uint64_t itch_be16(const uint8_t *p) {",
            "    uint16_t v; memcpy(&v, p, 2); return __builtin_bswap16(v); }",
            "static inline uint64_t itch_be32(const uint8_t *p) {",
            "    uint32_t v; memcpy(&v, p, 4); return __builtin_bswap32(v); }",
            "static inline uint64_t itch_be48(const uint8_t *p) {",
            "    return (itch_be32(p) << 16) | itch_be16(p + 4); }",
            "static inline uint64_t itch_be64(const uint8_t *p) {",
            "    uint64_t v; memcpy(&v, p, 8); return __builtin_bswap64(v); }",
            "", "#endif /* HUGERING_ITCH_H */", ""]
    return "\n".join(out)


def header_path() -> Path:
    return Path(__file__).with_name("include") / "hugering_itch.h"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--doc"]:
        print(doc_table())
    elif argv == ["--write-header"]:
        header_path().parent.mkdir(exist_ok=True)
        header_path().write_text(c_header())
        print(f"wrote {header_path()}")
    elif argv == ["--write-generated"]:
        write_generated()
        print(f"rewrote the GENERATED section of {_source_path()}")
    else:
        print("usage: python -m parsers.itch --doc | --write-header | --write-generated",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
