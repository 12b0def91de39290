"""Bad input gets one clear error that names the problem, and changes nothing on disk."""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from shm import Ring, RingError, RingFormatError, RingNameError, RingNotFoundError
from shm import backing as B
from shm import layout as L


def _rings() -> set[str]:
    return {n for n, _ in B.list_rings()}


@pytest.mark.parametrize("bad", ["a/b", "../x", "..", "x..y", "/abs", "", "a\x00b", "x" * 300,
                                 ".hidden", "-dash", "sp ace", "uni\u00e9"])
def test_hostile_ring_names_are_refused_and_nothing_is_created(bad):
    before = _rings()
    with pytest.raises(RingNameError):
        Ring.create(bad, slots=8, slot_size=64, shm=True)
    with pytest.raises(RingNameError):
        Ring.open(bad)
    assert _rings() == before


@pytest.mark.parametrize("kwargs,key", [
    ({"slots": 1000}, "slots"), ({"slots": 0}, "slots"), ({"slots": 1}, "slots"),
    ({"slots": 1 << 27}, "slots"), ({"slot_size": 63}, "slot_size"),
    ({"slot_size": 9217}, "slot_size"), ({"mode": "fast"}, "mode"),
    ({"full_policy": "block"}, "full_policy"), ({"max_consumers": 0}, "max_consumers"),
    ({"consumer_timeout": 0}, "consumer_timeout"),
])
def test_bad_parameters_name_the_key_and_create_nothing(ring_name, kwargs, key):
    args = {"slots": 8, "slot_size": 64, "shm": True} | kwargs
    with pytest.raises(RingError, match=key):
        Ring.create(ring_name, **args)
    assert ring_name not in _rings()


def test_missing_ring_says_how_to_create_it(ring_name):
    with pytest.raises(RingNotFoundError, match="hugering ring create"):
        Ring.open(ring_name)


def test_existing_ring_is_not_overwritten(ring_name):
    r = Ring.create(ring_name, slots=8, slot_size=64, shm=True)
    with r.producer() as p:
        p.publish([b"keep me"])
    with pytest.raises(RingError, match="already exists"):
        Ring.create(ring_name, slots=16, slot_size=64, shm=True)
    again = Ring.open(ring_name)
    assert again.capacity == 8 and int(again.ctrl[L.P_CURSOR]) == 1
    again.close()
    r.close()


