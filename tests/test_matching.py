"""engine/matching.py against a naive reference matcher (plain Python lists per price level).

The main test drives both with the same random order-entry stream (>= 10^5 messages over 48
instruments: limit day / IOC, market, cancels, partial cancels, replaces that keep or lose
priority or cross, duplicate and unknown user refs, bad fields) and compares, message by
message, the status and the ITCH 5.0 output (every A/E/X/D/U field but the timestamp, which
is the clock set by the caller), then the trades (price, qty, aggressor, resting order) and
the final books, order by order in time priority.
"""
from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from numba import njit

from engine import matching as M
from engine.matching import (MatchingEngine, blocks, cancel_order, enter_order, process_entry,
                             process_stream, replace_order)
from parsers import itch as I

pytestmark = pytest.mark.pure          # computation only: as root, as any user (conftest)

ROOT = Path(__file__).resolve().parents[1]
BUY, SELL = 0, 1


# --- the naive reference -------------------------------------------------------------------
class NaiveMatcher:
    """Levels: dict (locate, side) -> dict price -> list of [oref, uref, qty] in time order."""

    def __init__(self, max_instruments, max_orders=1 << 30, max_levels=1 << 30):
        self.max_instruments = max_instruments
        self.max_orders = max_orders
        self.max_levels = max_levels
        self.books = {}
        self.open = {}            # uref -> [loc, side, price, entry]  (entry: the list above)
        self.open_list = []       # for the stream generator's uniform picks (swap-remove)
        self.pos = {}
        self.next_oref = 1
        self.match = 0
        self.trades = []          # (price, qty, aggressor uref, resting uref, resting oref)

    # bookkeeping of the open set
    def _open_add(self, uref, rec):
        self.open[uref] = rec
        self.pos[uref] = len(self.open_list)
        self.open_list.append(uref)

    def _open_del(self, uref):
        del self.open[uref]
        i = self.pos.pop(uref)
        last = self.open_list.pop()
        if last != uref:
            self.open_list[i] = last
            self.pos[last] = i

    def _side(self, loc, side):
        return self.books.setdefault((loc, side), {})

    def best_price(self, loc, side):
        lv = self.books.get((loc, side))
        if not lv:
            return None
        return max(lv) if side == BUY else min(lv)

    def _match(self, ev, loc, side, qty, limit, market, aggressor):
        opp = self._side(loc, 1 - side)
        while qty > 0 and opp:
            p = min(opp) if side == BUY else max(opp)
            if not market and ((side == BUY and p > limit) or (side == SELL and p < limit)):
                break
            q = opp[p]
            while qty > 0 and q:
                rest = q[0]
                f = min(qty, rest[2])
                self.match += 1
                ev.append(("E", loc, rest[0], f, self.match))
                self.trades.append((p, f, aggressor, rest[1], rest[0]))
                qty -= f
                rest[2] -= f
                if rest[2] == 0:
                    q.pop(0)
                    self._open_del(rest[1])
            if not q:
                del opp[p]
        return qty

    def _rest(self, ev, loc, side, uref, qty, price):
        lv = self._side(loc, side)
        if len(self.open) >= self.max_orders or (price not in lv and
                                                 len(lv) >= self.max_levels):
            return M.ST_REST_REFUSED
        entry = [self.next_oref, uref, qty]
        self.next_oref += 1
        lv.setdefault(price, []).append(entry)
        self._open_add(uref, [loc, side, price, entry])
        ev.append(("A", loc, entry[0], "BS"[side], qty, price))
        return M.ST_OK

    def _aggress(self, ev, loc, side, uref, qty, price, ioc, market):
        left = self._match(ev, loc, side, qty, price, market, uref)
        if left == 0 or market or ioc:
            return M.ST_OK
        return self._rest(ev, loc, side, uref, left, price)

    def _remove(self, ev, uref):
        loc, side, price, entry = self.open[uref]
        q = self.books[(loc, side)][price]
        q.remove(entry)
        if not q:
            del self.books[(loc, side)][price]
        self._open_del(uref)
        ev.append(("D", loc, entry[0]))

    def enter(self, uref, side, qty, loc, price, tif, typ):
        ev = []
        s = {"B": BUY, "S": SELL}.get(side)
        market = typ == "M"
        if (s is None or qty == 0 or not 1 <= loc <= self.max_instruments or tif not in "03"
                or (not market and (typ != "L" or not 0 < price < 1 << 32))):
            return M.ST_BAD_FIELD, ev
        if uref in self.open:
            return M.ST_DUP_REF, ev
        return self._aggress(ev, loc, s, uref, qty, price, tif == "3", market), ev

    def cancel(self, uref, qty):
        ev = []
        if uref not in self.open:
            return M.ST_UNKNOWN_REF, ev
        loc, side, price, entry = self.open[uref]
        if qty == 0:
            self._remove(ev, uref)
        elif qty < entry[2]:
            ev.append(("X", loc, entry[0], entry[2] - qty))
            entry[2] = qty
        return M.ST_OK, ev

    def replace(self, old, uref, qty, price):
        ev = []
        if old not in self.open:
            return M.ST_UNKNOWN_REF, ev
        if not 0 < price < 1 << 32:
            return M.ST_BAD_FIELD, ev
        if uref != old and uref in self.open:
            return M.ST_DUP_REF, ev
        loc, side, cur_price, entry = self.open[old]
        if qty == 0:
            self._remove(ev, old)
            return M.ST_OK, ev
        if price == cur_price and qty <= entry[2]:
            if qty < entry[2]:
                ev.append(("X", loc, entry[0], entry[2] - qty))
                entry[2] = qty
            entry[1] = uref
            rec = self.open[old]
            self._open_del(old)
            self._open_add(uref, rec)
            return M.ST_OK, ev
        opp = self.best_price(loc, 1 - side)
        if opp is not None and ((side == BUY and price >= opp) or
                                (side == SELL and price <= opp)):
            self._remove(ev, old)
            return self._aggress(ev, loc, side, uref, qty, price, False, False), ev
        lv = self._side(loc, side)
        if price not in lv and len(lv) >= self.max_levels:
            return M.ST_FULL, ev
        q = lv[cur_price]
        q.remove(entry)
        if not q:
            del lv[cur_price]
        self._open_del(old)
        new_entry = [self.next_oref, uref, qty]
        self.next_oref += 1
        lv.setdefault(price, []).append(new_entry)
        self._open_add(uref, [loc, side, price, new_entry])
        ev.append(("U", loc, entry[0], new_entry[0], qty, price))
        return M.ST_OK, ev

    def book(self, loc, side):
        lv = self.books.get((loc, side), {})
        return [(p, [tuple(e) for e in lv[p]]) for p in sorted(lv, reverse=(side == BUY))]


