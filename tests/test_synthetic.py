"""The synthetic producer: its frames against the naive builder byte for byte, their checksums
against an independent implementation, the full policies, the pacer, and allocation-free loops.

Rings are created with the default backing: huge pages as root, POSIX shared memory (with the
backing's warning) for an ordinary user; nothing here needs root.
"""
from __future__ import annotations

import ipaddress
import os
import struct
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from engine import demo
from engine.producers import synthetic as S
from shm import Ring
from shm import layout as L

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def inet_checksum_ok(data: bytes) -> bool:
    """RFC 1071 check written independently of the module: the sum over the data including
    its checksum field folds to 0xffff."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for i in range(0, len(data), 2):
        total += data[i] << 8 | data[i + 1]
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


def slot_frame(ring: Ring, seq: int) -> tuple[bytes, np.void]:
    slot = ring.slots[seq & (ring.capacity - 1)]
    return bytes(slot["payload"][:int(slot["cap_len"])]), slot


@pytest.fixture
def ring(ring_name):
    r = Ring.create(ring_name, slots=1024, slot_size=256)
    yield r
    r.close()


def test_frames_equal_naive_builder_byte_for_byte(ring):
    t0 = time.time_ns()
    with S.SyntheticProducer(ring, rate=0, sizes=(60, 256), seed=7, variants=64, burst=16,
                             producer_id=0x0102030405060708, port=3, queue=5) as sp:
        stats = sp.run(count=1000)
        assert stats["published"] == 1000 and stats["dropped"] == 0
        assert stats["stopped_by"] == "count" and stats["next_seq"] == 1000
        for seq in range(1000):
            got, slot = slot_frame(ring, seq)
            want = S.build_frame(**sp.frame_params(seq))
            assert got == want, f"frame {seq} differs from the naive builder"
            assert int(slot["seq"]) == seq                    # the ring's stamp
            assert int(slot["wire_len"]) == int(slot["cap_len"]) == len(want)
            assert (int(slot["port"]), int(slot["queue"]), int(slot["flags"])) == (3, 5, 0)
            assert t0 <= int(slot["ts_ns"]) <= time.time_ns()
        # one timestamp per burst: 1000 frames in bursts of 16 give at most 63 distinct stamps
        assert len({int(ring.slots[i]["ts_ns"]) for i in range(1000)}) <= 63


def test_frames_are_valid_ethernet_ipv4_udp(ring):
    with S.SyntheticProducer(ring, rate=0, sizes=(60, 251), seed=3, src_net="10.7.0.0/16",
                             dst_net="10.9.8.0/24", src_hosts=4, dst_hosts=3,
                             src_ports=(40000, 40009), dst_ports=(5000, 5001)) as sp:
        sp.run(count=1024)
        pid = sp.producer_id
    sizes, srcs, dsts, sports, dports = set(), set(), set(), set(), set()
    for seq in range(1024):
        f, _ = slot_frame(ring, seq)
        assert 60 <= len(f) <= 251
        sizes.add(len(f))
        assert f[12:14] == b"\x08\x00"
        ip = f[14:34]
        ver_ihl, _, total, ip_id, frag, ttl, proto, _, src, dst = struct.unpack("!BBHHHBBHII", ip)
        assert (ver_ihl, proto, ttl, frag) == (0x45, 17, 64, 0x4000)
        assert total == len(f) - 14 and ip_id == seq & 0xFFFF
        assert inet_checksum_ok(ip), f"frame {seq}: bad IPv4 header checksum"
        sport, dport, ulen, ucsum = struct.unpack("!HHHH", f[34:42])
        assert ulen == len(f) - 34 == total - 20
        pseudo = struct.pack("!IIBBH", src, dst, 0, 17, ulen)
        assert ucsum != 0 and inet_checksum_ok(pseudo + f[34:]), f"frame {seq}: bad UDP sum"
        assert struct.unpack("!QQ", f[42:58]) == (pid, seq)
        assert ipaddress.ip_address(src) in ipaddress.ip_network("10.7.0.0/16")
        assert ipaddress.ip_address(dst) in ipaddress.ip_network("10.9.8.0/24")
        assert 40000 <= sport <= 40009 and 5000 <= dport <= 5001
        srcs.add(src), dsts.add(dst), sports.add(sport), dports.add(dport)
    # varied, from the small pools asked for
    assert len(sizes) > 50 and min(sizes) < 80 and max(sizes) > 230
    assert len(srcs) == 4 and len(dsts) == 3 and len(sports) > 5 and len(dports) == 2


def test_seed_makes_templates_reproducible(ring_name):
    with Ring.create(ring_name, slots=64, slot_size=128) as r:
        a = S.SyntheticProducer(r, seed=1, producer_id=9)
        params_a = [a.frame_params(s) for s in range(64)]
        a.close()
        b = S.SyntheticProducer(r, seed=1, producer_id=9)
        assert [b.frame_params(s) for s in range(64)] == params_a
        b.close()
        c = S.SyntheticProducer(r, seed=2, producer_id=9)
        assert [c.frame_params(s) for s in range(64)] != params_a
        c.close()


def test_demo_checker_accepts_frames_and_rejects_corruption(ring):
    with S.SyntheticProducer(ring, rate=0, sizes=(60, 200), seed=5) as sp:
        sp.run(count=64)
        pid = sp.producer_id
    def check(frame: np.ndarray, cap: int, w0: int = 3):
        # the frame at an 8-aligned offset of a buffer padded to whole words, as in a slot
        buf = np.zeros(8 * w0 + (len(frame) + 7) // 8 * 8, dtype=np.uint8)
        buf[8 * w0:8 * w0 + len(frame)] = frame
        return demo.check_frame(buf, buf.view(np.int64), w0, cap, True)

    for seq in range(64):
        f, _ = slot_frame(ring, seq)
        buf = np.frombuffer(f, dtype=np.uint8).copy()
        assert check(buf, len(f)) == (True, pid, seq)
        for pos in (15, 24, 27, 33, 35, 41, 45, 55, len(f) - 1):   # headers, sums, payload
            bad = buf.copy()
            bad[pos] ^= 0x40
            assert not check(bad, len(f))[0], (seq, pos)
        assert not check(buf, len(f) - 1)[0]                      # truncated capture


def test_demo_consumer_counts_corrupt_slots_as_bad(ring_name):
    with Ring.create(ring_name, slots=256, slot_size=256) as r:
        c = r.consumer()
        with S.SyntheticProducer(r, rate=0, sizes=(60, 256)) as sp:
            sp.run(count=200)
        for seq, pos in ((3, 30), (50, 61), (51, 100), (120, 35)):     # flip bits in place
            base = (seq & 255) * r.slot_stride + L.SLOT_HEADER_BYTES
            if pos < int(r.slots[seq]["cap_len"]):
                r.slot_bytes[base + pos] ^= 0x01
        stats = np.zeros(demo.STATS_WORDS, np.int64)
        tab = np.zeros((demo.SEQTAB_ROWS, 3), np.int64)
        demo.consume(r.ctrl, r.words, r.slot_bytes, c.cstate, stats, tab, 64, 10, 10**9, True)
        corrupted = sum(1 for seq, pos in ((3, 30), (50, 61), (51, 100), (120, 35))
                        if pos < int(r.slots[seq]["cap_len"]))
        assert stats[demo.D_FRAMES] == 200 and stats[demo.D_BAD] == corrupted >= 3
        assert stats[demo.D_GAPS] == corrupted                  # the frames it threw away
        assert stats[demo.D_OOO] == 0 and tab[0, 2] == 0
        c.close()


def test_drop_policy_counts_drops_and_burns_their_sequence_numbers(ring_name):
    with Ring.create(ring_name, slots=256, slot_size=128, full_policy="drop") as r:
        c = r.consumer()                     # joins and never releases: the ring fills
        with S.SyntheticProducer(r, rate=0, sizes=(64, 128), burst=32) as sp:
            st = sp.run(count=1000)
        assert (st["published"], st["dropped"], st["next_seq"]) == (256, 744, 1000)
        assert int(r.ctrl[L.PS_DROPPED_FULL]) == 744 and st["full_waits"] > 0
        seqs = [struct.unpack("!Q", bytes(b["payload"][50:58]))[0] for b in c.poll(256)]
        assert seqs == list(range(256))
        c.close()


def test_wait_policy_waits_for_room_and_still_honours_the_duration(ring_name):
    with Ring.create(ring_name, slots=128, slot_size=128, full_policy="wait",
                     consumer_timeout=30.0) as r:
        c = r.consumer()
        with S.SyntheticProducer(r, rate=0, sizes=(64, 64)) as sp:
            t = time.monotonic()
            st = sp.run(duration=0.3)
            assert 0.25 < time.monotonic() - t < 5
            assert st["stopped_by"] == "duration"
            assert (st["published"], st["dropped"], st["frames"]) == (128, 0, 128)
            assert st["full_waits"] > 0
            # room appears: the producer carries on from where it waited, nothing lost
            assert len(c.poll(128)) == 128
            c.release()
            st = sp.run(count=100)
            assert (st["published"], st["first_seq"]) == (100, 128)
        c.close()


def test_lossy_ring_never_waits(ring_name):
    with Ring.create(ring_name, slots=64, slot_size=128, mode="lossy") as r:
        c = r.consumer()
        with S.SyntheticProducer(r, rate=0) as sp:
            st = sp.run(count=10_000)
        assert (st["published"], st["dropped"]) == (10_000, 0)
        c.close()


@pytest.mark.parametrize("rate", [50_000, 400_000])
def test_pacer_hits_the_target_rate(ring_name, rate):
    with Ring.create(ring_name, slots=1024, slot_size=128) as r:
        with S.SyntheticProducer(r, rate=rate) as sp:
            sp.warmup()
            st = sp.run(duration=0.5)
            # loose bounds: this is a shared 2-core machine; the pacer never runs early and
            # catches up after a preemption, so the total lands close to the target
            assert 0.7 * rate <= st["rate_pps"] <= 1.05 * rate, st
            t = time.perf_counter()
            st = sp.run(count=rate // 10)
            assert time.perf_counter() - t >= 0.09          # 0.1 s of frames at the target
            assert st["published"] == rate // 10


def test_flat_out_is_much_faster_than_paced(ring_name):
    with Ring.create(ring_name, slots=4096, slot_size=128) as r:
        with S.SyntheticProducer(r, rate=0) as sp:
            sp.warmup()
            st = sp.run(count=500_000)
        assert st["rate_pps"] > 2e6, st                     # tens of Mpps when undisturbed


def test_low_rate_sleeps_instead_of_spinning(ring_name):
    with Ring.create(ring_name, slots=64, slot_size=128) as r:
        with S.SyntheticProducer(r, rate=100) as sp:
            sp.warmup()
            cpu = time.process_time()
            st = sp.run(duration=0.5)
            assert time.process_time() - cpu < 0.3          # mostly asleep
            assert 40 <= st["published"] <= 55


@pytest.mark.parametrize("kwargs, key", [
    (dict(sizes=(64, 4000)), "sizes"),                       # larger than the slot
    (dict(sizes=(59, 100)), "sizes"),                        # below Ethernet's minimum
    (dict(sizes=(100, 64)), "sizes"),
    (dict(rate=-1), "rate"),
    (dict(rate="fast"), "rate"),
    (dict(burst=0), "burst"),
    (dict(variants=100), "variants"),
    (dict(src_net="10.0.0.300/8"), "src_net"),
    (dict(dst_net="fe80::/64"), "dst_net"),
    (dict(src_net="10.0.0.0/30", src_hosts=3), "src_hosts"),
    (dict(dst_ports=(0, 10)), "dst_ports"),
    (dict(producer_id=-1), "producer_id"),
    (dict(src_mac="02:00"), "src_mac"),
])
def test_bad_settings_name_their_key(ring_name, kwargs, key):
    with Ring.create(ring_name, slots=64, slot_size=256) as r:
        with pytest.raises(S.SynthConfigError) as e:
            S.SyntheticProducer(r, **kwargs)
        assert e.value.key == key and str(e.value).startswith(key + ": ")
        assert int(r.header["producer_pid"]) == 0           # failed before attaching


def test_run_arguments_are_checked(ring):
    with S.SyntheticProducer(ring) as sp:
        with pytest.raises(S.SynthConfigError, match="count"):
            sp.run(count=-5)
        with pytest.raises(S.SynthConfigError, match="duration"):
            sp.run(duration=-1)
        assert sp.run(count=0)["published"] == 0


def test_hot_loops_do_not_allocate(ring_name):
    """Numba's NRT statistics: what a call of the producer's or a consumer's loop allocates
    does not grow with the frames it handles (the only allocations are the array arguments'
    wrappers at the Python boundary, a constant per call)."""
    code = textwrap.dedent(f"""
        import numpy as np
        from numba.core.runtime import rtsys
        from engine import demo
        from engine.producers.synthetic import SyntheticProducer
        from shm import Ring
        r = Ring.create({ring_name + '.nrt'!r}, slots=1024, slot_size=128)
        try:
            c = r.consumer()
            sp = SyntheticProducer(r, rate=0)
            stats = np.zeros(demo.STATS_WORDS, np.int64)
            tab = np.zeros((demo.SEQTAB_ROWS, 3), np.int64)
            args = (r.ctrl, r.words, r.slot_bytes, c.cstate, stats, tab)

            def round(n):
                a = rtsys.get_allocation_stats()
                sp.run(count=n)
                demo.consume(*args, 64, 10, 10**9, True)
                b = rtsys.get_allocation_stats()
                return b.alloc - a.alloc, b.free - a.free

            round(10)                                    # compile
            small = [round(1) for _ in range(5)]
            large = [round(1000) for _ in range(5)]
            assert stats[demo.D_FRAMES] == 5015 and stats[demo.D_GAPS] == 0, stats
            assert stats[demo.D_BAD] == 0 and stats[demo.D_OOO] == 0
            print("small", small, "large", large)
            assert small == large and small[0][0] == small[0][1]
        finally:
            r.close(); Ring.remove({ring_name + '.nrt'!r})
    """)
    env = dict(os.environ, NUMBA_NRT_STATS="1")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr


def test_a_long_pacing_gap_does_not_overrun_the_duration(ring_name):
    with Ring.create(ring_name, slots=64, slot_size=128) as r:
        with S.SyntheticProducer(r, rate=0.5) as sp:             # one frame every 2 s
            sp.warmup()
            t = time.monotonic()
            st = sp.run(duration=0.3)
            assert time.monotonic() - t < 0.6 and st["published"] == 0
            t = time.monotonic()
            st = sp.run(duration=5, stop=lambda: time.monotonic() - t > 0.2)
            assert time.monotonic() - t < 0.5 and st["stopped_by"] == "stop"
