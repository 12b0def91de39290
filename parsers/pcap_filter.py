"""The pcap-filter(7) text front end: a flex-like tokenizer and a recursive-descent parser that
follow libpcap 1.10's ``scanner.l`` and ``grammar.y`` for the subset below, producing the AST of
``parsers.filters`` (whose builders mirror libpcap's ``gencode.c``).  ``tcpdump -r FILE EXPR``
is the oracle (``tests/test_filters_tcpdump.py``).

Supported (everything else is rejected with ``FilterSyntaxError`` pointing at the token)
--------------------------------------------------------------------------------------
* protocols: ``ip ip6 arp rarp tcp udp sctp icmp icmp6 igmp``; ``ip proto N``, ``ip6 proto N``,
  ``proto N``, ``ether proto N`` (N > 1500), names after a backslash (``ip proto \\udp``,
  ``ether proto \\ip6``; IP protocol names from /etc/protocols, as libpcap; of libpcap's
  ether-proto names those above 1500 -- ip ip6 arp rarp mopdl moprc decnet lat sca loopback;
  iso stp ipx netbeui atalk aarp, which need 802.3/LLC or SNAP matching, are refused).
* addresses: ``[ip|ip6|arp|rarp] [src|dst|src or dst|src and dst] host|net ADDR``, IPv4 partial
  forms (``net 10``, ``net 10.1``, and libpcap's ``host 10.1`` = 10.1.0.0/16), ``net A/len``,
  ``net A mask M``, IPv6 ``host``/``net A/len``; ``ether [src|dst] [host] MAC`` (all of
  libpcap's MAC spellings); ``[ether] broadcast``, ``[ether] multicast``, ``ip multicast``,
  ``ip6 multicast``.
* ports: ``[tcp|udp|sctp] [src|dst|...] port N|name`` and ``portrange N-M`` (names from
  /etc/services with libpcap's tcp/udp rules; without tcp/udp/sctp a port matches all three).
* ``vlan [id]`` with libpcap's offset shifting (see ``parsers.filters``).
* ``less N``, ``greater N``, and relations ``arith relop arith`` where one side folds to a
  constant and the other is ``proto[const]`` / ``proto[const:1|2|4]`` / ``len`` combined with
  constants by ``&``, ``>>`` (before any of the following), ``<<``, ``+``, ``-``, ``*`` -- e.g.
  ``tcp[tcpflags] & (tcp-syn|tcp-ack) = tcp-syn``, ``ip[0] >> 4 = 4``, ``len - 14 > 100``.
  ``proto`` is one of ``ether link ip ip6 arp rarp tcp udp sctp icmp igmp icmp6``; the named
  constants (``tcpflags``, ``tcp-syn``, ``icmptype``, ``icmp6-echo`` ...) are libpcap's.
  Arithmetic between constants is folded in unsigned 32-bit arithmetic; ``/``, ``%``, ``|``,
  ``^`` applied to a packet field are rejected.
* ``and``/``&&``, ``or``/``||``, ``not``/``!``, parentheses, with libpcap's precedence: ``and``
  and ``or`` have EQUAL precedence and associate to the left (``a or b and c`` is ``(a or b) and
  c``); ``not`` binds tighter.  Implicit qualifiers as in libpcap: an address or number right
  after ``and``/``or`` (or a parenthesised list of them) reuses the qualifiers of the term
  before (``port 53 or 80``, ``host 10.0.0.1 and not 10.0.0.2``, ``tcp port 1 or (2 or 3)``);
  as in libpcap's grammar, the first id inside such a list's ``(`` may be a parenthesised
  number but no other parenthesised group (``port 1 or ((2 or 3) and 4)`` is refused).
* numbers are decimal, ``0x`` hex, or octal with a leading 0 (``port 010`` is port 8), as in
  libpcap.  The empty expression accepts everything.

Extensions (hugering only; the syntax cannot clash with libpcap's, whose lexer rejects ``"``)
* ``payload contains "text"`` (escapes ``\\\\ \\" \\n \\r \\t \\0 \\xHH``) and
  ``payload[off:size]`` relations on the L4 payload found by ``parsers.l2l4.parse_frame``.

Known differences from libpcap (documented, deliberate)
* libpcap refuses an expression its optimizer proves always false ("expression rejects all
  packets"); we compile it (it rejects everything).
* We implement libpcap's *unoptimised* program exactly (``tcpdump -O``).  Its optimizer,
  on by default, reorders tests on one field within and/or chains (``host A or B``: both
  sources, then both destinations) and deletes tests it proves redundant (``X or 1 = 1``);
  on frames cut inside a header the expression reads, tcpdump may then accept a frame we
  reject.  On frames holding every byte the expression reads, both agree.
* Unary minus on a packet field (``-ip[8] > 100``) is rejected: libpcap 1.10 compiles it to
  "accept everything".  ``%``, ``/``, ``|``, ``^`` on a packet field are rejected.
* Host, network and ethernet *names* (DNS, /etc/networks, /etc/ethers) are rejected: a
  filter's meaning should not depend on name lookups.
"""
from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass

from . import filters as F
from .filters import FilterSyntaxError

# --- tokens -------------------------------------------------------------------------------------
# libpcap keyword -> canonical name (scanner.l); aliases share a name
_KEYWORDS = {
    "dst": "dst", "src": "src",
    "link": "link", "ether": "link", "ppp": "link", "slip": "link", "fddi": "link", "tr": "link",
    "wlan": "link",
    "arp": "arp", "rarp": "rarp", "ip": "ip", "sctp": "sctp", "tcp": "tcp", "udp": "udp",
    "icmp": "icmp", "igmp": "igmp", "ip6": "ip6", "icmp6": "icmp6",
    "host": "host", "net": "net", "mask": "mask", "port": "port", "portrange": "portrange",
    "proto": "proto", "less": "less", "greater": "greater", "broadcast": "broadcast",
    "multicast": "multicast", "len": "len", "length": "len", "vlan": "vlan",
}
_UNSUPPORTED = (
    "igrp pim vrrp carp radio ah esp atalk aarp decnet lat sca moprc mopdl iso esis es-is isis "
    "is-is l1 l2 iih lsp snp csnp psnp clnp stp ipx netbeui protochain gateway type subtype "
    "direction dir address1 addr1 address2 addr2 address3 addr3 address4 addr4 ra ta byte "
    "inbound outbound ifindex mpls pppoed pppoes geneve lane llc metac bcc oam oamf4 oamf4ec "
    "oamf4sc sc ilmic vpi vci connectmsg metaconnect on ifname rset ruleset rnr rulenum srnr "
    "subrulenum reason action fisu lssu lsu msu hfisu hlssu hmsu sio opc dpc sls hsio hopc "
    "hdpc hsls").split()