# --- decoding the engine's ITCH output -----------------------------------------------------
def be(m, off, n):
    return int.from_bytes(m[off:off + n], "big")


def itch_event(m):
    t = chr(m[0])
    loc = be(m, I.LOCATE, 2)
    if t == "A":
        assert len(m) == I.A_LEN
        return ("A", loc, be(m, I.A_ORDER_REF, 8), chr(m[I.A_SIDE]), be(m, I.A_SHARES, 4),
                be(m, I.A_PRICE, 4))
    if t == "E":
        assert len(m) == I.E_LEN
        return ("E", loc, be(m, I.E_ORDER_REF, 8), be(m, I.E_EXECUTED_SHARES, 4),
                be(m, I.E_MATCH_NUMBER, 8))
    if t == "X":
        assert len(m) == I.X_LEN
        return ("X", loc, be(m, I.X_ORDER_REF, 8), be(m, I.X_CANCELED_SHARES, 4))
    if t == "D":
        assert len(m) == I.D_LEN
        return ("D", loc, be(m, I.D_ORDER_REF, 8))
    if t == "U":
        assert len(m) == I.U_LEN
        return ("U", loc, be(m, I.U_ORDER_REF, 8), be(m, I.U_NEW_ORDER_REF, 8),
                be(m, I.U_SHARES, 4), be(m, I.U_PRICE, 4))
    raise AssertionError(f"unexpected ITCH message {t!r}")


