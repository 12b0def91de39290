"""MoldUDP64 (``parsers.moldudp64``): packets against a struct-built reference, every cut and
random bytes through the parser, and the gap tracker against a naive set-based tracker on
generated streams with injected losses, duplicates, reordering, heartbeats and retransmissions
(every counter, every delivery range and every gap must be equal).
"""
from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numba import njit

from parsers import itch as I
from parsers import moldudp64 as M

pytestmark = pytest.mark.pure          # computation only: as root, as any user (conftest)

sys.path.insert(0, str(Path(__file__).resolve().parent))

settings.register_profile(
    "mold", settings(max_examples=int(os.environ.get("HUGERING_FUZZ_EXAMPLES", "60")),
                     deadline=None, database=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]))
settings.load_profile("mold")

SESSION = b"0000004711"


# --- naive packet reference ----------------------------------------------------------------------
def naive_packet(session: bytes, seq: int, messages: list[bytes], count: int | None = None):
    hdr = struct.pack(">10sQH", session.ljust(10, b" "), seq,
                      len(messages) if count is None else count)
    return hdr + b"".join(struct.pack(">H", len(m)) + m for m in messages)


def naive_parse(data: bytes):
    """(blocks, first_block, end, flags) or None when the header is cut."""
    if len(data) < 20:
        return None
    session, seq, count = struct.unpack(">10sQH", data[:20])
    pos, blocks, flags = 20, 0, 0
    if count == 0:
        flags = M.PF_HEARTBEAT
    elif count == 0xFFFF:
        flags = M.PF_END_OF_SESSION
    else:
        while blocks < count and pos + 2 <= len(data):
            (ln,) = struct.unpack(">H", data[pos:pos + 2])
            if pos + 2 + ln > len(data):
                break
            pos += 2 + ln
            blocks += 1
        if blocks < count:
            flags |= M.PF_TRUNCATED
    if pos < len(data) and not flags & M.PF_TRUNCATED:
        flags |= M.PF_TRAILING
    return dict(session=session, sequence=seq, count=count, blocks=blocks, first_block=20,
                end=pos, flags=flags)


def itch_msgs(seq: int, n: int) -> list[bytes]:
    """n ITCH messages whose order reference is their MoldUDP64 sequence number."""
    return [I.encode("D", order_ref=seq + k, timestamp=seq + k) for k in range(n)]


def check_parse(data: bytes):
    buf = np.frombuffer(data, np.uint8) if data else np.zeros(0, np.uint8)
    hdr = M.new_header()
    n = M.parse_packet(buf, 0, buf.shape[0], hdr[0])
    want = naive_parse(data)
    if want is None:
        assert n == -1
        return None
    h = hdr[0]
    assert n == want["blocks"]
    for k in ("sequence", "count", "blocks", "first_block", "end", "flags"):
        assert int(h[k]) & (2**64 - 1) == want[k], k
    assert bytes(h["session"]) == want["session"]
    assert M.words_session(h["session_hi"], h["session_lo"]) == want["session"]
    return want


# --- packets -------------------------------------------------------------------------------------
def test_header_table_is_the_spec():
    assert M.HEADER_LEN == 20 == struct.calcsize(">10sQH")
    assert (M.OFF_SESSION, M.OFF_SEQUENCE, M.OFF_COUNT) == (0, 10, 18)
    assert (M.COUNT_HEARTBEAT, M.COUNT_END) == (0, 0xFFFF)


@given(st.lists(st.binary(min_size=0, max_size=60), min_size=1, max_size=20),
       st.integers(0, 2**64 - 1), st.binary(min_size=0, max_size=10))
def test_encode_packet_equals_naive_and_parses(msgs, seq, session):
    data = M.encode_packet(session, seq, msgs)
    assert data == naive_packet(session, seq, msgs)
    want = check_parse(data)
    assert want["blocks"] == len(msgs) and want["flags"] == 0 and want["end"] == len(data)
    info, got = M.parse(data)
    assert got == msgs and info["session"] == session.ljust(10, b" ")


