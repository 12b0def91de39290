"""MoldUDP64: packet parser, in-place packet builder and a per-session gap tracker, all ``@njit``.

Packet (UDP payload; big-endian)::

    0   session         alpha(10)  session name (ASCII)
    10  sequence        u64        sequence number of the first message in the packet
    18  count           u16        message blocks that follow; 0 heartbeat, 0xFFFF end of session
    20  blocks:  length u16, then ``length`` bytes of message, ``count`` times

A heartbeat's (and an end-of-session packet's) sequence number is the next one the server will
send, so a heartbeat reveals a gap too.  A re-request (client to server) has the same 20-byte
layout with ``count`` the number of messages wanted (``encode_request``).

Parsing
-------
``parse_packet(buf, off, end, hdr) -> blocks | -1`` fills ``hdr`` (a ``PACKET_DTYPE`` record)
and walks the blocks: ``blocks`` complete blocks lie in ``buf[hdr.first_block:hdr.end]``.  -1
when the 20-byte header itself is cut.  Flags say what else was wrong: fewer complete blocks than
``count`` (``PF_TRUNCATED``; pass ``blocks`` to the tracker and the lost tail becomes a gap),
bytes after the last block (``PF_TRAILING``).  Never reads outside ``buf[off:end]``.

Gap tracking
------------
One int64 array (``new_tracker``) holds everything: a header, ``max_sessions`` session lines
(keyed by the 10-byte session id; ``session_index`` finds or adds one) and a ring of gap events.
The layout is ``TRACKER_FIELDS`` / ``SESSION_FIELDS`` below.  ``track(state, idx, seq, count)``
classifies one packet of session ``idx`` against ``expected`` (the sequence number after the
highest one delivered) and the session's table of outstanding gaps (missing ranges, ascending,
never adjacent):

``A_IN_ORDER``   ``seq == expected``: deliver all, ``expected += count``.
``A_GAP``        ``seq > expected``: the range ``[expected, seq)`` is missing: counted (gap
                 events, missing messages), added to the gap table and logged for a re-request
                 hook (``SS_OUT_GAP_FIRST/COUNT`` and the tracker's gap log); deliver all.
``A_DUPLICATE``  every message was seen (or its gap abandoned): deliver nothing.
``A_LATE``       the packet fills (part of) an outstanding gap: deliver the first run of new
                 messages in it; those from the gap count as recovered and leave the table.
``A_OVERLAP``    starts before ``expected`` and ends after it, no gap in it: deliver only the
                 messages from ``expected`` on.
``A_HEARTBEAT`` / ``A_END_OF_SESSION``  count 0 / 0xFFFF: no messages; a sequence number ahead
                 of ``expected`` records a gap as above (check ``SS_OUT_GAP_COUNT``).

What to deliver is always one contiguous run of the packet's messages: indices
``[SS_OUT_FROM, SS_OUT_TO)`` of its blocks.  New messages after an already-seen stretch (a
repackaged retransmission spanning a gap and delivered messages) are not delivered; they stay
missing (or ahead of ``expected``) and come again.  Every message of every packet is accounted
exactly once: ``delivered + skipped == messages``.  The gap table holds ``max_gaps`` ranges per
session; when it is full the oldest range is abandoned (counted; its messages are then treated
as seen), and a split that needs room abandons the lower part of the range being split.

Who may call: one thread per tracker array (plain loads and stores; no atomics).
"""
from __future__ import annotations

import sys

import numpy as np
from numba import njit

from .itch import be8, be16, be64, put8, put16, put64

# --- the packet table ---------------------------------------------------------------------------
# (name, offset, size, kind, meaning)
HEADER = [
    ("session", 0, 10, "alpha", "session name, ASCII"),
    ("sequence", 10, 8, "u8", "sequence number of the first message (heartbeat: the next one)"),
    ("count", 18, 2, "u2", "message blocks that follow; 0 heartbeat, 0xFFFF end of session"),
]
BLOCK = [
    ("length", 0, 2, "u2", "bytes of message that follow"),
    ("message", 2, None, "bytes", "the message (one ITCH message)"),
]
OFF_SESSION, OFF_SEQUENCE, OFF_COUNT = (f[1] for f in HEADER)
HEADER_LEN = 20
SESSION_LEN = 10
BLOCK_HEADER = 2
COUNT_HEARTBEAT = 0
COUNT_END = 0xFFFF
MAX_COUNT = 0xFFFE                # data packets carry at most this many messages
assert [f[1] for f in HEADER] == [0, 10, 18] and sum(f[2] for f in HEADER) == HEADER_LEN

