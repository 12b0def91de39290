"""Property tests for ``parsers.l2l4`` (hypothesis): random bytes, every truncation of valid frames
of each kind, lying length fields, long IPv6 extension chains, deep VLAN stacks.

Every example checks three things: the @njit parser neither raises nor disagrees with the naive
reference (``tests/naive_parsers.py``) on any field; the record's invariants hold (offsets in
order and inside the capture, payload inside the capture); and the flags are the ones the rule
predicts.

The truncation rule, precisely (``naive_parsers.required_len`` computes the boundary): a
well-formed frame cut to ``k`` bytes is flagged ``F_TRUNCATED`` exactly when ``k`` is below the
end of its last length-delimited part — the IP datagram (total length / 40 + payload length),
the ARP packet, the 802.3 length — or, for an ethertype that is not decoded, below the end of
the last header (Ethernet + VLAN tags; a third tag is not read).  Cutting at or after that
boundary removes only padding or an undecoded payload: no flag, and every field equals the
uncut frame's (but ``caplen``, ``F_PADDED``, and ``payload_len`` where the payload has no length
of its own: it shrinks with the cut).  Cutting before it sets ``F_TRUNCATED`` and
each layer that was captured whole still parses exactly as in the uncut frame.

The whole module runs a second time in a subprocess with ``NUMBA_BOUNDSCHECK=1`` (and its own
``NUMBA_CACHE_DIR``, since the cache does not key on that flag): there any read outside the
buffer raises ``IndexError`` instead of passing silently (``test_boundscheck_mode``).
"""
from __future__ import annotations

import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numba
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parsers import l2l4 as P
from parsers import record as R
from parsers.l2l4 import parse_bytes

sys.path.insert(0, str(Path(__file__).resolve().parent))
import naive_parsers as N  # noqa: E402

pytestmark = pytest.mark.pure          # computation only: as root, as any user (conftest)

ROOT = Path(__file__).resolve().parents[1]
UNDER_BOUNDSCHECK = os.environ.get("NUMBA_BOUNDSCHECK", "") == "1"

settings.register_profile(
    "hugering", settings(max_examples=int(os.environ.get("HUGERING_FUZZ_EXAMPLES", "150")), deadline=None, database=None, derandomize=False,
                         suppress_health_check=[HealthCheck.too_slow,
                                                HealthCheck.data_too_large]))
settings.load_profile("hugering")


# --- checks shared by every property ------------------------------------------------------------
def parse_both(frame: bytes) -> dict:
    got = N.record_to_dict(parse_bytes(frame)[0])
    want = N.naive_parse(frame)
    diff = {k: (got[k], want[k]) for k in got if got[k] != want[k]}
    assert not diff, f"@njit vs naive (got, want) on {frame.hex()}: {diff}"
    check_invariants(got, len(frame))
    return got


def check_invariants(r: dict, n: int) -> None:
    assert r["caplen"] == min(n, P.MAX_CAPLEN)
    cap = r["caplen"]
    offs = [r[k] for k in ("l3_off", "l4_off", "payload_off") if r[k] >= 0]
    assert offs == sorted(offs) and all(o <= cap for o in offs), r
    if r["payload_off"] >= 0:
        assert 0 <= r["payload_len"] and r["payload_off"] + r["payload_len"] <= cap, r
    else:
        assert r["payload_len"] == 0
    assert r["vlan_count"] <= 2 and r["ext_count"] <= P.MAX_EXT
    if r["flags"] & R.F_QINQ:
        assert r["flags"] & R.F_VLAN and r["vlan_count"] == 2
    if r["flags"] & R.F_NONFIRST_FRAGMENT:
        assert r["flags"] & R.F_FRAGMENT and r["l4_off"] == -1


# --- strategies ---------------------------------------------------------------------------------
u8, u16, u32 = (st.integers(0, 255), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF))
payloads = st.binary(max_size=40)
v4addr = st.builds(lambda b: ".".join(map(str, b)), st.binary(min_size=4, max_size=4))
v6addr = st.builds(lambda b: str(__import__("ipaddress").IPv6Address(b)),
                   st.binary(min_size=16, max_size=16))
TPIDS = st.sampled_from(N.VLAN_TPIDS)
tags = st.lists(st.tuples(TPIDS, st.integers(0, 4095), st.integers(0, 7)), max_size=3)

tcp_option = st.one_of(
    st.builds(N.opt_mss, u16), st.builds(N.opt_ws, st.integers(0, 14)),
    st.just(N.opt_sack_perm()), st.builds(N.opt_ts, u32, u32), st.just(N.NOP),
    st.builds(N.opt_sack, st.lists(st.tuples(u32, u32), min_size=1, max_size=3)),
    st.builds(lambda k, b: bytes([k, 2 + len(b)]) + b, st.integers(9, 253),
              st.binary(max_size=6)))