# --- the stream ------------------------------------------------------------------------------
def generate(n_msgs, n_instr=48, seed=1, max_orders=1 << 30, max_levels=1 << 30):
    """(list of entry messages as bytes, list of (status, events) from the reference, the
    reference).  The generator reads the reference's open orders to pick mostly valid refs."""
    rnd = random.Random(seed)
    ref = NaiveMatcher(n_instr, max_orders, max_levels)
    mids = [rnd.randrange(100, 2000) * 100 for _ in range(n_instr + 1)]
    weights = [1.0 + 10.0 / (i + 1) for i in range(n_instr)]
    locs = rnd.choices(range(1, n_instr + 1), weights=weights, k=n_msgs)
    msgs, expect = [], []
    next_uref = 1
    for i in range(n_msgs):
        u = rnd.random()
        nopen = len(ref.open_list)
        if nopen == 0 or u < 0.55:
            loc = locs[i]
            side = "BS"[rnd.getrandbits(1)]
            v = rnd.random()
            typ, tif = "L", "0"
            if v < 0.06:
                typ = "M"
            elif v < 0.22:
                tif = "3"
            off = int(rnd.gauss(2.0, 3.0))               # ticks away from the mid, own side
            px = mids[loc] - off * 100 if side == "B" else mids[loc] + 100 + off * 100
            px = max(px, 100)
            qty = rnd.choice((100, 100, 200, 300, 500)) if rnd.random() < 0.8 \
                else rnd.randrange(1, 2000)
            uref = next_uref
            next_uref += 1
            w = rnd.random()
            if w < 0.003 and nopen:
                uref = ref.open_list[rnd.randrange(nopen)]       # duplicate: rejected
            elif w < 0.006:
                side = "X"                                       # bad fields
            elif w < 0.008:
                qty = 0
            elif w < 0.010:
                loc = n_instr + 1 + rnd.randrange(3)
            elif w < 0.011:
                tif = "9"
            elif w < 0.012 and typ == "L":
                px = 0
            elif w < 0.013 and typ == "M":
                px = 0                                           # market: price ignored
            msg = enter_order(uref, side, qty, loc, px, tif, typ)
            st, ev = ref.enter(uref, side, qty, loc, px, tif, typ)
            if rnd.random() < 0.01:
                mids[locs[i]] = max(200, mids[locs[i]] + rnd.choice((-100, 100)))
        elif u < 0.80:
            uref = ref.open_list[rnd.randrange(nopen)] if rnd.random() > 0.01 \
                else next_uref + 777
            rec = ref.open.get(uref)
            cur = rec[3][2] if rec else 100
            w = rnd.random()
            qty = 0 if w < 0.7 else (rnd.randrange(1, cur) if w < 0.95 and cur > 1
                                     else cur + rnd.randrange(0, 3))
            msg = cancel_order(uref, qty)
            st, ev = ref.cancel(uref, qty)
        else:
            old = ref.open_list[rnd.randrange(nopen)] if rnd.random() > 0.01 \
                else next_uref + 999
            rec = ref.open.get(old)
            loc, side, price, entry = rec if rec else (1, 0, 10000, [0, 0, 100])
            cur = entry[2]
            new = old if rnd.random() < 0.1 else next_uref
            if new == next_uref:
                next_uref += 1
            if rnd.random() < 0.004 and nopen > 1:
                new = ref.open_list[rnd.randrange(nopen)]        # maybe a dup
            w = rnd.random()
            if w < 0.25:                                         # same price, smaller
                px, qty = price, rnd.randrange(1, cur + 1)
            elif w < 0.35:                                       # same price, bigger
                px, qty = price, cur + rnd.randrange(1, 300)
            elif w < 0.85:                                       # another price
                px, qty = price + rnd.choice((-300, -200, -100, 100, 200, 300)), \
                    rnd.choice((cur, 100, 200, 400))
            elif w < 0.97:                                       # towards / across the market
                opp = ref.best_price(loc, 1 - side)
                px = (opp if opp is not None else price) + rnd.choice((-100, 0, 100))
                qty = rnd.choice((cur, 100, 300))
            elif w < 0.99:
                px, qty = price, 0                               # replace to nothing
            else:
                px, qty = 0, cur                                 # bad price
            px = max(px, 0)
            msg = replace_order(old, new, qty, px)
            st, ev = ref.replace(old, new, qty, px)
        msgs.append(msg)
        expect.append((st, ev))
    return msgs, expect, ref


@njit          # not cache=True: a cached copy would outlive an edit of engine/matching.py
def run_engine(e, buf, starts, out, ends, status):
    """Every message from buf (one at starts[i] .. starts[i+1]); records output end and
    status per message."""
    o = 0
    for i in range(starts.shape[0] - 1):
        o = process_entry(e, buf, starts[i], starts[i + 1], out, o)
        ends[i] = o
        status[i] = e[M.H_STATUS]
    return o