# parse_packet flags
PF_HEARTBEAT = 1        # count 0
PF_END_OF_SESSION = 2   # count 0xFFFF
PF_TRUNCATED = 4        # fewer complete blocks than count (a block cut, or missing)
PF_TRAILING = 8         # bytes after the last of count blocks
FLAG_NAMES = {PF_HEARTBEAT: "heartbeat", PF_END_OF_SESSION: "end_of_session",
              PF_TRUNCATED: "truncated", PF_TRAILING: "trailing"}

# the parsed header record: (name, numpy type, meaning)
PACKET_FIELDS = [
    ("session_hi", "i8", "session bytes 0..7 as a big-endian word (session_words)"),
    ("session_lo", "i8", "session bytes 8..9 as a big-endian word"),
    ("sequence", "i8", "sequence number field"),
    ("count", "i8", "message count field as sent"),
    ("blocks", "i8", "complete message blocks found (<= count; 0 heartbeat / end of session)"),
    ("first_block", "i8", "absolute offset of the first block (off + 20)"),
    ("end", "i8", "absolute offset after the last complete block"),
    ("flags", "i8", "PF_* bits"),
    ("session", "(10,)u1", "session name bytes"),
]
PACKET_DTYPE = np.dtype({"names": [f[0] for f in PACKET_FIELDS],
                         "formats": [f[1] for f in PACKET_FIELDS],
                         "offsets": [8 * i for i in range(len(PACKET_FIELDS))],
                         "itemsize": 8 * len(PACKET_FIELDS) + 8})

# --- the tracker table (int64 words) -------------------------------------------------------------
# (name, word, meaning).  The tracker is [header][session 0]...[session max-1][gap log].
TRACKER_FIELDS = [
    ("max_sessions", 0, "session lines"),
    ("max_gaps", 1, "outstanding gap ranges per session"),
    ("log_capacity", 2, "entries in the gap-event ring"),
    ("sessions", 3, "session lines in use"),
    ("refused", 4, "packets of a new session refused: every line in use"),
    ("log_head", 5, "gap events logged (free-running; entry i at i % log_capacity)"),
    ("start_seq", 6, "expected sequence number of a new session (0: take its first packet's)"),
    ("session_words", 7, "words per session line (SS_GAP_TABLE + 2 * max_gaps)"),
]
SESSION_FIELDS = [
    ("id_hi", 0, "session bytes 0..7 (big-endian word)"),
    ("id_lo", 1, "session bytes 8..9"),
    ("expected", 2, "next sequence number expected (0: not known yet)"),
    ("packets", 3, "data packets (count 1..0xFFFE)"),
    ("messages", 4, "messages in data packets (as passed to track)"),
    ("delivered", 5, "messages to deliver"),
    ("in_order", 6, "packets A_IN_ORDER"),
    ("gaps", 7, "gap events (a packet or heartbeat ahead of expected)"),
    ("gap_messages", 8, "messages found missing by gap events"),
    ("duplicates", 9, "packets A_DUPLICATE"),
    ("skipped", 10, "messages not delivered (already seen, or after a seen stretch)"),
    ("late", 11, "packets A_LATE"),
    ("recovered", 12, "missing messages delivered by late packets"),
    ("overlaps", 13, "packets A_OVERLAP"),
    ("heartbeats", 14, "heartbeat packets"),
    ("ends", 15, "end-of-session packets"),
    ("open_gaps", 16, "ranges in the gap table"),
    ("outstanding", 17, "messages in the gap table"),
    ("abandoned_gaps", 18, "ranges (or parts) dropped from a full gap table"),
    ("abandoned", 19, "messages dropped from a full gap table"),
    ("out_from", 20, "last packet: first block index to deliver"),
    ("out_to", 21, "last packet: end of the run to deliver (out_from == out_to: none)"),
    ("out_gap_first", 22, "last packet: first sequence number of the gap it revealed"),
    ("out_gap_count", 23, "last packet: messages in that gap (0: none)"),
]
SS_GAP_TABLE = 24       # then max_gaps pairs [first, end) in ascending order
LOG_ENTRY = 3           # gap log entry: session index, first, count
TR_HEADER_WORDS = 8


