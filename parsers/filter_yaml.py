"""The YAML front end: filter rules under a ``filters:`` key, validated at the edge, compiled to
the same AST (and the same ``@njit`` matcher) as the pcap-filter text.

::

    filters:                          # a packet passes if ANY rule matches (empty/absent: all)
      - {proto: udp, dst_port: 12345, src_net: 10.0.0.0/16}
      - {vlan: 100}
      - {pattern: {layer: udp, offset: 8, bytes: "12 34", mask: "ff ff"}}
      - {contains: ["ABC", "DEF"]}
      - {not: {proto: icmp}}
      - {any: [{dst_port: 53}, {dst_port: 5353}]}
      - {all: [{proto: tcp}, {expr: "tcp[tcpflags] & tcp-syn != 0"}]}
      - "ip6 and not icmp6"           # a bare string is an ``expr``

Why any-of: each list item reads as one "accept" rule, the way an allow-list is written (and
the way several XDP map entries combine).  Use ``all:`` for a conjunction.

A rule is a mapping; its keys are AND-ed.  Each key means exactly the pcap-filter primitive in
the table, so a rule and its text form select the same packets (libpcap's semantics, see
``parsers.filters``).  A list value means "any of" (except ``vlan``, where it is the tag stack).

==============  ======================================  ==========================================
key             value                                   same as
==============  ======================================  ==========================================
vlan            id 0..4095, ``any``/true, or a list     ``vlan ID`` (``vlan 100 and vlan 200``);
                (outer tag first)                       applied first: the rule's other keys and
                                                        nested rules look inside the tag(s)
proto           ip ip6 arp rarp tcp udp sctp icmp       ``udp`` ...; a number N: ``proto N``
                icmp6 igmp, or 0..255                   (IPv4 protocol / IPv6 next header)
host            IPv4 or IPv6 address                    ``host A`` (IPv4: also ARP/RARP, as libpcap)
src_host        "                                       ``src host A``
dst_host        "                                       ``dst host A``
net             CIDR (``10.0.0.0/16``, ``fe80::/10``)   ``net N``; host bits set is an error
src_net         "                                       ``src net N``
dst_net         "                                       ``dst net N``
port            0..65535 or "lo-hi"                     ``port P`` / ``portrange lo-hi`` (TCP,
                                                        UDP and SCTP, as libpcap)
src_port        "                                       ``src port P``
dst_port        "                                       ``dst port P``
pattern         {layer, offset, bytes, mask}            ``layer[offset:n] & mask = bytes`` for
                                                        any length (4/2/1-byte chunks); layer:
                                                        ether ip ip6 arp rarp tcp udp sctp icmp
                                                        igmp icmp6 or payload (the parsed L4
                                                        payload, any VLAN depth, IPv6 too);
                                                        bytes/mask: hex ("12 34", "12:34") or
                                                        a list of 0..255
contains        string, {hex: "0a0b"}, or a list        ``payload contains "..."`` (any of; one
                                                        Aho-Corasick group); strings are UTF-8
min_len         0..65535                                ``greater N`` (wire length >= N)
max_len         0..65535                                ``less N`` (wire length <= N)
expr            pcap-filter text                        itself (starts at the rule's VLAN depth)
not             a rule                                  ``not (rule)``
any             list of rules                           ``(r1 or r2 ...)``
all             list of rules                           ``(r1 and r2 ...)``
==============  ======================================  ==========================================

One deliberate difference from the text: in pcap-filter a ``vlan`` shifts *everything after it
in the expression*, across ``or`` too (``vlan 1 or arp`` looks for ARP inside a tag); a rule's
``vlan`` shifts only that rule and the rules nested in it, so ``[{vlan: 1}, {proto: arp}]``
accepts untagged ARP.

Errors name the key path: ``filters[2].dst_port: 70000 is not a port (0..65535)``.
"""
from __future__ import annotations

import difflib
import ipaddress
import re
from pathlib import Path

import yaml

from . import filters as F
from .filters import FilterConfigError, FilterSyntaxError

KEYS = ("vlan", "proto", "host", "src_host", "dst_host", "net", "src_net", "dst_net", "port",
        "src_port", "dst_port", "pattern", "contains", "min_len", "max_len", "expr", "not",
        "any", "all")          # also the order in which a rule's keys are AND-ed
_DIRS = {"": F.D_OR, "src_": F.D_SRC, "dst_": F.D_DST}
_PROTOS = tuple(F.PROTO_ABBREV)
_PATTERN_KEYS = ("layer", "offset", "bytes", "mask")


def _fail(path: str, msg: str):
    raise FilterConfigError(path, msg)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int(v, path: str, lo: int, hi: int, what: str) -> int:
    if isinstance(v, str) and re.fullmatch(r"[0-9]+", v.strip()):
        v = int(v)
    if not _is_int(v) or not lo <= v <= hi:
        _fail(path, f"{v!r} is not {what} ({lo}..{hi})")
    return v


