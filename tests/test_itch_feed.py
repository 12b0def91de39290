"""The ITCH 5.0 feed generator (``engine.producers.itch_feed``).

The stream is replayed through a naive dict order book written here (messages unpacked with the
hand-written struct formats of ``test_itch``): every execution, cancel, delete and replace must
name a live order of its instrument with enough shares, references and match numbers must be
new, timestamps must not go back, nothing trades while halted, and the book left at the end must
be the generator's own.  The pcap is read by tcpdump (valid UDP to the port, checksums good) and
decoded back by the project's own pcap, L2-L4, MoldUDP64 and ITCH parsers; the ring producer's
frames equal the pcap path's, and its drops become MoldUDP64 gaps of exactly the dropped
messages.  The generator also runs under ``NUMBA_BOUNDSCHECK=1`` (a subprocess).
"""
from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.producers import itch_feed as F
from parsers import itch as I
from parsers import l2l4
from parsers import moldudp64 as M
from parsers.pcap import read_capture
from shm import Ring

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_itch as TI  # noqa: E402  (the naive struct reference)

ROOT = Path(__file__).resolve().parents[1]
UNDER_BOUNDSCHECK = os.environ.get("NUMBA_BOUNDSCHECK", "") == "1"

settings.register_profile(
    "feed", settings(max_examples=int(os.environ.get("HUGERING_FUZZ_EXAMPLES", "25")),
                     deadline=None, database=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]))
settings.load_profile("feed")


# --- the naive book --------------------------------------------------------------------------------
def blocks(buf: np.ndarray):
    data = bytes(buf)
    pos = 0
    while pos < len(data):
        (ln,) = struct.unpack(">H", data[pos:pos + 2])
        yield data[pos + 2:pos + 2 + ln]
        pos += 2 + ln
    assert pos == len(data)


def replay(buf: np.ndarray, n_instruments: int) -> tuple[dict, dict]:
    """Replay a generated stream through a dict book, asserting that it is consistent;
    returns (live orders {ref: (locate, side, shares, price)}, message counts)."""
    stocks: dict[int, bytes] = {}
    orders: dict[int, list] = {}
    halted: set[int] = set()
    counts: dict[str, int] = {}
    events = []
    last_ts = last_ref = last_match = 0
    market_open = False
    for k, m in enumerate(blocks(buf)):
        t = chr(m[0])
        assert len(m) == TI.SPEC_LENGTHS[t], (k, t)
        d = TI.naive_unpack(m)
        counts[t] = counts.get(t, 0) + 1
        assert d["timestamp"] >= last_ts, k
        last_ts = d["timestamp"]
        loc = d["locate"]
        if t == "S":
            events.append(d["event_code"])
            assert loc == 0
            market_open = d["event_code"] == b"Q" or (market_open and d["event_code"] != b"M")
            continue
        if t == "R":
            assert not market_open and loc == len(stocks) + 1 and d["stock"] not in \
                stocks.values()
            stocks[loc] = d["stock"]
            continue
        assert loc in stocks, (k, t, loc)
        if t == "H":
            assert d["stock"] == stocks[loc]
            if d["trading_state"] == b"H":
                assert market_open and loc not in halted
                halted.add(loc)
            else:
                assert d["trading_state"] == b"T"
                assert not market_open or loc in halted, (k, loc)
                halted.discard(loc)
            continue
        assert market_open, (k, t)
        if t in "AF":
            ref = d["order_ref"]
            assert ref > last_ref and ref not in orders, (k, ref)
            last_ref = ref
            assert d["side"] in (b"B", b"S") and d["shares"] > 0 and d["price"] > 0
            assert d["stock"] == stocks[loc]
            if t == "F":
                assert d["attribution"] in F.MPIDS
            orders[ref] = [loc, d["side"], d["shares"], d["price"]]
            continue
        if t == "P":
            assert d["order_ref"] == 0 and d["side"] == b"B" and d["stock"] == stocks[loc]
            assert loc not in halted and d["shares"] > 0
            assert d["match_number"] > last_match
            last_match = d["match_number"]
            continue
        ref = d["order_ref"]
        assert ref in orders, (k, t, ref)                  # never an unknown order
        o = orders[ref]
        assert o[0] == loc, (k, t)                         # of its own instrument
        if t in "EC":
            assert loc not in halted, (k, t)
            x = d["executed_shares"]
            assert 1 <= x <= o[2], (k, x, o)
            assert d["match_number"] > last_match
            last_match = d["match_number"]
            if t == "C":
                assert d["printable"] in (b"Y", b"N")
            o[2] -= x
            if o[2] == 0:
                del orders[ref]
        elif t == "X":
            assert 1 <= d["canceled_shares"] < o[2], (k, d, o)
            o[2] -= d["canceled_shares"]
        elif t == "D":
            del orders[ref]
        elif t == "U":
            new = d["new_order_ref"]
            assert new > last_ref and new not in orders
            last_ref = new
            assert d["shares"] > 0 and d["price"] > 0
            del orders[ref]
            orders[new] = [loc, o[1], d["shares"], d["price"]]
        else:
            raise AssertionError(f"unexpected message type {t!r} at {k}")
    assert events[:3] == [b"O", b"S", b"Q"] and events[-3:] == [b"M", b"E", b"C"]
    assert len(events) == 6 and len(stocks) == n_instruments
    return {r: (o[0], o[1][0], o[2], o[3]) for r, o in orders.items()}, counts