@st.composite
def tcp_options(draw):
    out = b""
    for o in draw(st.lists(tcp_option, max_size=6)):
        if len(out) + len(o) <= 40:
            out += o
    return out


@st.composite
def l4(draw, v6: bool):
    kind = draw(st.sampled_from(["udp", "tcp", "icmp", "other"]))
    pl = draw(payloads)
    if kind == "udp":
        return 17, N.udp(pl, draw(u16), draw(u16))
    if kind == "tcp":
        return 6, N.tcp(pl, draw(u16), draw(u16), draw(u32), draw(u32), draw(st.integers(0, 511)),
                        draw(u16), draw(tcp_options()))
    if kind == "icmp":
        return (58 if v6 else 1), N.icmp(draw(u8), draw(u8), draw(st.binary(min_size=4,
                                                                              max_size=4)), pl)
    return draw(st.sampled_from([47, 50, 59, 132, 2])), pl


EXT_KINDS = st.sampled_from([0, 43, 60, 51])


@st.composite
def ext_chain(draw, max_len=4):
    kinds = draw(st.lists(EXT_KINDS, max_size=max_len))
    sizes = [draw(st.sampled_from([12, 16, 24]) if k == 51 else st.sampled_from([8, 16, 24, 40]))
             for k in kinds]
    return kinds, sizes


@st.composite
def valid_frames(draw):
    """A well-formed frame of any kind (VLAN-tagged or not, maybe padded)."""
    kind = draw(st.sampled_from(["ipv4", "ipv4", "ipv6", "ipv6", "ipv4frag", "ipv6frag", "arp",
                                 "llc", "other"]))
    t = draw(tags)
    pad = draw(st.sampled_from([0, 0, 60, 64, 128]))
    if kind == "llc":
        return N.llc_frame(draw(payloads), pad_to=pad)
    if kind == "arp":
        return N.eth(N.arp(draw(st.integers(1, 4)), draw(v4addr), draw(v4addr)), 0x0806,
                     tags=t, pad_to=pad)
    if kind == "other":
        return N.eth(draw(payloads), draw(st.sampled_from([0x88CC, 0x88F7, 0x0600, 0x8847])),
                     tags=t, pad_to=pad)
    if kind in ("ipv4", "ipv4frag"):
        proto, seg = draw(l4(False))
        opts = draw(st.sampled_from([b"", N.NOP * 4, bytes([7, 11, 4]) + bytes(8), bytes(40)]))
        frag, mf = 0, False
        if kind == "ipv4frag":
            frag, mf = draw(st.integers(0, 0x1FFF)), draw(st.booleans())
        pkt = N.ipv4(seg, proto, draw(v4addr), draw(v4addr), draw(u8), draw(u8), draw(u16),
                     draw(st.booleans()), mf, frag, opts)
        return N.eth(pkt, 0x0800, tags=t, pad_to=pad)
    proto, seg = draw(l4(True))
    kinds, sizes = draw(ext_chain())
    nh, hdrs = N.chain(kinds, proto, sizes) if kinds else (proto, b"")
    if kind == "ipv6frag":
        frag = N.ext(44, nh, frag_offset=draw(st.integers(0, 0x1FFF)), m=draw(st.booleans()),
                     ident=draw(u32))
        hdrs, nh = frag + hdrs, 44
    pkt = N.ipv6(hdrs + seg, nh, draw(v6addr), draw(v6addr), draw(u8), draw(u8),
                 draw(st.integers(0, 0xFFFFF)))
    return N.eth(pkt, 0x86DD, tags=t, pad_to=pad)


# --- properties -----------------------------------------------------------------------------------
@given(st.binary(max_size=200))
def test_random_bytes(frame):
    parse_both(frame)


@given(st.sampled_from([0x0800, 0x86DD, 0x0806, 0x8100, 0x88A8, 0x9100, 0x0100, 0x05FF]),
       st.binary(max_size=160))
def test_random_bytes_behind_a_known_ethertype(etype, rest):
    parse_both(N.MAC_A + N.MAC_B + struct.pack("!H", etype) + rest)


@given(st.sampled_from([0x45, 0x46, 0x4F, 0x60, 0x61, 0x40]), st.sampled_from([0x0800, 0x86DD]),
       st.binary(max_size=160))
def test_random_bytes_behind_an_ip_version_byte(b0, etype, rest):
    parse_both(N.MAC_A + N.MAC_B + struct.pack("!H", etype) + bytes([b0]) + rest)


def _same_except(a: dict, b: dict, ignore=("caplen", "flags")) -> dict:
    return {k: (a[k], b[k]) for k in a if k not in ignore and a[k] != b[k]}