_WORDS = {"and": "AND", "or": "OR", "not": "NOT", "&&": "AND", "||": "OR"}

_NAMED = {  # scanner.l: names that lex as numbers
    "icmptype": 0, "icmpcode": 1, "icmp-echoreply": 0, "icmp-unreach": 3,
    "icmp-sourcequench": 4, "icmp-redirect": 5, "icmp-echo": 8, "icmp-routeradvert": 9,
    "icmp-routersolicit": 10, "icmp-timxceed": 11, "icmp-paramprob": 12, "icmp-tstamp": 13,
    "icmp-tstampreply": 14, "icmp-ireq": 15, "icmp-ireqreply": 16, "icmp-maskreq": 17,
    "icmp-maskreply": 18, "icmp6type": 0, "icmp6code": 1, "icmp6-destinationunreach": 1,
    "icmp6-packettoobig": 2, "icmp6-timeexceeded": 3, "icmp6-parameterproblem": 4,
    "icmp6-echo": 128, "icmp6-echoreply": 129, "icmp6-multicastlistenerquery": 130,
    "icmp6-multicastlistenerreportv1": 131, "icmp6-multicastlistenerdone": 132,
    "icmp6-routersolicit": 133, "icmp6-routeradvert": 134, "icmp6-neighborsolicit": 135,
    "icmp6-neighboradvert": 136, "icmp6-redirect": 137, "icmp6-routerrenum": 138,
    "icmp6-nodeinformationquery": 139, "icmp6-nodeinformationresponse": 140,
    "icmp6-ineighbordiscoverysolicit": 141, "icmp6-ineighbordiscoveryadvert": 142,
    "icmp6-multicastlistenerreportv2": 143, "icmp6-homeagentdiscoveryrequest": 144,
    "icmp6-homeagentdiscoveryreply": 145, "icmp6-mobileprefixsolicit": 146,
    "icmp6-mobileprefixadvert": 147, "icmp6-certpathsolicit": 148, "icmp6-certpathadvert": 149,
    "icmp6-multicastrouteradvert": 151, "icmp6-multicastroutersolicit": 152,
    "icmp6-multicastrouterterm": 153, "tcpflags": 13, "tcp-fin": 0x01, "tcp-syn": 0x02,
    "tcp-rst": 0x04, "tcp-push": 0x08, "tcp-ack": 0x10, "tcp-urg": 0x20, "tcp-ece": 0x40,
    "tcp-cwr": 0x80,
}

_N = r"(?:0[xX][0-9A-Fa-f]+|[0-9]+)"
_B = r"[0-9A-Fa-f]{1,2}"
_B2 = r"[0-9A-Fa-f]{4}"
_W = r"[0-9A-Fa-f]{1,4}"
_V4 = rf"{_N}\.{_N}\.{_N}\.{_N}"


def _v6_alternatives():
    """scanner.l's V6 patterns: k groups before '::' and m after (k + m <= 7, or all 8 without
    '::'), optionally ending in a dotted IPv4 address that takes the place of two groups."""
    alts = [":".join([_W] * 8)]
    for total in range(0, 8):                     # groups present besides the '::'
        for k in range(0, total + 1):
            left = ":".join([_W] * k)
            right = ":".join([_W] * (total - k))
            alts.append(f"{left}::{right}")
    alts.append(":".join([_W] * 6) + ":" + _V4)
    for total in range(0, 6):
        for k in range(0, total + 1):
            left = ":".join([_W] * k)
            right = ":".join([_W] * (total - k))
            alts.append(f"{left}::{right}{':' if total - k else ''}{_V4}")
    return [re.compile(a) for a in alts]


# flex rules in scanner.l order (the earlier rule wins a tie in length)
_RULES = [
    ("WS", [re.compile(r"[ \r\n\t]")]),
    ("OP1", [re.compile(r"[+\-*/%:\[\]!<>()&|^=]")]),
    ("OP2", [re.compile(r">=|<=|!=|==|<<|>>")]),
    ("AID", [re.compile(rf"\${_B}")]),
    ("EID", [re.compile(p) for p in (rf"{_B}:{_B}:{_B}:{_B}:{_B}:{_B}",
                                     rf"{_B}-{_B}-{_B}-{_B}-{_B}-{_B}",
                                     rf"{_B}\.{_B}\.{_B}\.{_B}\.{_B}\.{_B}",
                                     rf"{_B2}\.{_B2}\.{_B2}", rf"{_B2}{_B2}{_B2}")]),
    ("NUM", [re.compile(_N)]),
    ("HID", [re.compile(rf"{_N}\.{_N}(?:\.{_N}(?:\.{_N})?)?")]),
    ("HID6", _v6_alternatives()),
    ("BOGUSMAC", [re.compile(rf"{_B}:+(?:{_B}:+)+")]),
    ("NAMED", None),
    ("ID", [re.compile(r"[A-Za-z0-9](?:[-_.A-Za-z0-9]*[.A-Za-z0-9])?")]),
    ("EID_ESC", [re.compile(r"\\[^ !()\n\t]+")]),
    ("STR", [re.compile(r'"(?:[^"\\]|\\.)*"')]),      # extension
]
_ALL_WORDS = sorted(list(_KEYWORDS) + _UNSUPPORTED + list(_WORDS), key=len, reverse=True)


@dataclass
class Token:
    kind: str       # KW UNSUP AND OR NOT OP NUM HID HID6 EID AID ID STR EOF
    val: object
    pos: int
    end: int
    text: str

    def __str__(self):
        return "end of expression" if self.kind == "EOF" else repr(self.text)


def _stoulen(text: str, tok_pos: int, src: str) -> int:
    """scanner.l's stoulen: 0x hex, leading-0 octal, else decimal; at most 32 bits."""
    def err(msg):
        raise FilterSyntaxError(msg, src, tok_pos, len(text))
    if text[:2] in ("0x", "0X"):
        v = int(text[2:], 16)
    elif len(text) > 1 and text[0] == "0":
        if any(c in "89" for c in text):
            err(f"number {text} contains non-octal digit")
        v = int(text, 8)
    else:
        v = int(text, 10)
    if v > F.U32:
        err(f"number {text} overflows 32 bits")
    return v


