"""A deterministic ITCH 5.0 market-data feed: @njit generator, MoldUDP64 framing, ring producer.

The generator is a state machine over preallocated arrays (``Feed`` sets them up; the hot code
is the ``@njit`` functions below).  Same parameters and seed, same bytes, on any machine: the
random numbers come from its own splitmix64, not from numpy's or Numba's generators.

The stream
----------
A trading day in miniature: ``S O`` (start of messages), one ``R`` stock directory per
instrument (locate codes 1..n), ``S S`` (start of system hours), an ``H T`` trading-action spin,
``S Q`` (start of market hours), then order flow, and at the end ``S M``, ``S E``, ``S C``.
Order flow, per message: an instrument is drawn (half the draws from the first eighth of the
instruments: a few are busy), then an event by weight (per mille, ``DEFAULT_WEIGHTS``; events on
a resting order act on a live order of any instrument, see below):

``A``/``F`` add around the instrument's mid price (a random walk in one-cent ticks): bids 1..8
ticks below it, asks above, mostly round lots; ``F`` carries one of eight MPIDs.  ``D`` delete
and ``X`` partial cancel (of fewer shares than remain), ``E`` / ``C`` executions (half of them
fill what remains, which removes the order; ``C`` at a price a tick off, printable or not),
``U`` replace (new reference, shares and price; same side), ``P`` non-displayed trades (order
reference 0), and now and then ``H`` halts an instrument (``H H``): while halted it gets no
executions or trades, and the first event drawn for it after ``halt_messages`` messages is its
resumption (``H T``).

Every ``E``/``C``/``X``/``D``/``U`` names a live order of that instrument with enough shares:
the generator keeps the live orders (reference, instrument, side, shares, price) in a dense
table (removal moves the last row into the hole), and picks half of its targets among the 32
most recent rows (real cancels hit young orders).  Adds stop while ``live_orders`` orders are
live (the add becomes a delete), so the book stays near that size.  Order references and match
numbers count up from 1; timestamps never decrease.  ``Feed.live_orders()`` is the book the
stream leaves behind: a replay must end with exactly these orders.

Outputs
-------
``generate(n_messages, ...) -> (buffer, offsets, stats)``: ``n_messages`` length-prefixed
messages (u16 length + message, as MoldUDP64 blocks and ``parsers.itch.decode_stream`` take
them); message ``i``'s block is ``buffer[offsets[i]:offsets[i + 1]]``.  ``packetize`` wraps a
stream into MoldUDP64 packets in Ethernet II / IPv4 / UDP frames (ring slot records,
``shm.layout.slot_dtype``); ``write_pcap`` writes those to a pcap file; ``FeedProducer``
generates packets straight into a hugering ring at a given rate.  A packet takes messages
while the next one certainly fits (``MAX_BLOCK`` bytes left in ``max_payload``) and, if set,
until it holds ``max_messages``; MoldUDP64 sequence numbers start at 1.  Frame bytes depend
only on the parameters (IP id = packet number), so the producer's frames equal ``packetize``'s.
The IPv4 and UDP checksums are filled in.

Throughput: ``python -m engine.producers.itch_feed --messages 10000000 --bench`` reports it.
About 50 ns a message on one core of the 2-vCPU development VM (10**7 messages in 0.6 to 1.2 s
there, the first touch of the 300 MB output included).  Nothing here allocates: the hot
functions are compiled without NRT (``_nrt=False``), which would refuse an allocation.
"""
from __future__ import annotations

import argparse
import ipaddress
import sys
import time

import numpy as np
from numba import njit

from parsers import itch as I
from parsers import moldudp64 as M
from parsers.itch import be16, be48, put16
from shm import kernels as K
from shm import layout as L
from shm.clock import now_ns
from shm.ring import Producer, Ring

# --- generator state (int64 words of Feed.g) --------------------------------------------------
G_RNG = 0          # splitmix64 state (bit pattern)
G_MSGS = 1         # messages generated
G_CLOCK = 2        # timestamp of the last message (ns since midnight)
G_NEXT_REF = 3     # next order reference number
G_NEXT_MATCH = 4   # next match number
G_NLIVE = 5        # live orders (rows of the order table in use)
G_NINST = 6        # instruments
G_SEQ = 7          # next MoldUDP64 sequence number
G_PACKETS = 8      # packets built
G_HALTS = 9        # halts issued
G_MAX_LIVE = 10    # most live orders seen
G_ENDED = 11       # trailer messages emitted (0..3)
G_WORDS = 16

# parameters (int64 words of Feed.p): the first eight are the events' per-mille weights
EV_ADD, EV_DELETE, EV_CANCEL, EV_EXEC, EV_EXEC_PRICE, EV_REPLACE, EV_TRADE, EV_HALT = range(8)
P_ADD, P_DELETE, P_CANCEL, P_EXEC, P_EXEC_PRICE, P_REPLACE, P_TRADE, P_HALT = range(8)
P_MPID_PERMILLE = 8    # adds that are F (with attribution), per mille
P_TARGET_LIVE = 9      # adds stop at this many live orders
P_TICK = 10            # price tick (price4 units: 100 = one cent)
P_STEP_NS = 11         # mean ns between messages
P_HALT_MSGS = 12       # messages a halt lasts at least
P_HOT = 13             # instruments in the busy set
P_EVENTS = 16          # 1000 words: event of each per-mille draw (a table: no search loop)
P_WORDS = P_EVENTS + 1000

WEIGHT_NAMES = ("add", "delete", "cancel", "execute", "execute_price", "replace", "trade",
                "halt")
DEFAULT_WEIGHTS = dict(add=440, delete=329, cancel=60, execute=70, execute_price=15,
                       replace=70, trade=15, halt=1)

# instrument table columns / order table columns
I_STOCK, I_MID, I_HALTED, I_RESUME_AT, I_WORDS = 0, 1, 2, 3, 4
O_REF, O_INST, O_SIDE, O_SHARES, O_PRICE, O_WORDS = 0, 1, 2, 3, 4, 5