@given(valid_frames())
def test_every_truncation_of_a_valid_frame(frame):
    full = parse_both(frame)
    need = N.required_len(frame)
    assert need <= len(frame)
    assert not full["flags"] & (R.F_TRUNCATED | R.F_MALFORMED), R.flag_names(full["flags"])
    l2_end = full["l3_off"] if full["l3_off"] >= 0 else full["payload_off"]
    l3_end = full["l4_off"] if full["l4_off"] >= 0 and full["ip_version"] else full["payload_off"]
    l4_end = full["payload_off"]
    for k in range(len(frame) + 1):
        cut = parse_both(frame[:k])
        if k >= need:
            assert not cut["flags"] & R.F_TRUNCATED, (k, need)
            assert cut["flags"] | R.F_PADDED == full["flags"] | R.F_PADDED, (k, need)
            diff = _same_except(cut, full, ("caplen", "flags", "payload_len"))
            assert not diff, (k, diff)
            if full["payload_off"] >= 0:      # an undecoded payload is cut with the frame
                assert cut["payload_len"] == min(full["payload_len"], k - full["payload_off"])
            continue
        assert cut["flags"] & R.F_TRUNCATED, (k, need, R.flag_names(cut["flags"]))
        for end, names in ((l2_end, N.L2_FIELDS), (l3_end, N.L3_FIELDS), (l4_end, N.L4_FIELDS)):
            if 0 <= end <= k:
                diff = {n: (cut[n], full[n]) for n in names if cut[n] != full[n]}
                assert not diff, (k, end, diff)


LENGTH_FIELDS = {
    # where a length lives, relative to the layer start, and how many bytes it has
    "ipv4_total": ("l3", 2, 2), "ipv4_ihl": ("l3", 0, 1), "ipv6_plen": ("l3", 4, 2),
    "udp_len": ("l4", 4, 2), "tcp_doff": ("l4", 12, 1), "eth_type": ("eth", 12, 2),
}


@given(valid_frames(), st.sampled_from(sorted(LENGTH_FIELDS)), st.integers(0, 0xFFFF),
       st.integers(0, 200))
def test_lying_length_fields(frame, field, value, cut):
    full = parse_both(frame)
    layer, at, width = LENGTH_FIELDS[field]
    base = {"eth": 0, "l3": full["l3_off"], "l4": full["l4_off"]}[layer]
    if base < 0 or base + at + width > len(frame):
        return
    v = value & (0xFF if width == 1 else 0xFFFF)
    lie = bytearray(frame)
    lie[base + at:base + at + width] = v.to_bytes(width, "big")
    lie = bytes(lie)
    r = parse_both(lie)
    parse_both(lie[:cut])
    # a few consequences stated directly
    if field == "ipv4_total" and full["ip_version"] == 4:
        avail = len(lie) - base
        ihl = (lie[base] & 15) * 4
        if v < ihl:
            assert r["flags"] & R.F_MALFORMED
        elif v > avail:
            assert r["flags"] & R.F_TRUNCATED
        elif v < avail:
            assert r["flags"] & R.F_PADDED and not r["flags"] & R.F_TRUNCATED
    if field == "ipv6_plen" and full["ip_version"] == 6:
        avail = len(lie) - base - 40
        assert bool(r["flags"] & R.F_TRUNCATED) == (v > avail) or r["ext_count"] != full[
            "ext_count"] or r["flags"] & R.F_MALFORMED
    if field == "udp_len" and full["ip_proto"] == 17 and not full["flags"] & R.F_FRAGMENT:
        if v < 8:
            assert r["flags"] & R.F_MALFORMED
        elif v != full["udp_len"]:
            assert r["flags"] & R.F_LEN_MISMATCH
    if field == "tcp_doff" and full["ip_proto"] == 6:
        if (v >> 4) < 5:
            assert r["flags"] & R.F_MALFORMED and r["payload_off"] == -1


@given(valid_frames(), st.lists(st.tuples(st.integers(0, 199), u8), min_size=1, max_size=6))
def test_flipped_bytes(frame, flips):
    b = bytearray(frame)
    for at, v in flips:
        if at < len(b):
            b[at] = v
    parse_both(bytes(b))


@given(st.lists(st.tuples(EXT_KINDS, st.integers(0, 3)), max_size=14), st.booleans(),
       st.integers(0, 3))
