"""Filter pushdown: the part of a ``parsers.filters`` AST that the XDP program can evaluate,
as rules in its maps (``xdp_filter.bpf.c``), and the split between kernel and user space.

    pd = plan(compile_pcap_filter("udp and dst port 5000 or icmp").node)
    pd.rules      # [Rule(fam=ip4|ip6, proto=17, dport=(5000, 5000)), Rule(fam=ip4, proto=1)]
    pd.exact      # True: the kernel selects exactly what the filter selects
    pd.report()   # {"kernel": [...primitives...], "user_space": [...], "rules": [...], ...}

What the kernel evaluates (each primitive with libpcap's semantics, ``parsers/filters.py``):
``ip``/``ip6``/``arp``/``rarp`` (EtherType), ``proto N``/``tcp``/``udp``/``icmp``/... (IpProto;
IPv6 also behind one fragment header), ``[src|dst] host|net`` for IPv4 (IP and ARP/RARP
addresses, contiguous masks) and IPv6 (Host4/Host6), ``[src|dst] port|portrange`` with their
tcp/udp/sctp qualifier (Port) -- all without a VLAN tag in front (``d == 0``).

An ethertype other than those four narrows the kernel's rule to "any other ethertype"
(user space checks which).  Everything else -- ``vlan``, byte comparisons (``tcp[13] & 2 != 0``, ``len``), ``payload
contains``, non-contiguous masks, and ``not`` of anything -- is replaced by "true" in the
kernel's copy of the expression.  That copy therefore selects a superset of the filter's frames
(it is an over-approximation: replacing a sub-expression under ``and``/``or`` by true can only
add frames), and the producer runs the full filter on what the kernel redirected (the
user-space half).  When nothing was replaced, ``exact`` is true and user space does not
re-check.  (One difference remains on malformed frames: libpcap rejects a frame outright when
ANY load the program reaches runs past its end, the kernel only drops the rules that needed
that load.  With ``exact`` the producer does not look; ``verify=True`` makes it.)

The kernel's copy goes to disjunctive normal form: an OR of at most ``MAX_RULES`` (64) rules,
each an AND of at most one constraint per class (family set, IP protocol, IPv4/IPv6 source,
destination and either-direction CIDR, source/destination/either port range, transport
protocols carrying the ports).  Two constraints of one class in a term are intersected (nested
prefixes keep the longer, ranges overlap, different protocols make the term false); two
either-direction constraints are split into src/dst alternatives (``host A and host B`` is
``(src A or dst A) and (src B or dst B)``).  More than 64 rules: the kernel selects everything
(one empty rule) and user space filters, reported as such.
"""
from __future__ import annotations

import ipaddress
import itertools
import mmap
from dataclasses import dataclass, field, replace

import numpy as np

from parsers import filters as F

MAX_RULES = 64
MAX_TERMS = 4096           # DNF products larger than this are not expanded (match-all instead)

FAM_IP4, FAM_IP6, FAM_ARP, FAM_RARP, FAM_OTHER = 0, 1, 2, 3, 4
N_FAM = 5
FAM_ALL = (1 << N_FAM) - 1
FAM_NAMES = ("ip4", "ip6", "arp", "rarp", "other")
_ETHERTYPE_FAM = {F.ETH_IP: FAM_IP4, F.ETH_IP6: FAM_IP6, F.ETH_ARP: FAM_ARP,
                  F.ETH_RARP: FAM_RARP}
# transport classes (hr_pp index): filters' PP_* bit -> class
PPC_OF_BIT = ((F.PP_TCP, 1), (F.PP_UDP, 2), (F.PP_SCTP, 3))

# counter slots (hr_counters) after 2 * MAX_RULES rule hits
CNT_PASS, CNT_REDIRECT, CNT_NO_SOCKET = 2 * MAX_RULES, 2 * MAX_RULES + 1, 2 * MAX_RULES + 2
N_COUNTERS = 2 * MAX_RULES + 4