def _corrupt(path: str, offset: int, value: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(value)


def _digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.mark.parametrize("field,value", [
    ("magic", np.uint64(0x1234).tobytes()),
    ("layout_version", np.uint32(99).tobytes()),
    ("mode", np.uint32(7).tobytes()),
    ("capacity", np.int64(1000).tobytes()),
    ("slot_size", np.uint32(10).tobytes()),
    ("slot_stride", np.uint32(96).tobytes()),
    ("max_consumers", np.uint32(0).tobytes()),
    ("slots_offset", np.int64(100).tobytes()),
    ("file_size", np.int64(1 << 40).tobytes()),
])
def test_corrupt_header_is_refused_naming_the_field(ring_name, field, value):
    r = Ring.create(ring_name, slots=8, slot_size=64, shm=True)
    path = r.backing.path
    r.close()
    _corrupt(path, L.HEADER_DTYPE.fields[field][1], value)
    before = _digest(path)
    with pytest.raises(RingFormatError, match=f"'{field}'") as e:
        Ring.open(ring_name)
    assert e.value.field == field
    assert _digest(path) == before          # opening a bad ring writes nothing


def test_truncated_file_is_refused(ring_name):
    r = Ring.create(ring_name, slots=8, slot_size=64, shm=True)
    path, size = r.backing.path, r.file_size
    r.close()
    os.truncate(path, size - 4096)
    with pytest.raises(RingFormatError, match="'file_size'"):
        Ring.open(ring_name)
    os.truncate(path, 64)
    with pytest.raises(RingFormatError, match="'file_size'"):
        Ring.open(ring_name)


def test_foreign_file_is_not_a_ring(ring_name):
    path = os.path.join(B.SHM_DIR, B.FILE_PREFIX + ring_name)
    Path(path).write_bytes(os.urandom(8192))
    before = _digest(path)
    with pytest.raises(RingFormatError, match="'magic'"):
        Ring.open(ring_name)
    assert _digest(path) == before


def test_ring_files_are_private_by_default(ring_name, hugetlbfs):
    old = os.umask(0)
    try:
        r = Ring.create(ring_name, slots=8, slot_size=64)
    finally:
        os.umask(old)
    assert r.backing.kind == L.BACKING_HUGETLBFS
    assert os.stat(r.backing.path).st_mode & 0o777 == 0o600
    r.close()


def test_ring_on_hugepages_places_slots_on_a_huge_page_boundary(ring_name, hugetlbfs):
    r = Ring.create(ring_name, slots=1024, slot_size=2048)
    info = r.info()
    assert info["backing"] == "hugetlbfs" and info["page_size"] == 2 << 20
    assert r.slots_offset % (2 << 20) == 0 and r.file_size % (2 << 20) == 0
    r.close()


class _HugepagesGone:
    """Temporarily shrink the hugepage pool to what is in use (no free pages), as root."""

    knob = Path("/proc/sys/vm/nr_hugepages")

    def __enter__(self):
        self.saved = self.knob.read_text()
        size = B.mount_page_size(B.DEFAULT_HUGETLBFS) or (2 << 20)
        base = Path(f"/sys/kernel/mm/hugepages/hugepages-{size // 1024}kB")
        in_use = int((base / "nr_hugepages").read_text()) - int((base / "free_hugepages").read_text())
        self.knob.write_text(str(in_use))
        return self

    def __exit__(self, *exc):
        self.knob.write_text(self.saved)


def test_no_free_hugepages_explicit_mount_is_an_error_saying_how(ring_name, hugetlbfs,
                                                                  need_root):
    with _HugepagesGone():
        with pytest.raises(B.HugepagesError, match=r"nr_hugepages.*mount -t hugetlbfs"):
            Ring.create(ring_name, slots=1024, slot_size=2048, hugetlbfs=hugetlbfs)
    assert ring_name not in _rings()


def test_no_free_hugepages_default_falls_back_with_one_warning(ring_name, hugetlbfs, need_root,
                                                               caplog):
    with _HugepagesGone(), caplog.at_level(logging.WARNING, logger="hugering"):
        r = Ring.create(ring_name, slots=1024, slot_size=2048)
    warnings = [rec for rec in caplog.records if rec.levelno == logging.WARNING]
    assert len(warnings) == 1
    msg = warnings[0].getMessage()
    assert "POSIX shared memory" in msg and "huge pages" in msg and "nr_hugepages" in msg
    assert "\n" not in msg
    assert r.info()["backing"] == "shm"
    r.close()


def test_not_a_hugetlbfs_mount_is_refused(ring_name, tmp_path):
    with pytest.raises(B.HugepagesError, match="not a hugetlbfs mount"):
        Ring.create(ring_name, slots=8, slot_size=64, hugetlbfs=str(tmp_path))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", [float("inf"), float("nan"), -1.0, "1"])
def test_non_finite_consumer_timeout_is_a_ring_error(ring_name, bad):
    with pytest.raises(RingError, match="consumer_timeout"):
        Ring.create(ring_name, slots=8, slot_size=64, shm=True, consumer_timeout=bad)
    assert ring_name not in _rings()


def test_duplicate_create_does_not_warn_about_a_fallback(ring_name, caplog):
    r = Ring.create(ring_name, slots=8, slot_size=64, shm=True)
    with caplog.at_level(logging.WARNING, logger="hugering"):
        with pytest.raises(RingError, match="already exists"):
            Ring.create(ring_name, slots=8, slot_size=64)
    assert not [rec for rec in caplog.records if rec.levelno == logging.WARNING]
    r.close()
