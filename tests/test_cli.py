"""The ``hugering`` command: verbs round trip, errors are one line with the right exit status,
every verb has --help, and ``hugering demo`` runs clean and always removes its ring.

Most calls go through ``engine.cli.main`` in this process (fast); a few run the installed
console script, as a user would.  Nothing here needs root: as an ordinary user the rings fall
back to POSIX shared memory.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import cli
from shm import Ring
from shm import backing as B
from shm import layout as L

ROOT = Path(__file__).resolve().parents[1]


def hugering_cmd() -> list[str]:
    """The console script next to this interpreter, else the module."""
    script = Path(sys.executable).with_name("hugering")
    if script.exists():
        return [str(script)]
    found = shutil.which("hugering")
    return [found] if found else [sys.executable, "-m", "engine.cli"]


def run(*argv, timeout=120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(hugering_cmd() + list(argv), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, **kw)


def call(capsys, *argv):
    """(exit status, stdout, stderr) of ``hugering ARGV`` run in this process."""
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def one_error_line(err: str) -> str:
    """The error, one line (the hugepage fallback warning may precede it for a non-root user)."""
    lines = [line for line in err.strip().splitlines()
             if not line.startswith("hugering: warning: ")]
    assert len(lines) == 1, f"expected one line on stderr, got: {err!r}"
    assert lines[0].startswith("hugering: error: "), lines[0]
    assert "Traceback" not in err
    return lines[0]


def rings() -> set[str]:
    return {n for n, _ in B.list_rings()}


# --- help ------------------------------------------------------------------------------------
def all_verbs(parser=None, prefix=()):
    """Every verb path of the command line, walked from the parser (new verbs included)."""
    parser = parser or cli.build_parser()
    yield prefix
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from all_verbs(sub, prefix + (name,))


def test_verb_tree_has_the_verbs_of_this_release():
    paths = set(all_verbs())
    for p in [(), ("ring",), ("ring", "create"), ("ring", "info"), ("ring", "ls"),
              ("ring", "rm"), ("synth",), ("demo",)]:
        assert p in paths


@pytest.mark.parametrize("path", list(all_verbs()), ids=lambda p: " ".join(p) or "hugering")
def test_every_verb_has_help(capsys, path):
    rc, out, err = call(capsys, *path, "--help")
    assert rc == 0 and err == ""
    assert out.startswith("usage: hugering" + "".join(" " + p for p in path))


def test_console_script_help_and_version():
    p = run("--help")
    assert p.returncode == 0 and "ring" in p.stdout and "synth" in p.stdout
    p = run("--version")
    assert p.returncode == 0 and p.stdout.startswith("hugering ")


def test_missing_verb_is_a_usage_error(capsys):
    for argv in [(), ("ring",), ("ring", "create"), ("nosuchverb",)]:
        rc, out, err = call(capsys, *argv)
        assert rc == 2, argv
        one_error_line(err)


# --- ring create / info / ls / rm -------------------------------------------------------------
def test_ring_round_trip(capsys, ring_name):
    rc, out, err = call(capsys, "ring", "create", ring_name, "--slots", "256",
                        "--slot-size", "512")
    assert rc == 0, err
    assert out.startswith(f"created ring {ring_name}: 256 slots x 512 B")

    rc, out, _ = call(capsys, "ring", "info", ring_name, "--json")
    assert rc == 0
    info = json.loads(out)
    assert (info["name"], info["capacity"], info["slot_size"]) == (ring_name, 256, 512)
    assert (info["mode"], info["full_policy"], info["layout_version"]) == ("lossless", "drop", L.LAYOUT_VERSION)
    assert info["producer"]["pid"] == 0 and info["consumers"] == [] and info["fill"] == 0
    assert info["backing"] in ("hugetlbfs", "shm") and os.path.exists(info["path"])

    rc, out, _ = call(capsys, "ring", "info", ring_name)
    assert rc == 0
    text = dict(line.split(None, 1) for line in out.splitlines() if line.strip()
                and not line.startswith(("full waits",)))
    assert text["ring"].strip() == ring_name and text["slots"].startswith("256 x 512 B")

    rc, out, _ = call(capsys, "ring", "ls", "--json")
    assert rc == 0
    listed = {e["name"]: e for e in json.loads(out)}
    assert listed[ring_name]["capacity"] == 256
    rc, out, _ = call(capsys, "ring", "ls")
    assert rc == 0 and out.splitlines()[0].split()[:3] == ["NAME", "BACKING", "SLOTS"]
    assert any(line.split()[0] == ring_name for line in out.splitlines()[1:])

    rc, out, err = call(capsys, "ring", "rm", ring_name)
    assert rc == 0 and out.startswith(f"removed ring {ring_name}")
    assert ring_name not in rings()
    rc, out, _ = call(capsys, "ring", "ls", "--json")
    assert ring_name not in {e["name"] for e in json.loads(out)}


def test_create_options_reach_the_header(capsys, ring_name):
    rc, out, err = call(capsys, "ring", "create", ring_name, "--slots", "64", "--slot-size",
                        "100", "--mode", "lossy", "--max-consumers", "3", "--consumer-timeout",
                        "0.25", "--shm", "--json")
    assert rc == 0, err
    info = json.loads(out)
    assert (info["backing"], info["capacity"], info["slot_size"], info["slot_stride"]) == \
        ("shm", 64, 100, 192)
    assert (info["mode"], info["max_consumers"], info["consumer_timeout_s"]) == \
        ("lossy", 3, 0.25)
    assert info["fill"] is None
    rc, out, _ = call(capsys, "ring", "info", ring_name)
    assert "lossy" in out and "n/a" in out


def test_create_with_a_group(capsys, ring_name):
    import grp
    group = grp.getgrgid(os.getgid()).gr_name
    rc, out, err = call(capsys, "ring", "create", ring_name, "--slots", "64", "--group", group,
                        "--json")
    assert rc == 0, err
    st = os.stat(json.loads(out)["path"])
    assert (st.st_mode & 0o777, st.st_gid) == (0o660, os.getgid())


def test_create_with_a_missing_group_leaves_nothing(capsys, ring_name):
    rc, out, err = call(capsys, "ring", "create", ring_name, "--slots", "64", "--group",
                        "no-such-group-here")
    assert rc == 1 and "group 'no-such-group-here' does not exist" in one_error_line(err)
    assert ring_name not in rings()


def test_create_twice_is_a_runtime_error(capsys, ring_name):
    assert call(capsys, "ring", "create", ring_name, "--slots", "64")[0] == 0
    rc, out, err = call(capsys, "ring", "create", ring_name, "--slots", "64")
    assert rc == 1
    assert "already exists" in one_error_line(err)


@pytest.mark.parametrize("name", ["../etc", "a/b", "", ".hidden", "x" * 65, "a b", "a\\b",
                                  "semi;colon", "-dash"])
@pytest.mark.parametrize("verb", [("ring", "create"), ("ring", "info"), ("ring", "rm"),
                                  ("synth",)])
def test_bad_names_are_usage_errors(capsys, verb, name):
    before = rings()
    rc, out, err = call(capsys, *verb, name)
    assert rc == 2 and out == ""
    line = one_error_line(err)
    assert "NAME" in line or "ring name" in line
    assert rings() == before


@pytest.mark.parametrize("args, flag", [
    (["--slots", "1000"], "--slots"),
    (["--slots", "1"], "--slots"),
    (["--slots", "many"], "--slots"),
    (["--slot-size", "10"], "--slot-size"),
    (["--slot-size", "100000"], "--slot-size"),
    (["--mode", "sometimes"], "--mode"),
    (["--full-policy", "panic"], "--full-policy"),
    (["--consumer-timeout", "0"], "--consumer-timeout"),
    (["--consumer-timeout", "-1"], "--consumer-timeout"),
    (["--max-consumers", "0"], "--max-consumers"),
    (["--shm", "--hugetlbfs", "/dev/hugepages"], "--hugetlbfs"),
])
def test_bad_create_values_name_the_option(capsys, ring_name, args, flag):
    rc, out, err = call(capsys, "ring", "create", ring_name, *args)
    assert rc == 2
    assert flag in one_error_line(err)
    assert ring_name not in rings()


def test_bad_hugetlbfs_path_is_a_runtime_error(capsys, ring_name, tmp_path):
    rc, out, err = call(capsys, "ring", "create", ring_name, "--hugetlbfs", str(tmp_path))
    assert rc == 1
    assert "not a hugetlbfs mount" in one_error_line(err)


def test_info_and_rm_of_a_missing_ring(capsys, ring_name):
    for verb in ("info", "rm"):
        rc, out, err = call(capsys, "ring", verb, ring_name)
        assert rc == 1 and out == ""
        assert f"ring {ring_name!r} does not exist" in one_error_line(err)


def test_console_script_errors_are_one_line(ring_name):
    p = run("ring", "info", ring_name)
    assert p.returncode == 1 and p.stdout == ""
    one_error_line(p.stderr)
    p = run("ring", "create", "../x")
    assert p.returncode == 2
    one_error_line(p.stderr)


def test_create_warns_in_one_line_when_it_falls_back_to_shm(ring_name):
    p = run("ring", "create", ring_name, "--slots", "64", "--json")
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    if info["backing"] == "shm":            # no usable hugetlbfs for this user: say why, once
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("hugering: warning: ring ")
        assert "POSIX shared memory" in lines[0]
    else:
        assert p.stderr == ""


def test_log_records_print_as_hugering_lines(capsys):
    cli.setup_logging()
    logging.getLogger("hugering").warning("something %s", "odd")
    assert capsys.readouterr().err == "hugering: warning: something odd\n"


def test_info_shows_producer_and_consumers(capsys, ring_name):
    with Ring.create(ring_name, slots=64, slot_size=128) as r:
        c = r.consumer()
        with r.producer() as p:
            p.publish([bytes(64)] * 10)
            rc, out, _ = call(capsys, "ring", "info", ring_name, "--json")
            info = json.loads(out)
            assert info["producer"]["pid"] == os.getpid() and info["producer"]["alive"]
            assert info["producer"]["published"] == 10
            assert info["producer"]["heartbeat_age_s"] < 60
            [ci] = info["consumers"]
            assert (ci["pid"], ci["state"], ci["lag"], ci["alive"]) == \
                (os.getpid(), "active", 10, True)
            assert info["fill"] == pytest.approx(10 / 64)
            rc, out, _ = call(capsys, "ring", "info", ring_name)
            assert rc == 0
            assert f"pid {os.getpid()} alive" in out and "15.6% (10 of 64" in out
            header, row = out.strip().splitlines()[-2:]
            assert header.split()[:4] == ["consumer", "state", "pid", "alive"]
            assert row.split()[:4] == ["0", "active", str(os.getpid()), "yes"]
            # columns line up: each header word starts where its column does (left-aligned)
            assert header.index("state") == row.index("active")
        c.close()


def test_ls_reports_an_unreadable_ring_without_failing(capsys, ring_name):
    # a file with the ring prefix that is not a ring (the magic is missing)
    path = os.path.join(B.SHM_DIR, B.FILE_PREFIX + ring_name)
    with open(path, "wb") as f:
        f.write(b"\0" * 4096)
    try:
        rc, out, err = call(capsys, "ring", "ls", "--json")
        assert rc == 0
        [entry] = [e for e in json.loads(out) if e["name"] == ring_name]
        assert "magic" in entry["error"]
        rc, out, err = call(capsys, "ring", "info", ring_name)
        assert rc == 1 and "field 'magic'" in one_error_line(err)
        assert call(capsys, "ring", "rm", ring_name)[0] == 0     # and it can be removed
        assert not os.path.exists(path)
    finally:
        if os.path.exists(path):
            os.unlink(path)


# --- synth -----------------------------------------------------------------------------------
def test_synth_publishes_into_an_existing_ring(capsys, ring_name):
    assert call(capsys, "ring", "create", ring_name, "--slots", "1024", "--slot-size", "256")[0] \
        == 0
    rc, out, err = call(capsys, "synth", ring_name, "--count", "5000", "--rate", "0",
                        "--min-size", "60", "--max-size", "256", "--json")
    assert rc == 0, err
    st = json.loads(out)
    assert (st["frames"], st["published"], st["dropped"], st["stopped_by"]) == \
        (5000, 5000, 0, "count")
    assert st["sizes"] == [60, 256] and st["ring_published"] == 5000
    rc, out, _ = call(capsys, "ring", "info", ring_name, "--json")
    info = json.loads(out)
    assert info["producer"]["published"] == 5000 and info["producer"]["pid"] == 0  # detached
    rc, out, err = call(capsys, "synth", ring_name, "--duration", "0.3", "--rate", "100k")
    assert rc == 0, err
    report = dict(line.split(None, 1) for line in out.splitlines() if "  " in line)
    assert "stopped by duration" in out and "target 0.100 Mpps" in out
    assert report["published"].startswith(("2", "3"))       # ~30,000 frames


def test_synth_bad_values(capsys, ring_name):
    assert call(capsys, "ring", "create", ring_name, "--slots", "64", "--slot-size", "128")[0] == 0
    cases = [
        (["--max-size", "200"], "--min-size/--max-size"),   # larger than the slot
        (["--min-size", "100", "--max-size", "80"], "--min-size"),
        (["--max-size", "59"], "--max-size"),
        (["--rate", "-5"], "--rate"),
        (["--rate", "lots"], "--rate"),
        (["--count", "1.5"], "--count"),
        (["--count", "10", "--duration", "1"], "not allowed with"),
        (["--burst", "0"], "--burst"),
    ]
    for args, text in cases:
        rc, out, err = call(capsys, "synth", ring_name, *args)
        assert rc == 2, args
        assert text in one_error_line(err), (args, err)
    rc, out, err = call(capsys, "synth", ring_name + "-missing", "--count", "1")
    assert rc == 1 and "does not exist" in one_error_line(err)


def test_synth_refuses_a_ring_with_a_live_producer(ring_name):
    with Ring.create(ring_name, slots=64, slot_size=128) as r:
        with r.producer():                                   # this test process produces
            p = run("synth", ring_name, "--count", "10")
            assert p.returncode == 1
            assert "already has a live producer" in one_error_line(p.stderr)
            assert r.info()["producer"]["published"] == 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_synth_until_interrupted_reports_and_detaches(ring_name, sig):
    with Ring.create(ring_name, slots=1024, slot_size=128) as r:
        proc = subprocess.Popen(hugering_cmd() + ["synth", ring_name, "--rate", "50k", "--json"],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            deadline = time.monotonic() + 60
            while r.info()["producer"]["published"] == 0:       # running
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
                time.sleep(0.05)
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, err              # Ctrl-C is how this run is meant to end
        st = json.loads(out)
        assert st["stopped_by"] == "interrupt" and st["published"] > 0
        info = r.info()
        assert info["producer"]["pid"] == 0 and info["producer"]["published"] == st["published"]


def test_number_suffixes():
    assert cli._rate("2.5M") == 2.5e6 and cli._rate("100k") == 1e5 and cli._rate("0") == 0
    assert cli._count("1e3") == 1000 and cli._count("2k") == 2000


# --- demo ------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_demo_runs_clean_and_removes_its_ring():
    t = time.monotonic()
    p = run("demo", "--duration", "3", timeout=170)
    took = time.monotonic() - t
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Traceback" not in p.stderr
    out = p.stdout
    assert "summary" in out and "sequence errors: 0 " in out
    lines = out.splitlines()
    name = lines[0].split()[3]
    assert lines[0].startswith("hugering demo: ring demo-") and name not in rings()
    header = next(line for line in lines if line.strip().startswith("process"))
    assert header.split() == ["process", "cpu", "busy", "frames", "Mpps", "Gbit/s", "gaps",
                              "out-of-order", "bad", "max", "lag"]
    [producer] = [line.split() for line in lines if line.strip().startswith("producer ")]
    consumers = [line.split() for line in lines if line.strip().startswith("consumer ")
                 and "Mpps lag" not in line]
    assert len(consumers) == 2
    published = int(producer[3].replace(",", ""))
    assert published > 0
    for cells in consumers:
        assert int(cells[4].replace(",", "")) == published       # every frame...
        assert cells[7:10] == ["0", "0", "0"], cells             # ...no gap, reorder or bad
    assert took < 60, f"demo --duration 3 took {took:.0f} s"


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_demo_json_report(tmp_path):
    p = run("demo", "--duration", "1", "--rate", "500k", "--consumers", "1", "--json",
            timeout=170)
    assert p.returncode == 0, p.stdout + p.stderr
    r = json.loads(p.stdout)
    assert r["ok"] and r["sequence_errors"] == 0 and r["missing"] == 0
    assert len(r["consumers"]) == 1
    c = r["consumers"][0]
    assert c["frames"] == r["producer"]["published"] > 0 and c["first_seq"] == 0
    assert r["ring"] not in rings()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_demo_removes_its_ring_on_ctrl_c():
    proc = subprocess.Popen(hugering_cmd() + ["demo", "--duration", "60"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()                      # the header: the ring exists
        assert first.startswith("hugering demo: ring demo-"), first + proc.stderr.read()
        name = first.split()[3]
        assert name in rings()
        proc.stdout.readline()
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if not line.startswith("hugering: warning: ")] \
        == ["hugering: interrupted"]
    assert name not in rings()
