"""engine/book.py against a naive dict-based reference book.

The main test generates a consistent ITCH-like operation stream (adds, executes, cancels,
deletes, replaces, with a sprinkling of unknown refs, duplicate adds, over-executions and
crossing prices) over 128 instruments, applies it to the naive reference in Python and to the
kernels in an @njit loop that records, after *every* message, the status and the book state of
the touched instrument (best bid and ask, level count and a digest of the full depth of the
touched side) and of one more instrument that cycles through all of them.  The two record
arrays must be equal; at checkpoints and at the end every side of every instrument is compared
level by level, the reference's levels there being aggregated from its order dict alone.
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from numba import njit

from engine import book as B
from parsers import itch as I
from engine.book import (Books, best_ask, best_bid, book_add, book_cancel, book_delete,
                         book_execute, book_replace, depth, level_count, order_shares)

pytestmark = pytest.mark.pure          # computation only: as root, as any user (conftest)

ROOT = Path(__file__).resolve().parents[1]

ADD, EXEC, CANCEL, DELETE, REPLACE = range(5)
# op columns: kind, locate, side, ref, ref2, shares, price  (locate/side of a non-add op name
# the book the recorder looks at; the kernels get only what ITCH carries)
K_, LOC_, SIDE_, REF_, REF2_, SH_, PX_ = range(7)
REC_W = 17


# --- the naive reference ---------------------------------------------------------------------
class NaiveBook:
    """dict order_ref -> [locate, side, price, shares]; levels per (locate, side) kept as
    dict price -> [shares, orders] (the per-message checks need them fast), and recomputed from
    the order dict alone by ``aggregate`` for the checkpoints."""

    def __init__(self, max_instruments, max_orders):
        self.max_instruments = max_instruments
        self.max_orders = max_orders
        self.orders = {}
        self.levels = {}

    def _lv(self, loc, side):
        d = self.levels.get((loc, side))
        if d is None:
            d = self.levels[(loc, side)] = {}
        return d

    def _join(self, loc, side, price, shares):
        lv = self._lv(loc, side)
        e = lv.get(price)
        if e is None:
            lv[price] = [shares, 1]
        else:
            e[0] += shares
            e[1] += 1

    def _leave(self, loc, side, price, shares, gone):
        lv = self.levels[(loc, side)]
        e = lv[price]
        e[0] -= shares
        if gone:
            e[1] -= 1
            if e[1] == 0:
                del lv[price]

    def add(self, loc, ref, side, shares, price):
        if not 1 <= loc <= self.max_instruments:
            return B.ST_BAD_LOCATE
        if side not in (0, 1) or shares <= 0:
            return B.ST_BAD_ARG
        if len(self.orders) >= self.max_orders:
            return B.ST_ORDERS_FULL
        if ref in self.orders:
            return B.ST_DUP_REF
        self.orders[ref] = [loc, side, price, shares]
        self._join(loc, side, price, shares)
        return B.ST_OK

    def reduce(self, ref, shares):
        o = self.orders.get(ref)
        if o is None:
            return B.ST_UNKNOWN_REF
        if shares <= 0:
            return B.ST_BAD_ARG
        loc, side, price, left = o
        st = B.ST_OK
        if shares >= left:
            st = B.ST_CLAMPED if shares > left else B.ST_REMOVED
            shares = left
        gone = shares == left
        self._leave(loc, side, price, shares, gone)
        if gone:
            del self.orders[ref]
        else:
            o[3] = left - shares
        return st

    def delete(self, ref):
        o = self.orders.get(ref)
        if o is None:
            return B.ST_UNKNOWN_REF
        self._leave(o[0], o[1], o[2], o[3], True)
        del self.orders[ref]
        return B.ST_OK

    def replace(self, old, new, shares, price):
        o = self.orders.get(old)
        if o is None:
            return B.ST_UNKNOWN_REF
        if new != old and new in self.orders:
            return B.ST_DUP_REF
        if shares <= 0:
            return B.ST_BAD_ARG
        self.delete(old)
        self.orders[new] = [o[0], o[1], price, shares]
        self._join(o[0], o[1], price, shares)
        return B.ST_OK

    def side_levels(self, loc, side):
        """Best first: [(price, shares, orders)]."""
        lv = self.levels.get((loc, side), {})
        return [(p, e[0], e[1]) for p, e in sorted(lv.items(), reverse=(side == 0))]

    def best(self, loc, side):
        lv = self.levels.get((loc, side))
        if not lv:
            return (0, 0, 0)
        p = max(lv) if side == 0 else min(lv)
        e = lv[p]
        return (p, e[0], e[1])

    def aggregate(self):
        """Levels of every side computed from the order dict alone, best first."""
        agg = {}
        for loc, side, price, shares in self.orders.values():
            e = agg.setdefault((loc, side), {}).setdefault(price, [0, 0])
            e[0] += shares
            e[1] += 1
        return {k: [(p, e[0], e[1]) for p, e in sorted(v.items(), reverse=(k[1] == 0))]
                for k, v in agg.items()}


def digest(levels):
    """Order-sensitive digest of a side's levels, best first: each level packed exactly into
    one integer (price < 2**31, shares < 2**22, orders < 2**10 in these streams) weighted by
    its rank; the sum stays below 2**63, so Python and the @njit side agree without wrapping."""
    d = 0
    j = 1
    for p, s, n in levels:
        d += j * ((p << 32) | (s << 10) | n)
        j += 1
    return d


def side_digest(lv, bid):
    """``digest(side_levels(...))`` straight from the level dict (per message: the hot spot)."""
    d = 0
    j = 1
    for p in sorted(lv, reverse=bid):
        e = lv[p]
        d += j * ((p << 32) | (e[0] << 10) | e[1])
        j += 1
    return d


# --- the stream (generated against the reference, which it drives) --------------------------
def generate(n_ops, n_instr=128, seed=1, max_orders=1 << 16, target_open=24):
    """ops (n_ops, 7) int64 and the reference's expected records (n_ops, REC_W), plus the
    reference book at the end and at checkpoints every ``n_ops // 4`` messages."""
    rnd = random.Random(seed)
    ref_book = NaiveBook(n_instr, max_orders)
    ops = []
    rec = []
    mids = [rnd.randrange(50, 5000) * 100 for _ in range(n_instr + 1)]   # $0.50 .. $50, tick 100
    open_refs = []                      # for uniform picks: list + index (swap-remove)
    pos = {}
    next_ref = 1 << 40                  # large refs: the hash sees all 64 bits move
    checkpoints = {}
    every = max(n_ops // 4, 1)
    weights = [w for w in (1.0 + 30.0 / (i + 1) for i in range(n_instr))]   # a few busy names

    def open_add(r):
        pos[r] = len(open_refs)
        open_refs.append(r)

    def open_del(r):
        i = pos.pop(r)
        last = open_refs.pop()
        if last != r:
            open_refs[i] = last
            pos[last] = i

    locs = rnd.choices(range(1, n_instr + 1), weights=weights, k=n_ops)
    target = target_open * n_instr
    for i in range(n_ops):
        u = rnd.random()
        nopen = len(open_refs)
        p_add = 0.35 if nopen > target else 0.75
        if nopen == 0 or u < p_add:
            loc = locs[i]
            side = rnd.getrandbits(1)
            v = rnd.random()
            if v < 0.01:
                off = -rnd.randrange(1, 10)          # crossing the mid: books may cross
            elif v < 0.03:
                off = rnd.randrange(50, 200)         # a stray order far away
            else:
                off = int(rnd.expovariate(0.5))      # mostly within a few ticks of the top
            px = mids[loc] - off * 100 if side == 0 else mids[loc] + 100 + off * 100
            if px <= 0:
                px = 100
            sh = rnd.choice((100, 100, 100, 200, 300, 500, 1000)) if rnd.random() < .8 \
                else rnd.randrange(1, 5000)
            if rnd.random() < 0.002 and nopen:
                ref = open_refs[rnd.randrange(nopen)]  # duplicate ref: refused
            else:
                ref = next_ref
                next_ref += rnd.choice((1, 1, 1, 2, 7))
            st = ref_book.add(loc, ref, side, sh, px)
            if st >= 0:
                open_add(ref)
            op = (ADD, loc, side, ref, 0, sh, px)
            if rnd.random() < 0.01:
                mids[loc] = max(200, mids[loc] + rnd.choice((-100, 100)))
        else:
            if rnd.random() < 0.003:
                ref = next_ref + 12345               # unknown ref
                loc, side = locs[i], 0
            else:
                ref = open_refs[rnd.randrange(nopen)]
                loc, side, _, _ = ref_book.orders[ref]
            o = ref_book.orders.get(ref)
            left = o[3] if o else 100
            v = (u - p_add) / (1 - p_add)
            if v < 0.62:
                st = ref_book.delete(ref)
                op = (DELETE, loc, side, ref, 0, 0, 0)
            elif v < 0.76:
                w = rnd.random()
                sh = left if w < 0.5 else (left + rnd.randrange(1, 50) if w < 0.52
                                           else rnd.randrange(1, left + 1))
                st = ref_book.reduce(ref, sh)
                op = (EXEC, loc, side, ref, 0, sh, 0)
            elif v < 0.84:
                sh = rnd.randrange(1, left + 1) if rnd.random() < 0.97 else left + 5
                st = ref_book.reduce(ref, sh)
                op = (CANCEL, loc, side, ref, 0, sh, 0)
            else:
                new = next_ref
                next_ref += 1
                if rnd.random() < 0.002 and nopen > 1:
                    new = open_refs[rnd.randrange(nopen)]   # may hit itself: then allowed
                px = (o[2] if o else 1000) + rnd.choice((-200, -100, 0, 0, 100, 200))
                if px <= 0:
                    px = 100
                sh = rnd.choice((100, 200, 300, left))
                st = ref_book.replace(ref, new, sh, px)
                if st >= 0 and new != ref:
                    open_add(new)
                op = (REPLACE, loc, side, ref, new, sh, px)
            if st >= 0 and ref not in ref_book.orders and ref in pos:
                open_del(ref)
        ops.append(op)
        loc, side = op[LOC_], op[SIDE_]
        lv = ref_book.levels.get((loc, side), {})
        sl = (i * 7 + 3) % n_instr + 1
        rec.append((st, *ref_book.best(loc, 0), *ref_book.best(loc, 1),
                    side_digest(lv, side == 0), len(lv),
                    *ref_book.best(sl, 0), *ref_book.best(sl, 1),
                    len(ref_book.levels.get((sl, 0), ())),
                    len(ref_book.levels.get((sl, 1), ()))))
        if (i + 1) % every == 0:
            checkpoints[i + 1] = ref_book.aggregate()
    ops = np.array(ops, dtype=np.int64).reshape(-1, 7)
    rec = np.array(rec, dtype=np.int64).reshape(-1, REC_W)
    return ops, rec, ref_book, checkpoints


# --- the kernels' side -----------------------------------------------------------------------
# Not cache=True: these loops inline the kernels, and Numba keys a cached function by its own
# file only, so a cached copy would outlive an edit of engine/book.py.
@njit
def _digest(b, loc, side, scratch):
    n = depth(b, loc, side, scratch.shape[0], scratch)
    d = 0
    for j in range(n):
        d += (j + 1) * ((scratch[j, 0] << 32) | (scratch[j, 1] << 10) | scratch[j, 2])
    return d, n


@njit
def apply_op(b, op):
    k = op[K_]
    if k == ADD:
        return book_add(b, op[LOC_], op[REF_], op[SIDE_], op[SH_], op[PX_])
    if k == EXEC:
        return book_execute(b, op[REF_], op[SH_])
    if k == CANCEL:
        return book_cancel(b, op[REF_], op[SH_])
    if k == DELETE:
        return book_delete(b, op[REF_])
    return book_replace(b, op[REF_], op[REF2_], op[SH_], op[PX_])


@njit
def run_and_record(b, ops, lo, hi, rec, scratch, n_instr):
    for i in range(lo, hi):
        op = ops[i]
        r = rec[i]
        r[0] = apply_op(b, op)
        loc = op[LOC_]
        r[1], r[2], r[3] = best_bid(b, loc)
        r[4], r[5], r[6] = best_ask(b, loc)
        r[7], r[8] = _digest(b, loc, op[SIDE_], scratch)
        sl = (i * 7 + 3) % n_instr + 1
        r[9], r[10], r[11] = best_bid(b, sl)
        r[12], r[13], r[14] = best_ask(b, sl)
        r[15] = level_count(b, sl, 0)
        r[16] = level_count(b, sl, 1)


@njit
def run_plain(b, ops):
    bad = 0
    for i in range(ops.shape[0]):
        if apply_op(b, ops[i]) < 0:
            bad += 1
    return bad


def all_levels(bk, n_instr):
    out = {}
    for loc in range(1, n_instr + 1):
        for side in (0, 1):
            lv = bk.levels(loc, side)
            if lv:
                out[(loc, side)] = lv
    return out


N_OPS = int(os.environ.get("HUGERING_BOOK_OPS", 1_000_000))


def cached_generate(n_ops, n_instr, seed):
    """``generate`` is plain Python (~10-20 us a message): its result is kept in the temporary
    directory under a hash of the generator's and the reference's source and the arguments, so
    a rerun with them unchanged skips it."""
    import hashlib
    import inspect
    import pickle
    import tempfile

    h = hashlib.sha256()
    for obj in (NaiveBook, digest, side_digest, generate):
        h.update(inspect.getsource(obj).encode())
    h.update(repr((ADD, EXEC, CANCEL, DELETE, REPLACE, REC_W, B.STATUS_NAMES)).encode())
    h.update(repr((n_ops, n_instr, seed, sys.version_info[:2])).encode())
    name = f"hugering-test-book-{os.geteuid()}-{h.hexdigest()[:16]}.pkl"
    path = Path(tempfile.gettempdir()) / name
    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError):
        pass
    res = generate(n_ops, n_instr=n_instr, seed=seed)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        pickle.dump(res, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)
    return res


