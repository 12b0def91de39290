"""The examples a user copies from must keep working."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ring_consumer_example_sees_every_frame():
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "ring_consumer.py")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    m = re.search(r"frames (\d+)  bytes (\d+)  udp (\d+)", proc.stdout)
    assert m, proc.stdout
    frames, nbytes, udp = map(int, m.groups())
    assert frames == 10_000 and udp == 10_000 and nbytes == 10_000 * 74
