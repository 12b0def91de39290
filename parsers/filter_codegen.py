"""Per-filter specialisation: a compiled filter's program turned into straight-line Numba code.

``parsers.filters.match_slots`` is an interpreter: each test reads its opcode and operands from
the program arrays and jumps through a ``pc`` loop.  That is flexible (one compiled function for
every filter) but the loads and the unpredictable dispatch cost more than the tests themselves:
on this project's benchmark the interpreter spent ~2x what a C filter hard-coded for the same
rules does.  A long-running consumer knows its filter before the first packet, so it can afford
one compile per filter, the way libpcap JITs a BPF program:

* each row of ``Filter.code`` becomes one ``if pc == ROW:`` block that calls the shared leaf
  evaluator ``parsers.filters._leaf`` with the opcode and the row index as *literals* -- LLVM
  folds the opcode switch away and the operands become constants, because the program arrays
  are module globals, which Numba freezes into the compiled code;
* jumps become assignments of constant ``pc`` values, which LLVM threads into direct branches
  (the loop disappears);
* ``contains`` rows share one Aho-Corasick scan per frame, exactly as in the interpreter (the
  automaton tables stay arguments: they can be large, and frozen constants that size would make
  compiling slow).

Semantics are the interpreter's, row for row (the same ``_leaf``; tests compare the two on every
expression of the suite and against tcpdump).  The generated module is written to a per-user
cache directory under a name that hashes the program *and* the parser sources, then imported
with ``cache=True``: the second process that uses the same filter loads machine code from disk
(milliseconds) instead of compiling (about a second).  Hashing the library sources is what keeps
that cache honest -- Numba's own cache does not notice when an inlined callee in another file
changes.

Entry point: ``specialize(filt)`` (also ``Filter.specialized``), returning a ``Specialized``
with ``match_slots`` (same arguments as ``parsers.filters.match_slots`` minus ``prog``) and
``burst``, the ``@njit`` function to call from your own ``@njit`` loop with the two automaton
arrays appended::

    spec = compile_pcap_filter("udp and dst port 12345").specialized
    burst, ac_next, ac_out = spec.burst, spec.ac_next, spec.ac_out

    @njit
    def loop(...):
        ...
        hits = burst(slot_bytes, stride, slot_size, first, n, capacity, recs, verdict,
                     ac_next, ac_out)
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from . import filters as F

# the generated code inlines these modules' functions: their text is part of the cache key
_LIBRARY_SOURCES = ("filters.py", "l2l4.py", "record.py", "filter_codegen.py")
GENERATOR_VERSION = 1


class Specialized:
    """A filter compiled to its own machine code (see the module docstring)."""

    def __init__(self, filt: "F.Filter", module, path: Path):
        self.filter = filt
        self.module = module
        self.path = path
        self.source = path.read_text()
        self.burst = module.match_slots_burst
        self.ac_next = np.ascontiguousarray(filt.ac_next).reshape(-1)
        self.ac_out = np.ascontiguousarray(filt.ac_out)

    def match_slots(self, slot_bytes, stride, slot_size, first, count, capacity, recs, verdict):
        """``parsers.filters.match_slots`` for this filter (no ``prog`` argument)."""
        return self.burst(slot_bytes, stride, slot_size, first, count, capacity, recs, verdict,
                          self.ac_next, self.ac_out)

    def match_slot_array(self, slots: np.ndarray, recs: np.ndarray) -> np.ndarray:
        """Verdicts (bool) for a contiguous slot array whose records ``recs`` are parsed."""
        slots = np.ascontiguousarray(slots)
        n = len(slots)
        verdict = np.zeros(max(n, 1), dtype=np.uint8)
        size = slots.dtype.fields["payload"][0].shape[0]
        self.match_slots(slots.view(np.uint8).reshape(-1), slots.dtype.itemsize, size, 0, n, 0,
                         recs, verdict)
        return verdict[:n].astype(bool)

    def __repr__(self):
        return f"Specialized({self.filter!r}, {self.path.name})"


def _library_digest() -> str:
    h = hashlib.sha256(f"{GENERATOR_VERSION}".encode())
    here = Path(__file__).resolve().parent
    for name in _LIBRARY_SOURCES:
        h.update((here / name).read_bytes())
    return h.hexdigest()


_LIB_DIGEST: str | None = None


def cache_dir() -> Path:
    """``$HUGERING_CACHE_DIR/filters`` (or under ``$XDG_CACHE_HOME/hugering``,
    ``~/.cache/hugering``; a private temporary directory when none can be written)."""
    from shm.numba_cache import cache_root
    return cache_root("filters")


def _target(t: int) -> str:
    if t == F.ACCEPT:
        return "return True"
    if t == F.REJECT:
        return "return False"
    return f"pc = {t}"


def _int_list(a: np.ndarray) -> str:
    vals = [str(int(x)) for x in a.reshape(-1)]
    lines, cur = [], []
    for v in vals:
        cur.append(v)
        if len(cur) == 16:
            lines.append("    " + ", ".join(cur) + ",")
            cur = []
    if cur:
        lines.append("    " + ", ".join(cur) + ",")
    return "\n".join(lines)


def _test_call(op: int, r: list[int]) -> str:
    """The call of the per-test function for one program row, operands as literals (the
    columns are those of the OP_* table in ``parsers.filters``; ``_leaf`` reads the same)."""
    head = "bp, bn, base, end"
    eoff = r[3]
    if op == F.OP_CMP:
        return (f"F.test_cmp({head}, wirelen, poff, plen, {eoff}, "
                + ", ".join(str(v) for v in r[4:16]) + ")")
    if op == F.OP_ETHERTYPE:
        return f"F.test_ethertype({head}, {eoff}, {r[4]})"
    if op == F.OP_IPPROTO:
        return f"F.test_ipproto({head}, {eoff}, {r[4]}, {r[5]})"
    if op == F.OP_PORT:
        return f"F.test_port({head}, {eoff}, {r[4]}, {r[5]}, {r[6]}, {r[7]})"
    if op == F.OP_HOST4:
        return f"F.test_host4({head}, {eoff}, {r[4]}, {r[5]}, {r[6]}, {r[7]})"
    if op == F.OP_HOST6:
        return f"F.test_host6({head}, {eoff}, kp, kn, {r[4]}, {r[5]})"
    if op == F.OP_VLAN:
        return f"F.test_vlan({head}, {eoff}, {r[4]})"
    raise ValueError(f"no code generator for test op {op}")   # programs are validated


def generate_source(filt: "F.Filter") -> str:
    """The Python source of the specialised module for ``filt`` (deterministic)."""
    code = filt.code
    rows = code.shape[0] - 1
    entry = int(code[0, 1])
    need = int(code[0, 2]) & (2**64 - 1)
    src_text = filt.source if filt.source is not None else str(filt.node)
    out = [
        f"# Generated by parsers/filter_codegen.py (generator v{GENERATOR_VERSION}); do not edit.",
        f"# filter: {src_text!r}"[:2000],
        "import numpy as np",
        "from numba import njit",
        "from parsers import filters as F",
        "from parsers.l2l4 import slot_window",
        "",
        f"CONSTS = np.array([\n{_int_list(filt.consts)}\n], dtype=np.int64)",
        "",
        "",
        "@njit(cache=True, nogil=True, inline='always')",
        "def match_one(bp, bn, base, caplen, wirelen, poff, plen, ap, an, gp, gn):",
        "    kp = F._data(CONSTS)",
        "    kn = CONSTS.size",
        "    if base < 0 or base > bn:",
        "        base = 0",
        "        caplen = 0",
        "    if caplen < 0:",
        "        caplen = 0",
        "    end = base + caplen",
        "    if end > bn:",
        "        end = bn",
        "    if poff >= 0:",
        "        poff += base",
        "        if plen < 0:",
        "            plen = 0",
        "        if poff + plen > end:",
        "            plen = end - poff if end > poff else 0",
        "    scanned = False",
        "    found = np.uint64(0)",
        f"    pc = {entry if entry > 0 else 0}",
    ]
    if entry < 0:
        out.append(f"    return {entry == F.ACCEPT}")
    for row in range(1, rows + 1):
        op = int(code[row, 0])
        out.append(f"    if pc == {row}:")
        if op == F.OP_CONTAINS:
            out += [
                "        if not scanned:",
                "            scanned = True",
                "            if poff >= 0 and plen > 0:",
                f"                found = F._scan(bp, bn, poff, poff + plen, ap, an, gp, gn, "
                f"np.uint64({need}))",
                f"        r = 1 if (found >> np.uint64({int(code[row, 4])})) & np.uint64(1) "
                "else 0",
            ]
        else:
            out += [f"        r = {_test_call(op, [int(x) for x in code[row]])}",
                    "        if r < 0:",
                    "            return False"]
        out += ["        if r == 1:", f"            {_target(int(code[row, 1]))}",
                "        else:", f"            {_target(int(code[row, 2]))}"]
    out += [
        "    return False",
        "",
        "",
        "@njit(cache=True, nogil=True)",
        "def match_slots_burst(slot_bytes, stride, slot_size, first, count, capacity, recs, "
        "verdict,",
        "                      ac_next, ac_out):",
        "    count, mask = slot_window(slot_bytes.shape[0], stride, slot_size, first,",
        "                              min(count, recs.shape[0], verdict.shape[0]), capacity)",
        "    bp = F._data(slot_bytes)",
        "    bn = slot_bytes.size",
        "    ap = F._data(ac_next)",
        "    gp = F._data(ac_out)",
        "    hits = 0",
        "    for i in range(count):",
        "        sb = ((first + i) & mask) * stride",
        "        cl = F._u32le(bp, bn, sb + F.SLOT_CAP_LEN)",
        "        if cl > slot_size:",
        "            cl = slot_size",
        "        wl = F._u32le(bp, bn, sb + F.SLOT_WIRE_LEN)",
        "        rec = recs[i]",
        "        ok = match_one(bp, bn, sb + F.SLOT_HEADER_BYTES, cl, wl, "
        "np.int64(rec.payload_off),",
        "                       np.int64(rec.payload_len), ap, ac_next.size, gp, ac_out.size)",
        "        verdict[i] = 1 if ok else 0",
        "        hits += 1 if ok else 0",
        "    return hits",
        "",
    ]
    return "\n".join(out)


def module_path(filt: "F.Filter", source: str | None = None) -> Path:
    """Where ``filt``'s module lives: the name hashes the generated source, the library sources
    it inlines and the bounds-check mode (Numba's cache key has neither of the last two)."""
    global _LIB_DIGEST
    if _LIB_DIGEST is None:
        _LIB_DIGEST = _library_digest()
    if source is None:
        source = generate_source(filt)
    key = hashlib.sha256(f"{_LIB_DIGEST}\nboundscheck={F._BOUNDSCHECK}\n{source}".encode())
    return cache_dir() / f"hugering_filter_{key.hexdigest()[:24]}.py"


def specialize(filt: "F.Filter") -> Specialized:
    """Compile ``filt`` to its own module (cached on disk; see the module docstring)."""
    source = generate_source(filt)
    path = module_path(filt, source)
    d = path.parent
    modname = path.stem
    if not path.exists() or path.read_text() != source:
        # write then rename: a concurrent reader sees the old file or the whole new one
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=".py")
        with os.fdopen(fd, "w") as f:
            f.write(source)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        import py_compile            # bytecode now: see engine.loop._precompile
        try:
            py_compile.compile(str(path), doraise=True)
        except (OSError, py_compile.PyCompileError):
            pass
    mod = sys.modules.get(modname)
    if mod is None:
        spec = importlib.util.spec_from_file_location(modname, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[modname] = mod
        try:
            spec.loader.exec_module(mod)
        except BaseException:
            del sys.modules[modname]
            raise
    return Specialized(filt, mod, path)
