"""Write examples/data/feed.pcap, the recorded feed ``examples/replay.yaml`` replays.

5,000 Ethernet/IPv4/UDP frames of 64..160 bytes from the synthetic producer's reference
builder (``engine.producers.synthetic.build_frame``), alternating between destination ports
30001 and 30002, whose sequence number rises by one per packet -- what examples/strategy.py
reads as a price -- 200 us apart, from a fixed start time.  Deterministic: rerunning it
rewrites the same bytes.

    python examples/make_feed.py [OUT.pcap]
"""
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from engine.producers.synthetic import build_frame  # noqa: E402
from parsers.pcap import write_pcap  # noqa: E402
from shm import layout as L  # noqa: E402

COUNT = 5000
GAP_NS = 200_000
START_NS = 1_764_000_000 * 10**9


def main(out: str) -> int:
    rng = random.Random(2026)
    slots = np.zeros(COUNT, dtype=L.slot_dtype(256))
    for i in range(COUNT):
        inst = i & 1
        frame = build_frame(rng.randrange(64, 161), 0x0A010001 + inst, 0x0A020001,
                            40000 + inst, 30001 + inst, producer_id=7 + inst, seq=i)
        slots[i]["ts_ns"] = START_NS + i * GAP_NS
        slots[i]["wire_len"] = slots[i]["cap_len"] = len(frame)
        slots[i]["payload"][:len(frame)] = np.frombuffer(frame, np.uint8)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    write_pcap(out, slots)
    print(f"wrote {COUNT} frames to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else
                  str(Path(__file__).resolve().parent / "data" / "feed.pcap")))
