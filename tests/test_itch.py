"""ITCH 5.0 (``parsers.itch``) against a naive reference written from the specification with
hand-written ``struct`` formats (``NAIVE`` below), independently of the module's tables.

Every message type round-trips: random field values -> naive bytes; the Python ``encode``, the
``@njit`` encoder, the packed big-endian dtype and the @njit decoder must all agree with them
field by field, and every exported offset constant must equal the offset the struct format
gives.  Streams of length-prefixed messages are cut at every byte and corrupted at random: the
decoder never raises, and its counters equal a naive walker's.  The module runs a second time in
a subprocess under ``NUMBA_BOUNDSCHECK=1``, where a read outside the buffer raises IndexError.
"""
from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parsers import itch as I

pytestmark = pytest.mark.pure          # computation only: as root, as any user (conftest)

ROOT = Path(__file__).resolve().parents[1]
UNDER_BOUNDSCHECK = os.environ.get("NUMBA_BOUNDSCHECK", "") == "1"

settings.register_profile(
    "itch", settings(max_examples=int(os.environ.get("HUGERING_FUZZ_EXAMPLES", "60")),
                     deadline=None, database=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]))
settings.load_profile("itch")

# --- the naive reference, from the specification -----------------------------------------------
# The 48-bit timestamp is split into a u16 and a u32 ("ts_hi", "ts_lo").  'c' / 'Ns' are alpha.
SPEC_LENGTHS = dict(S=12, R=39, H=25, Y=20, L=26, V=35, W=12, K=28, J=35, h=21, A=36, F=40, E=31,
                    C=36, X=23, D=19, U=35, P=44, Q=40, B=19, I=50, N=20, O=48)
_H = ["msg_type", "locate", "tracking", "ts_hi", "ts_lo"]
NAIVE = {
    "S": (">cHHHIc", _H + ["event_code"]),
    "R": (">cHHHI8sccIcc2scccccIc", _H + [
        "stock", "market_category", "financial_status", "round_lot_size", "round_lots_only",
        "issue_classification", "issue_subtype", "authenticity", "short_sale_threshold",
        "ipo_flag", "luld_tier", "etp_flag", "etp_leverage", "inverse"]),
    "H": (">cHHHI8scc4s", _H + ["stock", "trading_state", "reserved", "reason"]),
    "Y": (">cHHHI8sc", _H + ["stock", "reg_sho_action"]),
    "L": (">cHHHI4s8sccc", _H + ["mpid", "stock", "primary_market_maker", "market_maker_mode",
                                  "participant_state"]),
    "V": (">cHHHIQQQ", _H + ["level1", "level2", "level3"]),
    "W": (">cHHHIc", _H + ["breached_level"]),
    "K": (">cHHHI8sIcI", _H + ["stock", "ipo_release_time", "ipo_release_qualifier", "price"]),
    "J": (">cHHHI8sIIII", _H + ["stock", "ref_price", "upper_collar", "lower_collar",
                                 "collar_extension"]),
    "h": (">cHHHI8scc", _H + ["stock", "market_code", "halt_action"]),
    "A": (">cHHHIQcI8sI", _H + ["order_ref", "side", "shares", "stock", "price"]),
    "F": (">cHHHIQcI8sI4s", _H + ["order_ref", "side", "shares", "stock", "price",
                                   "attribution"]),
    "E": (">cHHHIQIQ", _H + ["order_ref", "executed_shares", "match_number"]),
    "C": (">cHHHIQIQcI", _H + ["order_ref", "executed_shares", "match_number", "printable",
                                "price"]),
    "X": (">cHHHIQI", _H + ["order_ref", "canceled_shares"]),
    "D": (">cHHHIQ", _H + ["order_ref"]),
    "U": (">cHHHIQQII", _H + ["order_ref", "new_order_ref", "shares", "price"]),
    "P": (">cHHHIQcI8sIQ", _H + ["order_ref", "side", "shares", "stock", "price",
                                  "match_number"]),
    "Q": (">cHHHIQ8sIQc", _H + ["shares", "stock", "price", "match_number", "cross_type"]),
    "B": (">cHHHIQ", _H + ["match_number"]),
    "I": (">cHHHIQQc8sIIIcc", _H + ["paired_shares", "imbalance_shares", "imbalance_direction",
                                     "stock", "far_price", "near_price", "ref_price",
                                     "cross_type", "price_variation"]),
    "N": (">cHHHI8sc", _H + ["stock", "interest_flag"]),
    "O": (">cHHHI8scIIIQII", _H + ["stock", "open_eligibility", "min_price", "max_price",
                                    "near_price", "near_time", "lower_collar",
                                    "upper_collar"]),
}
MASK64 = (1 << 64) - 1