_ESC = {"\\": b"\\", '"': b'"', "n": b"\n", "r": b"\r", "t": b"\t", "0": b"\0"}


def _unquote(s: str, pos: int, src: str) -> bytes:
    out = bytearray()
    i = 1
    while i < len(s) - 1:
        c = s[i]
        if c != "\\":
            out += c.encode("utf-8")
            i += 1
            continue
        e = s[i + 1]
        if e in _ESC:
            out += _ESC[e]
            i += 2
        elif e == "x" and re.fullmatch(r"[0-9A-Fa-f]{2}", s[i + 2:i + 4] or ""):
            out.append(int(s[i + 2:i + 4], 16))
            i += 4
        else:
            raise FilterSyntaxError(f"unknown escape \\{e} in a string", src, pos + i, 2)
    return bytes(out)


def tokenize(text: str) -> list[Token]:
    """Longest match over the rules above, as flex does; ties go to the earlier rule."""
    toks: list[Token] = []
    i = 0
    n = len(text)
    while i < n:
        best_len, best_kind = 0, None
        # keyword rules come first in scanner.l
        for w in _ALL_WORDS:
            if text.startswith(w, i):
                best_len, best_kind = len(w), "WORD"
                break
        for kind, pats in _RULES:
            if kind == "NAMED":
                for name in _NAMED:
                    if text.startswith(name, i) and len(name) > best_len:
                        best_len, best_kind = len(name), "NAMED"
                continue
            for p in pats:
                m = p.match(text, i)
                if m and m.end() - i > best_len:
                    best_len, best_kind = m.end() - i, kind
        if best_kind is None:
            if text[i] == '"':
                raise FilterSyntaxError("unterminated string", text, i, n - i)
            raise FilterSyntaxError(f"unexpected character {text[i]!r}", text, i, 1)
        s = text[i:i + best_len]
        tok = None
        if best_kind == "WORD":
            if s in _WORDS:
                tok = Token(_WORDS[s], s, i, i + best_len, s)
            elif s in _KEYWORDS:
                tok = Token("KW", _KEYWORDS[s], i, i + best_len, s)
            else:
                tok = Token("UNSUP", s, i, i + best_len, s)
        elif best_kind == "WS":
            pass
        elif best_kind in ("OP1", "OP2"):
            if s == "!":
                tok = Token("NOT", s, i, i + 1, s)
            else:
                tok = Token("OP", "=" if s == "==" else s, i, i + best_len, s)
        elif best_kind == "NUM":
            tok = Token("NUM", _stoulen(s, i, text), i, i + best_len, s)
        elif best_kind == "NAMED":
            tok = Token("NUM", _NAMED[s], i, i + best_len, s)
        elif best_kind == "HID6":
            try:
                ipaddress.IPv6Address(s)
            except ValueError:
                raise FilterSyntaxError(f"bogus IPv6 address {s}", text, i, best_len) from None
            tok = Token("HID6", s, i, i + best_len, s)
        elif best_kind == "BOGUSMAC":
            raise FilterSyntaxError(f"bogus ethernet address {s}", text, i, best_len)
        elif best_kind == "EID_ESC":
            tok = Token("ID", s[1:], i, i + best_len, s)
        elif best_kind == "STR":
            tok = Token("STR", _unquote(s, i, text), i, i + best_len, s)
        else:                                         # AID EID HID ID
            tok = Token(best_kind, s, i, i + best_len, s)
        if tok is not None:
            toks.append(tok)
        i += best_len
    toks.append(Token("EOF", None, n, n, ""))
    return toks


# --- qualifiers (libpcap's struct qual: proto, dir, addr) -----------------------------------------
@dataclass(frozen=True)
class Qual:
    proto: str | None = None     # link ip ip6 arp rarp tcp udp sctp icmp icmp6 igmp
    dir: int = F.D_OR            # D_SRC D_DST D_OR D_AND (default: src or dst)
    addr: str | None = None      # host net port portrange proto


QERR = Qual("<err>", 0, "<err>")     # after a protocol keyword, relation, vlan, less ...
_PNAMES = ("link", "ip", "ip6", "arp", "rarp", "tcp", "udp", "sctp", "icmp", "icmp6", "igmp")
_AQUALS = ("host", "net", "port", "portrange")
_RELOPS = {">": F.R_GT, ">=": F.R_GE, "=": F.R_EQ, "!=": F.R_NE, "<": F.R_LT, "<=": F.R_LE}
_BINOPS = {"|": (10, 11), "&": (20, 21), "<<": (30, 31), ">>": (30, 31), "+": (40, 41),
           "-": (40, 41), "*": (50, 51), "/": (50, 51),
           # grammar.y gives % and ^ no precedence: yacc shifts, so they take the operand just
           # before them and everything after them (libpcap: "x % 5 + 1" is "x % (5 + 1)")
           "%": (100, 0), "^": (100, 0)}
_UMINUS = 90
# The parser is recursive descent: each '(' or 'not' is a few Python frames.  Past this depth an
# expression is refused with a message instead of dying of RecursionError (libpcap's own
# grammar has no useful meaning that deep either).
MAX_NESTING = 100


class _Syntax(Exception):
    """A syntax mismatch (may be backtracked); becomes FilterSyntaxError at the top."""

    def __init__(self, tok: Token, msg: str):
        super().__init__(msg)
        self.tok = tok
        self.msg = msg