# TR_MAX_SESSIONS ... TR_SESSION_WORDS, SS_ID_HI ... SS_OUT_GAP_COUNT (module ints: Numba
# freezes them).  Spelled out for readers and linters; _check compares with the tables.
TR_MAX_SESSIONS, TR_MAX_GAPS, TR_LOG_CAPACITY, TR_SESSIONS, TR_REFUSED, TR_LOG_HEAD, \
    TR_START_SEQ, TR_SESSION_WORDS = range(8)
SS_ID_HI, SS_ID_LO, SS_EXPECTED, SS_PACKETS, SS_MESSAGES, SS_DELIVERED, SS_IN_ORDER, SS_GAPS, \
    SS_GAP_MESSAGES, SS_DUPLICATES, SS_SKIPPED, SS_LATE, SS_RECOVERED, SS_OVERLAPS, \
    SS_HEARTBEATS, SS_ENDS, SS_OPEN_GAPS, SS_OUTSTANDING, SS_ABANDONED_GAPS, SS_ABANDONED, \
    SS_OUT_FROM, SS_OUT_TO, SS_OUT_GAP_FIRST, SS_OUT_GAP_COUNT = range(24)


def _check() -> None:
    g = globals()
    for fields, prefix in ((TRACKER_FIELDS, "TR_"), (SESSION_FIELDS, "SS_")):
        for k, (name, word, _) in enumerate(fields):
            assert word == k and g[f"{prefix}{name.upper()}"] == word, name
    assert len(TRACKER_FIELDS) == TR_HEADER_WORDS and len(SESSION_FIELDS) == SS_GAP_TABLE


_check()

# track() results
A_IN_ORDER, A_GAP, A_DUPLICATE, A_LATE, A_OVERLAP, A_HEARTBEAT, A_END_OF_SESSION = range(7)
A_NO_SESSION = -1       # on_packet: a new session and every line in use (TR_REFUSED)
A_MALFORMED = -2        # on_packet: header cut, or a data packet with no complete block
ACTION_NAMES = {A_IN_ORDER: "in_order", A_GAP: "gap", A_DUPLICATE: "duplicate", A_LATE: "late",
                A_OVERLAP: "overlap", A_HEARTBEAT: "heartbeat",
                A_END_OF_SESSION: "end_of_session", A_NO_SESSION: "no_session",
                A_MALFORMED: "malformed"}

_HOT = dict(cache=True, nogil=True, _nrt=False)


# --- parsing ------------------------------------------------------------------------------------
@njit(**_HOT)
def parse_packet(buf, off, end, hdr):
    """Parse the MoldUDP64 packet at ``buf[off:end]`` into ``hdr`` (a PACKET_DTYPE record);
    returns the number of complete message blocks (0 for a heartbeat or end of session), or -1
    when fewer than 20 bytes are there (``hdr`` untouched).  ``end`` is clamped to the array."""
    if end > buf.shape[0]:
        end = buf.shape[0]
    if off < 0 or end - off < HEADER_LEN:
        return -1
    hdr.session_hi = be64(buf, off)
    hdr.session_lo = be16(buf, off + 8)
    s = hdr.session
    for j in range(SESSION_LEN):
        s[j] = be8(buf, off + j)
    hdr.sequence = be64(buf, off + OFF_SEQUENCE)
    count = be16(buf, off + OFF_COUNT)
    hdr.count = count
    pos = off + HEADER_LEN
    hdr.first_block = pos
    flags = 0
    blocks = 0
    if count == COUNT_HEARTBEAT:
        flags = PF_HEARTBEAT
    elif count == COUNT_END:
        flags = PF_END_OF_SESSION
    else:
        while blocks < count:
            if pos + BLOCK_HEADER > end:
                break
            nxt = pos + BLOCK_HEADER + be16(buf, pos)
            if nxt > end:
                break
            pos = nxt
            blocks += 1
        if blocks < count:
            flags |= PF_TRUNCATED
    if pos < end and (flags & PF_TRUNCATED) == 0:
        flags |= PF_TRAILING
    hdr.blocks = blocks
    hdr.end = pos
    hdr.flags = flags
    return blocks


@njit(**_HOT)
def block_at(buf, pos):
    """(message offset, message length) of the block at ``pos`` (inside a parsed packet: the
    caller walks ``hdr.blocks`` blocks from ``hdr.first_block``, each ending at offset +
    length)."""
    return pos + BLOCK_HEADER, be16(buf, pos)


