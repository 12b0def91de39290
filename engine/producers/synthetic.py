"""The synthetic producer: real Ethernet II / IPv4 / UDP frames, written straight into ring slots.

Frame layout (offsets in the slot's payload; ``size`` is the frame's length in the slot, from
the Ethernet header to the end of the UDP payload, without the FCS; ``wire_len == size``)::

    0   dst MAC (6)        6  src MAC (6)        12 ethertype 0x0800
    14  IPv4: 0x45, tos 0, total length = size - 14, id = seq & 0xffff, DF, ttl 64, proto 17,
        header checksum, src address, dst address                       (20 bytes, no options)
    34  UDP: src port, dst port, length = size - 34, checksum (RFC 768, over the pseudo-header)
    42  producer id  (8 bytes, big-endian)
    50  sequence     (8 bytes, big-endian; frame number of this producer, from 0)
    58  fill: byte i of the frame is ``i & 0xff``

Every frame is built from one of ``variants`` (a power of two) templates drawn at setup with a
seeded generator: a size in ``[min, max]``, a source address from a small pool in ``src_net``, a
destination from a pool in ``dst_net``, a source and a destination port from their ranges.
Frame ``seq`` uses template ``seq & (variants - 1)``.  The hot loop copies the template (8 bytes
at a time) and patches what depends on ``seq``: the IP id, the sequence number and the two
checksums, which are finished incrementally (RFC 1624) from sums precomputed over the template,
so a frame costs a short copy and a few adds.  ``build_frame`` below is the naive pure-Python
reference the tests compare the slots with, byte for byte.

Overload behaviour (the ring's, decided at its creation): *lossless + drop* publishes what fits
and counts the rest with ``kernels.count_dropped``; the dropped frames still use up their
sequence numbers, so a consumer sees exactly the producer's drops as gaps.  *lossless + wait*
spins on ``reserve`` until consumers make room (nothing is lost; the pacer catches up
afterwards, at most ``max_backlog`` frames at once).  *lossy* never waits.

Pacing: one clock read (CLOCK_REALTIME, ``shm.clock.now_ns``) per burst serves as the burst's
timestamp, the producer heartbeat and the pacer's clock.  A burst goes out when the frames it
holds are due (``rate`` frames per second since the start); until then the loop spins on the
clock, or hands back to Python to sleep when the next frame is more than ``SLEEP_NS`` away.
Single producer only (the ring refuses a second live one at attach).
"""
from __future__ import annotations

import ipaddress
import os
import struct
import time

import numpy as np
from numba import njit

from shm import kernels as K
from shm import layout as L
from shm.clock import now_ns
from shm.ring import Producer, Ring

ETH_HLEN, IP_HLEN, UDP_HLEN = 14, 20, 8
OFF_IP = ETH_HLEN
OFF_IP_ID = OFF_IP + 4
OFF_IP_SUM = OFF_IP + 10
OFF_UDP = OFF_IP + IP_HLEN
OFF_UDP_SUM = OFF_UDP + 6
OFF_PRODUCER_ID = OFF_UDP + UDP_HLEN          # 42
OFF_SEQ = OFF_PRODUCER_ID + 8                 # 50 (even: the seq is 4 aligned 16-bit words
OFF_FILL = OFF_SEQ + 8                        #     of the UDP checksum sum)
MIN_FRAME = 60       # Ethernet's minimum frame without its FCS (our 58 bytes of headers fit)
MAX_FRAME = L.MAX_SLOT_SIZE
IP_TTL = 64
IP_DF = 0x4000
DEFAULT_SRC_MAC = bytes.fromhex("020000000001")   # locally administered
DEFAULT_DST_MAC = bytes.fromhex("020000000002")

# private state words of the producer loop (process-local, never shared)
ST_SEQ = 0           # next frame number (sequence number written in the payload)
ST_PUBLISHED = 1     # frames published by this producer object
ST_DROPPED = 2       # frames dropped (ring full, lossless + drop)
ST_BYTES = 3         # bytes published
ST_T0 = 4            # pacer: clock at the start of the run
ST_PACE_SEQ = 5      # pacer: frame number that was due at ST_T0
ST_SLEEP_NS = 6      # RET_SLEEP: how long until the next frame is due
ST_FULL_SPINS = 7    # reserve calls that found the ring full while waiting
ST_BURSTS = 8        # bursts submitted
STATE_WORDS = 16

