"""The ring benchmark and the C twin of the kernels (``shm/include/hugering_ring.h``).

* ``tools/bench_ring.py --quick --json`` runs end to end and prints one JSON object with the
  promised keys and positive numbers (a smoke test: no timing is asserted, benchmarks are
  programs, not timed tests).
* The header compiles warning-free (``-Wall -Wextra -Werror``, C11 and GNU11) and its
  constants agree with ``shm.layout`` / ``shm.kernels``.
* Real bytes cross the language boundary both ways: a C consumer built from the header reads
  what the Python ``Producer`` publishes (lossless, zero-copy, and lossy through
  ``hr_receive``), and the Python ``Consumer`` reads what a C producer publishes, every field
  of every slot compared with what was sent, truncation included.
* ``hr_map`` refuses a damaged header and names the field, as ``Ring.open`` does.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from shm import Ring
from shm import kernels as K
from shm import layout as L

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "tools"
HEADER = ROOT / "shm" / "include" / "hugering_ring.h"
INCLUDE = HEADER.parent

sys.path.insert(0, str(TOOLS))
import bench_common as BC  # noqa: E402

needs_cc = pytest.mark.skipif(BC.find_cc() is None, reason="needs a C compiler (gcc)")

# --- a small C program over the header: the far side of the round trips ------------------
RT_SOURCE = r"""
#include "hugering_ring.h"
#include <stdlib.h>

static int wait_active(const hr_ring *r) {
    struct timespec nap = {0, 1000000};
    for (int i = 0; i < 30000; i++) {
        for (int64_t k = 0; k < r->max_consumers; k++)
            if (hr_load_acquire(r->ctrl, HR_C_BASE + k * HR_C_WORDS + HR_C_STATE) ==
                HR_CONSUMER_ACTIVE)
                return 0;
        nanosleep(&nap, NULL);
    }
    return -1;
}

static void print_slot(int64_t seq, const int64_t *w, int64_t slot_size) {
    const hr_slot_header *h = (const hr_slot_header *)(const void *)w;
    const uint8_t *payload = (const uint8_t *)(const void *)w + HR_SLOT_HEADER_BYTES;
    int64_t cap = h->cap_len < slot_size ? h->cap_len : slot_size;
    printf("%lld %lld %lld %u %u %u %u %u ", (long long)seq, (long long)h->seq,
           (long long)h->ts_ns, h->wire_len, h->cap_len, h->port, h->queue, h->flags);
    for (int64_t b = 0; b < cap; b++)
        printf("%02x", payload[b]);
    printf("\n");
}