# --- building -----------------------------------------------------------------------------------
@njit(**_HOT)
def write_header(buf, off, session_hi, session_lo, seq, count):
    """The 20-byte header at ``buf[off:]`` (heartbeat: count 0; end of session: 0xFFFF; a
    re-request: the count wanted).  Returns off + 20, or -1 if it does not fit."""
    if off < 0 or off + HEADER_LEN > buf.shape[0]:
        return -1
    put64(buf, off, session_hi)
    put16(buf, off + 8, session_lo)
    put64(buf, off + OFF_SEQUENCE, seq)
    put16(buf, off + OFF_COUNT, count)
    return off + HEADER_LEN


@njit(**_HOT)
def begin_packet(buf, off, end, session_hi, session_lo, seq):
    """Start a packet at ``buf[off:]`` (count 0); returns the offset of its first block, or -1
    when the header does not fit before ``end``.  Then ``append_message`` / ``add_block`` and
    ``finish_packet``."""
    if end > buf.shape[0]:
        end = buf.shape[0]
    if off < 0 or off + HEADER_LEN > end:
        return -1
    return write_header(buf, off, session_hi, session_lo, seq, 0)


@njit(**_HOT)
def add_block(buf, pkt, pos, end, length):
    """Append a block of ``length`` bytes at ``pos`` to the packet at ``pkt``: writes the length
    prefix and counts it; returns where the message goes (the caller writes ``length`` bytes
    there and continues at that offset + length), or -1 if it does not fit before ``end`` or
    the packet already has MAX_COUNT messages (nothing written then)."""
    if end > buf.shape[0]:
        end = buf.shape[0]
    if pos < pkt + HEADER_LEN or length < 0 or length > 0xFFFF \
            or pos + BLOCK_HEADER + length > end:
        return -1
    count = be16(buf, pkt + OFF_COUNT)
    if count >= MAX_COUNT:
        return -1
    put16(buf, pkt + OFF_COUNT, count + 1)
    put16(buf, pos, length)
    return pos + BLOCK_HEADER


@njit(**_HOT)
def append_message(buf, pkt, pos, end, src, src_off, length):
    """Append ``src[src_off:src_off+length]`` as a block; returns the next block's offset, or -1
    (nothing written) if it does not fit."""
    if src_off < 0 or src_off + length > src.shape[0]:
        return -1
    body = add_block(buf, pkt, pos, end, length)
    if body < 0:
        return -1
    for j in range(length):
        put8(buf, body + j, be8(src, src_off + j))
    return body + length


@njit(**_HOT)
def finish_packet(buf, pkt, pos):
    """The packet's length (its header already holds the count)."""
    return pos - pkt


finish = finish_packet


@njit(**_HOT)
def set_sequence(buf, pkt, seq):
    put64(buf, pkt + OFF_SEQUENCE, seq)


# --- the tracker ---------------------------------------------------------------------------------
@njit(**_HOT)
def session_index(state, session_hi, session_lo):
    """The line of a session (added, with ``expected = start_seq``, if new); -1 when every line
    is in use (counted in TR_REFUSED)."""
    n = state[TR_SESSIONS]
    sw = state[TR_SESSION_WORDS]
    for i in range(n):
        b = TR_HEADER_WORDS + i * sw
        if state[b + SS_ID_HI] == session_hi and state[b + SS_ID_LO] == session_lo:
            return i
    if n >= state[TR_MAX_SESSIONS]:
        state[TR_REFUSED] += 1
        return -1
    b = TR_HEADER_WORDS + n * sw
    for w in range(sw):
        state[b + w] = 0
    state[b + SS_ID_HI] = session_hi
    state[b + SS_ID_LO] = session_lo
    state[b + SS_EXPECTED] = state[TR_START_SEQ]
    state[TR_SESSIONS] = n + 1
    return n


@njit(**_HOT)
def _gap_shift_left(state, b, i):
    """Remove gap i (the entries after it move down one)."""
    g = b + SS_GAP_TABLE
    n = state[b + SS_OPEN_GAPS]
    for k in range(i, n - 1):
        state[g + 2 * k] = state[g + 2 * k + 2]
        state[g + 2 * k + 1] = state[g + 2 * k + 3]
    state[b + SS_OPEN_GAPS] = n - 1


