"""A price-time-priority matching engine in ``@njit`` code: order entry in, ITCH 5.0 out.

``process_entry(e, buf, off, end, out, out_off) -> out_off`` applies one order-entry message
(``buf[off:end]``, the OUCH-5.0-like subset below) to the books in ``e`` (``MatchingEngine
.state``, one int64 array) and appends the ITCH 5.0 messages it causes to ``out`` as MoldUDP64
message blocks (u16 big-endian length + message), so ``out[:out_off]`` is ready to be cut into
MoldUDP64 packets (``publish_blocks`` / ``ItchPublisher``: Ethernet/IPv4/UDP frames into a
hugering ring), walked by ``parsers.itch.decode_stream`` or fed to ``engine.book``.

Order entry (binary, big-endian; one layout table, ``ENTRY_MESSAGES``; names from OUCH 5.0)
-----------------------------------------------------------------------------------------
=====  ==============  ===========================================================
type   field @ offset  meaning
=====  ==============  ===========================================================
'O'    Enter Order, 22 bytes
       user_ref @1 u4   the client's order id (unique among its open orders)
       side @5 alpha    'B' buy / 'S' sell
       quantity @6 u4   shares (> 0)
       locate @10 u2    instrument (ITCH stock locate, 1..max_instruments; OUCH has the
                        8-byte symbol here: a locate saves the lookup)
       price @12 u8     limit price, 4 implied decimals (1 .. 2**32-1: ITCH Price(4));
                        ignored for a market order
       tif @20 alpha    '0' day (rests) / '3' IOC (never rests)
       ord_type @21     'L' limit / 'M' market (never rests, any price)
'U'    Replace Order, 21 bytes
       orig_user_ref @1 u4, user_ref @5 u4 (the new id; may equal the old), quantity @9 u4
       (the new open size; 0 cancels), price @13 u8
'X'    Cancel Order, 9 bytes
       user_ref @1 u4, quantity @5 u4 (the new open size: 0 deletes the order, less than
       open reduces it, keeping its priority; not less than open changes nothing)
=====  ==============  ===========================================================

Matching rules
--------------
* Price-time priority: best price first, then arrival order within a price level (FIFO queues,
  intrusive doubly linked lists in preallocated arrays).  A trade is at the resting order's
  price.  Self-trade is allowed: the engine has one session and no owner identity (a real
  venue's self-trade prevention would sit in front of ``_match``).
* Market orders and IOC orders trade what they can and never rest; what is left expires
  silently (counted: ``expired_qty``; it was never shown, so ITCH says nothing).  A day limit
  order rests with what is left (ITCH 'A' with a new engine-assigned order reference number,
  sequential from 1).
* Replace keeps priority only when the price is unchanged and the size does not increase
  (ITCH 'X' for the shares removed; nothing when the size is unchanged; only the user ref
  changes); otherwise the order loses priority: ITCH 'U' (new order ref) and it joins the back
  of its (new) level, or, when the new price crosses the opposite side, ITCH 'D' and the order
  is matched as a new day limit order (fills, then 'A' for what rests).  Quantity 0 = cancel.
* ITCH output per event: resting order executed -> 'E' (order ref, shares, match number; one
  match number per fill, sequential from 1); order rests -> 'A'; partial cancel -> 'X'; order
  gone by cancel -> 'D'; replace -> 'U' (or 'X' / 'D' as above).  The aggressor of a trade is
  not shown: as on NASDAQ, the 'E' messages of the orders it hit are the trade prints (a 'P'
  for the aggressor as well would print every trade twice; 'P' is for non-displayed orders,
  which this engine does not have).  Timestamps are ``e[H_CLOCK]`` (ns since midnight), set
  by the caller (``set_clock``) once per batch: no clock read per message.

Status, overload and bad input (decided, counted, never a crash)
-------------------------------------------------------------------
``e[H_STATUS]`` holds the last message's status, the counters the totals (``COUNTER_NAMES``):
ST_OK; rejections (nothing changes, no output): ST_UNKNOWN_TYPE, ST_TRUNCATED (fewer bytes
than the type's length), ST_BAD_FIELD (side, tif, type, quantity 0 on entry, price 0 or >
2**32-1 on a limit, locate out of range), ST_DUP_REF (user ref already open), ST_UNKNOWN_REF
(cancel/replace of a user ref not open), ST_FULL (a replace that would need a new level on a
side that has ``max_levels``).  A remainder that cannot rest because the order table or the
side's levels are full is cancelled and counted (``rest_refused``; status ST_REST_REFUSED).
``out`` must have ``MIN_ROOM`` bytes free at ``out_off``: otherwise nothing is applied and -1 is
returned (flush and call again).  Matching stops when fewer than ``FILL_ROOM`` bytes remain
(the remainder is cancelled, ``out_cut``, status ST_OUT_CUT): size ``out`` for the deepest
sweep you accept (``MIN_ROOM + 33 * fills``).

Layout of ``e`` (int64 words; as engine/book.py, one array: a call passes one array struct,
not a tuple of a dozen by value)
=========  ===========================  =====================================================
region     word offset, size            holds
=========  ===========================  =====================================================
header     0, 32                        H_*: geometry, free-stack top, next ITCH order ref,
                                        last match number, clock, last status, open orders
counters   32, 32                       C_* (COUNTER_NAMES)
orders     64, 8 * max_orders           one cache line per slot: R_OREF (ITCH order ref),
                                        R_UREF (user ref), R_LOCATE, R_SIDE, R_PRICE, R_QTY,
                                        R_PREV, R_NEXT (FIFO links within the level, -1: none)
ht         e[H_HT], 2 * capacity        user ref -> slot (engine/book.py's hash table)
free       e[H_FREE], max_orders        stack of free slots
symbols    e[H_SYMBOLS], max_instr + 1  ITCH stock word per locate
sides      e[H_SIDES], 2 * (max_instr   per book side ``bs = 2 * locate + side``: [S_NLEV, 7
           + 1) * (8 + 8 * L)           spare], then L levels of 8 words (one cache line):
                                        LV_KEY, LV_QTY, LV_COUNT, LV_HEAD, LV_TAIL, 3 spare;
                                        sorted ascending by key (price for bids, -price for
                                        asks: best last, so a sweep pops levels off the end)
=========  ===========================  =====================================================
Single writer (one thread per engine); nothing here allocates.
"""
from __future__ import annotations