@pytest.fixture(scope="module")
def stream():
    return cached_generate(N_OPS, 128, 7)


def test_stream_is_realistic(stream):
    ops, rec, ref_book, _ = stream
    kinds = np.bincount(ops[:, K_], minlength=5)
    assert ops.shape[0] >= 1_000_000 or N_OPS < 1_000_000
    assert all(kinds > 0.03 * len(ops)), kinds
    st = rec[:, 0]
    for s in (B.ST_OK, B.ST_REMOVED, B.ST_CLAMPED, B.ST_UNKNOWN_REF, B.ST_DUP_REF):
        assert (st == s).sum() > 0, s
    assert len(np.unique(ops[:, LOC_])) == 128
    crossed = (rec[:, 1] >= rec[:, 4]) & (rec[:, 4] > 0)
    assert crossed.sum() > 0                           # crossed books happen and are kept


def test_book_matches_reference_after_every_message(stream):
    ops, rec, ref_book, checkpoints = stream
    n_instr = 128
    bk = Books(n_instr, max_orders=1 << 16, max_levels=512)
    b = bk.state
    got = np.zeros_like(rec)
    scratch = np.zeros((512, 3), dtype=np.int64)
    lo = 0
    for cp in sorted(checkpoints):
        run_and_record(b, ops, lo, cp, got, scratch, n_instr)
        bad = np.nonzero((got[lo:cp] != rec[lo:cp]).any(axis=1))[0]
        if bad.size:
            i = lo + bad[0]
            pytest.fail(f"message {i} {ops[i].tolist()}: kernels {got[i].tolist()} "
                        f"!= reference {rec[i].tolist()}")
        assert all_levels(bk, n_instr) == checkpoints[cp], f"full depth differs at {cp}"
        lo = cp
    assert lo == len(ops)
    assert bk.open_orders == len(ref_book.orders)
    for ref, (loc, side, px, sh) in list(ref_book.orders.items())[:2000]:
        assert order_shares(b, ref) == sh
    c = bk.counters()
    assert c["level_evicted"] == 0 and c["hidden_add"] == 0
    assert not any(bk.hidden(loc, s) for loc in range(1, n_instr + 1) for s in (0, 1))
    st = rec[:, 0]
    assert c["unknown_ref"] == (st == B.ST_UNKNOWN_REF).sum()
    assert c["dup_ref"] == (st == B.ST_DUP_REF).sum()
    assert c["over_exec"] == (st == B.ST_CLAMPED).sum()
    assert c["adds"] == ((ops[:, K_] == ADD) & (st >= 0)).sum()


