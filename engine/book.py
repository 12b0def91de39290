"""Full-depth limit order books for many instruments, as plain ``@njit`` kernels over arrays.

A market-data consumer (an ITCH 5.0 feed handler) keeps one book per instrument, keyed by the
ITCH *stock locate* (1..``max_instruments``).  ``Books`` (setup only) allocates every array
once; the kernels take its ``arrays`` (a ``BookArrays`` namedtuple) and plain integers, so a
decoder loop calls them straight from the fields of a message:

=========================================================  ===================================
kernel                                                     ITCH message
=========================================================  ===================================
``book_add(b, locate, order_ref, side, shares, price)``    A / F  add order
``book_execute(b, order_ref, shares)``                     E / C  executed (partial or full)
``book_cancel(b, order_ref, shares)``                      X      partial cancel
``book_delete(b, order_ref)``                              D      delete
``book_replace(b, old_ref, new_ref, shares, price)``       U      replace (new ref, same side
                                                                  and instrument, loses priority)
``best_bid(b, locate)`` / ``best_ask(b, locate)``          -> (price, shares, orders); (0, 0, 0)
                                                              when the side is empty
``depth(b, locate, side, k, out)``                         top-k levels into ``out[k, 3]``
                                                              (price, shares, orders) -> n
``level_count(b, locate, side)``                           levels on that side
``apply_itch(b, buf, off, end)``                           one ITCH message's bytes -> the
                                                              kernel above that it calls
``apply_itch_blocks(b, buf, off, end)``                    MoldUDP64 message blocks (u16
                                                              length + message) -> off reached
=========================================================  ===================================

``side`` is 0 / 1 or the ITCH byte ``'B'`` / ``'S'`` (66 / 83).  Prices are the ITCH Price(4)
integers (4 implied decimals); any int64 works.  Order refs are ITCH's u64, stored as int64
bits (a ref above 2**63 is fine: it is only hashed and compared).

Layout (``BookArrays``)
-----------------------
==============  ==================================  =========================================
array           shape, dtype                         holds
==============  ==================================  =========================================
``orders``      (max_orders, 8) int64                one 64-byte line per order slot: O_REF,
                                                     O_LOCATE, O_SIDE (0 bid / 1 ask),
                                                     O_PRICE, O_SHARES, O_BIRTH (birth stamp
                                                     of the level it joined; 0 = hidden)
``ht``          (2 * ht_capacity,) int64             open-addressing hash table order_ref ->
                                                     order slot: pairs (key, slot), slot -1 =
                                                     empty; linear probing, backward-shift
                                                     deletion (no tombstones), load <= 1/2
``free``        (max_orders,) int64                  stack of free order slots
``lv_key``      (2 * (max_instruments+1), L) int64   per book side ``bs = 2 * locate + side``,
``lv_shares``   same                                 its price levels sorted *ascending by key*
``lv_orders``   same                                 (key = price for bids, -price for asks),
``lv_birth``    same                                 so the best level is always the last one,
                                                     ``lv_key[bs, nlev[bs] - 1]``
``nlev``        (2 * (max_instruments+1),) int64     levels in use per book side
``hidden``      same                                 open orders of that side that are not on a
                                                     visible level (see overload below)
``counters``    (N_COUNTERS,) int64                  C_* below
``meta``        (N_META,) int64                      M_* below (sizes, free-stack top, birth
                                                     counter, open orders)
==============  ==================================  =========================================

Why a sorted array per side and not a price ladder: ITCH prices of one stock span a wide range
(a stray order far from the market is common), so a ladder needs either a huge range or
re-centring; a sorted array costs memory only for levels that exist.  Keeping the best level
at the *end* makes the common case cheap: most adds, executes and cancels land within a few
levels of the top, so the insert/remove shift moves only the few better levels, and the
lookup scans the top ``TOP_SCAN`` levels linearly before falling back to a binary search.
The order keeps its level's *birth stamp* rather than an index (indices move as levels come
and go); the stamp tells an order whose level was evicted from one that is still shown.
(``tools/bench_match.py`` reports the measured book updates/s.)

Status (return value of every update kernel)
--------------------------------------------
``>= 0`` applied: ST_OK; ST_REMOVED (execute/cancel took the order to 0, it is gone);
ST_HIDDEN (add/replace: tracked, but its price is not on a visible level, see below);
ST_CLAMPED (execute/cancel of more shares than remain: clamped to what remains, order removed);
ST_IGNORED (``apply_itch``: a message type that does not change a book).
``< 0`` refused, nothing changed: ST_UNKNOWN_REF, ST_DUP_REF (add/replace to a ref already
open), ST_ORDERS_FULL, ST_BAD_LOCATE (outside 1..max_instruments), ST_BAD_ARG (side not
0/1/'B'/'S', shares <= 0), ST_BAD_MESSAGE (``apply_itch``: unknown type or short message).

Overload and bad input: decided, counted, never a crash and never silent corruption
----------------------------------------------------------------------------------
* *Order table full* (``max_orders`` open): the add is refused (ST_ORDERS_FULL, C_ORDERS_FULL);
  later messages for that ref count as unknown refs (C_UNKNOWN_REF).  Size ``max_orders`` for
  the feed's peak open-order count.
* *Unknown ref* (execute/cancel/delete/replace): nothing changes, C_UNKNOWN_REF.
* *Duplicate ref* (add, or replace to a ref already open, ITCH refs are unique per day):
  refused, C_DUP_REF, the open order is untouched.
* *Execute or cancel more than remains*: clamped, the order is removed, C_OVER_EXEC.
* *A side already holds ``max_levels`` levels and an add brings a new price*: the top of book
  stays exact.  If the new price is better than the deepest level, that deepest level is
  evicted (C_LEVEL_EVICTED) and its orders stay tracked but *hidden*; if it is deeper than all
  of them, the new order itself is hidden (C_HIDDEN_ADD, status ST_HIDDEN).  Hidden orders are
  found, executed, cancelled and deleted as usual (so no unknown-ref noise follows), they only
  do not count in any level.  ``hidden[bs]`` counts them: while it is 0 the side's depth is
  exact; while it is not, levels below the shown ones may be missing or short, never wrong in
  price order, and the top ``max_levels`` levels that *are* shown hold exact figures except a
  level re-created at an evicted price (it shows only the orders that arrived since).
* Crossed or locked books (bid >= ask) are kept as they come: ITCH may show them briefly.

Who may call: one thread per ``Books`` (the kernels are single-writer, no atomics).  Nothing
here allocates.
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np
from numba import njit

from parsers import itch as I
from parsers.itch import be8, be16, be32, be64

# --- layout constants (one table each; the code uses only these names) ----------------------
ORDER_FIELDS = ("O_REF", "O_LOCATE", "O_SIDE", "O_PRICE", "O_SHARES", "O_BIRTH")
O_REF, O_LOCATE, O_SIDE, O_PRICE, O_SHARES, O_BIRTH = range(len(ORDER_FIELDS))
ORDER_WORDS = 8                      # one cache line per order (2 spare words)

COUNTER_NAMES = (
    "adds", "executes", "cancels", "deletes", "replaces",     # applied updates
    "executed_shares", "cancelled_shares",
    "unknown_ref", "dup_ref", "orders_full", "bad_locate", "bad_arg",
    "over_exec", "level_evicted", "hidden_add",
    "itch_ignored", "itch_bad",                               # apply_itch: not book / broken
)
(C_ADD, C_EXECUTE, C_CANCEL, C_DELETE, C_REPLACE, C_EXEC_SHARES, C_CANCEL_SHARES,
 C_UNKNOWN_REF, C_DUP_REF, C_ORDERS_FULL, C_BAD_LOCATE, C_BAD_ARG,
 C_OVER_EXEC, C_LEVEL_EVICTED, C_HIDDEN_ADD, C_ITCH_IGNORED, C_ITCH_BAD) = \
    range(len(COUNTER_NAMES))
N_COUNTERS = 24

META_NAMES = ("ht_mask", "ht_shift", "max_orders", "max_levels", "max_instruments",
              "free_top", "birth", "open_orders")
M_HT_MASK, M_HT_SHIFT, M_MAX_ORDERS, M_MAX_LEVELS, M_MAX_INSTR, M_FREE_TOP, M_BIRTH, \
    M_OPEN = range(len(META_NAMES))
N_META = 8

ST_OK, ST_REMOVED, ST_HIDDEN, ST_CLAMPED, ST_IGNORED = 0, 1, 2, 3, 4
ST_UNKNOWN_REF, ST_DUP_REF, ST_ORDERS_FULL, ST_BAD_LOCATE, ST_BAD_ARG, ST_BAD_MESSAGE = \
    -1, -2, -3, -4, -5, -6
STATUS_NAMES = {ST_OK: "ok", ST_REMOVED: "removed", ST_HIDDEN: "hidden", ST_CLAMPED: "clamped",
                ST_IGNORED: "ignored", ST_UNKNOWN_REF: "unknown_ref", ST_DUP_REF: "dup_ref",
                ST_ORDERS_FULL: "orders_full", ST_BAD_LOCATE: "bad_locate",
                ST_BAD_ARG: "bad_arg", ST_BAD_MESSAGE: "bad_message"}

SIDE_BID, SIDE_ASK = 0, 1
TOP_SCAN = 8                         # levels scanned linearly from the top before bisecting
FIB64 = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: sequential refs spread evenly

BookArrays = namedtuple("BookArrays", "orders ht free lv_key lv_shares lv_orders lv_birth "
                                      "nlev hidden counters meta")

_K = dict(cache=True, nogil=True)


# --- the order-ref hash table (shared with engine/matching.py) --------------------------------
def ht_geometry(max_entries: int) -> tuple[int, int]:
    """(capacity, shift) of a table for ``max_entries`` keys at load <= 1/2: capacity a power
    of two, ``shift = 64 - log2(capacity)`` for the multiplicative hash."""
    cap = 16
    while cap < 2 * max_entries:
        cap *= 2
    return cap, 64 - (cap.bit_length() - 1)


def ht_new(capacity: int) -> np.ndarray:
    ht = np.zeros(2 * capacity, dtype=np.int64)
    ht[1::2] = -1
    return ht


@njit(inline="always", **_K)
def ht_home(key, shift):
    return np.int64((np.uint64(key) * FIB64) >> np.uint64(shift))


@njit(**_K)
def ht_find(ht, mask, shift, key):
    """Value stored under ``key``, or -1."""
    i = ht_home(key, shift)
    while True:
        v = ht[2 * i + 1]
        if v < 0:
            return -1
        if ht[2 * i] == key:
            return v
        i = (i + 1) & mask


@njit(**_K)
def ht_insert(ht, mask, shift, key, val):
    """Store ``key -> val`` (val >= 0); returns False (and stores nothing) if the key is
    already there.  The caller keeps the load at most 1/2, so a free slot always exists."""
    i = ht_home(key, shift)
    while True:
        v = ht[2 * i + 1]
        if v < 0:
            ht[2 * i] = key
            ht[2 * i + 1] = val
            return True
        if ht[2 * i] == key:
            return False
        i = (i + 1) & mask


@njit(**_K)
def ht_remove(ht, mask, shift, key):
    """Remove ``key``; returns its value or -1.  Backward-shift deletion: the entries after the
    hole that could not sit at their home slot move back, so lookups never need tombstones."""
    i = ht_home(key, shift)
    while True:
        v = ht[2 * i + 1]
        if v < 0:
            return -1
        if ht[2 * i] == key:
            break
        i = (i + 1) & mask
    j = i
    while True:
        j = (j + 1) & mask
        if ht[2 * j + 1] < 0:
            break
        k = ht_home(ht[2 * j], shift)
        # entry j may fill hole i iff its home k is not cyclically within (i, j]
        if (j > i and (k <= i or k > j)) or (j < i and (k <= i and k > j)):
            ht[2 * i] = ht[2 * j]
            ht[2 * i + 1] = ht[2 * j + 1]
            i = j
    ht[2 * i + 1] = -1
    return v


# --- sorted levels of one book side -------------------------------------------------------
@njit(inline="always", **_K)
def side_index(side):
    """0/'B' -> 0, 1/'S' -> 1, anything else -1."""
    if side == 0 or side == 66:
        return 0
    if side == 1 or side == 83:
        return 1
    return -1


@njit(**_K)
def level_search(lv_key, bs, n, key):
    """Index of the first level with ``lv_key >= key`` (n when none): a linear scan of the
    top TOP_SCAN levels (fast path, most activity is there), then a binary search below."""
    i = n - 1
    stop = n - TOP_SCAN
    if stop < 0:
        stop = 0
    while i >= stop:
        kk = lv_key[bs, i]
        if kk < key:
            return i + 1
        if kk == key:
            return i
        i -= 1
    if stop == 0:
        return 0
    lo = 0
    hi = stop                          # lv_key[bs, stop] > key is known
    while lo < hi:
        mid = (lo + hi) >> 1
        if lv_key[bs, mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(**_K)
def _remove_level(b, bs, i):
    n = b.nlev[bs]
    for j in range(i, n - 1):          # the better levels move down one (few: near the top)
        b.lv_key[bs, j] = b.lv_key[bs, j + 1]
        b.lv_shares[bs, j] = b.lv_shares[bs, j + 1]
        b.lv_orders[bs, j] = b.lv_orders[bs, j + 1]
        b.lv_birth[bs, j] = b.lv_birth[bs, j + 1]
    b.nlev[bs] = n - 1


@njit(**_K)
def _join_level(b, bs, key, shares):
    """Add one order of ``shares`` at ``key`` to side ``bs``; returns the level's birth stamp,
    or 0 when the order is hidden (side full and the price deeper than every shown level)."""
    n = b.nlev[bs]
    i = level_search(b.lv_key, bs, n, key)
    if i < n and b.lv_key[bs, i] == key:           # fast path: an existing level
        b.lv_shares[bs, i] += shares
        b.lv_orders[bs, i] += 1
        return b.lv_birth[bs, i]
    L = b.lv_key.shape[1]
    if n == L:                                     # slow path: side full
        if i == 0:
            b.hidden[bs] += 1
            b.counters[C_HIDDEN_ADD] += 1
            return 0
        b.hidden[bs] += b.lv_orders[bs, 0]         # evict the deepest level
        b.counters[C_LEVEL_EVICTED] += 1
        for j in range(0, i - 1):
            b.lv_key[bs, j] = b.lv_key[bs, j + 1]
            b.lv_shares[bs, j] = b.lv_shares[bs, j + 1]
            b.lv_orders[bs, j] = b.lv_orders[bs, j + 1]
            b.lv_birth[bs, j] = b.lv_birth[bs, j + 1]
        i -= 1
    else:
        for j in range(n, i, -1):                  # the better levels move up one
            b.lv_key[bs, j] = b.lv_key[bs, j - 1]
            b.lv_shares[bs, j] = b.lv_shares[bs, j - 1]
            b.lv_orders[bs, j] = b.lv_orders[bs, j - 1]
            b.lv_birth[bs, j] = b.lv_birth[bs, j - 1]
        b.nlev[bs] = n + 1
    birth = b.meta[M_BIRTH] + 1
    b.meta[M_BIRTH] = birth
    b.lv_key[bs, i] = key
    b.lv_shares[bs, i] = shares
    b.lv_orders[bs, i] = 1
    b.lv_birth[bs, i] = birth
    return birth


@njit(**_K)
def _take(b, o, q, gone):
    """Take ``q`` shares off order slot ``o``'s level (and the order itself off the level when
    ``gone``)."""
    bs = 2 * b.orders[o, O_LOCATE] + b.orders[o, O_SIDE]
    birth = b.orders[o, O_BIRTH]
    if birth != 0:
        key = b.orders[o, O_PRICE]
        if b.orders[o, O_SIDE] == SIDE_ASK:
            key = -key
        n = b.nlev[bs]
        i = level_search(b.lv_key, bs, n, key)
        if i < n and b.lv_birth[bs, i] == birth:
            b.lv_shares[bs, i] -= q
            if gone:
                c = b.lv_orders[bs, i] - 1
                b.lv_orders[bs, i] = c
                if c == 0:
                    _remove_level(b, bs, i)
            return
    if gone:                                       # a hidden order (never or no longer shown)
        b.hidden[bs] -= 1


@njit(**_K)
def _free_order(b, o):
    ht_remove(b.ht, b.meta[M_HT_MASK], b.meta[M_HT_SHIFT], b.orders[o, O_REF])
    top = b.meta[M_FREE_TOP]
    b.free[top] = o
    b.meta[M_FREE_TOP] = top + 1
    b.meta[M_OPEN] -= 1


# --- the update kernels ---------------------------------------------------------------------
@njit(**_K)
def book_add(b, locate, order_ref, side, shares, price):
    """ITCH A/F: a new order.  Returns ST_OK, ST_HIDDEN or a refusal (see module doc)."""
    loc = np.int64(locate)
    s = side_index(side)
    q = np.int64(shares)
    if loc < 1 or loc > b.meta[M_MAX_INSTR]:
        b.counters[C_BAD_LOCATE] += 1
        return ST_BAD_LOCATE
    if s < 0 or q <= 0:
        b.counters[C_BAD_ARG] += 1
        return ST_BAD_ARG
    top = b.meta[M_FREE_TOP]
    if top == 0:
        b.counters[C_ORDERS_FULL] += 1
        return ST_ORDERS_FULL
    ref = np.int64(order_ref)
    o = b.free[top - 1]
    if not ht_insert(b.ht, b.meta[M_HT_MASK], b.meta[M_HT_SHIFT], ref, o):
        b.counters[C_DUP_REF] += 1
        return ST_DUP_REF
    b.meta[M_FREE_TOP] = top - 1
    b.meta[M_OPEN] += 1
    p = np.int64(price)
    b.orders[o, O_REF] = ref
    b.orders[o, O_LOCATE] = loc
    b.orders[o, O_SIDE] = s
    b.orders[o, O_PRICE] = p
    b.orders[o, O_SHARES] = q
    birth = _join_level(b, 2 * loc + s, p if s == SIDE_BID else -p, q)
    b.orders[o, O_BIRTH] = birth
    b.counters[C_ADD] += 1
    return ST_OK if birth != 0 else ST_HIDDEN


@njit(**_K)
def _reduce(b, order_ref, shares, c_ops, c_shares):
    o = ht_find(b.ht, b.meta[M_HT_MASK], b.meta[M_HT_SHIFT], np.int64(order_ref))
    if o < 0:
        b.counters[C_UNKNOWN_REF] += 1
        return ST_UNKNOWN_REF
    q = np.int64(shares)
    if q <= 0:
        b.counters[C_BAD_ARG] += 1
        return ST_BAD_ARG
    left = b.orders[o, O_SHARES]
    st = ST_OK
    if q >= left:
        if q > left:
            b.counters[C_OVER_EXEC] += 1
            st = ST_CLAMPED
            q = left
        else:
            st = ST_REMOVED
    b.counters[c_ops] += 1
    b.counters[c_shares] += q
    gone = q == left
    _take(b, o, q, gone)
    if gone:
        _free_order(b, o)
    else:
        b.orders[o, O_SHARES] = left - q
    return st


@njit(**_K)
def book_execute(b, order_ref, shares):
    """ITCH E/C: ``shares`` of the order executed; at 0 the order is removed (ST_REMOVED)."""
    return _reduce(b, order_ref, shares, C_EXECUTE, C_EXEC_SHARES)


@njit(**_K)
def book_cancel(b, order_ref, shares):
    """ITCH X: ``shares`` cancelled (partial cancel; at 0 the order is removed)."""
    return _reduce(b, order_ref, shares, C_CANCEL, C_CANCEL_SHARES)


@njit(**_K)
def book_delete(b, order_ref):
    """ITCH D: the order is removed whatever it has left."""
    o = ht_find(b.ht, b.meta[M_HT_MASK], b.meta[M_HT_SHIFT], np.int64(order_ref))
    if o < 0:
        b.counters[C_UNKNOWN_REF] += 1
        return ST_UNKNOWN_REF
    b.counters[C_DELETE] += 1
    b.counters[C_CANCEL_SHARES] += b.orders[o, O_SHARES]
    _take(b, o, b.orders[o, O_SHARES], True)
    _free_order(b, o)
    return ST_OK


@njit(**_K)
def book_replace(b, old_ref, new_ref, shares, price):
    """ITCH U: order ``old_ref`` leaves the book and ``new_ref`` joins it (same instrument and
    side, at the back of its level).  Refused whole (nothing changes) when ``old_ref`` is
    unknown, ``new_ref`` is already open (unless it is ``old_ref``) or ``shares <= 0``."""
    mask = b.meta[M_HT_MASK]
    shift = b.meta[M_HT_SHIFT]
    old = np.int64(old_ref)
    new = np.int64(new_ref)
    o = ht_find(b.ht, mask, shift, old)
    if o < 0:
        b.counters[C_UNKNOWN_REF] += 1
        return ST_UNKNOWN_REF
    if new != old and ht_find(b.ht, mask, shift, new) >= 0:
        b.counters[C_DUP_REF] += 1
        return ST_DUP_REF
    q = np.int64(shares)
    if q <= 0:
        b.counters[C_BAD_ARG] += 1
        return ST_BAD_ARG
    _take(b, o, b.orders[o, O_SHARES], True)
    # the slot is reused in place: re-key the hash entry, then join the new level
    ht_remove(b.ht, mask, shift, old)
    ht_insert(b.ht, mask, shift, new, o)
    loc = b.orders[o, O_LOCATE]
    s = b.orders[o, O_SIDE]
    p = np.int64(price)
    b.orders[o, O_REF] = new
    b.orders[o, O_PRICE] = p
    b.orders[o, O_SHARES] = q
    birth = _join_level(b, 2 * loc + s, p if s == SIDE_BID else -p, q)
    b.orders[o, O_BIRTH] = birth
    b.counters[C_REPLACE] += 1
    return ST_OK if birth != 0 else ST_HIDDEN


# --- queries ---------------------------------------------------------------------------------
@njit(**_K)
def _best(b, locate, s):
    loc = np.int64(locate)
    if loc < 1 or loc > b.meta[M_MAX_INSTR]:
        return np.int64(0), np.int64(0), np.int64(0)
    bs = 2 * loc + s
    n = b.nlev[bs]
    if n == 0:
        return np.int64(0), np.int64(0), np.int64(0)
    k = b.lv_key[bs, n - 1]
    return (k if s == SIDE_BID else -k), b.lv_shares[bs, n - 1], b.lv_orders[bs, n - 1]


@njit(**_K)
def best_bid(b, locate):
    """(price, shares, orders) of the best bid level; (0, 0, 0) when there is none."""
    return _best(b, locate, SIDE_BID)


@njit(**_K)
def best_ask(b, locate):
    """(price, shares, orders) of the best ask level; (0, 0, 0) when there is none."""
    return _best(b, locate, SIDE_ASK)


@njit(**_K)
def level_count(b, locate, side):
    """Visible price levels on one side (0 for a bad locate or side)."""
    loc = np.int64(locate)
    s = side_index(side)
    if loc < 1 or loc > b.meta[M_MAX_INSTR] or s < 0:
        return 0
    return b.nlev[2 * loc + s]


@njit(**_K)
def depth(b, locate, side, k, out):
    """The top ``min(k, out.shape[0], levels)`` levels, best first, into ``out[j, 0:3]`` =
    (price, aggregate shares, order count); returns how many were written."""
    loc = np.int64(locate)
    s = side_index(side)
    if loc < 1 or loc > b.meta[M_MAX_INSTR] or s < 0:
        return 0
    bs = 2 * loc + s
    n = b.nlev[bs]
    m = min(np.int64(k), np.int64(out.shape[0]), n)
    for j in range(m):
        i = n - 1 - j
        kk = b.lv_key[bs, i]
        out[j, 0] = kk if s == SIDE_BID else -kk
        out[j, 1] = b.lv_shares[bs, i]
        out[j, 2] = b.lv_orders[bs, i]
    return m


@njit(**_K)
def order_shares(b, order_ref):
    """Shares left on an open order, or -1 when it is not open."""
    o = ht_find(b.ht, b.meta[M_HT_MASK], b.meta[M_HT_SHIFT], np.int64(order_ref))
    return b.orders[o, O_SHARES] if o >= 0 else np.int64(-1)


# --- ITCH 5.0 glue: message bytes -> kernels -------------------------------------------------
@njit(**_K)
def apply_itch(b, buf, off, end):
    """Apply the ITCH 5.0 message at ``buf[off:end]`` (no length prefix) to the books: A/F add,
    E/C execute, X cancel, D delete, U replace, each field read straight from the bytes with
    ``parsers.itch``'s offsets.  Returns the kernel's status; ST_IGNORED (counted,
    ``itch_ignored``) for the types that do not change a book (S R H Y L V W K J h P Q B I N
    O: a 'P' trade is a non-displayed order's, a 'B' break does not restore shares);
    ST_BAD_MESSAGE (``itch_bad``) for an unknown type or fewer bytes than the type's length."""
    if end - off < 1:
        b.counters[C_ITCH_BAD] += 1
        return ST_BAD_MESSAGE
    t = buf[off]
    n = I.MSG_LEN[t]
    if n == 0 or end - off < n:
        b.counters[C_ITCH_BAD] += 1
        return ST_BAD_MESSAGE
    return _apply(b, buf, off, t)


@njit(**_K)
def _apply(b, buf, off, t):
    # the order flow in the order of its frequency in a real day (D and A lead, then U, E, X)
    if t == I.MSG_ORDER_DELETE:
        return book_delete(b, be64(buf, off + I.D_ORDER_REF))
    if t == I.MSG_ADD_ORDER:
        return book_add(b, be16(buf, off + I.LOCATE), be64(buf, off + I.A_ORDER_REF),
                        be8(buf, off + I.A_SIDE), be32(buf, off + I.A_SHARES),
                        be32(buf, off + I.A_PRICE))
    if t == I.MSG_ORDER_REPLACE:
        return book_replace(b, be64(buf, off + I.U_ORDER_REF), be64(buf, off + I.U_NEW_ORDER_REF),
                            be32(buf, off + I.U_SHARES), be32(buf, off + I.U_PRICE))
    if t == I.MSG_ORDER_EXECUTED:
        return book_execute(b, be64(buf, off + I.E_ORDER_REF),
                            be32(buf, off + I.E_EXECUTED_SHARES))
    if t == I.MSG_ORDER_CANCEL:
        return book_cancel(b, be64(buf, off + I.X_ORDER_REF),
                           be32(buf, off + I.X_CANCELED_SHARES))
    if t == I.MSG_ADD_ORDER_MPID:
        return book_add(b, be16(buf, off + I.LOCATE), be64(buf, off + I.F_ORDER_REF),
                        be8(buf, off + I.F_SIDE), be32(buf, off + I.F_SHARES),
                        be32(buf, off + I.F_PRICE))
    if t == I.MSG_ORDER_EXECUTED_PRICE:
        return book_execute(b, be64(buf, off + I.C_ORDER_REF),
                            be32(buf, off + I.C_EXECUTED_SHARES))
    b.counters[C_ITCH_IGNORED] += 1
    return ST_IGNORED


@njit(**_K)
def apply_itch_blocks(b, buf, off, end):
    """Apply a run of MoldUDP64 message blocks (u16 big-endian length + ITCH message, the
    payload of a MoldUDP64 packet after its 20-byte header, or ``engine.matching``'s output)
    from ``buf[off:end]``.  A block whose length is not its type's length is counted
    (``itch_bad``) and skipped, never read; a block cut by ``end`` stops the walk.  Returns
    the offset where the walk stopped (``end`` when every block was complete)."""
    while end - off >= 2:
        n = be16(buf, off)
        if end - off - 2 < n:
            break
        if n == 0 or I.MSG_LEN[buf[off + 2]] != n:
            b.counters[C_ITCH_BAD] += 1
        else:
            _apply(b, buf, off + 2, buf[off + 2])
        off += 2 + n
    return off


# --- setup -----------------------------------------------------------------------------------
class Books:
    """Allocates the arrays of ``max_instruments`` books (locates 1..max_instruments), at most
    ``max_orders`` open orders over all of them and ``max_levels`` visible price levels per
    side.  Setup only: the kernels take ``self.arrays``.

    Memory: 64 B per order, 32 B x 2 x 2 x max_levels per instrument for the levels (the
    default 1,000 instruments x 256 levels: 33 MB), 16 B x 4 x max_orders for the hash table.
    """

    def __init__(self, max_instruments: int, max_orders: int, max_levels: int = 256):
        if max_instruments < 1 or max_orders < 1 or max_levels < 1:
            raise ValueError("Books: max_instruments, max_orders and max_levels must be >= 1")
        cap, shift = ht_geometry(max_orders)
        sides = 2 * (max_instruments + 1)
        meta = np.zeros(N_META, dtype=np.int64)
        meta[M_HT_MASK] = cap - 1
        meta[M_HT_SHIFT] = shift
        meta[M_MAX_ORDERS] = max_orders
        meta[M_MAX_LEVELS] = max_levels
        meta[M_MAX_INSTR] = max_instruments
        meta[M_FREE_TOP] = max_orders
        free = np.arange(max_orders - 1, -1, -1, dtype=np.int64)   # slot 0 is handed out first
        self.max_instruments = max_instruments
        self.max_orders = max_orders
        self.max_levels = max_levels
        self.arrays = BookArrays(
            orders=np.zeros((max_orders, ORDER_WORDS), dtype=np.int64),
            ht=ht_new(cap), free=free,
            lv_key=np.zeros((sides, max_levels), dtype=np.int64),
            lv_shares=np.zeros((sides, max_levels), dtype=np.int64),
            lv_orders=np.zeros((sides, max_levels), dtype=np.int64),
            lv_birth=np.zeros((sides, max_levels), dtype=np.int64),
            nlev=np.zeros(sides, dtype=np.int64), hidden=np.zeros(sides, dtype=np.int64),
            counters=np.zeros(N_COUNTERS, dtype=np.int64), meta=meta)

    def counters(self) -> dict[str, int]:
        c = self.arrays.counters
        return {name: int(c[i]) for i, name in enumerate(COUNTER_NAMES)}

    @property
    def open_orders(self) -> int:
        return int(self.arrays.meta[M_OPEN])

    def levels(self, locate: int, side: int) -> list[tuple[int, int, int]]:
        """All visible levels of one side, best first (Python lists: for tests and tools)."""
        out = np.zeros((self.max_levels, 3), dtype=np.int64)
        n = depth(self.arrays, locate, side, self.max_levels, out)
        return [tuple(int(v) for v in out[j]) for j in range(n)]

    def hidden(self, locate: int, side: int) -> int:
        return int(self.arrays.hidden[2 * locate + side_index(side)])


__all__ = [
    "Books", "BookArrays", "book_add", "book_execute", "book_cancel", "book_delete",
    "book_replace", "apply_itch", "apply_itch_blocks", "best_bid", "best_ask", "depth", "level_count", "order_shares",
    "ht_geometry", "ht_new", "ht_find", "ht_insert", "ht_remove", "level_search", "side_index",
    "COUNTER_NAMES", "STATUS_NAMES", "SIDE_BID", "SIDE_ASK",
    "ST_OK", "ST_REMOVED", "ST_HIDDEN", "ST_CLAMPED", "ST_UNKNOWN_REF", "ST_DUP_REF",
    "ST_ORDERS_FULL", "ST_BAD_LOCATE", "ST_BAD_ARG", "ST_IGNORED", "ST_BAD_MESSAGE",
]