import struct
import numpy as np
from numba import njit

from engine.book import (aligned_zeros, ht_clear, ht_find, ht_geometry, ht_insert, ht_remove,
                         level_search)
from engine.producers import itch_feed as F
from parsers import itch as I
from parsers import moldudp64 as MU
from parsers.itch import be8, be16, be32, be64, put16
from shm import kernels as K
from shm import layout as L
from shm.ring import Producer

# --- order entry: the layout table --------------------------------------------------------
# type -> (name, length, [(field, offset, size, kind, meaning)])
ENTRY_MESSAGES = {
    "O": ("enter_order", 22, [
        ("msg_type", 0, 1, "alpha", "'O'"),
        ("user_ref", 1, 4, "u4", "client order id"),
        ("side", 5, 1, "alpha", "B / S"),
        ("quantity", 6, 4, "u4", "shares"),
        ("locate", 10, 2, "u2", "stock locate"),
        ("price", 12, 8, "u8", "limit price, 4 implied decimals"),
        ("tif", 20, 1, "alpha", "0 day / 3 IOC"),
        ("ord_type", 21, 1, "alpha", "L limit / M market"),
    ]),
    "U": ("replace_order", 21, [
        ("msg_type", 0, 1, "alpha", "'U'"),
        ("orig_user_ref", 1, 4, "u4", "user ref of the open order"),
        ("user_ref", 5, 4, "u4", "new user ref"),
        ("quantity", 9, 4, "u4", "new open size (0 cancels)"),
        ("price", 13, 8, "u8", "new limit price"),
    ]),
    "X": ("cancel_order", 9, [
        ("msg_type", 0, 1, "alpha", "'X'"),
        ("user_ref", 1, 4, "u4", "user ref of the open order"),
        ("quantity", 5, 4, "u4", "new open size (0 deletes)"),
    ]),
}
EO_USER_REF, EO_SIDE, EO_QTY, EO_LOCATE, EO_PRICE, EO_TIF, EO_TYPE, EO_LEN = 1, 5, 6, 10, 12, 20, \
    21, 22
EU_ORIG, EU_USER_REF, EU_QTY, EU_PRICE, EU_LEN = 1, 5, 9, 13, 21
EX_USER_REF, EX_QTY, EX_LEN = 1, 5, 9
ENTRY_LEN = np.zeros(256, dtype=np.int64)          # type byte -> length (0: unknown)
_STRUCT = {"u1": "B", "u2": "H", "u4": "I", "u8": "Q", "alpha": "s"}


def _check_entry_table():
    consts = {"O": (EO_USER_REF, EO_SIDE, EO_QTY, EO_LOCATE, EO_PRICE, EO_TIF, EO_TYPE),
              "U": (EU_ORIG, EU_USER_REF, EU_QTY, EU_PRICE), "X": (EX_USER_REF, EX_QTY)}
    lens = {"O": EO_LEN, "U": EU_LEN, "X": EX_LEN}
    for t, (_, n, fields) in ENTRY_MESSAGES.items():
        pos = 0
        for _f, off, size, _k, _m in fields:
            assert off == pos, (t, _f)
            pos += size
        assert pos == n == lens[t], t
        assert tuple(f[1] for f in fields[1:]) == consts[t], t
        ENTRY_LEN[ord(t)] = n


_check_entry_table()
ENTRY_LEN.setflags(write=False)

SIDE_BUY, SIDE_SELL = 0, 1
TIF_DAY, TIF_IOC = ord("0"), ord("3")
TYPE_LIMIT, TYPE_MARKET = ord("L"), ord("M")
MAX_PRICE = (1 << 32) - 1


def _pack(t: str, values: dict) -> bytes:
    _, n, fields = ENTRY_MESSAGES[t]
    out = bytearray(n)
    out[0] = ord(t)
    for f, off, size, kind, _ in fields[1:]:
        v = values[f]
        if kind == "alpha":
            out[off:off + size] = (v.encode() if isinstance(v, str) else bytes([v]) if
                                   isinstance(v, int) else v)
        else:
            out[off:off + size] = int(v).to_bytes(size, "big")
    return bytes(out)


def enter_order(user_ref, side, quantity, locate, price, tif="0", ord_type="L") -> bytes:
    """Python encoder of an 'O' message (side 'B'/'S', tif '0'/'3', ord_type 'L'/'M')."""
    return _pack("O", dict(user_ref=user_ref, side=side, quantity=quantity, locate=locate,
                           price=price, tif=tif, ord_type=ord_type))


def replace_order(orig_user_ref, user_ref, quantity, price) -> bytes:
    return _pack("U", dict(orig_user_ref=orig_user_ref, user_ref=user_ref, quantity=quantity,
                           price=price))


def cancel_order(user_ref, quantity=0) -> bytes:
    return _pack("X", dict(user_ref=user_ref, quantity=quantity))


