"""Capture-file reading: parsers.pcap.read_capture against dpkt's pcap reader, same file.

    python tools/bench_pcap.py [--json] [--packets N] [--repeats R]

Writes a classic pcap of N frames (64-127 B) and reads it back, alternating repeats:
hugering's ``read_capture`` (the file into an array of ring slots: read, walk, copy) and
``dpkt.pcap.Reader`` (iterating (ts, bytes) pairs, the least a dpkt user does).  Reports
M records/s medians and their ratio.  dpkt is in the ``bench`` extra; without it only
hugering's figure is reported.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from parsers import pcap as P  # noqa: E402
from shm import layout as L  # noqa: E402
from tools import bench_common as bc  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=1_000_000)
    bc.add_common_args(ap)
    args = ap.parse_args(argv)
    bc.set_quiet(args.json)
    n = 20_000 if args.quick else args.packets
    slots = np.zeros(n, dtype=L.slot_dtype(128))
    slots["ts_ns"] = 1_700_000_000_000_000_000 + np.arange(n, dtype=np.int64) * 1000
    slots["cap_len"] = slots["wire_len"] = 64 + (np.arange(n) % 64)
    fd, path = tempfile.mkstemp(suffix=".pcap")
    os.close(fd)
    try:
        P.write_pcap(path, slots)
        P.read_capture(path, slot_size=128, limit=10)          # compile / load the cache

        def ours(_):
            t = time.perf_counter()
            cap = P.read_capture(path, slot_size=128)
            dt = time.perf_counter() - t
            assert cap.count == n and cap.error is None
            return n / dt / 1e6

        cases = {"hugering": ours}
        try:
            import dpkt

            def theirs(_):
                t = time.perf_counter()
                with open(path, "rb") as f:
                    count = sum(1 for _ in dpkt.pcap.Reader(f))
                dt = time.perf_counter() - t
                assert count == n
                return n / dt / 1e6

            cases["dpkt"] = theirs
        except ImportError:
            bc.progress("dpkt is not installed (pip install '.[bench]'): hugering only")
        runs = bc.run_alternating(cases, bc.repeats(args))
        result = {"benchmark": "pcap_read", "packets": n, "repeats": bc.repeats(args),
                  "hugering_mrecords_s": bc.summarize(runs["hugering"])["median"]}
        if "dpkt" in runs:
            result["dpkt_mrecords_s"] = bc.summarize(runs["dpkt"])["median"]
            result["speedup_vs_dpkt"] = result["hugering_mrecords_s"] / result["dpkt_mrecords_s"]
        result["machine"] = bc.machine_info()
        bc.emit(result, args.json, lambda r: bc.format_table(
            ["reader", "M records/s"],
            [[k.replace("_mrecords_s", ""), v] for k, v in r.items() if k.endswith("_s")]))
    finally:
        os.unlink(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
