"""Consumers map the slot region read-only: a buggy strategy cannot corrupt another's feed.

Three levels of proof: numpy refuses the write, Numba refuses to compile it, and the page
itself is mapped without write permission (a raw write through a pointer kills the process
with SIGSEGV instead of changing the slot)."""
from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

from shm import Ring
from shm import atomics


@pytest.fixture
def published(ring_name):
    ring = Ring.create(ring_name, slots=8, slot_size=64, shm=True)
    with ring.producer() as p:
        p.publish([b"original"])
    yield ring_name
    ring.close()


def test_numpy_write_into_consumer_slot_raises(published):
    ring = Ring.open(published)
    with ring.consumer() as c:
        with ring.producer() as p:          # a second mapping, writable, for the producer
            p.publish([b"fresh"])
        batch = c.poll()
        assert len(batch) == 1 and bytes(batch[0]["payload"][:5]) == b"fresh"
        with pytest.raises(ValueError, match="read-only"):
            batch["payload"][0][0] = 0xFF
        with pytest.raises(ValueError, match="read-only"):
            ring.words[0] = 0
        with pytest.raises(ValueError, match="read-only"):
            ring.slot_bytes[32] = 0
    ring.close()


def test_numba_refuses_to_compile_a_write_into_consumer_slots(published):
    ring = Ring.open(published)

    @numba.njit
    def scribble(words):
        words[0] = 42

    @numba.njit
    def scribble_atomic(words):
        atomics.store_release(words, 0, 42)

    with pytest.raises(numba.core.errors.TypingError):
        scribble(ring.words)
    with pytest.raises(numba.core.errors.TypingError):
        scribble_atomic(ring.words)
    assert int(ring.slots[0]["seq"]) == 0 and bytes(ring.slots[0]["payload"][:8]) == b"original"
    ring.close()


def test_raw_pointer_write_into_consumer_mapping_segfaults(published):
    """Bypass numpy and Numba entirely: the kernel refuses the store."""
    code = textwrap.dedent(f"""
        import ctypes, sys
        sys.path.insert(0, {str(__import__('pathlib').Path(__file__).resolve().parents[1])!r})
        from shm import Ring
        ring = Ring.open({published!r})
        addr = ring.slot_bytes.ctypes.data + 32
        print("mapped", flush=True)
        ctypes.memset(addr, 0xFF, 8)
        print("WROTE", flush=True)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert "mapped" in proc.stdout and "WROTE" not in proc.stdout
    assert proc.returncode == -signal.SIGSEGV
    ring = Ring.open(published)
    assert bytes(ring.slots[0]["payload"][:8]) == b"original"
    ring.close()


def test_producer_mapping_is_writable(published):
    ring = Ring.open(published, writable_slots=True)
    assert ring.words.flags.writeable and isinstance(ring.words, np.ndarray)
    ring.close()