def run_messages(engine, msgs, out_size=None):
    buf = np.frombuffer(b"".join(msgs), dtype=np.uint8)
    starts = np.zeros(len(msgs) + 1, dtype=np.int64)
    starts[1:] = np.cumsum([len(m) for m in msgs])
    out = np.zeros(out_size or (200 * len(msgs) + 4096), dtype=np.uint8)
    ends = np.zeros(len(msgs), dtype=np.int64)
    status = np.zeros(len(msgs), dtype=np.int64)
    n = run_engine(engine.state, buf, starts, out, ends, status)
    assert n >= 0
    return out[:n].tobytes(), ends, status


def engine_events(out, ends):
    """Per message: the list of ITCH events it produced."""
    per, prev = [], 0
    for e in ends:
        per.append([itch_event(m) for m in blocks(out[prev:e])])
        prev = e
    return per


def trades_from_output(msgs, status, per_msg):
    """(price, qty, aggressor uref, resting uref, resting oref) rebuilt from the ITCH output:
    an order ref's price and user ref come from the A / U that created it (a replace that
    keeps priority only renames the user ref, ITCH does not show that); the aggressor is the
    message being processed."""
    info = {}                    # oref -> [price, uref]
    by_uref = {}                 # uref -> oref
    trades = []
    for msg, st, evs in zip(msgs, status, per_msg):
        t = chr(msg[0])
        aggressor = struct.unpack_from(">I", msg, M.EO_USER_REF if t == "O" else M.EU_USER_REF)[0]
        if t == "U" and st == M.ST_OK and not any(e[0] in "UD" for e in evs):
            orig = struct.unpack_from(">I", msg, M.EU_ORIG)[0]
            oref = by_uref.pop(orig)
            info[oref][1] = aggressor
            by_uref[aggressor] = oref
        for ev in evs:
            if ev[0] == "A":
                info[ev[2]] = [ev[5], aggressor]
                by_uref[aggressor] = ev[2]
            elif ev[0] == "U":
                info[ev[3]] = [ev[5], aggressor]
                by_uref[aggressor] = ev[3]
            elif ev[0] == "E":
                price, resting = info[ev[2]]
                trades.append((price, ev[3], aggressor, resting, ev[2]))
    return trades


# --- tests ---------------------------------------------------------------------------------
N_MSGS = int(os.environ.get("HUGERING_MATCH_MSGS", 150_000))


@pytest.fixture(scope="module")
def stream():
    return generate(N_MSGS, n_instr=48, seed=11)


def test_stream_covers_the_rules(stream):
    msgs, expect, ref = stream
    types = [m[0] for m in msgs]
    assert len(msgs) >= 100_000
    for t in b"OUX":
        assert types.count(t) > 0.1 * len(msgs)
    statuses = {st for st, _ in expect}
    assert {M.ST_OK, M.ST_BAD_FIELD, M.ST_DUP_REF, M.ST_UNKNOWN_REF} <= statuses
    kinds = {}
    for _, ev in expect:
        for e in ev:
            kinds[e[0]] = kinds.get(e[0], 0) + 1
    assert all(kinds.get(k, 0) > 1000 for k in "AEXDU"), kinds
    assert len(ref.trades) > 10_000


def test_engine_matches_reference(stream):
    msgs, expect, ref = stream
    eng = MatchingEngine(48, max_orders=1 << 16, max_levels=256)
    out, ends, status = run_messages(eng, msgs)
    per = engine_events(out, ends)
    for i, ((st, ev), got_st, got) in enumerate(zip(expect, status, per)):
        if st != got_st or ev != got:
            pytest.fail(f"message {i} {msgs[i]!r}: reference {st} {ev}, engine {got_st} {got}")
    assert trades_from_output(msgs, status, per) == ref.trades
    for loc in range(1, 49):
        for side in (BUY, SELL):
            assert eng.book(loc, side) == ref.book(loc, side), (loc, side)
    assert eng.open_orders == len(ref.open)
    c = eng.counters()
    assert c["fills"] == len(ref.trades) and c["filled_qty"] == sum(t[1] for t in ref.trades)
    assert c["messages"] == len(msgs) and c["rest_refused"] == c["out_cut"] == 0