# --- edge cases ------------------------------------------------------------------------------
def small(levels=8, orders=16, instr=4):
    bk = Books(instr, max_orders=orders, max_levels=levels)
    return bk, bk.state


def test_execute_more_than_remains_clamps_and_removes():
    bk, b = small()
    assert book_add(b, 1, 10, ord("B"), 100, 5000) == B.ST_OK
    assert book_execute(b, 10, 40) == B.ST_OK
    assert best_bid(b, 1) == (5000, 60, 1)
    assert book_execute(b, 10, 61) == B.ST_CLAMPED
    assert best_bid(b, 1) == (0, 0, 0) and level_count(b, 1, 0) == 0
    c = bk.counters()
    assert c["over_exec"] == 1 and c["executed_shares"] == 100 and bk.open_orders == 0
    assert book_execute(b, 10, 1) == B.ST_UNKNOWN_REF
    assert book_add(b, 1, 11, ord("S"), 10, 5100) == B.ST_OK
    assert book_cancel(b, 11, 10) == B.ST_REMOVED and level_count(b, 1, 1) == 0


def test_unknown_refs_and_bad_arguments_change_nothing():
    bk, b = small()
    book_add(b, 2, 1, 0, 100, 900)
    before = b.copy()
    assert book_execute(b, 99, 10) == B.ST_UNKNOWN_REF
    assert book_cancel(b, 99, 10) == B.ST_UNKNOWN_REF
    assert book_delete(b, 99) == B.ST_UNKNOWN_REF
    assert book_replace(b, 99, 100, 10, 1000) == B.ST_UNKNOWN_REF
    assert book_add(b, 0, 5, 0, 10, 900) == B.ST_BAD_LOCATE
    assert book_add(b, 5, 5, 0, 10, 900) == B.ST_BAD_LOCATE
    assert book_add(b, 1, 5, 2, 10, 900) == B.ST_BAD_ARG
    assert book_add(b, 1, 5, ord("X"), 10, 900) == B.ST_BAD_ARG
    assert book_add(b, 1, 5, 0, 0, 900) == B.ST_BAD_ARG
    assert book_execute(b, 1, 0) == B.ST_BAD_ARG
    # -2**63 is key_search's sentinel (and -(-2**63) wraps to it): no price of either side
    assert book_add(b, 1, 5, 0, 10, B.KEY_SENTINEL) == B.ST_BAD_ARG
    assert book_add(b, 1, 5, 1, 10, B.KEY_SENTINEL) == B.ST_BAD_ARG
    assert book_replace(b, 1, 6, 10, B.KEY_SENTINEL) == B.ST_BAD_ARG
    assert book_add(b, 2, 1, 1, 10, 950) == B.ST_DUP_REF
    outside = np.ones(b.size, dtype=bool)
    outside[B.COUNTERS:B.COUNTERS + B.N_COUNTERS] = False
    assert np.array_equal(before[outside], b[outside])
    c = bk.counters()
    assert c["unknown_ref"] == 4 and c["bad_locate"] == 2 and c["bad_arg"] == 7
    assert c["dup_ref"] == 1


