"""Packet filters as data: a small AST, a compiler to numpy arrays, and ONE ``@njit`` matcher.

Two front ends build the AST: ``parsers.pcap_filter`` (the pcap-filter(7) text syntax, subset
below) and ``parsers.filter_yaml`` (rules under a ``filters:`` key).  Both call the builder
functions of this module (``proto_abbrev``, ``host4``, ``port`` ...), which lower each
primitive exactly as libpcap's ``gencode.c`` does for an Ethernet (DLT_EN10MB) capture read
from a file, so that ``tcpdump -r FILE EXPR`` is the oracle (``tests/test_filters_tcpdump.py``).

Semantics (libpcap's, on the raw frame bytes)
--------------------------------------------
* Every primitive reads the frame itself, at offsets derived from the Ethernet header, never the
  parsed record: ``udp`` is "ethertype 0x0800 and ip[9] = 17, or ethertype 0x86dd and (ip6[6] =
  17 or (ip6[6] = 44 and ip6[40] = 17))" -- libpcap does not walk IPv6 extension headers other
  than one fragment header, and neither do we.  ``port``/``portrange`` check IPv4 "not a
  non-first fragment" and read the ports after the IPv4 header (IHL) or right after the fixed
  IPv6 header (IPv6 ports only when the next header is directly TCP/UDP/SCTP).  ``port`` without
  ``tcp``/``udp``/``sctp`` matches all three (libpcap does; so do we).  ``host``/``net`` without
  ``ip``/``arp``/``rarp`` also match ARP and RARP sender/target addresses, as in libpcap.
  ``proto[off:size]`` loads for tcp/udp/sctp/icmp/igmp are relative to the IPv4 transport header
  (they never match IPv6, as in libpcap), ``icmp6[...]`` to the byte after the fixed IPv6 header.
* VLAN: each ``vlan [id]`` primitive checks the ethertype *at the current offset* for 0x8100,
  0x88a8 or 0x9100 (and the id), then shifts every offset used by the primitives that come after
  it *in the text* by 4 bytes -- whatever the boolean structure (``vlan 100 or udp`` tests udp
  inside the tag; ``udp or vlan`` does not).  A primitive records its shift as ``d`` (the number
  of ``vlan`` keywords before it): its ethertype is at ``12 + 4*d``, its network header at
  ``14 + 4*d``.  ``ether[...]`` offsets are never shifted.
* A load past the captured bytes rejects the whole packet, whatever encloses it (``not`` too):
  that is what a BPF program does (it returns 0).  Evaluation is left to right with
  short-circuit, test by test in the order of libpcap's *unoptimised* program (``tcpdump -O``),
  so exactly the loads that program reaches are made.  libpcap's optimizer (on by default in
  tcpdump) reorders tests on the same field inside and/or chains and deletes tests it proves
  redundant; on a frame whose captured bytes hold everything the expression reads the result is
  the same, on a frame cut inside a header it can differ (tcpdump may then accept a frame we
  reject).  ``tests/test_filters_tcpdump.py`` checks both.
* ``len``/``less``/``greater`` use the wire length.  Relations compare unsigned 32-bit values.

Extensions (not in pcap-filter; no libpcap equivalent)
----------------------------------------------------
* ``payload contains "ABC"`` -- substring anywhere in the L4 payload as parsed into the record
  (``payload_off``/``payload_len`` from ``parsers.l2l4.parse_frame``; IPv6 extension headers
  walked, any VLAN depth).  All ``contains`` patterns of a filter share one Aho-Corasick
  automaton (a dense ``[states, 256]`` transition table): the payload is scanned once, lazily
  (only when a ``contains`` test is reached), and the scan stops early once every pattern group
  the filter uses has been seen.  At most 64 ``contains`` groups per filter (one group per
  ``contains`` primitive; a YAML list of strings is one group).
* ``payload[off:size]`` -- bytes at an offset of that same parsed payload.  A read past the
  payload is "false" (not a rejection of the packet).

The compiled program
--------------------
``Filter.prog`` is a tuple of four arrays, the only thing the matcher needs::

    code    int64[n + 1, 16]  row 0: header (VERSION, entry row, contains-groups mask, n)
                              rows 1..n: one test each: op, jump-if-true, jump-if-false, then
                              operands (see the OP_* table below)
    consts  int64[k]          IPv6 address/mask words (HOST6)
    ac_next int32[s, 256]     Aho-Corasick transitions (state 0 = root)
    ac_out  uint64[s]         contains-groups completed at each state (failure links merged)

The boolean structure is compiled into jumps, BPF style: each test jumps to another row (always
forward, checked when the program is built) or to ACCEPT (-1) / REJECT (-2).  ``not`` swaps the
two targets at compile time, ``and``/``or`` short-circuit, so the matcher needs no stack, no
recursion and no allocation: it is a ``while`` loop over rows.

Matcher entry points (plain ``@njit`` functions; call them from any kernel)
---------------------------------------------------------------------------
``match(rec, buf, base, caplen, wirelen, prog) -> bool``
    one frame at ``buf[base:base + caplen]``; ``rec`` its parsed record (read only by the
    ``payload`` primitives).
``match_burst(recs, buf, bases, caplens, wirelens, count, prog, verdict) -> int``
    ``count`` frames; writes 1/0 into ``verdict[i]`` and returns the number matched.
``match_slots(slot_bytes, stride, slot_size, first, count, capacity, recs, prog, verdict)``
    the burst verb over ring slots, with the same addressing as ``parsers.l2l4.parse_slots``
    (``cap_len``/``wire_len`` read from each slot header; ``recs[i]`` is slot i's record).
None of them allocates (``tests/test_filters.py`` checks the NRT counters).  They are
reentrant: the arrays are only read, so one ``Filter`` may serve several threads.

Each primitive is one test (``port 53`` is one test, not libpcap's dozen BPF blocks), and the
compiler fuses a load with the protocol checks libpcap puts before it (``udp[8:2]``: one test
instead of four, same loads in the same order).  Cost, in cache on this VM (2 noisy vCPUs;
run-to-run spread up to 2x): ``match_slots`` about 3 ns a frame plus 3-4 ns a test reached;
the 5-rule filter of ``tools/bench_parse.py`` about 30 ns a frame; the Aho-Corasick scan about
2.5 ns a payload byte.  ``Filter.describe()`` lists the tests.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterable

import numba
import numpy as np
from numba import njit

from shm.pointers import data_pointer as _data

from .l2l4 import slot_window

# --- program encoding ---------------------------------------------------------------------------
VERSION = 0x48524631          # "HRF1": code[0, 0]; bump when the row layout changes
WIDTH = 16                    # int64 columns per row
ACCEPT = -1
REJECT = -2
MAX_GROUPS = 64               # contains groups: one bit each in a uint64
MAX_AC_STATES = 1 << 18       # 1 KiB per state: 256 MiB would be a mistake, refuse earlier

# ops (code[row, 0]); columns 1/2: jump targets; column 3: ethertype offset 12 + 4*d
OP_ETHERTYPE = 1   # 4 value
OP_IPPROTO = 2     # 4 proto, 5 flags (IPP_*)
OP_PORT = 3        # 4 lo, 5 hi, 6 dir, 7 protos (PP_*)
OP_HOST4 = 4       # 4 addr, 5 mask, 6 dir, 7 kinds (HK_*)
OP_HOST6 = 5       # 4 dir, 5 index into consts (4 address words, then 4 mask words)
OP_VLAN = 6        # 4 vlan id or -1
OP_CMP = 7         # 4 base (B_*), 5 off, 6 size, 7 mask, 8 shift, 9 mul, 10 add,
                   # 11 relop (RELOP_BITS), 12 value, then the fused protocol gate (see
                   # _fuse): 13 ethertype (0: none), 14 IP protocol (-1: none), 15 fragment test
OP_CONTAINS = 8    # 4 group bit

OP_NAMES = {OP_ETHERTYPE: "ethertype", OP_IPPROTO: "ipproto", OP_PORT: "port",
            OP_HOST4: "host4", OP_HOST6: "host6", OP_VLAN: "vlan", OP_CMP: "cmp",
            OP_CONTAINS: "contains"}

# direction qualifiers
D_SRC, D_DST, D_OR, D_AND = 1, 2, 3, 4
DIR_NAMES = {D_SRC: "src", D_DST: "dst", D_OR: "src or dst", D_AND: "src and dst"}
# IPPROTO flags: which families, and whether IPv6 also looks behind one fragment header
IPP_V4, IPP_V6F, IPP_V6 = 1, 2, 4
# PORT protocols
PP_TCP, PP_UDP, PP_SCTP = 1, 2, 4
PP_ALL = PP_TCP | PP_UDP | PP_SCTP
# HOST4 kinds: which ethertypes carry the address, and where
HK_IP, HK_ARP, HK_RARP = 1, 2, 4
HK_ALL = HK_IP | HK_ARP | HK_RARP
# CMP bases: where offset 0 is
B_LINK = 0      # frame start (ether[], link[]): never shifted by vlan
B_L3 = 1        # network header, 14 + 4*d
B_L4V4 = 2      # after the IPv4 header: L3 + 4 * (frame[L3] & 0xf)
B_L4V6 = 3      # after the fixed IPv6 header: L3 + 40
B_LEN = 4       # no load: the wire length
B_PAYLOAD = 5   # the record's payload_off (extension; past the payload = false, not reject)
BASE_NAMES = {B_LINK: "link", B_L3: "l3", B_L4V4: "l4v4", B_L4V6: "l4v6", B_LEN: "len",
              B_PAYLOAD: "payload"}
# relational operators (unsigned 32-bit)
R_EQ, R_NE, R_LT, R_LE, R_GT, R_GE = 0, 1, 2, 3, 4, 5
RELOP_TEXT = {R_EQ: "=", R_NE: "!=", R_LT: "<", R_LE: "<=", R_GT: ">", R_GE: ">="}
RELOP_SWAP = {R_EQ: R_EQ, R_NE: R_NE, R_LT: R_GT, R_LE: R_GE, R_GT: R_LT, R_GE: R_LE}
# in the program, a relop is the set of outcomes it accepts -- bit 0: v < k, bit 1: v == k,
# bit 2: v > k -- so the matcher tests it without a branch
RELOP_BITS = {R_EQ: 0b010, R_NE: 0b101, R_LT: 0b001, R_LE: 0b011, R_GT: 0b100, R_GE: 0b110}

ETH_IP, ETH_IP6, ETH_ARP, ETH_RARP = 0x0800, 0x86DD, 0x0806, 0x8035
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
IPPROTO_FRAGMENT = 44
U32 = 0xFFFFFFFF


class FilterSyntaxError(ValueError):
    """A filter expression outside the supported subset, or invalid.  ``column`` is 1-based;
    ``str()`` shows the expression with a caret line under the offending token."""

    def __init__(self, message: str, text: str = "", pos: int = 0, length: int = 1,
                 where: str = ""):
        self.reason = message
        self.text = text
        self.pos = max(0, min(pos, len(text)))
        self.column = self.pos + 1
        self.length = max(1, length)
        self.where = where
        super().__init__(self._format())

    def _format(self) -> str:
        head = f"{self.where}: " if self.where else ""
        if not self.text:
            return f"{head}{self.reason}"
        return (f"{head}{self.reason} (column {self.column})\n"
                f"    {self.text}\n"
                f"    {' ' * self.pos}{'^' * self.length}")


class FilterConfigError(ValueError):
    """A bad YAML filter rule; the message starts with the key path (``filters[2].dst_port``)."""

    def __init__(self, path: str, message: str):
        self.path = path
        self.reason = message
        super().__init__(f"{path}: {message}" if path else message)


# --- the AST ------------------------------------------------------------------------------------
class Node:
    """Base of the filter AST.  Leaves carry ``d``, the vlan shift (see the module docstring)."""
    __slots__ = ()


@dataclass(frozen=True)
class Const(Node):
    value: bool

    def __str__(self):
        return "1 = 1" if self.value else "1 = 0"


@dataclass(frozen=True)
class Not(Node):
    item: Node

    def __str__(self):
        return f"not {_paren(self.item)}"


@dataclass(frozen=True)
class And(Node):
    items: tuple

    def __str__(self):
        return " and ".join(_paren(i) for i in self.items)


@dataclass(frozen=True)
class Or(Node):
    items: tuple

    def __str__(self):
        return " or ".join(_paren(i) for i in self.items)


def _paren(n: Node) -> str:
    return f"({n})" if isinstance(n, (And, Or)) else str(n)


def _vl(d: int) -> str:
    return f"@{d}" if d else ""


@dataclass(frozen=True)
class EtherType(Node):
    d: int
    value: int

    def __str__(self):
        return f"ethertype{_vl(self.d)} 0x{self.value:04x}"


@dataclass(frozen=True)
class IpProto(Node):
    d: int
    proto: int
    flags: int          # IPP_*

    def __str__(self):
        fam = {IPP_V4: "ip", IPP_V6F: "ip6", IPP_V6: "ip6-direct",
               IPP_V4 | IPP_V6F: "ip|ip6"}.get(self.flags, hex(self.flags))
        return f"{fam}{_vl(self.d)} proto {self.proto}"


@dataclass(frozen=True)
class Port(Node):
    d: int
    lo: int
    hi: int
    dir: int
    protos: int         # PP_*

    def __str__(self):
        pr = "/".join(n for b, n in ((PP_TCP, "tcp"), (PP_UDP, "udp"), (PP_SCTP, "sctp"))
                      if self.protos & b)
        rng = str(self.lo) if self.lo == self.hi else f"{self.lo}-{self.hi}"
        return f"{pr}{_vl(self.d)} {DIR_NAMES[self.dir]} port {rng}"


@dataclass(frozen=True)
class Host4(Node):
    d: int
    addr: int
    mask: int
    dir: int
    kinds: int          # HK_*

    def __str__(self):
        k = "/".join(n for b, n in ((HK_IP, "ip"), (HK_ARP, "arp"), (HK_RARP, "rarp"))
                     if self.kinds & b)
        plen = bin(self.mask).count("1")
        return (f"{k}{_vl(self.d)} {DIR_NAMES[self.dir]} "
                f"{ipaddress.IPv4Address(self.addr)}/{plen}")


@dataclass(frozen=True)
class Host6(Node):
    d: int
    addr: bytes
    mask: bytes
    dir: int

    def __str__(self):
        plen = sum(bin(b).count("1") for b in self.mask)
        return (f"ip6{_vl(self.d)} {DIR_NAMES[self.dir]} "
                f"{ipaddress.IPv6Address(self.addr)}/{plen}")


@dataclass(frozen=True)
class Vlan(Node):
    d: int
    vid: int            # -1: any

    def __str__(self):
        return f"vlan{_vl(self.d)}" + ("" if self.vid < 0 else f" {self.vid}")


@dataclass(frozen=True)
class Cmp(Node):
    """``(((load(base, off, size) & mask) >> shift) * mul + add) mod 2**32  relop  value``."""
    base: int
    d: int
    off: int
    size: int
    mask: int = U32
    shift: int = 0
    mul: int = 1
    add: int = 0
    op: int = R_EQ
    value: int = 0

    def __str__(self):
        if self.base == B_LEN:
            v = "len"
        else:
            v = f"{BASE_NAMES[self.base]}{_vl(self.d)}[{self.off}:{self.size}]"
        if self.mask != U32:
            v = f"({v} & 0x{self.mask:x})"
        if self.shift:
            v = f"({v} >> {self.shift})"
        if self.mul != 1:
            v = f"{v} * {self.mul}"
        if self.add:
            v = f"{v} + {self.add}"
        return f"{v} {RELOP_TEXT[self.op]} {self.value}"


@dataclass(frozen=True)
class Contains(Node):
    patterns: tuple     # of bytes: any of them anywhere in the payload

    def __str__(self):
        return "payload contains " + " | ".join(_show_bytes(p) for p in self.patterns)


def _show_bytes(b: bytes) -> str:
    out = []
    for c in b:
        ch = chr(c)
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif 32 <= c < 127:
            out.append(ch)
        else:
            out.append(f"\\x{c:02x}")
    return '"' + "".join(out) + '"'


LEAVES = (EtherType, IpProto, Port, Host4, Host6, Vlan, Cmp, Contains)


# --- combinators: flatten and fold constants -----------------------------------------------------
def and_(*items: Node) -> Node:
    flat = []
    for it in items:
        flat.extend(it.items if isinstance(it, And) else (it,))
    return flat[0] if len(flat) == 1 else And(tuple(flat))


def or_(*items: Node) -> Node:
    flat = []
    for it in items:
        flat.extend(it.items if isinstance(it, Or) else (it,))
    return flat[0] if len(flat) == 1 else Or(tuple(flat))


def not_(item: Node) -> Node:
    return item.item if isinstance(item, Not) else Not(item)


def simplify(node: Node) -> Node:
    """Fold constants without changing which loads run: ``not`` of a constant, neutral constants
    dropped (``1 = 1 and X`` is X), items after an absorbing constant dropped (they never run).
    ``X or 1 = 1`` keeps X: a load of X past the capture still rejects the packet, as in the
    BPF program."""
    if isinstance(node, Not):
        inner = simplify(node.item)
        if isinstance(inner, Const):
            return Const(not inner.value)
        return not_(inner)
    if isinstance(node, (And, Or)):
        is_and = isinstance(node, And)
        kept = []
        for it in node.items:
            s = simplify(it)
            if isinstance(s, Const):
                if s.value == is_and:          # neutral element: drop it
                    continue
                kept.append(s)                 # absorbing: what follows never runs
                break
            kept.append(s)
        if not kept:
            return Const(is_and)
        if len(kept) == 1:
            return kept[0]
        return And(tuple(kept)) if is_and else Or(tuple(kept))
    return node


def walk(node: Node) -> Iterable[Node]:
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        if isinstance(n, (And, Or)):
            stack.extend(reversed(n.items))
        elif isinstance(n, Not):
            stack.append(n.item)


# --- builders: libpcap's gencode for DLT_EN10MB, one function per primitive ---------------------
def ethertype(value: int, d: int = 0) -> Node:
    return EtherType(d, value)


def ip_proto(proto: int, family: str | None, d: int = 0) -> Node:
    """``ip proto N`` (family 'ip'), ``ip6 proto N`` ('ip6': also behind one fragment header),
    ``proto N`` (None: both)."""
    flags = {"ip": IPP_V4, "ip6": IPP_V6F, None: IPP_V4 | IPP_V6F}[family]
    return IpProto(d, proto, flags)


PROTO_ABBREV = {  # gen_proto_abbrev: name -> (ethertype) or (ip proto, flags)
    "ip": ("et", ETH_IP), "ip6": ("et", ETH_IP6), "arp": ("et", ETH_ARP),
    "rarp": ("et", ETH_RARP),
    "tcp": ("ipp", 6, IPP_V4 | IPP_V6F), "udp": ("ipp", 17, IPP_V4 | IPP_V6F),
    "sctp": ("ipp", 132, IPP_V4 | IPP_V6F), "icmp": ("ipp", 1, IPP_V4),
    "igmp": ("ipp", 2, IPP_V4), "icmp6": ("ipp", 58, IPP_V6F),
}


def proto_abbrev(name: str, d: int = 0) -> Node:
    """The bare protocol keywords: ``ip``, ``ip6``, ``arp``, ``rarp``, ``tcp``, ``udp``,
    ``sctp``, ``icmp``, ``icmp6``, ``igmp``."""
    spec = PROTO_ABBREV[name]
    if spec[0] == "et":
        return EtherType(d, spec[1])
    return IpProto(d, spec[1], spec[2])


def host4(addr: int, mask: int, dir: int = D_OR, d: int = 0, kinds: int = HK_ALL) -> Node:
    return Host4(d, addr & U32, mask & U32, dir, kinds)


def host6(addr: bytes, mask: bytes, dir: int = D_OR, d: int = 0) -> Node:
    return Host6(d, bytes(addr), bytes(mask), dir)


def port(lo: int, hi: int | None = None, dir: int = D_OR, d: int = 0,
         protos: int = PP_ALL) -> Node:
    hi = lo if hi is None else hi
    if lo > hi:                     # libpcap swaps a reversed range
        lo, hi = hi, lo
    return Port(d, lo, hi, dir, protos)


def vlan(vid: int | None = None, d: int = 0) -> Node:
    return Vlan(d, -1 if vid is None else vid)


def frag_ok(d: int) -> Node:
    """gen_ipfrag: ``ip[6:2] & 0x1fff = 0`` at the network header, no ethertype check (libpcap
    relies on the protocol test before it)."""
    return Cmp(B_L3, d, 6, 2, mask=0x1FFF, op=R_EQ, value=0)


LOAD_LAYERS = ("ether", "link", "ip", "ip6", "arp", "rarp", "tcp", "udp", "sctp", "icmp",
               "igmp", "icmp6", "payload")


def load_gate(layer: str, d: int) -> tuple[Node | None, int]:
    """What libpcap's gen_load checks before a ``layer[...]`` load, and the load's base."""
    if layer in ("ether", "link"):
        return None, B_LINK
    if layer == "payload":
        return None, B_PAYLOAD
    if layer in ("ip", "ip6", "arp", "rarp"):
        return proto_abbrev(layer, d), B_L3
    if layer in ("tcp", "udp", "sctp", "icmp", "igmp"):
        # gen_load: IPv4 first, then the protocol (whose IPv6 half can no longer match, but
        # is still in the program), then "not a non-first fragment"
        return and_(EtherType(d, ETH_IP), proto_abbrev(layer, d), frag_ok(d)), B_L4V4
    if layer == "icmp6":        # 1.10: ip6 with next header 58 directly, then the fixed header
        return IpProto(d, 58, IPP_V6), B_L4V6
    raise ValueError(f"no such layer {layer!r}")


def load_cmp(layer: str, off: int, size: int, op: int, value: int, d: int = 0, *,
             mask: int = U32, shift: int = 0, mul: int = 1, add: int = 0,
             gated: bool = True) -> Node:
    """``layer[off:size] ...`` compared with a constant, with libpcap's protocol gate first.
    ``gated=False``: no gate -- libpcap's gen_arth keeps only its LEFT operand's protocol
    checks, so in ``256 - ip[8] > 200`` the load runs on every frame, IP or not."""
    if size not in (1, 2, 4):
        raise ValueError("data size must be 1, 2, or 4")
    gate, base = load_gate(layer, d)
    if base in (B_LINK, B_PAYLOAD):
        d = 0                       # not shifted by vlan: keep the AST canonical
    cmp = Cmp(base, d, off, size, mask & U32, shift, mul & U32, add & U32, op, value & U32)
    return cmp if gate is None or not gated else and_(gate, cmp)


def length_cmp(op: int, value: int, *, mask: int = U32, shift: int = 0, mul: int = 1,
               add: int = 0) -> Node:
    return Cmp(B_LEN, 0, 0, 4, mask & U32, shift, mul & U32, add & U32, op, value & U32)


def bytes_at(layer: str, off: int, data: bytes, mask: bytes | None = None, d: int = 0) -> Node:
    """A byte pattern of any length at ``layer[off]`` (YAML ``pattern``): the gate once, then one
    4/2/1-byte compare per chunk, in order.  Chunks whose mask is all zero are not tested (so
    they need not be captured)."""
    if mask is None:
        mask = b"\xff" * len(data)
    if len(mask) != len(data) or not data:
        raise ValueError("pattern bytes and mask must be non-empty and of the same length")
    gate, base = load_gate(layer, d)
    if base in (B_LINK, B_PAYLOAD):
        d = 0
    parts = [] if gate is None else [gate]
    i = 0
    while i < len(data):
        n = 4 if len(data) - i >= 4 else (2 if len(data) - i >= 2 else 1)
        v = int.from_bytes(data[i:i + n], "big")
        m = int.from_bytes(mask[i:i + n], "big")
        if m:
            parts.append(Cmp(base, d, off + i, n, m, 0, 1, 0, R_EQ, v & m))
        i += n
    return and_(*parts) if parts else Const(True)


def ether_addr(mac: bytes, dir: int = D_OR) -> Node:
    """gen_ehostop: compares the last 4 bytes of the address first, then the first 2."""
    def one(o):
        return and_(Cmp(B_LINK, 0, o + 2, 4, value=int.from_bytes(mac[2:6], "big")),
                    Cmp(B_LINK, 0, o, 2, value=int.from_bytes(mac[0:2], "big")))
    if dir == D_SRC:
        return one(6)
    if dir == D_DST:
        return one(0)
    if dir == D_AND:
        return and_(one(6), one(0))
    return or_(one(6), one(0))


def ether_broadcast() -> Node:
    return and_(Cmp(B_LINK, 0, 2, 4, value=U32), Cmp(B_LINK, 0, 0, 2, value=0xFFFF))


def ether_multicast() -> Node:
    return Cmp(B_LINK, 0, 0, 1, mask=1, op=R_NE, value=0)


def ip_multicast(d: int = 0) -> Node:
    return and_(EtherType(d, ETH_IP), Cmp(B_L3, d, 16, 1, op=R_GE, value=224))


def ip6_multicast(d: int = 0) -> Node:
    return and_(EtherType(d, ETH_IP6), Cmp(B_L3, d, 24, 1, op=R_EQ, value=255))


def contains(patterns: Iterable[bytes]) -> Node:
    pats = tuple(bytes(p) for p in patterns)
    if not pats or any(len(p) == 0 for p in pats):
        raise ValueError("a contains pattern must be non-empty")
    return Contains(pats)


def cidr4(text: str) -> tuple[int, int]:
    """'10.0.0.0/16' -> (addr, mask); non-network bits are an error, as in libpcap."""
    net = ipaddress.IPv4Network(text, strict=True)
    return int(net.network_address), int(net.netmask)


def cidr6(text: str) -> tuple[bytes, bytes]:
    net = ipaddress.IPv6Network(text, strict=True)
    return net.network_address.packed, net.netmask.packed


# --- Aho-Corasick ---------------------------------------------------------------------------------
def build_aho_corasick(groups: list[tuple[bytes, ...]]) -> tuple[np.ndarray, np.ndarray]:
    """Dense automaton over bytes: ``next[s, b]`` is the state after byte ``b`` (failure links
    already folded in), ``out[s]`` the bit set of groups with a pattern ending at ``s`` (through
    failure links too).  Group ``g`` is bit ``g``."""
    goto: list[dict[int, int]] = [{}]
    out = [0]
    for g, pats in enumerate(groups):
        for p in pats:
            s = 0
            for b in p:
                nxt = goto[s].get(b)
                if nxt is None:
                    nxt = len(goto)
                    goto.append({})
                    out.append(0)
                    if len(goto) > MAX_AC_STATES:
                        raise ValueError(f"contains patterns need more than {MAX_AC_STATES} "
                                         "automaton states; use fewer or shorter patterns")
                    goto[s][b] = nxt
                s = nxt
            out[s] |= 1 << g
    n = len(goto)
    table = np.zeros((n, 256), dtype=np.int32)
    fail = [0] * n
    order = []
    for b, t in goto[0].items():
        table[0, b] = t
        order.append(t)
    head = 0
    while head < len(order):         # BFS: a failure state is shallower, so already complete
        s = order[head]
        head += 1
        out[s] |= out[fail[s]]
        table[s] = table[fail[s]]
        for b, t in goto[s].items():
            fail[t] = int(table[fail[s], b])
            table[s, b] = t
            order.append(t)
    outs = np.array(out, dtype=np.uint64)
    return table, outs


# --- the compiler ---------------------------------------------------------------------------------
class Filter:
    """A compiled filter: ``prog`` (the arrays the ``@njit`` matcher walks), the source, the AST.

    Build with ``compile_filter(spec)``; use ``prog`` with ``match`` / ``match_burst`` /
    ``match_slots`` inside a kernel, or the plain-Python conveniences for setup and tests."""

    def __init__(self, node: Node, source: str | None = None):
        self.source = source
        self.node = node
        simple = simplify(node)
        self.simplified = simple
        groups: list[tuple[bytes, ...]] = []
        group_of: dict[tuple, int] = {}
        for n in walk(simple):
            if isinstance(n, Contains) and n.patterns not in group_of:
                group_of[n.patterns] = len(groups)
                groups.append(n.patterns)
        if len(groups) > MAX_GROUPS:
            raise FilterSyntaxError(f"at most {MAX_GROUPS} different 'contains' primitives per "
                                    f"filter (this one has {len(groups)}); put alternatives in "
                                    "one list")
        self.groups = groups
        rows, entry = _compile_jumps(simple, group_of)
        consts: list[int] = []
        code = np.zeros((len(rows) + 1, WIDTH), dtype=np.int64)
        for i, (r, leaf) in enumerate(rows):
            if r[0] == OP_HOST6:        # its 16+16 bytes go to consts as big-endian words
                r[5] = len(consts)
                for blob in (leaf.addr, leaf.mask):
                    consts.extend(int.from_bytes(blob[k:k + 4], "big") for k in range(0, 16, 4))
            code[i + 1, :len(r)] = r
        need = (1 << len(groups)) - 1
        code[0, 0] = VERSION
        code[0, 1] = entry
        code[0, 2] = need - (1 << 64) if need >> 63 else need    # the uint64's bits
        code[0, 3] = len(rows)
        if groups:
            ac_next, ac_out = build_aho_corasick(groups)
        else:
            ac_next, ac_out = np.zeros((1, 256), np.int32), np.zeros(1, np.uint64)
        self.code = code
        self.consts = np.array(consts if consts else [0], dtype=np.int64)
        self.ac_next = ac_next
        self.ac_out = ac_out
        _validate(code)
        self.prog = (self.code, self.consts, self.ac_next, self.ac_out)
        self._specialized = None
        self.needs_records = bool(groups) or any(
            isinstance(n, Cmp) and n.base == B_PAYLOAD for n in walk(simple))

    def __repr__(self):
        src = self.source if self.source is not None else str(self.node)
        return f"Filter({src!r}, {len(self.code) - 1} tests)"

    @property
    def specialized(self):
        """This filter compiled to its own machine code (``parsers.filter_codegen``): the
        burst verb a long-running loop should call.  Built on first use, cached on disk."""
        if self._specialized is None:
            from .filter_codegen import specialize
            self._specialized = specialize(self)
        return self._specialized

    def describe(self) -> str:
        """The program, one test per line (like ``tcpdump -d``)."""
        def tgt(t):
            return {ACCEPT: "accept", REJECT: "reject"}.get(int(t), f"{int(t)}")
        lines = [f"entry {tgt(self.code[0, 1])}"]
        for i in range(1, len(self.code)):
            r = self.code[i]
            ops = " ".join(str(int(x)) for x in r[3:WIDTH])
            lines.append(f"({i:03d}) {OP_NAMES[int(r[0])]:<9} {ops:<40} "
                         f"jt {tgt(r[1])} jf {tgt(r[2])}")
        return "\n".join(lines)

    # plain-Python conveniences (setup, tests, CLI) -----------------------------------------
    def match_frame(self, frame: bytes, wirelen: int | None = None) -> bool:
        buf = np.frombuffer(bytes(frame), dtype=np.uint8) if len(frame) else np.zeros(1, np.uint8)
        rec = _records_for(buf, len(frame), self.needs_records)
        return bool(match(rec[0], buf, 0, len(frame), len(frame) if wirelen is None else wirelen,
                          self.prog))

    def match_frames(self, buf: np.ndarray, bases: np.ndarray, caplens: np.ndarray,
                     wirelens: np.ndarray, recs: np.ndarray) -> np.ndarray:
        """Verdicts (bool array) for frames of one buffer (frame i at ``buf[bases[i]:][:
        caplens[i]]``, parsed into ``recs[i]``, e.g. by ``parsers.l2l4.parse_frames``): a
        capture read with ``keep_bytes=True``, every packet whole."""
        n = min(len(bases), len(caplens), len(wirelens), len(recs))
        verdict = np.zeros(max(n, 1), dtype=np.uint8)
        match_burst(recs, np.ascontiguousarray(buf, dtype=np.uint8).reshape(-1),
                    np.ascontiguousarray(bases, dtype=np.int64),
                    np.ascontiguousarray(caplens, dtype=np.int64),
                    np.ascontiguousarray(wirelens, dtype=np.int64), n, self.prog, verdict)
        return verdict[:n].astype(bool)

    def match_slot_array(self, slots: np.ndarray, recs: np.ndarray | None = None) -> np.ndarray:
        """Verdicts (bool array) for a contiguous array of ``shm.layout.slot_dtype`` records,
        e.g. ``parsers.pcap.read_capture(path).slots`` (parsed first when the filter reads the
        payload)."""
        from .record import new_records
        slots = np.ascontiguousarray(slots)
        n = len(slots)
        if recs is None:
            recs = new_records(max(n, 1))
            if self.needs_records and n:
                from .l2l4 import parse_slot_array
                parse_slot_array(slots, recs)
        flat = slots.view(np.uint8).reshape(-1)
        verdict = np.zeros(max(n, 1), dtype=np.uint8)
        stride = slots.dtype.itemsize
        size = slots.dtype.fields["payload"][0].shape[0]
        match_slots(flat, stride, size, 0, n, 0, recs, self.prog, verdict)
        return verdict[:n].astype(bool)


def _records_for(buf, caplen, parse):
    from .record import new_records
    rec = new_records(1)
    if parse:
        from .l2l4 import parse_frame
        parse_frame(buf, 0, caplen, rec[0])
    else:
        rec[0]["payload_off"] = -1
    return rec


def _leaf_row(n: Node, group_of) -> list:
    if isinstance(n, EtherType):
        return [OP_ETHERTYPE, 0, 0, 12 + 4 * n.d, n.value]
    if isinstance(n, IpProto):
        return [OP_IPPROTO, 0, 0, 12 + 4 * n.d, n.proto, n.flags]
    if isinstance(n, Port):
        return [OP_PORT, 0, 0, 12 + 4 * n.d, n.lo, n.hi, n.dir, n.protos]
    if isinstance(n, Host4):
        return [OP_HOST4, 0, 0, 12 + 4 * n.d, n.addr, n.mask, n.dir, n.kinds]
    if isinstance(n, Host6):
        return [OP_HOST6, 0, 0, 12 + 4 * n.d, n.dir, 0]      # 5: consts index, set later
    if isinstance(n, Vlan):
        return [OP_VLAN, 0, 0, 12 + 4 * n.d, n.vid]
    if isinstance(n, Cmp):
        return [OP_CMP, 0, 0, 12 + 4 * n.d, n.base, n.off, n.size, n.mask, min(n.shift, 32),
                n.mul, n.add, RELOP_BITS[n.op], n.value, 0, -1, 0]
    if isinstance(n, _Gated):
        row = _leaf_row(n.cmp, group_of)
        row[13], row[14], row[15] = n.ethertype, n.proto, n.frag
        return row
    if isinstance(n, Contains):
        return [OP_CONTAINS, 0, 0, 0, group_of[n.patterns]]
    raise TypeError(f"not a filter node: {n!r}")


@dataclass(frozen=True)
class _Gated(Node):
    """A load compare fused with the protocol tests libpcap puts before it (compiler only)."""
    cmp: Cmp
    ethertype: int
    proto: int
    frag: int


def _fuse(items) -> list:
    """Peephole over an ``and`` chain: the gate of a load (``ip[..]``: ethertype; ``udp[..]``:
    ethertype 0x0800, ip[9], "not a non-first fragment"; ``icmp6[..]``: ethertype 0x86dd and
    next header) and the load become ONE test that makes the same loads in the same order and
    fails the same way -- the chain's false target is the same for all of them.  Saves 1-3
    dispatches per load primitive."""
    out = []
    i = 0
    while i < len(items):
        a = items[i]
        nxt = items[i + 1] if i + 1 < len(items) else None
        if (isinstance(a, EtherType) and a.value == ETH_IP and i + 3 < len(items)
                and isinstance(nxt, IpProto) and nxt.d == a.d and nxt.flags & IPP_V4
                and items[i + 2] == frag_ok(a.d) and isinstance(items[i + 3], Cmp)
                and items[i + 3].base == B_L4V4 and items[i + 3].d == a.d):
            out.append(_Gated(items[i + 3], ETH_IP, nxt.proto, 1))
            i += 4
        elif (isinstance(a, EtherType) and a.value != 0 and isinstance(nxt, Cmp)
              and nxt.base == B_L3 and nxt.d == a.d):
            out.append(_Gated(nxt, a.value, -1, 0))
            i += 2
        elif (isinstance(a, IpProto) and a.flags == IPP_V6 and isinstance(nxt, Cmp)
              and nxt.base == B_L4V6 and nxt.d == a.d):
            out.append(_Gated(nxt, ETH_IP6, a.proto, 0))
            i += 2
        else:
            out.append(a)
            i += 1
    return out


def _compile_jumps(node: Node, group_of) -> tuple[list, int]:
    """Lay the tree out as tests with true/false jump targets.  Built back to front (a test's
    continuations exist before it), then reversed, so every jump goes forward.  And/Or are
    n-ary and iterated, so a long rule list does not recurse deeply.  Returns ``[(row, leaf)]``
    (``rows[i]`` is program row ``i + 1``) and the entry target."""
    built: list[tuple[list, Node]] = []      # build order; final row = len(built) - k

    def comp(n, t, f):
        if isinstance(n, Const):
            return t if n.value else f
        if isinstance(n, Not):
            return comp(n.item, f, t)
        if isinstance(n, And):
            lab = t
            for it in reversed(_fuse(n.items)):
                lab = comp(it, lab, f)
            return lab
        if isinstance(n, Or):
            lab = f
            for it in reversed(n.items):
                lab = comp(it, t, lab)
            return lab
        row = _leaf_row(n, group_of)
        row[1], row[2] = t, f
        built.append((row, n))
        return ("L", len(built) - 1)

    entry = comp(node, ACCEPT, REJECT)
    total = len(built)

    def fix(lab):
        return lab if isinstance(lab, int) else total - lab[1]

    rows = []
    for k in range(total - 1, -1, -1):
        row, leaf = built[k]
        row = list(row)
        row[1], row[2] = fix(row[1]), fix(row[2])
        rows.append((row, leaf))
    return rows, fix(entry)


def _validate(code: np.ndarray) -> None:
    """The matcher trusts the program: check every jump goes forward or ends."""
    n = len(code) - 1
    entry = int(code[0, 1])
    if not (entry in (ACCEPT, REJECT) or 1 <= entry <= n):
        raise AssertionError(f"bad entry {entry}")
    for i in range(1, n + 1):
        if int(code[i, 0]) not in OP_NAMES:
            raise AssertionError(f"row {i}: bad op {code[i, 0]}")
        for t in (int(code[i, 1]), int(code[i, 2])):
            if not (t in (ACCEPT, REJECT) or i < t <= n):
                raise AssertionError(f"row {i}: jump to {t} is not forward")


def compile_filter(spec, source: str | None = None) -> Filter:
    """A ``Filter`` from a pcap-filter string, an AST ``Node``, or YAML rules (a list, or a
    mapping with a ``filters`` key; see ``parsers.filter_yaml``).  ``None``/"" accept all."""
    if spec is None:
        return Filter(Const(True), "")
    if isinstance(spec, Node):
        return Filter(spec, source)
    if isinstance(spec, str):
        from .pcap_filter import parse
        return Filter(parse(spec), spec)
    if isinstance(spec, (list, dict)):
        from .filter_yaml import rules_to_node
        return Filter(rules_to_node(spec), source)
    raise TypeError(f"cannot compile a filter from {type(spec).__name__}")


# --- the matcher (hot path) -------------------------------------------------------------------
# Why raw pointers: a Numba function increfs its array arguments on entry and decrefs them on
# every exit (atomic operations); with a loop and many exits LLVM cannot prune the pairs, and
# 5 arrays cost ~28 ns a frame here -- more than the filtering.  So the public entry points
# (straight-line wrappers, whose pairs are pruned) take the data pointers once and the hot
# functions below see only pointers and integers.  Every read of the frame is still checked
# against the captured length by the code; under NUMBA_BOUNDSCHECK=1 ``_rd`` also checks every
# index against the array's length and raises IndexError as a checked array read would.
_BOUNDSCHECK = bool(numba.config.BOUNDSCHECK)


@njit(cache=True, nogil=True)
def _rd(p, n, i):
    if _BOUNDSCHECK:
        if i < 0 or i >= n:
            raise IndexError("parsers.filters: read outside the array")
    return np.int64(p[i])


@njit(cache=True, nogil=True)
def _be(p, n, i, size):
    """Big-endian load, widened to int64 before shifting (numpy 2 keeps uint8 << 8 in uint8)."""
    if size == 1:
        return _rd(p, n, i)
    if size == 2:
        return (_rd(p, n, i) << 8) | _rd(p, n, i + 1)
    return ((_rd(p, n, i) << 24) | (_rd(p, n, i + 1) << 16) | (_rd(p, n, i + 2) << 8)
            | _rd(p, n, i + 3))


@njit(cache=True, nogil=True)
def _relop(v, bits, k):
    # both sides are in [0, 2**32): int64 comparison is the unsigned 32-bit one
    return (bits >> (np.int64(v > k) - np.int64(v < k) + 1)) & 1


@njit(cache=True, nogil=True, inline="always")
def _ports(bp, bn, l4, end, lo, hi, dr):
    """1 / 0 / -1 (a load past the capture).  src is read (and decides) before dst."""
    if dr != 2:                                   # src, or, and: the source port first
        if l4 + 2 > end:
            return -1
        sp = _be(bp, bn, l4, 2)
        s_ok = lo <= sp and sp <= hi
        if dr == 1:
            return 1 if s_ok else 0
        if dr == 3 and s_ok:
            return 1
        if dr == 4 and not s_ok:
            return 0
    if l4 + 4 > end:
        return -1
    dp = _be(bp, bn, l4 + 2, 2)
    return 1 if (lo <= dp and dp <= hi) else 0


@njit(cache=True, nogil=True, inline="always")
def _addr4(bp, bn, so, do, end, addr, mask, dr):
    if dr != 2:
        if so + 4 > end:
            return -1
        s_ok = (_be(bp, bn, so, 4) & mask) == addr
        if dr == 1:
            return 1 if s_ok else 0
        if dr == 3 and s_ok:
            return 1
        if dr == 4 and not s_ok:
            return 0
    if do + 4 > end:
        return -1
    return 1 if (_be(bp, bn, do, 4) & mask) == addr else 0


@njit(cache=True, nogil=True, inline="always")
def _addr6_side(bp, bn, p, end, kp, kn, ci):
    # word by word, first to last, stopping at the first mismatch (gen_hostop6's order); a
    # word whose mask is zero is still loaded, as in libpcap's unoptimised program
    for k in range(4):
        if p + 4 * k + 4 > end:
            return -1
        if (_be(bp, bn, p + 4 * k, 4) & _rd(kp, kn, ci + 4 + k)) != _rd(kp, kn, ci + k):
            return 0
    return 1


# One function per test, operands as plain integers.  The interpreter's ``_leaf`` reads the
# operands from a program row and calls these; ``parsers.filter_codegen`` calls them with the
# operands as literals, so LLVM inlines and constant-folds each test (one body, two users).
# Each returns 1 (true), 0 (false) or -1 (a load ran past ``end``: BPF rejects the packet).

@njit(cache=True, nogil=True)
def test_cmp(bp, bn, base, end, wirelen, poff, plen, eoff, b, off, size, mask, shift, mul, add,
             relbits, k, gate_et, gate_proto, gate_frag):
    eo = base + eoff                              # ethertype at 12 + 4*d
    if gate_et != 0:                              # the fused gate, in libpcap's order
        if eo + 2 > end:
            return -1
        if _be(bp, bn, eo, 2) != gate_et:
            return 0
        if gate_proto >= 0:
            l3 = eo + 2
            if gate_et == 0x0800:
                if l3 + 10 > end:
                    return -1
                if _rd(bp, bn, l3 + 9) != gate_proto:
                    return 0
                if gate_frag != 0 and (_be(bp, bn, l3 + 6, 2) & 0x1FFF) != 0:
                    return 0
            else:                                 # 0x86dd: the next header, directly
                if l3 + 7 > end:
                    return -1
                if _rd(bp, bn, l3 + 6) != gate_proto:
                    return 0
    if b == 4:                                    # len: the wire length, no load
        v = wirelen & 0xFFFFFFFF
    else:
        if b == 0:
            p = base + off
        elif b == 1:
            p = eo + 2 + off
        elif b == 2:                              # ldxb 4*([L3]&0xf), then [x + L3 + off]
            l3 = eo + 2
            if l3 + 1 > end:
                return -1
            p = l3 + 4 * (_rd(bp, bn, l3) & 0xF) + off
        elif b == 3:
            p = eo + 42 + off
        else:                                     # payload: past it is false, not a reject
            if poff < 0:
                return 0
            p = poff + off
            if p + size > poff + plen or p + size > end:
                return 0
        if p + size > end:
            return -1
        v = _be(bp, bn, p, size)
    v = (v & mask) >> shift
    if mul != 1 or add != 0:                      # affine part, modulo 2**32
        v = np.int64((np.uint64(v) * np.uint64(mul) + np.uint64(add))
                     & np.uint64(0xFFFFFFFF))
    return _relop(v, relbits, k)


@njit(cache=True, nogil=True)
def test_ethertype(bp, bn, base, end, eoff, value):
    eo = base + eoff
    if eo + 2 > end:
        return -1
    return 1 if _be(bp, bn, eo, 2) == value else 0


@njit(cache=True, nogil=True)
def test_ipproto(bp, bn, base, end, eoff, proto, fl):
    eo = base + eoff
    if eo + 2 > end:
        return -1
    et = _be(bp, bn, eo, 2)
    l3 = eo + 2
    if et == 0x0800 and (fl & 1) != 0:
        if l3 + 10 > end:
            return -1
        return 1 if _rd(bp, bn, l3 + 9) == proto else 0
    if et == 0x86DD and (fl & 6) != 0:
        if l3 + 7 > end:
            return -1
        nh = _rd(bp, bn, l3 + 6)
        if nh == proto:
            return 1
        if (fl & 2) != 0 and nh == 44:            # one fragment header, then the protocol
            if l3 + 41 > end:
                return -1
            return 1 if _rd(bp, bn, l3 + 40) == proto else 0
    return 0


@njit(cache=True, nogil=True)
def test_port(bp, bn, base, end, eoff, lo, hi, dr, pp):
    eo = base + eoff
    if eo + 2 > end:
        return -1
    et = _be(bp, bn, eo, 2)
    l3 = eo + 2
    if et == 0x0800:
        if l3 + 10 > end:
            return -1
        p = _rd(bp, bn, l3 + 9)
        if not ((p == 6 and (pp & 1) != 0) or (p == 17 and (pp & 2) != 0)
                or (p == 132 and (pp & 4) != 0)):
            return 0
        if (_be(bp, bn, l3 + 6, 2) & 0x1FFF) != 0:   # a non-first fragment has no ports
            return 0
        l4 = l3 + 4 * (_rd(bp, bn, l3) & 0xF)
        return _ports(bp, bn, l4, end, lo, hi, dr)
    if et == 0x86DD:
        if l3 + 7 > end:
            return -1
        p = _rd(bp, bn, l3 + 6)
        if not ((p == 6 and (pp & 1) != 0) or (p == 17 and (pp & 2) != 0)
                or (p == 132 and (pp & 4) != 0)):
            return 0
        return _ports(bp, bn, l3 + 40, end, lo, hi, dr)
    return 0


@njit(cache=True, nogil=True)
def test_host4(bp, bn, base, end, eoff, addr, mask, dr, kinds):
    eo = base + eoff
    if eo + 2 > end:
        return -1
    et = _be(bp, bn, eo, 2)
    l3 = eo + 2
    if et == 0x0800 and (kinds & 1) != 0:
        so = l3 + 12
        do = l3 + 16
    elif (et == 0x0806 and (kinds & 2) != 0) or (et == 0x8035 and (kinds & 4) != 0):
        so = l3 + 14
        do = l3 + 24
    else:
        return 0
    return _addr4(bp, bn, so, do, end, addr, mask, dr)


@njit(cache=True, nogil=True)
def test_host6(bp, bn, base, end, eoff, kp, kn, dr, ci):
    """``kp[ci:ci+4]``: the address as big-endian words, ``kp[ci+4:ci+8]`` the mask."""
    eo = base + eoff
    if eo + 2 > end:
        return -1
    if _be(bp, bn, eo, 2) != 0x86DD:
        return 0
    l3 = eo + 2
    if dr == 2:
        return _addr6_side(bp, bn, l3 + 24, end, kp, kn, ci)
    r = _addr6_side(bp, bn, l3 + 8, end, kp, kn, ci)
    if r < 0 or dr == 1:
        return r
    if dr == 3 and r == 1:
        return 1
    if dr == 4 and r == 0:
        return 0
    return _addr6_side(bp, bn, l3 + 24, end, kp, kn, ci)


@njit(cache=True, nogil=True)
def test_vlan(bp, bn, base, end, eoff, vid):
    eo = base + eoff
    if eo + 2 > end:
        return -1
    et = _be(bp, bn, eo, 2)
    if et != 0x8100 and et != 0x88A8 and et != 0x9100:
        return 0
    if vid < 0:
        return 1
    l3 = eo + 2
    if l3 + 2 > end:
        return -1
    return 1 if (_be(bp, bn, l3, 2) & 0xFFF) == vid else 0


@njit(cache=True, nogil=True, inline="always")
def _leaf(op, cp, cn, row, kp, kn, bp, bn, base, end, wirelen, poff, plen):
    """Evaluate the test ``op`` at ``cp[row:row+WIDTH]`` (not CONTAINS): 1 true, 0 false, -1 a
    load ran past ``end``.  The column meanings are those of the OP_* table at the top."""
    eoff = _rd(cp, cn, row + 3)
    if op == 7:                                   # OP_CMP
        return test_cmp(bp, bn, base, end, wirelen, poff, plen, eoff,
                        _rd(cp, cn, row + 4), _rd(cp, cn, row + 5), _rd(cp, cn, row + 6),
                        _rd(cp, cn, row + 7), _rd(cp, cn, row + 8), _rd(cp, cn, row + 9),
                        _rd(cp, cn, row + 10), _rd(cp, cn, row + 11), _rd(cp, cn, row + 12),
                        _rd(cp, cn, row + 13), _rd(cp, cn, row + 14), _rd(cp, cn, row + 15))
    if op == 1:                                   # OP_ETHERTYPE
        return test_ethertype(bp, bn, base, end, eoff, _rd(cp, cn, row + 4))
    if op == 2:                                   # OP_IPPROTO
        return test_ipproto(bp, bn, base, end, eoff, _rd(cp, cn, row + 4), _rd(cp, cn, row + 5))
    if op == 3:                                   # OP_PORT
        return test_port(bp, bn, base, end, eoff, _rd(cp, cn, row + 4), _rd(cp, cn, row + 5),
                         _rd(cp, cn, row + 6), _rd(cp, cn, row + 7))
    if op == 4:                                   # OP_HOST4
        return test_host4(bp, bn, base, end, eoff, _rd(cp, cn, row + 4), _rd(cp, cn, row + 5),
                          _rd(cp, cn, row + 6), _rd(cp, cn, row + 7))
    if op == 5:                                   # OP_HOST6
        return test_host6(bp, bn, base, end, eoff, kp, kn, _rd(cp, cn, row + 4),
                          _rd(cp, cn, row + 5))
    if op == 6:                                   # OP_VLAN
        return test_vlan(bp, bn, base, end, eoff, _rd(cp, cn, row + 4))
    return -1                                     # unknown op: reject (programs are validated)


@njit(cache=True, nogil=True)
def _scan(bp, bn, start, stop, ap, an, gp, gn, need):
    """Aho-Corasick over buf[start:stop]: the set of contains-groups seen (stops once all are).
    ``ap``: the [states, 256] int32 table flattened; ``gp``: uint64 groups per state."""
    found = np.uint64(0)
    s = np.int64(0)
    for i in range(start, stop):
        s = _rd(ap, an, s * 256 + _rd(bp, bn, i))
        if _BOUNDSCHECK:
            if s < 0 or s >= gn:
                raise IndexError("parsers.filters: read outside the array")
        found |= gp[s]
        if (found & need) == need:
            break
    return found


@njit(cache=True, nogil=True)
def _match_p(bp, bn, base, caplen, wirelen, poff, plen, cp, cn, kp, kn, ap, an, gp, gn):
    """The matcher over pointers: frame ``bp[base:base+caplen]`` (``bn`` bytes in the array),
    record payload ``poff``/``plen`` (relative to ``base``), program ``cp`` (``cn`` int64s)."""
    if base < 0 or base > bn:
        base = 0
        caplen = 0
    if caplen < 0:
        caplen = 0
    end = base + caplen
    if end > bn:                                  # never read past the array
        end = bn
    pc = _rd(cp, cn, 1)                           # header row: entry
    if pc < 0:
        return pc == -1
    # the payload as parsed into the record, clamped to the capture (never trust lengths)
    if poff >= 0:
        poff += base
        if plen < 0:
            plen = 0
        if poff + plen > end:
            plen = end - poff if end > poff else 0
    scanned = False
    found = np.uint64(0)
    while pc > 0:
        row = pc * 16                             # WIDTH
        op = _rd(cp, cn, row)
        if op == 8:                               # OP_CONTAINS: scan once, on first need
            if not scanned:
                scanned = True
                if poff >= 0 and plen > 0:
                    found = _scan(bp, bn, poff, poff + plen, ap, an, gp, gn,
                                  np.uint64(_rd(cp, cn, 2)))
            r = 1 if (found >> np.uint64(_rd(cp, cn, row + 4))) & np.uint64(1) else 0
        else:
            r = _leaf(op, cp, cn, row, kp, kn, bp, bn, base, end, wirelen, poff, plen)
            if r < 0:                             # BPF: a load out of bounds rejects
                return False
        # a branch, not "row + 2 - r": predicted, it lets the next test start early
        pc = _rd(cp, cn, row + 1) if r == 1 else _rd(cp, cn, row + 2)
    return pc == -1


@njit(cache=True, nogil=True)
def match(rec, buf, base, caplen, wirelen, prog):
    """Does the frame ``buf[base:base+caplen]`` (wire length ``wirelen``, parsed into ``rec``)
    pass the filter ``prog`` (``Filter.prog``)?  No allocation; never reads outside ``buf``."""
    code, consts, ac_next, ac_out = prog
    return _match_p(_data(buf), buf.size, np.int64(base), np.int64(caplen), np.int64(wirelen),
                    np.int64(rec.payload_off), np.int64(rec.payload_len),
                    _data(code), code.size, _data(consts), consts.size,
                    _data(ac_next), ac_next.size, _data(ac_out), ac_out.size)


@njit(cache=True, nogil=True)
def match_burst(recs, buf, bases, caplens, wirelens, count, prog, verdict):
    """Filter ``count`` frames (frame i at ``buf[bases[i]:bases[i]+caplens[i]]``, record
    ``recs[i]``): ``verdict[i]`` = 1 or 0; returns how many matched.  ``count`` is clamped to
    the shortest array.  No allocation."""
    code, consts, ac_next, ac_out = prog
    m = min(count, recs.shape[0], bases.shape[0], caplens.shape[0], wirelens.shape[0],
            verdict.shape[0])
    bp = _data(buf)
    cp, kp, ap, gp = _data(code), _data(consts), _data(ac_next), _data(ac_out)
    hits = 0
    for i in range(m):
        rec = recs[i]
        ok = _match_p(bp, buf.size, np.int64(bases[i]), np.int64(caplens[i]),
                      np.int64(wirelens[i]), np.int64(rec.payload_off),
                      np.int64(rec.payload_len), cp, code.size, kp, consts.size, ap,
                      ac_next.size, gp, ac_out.size)
        verdict[i] = 1 if ok else 0
        hits += 1 if ok else 0
    return hits


# The ring burst verb gets its own copy of the matcher inlined into its loop (a per-frame call
# with 15 arguments cost ~4 ns here); the other entry points share the out-of-line one, which
# keeps their cold compile at a fraction of a second.
_match_p_inline = njit(cache=True, nogil=True, inline="always")(_match_p.py_func)

SLOT_HEADER_BYTES = 32   # shm.layout.SLOT_HEADER_BYTES (checked by the tests)
SLOT_WIRE_LEN = 16       # u32 little-endian in the slot header
SLOT_CAP_LEN = 20


@njit(cache=True, nogil=True)
def _u32le(p, n, i):
    return (_rd(p, n, i) | (_rd(p, n, i + 1) << 8) | (_rd(p, n, i + 2) << 16)
            | (_rd(p, n, i + 3) << 24))


@njit(cache=True, nogil=True)
def match_slots(slot_bytes, stride, slot_size, first, count, capacity, recs, prog, verdict):
    """Filter ``count`` ring slots, addressed as ``parsers.l2l4.parse_slots`` does (slot i of the
    burst is ``(first + i) & (capacity - 1)``, or ``first + i`` when ``capacity`` is 0);
    ``recs[i]`` must hold slot i's parsed record.  ``verdict[i]`` = 1/0; returns the number
    matched.  ``cap_len`` is clamped to ``slot_size``; bad geometry filters nothing (returns 0,
    verdicts untouched).  Single consumer of ``verdict``; no allocation."""
    code, consts, ac_next, ac_out = prog
    count, mask = slot_window(slot_bytes.shape[0], stride, slot_size, first,
                              min(count, recs.shape[0], verdict.shape[0]), capacity)
    bp = _data(slot_bytes)
    bn = slot_bytes.size
    cp, kp, ap, gp = _data(code), _data(consts), _data(ac_next), _data(ac_out)
    hits = 0
    for i in range(count):
        sb = ((first + i) & mask) * stride
        cl = _u32le(bp, bn, sb + SLOT_CAP_LEN)
        if cl > slot_size:
            cl = slot_size
        wl = _u32le(bp, bn, sb + SLOT_WIRE_LEN)
        rec = recs[i]
        ok = _match_p_inline(bp, bn, sb + SLOT_HEADER_BYTES, cl, wl, np.int64(rec.payload_off),
                      np.int64(rec.payload_len), cp, code.size, kp, consts.size, ap,
                      ac_next.size, gp, ac_out.size)
        verdict[i] = 1 if ok else 0
        hits += 1 if ok else 0
    return hits
