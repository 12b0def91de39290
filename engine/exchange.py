"""The example exchange: an order-entry generator, and the matching engine between two rings.

    order flow  ──UDP frames of order-entry messages──►  ring ORDERS
    exchange    ◄──peek/release── ORDERS;  engine.matching;  ITCH 5.0 over MoldUDP64 ──► ring FEED
    strategies  ◄── FEED (examples/itch_strategy.py, under the engine's consumer loop)

Order entry on the wire: each UDP payload is a run of blocks, a big-endian u16 length then one
order-entry message of ``engine.matching`` (the OUCH-5.0-like 'O' enter, 'U' replace, 'X'
cancel), inside Ethernet/IPv4/UDP frames (``engine.producers.itch_feed.finish_frame``).

The order-flow generator (``order_flow``) is seeded and deterministic: per instrument a mid
price random walk (one tick = $0.01), day limit orders around the mid -- some priced through
it, which trade -- a few market and IOC orders, cancels (full or partial) and replaces of
recent orders.  Cancels and replaces pick from the last ``RECENT`` orders it entered; some of
those have filled meanwhile and the engine rejects them (``rej_unknown_ref``): a late cancel,
as on a real venue.

The exchange loop (``exchange_run``) peeks a burst of order frames in place, sets the engine's
clock once per burst, applies every message (``process_entry``), then cuts the ITCH output
into MoldUDP64 packets (one session, sequence numbers from 1) and publishes them into the feed
ring, waiting when a lossless feed ring is full; the feed slots' timestamps are the publish
time, so a consumer's latency histogram measures exchange publish -> strategy handler.
"""
from __future__ import annotations

import time

import numpy as np
from numba import njit

from engine import matching as MX
from engine.producers.itch_feed import FRAME_HEADERS, Framing, finish_frame
from parsers import itch as I
from parsers import moldudp64 as M
from shm import kernels as K
from shm import layout as L
from shm.clock import now_ns, sleep_ns

_HOT = dict(cache=True, nogil=True)
TICK = 100                 # $0.01 in Price(4)
RECENT = 4096              # cancels and replaces pick among the last RECENT orders entered

# generator state words (g)
G_RNG, G_NEXT_REF, G_ENTERED, G_CANCELS, G_REPLACES, G_MARKET, G_MESSAGES, G_FRAMES, \
    G_RECENT_N = range(9)
G_WORDS = 16

# exchange state words (x)
X_FRAMES_IN, X_ENTRIES_IN, X_BAD_FRAMES, X_MSGS_OUT, X_PACKETS_OUT, X_FULL_WAITS, X_SEQ, \
    X_BYTES_OUT, X_LAST_PUBLISH_NS, X_EVICTED = range(10)
X_WORDS = 16
X_NAMES = ("frames_in", "entries_in", "bad_frames", "messages_out", "packets_out",
           "full_waits", "next_sequence", "bytes_out", "last_publish_ns", "evicted_rejoins")

# exchange_run statuses
XR_STOP, XR_CHUNK, XR_DEADLINE = 0, 1, 2


@njit(**_HOT)
def _rand(g):
    # xorshift64*: the generator's own stream (deterministic per seed, no numpy RNG state)
    x = g[G_RNG]
    x ^= (x >> 12) & 0x000FFFFFFFFFFFFF
    x ^= x << 25
    x ^= (x >> 27) & 0x0000001FFFFFFFFF
    g[G_RNG] = x
    return (x * 2685821657736338717) >> 33 & 0x7FFFFFFF


