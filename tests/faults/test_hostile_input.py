"""Hostile input: fuzzed frames through the whole consumer path under NUMBA_BOUNDSCHECK=1, a
lying producer, corrupted ring headers and cursors, corrupt capture files, malformed YAML,
hostile ring names and filter expressions.

Each refused input must give one clear message (exit status 1 or 2 for the command line) and
leave nothing created or changed.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import struct
import subprocess
import tempfile
import time
from contextlib import redirect_stderr
from pathlib import Path

import pytest

from faultkit import FUZZ_FRAMES, HERE, LONG, PYTHON, ROOT, cli, ring_paths
from shm import Ring, RingFormatError
from shm import backing as B
from shm import layout as L

pytestmark = pytest.mark.timeout(3600 if LONG else 600)


# --- fuzzed frames ---------------------------------------------------------------------------------
def _boundscheck_cache() -> str:
    """A Numba cache of its own for the bounds-checked build (the cache does not key on the
    flag), per source version: a cached caller may have inlined an older kernel."""
    from shm.numba_cache import source_digest
    h = hashlib.sha256(source_digest().encode())
    for p in sorted(HERE.glob("fuzz_*.py")):
        h.update(p.read_bytes())
    base = Path(tempfile.gettempdir()) / f"hugering-faults-boundscheck-{os.geteuid()}"
    d = base / h.hexdigest()[:16]
    if base.is_dir():
        for old in base.iterdir():            # older source versions
            if old != d:
                subprocess.run(["rm", "-rf", str(old)], check=False)
    d.mkdir(parents=True, exist_ok=True)
    return str(d)


@pytest.fixture(scope="module")
def fuzz():
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=_boundscheck_cache(),
               PYTHONPATH=str(ROOT))
    t0 = time.monotonic()
    p = subprocess.run([PYTHON, str(HERE / "fuzz_worker.py"), str(FUZZ_FRAMES), "20260"],
                       capture_output=True, text=True, timeout=3000 if LONG else 580, env=env,
                       cwd=str(ROOT))
    assert p.returncode == 0, p.stderr[-4000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["wall_s"] = round(time.monotonic() - t0, 1)
    return out


@pytest.mark.fault("fuzz", fault="fuzzed frames through ring -> parse -> filter -> handler",
                   injected="10^6 generated frames (10^7 with HUGERING_LONG=1) under "
                            "NUMBA_BOUNDSCHECK=1: random bytes, every truncation of 200 valid "
                            "frames, lying IPv4 total / IPv6 payload / UDP lengths and TCP data "
                            "offsets, IPv6 extension-header loops, VLAN stacks 3-8 deep, byte "
                            "flips",
                   expected="0 crashes, 0 out-of-bounds reads (each frame re-parsed in an array "
                            "of exactly its length agrees), every bad frame flagged, the filter "
                            "never fails")
def test_fuzzed_frames_crash_nothing_read_nothing_outside_and_are_flagged(fuzz, fault_row):
    n = FUZZ_FRAMES
    assert fuzz["boundscheck"] and fuzz["frames"] == n
    assert fuzz["sweep"] <= n, "not every truncation of every template was tried"
    full, filt = fuzz["all"], fuzz["filtered"]
    for tag, r in (("unfiltered", full), ("filtered", filt)):
        assert r["handler_errors"] == 0, f"{tag}: exceptions in the loop (IndexError?): {r}"
        assert r["invariant"] == 0, f"{tag}: offsets outside the capture, first {r['first']}"
        assert r["mismatch"] == 0, f"{tag}: ring parse != exact-length parse, first {r['first']}"
        assert r["unflagged"] == 0, f"{tag}: bad frames not flagged, first {r['first']}"
        assert r["received"] == n
    assert full["seen"] == n and full["filtered_out"] == 0
    assert filt["seen"] + filt["filtered_out"] == n and filt["seen"] > 0.9 * n
    assert full["bad"] == full["flagged"] > n // 2
    for name, (seen, flagged) in full["classes"].items():
        assert seen > n // 20, f"class {name!r} barely tried: {seen}"
    for name in ("IPv6 extension-header loops", "VLAN stacks > 2 deep", "slot cap_len > slot size"):
        seen, flagged = full["classes"][name]
        assert flagged == seen, f"{name}: {flagged} of {seen} flagged"
    fault_row.observe(f"{n:,} frames in {fuzz['run_s']:.0f} s (+{fuzz['setup_s']:.0f} s "
                      f"compile) under NUMBA_BOUNDSCHECK=1: 0 exceptions, 0 reads outside, 0 "
                      f"disagreements; {full['bad']:,} bad frames, all flagged; the filter "
                      f"passed {filt['seen']:,} and rejected {filt['filtered_out']:,} (too "
                      f"short for its loads, as in libpcap) with no error",
                      frames=n, bad=full["bad"])


@pytest.mark.fault("lying-producer", fault="a lying producer: slot cap_len beyond the slot",
                   injected="slots whose cap_len is slot_size + 1 .. 2^32 - 1 (part of the fuzz "
                            "run)",
                   expected="the record is clamped to the slot size and flagged truncated; the "
                            "handler never sees more than the slot")
def test_lying_cap_len_is_clamped_and_flagged(fuzz, fault_row):
    full = fuzz["all"]
    assert full["lying"] > FUZZ_FRAMES // 20
    assert full["lying_clamped"] == full["lying"]
    fault_row.observe(f"{full['lying']:,} lying slots: all clamped to 512 B and flagged "
                      f"F_TRUNCATED")


# --- corrupt ring headers -----------------------------------------------------------------------
def _digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


CORRUPTIONS = {
    # field named in the error: (byte offset, bytes written)
    "magic": (L.HEADER_DTYPE.fields["magic"][1], struct.pack("<Q", 0x1234)),
    "layout_version": (L.HEADER_DTYPE.fields["layout_version"][1], struct.pack("<I", 99)),
    "capacity": (L.HEADER_DTYPE.fields["capacity"][1], struct.pack("<q", 1000)),
    "slot_size": (L.HEADER_DTYPE.fields["slot_size"][1], struct.pack("<I", 10 ** 6)),
    "slot_stride": (L.HEADER_DTYPE.fields["slot_stride"][1], struct.pack("<I", 64)),
    "file_size": (L.HEADER_DTYPE.fields["file_size"][1], struct.pack("<q", 1 << 40)),
    "producer.cursor": (L.PRODUCER_OFFSET, struct.pack("<q", -5)),
    "consumer[0].cursor": (L.CONSUMERS_OFFSET, struct.pack("<q", 10 ** 9)),
    "consumer[1].state": (L.CONSUMERS_OFFSET + L.LINE + 8, struct.pack("<q", 42)),
}


@pytest.mark.fault("corrupt-header", fault="corrupted ring header and cursors",
                   injected="one field overwritten in the ring file: magic, layout version, "
                            "capacity, slot size, slot stride, file size, the producer's cursor "
                            "negative, a consumer cursor beyond the producer, a consumer state",
                   expected="Ring.open and hugering ring info refuse it with a message naming "
                            "the field; the file is not written")
@pytest.mark.parametrize("field", sorted(CORRUPTIONS))
def test_corrupted_ring_is_refused_naming_the_field(ring_name, fault_row, field):
    r = Ring.create(ring_name, slots=64, slot_size=64, shm=True, max_consumers=2)
    c = r.consumer()                      # consumer 0 active (its cursor is checked)
    with r.producer() as p:
        p.publish([b"x" * 60] * 10)
    path = r.backing.path
    off, value = CORRUPTIONS[field]
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(value)
    before = _digest(path)
    with pytest.raises(RingFormatError, match=re.escape(f"field '{field}'")) as e:
        Ring.open(ring_name)
    assert e.value.field == field
    p = cli("ring", "info", ring_name)
    assert p.returncode == 1 and p.stderr.count("\n") == 1
    assert p.stderr.startswith(f"hugering: error: ring '{ring_name}' ({path}): field '{field}'")
    assert _digest(path) == before
    c.close()
    r.close()
    fault_row.observe(f"{field}: \"{str(e.value).split(': ', 1)[1]}\"")


# --- corrupt capture files ---------------------------------------------------------------------
def _pcap(path: Path, n: int = 100) -> bytes:
    from parsers.pcap import PcapWriter
    with PcapWriter(str(path)) as w:
        for i in range(n):
            w.write(bytes(60) + i.to_bytes(4, "big"), 10 ** 18 + i)
    return path.read_bytes()


REC = 16 + 64          # a record of _pcap: header + 64 bytes


def _damage(kind: str, good: bytes) -> tuple[bytes, str, int]:
    """(file bytes, the error's text, packets readable before the damage)."""
    at = 24 + 60 * REC
    if kind == "garbage":
        return bytes(range(7, 107)), "byte 0: magic 0x0a090807 is neither pcap nor pcapng", 0
    if kind == "empty":
        return b"", "0 bytes is too short to be a capture file", 0
    if kind == "short-header":
        return good[:10], "truncated pcap file header (10 of 24 bytes)", 0
    if kind == "huge-record":
        b = bytearray(good)
        b[at + 8:at + 12] = (10 ** 7).to_bytes(4, "little")
        return bytes(b), (f"byte {at}: record length larger than any capture allows (corrupt); "
                          f"60 packets before it were read"), 60
    if kind == "cut-record":
        return good[:at + 30], (f"byte {at}: truncated packet data; 60 packets before it were "
                                f"read"), 60
    if kind == "pcapng-block-length":
        shb = struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack("<I", 28)
        idb = struct.pack("<IIHHI", 1, 20, 1, 0, 0) + struct.pack("<I", 20)
        epb = struct.pack("<IIIIIII", 6, 13, 0, 0, 0, 4, 4) + b"abcd" + struct.pack("<I", 13)
        return shb + idb + epb, ("byte 48: block length is not a multiple of 4, is too small, "
                                 "or disagrees with its trailer; 0 packets before it were read"), 0
    raise KeyError(kind)


@pytest.mark.fault("corrupt-pcap", fault="corrupt pcap / pcapng files",
                   injected="garbage, an empty file, a cut file header, a record length of 10 MB, "
                            "a cut record, a pcapng block length that is not a multiple of 4; "
                            "through hugering parse and hugering replay into a ring",
                   expected="one-line error naming the byte offset; the packets before the "
                            "damage are replayed and no others; a file with none leaves the "
                            "ring untouched")
@pytest.mark.parametrize("kind", ["garbage", "empty", "short-header", "huge-record",
                                  "cut-record", "pcapng-block-length"])
def test_corrupt_capture_is_reported_and_only_whole_packets_replayed(ring_name, tmp_path,
                                                                     fault_row, kind):
    data, text, before_damage = _damage(kind, _pcap(tmp_path / "good.pcap"))
    f = tmp_path / f"{kind}.pcap"
    f.write_bytes(data)
    p = cli("parse", str(f), "--count", "0")
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("hugering: error: ")]
    assert errors == [f"hugering: error: {f}: {text}"], p.stderr
    Ring.create(ring_name, slots=1024, slot_size=128, shm=True).close()
    r = cli("replay", str(f), "--ring", ring_name, "--topspeed")
    ring = Ring.open(ring_name)
    published = int(ring.ctrl[L.P_CURSOR])
    ring.close()
    assert published == before_damage, (published, r.stderr)
    if before_damage == 0:           # not a capture at all, or nothing before the damage
        assert r.returncode == 1 and r.stderr.strip() == errors[0], r.stderr
    else:                  # damage after a good header: what came before it, with a warning
        assert r.returncode == 0, r.stderr
        assert f"hugering: warning: {f}: {text}; replaying the {before_damage} packets before " \
               f"it" in r.stderr, r.stderr
    assert sorted(os.listdir(tmp_path)) == sorted(["good.pcap", f.name])
    fault_row.observe(f"{kind}: \"{text}\"; replay published {published}")