RET_COUNT, RET_DEADLINE, RET_CHUNK, RET_SLEEP = 0, 1, 2, 3
SLEEP_NS = 500_000   # pacing gaps longer than this are slept in Python instead of spun
HOLD_NS = 20_000     # a partial burst waits at most this long for the rest of it (pacing)
CHUNK_NS = 20_000_000  # hand back to Python this often (Ctrl-C, stop flags, deadlines)


# --- the hot loop -----------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _fold(s):
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return s


@njit(cache=True, nogil=True)
def produce(ctrl, words, slot_bytes, pstate, tmpl, tlen, ip_sum, udp_sum, st, limit, until_ns,
            chunk_ns, pkts_per_ns, hold_ns, max_backlog, burst, wait_full, portq):
    """Generate frames ``st[ST_SEQ]`` onwards into the ring until ``limit`` frames (-1: no
    limit), until ``until_ns`` (CLOCK_REALTIME, 0: none), or for ``chunk_ns``; returns RET_*.

    ``pkts_per_ns`` > 0 paces to that rate from ``st[ST_T0]`` (a partial burst waits at most
    ``hold_ns`` for the rest of it); 0 runs flat out.  ``wait_full`` is the lossless + wait
    policy.  Allocates nothing; reads the clock once per burst (plus once per spin while
    pacing or waiting on a full ring).  Single producer only."""
    vmask = tlen.shape[0] - 1
    now = now_ns()
    chunk_end = now + chunk_ns
    while True:
        seq = st[ST_SEQ]
        if limit >= 0 and seq >= limit:
            return RET_COUNT
        if until_ns != 0 and now >= until_ns:
            return RET_DEADLINE
        if now >= chunk_end:
            return RET_CHUNK
        n = burst
        if limit >= 0 and limit - seq < n:
            n = limit - seq
        if pkts_per_ns > 0.0:
            done = seq - st[ST_PACE_SEQ]
            due = np.int64((now - st[ST_T0]) * pkts_per_ns) - done
            if due <= 0:
                # slow path: not due yet.  Spin on the clock, or let Python sleep a long gap
                # (a low rate must not burn a core).
                wait = np.int64((done + 1) / pkts_per_ns) - (now - st[ST_T0])
                if until_ns != 0 and until_ns - now < wait:
                    wait = until_ns - now           # never sleep past the deadline
                if wait > SLEEP_NS:
                    st[ST_SLEEP_NS] = wait
                    return RET_SLEEP
                now = now_ns()
                continue
            if due > max_backlog:
                # far behind (descheduled, or held back by a full ring): forget the excess
                # instead of flooding the consumers with it; the average rate dips, honestly
                st[ST_PACE_SEQ] -= due - max_backlog
                due = max_backlog
            if due < n:
                # part of a burst is due: hold it back for up to hold_ns so that frames go out
                # in bursts (one reserve/submit and one consumer wake-up per burst, not per
                # frame); at low rates the hold bounds the delay and bursts shrink to 1
                oldest = st[ST_T0] + np.int64((done + 1) / pkts_per_ns)
                if now - oldest < hold_ns:
                    now = now_ns()
                    continue
                n = due
        k = K.reserve(ctrl, words, pstate, n)
        if k < n:
            if wait_full:
                if k == 0:
                    # lossless + wait and full: spin until a consumer releases (or is evicted
                    # by reserve's reaper); the clock read keeps the chunk deadline alive
                    st[ST_FULL_SPINS] += 1
                    now = now_ns()
                    continue
                n = k                               # publish what fits, the rest next burst
            else:
                K.count_dropped(ctrl, pstate, n - k)   # lossless + drop: count, move on
                st[ST_DROPPED] += n - k
        nbytes = 0
        for j in range(k):
            s = seq + j
            v = s & vmask
            size = tlen[v]
            base = K.slot_base(pstate, j)
            pw = base + L.S_PAYLOAD
            # whole words: up to 7 bytes past the frame land in the slot's own padding
            # (stride >= 32 + slot_size rounded up to 8, and size <= slot_size)
            for w in range((size + 7) >> 3):
                words[pw + w] = tmpl[v, w]
            off = pw * 8
            ip_id = s & 0xFFFF
            c = (~_fold(ip_sum[v] + ip_id)) & 0xFFFF
            u = udp_sum[v] + ((s >> 48) & 0xFFFF) + ((s >> 32) & 0xFFFF) \
                + ((s >> 16) & 0xFFFF) + (s & 0xFFFF)
            u = (~_fold(u)) & 0xFFFF
            if u == 0:
                u = 0xFFFF                          # RFC 768: 0 means "no checksum"
            slot_bytes[off + OFF_IP_ID] = ip_id >> 8
            slot_bytes[off + OFF_IP_ID + 1] = ip_id & 0xFF
            slot_bytes[off + OFF_IP_SUM] = c >> 8
            slot_bytes[off + OFF_IP_SUM + 1] = c & 0xFF
            slot_bytes[off + OFF_UDP_SUM] = u >> 8
            slot_bytes[off + OFF_UDP_SUM + 1] = u & 0xFF
            for b in range(8):
                slot_bytes[off + OFF_SEQ + b] = (s >> (56 - 8 * b)) & 0xFF
            words[base + L.S_TS] = now              # one timestamp per burst
            words[base + L.S_LENS] = size | (size << 32)
            words[base + L.S_PORTQ] = portq
            nbytes += size
        if k > 0:
            K.submit(ctrl, words, pstate, k, now)
            st[ST_PUBLISHED] += k
            st[ST_BYTES] += nbytes
            st[ST_BURSTS] += 1
        st[ST_SEQ] = seq + n                        # dropped frames use up their numbers
        now = now_ns()