GEN_DTYPE = np.dtype([("rules", "<u8"), ("fam", "<u8", (N_FAM,)), ("need_proto", "<u8"),
                      ("need_src4", "<u8"), ("need_dst4", "<u8"), ("need_any4", "<u8"),
                      ("need_src6", "<u8"), ("need_dst6", "<u8"), ("need_any6", "<u8"),
                      ("need_sport", "<u8"), ("need_dport", "<u8"), ("need_aport", "<u8"),
                      ("pad", "<u8", (2,))])
CONF_DTYPE = np.dtype([("gen", "<u4"), ("version", "<u4"), ("pad", "<u8", (7,)),
                       ("g", GEN_DTYPE, (2,))])
assert GEN_DTYPE.itemsize == 144 and CONF_DTYPE.itemsize == 352   # struct hr_gen / hr_conf


# --- rules ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    """One conjunction the kernel evaluates.  None: no constraint in that class."""
    fam: int = FAM_ALL
    proto: int | None = None
    src4: tuple | None = None      # (address int, prefix length)
    dst4: tuple | None = None
    any4: tuple | None = None
    src6: tuple | None = None      # (address int, prefix length)
    dst6: tuple | None = None
    any6: tuple | None = None
    sport: tuple | None = None     # (lo, hi)
    dport: tuple | None = None
    aport: tuple | None = None
    pp: int = F.PP_ALL             # transports whose ports the port constraints read

    @property
    def has_ports(self) -> bool:
        return self.sport is not None or self.dport is not None or self.aport is not None

    def __str__(self):
        parts = []
        if self.fam != FAM_ALL:
            parts.append("|".join(n for i, n in enumerate(FAM_NAMES) if self.fam >> i & 1))
        if self.proto is not None:
            parts.append(f"proto {self.proto}")
        for name, v, ver in (("src", self.src4, 4), ("dst", self.dst4, 4),
                             ("src or dst", self.any4, 4), ("src", self.src6, 6),
                             ("dst", self.dst6, 6), ("src or dst", self.any6, 6)):
            if v is not None:
                net = ipaddress.ip_network((v[0], v[1])) if ver == 4 else \
                    ipaddress.IPv6Network((v[0], v[1]))
                parts.append(f"{name} net {net}")
        if self.has_ports and self.pp != F.PP_ALL:
            parts.append("/".join(n for b, n in ((F.PP_TCP, "tcp"), (F.PP_UDP, "udp"),
                                                 (F.PP_SCTP, "sctp")) if self.pp & b))
        for name, v in (("src", self.sport), ("dst", self.dport), ("src or dst", self.aport)):
            if v is not None:
                parts.append(f"{name} port {v[0]}" if v[0] == v[1] else
                             f"{name} portrange {v[0]}-{v[1]}")
        return " and ".join(parts) if parts else "any frame"


def _meet_prefix(a, b, bits):
    """Intersection of two prefixes (addr, len): the longer if nested, None if disjoint."""
    if a is None:
        return b, True
    if b is None:
        return a, True
    short = min(a[1], b[1])
    shift = bits - short
    if (a[0] >> shift if short else 0) != (b[0] >> shift if short else 0):
        return None, False
    return (a if a[1] >= b[1] else b), True


def _meet_range(a, b):
    if a is None:
        return b, True
    if b is None:
        return a, True
    lo, hi = max(a[0], b[0]), min(a[1], b[1])
    return ((lo, hi), True) if lo <= hi else (None, False)


def _prefix_len(mask: int, bits: int) -> int | None:
    """Length of a contiguous mask, None if it is not one."""
    plen = bin(mask).count("1")
    full = (1 << bits) - 1
    return plen if mask == (full ^ (full >> plen)) else None


# --- AST -> kernel-evaluable expression ----------------------------------------------------------
@dataclass
class Pushdown:
    """The result of ``plan``: the kernel's rules and the split."""
    rules: list
    exact: bool
    kernel: list = field(default_factory=list)       # primitives the kernel evaluates
    user_space: list = field(default_factory=list)   # primitives left to user space only
    notes: list = field(default_factory=list)

    def report(self) -> dict:
        return {"exact": self.exact, "rules": [str(r) for r in self.rules],
                "kernel": self.kernel, "user_space": self.user_space, "notes": self.notes}


