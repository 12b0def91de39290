"""``hugering dump``: the frames crossing a ring, to a pcap file that tcpdump reads.

Frames go in with ``hugering replay`` (or the ring's own producer handle) and come out through
``hugering dump`` processes; the files are read back by an independent ``struct`` reader and by
libpcap (``tcpdump -r``).  ``--filter`` is checked against libpcap's own selection
(``tcpdump -O -r capture EXPR``: the unoptimised program, exact on truncated frames too, as
in ``test_filters_tcpdump``) on the same capture, replayed with its own timestamps so that
each packet maps back to its index.

Needs tcpdump (Debian package ``tcpdump``); nothing here needs root.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import pytest

from engine import cli
from engine.dump import DumpConfigError, dump
from engine.replay import replay
from parsers.filters import FilterSyntaxError
from shm import Ring, RingError

from test_replay import (T0_NS, TCPDUMP, capture, finish, frames,  # noqa: F401
                         hugering, needs_tcpdump, read_pcap, spawn, through_libpcap,
                         wait_delivered, wait_joined, warm, write_capture)

pytestmark = needs_tcpdump

FILTERS = ["udp", "tcp and port 80", "vlan 100 and udp", "ip6 and not icmp6",
           "host 10.0.0.1 or arp", "not ip and not ip6", "udp[8:2] = 0x1234 or len > 100"]


def index_of(ts_ns: int) -> int:
    return (ts_ns - T0_NS) // 10**9


def libpcap_selects(path, expr, tmp_path) -> list[int]:
    out = tmp_path / "sel.pcap"
    p = subprocess.run([TCPDUMP, "-O", "-r", str(path), "-w", str(out), expr],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return [index_of(t) for t, _, _ in read_pcap(out)]


@pytest.mark.timeout(300)
def test_filter_selects_what_tcpdump_selects(ring_name, capture, frames, tmp_path, warm):
    """One dump process per expression on the same ring, one replay: each file holds exactly
    the packets libpcap's program selects from the original capture, in order, intact."""
    n = len(frames)
    Ring.create(ring_name, slots=256, slot_size=2048, full_policy="wait").close()
    procs = []
    try:
        for i, expr in enumerate(FILTERS):
            procs.append(spawn("dump", ring_name, "-w", tmp_path / f"f{i}.pcap", "--filter",
                               expr, "--json", text=True))
        for p in procs:
            wait_joined(ring_name, p)
        r = hugering("replay", capture, "--ring", ring_name, "--topspeed",
                     "--original-timestamps")
        assert r.returncode == 0, r.stderr
        for p in procs:
            wait_delivered(ring_name, p, n)
            p.send_signal(signal.SIGTERM)
        results = [finish(p) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for i, (expr, (rc, out, err)) in enumerate(zip(FILTERS, results)):
        assert rc == 0, (expr, err)
        want = libpcap_selects(capture, expr, tmp_path)
        assert 0 < len(want) < n, expr                 # the expression means something here
        got = read_pcap(tmp_path / f"f{i}.pcap")
        assert [index_of(t) for t, _, _ in got] == want, expr
        assert [(d, w) for _, d, w in got] == [frames[k] for k in want], expr
        rep = json.loads(out)
        assert (rep["seen"], rep["captured"], rep["filtered_out"], rep["lost"]) == \
            (n, len(want), n - len(want), 0), expr
        assert rep["stopped_by"] == "interrupt" and rep["filter"] == expr
        assert "dumping ring" in err and f"filter {expr!r}" in err


@pytest.mark.timeout(300)
def test_dump_to_stdout_piped_into_tcpdump(ring_name, capture, frames, tmp_path, warm):
    """``hugering dump NAME -w - --count N | tcpdump -r - -w out``: libpcap reads the stream."""
    n = len(frames)
    Ring.create(ring_name, slots=128, slot_size=2048, full_policy="wait").close()
    out = tmp_path / "piped.pcap"
    d = spawn("dump", ring_name, "-w", "-", "--count", n)
    t = subprocess.Popen([TCPDUMP, "-r", "-", "-w", str(out)], stdin=d.stdout,
                         stderr=subprocess.PIPE, text=True)
    d.stdout.close()                                   # tcpdump holds the pipe's read end
    try:
        wait_joined(ring_name, d)
        r = hugering("replay", capture, "--ring", ring_name, "--topspeed")
        assert r.returncode == 0, r.stderr
        rc, _, err = finish(d)
        assert rc == 0, err
        assert f"{n} packets captured" in err and "dumping ring" in err
        _, terr = t.communicate(timeout=60)
        assert t.returncode == 0, terr
    finally:
        for p in (d, t):
            if p.poll() is None:
                p.kill()
    got = read_pcap(out)
    assert [(dd, w) for _, dd, w in got] == frames


@pytest.mark.timeout(300)
def test_sigterm_leaves_a_valid_pcap_and_the_ring(ring_name, capture, frames, tmp_path, warm):
    """A dump without --count stopped by SIGTERM: exit 0, a complete file, summary lines on
    stderr, and its consumer line freed."""
    n = len(frames)
    Ring.create(ring_name, slots=256, slot_size=2048, full_policy="wait").close()
    out = tmp_path / "term.pcap"
    d = spawn("dump", ring_name, "-w", out, text=True)
    try:
        wait_joined(ring_name, d)
        r = hugering("replay", capture, "--ring", ring_name, "--pps", "20000")
        assert r.returncode == 0, r.stderr
        wait_delivered(ring_name, d, n)
        d.send_signal(signal.SIGTERM)
        rc, so, err = finish(d)
    finally:
        if d.poll() is None:
            d.kill()
    assert rc == 0, err
    assert so == ""
    assert f"{n} packets captured\n{n} packets seen, 0 filtered out, 0 lost" in err, err
    assert [(dd, w) for _, dd, w in read_pcap(out)] == frames
    assert [(dd, w) for _, dd, w in through_libpcap(out, tmp_path)] == frames
    with Ring.open(ring_name) as ring:
        assert ring.info()["consumers"] == []


@pytest.mark.timeout(300)
def test_lossy_ring_and_snaplen(ring_name, capture, frames, tmp_path, warm):
    """A lossy ring (copy-out path), paced so that nothing is lapped; -s 40 keeps 40 bytes of
    each frame and the wire length."""
    n = len(frames)
    Ring.create(ring_name, slots=1024, slot_size=2048, mode="lossy").close()
    out = tmp_path / "lossy.pcap"
    d = spawn("dump", ring_name, "-w", out, "--count", n, "-s", "40", "--json", text=True)
    try:
        wait_joined(ring_name, d)
        r = hugering("replay", capture, "--ring", ring_name, "--pps", "50000")
        assert r.returncode == 0, r.stderr
        rc, so, err = finish(d)
    finally:
        if d.poll() is None:
            d.kill()
    assert rc == 0, err
    rep = json.loads(so)
    assert (rep["captured"], rep["lost"], rep["ring_mode"], rep["snaplen"]) == \
        (n, 0, "lossy", 40)
    got = read_pcap(out)
    assert [(dd, w) for _, dd, w in got] == [(f[:40], w) for f, w in frames]
    through_libpcap(out, tmp_path)


@pytest.mark.timeout(120)
def test_duration_on_an_idle_ring(ring_name, tmp_path, warm):
    Ring.create(ring_name, slots=64, slot_size=256).close()
    out = tmp_path / "idle.pcap"
    t = time.monotonic()
    r = hugering("dump", ring_name, "-w", out, "--duration", "0.5", "--json")
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t >= 0.5
    rep = json.loads(r.stdout)
    assert (rep["captured"], rep["seen"], rep["stopped_by"]) == (0, 0, "duration")
    assert 0.45 <= rep["elapsed_s"] < 1.5
    assert read_pcap(out) == [] and len(out.read_bytes()) == 24


@pytest.mark.timeout(120)
def test_api_count_leaves_the_rest_in_the_ring(ring_name, tmp_path, frames, warm):
    """In-process: dump(count=10) on a lossless ring writes the first 10 frames and releases
    only what it examined; a second dump joins and sees what is published next."""
    ring = Ring.create(ring_name, slots=1024, slot_size=256)
    path = write_capture(tmp_path / "c.pcap", frames[:50])
    out = tmp_path / "api.pcap"
    joined = threading.Event()
    result = {}

    def run():
        result["rep"] = dump(ring_name, out, count=10, ready=lambda info: joined.set())

    th = threading.Thread(target=run)
    try:
        th.start()
        assert joined.wait(60)
        rep_r = replay(ring_name, path, topspeed=True)
        assert rep_r["sent"] == 50
        th.join(30)
        assert not th.is_alive()
        rep = result["rep"]
        assert (rep["captured"], rep["seen"], rep["stopped_by"]) == (10, 10, "count")
        assert [(d, w) for _, d, w in read_pcap(out)] == frames[:10]
        assert ring.info()["consumers"] == []
        # a stop() callable ends a dump that has nothing to read
        t = time.monotonic()
        rep2 = dump(ring_name, os.devnull, stop=lambda: time.monotonic() - t > 0.2)
        assert rep2["stopped_by"] == "stop" and rep2["captured"] == 0
    finally:
        th.join(5)
        ring.close()


def test_api_refuses_bad_settings(ring_name, tmp_path):
    for kw, key in (({"count": -1}, "count"), ({"duration": -1}, "duration"),
                    ({"snaplen": 0}, "snaplen"), ({"burst": 0}, "burst")):
        with pytest.raises(DumpConfigError) as e:
            dump(ring_name, tmp_path / "x.pcap", **kw)
        assert e.value.key == key
    with pytest.raises(FilterSyntaxError):
        dump(ring_name, tmp_path / "x.pcap", filter_expr="udp and")
    with pytest.raises(RingError, match=ring_name):
        dump(ring_name, tmp_path / "x.pcap")
    assert not (tmp_path / "x.pcap").exists()          # nothing created for a missing ring


def call(capsys, *argv):
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_error(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("hugering: warning: ")]
    assert len(lines) == 1 and lines[0].startswith("hugering: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_cli_errors_are_one_line(ring_name, tmp_path, capsys, warm):
    rc, _, err = call(capsys, "dump", ring_name, "-w", tmp_path / "o.pcap")
    assert rc == 1 and ring_name in one_error(err)
    Ring.create(ring_name, slots=64, slot_size=256).close()
    rc, _, err = call(capsys, "dump", ring_name, "-w", tmp_path / "no" / "dir" / "o.pcap")
    assert rc == 1 and "o.pcap" in one_error(err)
    rc, _, err = call(capsys, "dump", ring_name, "-w", tmp_path / "o.pcap", "--filter",
                      "udp and port 99999")
    line = one_error(err)
    assert rc == 2 and line.startswith("hugering: error: dump: --filter: column ") \
        and "99999" in line
    for bad in (["--count", "-3"], ["--duration", "0"], ["-s", "0"], []):
        argv = ["dump", ring_name] + (["-w", tmp_path / "o.pcap"] if bad else []) + bad
        rc, _, err = call(capsys, *argv)
        assert rc == 2, bad
        one_error(err)
    with Ring.open(ring_name) as ring:
        assert ring.info()["consumers"] == []