@njit(cache=True, nogil=True, _nrt=False)
def put_enter(buf, off, user_ref, side, quantity, locate, price, tif, ord_type):
    """@njit encoder of an 'O' message (side, tif, ord_type as their bytes); -> off + 22."""
    buf[off] = 79
    I.put32(buf, off + EO_USER_REF, user_ref)
    buf[off + EO_SIDE] = side
    I.put32(buf, off + EO_QTY, quantity)
    I.put16(buf, off + EO_LOCATE, locate)
    I.put64(buf, off + EO_PRICE, price)
    buf[off + EO_TIF] = tif
    buf[off + EO_TYPE] = ord_type
    return off + EO_LEN


@njit(cache=True, nogil=True, _nrt=False)
def put_replace(buf, off, orig_user_ref, user_ref, quantity, price):
    buf[off] = 85
    I.put32(buf, off + EU_ORIG, orig_user_ref)
    I.put32(buf, off + EU_USER_REF, user_ref)
    I.put32(buf, off + EU_QTY, quantity)
    I.put64(buf, off + EU_PRICE, price)
    return off + EU_LEN


@njit(cache=True, nogil=True, _nrt=False)
def put_cancel(buf, off, user_ref, quantity):
    buf[off] = 88
    I.put32(buf, off + EX_USER_REF, user_ref)
    I.put32(buf, off + EX_QTY, quantity)
    return off + EX_LEN


# --- engine layout -------------------------------------------------------------------------
HEADER_FIELDS = ("magic", "words", "ht", "free", "sides", "side_words", "max_levels", "ht_mask",
                 "ht_bits", "max_orders", "max_instruments", "free_top", "next_oref", "match",
                 "clock", "status", "open_orders", "symbols")
(H_MAGIC, H_WORDS, H_HT, H_FREE, H_SIDES, H_SIDE_WORDS, H_L, H_HT_MASK, H_HT_BITS,
 H_MAX_ORDERS, H_MAX_INSTR, H_FREE_TOP, H_NEXT_OREF, H_MATCH, H_CLOCK, H_STATUS, H_OPEN,
 H_SYMBOLS) = range(len(HEADER_FIELDS))
HEADER_WORDS = 32
COUNTERS = 32
N_COUNTERS = 32
ORDERS = 64
ORDER_WORDS = 8
R_OREF, R_UREF, R_LOCATE, R_SIDE, R_PRICE, R_QTY, R_PREV, R_NEXT = range(8)
SIDE_HEAD = 8
S_NLEV = 0
LEVEL_WORDS = 8
LV_KEY, LV_QTY, LV_COUNT, LV_HEAD, LV_TAIL = range(5)
ENGINE_MAGIC = int.from_bytes(b"HRMATCH1", "little")

COUNTER_NAMES = (
    "messages", "entered", "replaced", "cancel_msgs", "fills", "filled_qty", "rested",
    "expired_qty", "deleted", "reduced", "replace_kept", "replace_moved", "replace_crossed",
    "rej_unknown_type", "rej_truncated", "rej_bad_field", "rej_dup_ref", "rej_unknown_ref",
    "rej_full", "rest_refused", "out_cut", "no_room", "cancel_noop",
)
(C_MESSAGES, C_ENTERED, C_REPLACED, C_CANCEL_MSGS, C_FILLS, C_FILLED_QTY, C_RESTED,
 C_EXPIRED_QTY, C_DELETED, C_REDUCED, C_REPLACE_KEPT, C_REPLACE_MOVED, C_REPLACE_CROSSED,
 C_REJ_TYPE, C_REJ_TRUNC, C_REJ_FIELD, C_REJ_DUP, C_REJ_UNKNOWN, C_REJ_FULL, C_REST_REFUSED,
 C_OUT_CUT, C_NO_ROOM, C_CANCEL_NOOP) = range(COUNTERS, COUNTERS + len(COUNTER_NAMES))
assert len(COUNTER_NAMES) <= N_COUNTERS and COUNTERS + N_COUNTERS <= ORDERS

ST_OK, ST_REST_REFUSED, ST_OUT_CUT = 0, 1, 2
ST_UNKNOWN_TYPE, ST_TRUNCATED, ST_BAD_FIELD, ST_DUP_REF, ST_UNKNOWN_REF, ST_FULL = \
    -1, -2, -3, -4, -5, -6
STATUS_NAMES = {ST_OK: "ok", ST_REST_REFUSED: "rest_refused", ST_OUT_CUT: "out_cut",
                ST_UNKNOWN_TYPE: "unknown_type", ST_TRUNCATED: "truncated",
                ST_BAD_FIELD: "bad_field", ST_DUP_REF: "dup_ref",
                ST_UNKNOWN_REF: "unknown_ref", ST_FULL: "full"}

BLOCK_A = 2 + I.A_LEN
BLOCK_E = 2 + I.E_LEN
BLOCK_X = 2 + I.X_LEN
BLOCK_D = 2 + I.D_LEN
BLOCK_U = 2 + I.U_LEN
FILL_ROOM = BLOCK_E + BLOCK_A          # one more fill, and the 'A' if the rest then rests
MIN_ROOM = 128                         # any message's output apart from its fills (D+E+A)

# _nrt=False: nothing here allocates, and with NRT each call would incref and decref its
# arrays (atomic read-modify-writes).  Only tiny helpers are inlined at Numba IR level (that
# inliner is slow to compile big trees); LLVM inlines or calls the rest (a call passes the
# state as one array struct).
_K = dict(cache=True, nogil=True, _nrt=False)
_KI = dict(inline="always", **_K)


# --- ITCH output (MoldUDP64 message blocks) -------------------------------------------------
@njit(**_K)
def _out_add(e, out, o, loc, oref, side, qty, price):
    put16(out, o, I.A_LEN)
    return I.encode_add_order(out, o + 2, loc, 0, e[H_CLOCK], oref,
                              66 if side == SIDE_BUY else 83, qty, e[e[H_SYMBOLS] + loc], price)


