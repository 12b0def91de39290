"""Filters: the compiled @njit matcher against a naive reference, the two front ends' errors,
the burst verbs, and the NRT allocation count.

The naive reference (``naive_match``) does not share code with the matcher: it expands every
AST leaf into the chain of single load-and-compare tests that libpcap's gencode.c emits for it
(in gencode's order: ``port`` tests IPv6 before IPv4, sctp before tcp before udp, ...), then
evaluates that tree with Python short-circuit, a load past the captured bytes raising ``Abort``
(the whole frame is rejected, as a BPF program returns 0).  The matcher fuses each leaf into one
hand-written test; hypothesis checks that the fusion, the jump layout and the Aho-Corasick scan
change nothing, on random ASTs over random, truncated and corrupted frames.
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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parsers import filter_yaml as Y
from parsers import filters as F
from parsers import pcap_filter as P
from parsers.l2l4 import parse_frame
from parsers.record import new_records
from shm import layout as L

sys.path.insert(0, str(Path(__file__).parent))
import test_filters_tcpdump as T  # noqa: E402  (frame builders and corpus)

pytestmark = pytest.mark.pure          # computation only: as root, as any user (conftest)

ROOT = Path(__file__).resolve().parents[1]
U32 = F.U32


# --- the naive reference ----------------------------------------------------------------------------
class Abort(Exception):
    pass


class Frame:
    def __init__(self, data: bytes, wirelen: int, poff: int, plen: int):
        self.data = data
        self.wirelen = wirelen
        # the matcher's view of the record's payload: clamped to the capture
        if poff >= 0:
            plen = max(plen, 0)
            plen = min(plen, max(len(data) - poff, 0))
        self.poff, self.plen = poff, plen

    def ld(self, off: int, size: int) -> int:
        if off < 0 or off + size > len(self.data):
            raise Abort
        return int.from_bytes(self.data[off:off + size], "big")

    def payload(self) -> bytes:
        return b"" if self.poff < 0 else self.data[self.poff:self.poff + self.plen]


def A(off, size, value, mask=U32, op="=="):
    return ("atom", "abs", off, size, mask, op, value)


def seq(*xs):
    return ("and",) + xs


def alt(*xs):
    return ("or",) + xs


def expand(n: F.Node):
    """gencode.c, block by block, for one leaf (or the boolean structure above it)."""
    if isinstance(n, F.Const):
        return ("const", n.value)
    if isinstance(n, F.Not):
        return ("not", expand(n.item))
    if isinstance(n, F.And):
        return seq(*map(expand, n.items))
    if isinstance(n, F.Or):
        return alt(*map(expand, n.items))
    if isinstance(n, F.Contains):
        return ("contains", n.patterns)
    if isinstance(n, F.Cmp):
        return ("cmp", n)
    et, l3 = 12 + 4 * n.d, 14 + 4 * n.d
    if isinstance(n, F.EtherType):
        return A(et, 2, n.value)
    if isinstance(n, F.IpProto):
        parts = []
        if n.flags & F.IPP_V4:
            parts.append(seq(A(et, 2, 0x0800), A(l3 + 9, 1, n.proto)))
        if n.flags & F.IPP_V6F:
            parts.append(seq(A(et, 2, 0x86DD), alt(A(l3 + 6, 1, n.proto),
                                                   seq(A(l3 + 6, 1, 44), A(l3 + 40, 1, n.proto)))))
        if n.flags & F.IPP_V6:
            parts.append(seq(A(et, 2, 0x86DD), A(l3 + 6, 1, n.proto)))
        return alt(*parts)
    if isinstance(n, F.Vlan):
        tag = alt(A(et, 2, 0x8100), A(et, 2, 0x88A8), A(et, 2, 0x9100))
        return tag if n.vid < 0 else seq(tag, A(l3, 2, n.vid, mask=0xFFF))
    if isinstance(n, F.Port):
        protos = [p for p, bit in ((132, F.PP_SCTP), (6, F.PP_TCP), (17, F.PP_UDP))
                  if n.protos & bit]

        def rng(atom_maker, off):
            if n.lo == n.hi:
                return atom_maker(off, n.lo, "==")
            return seq(atom_maker(off, n.lo, ">="), atom_maker(off, n.hi, "<="))

        def dirs(atom_maker):
            s, d = rng(atom_maker, 0), rng(atom_maker, 2)
            return {F.D_SRC: s, F.D_DST: d, F.D_OR: alt(s, d), F.D_AND: seq(s, d)}[n.dir]

        v6 = seq(A(et, 2, 0x86DD), alt(*(seq(A(l3 + 6, 1, p),
                                             dirs(lambda o, v, op: A(l3 + 40 + o, 2, v, op=op)))
                                         for p in protos)))
        v4 = seq(A(et, 2, 0x0800), alt(*(seq(A(l3 + 9, 1, p), A(l3 + 6, 2, 0, mask=0x1FFF),
                                             dirs(lambda o, v, op: ("atom", "ind", l3, o, 2,
                                                                    U32, op, v)))
                                         for p in protos)))
        return alt(v6, v4)
    if isinstance(n, F.Host4):
        parts = []
        for bit, ethtype, so, do in ((F.HK_IP, 0x0800, 12, 16), (F.HK_ARP, 0x0806, 14, 24),
                                      (F.HK_RARP, 0x8035, 14, 24)):
            if n.kinds & bit:
                s = seq(A(et, 2, ethtype), A(l3 + so, 4, n.addr, mask=n.mask))
                d = seq(A(et, 2, ethtype), A(l3 + do, 4, n.addr, mask=n.mask))
                parts.append({F.D_SRC: s, F.D_DST: d, F.D_OR: alt(s, d),
                              F.D_AND: seq(s, d)}[n.dir])
        return alt(*parts)
    if isinstance(n, F.Host6):
        def side(o):
            words = [A(l3 + o + 4 * k, 4, int.from_bytes(n.addr[4 * k:4 * k + 4], "big"),
                       mask=int.from_bytes(n.mask[4 * k:4 * k + 4], "big")) for k in range(4)]
            return seq(A(et, 2, 0x86DD), *words)
        s, d = side(8), side(24)
        return {F.D_SRC: s, F.D_DST: d, F.D_OR: alt(s, d), F.D_AND: seq(s, d)}[n.dir]
    raise TypeError(n)


def _rel(v, op, k):
    return {"==": v == k, "!=": v != k, "<": v < k, "<=": v <= k, ">": v > k, ">=": v >= k}[op]


def ev(t, fr: Frame) -> bool:
    kind = t[0]
    if kind == "const":
        return t[1]
    if kind == "not":
        return not ev(t[1], fr)
    if kind == "and":
        return all(ev(x, fr) for x in t[1:])          # all/any short-circuit, left to right
    if kind == "or":
        return any(ev(x, fr) for x in t[1:])
    if kind == "contains":
        pay = fr.payload()
        return any(p in pay for p in t[1])
    if kind == "atom":
        if t[1] == "abs":
            _, _, off, size, mask, op, value = t
            v = fr.ld(off, size)
        else:
            _, _, l3, off, size, mask, op, value = t
            x = 4 * (fr.ld(l3, 1) & 0xF)
            v = fr.ld(l3 + x + off, size)
        return _rel(v & mask, op, value)
    c: F.Cmp = t[1]
    ops = {F.R_EQ: "==", F.R_NE: "!=", F.R_LT: "<", F.R_LE: "<=", F.R_GT: ">", F.R_GE: ">="}
    l3 = 14 + 4 * c.d
    if c.base == F.B_LEN:
        v = fr.wirelen & U32
    elif c.base == F.B_LINK:
        v = fr.ld(c.off, c.size)
    elif c.base == F.B_L3:
        v = fr.ld(l3 + c.off, c.size)
    elif c.base == F.B_L4V6:
        v = fr.ld(l3 + 40 + c.off, c.size)
    elif c.base == F.B_L4V4:
        x = 4 * (fr.ld(l3, 1) & 0xF)
        v = fr.ld(l3 + x + c.off, c.size)
    else:                                             # payload: outside it is just false
        pay = fr.payload()
        if fr.poff < 0 or c.off + c.size > len(pay):
            return False
        v = int.from_bytes(pay[c.off:c.off + c.size], "big")
    v = (((v & c.mask) >> min(c.shift, 32)) * c.mul + c.add) & U32
    return _rel(v, ops[c.op], c.value)


def naive_match(node: F.Node, fr: Frame) -> bool:
    try:
        return ev(expand(node), fr)
    except Abort:
        return False


# --- frames -------------------------------------------------------------------------------------------
_POOL = T.corpus(n=300, seed=99)


def frame_from(draw_data: bytes, wire: int, rec_mode: int, poff: int, plen: int):
    """bytes -> (buf, caplen, wirelen, rec array) with the record parsed, or garbage."""
    buf = np.frombuffer(draw_data, np.uint8) if draw_data else np.zeros(0, np.uint8)
    rec = new_records(1)
    if rec_mode == 0:
        parse_frame(buf, 0, len(draw_data), rec[0])
    elif rec_mode == 1:                       # a record that lies: never trust its lengths
        rec[0]["payload_off"] = poff
        rec[0]["payload_len"] = plen
    else:
        rec[0]["payload_off"] = -1
    return buf, rec


@st.composite
def frames(draw):
    kind = draw(st.integers(0, 9))
    if kind < 6:
        data, wire = _POOL[draw(st.integers(0, len(_POOL) - 1))]
    else:
        data = draw(st.binary(min_size=0, max_size=120))
        wire = len(data)
    if draw(st.booleans()):
        data = data[:draw(st.integers(0, len(data)))]
    if kind >= 4 and data and draw(st.booleans()):        # corrupt a few bytes
        b = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            b[draw(st.integers(0, len(b) - 1))] = draw(st.integers(0, 255))
        data = bytes(b)
    wire = max(wire, len(data)) + draw(st.sampled_from([0, 0, 4, 1000]))
    rec_mode = draw(st.sampled_from([0, 0, 0, 1, 2]))
    poff = draw(st.integers(-3, 130))
    plen = draw(st.one_of(st.integers(0, 130), st.just(0xFFFF)))   # payload_len is a u2
    return data, wire, rec_mode, poff, plen


PATTERNS = [b"ABC", b"DEF", b"hello", b"\x12\x34", b"GET ", b"world", b"\x00\x00\x00", b"BCh",
            b"DEFD", b"A"]


@st.composite
def leaves(draw):
    d = draw(st.integers(0, 2))
    k = draw(st.integers(0, 9))
    if k == 9:                  # a load with libpcap's gate (the compiler fuses the two)
        layer = draw(st.sampled_from([x for x in F.LOAD_LAYERS if x != "payload"]))
        return F.load_cmp(layer, draw(st.integers(0, 60)), draw(st.sampled_from([1, 2, 4])),
                          draw(st.integers(0, 5)),
                          draw(st.sampled_from([0, 1, 5, 6, 17, 0x11, 0x45, 0x1234, 60])), d,
                          mask=draw(st.sampled_from([U32, 0xFF, 0x0F, 0])),
                          gated=draw(st.sampled_from([True, True, False])))
    if k == 0:
        return F.EtherType(d, draw(st.sampled_from([0x0800, 0x86DD, 0x0806, 0x8035, 0x8100,
                                                    0x88CC, 0x88A8])))
    if k == 1:
        return F.IpProto(d, draw(st.sampled_from([1, 2, 6, 17, 44, 47, 58, 132, 0, 60])),
                         draw(st.sampled_from([F.IPP_V4, F.IPP_V6F, F.IPP_V6,
                                               F.IPP_V4 | F.IPP_V6F])))
    if k == 2:
        lo = draw(st.sampled_from(T.PORTS + [0, 65535]))
        hi = draw(st.sampled_from([lo, lo, lo + 500, 65535]))
        return F.port(lo, min(hi, 65535), draw(st.sampled_from([1, 2, 3, 4])), d,
                      draw(st.integers(1, 7)))
    if k == 3:
        a = int.from_bytes(T.ip4(draw(st.sampled_from(T.V4))), "big")
        plen = draw(st.sampled_from([32, 32, 24, 16, 8, 0]))
        mask = (U32 << (32 - plen)) & U32 if plen else 0
        return F.host4(a & mask, mask, draw(st.sampled_from([1, 2, 3, 4])), d,
                       draw(st.integers(1, 7)))
    if k == 4:
        a = T.ip6(draw(st.sampled_from(T.V6)))
        plen = draw(st.sampled_from([128, 128, 64, 16, 10, 0]))
        m = ((1 << 128) - (1 << (128 - plen))).to_bytes(16, "big")
        a = bytes(x & y for x, y in zip(a, m))
        return F.host6(a, m, draw(st.sampled_from([1, 2, 3, 4])), d)
    if k == 5:
        return F.Vlan(d, draw(st.sampled_from([-1, 100, 200, 300, 7, 1, 2])))
    if k == 6:
        return F.contains(draw(st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=3)))
    base = draw(st.sampled_from([F.B_LINK, F.B_L3, F.B_L4V4, F.B_L4V6, F.B_LEN, F.B_PAYLOAD]))
    size = draw(st.sampled_from([1, 2, 4]))
    return F.Cmp(base, d, draw(st.integers(0, 70)), size,
                 draw(st.sampled_from([U32, U32, 0xFF, 0x0F, 0x1FFF, 0xFFF, 0])),
                 draw(st.sampled_from([0, 0, 0, 4, 31, 32])),
                 draw(st.sampled_from([1, 1, 1, 4, U32])),
                 draw(st.sampled_from([0, 0, 0, 1, U32 - 13])),
                 draw(st.integers(0, 5)),
                 draw(st.sampled_from([0, 1, 4, 5, 6, 17, 0x11, 0x45, 0x1234, 60, 100, U32])))


def trees(depth=3):
    return st.recursive(
        leaves() | st.builds(F.Const, st.booleans()),
        lambda kids: st.one_of(
            st.builds(lambda xs: F.And(tuple(xs)), st.lists(kids, min_size=2, max_size=4)),
            st.builds(lambda xs: F.Or(tuple(xs)), st.lists(kids, min_size=2, max_size=4)),
            st.builds(F.Not, kids)),
        max_leaves=10)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=trees(), batch=st.lists(frames(), min_size=1, max_size=12))
def test_matcher_equals_naive_reference(tree, batch):
    flt = F.Filter(tree)
    for data, wire, rec_mode, poff, plen in batch:
        buf, rec = frame_from(data, wire, rec_mode, poff, plen)
        got = bool(F.match(rec[0], buf, 0, len(data), wire, flt.prog))
        fr = Frame(data, wire, int(rec[0]["payload_off"]), int(rec[0]["payload_len"]))
        want = naive_match(tree, fr)
        assert got == want, (str(tree), data.hex(), wire, flt.describe())


def test_reference_against_parsed_expressions():
    """The expressions of the tcpdump suite, through the matcher and the reference, on the
    whole pool (a deterministic complement to the random trees)."""
    bad = []
    for expr in T.EXPRESSIONS:
        flt = P.compile_pcap_filter(expr)
        for data, wire in _POOL:
            buf, rec = frame_from(data, wire, 0, 0, 0)
            got = bool(F.match(rec[0], buf, 0, len(data), wire, flt.prog))
            fr = Frame(data, wire, int(rec[0]["payload_off"]), int(rec[0]["payload_len"]))
            if got != naive_match(flt.node, fr):
                bad.append((expr, data.hex()))
                break
    assert not bad, bad[:5]


# --- the specialised matcher (parsers/filter_codegen.py) -------------------------------------
# Fixed filters (each compiles once, ~1 s) that between them use every test op, every load
# base, both directions of every address/port test, vlan shifts and contains; hypothesis feeds
# them random, truncated and corrupted frames and the verdict must equal the interpreter's and
# the naive reference's.
SPECIALIZED_EXPRS = [
    "(udp and dst port 53) or (tcp and src portrange 1000-2000) or (ip6 and port 80) or "
    "src host 10.0.0.1 or dst net 10.1.0.0/16 or (src and dst net 10.0.0.0/8)",
    "vlan 100 and (host fe80::1 or dst net 2001:db8::/32 or src fe80::2) or arp host 10.0.0.2",
    "ip[0] & 0xf > 5 or tcp[13] & 2 != 0 or udp[8:2] = 0x1234 or ip6[6] = 58 or len > 100 "
    "or ether[0] & 1 = 1 or (tcp[12] >> 4) * 4 > 20 or icmp[0] = 8",
    'payload contains "ABC" or payload contains "hello" or payload[0] = 0x41 or '
    'not (ip or ip6)',
    "not vlan and (proto 17 or ip6 proto 58) or vlan and vlan 200 and udp",
    "1 = 0",
]


@pytest.fixture(scope="module")
def specialized_filters():
    return [P.compile_pcap_filter(e) for e in SPECIALIZED_EXPRS]


@settings(max_examples=150, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(batch=st.lists(frames(), min_size=1, max_size=16))
def test_specialized_equals_interpreter_and_reference(specialized_filters, batch):
    slots = np.zeros(len(batch), dtype=L.slot_dtype(2048))
    recs = new_records(len(batch))
    for i, (data, wire, rec_mode, poff, plen) in enumerate(batch):
        slots[i]["wire_len"] = wire
        slots[i]["cap_len"] = len(data)
        slots[i]["payload"][:len(data)] = np.frombuffer(data, np.uint8)
        recs[i] = frame_from(data, wire, rec_mode, poff, plen)[1][0]
    for flt in specialized_filters:
        spec = flt.specialized.match_slot_array(slots, recs).tolist()
        assert spec == flt.match_slot_array(slots, recs).tolist(), flt
        for i, (data, wire, *_r) in enumerate(batch):
            fr = Frame(data, wire, int(recs[i]["payload_off"]), int(recs[i]["payload_len"]))
            assert spec[i] == naive_match(flt.node, fr), (flt, data.hex())


def test_specialized_ring_addressing_wraps_like_the_interpreter(specialized_filters):
    fr = _POOL[:64]
    slots = _slots(fr)
    from parsers.l2l4 import parse_slot_array
    recs = new_records(64)
    parse_slot_array(slots, recs)
    flat = slots.view(np.uint8).reshape(-1)
    stride = slots.dtype.itemsize
    for flt in specialized_filters:
        sp = flt.specialized
        for first in (0, 50, 63, 64 * 1000 + 7):
            v1 = np.zeros(32, np.uint8)
            v2 = np.full(32, 9, np.uint8)
            recs_w = recs[[(first + i) % 64 for i in range(32)]]
            h1 = F.match_slots(flat, stride, 256, first, 32, 64, recs_w, flt.prog, v1)
            h2 = sp.match_slots(flat, stride, 256, first, 32, 64, recs_w, v2)
            assert h1 == h2 and v1.tolist() == v2.tolist(), flt
        v = np.full(4, 9, np.uint8)           # bad geometry filters nothing, like the interpreter
        assert sp.match_slots(flat, stride, 256, 0, 4, 48, recs, v) == 0 and v.tolist() == [9] * 4
        assert sp.match_slots(flat, 16, 256, 0, 4, 0, recs, v) == 0


SPECIALIZE_CACHE_SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    import numpy as np
    from parsers import pcap_filter as P
    from parsers.record import new_records
    from shm import layout as L
    sp = P.compile_pcap_filter("udp and dst port 4242 or vlan 7").specialized
    slots = np.zeros(4, dtype=L.slot_dtype(64))
    sp.match_slot_array(slots, new_records(4))
    st = sp.burst.stats
    print(json.dumps({"path": str(sp.path), "hits": sum(st.cache_hits.values()),
                      "misses": sum(st.cache_misses.values())}))
""")