@given(st.lists(st.binary(min_size=1, max_size=50), min_size=1, max_size=12),
       st.integers(0, 2**63 - 1))
def test_njit_builder_equals_encode_packet(msgs, seq):
    hi, lo = M.session_words(SESSION)
    buf = np.zeros(2000, np.uint8)
    pkt = 7
    pos = M.begin_packet(buf, pkt, len(buf), hi, lo, seq)
    assert pos == pkt + 20
    for m in msgs:
        src = np.frombuffer(b"xx" + m, np.uint8)
        pos = M.append_message(buf, pkt, pos, len(buf), src, 2, len(m))
        assert pos > 0
    n = M.finish_packet(buf, pkt, pos)
    assert bytes(buf[pkt:pkt + n]) == M.encode_packet(SESSION, seq, msgs)
    assert not buf[:pkt].any() and not buf[pkt + n:].any()


def test_add_block_takes_an_itch_encoder_in_place():
    hi, lo = M.session_words(SESSION)
    buf = np.zeros(200, np.uint8)
    pos = M.begin_packet(buf, 0, 200, hi, lo, 42)
    body = M.add_block(buf, 0, pos, 200, I.D_LEN)
    pos = I.encode_order_delete(buf, body, 1, 2, 3, 99)
    body = M.add_block(buf, 0, pos, 200, I.X_LEN)
    pos = I.encode_order_cancel(buf, body, 1, 2, 4, 99, 50)
    data = bytes(buf[:M.finish(buf, 0, pos)])
    assert data == M.encode_packet(SESSION, 42, [
        I.encode("D", locate=1, tracking=2, timestamp=3, order_ref=99),
        I.encode("X", locate=1, tracking=2, timestamp=4, order_ref=99, canceled_shares=50)])


def test_builder_refuses_what_does_not_fit():
    hi, lo = M.session_words(SESSION)
    buf = np.zeros(64, np.uint8)
    assert M.begin_packet(buf, 50, 64, hi, lo, 1) == -1          # 20 bytes do not fit
    assert M.begin_packet(buf, 0, 19, hi, lo, 1) == -1
    pos = M.begin_packet(buf, 0, 40, hi, lo, 1)
    src = np.arange(30, dtype=np.uint8)
    before = buf.copy()
    assert M.append_message(buf, 0, pos, 40, src, 0, 19) == -1   # 20 + 2 + 19 > 40
    assert np.array_equal(buf, before)
    assert M.append_message(buf, 0, pos, 40, src, 20, 11) == -1  # source out of range
    assert M.append_message(buf, 0, pos, 40, src, 0, 18) == 40
    # the count limit: 0xFFFE messages at most
    I.put16(buf, M.OFF_COUNT, M.MAX_COUNT)
    assert M.add_block(buf, 0, 22, 64, 0) == -1
    with pytest.raises(ValueError):
        M.encode_packet(SESSION, 1, [])
    with pytest.raises(ValueError):
        M.session_words("ELEVENCHARS")


def test_heartbeat_end_and_request_packets():
    for data, count, flag in ((M.encode_heartbeat(SESSION, 9), 0, M.PF_HEARTBEAT),
                              (M.encode_end_of_session(SESSION, 9), 0xFFFF, M.PF_END_OF_SESSION),
                              (M.encode_request(SESSION, 9, 5), 5, M.PF_TRUNCATED)):
        assert data == naive_packet(SESSION, 9, [], count)
        want = check_parse(data)
        assert want["flags"] == flag and want["blocks"] == 0
    w = check_parse(M.encode_heartbeat(SESSION, 9) + b"\x00")
    assert w["flags"] == M.PF_HEARTBEAT | M.PF_TRAILING