MAX_BLOCK = 2 + I.P_LEN          # the longest block the generator writes (P, 44 bytes)
SIDE_B, SIDE_S = ord("B"), ord("S")
OPEN_NS = 34_200_000_000_000     # 09:30
CLOSE_NS = 57_600_000_000_000    # 16:00
MPIDS = (b"NSDQ", b"GSCO", b"MSCO", b"UBSS", b"CDRG", b"VIRT", b"JPMS", b"SUSQ")
PCAP_DAY_NS = 1_704_171_600_000_000_000   # 2024-01-02 05:00 UTC (00:00 New York): pcap epoch

# no NRT reference counting on the array arguments: nothing here allocates, and a call would
# otherwise cost an atomic increment and decrement per array (see shm.kernels)
_HOT = dict(cache=True, nogil=True, _nrt=False)
_INLINE = dict(_HOT, inline="always")


# --- random numbers ---------------------------------------------------------------------------
@njit(**_INLINE)
def _rand(g):
    """31 random bits (splitmix64; the state is the bit pattern in g[G_RNG])."""
    x = np.uint64(g[G_RNG]) + np.uint64(0x9E3779B97F4A7C15)
    g[G_RNG] = np.int64(x)
    z = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return np.int64(z >> np.uint64(33))


@njit(**_INLINE)
def _below(g, n):
    """Uniform in [0, n) for 0 < n <= 2**32 (multiply-shift: no division)."""
    return (_rand(g) * n) >> 31


# --- message emitters (each writes a block: u16 length + message; returns the next offset) ----
@njit(**_INLINE)
def _tick(g, p):
    g[G_CLOCK] += 1 + _below(g, 2 * p[P_STEP_NS])
    return g[G_CLOCK]


@njit(**_INLINE)
def _system(buf, off, g, code, ts):
    put16(buf, off, I.S_LEN)
    return I.encode_system_event(buf, off + 2, 0, g[G_MSGS] & 0xFFFF, ts, code)


@njit(**_INLINE)
def _trading_action(buf, off, g, inst, i, state, reason, ts):
    put16(buf, off, I.H_LEN)
    return I.encode_trading_action(buf, off + 2, i + 1, g[G_MSGS] & 0xFFFF, ts,
                                   inst[i, I_STOCK], state, 32, reason)


@njit(**_HOT)
def _preamble(buf, off, g, inst, k):
    """Message k of the start of day (0 <= k < 2 n + 3)."""
    n = g[G_NINST]
    if k == 0:
        g[G_CLOCK] = 10_800_000_000_000                     # 03:00
        return _system(buf, off, g, ord("O"), g[G_CLOCK])
    if k <= n:
        i = k - 1
        g[G_CLOCK] += 1000
        put16(buf, off, I.R_LEN)
        return I.encode_stock_directory(
            buf, off + 2, i + 1, g[G_MSGS] & 0xFFFF, g[G_CLOCK], inst[i, I_STOCK], ord("Q"),
            ord("N"), 100, ord("N"), ord("C"), 0x5A20, ord("P"), ord("N"), ord("N"), ord("1"),
            ord("N"), 0, ord("N"))
    if k == n + 1:
        g[G_CLOCK] = 14_400_000_000_000                     # 04:00
        return _system(buf, off, g, ord("S"), g[G_CLOCK])
    if k <= 2 * n + 1:
        g[G_CLOCK] += 1000
        return _trading_action(buf, off, g, inst, k - n - 2, ord("T"), 0x20202020, g[G_CLOCK])
    g[G_CLOCK] = OPEN_NS
    return _system(buf, off, g, ord("Q"), g[G_CLOCK])


@njit(**_INLINE)
def _remove(ords, g, j):
    last = g[G_NLIVE] - 1
    if j != last:
        for c in range(O_WORDS):
            ords[j, c] = ords[last, c]
    g[G_NLIVE] = last


@njit(**_INLINE)
def _pick_order(g):
    n = g[G_NLIVE]
    young = n - 1 - _below(g, 32 if n > 32 else n)          # one of the 32 youngest
    anyone = _below(g, n)
    return young if _below(g, 2) == 0 else anyone


@njit(**_INLINE)
def _shares(g):
    r = _below(g, 16)
    if r == 0:
        return 1 + _below(g, 99)                            # odd lot
    if r == 1:
        return 100 * (1 + _below(g, 100))                   # a big one
    return 100 * (1 + _below(g, 10))


@njit(**_INLINE)
def _add(buf, off, g, p, inst, ords, mpids, i, ts):
    tick = p[P_TICK]
    if _below(g, 8) == 0:                                   # the mid wanders
        mid = inst[i, I_MID] + (tick if _below(g, 2) == 0 else -tick)
        if mid < 20 * tick:
            mid = 20 * tick
        inst[i, I_MID] = mid
    sell = _below(g, 2)                                     # 0 buy, 1 sell: no branch on it
    side = SIDE_B + (SIDE_S - SIDE_B) * sell
    k = 1 + ((_below(g, 16) * _below(g, 16)) >> 5)          # 1..8 ticks away, mostly close
    price = inst[i, I_MID] + (2 * sell - 1) * k * tick
    shares = _shares(g)
    ref = g[G_NEXT_REF]
    g[G_NEXT_REF] = ref + 1
    j = g[G_NLIVE]
    ords[j, O_REF] = ref
    ords[j, O_INST] = i
    ords[j, O_SIDE] = side
    ords[j, O_SHARES] = shares
    ords[j, O_PRICE] = price
    g[G_NLIVE] = j + 1
    if j + 1 > g[G_MAX_LIVE]:
        g[G_MAX_LIVE] = j + 1
    if _below(g, 1000) < p[P_MPID_PERMILLE]:
        put16(buf, off, I.F_LEN)
        return I.encode_add_order_mpid(buf, off + 2, i + 1, g[G_MSGS] & 0xFFFF, ts, ref, side,
                                       shares, inst[i, I_STOCK], price,
                                       mpids[_below(g, mpids.shape[0])])
    put16(buf, off, I.A_LEN)
    return I.encode_add_order(buf, off + 2, i + 1, g[G_MSGS] & 0xFFFF, ts, ref, side, shares,
                              inst[i, I_STOCK], price)


@njit(**_INLINE)
def _delete(buf, off, g, ords, j, ts):
    ref = ords[j, O_REF]
    loc = ords[j, O_INST] + 1
    _remove(ords, g, j)
    put16(buf, off, I.D_LEN)
    return I.encode_order_delete(buf, off + 2, loc, g[G_MSGS] & 0xFFFF, ts, ref)