@njit(**_HOT)
def next_order(buf, off, g, mids, recent):
    """Append one order-entry message at ``buf[off:]`` (a u16 length then the message);
    returns the new offset.  ``mids``: the mid price per locate (index 0 unused);
    ``recent``: [RECENT, 4] (user ref, locate, side, price) of orders entered."""
    n_inst = mids.shape[0] - 1
    loc = 1 + _rand(g) % n_inst
    if _rand(g) % 16 == 0:                          # the mid walks a tick now and then
        mids[loc] += TICK if _rand(g) & 1 else -TICK
        if mids[loc] < 20 * TICK:
            mids[loc] = 20 * TICK
    r = _rand(g) % 100
    nr = g[G_RECENT_N]
    g[G_MESSAGES] += 1
    if r < 30 and nr > 0:                           # cancel a recent order (often too late)
        k = _rand(g) % min(nr, RECENT)
        j = (nr - 1 - k) % RECENT
        qty = 0 if _rand(g) % 4 else 100 * (1 + _rand(g) % 3)
        I.put16(buf, off, MX.EX_LEN)
        g[G_CANCELS] += 1
        return MX.put_cancel(buf, off + 2, recent[j, 0], qty)
    if r < 38 and nr > 0:                           # replace: a tick away, a new size
        k = _rand(g) % min(nr, RECENT)
        j = (nr - 1 - k) % RECENT
        ref = g[G_NEXT_REF]
        g[G_NEXT_REF] = ref + 1
        side = recent[j, 2]
        price = recent[j, 3] + (TICK if _rand(g) & 1 else -TICK)
        if price < TICK:
            price = TICK
        I.put16(buf, off, MX.EU_LEN)
        o = MX.put_replace(buf, off + 2, recent[j, 0], ref, 100 * (1 + _rand(g) % 10), price)
        recent[j, 0] = ref
        recent[j, 3] = price
        g[G_REPLACES] += 1
        return o
    ref = g[G_NEXT_REF]
    g[G_NEXT_REF] = ref + 1
    side = 66 if _rand(g) & 1 else 83               # 'B' / 'S'
    qty = 100 * (1 + _rand(g) % 10)
    mid = mids[loc]
    if r < 42:                                      # market or IOC: takes liquidity
        g[G_MARKET] += 1
        I.put16(buf, off, MX.EO_LEN)
        if r < 40:
            return MX.put_enter(buf, off + 2, ref, side, qty, loc, mid, 48, 77)   # '0' 'M'
        p = mid + 3 * TICK if side == 66 else mid - 3 * TICK
        return MX.put_enter(buf, off + 2, ref, side, qty, loc, p, 51, 76)         # '3' 'L'
    # day limit: most rest 1..10 ticks away on their side; one in eight crosses by a tick
    d = (1 + _rand(g) % 10) * TICK
    if _rand(g) % 8 == 0:
        d = -TICK
    price = mid - d if side == 66 else mid + d
    if price < TICK:
        price = TICK
    j = nr % RECENT
    recent[j, 0] = ref
    recent[j, 1] = loc
    recent[j, 2] = side
    recent[j, 3] = price
    g[G_RECENT_N] = nr + 1
    g[G_ENTERED] += 1
    I.put16(buf, off, MX.EO_LEN)
    return MX.put_enter(buf, off + 2, ref, side, qty, loc, price, 48, 76)         # '0' 'L'


@njit(**_HOT)
def order_frames(ctrl, words, slot_bytes, pstate, g, mids, recent, fb, tmpl, per_frame,
                 limit, rate_fps, t0, until_ns, chunk_ns):
    """Publish order frames (``per_frame`` messages each) into the orders ring, paced at
    ``rate_fps`` frames/s from ``t0`` (0: flat out), until ``limit`` frames in all or
    ``until_ns``; returns after about ``chunk_ns`` (1 = call again, 0 = done).  Lossless
    rings wait when full (no order is ever dropped: a venue does not lose order entry)."""
    t = now_ns()
    end_chunk = t + chunk_ns
    while g[G_FRAMES] < limit or limit == 0:
        if until_ns > 0 and t >= until_ns:
            return 0
        if t >= end_chunk:
            return 1
        if rate_fps > 0:
            due = t0 + g[G_FRAMES] * 1_000_000_000 // rate_fps
            if t < due:
                t = now_ns()
                continue
        pos = FRAME_HEADERS
        for _ in range(per_frame):
            pos = next_order(fb, pos, g, mids, recent)
        n = finish_frame(fb, 0, tmpl, pos - FRAME_HEADERS, g[G_FRAMES] & 0xFFFF)
        while K.reserve(ctrl, words, pstate, 1) < 1:
            K.producer_idle(ctrl, pstate, now_ns())
            t = now_ns()
            if until_ns > 0 and t >= until_ns:
                return 0
        K.write_slot(words, slot_bytes, pstate, 0, fb, n, n, t, 0, 0)
        K.submit(ctrl, words, pstate, 1, t)
        g[G_FRAMES] += 1
        t = now_ns()
    return 0