def test_specialized_machine_code_is_cached_across_processes(tmp_path):
    env = dict(os.environ, HUGERING_CACHE_DIR=str(tmp_path))

    def one():
        p = subprocess.run([sys.executable, "-c", SPECIALIZE_CACHE_SCRIPT, str(ROOT)],
                           capture_output=True, text=True, env=env, timeout=300)
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout.strip().splitlines()[-1])

    first, second = one(), one()
    assert first["path"] == second["path"] and first["path"].startswith(str(tmp_path))
    assert first["misses"] == 1 and first["hits"] == 0      # compiled ...
    assert second["hits"] == 1 and second["misses"] == 0    # ... then loaded from disk
    assert "udp and dst port 4242" in Path(first["path"]).read_text()


def test_specialized_cache_key_covers_program_and_library(monkeypatch):
    from parsers import filter_codegen as G
    flt = P.compile_pcap_filter("udp port 1")
    assert G.module_path(flt) != G.module_path(P.compile_pcap_filter("udp port 2"))
    assert G.module_path(flt) == G.module_path(P.compile_pcap_filter("udp port 1"))
    before = G.module_path(flt)
    monkeypatch.setattr(G, "_LIB_DIGEST", "an edited parsers/filters.py")
    assert G.module_path(flt) != before          # a library change never reuses old code
    monkeypatch.setattr(G, "_LIB_DIGEST", None)
    assert G.module_path(flt) == before