@njit(**_HOT)
def next_message(buf, off, g, p, inst, ords, mpids):
    """Write the next block of the stream at ``buf[off:]`` (``MAX_BLOCK`` bytes must be free);
    returns the offset after it.  Single caller per state (plain loads and stores)."""
    k = g[G_MSGS]
    n = g[G_NINST]
    if k < 2 * n + 3:
        off = _preamble(buf, off, g, inst, k)
        g[G_MSGS] = k + 1
        return off
    ts = _tick(g, p)
    nlive = g[G_NLIVE]
    # the instrument: half the time one of the busy ones (a select, not a branch)
    i = _below(g, p[P_HOT] if _below(g, 2) == 0 else n)
    if inst[i, I_HALTED] != 0 and k >= inst[i, I_RESUME_AT]:
        inst[i, I_HALTED] = 0                               # its halt is over: resume first
        off = _trading_action(buf, off, g, inst, i, ord("T"), 0x20202020, ts)
        g[G_MSGS] = k + 1
        return off
    # the event, by weight (one table load); then the cases it cannot apply to
    ev = p[P_EVENTS + _below(g, 1000)]
    if (ev == EV_HALT or ev == EV_TRADE) and inst[i, I_HALTED] != 0:
        ev = EV_ADD                           # halted already / no trades while halted
    if ev == EV_ADD and nlive >= p[P_TARGET_LIVE]:
        ev = EV_DELETE                        # the book is big enough (and the table full)
    if ev != EV_ADD and ev < EV_TRADE and nlive == 0:
        ev = EV_ADD                           # no order to act on
    if ev == EV_ADD:
        off = _add(buf, off, g, p, inst, ords, mpids, i, ts)
    elif ev == EV_HALT:
        inst[i, I_HALTED] = 1
        inst[i, I_RESUME_AT] = k + p[P_HALT_MSGS]
        g[G_HALTS] += 1
        off = _trading_action(buf, off, g, inst, i, ord("H"), 0x54312020, ts)   # reason "T1"
    elif ev == EV_TRADE:
        # a non-displayed trade: touches no displayed order
        m = g[G_NEXT_MATCH]
        g[G_NEXT_MATCH] = m + 1
        price = inst[i, I_MID] + p[P_TICK] * (_below(g, 3) - 1)
        put16(buf, off, I.P_LEN)
        off = I.encode_trade(buf, off + 2, i + 1, k & 0xFFFF, ts, 0, SIDE_B, _shares(g),
                             inst[i, I_STOCK], price, m)
    else:
        j = _pick_order(g)
        oi = ords[j, O_INST]
        loc = oi + 1
        rem = ords[j, O_SHARES]
        ref = ords[j, O_REF]
        if ev == EV_DELETE:
            off = _delete(buf, off, g, ords, j, ts)
        elif ev == EV_CANCEL:
            if rem <= 1:
                off = _delete(buf, off, g, ords, j, ts)
            else:
                c = 1 + _below(g, rem - 1)                  # fewer than remain
                ords[j, O_SHARES] = rem - c
                put16(buf, off, I.X_LEN)
                off = I.encode_order_cancel(buf, off + 2, loc, k & 0xFFFF, ts, ref, c)
        elif ev == EV_EXEC or ev == EV_EXEC_PRICE:
            if inst[oi, I_HALTED] != 0:
                off = _delete(buf, off, g, ords, j, ts)     # no executions while halted
            else:
                part = 1 + _below(g, rem - 1 if rem > 1 else 1)
                x = rem if (rem == 1 or _below(g, 2) == 0) else part
                m = g[G_NEXT_MATCH]
                g[G_NEXT_MATCH] = m + 1
                if ev == EV_EXEC:
                    put16(buf, off, I.E_LEN)
                    off = I.encode_order_executed(buf, off + 2, loc, k & 0xFFFF, ts, ref, x, m)
                else:
                    price = ords[j, O_PRICE] + p[P_TICK] * (1 - 2 * _below(g, 2))
                    printable = ord("Y") if _below(g, 5) != 0 else ord("N")
                    put16(buf, off, I.C_LEN)
                    off = I.encode_order_executed_price(buf, off + 2, loc, k & 0xFFFF, ts, ref,
                                                        x, m, printable, price)
                if x == rem:
                    _remove(ords, g, j)
                else:
                    ords[j, O_SHARES] = rem - x
        else:
            # replace: new reference, shares and price, same side and instrument
            new_ref = g[G_NEXT_REF]
            g[G_NEXT_REF] = new_ref + 1
            shares = _shares(g)
            price = ords[j, O_PRICE] + p[P_TICK] * (_below(g, 5) - 2)
            if price < p[P_TICK]:
                price = p[P_TICK]
            ords[j, O_REF] = new_ref
            ords[j, O_SHARES] = shares
            ords[j, O_PRICE] = price
            put16(buf, off, I.U_LEN)
            off = I.encode_order_replace(buf, off + 2, loc, k & 0xFFFF, ts, ref, new_ref, shares,
                                         price)
    g[G_MSGS] = k + 1
    return off


@njit(**_HOT)
def trailer_message(buf, off, g):
    """The next of the end-of-day system events (S M, S E, S C); -1 after the third."""
    e = g[G_ENDED]
    if e >= 3:
        return -1
    if e == 0:
        ts = g[G_CLOCK] + 1 if g[G_CLOCK] >= CLOSE_NS else CLOSE_NS
        code = ord("M")
    elif e == 1:
        ts = g[G_CLOCK] + 1 if g[G_CLOCK] >= 72_000_000_000_000 else 72_000_000_000_000
        code = ord("E")
    else:
        ts = g[G_CLOCK] + 300_000_000_000
        code = ord("C")
    g[G_CLOCK] = ts
    off = _system(buf, off, g, code, ts)
    g[G_ENDED] = e + 1
    g[G_MSGS] += 1
    return off


@njit(**_HOT)
def _generate(buf, offsets, n, g, p, inst, ords, mpids):
    """n - 3 messages of the day, then the 3 of its end."""
    off = 0
    for k in range(n - 3):
        offsets[k] = off
        off = next_message(buf, off, g, p, inst, ords, mpids)
    for k in range(n - 3, n):
        offsets[k] = off
        off = trailer_message(buf, off, g)
    offsets[n] = off
    return off