# --- malformed YAML --------------------------------------------------------------------------------
def _bomb() -> str:
    """Ten levels of nine aliases each: 9^10 (3.5e9) leaves if anything expanded it."""
    levels = ["&a [" + ", ".join(["1"] * 9) + "]"]
    for i in range(1, 10):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        levels.append(f"&{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return ("hugering:\n  rings:\n    - name: bomb\n      backing: shm\n      slots: ["
            + ", ".join(levels) + "]\n")


YAMLS = {
    "syntax": ("hugering:\n  rings:\n    - name: ymd\n      slots: [1024\n",
               "line 5, column 1: invalid YAML: expected ',' or ']', but got '<stream end>'"),
    "tab": ("hugering:\n\trings: []\n",
            "line 2, column 1: invalid YAML: found character '\\t' that cannot start any token"),
    "duplicate-key": ("hugering:\n  rings:\n    - name: ymd\n      slots: 1024\n      slots: 2048\n",
                      "line 5, column 7: invalid YAML: duplicate key 'slots' (first given on "
                      "line 4, column 7)"),
    "billion-laughs": (_bomb(), "hugering.rings[0].slots: expected a power of two from 2 to "
                                "67108864, got a list of 10"),
    "not-utf8": (bytes(range(256)).decode("latin-1"), "not UTF-8 text (invalid start byte at "
                 "byte 128)"),
    "hostile-name": ('hugering:\n  rings:\n    - name: "../ymd"\n      backing: shm\n',
                     "hugering.rings[0].name: ring name '../ymd' contains a path separator or "
                     "NUL: a name is not a path"),
    "huge-number": ("hugering:\n  rings:\n    - name: ymd\n      slots: 99999999999999999999999\n",
                    "hugering.rings[0].slots: expected a power of two from 2 to 67108864, got "
                    "99999999999999999999999"),
    "empty": ("", "the file is empty; expected a mapping with 'dpdk_config' and/or 'hugering'"),
}


@pytest.mark.fault("bad-yaml", fault="malformed YAML deployment files",
                   injected="hugering run on: a YAML syntax error, a tab, a duplicate key, a "
                            "billion-laughs alias bomb, bytes that are not UTF-8, a ring name "
                            "'../ymd', a 23-digit number, an empty file",
                   expected="exit 2 and one line naming the file and the line/column or key "
                            "path, within seconds; no ring and no stats region created")
@pytest.mark.parametrize("kind", sorted(YAMLS))
def test_malformed_yaml_is_refused_before_anything_is_created(tmp_path, fault_row, kind):
    text, want = YAMLS[kind]
    f = tmp_path / f"{kind}.yaml"
    f.write_bytes(text.encode("latin-1") if kind == "not-utf8" else text.encode())
    t0 = time.monotonic()
    p = cli("run", str(f), "--duration", "1", timeout=30)
    took = time.monotonic() - t0
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith(f"hugering: error: {f}: ") and p.stderr.count("\n") == 1, p.stderr
    assert want in p.stderr, p.stderr
    assert took < 10
    assert not ring_paths("ymd") and not ring_paths("bomb")
    assert not [n for n in os.listdir(B.SHM_DIR) if "ymd" in n or "bomb" in n]
    said = p.stderr.strip()[len("hugering: error: "):][:110]
    fault_row.observe(f"{kind}: exit 2 in {took:.1f} s: \"{said}\"")


# --- hostile ring names ----------------------------------------------------------------------------
MARK = f"hx{os.getpid()}"
NAMES = [f"../{MARK}", f"/tmp/{MARK}", f"{MARK}/../../etc", f"{MARK}\x00evil", MARK * 30,
         f".{MARK}", f"-{MARK}", f"{MARK} sp", "", ".."]


def _would_be_paths(name: str) -> list[str]:
    """Where a ring with this name could land if the name were used as a path."""
    out = []
    clean = name.split("\x00")[0]
    for d in (B.SHM_DIR, B.DEFAULT_HUGETLBFS, os.getcwd(), "/tmp"):
        for cand in (os.path.join(d, B.FILE_PREFIX + clean), os.path.join(d, clean)):
            out.append(os.path.normpath(cand))
    return out


@pytest.mark.fault("hostile-names", fault="hostile ring names",
                   injected="'../x', '/tmp/x', 'x/../../etc', a NUL byte, 300 characters, a "
                            "leading '.' or '-', a space, '' and '..': to the API (create, open, "
                            "remove), every CLI verb that takes a ring, and a YAML file",
                   expected="RingNameError / exit 2 with one line saying what is wrong with the "
                            "name; nothing created or removed anywhere")
def test_hostile_ring_names_are_refused_everywhere(tmp_path, fault_row):
    before = {d: set(os.listdir(d)) for d in (B.SHM_DIR, "/tmp")}
    for name in NAMES:
        for call in (lambda: Ring.create(name, slots=8, slot_size=64, shm=True),
                     lambda: Ring.create(name, slots=8, slot_size=64),
                     lambda: Ring.open(name), lambda: Ring.remove(name)):
            with pytest.raises(B.RingNameError):
                call()
    pcap = tmp_path / "one.pcap"
    _pcap(pcap, 1)
    # the name last, so that one starting with '-' can follow '--' (else it is an option)
    verbs = [["ring", "create", "{}"], ["ring", "info", "{}"], ["ring", "rm", "{}"],
             ["stat", "{}"], ["consume", "{}"], ["dump", "-w", str(tmp_path / "o.pcap"), "{}"],
             ["replay", str(pcap), "--ring={}"], ["synth", "--count", "1", "{}"]]
    from engine.cli import main
    n_cli = 0
    for name in NAMES:
        if "\x00" in name or not name:        # argv cannot carry a NUL; '' is argparse's own
            continue
        for v in verbs:
            argv = [a.replace("{}", name) for a in v]
            if name.startswith("-") and v[-1] == "{}":
                argv.insert(len(argv) - 1, "--")
            # the command line's own entry point, in this process (a program start per case
            # would cost half a second); a few go through the real program below
            err = io.StringIO()
            with redirect_stderr(err):
                rc = main(argv)
            text = err.getvalue()
            assert rc == 2, (argv, text)
            assert text.count("\n") == 1 and "ring name" in text, (argv, text)
            n_cli += 1
    for argv in (["ring", "create", f"../{MARK}"], ["stat", f"/tmp/{MARK}"],
                 ["replay", str(pcap), "--ring", MARK * 30]):
        p = cli(*argv)
        assert p.returncode == 2 and p.stderr.count("\n") == 1 and "ring name" in p.stderr
    f = tmp_path / "names.yaml"
    f.write_text(f'hugering:\n  rings:\n    - name: "../{MARK}"\n      backing: shm\n')
    p = cli("check", str(f))
    assert p.returncode == 2 and "contains a path separator" in p.stderr
    for name in NAMES:
        for path in _would_be_paths(name):
            if MARK in path:
                assert not os.path.exists(path), path
    after = {d: set(os.listdir(d)) for d in (B.SHM_DIR, "/tmp")}
    for d in after:
        assert not [n for n in after[d] - before[d] if MARK in n], d
    assert not (tmp_path / "o.pcap").exists()
    fault_row.observe(f"{len(NAMES)} names x 4 API calls: RingNameError; {n_cli} CLI runs: exit "
                      f"2, one line; YAML: exit 2; nothing created")


# --- hostile filter expressions ---------------------------------------------------------------
FILTERS = {
    "5000 parentheses": ("(" * 5000 + "udp" + ")" * 5000,
                         "expression nested more than 100 levels deep (parentheses)"),
    "5000 nots": ("not " * 5000 + "udp", "expression nested more than 100 levels deep (not)"),
    "3000 signs": ("-" * 3000 + "1 = 1", "expression too deeply nested to compile"),
    "unbalanced": ("((udp)", "')' expected"),
    "NUL byte": ("udp\x00 or tcp", "unexpected character '\\x00'"),
    "overflow": ("port 99999999999999999999", "number 99999999999999999999 overflows 32 bits"),
    "bad address": ("host 999.1.1.1", "invalid IPv4 address '999.1.1.1'"),
    "bad mask": ("net 10.0.0.0/99", "mask length must be <= 32"),
    "vlan id": ("vlan 5000", "VLAN tag 5000 greater than maximum 4095"),
    "dangling operator": ("tcp[13] & 2 !=", "a number, 'len' or proto[offset] is expected"),
    "non-ASCII": ("udp and é", "unexpected character 'é'"),
    "unterminated string": ('payload contains "abc', "unterminated"),
}


@pytest.mark.fault("hostile-filters", fault="hostile filter expressions",
                   injected="5000 nested parentheses, 5000 'not's, 3000 unary minus signs, "
                            "unbalanced parentheses, a NUL byte, 20-digit numbers, bad "
                            "addresses and masks, VLAN 5000, a dangling operator, non-ASCII, an "
                            "unterminated string",
                   expected="FilterSyntaxError with the column (never RecursionError or a crash), "
                            "within a second; hugering parse --filter: exit 2, nothing compiled")
@pytest.mark.parametrize("kind", sorted(FILTERS))
def test_hostile_filter_expressions_are_clear_errors(tmp_path, fault_row, kind):
    from parsers.filters import FilterSyntaxError
    from parsers.pcap_filter import compile_pcap_filter
    expr, want = FILTERS[kind]
    t0 = time.monotonic()
    with pytest.raises(FilterSyntaxError) as e:
        compile_pcap_filter(expr)
    took = time.monotonic() - t0
    assert want in str(e.value), str(e.value)[:300]
    assert took < 2, f"{took:.1f} s to refuse"
    if "\x00" not in expr:
        pcap = tmp_path / "one.pcap"
        _pcap(pcap, 1)
        p = cli("parse", str(pcap), "--filter", expr)
        assert p.returncode == 2, p.stderr[-500:]
        assert p.stderr.startswith("hugering: error: parse: --filter: column "), p.stderr[:300]
        assert want in p.stderr and "Traceback" not in p.stderr
    fault_row.observe(f"{kind}: FilterSyntaxError in {took * 1e3:.0f} ms: "
                      f"\"{e.value.reason[:90]}\" (column {e.value.column})")