@njit(**_HOT)
def _publish(octrl, owords, oslots, opstate, fb, tmpl, out, out_end, x, sess_hi, sess_lo,
             max_payload, deadline_ns):
    """Cut ``out[0:out_end]`` (ITCH blocks) into MoldUDP64 packets and publish them."""
    pos_in = 0
    while pos_in < out_end:
        pkt = FRAME_HEADERS
        pos = M.begin_packet(fb, pkt, pkt + max_payload, sess_hi, sess_lo, x[X_SEQ])
        cnt = 0
        while pos_in < out_end:
            ln = (np.int64(out[pos_in]) << 8) | out[pos_in + 1]
            nxt = M.append_message(fb, pkt, pos, pkt + max_payload, out, pos_in + 2, ln)
            if nxt < 0:
                break
            pos = nxt
            pos_in += 2 + ln
            cnt += 1
        n = finish_frame(fb, 0, tmpl, pos - pkt, x[X_PACKETS_OUT] & 0xFFFF)
        while K.reserve(octrl, owords, opstate, 1) < 1:
            x[X_FULL_WAITS] += 1
            t = now_ns()
            K.producer_idle(octrl, opstate, t)
            if t >= deadline_ns:
                return -1                       # the caller checks its stop flag, retries
        t = now_ns()
        K.write_slot(owords, oslots, opstate, 0, fb, n, n, t, 0, 0)
        K.submit(octrl, owords, opstate, 1, t)
        x[X_SEQ] += cnt
        x[X_MSGS_OUT] += cnt
        x[X_PACKETS_OUT] += 1
        x[X_BYTES_OUT] += n
        x[X_LAST_PUBLISH_NS] = t
    return 0


@njit(**_HOT)
def exchange_run(ictrl, iwords, islots, icstate, istride, islot_size, icap, e, octrl, owords,
                 oslots, opstate, fb, tmpl, out, x, sess_hi, sess_lo, max_payload, stop,
                 deadline_ns, chunk_ns, max_burst, idle_sleep_ns):
    """The exchange's loop (see the module docstring); returns XR_* after about ``chunk_ns``
    or when ``stop[0]`` is set / ``deadline_ns`` passes.  ``idle_sleep_ns`` > 0: after 1000
    empty polls, sleep that long between polls (a shared machine); 0 busy-polls."""
    mask = icap - 1
    t = now_ns()
    end_chunk = t + chunk_ns
    empty = 0
    while True:
        k = K.peek(ictrl, icstate, max_burst)
        if k < 0:
            K.rejoin(ictrl, icstate, now_ns())
            x[X_EVICTED] += 1
            continue
        if k == 0:
            empty += 1
            if (empty & 255) == 0:
                if stop[0] != 0:
                    return XR_STOP
                t = now_ns()
                if deadline_ns > 0 and t >= deadline_ns:
                    return XR_DEADLINE
                if t >= end_chunk:
                    return XR_CHUNK
            if idle_sleep_ns > 0 and empty > 1000:
                sleep_ns(idle_sleep_ns)
            continue
        empty = 0
        t = now_ns()
        MX.set_clock(e, t % 86_400_000_000_000)
        first = icstate[K.CS_CURSOR]
        o = 0
        for f in range(k):
            sb = ((first + f) & mask) * istride
            cap = (np.int64(islots[sb + 20]) | (np.int64(islots[sb + 21]) << 8)
                   | (np.int64(islots[sb + 22]) << 16) | (np.int64(islots[sb + 23]) << 24))
            if cap > islot_size:
                cap = islot_size
            base = sb + L.SLOT_HEADER_BYTES
            end = base + cap
            x[X_FRAMES_IN] += 1
            # Ethernet II / IPv4 without options / UDP: what order_frames writes
            if cap < FRAME_HEADERS or islots[base + 12] != 8 or islots[base + 13] != 0 \
                    or islots[base + 14] != 0x45 or islots[base + 23] != 17:
                x[X_BAD_FRAMES] += 1
                continue
            p = base + FRAME_HEADERS
            while p + 2 <= end:
                ln = (np.int64(islots[p]) << 8) | islots[p + 1]
                if ln == 0 or p + 2 + ln > end:
                    x[X_BAD_FRAMES] += 1
                    break
                if out.shape[0] - o < MX.MIN_ROOM + 64 * MX.FILL_ROOM:
                    if _publish(octrl, owords, oslots, opstate, fb, tmpl, out, o, x, sess_hi,
                                sess_lo, max_payload, (1 << 62)) < 0:
                        return XR_STOP
                    o = 0
                r = MX.process_entry(e, islots, p + 2, p + 2 + ln, out, o)
                if r >= 0:
                    o = r
                x[X_ENTRIES_IN] += 1
                p += 2 + ln
        while o > 0:
            if _publish(octrl, owords, oslots, opstate, fb, tmpl, out, o, x, sess_hi, sess_lo,
                        max_payload, now_ns() + 50_000_000) == 0:
                break
            if stop[0] != 0:
                return XR_STOP
        K.release(ictrl, icstate, k)
        if stop[0] != 0:
            return XR_STOP
        if t >= end_chunk:
            return XR_CHUNK
        if deadline_ns > 0 and t >= deadline_ns:
            return XR_DEADLINE