# --- setup (plain Python / numpy) -------------------------------------------------------------
class SynthConfigError(ValueError):
    """A bad synthetic-producer setting; ``key`` names it."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key


def _mac(value, key) -> bytes:
    if isinstance(value, (bytes, bytearray)) and len(value) == 6:
        return bytes(value)
    if isinstance(value, str):
        try:
            b = bytes.fromhex(value.replace(":", "").replace("-", ""))
        except ValueError:
            b = b""
        if len(b) == 6:
            return b
    raise SynthConfigError(key, f"expected a MAC address like 02:00:00:00:00:01, got {value!r}")


def _net(value, key) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(value, strict=False)
    except (ValueError, TypeError):
        raise SynthConfigError(key, f"expected an IPv4 network like 10.1.0.0/16, got {value!r}") \
            from None
    if net.version != 4:
        raise SynthConfigError(key, f"expected an IPv4 network, got {value!r}")
    return net


def _int_range(value, key, lo, hi) -> tuple[int, int]:
    try:
        a, b = (int(x) for x in value)
    except (TypeError, ValueError):
        raise SynthConfigError(key, f"expected (min, max), got {value!r}") from None
    if not lo <= a <= b <= hi:
        raise SynthConfigError(key, f"expected {lo} <= min <= max <= {hi}, got ({a}, {b})")
    return a, b


def _pool(rng, net: ipaddress.IPv4Network, count: int, key: str) -> np.ndarray:
    """``count`` distinct host addresses of ``net`` (as u32), drawn with ``rng``."""
    first = int(net.network_address) + (1 if net.prefixlen <= 30 else 0)
    hosts = net.num_addresses - (2 if net.prefixlen <= 30 else 0)
    if not isinstance(count, int) or not 1 <= count <= min(hosts, 1 << 16):
        raise SynthConfigError(key, f"expected 1..{min(hosts, 1 << 16)} hosts for {net}, "
                                    f"got {count!r}")
    return first + rng.choice(hosts, size=count, replace=False).astype(np.int64)


def checksum16(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``, naively: for references and tests."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def build_frame(size: int, src_ip: int, dst_ip: int, sport: int, dport: int, producer_id: int,
                seq: int, src_mac: bytes = DEFAULT_SRC_MAC,
                dst_mac: bytes = DEFAULT_DST_MAC) -> bytes:
    """The naive reference: one synthetic frame, field by field with ``struct``."""
    udp_len = size - ETH_HLEN - IP_HLEN
    payload = struct.pack("!QQ", producer_id & (2**64 - 1), seq) + \
        bytes(i & 0xFF for i in range(OFF_FILL, size))
    ip = struct.pack("!BBHHHBBHII", 0x45, 0, size - ETH_HLEN, seq & 0xFFFF, IP_DF, IP_TTL, 17,
                     0, src_ip, dst_ip)
    ip = ip[:10] + struct.pack("!H", checksum16(ip)) + ip[12:]
    pseudo = struct.pack("!IIBBH", src_ip, dst_ip, 0, 17, udp_len)
    udp = struct.pack("!HHHH", sport, dport, udp_len, 0)
    csum = checksum16(pseudo + udp + payload) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", csum)
    return dst_mac + src_mac + b"\x08\x00" + ip + udp + payload


def _be_sum16(frames: np.ndarray, start: int, stop: np.ndarray) -> np.ndarray:
    """Per row, the unfolded sum of the big-endian 16-bit words of ``frames[r, start:stop[r]]``
    (``start`` even, rows of even width; an odd last byte counts as its word's high byte)."""
    cols = np.arange(frames.shape[1])
    keep = (cols[None, :] >= start) & (cols[None, :] < stop[:, None])
    b = np.where(keep, frames.astype(np.int64), 0)
    return (b[:, 0::2] << 8).sum(axis=1) + b[:, 1::2].sum(axis=1)


class SyntheticProducer:
    """Synthetic UDP traffic into a ring, as its single producer.  Setup only: ``run`` calls the
    ``@njit`` loop ``produce`` with arrays prepared here.

    ``rate`` frames per second (None or 0: flat out); ``sizes`` (min, max) frame bytes, within
    the ring's slot size; ``seed`` makes the templates reproducible; ``burst`` frames per
    reserve/submit; ``variants`` templates (a power of two); ``producer_id`` the 8-byte id in
    every payload (default: this pid)."""

    def __init__(self, ring: Ring, rate: float | None = 1_000_000, sizes=(64, 128), seed: int = 0,
                 burst: int = 32, variants: int = 1024, producer_id: int | None = None,
                 src_net="10.1.0.0/16", dst_net="10.2.0.0/16", src_hosts: int = 8,
                 dst_hosts: int = 8, src_ports=(49152, 65535), dst_ports=(30001, 30008),
                 src_mac=DEFAULT_SRC_MAC, dst_mac=DEFAULT_DST_MAC, port: int = 0, queue: int = 0,
                 max_backlog: int | None = None):
        # --- validate at the edge; every message names its key ---------------------------
        if rate is None:
            rate = 0
        try:
            rate = float(rate)
        except (TypeError, ValueError):
            raise SynthConfigError("rate", f"expected frames per second, got {rate!r}") from None
        if not (rate >= 0 and rate < 1e10):
            raise SynthConfigError("rate", f"expected 0 (flat out) or a positive number of "
                                           f"frames per second, got {rate!r}")
        lo, hi = _int_range(sizes, "sizes", MIN_FRAME, MAX_FRAME)
        if hi > ring.slot_size:
            raise SynthConfigError("sizes", f"max frame {hi} B does not fit the ring's "
                                            f"{ring.slot_size}-byte slots")
        if not isinstance(burst, int) or not 1 <= burst <= min(4096, ring.capacity):
            raise SynthConfigError("burst", f"expected 1..{min(4096, ring.capacity)}, got "
                                            f"{burst!r}")
        if not isinstance(variants, int) or variants < 1 or variants & (variants - 1) \
                or variants * hi > 64 << 20:
            raise SynthConfigError("variants", f"expected a power of two with variants * max "
                                               f"size <= 64 MiB, got {variants!r}")
        sp = _int_range(src_ports, "src_ports", 1, 65535)
        dp = _int_range(dst_ports, "dst_ports", 1, 65535)
        if producer_id is None:
            producer_id = os.getpid()
        if not isinstance(producer_id, int) or not 0 <= producer_id < 2**64:
            raise SynthConfigError("producer_id", f"expected 0 .. 2**64-1, got {producer_id!r}")
        for key, v in (("port", port), ("queue", queue)):
            if not isinstance(v, int) or not 0 <= v <= 0xFFFF:
                raise SynthConfigError(key, f"expected 0..65535, got {v!r}")
        if max_backlog is None:
            # at most 10 ms of traffic (and at least a few bursts) in one catch-up
            max_backlog = max(4 * burst, int(rate / 100))
        self.rate = rate
        self.sizes = (lo, hi)
        self.burst = burst
        self.max_backlog = int(max_backlog)
        self.hold_ns = HOLD_NS
        self.producer_id = producer_id
        self.src_mac = _mac(src_mac, "src_mac")
        self.dst_mac = _mac(dst_mac, "dst_mac")
        rng = np.random.default_rng(seed)
        src_pool = _pool(rng, _net(src_net, "src_net"), src_hosts, "src_hosts")
        dst_pool = _pool(rng, _net(dst_net, "dst_net"), dst_hosts, "dst_hosts")

        # --- the plan: one row per template -------------------------------------------------
        self.plan_size = rng.integers(lo, hi + 1, size=variants).astype(np.int64)
        self.plan_src = src_pool[rng.integers(0, len(src_pool), size=variants)]
        self.plan_dst = dst_pool[rng.integers(0, len(dst_pool), size=variants)]
        self.plan_sport = rng.integers(sp[0], sp[1] + 1, size=variants).astype(np.int64)
        self.plan_dport = rng.integers(dp[0], dp[1] + 1, size=variants).astype(np.int64)
        self._build_templates()

        # --- attach as the ring's producer (last: nothing above can fail after it) -----------
        self.ring = ring
        self.producer = Producer(ring)
        self.ctrl, self.words, self.slot_bytes = (self.producer.ctrl, self.producer.words,
                                                  self.producer.slot_bytes)
        self.pstate = self.producer.pstate
        self.state = np.zeros(STATE_WORDS, dtype=np.int64)
        self.wait_full = bool(ring.mode == L.MODE_LOSSLESS and ring.full_policy == L.FULL_WAIT)
        self.portq = port | (queue << 16)
        self._closed = False

    def _build_templates(self) -> None:
        """Template frames (seq = 0, IP id = 0, checksums 0) as an int64 [variants, words]
        array, and the unfolded checksum sums the hot loop finishes per frame."""
        v = len(self.plan_size)
        width = (self.sizes[1] + 7) // 8 * 8
        t = np.zeros((v, width), dtype=np.uint8)
        size = self.plan_size

        def put16(col, val):
            t[:, col] = (val >> 8) & 0xFF
            t[:, col + 1] = val & 0xFF

        def put32(col, val):
            put16(col, (val >> 16) & 0xFFFF)
            put16(col + 2, val & 0xFFFF)

        t[:, 0:6] = np.frombuffer(self.dst_mac, dtype=np.uint8)
        t[:, 6:12] = np.frombuffer(self.src_mac, dtype=np.uint8)
        put16(12, np.full(v, 0x0800))
        t[:, OFF_IP] = 0x45
        put16(OFF_IP + 2, size - ETH_HLEN)
        put16(OFF_IP + 6, np.full(v, IP_DF))
        t[:, OFF_IP + 8] = IP_TTL
        t[:, OFF_IP + 9] = 17
        put32(OFF_IP + 12, self.plan_src)
        put32(OFF_IP + 16, self.plan_dst)
        put16(OFF_UDP, self.plan_sport)
        put16(OFF_UDP + 2, self.plan_dport)
        put16(OFF_UDP + 4, size - OFF_UDP)
        pid = self.producer_id
        t[:, OFF_PRODUCER_ID:OFF_SEQ] = np.frombuffer(pid.to_bytes(8, "big"), dtype=np.uint8)
        cols = np.arange(width)
        fill = (cols & 0xFF).astype(np.uint8)
        in_fill = (cols[None, :] >= OFF_FILL) & (cols[None, :] < size[:, None])
        t[:] = np.where(in_fill, fill[None, :], t)
        self.tmpl_bytes = t
        self.tmpl = t.view(np.int64)
        self.tlen = size.copy()
        self.ip_sum = _be_sum16(t, OFF_IP, np.full(v, OFF_UDP))
        udp_len = size - OFF_UDP
        pseudo = ((self.plan_src >> 16) + (self.plan_src & 0xFFFF) + (self.plan_dst >> 16)
                  + (self.plan_dst & 0xFFFF) + 17 + udp_len)
        self.udp_sum = pseudo + _be_sum16(t, OFF_UDP, size)

    # --- introspection, for tests and reports -----------------------------------------------
    def frame_params(self, seq: int) -> dict:
        """The arguments of ``build_frame`` for frame ``seq`` (the naive reference's input)."""
        v = seq & (len(self.plan_size) - 1)
        return dict(size=int(self.plan_size[v]), src_ip=int(self.plan_src[v]),
                    dst_ip=int(self.plan_dst[v]), sport=int(self.plan_sport[v]),
                    dport=int(self.plan_dport[v]), producer_id=self.producer_id, seq=seq,
                    src_mac=self.src_mac, dst_mac=self.dst_mac)

    @property
    def next_seq(self) -> int:
        return int(self.state[ST_SEQ])

    # --- running ------------------------------------------------------------------------------
    def _call(self, limit: int, until_ns: int, chunk_ns: int) -> int:
        return produce(self.ctrl, self.words, self.slot_bytes, self.pstate, self.tmpl, self.tlen,
                       self.ip_sum, self.udp_sum, self.state, limit, until_ns, chunk_ns,
                       self.rate / 1e9, self.hold_ns, self.max_backlog, self.burst, self.wait_full,
                       self.portq)

    def warmup(self) -> float:
        """Compile (or load from the cache) the hot loop without publishing; returns seconds."""
        t = time.perf_counter()
        self._call(self.next_seq, 0, 0)            # limit reached at once: nothing published
        return time.perf_counter() - t

    def run(self, count: int | None = None, duration: float | None = None, stop=None) -> dict:
        """Publish ``count`` frames (published + dropped), or for ``duration`` seconds, or until
        ``stop()`` returns true (checked every 20 ms) or Ctrl-C; whichever comes first.
        Returns the run's statistics.  Calling ``run`` again continues the sequence."""
        if count is not None and (not isinstance(count, int) or count < 0):
            raise SynthConfigError("count", f"expected a frame count >= 0, got {count!r}")
        if duration is not None and not (isinstance(duration, (int, float)) and duration >= 0):
            raise SynthConfigError("duration", f"expected seconds >= 0, got {duration!r}")
        st = self.state
        first_seq = int(st[ST_SEQ])
        before = st.copy()
        full_waits0 = int(self.ctrl[L.PS_FULL_WAITS])
        limit = first_seq + count if count is not None else -1
        start = time.time_ns()
        until = start + int(duration * 1e9) if duration is not None else 0
        if until == start and duration is not None:
            limit = first_seq                      # duration 0: nothing to do
        st[ST_T0] = start
        st[ST_PACE_SEQ] = first_seq
        t0 = time.perf_counter()
        why = "stop"
        try:
            while True:
                r = self._call(limit, until, CHUNK_NS)
                if r == RET_COUNT:
                    why = "count"
                    break
                if r == RET_DEADLINE:
                    why = "duration"
                    break
                if r == RET_SLEEP:
                    # a long pacing gap: sleep most of it (Python's sleep overshoots a little),
                    # 50 ms at most at a time so that stop() and Ctrl-C stay prompt
                    K.producer_idle(self.ctrl, self.pstate, time.time_ns())
                    time.sleep(min(0.05, max(0.0, (int(st[ST_SLEEP_NS]) - 200_000) / 1e9)))
                if stop is not None and stop():
                    break
        except KeyboardInterrupt:
            why = "interrupt"
        elapsed = time.perf_counter() - t0
        published = int(st[ST_PUBLISHED] - before[ST_PUBLISHED])
        frames = int(st[ST_SEQ] - first_seq)
        return {
            "ring": self.ring.name,
            "producer_id": self.producer_id,
            "stopped_by": why,
            "frames": frames,
            "published": published,
            "dropped": int(st[ST_DROPPED] - before[ST_DROPPED]),
            "bytes": int(st[ST_BYTES] - before[ST_BYTES]),
            "bursts": int(st[ST_BURSTS] - before[ST_BURSTS]),
            "full_waits": int(self.ctrl[L.PS_FULL_WAITS]) - full_waits0,
            "first_seq": first_seq,
            "next_seq": int(st[ST_SEQ]),
            "elapsed_s": elapsed,
            "target_pps": self.rate or None,
            "rate_pps": published / elapsed if elapsed > 0 else 0.0,
            "sizes": list(self.sizes),
        }

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.producer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