def test_ioc_and_market_orders_never_rest(stream):
    msgs, expect, _ = stream
    n = 0
    for m, (st, ev) in zip(msgs, expect):
        if m[0] == ord("O") and (m[M.EO_TIF] == ord("3") or m[M.EO_TYPE] == ord("M")):
            assert not any(e[0] == "A" for e in ev)
            n += 1
    assert n > 5000
    eng = MatchingEngine(2, 64, 16)
    assert eng.process(enter_order(1, "B", 100, 1, 10000, tif="3")) == b""
    assert eng.process(enter_order(2, "S", 100, 1, 0, ord_type="M")) == b""
    assert eng.open_orders == 0 and eng.counters()["expired_qty"] == 200
    eng.process(enter_order(3, "S", 50, 1, 10100))
    got = [itch_event(m) for m in blocks(eng.process(enter_order(4, "B", 80, 1, 0,
                                                                  ord_type="M")))]
    assert got == [("E", 1, 1, 50, 1)] and eng.open_orders == 0
    assert eng.counters()["expired_qty"] == 230


def ev(engine, msg):
    return [itch_event(m) for m in blocks(engine.process(msg))]


def test_fifo_within_a_level_and_price_priority_across_levels():
    e = MatchingEngine(1, 64, 16)
    ev(e, enter_order(1, "S", 100, 1, 10100))
    ev(e, enter_order(2, "S", 100, 1, 10000))
    ev(e, enter_order(3, "S", 100, 1, 10000))
    got = ev(e, enter_order(4, "B", 250, 1, 10100))
    assert got == [("E", 1, 2, 100, 1), ("E", 1, 3, 100, 2), ("E", 1, 1, 50, 3)]
    assert e.book(1, SELL) == [(10100, [(1, 1, 50)])] and e.book(1, BUY) == []
    # a limit stops at its price and rests the rest
    got = ev(e, enter_order(5, "B", 100, 1, 10050))
    assert got == [("A", 1, 4, "B", 100, 10050)]


def test_replace_priority_rules():
    e = MatchingEngine(1, 64, 16)
    for u in (1, 2, 3):
        ev(e, enter_order(u, "B", 100, 1, 10000))          # orefs 1, 2, 3
    # same price, smaller: keeps its place, ITCH X, new user ref
    assert ev(e, replace_order(1, 11, 60, 10000)) == [("X", 1, 1, 40)]
    assert e.book(1, BUY) == [(10000, [(1, 11, 60), (2, 2, 100), (3, 3, 100)])]
    # same price, same size, same ref: nothing at all
    assert ev(e, replace_order(11, 11, 60, 10000)) == []
    # same price, bigger: loses priority (U, new order ref, to the back)
    assert ev(e, replace_order(2, 12, 150, 10000)) == [("U", 1, 2, 4, 150, 10000)]
    assert e.book(1, BUY) == [(10000, [(1, 11, 60), (3, 3, 100), (4, 12, 150)])]
    # another price: loses priority, joins the back of that level
    ev(e, enter_order(5, "B", 10, 1, 9900))                   # oref 5
    assert ev(e, replace_order(11, 13, 60, 9900)) == [("U", 1, 1, 6, 60, 9900)]
    assert e.book(1, BUY) == [(10000, [(3, 3, 100), (4, 12, 150)]),
                              (9900, [(5, 5, 10), (6, 13, 60)])]
    # across the market: D, then trade as a new order, the rest as a new A
    ev(e, enter_order(20, "S", 30, 1, 10100))                 # oref 7
    got = ev(e, replace_order(13, 14, 50, 10100))
    assert got == [("D", 1, 6), ("E", 1, 7, 30, 1), ("A", 1, 8, "B", 20, 10100)]
    # to nothing: a delete
    assert ev(e, replace_order(3, 15, 0, 10000)) == [("D", 1, 3)]
    # rejections change nothing
    before = e.book(1, BUY)
    assert ev(e, replace_order(99, 16, 10, 10000)) == [] and e.status == M.ST_UNKNOWN_REF
    assert ev(e, replace_order(12, 14, 10, 10000)) == [] and e.status == M.ST_DUP_REF
    assert ev(e, replace_order(12, 16, 10, 0)) == [] and e.status == M.ST_BAD_FIELD
    assert e.book(1, BUY) == before


