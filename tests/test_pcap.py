"""pcap / pcapng reading against an independent struct-based writer, every truncation, and the
files tcpdump and tshark's editcap write."""
from __future__ import annotations

import shutil
import struct
import subprocess

import numpy as np
import pytest

from parsers import pcap as P
from shm import layout as L

pytestmark = pytest.mark.pure          # computation only: as root, as any user (conftest)

FRAMES = [bytes((i * 7 + k) & 0xFF for k in range(n)) for i, n in
          enumerate([60, 64, 1514, 14, 300, 9000, 0, 128])]
TS = [1_700_000_000_123_456_789 + i * 1_000_003 for i in range(len(FRAMES))]


def classic(frames, ts_ns, nano=True, endian="<", linktype=1, snap=262144, orig_extra=0):
    magic = P.PCAP_MAGIC_NS if nano else P.PCAP_MAGIC_US
    out = [struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, snap, linktype)]
    for fr, ts in zip(frames, ts_ns):
        sec, frac = divmod(ts, 10**9)
        if not nano:
            frac //= 1000
        out.append(struct.pack(endian + "IIII", sec, frac, len(fr), len(fr) + orig_extra) + fr)
    return b"".join(out)


def _opt(endian, code, value):
    pad = b"\0" * (-len(value) % 4)
    return struct.pack(endian + "HH", code, len(value)) + value + pad


def _block(endian, btype, body):
    body += b"\0" * (-len(body) % 4)
    n = 12 + len(body)
    return struct.pack(endian + "II", btype, n) + body + struct.pack(endian + "I", n)


def pcapng(sections, endian="<"):
    """sections: list of (interfaces [(linktype, tsresol byte or None, tsoffset s)],
    packets [(iface, ts_units, frame, kind)]) where kind is 'epb', 'spb' or 'pb'."""
    out = []
    for ifaces, packets in sections:
        out.append(_block(endian, P.PCAPNG_SHB,
                          struct.pack(endian + "IHHq", P.PCAPNG_BOM, 1, 0, -1)))
        for link, resol, offset in ifaces:
            opts = b""
            if resol is not None:
                opts += _opt(endian, 9, bytes([resol]))
            if offset:
                opts += _opt(endian, 14, struct.pack(endian + "q", offset))
            if opts:
                opts += _opt(endian, 0, b"")
            out.append(_block(endian, 1, struct.pack(endian + "HHI", link, 0, 0) + opts))
        for iface, ts, fr, kind in packets:
            if kind == "epb":
                body = struct.pack(endian + "IIIII", iface, ts >> 32, ts & 0xFFFFFFFF, len(fr),
                                   len(fr) + 4) + fr
                out.append(_block(endian, 6, body))
            elif kind == "pb":
                body = struct.pack(endian + "HHIIII", iface, 0, ts >> 32, ts & 0xFFFFFFFF,
                                   len(fr), len(fr)) + fr
                out.append(_block(endian, 2, body))
            else:
                out.append(_block(endian, 3, struct.pack(endian + "I", len(fr)) + fr))
    return b"".join(out)


def _check(cap, frames, ts_ns, slot_size=L.MAX_SLOT_SIZE):
    assert cap.count == len(frames)
    for i, (fr, ts) in enumerate(zip(frames, ts_ns)):
        rec = cap.slots[i]
        n = min(len(fr), slot_size)
        assert int(rec["seq"]) == i
        assert int(rec["cap_len"]) == n
        assert bytes(rec["payload"][:n]) == fr[:n]
        if ts is not None:
            assert int(rec["ts_ns"]) == ts