class _Plan:
    def __init__(self):
        self.kernel: list[str] = []
        self.user: list[str] = []
        self.notes: list[str] = []
        self.exact = True

    def approx(self, what: str, why: str) -> F.Node:
        self.exact = False
        self.user.append(f"{what} ({why})")
        return F.Const(True)

    def relax(self, n: F.Node) -> F.Node:
        """The kernel's copy: unpushable sub-expressions replaced by true."""
        if isinstance(n, F.Const):
            return n
        if isinstance(n, F.And):
            return F.and_(*(self.relax(i) for i in n.items))
        if isinstance(n, F.Or):
            return F.or_(*(self.relax(i) for i in n.items))
        if isinstance(n, F.Not):
            return self.approx(str(n), "negation")
        if getattr(n, "d", 0):
            return self.approx(str(n), "behind a VLAN tag")
        if isinstance(n, F.EtherType):
            if n.value in _ETHERTYPE_FAM:
                self.kernel.append(str(n))
            else:                      # the kernel narrows to "other ethertypes" only
                self.exact = False
                self.kernel.append(f"{n} (as: any ethertype but ip/ip6/arp/rarp)")
                self.user.append(f"{n} (the exact ethertype)")
            return n
        if isinstance(n, F.IpProto):
            if n.flags & F.IPP_V6:
                self.approx(str(n), "IPv6 without the fragment header: kernel checks a "
                                    "superset")
                return F.IpProto(0, n.proto, (n.flags & ~F.IPP_V6) | F.IPP_V6F)
            self.kernel.append(str(n))
            return n
        if isinstance(n, F.Port):
            self.kernel.append(str(n))
            return n
        if isinstance(n, F.Host4):
            if _prefix_len(n.mask, 32) is None or n.addr & ~n.mask & F.U32:
                return self.approx(str(n), "not a CIDR prefix")
            self.kernel.append(str(n))
            return n
        if isinstance(n, F.Host6):
            m = int.from_bytes(n.mask, "big")
            if _prefix_len(m, 128) is None or int.from_bytes(n.addr, "big") & ~m:
                return self.approx(str(n), "not a CIDR prefix")
            self.kernel.append(str(n))
            return n
        kind = {F.Vlan: "VLAN", F.Cmp: "byte comparison", F.Contains: "payload search"}
        return self.approx(str(n), kind.get(type(n), type(n).__name__))


def _dnf(n: F.Node):
    """Terms (tuples of leaves) whose OR is ``n``; None when the expansion grows too large."""
    if isinstance(n, F.Const):
        return [()] if n.value else []
    if isinstance(n, F.Or):
        out = []
        for i in n.items:
            t = _dnf(i)
            if t is None:
                return None
            out.extend(t)
            if len(out) > MAX_TERMS:
                return None
        return out
    if isinstance(n, F.And):
        acc = [()]
        for i in n.items:
            t = _dnf(i)
            if t is None:
                return None
            acc = [a + b for a, b in itertools.product(acc, t)]
            if len(acc) > MAX_TERMS:
                return None
        return acc
    return [(n,)]