@njit(**_HOT)
def _abandon(state, b, first, end):
    state[b + SS_ABANDONED_GAPS] += 1
    state[b + SS_ABANDONED] += end - first
    state[b + SS_OUTSTANDING] -= end - first


@njit(**_HOT)
def _record_gap(state, idx, b, first, end):
    """[first, end) is missing: count it, log it, put it in the gap table (merged with the last
    range when adjacent; the oldest range abandoned when the table is full)."""
    n = end - first
    state[b + SS_GAPS] += 1
    state[b + SS_GAP_MESSAGES] += n
    state[b + SS_OUTSTANDING] += n
    state[b + SS_OUT_GAP_FIRST] = first
    state[b + SS_OUT_GAP_COUNT] = n
    cap = state[TR_LOG_CAPACITY]
    if cap > 0:
        e = TR_HEADER_WORDS + state[TR_MAX_SESSIONS] * state[TR_SESSION_WORDS] \
            + (state[TR_LOG_HEAD] % cap) * LOG_ENTRY
        state[e] = idx
        state[e + 1] = first
        state[e + 2] = n
        state[TR_LOG_HEAD] += 1
    g = b + SS_GAP_TABLE
    k = state[b + SS_OPEN_GAPS]
    if k > 0 and state[g + 2 * k - 1] == first:
        state[g + 2 * k - 1] = end          # adjacent to the last range (heartbeat gaps)
        return
    if k >= state[TR_MAX_GAPS]:
        if k == 0:                          # max_gaps 0: nothing is kept
            _abandon(state, b, first, end)
            return
        _abandon(state, b, state[g], state[g + 1])
        _gap_shift_left(state, b, 0)
        k -= 1
    state[g + 2 * k] = first
    state[g + 2 * k + 1] = end
    state[b + SS_OPEN_GAPS] = k + 1


@njit(**_HOT)
def _late(state, b, s, c, expected):
    """Slow path of ``track``: a packet that starts before ``expected``.  Returns the action and
    sets SS_OUT_FROM / SS_OUT_TO."""
    hi = s + c
    below = hi if hi < expected else expected
    g = b + SS_GAP_TABLE
    n = state[b + SS_OPEN_GAPS]
    for i in range(n):
        ga = state[g + 2 * i]
        gb = state[g + 2 * i + 1]
        if gb <= s:
            continue
        if ga >= below:
            break
        # the packet's first missing message: a run of the gap, maybe continuing past expected
        r0 = ga if ga > s else s
        r1 = gb if gb < hi else hi
        got = r1 - r0
        if r0 == ga and r1 == gb:
            _gap_shift_left(state, b, i)
        elif r0 == ga:
            state[g + 2 * i] = r1
        elif r1 == gb:
            state[g + 2 * i + 1] = r0
        else:
            # split [ga, r0) + [r1, gb): needs a table entry
            if n >= state[TR_MAX_GAPS]:
                _abandon(state, b, ga, r0)      # full: give up the lower part
                state[g + 2 * i] = r1
            else:
                for k in range(n - 1, i, -1):
                    state[g + 2 * k + 2] = state[g + 2 * k]
                    state[g + 2 * k + 3] = state[g + 2 * k + 1]
                state[g + 2 * i + 1] = r0
                state[g + 2 * i + 2] = r1
                state[g + 2 * i + 3] = gb
                state[b + SS_OPEN_GAPS] = n + 1
        state[b + SS_OUTSTANDING] -= got
        state[b + SS_RECOVERED] += got
        run_end = r1
        if r1 == expected and hi > expected:
            run_end = hi                            # the gap ended at expected: go on
            state[b + SS_EXPECTED] = hi
        state[b + SS_LATE] += 1
        state[b + SS_DELIVERED] += run_end - r0
        state[b + SS_SKIPPED] += c - (run_end - r0)
        state[b + SS_OUT_FROM] = r0 - s
        state[b + SS_OUT_TO] = run_end - s
        return A_LATE
    if hi > expected:
        state[b + SS_OVERLAPS] += 1
        state[b + SS_DELIVERED] += hi - expected
        state[b + SS_SKIPPED] += expected - s
        state[b + SS_OUT_FROM] = expected - s
        state[b + SS_OUT_TO] = c
        state[b + SS_EXPECTED] = hi
        return A_OVERLAP
    state[b + SS_DUPLICATES] += 1
    state[b + SS_SKIPPED] += c
    return A_DUPLICATE


