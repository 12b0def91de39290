"""``hugering run``: the example deployments, supervision, restart, shutdown within 2 s.

Each test copies a YAML file into its own folder with ring names unique to the test (the
``ring_name`` fixture removes them afterwards), and runs the real command as a process.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from engine import stats as S
from shm import layout as L
from shm.clock import pid_alive
from shm.ring import Ring

ROOT = Path(__file__).resolve().parents[1]
HUGERING = [sys.executable, "-m", "engine.cli"]


def write_config(tmp_path: Path, doc: dict) -> Path:
    p = tmp_path / "deploy.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


def example(name: str, ring: str, tmp_path: Path) -> Path:
    """An example from examples/, its rings renamed, paths made absolute."""
    doc = yaml.safe_load((ROOT / "examples" / name).read_text())
    old = doc["hugering"]["rings"][0]["name"]
    doc["hugering"]["rings"][0]["name"] = ring
    for e in doc["hugering"]["producers"] + doc["hugering"]["consumers"]:
        if e["ring"] == old:
            e["ring"] = ring
        f = e.get("options", {}).get("file")
        if f:
            e["options"]["file"] = str(ROOT / "examples" / f)
    return write_config(tmp_path, doc)


def run(*args, timeout=180):
    return subprocess.run([*HUGERING, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)


def finals(out: str) -> dict:
    rep = json.loads(out)
    return {c["name"]: c for c in rep["children"]}, rep


def test_example_strategy_on_the_synthetic_feed(ring_name, tmp_path):
    p = run("run", str(example("strategy.yaml", ring_name, tmp_path)), "--json")
    assert p.returncode == 0, p.stderr
    kids, rep = finals(p.stdout)
    cons = kids["momentum"]["final"]
    prod = kids[f"synthetic-{ring_name}"]["final"]
    assert prod["published"] == 2_000_000 and prod["dropped"] == 0
    assert cons["received"] == 2_000_000 and cons["lost"] == 0
    assert cons["handled"] + cons["filtered_out"] == 2_000_000
    assert 0 < cons["handled"] < 2_000_000 and cons["handler_errors"] == 0   # ports 30001-4 of 8
    assert cons["handler_state"]["packets"] == cons["handled"]
    assert cons["handler_state"]["signals"] > 0
    assert "producers finished and consumers drained" in p.stderr
    assert not any(n == ring_name for n, _ in __import__("shm.backing").backing.list_rings())


def test_example_strategy_on_a_replayed_capture(ring_name, tmp_path):
    p = run("run", str(example("replay.yaml", ring_name, tmp_path)), "--json")
    assert p.returncode == 0, p.stderr
    kids, rep = finals(p.stdout)
    cons = kids["momentum"]["final"]
    assert cons["received"] == 3 * 5000 == cons["handled"] and cons["lost"] == 0
    # the feed's "price" rises by one per packet: no gap within a pass, one per restart
    assert cons["handler_state"]["sequence_gaps"] == 2
    assert cons["handler_state"]["signals"] > 0


def _deployment(ring: str, **consumer):
    return {"hugering": {
        "rings": [{"name": ring, "slots": 4096, "slot_size": 256, "full_policy": "wait"}],
        "producers": [{"kind": "synthetic", "ring": ring, "options": {"rate_pps": 200000}}],
        "consumers": [{"name": "a", "ring": ring, "idle": "backoff", **consumer},
                      {"name": "b", "ring": ring, "idle": "backoff", "filter": "udp"}]}}


def _wait_running(ring: str, want: int, proc, timeout=120) -> list[int]:
    """pids of the engine consumers once ``want`` of them run and the producer publishes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        try:
            r = Ring.open(ring)
        except Exception:
            time.sleep(0.1)
            continue
        try:
            st = S.StatsRegion.open_existing(r)
            pids = []
            if st is not None:
                for k in range(st.max_consumers):
                    s = st.snapshot(k)
                    if s["state"] == "running" and s["received"] > 0 and pid_alive(s["pid"]):
                        pids.append(s["pid"])
                st.close()
            if len(pids) == want:
                return pids
        finally:
            r.close()
        time.sleep(0.1)
    raise AssertionError("consumers did not start")