def _apply(rule: Rule, leaf) -> list:
    """``rule and leaf`` as a list of rules (empty: contradiction; two: a split)."""
    if isinstance(leaf, F.EtherType):
        fam = rule.fam & (1 << _ETHERTYPE_FAM.get(leaf.value, FAM_OTHER))
        return [replace(rule, fam=fam)] if fam else []
    if isinstance(leaf, F.IpProto):
        fam = rule.fam & (((1 << FAM_IP4) if leaf.flags & F.IPP_V4 else 0)
                          | ((1 << FAM_IP6) if leaf.flags & (F.IPP_V6F | F.IPP_V6) else 0))
        if not fam or (rule.proto is not None and rule.proto != leaf.proto):
            return []
        return [replace(rule, fam=fam, proto=leaf.proto)]
    if isinstance(leaf, F.Port):
        fam = rule.fam & ((1 << FAM_IP4) | (1 << FAM_IP6))
        pp = rule.pp & leaf.protos
        if not fam or not pp:
            return []
        r = replace(rule, fam=fam, pp=pp)
        rng = (leaf.lo, leaf.hi)
        return _constrain(r, leaf.dir, rng, "sport", "dport", "aport", _meet_range)
    if isinstance(leaf, F.Host4):
        fam = rule.fam & (((1 << FAM_IP4) if leaf.kinds & F.HK_IP else 0)
                          | ((1 << FAM_ARP) if leaf.kinds & F.HK_ARP else 0)
                          | ((1 << FAM_RARP) if leaf.kinds & F.HK_RARP else 0))
        if not fam:
            return []
        pfx = (leaf.addr, _prefix_len(leaf.mask, 32))
        return _constrain(replace(rule, fam=fam), leaf.dir, pfx, "src4", "dst4", "any4",
                          lambda a, b: _meet_prefix(a, b, 32))
    if isinstance(leaf, F.Host6):
        fam = rule.fam & (1 << FAM_IP6)
        if not fam:
            return []
        m = int.from_bytes(leaf.mask, "big")
        pfx = (int.from_bytes(leaf.addr, "big"), _prefix_len(m, 128))
        return _constrain(replace(rule, fam=fam), leaf.dir, pfx, "src6", "dst6", "any6",
                          lambda a, b: _meet_prefix(a, b, 128))
    raise AssertionError(f"not a pushable leaf: {leaf!r}")


def _constrain(rule, dir_, value, src, dst, any_, meet) -> list:
    def one(r, name):
        v, ok = meet(getattr(r, name), value)
        return [replace(r, **{name: v})] if ok else []
    if dir_ == F.D_SRC:
        return one(rule, src)
    if dir_ == F.D_DST:
        return one(rule, dst)
    if dir_ == F.D_AND:
        return [r2 for r1 in one(rule, src) for r2 in one(r1, dst)]
    # either direction: one slot per rule; a second, different one splits into src / dst
    cur = getattr(rule, any_)
    if cur is None or cur == value:
        return [replace(rule, **{any_: value})]
    return one(rule, src) + one(rule, dst)


def plan(node: F.Node | None) -> Pushdown:
    """Split a filter AST (None: no filter, every frame) into kernel rules and the rest."""
    if node is None:
        return Pushdown([Rule()], True, [], [], ["no filter: every frame goes to the socket"])
    p = _Plan()
    relaxed = F.simplify(p.relax(F.simplify(node)))
    terms = _dnf(relaxed)
    rules: list[Rule] = []
    if terms is None:
        p.exact = False
        p.notes.append(f"the expression expands to more than {MAX_TERMS} alternatives: the "
                       "kernel selects every frame, user space filters")
        rules = [Rule()]
    else:
        for t in terms:
            rs = [Rule()]
            for leaf in t:
                rs = [r2 for r in rs for r2 in _apply(r, leaf)]
                if not rs:
                    break
            rules.extend(rs)
        rules = list(dict.fromkeys(rules))           # duplicates out, order kept
        if any(r == Rule() for r in rules):
            rules = [Rule()]
        if len(rules) > MAX_RULES:
            p.exact = False
            p.notes.append(f"{len(rules)} rules are more than the program's {MAX_RULES}: the "
                           "kernel selects every frame, user space filters")
            rules = [Rule()]
    if not rules:
        p.notes.append("the filter can never match: the kernel redirects nothing")
    return Pushdown(rules, p.exact, list(dict.fromkeys(p.kernel)),
                    list(dict.fromkeys(p.user)), p.notes)


# --- tables ---------------------------------------------------------------------------------
@dataclass
class Tables:
    """One generation's map contents, built from rules (``build``)."""
    gen: np.ndarray                  # GEN_DTYPE scalar record
    proto: np.ndarray                # u64[256]
    pp: np.ndarray                   # u64[4]
    sport: np.ndarray                # u64[65536]
    dport: np.ndarray
    aport: np.ndarray
    lpm: dict                        # map name -> [(prefix int, plen, bits)]


def _bit(i: int) -> np.uint64:
    return np.uint64(1) << np.uint64(i)


