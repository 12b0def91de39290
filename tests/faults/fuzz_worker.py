"""Hostile frames through the whole consumer path: ring -> parse -> filter -> handler.

    NUMBA_BOUNDSCHECK=1 NUMBA_CACHE_DIR=... python tests/faults/fuzz_worker.py FRAMES SEED

One process: a producer writes a ring's worth of generated frames at a time straight into the
slots (``generate``, ``@njit``), then two engine consumers (``ConsumerEngine``: the compiled
loop with ``fuzz_handler.on_burst``) take exactly that many each: one behind a pcap-filter
expression whose rules read every layer (the full parse + filter + handler path; as in
libpcap, a frame too short for a load the expression makes is rejected, so this one sees most
frames, not all), one without a filter (its handler checks every frame's record).  Repeat until
FRAMES.  Prints one JSON object: each handler's counters, per class.

The classes (``C_*``), each from about 200 well-formed templates of every kind
(``tests/naive_parsers.py`` builders; the truncation boundary of each from ``required_len``):

* random bytes of random length, half of them behind a known ethertype / IP version byte;
* every truncation of every template (first, in order), then random ones: a cut below the
  template's required length must be ``F_TRUNCATED``;
* lying lengths: IPv4 total length (below the header: malformed; beyond the capture:
  truncated), IPv6 payload length (beyond the capture: truncated or malformed), UDP length
  (below 8: malformed; any other wrong value: length mismatch), TCP data offset (below 5:
  malformed; beyond the datagram: truncated or malformed);
* IPv6 extension-header loops: 9 to 40 headers that each name another extension header as the
  next (the parser walks 8): chain limit, or truncated where the frame ends first;
* VLAN stacks 3 to 8 tags deep: ``F_VLAN_TOO_DEEP``;
* a lying producer: a slot ``cap_len`` above the slot size (up to 2^32 - 1): clamped to the
  slot and ``F_TRUNCATED``;
* random byte flips of templates (no flag required: only no crash and agreement).
"""
from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parents[1]), str(HERE), str(HERE.parent)]

import numpy as np  # noqa: E402
from numba import njit  # noqa: E402

from parsers import record as R  # noqa: E402
from shm import kernels as K  # noqa: E402
from shm import layout as L  # noqa: E402

(C_RANDOM, C_TRUNC, C_IPV4_TOTAL, C_IPV6_PLEN, C_UDP_LEN, C_TCP_DOFF, C_EXT_LOOP, C_VLAN_DEEP,
 C_LYING_CAPLEN, C_FLIP) = range(10)
CLASS_NAMES = ["random bytes", "truncations", "IPv4 total length lies", "IPv6 payload length "
               "lies", "UDP length lies", "TCP data offset lies", "IPv6 extension-header loops",
               "VLAN stacks > 2 deep", "slot cap_len > slot size", "byte flips"]
SLOT_SIZE = 512
CAPACITY = 1 << 12
FILTER = ('udp port 53 or tcp[13] & 2 != 0 or payload contains "HUGE" or icmp6 or arp '
          'or ip6 proto 58 or vlan 10 or ip or not ip')
ETYPES = np.array([0x0800, 0x86DD, 0x0806, 0x8100, 0x88A8, 0x9100, 0x0100, 0x05FF],
                  np.int64)


