"""An example strategy handler: a toy momentum signal on a UDP feed, run by the engine.

``hugering run examples/strategy.yaml`` (synthetic feed) or ``examples/replay.yaml`` (a
recorded capture) starts a consumer process whose compiled poll loop calls ``on_burst`` for
every burst that passed the consumer's filter.  Copy this file to start your own: the
signature is the engine's handler contract (``engine.loop``)::

    on_burst(recs, frames, bases, sel, n, now, state) -> int

* ``recs[i]``   the parsed record of burst packet ``i`` (``parsers.record``: ports, addresses,
  ``payload_off``/``payload_len`` relative to the frame, ...);
* ``frames``    the ring's slot area (uint8, read-only); packet ``i``'s frame starts at
  ``frames[bases[i]]``, its slot header (sequence number, timestamp) 32 bytes before;
* ``sel[0:n]``  the burst indices that passed the filter, in ring order;
* ``now``       CLOCK_REALTIME ns, read once for the burst just before the call;
* ``state``     this consumer's int64 array (``state_size`` words from the YAML), kept
  across bursts -- the only memory a handler should write;
* returns the number of packets handled: fewer counts the rest as handler errors, a
  negative value stops the consumer.

It must be ``@njit``: it is compiled into the loop (no Python objects, no allocation --
``tests/test_engine.py`` counts NRT allocations across the whole loop).

What it computes, per packet with at least 16 bytes of UDP payload: the payload's second
big-endian u64 is read as a price (the synthetic producer puts a sequence number there, so
its "price" rises by one per packet of a producer); an up-tick extends a streak, anything
else resets it; a streak of ``STREAK`` up-ticks emits one "buy signal".  A sequence gap of the
synthetic producer's (producer id, seq) stamp is counted too -- the feed-integrity check a
market-data consumer does first.
"""
from numba import njit

STREAK = 3

# state words
S_PACKETS = 0        # packets seen by the handler
S_BYTES = 1          # payload bytes
S_LAST_PRICE = 2     # last price seen
S_STREAK = 3         # current run of up-ticks
S_SIGNALS = 4        # buy signals emitted
S_GAPS = 5           # sequence gaps (price != last + 1 after the first packet)
S_FIRST = 6          # 1 once a price has been seen
STATE_WORDS = 8


@njit(cache=True, inline="always")
def _be64(frames, p):
    v = 0
    for k in range(8):
        v = (v << 8) | frames[p + k]
    return v


@njit(cache=True)
def on_burst(recs, frames, bases, sel, n, now, state):
    for j in range(n):
        i = sel[j]
        rec = recs[i]
        state[S_PACKETS] += 1
        plen = rec.payload_len
        if rec.ip_proto != 17 or plen < 16 or rec.payload_off < 0:
            continue
        state[S_BYTES] += plen
        price = _be64(frames, bases[i] + rec.payload_off + 8)
        if state[S_FIRST] != 0:
            if price != state[S_LAST_PRICE] + 1:
                state[S_GAPS] += 1
            if price > state[S_LAST_PRICE]:
                state[S_STREAK] += 1
                if state[S_STREAK] == STREAK:
                    state[S_SIGNALS] += 1
                    state[S_STREAK] = 0
            else:
                state[S_STREAK] = 0
        state[S_FIRST] = 1
        state[S_LAST_PRICE] = price
    return n


def describe(state) -> dict:
    """The state words by name (what the engine prints at exit)."""
    return {"packets": int(state[S_PACKETS]), "payload_bytes": int(state[S_BYTES]),
            "last_price": int(state[S_LAST_PRICE]), "signals": int(state[S_SIGNALS]),
            "sequence_gaps": int(state[S_GAPS])}