def test_order_table_full_refuses_and_counts():
    bk, b = small(orders=3)
    for r in range(3):
        assert book_add(b, 1, r + 1, 0, 10, 100 + r) == B.ST_OK
    assert book_add(b, 1, 4, 0, 10, 100) == B.ST_ORDERS_FULL
    assert book_delete(b, 4) == B.ST_UNKNOWN_REF
    assert bk.counters()["orders_full"] == 1
    assert book_delete(b, 2) == B.ST_OK
    assert book_add(b, 1, 4, 0, 10, 100) == B.ST_OK          # a freed slot is reused
    assert bk.levels(1, 0) == [(102, 10, 1), (100, 20, 2)]
    # a replace frees before it adds: possible even with a full table
    assert book_replace(b, 4, 5, 7, 103) == B.ST_OK
    assert bk.levels(1, 0) == [(103, 7, 1), (102, 10, 1), (100, 10, 1)]


def test_replace_moves_to_another_level_and_loses_priority():
    bk, b = small()
    book_add(b, 3, 1, ord("S"), 100, 2000)
    book_add(b, 3, 2, ord("S"), 50, 2000)
    book_add(b, 3, 3, ord("S"), 70, 2100)
    assert bk.levels(3, 1) == [(2000, 150, 2), (2100, 70, 1)]
    assert book_replace(b, 1, 10, 30, 2100) == B.ST_OK
    assert bk.levels(3, 1) == [(2000, 50, 1), (2100, 100, 2)]
    assert order_shares(b, 1) == -1 and order_shares(b, 10) == 30
    assert book_replace(b, 2, 11, 80, 1990) == B.ST_OK        # empty level removed
    assert bk.levels(3, 1) == [(1990, 80, 1), (2100, 100, 2)]
    assert book_replace(b, 10, 11, 5, 2000) == B.ST_DUP_REF   # new ref already open
    assert book_replace(b, 10, 10, 5, 2000) == B.ST_OK        # same ref: allowed
    assert bk.levels(3, 1) == [(1990, 80, 1), (2000, 5, 1), (2100, 70, 1)]
    assert best_bid(b, 3) == (0, 0, 0)
    assert bk.counters()["replaces"] == 3


