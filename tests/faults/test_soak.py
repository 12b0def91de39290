"""Soak: stamped messages, 1 producer -> 3 consumer processes with random pauses (tools/soak.py).

The suite runs the program itself (10^7 messages; 10^8 with HUGERING_LONG=1) and takes its
verdict; a second test feeds the checker a stream with a known number of lost, late,
repeated and corrupt messages, so a soak that passes is known to be able to fail.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from faultkit import LONG, ROOT, SOAK_MESSAGES, soak
from shm import Ring
from shm import kernels as K
from shm.clock import now_ns


@pytest.mark.fault("soak", fault="soak: 1 producer -> 3 consumer processes, lossless ring",
                   injected="10^7 stamped (producer, seq) messages "
                            "(10^8 with HUGERING_LONG=1); each consumer pauses at random points, "
                            "half of the time holding a peeked burst",
                   expected="0 lost, 0 duplicated, 0 reordered, 0 corrupt; RSS and huge pages "
                            "flat from start to end")
@pytest.mark.timeout(1800 if LONG else 300)
def test_soak_loses_duplicates_and_reorders_nothing_and_memory_stays_flat(fault_row):
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "soak.py"), "--messages",
                          str(SOAK_MESSAGES), "--json"], capture_output=True, text=True,
                         timeout=1700 if LONG else 280, cwd=str(ROOT))
    assert out.stdout.strip(), out.stderr[-3000:]
    rep = json.loads(out.stdout.strip().splitlines()[-1])
    line = soak.verdict_line(rep)
    assert rep["verdict"] == "PASS", line
    assert out.returncode == 0
    assert rep["messages"] == SOAK_MESSAGES and rep["consumers"] == 3
    for r in rep["results"]:
        assert (r["lost"], r["duplicated"], r["reordered"], r["corrupt"]) == (0, 0, 0, 0)
        assert r["data"] == SOAK_MESSAGES and r["line"]["delivered"] == SOAK_MESSAGES + 1
        assert r["pauses"] > 0, "the consumers never paused: the soak did not stress the ring"
    assert rep["producer"]["full_waits"] > 0, "the producer never met a full ring"
    for m in rep["memory"]:
        assert m["rss_growth"] <= soak.RSS_SLACK and m["hugetlb_start"] == m["hugetlb_end"]
    fault_row.observe(line.split("; per consumer")[0].replace("soak PASS: ", "") +
                      f"; per consumer lost/duplicated/reordered/corrupt 0; pauses "
                      f"{'/'.join(str(r['pauses']) for r in rep['results'])}; RSS growth ≤ "
                      f"{max(m['rss_growth'] for m in rep['memory']) // 1024} KiB, huge pages "
                      f"unchanged", messages=rep["messages"], elapsed_s=rep["elapsed_s"])


@pytest.mark.fault("soak-minutes", fault="soak for a duration: tools/soak.py --minutes",
                   injected="--minutes 0.05 (3 s)",
                   expected="runs until the time is up, then a PASS verdict line with the counts")
@pytest.mark.timeout(120)
def test_soak_for_minutes_prints_a_verdict_with_counts(fault_row):
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "soak.py"), "--minutes", "0.05"],
                         capture_output=True, text=True, timeout=110, cwd=str(ROOT))
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    verdict = out.stdout.strip().splitlines()[-1]
    assert verdict.startswith("soak PASS: ") and "lost 0/0/0" in verdict, verdict
    assert "duplicated 0/0/0, reordered 0/0/0, corrupt 0/0/0" in verdict
    n = int(verdict.split("soak PASS: ")[1].split(" messages")[0].replace(",", ""))
    assert n > 0
    fault_row.observe(f"PASS after {n:,} messages")


def _lying_stream(ring: Ring, payload_seqs: list[int], corrupt_at: set[int], end_id: int):
    """Publish one message per entry, stamped with that sequence number in the slot and the
    payload (as a ring that delivered it would show it), a payload word spoiled where asked."""
    nwords = ring.slot_size // 8
    with ring.producer() as p:
        for i, seq in enumerate(payload_seqs):
            assert p.reserve(1) == 1
            b = K.slot_base(p.pstate, 0)
            K.submit(p.ctrl, p.words, p.pstate, 1, now_ns())
            ring.words[b + 0] = seq                   # the slot's stamp, as delivered
            ring.words[b + 4] = end_id if i == len(payload_seqs) - 1 else 1
            ring.words[b + 5:b + 4 + nwords] = seq
            if i in corrupt_at:
                ring.words[b + 4 + nwords - 1] = -7


@pytest.mark.fault("soak-checker", fault="the soak's own checker",
                   injected="a stream that skips 2 numbers, delivers 1 late, repeats 1 and "
                            "corrupts 1 payload word",
                   expected="each counted in its own class (lost 2, reordered 1, duplicated 1, "
                            "corrupt 1)")
def test_soak_checker_counts_every_kind_of_damage(ring_name, fault_row):
    ring = Ring.create(ring_name, slots=64, slot_size=64, shm=True)
    view = Ring.open(ring_name)
    try:
        cons = view.consumer()
        st, gaps = soak._new_state(view, cons.cursor, 1)
        saved = np.zeros(soak.S_WORDS, np.int64)
        #           in order  gap(3,4) late dup corrupt gap(7) end
        seqs = [0, 1, 2, 5, 6, 3, 6, 7, 8, 9]
        _lying_stream(ring, seqs, corrupt_at={7}, end_id=soak.END_ID)
        r = soak.consume(view.ctrl, view.words, cons.cstate, st, gaps, saved, 4, 100, False, 10)
        assert r == soak.RET_END
        got = {k: int(st[i]) for k, i in (("lost", soak.S_LOST), ("reordered", soak.S_REORD),
                                         ("duplicated", soak.S_DUP),
                                         ("corrupt", soak.S_CORRUPT), ("data", soak.S_DATA),
                                         ("end", soak.S_END))}
        assert got == {"lost": 2, "reordered": 1, "duplicated": 1, "corrupt": 1, "data": 8,
                       "end": 9}, got
        fault_row.observe(", ".join(f"{k} {v}" for k, v in got.items() if k != "end"))
        cons.close()
    finally:
        view.close()
        ring.close()