@njit(**_K)
def _out_exec(e, out, o, loc, oref, qty, match):
    put16(out, o, I.E_LEN)
    return I.encode_order_executed(out, o + 2, loc, 0, e[H_CLOCK], oref, qty, match)


@njit(**_K)
def _out_cancel(e, out, o, loc, oref, qty):
    put16(out, o, I.X_LEN)
    return I.encode_order_cancel(out, o + 2, loc, 0, e[H_CLOCK], oref, qty)


@njit(**_K)
def _out_delete(e, out, o, loc, oref):
    put16(out, o, I.D_LEN)
    return I.encode_order_delete(out, o + 2, loc, 0, e[H_CLOCK], oref)


@njit(**_K)
def _out_replace(e, out, o, loc, oref, new_oref, qty, price):
    put16(out, o, I.U_LEN)
    return I.encode_order_replace(out, o + 2, loc, 0, e[H_CLOCK], oref, new_oref, qty, price)


# --- levels and queues -------------------------------------------------------------------------
@njit(**_KI)
def _key(side, price):
    return price if side == SIDE_BUY else -price


@njit(**_KI)
def _side_base(e, loc, side):
    return e[H_SIDES] + (2 * loc + side) * e[H_SIDE_WORDS]


@njit(**_KI)
def _slot(s):
    return ORDERS + ORDER_WORDS * s


@njit(**_K)
def _unlink(e, s, sb, i):
    """Take resting order slot ``s`` out of level ``i`` of the side block ``sb`` (removing the
    level when it empties)."""
    os_ = _slot(s)
    p = e[os_ + R_PREV]
    n = e[os_ + R_NEXT]
    v = sb + SIDE_HEAD + LEVEL_WORDS * i
    if p >= 0:
        e[_slot(p) + R_NEXT] = n
    else:
        e[v + LV_HEAD] = n
    if n >= 0:
        e[_slot(n) + R_PREV] = p
    else:
        e[v + LV_TAIL] = p
    e[v + LV_QTY] -= e[os_ + R_QTY]
    c = e[v + LV_COUNT] - 1
    e[v + LV_COUNT] = c
    if c == 0:
        m = e[sb + S_NLEV]
        for w in range(v, sb + SIDE_HEAD + LEVEL_WORDS * (m - 1)):
            e[w] = e[w + LEVEL_WORDS]          # better levels move down (few: near the top)
        e[sb + S_NLEV] = m - 1


@njit(**_K)
def _level_of(e, s):
    """(side block, level index) of resting order slot ``s``."""
    os_ = _slot(s)
    side = e[os_ + R_SIDE]
    sb = _side_base(e, e[os_ + R_LOCATE], side)
    return sb, level_search(e, sb + SIDE_HEAD, LEVEL_WORDS, e[sb + S_NLEV],
                            _key(side, e[os_ + R_PRICE]))


@njit(**_K)
def _append(e, s, sb, key, qty):
    """Append slot ``s`` at the back of level ``key`` of side block ``sb`` (creating the
    level); False when that needs a new level and the side is full."""
    n = e[sb + S_NLEV]
    r = sb + SIDE_HEAD
    i = level_search(e, r, LEVEL_WORDS, n, key)
    v = r + LEVEL_WORDS * i
    os_ = _slot(s)
    if i < n and e[v + LV_KEY] == key:         # fast path: the level exists
        t = e[v + LV_TAIL]
        e[_slot(t) + R_NEXT] = s
        e[os_ + R_PREV] = t
        e[os_ + R_NEXT] = -1
        e[v + LV_TAIL] = s
        e[v + LV_QTY] += qty
        e[v + LV_COUNT] += 1
        return True
    if n == e[H_L]:
        return False
    for w in range(r + LEVEL_WORDS * n - 1, v - 1, -1):
        e[w + LEVEL_WORDS] = e[w]              # better levels move up one
    e[sb + S_NLEV] = n + 1
    e[v + LV_KEY] = key
    e[v + LV_QTY] = qty
    e[v + LV_COUNT] = 1
    e[v + LV_HEAD] = s
    e[v + LV_TAIL] = s
    e[os_ + R_PREV] = -1
    e[os_ + R_NEXT] = -1
    return True


@njit(**_KI)
def _free_slot(e, s):
    top = e[H_FREE_TOP]
    e[e[H_FREE] + top] = s
    e[H_FREE_TOP] = top + 1
    e[H_OPEN] -= 1


@njit(**_KI)
def _find(e, uref):
    return ht_find(e, e[H_HT], e[H_HT_MASK], uref)


@njit(**_K)
def _rest(e, out, o, loc, side, uref, qty, price):
    """Rest ``qty`` of a day limit order: a slot, its level, its user ref, ITCH 'A'.
    Returns the new output offset, or -1 - o when it cannot rest (tables full)."""
    top = e[H_FREE_TOP]
    if top == 0:
        return -1 - o
    s = e[e[H_FREE] + top - 1]
    if not _append(e, s, _side_base(e, loc, side), _key(side, price), qty):
        return -1 - o
    e[H_FREE_TOP] = top - 1
    e[H_OPEN] += 1
    oref = e[H_NEXT_OREF]
    e[H_NEXT_OREF] = oref + 1
    os_ = _slot(s)
    e[os_ + R_OREF] = oref
    e[os_ + R_UREF] = uref
    e[os_ + R_LOCATE] = loc
    e[os_ + R_SIDE] = side
    e[os_ + R_PRICE] = price
    e[os_ + R_QTY] = qty
    ht_insert(e, e[H_HT], e[H_HT_MASK], uref, s)
    e[C_RESTED] += 1
    return _out_add(e, out, o, loc, oref, side, qty, price)