class _Parser:
    def __init__(self, text: str, vlan_depth: int = 0):
        self.text = text
        self.toks = tokenize(text)
        self.i = 0
        self.depth = vlan_depth

    # token helpers -------------------------------------------------------------------------
    def peek(self, k=0) -> Token:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def next(self) -> Token:
        t = self.toks[self.i]
        if t.kind != "EOF":
            self.i += 1
        return t

    def is_op(self, t: Token, *vals) -> bool:
        return t.kind == "OP" and t.val in vals

    def is_kw(self, t: Token, *vals) -> bool:
        return t.kind == "KW" and t.val in vals

    def expect_op(self, val: str, what: str | None = None) -> Token:
        t = self.peek()
        if not self.is_op(t, val):
            self.fail(t, f"{what or repr(val)} expected")
        return self.next()

    def fail(self, t: Token, msg: str):
        if t.kind == "UNSUP":
            raise FilterSyntaxError(f"'{t.text}' is not supported by hugering's filter compiler",
                                    self.text, t.pos, t.end - t.pos)
        raise _Syntax(t, f"syntax error: {msg}" if not msg.startswith("syntax") else msg)

    def error(self, t: Token, msg: str, end: Token | None = None):
        """A semantic error: not backtracked."""
        stop = (end or t).end
        raise FilterSyntaxError(msg, self.text, t.pos, max(1, stop - t.pos))

    def state(self):
        return (self.i, self.depth)

    def restore(self, st):
        self.i, self.depth = st

    # grammar ---------------------------------------------------------------------------------
    def _check_nesting(self) -> None:
        depth = nots = 0
        for t in self.toks:
            if self.is_op(t, "("):
                depth += 1
            elif self.is_op(t, ")"):
                depth = max(0, depth - 1)
            nots = nots + 1 if t.kind == "NOT" else 0
            if depth > MAX_NESTING or nots > MAX_NESTING:
                self.error(t, f"expression nested more than {MAX_NESTING} levels deep "
                              f"({'parentheses' if depth > MAX_NESTING else 'not'})")

    def parse(self) -> F.Node:
        self._check_nesting()
        try:
            if self.peek().kind == "EOF":
                return F.Const(True)
            node, _ = self.expr(QERR)
            t = self.peek()
            if t.kind != "EOF":
                if self.is_op(t, ")"):
                    self.fail(t, "syntax error: unmatched ')'")
                self.fail(t, f"syntax error: 'and' or 'or' expected before {t}")
            return node
        except _Syntax as e:
            t = e.tok
            raise FilterSyntaxError(e.msg, self.text, t.pos, max(1, t.end - t.pos)) from None

    def expr(self, ctx: Qual):
        """expr: term | expr and term | expr and id | expr or term | expr or id -- and/or have
        equal precedence and associate left; an id after and/or inherits the qualifiers."""
        node, q = self.term(ctx)
        while self.peek().kind in ("AND", "OR"):
            op = self.next()
            if self.peek().kind == "EOF":
                self.fail(self.peek(), f"syntax error: an expression is expected after "
                                       f"'{op.text}'")
            rhs, q = self.id_or_term(q)
            node = F.and_(node, rhs) if op.kind == "AND" else F.or_(node, rhs)
        return node, q

    def id_or_term(self, q: Qual):
        kind = self.classify()
        if kind == "id":
            return self.id(q), q
        if kind == "maybe":                       # '(': a list of ids, or a parenthesised term
            st = self.state()
            try:
                tree = self.id_syntax()
                if not (self.peek().kind in ("AND", "OR", "EOF") or self.is_op(self.peek(), ")")):
                    self.fail(self.peek(), "syntax error")
            except _Syntax as e1:
                self.restore(st)
                try:
                    return self.term(q)
                except _Syntax as e2:
                    raise (e1 if e1.tok.pos > e2.tok.pos else e2) from None
            return self.gen(tree, q), q           # semantics only once the syntax is settled
        return self.term(q)

    def classify(self) -> str:
        j = 0
        while self.peek(j).kind == "NOT":
            j += 1
        t = self.peek(j)
        if t.kind in ("HID", "HID6", "EID", "AID"):
            return "id"
        if t.kind == "ID":
            nxt = self.peek(j + 1)
            if t.text == "payload" and (self.is_op(nxt, "[") or
                                        (nxt.kind == "ID" and nxt.text == "contains")):
                return "term"
            return "id"
        if t.kind == "NUM":
            nxt = self.peek(j + 1)
            if nxt.kind == "OP" and (nxt.val in _BINOPS or nxt.val in _RELOPS):
                return "term"                     # the start of a relation
            return "id"
        if self.is_op(t, "("):
            return "maybe"
        return "term"

    def term(self, ctx: Qual):
        if self.peek().kind == "NOT":
            self.next()
            node, q = self.term(ctx)
            return F.not_(node), q
        return self.rterm(ctx)

    def rterm(self, ctx: Qual):
        t = self.peek()
        if self.is_op(t, "("):
            st = self.state()
            try:
                return self.relation(), QERR
            except _Syntax as e1:
                self.restore(st)
                try:
                    self.next()
                    node, _ = self.expr(ctx)
                    self.expect_op(")", "')'")
                    return node, ctx              # rterm: paren expr ')' keeps the paren's q
                except _Syntax as e2:
                    raise (e1 if e1.tok.pos > e2.tok.pos else e2) from None
        if t.kind == "KW" and t.val in _PNAMES:
            nxt = self.peek(1)
            if self.is_op(nxt, "["):
                return self.relation(), QERR
            if self.is_kw(nxt, "src", "dst", "host", "net", "port", "portrange", "proto"):
                return self.head_id()
            if self.is_kw(nxt, "broadcast", "multicast"):
                self.next()
                return self.other_cast(t, self.next()), QERR
            if nxt.kind == "UNSUP":
                self.fail(nxt, "")
            if t.val == "link":
                self.error(t, "link layer applied in wrong context (use 'ether host', "
                              "'ether proto', 'ether[...]' ...)")
            self.next()
            return F.proto_abbrev(t.val, self.depth), QERR
        if self.is_kw(t, "src", "dst", "host", "net", "port", "portrange", "proto"):
            return self.head_id()
        if self.is_kw(t, "broadcast", "multicast"):
            return self.other_cast(None, self.next()), QERR
        if self.is_kw(t, "less", "greater"):
            self.next()
            n = self.peek()
            if n.kind != "NUM":
                self.fail(n, f"syntax error: a number is expected after '{t.text}'")
            self.next()
            op = F.R_LE if t.val == "less" else F.R_GE
            return F.length_cmp(op, n.val), QERR
        if self.is_kw(t, "vlan"):
            self.next()
            vid = None
            n = self.peek()
            if n.kind == "NUM" or self.is_op(n, "("):
                vid, vtok = self.pnum()
                if vid > 4095:
                    self.error(vtok, f"VLAN tag {vid} greater than maximum 4095")
            node = F.vlan(vid, self.depth)
            self.depth += 1        # everything parsed after this looks 4 bytes further in
            return node, QERR
        if t.kind == "NUM" or self.is_op(t, "-") or self.is_kw(t, "len"):
            return self.relation(), QERR
        if t.kind == "ID" and t.text == "payload":
            nxt = self.peek(1)
            if nxt.kind == "ID" and nxt.text == "contains":
                self.next()
                self.next()
                s = self.peek()
                if s.kind != "STR":
                    self.fail(s, 'syntax error: a quoted string is expected after '
                                 '\'payload contains\' (payload contains "ABC")')
                self.next()
                if not s.val:
                    self.error(s, "an empty string is in every payload; give at least one byte")
                return F.contains([s.val]), QERR
            if self.is_op(nxt, "["):
                return self.relation(), QERR
        if t.kind in ("HID", "HID6", "EID", "NUM"):
            self.fail(t, f"syntax error: {t} needs a qualifier first (host, net, src, dst, "
                         "port ...)")
        if t.kind == "ID":
            self.fail(t, f"syntax error: unknown word {t}")
        if t.kind == "EOF":
            self.fail(t, "syntax error: unexpected end of expression")
        self.fail(t, f"syntax error: unexpected {t}")

    def pnum(self):
        """pnum: NUM | '(' pnum ')'."""
        t = self.peek()
        if self.is_op(t, "("):
            self.next()
            v, vt = self.pnum()
            self.expect_op(")", "')'")
            return v, vt
        if t.kind != "NUM":
            self.fail(t, "syntax error: a number is expected")
        self.next()
        return t.val, t

    def other_cast(self, ptok: Token | None, kw: Token):
        proto = None if ptok is None else ptok.val
        if kw.val == "broadcast":
            if proto in (None, "link"):
                return F.ether_broadcast()
            if proto == "ip":
                self.error(kw, "'ip broadcast' needs the capture interface's netmask; not "
                               "supported")
            self.error(ptok, "only link-layer/IP broadcast filters are supported")
        if proto in (None, "link"):
            return F.ether_multicast()
        if proto == "ip":
            return F.ip_multicast(self.depth)
        if proto == "ip6":
            return F.ip6_multicast(self.depth)
        self.error(ptok, "only link-layer/IP/IPv6 multicast filters are supported")

    def head_id(self):
        """head id: [pqual] [dqual] [aqual | proto] then the id, generated with that q."""
        proto = None
        t = self.peek()
        if t.kind == "KW" and t.val in _PNAMES:
            proto = t.val
            self.next()
        dir_ = F.D_OR
        addr = None
        t = self.peek()
        if self.is_kw(t, "src", "dst"):
            self.next()
            dir_ = F.D_SRC if t.val == "src" else F.D_DST
            other = "dst" if t.val == "src" else "src"
            c = self.peek()
            if c.kind in ("AND", "OR") and self.is_kw(self.peek(1), other):
                self.next()
                self.next()
                dir_ = F.D_OR if c.kind == "OR" else F.D_AND
            if self.is_kw(self.peek(), *_AQUALS):
                addr = self.next().val
        elif self.is_kw(t, *_AQUALS):
            addr = self.next().val
        elif self.is_kw(t, "proto"):
            addr = self.next().val
        q = Qual(proto, dir_, addr)
        return self.id(q), q

    # ids: parsed first (syntax only, so that '(' can be backtracked), then generated -----------
    def id(self, q: Qual) -> F.Node:
        tree = self.id_syntax()
        return self.gen(tree, q)

    def pnum_syntax(self):
        """pnum: NUM | '(' pnum ')' -- a number in any depth of parentheses."""
        t = self.peek()
        if self.is_op(t, "("):
            self.next()
            tree = self.pnum_syntax()
            self.expect_op(")", "')'")
            return tree
        if t.kind != "NUM":
            self.fail(t, "syntax error: only a number may be parenthesised at the start of a "
                         "parenthesised list of ids")
        self.next()
        return ("num", t)

    def id_syntax(self):
        t = self.peek()
        if t.kind == "NOT":
            self.next()
            return ("not", t, self.id_syntax())
        if self.is_op(t, "("):
            self.next()
            # libpcap's grammar (pid: nid | qid and id | qid or id; qid: pnum | pid): the first
            # id inside '(' may be a parenthesised *number* but no other parenthesised group --
            # tcpdump refuses `port 53 or ((80 or 22) and 443)`, so we do too
            tree = self.pnum_syntax() if self.is_op(self.peek(), "(") else self.id_syntax()
            while self.peek().kind in ("AND", "OR"):
                op = self.next()
                tree = (op.kind.lower(), op, tree, self.id_syntax())
            self.expect_op(")", "')'")
            return tree
        if t.kind == "NUM":
            self.next()
            return ("num", t)
        if t.kind == "HID":
            self.next()
            if self.is_op(self.peek(), "/"):
                self.next()
                n = self.peek()
                if n.kind != "NUM":
                    self.fail(n, "syntax error: a prefix length is expected after '/'")
                self.next()
                return ("hid/", t, n)
            if self.is_kw(self.peek(), "mask"):
                self.next()
                m = self.peek()
                if m.kind != "HID":
                    self.fail(m, "syntax error: a dotted netmask is expected after 'mask'")
                self.next()
                return ("hidmask", t, m)
            return ("hid", t)
        if t.kind == "HID6":
            self.next()
            if self.is_op(self.peek(), "/"):
                self.next()
                n = self.peek()
                if n.kind != "NUM":
                    self.fail(n, "syntax error: a prefix length is expected after '/'")
                self.next()
                return ("hid6/", t, n)
            return ("hid6", t)
        if t.kind in ("EID", "AID", "ID"):
            self.next()
            return (t.kind.lower(), t)
        self.fail(t, f"syntax error: an address, number or name is expected, not {t}")

    def gen(self, tree, q: Qual) -> F.Node:
        kind = tree[0]
        if kind == "not":
            return F.not_(self.gen(tree[2], q))
        if kind in ("and", "or"):
            a = self.gen(tree[2], q)
            b = self.gen(tree[3], q)
            return F.and_(a, b) if kind == "and" else F.or_(a, b)
        tok = tree[1]
        if q is QERR:
            self.error(tok, f"syntax error: {tok} has no qualifier to inherit (the term before "
                            "'and'/'or' is not a host/net/port/proto primitive)")
        if kind in ("hid", "hid/", "hidmask", "hid6", "hid6/"):
            what = {"hid": "IP address", "hid6": "IP address", "hidmask": "IP address and "
                    "netmask"}.get(kind, "IP address and prefix length")
            if q.addr in ("port", "portrange", "proto"):
                self.error(tok, f"'{q.addr}' modifier applied to {what}")
        if kind == "num":
            return self.gen_ncode(None, tok.val, q, tok)
        if kind == "hid":
            return self.gen_ncode(tok.text, 0, q, tok)
        if kind == "hid/":
            return self.gen_mcode(tok, None, tree[2], q)
        if kind == "hidmask":
            return self.gen_mcode(tok, tree[2], None, q)
        if kind == "hid6":
            return self.gen_mcode6(tok, None, q)
        if kind == "hid6/":
            return self.gen_mcode6(tok, tree[2], q)
        if kind == "eid":
            return self.gen_ecode(tok, q)
        if kind == "aid":
            self.error(tok, "ARCnet addresses are not supported")
        return self.gen_scode(tok, q)

    # gencode: one function per libpcap function ------------------------------------------------
    def atoin(self, tok: Token) -> tuple[int, int]:
        parts = tok.text.split(".")
        v = 0
        for p in parts:
            if not p.isdigit() or int(p) > 255:
                self.error(tok, f"invalid IPv4 address '{tok.text}'")
            v = (v << 8) | int(p)
        return v, 8 * len(parts)

    def gen_host(self, addr, mask, q: Qual, tok: Token, typ: str) -> F.Node:
        kinds = {None: F.HK_ALL, "ip": F.HK_IP, "arp": F.HK_ARP, "rarp": F.HK_RARP}
        if q.proto not in kinds:
            if q.proto == "link":
                self.error(tok, f"link-layer modifier applied to {typ}")
            if q.proto == "ip6":
                self.error(tok, f"'ip6' modifier applied to ip {typ}")
            self.error(tok, f"'{q.proto}' modifier applied to {typ}")
        return F.host4(addr, mask, q.dir, self.depth, kinds[q.proto])

    def port_protos(self, q: Qual, tok: Token, what="port") -> int:
        pp = {None: F.PP_ALL, "tcp": F.PP_TCP, "udp": F.PP_UDP, "sctp": F.PP_SCTP}
        if q.proto not in pp:
            self.error(tok, f"illegal qualifier of '{what}'")
        return pp[q.proto]

    def gen_ncode(self, s, v, q: Qual, tok: Token) -> F.Node:
        if q.addr in (None, "host", "net"):
            if q.proto == "link":
                self.error(tok, "illegal link layer address")
            mask = F.U32
            if s is None:
                vlen = 32
            else:
                v, vlen = self.atoin(tok)
            if s is None and q.addr == "net":     # promote a short net number: net 10
                while v and (v & 0xFF000000) == 0:
                    v = (v << 8) & F.U32
                    mask = (mask << 8) & F.U32
            else:                                  # promote a short address: host 10.1
                v = (v << (32 - vlen)) & F.U32
                mask = (mask << (32 - vlen)) & F.U32
            return self.gen_host(v, mask, q, tok, "net" if q.addr == "net" else "host")
        if q.addr in ("port", "portrange"):
            pp = self.port_protos(q, tok, q.addr)
            if v > 65535:
                self.error(tok, f"illegal port number {v} > 65535")
            return F.port(v, v, q.dir, self.depth, pp)
        if q.addr == "proto":
            return self.gen_proto(v, q, tok)
        self.error(tok, "syntax error")

    def gen_proto(self, v, q: Qual, tok: Token) -> F.Node:
        if q.proto in (None, "ip", "ip6"):
            return F.ip_proto(v, q.proto, self.depth)
        if q.proto == "link":
            if v <= 1500:
                self.error(tok, f"ether proto {v}: 802.3 length/LLC SAP values (<= 1500) are "
                                "not supported")
            if v in (0x809B, 0x80F3):
                self.error(tok, "AppleTalk ether protos are not supported")
            return F.ethertype(v, self.depth)
        self.error(tok, f"'{q.proto} proto' is not supported")

    def gen_mcode(self, tok: Token, mtok: Token | None, ltok: Token | None, q: Qual):
        n, nlen = self.atoin(tok)
        n = (n << (32 - nlen)) & F.U32
        if mtok is not None:
            m, mlen = self.atoin(mtok)
            m = (m << (32 - mlen)) & F.U32
            if n & ~m & F.U32:
                self.error(tok, f'non-network bits set in "{tok.text} mask {mtok.text}"', mtok)
        else:
            masklen = ltok.val
            if masklen > 32:
                self.error(ltok, "mask length must be <= 32")
            m = 0 if masklen == 0 else (F.U32 << (32 - masklen)) & F.U32
            if n & ~m & F.U32:
                self.error(tok, f'non-network bits set in "{tok.text}/{masklen}"', ltok)
        if q.addr != "net":
            self.error(tok, "Mask syntax for networks only", ltok or mtok)
        return self.gen_host(n, m, q, tok, "net")

    def gen_mcode6(self, tok: Token, ltok: Token | None, q: Qual):
        addr = ipaddress.IPv6Address(tok.text).packed
        masklen = 128 if ltok is None else ltok.val
        if masklen > 128:
            self.error(ltok, "mask length must be <= 128")
        mask = ((1 << 128) - (1 << (128 - masklen))).to_bytes(16, "big")
        if int.from_bytes(addr, "big") & ~int.from_bytes(mask, "big"):
            self.error(tok, f'non-network bits set in "{tok.text}/{masklen}"', ltok)
        if q.addr in (None, "host"):
            if masklen != 128:
                self.error(tok, "Mask syntax for networks only", ltok)
        elif q.addr != "net":
            self.error(tok, "invalid qualifier against IPv6 address")
        typ = "net" if q.addr == "net" else "host"
        if q.proto not in (None, "ip6"):
            if q.proto == "link":
                self.error(tok, f"link-layer modifier applied to ip6 {typ}")
            if q.proto in ("ip", "arp", "rarp"):
                self.error(tok, f"'{q.proto}' modifier applied to ip6 {typ}")
            self.error(tok, f"'{q.proto}' modifier applied to {typ}")
        return F.host6(addr, mask, q.dir, self.depth)

    def gen_ecode(self, tok: Token, q: Qual):
        if q.addr in (None, "host") and q.proto == "link":
            return F.ether_addr(_ether_aton(tok.text), q.dir)
        self.error(tok, "ethernet address used in non-ether expression")

    def gen_scode(self, tok: Token, q: Qual):
        name = tok.val if tok.kind == "ID" else tok.text
        if q.addr in (None, "host"):
            if q.proto == "link":
                self.error(tok, "ethernet host names are not supported; use a MAC address")
            self.error(tok, f"unknown word {tok}: host names are not supported (a filter must "
                            "not depend on name lookups); use an address")
        if q.addr == "net":
            self.error(tok, "network names are not supported; use an address")
        if q.addr == "port":
            pp = self.port_protos(q, tok)
            port, real = _nametoport(name)
            if port is None:
                self.error(tok, f"unknown port '{name}'")
            if q.proto == "udp":
                if real == F.PP_TCP:
                    self.error(tok, f"port '{name}' is tcp")
                real = F.PP_UDP
            elif q.proto == "tcp":
                if real == F.PP_UDP:
                    self.error(tok, f"port '{name}' is udp")
                real = F.PP_TCP
            elif q.proto == "sctp":
                if real != F.PP_ALL:
                    self.error(tok, f"port '{name}' is {'tcp' if real == F.PP_TCP else 'udp'}")
                real = F.PP_SCTP
            del pp
            return F.port(port, port, q.dir, self.depth, real)
        if q.addr == "portrange":
            pp = self.port_protos(q, tok, "portrange")
            m = re.fullmatch(r"([0-9]+)-([0-9]+)", name)
            if not m:
                self.error(tok, f"portrange '{name}': only numeric ranges (1000-2000) are "
                                "supported")
            lo, hi = int(m.group(1)), int(m.group(2))
            for v in (lo, hi):
                if v > 65535:
                    self.error(tok, f"illegal port number {v} > 65535")
            return F.port(lo, hi, q.dir, self.depth, pp)
        if q.addr == "proto":
            if q.proto in (None, "ip", "ip6"):
                try:
                    v = socket.getprotobyname(name)
                except OSError:
                    self.error(tok, f"unknown ip proto '{name}'")
            elif q.proto == "link":
                v = _ETHER_PROTO_NAMES.get(name)
                if v is None and name in _ETHER_PROTO_UNSUPPORTED:
                    self.error(tok, f"ether proto '{name}' is not supported by hugering's "
                                    f"filter compiler (an 802.3/LLC or SNAP protocol)")
                if v is None:
                    self.error(tok, f"unknown ether proto '{name}'")
            else:
                self.error(tok, f"'{q.proto} proto' is not supported")
            return self.gen_proto(v, q, tok)
        self.error(tok, "syntax error")

    # relations -----------------------------------------------------------------------------------
    def relation(self) -> F.Node:
        lhs = self.arith(0)
        t = self.peek()
        if not (t.kind == "OP" and t.val in _RELOPS):
            self.fail(t, "syntax error: a comparison (=, !=, <, <=, >, >=) is expected")
        self.next()
        rhs = self.arith(0)
        return self.lower_relation(lhs, t, rhs)

    def arith(self, min_bp: int):
        t = self.peek()
        if self.is_op(t, "-"):
            self.next()
            lhs = ("neg", t, self.arith(_UMINUS))
        else:
            lhs = self.primary()
        while True:
            t = self.peek()
            if not (t.kind == "OP" and t.val in _BINOPS):
                break
            lbp, rbp = _BINOPS[t.val]
            if lbp < min_bp:
                break
            self.next()
            lhs = ("bin", t, lhs, self.arith(rbp))
        return lhs

    def primary(self):
        t = self.peek()
        if t.kind == "NUM":
            self.next()
            return ("num", t, t.val)
        if self.is_op(t, "("):
            self.next()
            e = self.arith(0)
            self.expect_op(")", "')'")
            return e
        if self.is_kw(t, "len"):
            self.next()
            return ("len", t)
        if (t.kind == "KW" and t.val in _PNAMES) or (t.kind == "ID" and t.text == "payload"):
            if self.is_op(self.peek(1), "["):
                self.next()
                self.next()
                idx = self.arith(0)
                size, stok = 1, None
                if self.is_op(self.peek(), ":"):
                    self.next()
                    stok = self.peek()
                    if stok.kind != "NUM":
                        self.fail(stok, "syntax error: a size (1, 2 or 4) is expected after ':'")
                    self.next()
                    size = stok.val
                self.expect_op("]", "']'")
                return ("load", t, idx, size, stok)
        if t.kind == "UNSUP":
            self.fail(t, "")
        self.fail(t, f"syntax error: a number, 'len' or proto[offset] is expected, not {t}")

    def fold(self, e):
        """-> int (a constant, u32) or _Val (a packet value with its affine chain)."""
        kind = e[0]
        if kind == "num":
            return e[2] & F.U32
        if kind == "len":
            return _Val("len", None, 0, 4, e[1])
        if kind == "load":
            t, idx, size, stok = e[1], e[2], e[3], e[4]
            off = self.fold(idx)
            if isinstance(off, _Val):
                self.error(t, f"only constant offsets are supported in '{t.text}[...]'")
            if off >= 1 << 31:
                # libpcap's optimiser adds such an offset to the layer's in 32 bits (ip[-1]
                # becomes ether[13]) where its interpreter adds it without wrapping (a load
                # past any packet): tcpdump and tcpdump -O select different packets
                self.error(t, f"offset {off - (1 << 32)} in "
                              f"'{t.text}[...]' is negative (or 2**31 and beyond): libpcap's "
                              "optimiser and its interpreter disagree on what it selects, so "
                              "hugering refuses it")
            if size not in (1, 2, 4):
                self.error(stok or t, "data size must be 1, 2, or 4")
            # ether, link (and libpcap's other link-layer aliases) all mean the frame start
            layer = "payload" if t.kind == "ID" else ("ether" if t.val == "link" else t.val)
            return _Val("load", layer, off, size, t)
        if kind == "neg":
            v = self.fold(e[2])
            if isinstance(v, int):
                return (-v) & F.U32
            # libpcap 1.10 compiles "-ip[8] > 100" to "accept everything" (gen_neg): refuse
            # rather than guess which of the two meanings the user wants
            self.error(e[1], "unary minus on a packet field is not supported (libpcap 1.10 "
                             "miscompiles it); write 0 - field")
        op, a, b = e[1], self.fold(e[2]), self.fold(e[3])
        if isinstance(a, int) and isinstance(b, int):
            return _const_op(op, a, b, self)
        if isinstance(a, _Val) and isinstance(b, _Val):
            self.error(op, "arithmetic on two packet fields is not supported")
        if isinstance(b, _Val):                        # constant on the left
            c, v = a, b
            v = v._copy()
            v.gated = False        # gen_arth keeps only the left operand's protocol checks
            if op.val in ("&", "+", "*"):
                a, b = v, c
            elif op.val == "-":                        # c - x = x * -1 + c
                return v.affine(F.U32, c, op, self)
            else:
                self.error(op, f"'{op.val}' with a packet field on its right is not supported")
        v, c = a, b
        if op.val == "&":
            return v.and_mask(c, op, self)
        if op.val == ">>":
            if c > 31:
                self.error(op, "shift by more than 31 bits")
            return v.rshift(c, op, self)
        if op.val == "<<":
            if c > 31:
                self.error(op, "shift by more than 31 bits")
            return v.affine(1 << c, 0, op, self)
        if op.val == "+":
            return v.affine(1, c, op, self)
        if op.val == "-":
            return v.affine(1, (-c) & F.U32, op, self)
        if op.val == "*":
            return v.affine(c, 0, op, self)
        self.error(op, f"'{op.val}' applied to a packet field is not supported (only & >> << "
                       "+ - * with constants)")

    def lower_relation(self, lhs, optok: Token, rhs) -> F.Node:
        a, b = self.fold(lhs), self.fold(rhs)
        op = _RELOPS[optok.val]
        if isinstance(a, int) and isinstance(b, int):
            return F.Const(bool(_relop_py(a, op, b)))
        if isinstance(a, _Val) and isinstance(b, _Val):
            self.error(optok, "comparing two packet fields is not supported")
        if isinstance(a, int):
            a, b, op = b, a, F.RELOP_SWAP[op]
        v = a
        if v.kind == "len":
            return F.length_cmp(op, b, mask=v.mask, shift=v.shift, mul=v.mul, add=v.add)
        return F.load_cmp(v.layer, v.off, v.size, op, b, self.depth, mask=v.mask,
                          shift=v.shift, mul=v.mul, add=v.add, gated=v.gated)