def test_cancel_semantics():
    e = MatchingEngine(1, 64, 16)
    ev(e, enter_order(1, "S", 100, 1, 10000))
    ev(e, enter_order(2, "S", 100, 1, 10000))
    assert ev(e, cancel_order(1, 30)) == [("X", 1, 1, 70)]          # keeps priority
    assert e.book(1, SELL) == [(10000, [(1, 1, 30), (2, 2, 100)])]
    assert ev(e, cancel_order(1, 30)) == [] and e.counters()["cancel_noop"] == 1
    assert ev(e, cancel_order(1, 0)) == [("D", 1, 1)]
    assert ev(e, cancel_order(1, 0)) == [] and e.status == M.ST_UNKNOWN_REF
    assert ev(e, cancel_order(2, 0)) == [("D", 1, 2)]
    assert e.book(1, SELL) == [] and e.open_orders == 0


def test_bad_messages_are_counted_and_change_nothing():
    e = MatchingEngine(2, 64, 16)
    ev(e, enter_order(1, "B", 100, 1, 10000))
    for msg, st in [(enter_order(2, "X", 100, 1, 10000), M.ST_BAD_FIELD),
                    (enter_order(2, "B", 0, 1, 10000), M.ST_BAD_FIELD),
                    (enter_order(2, "B", 10, 3, 10000), M.ST_BAD_FIELD),
                    (enter_order(2, "B", 10, 0, 10000), M.ST_BAD_FIELD),
                    (enter_order(2, "B", 10, 1, 1 << 32), M.ST_BAD_FIELD),
                    (enter_order(2, "B", 10, 1, (1 << 64) - 1), M.ST_BAD_FIELD),
                    (enter_order(2, "B", 10, 1, 10000, tif="9"), M.ST_BAD_FIELD),
                    (enter_order(2, "B", 10, 1, 10000, ord_type="Q"), M.ST_BAD_FIELD),
                    (enter_order(1, "S", 10, 1, 9000), M.ST_DUP_REF),
                    (b"Z" + bytes(21), M.ST_UNKNOWN_TYPE),
                    (enter_order(2, "S", 10, 1, 9000)[:21], M.ST_TRUNCATED),
                    (b"", M.ST_TRUNCATED)]:
        assert ev(e, msg) == [] and e.status == st, (msg, st)
    assert e.book(1, BUY) == [(10000, [(1, 1, 100)])] and e.open_orders == 1
    c = e.counters()
    assert c["rej_bad_field"] == 8 and c["rej_dup_ref"] == 1 and c["rej_unknown_type"] == 1
    assert c["rej_truncated"] == 2


def test_full_tables_refuse_the_rest_and_count():
    e = MatchingEngine(1, max_orders=2, max_levels=2)
    ev(e, enter_order(1, "B", 10, 1, 100))
    ev(e, enter_order(2, "B", 10, 1, 101))
    assert ev(e, enter_order(3, "B", 10, 1, 101)) == [] and e.status == M.ST_REST_REFUSED
    e2 = MatchingEngine(1, max_orders=8, max_levels=2)
    ev(e2, enter_order(1, "S", 10, 1, 200))
    ev(e2, enter_order(2, "S", 10, 1, 201))
    assert ev(e2, enter_order(3, "S", 10, 1, 202)) == [] and e2.status == M.ST_REST_REFUSED
    assert ev(e2, enter_order(4, "S", 10, 1, 201)) == [("A", 1, 3, "S", 10, 201)]
    # a replace needing a new level on a full side is refused whole
    assert ev(e2, replace_order(1, 5, 10, 203)) == [] and e2.status == M.ST_FULL
    # a buy that trades part and cannot rest: fills published, the rest refused
    e3 = MatchingEngine(1, max_orders=1, max_levels=4)
    ev(e3, enter_order(1, "S", 10, 1, 200))
    got = ev(e3, enter_order(2, "B", 30, 1, 200))
    assert got == [("E", 1, 1, 10, 1), ("A", 1, 2, "B", 20, 200)]   # the slot freed first
    e4 = MatchingEngine(1, max_orders=1, max_levels=4)
    ev(e4, enter_order(1, "S", 10, 1, 200))
    assert ev(e4, enter_order(2, "S", 5, 1, 201)) == [] and e4.status == M.ST_REST_REFUSED
    assert e.counters()["rest_refused"] == 1 and e2.counters()["rej_full"] == 1