def test_empty_levels_are_removed_and_crossed_books_kept():
    bk, b = small()
    book_add(b, 1, 1, 0, 100, 1000)
    book_add(b, 1, 2, 0, 100, 1010)
    book_add(b, 1, 3, 1, 100, 1005)           # crossed: bid 1010 > ask 1005
    assert best_bid(b, 1) == (1010, 100, 1) and best_ask(b, 1) == (1005, 100, 1)
    book_delete(b, 2)
    assert level_count(b, 1, 0) == 1 and best_bid(b, 1) == (1000, 100, 1)
    book_cancel(b, 1, 100)
    book_execute(b, 3, 100)
    assert level_count(b, 1, 0) == level_count(b, 1, 1) == 0
    assert best_ask(b, 1) == (0, 0, 0) and bk.open_orders == 0
    out = np.zeros((4, 3), dtype=np.int64)
    assert depth(b, 1, 0, 4, out) == 0


def test_full_side_keeps_the_top_exact_and_counts_hidden_orders():
    bk, b = small(levels=3, orders=32)
    for r, px in enumerate((100, 101, 102)):
        book_add(b, 1, r + 1, 0, 10, px)
    assert book_add(b, 1, 4, 0, 10, 99) == B.ST_HIDDEN          # deeper than every level
    assert bk.levels(1, 0) == [(102, 10, 1), (101, 10, 1), (100, 10, 1)]
    assert bk.hidden(1, 0) == 1 and bk.counters()["hidden_add"] == 1
    assert book_add(b, 1, 5, 0, 10, 103) == B.ST_OK             # better: evicts 100
    assert bk.levels(1, 0) == [(103, 10, 1), (102, 10, 1), (101, 10, 1)]
    assert bk.hidden(1, 0) == 2 and bk.counters()["level_evicted"] == 1
    # hidden orders are still known: executing or deleting them changes no shown level
    assert book_execute(b, 1, 4) == B.ST_OK and order_shares(b, 1) == 6
    assert book_delete(b, 4) == B.ST_OK
    assert bk.hidden(1, 0) == 1
    assert bk.levels(1, 0) == [(103, 10, 1), (102, 10, 1), (101, 10, 1)]
    # levels free up; a new order at the evicted price shows only itself
    book_delete(b, 2)
    assert book_add(b, 1, 6, 0, 7, 100) == B.ST_OK
    assert bk.levels(1, 0) == [(103, 10, 1), (102, 10, 1), (100, 7, 1)]
    assert book_delete(b, 1) == B.ST_OK                          # the evicted order at 100
    assert bk.levels(1, 0) == [(103, 10, 1), (102, 10, 1), (100, 7, 1)]
    assert bk.hidden(1, 0) == 0                                  # the side is exact again
    # the other side and other instruments are untouched by all this
    assert level_count(b, 1, 1) == 0 and level_count(b, 2, 0) == 0