@njit(**_K)
def _match(e, out, o, loc, side, qty, limit, is_market):
    """Trade ``qty`` of an aggressor on ``side`` against the opposite side of ``loc`` while its
    best price is within ``limit`` (any price for a market order).  Returns (output offset,
    quantity left, cut): ``cut`` when matching stopped for lack of output room."""
    sb = _side_base(e, loc, 1 - side)
    end = out.shape[0]
    ht, mask = e[H_HT], e[H_HT_MASK]
    while qty > 0:
        n = e[sb + S_NLEV]
        if n == 0:
            break
        v = sb + SIDE_HEAD + LEVEL_WORDS * (n - 1)       # the best level: the last one
        key = e[v + LV_KEY]
        if not is_market:
            # opposite bids hold key = price, asks key = -price
            if side == SIDE_BUY and -key > limit:
                break
            if side == SIDE_SELL and key < limit:
                break
        s = e[v + LV_HEAD]
        lqty = e[v + LV_QTY]
        lcount = e[v + LV_COUNT]
        while qty > 0 and s >= 0:
            if end - o < FILL_ROOM:
                e[v + LV_HEAD] = s
                e[_slot(s) + R_PREV] = -1
                e[v + LV_QTY] = lqty
                e[v + LV_COUNT] = lcount
                return o, qty, True
            os_ = _slot(s)
            rq = e[os_ + R_QTY]
            q = qty if qty < rq else rq
            m = e[H_MATCH] + 1
            e[H_MATCH] = m
            o = _out_exec(e, out, o, loc, e[os_ + R_OREF], q, m)
            e[C_FILLS] += 1
            e[C_FILLED_QTY] += q
            qty -= q
            lqty -= q
            if q == rq:                          # the resting order is done
                nxt = e[os_ + R_NEXT]
                ht_remove(e, ht, mask, e[os_ + R_UREF])
                _free_slot(e, s)
                lcount -= 1
                s = nxt
            else:
                e[os_ + R_QTY] = rq - q
        if s < 0:                                # the level is used up: it is the last one
            e[sb + S_NLEV] = n - 1
        else:
            e[v + LV_HEAD] = s
            e[_slot(s) + R_PREV] = -1
            e[v + LV_QTY] = lqty
            e[v + LV_COUNT] = lcount
    return o, qty, False


@njit(**_K)
def _aggress(e, out, o, loc, side, uref, qty, price, tif, is_market):
    """A new order (or a crossing replace): match, then rest or expire what is left.
    Returns (output offset, status)."""
    o, left, cut = _match(e, out, o, loc, side, qty, price, is_market)
    if left == 0:
        return o, ST_OK
    if cut:
        e[C_OUT_CUT] += 1
        return o, ST_OUT_CUT
    if is_market or tif == TIF_IOC:
        e[C_EXPIRED_QTY] += left
        return o, ST_OK
    r = _rest(e, out, o, loc, side, uref, left, price)
    if r < 0:
        e[C_REST_REFUSED] += 1
        return -1 - r, ST_REST_REFUSED
    return r, ST_OK


@njit(**_K)
def _enter(e, buf, off, out, o):
    uref = be32(buf, off + EO_USER_REF)
    sb = be8(buf, off + EO_SIDE)
    qty = be32(buf, off + EO_QTY)
    loc = be16(buf, off + EO_LOCATE)
    price = be64(buf, off + EO_PRICE)
    tif = be8(buf, off + EO_TIF)
    typ = be8(buf, off + EO_TYPE)
    side = 0 if sb == 66 else (1 if sb == 83 else -1)
    is_market = typ == TYPE_MARKET
    if (side < 0 or qty == 0 or loc < 1 or loc > e[H_MAX_INSTR]
            or (tif != TIF_DAY and tif != TIF_IOC)
            or (not is_market and (typ != TYPE_LIMIT or price <= 0 or price > MAX_PRICE))):
        e[C_REJ_FIELD] += 1
        return o, ST_BAD_FIELD
    if _find(e, uref) >= 0:
        e[C_REJ_DUP] += 1
        return o, ST_DUP_REF
    e[C_ENTERED] += 1
    return _aggress(e, out, o, loc, side, uref, qty, price, tif, is_market)


@njit(**_K)
def _delete(e, out, o, s):
    sb, i = _level_of(e, s)
    _unlink(e, s, sb, i)
    os_ = _slot(s)
    o = _out_delete(e, out, o, e[os_ + R_LOCATE], e[os_ + R_OREF])
    ht_remove(e, e[H_HT], e[H_HT_MASK], e[os_ + R_UREF])
    _free_slot(e, s)
    e[C_DELETED] += 1
    return o


@njit(**_K)
def _reduce(e, out, o, s, new_qty):
    """Partial cancel in place (keeps priority): ITCH 'X'."""
    sb, i = _level_of(e, s)
    os_ = _slot(s)
    d = e[os_ + R_QTY] - new_qty
    e[os_ + R_QTY] = new_qty
    e[sb + SIDE_HEAD + LEVEL_WORDS * i + LV_QTY] -= d
    e[C_REDUCED] += 1
    return _out_cancel(e, out, o, e[os_ + R_LOCATE], e[os_ + R_OREF], d)