# --- burst verbs ----------------------------------------------------------------------------------------
def _slots(frames_, size=256):
    slots = np.zeros(len(frames_), dtype=L.slot_dtype(size))
    for i, (data, wire) in enumerate(frames_):
        data = data[:size]
        slots[i]["wire_len"] = wire
        slots[i]["cap_len"] = len(data)
        slots[i]["payload"][:len(data)] = np.frombuffer(data, np.uint8)
    return slots


def test_slot_header_offsets_match_the_layout():
    d = L.slot_dtype(64)
    assert F.SLOT_HEADER_BYTES == L.SLOT_HEADER_BYTES == d.fields["payload"][1]
    assert F.SLOT_WIRE_LEN == d.fields["wire_len"][1]
    assert F.SLOT_CAP_LEN == d.fields["cap_len"][1]


def test_burst_slots_and_single_agree():
    flt = P.compile_pcap_filter('udp or (vlan and tcp) or payload contains "ABC"')
    fr = _POOL[:200]
    slots = _slots(fr)
    from parsers.l2l4 import parse_slot_array
    recs = new_records(len(fr))
    parse_slot_array(slots, recs)
    v_slots = flt.match_slot_array(slots, recs)
    # the flat-buffer burst verb
    flat = slots.view(np.uint8).reshape(-1)
    stride = slots.dtype.itemsize
    bases = np.arange(len(fr), dtype=np.int64) * stride + F.SLOT_HEADER_BYTES
    verdict = np.zeros(len(fr), np.uint8)
    hits = F.match_burst(recs, flat, bases, slots["cap_len"].astype(np.int64),
                         slots["wire_len"].astype(np.int64), len(fr), flt.prog, verdict)
    assert hits == int(v_slots.sum()) and (verdict.astype(bool) == v_slots).all()
    single = [flt.match_frame(d[:256], w) for d, w in fr]
    assert single == v_slots.tolist()
    assert 0 < hits < len(fr)