int main(int argc, char **argv) {
    if (argc < 3)
        return 2;
    const char *mode = argv[1], *path = argv[2];
    int64_t n = argc > 3 ? atoll(argv[3]) : 0;
    hr_ring r;
    char err[512];
    int producer = !strcmp(mode, "produce");
    if (hr_map(&r, path, producer, err, sizeof err) < 0) {
        printf("error: %s\n", err);
        return 3;
    }
    if (!strcmp(mode, "check")) {
        printf("ok capacity=%lld slot_size=%lld mode=%lld\n", (long long)r.capacity,
               (long long)r.slot_size, (long long)r.mode);
    } else if (!strcmp(mode, "consume") || !strcmp(mode, "receive")) {
        hr_consumer c;
        if (hr_consumer_open(&c, &r) < 0)
            return 4;
        printf("joined %lld\n", (long long)c.cursor);
        fflush(stdout);
        int64_t got = 0, deadline = hr_mono_ns() + 20000000000LL;
        int64_t *out = malloc((size_t)(8 * c.stride_w) * sizeof *out);
        while (got < n && hr_mono_ns() < deadline) {
            if (!strcmp(mode, "consume")) {
                int64_t k = hr_peek(&c, 7);
                if (k < 0)
                    return 5;
                for (int64_t j = 0; j < k; j++)
                    print_slot(c.cursor + j, c.words + hr_consumer_slot(&c, j) * c.stride_w,
                               c.slot_size);
                if (k > 0 && hr_release(&c, k) < 0)
                    return 5;
                got += k;
            } else {
                int64_t k = hr_receive(&c, out, 8);
                for (int64_t j = 0; j < k; j++)
                    print_slot(out[j * c.stride_w], out + j * c.stride_w, c.slot_size);
                got += k;
            }
        }
        free(out);
        printf("done %lld delivered=%lld\n", (long long)got,
               (long long)r.ctrl[c.line + HR_C_DELIVERED]);
        hr_consumer_close(&c);
    } else if (producer) {
        hr_producer *p = malloc(sizeof *p);
        if (hr_producer_open(p, &r) < 0)
            return 4;
        if (wait_active(&r) < 0)
            return 6;
        uint8_t frame[HR_MAX_SLOT_SIZE + 100];
        int64_t i = 0, burst = 1;
        while (i < n) {
            int64_t want = n - i < burst ? n - i : burst;
            int64_t k = hr_reserve_wait(p, want, 0);
            for (int64_t j = 0; j < k; j++, i++) {
                int64_t len = 1 + (i * 37) % (r.slot_size + 40);   /* some are truncated */
                for (int64_t b = 0; b < len; b++)
                    frame[b] = (uint8_t)(i * 7 + b);
                hr_write_slot(p, j, frame, len, (uint32_t)(len + i % 3), 1000 * i,
                              (uint16_t)(i % 5), (uint16_t)(i % 3));
            }
            hr_submit(p, k, hr_now_ns());
            burst = burst % 9 + 1;
        }
        printf("published %lld\n", (long long)p->published);
        hr_producer_close(p);
        free(p);
    } else {
        return 2;
    }
    hr_unmap(&r);
    return 0;
}
"""


@pytest.fixture(scope="module")
def rt_exe(tmp_path_factory):
    if BC.find_cc() is None:
        pytest.skip("needs a C compiler (gcc)")
    d = tmp_path_factory.mktemp("rt")
    src = d / "rt.c"
    src.write_text(RT_SOURCE)
    return BC.compile_c(src, name="rt", build_dir=d, werror=True,
                        flags=("-O2", "-std=c11", "-Wall", "-Wextra"))


def _frame(i: int, slot_size: int) -> bytes:
    n = 1 + (i * 53) % (slot_size + 40)
    return bytes((i * 11 + b) & 0xFF for b in range(n))


def _wait_consumer_active(ring: Ring, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not (ring.consumer_lines["state"] == L.CONSUMER_ACTIVE).any():
        assert time.monotonic() < deadline, "the C consumer never joined"
        time.sleep(0.005)


def _parse_slots(out: str) -> list[tuple]:
    rows = []
    for line in out.splitlines():
        parts = line.split(" ")
        if line and line[0].isdigit() and len(parts) == 9:
            rows.append((int(parts[0]), int(parts[1]), int(parts[2]), int(parts[3]),
                         int(parts[4]), int(parts[5]), int(parts[6]), int(parts[7]),
                         bytes.fromhex(parts[8])))
    return rows


# --- the header -----------------------------------------------------------------------------
@needs_cc
@pytest.mark.parametrize("std", ["c11", "gnu11"])
def test_header_compiles_warning_free(tmp_path, std):
    src = tmp_path / "inc.c"
    # the header must be usable as the first and only include, under strict C11 too
    src.write_text('#include "hugering_ring.h"\n'
                   "int main(void) { hr_ring r; char e[64];\n"
                   "  return hr_map(&r, \"/nonexistent\", 0, e, sizeof e) == 0; }\n")
    cc = BC.find_cc()
    flags = ["-O2", f"-std={std}", "-Wall", "-Wextra", "-Werror"] + (
        ["-pedantic"] if std == "c11" else [])
    res = subprocess.run([cc, *flags, f"-I{INCLUDE}", str(src), "-o", str(tmp_path / "inc")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""


@needs_cc
def test_header_constants_agree_with_python(tmp_path):
    """Word indices, limits and cadences of the C twin are those of the Python kernels."""
    names = {
        "HR_P_CURSOR": L.P_CURSOR, "HR_P_HEARTBEAT": L.P_HEARTBEAT,
        "HR_PS_PUBLISHED": L.PS_PUBLISHED, "HR_PS_DROPPED_FULL": L.PS_DROPPED_FULL,
        "HR_PS_EVICTIONS": L.PS_EVICTIONS, "HR_PS_FULL_WAITS": L.PS_FULL_WAITS,
        "HR_PS_NIC_DROPS": L.PS_NIC_DROPS, "HR_H_CAPACITY": L.H_CAPACITY,
        "HR_H_SLOTS_OFFSET": L.H_SLOTS_OFFSET, "HR_H_CONSUMER_TIMEOUT": L.H_CONSUMER_TIMEOUT,
        "HR_H_PRODUCER_PID": L.H_PRODUCER_PID, "HR_H_PRODUCER_START": L.H_PRODUCER_START,
        "HR_C_BASE": L.C_BASE, "HR_C_WORDS": L.C_WORDS, "HR_C_CURSOR": L.C_CURSOR,
        "HR_C_STATE": L.C_STATE, "HR_C_PID": L.C_PID, "HR_C_HEARTBEAT": L.C_HEARTBEAT,
        "HR_C_LOST": L.C_LOST, "HR_C_DELIVERED": L.C_DELIVERED, "HR_C_REJOINS": L.C_REJOINS,
        "HR_C_JOINED": L.C_JOINED, "HR_S_SEQ": L.S_SEQ, "HR_S_TS": L.S_TS,
        "HR_S_LENS": L.S_LENS, "HR_S_PORTQ": L.S_PORTQ, "HR_S_PAYLOAD": L.S_PAYLOAD,
        "HR_MAX_CAPACITY": L.MAX_CAPACITY, "HR_MAX_CONSUMERS_LIMIT": L.MAX_CONSUMERS_LIMIT,
        "HR_HEARTBEAT_EVERY": K.HEARTBEAT_EVERY, "HR_REAP_EVERY": K.REAP_EVERY,
    }
    lines = ['#include "hugering_ring.h"', "int main(void) {"]
    lines += [f'printf("{n} %lld\\n", (long long)({n}));' for n in names]
    lines += ["return 0; }"]
    src = tmp_path / "consts.c"
    src.write_text("\n".join(lines))
    exe = BC.compile_c(src, build_dir=tmp_path, werror=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    got = dict(line.split() for line in out.splitlines())
    assert {k: int(v) for k, v in got.items()} == names


# --- round trips of real bytes ------------------------------------------------------------
def test_c_consumer_reads_python_producer(rt_exe, ring_name):
    slot_size = 96
    n = 300
    ring = Ring.create(ring_name, slots=64, slot_size=slot_size, full_policy="wait")
    proc = subprocess.Popen([str(rt_exe), "consume", ring.backing.path, str(n)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_consumer_active(ring)
        frames = [_frame(i, slot_size) for i in range(n)]
        with ring.producer() as p:
            done = 0
            while done < n:   # small bursts, ts and port/queue per frame, waits while full
                k = K.reserve_wait(p.ctrl, p.words, p.pstate, min(5, n - done),
                                   time.time_ns() + 20_000_000_000)
                assert k > 0, "the C consumer stopped releasing slots"
                for j in range(k):
                    i = done + j
                    p.write(j, frames[i], wire_len=len(frames[i]) + 4, ts_ns=10**12 + i,
                            port=i % 4, queue=i % 2)
                p.submit(k)
                done += k
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        ring.close()
    assert proc.returncode == 0, err
    rows = _parse_slots(out)
    assert len(rows) == n
    assert f"done {n} delivered={n}" in out
    for i, (cursor, seq, ts, wire, cap, port, queue, flags, payload) in enumerate(rows):
        f = frames[i]
        assert (cursor, seq, ts) == (i, i, 10**12 + i)
        assert (wire, port, queue) == (len(f) + 4, i % 4, i % 2)
        assert cap == min(len(f), slot_size)
        assert flags == (L.SLOT_FLAG_TRUNCATED if len(f) > slot_size else 0)
        assert payload == f[:slot_size]


def test_c_receive_reads_python_producer_lossy(rt_exe, ring_name):
    """hr_receive (the seqlock copy) on a lossy ring, with a consumer that keeps up."""
    slot_size = 64
    n = 200
    ring = Ring.create(ring_name, slots=1024, slot_size=slot_size, mode="lossy")
    proc = subprocess.Popen([str(rt_exe), "receive", ring.backing.path, str(n)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_consumer_active(ring)
        frames = [_frame(i, slot_size) for i in range(n)]
        with ring.producer() as p:
            for i in range(0, n, 10):
                assert p.publish(frames[i:i + 10], ts_ns=7 + i) == len(frames[i:i + 10])
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        ring.close()
    assert proc.returncode == 0, err
    rows = _parse_slots(out)
    assert [r[1] for r in rows] == list(range(n))
    for i, row in enumerate(rows):
        f = frames[i]
        assert row[2] == 7 + i // 10 * 10
        assert row[4] == min(len(f), slot_size) and row[8] == f[:slot_size]


def test_python_consumer_reads_c_producer(rt_exe, ring_name):
    slot_size = 128
    n = 500
    ring = Ring.create(ring_name, slots=32, slot_size=slot_size, full_policy="wait")
    try:
        with Ring.open(ring_name).consumer() as c:
            proc = subprocess.Popen([str(rt_exe), "produce", ring.backing.path, str(n)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            got = []
            try:
                for batch in c.batches(max_batch=8, timeout=20.0):
                    for rec in batch:
                        got.append((int(rec["seq"]), int(rec["ts_ns"]), int(rec["wire_len"]),
                                    int(rec["cap_len"]), int(rec["port"]), int(rec["queue"]),
                                    int(rec["flags"]),
                                    bytes(rec["payload"][:min(int(rec["cap_len"]), slot_size)])))
                    if len(got) >= n:
                        break
                out, err = proc.communicate(timeout=60)
            finally:
                if proc.poll() is None:
                    proc.kill()
        assert proc.returncode == 0, err
        assert f"published {n}" in out
        assert int(ring.ctrl[L.PS_PUBLISHED]) == n
    finally:
        ring.close()
    assert len(got) == n
    for i, (seq, ts, wire, cap, port, queue, flags, payload) in enumerate(got):
        length = 1 + (i * 37) % (slot_size + 40)
        frame = bytes((i * 7 + b) & 0xFF for b in range(length))
        assert (seq, ts, port, queue) == (i, 1000 * i, i % 5, i % 3)
        assert wire == length + i % 3
        assert cap == min(length, slot_size)
        assert flags == (L.SLOT_FLAG_TRUNCATED if length > slot_size else 0)
        assert payload == frame[:slot_size]


@pytest.mark.parametrize("word, value, field", [
    (0, 0x1234, "magic"),
    (1, L.LAYOUT_VERSION + 1, "layout_version"),      # layout_version | mode << 32
    (L.H_CAPACITY, 48, "capacity"),
])
def test_hr_map_refuses_a_damaged_header(rt_exe, ring_name, word, value, field):
    ring = Ring.create(ring_name, slots=16, slot_size=64)
    try:
        ok = subprocess.run([str(rt_exe), "check", ring.backing.path],
                            capture_output=True, text=True)
        assert ok.returncode == 0 and ok.stdout.startswith("ok capacity=16 slot_size=64")
        ring.ctrl[word] = value
        bad = subprocess.run([str(rt_exe), "check", ring.backing.path],
                             capture_output=True, text=True)
    finally:
        ring.close()
    assert bad.returncode == 3
    assert f"field '{field}'" in bad.stdout


# --- the benchmark program ------------------------------------------------------------------
@pytest.mark.slow
@needs_cc
def test_bench_ring_quick_json():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cpus = sorted(BC.available_cpus())[:2]
    res = subprocess.run([sys.executable, str(TOOLS / "bench_ring.py"), "--quick", "--json",
                          "--cpus", ",".join(map(str, cpus))],
                         capture_output=True, text=True, cwd=str(ROOT), env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    lines = [line for line in res.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, res.stdout           # exactly one JSON object on stdout
    d = json.loads(lines[0])
    for key in ("hugering_mpps", "c_mpps", "ratio_vs_c", "mpqueue_mpps", "ratio_vs_mpqueue"):
        assert isinstance(d[key], float) and d[key] > 0, key
    for impl in ("hugering", "c"):
        for lat in (d["latency_ns"][impl], d["latency_ns_pooled"][impl]):
            assert set(lat) == {"p50", "p99", "p999", "p9999"}
            assert 0 < lat["p50"] <= lat["p99"] <= lat["p999"] <= lat["p9999"]
    assert d["repeats"] >= 1 and d["messages"] > 0
    assert (d["burst"], d["payload"]) == (32, 64)
    assert d["cpus"] == cpus
    assert d["machine"]["nproc"] >= 1 and "model_name" in d["machine"]