# --- frames -----------------------------------------------------------------------------------
ETH_HLEN, IP_HLEN, UDP_HLEN = 14, 20, 8
OFF_IP, OFF_UDP = 14, 34
FRAME_HEADERS = 42                 # Ethernet + IPv4 + UDP, then the MoldUDP64 packet


@njit(**_HOT)
def _sum16(b, start, stop):
    """Unfolded sum of the big-endian 16-bit words of b[start:stop] (odd tail padded)."""
    s = 0
    i = start
    while i + 1 < stop:
        s += be16(b, i)
        i += 2
    if i < stop:
        s += np.int64(b[i]) << 8
    return s


@njit(**_HOT)
def _fold(s):
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


@njit(**_HOT)
def finish_frame(fb, base, tmpl, payload_len, ip_id):
    """Write the Ethernet/IPv4/UDP headers of a frame whose UDP payload (``payload_len``
    bytes) is already at ``fb[base + 42:]``; returns the frame length."""
    for j in range(FRAME_HEADERS):
        fb[base + j] = tmpl[j]
    ip_len = IP_HLEN + UDP_HLEN + payload_len
    udp_len = UDP_HLEN + payload_len
    put16(fb, base + OFF_IP + 2, ip_len)
    put16(fb, base + OFF_IP + 4, ip_id)
    c = (~_fold(_sum16(fb, base + OFF_IP, base + OFF_UDP))) & 0xFFFF
    put16(fb, base + OFF_IP + 10, c)
    put16(fb, base + OFF_UDP + 4, udp_len)
    # pseudo-header: source, destination, protocol, UDP length
    u = _sum16(fb, base + OFF_IP + 12, base + OFF_IP + 20) + 17 + udp_len
    u += _sum16(fb, base + OFF_UDP, base + OFF_UDP + udp_len)
    u = (~_fold(u)) & 0xFFFF
    put16(fb, base + OFF_UDP + 6, 0xFFFF if u == 0 else u)    # RFC 768: 0 is "no checksum"
    return FRAME_HEADERS + payload_len


@njit(**_HOT)
def build_live_frame(fb, base, g, p, inst, ords, mpids, tmpl, max_payload, max_messages,
                     sess_hi, sess_lo):
    """Generate one MoldUDP64 packet of new messages inside a frame at ``fb[base:]`` (room for
    42 + max_payload bytes); returns the frame length."""
    pkt = base + FRAME_HEADERS
    limit = pkt + max_payload
    seq = g[G_SEQ]
    pos = M.write_header(fb, pkt, sess_hi, sess_lo, seq, 0)
    cnt = 0
    while (max_messages == 0 or cnt < max_messages) and pos + MAX_BLOCK <= limit:
        pos = next_message(fb, pos, g, p, inst, ords, mpids)
        cnt += 1
    put16(fb, pkt + M.OFF_COUNT, cnt)
    g[G_SEQ] = seq + cnt
    n = finish_frame(fb, base, tmpl, pos - pkt, g[G_PACKETS] & 0xFFFF)
    g[G_PACKETS] += 1
    return n


@njit(**_HOT)
def _count_packets(offsets, n, max_payload, max_messages):
    """How many packets ``_packetize`` makes of n messages (the same rule, lengths only)."""
    k = 0
    packets = 0
    while k < n:
        pos = M.HEADER_LEN
        cnt = 0
        while k < n and (max_messages == 0 or cnt < max_messages) \
                and pos + MAX_BLOCK <= max_payload:
            pos += offsets[k + 1] - offsets[k]
            k += 1
            cnt += 1
        packets += 1
    return packets