class _Val:
    """A packet value: ((load & mask) >> shift) * mul + add, modulo 2**32."""

    def __init__(self, kind, layer, off, size, tok):
        self.kind, self.layer, self.off, self.size, self.tok = kind, layer, off, size, tok
        self.mask, self.shift, self.mul, self.add = F.U32, 0, 1, 0
        self.gated = True

    def _copy(self):
        v = _Val(self.kind, self.layer, self.off, self.size, self.tok)
        v.mask, v.shift, v.mul, v.add = self.mask, self.shift, self.mul, self.add
        v.gated = self.gated
        return v

    def _plain(self, op, p, what):
        if self.mul != 1 or self.add != 0:
            p.error(op, f"'{what}' after + - * << on a packet field is not supported")

    def and_mask(self, c, op, p):
        self._plain(op, p, "&")
        v = self._copy()
        v.mask = self.mask & ((c << self.shift) & F.U32)
        return v

    def rshift(self, c, op, p):
        self._plain(op, p, ">>")
        v = self._copy()
        v.shift = min(self.shift + c, 32)
        return v

    def affine(self, mul, add, op, p):
        v = self._copy()
        v.mul = (self.mul * mul) & F.U32
        v.add = (self.add * mul + add) & F.U32
        return v


def _const_op(op: Token, a: int, b: int, p: _Parser) -> int:
    o = op.val
    if o in ("/", "%") and b == 0:
        p.error(op, "division by zero" if o == "/" else "modulus by zero")
    if o in ("<<", ">>") and b > 31:
        p.error(op, "shift by more than 31 bits")
    r = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "/": lambda: a // b,
         "%": lambda: a % b, "&": lambda: a & b, "|": lambda: a | b, "^": lambda: a ^ b,
         "<<": lambda: a << b, ">>": lambda: a >> b}[o]()
    return r & F.U32