def build(rules: list) -> Tables:
    if len(rules) > MAX_RULES:
        raise ValueError(f"at most {MAX_RULES} rules")
    g = np.zeros((), dtype=GEN_DTYPE)
    proto = np.zeros(256, np.uint64)
    pp = np.zeros(4, np.uint64)
    ports = {k: np.zeros(65536, np.uint64) for k in ("sport", "dport", "aport")}
    lpm_rules: dict[str, list] = {k: [] for k in ("src4", "dst4", "any4", "src6", "dst6", "any6")}
    for i, r in enumerate(rules):
        b = _bit(i)
        g["rules"] |= b
        for f in range(N_FAM):
            if r.fam >> f & 1:
                g["fam"][f] |= b
        if r.proto is not None:
            g["need_proto"] |= b
            proto[r.proto] |= b
        for k in lpm_rules:
            v = getattr(r, k)
            if v is not None:
                g[f"need_{k}"] |= b
                lpm_rules[k].append((v[0], v[1], i))
        if r.has_ports:
            for bit, cls in PPC_OF_BIT:
                if r.pp & bit:
                    pp[cls] |= b
            for k in ports:
                v = getattr(r, k)
                if v is not None:
                    g[f"need_{k}"] |= b
                    ports[k][v[0]:v[1] + 1] |= b
    lpm = {}
    for k, entries in lpm_rules.items():
        bits = 32 if k.endswith("4") else 128
        out = []
        for addr, plen, _ in {(a, p, 0) for a, p, _ in entries}:
            v = np.uint64(0)
            for a2, p2, i2 in entries:      # every rule prefix that contains this one
                if p2 <= plen and (p2 == 0 or (a2 >> (bits - p2)) == (addr >> (bits - p2))):
                    v |= _bit(i2)
            out.append((addr, plen, v))
        lpm[f"hr_{k}"] = sorted(out)
    return Tables(g, proto, pp, ports["sport"], ports["dport"], ports["aport"], lpm)


def lpm_key(name: str, gen: int, addr: int, plen: int) -> bytes:
    """``struct lpm4_key`` / ``lpm6_key`` bytes: prefixlen (8 generation bits + plen), data."""
    if name.endswith("4"):
        data = bytes([gen]) + addr.to_bytes(4, "big") + bytes(3)
    else:
        data = bytes([gen]) + addr.to_bytes(16, "big") + bytes(3)
    return (8 + plen).to_bytes(4, "little") + data