def test_parse_every_cut_and_trailing_bytes():
    msgs = [I.encode(t) for t in "ADXEUFCPSR"]
    data = M.encode_packet(SESSION, 1000, msgs)
    bounds = [20]
    for m in msgs:
        bounds.append(bounds[-1] + 2 + len(m))
    for cut in range(len(data) + 1):
        want = check_parse(data[:cut])
        if cut < 20:
            assert want is None
            continue
        complete = sum(1 for b in bounds[1:] if b <= cut)
        assert want["blocks"] == complete
        assert bool(want["flags"] & M.PF_TRUNCATED) == (complete < len(msgs))
    assert check_parse(data + b"junk")["flags"] == M.PF_TRAILING


@given(st.binary(max_size=200))
def test_random_bytes_parse_like_the_reference(raw):
    check_parse(raw)


@given(st.binary(min_size=20, max_size=120), st.integers(0, 40))
def test_random_packets_with_small_counts(raw, count):
    check_parse(raw[:18] + count.to_bytes(2, "big") + raw[20:])


# --- the naive tracker -----------------------------------------------------------------------------
class NaiveTracker:
    """Set-based reference for one session: ``missing`` is the set of outstanding sequence
    numbers; delivered is always the first run of new messages of a packet."""

    def __init__(self, start: int = 1):
        self.E = start
        self.missing: set[int] = set()
        self.c = dict.fromkeys(("packets", "messages", "delivered", "in_order", "gaps",
                                "gap_messages", "duplicates", "skipped", "late", "recovered",
                                "overlaps", "heartbeats", "ends"), 0)

    def _gap(self, s):
        g = (self.E, s - self.E)
        self.missing |= set(range(self.E, s))
        self.c["gaps"] += 1
        self.c["gap_messages"] += s - self.E
        return g

    def feed(self, s: int, c: int):
        """(action, (from, to), gap or None)"""
        if self.E <= 0:
            self.E = s
        if c in (0, 0xFFFF):
            self.c["heartbeats" if c == 0 else "ends"] += 1
            gap = None
            if s > self.E:
                gap = self._gap(s)
                self.E = s
            return (M.A_HEARTBEAT if c == 0 else M.A_END_OF_SESSION), (0, 0), gap
        self.c["packets"] += 1
        self.c["messages"] += c
        if s >= self.E:
            gap = self._gap(s) if s > self.E else None
            if gap is None:
                self.c["in_order"] += 1
            self.c["delivered"] += c
            self.E = s + c
            return (M.A_GAP if gap else M.A_IN_ORDER), (0, c), gap
        new = [m for m in range(s, s + c) if m >= self.E or m in self.missing]
        if not new:
            self.c["duplicates"] += 1
            self.c["skipped"] += c
            return M.A_DUPLICATE, (0, 0), None
        newset, run = set(new), [new[0]]
        while run[-1] + 1 in newset:
            run.append(run[-1] + 1)
        rec = [m for m in run if m in self.missing]
        self.missing -= set(rec)
        self.c["recovered"] += len(rec)
        if run[-1] >= self.E:
            self.E = run[-1] + 1
        self.c["late" if rec else "overlaps"] += 1
        self.c["delivered"] += len(run)
        self.c["skipped"] += c - len(run)
        return (M.A_LATE if rec else M.A_OVERLAP), (run[0] - s, run[-1] + 1 - s), None

    def runs(self) -> list[tuple[int, int]]:
        out = []
        for m in sorted(self.missing):
            if out and out[-1][0] + out[-1][1] == m:
                out[-1] = (out[-1][0], out[-1][1] + 1)
            else:
                out.append((m, 1))
        return out

    def counters(self) -> dict:
        return dict(self.c, expected=self.E, outstanding=len(self.missing),
                    open_gaps=len(self.runs()), abandoned_gaps=0, abandoned=0)