def _relop_py(a, op, b):
    return {F.R_EQ: a == b, F.R_NE: a != b, F.R_LT: a < b, F.R_LE: a <= b, F.R_GT: a > b,
            F.R_GE: a >= b}[op]


# libpcap's ether-proto names above 1500 (pcap-filter(7)); they compile to an ethertype compare,
# like `ether proto N`.  Those at or below 1500 (iso, stp, ipx, netbeui) and AppleTalk's
# (atalk, aarp: SNAP encapsulation too) are refused as unsupported.
_ETHER_PROTO_NAMES = {"ip": 0x0800, "ip6": 0x86DD, "arp": 0x0806, "rarp": 0x8035,
                      "mopdl": 0x6001, "moprc": 0x6002, "decnet": 0x6003, "lat": 0x6004,
                      "sca": 0x6007, "loopback": 0x9000}
_ETHER_PROTO_UNSUPPORTED = ("iso", "stp", "ipx", "netbeui", "atalk", "aarp")


def _nametoport(name: str):
    """libpcap's pcap_nametoport: tcp first; both with the same number means any protocol."""
    def look(proto):
        try:
            return socket.getservbyname(name, proto)
        except OSError:
            return None
    tcp, udp = look("tcp"), look("udp")
    if tcp is not None:
        return tcp, (F.PP_ALL if udp == tcp else F.PP_TCP)
    if udp is not None:
        return udp, F.PP_UDP
    return None, None