def test_output_room():
    e = MatchingEngine(1, 1024, 256)
    for u in range(1, 201):
        ev(e, enter_order(u, "S", 1, 1, 10000 + u))
    out = np.zeros(M.MIN_ROOM - 1, dtype=np.uint8)
    buf = np.frombuffer(enter_order(500, "B", 300, 1, 20000), dtype=np.uint8)
    assert process_entry(e.state, buf, 0, buf.size, out, 0) == -1
    assert e.counters()["no_room"] == 1 and e.open_orders == 200
    out = np.zeros(1000, dtype=np.uint8)
    n = process_entry(e.state, buf, 0, buf.size, out, 0)
    fills = [itch_event(m) for m in blocks(out[:n].tobytes())]
    assert e.status == M.ST_OUT_CUT and 0 < len(fills) <= (1000 - M.FILL_ROOM) // 33 + 1
    assert all(f[0] == "E" for f in fills) and e.open_orders == 200 - len(fills)
    assert e.book(1, SELL)[0][0] == 10000 + len(fills) + 1        # the book stays consistent
    assert e.book(1, BUY) == []                                    # the rest did not rest


def test_process_stream_walks_back_to_back_messages():
    msgs = [enter_order(1, "S", 10, 1, 100), enter_order(2, "B", 4, 1, 100),
            cancel_order(1, 3), replace_order(1, 7, 3, 99)]
    e = MatchingEngine(1, 16, 8)
    buf = np.frombuffer(b"".join(msgs) + b"Z", dtype=np.uint8)
    out = np.zeros(4096, dtype=np.uint8)
    off, o = process_stream(e.state, buf, 0, buf.size, out, 0)
    assert off == buf.size - 1 and e.status == M.ST_UNKNOWN_TYPE
    got = [itch_event(m) for m in blocks(out[:o].tobytes())]
    assert got == [("A", 1, 1, "S", 10, 100), ("E", 1, 1, 4, 1), ("X", 1, 1, 3),
                   ("U", 1, 1, 2, 3, 99)]


def test_itch_output_round_trips_through_the_itch_decoder():
    e = MatchingEngine(2, 64, 16, symbols={1: "AAPL"})
    e.set_clock(34_200_000_000_123)
    data = e.process(enter_order(1, "B", 100, 1, 1_500_000))
    recs, _ = I.decode_all(data)
    assert len(recs) == 1
    f = I.fields_of(recs[0])
    assert f["msg_type"] == b"A" and f["stock"] == b"AAPL    " and f["timestamp"] == \
        34_200_000_000_123 and f["price"] == 1_500_000 and f["side"] == b"B"


# --- zero allocation -------------------------------------------------------------------------
NRT_SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests"]
    from numba.core.runtime import rtsys
    from engine.matching import MatchingEngine
    import test_matching as T
    msgs, _, _ = T.generate(30000, n_instr=16, seed=5)
    T.run_messages(MatchingEngine(16, 1 << 14, 128), msgs[:10])   # compile: NRT starts

    def stats():
        s = rtsys.get_allocation_stats()
        return [s.alloc, s.free, s.mi_alloc, s.mi_free]

    def rnd(n):
        import numpy as np
        eng = MatchingEngine(16, 1 << 14, 128)
        buf = np.frombuffer(b"".join(msgs[:n]), dtype=np.uint8)
        starts = np.zeros(n + 1, dtype=np.int64)
        starts[1:] = np.cumsum([len(m) for m in msgs[:n]])
        out = np.zeros(200 * n + 4096, dtype=np.uint8)
        ends = np.zeros(n, dtype=np.int64)
        status = np.zeros(n, dtype=np.int64)
        before = stats()
        T.run_engine(eng.state, buf, starts, out, ends, status)
        return [a - b for a, b in zip(stats(), before)]
    print(json.dumps({"small": rnd(2000), "large": rnd(30000)}))