@pytest.mark.parametrize("nano", [True, False])
@pytest.mark.parametrize("endian", ["<", ">"])
def test_classic_pcap_both_resolutions_and_byte_orders(tmp_path, nano, endian):
    path = tmp_path / "a.pcap"
    path.write_bytes(classic(FRAMES, TS, nano, endian))
    cap = P.read_capture(path, slot_size=L.MAX_SLOT_SIZE)
    assert cap.format == "pcap" and cap.nanosecond == nano and cap.linktype == 1
    assert cap.error is None
    _check(cap, FRAMES, [t if nano else t // 1000 * 1000 for t in TS])
    assert [int(x) for x in cap.slots["wire_len"]] == [len(f) for f in FRAMES]


def test_frames_longer_than_the_slot_are_clamped_and_flagged(tmp_path):
    path = tmp_path / "a.pcap"
    path.write_bytes(classic(FRAMES, TS))
    cap = P.read_capture(path, slot_size=256)
    _check(cap, FRAMES, TS, slot_size=256)
    big = [i for i, f in enumerate(FRAMES) if len(f) > 256]
    for i in range(len(FRAMES)):
        truncated = bool(int(cap.slots[i]["flags"]) & L.SLOT_FLAG_TRUNCATED)
        assert truncated == (i in big)
        assert int(cap.slots[i]["wire_len"]) == len(FRAMES[i])


@pytest.mark.parametrize("endian", ["<", ">"])
def test_pcapng_interfaces_resolutions_sections_and_block_kinds(tmp_path, endian):
    frames = FRAMES[:6]
    sections = [
        ([(1, None, 0), (1, 9, 0), (101, 0x80 | 20, 5)], [
            (0, 1_700_000_000_123_456, frames[0], "epb"),        # default: microseconds
            (1, 1_700_000_000_123_456_789, frames[1], "epb"),    # 10^-9
            (2, (1_700_000_000 << 20) + (1 << 19), frames[2], "epb"),  # 2^-20, +5 s offset
            (0, 1_700_000_001_000_000, frames[3], "pb"),
        ]),
        ([(1, 3, 0)], [                                          # a second section, 10^-3
            (0, 1_700_000_002_500, frames[4], "epb"),
            (0, 0, frames[5], "spb"),
        ]),
    ]
    path = tmp_path / "a.pcapng"
    path.write_bytes(pcapng(sections, endian))
    cap = P.read_capture(path, slot_size=L.MAX_SLOT_SIZE)
    assert cap.format == "pcapng" and cap.error is None, cap.error
    assert cap.linktypes == [1, 1, 101, 1] and cap.linktype == 1 and cap.nanosecond
    expected_ts = [1_700_000_000_123_456_000, 1_700_000_000_123_456_789,
                   1_700_000_005_500_000_000, 1_700_000_001_000_000_000,
                   1_700_000_002_500_000_000, None]
    _check(cap, frames, expected_ts)
    assert [int(x) for x in cap.slots["port"]] == [0, 1, 2, 0, 3, 3]


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
@pytest.mark.parametrize("endian", ["<", ">"])
def test_keep_bytes_points_at_each_whole_packet(tmp_path, fmt, endian):
    """``keep_bytes=True``: ``data[frame_offsets[i]:][:frame_lengths[i]]`` is packet i as
    captured, however much longer than the slot (every pcapng packet block kind)."""
    frames = FRAMES[:6] + [bytes(range(256)) * 40]             # 10240 bytes
    path = tmp_path / f"a.{fmt}"
    if fmt == "pcap":
        path.write_bytes(classic(frames, [10**18 + i for i in range(len(frames))],
                                 endian=endian))
    else:
        kinds = ["epb", "pb", "spb", "epb", "pb", "epb", "epb"]
        path.write_bytes(pcapng([([(1, None, 0)], [(0, 0, f, k) for f, k in
                                                     zip(frames[:2], kinds)]),
                                 ([(1, 9, 0)], [(0, 0, f, k) for f, k in
                                                zip(frames[2:], kinds[2:])])], endian))
    cap = P.read_capture(path, slot_size=64, keep_bytes=True)
    assert cap.error is None and cap.count == len(frames)
    assert cap.frame_offsets.dtype == np.int64 and len(cap.frame_lengths) == len(frames)
    for i, f in enumerate(frames):
        o, n = int(cap.frame_offsets[i]), int(cap.frame_lengths[i])
        assert cap.data[o:o + n].tobytes() == f, i
    assert P.read_capture(path, slot_size=64).data is None      # not kept unless asked


def test_every_truncation_keeps_the_packets_before_it(tmp_path):
    data = classic(FRAMES[:5], TS[:5])
    ends = []                       # byte offset where each record ends
    o = 24
    for fr in FRAMES[:5]:
        o += 16 + len(fr)
        ends.append(o)
    path = tmp_path / "t.pcap"
    for cut in range(24, len(data)):
        path.write_bytes(data[:cut])
        cap = P.read_capture(path)
        complete = sum(1 for e in ends if e <= cut)
        assert cap.count == complete, cut
        _check(cap, FRAMES[:complete], TS[:complete])
        if cut in ends or cut == 24:
            assert cap.error is None
        else:
            start = 24 if complete == 0 else ends[complete - 1]
            assert cap.error_offset == start and f"byte {start}" in cap.error
            with pytest.raises(P.PcapError) as e:
                P.read_capture(path, strict=True)
            assert e.value.offset == start and e.value.packets.count == complete


def test_every_truncation_of_pcapng_is_reported_not_fatal(tmp_path):
    data = pcapng([([(1, 9, 0)], [(0, i, f, "epb") for i, f in enumerate(FRAMES[:4])])])
    path = tmp_path / "t.pcapng"
    counts = []
    for cut in range(28, len(data)):
        path.write_bytes(data[:cut])
        cap = P.read_capture(path)
        counts.append(cap.count)
        assert cap.count <= 4
        if cap.error is not None:
            assert cap.error_offset is not None and cap.error_offset <= cut
        _check(cap, FRAMES[:cap.count], list(range(cap.count)))
    assert counts == sorted(counts) and counts[-1] == 3


@pytest.mark.parametrize("damage,message", [
    (lambda d: d[:32] + struct.pack("<I", 10**9) + d[36:], "record length larger"),
    (lambda d: b"\x00\x01\x02\x03" + d[4:], "neither pcap nor pcapng"),
    (lambda d: d[:10], "truncated pcap file header"),
])
def test_corrupt_classic_pcap(tmp_path, damage, message):
    path = tmp_path / "c.pcap"
    path.write_bytes(damage(classic(FRAMES[:3], TS[:3])))
    try:
        cap = P.read_capture(path)
    except P.PcapError as e:
        assert message in str(e) and "byte 0" in str(e) or message in str(e)
        return
    assert cap.error is not None and message in cap.error and "byte 24" in cap.error


def test_pcapng_bad_block_length_and_unknown_interface(tmp_path):
    good = pcapng([([(1, None, 0)], [(0, 1, FRAMES[0], "epb"), (0, 2, FRAMES[1], "epb")])])
    path = tmp_path / "c.pcapng"
    # the second packet block claims interface 7
    second = good.rfind(struct.pack("<I", 6))
    bad = good[:second + 8] + struct.pack("<I", 7) + good[second + 12:]
    path.write_bytes(bad)
    cap = P.read_capture(path)
    assert cap.count == 1 and "interface" in cap.error and f"byte {second}" in cap.error
    # a trailer that disagrees with the block length
    path.write_bytes(good[:-4] + struct.pack("<I", 999))
    cap = P.read_capture(path)
    assert cap.count == 1 and "block length" in cap.error


def test_write_then_read_round_trip(tmp_path):
    src = P.read_capture(_write(tmp_path / "in.pcap", classic(FRAMES, TS)),
                         slot_size=L.MAX_SLOT_SIZE)
    out = tmp_path / "out.pcap"
    assert P.write_pcap(out, src.slots) == len(FRAMES)
    assert out.read_bytes() == classic(FRAMES, TS, nano=True)        # byte-exact
    again = P.read_capture(out, slot_size=L.MAX_SLOT_SIZE)
    _check(again, FRAMES, TS)
    with P.PcapWriter(tmp_path / "w.pcap", nanosecond=False) as w:
        for fr, ts in zip(FRAMES, TS):
            w.write(fr, ts)
    assert (tmp_path / "w.pcap").read_bytes() == classic(FRAMES, TS, nano=False)


def _write(path, data):
    path.write_bytes(data)
    return path


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="needs tcpdump (see .ci/run)")
def test_tcpdump_reads_what_we_write(tmp_path):
    eth = [bytes(6) + bytes([2, 0, 0, 0, 0, i]) + b"\x08\x00" + bytes(46) for i in range(5)]
    slots = np.zeros(5, dtype=L.slot_dtype(128))
    for i, fr in enumerate(eth):
        slots[i]["ts_ns"] = TS[i]
        slots[i]["wire_len"] = slots[i]["cap_len"] = len(fr)
        slots[i]["payload"][:len(fr)] = np.frombuffer(fr, np.uint8)
    path = tmp_path / "w.pcap"
    P.write_pcap(path, slots)
    out = subprocess.run(["tcpdump", "-r", str(path), "-nn", "-e", "--nano", "-tt"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(out) == 5
    for line, ts in zip(out, TS):
        assert line.startswith(f"{ts // 10**9}.{ts % 10**9:09d}")


@pytest.mark.skipif(shutil.which("editcap") is None, reason="needs editcap (tshark; .ci/run)")
@pytest.mark.parametrize("fmt", ["pcapng", "nsecpcap", "pcap"])
def test_files_converted_by_editcap_read_the_same(tmp_path, fmt):
    src = _write(tmp_path / "in.pcap", classic(FRAMES[:6], TS[:6]))
    out = tmp_path / f"out.{fmt}"
    subprocess.run(["editcap", "-F", fmt, str(src), str(out)], check=True, capture_output=True)
    cap = P.read_capture(out, slot_size=L.MAX_SLOT_SIZE)
    assert cap.error is None
    usec = fmt == "pcap"
    _check(cap, FRAMES[:6], [t // 1000 * 1000 if usec else t for t in TS[:6]])