def test_key_search_equals_bisect_for_every_depth_and_target():
    """key_search (blocks of KEY_BLOCK keys counted from the top over the sentinels below the
    keys, then bisection) against bisect_left for every side depth up to five blocks and
    beyond, every target on, between, below and above the keys.  The words above the n keys
    hold values below every key, so a search that read past the top would count them."""
    import bisect
    rng = random.Random(7)
    kb = B.KEY_BLOCK
    buf = np.zeros(kb + 300, dtype=np.int64)
    for n in list(range(0, 5 * kb + 1)) + [127, 128, 129, 255, 256]:
        keys = sorted(rng.sample(range(-10_000, 10_000), n))
        buf[:kb] = B.KEY_SENTINEL
        buf[kb:] = -30_000                      # stale words above the top: never read
        buf[kb:kb + n] = keys
        targets = {-20_000, 20_000} | {k + d for k in keys for d in (-1, 0, 1)}
        for t in targets:
            assert B.key_search(buf, kb, n, t) == bisect.bisect_left(keys, t), (n, t)


def test_sides_whose_depth_is_not_a_multiple_of_eight_keep_their_levels():
    """A side of 13 levels (keys rounded up to 16 words, figures after them) holding up to 13
    prices: levels created, emptied from the middle and re-created in random order -- after
    every add, every level equals a plain dict's.  (Eviction with a width that is not a
    multiple of 8 is the 3-level test above.)"""
    bk, b = small(levels=13, orders=256, instr=3)
    ref = {}
    rng = random.Random(3)
    live = []
    for r in range(1, 400):
        if live and rng.random() < 0.45:
            ref_id, px, q = live.pop(rng.randrange(len(live)))
            assert book_delete(b, ref_id) == B.ST_OK
            ref[px][0] -= q
            ref[px][1] -= 1
            if ref[px][1] == 0:
                del ref[px]
            continue
        px, q = 1000 + rng.randrange(13), rng.randrange(1, 50)
        assert book_add(b, 2, r, 0, q, px) == B.ST_OK       # 13 prices: never hidden
        live.append((r, px, q))
        ref.setdefault(px, [0, 0])
        ref[px][0] += q
        ref[px][1] += 1
        want = [(p, v[0], v[1]) for p, v in sorted(ref.items(), reverse=True)]
        assert bk.levels(2, 0) == want
    assert bk.hidden(2, 0) == 0 and level_count(b, 1, 0) == level_count(b, 3, 0) == 0