def templates():
    """Well-formed frames of every kind, with what the generator needs to know about each."""
    import naive_parsers as N
    rng = random.Random(7)
    out = []

    def payload():
        return bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 8, 20, 40])))
    tags_opts = [[], [(0x8100, 10, 1)], [(0x88A8, 20, 0), (0x8100, 30, 2)]]
    for k in range(200):
        tags = rng.choice(tags_opts)
        kind = k % 10
        pad = rng.choice([0, 0, 64, 128])
        if kind in (0, 1, 2):                 # IPv4 UDP / TCP / ICMP, options sometimes
            opts = rng.choice([b"", N.NOP * 4, bytes([7, 11, 4]) + bytes(8)])
            seg = (N.udp(payload(), rng.randrange(65536), 53), 17) if kind == 0 else \
                (N.tcp(payload(), rng.randrange(65536), 80, flags=rng.randrange(512),
                       options=rng.choice([b"", N.opt_mss() + N.opt_ws(),
                                           N.opt_ts() + N.NOP * 2])),
                 6) if kind == 1 else (N.icmp(8, 0, b"\x00\x01\x00\x01", payload()), 1)
            f = N.eth(N.ipv4(seg[0], seg[1], options=opts), 0x0800, tags=tags, pad_to=pad)
        elif kind == 3:                       # IPv4 fragment
            f = N.eth(N.ipv4(N.udp(payload()), 17, mf=rng.random() < 0.5,
                             frag=rng.choice([0, 1, 100])), 0x0800, tags=tags, pad_to=pad)
        elif kind in (4, 5, 6):               # IPv6 UDP / TCP / ICMPv6 behind extension headers
            kinds = [rng.choice([0, 43, 60]) for _ in range(rng.randrange(0, 4))]
            proto, seg = ((17, N.udp(payload())) if kind == 4 else
                          (6, N.tcp(payload(), flags=2)) if kind == 5 else
                          (58, N.icmp(128, 0, b"\x00\x01\x00\x01", payload())))
            nh, hdrs = N.chain(kinds, proto) if kinds else (proto, b"")
            f = N.eth(N.ipv6(hdrs + seg, nh), 0x86DD, tags=tags, pad_to=pad)
        elif kind == 7:
            f = N.eth(N.arp(rng.choice([1, 2])), 0x0806, tags=tags, pad_to=pad)
        elif kind == 8:
            f = N.llc_frame(payload(), pad_to=pad)
        else:
            f = N.eth(payload() + b"HUGE", rng.choice([0x88CC, 0x88F7]), tags=tags, pad_to=pad)
        d = N.naive_parse(f)
        assert not d["flags"] & (R.F_TRUNCATED | R.F_MALFORMED), (f.hex(), d)
        frag = bool(d["flags"] & R.F_FRAGMENT)
        dend = d["l3_off"] + d["ip_len"] if d["ip_version"] else len(f)
        out.append({"frame": f, "req": N.required_len(f), "l3": d["l3_off"], "l4": d["l4_off"],
                    "ver": d["ip_version"], "proto": d["ip_proto"], "frag": frag,
                    "udp_len": d["udp_len"], "dend": dend})
    return out


def pack(ts):
    """The templates as flat arrays for the generator."""
    flat = np.frombuffer(b"".join(t["frame"] for t in ts), np.uint8).copy()
    lens = np.array([len(t["frame"]) for t in ts], np.int64)
    offs = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
    meta = np.array([[t["req"], t["l3"], t["l4"], t["ver"], t["proto"], t["frag"], t["udp_len"],
                      t["dend"]] for t in ts], np.int64)
    v4 = np.array([i for i, t in enumerate(ts) if t["ver"] == 4], np.int64)
    v6 = np.array([i for i, t in enumerate(ts) if t["ver"] == 6], np.int64)
    udp = np.array([i for i, t in enumerate(ts) if t["proto"] == 17 and not t["frag"]
                    and t["l4"] >= 0], np.int64)
    tcp = np.array([i for i, t in enumerate(ts) if t["proto"] == 6 and not t["frag"]
                    and t["l4"] >= 0], np.int64)
    sweep = np.array([(i, k) for i in range(len(ts)) for k in range(int(lens[i]))], np.int64)
    return flat, offs, lens, meta, v4, v6, udp, tcp, sweep


M_REQ, M_L3, M_L4, M_VER, M_PROTO, M_FRAG, M_UDPLEN, M_DEND = range(8)


@njit(cache=True)
def _put16(sb, at, v):
    sb[at] = (v >> 8) & 0xFF
    sb[at + 1] = v & 0xFF