def test_sigterm_stops_every_child_within_2_s(ring_name, tmp_path):
    cfg = write_config(tmp_path, _deployment(ring_name))
    proc = subprocess.Popen([*HUGERING, "run", str(cfg), "--keep-rings", "--json"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        pids = _wait_running(ring_name, 2, proc)
        r = Ring.open(ring_name)
        prod_pid = int(r.header["producer_pid"])
        assert prod_pid and pid_alive(prod_pid)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        children = pids + [prod_pid]
        while any(pid_alive(p) for p in children) and time.monotonic() - t0 < 5:
            time.sleep(0.01)
        took = time.monotonic() - t0
        out, err = proc.communicate(timeout=30)
        assert took < 2.0, (took, err)
        assert proc.returncode == 0, err
        kids, rep = finals(out)
        assert rep["stopped_by"] == "SIGTERM"
        for name in ("a", "b"):
            assert kids[name]["final"]["received"] > 0          # final counters were printed
        # no line of a dead process holds a lossless producer back: a new producer publishes
        # into the full-policy "wait" ring without waiting on anybody
        for k in range(r.max_consumers):
            line = r.consumer_lines[k]
            assert int(line["state"]) in (L.CONSUMER_FREE, L.CONSUMER_EVICTED) \
                or pid_alive(int(line["pid"])), (k, line)
        p = run("synth", ring_name, "--rate", "0", "--count", "20000", "--json", timeout=60)
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout)["published"] == 20000
        r.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_killed_consumer_is_restarted(ring_name, tmp_path):
    doc = _deployment(ring_name)
    doc["hugering"]["consumers"] = doc["hugering"]["consumers"][:1]
    cfg = write_config(tmp_path, doc)
    proc = subprocess.Popen([*HUGERING, "run", str(cfg), "--json"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        (pid,) = _wait_running(ring_name, 1, proc)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 120
        new = None
        while time.monotonic() < deadline:
            try:
                (new,) = _wait_running(ring_name, 1, proc, timeout=5)
            except AssertionError:
                continue
            if new != pid:
                break
        assert new is not None and new != pid
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 130
        assert f"(pid {pid}) exited with signal SIGKILL; restart 1/3" in err
        kids, rep = finals(out)
        assert [e["status"] for e in kids["a"]["exits"]][0] == -9 and kids["a"]["restarts"] == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_handler_that_cannot_load_fails_before_traffic(ring_name, tmp_path):
    doc = _deployment(ring_name, handler="no_such_module_xyz:on_burst")
    p = run("run", str(write_config(tmp_path, doc)))
    assert p.returncode == 1
    assert "cannot import 'no_such_module_xyz'" in p.stderr
    assert "exited with status 1 before it was ready" in p.stderr
    assert "run: producer" not in p.stderr                      # no traffic was started


def test_config_and_machine_errors(ring_name, tmp_path):
    doc = _deployment(ring_name, idle="spinn")
    p = run("run", str(write_config(tmp_path, doc)))
    assert p.returncode == 2 and "hugering.consumers[0].idle" in p.stderr
    doc = _deployment(ring_name, cpu=999)
    p = run("run", str(write_config(tmp_path, doc)))
    assert p.returncode == 1 and "hugering.consumers[0].cpu" in p.stderr
    assert not any(n == ring_name for n, _ in __import__("shm.backing").backing.list_rings())


def test_multi_queue_fans_out_one_ring_and_consumer_per_queue(ring_name, tmp_path):
    ncpu = len(os.sched_getaffinity(0))
    doc = {"hugering": {
        "rings": [{"name": ring_name, "slots": 4096, "slot_size": 256, "full_policy": "wait",
                   "queues": 2}],
        "producers": [{"kind": "synthetic", "ring": ring_name,
                       "options": {"rate_pps": 0, "count": 50000}}],
        "consumers": [{"name": "rss", "ring": ring_name, "idle": "backoff",
                       "cpu": [0, 1 % ncpu]}]}}
    p = run("run", str(write_config(tmp_path, doc)), "--json")
    assert p.returncode == 0, p.stderr
    kids, rep = finals(p.stdout)
    assert set(kids) == {"rss.q0", "rss.q1", f"synthetic-{ring_name}.q0",
                         f"synthetic-{ring_name}.q1"}
    for q in (0, 1):
        f = kids[f"rss.q{q}"]["final"]
        assert f["ring"] == f"{ring_name}.q{q}" and f["received"] == 50000
        assert f["cpu"] == [0, 1 % ncpu][q]


def test_consume_verb(ring_name):
    Ring.create(ring_name, slots=4096, slot_size=256, full_policy="wait").close()
    cons = subprocess.Popen([*HUGERING, "consume", ring_name, "--count", "30000", "--filter",
                             "udp", "--handler", "examples.strategy:on_burst", "--idle",
                             "backoff", "--cpu", "0", "--json"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:       # joined (it joins when its loop starts)
            r = Ring.open(ring_name)
            joined = any(c["state"] == "active" for c in r.info()["consumers"])
            r.close()
            if joined:
                break
            assert cons.poll() is None, cons.stderr.read()
            time.sleep(0.05)
        p = run("synth", ring_name, "--rate", "500k", "--count", "30000")
        assert p.returncode == 0, p.stderr
        out, err = cons.communicate(timeout=60)
        assert cons.returncode == 0, err
        rep = json.loads(out)
        assert rep["received"] == rep["handled"] == 30000 and rep["cpu"] == 0
        assert "placement: cpu 0" in err
    finally:
        if cons.poll() is None:
            cons.kill()
    bad = run("consume", ring_name, "--handler", "nope:x", "--count", "1")
    assert bad.returncode == 2 and "cannot import 'nope'" in bad.stderr
    bad = run("consume", ring_name, "--filter", "udp and", "--count", "1")
    assert bad.returncode == 2 and "^" in bad.stderr