@njit(**_K)
def _cancel(e, buf, off, out, o):
    uref = be32(buf, off + EX_USER_REF)
    qty = be32(buf, off + EX_QTY)
    s = _find(e, uref)
    if s < 0:
        e[C_REJ_UNKNOWN] += 1
        return o, ST_UNKNOWN_REF
    e[C_CANCEL_MSGS] += 1
    if qty == 0:
        return _delete(e, out, o, s), ST_OK
    if qty < e[_slot(s) + R_QTY]:
        return _reduce(e, out, o, s, qty), ST_OK
    e[C_CANCEL_NOOP] += 1
    return o, ST_OK


@njit(**_K)
def _rekey(e, s, old, uref):
    if uref != old:
        ht, mask = e[H_HT], e[H_HT_MASK]
        ht_remove(e, ht, mask, old)
        ht_insert(e, ht, mask, uref, s)
        e[_slot(s) + R_UREF] = uref


@njit(**_K)
def _replace(e, buf, off, out, o):
    old = be32(buf, off + EU_ORIG)
    uref = be32(buf, off + EU_USER_REF)
    qty = be32(buf, off + EU_QTY)
    price = be64(buf, off + EU_PRICE)
    s = _find(e, old)
    if s < 0:
        e[C_REJ_UNKNOWN] += 1
        return o, ST_UNKNOWN_REF
    if price <= 0 or price > MAX_PRICE:
        e[C_REJ_FIELD] += 1
        return o, ST_BAD_FIELD
    if uref != old and _find(e, uref) >= 0:
        e[C_REJ_DUP] += 1
        return o, ST_DUP_REF
    if qty == 0:                                   # replace to nothing: a cancel
        e[C_REPLACED] += 1
        return _delete(e, out, o, s), ST_OK
    os_ = _slot(s)
    loc = e[os_ + R_LOCATE]
    side = e[os_ + R_SIDE]
    cur = e[os_ + R_QTY]
    if price == e[os_ + R_PRICE] and qty <= cur:
        # keeps its priority: only the size (and the user ref) change
        e[C_REPLACED] += 1
        e[C_REPLACE_KEPT] += 1
        _rekey(e, s, old, uref)
        if qty < cur:
            o = _reduce(e, out, o, s, qty)
        return o, ST_OK
    # loses priority.  Crossing the opposite side: delete, then trade as a new order.
    osb = _side_base(e, loc, 1 - side)
    n = e[osb + S_NLEV]
    if n > 0:
        best = e[osb + SIDE_HEAD + LEVEL_WORDS * (n - 1) + LV_KEY]   # bids: price, asks: -price
        if (side == SIDE_BUY and price >= -best) or (side == SIDE_SELL and price <= best):
            e[C_REPLACED] += 1
            e[C_REPLACE_CROSSED] += 1
            o = _delete(e, out, o, s)
            e[C_DELETED] -= 1                      # counted as a replace, not a cancel
            return _aggress(e, out, o, loc, side, uref, qty, price, TIF_DAY, False)
    sb, i = _level_of(e, s)
    key = _key(side, price)
    m = e[sb + S_NLEV]
    if m == e[H_L]:
        # a full side: only if the target level exists (the order's own level may empty,
        # but deciding that first keeps the rule simple)
        j = level_search(e, sb + SIDE_HEAD, LEVEL_WORDS, m, key)
        if j >= m or e[sb + SIDE_HEAD + LEVEL_WORDS * j + LV_KEY] != key:
            e[C_REJ_FULL] += 1
            return o, ST_FULL
    _unlink(e, s, sb, i)
    e[os_ + R_QTY] = qty
    e[os_ + R_PRICE] = price
    _append(e, s, sb, key, qty)
    _rekey(e, s, old, uref)
    oref = e[os_ + R_OREF]
    new_oref = e[H_NEXT_OREF]
    e[H_NEXT_OREF] = new_oref + 1
    e[os_ + R_OREF] = new_oref
    e[C_REPLACED] += 1
    e[C_REPLACE_MOVED] += 1
    return _out_replace(e, out, o, loc, oref, new_oref, qty, price), ST_OK


@njit(**_K)
def process_entry(e, buf, off, end, out, out_off):
    """Apply the order-entry message at ``buf[off:end]`` and append its ITCH 5.0 output to
    ``out`` at ``out_off`` (MoldUDP64 message blocks).  Returns the new output offset; -1 when
    ``out`` has fewer than ``MIN_ROOM`` bytes free (nothing applied).  The message's status is
    left in ``e[H_STATUS]`` (see module doc)."""
    if out.shape[0] - out_off < MIN_ROOM:
        e[C_NO_ROOM] += 1
        return -1
    e[C_MESSAGES] += 1
    if end - off < 1:
        e[C_REJ_TRUNC] += 1
        e[H_STATUS] = ST_TRUNCATED
        return out_off
    t = buf[off]
    n = ENTRY_LEN[t]
    if n == 0:
        e[C_REJ_TYPE] += 1
        e[H_STATUS] = ST_UNKNOWN_TYPE
        return out_off
    if end - off < n:
        e[C_REJ_TRUNC] += 1
        e[H_STATUS] = ST_TRUNCATED
        return out_off
    if t == 79:                                    # 'O': the most common first
        o, st = _enter(e, buf, off, out, out_off)
    elif t == 88:                                  # 'X'
        o, st = _cancel(e, buf, off, out, out_off)
    else:                                          # 'U'
        o, st = _replace(e, buf, off, out, out_off)
    e[H_STATUS] = st
    return o


@njit(**_K)
def process_stream(e, buf, off, end, out, out_off):
    """Back-to-back order-entry messages from ``buf[off:end]`` (each type has its fixed
    length) until the input ends or ``out`` lacks ``MIN_ROOM``; an unknown type stops the walk
    (its length is unknown).  Returns (input offset reached, output offset)."""
    while off < end:
        n = ENTRY_LEN[buf[off]]
        if n == 0:
            e[C_MESSAGES] += 1
            e[C_REJ_TYPE] += 1
            e[H_STATUS] = ST_UNKNOWN_TYPE
            break
        o = process_entry(e, buf, off, end, out, out_off)
        if o < 0:
            break
        out_off = o
        off += n
    return off, out_off


