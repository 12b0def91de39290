"""Full-depth limit order books for many instruments, as plain ``@njit`` kernels over arrays.

A market-data consumer (an ITCH 5.0 feed handler) keeps one book per instrument, keyed by the
ITCH *stock locate* (1..``max_instruments``).  ``Books`` (setup only) allocates the whole state
once, as *one* int64 array ``Books.state`` laid out by the table below; the kernels take that
array (``b``) and plain integers, so a decoder loop calls them straight from the fields of a
message:

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
``hidden_count(b, locate, side)``                          open orders not on a shown level
``order_shares(b, order_ref)``                             shares left, -1 when not open
``apply_itch(b, buf, off, end)``                           one ITCH message's bytes -> the
                                                              kernel above that it calls
``apply_itch_blocks(b, buf, off, end)``                    MoldUDP64 message blocks (u16
                                                              length + message) -> off reached
=========================================================  ===================================

``side`` is 0 / 1 or the ITCH byte ``'B'`` / ``'S'`` (66 / 83).  Prices are the ITCH Price(4)
integers (4 implied decimals); any int64 but -2**63 works (that one is the sentinel below
every level key: refused, ST_BAD_ARG).  Order refs are ITCH's u64, stored as int64
bits (a ref above 2**63 is fine: it is only hashed and compared).

Layout of ``b`` (int64 words; the constants below are the table, ``Books.doc()`` prints it)
-----------------------------------------------------------------------------------------
===================  ==============================  ========================================
region               word offset, size               holds
===================  ==============================  ========================================
header               0, 16                           H_* (HEADER_FIELDS): geometry, table
                                                     mask/bits, level birth counter, open
                                                     orders
counters             16, 32                          C_* below (COUNTER_NAMES)
orders               64, 4 * capacity                the order table: open addressing keyed
                     (capacity = pow2 >= 2 *         by order ref, the orders *in* their
                     max_orders)                     slots: R_REF, R_PRICE, R_SHARES, R_META
                                                     (level birth stamp << 17 | locate << 1 |
                                                     side; 0 = empty slot; birth 0 = hidden);
                                                     linear probing from ``ht_home``,
                                                     backward-shift deletion, load <= 1/2
heads                b[H_HEADS], 2 * 2 * (max_instr  per book side ``si = 2 * locate + side``
                     + 1) (rounded up to a line)     its head: S_NLEV (levels shown), S_HIDDEN
sides                b[H_SIDES], 2 * (max_instr+1)   one block per book side ``si``: KEY_BLOCK
                     * (16 + KW + 4 * L), KW = L     sentinels (int64 min), its L level keys
                     rounded up to 8                 (key = price for bids, -price for asks)
                                                     sorted *ascending*, so the best level is
                                                     always the last one; then, KW words on,
                                                     each level's figures in 4 words:
                                                     LV_SHARES, LV_ORDERS, LV_BIRTH, spare
===================  ==============================  ========================================

Why the orders sit in the hash table itself: a message then costs one cache miss for its order
(not a slot lookup, then the order), and ``apply_itch_blocks`` prefetches the slot of the
message ``PREFETCH_AHEAD`` blocks ahead from its bytes, so on a book larger than the caches
the misses of consecutive messages overlap.  (A C calibration of both designs on itch_feed's
1,000-stock day, on the development VM: ~120 ns a message with a slot index in the hash table
and the orders in their own array, ~90 with the orders in the table, ~70 with the prefetch.)

Why one array and not a tuple of arrays: Numba passes a tuple argument by value, every array
in it as a 7-9 word struct, to each helper it does not inline; with a dozen arrays that was
~90 words pushed per call and most of the cost of a message.  One array costs one struct, so
the helpers stay ordinary (cheap) calls and compile fast.  It also lets the books live in any
int64 buffer (a hugepage mapping another process can watch).  ``hidden`` is the count of open
orders of a side that are not on a visible level (see overload below).

Why the keys apart from the figures, and the heads apart from the levels: a search reads keys
only, eight to a cache line, so the top sixteen levels are two or three lines (they were eight
with the key beside its figures), and counts them without a branch (``key_search``); the level
it lands on costs one more line.  The heads (2 words a side, 32 KB for 1,000 stocks) stay in
cache, where a head at the start of each side block was one more miss a message.
(``tools/bench_itch.py``, 1,000 stocks, this VM: 58.7 ns a message with keys beside their
figures and heads in the side blocks, commit f3e0346; ~52 with this layout and blocks of 8 keys
tested on their lowest key, 08b5e18; 46.7-48.3 with blocks of 16 counted over sentinels and
the doubled hash homes below, a222990.)

Why a sorted array per side and not a price ladder: ITCH prices of one stock span a wide range
(a stray order far from the market is common), so a ladder needs either a huge range or
re-centring; a sorted array costs memory only for levels that exist.  Keeping the best level
at the *end* makes the common case cheap: most adds, executes and cancels land within a few
levels of the top, so the insert/remove shift moves only the few better levels, and the
lookup scans the top blocks of keys before falling back to a binary search.
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
  do not count in any level.  ``hidden_count(b, locate, side)`` counts them: while it is 0 the
  side's depth is exact; while it is not, levels below the shown ones may be missing or short,
  never wrong in price order, and the levels that *are* shown hold exact figures except a
  level re-created at an evicted price (it shows only the orders that arrived since).
* Crossed or locked books (bid >= ask) are kept as they come: ITCH may show them briefly.

Who may call: one thread per ``Books`` (the kernels are single-writer, no atomics).  Nothing
here allocates.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from parsers import itch as I
from parsers.itch import be8, be16, be32, be64
from shm.pointers import data_pointer

# --- the layout table (word offsets in ``b``) -------------------------------------------------
HEADER_FIELDS = (
    ("magic", "BOOK_MAGIC: what this buffer is"),
    ("words", "total words of the state"),
    ("table", "word offset of the order table"),
    ("sides", "word offset of the first book-side block"),
    ("side_words", "words per book-side block: KEY_BLOCK + key_words + LEVEL_WORDS * L"),
    ("max_levels", "L, levels per side"),
    ("table_mask", "order table capacity - 1"),
    ("table_bits", "log2 of the order table capacity"),
    ("max_orders", "open orders allowed (capacity / 2)"),
    ("max_instruments", "locates 1..max_instruments"),
    ("birth", "last level birth stamp handed out"),
    ("open_orders", "orders open now"),
    ("heads", "word offset of the side heads (HEAD_WORDS per book side)"),
    ("key_words", "words of a side's key array: max_levels rounded up to a cache line"),
)
(H_MAGIC, H_WORDS, H_TABLE, H_SIDES, H_SIDE_WORDS, H_L, H_MASK, H_BITS, H_MAX_ORDERS,
 H_MAX_INSTR, H_BIRTH, H_OPEN, H_HEADS, H_KEY_WORDS) = range(len(HEADER_FIELDS))
HEADER_WORDS = 16
COUNTERS = 16                        # counters region: words 16..47
N_COUNTERS = 32
TABLE = 64                           # the order table: REC_WORDS per slot
REC_WORDS = 4                        # an order: two per cache line
REC_FIELDS = ("R_REF", "R_PRICE", "R_SHARES", "R_META")
R_REF, R_PRICE, R_SHARES, R_META = range(REC_WORDS)
# R_META = birth << META_BIRTH | locate << 1 | side; 0 marks an empty slot (locate >= 1)
META_BIRTH = 17
HEAD_WORDS = 2                       # per book side, in the dense heads region: levels, hidden
S_NLEV, S_HIDDEN = 0, 1
LEVEL_WORDS = 4                      # a level's figures: shares, orders, birth, spare (two a line)
LV_SHARES, LV_ORDERS, LV_BIRTH = 0, 1, 2
KEY_BLOCK = 16                       # keys counted at once by key_search; also the sentinel
KEY_BLOCKS_SCANNED = 2               # words below each side's keys; blocks before bisecting
KEY_SENTINEL = -(1 << 63)            # below every key (|price| < 2**63)
BOOK_MAGIC = int.from_bytes(b"HRBOOK03", "little")
PREFETCH_AHEAD = 8                   # apply_itch_blocks: blocks between prefetch and use

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
    range(COUNTERS, COUNTERS + len(COUNTER_NAMES))
assert len(COUNTER_NAMES) <= N_COUNTERS and COUNTERS + N_COUNTERS <= TABLE

ST_OK, ST_REMOVED, ST_HIDDEN, ST_CLAMPED, ST_IGNORED = 0, 1, 2, 3, 4
ST_UNKNOWN_REF, ST_DUP_REF, ST_ORDERS_FULL, ST_BAD_LOCATE, ST_BAD_ARG, ST_BAD_MESSAGE = \
    -1, -2, -3, -4, -5, -6
STATUS_NAMES = {ST_OK: "ok", ST_REMOVED: "removed", ST_HIDDEN: "hidden", ST_CLAMPED: "clamped",
                ST_IGNORED: "ignored", ST_UNKNOWN_REF: "unknown_ref", ST_DUP_REF: "dup_ref",
                ST_ORDERS_FULL: "orders_full", ST_BAD_LOCATE: "bad_locate",
                ST_BAD_ARG: "bad_arg", ST_BAD_MESSAGE: "bad_message"}

SIDE_BID, SIDE_ASK = 0, 1
TOP_SCAN = 8                         # level_search: levels scanned linearly before bisecting

# _nrt=False: nothing here allocates, and with NRT each call would incref and decref its array
# (atomic read-modify-writes).  The kernels on a message's path (the update kernels, _apply, the
# order-table probes, the level search and join) are inlined at Numba IR level (``_KI``):
# gcc -O2 inlines their twins in tools/reference/itch_ref.c on its own, LLVM does not across
# Numba functions, and the calls -- one array struct of 7 words each -- cost ~20 % of a message
# (bench_itch, 1,000 stocks: ~71 -> ~57 ns; the first compile takes ~15 s instead of ~4).
# The rest (removal shifts, queries) stay ordinary calls.  The message loops (``apply_itch``,
# ``apply_itch_blocks``) hand the kernels the state's data pointer instead of the array: the
# same source, typed for a ``CPointer``, indexes without Numba's negative-index fix-up.
_K = dict(cache=True, nogil=True, _nrt=False)
_KI = dict(inline="always", **_K)


# --- the hash table (shared with engine/matching.py) ------------------------------------------
def ht_geometry(max_entries: int) -> tuple[int, int]:
    """(capacity, bits) of a table for ``max_entries`` keys at load <= 1/2: capacity a power
    of two, ``bits = log2(capacity)``."""
    cap = 16
    while cap < 2 * max_entries:
        cap *= 2
    return cap, cap.bit_length() - 1


def ht_clear(t: np.ndarray, base: int, capacity: int) -> None:
    t[base:base + 2 * capacity] = 0
    t[base + 1:base + 2 * capacity:2] = -1


@njit(**_KI)
def ht_home(key, mask):
    """Home slot of ``key``: the key's four 16-bit chunks XORed together, then its two low
    bytes, so every bit of the key reaches the low byte (keys that differ only in their high
    bits stay apart) while sequential keys (ITCH order refs, a client's user refs) keep their
    order within each aligned run of 256 (XOR with a constant); then doubled, so homes are the
    even slots and each key of a sequential run has a pair of slots (a cache line of order
    records) to itself: linear probing over pairs, at load <= 1/2 the slot after a key is
    usually empty, so a lookup stops at its home and a backward-shift removal after one look.
    (With consecutive homes, the orders open at any moment -- mostly recent refs -- filled
    runs of consecutive slots that every removal scanned to their end: 3.6 slots a removal in
    bench_itch's day; with pairs its C twin runs ~25 instructions and ~0.4 mispredicted
    branches a message fewer, ``valgrind --tool=cachegrind --branch-sim=yes`` on
    tools/reference/itch_ref.c.)  A multiplicative hash would scatter sequential keys over the
    table, a cache miss per lookup without the prefetch.  Fixed shifts: a fold in
    log2(capacity)-wide chunks took a loop of variable shifts, ~50 more instructions a
    message (same measurement)."""
    h = key ^ (key >> 16) ^ (key >> 32) ^ (key >> 48)
    h ^= h >> 8
    return (h << 1) & mask


@njit(**_K)
def ht_find(t, base, mask, key):
    """Value stored under ``key`` in the table at ``t[base:]``, or -1."""
    i = ht_home(key, mask)
    while True:
        v = t[base + 2 * i + 1]
        if v < 0:
            return v
        if t[base + 2 * i] == key:
            return v
        i = (i + 1) & mask


@njit(**_K)
def ht_insert(t, base, mask, key, val):
    """Store ``key -> val`` (val >= 0); False (nothing stored) if the key is already there.
    The caller keeps the load at most 1/2, so a free slot always exists."""
    i = ht_home(key, mask)
    while True:
        j = base + 2 * i
        if t[j + 1] < 0:
            t[j] = key
            t[j + 1] = val
            return True
        if t[j] == key:
            return False
        i = (i + 1) & mask


@njit(**_K)
def ht_remove(t, base, mask, key):
    """Remove ``key``; returns its value or -1.  Backward-shift deletion: the entries after the
    hole that could not sit at their home slot move back, so lookups never need tombstones."""
    i = ht_home(key, mask)
    while True:
        v = t[base + 2 * i + 1]
        if v < 0:
            return v
        if t[base + 2 * i] == key:
            break
        i = (i + 1) & mask
    j = i
    while True:
        j = (j + 1) & mask
        if t[base + 2 * j + 1] < 0:
            break
        k = ht_home(t[base + 2 * j], mask)
        # entry j may fill hole i iff its home k is not cyclically within (i, j]
        if (j > i and (k <= i or k > j)) or (j < i and (k <= i and k > j)):
            t[base + 2 * i] = t[base + 2 * j]
            t[base + 2 * i + 1] = t[base + 2 * j + 1]
            i = j
    t[base + 2 * i + 1] = -1
    return v


# --- the order table: the orders themselves in an open-addressing table ---------------------------
# An order lives in its hash slot (ref, price, shares, meta), not behind an index: a lookup is
# one cache miss, not two (slot, then order), and the slot of a message still to come can be
# prefetched straight from its bytes (``apply_itch_blocks``).  Linear probing on ``ht_home``
# (ITCH refs are sequential: the orders open at any moment share lines), backward-shift
# deletion (records move; nothing points at them).
@intrinsic
def _prefetch(typingctx, arr, idx):
    """Prefetch the cache line of ``arr[idx]`` (a hint: never faults, even out of bounds)."""
    if not (isinstance(arr, types.Array) and isinstance(idx, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        i = context.cast(builder, args[1], sig.args[1], types.int64)
        p8 = builder.bitcast(builder.gep(ary.data, [i]), ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [p8.type, i32, i32, i32])
        fn = builder.module.declare_intrinsic("llvm.prefetch", [p8.type], fnty)
        builder.call(fn, [p8, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()
    return types.none(arr, idx), codegen


@njit(**_KI)
def rec_of(b, i):
    """Word offset of order-table slot ``i``."""
    return TABLE + REC_WORDS * i


@njit(**_KI)
def rec_find(b, ref):
    """Word offset of the order ``ref``, or -1."""
    mask = b[H_MASK]
    i = ht_home(ref, mask)
    while True:
        r = TABLE + REC_WORDS * i
        if b[r + R_META] == 0:
            return -1
        if b[r + R_REF] == ref:
            return r
        i = (i + 1) & mask


@njit(**_KI)
def rec_slot_for(b, ref):
    """Word offset of the empty slot where ``ref`` goes, or -1 when ``ref`` is already there.
    (The caller keeps the load at most 1/2, so an empty slot always exists.)"""
    mask = b[H_MASK]
    i = ht_home(ref, mask)
    while True:
        r = TABLE + REC_WORDS * i
        if b[r + R_META] == 0:
            return r
        if b[r + R_REF] == ref:
            return -1
        i = (i + 1) & mask


@njit(**_K)
def rec_remove(b, r):
    """Empty the slot at word offset ``r``; the records after it that could not sit at their
    home slot move back (backward-shift deletion: lookups never meet a tombstone)."""
    mask = b[H_MASK]
    i = (r - TABLE) // REC_WORDS
    j = i
    while True:
        j = (j + 1) & mask
        rj = TABLE + REC_WORDS * j
        if b[rj + R_META] == 0:
            break
        k = ht_home(b[rj + R_REF], mask)
        if (j > i and (k <= i or k > j)) or (j < i and (k <= i and k > j)):
            ri = TABLE + REC_WORDS * i
            b[ri + R_REF] = b[rj + R_REF]
            b[ri + R_PRICE] = b[rj + R_PRICE]
            b[ri + R_SHARES] = b[rj + R_SHARES]
            b[ri + R_META] = b[rj + R_META]
            i = j
    b[TABLE + REC_WORDS * i + R_META] = 0


# --- sorted levels of one book side -------------------------------------------------------------
@njit(**_KI)
def side_index(side):
    """0/'B' -> 0, 1/'S' -> 1, anything else -1."""
    if side == 0 or side == 66:
        return 0
    if side == 1 or side == 83:
        return 1
    return -1


@njit(**_KI)
def level_search(t, kb, stride, n, key):
    """Index of the first of the ``n`` sorted levels at ``t[kb:]`` (``stride`` words each, the
    key first) whose key is ``>= key`` (n when none): a linear scan of the top TOP_SCAN levels
    (fast path: most activity is there), then a binary search below."""
    i = n - 1
    stop = n - TOP_SCAN
    if stop < 0:
        stop = 0
    while i >= stop:
        kk = t[kb + stride * i]
        if kk < key:
            return i + 1
        if kk == key:
            return i
        i -= 1
    if stop == 0:
        return 0
    lo = 0
    hi = stop                          # t[kb + stop] > key is known
    while lo < hi:
        mid = (lo + hi) >> 1
        if t[kb + stride * mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(**_KI)
def key_search(t, kb, n, key):
    """Index of the first of the ``n`` ascending keys at ``t[kb:]`` that is ``>= key`` (n when
    none).  Needs KEY_BLOCK sentinel words ``t[kb - KEY_BLOCK:kb]`` below every key (int64
    min: every side block starts with them).

    From the top (the best level is last), a block of KEY_BLOCK keys at a time: count, without
    a branch, the keys of the block below ``key`` (LLVM makes the fixed 16-key count a couple
    of vector compares); if any is, the answer is the block's start plus that count, else the
    next block down.  A block that reaches below key 0 counts the sentinels, so a side of
    fewer than 16 levels is one block with no loop over its length.  Below
    KEY_BLOCKS_SCANNED blocks it bisects.  Most activity is near the top (bench_itch's day:
    half the searches land in the top 8 levels, 73 % in the top 16, 95 % in the top 32), so
    the one branch a search takes is mostly predicted.  (Blocks of 8 tested on their lowest
    key before counting, with a loop over the keys of a short side, mispredicted one search in
    two; see the module doc for bench_itch before and after.)"""
    hi = n
    for _ in range(KEY_BLOCKS_SCANNED):
        lo = kb + hi - KEY_BLOCK
        c = 0
        for j in range(KEY_BLOCK):
            c += t[lo + j] < key
        if c > 0:
            return hi - KEY_BLOCK + c
        hi -= KEY_BLOCK
    lo = 0                             # t[kb + hi] >= key is known
    while lo < hi:
        mid = (lo + hi) >> 1
        if t[kb + mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(**_KI)
def side_keys(b, si):
    """Word offset of book side ``si``'s key array (``si = 2 * locate + side``), after the
    side block's KEY_BLOCK sentinel words; its levels' figures follow at ``+ b[H_KEY_WORDS]``."""
    return b[H_SIDES] + si * b[H_SIDE_WORDS] + KEY_BLOCK


@njit(**_KI)
def side_head(b, si):
    """Word offset of book side ``si``'s head (S_NLEV, S_HIDDEN) in the dense heads region."""
    return b[H_HEADS] + HEAD_WORDS * si


@njit(**_K)
def _remove_level(b, si, i):
    h = side_head(b, si)
    n = b[h + S_NLEV]
    kb = side_keys(b, si)
    for w in range(kb + i, kb + n - 1):
        b[w] = b[w + 1]                # the better levels move down one (few: near the top)
    fb = kb + b[H_KEY_WORDS]
    for w in range(fb + LEVEL_WORDS * i, fb + LEVEL_WORDS * (n - 1)):
        b[w] = b[w + LEVEL_WORDS]
    b[h + S_NLEV] = n - 1


@njit(**_KI)
def _join_level(b, si, key, shares):
    """Add one order of ``shares`` at ``key`` to book side ``si``; returns the level's birth
    stamp, or 0 when the order is hidden (side full, price deeper than every level)."""
    h = side_head(b, si)
    n = b[h + S_NLEV]
    kb = side_keys(b, si)
    fb = kb + b[H_KEY_WORDS]
    i = key_search(b, kb, n, key)
    v = fb + LEVEL_WORDS * i
    if i < n and b[kb + i] == key:                 # fast path: an existing level
        b[v + LV_SHARES] += shares
        b[v + LV_ORDERS] += 1
        return b[v + LV_BIRTH]
    if n == b[H_L]:                                # slow path: side full
        if i == 0:
            b[h + S_HIDDEN] += 1
            b[C_HIDDEN_ADD] += 1
            return 0
        b[h + S_HIDDEN] += b[fb + LV_ORDERS]       # evict the deepest level
        b[C_LEVEL_EVICTED] += 1
        i -= 1
        v = fb + LEVEL_WORDS * i
        for w in range(kb, kb + i):
            b[w] = b[w + 1]
        for w in range(fb, v):
            b[w] = b[w + LEVEL_WORDS]
    else:
        for w in range(kb + n - 1, kb + i - 1, -1):
            b[w + 1] = b[w]                        # the better levels move up one
        for w in range(fb + LEVEL_WORDS * n - 1, v - 1, -1):
            b[w + LEVEL_WORDS] = b[w]
        b[h + S_NLEV] = n + 1
    birth = b[H_BIRTH] + 1
    b[H_BIRTH] = birth
    b[kb + i] = key
    b[v + LV_SHARES] = shares
    b[v + LV_ORDERS] = 1
    b[v + LV_BIRTH] = birth
    return birth


@njit(**_KI)
def _take(b, r, q, gone):
    """Take ``q`` shares of the order at ``b[r:]`` off its level (and the order itself off the
    level when ``gone``)."""
    meta = b[r + R_META]
    side = meta & 1
    si = 2 * ((meta >> 1) & 0xFFFF) + side
    h = side_head(b, si)
    birth = meta >> META_BIRTH
    if birth != 0:
        key = b[r + R_PRICE]
        if side == SIDE_ASK:
            key = -key
        kb = side_keys(b, si)
        n = b[h + S_NLEV]
        i = key_search(b, kb, n, key)
        v = kb + b[H_KEY_WORDS] + LEVEL_WORDS * i
        if i < n and b[v + LV_BIRTH] == birth:
            b[v + LV_SHARES] -= q
            if gone:
                c = b[v + LV_ORDERS] - 1
                b[v + LV_ORDERS] = c
                if c == 0:
                    _remove_level(b, si, i)
            return
    if gone:                                       # a hidden order (never or no longer shown)
        b[h + S_HIDDEN] -= 1


@njit(**_KI)
def _gone(b, r):
    rec_remove(b, r)
    b[H_OPEN] -= 1


# --- the update kernels ---------------------------------------------------------------------
@njit(**_KI)
def book_add(b, locate, order_ref, side, shares, price):
    """ITCH A/F: a new order.  Returns ST_OK, ST_HIDDEN or a refusal (see module doc)."""
    loc = np.int64(locate)
    s = side_index(side)
    q = np.int64(shares)
    if loc < 1 or loc > b[H_MAX_INSTR]:
        b[C_BAD_LOCATE] += 1
        return ST_BAD_LOCATE
    p = np.int64(price)
    if s < 0 or q <= 0 or p == KEY_SENTINEL:
        b[C_BAD_ARG] += 1
        return ST_BAD_ARG
    if b[H_OPEN] >= b[H_MAX_ORDERS]:
        b[C_ORDERS_FULL] += 1
        return ST_ORDERS_FULL
    ref = np.int64(order_ref)
    r = rec_slot_for(b, ref)
    if r < 0:
        b[C_DUP_REF] += 1
        return ST_DUP_REF
    b[H_OPEN] += 1
    birth = _join_level(b, 2 * loc + s, p if s == SIDE_BID else -p, q)
    b[r + R_REF] = ref
    b[r + R_PRICE] = p
    b[r + R_SHARES] = q
    b[r + R_META] = (birth << META_BIRTH) | (loc << 1) | s
    b[C_ADD] += 1
    return ST_OK if birth != 0 else ST_HIDDEN


@njit(**_KI)
def _reduce(b, order_ref, shares, c_ops, c_shares):
    r = rec_find(b, np.int64(order_ref))
    if r < 0:
        b[C_UNKNOWN_REF] += 1
        return ST_UNKNOWN_REF
    q = np.int64(shares)
    if q <= 0:
        b[C_BAD_ARG] += 1
        return ST_BAD_ARG
    left = b[r + R_SHARES]
    st = ST_OK
    if q >= left:
        if q > left:
            b[C_OVER_EXEC] += 1
            st = ST_CLAMPED
            q = left
        else:
            st = ST_REMOVED
    b[c_ops] += 1
    b[c_shares] += q
    gone = q == left
    _take(b, r, q, gone)
    if gone:
        _gone(b, r)
    else:
        b[r + R_SHARES] = left - q
    return st


@njit(**_KI)
def book_execute(b, order_ref, shares):
    """ITCH E/C: ``shares`` of the order executed; at 0 the order is removed (ST_REMOVED)."""
    return _reduce(b, order_ref, shares, C_EXECUTE, C_EXEC_SHARES)


@njit(**_KI)
def book_cancel(b, order_ref, shares):
    """ITCH X: ``shares`` cancelled (partial cancel; at 0 the order is removed)."""
    return _reduce(b, order_ref, shares, C_CANCEL, C_CANCEL_SHARES)


@njit(**_KI)
def book_delete(b, order_ref):
    """ITCH D: the order is removed whatever it has left."""
    r = rec_find(b, np.int64(order_ref))
    if r < 0:
        b[C_UNKNOWN_REF] += 1
        return ST_UNKNOWN_REF
    b[C_DELETE] += 1
    b[C_CANCEL_SHARES] += b[r + R_SHARES]
    _take(b, r, b[r + R_SHARES], True)
    _gone(b, r)
    return ST_OK


@njit(**_KI)
def book_replace(b, old_ref, new_ref, shares, price):
    """ITCH U: order ``old_ref`` leaves the book and ``new_ref`` joins it (same instrument and
    side, at the back of its level).  Refused whole (nothing changes) when ``old_ref`` is
    unknown, ``new_ref`` is already open (unless it is ``old_ref``), ``shares <= 0`` or the
    price is -2**63."""
    old = np.int64(old_ref)
    new = np.int64(new_ref)
    r = rec_find(b, old)
    if r < 0:
        b[C_UNKNOWN_REF] += 1
        return ST_UNKNOWN_REF
    if new != old and rec_find(b, new) >= 0:
        b[C_DUP_REF] += 1
        return ST_DUP_REF
    q = np.int64(shares)
    p = np.int64(price)
    if q <= 0 or p == KEY_SENTINEL:
        b[C_BAD_ARG] += 1
        return ST_BAD_ARG
    _take(b, r, b[r + R_SHARES], True)
    meta = b[r + R_META]
    rec_remove(b, r)                               # records may move: find the new slot after
    loc = (meta >> 1) & 0xFFFF
    s = meta & 1
    birth = _join_level(b, 2 * loc + s, p if s == SIDE_BID else -p, q)
    r = rec_slot_for(b, new)
    b[r + R_REF] = new
    b[r + R_PRICE] = p
    b[r + R_SHARES] = q
    b[r + R_META] = (birth << META_BIRTH) | (loc << 1) | s
    b[C_REPLACE] += 1
    return ST_OK if birth != 0 else ST_HIDDEN


# --- queries ---------------------------------------------------------------------------------
@njit(**_K)
def _best(b, locate, s):
    loc = np.int64(locate)
    if loc < 1 or loc > b[H_MAX_INSTR]:
        return np.int64(0), np.int64(0), np.int64(0)
    si = 2 * loc + s
    n = b[side_head(b, si) + S_NLEV]
    if n == 0:
        return np.int64(0), np.int64(0), np.int64(0)
    kb = side_keys(b, si)
    k = b[kb + n - 1]
    v = kb + b[H_KEY_WORDS] + LEVEL_WORDS * (n - 1)
    return (k if s == SIDE_BID else -k), b[v + LV_SHARES], b[v + LV_ORDERS]


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
    if loc < 1 or loc > b[H_MAX_INSTR] or s < 0:
        return 0
    return b[side_head(b, 2 * loc + s) + S_NLEV]


@njit(**_K)
def hidden_count(b, locate, side):
    """Open orders of one side that are not on a visible level (0: the depth is exact)."""
    loc = np.int64(locate)
    s = side_index(side)
    if loc < 1 or loc > b[H_MAX_INSTR] or s < 0:
        return 0
    return b[side_head(b, 2 * loc + s) + S_HIDDEN]


@njit(**_K)
def depth(b, locate, side, k, out):
    """The top ``min(k, out.shape[0], levels)`` levels, best first, into ``out[j, 0:3]`` =
    (price, aggregate shares, order count); returns how many were written."""
    loc = np.int64(locate)
    s = side_index(side)
    if loc < 1 or loc > b[H_MAX_INSTR] or s < 0:
        return 0
    si = 2 * loc + s
    n = b[side_head(b, si) + S_NLEV]
    kb = side_keys(b, si)
    fb = kb + b[H_KEY_WORDS]
    m = min(np.int64(k), np.int64(out.shape[0]), n)
    for j in range(m):
        v = fb + LEVEL_WORDS * (n - 1 - j)
        kk = b[kb + n - 1 - j]
        out[j, 0] = kk if s == SIDE_BID else -kk
        out[j, 1] = b[v + LV_SHARES]
        out[j, 2] = b[v + LV_ORDERS]
    return m


@njit(**_K)
def order_shares(b, order_ref):
    """Shares left on an open order, or -1 when it is not open."""
    r = rec_find(b, np.int64(order_ref))
    return b[r + R_SHARES] if r >= 0 else np.int64(-1)


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
        b[C_ITCH_BAD] += 1
        return ST_BAD_MESSAGE
    t = buf[off]
    n = I.MSG_LEN[t]
    if n == 0 or end - off < n:
        b[C_ITCH_BAD] += 1
        return ST_BAD_MESSAGE
    return _apply(data_pointer(b), buf, off, t)


@njit(**_KI)
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
    b[C_ITCH_IGNORED] += 1
    return ST_IGNORED


@njit(**_K)
def apply_itch_blocks(b, buf, off, end):
    """Apply a run of MoldUDP64 message blocks (u16 big-endian length + ITCH message: the
    payload of a MoldUDP64 packet after its 20-byte header, or ``engine.matching``'s output)
    from ``buf[off:end]``.  A block whose length is not its type's length is counted
    (``itch_bad``) and skipped, never read; a block cut by ``end`` stops the walk.  Returns
    the offset where the walk stopped (``end`` when every block was complete).

    Fast path: the order table slot of the block ``PREFETCH_AHEAD`` blocks ahead is prefetched
    from its order ref (at offset 11 in every order message), so its cache miss overlaps the
    work on the blocks in between."""
    mask = b[H_MASK]
    bp = data_pointer(b)                # the kernels index the state without wrap-around checks
    pf = off
    for _ in range(PREFETCH_AHEAD):
        if end - pf < 2:
            break
        pf += 2 + be16(buf, pf)
    while end - off >= 2:
        n = be16(buf, off)
        if end - off - 2 < n:
            break
        if end - pf >= 2 + 19:
            _prefetch(b, TABLE + REC_WORDS * ht_home(be64(buf, pf + 2 + 11), mask))
            pf += 2 + be16(buf, pf)
        if n == 0 or I.MSG_LEN[buf[off + 2]] != n:
            b[C_ITCH_BAD] += 1
        else:
            _apply(bp, buf, off + 2, buf[off + 2])
        off += 2 + n
    return off


# --- setup -----------------------------------------------------------------------------------
def book_layout(max_instruments: int, max_orders: int, max_levels: int) -> dict[str, int]:
    """Region offsets (words) of a state with these sizes; ``words`` is its total size."""
    cap, bits = ht_geometry(max_orders)
    heads = TABLE + REC_WORDS * cap
    n_sides = 2 * (max_instruments + 1)
    sides = heads + -(-HEAD_WORDS * n_sides // 8) * 8          # on a cache line
    key_words = -(-max_levels // 8) * 8                        # the figures on a line too
    side_words = KEY_BLOCK + key_words + LEVEL_WORDS * max_levels
    words = sides + n_sides * side_words
    return dict(table=TABLE, heads=heads, sides=sides, side_words=side_words,
                key_words=key_words, words=words, capacity=cap, bits=bits)


def aligned_zeros(words: int) -> np.ndarray:
    """A zeroed int64 array whose data starts on a 64-byte line (so do the order slots)."""
    raw = np.zeros(words + 8, dtype=np.int64)
    skip = (-raw.ctypes.data % 64) // 8
    return raw[skip:skip + words]


class Books:
    """Allocates the state of ``max_instruments`` books (locates 1..max_instruments), at most
    ``max_orders`` open orders over all of them and ``max_levels`` visible price levels per
    side, as one int64 array ``self.state`` (the kernels' ``b``).  Setup only.

    Memory: 32 B x capacity (a power of two >= 2 x max_orders) for the orders, and 2 x (144 +
    40 x max_levels) B per instrument for its levels (1,000 instruments x 256 levels: 20 MB).
    """

    def __init__(self, max_instruments: int, max_orders: int, max_levels: int = 256):
        if max_instruments < 1 or max_orders < 1 or max_levels < 1:
            raise ValueError("Books: max_instruments, max_orders and max_levels must be >= 1")
        lay = book_layout(max_instruments, max_orders, max_levels)
        b = aligned_zeros(lay["words"])
        b[H_MAGIC] = BOOK_MAGIC
        b[H_WORDS] = lay["words"]
        b[H_TABLE] = TABLE
        b[H_SIDES] = lay["sides"]
        b[H_SIDE_WORDS] = lay["side_words"]
        b[H_HEADS] = lay["heads"]
        b[H_KEY_WORDS] = lay["key_words"]
        sides = b[lay["sides"]:].reshape(2 * (max_instruments + 1), lay["side_words"])
        sides[:, :KEY_BLOCK] = KEY_SENTINEL                     # key_search's sentinels
        b[H_L] = max_levels
        b[H_MASK] = lay["capacity"] - 1
        b[H_BITS] = lay["bits"]
        b[H_MAX_ORDERS] = max_orders
        b[H_MAX_INSTR] = max_instruments
        self.max_instruments = max_instruments
        self.max_orders = max_orders
        self.max_levels = max_levels
        self.layout = lay
        self.state = b

    def counters(self) -> dict[str, int]:
        return {name: int(self.state[COUNTERS + i]) for i, name in enumerate(COUNTER_NAMES)}

    @property
    def open_orders(self) -> int:
        return int(self.state[H_OPEN])

    def levels(self, locate: int, side: int) -> list[tuple[int, int, int]]:
        """All visible levels of one side, best first (Python lists: for tests and tools)."""
        out = np.zeros((self.max_levels, 3), dtype=np.int64)
        n = depth(self.state, locate, side, self.max_levels, out)
        return [tuple(int(v) for v in out[j]) for j in range(n)]

    def hidden(self, locate: int, side: int) -> int:
        return int(hidden_count(self.state, locate, side))

    def doc(self) -> str:
        """The layout of this state, region by region (word offsets)."""
        lay = self.layout
        rows = [("header", 0, HEADER_WORDS), ("counters", COUNTERS, N_COUNTERS),
                ("orders", TABLE, REC_WORDS * lay["capacity"]),
                ("heads", lay["heads"], lay["sides"] - lay["heads"]),
                ("sides", lay["sides"], lay["words"] - lay["sides"])]
        return "\n".join(f"{n:<9s} @{o:<10d} {w:>10d} words" for n, o, w in rows)


__all__ = [
    "Books", "book_layout", "book_add", "book_execute", "book_cancel", "book_delete",
    "book_replace", "apply_itch", "apply_itch_blocks", "best_bid", "best_ask", "depth",
    "level_count", "hidden_count", "order_shares", "rec_find",
    "ht_geometry", "ht_clear", "ht_find", "ht_insert", "ht_remove", "level_search", "key_search",
    "side_index", "aligned_zeros",
    "COUNTER_NAMES", "STATUS_NAMES", "SIDE_BID", "SIDE_ASK",
    "ST_OK", "ST_REMOVED", "ST_HIDDEN", "ST_CLAMPED", "ST_IGNORED", "ST_UNKNOWN_REF",
    "ST_DUP_REF", "ST_ORDERS_FULL", "ST_BAD_LOCATE", "ST_BAD_ARG", "ST_BAD_MESSAGE",
]