@njit(**_HOT)
def track(state, idx, seq, count):
    """Classify a packet of session line ``idx``: ``seq`` its sequence number, ``count`` the
    messages it carries (0 heartbeat, 0xFFFF end of session; a truncated packet: the complete
    blocks).  Returns A_*; the run to deliver is blocks [SS_OUT_FROM, SS_OUT_TO) of the
    session's line, a gap it revealed is [SS_OUT_GAP_FIRST, + SS_OUT_GAP_COUNT)."""
    b = TR_HEADER_WORDS + idx * state[TR_SESSION_WORDS]
    state[b + SS_OUT_FROM] = 0
    state[b + SS_OUT_TO] = 0
    state[b + SS_OUT_GAP_COUNT] = 0
    expected = state[b + SS_EXPECTED]
    if expected <= 0:
        expected = seq                      # the first packet sets the session's start
        state[b + SS_EXPECTED] = seq
    if count == COUNT_HEARTBEAT or count == COUNT_END:
        if count == COUNT_END:
            state[b + SS_ENDS] += 1
        else:
            state[b + SS_HEARTBEATS] += 1
        if seq > expected:
            _record_gap(state, idx, b, expected, seq)
            state[b + SS_EXPECTED] = seq
        return A_END_OF_SESSION if count == COUNT_END else A_HEARTBEAT
    state[b + SS_PACKETS] += 1
    state[b + SS_MESSAGES] += count
    if seq == expected:
        # fast path
        state[b + SS_IN_ORDER] += 1
        state[b + SS_DELIVERED] += count
        state[b + SS_OUT_TO] = count
        state[b + SS_EXPECTED] = seq + count
        return A_IN_ORDER
    if seq > expected:
        _record_gap(state, idx, b, expected, seq)
        state[b + SS_DELIVERED] += count
        state[b + SS_OUT_TO] = count
        state[b + SS_EXPECTED] = seq + count
        return A_GAP
    return _late(state, b, seq, count, expected)


@njit(**_HOT)
def on_packet(state, buf, off, end, hdr):
    """Parse the packet at ``buf[off:end]`` into ``hdr``, find its session and ``track`` it
    (with the complete blocks as its count).  Returns A_*, A_MALFORMED or A_NO_SESSION; the
    session line is ``session_index(state, hdr.session_hi, hdr.session_lo)``."""
    blocks = parse_packet(buf, off, end, hdr)
    if blocks < 0:
        return A_MALFORMED
    idx = session_index(state, hdr.session_hi, hdr.session_lo)
    if idx < 0:
        return A_NO_SESSION
    count = hdr.count
    if count != COUNT_HEARTBEAT and count != COUNT_END:
        count = blocks
        if count == 0:
            # every block cut: nothing to deliver and nothing learnt (the tracker is not
            # touched; its messages show up as a gap when the next packet arrives)
            return A_MALFORMED
    return track(state, idx, hdr.sequence, count)


# --- Python surface ------------------------------------------------------------------------------
def session_bytes(session) -> bytes:
    """A session name as its 10 bytes (str/bytes, space padded)."""
    if isinstance(session, str):
        session = session.encode("ascii")
    session = bytes(session)
    if len(session) > SESSION_LEN:
        raise ValueError(f"a MoldUDP64 session is at most 10 bytes, got {session!r}")
    return session.ljust(SESSION_LEN, b" ")


def session_words(session) -> tuple[int, int]:
    """(hi, lo): the int64 words the @njit builders and the tracker take for a session."""
    s = session_bytes(session)
    return int.from_bytes(s[:8], "big"), int.from_bytes(s[8:], "big")


def words_session(hi: int, lo: int) -> bytes:
    return (int(hi) & (2**64 - 1)).to_bytes(8, "big") + int(lo).to_bytes(2, "big")


def encode_packet(session, seq: int, messages) -> bytes:
    """A data packet: header + one block per message."""
    messages = [bytes(m) for m in messages]
    if not 1 <= len(messages) <= MAX_COUNT:
        raise ValueError(f"a data packet holds 1..{MAX_COUNT} messages, got {len(messages)}")
    return (session_bytes(session) + int(seq).to_bytes(8, "big")
            + len(messages).to_bytes(2, "big")
            + b"".join(len(m).to_bytes(2, "big") + m for m in messages))