def naive_pack(t: str, v: dict) -> bytes:
    fmt, names = NAIVE[t]
    vals = {**v, "msg_type": t.encode(), "ts_hi": v["timestamp"] >> 32,
            "ts_lo": v["timestamp"] & 0xFFFFFFFF}
    return struct.pack(fmt, *(vals[n] for n in names))


def naive_unpack(data: bytes) -> dict:
    """One message -> {field: int or bytes} (the timestamp reassembled)."""
    t = chr(data[0])
    fmt, names = NAIVE[t]
    d = dict(zip(names, struct.unpack(fmt, data[:struct.calcsize(fmt)])))
    d["timestamp"] = (d.pop("ts_hi") << 32) | d.pop("ts_lo")
    return d


def naive_offsets(t: str) -> dict:
    """Field -> byte offset, from the struct format."""
    fmt, names = NAIVE[t]
    out, pos = {}, 0
    for name, code in zip(names, _codes(fmt)):
        out[name] = pos
        pos += struct.calcsize(">" + code)
    out["timestamp"] = out.pop("ts_hi")
    del out["ts_lo"]
    return out


def random_fields(draw_or_rng, t: str) -> dict:
    """Random values for every field of ``t`` (hypothesis ``draw`` or a numpy Generator)."""
    fmt, names = NAIVE[t]
    sizes = dict(zip(names, _codes(fmt)))
    out = {}
    for name in names:
        if name in ("msg_type", "ts_hi", "ts_lo"):
            continue
        code = sizes[name]
        if code.endswith("s") or code == "c":
            n = int(code[:-1]) if code.endswith("s") else 1
            out[name] = _draw_bytes(draw_or_rng, n)
        else:
            bits = 8 * struct.calcsize(">" + code)
            out[name] = _draw_int(draw_or_rng, bits)
    out["timestamp"] = _draw_int(draw_or_rng, 48)
    return out


def _codes(fmt: str) -> list:
    codes, num = [], ""
    for ch in fmt[1:]:
        if ch.isdigit():
            num += ch
        else:
            codes.append(num + ch)
            num = ""
    return codes