def scenario(rng, n_messages: int) -> list[tuple[int, int]]:
    """A sender's packets [(seq, count)] with losses, duplicates, reordering, heartbeats and
    retransmissions (some repackaged across what was received) injected."""
    packets, seq = [], 1
    while seq <= n_messages:
        c = int(min(rng.integers(1, 6), n_messages - seq + 1))
        packets.append((seq, c))
        seq += c
    out, lost = [], []
    for p in packets:
        r = rng.random()
        if r < 0.12:
            lost.append(p)                                   # lost on the way
        elif r < 0.2:
            out += [p, p]                                    # duplicated
        else:
            out.append(p)
        if rng.random() < 0.06:
            out.append((p[0] + p[1], 0))                     # heartbeat: the next seq
        if lost and rng.random() < 0.15:
            s, c = lost.pop(int(rng.integers(0, len(lost))))  # a retransmission
            if rng.random() < 0.5:
                a = int(rng.integers(0, 3))                  # repackaged: widen the range
                s, c = max(1, s - a), c + a + int(rng.integers(0, 3))
            out.append((s, c))
    for k in range(len(out) - 1):                            # local reordering
        if rng.random() < 0.1:
            out[k], out[k + 1] = out[k + 1], out[k]
    out.append((seq, 0xFFFF))
    return out


def session_line(state, idx):
    b = M.TR_HEADER_WORDS + idx * int(state[M.TR_SESSION_WORDS])
    return {name: int(state[b + w]) for name, w, _ in M.SESSION_FIELDS}


def compare_tracker(events, start=1):
    state = M.new_tracker(max_gaps=4096, start_seq=start)
    idx = M.session_index(state, *M.session_words(SESSION))
    naive = NaiveTracker(start)
    for s, c in events:
        a = M.track(state, idx, s, c)
        want_a, want_out, want_gap = naive.feed(s, c)
        line = session_line(state, idx)
        assert (a, (line["out_from"], line["out_to"])) == (want_a, want_out), (s, c)
        gap = (line["out_gap_first"], line["out_gap_count"]) if line["out_gap_count"] else None
        assert gap == want_gap, (s, c)
    line = session_line(state, idx)
    got = {k: line[k] for k in naive.counters()}
    assert got == naive.counters()
    ms = M.MoldSession()
    ms.state = state
    assert ms.outstanding(SESSION) == naive.runs()
    assert line["delivered"] + line["skipped"] == line["messages"]
    return line


@given(st.integers(0, 2**32 - 1), st.integers(1, 400))
def test_tracker_equals_naive_on_injected_streams(seed, n):
    compare_tracker(scenario(np.random.default_rng(seed), n))