@njit(**_HOT)
def _stamp(words, stride, f, ts, size):
    w = f * (stride // 8)
    words[w + L.S_SEQ] = f
    words[w + L.S_TS] = ts
    words[w + L.S_LENS] = size | (size << 32)
    words[w + L.S_PORTQ] = 0


@njit(**_HOT)
def _packetize(stream, offsets, n, words, sb, stride, tmpl, max_payload, max_messages,
               sess_hi, sess_lo, day_ns, end_of_session):
    """Frames of the stream's n messages (then, if asked, the end-of-session packet) into slot
    records (seq = frame number, ts_ns, lengths); returns the number of frames."""
    k = 0
    f = 0
    seq = 1
    while k < n:
        base = f * stride + L.SLOT_HEADER_BYTES
        pkt = base + FRAME_HEADERS
        pos = M.write_header(sb, pkt, sess_hi, sess_lo, seq, 0)
        ts = day_ns + be48(stream, offsets[k] + 2 + I.TIMESTAMP)
        limit = pkt + max_payload
        cnt = 0
        while k < n and (max_messages == 0 or cnt < max_messages) and pos + MAX_BLOCK <= limit:
            for j in range(offsets[k], offsets[k + 1]):
                sb[pos] = stream[j]
                pos += 1
            k += 1
            cnt += 1
        put16(sb, pkt + M.OFF_COUNT, cnt)
        seq += cnt
        _stamp(words, stride, f, ts, finish_frame(sb, base, tmpl, pos - pkt, f & 0xFFFF))
        f += 1
    if end_of_session:
        # count 0xFFFF and the next sequence number, a microsecond after the last message
        base = f * stride + L.SLOT_HEADER_BYTES
        pkt = base + FRAME_HEADERS
        pos = M.write_header(sb, pkt, sess_hi, sess_lo, seq, M.COUNT_END)
        ts = day_ns + 1000
        if n > 0:
            ts += be48(stream, offsets[n - 1] + 2 + I.TIMESTAMP)
        _stamp(words, stride, f, ts, finish_frame(sb, base, tmpl, pos - pkt, f & 0xFFFF))
        f += 1
    return f


# --- the ring producer loop (synthetic.produce's pacing and overload conventions) -------------
ST_PACKETS = 0       # packets generated (published + dropped): the pacer's frame number
ST_PUBLISHED = 1
ST_DROPPED = 2
ST_BYTES = 3
ST_T0 = 4
ST_PACE_SEQ = 5
ST_SLEEP_NS = 6
ST_FULL_SPINS = 7
ST_BURSTS = 8
ST_MSGS_DROPPED = 9  # messages inside dropped packets
STATE_WORDS = 16
RET_COUNT, RET_DEADLINE, RET_CHUNK, RET_SLEEP = 0, 1, 2, 3
SLEEP_NS = 500_000
HOLD_NS = 20_000
CHUNK_NS = 20_000_000


@njit(**_HOT)
def produce(ctrl, words, slot_bytes, pstate, g, p, inst, ords, mpids, tmpl, max_payload,
            max_messages, sess_hi, sess_lo, scratch, st, limit, until_ns, chunk_ns, pkts_per_ns,
            hold_ns, max_backlog, burst, wait_full, portq):
    """Generate packets into the ring until ``limit`` packets (-1: none), ``until_ns``
    (CLOCK_REALTIME, 0: none) or for ``chunk_ns``; returns RET_*.  Pacing, hold, backlog and
    the full policies as in ``engine.producers.synthetic.produce``; one clock read per burst
    stamps it.  Lossless + drop: the packets that do not fit are still generated (into
    ``scratch``) so their messages use up their MoldUDP64 sequence numbers, and a consumer sees
    exactly the drops as a gap.  Single producer only."""
    now = now_ns()
    chunk_end = now + chunk_ns
    while True:
        seq = st[ST_PACKETS]
        if limit >= 0 and seq >= limit:
            return RET_COUNT
        if until_ns != 0 and now >= until_ns:
            return RET_DEADLINE
        if now >= chunk_end:
            return RET_CHUNK
        n = burst
        if limit >= 0 and limit - seq < n:
            n = limit - seq
        if pkts_per_ns > 0.0:
            done = seq - st[ST_PACE_SEQ]
            due = np.int64((now - st[ST_T0]) * pkts_per_ns) - done
            if due <= 0:
                wait = np.int64((done + 1) / pkts_per_ns) - (now - st[ST_T0])
                if until_ns != 0 and until_ns - now < wait:
                    wait = until_ns - now
                if wait > SLEEP_NS:
                    st[ST_SLEEP_NS] = wait
                    return RET_SLEEP
                now = now_ns()
                continue
            if due > max_backlog:
                st[ST_PACE_SEQ] -= due - max_backlog
                due = max_backlog
            if due < n:
                oldest = st[ST_T0] + np.int64((done + 1) / pkts_per_ns)
                if now - oldest < hold_ns:
                    now = now_ns()
                    continue
                n = due
        k = K.reserve(ctrl, words, pstate, n)
        if k < n:
            if wait_full:
                if k == 0:
                    st[ST_FULL_SPINS] += 1
                    now = now_ns()
                    continue
                n = k
            else:
                K.count_dropped(ctrl, pstate, n - k)
                st[ST_DROPPED] += n - k
        nbytes = 0
        for j in range(k):
            base = K.slot_base(pstate, j)
            size = build_live_frame(slot_bytes, (base + L.S_PAYLOAD) * 8, g, p, inst, ords,
                                    mpids, tmpl, max_payload, max_messages, sess_hi, sess_lo)
            words[base + L.S_TS] = now
            words[base + L.S_LENS] = size | (size << 32)
            words[base + L.S_PORTQ] = portq
            nbytes += size
        for j in range(k, n):
            m0 = g[G_MSGS]
            build_live_frame(scratch, 0, g, p, inst, ords, mpids, tmpl, max_payload,
                             max_messages, sess_hi, sess_lo)
            st[ST_MSGS_DROPPED] += g[G_MSGS] - m0
        if k > 0:
            K.submit(ctrl, words, pstate, k, now)
            st[ST_PUBLISHED] += k
            st[ST_BYTES] += nbytes
            st[ST_BURSTS] += 1
        st[ST_PACKETS] = seq + n
        now = now_ns()


# --- setup ------------------------------------------------------------------------------------
class FeedConfigError(ValueError):
    """A bad feed setting; ``key`` names it."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key


def symbol_name(i: int) -> str:
    """The i-th generated symbol: AAA, AAB, ... (base 26, at least three letters)."""
    s = ""
    while True:
        s = chr(65 + i % 26) + s
        i //= 26
        if i == 0:
            break
    return s.rjust(3, "A")


def _int(key, v, lo, hi):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
        raise FeedConfigError(key, f"expected an integer in {lo}..{hi}, got {v!r}")
    return int(v)


class Feed:
    """The generator's arrays (setup only; the hot code is ``next_message`` & co).

    ``instruments``: number of stocks (locate 1..n) or a list of symbols; ``seed``;
    ``live_orders``: the book size at which adds stop (default 100 per instrument);
    ``weights``: per-mille event weights (``DEFAULT_WEIGHTS`` keys; they must add up to 1000);
    ``mpid_permille``: adds with attribution (F); ``step_ns``: mean time between messages;
    ``halt_messages``: how long a halt lasts at least."""

    def __init__(self, instruments=64, seed: int = 0, live_orders: int | None = None,
                 weights: dict | None = None, mpid_permille: int = 100, step_ns: int = 200,
                 halt_messages: int = 2000):
        if isinstance(instruments, (int, np.integer)) and not isinstance(instruments, bool):
            n = _int("instruments", instruments, 1, 65535)
            names = [symbol_name(i) for i in range(n)]
        else:
            try:
                names = [s.decode() if isinstance(s, bytes) else str(s) for s in instruments]
            except TypeError:
                raise FeedConfigError("instruments", f"expected a count or a list of symbols, "
                                                     f"got {instruments!r}") from None
            n = len(names)
            if not 1 <= n <= 65535 or any(not 1 <= len(s) <= 8 or not s.isascii()
                                         for s in names) or len(set(names)) != n:
                raise FeedConfigError("instruments", "expected 1..65535 distinct ASCII symbols "
                                                     "of 1..8 characters")
        _int("seed", seed, 0, 2**64 - 1)
        live = 100 * n if live_orders is None else _int("live_orders", live_orders, 1, 1 << 26)
        w = dict(DEFAULT_WEIGHTS)
        if weights is not None:
            unknown = set(weights) - set(WEIGHT_NAMES)
            if unknown:
                raise FeedConfigError("weights", f"unknown event(s) {sorted(unknown)}; "
                                                 f"expected {list(WEIGHT_NAMES)}")
            w.update(weights)
        for k in WEIGHT_NAMES:
            _int(f"weights.{k}", w[k], 0, 1000)
        if sum(w.values()) != 1000 or w["add"] == 0:
            raise FeedConfigError("weights", f"expected per-mille weights adding up to 1000 "
                                             f"with add > 0, got {w}")
        self.names = names
        self.seed = int(seed)
        self.weights = w
        self.g = np.zeros(G_WORDS, np.int64)
        self.g[G_RNG] = np.uint64(int(seed) & (2**64 - 1)).astype(np.int64)
        self.g[G_NEXT_REF] = 1
        self.g[G_NEXT_MATCH] = 1
        self.g[G_NINST] = n
        self.g[G_SEQ] = 1
        self.p = np.zeros(P_WORDS, np.int64)
        for k, name in enumerate(WEIGHT_NAMES):
            self.p[k] = w[name]
        self.p[P_EVENTS:] = np.repeat(np.arange(len(WEIGHT_NAMES)),
                                      [w[name] for name in WEIGHT_NAMES])
        self.p[P_MPID_PERMILLE] = _int("mpid_permille", mpid_permille, 0, 1000)
        self.p[P_TARGET_LIVE] = live
        self.p[P_TICK] = 100
        self.p[P_STEP_NS] = _int("step_ns", step_ns, 1, 10**9)
        self.p[P_HALT_MSGS] = _int("halt_messages", halt_messages, 0, 1 << 40)
        self.p[P_HOT] = max(1, n // 8)
        rng = np.random.default_rng(self.seed)
        self.inst = np.zeros((n, I_WORDS), np.int64)
        self.inst[:, I_STOCK] = [I.symbol(s) for s in names]
        self.inst[:, I_MID] = rng.integers(500, 50_000, size=n) * 100      # $5 .. $500
        self.ords = np.zeros((live, O_WORDS), np.int64)
        self.mpids = np.array([I.alpha_word(m, 4) for m in MPIDS], np.int64)

    @property
    def preamble(self) -> int:
        return 2 * len(self.names) + 3

    @property
    def messages(self) -> int:
        return int(self.g[G_MSGS])

    def generate(self, n_messages: int):
        """The whole day as ``n_messages`` blocks: (buffer, offsets, stats).  Only on a fresh
        Feed (the day starts with its preamble and ends with its trailer)."""
        n = _int("n_messages", n_messages, self.preamble + 3, 1 << 40)
        if self.g[G_MSGS] != 0:
            raise RuntimeError("generate() needs a fresh Feed")
        buf = np.empty(n * MAX_BLOCK, np.uint8)
        offsets = np.empty(n + 1, np.int64)
        t = time.perf_counter()
        end = int(_generate(buf, offsets, n, self.g, self.p, self.inst, self.ords, self.mpids))
        elapsed = time.perf_counter() - t
        buf = buf[:end]
        return buf, offsets, self.stats(buf, offsets, elapsed)

    def stats(self, buf=None, offsets=None, elapsed: float | None = None) -> dict:
        out = {"messages": self.messages, "instruments": len(self.names), "seed": self.seed,
               "live_orders": int(self.g[G_NLIVE]), "max_live_orders": int(self.g[G_MAX_LIVE]),
               "order_refs": int(self.g[G_NEXT_REF] - 1),
               "match_numbers": int(self.g[G_NEXT_MATCH] - 1), "halts": int(self.g[G_HALTS]),
               "halted_now": int(self.inst[:, I_HALTED].sum()),
               "last_timestamp": int(self.g[G_CLOCK])}
        if buf is not None:
            types_ = buf[offsets[:-1] + 2]
            counts = np.bincount(types_, minlength=256)
            out["bytes"] = int(len(buf))
            out["by_type"] = {chr(t): int(counts[t]) for t in np.nonzero(counts)[0]}
        if elapsed is not None:
            out["elapsed_s"] = elapsed
            out["messages_per_s"] = out["messages"] / elapsed if elapsed > 0 else 0.0
        return out

    def live_orders(self) -> np.ndarray:
        """The live orders now, sorted by reference: (order_ref, locate, side, shares, price)."""
        n = int(self.g[G_NLIVE])
        o = self.ords[:n]
        out = np.zeros(n, dtype=[("order_ref", "i8"), ("locate", "i8"), ("side", "u1"),
                                 ("shares", "i8"), ("price", "i8")])
        out["order_ref"] = o[:, O_REF]
        out["locate"] = o[:, O_INST] + 1
        out["side"] = o[:, O_SIDE]
        out["shares"] = o[:, O_SHARES]
        out["price"] = o[:, O_PRICE]
        return np.sort(out, order="order_ref")


def generate(n_messages: int, instruments=64, seed: int = 0, **params):
    """``n_messages`` length-prefixed ITCH 5.0 messages: (buffer uint8, offsets int64[n + 1],
    stats dict).  ``params``: see ``Feed``."""
    return Feed(instruments, seed, **params).generate(n_messages)


def _mac(value, key) -> bytes:
    if isinstance(value, (bytes, bytearray)) and len(value) == 6:
        return bytes(value)
    try:
        b = bytes.fromhex(str(value).replace(":", "").replace("-", ""))
    except ValueError:
        b = b""
    if len(b) != 6:
        raise FeedConfigError(key, f"expected a MAC address like 02:00:00:00:00:01, "
                                   f"got {value!r}")
    return b


def _ipv4(value, key) -> int:
    try:
        return int(ipaddress.IPv4Address(value))
    except (ValueError, TypeError):
        raise FeedConfigError(key, f"expected an IPv4 address, got {value!r}") from None


def multicast_mac(ip: int) -> bytes:
    """The Ethernet address of an IPv4 multicast group (01:00:5e + the low 23 bits)."""
    return bytes([0x01, 0x00, 0x5E, (ip >> 16) & 0x7F, (ip >> 8) & 0xFF, ip & 0xFF])


class Framing:
    """Ethernet/IPv4/UDP + MoldUDP64 framing settings, validated at the edge.

    ``dst_ip`` defaults to a multicast group (and ``dst_mac`` to its group address);
    ``max_payload`` bounds the UDP payload (MoldUDP64 header + blocks; 1400 keeps frames under
    a 1500-byte MTU); ``max_messages`` caps the messages per packet (0: as many as fit)."""

    def __init__(self, session="HUGERING01", src_ip="10.1.0.1", dst_ip="233.54.12.1",
                 sport: int = 26400, dport: int = 26400, src_mac="02:00:00:00:00:01",
                 dst_mac=None, ttl: int = 64, max_payload: int = 1400, max_messages: int = 0):
        try:
            self.session = M.session_bytes(session)
        except (ValueError, UnicodeEncodeError, TypeError):
            raise FeedConfigError("session", f"expected up to 10 ASCII characters, "
                                             f"got {session!r}") from None
        self.src_ip, self.dst_ip = _ipv4(src_ip, "src_ip"), _ipv4(dst_ip, "dst_ip")
        self.sport = _int("sport", sport, 1, 65535)
        self.dport = _int("dport", dport, 1, 65535)
        self.src_mac = _mac(src_mac, "src_mac")
        if dst_mac is None:
            dst_mac = multicast_mac(self.dst_ip) if ipaddress.IPv4Address(self.dst_ip) \
                .is_multicast else "02:00:00:00:00:02"
        self.dst_mac = _mac(dst_mac, "dst_mac")
        self.ttl = _int("ttl", ttl, 1, 255)
        self.max_payload = _int("max_payload", max_payload, M.HEADER_LEN + MAX_BLOCK,
                                65535 - UDP_HLEN - IP_HLEN)
        self.max_messages = _int("max_messages", max_messages, 0, M.MAX_COUNT)
        self.sess_hi, self.sess_lo = M.session_words(self.session)

    @property
    def max_frame(self) -> int:
        return FRAME_HEADERS + self.max_payload

    def template(self) -> np.ndarray:
        """The 42 header bytes every frame starts from (lengths, id and checksums 0)."""
        ip = bytes([0x45, 0, 0, 0, 0, 0, 0x40, 0, self.ttl, 17, 0, 0]) + \
            self.src_ip.to_bytes(4, "big") + self.dst_ip.to_bytes(4, "big")
        udp = self.sport.to_bytes(2, "big") + self.dport.to_bytes(2, "big") + b"\0\0\0\0"
        return np.frombuffer(self.dst_mac + self.src_mac + b"\x08\x00" + ip + udp, np.uint8)


def packetize(buf: np.ndarray, offsets: np.ndarray, framing: Framing | None = None,
              slot_size: int = L.DEFAULT_SLOT_SIZE, day_ns: int = PCAP_DAY_NS,
              end_of_session: bool = True) -> np.ndarray:
    """A generated stream as MoldUDP64 packets in Ethernet/IPv4/UDP frames: an array of ring
    slot records (``seq`` = frame number, ``ts_ns`` = ``day_ns`` + the ITCH timestamp of the
    packet's first message).  ``end_of_session`` adds the end-of-session packet."""
    fr = framing or Framing()
    if fr.max_frame > slot_size:
        raise FeedConfigError("max_payload", f"frames of up to {fr.max_frame} B do not fit "
                                             f"{slot_size}-byte slots")
    n = len(offsets) - 1
    count = int(_count_packets(offsets, n, fr.max_payload, fr.max_messages)) + bool(end_of_session)
    slots = np.zeros(count, dtype=L.slot_dtype(slot_size))
    got = _packetize(buf, offsets, n, slots.view(np.int64), slots.view(np.uint8),
                     slots.dtype.itemsize, fr.template(), fr.max_payload, fr.max_messages,
                     fr.sess_hi, fr.sess_lo, int(day_ns), bool(end_of_session))
    assert got == count, (got, count)
    return slots


def write_pcap(path, n_messages: int, instruments=64, seed: int = 0,
               framing: Framing | None = None, end_of_session: bool = True, **params) -> dict:
    """Generate ``n_messages`` and write them as MoldUDP64/UDP frames to a pcap file (ns
    timestamps); returns the generator's stats plus ``packets`` and ``path``."""
    from parsers.pcap import write_pcap as _write
    fr = framing or Framing()
    buf, offsets, stats = generate(n_messages, instruments, seed, **params)
    slot_size = max(L.MIN_SLOT_SIZE, (fr.max_frame + 63) // 64 * 64)
    slots = packetize(buf, offsets, fr, slot_size=slot_size, end_of_session=end_of_session)
    stats["packets"] = _write(path, slots)
    stats["path"] = str(path)
    stats["dport"] = fr.dport
    return stats


class FeedProducer:
    """An ITCH 5.0 / MoldUDP64 feed generated straight into a ring, as its single producer.

    ``rate``: packets (frames) per second, None or 0 flat out; ``burst``: packets per
    reserve/submit; ``framing``: a ``Framing`` (or its keyword arguments in ``framing_args``);
    the rest (``instruments``, ``seed``, ``live_orders`` ...) configures the ``Feed``.  The
    ring's full policy decides overload: lossless + drop counts dropped packets (their messages
    still use up sequence numbers: a MoldUDP64 gap per drop), lossless + wait waits, lossy
    never waits.  ``run`` returns statistics; ``end_session`` publishes the day's last three
    system events and an end-of-session packet."""

    def __init__(self, ring: Ring, rate: float | None = 100_000, instruments=64, seed: int = 0,
                 burst: int = 32, framing: Framing | None = None, port: int = 0,
                 queue: int = 0, max_backlog: int | None = None,
                 framing_args: dict | None = None, **feed_params):
        if rate is None:
            rate = 0
        try:
            rate = float(rate)
        except (TypeError, ValueError):
            raise FeedConfigError("rate", f"expected packets per second, got {rate!r}") from None
        if not (0 <= rate < 1e10):
            raise FeedConfigError("rate", f"expected 0 (flat out) or packets per second, "
                                          f"got {rate!r}")
        self.framing = framing or Framing(**(framing_args or {}))
        if self.framing.max_frame > ring.slot_size:
            raise FeedConfigError("max_payload", f"frames of up to {self.framing.max_frame} B "
                                                 f"do not fit the ring's {ring.slot_size}-byte "
                                                 f"slots")
        self.burst = _int("burst", burst, 1, min(4096, ring.capacity))
        _int("port", port, 0, 65535)
        _int("queue", queue, 0, 65535)
        self.rate = rate
        self.max_backlog = int(max_backlog if max_backlog is not None
                               else max(4 * burst, int(rate / 100)))
        self.feed = Feed(instruments, seed, **feed_params)
        self.tmpl = self.framing.template()
        self.scratch = np.zeros(self.framing.max_frame + 64, np.uint8)
        self.portq = port | (queue << 16)
        self.state = np.zeros(STATE_WORDS, np.int64)
        self.ring = ring
        self.producer = Producer(ring)
        self.wait_full = bool(ring.mode == L.MODE_LOSSLESS and ring.full_policy == L.FULL_WAIT)
        self._closed = False

    def _call(self, limit, until_ns, chunk_ns):
        f, fr, pr = self.feed, self.framing, self.producer
        return produce(pr.ctrl, pr.words, pr.slot_bytes, pr.pstate, f.g, f.p, f.inst, f.ords,
                       f.mpids, self.tmpl, fr.max_payload, fr.max_messages, fr.sess_hi,
                       fr.sess_lo, self.scratch, self.state, limit, until_ns, chunk_ns,
                       self.rate / 1e9, HOLD_NS, self.max_backlog, self.burst, self.wait_full,
                       self.portq)

    def warmup(self) -> float:
        t = time.perf_counter()
        self._call(int(self.state[ST_PACKETS]), 0, 0)
        return time.perf_counter() - t

    def run(self, count: int | None = None, duration: float | None = None, stop=None) -> dict:
        """Publish ``count`` packets (published + dropped), or for ``duration`` seconds, or
        until ``stop()`` is true (checked every 20 ms) or Ctrl-C.  Calling again continues."""
        if count is not None:
            _int("count", count, 0, 1 << 62)
        if duration is not None and not (isinstance(duration, (int, float)) and duration >= 0):
            raise FeedConfigError("duration", f"expected seconds >= 0, got {duration!r}")
        st, g = self.state, self.feed.g
        first = int(st[ST_PACKETS])
        before, msgs0, seq0 = st.copy(), int(g[G_MSGS]), int(g[G_SEQ])
        limit = first + count if count is not None else -1
        start = time.time_ns()
        until = start + int(duration * 1e9) if duration is not None else 0
        if duration is not None and until == start:
            limit = first
        st[ST_T0] = start
        st[ST_PACE_SEQ] = first
        t0 = time.perf_counter()
        why = "stop"
        try:
            while True:
                r = self._call(limit, until, CHUNK_NS)
                if r == RET_COUNT:
                    why = "count"
                    break
                if r == RET_DEADLINE:
                    why = "duration"
                    break
                if r == RET_SLEEP:
                    K.producer_idle(self.producer.ctrl, self.producer.pstate, time.time_ns())
                    time.sleep(min(0.05, max(0.0, (int(st[ST_SLEEP_NS]) - 200_000) / 1e9)))
                if stop is not None and stop():
                    break
        except KeyboardInterrupt:
            why = "interrupt"
        elapsed = time.perf_counter() - t0
        published = int(st[ST_PUBLISHED] - before[ST_PUBLISHED])
        messages = int(g[G_MSGS]) - msgs0
        return {
            "ring": self.ring.name, "stopped_by": why,
            "packets": int(st[ST_PACKETS]) - first, "published": published,
            "dropped": int(st[ST_DROPPED] - before[ST_DROPPED]),
            "messages": messages,
            "messages_dropped": int(st[ST_MSGS_DROPPED] - before[ST_MSGS_DROPPED]),
            "bytes": int(st[ST_BYTES] - before[ST_BYTES]),
            "bursts": int(st[ST_BURSTS] - before[ST_BURSTS]),
            "first_sequence": seq0, "next_sequence": int(g[G_SEQ]),
            "elapsed_s": elapsed, "target_pps": self.rate or None,
            "rate_pps": published / elapsed if elapsed > 0 else 0.0,
            "messages_per_s": messages / elapsed if elapsed > 0 else 0.0,
        }

    def end_session(self, timeout: float | None = 1.0) -> int:
        """Publish the day's end (S M, S E, S C in one packet) and an end-of-session packet;
        returns how many of the two frames were published."""
        fr, g = self.framing, self.feed.g
        frames = []
        buf = np.zeros(fr.max_frame + 64, np.uint8)
        pkt = FRAME_HEADERS
        pos = M.write_header(buf, pkt, fr.sess_hi, fr.sess_lo, int(g[G_SEQ]), 0)
        cnt = 0
        while True:
            nxt = trailer_message(buf, pos, g)
            if nxt < 0:
                break
            pos, cnt = nxt, cnt + 1
        if cnt:
            put16(buf, pkt + M.OFF_COUNT, cnt)
            g[G_SEQ] += cnt
            n = finish_frame(buf, 0, self.tmpl, pos - pkt, int(g[G_PACKETS]) & 0xFFFF)
            g[G_PACKETS] += 1
            frames.append(buf[:n].tobytes())
        buf[:] = 0
        pos = M.write_header(buf, pkt, fr.sess_hi, fr.sess_lo, int(g[G_SEQ]), M.COUNT_END)
        n = finish_frame(buf, 0, self.tmpl, pos - pkt, int(g[G_PACKETS]) & 0xFFFF)
        g[G_PACKETS] += 1
        frames.append(buf[:n].tobytes())
        return self.producer.publish(frames, timeout=timeout)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.producer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.producers.itch_feed",
                                 description="Generate a deterministic ITCH 5.0 feed.")
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--instruments", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--live-orders", type=int, default=None)
    ap.add_argument("--pcap", help="write MoldUDP64/UDP frames to this pcap file")
    ap.add_argument("--dport", type=int, default=26400)
    ap.add_argument("--max-payload", type=int, default=1400)
    ap.add_argument("--bench", action="store_true", help="report generation throughput")
    a = ap.parse_args(argv)
    try:
        if a.pcap:
            stats = write_pcap(a.pcap, a.messages, a.instruments, a.seed,
                               framing=Framing(dport=a.dport, max_payload=a.max_payload),
                               live_orders=a.live_orders)
            print(f"wrote {stats['packets']} packets, {stats['messages']} messages to {a.pcap}")
        if a.bench or not a.pcap:
            feed = Feed(a.instruments, a.seed, live_orders=a.live_orders)
            feed.generate(feed.preamble + 3)                    # compile / load the cache
            _b, _o, stats = generate(a.messages, a.instruments, a.seed,
                                     live_orders=a.live_orders)
            print(f"{stats['messages']} messages in {stats['elapsed_s']:.3f} s: "
                  f"{stats['messages_per_s'] / 1e6:.1f} M messages/s, {stats['bytes']} bytes; "
                  f"by type {stats['by_type']}")
    except FeedConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