# --- setup ---------------------------------------------------------------------------------
class OrderFlow:
    """The order-entry generator as the orders ring's producer (setup; the loop is
    ``order_frames``)."""

    def __init__(self, ring, instruments: int = 16, seed: int = 1, per_frame: int = 4,
                 framing: Framing | None = None):
        from shm.ring import Producer
        self.ring = ring
        self.producer = Producer(ring)
        self.g = np.zeros(G_WORDS, np.int64)
        self.g[G_RNG] = (seed * 0x9E3779B97F4A7C15 + 1) & 0x7FFFFFFFFFFFFFFF or 1
        self.g[G_NEXT_REF] = 1
        rng = np.random.default_rng(seed)
        self.mids = np.zeros(instruments + 1, np.int64)
        self.mids[1:] = rng.integers(20, 500, instruments) * 100 * TICK     # $20..$500
        self.recent = np.zeros((RECENT, 4), np.int64)
        self.framing = framing or Framing(session="ORDERS", dport=26401)
        self.tmpl = self.framing.template()
        self.fb = np.zeros(FRAME_HEADERS + per_frame * (2 + MX.EO_LEN) + 64, np.uint8)
        self.per_frame = per_frame

    def run(self, frames: int | None = None, rate_fps: float = 0, duration: float | None = None,
            stop=None) -> dict:
        p = self.producer
        t0 = now_ns()
        until = t0 + int(duration * 1e9) if duration else 0
        limit = int(self.g[G_FRAMES]) + int(frames) if frames else 0
        while order_frames(p.ctrl, p.words, p.slot_bytes, p.pstate, self.g, self.mids,
                           self.recent, self.fb, self.tmpl, self.per_frame, limit,
                           int(rate_fps), t0, until, 20_000_000):
            if stop is not None and stop():
                break
        return {"frames": int(self.g[G_FRAMES]), "messages": int(self.g[G_MESSAGES]),
                "entered": int(self.g[G_ENTERED]), "cancels": int(self.g[G_CANCELS]),
                "replaces": int(self.g[G_REPLACES]), "market_ioc": int(self.g[G_MARKET])}

    def close(self) -> None:
        self.producer.close()


class Exchange:
    """The matching engine between the orders ring (a consumer) and the feed ring (its
    producer).  ``stop`` is an int64 array whose word 0 stops the loop when set (it may live
    in shared memory)."""

    def __init__(self, orders_ring, feed_ring, instruments: int = 16, max_orders: int = 1 << 18,
                 max_levels: int = 256, burst: int = 32, framing: Framing | None = None,
                 stop: np.ndarray | None = None, idle_sleep_us: int = 0):
        from shm.ring import Consumer, Producer
        self.engine = MX.MatchingEngine(instruments, max_orders, max_levels)
        self.orders, self.feed = orders_ring, feed_ring
        self.framing = framing or Framing(session="HUGERING01")
        if self.framing.max_frame > feed_ring.slot_size:
            raise ValueError(f"feed ring slots ({feed_ring.slot_size} B) are smaller than a "
                             f"feed frame ({self.framing.max_frame} B)")
        self.tmpl = self.framing.template()
        self.fb = np.zeros(self.framing.max_frame + 64, np.uint8)
        self.out = np.zeros(1 << 20, np.uint8)
        self.x = np.zeros(X_WORDS, np.int64)
        self.x[X_SEQ] = 1
        self.stop = np.zeros(1, np.int64) if stop is None else stop
        self.burst = burst
        self.idle_sleep_ns = int(idle_sleep_us) * 1000
        self.producer = Producer(feed_ring)
        self.consumer = Consumer(orders_ring)

    def run(self, duration: float | None = None, on_chunk=None) -> dict:
        o, c, p, f = self.orders, self.consumer, self.producer, self.framing
        deadline = now_ns() + int(duration * 1e9) if duration else 0
        while True:
            st = exchange_run(o.ctrl, o.words, o.slot_bytes, c.cstate, o.slot_stride,
                              o.slot_size, o.capacity, self.engine.state, p.ctrl, p.words,
                              p.slot_bytes, p.pstate, self.fb, self.tmpl, self.out, self.x,
                              f.sess_hi, f.sess_lo, f.max_payload, self.stop, deadline,
                              20_000_000, self.burst, self.idle_sleep_ns)
            if st != XR_CHUNK:
                break
            if on_chunk is not None and on_chunk(self) is False:
                break
        return self.report()

    def report(self) -> dict:
        out = {name: int(self.x[i]) for i, name in enumerate(X_NAMES)}
        out["engine"] = self.engine.counters()
        return out

    def close(self) -> None:
        self.consumer.close()
        self.producer.close()


def wait_for(pred, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise TimeoutError(f"{what} not ready after {timeout:g} s")
        time.sleep(0.01)