@given(st.integers(0, 2**32 - 1))
def test_tracker_equals_naive_when_joining_late(seed):
    ev = scenario(np.random.default_rng(seed), 100)
    compare_tracker(ev[len(ev) // 3:], start=1)   # the start is a gap from 1
    compare_tracker(ev[len(ev) // 3:], start=0)   # adopt the first packet


def test_each_kind_is_detected_and_counted_exactly():
    ev = [(1, 3),        # in order, expected 4
          (4, 2),        # in order, expected 6
          (9, 1),        # gap [6, 9): 3 missing, expected 10
          (9, 1),        # duplicate
          (6, 1),        # late: recovers 6
          (4, 4),        # late: 4..7, only 7 is new (4, 5, 6 seen)
          (10, 0),       # heartbeat at expected: nothing
          (12, 0),       # heartbeat ahead: gap [10, 12), expected 12
          (11, 3),       # late: 11 from the gap, then 12, 13 past expected; expected 14
          (7, 1),        # duplicate
          (8, 1),        # late: recovers 8; 10 is still missing
          (14, 2),       # in order, expected 16
          (15, 3),       # overlap: 15 seen, deliver 16, 17; expected 18
          (13, 0xFFFF)]  # end of session (behind: no gap)
    line = compare_tracker(ev)
    assert (line["in_order"], line["gaps"], line["gap_messages"]) == (3, 2, 5)
    assert (line["duplicates"], line["late"], line["recovered"], line["overlaps"]) == (2, 4, 4, 1)
    assert (line["heartbeats"], line["ends"], line["outstanding"]) == (2, 1, 1)
    assert line["expected"] == 18 and line["delivered"] == 17 - 1
    assert line["skipped"] == line["messages"] - line["delivered"]


def test_gap_table_full_abandons_the_oldest():
    state = M.new_tracker(max_gaps=2)
    idx = M.session_index(state, *M.session_words(SESSION))
    for s in (1, 3, 5, 7):                             # gaps [2], [4], [6]
        M.track(state, idx, s, 1)
    line = session_line(state, idx)
    assert (line["gaps"], line["open_gaps"], line["abandoned_gaps"], line["abandoned"]) == \
        (3, 2, 1, 1)
    assert line["outstanding"] == 2
    assert M.track(state, idx, 2, 1) == M.A_DUPLICATE  # abandoned: treated as seen
    assert M.track(state, idx, 4, 1) == M.A_LATE
    # a split that needs an entry when the table is full gives up the lower part
    state = M.new_tracker(max_gaps=1)
    idx = M.session_index(state, *M.session_words(SESSION))
    M.track(state, idx, 1, 1)
    M.track(state, idx, 10, 1)                         # gap [2, 10)
    assert M.track(state, idx, 5, 1) == M.A_LATE       # split [2,5) + [6,10): table full
    line = session_line(state, idx)
    assert (line["abandoned_gaps"], line["abandoned"], line["outstanding"]) == (1, 3, 4)
    ms = M.MoldSession()
    ms.state = state
    assert ms.outstanding(SESSION) == [(6, 4)]


def test_sessions_are_independent_and_the_table_bounded():
    ms = M.MoldSession(max_sessions=2)
    a, b, c = b"SESSION__A", b"SESSION__B", b"SESSION__C"
    assert ms.feed(M.encode_packet(a, 1, itch_msgs(1, 2)))[0] == M.A_IN_ORDER
    assert ms.feed(M.encode_packet(b, 5, itch_msgs(5, 1)))[0] == M.A_GAP
    assert ms.feed(M.encode_packet(a, 3, itch_msgs(3, 1)))[0] == M.A_IN_ORDER
    assert ms.feed(M.encode_packet(c, 1, itch_msgs(1, 1)))[0] == M.A_NO_SESSION
    assert int(ms.state[M.TR_REFUSED]) == 1 and ms.sessions() == [a, b]
    assert ms.counters(a)["expected"] == 4 and ms.counters(b)["expected"] == 6


def test_moldsession_delivers_messages_and_calls_on_gap():
    gaps = []
    ms = M.MoldSession(on_gap=lambda s, f, n: gaps.append((s, f, n)))
    feed = [(1, 3), (6, 2), (4, 2), (4, 2), (3, 4), (12, 0), (12, 1)]
    delivered = []
    for s, c in feed:
        pkt = M.encode_heartbeat(SESSION, s) if c == 0 else \
            M.encode_packet(SESSION, s, itch_msgs(s, c))
        _a, msgs = ms.feed(pkt)
        delivered += [int(I.decode_bytes(m)["order_ref"]) for m in msgs]
    assert gaps == [(SESSION, 4, 2), (SESSION, 8, 4)]
    assert delivered == [1, 2, 3, 6, 7, 4, 5, 12]      # (3,4): 3..6 all seen -> duplicate
    assert ms.counters(SESSION)["duplicates"] == 2
    assert M.encode_request(SESSION, 8, 4) == naive_packet(SESSION, 8, [], 4)


def test_truncated_packet_delivers_its_complete_blocks_and_the_rest_becomes_a_gap():
    ms = M.MoldSession()
    pkt = M.encode_packet(SESSION, 1, itch_msgs(1, 4))
    a, msgs = ms.feed(pkt[:-5])                        # the 4th block is cut
    assert a == M.A_IN_ORDER and len(msgs) == 3
    a, msgs = ms.feed(M.encode_packet(SESSION, 5, itch_msgs(5, 1)))
    assert a == M.A_GAP and ms.outstanding(SESSION) == [(4, 1)]
    assert ms.feed(pkt[:25])[0] == M.A_MALFORMED       # no complete block: nothing learnt
    assert ms.feed(pkt[:19])[0] == M.A_MALFORMED


def test_gap_log_drained_in_batches_and_overflow_counted():
    seen = []
    ms = M.MoldSession(on_gap=lambda s, f, n: seen.append((f, n)), log_capacity=4)
    idx = ms.index(SESSION)
    for k in range(10):                                # 10 gaps, logged without draining
        M.track(ms.state, idx, 1 + 3 * k + 1, 1)
    assert ms.drain_gaps() == 4 and ms.lost_gap_events == 6
    assert seen == [(18, 2), (21, 2), (24, 2), (27, 2)]    # the last 4 of [1], [3,5), [6,8) ...


# --- the tracker inside an @njit loop --------------------------------------------------------------
@njit(cache=True)
def _consume(stream, offsets, state, hdr, actions, delivered):
    """What a consumer's hot loop does: parse, track, walk the blocks to deliver."""
    nd = 0
    for k in range(offsets.shape[0] - 1):
        a = M.on_packet(state, stream, offsets[k], offsets[k + 1], hdr)
        actions[k] = a
        if a < 0:
            continue
        idx = M.session_index(state, hdr.session_hi, hdr.session_lo)
        b = M.TR_HEADER_WORDS + idx * state[M.TR_SESSION_WORDS]
        lo = state[b + M.SS_OUT_FROM]
        hi = state[b + M.SS_OUT_TO]
        pos = hdr.first_block
        for j in range(hi):
            body, ln = M.block_at(stream, pos)
            if j >= lo:
                delivered[nd] = I.be64(stream, body + I.D_ORDER_REF)
                nd += 1
            pos = body + ln
    return nd


@given(st.integers(0, 2**32 - 1))
def test_njit_consumer_loop_delivers_each_message_once(seed):
    rng = np.random.default_rng(seed)
    events = scenario(rng, 300)
    pkts = [M.encode_heartbeat(SESSION, s) if c == 0 else
            M.encode_end_of_session(SESSION, s) if c == 0xFFFF else
            M.encode_packet(SESSION, s, itch_msgs(s, c)) for s, c in events]
    stream = np.frombuffer(b"".join(pkts), np.uint8)
    offsets = np.cumsum([0] + [len(p) for p in pkts]).astype(np.int64)
    state = M.new_tracker(max_gaps=4096)
    actions = np.zeros(len(pkts), np.int64)
    delivered = np.zeros(4000, np.int64)
    nd = _consume(stream, offsets, state, M.new_header()[0], actions, delivered)
    d = delivered[:nd].tolist()
    assert len(d) == len(set(d))                       # never twice
    ms = M.MoldSession(max_gaps=4096)
    want_actions, want = [], []
    for p in pkts:
        a, msgs = ms.feed(p)
        want_actions.append(a)
        want += [int(I.decode_bytes(m)["order_ref"]) for m in msgs]
    assert actions.tolist() == want_actions and d == want
    line = session_line(state, 0)
    missing = {f + i for f, n in ms.outstanding(SESSION) for i in range(n)}
    assert set(d) | missing == set(range(1, line["expected"]))


def test_doc_prints_the_tables():
    import subprocess
    r = subprocess.run([sys.executable, "-m", "parsers.moldudp64", "--doc"],
                       cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    for name, *_ in M.HEADER + M.TRACKER_FIELDS + M.SESSION_FIELDS:
        assert name in r.stdout