@njit(**_K)
def set_clock(e, ns_since_midnight):
    e[H_CLOCK] = ns_since_midnight


@njit(**_K)
def best(e, locate, side):
    """(price, shares, orders) of the best level of one side; (0, 0, 0) when empty."""
    sb = _side_base(e, locate, side)
    n = e[sb + S_NLEV]
    if n == 0:
        return np.int64(0), np.int64(0), np.int64(0)
    v = sb + SIDE_HEAD + LEVEL_WORDS * (n - 1)
    k = e[v + LV_KEY]
    return (k if side == SIDE_BUY else -k), e[v + LV_QTY], e[v + LV_COUNT]


# --- publishing the output: MoldUDP64 packets in Ethernet/IPv4/UDP frames into a ring ---------
PUB_FIELDS = ("next_seq", "packets", "messages", "bytes", "full")
PUB_SEQ, PUB_PACKETS, PUB_MESSAGES, PUB_BYTES, PUB_FULL = range(len(PUB_FIELDS))
PUB_WORDS = 8


@njit(**_K)
def publish_blocks(ctrl, words, slot_bytes, pstate, src, off, end, tmpl, max_payload,
                   max_messages, sess_hi, sess_lo, pub, portq, now, burst):
    """Publish the MoldUDP64 message blocks ``src[off:end]`` (``process_entry``'s output) as
    MoldUDP64 packets, each in an Ethernet/IPv4/UDP frame built from ``tmpl`` (the framing of
    ``engine.producers.itch_feed``: a packet takes blocks while the longest ITCH block still
    certainly fits in ``max_payload``, and at most ``max_messages`` (0: no cap); IP id = packet
    number), written in place into reserved ring slots, ``burst`` slots per reserve/submit,
    stamped ``now``.  Sequence numbers continue from ``pub[PUB_SEQ]``; a packet never spans two
    calls.  Returns the offset reached: ``end`` when everything went out.  Overload: when the
    ring has no free slot (lossless ring, slow consumer) it stops there and counts
    ``pub[PUB_FULL]``; nothing is dropped -- the caller retries the rest or drops and counts
    it (``kernels.count_dropped``).  Single producer only."""
    while off < end:
        k = K.reserve(ctrl, words, pstate, burst)
        if k <= 0:
            pub[PUB_FULL] += 1
            return off
        j = 0
        while j < k and off < end:
            base = K.slot_base(pstate, j)
            fb = (base + L.S_PAYLOAD) * 8
            pkt = fb + F.FRAME_HEADERS
            limit = pkt + max_payload
            seq = pub[PUB_SEQ]
            pos = MU.write_header(slot_bytes, pkt, sess_hi, sess_lo, seq, 0)
            cnt = 0
            while off + 2 <= end and (max_messages == 0 or cnt < max_messages) \
                    and pos + F.MAX_BLOCK <= limit:
                n = 2 + be16(src, off)
                if off + n > end:
                    break
                for b in range(n):
                    slot_bytes[pos + b] = src[off + b]
                pos += n
                off += n
                cnt += 1
            if cnt == 0:                   # a cut block at the end: not ours to send
                end = off
                break
            put16(slot_bytes, pkt + MU.OFF_COUNT, cnt)
            pub[PUB_SEQ] = seq + cnt
            size = F.finish_frame(slot_bytes, fb, tmpl, pos - pkt, pub[PUB_PACKETS] & 0xFFFF)
            words[base + L.S_TS] = now
            words[base + L.S_LENS] = size | (size << 32)
            words[base + L.S_PORTQ] = portq
            pub[PUB_PACKETS] += 1
            pub[PUB_MESSAGES] += cnt
            pub[PUB_BYTES] += size
            j += 1
        if j > 0:
            K.submit(ctrl, words, pstate, j, now)
    return off


class ItchPublisher:
    """The matching engine's market-data side: its ITCH output as a MoldUDP64 feed into a
    hugering ring (this object is the ring's single producer).  ``framing`` is an
    ``engine.producers.itch_feed.Framing`` (session, addresses, ports, max_payload); frames
    are byte for byte what ``itch_feed.packetize`` makes of the same blocks."""

    def __init__(self, ring, framing=None, burst: int = 32, port: int = 0, queue: int = 0):
        self.framing = framing or F.Framing()
        if self.framing.max_frame > ring.slot_size:
            raise ValueError(f"ItchPublisher: frames of up to {self.framing.max_frame} B do "
                             f"not fit the ring's {ring.slot_size}-byte slots (max_payload)")
        self.ring = ring
        self.producer = Producer(ring)
        self.tmpl = self.framing.template()
        self.burst = int(burst)
        self.portq = int(port) | (int(queue) << 16)
        self.pub = np.zeros(PUB_WORDS, dtype=np.int64)
        self.pub[PUB_SEQ] = 1

    def publish(self, out: np.ndarray, end: int, off: int = 0, now: int | None = None) -> int:
        """Publish ``out[off:end]``; returns the offset reached (``end`` unless the ring was
        full: call again with the rest)."""
        from shm.clock import now_ns

        p, fr = self.producer, self.framing
        return int(publish_blocks(p.ctrl, p.words, p.slot_bytes, p.pstate, out, off, end,
                                  self.tmpl, fr.max_payload, fr.max_messages, fr.sess_hi,
                                  fr.sess_lo, self.pub, self.portq,
                                  now_ns() if now is None else now, self.burst))

    def stats(self) -> dict:
        return {name: int(self.pub[i]) for i, name in enumerate(PUB_FIELDS)}

    def close(self) -> None:
        self.producer.close()