def _draw_int(src, bits):
    if callable(src):
        return src(st.one_of(st.integers(0, (1 << bits) - 1), st.sampled_from(
            [0, 1, (1 << bits) - 1, 1 << (bits - 1)])))
    return int.from_bytes(src.bytes(bits // 8), "big")


def _draw_bytes(src, n):
    if callable(src):
        return src(st.binary(min_size=n, max_size=n))
    return src.bytes(n)


def record_value(rec, name):
    v = rec[name]
    if isinstance(v, np.ndarray):
        return bytes(v)
    if I.ITCH_RECORD_DTYPE[name] == np.dtype("u1"):
        return bytes([int(v)])
    return int(v) & MASK64


# --- the tables against the specification -------------------------------------------------------
def test_lengths_equal_the_spec():
    assert I.LENGTHS == SPEC_LENGTHS
    for t, n in SPEC_LENGTHS.items():
        assert struct.calcsize(NAIVE[t][0]) == n, t
        assert I.DTYPES[t].itemsize == n, t
        assert int(I.MSG_LEN[ord(t)]) == n
        assert getattr(I, f"{'OH' if t == 'h' else t}_LEN") == n
    assert sorted(i for i in range(256) if I.MSG_LEN[i]) == sorted(map(ord, SPEC_LENGTHS))


def test_offset_constants_equal_the_struct_formats():
    """Every exported constant <T>_<FIELD> is the offset the hand-written format gives."""
    checked = 0
    for t, (name, _, body) in I.MESSAGES.items():
        want = naive_offsets(t)
        assert [f[0] for f in body] == NAIVE[t][1][5:], t
        assert [f[0] for f in I.table(t)[:4]] == ["msg_type", "locate", "tracking", "timestamp"]
        for fname, off, size, kind, _ in body:
            const = getattr(I, f"{'OH' if t == 'h' else t}_{fname.upper()}")
            assert const == off == want[fname], (t, fname)
            checked += 1
    assert (I.LOCATE, I.TRACKING, I.TIMESTAMP, I.HEADER_LEN) == (1, 3, 5, 11)
    assert checked == sum(len(NAIVE[t][1]) - 5 for t in NAIVE)


def test_spot_offsets_from_the_spec():
    # a few read straight from the specification's tables
    assert (I.A_ORDER_REF, I.A_SIDE, I.A_SHARES, I.A_STOCK, I.A_PRICE) == (11, 19, 20, 24, 32)
    assert I.F_ATTRIBUTION == 36 and I.E_MATCH_NUMBER == 23 and I.C_PRINTABLE == 31
    assert I.C_PRICE == 32 and I.X_CANCELED_SHARES == 19 and I.U_NEW_ORDER_REF == 19
    assert (I.U_SHARES, I.U_PRICE) == (27, 31) and I.P_MATCH_NUMBER == 36
    assert (I.Q_PRICE, I.Q_MATCH_NUMBER, I.Q_CROSS_TYPE) == (27, 31, 39)
    assert (I.I_STOCK, I.I_CROSS_TYPE, I.I_PRICE_VARIATION) == (28, 48, 49)
    assert (I.O_NEAR_TIME, I.O_UPPER_COLLAR) == (32, 44) and I.R_ETP_LEVERAGE == 34
    assert (I.V_LEVEL1, I.V_LEVEL3) == (11, 27) and I.L_STOCK == 15 and I.OH_HALT_ACTION == 20
    assert I.MSG_ADD_ORDER == ord("A") and I.MSG_OPERATIONAL_HALT == ord("h")


def test_record_dtype_holds_every_field():
    names = set(I.ITCH_RECORD_DTYPE.names)
    for t in NAIVE:
        for n in NAIVE[t][1]:
            if n not in ("ts_hi", "ts_lo"):
                assert n in names, (t, n)
    assert I.ITCH_RECORD_DTYPE.itemsize == I.RECORD_BYTES and I.RECORD_BYTES % 8 == 0
    assert I.ITCH_RECORD_DTYPE["timestamp"] == np.dtype(np.int64)
    assert I.ITCH_RECORD_DTYPE["price"] == np.dtype(np.int64)
    assert I.ITCH_RECORD_DTYPE["side"] == np.dtype(np.uint8)
    assert I.ITCH_RECORD_DTYPE["stock"].shape == (8,)


# --- round trips, every type ------------------------------------------------------------------
def _njit_encode(t: str, v: dict, off: int = 3) -> tuple[bytes, int]:
    buf = np.full(off + I.LENGTHS[t] + 5, 0xEE, dtype=np.uint8)
    args = []
    for fname, _off, size, kind, _ in I.table(t)[1:]:
        x = v[fname]
        args.append(int.from_bytes(x, "big") if isinstance(x, bytes) else x)
    # int64 bit patterns, as @njit callers hold u64 values
    args = [a - (1 << 64) if a >= 1 << 63 else a for a in args]
    end = I.ENCODERS[t](buf, off, *args)
    assert bytes(buf[:off]) == b"\xee" * off and bytes(buf[end:]) == b"\xee" * 5
    return bytes(buf[off:end]), end - off


@pytest.mark.parametrize("t", list(SPEC_LENGTHS))
@given(data=st.data())
def test_roundtrip_every_field(t, data):
    v = random_fields(data.draw, t)
    want = naive_pack(t, v)
    # Python encoder
    assert I.encode(t, **v) == want
    # @njit encoder
    got, n = _njit_encode(t, v)
    assert n == len(want) and got == want
    # @njit decoder, at an odd offset inside a larger buffer
    buf = np.frombuffer(b"\x00" * 7 + want + b"\xff" * 3, dtype=np.uint8)
    rec = I.new_records(1)[0]
    assert I.decode_message(buf, 7, buf.shape[0], rec) == len(want)
    for name, x in v.items():
        assert record_value(rec, name) == x, (t, name)
    assert record_value(rec, "msg_type") == t.encode()
    assert I.fields_of(rec) == {"msg_type": t.encode(), **v}
    # the packed big-endian dtype
    arr = np.frombuffer(want, dtype=I.DTYPES[t])
    for name, x in v.items():
        if name == "timestamp":
            assert int(I.timestamps(arr)[0]) == x
        else:
            if isinstance(x, bytes):      # numpy's S type drops trailing NULs (never in ASCII)
                assert arr[name][0] == x.rstrip(b"\0"), name
            else:
                assert int(arr[name][0]) == x, name
    # field readers at the exported offsets
    assert I.be48(buf, 7 + I.TIMESTAMP) == v["timestamp"]
    for fname, off, size, kind, _ in I.table(t)[1:]:
        reader = {1: I.be8, 2: I.be16, 4: I.be32, 6: I.be48, 8: I.be64}[size]
        x = v[fname]
        x = int.from_bytes(x, "big") if isinstance(x, bytes) else x
        assert reader(buf, 7 + off) & MASK64 == x, (t, fname)


def test_python_encode_pads_alpha_and_rejects_junk():
    m = I.encode("A", stock="MSFT", side="S", shares=5, price=10000, order_ref=1)
    d = naive_unpack(m)
    assert d["stock"] == b"MSFT    " and d["side"] == b"S" and d["shares"] == 5
    assert I.encode(b"D", order_ref=3) == I.encode("order_delete", order_ref=3) == \
        I.encode(68, order_ref=3)
    with pytest.raises(TypeError):
        I.encode("D", shares=1)
    with pytest.raises(ValueError):
        I.encode("D", order_ref=1 << 64)
    with pytest.raises(ValueError):
        I.encode("A", stock="TOOLONGSYM")
    with pytest.raises(KeyError):
        I.encode("Z")
    assert I.symbol("AAPL") == int.from_bytes(b"AAPL    ", "big")


def test_record_reset_clears_every_byte():
    recs = I.new_records(1)
    recs.view(np.uint8)[:] = 0xFF
    m = I.encode("D", locate=1, tracking=2, timestamp=3, order_ref=4)
    I.decode_message(np.frombuffer(m, np.uint8), 0, len(m), recs[0])
    keep = {"msg_type": ord("D"), "locate": 1, "tracking": 2, "timestamp": 3, "order_ref": 4}
    for name in I.ITCH_RECORD_DTYPE.names:
        want = keep.get(name, 0)
        assert np.all(recs[0][name] == want), name


def test_encoders_refuse_a_buffer_without_room():
    for t in SPEC_LENGTHS:
        n = I.LENGTHS[t]
        args = [0] * (len(I.table(t)) - 1)
        buf = np.full(n + 4, 7, np.uint8)
        assert I.ENCODERS[t](buf, 5, *args) == -1
        assert I.ENCODERS[t](buf, -1, *args) == -1
        assert np.all(buf == 7)
        assert I.ENCODERS[t](buf, 4, *args) == n + 4


# --- decode_message: short, unknown, out of range -------------------------------------------------
def test_decode_message_short_unknown_and_bad_offsets():
    rng = np.random.default_rng(1)
    rec = I.new_records(1)[0]
    for t in SPEC_LENGTHS:
        m = naive_pack(t, random_fields(rng, t))
        buf = np.frombuffer(m + b"\x00" * 4, np.uint8)
        for cut in range(len(m)):
            rec["msg_type"] = 0
            assert I.decode_message(buf, 0, cut, rec) == -1
            assert rec["msg_type"] == 0
            # a short array (not only a short ``end``)
            short = np.frombuffer(m[:cut], np.uint8)
            assert I.decode_message(short, 0, 1 << 20, rec) == -1
        assert I.decode_message(np.frombuffer(m, np.uint8), 0, 1 << 20, rec) == len(m)
        assert I.decode_message(buf, -1, 10, rec) == -1
    for b in range(256):
        if chr(b) not in SPEC_LENGTHS:
            buf = np.full(64, b, np.uint8)
            assert I.decode_message(buf, 0, 64, rec) == -1


# --- streams -----------------------------------------------------------------------------------
def block(m: bytes) -> bytes:
    return len(m).to_bytes(2, "big") + m


def naive_walk(data: bytes) -> tuple[list, dict]:
    """The reference stream walker: decoded messages (offset, fields) and counters."""
    c = dict(decoded=0, blocks=0, unknown_type=0, bad_length=0, empty=0, truncated=0, full=0)
    out, pos = [], 0
    while True:
        if pos + 2 > len(data):
            c["truncated"] += pos < len(data)
            break
        ln = int.from_bytes(data[pos:pos + 2], "big")
        body = pos + 2
        if body + ln > len(data):
            c["truncated"] += 1
            break
        if ln == 0:
            c["empty"] += 1
        elif chr(data[body]) not in SPEC_LENGTHS:
            c["unknown_type"] += 1
        elif SPEC_LENGTHS[chr(data[body])] != ln:
            c["bad_length"] += 1
        else:
            out.append((body, naive_unpack(data[body:body + ln])))
        c["blocks"] += 1
        pos = body + ln
    c["decoded"] = len(out)
    c["end"] = pos
    return out, c


def check_stream(data: bytes, recs_cap: int | None = None):
    buf = np.frombuffer(data, np.uint8) if data else np.zeros(0, np.uint8)
    recs = I.new_records(recs_cap if recs_cap is not None else len(data) // 3 + 1)
    counters = I.new_counters()
    n = I.decode_stream(buf, 0, buf.shape[0], recs, counters)
    want, wc = naive_walk(data)
    assert I.counters_dict(counters) == wc
    assert n == len(want)
    for k, (_off, fields) in enumerate(want):
        for name, x in fields.items():
            assert record_value(recs[k], name) == x, name
    return n, counters


def random_stream(rng, n: int) -> tuple[bytes, list]:
    types_ = list(SPEC_LENGTHS)
    msgs = [naive_pack(t, random_fields(rng, t)) for t in rng.choice(types_, size=n)]
    return b"".join(block(m) for m in msgs), msgs


def test_stream_of_every_type_decodes_whole():
    rng = np.random.default_rng(2)
    data, msgs = random_stream(rng, 300)
    n, c = check_stream(data)
    assert n == 300 and c[I.SC_END] == len(data) and c[I.SC_TRUNCATED] == 0


def test_stream_cut_at_every_byte():
    rng = np.random.default_rng(3)
    data, msgs = random_stream(rng, 40)
    bounds = np.cumsum([0] + [len(m) + 2 for m in msgs])
    for cut in range(len(data) + 1):
        n, c = check_stream(data[:cut])
        complete = int(np.searchsorted(bounds, cut, side="right")) - 1
        assert n == complete
        assert c[I.SC_TRUNCATED] == (0 if cut in bounds else 1)
        assert c[I.SC_END] == bounds[complete]


def test_unknown_types_and_wrong_lengths_are_counted_and_skipped():
    a = I.encode("A", order_ref=1, shares=100, stock="AAPL", side="B", price=10000)
    d = I.encode("D", order_ref=1)
    junk = b"Z" + b"\x01" * 30                       # unknown type
    long_a = a + b"\x00\x00"                         # A with 38 bytes: wrong length
    short_e = I.encode("E", order_ref=1)[:-1]        # E cut to 30 bytes inside its block
    data = block(a) + block(junk) + block(long_a) + block(b"") + block(short_e) + block(d)
    n, c = check_stream(data)
    assert n == 2
    assert I.counters_dict(c) == dict(decoded=2, blocks=6, unknown_type=1, bad_length=2,
                                      empty=1, truncated=0, full=0, end=len(data))


def test_full_record_array_stops_and_resumes():
    rng = np.random.default_rng(4)
    data, msgs = random_stream(rng, 50)
    buf = np.frombuffer(data, np.uint8)
    recs = I.new_records(7)
    counters = I.new_counters()
    got = []
    pos = 0
    while True:
        k = I.decode_stream(buf, pos, buf.shape[0], recs, counters)
        got += [I.fields_of(r) for r in recs[:k]]
        pos = int(counters[I.SC_END])
        if k < len(recs) or pos == len(data):
            break
    assert len(got) == 50 and counters[I.SC_DECODED] == 50
    assert counters[I.SC_FULL] == 7        # 50 = 7 * 7 + 1: full after each of 7 calls
    assert got == [naive_unpack(m) for m in msgs]


@given(data=st.data())
def test_corrupted_streams_never_crash_and_count_like_the_naive_walker(data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    stream, _ = random_stream(rng, data.draw(st.integers(0, 30)))
    b = bytearray(stream)
    for _ in range(data.draw(st.integers(0, 12))):
        if not b:
            break
        i = data.draw(st.integers(0, len(b) - 1))
        op = data.draw(st.sampled_from(["flip", "byte", "cut", "insert"]))
        if op == "flip":
            b[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "byte":
            b[i] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del b[i:i + data.draw(st.integers(1, 40))]
        else:
            b[i:i] = data.draw(st.binary(max_size=40))
    check_stream(bytes(b))


@given(st.binary(max_size=400))
def test_random_bytes_as_a_stream(raw):
    check_stream(raw)


def test_stream_bounds_and_offsets():
    m = block(I.encode("D", order_ref=9))
    buf = np.frombuffer(m * 3, np.uint8)
    recs = I.new_records(4)
    c = I.new_counters()
    assert I.decode_stream(buf, len(m), 1 << 30, recs, c) == 2     # end clamped to the array
    assert I.decode_stream(buf, -5, len(m), recs, I.new_counters()) == 1
    assert I.decode_stream(buf, len(buf), len(buf), recs, I.new_counters()) == 0


# --- byte readers -------------------------------------------------------------------------------
@given(st.binary(min_size=8, max_size=64), st.data())
def test_be_readers_equal_int_from_bytes(raw, data):
    buf = np.frombuffer(raw, np.uint8)
    for n, f in ((1, I.be8), (2, I.be16), (4, I.be32), (6, I.be48), (8, I.be64)):
        off = data.draw(st.integers(0, len(raw) - n))
        assert f(buf, off) & MASK64 == int.from_bytes(raw[off:off + n], "big")
    ro = buf.copy()
    ro.setflags(write=False)
    assert I.be16(ro, 0) == int.from_bytes(raw[:2], "big")     # read-only arrays are fine


@given(st.integers(0, MASK64), st.integers(0, 9))
def test_put_writers_equal_to_bytes(v, off):
    for n, f in ((1, I.put8), (2, I.put16), (4, I.put32), (6, I.put48), (8, I.put64)):
        buf = np.zeros(20, np.uint8)
        f(buf, off, v - (1 << 64) if v >= 1 << 63 else v)
        assert bytes(buf[off:off + n]) == (v & ((1 << 8 * n) - 1)).to_bytes(n, "big")
        assert not buf[:off].any() and not buf[off + n:].any()


# --- generated artefacts ----------------------------------------------------------------------
def test_generated_section_is_current():
    assert I.committed_generated() == I.generated_source(), \
        "run: python -m parsers.itch --write-generated"


def test_doc_lists_every_type_and_field(capsys):
    assert I.main(["--doc"]) == 0
    out = capsys.readouterr().out
    for t, (name, _, body) in I.MESSAGES.items():
        assert f"{t}  {name}:" in out and f"({SPEC_LENGTHS[t]} bytes)" in out
    assert "ITCH_RECORD_DTYPE" in out
    r = subprocess.run([sys.executable, "-m", "parsers.itch", "--doc"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == out.strip()


def test_c_header_is_current_and_agrees_when_compiled(tmp_path):
    assert I.header_path().read_text() == I.c_header(), \
        "run: python -m parsers.itch --write-header"
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    lines = []
    for t, (name, _, body) in I.MESSAGES.items():
        p = "OH" if t == "h" else t
        lines.append(f'printf("{t} LEN %d\\n", ITCH_{p}_LEN);')
        lines.append(f'printf("{t} TAB %d\\n", itch_msg_len[(unsigned char)\'{t}\']);')
        for fname, *_ in body:
            lines.append(f'printf("{t} {fname} %d\\n", ITCH_{p}_{fname.upper()});')
    src = tmp_path / "h.c"
    src.write_text('#include <stdio.h>\n#include "hugering_itch.h"\nint main(void){\n'
                   'unsigned char b[8]={1,2,3,4,5,6,7,8};\n'
                   'printf("BE %llx %llx\\n",(unsigned long long)itch_be48(b),'
                   '(unsigned long long)itch_be64(b));\n' + "\n".join(lines) + "\nreturn 0;}\n")
    exe = tmp_path / "h"
    subprocess.run([cc, "-std=c11", "-Wall", "-Werror", "-O1", "-I",
                    str(I.header_path().parent), str(src), "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    want = ["BE 10203040506 102030405060708"]
    for t, (name, _, body) in I.MESSAGES.items():
        want += [f"{t} LEN {SPEC_LENGTHS[t]}", f"{t} TAB {SPEC_LENGTHS[t]}"]
        offs = naive_offsets(t)
        want += [f"{t} {fname} {offs[fname]}" for fname, *_ in body]
    assert out.split("\n")[:-1] == want


# --- bounds-checked run ------------------------------------------------------------------------
def test_boundscheck_mode():
    assert I._BOUNDSCHECK == UNDER_BOUNDSCHECK == bool(numba.config.BOUNDSCHECK)
    if not UNDER_BOUNDSCHECK:
        return
    a = np.zeros(4, np.uint8)
    for f, n in ((I.be8, 1), (I.be16, 2), (I.be32, 4), (I.be48, 6), (I.be64, 8)):
        with pytest.raises(IndexError):
            f(a, 5 - n)
        with pytest.raises(IndexError):
            f(a, -1)
    with pytest.raises(IndexError):
        I.put32(a, 1, 0)


@pytest.mark.skipif(UNDER_BOUNDSCHECK, reason="this is the boundscheck run itself")
def test_suite_under_numba_boundscheck():
    """test_itch.py and test_moldudp64.py again with NUMBA_BOUNDSCHECK=1: any read or write
    outside an array raises there.  Its own cache directory (the cache does not key on the
    flag); the first run compiles everything (about a minute), later runs load the cache."""
    cache = Path(tempfile.gettempdir()) / f"hugering-numba-boundscheck-{os.getuid()}"
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(cache),
               HUGERING_FUZZ_EXAMPLES="25")
    env.pop("PYTEST_ADDOPTS", None)
    files = ["tests/test_itch.py", "tests/test_moldudp64.py"]
    files = [f for f in files if (ROOT / f).exists()]
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files,
         "-k", "not test_suite_under_numba_boundscheck and not compiled and not doc"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    tail = out.stdout[-3000:] + out.stderr[-2000:]
    assert out.returncode == 0, tail
    assert " passed" in out.stdout and " failed" not in out.stdout, tail