def encode_heartbeat(session, seq: int) -> bytes:
    """A heartbeat: ``seq`` is the next sequence number the server will send."""
    return session_bytes(session) + int(seq).to_bytes(8, "big") + b"\x00\x00"


def encode_end_of_session(session, seq: int) -> bytes:
    return session_bytes(session) + int(seq).to_bytes(8, "big") + b"\xff\xff"


def encode_request(session, first: int, count: int) -> bytes:
    """A re-request for messages [first, first + count) (to the server's request port)."""
    if not 1 <= count <= MAX_COUNT:
        raise ValueError(f"count must be 1..{MAX_COUNT}")
    return session_bytes(session) + int(first).to_bytes(8, "big") + int(count).to_bytes(2, "big")


def new_header() -> np.ndarray:
    """One PACKET_DTYPE record (as a 1-element array; pass ``hdr[0]``)."""
    return np.zeros(1, dtype=PACKET_DTYPE)


def new_tracker(max_sessions: int = 16, max_gaps: int = 32, log_capacity: int = 256,
                start_seq: int = 1) -> np.ndarray:
    """A tracker array.  ``start_seq``: the sequence number a new session is expected to start
    at (MoldUDP64 sessions start at 1: a consumer that joins late sees [1, first) as a gap);
    0 takes each session's first packet as its start."""
    for name, v, lo in (("max_sessions", max_sessions, 1), ("max_gaps", max_gaps, 0),
                        ("log_capacity", log_capacity, 0), ("start_seq", start_seq, 0)):
        if not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{name}: expected an integer >= {lo}, got {v!r}")
    sw = SS_GAP_TABLE + 2 * max_gaps
    state = np.zeros(TR_HEADER_WORDS + max_sessions * sw + log_capacity * LOG_ENTRY, np.int64)
    state[TR_MAX_SESSIONS] = max_sessions
    state[TR_MAX_GAPS] = max_gaps
    state[TR_LOG_CAPACITY] = log_capacity
    state[TR_START_SEQ] = start_seq
    state[TR_SESSION_WORDS] = sw
    return state


def _as_u8(data) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data.view(np.uint8).reshape(-1))
    return np.frombuffer(bytes(data), dtype=np.uint8)


def parse(data):
    """Plain-Python convenience: (header dict, [message bytes]) of one packet (ValueError when
    the header is cut)."""
    buf = _as_u8(data)
    hdr = new_header()
    n = parse_packet(buf, 0, buf.shape[0], hdr[0])
    if n < 0:
        raise ValueError(f"MoldUDP64 header needs 20 bytes, got {buf.shape[0]}")
    h = hdr[0]
    msgs, pos = [], int(h["first_block"])
    for _ in range(n):
        ln = int.from_bytes(bytes(buf[pos:pos + 2]), "big")
        msgs.append(bytes(buf[pos + 2:pos + 2 + ln]))
        pos += 2 + ln
    info = {name: int(h[name]) for name, typ, _ in PACKET_FIELDS if typ == "i8"}
    info["session"] = bytes(h["session"])
    info["flag_names"] = [v for k, v in FLAG_NAMES.items() if info["flags"] & k]
    return info, msgs