def test_hash_table_survives_churn_with_colliding_refs():
    """Backward-shift deletion under heavy collisions: refs that share their low bits."""
    bk, b = small(levels=64, orders=512, instr=1)
    rnd = random.Random(3)
    live = {}
    for step in range(20000):
        if live and (len(live) >= 500 or rnd.random() < 0.5):
            ref = rnd.choice(list(live))
            assert book_delete(b, ref) == B.ST_OK
            del live[ref]
        else:
            ref = (rnd.randrange(1 << 19) << 44) | 5           # only the high bits differ
            st = book_add(b, 1, ref, 0, 10, 1000 + rnd.randrange(32))
            assert st == (B.ST_DUP_REF if ref in live else B.ST_OK)
            live[ref] = True
        if step % 997 == 0:
            for r in live:
                assert order_shares(b, r) == 10
    assert bk.open_orders == len(live)


def test_refs_above_2_63_and_itch_side_bytes():
    bk, b = small()
    big = (1 << 64) - 1
    assert book_add(b, 1, np.uint64(big), ord("B"), 5, 10) == B.ST_OK
    assert order_shares(b, np.uint64(big)) == 5
    assert book_delete(b, np.uint64(big)) == B.ST_OK


# --- zero allocation ------------------------------------------------------------------------
NRT_SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests"]
    from numba.core.runtime import rtsys
    from engine.book import Books
    import test_book as T
    ops, _, _, _ = T.generate(60000, n_instr=32, seed=3)
    T.run_plain(Books(32, 16, 8).state, ops[:0])      # compile first: NRT starts with it

    def stats():
        s = rtsys.get_allocation_stats()
        return [s.alloc, s.free, s.mi_alloc, s.mi_free]

    def rnd(n):
        bk = Books(32, 1 << 14, 256)
        before = stats()
        T.run_plain(bk.state, ops[:n])
        return [a - b for a, b in zip(stats(), before)]
    rnd(100)
    print(json.dumps({"small": rnd(5000), "large": rnd(60000)}))
""")


def test_book_kernels_make_no_nrt_allocations():
    env = dict(os.environ, NUMBA_NRT_STATS="1")
    p = subprocess.run([sys.executable, "-c", NRT_SCRIPT, str(ROOT)], capture_output=True,
                       text=True, env=env, timeout=300, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["small"] == r["large"], r             # nothing scales with messages
    assert r["large"][0] == r["large"][1], r       # and nothing leaks


# --- the ITCH glue ---------------------------------------------------------------------------
@njit
def encode_ops(ops, out):
    """The op stream as ITCH 5.0 messages in MoldUDP64 message blocks (u16 length + message),
    written with parsers.itch's encoders."""
    o = 0
    for i in range(ops.shape[0]):
        op = ops[i]
        k = op[K_]
        ts = 34_200_000_000_000 + i
        if k == ADD:
            n = I.A_LEN
            I.put16(out, o, n)
            I.encode_add_order(out, o + 2, op[LOC_], 0, ts, op[REF_], 66 if op[SIDE_] == 0 else 83,
                               op[SH_], 0x2020202020202020, op[PX_])
        elif k == EXEC:
            n = I.E_LEN
            I.put16(out, o, n)
            I.encode_order_executed(out, o + 2, op[LOC_], 0, ts, op[REF_], op[SH_], i)
        elif k == CANCEL:
            n = I.X_LEN
            I.put16(out, o, n)
            I.encode_order_cancel(out, o + 2, op[LOC_], 0, ts, op[REF_], op[SH_])
        elif k == DELETE:
            n = I.D_LEN
            I.put16(out, o, n)
            I.encode_order_delete(out, o + 2, op[LOC_], 0, ts, op[REF_])
        else:
            n = I.U_LEN
            I.put16(out, o, n)
            I.encode_order_replace(out, o + 2, op[LOC_], 0, ts, op[REF_], op[REF2_], op[SH_],
                                   op[PX_])
        o += 2 + n
    return o