def book_of(feed: F.Feed) -> dict:
    return {int(r["order_ref"]): (int(r["locate"]), int(r["side"]), int(r["shares"]),
                                  int(r["price"])) for r in feed.live_orders()}


# --- the stream ------------------------------------------------------------------------------------
def test_same_seed_same_bytes_other_seed_other_bytes():
    a, oa, sa = F.generate(20_000, instruments=16, seed=5)
    b, ob, sb = F.generate(20_000, instruments=16, seed=5)
    c, _, _ = F.generate(20_000, instruments=16, seed=6)
    assert np.array_equal(a, b) and np.array_equal(oa, ob)
    assert sa["by_type"] == sb["by_type"]
    assert not np.array_equal(a[:len(c)], c[:len(a)])
    assert oa[0] == 0 and oa[-1] == len(a) and np.all(np.diff(oa) >= 2 + 12)


def test_stream_replays_consistently_and_ends_with_the_generators_book():
    feed = F.Feed(32, seed=11, live_orders=2000)
    buf, offsets, stats = feed.generate(150_000)
    book, counts = replay(buf, 32)
    assert book == book_of(feed)
    assert counts == stats["by_type"] and sum(counts.values()) == 150_000
    assert stats["live_orders"] == len(book) and stats["max_live_orders"] <= 2000
    assert stats["order_refs"] == counts.get("A", 0) + counts.get("F", 0) + counts["U"]


def test_stream_decodes_without_damage():
    buf, offsets, stats = F.generate(50_000, instruments=8, seed=3)
    recs, c = I.decode_all(buf)
    assert I.counters_dict(c) == dict(decoded=50_000, blocks=50_000, unknown_type=0,
                                      bad_length=0, empty=0, truncated=0, full=0, end=len(buf))
    types_ = [chr(t) for t in recs["msg_type"]]
    assert {t: types_.count(t) for t in set(types_)} == stats["by_type"]
    assert np.all(np.diff(recs["timestamp"]) >= 0)


def test_message_mix():
    buf, offsets, stats = F.generate(1_000_000, instruments=64, seed=1)
    n = 1_000_000
    frac = {t: c / n for t, c in stats["by_type"].items()}
    bands = dict(A=(0.30, 0.45), F=(0.02, 0.07), D=(0.30, 0.45), X=(0.04, 0.08),
                 E=(0.045, 0.09), C=(0.008, 0.02), U=(0.05, 0.09), P=(0.008, 0.02),
                 H=(0.0005, 0.005))
    for t, (lo, hi) in bands.items():
        assert lo <= frac[t] <= hi, (t, frac[t])
    assert stats["by_type"]["R"] == 64 and stats["by_type"]["S"] == 6
    assert set(stats["by_type"]) == set(bands) | {"R", "S"}
    assert 0.9 * 6400 <= stats["live_orders"] <= 6400 and stats["halts"] > 0
    # most orders end in a cancel or delete, not an execution
    removed = stats["by_type"]["D"] + stats["by_type"]["X"]
    assert removed > 3 * (stats["by_type"]["E"] + stats["by_type"]["C"])


@given(st.integers(1, 40), st.integers(0, 2**32 - 1), st.integers(1, 300),
       st.lists(st.integers(0, 100), min_size=8, max_size=8), st.integers(0, 1000),
       st.integers(0, 50))