class RuleMaps:
    """The program's maps, written generation by generation.  ``install(rules)`` writes the
    inactive generation and flips to it; counters of that generation are zeroed first.

    Array maps are ``BPF_F_MMAPABLE`` and written through an mmap (a port table is 64 Ki
    entries: one store each instead of one system call each); LPM tries and per-CPU counters
    through libbpf.  The flip is one aligned 32-bit store into the mmapped ``hr_conf``; on
    x86-64 (TSO) the table stores before it are visible to the kernel before it, and the LPM
    updates are system calls that completed earlier."""

    ARRAYS = {"hr_conf": CONF_DTYPE.itemsize, "hr_proto": 2 * 256 * 8, "hr_pp": 2 * 4 * 8,
              "hr_sport": 2 * 65536 * 8, "hr_dport": 2 * 65536 * 8, "hr_aport": 2 * 65536 * 8}
    LPMS = ("hr_src4", "hr_dst4", "hr_any4", "hr_src6", "hr_dst6", "hr_any6")

    def __init__(self, lib, map_fd):
        """``map_fd(name) -> fd`` for every map of the program."""
        import ctypes
        self._ct = ctypes
        self.lib = lib
        self.fds = {n: map_fd(n) for n in (*self.ARRAYS, *self.LPMS, "hr_counters")}
        self._maps = {}
        self.views = {}
        for name, size in self.ARRAYS.items():
            m = mmap.mmap(self.fds[name], (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
                          * mmap.PAGESIZE, flags=mmap.MAP_SHARED,
                          prot=mmap.PROT_READ | mmap.PROT_WRITE)
            self._maps[name] = m
        self.conf = np.frombuffer(self._maps["hr_conf"], dtype=CONF_DTYPE, count=1)
        for name in ("hr_proto", "hr_pp", "hr_sport", "hr_dport", "hr_aport"):
            self.views[name] = np.frombuffer(self._maps[name], dtype=np.uint64,
                                             count=self.ARRAYS[name] // 8).reshape(2, -1)
        self.rules: list = []

    @property
    def active(self) -> int:
        return int(self.conf["gen"][0]) & 1

    @property
    def version(self) -> int:
        return int(self.conf["version"][0])

    def _update(self, fd, key: bytes, value: bytes) -> None:
        k = self._ct.create_string_buffer(key, len(key))
        v = self._ct.create_string_buffer(value, len(value))
        r = self.lib.bpf.bpf_map_update_elem(fd, k, v, 0)
        if r < 0:
            raise OSError(-r, f"bpf_map_update_elem: {__import__('os').strerror(-r)}")

    def _clear_lpm(self, name: str, gen: int) -> None:
        """Delete every key of generation ``gen`` from an LPM map (walked with get_next_key;
        the map holds at most 4 * MAX_RULES entries)."""
        size = 12 if name.endswith("4") else 24
        fd = self.fds[name]
        cur = None
        doomed = []
        for _ in range(8 * MAX_RULES + 8):
            nxt = self._ct.create_string_buffer(size)
            if self.lib.bpf.bpf_map_get_next_key(fd, cur, nxt) < 0:
                break
            if nxt.raw[4] == gen:
                doomed.append(nxt.raw)
            cur = nxt
        for key in doomed:
            self.lib.bpf.bpf_map_delete_elem(fd, self._ct.create_string_buffer(key, size))

    def install(self, rules: list) -> int:
        """Write ``rules`` into the inactive generation and make it the active one; returns the
        new generation.  Frames in flight are evaluated entirely by the old or the new rules."""
        t = build(rules)
        new = 1 - self.active
        # 1. the inactive generation's LPM entries out (whoever wrote them: the program may be
        #    shared with another process), the new ones in
        for name in self.LPMS:
            self._clear_lpm(name, new)
        for name, entries in t.lpm.items():
            for addr, plen, bits in entries:
                key = lpm_key(name, new, addr, plen)
                self._update(self.fds[name], key, int(bits).to_bytes(8, "little"))
        # 2. arrays of the inactive generation
        self.views["hr_proto"][new] = t.proto
        self.views["hr_pp"][new] = t.pp
        self.views["hr_sport"][new] = t.sport
        self.views["hr_dport"][new] = t.dport
        self.views["hr_aport"][new] = t.aport
        self.conf["g"][0, new] = t.gen
        # 3. its hit counters from zero (per CPU: one value per possible CPU)
        zeros = bytes(8 * self.lib.ncpus)
        for i in range(MAX_RULES):
            self._update(self.fds["hr_counters"], (new * MAX_RULES + i).to_bytes(4, "little"),
                         zeros)
        # 4. the flip (one aligned 32-bit store; see the class docstring)
        self.conf["version"][0] += 1
        self.conf["gen"][0] = new
        self.rules = list(rules)
        return new

    def counters(self) -> dict:
        """Summed over CPUs: ``rules`` [(rule text, hits)] of the active generation (each frame
        counts for the FIRST rule that matched), ``passed`` (to the stack), ``redirected``,
        ``no_socket`` (selected, but the queue had no socket: passed)."""
        n = self.lib.ncpus
        buf = (self._ct.c_uint64 * n)()

        def read(slot):
            k = self._ct.c_uint32(slot)
            if self.lib.bpf.bpf_map_lookup_elem(self.fds["hr_counters"], self._ct.byref(k),
                                                buf) < 0:
                return 0
            return int(sum(buf))
        g = self.active
        return {"rules": [(str(r), read(g * MAX_RULES + i)) for i, r in enumerate(self.rules)],
                "passed": read(CNT_PASS), "redirected": read(CNT_REDIRECT),
                "no_socket": read(CNT_NO_SOCKET)}

    def close(self) -> None:
        self.views.clear()
        self.conf = None
        for m in self._maps.values():
            try:
                m.close()
            except BufferError:
                pass
        self._maps.clear()