@njit(cache=True)
def generate(words, sb, pstate, k, seq0, flat, offs, lens, meta, v4, v6, udp, tcp, sweep,
             exp_mask, klass, seed):
    """Write ``k`` hostile frames into the reserved slots 0..k-1 (sequence numbers seq0 ..);
    record for each what flags it must carry (``exp_mask``, 0: none required) and its class."""
    mask = exp_mask.shape[0] - 1
    np.random.seed(seed + seq0)
    for j in range(k):
        seq = seq0 + j
        b = K.slot_base(pstate, j)
        at = b * 8 + L.SLOT_HEADER_BYTES
        want = 0
        raw_cap = -1
        if seq < sweep.shape[0]:
            c = C_TRUNC
        else:
            c = np.random.randint(0, 10)
        t = np.random.randint(0, lens.shape[0])
        if c == C_IPV4_TOTAL:
            t = v4[np.random.randint(0, v4.shape[0])]
        elif c == C_IPV6_PLEN:
            t = v6[np.random.randint(0, v6.shape[0])]
        elif c == C_UDP_LEN:
            t = udp[np.random.randint(0, udp.shape[0])]
        elif c == C_TCP_DOFF:
            t = tcp[np.random.randint(0, tcp.shape[0])]
        ln = lens[t]
        for q in range(ln):
            sb[at + q] = flat[offs[t] + q]
        if c == C_RANDOM:
            ln = np.random.randint(0, 300)
            for q in range(ln):
                sb[at + q] = np.random.randint(0, 256)
            if ln >= 15 and np.random.random() < 0.5:
                _put16(sb, at + 12, ETYPES[np.random.randint(0, ETYPES.shape[0])])
                sb[at + 14] = (0x40, 0x45, 0x46, 0x4F, 0x60, 0x61)[np.random.randint(0, 6)]
        elif c == C_TRUNC:
            cut = np.random.randint(0, ln)
            if seq < sweep.shape[0]:
                t, cut = sweep[seq, 0], sweep[seq, 1]
                for q in range(cut):
                    sb[at + q] = flat[offs[t] + q]
            if cut < meta[t, M_REQ]:
                want = R.F_TRUNCATED
            ln = cut
        elif c == C_IPV4_TOTAL:
            base = at + meta[t, M_L3]
            ihl = (sb[base] & 15) * 4
            avail = ln - meta[t, M_L3]
            v = np.random.randint(0, avail + 24) if np.random.random() < 0.7 else \
                np.random.randint(0, 65536)
            _put16(sb, base + 2, v)
            if v < ihl:
                want = R.F_MALFORMED
            elif v > avail:
                want = R.F_TRUNCATED
        elif c == C_IPV6_PLEN:
            base = at + meta[t, M_L3]
            avail = ln - meta[t, M_L3] - 40
            v = np.random.randint(0, avail + 24) if np.random.random() < 0.7 else \
                np.random.randint(0, 65536)
            _put16(sb, base + 4, v)
            if v > avail:
                want = R.F_TRUNCATED | R.F_MALFORMED
        elif c == C_UDP_LEN:
            base = at + meta[t, M_L4]
            v = np.random.randint(0, 16) if np.random.random() < 0.3 else \
                np.random.randint(0, 65536)
            _put16(sb, base + 4, v)
            if v < 8:
                want = R.F_MALFORMED
            elif v != meta[t, M_UDPLEN]:
                want = R.F_LEN_MISMATCH
        elif c == C_TCP_DOFF:
            base = at + meta[t, M_L4]
            v = np.random.randint(0, 256)
            sb[base + 12] = v
            hlen = (v >> 4) * 4
            if hlen < 20:
                want = R.F_MALFORMED
            elif hlen > meta[t, M_DEND] - meta[t, M_L4]:
                want = R.F_TRUNCATED | R.F_MALFORMED
        elif c == C_EXT_LOOP:
            m = np.random.randint(9, 41)
            for q in range(12):
                sb[at + q] = 2
            _put16(sb, at + 12, 0x86DD)
            h = at + 14
            sb[h] = 0x60
            for q in range(1, 40):
                sb[h + q] = 0
            _put16(sb, h + 4, 8 * m)
            kinds = (0, 43, 60)
            sb[h + 6] = 60
            sb[h + 7] = 64
            for e in range(m):
                x = h + 40 + 8 * e
                sb[x] = kinds[np.random.randint(0, 3)]     # the next one is another header
                sb[x + 1] = 0
                for q in range(2, 8):
                    sb[x + q] = 0
            ln = 14 + 40 + 8 * m
            if np.random.random() < 0.3:
                ln = np.random.randint(54, ln)             # and cut somewhere inside
            want = R.F_EXT_CHAIN_LIMIT | R.F_TRUNCATED
        elif c == C_VLAN_DEEP:
            d = np.random.randint(3, 9)
            for q in range(12):
                sb[at + q] = 2
            for e in range(d):
                _put16(sb, at + 12 + 4 * e, (0x8100, 0x88A8, 0x9100)[np.random.randint(0, 3)])
                _put16(sb, at + 14 + 4 * e, np.random.randint(0, 4096))
            _put16(sb, at + 12 + 4 * d, 0x0800)
            ln = 14 + 4 * d + 28
            for q in range(14 + 4 * d, ln):
                sb[at + q] = 0x45 if q == 14 + 4 * d else 0
            want = R.F_VLAN_TOO_DEEP
        elif c == C_LYING_CAPLEN:
            raw_cap = SLOT_SIZE + 1 + np.random.randint(0, 1 << 20)
            if np.random.random() < 0.2:
                raw_cap = 0xFFFFFFFF
            want = R.F_TRUNCATED
        else:                                              # C_FLIP
            for _ in range(np.random.randint(1, 7)):
                sb[at + np.random.randint(0, ln)] = np.random.randint(0, 256)
        cap = ln if raw_cap < 0 else raw_cap
        words[b + L.S_TS] = 0
        words[b + L.S_LENS] = np.int64(ln) | (np.int64(cap) << 32)
        words[b + L.S_PORTQ] = 0
        exp_mask[seq & mask] = want
        klass[seq & mask] = c