def _ether_aton(s: str) -> bytes:
    if re.fullmatch(r"[0-9A-Fa-f]{12}", s):
        return bytes.fromhex(s)
    parts = re.split(r"[:.\-]", s)
    if len(parts) == 3:                              # Cisco: 0011.2233.4455
        return b"".join(bytes.fromhex(p) for p in parts)
    return bytes(int(p, 16) for p in parts)


def parse(text: str, *, vlan_depth: int = 0) -> F.Node:
    """The AST of a pcap-filter expression (raises ``FilterSyntaxError``).  ``vlan_depth``
    starts the expression that many VLAN tags deep (used by the YAML front end)."""
    if not isinstance(text, str):
        raise TypeError("a filter expression is a string")
    try:
        return _Parser(text, vlan_depth).parse()
    except RecursionError:
        raise _too_deep(text) from None


def _too_deep(text: str) -> FilterSyntaxError:
    # past MAX_NESTING's check: long chains of '-' or of operators build trees too deep to walk
    return FilterSyntaxError("expression too deeply nested to compile (a chain of operators or "
                             "signs this long); split it", text, 0, len(text))


def compile_pcap_filter(text: str) -> F.Filter:
    """``parse`` then compile: a ``Filter`` whose ``prog`` the ``@njit`` matcher walks."""
    tree = parse(text)
    try:
        return F.Filter(tree, text)
    except RecursionError:
        raise _too_deep(text) from None