def _any_of(v, path: str, one):
    """A scalar, or a non-empty list of them (any of)."""
    if isinstance(v, list):
        if not v:
            _fail(path, "an empty list matches nothing; remove the key or give values")
        return F.or_(*(one(x, f"{path}[{i}]") for i, x in enumerate(v)))
    return one(v, path)


def _hex_bytes(v, path: str) -> bytes:
    if isinstance(v, list):
        return bytes(_int(x, f"{path}[{i}]", 0, 255, "a byte") for i, x in enumerate(v))
    if _is_int(v):
        _fail(path, f"{v!r}: give bytes as a hex string (\"12 34\") or a list of 0..255")
    if not isinstance(v, str):
        _fail(path, f"{v!r} is not hex bytes (e.g. \"12 34\")")
    s = re.sub(r"[\s:]", "", v)
    if s.lower().startswith("0x"):
        s = s[2:]
    if not s or len(s) % 2 or not re.fullmatch(r"[0-9A-Fa-f]+", s):
        _fail(path, f"{v!r} is not hex bytes (e.g. \"12 34\")")
    return bytes.fromhex(s)


class _Builder:
    def rule(self, r, path: str, d: int) -> F.Node:
        if isinstance(r, str):
            return self.expr(r, path, d)
        if not isinstance(r, dict):
            _fail(path, f"a rule is a mapping of keys ({', '.join(KEYS)}) or a pcap-filter "
                        f"string, not {type(r).__name__}")
        if not r:
            _fail(path, "an empty rule; give at least one key")
        for k in r:
            if k not in KEYS:
                near = difflib.get_close_matches(str(k), KEYS, n=1)
                hint = f" (did you mean '{near[0]}'?)" if near else ""
                _fail(f"{path}.{k}", f"unknown key{hint}; known keys: {', '.join(KEYS)}")
        parts = []
        if "vlan" in r:                       # first: the rest of the rule looks inside it
            node, d = self.vlan(r["vlan"], f"{path}.vlan", d)
            parts.append(node)
        for k in KEYS[1:]:
            if k in r:
                parts.append(getattr(self, "k_" + k)(r[k], f"{path}.{k}", d))
        return F.and_(*parts)

    # keys ------------------------------------------------------------------------------------------
    def vlan(self, v, path, d):
        tags = v if isinstance(v, list) else [v]
        if not tags:
            _fail(path, "an empty tag list; give an id, 'any', or [outer, inner]")
        nodes = []
        for i, t in enumerate(tags):
            p = f"{path}[{i}]" if isinstance(v, list) else path
            if t is True or t == "any":
                nodes.append(F.vlan(None, d))
            else:
                nodes.append(F.vlan(_int(t, p, 0, 4095, "a VLAN id"), d))
            d += 1
        return F.and_(*nodes), d

    def k_proto(self, v, path, d):
        def one(x, p):
            if isinstance(x, str) and x in _PROTOS:
                return F.proto_abbrev(x, d)
            if _is_int(x):
                return F.ip_proto(_int(x, p, 0, 255, "an IP protocol number"), None, d)
            _fail(p, f"{x!r} is not a protocol ({', '.join(_PROTOS)}, or 0..255)")
        return _any_of(v, path, one)

    def _host(self, v, path, d, dr):
        def one(x, p):
            if not isinstance(x, str):
                _fail(p, f"{x!r} is not an IP address")
            try:
                a = ipaddress.ip_address(x.strip())
            except ValueError:
                _fail(p, f"{x!r} is not an IP address (use net/src_net/dst_net for a CIDR)")
            if a.version == 4:
                return F.host4(int(a), F.U32, dr, d)
            return F.host6(a.packed, b"\xff" * 16, dr, d)
        return _any_of(v, path, one)

    def _net(self, v, path, d, dr):
        def one(x, p):
            if not isinstance(x, str):
                _fail(p, f"{x!r} is not a network (e.g. 10.0.0.0/16)")
            try:
                n = ipaddress.ip_network(x.strip(), strict=True)
            except ValueError as e:
                _fail(p, f"{x!r} is not a network: {e}")
            if n.version == 4:
                return F.host4(int(n.network_address), int(n.netmask), dr, d)
            return F.host6(n.network_address.packed, n.netmask.packed, dr, d)
        return _any_of(v, path, one)

    def _port(self, v, path, d, dr):
        def one(x, p):
            if isinstance(x, str) and "-" in x:
                m = re.fullmatch(r"\s*([0-9]+)\s*-\s*([0-9]+)\s*", x)
                if not m:
                    _fail(p, f"{x!r} is not a port range (e.g. \"1000-2000\")")
                lo = _int(int(m.group(1)), p, 0, 65535, "a port")
                hi = _int(int(m.group(2)), p, 0, 65535, "a port")
                return F.port(lo, hi, dr, d)
            return F.port(_int(x, p, 0, 65535, "a port"), None, dr, d)
        return _any_of(v, path, one)

    def k_pattern(self, v, path, d):
        def one(x, p):
            if not isinstance(x, dict):
                _fail(p, "a pattern is a mapping {layer, offset, bytes, mask}")
            for k in x:
                if k not in _PATTERN_KEYS:
                    _fail(f"{p}.{k}", f"unknown key; known: {', '.join(_PATTERN_KEYS)}")
            for k in ("layer", "offset", "bytes"):
                if k not in x:
                    _fail(f"{p}.{k}", "missing")
            layer = x["layer"]
            if layer not in F.LOAD_LAYERS:
                _fail(f"{p}.layer", f"{layer!r} is not a layer ({', '.join(F.LOAD_LAYERS)})")
            off = _int(x["offset"], f"{p}.offset", 0, 65535, "an offset")
            data = _hex_bytes(x["bytes"], f"{p}.bytes")
            if not data:
                _fail(f"{p}.bytes", "empty")
            mask = None
            if "mask" in x:
                mask = _hex_bytes(x["mask"], f"{p}.mask")
                if len(mask) != len(data):
                    _fail(f"{p}.mask", f"{len(mask)} bytes, but bytes has {len(data)}")
            return F.bytes_at(layer, off, data, mask, d)
        return _any_of(v, path, one)

    def k_contains(self, v, path, d):
        items = v if isinstance(v, list) else [v]
        if not items:
            _fail(path, "an empty list matches nothing; remove the key or give strings")
        pats = []
        for i, x in enumerate(items):
            p = f"{path}[{i}]" if isinstance(v, list) else path
            if isinstance(x, dict):
                if set(x) != {"hex"}:
                    _fail(p, "give a string, or {hex: \"0a 0b\"} for raw bytes")
                b = _hex_bytes(x["hex"], f"{p}.hex")
            elif isinstance(x, str):
                b = x.encode("utf-8")
            else:
                _fail(p, f"{x!r} is not a string (give {{hex: ...}} for raw bytes)")
            if not b:
                _fail(p, "an empty pattern is in every payload; give at least one byte")
            pats.append(b)
        return F.contains(pats)

    def k_min_len(self, v, path, d):
        return F.length_cmp(F.R_GE, _int(v, path, 0, 65535, "a length"))

    def k_max_len(self, v, path, d):
        return F.length_cmp(F.R_LE, _int(v, path, 0, 65535, "a length"))

    def expr(self, v, path, d):
        if not isinstance(v, str):
            _fail(path, f"{v!r} is not a pcap-filter string")
        from .pcap_filter import parse
        try:
            return parse(v, vlan_depth=d)
        except FilterSyntaxError as e:
            raise FilterConfigError(path, str(e)) from None

    def k_expr(self, v, path, d):
        return self.expr(v, path, d)

    def k_not(self, v, path, d):
        return F.not_(self.rule(v, path, d))

    def _list(self, v, path):
        if not isinstance(v, list) or not v:
            _fail(path, "a non-empty list of rules")
        return v

    def k_any(self, v, path, d):
        return F.or_(*(self.rule(r, f"{path}[{i}]", d)
                       for i, r in enumerate(self._list(v, path))))

    def k_all(self, v, path, d):
        return F.and_(*(self.rule(r, f"{path}[{i}]", d)
                        for i, r in enumerate(self._list(v, path))))