def test_apply_itch_blocks_equals_the_kernels_called_directly(stream):
    ops, rec, ref_book, checkpoints = stream
    out = np.zeros(40 * len(ops), dtype=np.uint8)
    n = encode_ops(ops, out)
    direct = Books(128, 1 << 16, 512)
    run_plain(direct.state, ops)
    via = Books(128, 1 << 16, 512)
    assert B.apply_itch_blocks(via.state, out, 0, n) == n
    assert np.array_equal(direct.state, via.state)
    assert all_levels(via, 128) == checkpoints[len(ops)]


def test_apply_itch_one_message_and_bad_input():
    bk, b = small()

    def apply(data):
        buf = np.frombuffer(data, dtype=np.uint8)
        return B.apply_itch(b, buf, 0, buf.size)

    assert apply(I.encode("A", locate=1, order_ref=7, side="B", shares=100, stock="X",
                          price=5000)) == B.ST_OK
    assert apply(I.encode("F", locate=1, order_ref=8, side="S", shares=10, stock="X",
                          price=5100, attribution="ABCD")) == B.ST_OK
    assert apply(I.encode("C", order_ref=7, executed_shares=30, match_number=1,
                          printable="Y", price=4999)) == B.ST_OK
    assert apply(I.encode("P", order_ref=0, side="B", shares=5, stock="X", price=1,
                          match_number=2)) == B.ST_IGNORED
    assert apply(I.encode("S", event_code="O")) == B.ST_IGNORED
    assert best_bid(b, 1) == (5000, 70, 1) and best_ask(b, 1) == (5100, 10, 1)
    d = I.encode("D", order_ref=8)
    assert apply(d[:-1]) == B.ST_BAD_MESSAGE and apply(b"") == B.ST_BAD_MESSAGE
    assert apply(b"\x00" + d[1:]) == B.ST_BAD_MESSAGE
    assert best_ask(b, 1) == (5100, 10, 1)
    assert apply(d) == B.ST_OK and best_ask(b, 1) == (0, 0, 0)
    # blocks: a wrong length is skipped unread, a cut block stops the walk
    blk = lambda m: len(m).to_bytes(2, "big") + m  # noqa: E731
    x = I.encode("X", order_ref=7, canceled_shares=20)
    data = blk(x[:-1] + b"\x00\x00") + blk(x[:-2]) + blk(x) + blk(d)[:5]
    buf = np.frombuffer(data, dtype=np.uint8)
    stop = B.apply_itch_blocks(b, buf, 0, buf.size)
    assert stop == buf.size - 5 and best_bid(b, 1) == (5000, 50, 1)
    c = bk.counters()
    assert c["itch_bad"] == 5 and c["itch_ignored"] == 2 and c["cancels"] == 1


def test_the_itch_feed_replays_into_its_own_live_orders():
    """engine/producers/itch_feed's generated day, applied block by block: the books end with
    exactly the feed's live orders (every order's shares, every level's aggregate), with no
    unknown ref, duplicate or over-execution on the way."""
    from engine.producers import itch_feed as F

    feed = F.Feed(96, seed=5)
    buf, offsets, stats = feed.generate(400_000)
    bk = Books(96, max_orders=2 * stats["max_live_orders"] + 16, max_levels=512)
    assert B.apply_itch_blocks(bk.state, buf, 0, buf.size) == buf.size
    c = bk.counters()
    assert c["unknown_ref"] == c["dup_ref"] == c["over_exec"] == c["itch_bad"] == 0, c
    assert c["hidden_add"] == c["level_evicted"] == 0
    by_type = stats["by_type"]
    assert c["adds"] == by_type["A"] + by_type["F"]
    assert c["executes"] == by_type["E"] + by_type["C"] and c["deletes"] == by_type["D"]
    assert c["itch_ignored"] == sum(v for k, v in by_type.items() if k not in "AFECXDU")
    live = feed.live_orders()
    assert bk.open_orders == len(live)
    want = {}
    for o in live:
        assert order_shares(bk.state, int(o["order_ref"])) == int(o["shares"])
        side = 0 if o["side"] == ord("B") else 1
        e = want.setdefault((int(o["locate"]), side), {}).setdefault(int(o["price"]), [0, 0])
        e[0] += int(o["shares"])
        e[1] += 1
    want = {k: [(p, e[0], e[1]) for p, e in sorted(v.items(), reverse=(k[1] == 0))]
            for k, v in want.items()}
    assert all_levels(bk, 96) == want