def main() -> int:
    frames, seed = int(sys.argv[1]), int(sys.argv[2])
    import fuzz_handler as H
    from engine.loop import ConsumerEngine
    from parsers.record import new_records
    from shm.ring import Ring
    import numba
    assert numba.config.BOUNDSCHECK, "run me with NUMBA_BOUNDSCHECK=1"
    ts = templates()
    flat, offs, lens, meta, v4, v6, udp, tcp, sweep = pack(ts)
    name = f"fuzz-{seed}-{int(time.time() * 1000) % 10 ** 8}"
    ring = Ring.create(name, slots=CAPACITY, slot_size=SLOT_SIZE, shm=True)
    exp_mask = np.zeros(CAPACITY, np.int64)
    klass = np.zeros(CAPACITY, np.int64)

    def new_state():
        cnt = np.zeros(64, np.int64)
        cnt[[H.N_FIRST_UNFLAGGED, H.N_FIRST_MISMATCH, H.N_FIRST_INVARIANT]] = -1
        return (cnt, exp_mask, klass, np.zeros(SLOT_SIZE, np.uint8), new_records(1))
    t0 = time.perf_counter()
    try:
        engines = {"filtered": ConsumerEngine(ring, name="fuzz-filter", filter=FILTER,
                                              handler="fuzz_handler:on_burst", burst=32,
                                              state=new_state()),
                   "all": ConsumerEngine(ring, name="fuzz-all", handler="fuzz_handler:on_burst",
                                         burst=32, state=new_state())}
        prod = ring.producer()
        t1 = time.perf_counter()
        done = 0
        while done < frames:
            k = prod.reserve(min(CAPACITY, frames - done))
            generate(ring.words, ring.slot_bytes, prod.pstate, k, done, flat, offs, lens, meta,
                     v4, v6, udp, tcp, sweep, exp_mask, klass, seed)
            prod.submit(k)
            for eng in engines.values():
                eng.run(count=k, handle_signals=False)
            done += k
        out = {"frames": done, "sweep": int(sweep.shape[0]), "templates": len(ts),
               "filter": FILTER, "boundscheck": bool(numba.config.BOUNDSCHECK)}
        for key, eng in engines.items():
            rep = eng.report()
            cnt = eng.state[0]
            out[key] = {
                "received": rep["received"], "filtered_out": rep["filtered_out"],
                "handler_errors": rep["handler_errors"], "seen": int(cnt[H.N_SEEN]),
                "bad": int(cnt[H.N_BAD]), "flagged": int(cnt[H.N_FLAGGED]),
                "unflagged": int(cnt[H.N_UNFLAGGED]), "mismatch": int(cnt[H.N_MISMATCH]),
                "invariant": int(cnt[H.N_INVARIANT]),
                "first": {"unflagged": int(cnt[H.N_FIRST_UNFLAGGED]),
                          "mismatch": int(cnt[H.N_FIRST_MISMATCH]),
                          "invariant": int(cnt[H.N_FIRST_INVARIANT])},
                "lying": int(cnt[H.N_LYING]), "lying_clamped": int(cnt[H.N_LYING_OK]),
                "classes": {CLASS_NAMES[c]: [int(cnt[H.N_CLASS_SEEN + c]),
                                             int(cnt[H.N_CLASS_FLAGGED + c])]
                            for c in range(10)}}
            eng.close()
        prod.close()
    finally:
        ring.close()
        Ring.remove(name)
        from engine.stats import remove
        remove(name)
    out["setup_s"] = round(t1 - t0, 2)
    out["run_s"] = round(time.perf_counter() - t1, 2)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    import fuzz_worker
    sys.exit(fuzz_worker.main())