""")


def test_matching_makes_no_nrt_allocations():
    env = dict(os.environ, NUMBA_NRT_STATS="1")
    p = subprocess.run([sys.executable, "-c", NRT_SCRIPT, str(ROOT)], capture_output=True,
                       text=True, env=env, timeout=300, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["small"] == r["large"], r
    assert r["large"][0] == r["large"][1], r


def test_itch_output_rebuilds_the_engine_book(stream):
    """engine/book.py fed the engine's ITCH output holds the engine's levels, exactly."""
    from engine.book import Books, apply_itch_blocks

    msgs, _, _ = stream
    eng = MatchingEngine(48, max_orders=1 << 16, max_levels=256)
    out, ends, _ = run_messages(eng, msgs)
    bk = Books(48, 1 << 16, 256)
    buf = np.frombuffer(out, dtype=np.uint8)
    assert apply_itch_blocks(bk.state, buf, 0, buf.size) == buf.size
    c = bk.counters()
    assert c["unknown_ref"] == c["dup_ref"] == c["over_exec"] == c["itch_bad"] == 0
    for loc in range(1, 49):
        for side in (BUY, SELL):
            want = [(p, sum(q for _, _, q in lv), len(lv)) for p, lv in eng.book(loc, side)]
            assert bk.levels(loc, side) == want, (loc, side)


def test_publisher_frames_equal_itch_feed_packetize(ring_name):
    """The engine's output published into a ring: the frames are byte for byte what
    itch_feed.packetize makes of the same blocks (MoldUDP64 sequence numbers from 1, one per
    message, IP id = packet number, checksums filled in), and they carry every block."""
    from engine.producers import itch_feed as F
    from parsers import moldudp64 as MU
    from shm.ring import Ring

    msgs, _, _ = generate(3000, n_instr=8, seed=4)
    eng = MatchingEngine(8, 1 << 12, 64)
    out, ends, _ = run_messages(eng, msgs)
    buf = np.frombuffer(out, dtype=np.uint8)
    offsets = [0]
    while offsets[-1] < len(out):
        offsets.append(offsets[-1] + 2 + int.from_bytes(out[offsets[-1]:offsets[-1] + 2], "big"))
    offsets = np.array(offsets, dtype=np.int64)
    framing = F.Framing(session="MATCH00001", max_payload=600)
    want = F.packetize(buf, offsets, framing, slot_size=1024, end_of_session=False)

    ring = Ring.create(ring_name, slots=4096, slot_size=1024, shm=True)
    con = ring.consumer()
    pub = M.ItchPublisher(ring, framing, burst=16)
    # in two calls, as a matcher would between batches (a packet never spans calls): cut at
    # the block boundary that itch_feed's packing also cuts at
    first = int(want[0]["cap_len"]) - 42 - MU.HEADER_LEN      # blocks in packet 0
    assert pub.publish(buf, first) == first
    assert pub.publish(buf, buf.size, off=first) == buf.size
    got = []
    for batch in con.batches(max_batch=64, timeout=0.2):
        got.extend(bytes(s["payload"][:int(s["cap_len"])]) for s in batch)
    assert len(got) == len(want) == pub.stats()["packets"]
    for g, w in zip(got, want):
        assert g == bytes(w["payload"][:int(w["cap_len"])])
    st = pub.stats()
    assert st["messages"] == len(offsets) - 1 and st["next_seq"] == len(offsets)
    assert st["full"] == 0
    pub.close()
    con.close()
    ring.close()


def test_publisher_stops_at_a_full_ring_and_resumes(ring_name):
    from shm.ring import Ring

    eng = MatchingEngine(2, 1 << 10, 16)
    msgs = [enter_order(u, "B", 100, 1, 10000 - u % 8) for u in range(1, 401)]
    out, _, _ = run_messages(eng, msgs)
    buf = np.frombuffer(out, dtype=np.uint8)
    ring = Ring.create(ring_name, slots=4, slot_size=256, shm=True)
    con = ring.consumer()                       # lossless: holds the producer back
    from engine.producers import itch_feed as F
    pub = M.ItchPublisher(ring, F.Framing(max_payload=200), burst=4)
    off = pub.publish(buf, buf.size)
    assert 0 < off < buf.size and pub.stats()["full"] == 1 and pub.stats()["packets"] == 4
    seen = 0
    while off < buf.size:
        seen += len(con.poll(64))
        con.release()
        off = pub.publish(buf, buf.size, off=off)
    seen += len(con.poll(64))
    assert seen == pub.stats()["packets"] and pub.stats()["messages"] == 400
    pub.close()
    con.close()
    ring.close()