for _dir, _code in _DIRS.items():
    setattr(_Builder, f"k_{_dir}host", lambda self, v, p, d, _c=_code: self._host(v, p, d, _c))
    setattr(_Builder, f"k_{_dir}net", lambda self, v, p, d, _c=_code: self._net(v, p, d, _c))
    setattr(_Builder, f"k_{_dir}port", lambda self, v, p, d, _c=_code: self._port(v, p, d, _c))


def rules_to_node(spec, path: str = "filters") -> F.Node:
    """The AST of a rule list (or of a mapping holding one under ``filters``).  ``None`` or an
    empty list: no filtering (accept everything)."""
    if isinstance(spec, dict):
        if "filters" not in spec:
            _fail("", "expected a 'filters:' key holding a list of rules")
        spec = spec["filters"]
    if spec is None:
        return F.Const(True)
    if not isinstance(spec, list):
        _fail(path, f"a list of rules, not {type(spec).__name__}")
    if not spec:
        return F.Const(True)
    b = _Builder()
    return F.or_(*(b.rule(r, f"{path}[{i}]", 0) for i, r in enumerate(spec)))


def compile_rules(spec, path: str = "filters") -> F.Filter:
    """A compiled ``Filter`` from already-loaded YAML (a list, or a mapping with ``filters``)."""
    return F.Filter(rules_to_node(spec, path), None)


def load_filters_text(text: str) -> F.Filter:
    """Compile the ``filters:`` list of a YAML document."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise FilterConfigError("", f"invalid YAML: {e}") from None
    if doc is None:
        return F.Filter(F.Const(True), None)
    if not isinstance(doc, dict):
        _fail("", "expected a mapping with a 'filters:' key")
    return compile_rules(doc)


def load_filters_file(path) -> F.Filter:
    """Compile the ``filters:`` list of a YAML file (errors are prefixed with the file name)."""
    p = Path(path)
    try:
        return load_filters_text(p.read_text())
    except FilterConfigError as e:
        raise FilterConfigError(f"{p}: {e.path}" if e.path else str(p), e.reason) from None