class MoldSession:
    """Setup / test helper around the @njit tracker: feed packets, get the messages to deliver,
    and a re-request hook.  ``on_gap(session, first, count)`` is called for every gap (pass a
    callable, or subclass and override).  Hot loops call ``on_packet``/``track`` on
    ``self.state`` themselves and call ``drain_gaps()`` now and then."""

    def __init__(self, on_gap=None, max_sessions: int = 16, max_gaps: int = 32,
                 log_capacity: int = 256, start_seq: int = 1):
        self.state = new_tracker(max_sessions, max_gaps, log_capacity, start_seq)
        self._hdr = new_header()
        self._log_read = 0
        self.lost_gap_events = 0          # log entries overwritten before they were drained
        if on_gap is not None:
            self.on_gap = on_gap

    def on_gap(self, session: bytes, first: int, count: int) -> None:
        """Hook: messages [first, first + count) of ``session`` are missing."""

    def index(self, session) -> int:
        hi, lo = session_words(session)
        return int(session_index(self.state, hi, lo))

    def track(self, session, seq: int, count: int) -> int:
        idx = self.index(session)
        if idx < 0:
            return A_NO_SESSION
        action = int(track(self.state, idx, seq, count))
        self.drain_gaps()
        return action

    def feed(self, packet) -> tuple[int, list[bytes]]:
        """(action, messages to deliver) for one packet."""
        buf = _as_u8(packet)
        h = self._hdr[0]
        action = int(on_packet(self.state, buf, 0, buf.shape[0], h))
        msgs = []
        if action >= 0:
            idx = int(session_index(self.state, int(h["session_hi"]), int(h["session_lo"])))
            b = TR_HEADER_WORDS + idx * int(self.state[TR_SESSION_WORDS])
            lo, hi = int(self.state[b + SS_OUT_FROM]), int(self.state[b + SS_OUT_TO])
            pos = int(h["first_block"])
            for k in range(hi):
                ln = int(buf[pos]) << 8 | int(buf[pos + 1])
                if k >= lo:
                    msgs.append(bytes(buf[pos + 2:pos + 2 + ln]))
                pos += 2 + ln
        self.drain_gaps()
        return action, msgs

    def drain_gaps(self) -> int:
        """Call ``on_gap`` for every gap logged since the last drain; returns how many."""
        st = self.state
        head, cap = int(st[TR_LOG_HEAD]), int(st[TR_LOG_CAPACITY])
        if cap == 0:
            return 0
        if head - self._log_read > cap:
            self.lost_gap_events += head - self._log_read - cap
            self._log_read = head - cap
        base = TR_HEADER_WORDS + int(st[TR_MAX_SESSIONS]) * int(st[TR_SESSION_WORDS])
        n = 0
        while self._log_read < head:
            e = base + (self._log_read % cap) * LOG_ENTRY
            idx, first, count = (int(x) for x in st[e:e + 3])
            self._log_read += 1
            b = TR_HEADER_WORDS + idx * int(st[TR_SESSION_WORDS])
            self.on_gap(words_session(st[b + SS_ID_HI], st[b + SS_ID_LO]), first, count)
            n += 1
        return n

    def sessions(self) -> list[bytes]:
        st = self.state
        out = []
        for i in range(int(st[TR_SESSIONS])):
            b = TR_HEADER_WORDS + i * int(st[TR_SESSION_WORDS])
            out.append(words_session(st[b + SS_ID_HI], st[b + SS_ID_LO]))
        return out

    def counters(self, session) -> dict:
        idx = self.index(session)
        b = TR_HEADER_WORDS + idx * int(self.state[TR_SESSION_WORDS])
        return {name: int(self.state[b + w]) for name, w, _ in SESSION_FIELDS
                if name not in ("id_hi", "id_lo")}

    def outstanding(self, session) -> list[tuple[int, int]]:
        """The gap table: (first, count) of each missing range, ascending."""
        idx = self.index(session)
        b = TR_HEADER_WORDS + idx * int(self.state[TR_SESSION_WORDS])
        g = self.state[b + SS_GAP_TABLE:b + SS_GAP_TABLE + 2 * int(self.state[b + SS_OPEN_GAPS])]
        return [(int(first), int(end - first)) for first, end in g.reshape(-1, 2)]


def doc_table() -> str:
    rows = [f"MoldUDP64 packet header ({HEADER_LEN} bytes, big-endian)",
            f"   {'field':<10} {'offset':>6} {'size':>4}  {'kind':<6} meaning"]
    for name, off, size, kind, meaning in HEADER:
        rows.append(f"   {name:<10} {off:>6} {size:>4}  {kind:<6} {meaning}")
    rows.append("message block")
    for name, off, size, kind, meaning in BLOCK:
        rows.append(f"   {name:<10} {off:>6} {size or 'len':>4}  {kind:<6} {meaning}")
    rows.append("tracker header (int64 words)")
    rows += [f"   {w:>3} {name:<16} {m}" for name, w, m in TRACKER_FIELDS]
    rows.append("tracker session line (int64 words, then 2 * max_gaps words of gap table)")
    rows += [f"   {w:>3} {name:<16} {m}" for name, w, m in SESSION_FIELDS]
    return "\n".join(rows)


if __name__ == "__main__":
    if sys.argv[1:] == ["--doc"]:
        print(doc_table())
    else:
        print("usage: python -m parsers.moldudp64 --doc", file=sys.stderr)
        sys.exit(2)