def test_match_slots_ring_addressing_wraps():
    """capacity > 0: slot i of the burst is (first + i) & (capacity - 1)."""
    flt = P.compile_pcap_filter("udp")
    fr = _POOL[:16]
    slots = _slots(fr)
    from parsers.l2l4 import parse_slots
    flat = slots.view(np.uint8).reshape(-1)
    stride, size = slots.dtype.itemsize, 256
    recs = new_records(16)
    verdict = np.zeros(16, np.uint8)
    first = 1000 * 16 + 11                       # a free-running cursor
    parse_slots(flat, stride, size, first, 16, 16, recs)
    F.match_slots(flat, stride, size, first, 16, 16, recs, flt.prog, verdict)
    want = [flt.match_frame(*fr[(first + i) & 15]) for i in range(16)]
    assert verdict.astype(bool).tolist() == want
    # bad geometry filters nothing and leaves the verdicts alone
    verdict[:] = 7
    assert F.match_slots(flat, stride, size, 0, 16, 12, recs, flt.prog, verdict) == 0
    assert F.match_slots(flat, 16, size, 0, 16, 0, recs, flt.prog, verdict) == 0
    assert (verdict == 7).all()


def test_lying_cap_len_is_clamped():
    flt = P.compile_pcap_filter("ether[200] = 0")
    slots = _slots([(b"\x00" * 60, 60)], size=64)
    slots[0]["cap_len"] = 10_000                 # a broken producer
    recs = new_records(1)
    assert flt.match_slot_array(slots, recs).tolist() == [False]   # [200] is past the slot