# --- setup ---------------------------------------------------------------------------------
def default_symbol(locate: int) -> str:
    return f"S{locate:05d}"


def engine_layout(max_instruments: int, max_orders: int, max_levels: int) -> dict[str, int]:
    """Region offsets (words) of an engine state with these sizes."""
    cap, bits = ht_geometry(max_orders)
    ht = ORDERS + ORDER_WORDS * max_orders
    free = ht + 2 * cap
    symbols = free + max_orders
    sides = (symbols + max_instruments + 1 + 7) // 8 * 8
    side_words = SIDE_HEAD + LEVEL_WORDS * max_levels
    words = sides + 2 * (max_instruments + 1) * side_words
    return dict(ht=ht, free=free, symbols=symbols, sides=sides, side_words=side_words,
                words=words, ht_capacity=cap, ht_bits=bits)


class MatchingEngine:
    """Allocates the engine's state (one int64 array, ``self.state``, the kernels' ``e``):
    ``max_instruments`` books (locates 1..max_instruments), at most ``max_orders`` resting
    orders and ``max_levels`` price levels per side.  ``symbols`` maps a locate to its ITCH
    stock symbol (default ``S00001`` ...).  Setup only."""

    def __init__(self, max_instruments: int, max_orders: int, max_levels: int = 256,
                 symbols: dict[int, str] | None = None):
        if max_instruments < 1 or max_orders < 1 or max_levels < 1 or max_instruments > 65535:
            raise ValueError("MatchingEngine: max_instruments in 1..65535, max_orders and "
                             "max_levels >= 1")
        lay = engine_layout(max_instruments, max_orders, max_levels)
        e = aligned_zeros(lay["words"])
        e[H_MAGIC] = ENGINE_MAGIC
        e[H_WORDS] = lay["words"]
        e[H_HT] = lay["ht"]
        e[H_FREE] = lay["free"]
        e[H_SIDES] = lay["sides"]
        e[H_SIDE_WORDS] = lay["side_words"]
        e[H_L] = max_levels
        e[H_HT_MASK] = lay["ht_capacity"] - 1
        e[H_HT_BITS] = lay["ht_bits"]
        e[H_MAX_ORDERS] = max_orders
        e[H_MAX_INSTR] = max_instruments
        e[H_FREE_TOP] = max_orders
        e[H_NEXT_OREF] = 1
        e[H_SYMBOLS] = lay["symbols"]
        ht_clear(e, lay["ht"], lay["ht_capacity"])
        e[lay["free"]:lay["free"] + max_orders] = np.arange(max_orders - 1, -1, -1)
        for loc in range(1, max_instruments + 1):
            name = (symbols or {}).get(loc) or default_symbol(loc)
            e[lay["symbols"] + loc] = I.symbol(name)
        self.max_instruments = max_instruments
        self.max_orders = max_orders
        self.max_levels = max_levels
        self.layout = lay
        self.state = e

    def counters(self) -> dict[str, int]:
        return {name: int(self.state[COUNTERS + i]) for i, name in enumerate(COUNTER_NAMES)}

    @property
    def status(self) -> int:
        return int(self.state[H_STATUS])

    @property
    def open_orders(self) -> int:
        return int(self.state[H_OPEN])

    def set_clock(self, ns_since_midnight: int) -> None:
        self.state[H_CLOCK] = ns_since_midnight

    def book(self, locate: int, side: int) -> list:
        """One side's levels, best first: [(price, [(itch order ref, user ref, qty), ...] in
        time priority)] (Python lists: for tests and tools)."""
        e = self.state
        sb = int(e[H_SIDES]) + (2 * locate + side) * int(e[H_SIDE_WORDS])
        levels = []
        for i in range(int(e[sb + S_NLEV]) - 1, -1, -1):
            v = sb + SIDE_HEAD + LEVEL_WORDS * i
            q = []
            s = int(e[v + LV_HEAD])
            while s >= 0:
                os_ = ORDERS + ORDER_WORDS * s
                q.append((int(e[os_ + R_OREF]), int(e[os_ + R_UREF]), int(e[os_ + R_QTY])))
                s = int(e[os_ + R_NEXT])
            k = int(e[v + LV_KEY])
            levels.append((k if side == SIDE_BUY else -k, q))
        return levels

    def process(self, msg: bytes, out: np.ndarray | None = None) -> bytes:
        """Python convenience: one message in, its ITCH output blocks out (as bytes)."""
        if out is None:
            out = np.zeros(1 << 16, dtype=np.uint8)
        buf = np.frombuffer(msg, dtype=np.uint8)
        n = process_entry(self.state, buf, 0, buf.shape[0], out, 0)
        if n < 0:
            raise ValueError("output buffer too small")
        return out[:n].tobytes()


def blocks(data: bytes):
    """Split MoldUDP64 message blocks (u16 length + message) into a list of messages."""
    out, i = [], 0
    while i + 2 <= len(data):
        (n,) = struct.unpack_from(">H", data, i)
        out.append(data[i + 2:i + 2 + n])
        i += 2 + n
    return out


__all__ = [
    "MatchingEngine", "engine_layout", "process_entry", "process_stream", "set_clock", "best",
    "enter_order", "replace_order", "cancel_order", "put_enter", "put_replace", "put_cancel",
    "ENTRY_MESSAGES", "ENTRY_LEN", "COUNTER_NAMES", "STATUS_NAMES", "MIN_ROOM", "FILL_ROOM",
    "blocks", "publish_blocks", "ItchPublisher",
]
