"""A strategy on a NASDAQ ITCH 5.0 feed over MoldUDP64: order books for every instrument,
a micro-price and an order-book-imbalance signal for a watch list.

The pattern to copy for a market-data consumer.  The engine calls ``on_burst`` for every burst
of feed packets that passed the consumer's filter (``udp``); per packet it

1. checks the MoldUDP64 sequence (``parsers.moldudp64.on_packet``): in order, a gap (counted,
   logged for a re-request), a duplicate or a late/overlapping retransmission (only the
   messages not seen before are applied);
2. applies each ITCH message to the books (``engine.book.apply_itch``: add, execute, cancel,
   delete, replace; preallocated arrays, no allocation);
3. after the burst, recomputes the signal of each watched instrument whose book changed:
   micro-price = (bid * ask_size + ask * bid_size) / (bid_size + ask_size) and imbalance =
   (bid_size - ask_size) / (bid_size + ask_size) at the top of book, and counts a "signal"
   when the imbalance crosses +-IMBALANCE_TRIGGER.

State (``make_state``): a tuple ``(books, tracker, header, counters, watch, view)`` -- the
engine passes it through to every call.  ``view`` is the part other processes may look at:
per watched instrument its top of book and signal (``V_*`` words), so a monitor (the demo's
live screen) can map it from shared memory; pass your own array (e.g. an ``np.memmap`` of a
file in /dev/shm) as ``view`` to share it.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from engine import book as BK
from parsers import moldudp64 as M

# counters (state[3])
C_PACKETS, C_MESSAGES, C_APPLIED, C_GAPS, C_GAP_MESSAGES, C_DUPLICATES, C_LATE, C_MALFORMED, \
    C_SIGNALS, C_UPDATES, C_LAST_SEQ = range(11)
COUNTER_WORDS = 16
COUNTER_NAMES = ("packets", "messages", "applied", "gaps", "gap_messages", "duplicates",
                 "late", "malformed", "signals", "book_updates", "last_seq")

# view: per watched instrument k, VIEW_STRIDE words from k * VIEW_STRIDE (after the counters)
V_LOCATE, V_BID, V_BID_SIZE, V_ASK, V_ASK_SIZE, V_MICRO, V_IMBALANCE, V_SIGNAL, V_DIRTY = \
    range(9)
VIEW_STRIDE = 16
IMBALANCE_TRIGGER = 6000           # in 1/10000: |imbalance| >= 0.6 is a signal


def make_state(state_size: int = 64, watch=(1, 2, 3, 4), max_instruments: int = 64,
               max_orders: int = 1 << 18, max_levels: int = 256, view=None):
    """The handler's state tuple.  ``view``: an int64 array of at least
    ``view_words(len(watch))`` words (shared memory, for a monitor), or None."""
    books = BK.Books(max_instruments, max_orders, max_levels).state
    tracker = M.new_tracker(max_sessions=4, max_gaps=64, log_capacity=256)
    header = M.new_header()
    counters = np.zeros(COUNTER_WORDS, np.int64)
    w = np.asarray(watch, dtype=np.int64)
    if view is None:
        view = np.zeros(view_words(len(w)), np.int64)
    for k, loc in enumerate(w):
        view[COUNTER_WORDS + k * VIEW_STRIDE + V_LOCATE] = loc
    return (books, tracker, header, counters, w, view)


def view_words(n_watch: int) -> int:
    return COUNTER_WORDS + n_watch * VIEW_STRIDE


@njit(cache=True)
def _signal(books, watch, view, counters):
    for k in range(watch.shape[0]):
        v = COUNTER_WORDS + k * VIEW_STRIDE
        loc = watch[k]
        bp, bq, _bo = BK.best_bid(books, loc)
        ap, aq, _ao = BK.best_ask(books, loc)
        if bp == view[v + V_BID] and bq == view[v + V_BID_SIZE] and ap == view[v + V_ASK] \
                and aq == view[v + V_ASK_SIZE]:
            continue
        view[v + V_BID] = bp
        view[v + V_BID_SIZE] = bq
        view[v + V_ASK] = ap
        view[v + V_ASK_SIZE] = aq
        if bq > 0 and aq > 0:
            view[v + V_MICRO] = (bp * aq + ap * bq) // (bq + aq)
            imb = (bq - aq) * 10000 // (bq + aq)
            was = view[v + V_IMBALANCE]
            view[v + V_IMBALANCE] = imb
            if (imb >= IMBALANCE_TRIGGER and was < IMBALANCE_TRIGGER) or \
                    (imb <= -IMBALANCE_TRIGGER and was > -IMBALANCE_TRIGGER):
                view[v + V_SIGNAL] += 1
                counters[C_SIGNALS] += 1
        view[v + V_DIRTY] += 1


@njit(cache=True)
def on_burst(recs, frames, bases, sel, n, now, state):
    books, tracker, header, counters, watch, view = state
    hdr = header[0]
    for j in range(n):
        i = sel[j]
        rec = recs[i]
        if rec.payload_off < 0:
            counters[C_MALFORMED] += 1
            continue
        p = bases[i] + rec.payload_off
        end = p + rec.payload_len
        a = M.on_packet(tracker, frames, p, end, hdr)
        counters[C_PACKETS] += 1
        if a == M.A_MALFORMED or a == M.A_NO_SESSION:
            counters[C_MALFORMED] += 1
            continue
        if a == M.A_HEARTBEAT or a == M.A_END_OF_SESSION:
            continue
        if a == M.A_DUPLICATE:
            counters[C_DUPLICATES] += 1
            continue
        if a == M.A_GAP:
            counters[C_GAPS] += 1
        elif a != M.A_IN_ORDER:
            counters[C_LATE] += 1
        idx = M.session_index(tracker, hdr.session_hi, hdr.session_lo)
        sb = M.TR_HEADER_WORDS + idx * tracker[M.TR_SESSION_WORDS]
        first = tracker[sb + M.SS_OUT_FROM]
        last = tracker[sb + M.SS_OUT_TO]
        counters[C_GAP_MESSAGES] = tracker[sb + M.SS_GAP_MESSAGES]
        # walk the blocks; apply the run [first, last) the tracker says is new
        pos = hdr.first_block
        k = 0
        while k < last and pos + 2 <= hdr.end:
            ln = (np.int64(frames[pos]) << 8) | frames[pos + 1]
            if k >= first:
                counters[C_MESSAGES] += 1
                if BK.apply_itch(books, frames, pos + 2, pos + 2 + ln) >= 0:
                    counters[C_APPLIED] += 1
            pos += 2 + ln
            k += 1
        counters[C_LAST_SEQ] = hdr.sequence + hdr.blocks - 1
    if n > 0:
        counters[C_UPDATES] += 1
        _signal(books, watch, view, counters)
        for c in range(COUNTER_WORDS):
            view[c] = counters[c]
    return n


def describe(state) -> dict:
    """Counters and the watch list's top of book, by name (printed at exit)."""
    books, tracker, header, counters, watch, view = state
    out = {name: int(counters[i]) for i, name in enumerate(COUNTER_NAMES)}
    out["watch"] = [{"locate": int(view[COUNTER_WORDS + k * VIEW_STRIDE + V_LOCATE]),
                     "bid": int(view[COUNTER_WORDS + k * VIEW_STRIDE + V_BID]) / 1e4,
                     "ask": int(view[COUNTER_WORDS + k * VIEW_STRIDE + V_ASK]) / 1e4,
                     "imbalance": int(view[COUNTER_WORDS + k * VIEW_STRIDE + V_IMBALANCE]) / 1e4,
                     "signals": int(view[COUNTER_WORDS + k * VIEW_STRIDE + V_SIGNAL])}
                    for k in range(len(watch))]
    return out