# --- Aho-Corasick -----------------------------------------------------------------------------------------
def test_aho_corasick_many_patterns():
    rng = random.Random(5)
    alphabet = b"ABCD\x00\xff"
    pats = sorted({bytes(rng.choice(alphabet) for _ in range(rng.randrange(1, 6)))
                   for _ in range(300)})
    groups = [tuple(pats[i::40]) for i in range(40)]
    node = F.or_(*(F.contains(g) for g in groups))
    flt = F.Filter(node)
    assert len(flt.groups) == 40
    table, out = F.build_aho_corasick(groups)
    for _ in range(300):
        pay = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
        s, found = 0, 0
        for b in pay:
            s = int(table[s, b])
            found |= int(out[s])
        want = {g for g, ps in enumerate(groups) if any(p in pay for p in ps)}
        assert {g for g in range(40) if found >> g & 1} == want


def test_contains_group_limit():
    node = F.or_(*(F.contains([bytes([65 + i // 26, 65 + i % 26])]) for i in range(65)))
    with pytest.raises(F.FilterSyntaxError, match="at most 64"):
        F.Filter(node)
    F.Filter(F.or_(*(F.contains([bytes([65 + i // 26, 65 + i % 26])]) for i in range(64))))


def test_contains_reads_the_parsed_payload():
    fr = T.eth(0x86DD, T.ipv6(0, "fe80::1", "fe80::2", T.v6opts(17, T.udp(1, 2, b"xxABCyy"))),
               tags=((0x8100, 5),))
    assert P.compile_pcap_filter('payload contains "ABC"').match_frame(fr)
    assert not P.compile_pcap_filter('payload contains "ABCy" and payload contains "Z"'
                                     ).match_frame(fr)
    assert P.compile_pcap_filter('payload[2:2] = 0x4142').match_frame(fr)
    assert not P.compile_pcap_filter('payload[6:2] = 0x7979').match_frame(fr)   # past it


# --- the text front end -------------------------------------------------------------------------------------
def test_precedence_and_or_equal_left_associative():
    udp, tcp = F.proto_abbrev("udp"), F.proto_abbrev("tcp")
    p53 = F.port(53)
    assert P.parse("udp or tcp and port 53") == F.And((F.Or((udp, tcp)), p53))
    assert P.parse("udp and tcp or port 53") == F.Or((F.And((udp, tcp)), p53))
    assert P.parse("not udp and tcp") == F.And((F.Not(udp), tcp))
    assert P.parse("!udp || tcp && port 53") == F.And((F.Or((F.Not(udp), tcp)), p53))


def test_implicit_qualifiers():
    assert P.parse("port 53 or 80") == F.Or((F.port(53), F.port(80)))
    assert P.parse("tcp dst port 1 or (2 or not 3)") == F.Or((
        F.port(1, dir=F.D_DST, protos=F.PP_TCP), F.port(2, dir=F.D_DST, protos=F.PP_TCP),
        F.Not(F.port(3, dir=F.D_DST, protos=F.PP_TCP))))
    h = lambda a: F.host4(a, U32)                                        # noqa: E731
    assert P.parse("host 10.0.0.1 and not 10.0.0.2") == F.And((h(0x0A000001),
                                                               F.Not(h(0x0A000002))))
    # a parenthesised term passes on the qualifiers from before it (libpcap's $<blk>0)
    assert P.parse("host 10.0.0.1 and (tcp) and 10.0.0.2") == F.And((
        h(0x0A000001), F.proto_abbrev("tcp"), h(0x0A000002)))
    assert P.parse("port 53 or 80 = 80") == F.Or((F.port(53), F.Const(True)))


def test_vlan_shifts_what_follows_in_the_text():
    assert P.parse("vlan 100 or udp") == F.Or((F.Vlan(0, 100), F.proto_abbrev("udp", 1)))
    assert P.parse("udp or vlan 100") == F.Or((F.proto_abbrev("udp", 0), F.Vlan(0, 100)))
    assert P.parse("vlan and vlan 2 and ip") == F.And((F.Vlan(0, -1), F.Vlan(1, 2),
                                                       F.EtherType(2, 0x0800)))
    assert P.parse("not vlan and ether[12:2] = 1") == F.And((F.Not(F.Vlan(0, -1)),
                                                             F.Cmp(F.B_LINK, 0, 12, 2, value=1)))


def test_lexer_follows_flex_longest_match():
    kinds = lambda s: [(t.kind, t.val) for t in P.tokenize(s)][:-1]     # noqa: E731
    assert kinds("port 010") == [("KW", "port"), ("NUM", 8)]
    assert kinds("portrange 1000-2000") == [("KW", "portrange"), ("ID", "1000-2000")]
    assert kinds("001122334455") == [("EID", "001122334455")]
    assert kinds("tcp-syn") == [("NUM", 2)]
    assert kinds("hosts") == [("ID", "hosts")]
    assert kinds("ip6[6]==17") == [("KW", "ip6"), ("OP", "["), ("NUM", 6), ("OP", "]"),
                                  ("OP", "="), ("NUM", 17)]
    assert kinds("a&&!b") == [("ID", "a"), ("AND", "&&"), ("NOT", "!"), ("ID", "b")]
    assert kinds("fe80::1/64") == [("HID6", "fe80::1"), ("OP", "/"), ("NUM", 64)]
    assert kinds("\\udp") == [("ID", "udp")]


@pytest.mark.parametrize("expr, message, column, width", [
    ("tcp and 80", "'80' has no qualifier", 9, 2),
    ("10.0.0.1", "needs a qualifier", 1, 8),
    ("udp and", "expected after 'and'", 8, 1),
    ("port 70000", "illegal port number 70000 > 65535", 6, 5),
    ("udp and dst port 70000", "illegal port number", 18, 5),
    ("net 10.0.0.1/16", 'non-network bits set in "10.0.0.1/16"', 5, 11),
    ("host foo", "host names are not supported", 6, 3),
    ("mpls 5", "'mpls' is not supported", 1, 4),
    ("udp and pim", "'pim' is not supported", 9, 3),
    ("udp[1:3] = 2", "data size must be 1, 2, or 4", 7, 1),
    ("ip[0] | 1 = 1", "'|' applied to a packet field", 7, 1),
    ("port 08", "non-octal digit", 6, 2),
    ("(udp", "')' expected", 5, 1),
    ("udp)", "unmatched ')'", 4, 1),
    ("ip6 src port 80", "illegal qualifier of 'port'", 14, 2),
    ("vlan 4096", "VLAN tag 4096 greater than maximum 4095", 6, 4),
    ("tcp[tcp[12]] = 1", "only constant offsets", 1, 3),
    ("ip[0] << 32 = 0", "shift by more than 31 bits", 7, 2),
    ("1 / 0 = 0", "division by zero", 3, 1),
    ("-ip[8] > 100", "unary minus", 1, 1),
    ("udp tcp", "'and' or 'or' expected before 'tcp'", 5, 3),
    ("port 53 or", "expected after 'or'", 11, 1),
    ('payload contains "a', "unterminated string", 18, 2),
    ("ip broadcast", "netmask", 4, 9),
    ("host 1.2.3.4 and @", "unexpected character '@'", 18, 1),
    ("ether host 00:11:22", "bogus ethernet address 00:11:", 12, 6),    # flex's {B}:+({B}:+)+
    ("ip6 host ::ffff:1.2.3.400", "bogus IPv6 address", 10, 16),
    ("ip6 host fe80::1::2", "'and' or 'or' expected before '::2'", 17, 3),
    ("ip[0] = ip[1]", "comparing two packet fields", 7, 1),
    ("host 300.0.0.1", "invalid IPv4 address", 6, 9),
    ("src 10.0.0.0/8", "Mask syntax for networks only", 5, 10),
    ("ether proto \\stp", "ether proto 'stp' is not supported", 13, 4),
    ("ether proto \\bogus", "unknown ether proto 'bogus'", 13, 6),
])
def test_syntax_errors_point_at_the_token(expr, message, column, width):
    with pytest.raises(F.FilterSyntaxError) as ei:
        P.parse(expr)
    e = ei.value
    assert message in e.reason, e.reason
    assert (e.column, e.length) == (column, width), str(e)
    lines = str(e).splitlines()
    assert lines[1].strip() == expr.strip()
    assert lines[2].index("^") - lines[1].index(expr[0]) == column - 1


# --- the YAML front end ---------------------------------------------------------------------------------------
def test_yaml_rules_mean_their_pcap_filter_text():
    pairs = [
        ({"proto": "udp", "dst_port": 12345, "src_net": "10.0.0.0/16"},
         "udp and src net 10.0.0.0/16 and dst port 12345"),
        ({"vlan": 100}, "vlan 100"),
        ({"vlan": [100, "any"], "proto": "tcp", "port": "1000-2000"},
         "vlan 100 and vlan and tcp and portrange 1000-2000"),
        ({"not": {"proto": "icmp"}}, "not icmp"),
        ({"any": [{"dst_port": 53}, {"src_host": "fe80::1"}]},
         "dst port 53 or ip6 src host fe80::1"),
        ({"host": ["10.0.0.1", "10.0.0.2"]}, "host 10.0.0.1 or host 10.0.0.2"),
        ({"proto": 47}, "proto 47"),
        ({"min_len": 60, "max_len": 100}, "greater 60 and less 100"),
        ({"vlan": 7, "expr": "udp and vlan 3 and tcp"}, "vlan 7 and udp and vlan 3 and tcp"),
        ({"contains": ["ABC", {"hex": "00 ff"}]}, None),
        ("ip6 and not icmp6", "ip6 and not icmp6"),
    ]
    for rule, text in pairs:
        node = Y.rules_to_node([rule])
        if text is not None:
            assert node == P.parse(text), (rule, str(node), str(P.parse(text)))
    assert Y.rules_to_node([{"contains": ["ABC", {"hex": "00 ff"}]}]) == F.Contains(
        (b"ABC", b"\x00\xff"))
    # the one deliberate difference: in YAML a rule's vlan shifts only that rule, while in the
    # text a vlan shifts everything after it, across 'or' too
    assert Y.rules_to_node({"filters": [{"vlan": 1}, {"proto": "arp"}]}) == F.Or((
        F.Vlan(0, 1), F.EtherType(0, 0x0806)))
    assert P.parse("vlan 1 or arp") == F.Or((F.Vlan(0, 1), F.EtherType(1, 0x0806)))
    assert Y.rules_to_node(None) == F.Const(True) == Y.rules_to_node([])


def test_yaml_pattern_matches_bytes():
    flt = Y.compile_rules([{"pattern": {"layer": "udp", "offset": 8, "bytes": "12 34 41",
                                        "mask": "ff ff 00"}}])
    good = T.eth(0x0800, T.ipv4(17, "10.0.0.1", "10.0.0.2", T.udp(1, 2, b"\x12\x34\x99")))
    bad = T.eth(0x0800, T.ipv4(17, "10.0.0.1", "10.0.0.2", T.udp(1, 2, b"\x12\x35\x99")))
    assert flt.match_frame(good) and not flt.match_frame(bad)
    assert Y.compile_rules([{"pattern": {"layer": "payload", "offset": 0,
                                         "bytes": [0x12, 0x34]}}]).match_frame(good)


@pytest.mark.parametrize("doc, message", [
    ("filters: [{dst_port: 70000}]", "filters[0].dst_port: 70000 is not a port (0..65535)"),
    ("filters:\n - {proto: udp}\n - {dst_prot: 5}",
     "filters[1].dst_prot: unknown key (did you mean 'dst_port'?)"),
    ("filters: [{proto: xx}]", "filters[0].proto: 'xx' is not a protocol"),
    ("filters: [{}]", "filters[0]: an empty rule"),
    ("filters: [3]", "filters[0]: a rule is a mapping"),
    ('filters: [{pattern: {layer: udp, offset: 8, bytes: "12 3"}}]',
     "filters[0].pattern.bytes: '12 3' is not hex bytes"),
    ('filters: [{pattern: {layer: udp, offset: 8, bytes: "12 34", mask: "ff"}}]',
     "filters[0].pattern.mask: 1 bytes, but bytes has 2"),
    ("filters: [{pattern: {layer: udp, bytes: '00'}}]", "filters[0].pattern.offset: missing"),
    ("filters: [{pattern: {layer: nope, offset: 0, bytes: '00'}}]",
     "filters[0].pattern.layer: 'nope' is not a layer"),
    ('filters: [{expr: "udp and port"}]', "filters[0].expr: syntax error"),
    ("filters: [{src_net: 10.0.0.1/16}]", "filters[0].src_net: '10.0.0.1/16' is not a network"),
    ("filters: [{vlan: [1, 5000]}]", "filters[0].vlan[1]: 5000 is not a VLAN id (0..4095)"),
    ("filters: [{any: [{proto: tcp}, {port: -1}]}]",
     "filters[0].any[1].port: -1 is not a port (0..65535)"),
    ("filters: [{not: {all: [{host: 10.0.0.0/8}]}}]",
     "filters[0].not.all[0].host: '10.0.0.0/8' is not an IP address"),
    ("filters: [{contains: ''}]", "filters[0].contains: an empty pattern"),
    ("filters: [{contains: [abc, 5]}]", "filters[0].contains[1]: 5 is not a string"),
    ("filters: [{port: true}]", "filters[0].port: True is not a port"),
    ("filters: [{host: [10.0.0.1, bad]}]", "filters[0].host[1]: 'bad' is not an IP address"),
    ("filters: {a: 1}", "filters: a list of rules, not dict"),
    ("other: 1", "expected a 'filters:' key"),
    ("filters: [", "invalid YAML"),
])
def test_yaml_errors_name_the_key(doc, message):
    with pytest.raises(F.FilterConfigError) as ei:
        Y.load_filters_text(doc)
    assert message in str(ei.value), str(ei.value)


def test_yaml_expr_error_keeps_the_caret(tmp_path):
    p = tmp_path / "f.yaml"
    p.write_text('filters:\n  - expr: "udp and dst port 70000"\n')
    with pytest.raises(F.FilterConfigError) as ei:
        Y.load_filters_file(p)
    s = str(ei.value)
    assert s.startswith(f"{p}: filters[0].expr: illegal port number 70000 > 65535 (column 18)")
    assert s.splitlines()[-1].strip() == "^^^^^"


# --- the compiler --------------------------------------------------------------------------------------
def test_program_jumps_forward_and_long_rule_lists_compile():
    flt = Y.compile_rules([{"dst_port": p} for p in range(3000)])
    code = flt.code
    rows = np.arange(1, len(code))
    for col in (1, 2):
        t = code[1:, col]
        assert ((t < 0) | (t > rows)).all()
    fr = T.eth(0x0800, T.ipv4(17, "10.0.0.1", "10.0.0.2", T.udp(9, 2999, b"")))
    assert flt.match_frame(fr)
    assert "entry" in flt.describe()


def test_compile_filter_dispatch():
    assert F.compile_filter(None).match_frame(b"") is True
    assert F.compile_filter("").match_frame(b"xx") is True
    assert F.compile_filter("udp").source == "udp"
    assert F.compile_filter([{"proto": "udp"}]).node == P.parse("udp")
    assert F.compile_filter({"filters": ["udp"]}).node == P.parse("udp")
    assert F.compile_filter(F.proto_abbrev("tcp")).node == P.parse("tcp")
    with pytest.raises(TypeError):
        F.compile_filter(3)


def test_or_true_still_runs_the_loads_before_it():
    """BPF semantics: in ``ip[100] = 1 or 1 = 1`` the load runs and, past the capture, rejects
    (libpcap's unoptimised program; its optimizer deletes the test -- documented)."""
    flt = P.compile_pcap_filter("ip[100] = 1 or 1 = 1")
    short = T.eth(0x0800, T.ipv4(17, "10.0.0.1", "10.0.0.2", T.udp(1, 2, b"")))
    assert not flt.match_frame(short)
    assert flt.match_frame(short + b"\x00" * 100)
    assert flt.match_frame(T.eth(0x86DD, b"\x00" * 40))       # not IPv4: the gate is false


# --- zero allocation in steady state -------------------------------------------------------------------------
NRT_SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[1] + "/tests")
    import numpy as np
    from numba import njit
    from numba.core.runtime import rtsys
    from parsers import filters as F, pcap_filter as P
    from parsers.l2l4 import parse_slot_array
    from parsers.record import new_records
    from shm import layout as L
    import test_filters_tcpdump as T

    flt = P.compile_pcap_filter('(udp and dst port 53) or (vlan and tcp[13] & 2 != 0) or '
                                'ip6 net 2001:db8::/32 or payload contains "ABC" or '
                                'payload contains "hello" or len > 1000')
    fr = T.corpus(n=64, seed=3)[:64]
    slots = np.zeros(64 * 8, dtype=L.slot_dtype(256))
    for i in range(64 * 8):
        d, w = fr[i % 64]
        d = d[:256]
        slots[i]["wire_len"] = w; slots[i]["cap_len"] = len(d)
        slots[i]["payload"][:len(d)] = np.frombuffer(d, np.uint8)
    recs = new_records(len(slots))
    parse_slot_array(slots, recs)
    flat = slots.view(np.uint8).reshape(-1)
    stride = slots.dtype.itemsize
    bases = np.arange(len(slots), dtype=np.int64) * stride + F.SLOT_HEADER_BYTES
    caps = slots["cap_len"].astype(np.int64); wires = slots["wire_len"].astype(np.int64)
    verdict = np.zeros(len(slots), np.uint8)

    @njit
    def user_loop(recs, flat, bases, caps, wires, n, prog):   # match() from a user kernel
        hits = 0
        for i in range(n):
            if F.match(recs[i], flat, bases[i], caps[i], wires[i], prog):
                hits += 1
        return hits

    def stats():
        s = rtsys.get_allocation_stats()
        return [s.alloc, s.free, s.mi_alloc, s.mi_free]

    spec = flt.specialized

    def rnd(calls, n):
        before = stats()
        h = 0
        for _ in range(calls):
            h += F.match_burst(recs, flat, bases, caps, wires, n, flt.prog, verdict)
            h += F.match_slots(flat, stride, 256, 0, n, 0, recs, flt.prog, verdict)
            h += spec.burst(flat, stride, 256, 0, n, 0, recs, verdict, spec.ac_next, spec.ac_out)
            h += user_loop(recs, flat, bases, caps, wires, n, flt.prog)
        return [a - b for a, b in zip(stats(), before)], h

    rnd(2, 64)
    small, hs = rnd(100, 64)
    large, hl = rnd(100, 512)
    print(json.dumps({"small": small, "large": large, "hits": [hs, hl]}))
""")


def test_matcher_makes_no_nrt_allocations():
    env = dict(os.environ, NUMBA_NRT_STATS="1")
    proc = subprocess.run([sys.executable, "-c", NRT_SCRIPT, str(ROOT)], capture_output=True,
                          text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["hits"][1] > r["hits"][0] > 0, r            # the work did scale 8x
    assert r["small"] == r["large"], r                   # nothing scales with packets
    assert r["large"][0] == r["large"][1], r             # nothing leaks