def test_long_ipv6_extension_chains(chain, with_frag, extra):
    kinds = [k for k, _ in chain]
    sizes = [(12 + 4 * s) if k == 51 else 8 * (s + 1) for k, s in chain]
    nh, hdrs = N.chain(kinds, 17, sizes) if kinds else (17, b"")
    n = len(kinds)
    if with_frag:
        hdrs, nh, n = N.ext(44, nh) + hdrs, 44, n + 1
    frame = N.eth(N.ipv6(hdrs + N.udp(b"x" * extra), nh), 0x86DD)
    r = parse_both(frame)
    if n <= P.MAX_EXT:
        assert r["ext_count"] == n and r["ip_proto"] == 17 and r["sport"] == 1234
        assert r["flags"] & R.F_EXT_CHAIN_LIMIT == 0
        assert r["ip_hlen"] == 40 + len(hdrs) and r["payload_len"] == extra
        assert bool(r["flags"] & R.F_IPV6_EXT) == (n > 0)
    else:
        assert r["flags"] & R.F_EXT_CHAIN_LIMIT and r["ext_count"] == P.MAX_EXT
        assert r["payload_off"] == -1 and r["sport"] == 0
    for k in range(len(frame)):                 # and every truncation of it
        assert parse_both(frame[:k])["flags"] & R.F_TRUNCATED or k >= N.required_len(frame)


@given(st.lists(st.tuples(TPIDS, st.integers(0, 4095), st.integers(0, 7)), max_size=8),
       st.sampled_from([0x0800, 0x86DD, 0x0806, 0x88CC]))
def test_deep_vlan_stacks(stack, inner):
    body = {0x0800: N.ipv4(N.udp(b"v"), 17), 0x86DD: N.ipv6(N.udp(b"v"), 17),
            0x0806: N.arp(), 0x88CC: b"lldp"}[inner]
    frame = N.eth(body, inner, tags=stack)
    r = parse_both(frame)
    n = len(stack)
    assert r["vlan_count"] == min(n, 2)
    assert bool(r["flags"] & R.F_VLAN) == (n >= 1)
    assert bool(r["flags"] & R.F_QINQ) == (n >= 2)
    assert bool(r["flags"] & R.F_VLAN_TOO_DEEP) == (n > 2)
    if n:
        assert (r["vlan_tpid"], r["vlan_id0"], r["vlan_pcp0"]) == stack[0]
    if n >= 2:
        assert (r["vlan_id1"], r["vlan_pcp1"]) == stack[1][1:]
    if n <= 2:
        assert r["ethertype"] == inner and r["l3_off"] in (-1, 14 + 4 * n)
    else:
        assert r["ethertype"] == stack[2][0] and r["payload_off"] == -1
    for k in range(len(frame)):
        parse_both(frame[:k])


@given(valid_frames(), st.integers(0, 64), st.integers(-8, 300))
def test_frames_inside_a_larger_buffer(frame, base, caplen):
    """Offsets are absolute in the buffer: the same frame at any base parses the same, and a
    caplen past the array is clamped, never read beyond."""
    import numpy as np
    buf = np.frombuffer(bytes(range(256))[:base] + frame, np.uint8)
    recs = R.new_records(1)
    P.parse_frame(buf, base, caplen, recs[0])
    got = N.record_to_dict(recs[0])
    want = N.naive_parse(frame[:max(0, caplen)])
    if caplen > len(frame):
        want["flags"] |= R.F_TRUNCATED
    assert got == want


# --- the same suite with bounds checking ------------------------------------------------------------
def test_boundscheck_mode():
    """Bounds checks are live exactly when NUMBA_BOUNDSCHECK=1: then a read outside the array,
    in the parsers' own byte reader and in any @njit array read, raises IndexError."""
    import numpy as np
    assert P._BOUNDSCHECK == UNDER_BOUNDSCHECK == bool(numba.config.BOUNDSCHECK)
    if not UNDER_BOUNDSCHECK:
        return

    @numba.njit
    def oob(a, i):
        return a[i]

    a = np.zeros(4, np.uint8)
    with pytest.raises(IndexError):
        oob(a, 4)

    @numba.njit
    def raw(a, i):
        return P._b(P._byte_ptr(a), a.shape[0], i)

    with pytest.raises(IndexError):
        raw(a, 4)
    with pytest.raises(IndexError):
        raw(a, -1)
    assert raw(a, 3) == 0


@pytest.mark.skipif(UNDER_BOUNDSCHECK, reason="this is the boundscheck run itself")
def test_suite_under_numba_boundscheck():
    cache = Path(tempfile.gettempdir()) / f"hugering-numba-boundscheck-{os.getuid()}"
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(cache))
    env.pop("PYTEST_ADDOPTS", None)
    files = ["tests/test_parsers_fuzz.py", "tests/test_parsers.py"]
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files,
         "-k", "not test_suite_under_numba_boundscheck and not nrt_allocations"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    tail = out.stdout[-3000:] + out.stderr[-2000:]
    assert out.returncode == 0, tail
    assert " passed" in out.stdout and " failed" not in out.stdout, tail