def test_any_settings_give_a_consistent_stream(n_inst, seed, live, raw_w, mpid, halt_len):
    w = [x + (25 if k == 0 else 0) for k, x in enumerate(raw_w)]     # adds never 0
    scaled = [x * 1000 // sum(w) for x in w]
    scaled[0] += 1000 - sum(scaled)
    weights = dict(zip(F.WEIGHT_NAMES, scaled))
    feed = F.Feed(n_inst, seed, live_orders=live, weights=weights, mpid_permille=mpid,
                  halt_messages=halt_len)
    buf, offsets, stats = feed.generate(2 * n_inst + 6 + 3000)
    book, counts = replay(buf, n_inst)
    assert book == book_of(feed) and len(book) <= live


def test_symbols_and_settings():
    feed = F.Feed(["AAPL", b"MSFT", "GOOGL"], seed=1)
    buf, _, _ = feed.generate(feed.preamble + 3)
    r = [TI.naive_unpack(m) for m in blocks(buf) if m[:1] == b"R"]
    assert [x["stock"] for x in r] == [b"AAPL    ", b"MSFT    ", b"GOOGL   "]
    assert [F.symbol_name(i) for i in (0, 1, 25, 26, 17575, 17576)] == \
        ["AAA", "AAB", "AAZ", "ABA", "ZZZ", "BAAA"]


@pytest.mark.parametrize("kwargs, key", [
    (dict(instruments=0), "instruments"), (dict(instruments=["A", "A"]), "instruments"),
    (dict(instruments=["TOOLONGSYM"]), "instruments"), (dict(live_orders=0), "live_orders"),
    (dict(weights=dict(add=0, delete=1000)), "weights"), (dict(weights=dict(add=5)), "weights"),
    (dict(weights=dict(nope=1)), "weights"), (dict(step_ns=0), "step_ns"),
    (dict(seed=-1), "seed")])
def test_bad_feed_settings_name_their_key(kwargs, key):
    with pytest.raises(F.FeedConfigError) as e:
        F.Feed(**kwargs)
    assert e.value.key == key


def test_too_few_messages_for_a_day():
    with pytest.raises(F.FeedConfigError) as e:
        F.generate(2 * 10 + 5, instruments=10)
    assert e.value.key == "n_messages"
    buf, off, st_ = F.generate(2 * 10 + 6, instruments=10)      # just the preamble and trailer
    assert st_["by_type"] == {"S": 6, "R": 10, "H": 10}


# --- frames and pcap ----------------------------------------------------------------------------
def inet_ok(data: bytes) -> bool:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s == 0xFFFF


def frames_of(slots) -> list[bytes]:
    return [bytes(s["payload"][:int(s["cap_len"])]) for s in slots]


def check_frames(frames, dport, session=b"HUGERING01"):
    """Every frame a valid Ethernet/IPv4/UDP datagram to ``dport`` with good checksums;
    returns the MoldUDP64 payloads."""
    out = []
    for f in frames:
        r = l2l4.parse_bytes(f)[0]
        assert r["flags"] == 0 and r["ip_version"] == 4 and r["ip_proto"] == 17
        assert r["dport"] == dport and r["udp_len"] == len(f) - 34
        assert inet_ok(f[14:34])
        pseudo = f[26:34] + struct.pack("!BBH", 0, 17, len(f) - 34)
        assert inet_ok(pseudo + f[34:])
        payload = f[42:]
        assert int(r["payload_off"]) == 42 and int(r["payload_len"]) == len(payload)
        assert payload[:10] == session
        out.append(payload)
    return out


def test_packetize_round_trips_the_stream_through_moldudp64():
    buf, offsets, stats = F.generate(30_000, instruments=8, seed=9)
    fr = F.Framing(max_payload=600, dport=31000)
    slots = F.packetize(buf, offsets, fr)
    payloads = check_frames(frames_of(slots), 31000)
    ms = M.MoldSession()
    got, seq = [], 1
    for k, p in enumerate(payloads):
        info, msgs = M.parse(p)
        assert len(p) <= 600 and info["flags"] in (0, M.PF_END_OF_SESSION)
        assert info["sequence"] == seq
        seq += len(msgs)
        action, delivered = ms.feed(p)
        assert delivered == msgs
        assert action == (M.A_END_OF_SESSION if k == len(payloads) - 1 else M.A_IN_ORDER)
        got += msgs
    assert b"".join(len(m).to_bytes(2, "big") + m for m in got) == bytes(buf)
    assert ms.counters(b"HUGERING01")["delivered"] == 30_000 and seq == 30_001
    # the per-packet message cap
    slots = F.packetize(buf, offsets, F.Framing(max_messages=3), end_of_session=False)
    assert len(slots) == 10_000
    assert all(len(M.parse(p)[1]) == 3 for p in check_frames(frames_of(slots), 26400))


def test_pcap_is_valid_udp_for_tcpdump_and_decodes_back(tmp_path):
    path = tmp_path / "itch.pcap"
    stats = F.write_pcap(path, 20_000, instruments=8, seed=2)
    cap = read_capture(path)
    assert cap.count == stats["packets"] and cap.error is None and cap.nanosecond
    frames = frames_of(cap.slots)
    payloads = check_frames(frames, 26400)
    msgs = [m for p in payloads for m in M.parse(p)[1]]
    assert len(msgs) == 20_000
    buf, _, _ = F.generate(20_000, instruments=8, seed=2)
    assert b"".join(len(m).to_bytes(2, "big") + m for m in msgs) == bytes(buf)
    ts = cap.slots["ts_ns"]
    assert np.all(np.diff(ts) >= 0) and ts[0] == F.PCAP_DAY_NS + 10_800_000_000_000
    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump is not installed")
    r = subprocess.run(["tcpdump", "-nn", "-r", str(path), "udp and dst port 26400"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == stats["packets"]
    assert all("10.1.0.1.26400 > 233.54.12.1.26400: UDP, length" in x for x in lines)
    r = subprocess.run(["tcpdump", "-nn", "-vv", "-r", str(path)], capture_output=True,
                       text=True, timeout=60)
    assert r.stdout.count("udp sum ok") == stats["packets"] and "bad" not in r.stdout


def test_cli_writes_a_pcap(tmp_path):
    path = tmp_path / "cli.pcap"
    r = subprocess.run([sys.executable, "-m", "engine.producers.itch_feed", "--pcap", str(path),
                        "--messages", "5000", "--instruments", "4"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    cap = read_capture(path)
    msgs = [m for p in check_frames(frames_of(cap.slots), 26400) for m in M.parse(p)[1]]
    assert len(msgs) == 5000
    r = subprocess.run([sys.executable, "-m", "engine.producers.itch_feed", "--pcap", str(path),
                        "--messages", "10", "--instruments", "4"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "n_messages" in r.stderr


@pytest.mark.parametrize("kwargs, key", [
    (dict(max_payload=60), "max_payload"), (dict(max_payload=70000), "max_payload"),
    (dict(session="ELEVENCHARS"), "session"), (dict(dst_ip="not-an-ip"), "dst_ip"),
    (dict(sport=0), "sport"), (dict(src_mac="zz"), "src_mac"),
    (dict(max_messages=-1), "max_messages")])
def test_bad_framing_names_its_key(kwargs, key):
    with pytest.raises(F.FeedConfigError) as e:
        F.Framing(**kwargs)
    assert e.value.key == key


def test_multicast_destination_gets_its_group_mac():
    fr = F.Framing(dst_ip="239.1.2.3")
    assert fr.dst_mac == bytes.fromhex("01005e010203")
    assert F.Framing(dst_ip="10.9.9.9").dst_mac == bytes.fromhex("020000000002")


# --- the ring producer --------------------------------------------------------------------------------
def test_producer_frames_equal_the_packetized_stream(ring_name):
    with Ring.create(ring_name, slots=1024, slot_size=2048) as r:
        t0 = time.time_ns()
        with F.FeedProducer(r, rate=0, instruments=8, seed=4, burst=16, port=2,
                            queue=3) as fp:
            st_ = fp.run(count=300)
        assert (st_["published"], st_["dropped"], st_["packets"]) == (300, 0, 300)
        buf, offsets, _ = F.generate(30_000, instruments=8, seed=4)
        want = frames_of(F.packetize(buf, offsets)[:300])
        got = frames_of(r.slots[:300])
        assert got == want
        assert st_["messages"] == sum(len(M.parse(f[42:])[1]) for f in want)
        assert st_["next_sequence"] == 1 + st_["messages"]
        s = r.slots[:300]
        assert np.all(s["wire_len"] == s["cap_len"]) and np.all(s["port"] == 2)
        assert np.all(s["queue"] == 3) and np.all(s["seq"] == np.arange(300))
        assert t0 <= s["ts_ns"].min() and s["ts_ns"].max() <= time.time_ns()
        assert len(set(s["ts_ns"].tolist())) <= 300 // 16 + 1      # one stamp per burst


def test_drops_become_a_moldudp64_gap_of_exactly_the_dropped_messages(ring_name):
    with Ring.create(ring_name, slots=64, slot_size=2048, full_policy="drop") as r:
        c = r.consumer()                         # joins and never releases: the ring fills
        with F.FeedProducer(r, rate=0, instruments=8, seed=7, burst=16) as fp:
            st1 = fp.run(count=200)
            assert (st1["published"], st1["dropped"]) == (64, 136)
            ms = M.MoldSession()
            got = [ms.feed(bytes(b["payload"][42:int(b["cap_len"])])) for b in c.poll(64)]
            assert all(a == M.A_IN_ORDER for a, _ in got)
            c.release()
            assert fp.run(count=1)["published"] == 1
            b = c.poll(1)[0]
            a, _ = ms.feed(bytes(b["payload"][42:int(b["cap_len"])]))
            line = ms.counters(b"HUGERING01")
            assert a == M.A_GAP and line["gap_messages"] == st1["messages_dropped"] > 0
            assert line["out_gap_first"] == 1 + sum(len(x) for _, x in got)
        c.close()
        # the dropped packets' messages were generated all the same: same stream as the pcap
        buf, offsets, _ = F.generate(30_000, instruments=8, seed=7)
        want = frames_of(F.packetize(buf, offsets)[:201])
        assert bytes(b["payload"][:int(b["cap_len"])]) == want[200]


def test_wait_policy_waits_and_loses_nothing(ring_name):
    with Ring.create(ring_name, slots=32, slot_size=2048, full_policy="wait",
                     consumer_timeout=30.0) as r:
        c = r.consumer()
        with F.FeedProducer(r, rate=0, instruments=4, seed=1, burst=8) as fp:
            st_ = fp.run(duration=0.2)
            assert st_["stopped_by"] == "duration" and (st_["published"], st_["dropped"]) == \
                (32, 0)
            assert len(c.poll(32)) == 32
            c.release()
            assert fp.run(count=10)["published"] == 10
        c.close()


def test_pacer_and_end_of_session(ring_name):
    with Ring.create(ring_name, slots=4096, slot_size=2048) as r:
        with F.FeedProducer(r, rate=4000, instruments=4, seed=1) as fp:
            fp.warmup()
            st_ = fp.run(duration=0.3)
            assert 0.6 * 4000 <= st_["rate_pps"] <= 1.05 * 4000, st_
            n = st_["published"]
            assert fp.end_session() == 2
            trailer = M.parse(bytes(r.slots[n]["payload"][42:int(r.slots[n]["cap_len"])]))
            end = M.parse(bytes(r.slots[n + 1]["payload"][42:int(r.slots[n + 1]["cap_len"])]))
        assert [I.decode_bytes(m)["event_code"] for m in trailer[1]] == [ord("M"), ord("E"),
                                                                          ord("C")]
        assert trailer[0]["sequence"] == st_["next_sequence"]
        assert end[0]["count"] == 0xFFFF and end[0]["sequence"] == st_["next_sequence"] + 3
        check_frames([bytes(r.slots[k]["payload"][:int(r.slots[k]["cap_len"])])
                      for k in (n, n + 1)], 26400)


def test_producer_settings_are_checked(ring_name):
    with Ring.create(ring_name, slots=64, slot_size=1024) as r:
        with pytest.raises(F.FeedConfigError) as e:
            F.FeedProducer(r)                    # 1442-byte frames do not fit 1024-byte slots
        assert e.value.key == "max_payload"
        for kw, key in ((dict(rate=-1), "rate"), (dict(burst=0), "burst"),
                        (dict(port=70000), "port")):
            with pytest.raises(F.FeedConfigError) as e:
                F.FeedProducer(r, framing=F.Framing(max_payload=900), **kw)
            assert e.value.key == key
        with F.FeedProducer(r, framing_args=dict(max_payload=900), rate=0) as fp:
            with pytest.raises(F.FeedConfigError):
                fp.run(count=-1)


# --- bounds-checked run ------------------------------------------------------------------------------
@pytest.mark.skipif(UNDER_BOUNDSCHECK, reason="this is the boundscheck run itself")
def test_generator_under_numba_boundscheck():
    """The generator and the framing again with NUMBA_BOUNDSCHECK=1: an index outside any
    array (the order table, the instrument table, the output buffer) raises there."""
    cache = Path(tempfile.gettempdir()) / f"hugering-numba-boundscheck-{os.getuid()}"
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(cache),
               HUGERING_FUZZ_EXAMPLES="10")
    env.pop("PYTEST_ADDOPTS", None)
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_itch_feed.py",
         "-k", "consistent or packetize or decodes or drops"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    tail = out.stdout[-3000:] + out.stderr[-2000:]
    assert out.returncode == 0, tail
    assert " passed" in out.stdout and " failed" not in out.stdout, tail
