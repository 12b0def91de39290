"""The layout table is the single source of truth: the committed C header, the docstring
table and the numpy dtypes must agree with it, and a C compiler must agree on the offsets."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from shm import layout as L

pytestmark = pytest.mark.pure          # computation only: as root, as any user (conftest)


def test_committed_c_header_matches_table():
    committed = L.header_path().read_text()
    assert committed == L.c_header(), (
        "shm/include/hugering_layout.h is stale: run `python -m shm.layout --write-header`")


def test_docstring_table_matches_table():
    doc = L.__doc__.split(".. layout-table-begin")[1].split(".. layout-table-end")[0].strip()
    assert doc == L.doc_table()


@pytest.mark.parametrize("fields,dtype", [
    (L.HEADER_FIELDS, L.HEADER_DTYPE),
    (L.PRODUCER_FIELDS, L.PRODUCER_DTYPE),
    (L.PRODUCER_STATS_FIELDS, L.PRODUCER_STATS_DTYPE),
    (L.SOURCE_STATS_FIELDS, L.SOURCE_STATS_DTYPE),
    (L.CONSUMER_FIELDS, L.CONSUMER_DTYPE),
    (L.SLOT_FIELDS, L.slot_dtype(2048)),
])
def test_dtypes_follow_table(fields, dtype):
    for name, off, typ, _ in fields:
        ftype, foff = dtype.fields[name][:2]
        assert foff == off, name
        assert ftype == np.dtype("<" + typ), name


@pytest.mark.parametrize("size", [64, 100, 1500, 2048, 9216])
def test_slot_stride_is_cache_aligned_and_fits(size):
    stride = L.slot_stride(size)
    assert stride % 64 == 0 and stride >= 32 + size and stride - (32 + size) < 64
    d = L.slot_dtype(size)
    assert d.itemsize == stride
    assert d.fields["payload"][0].shape == (size,) and d.fields["payload"][1] == 32


def test_word_indices_match_byte_offsets():
    assert L.P_CURSOR * 8 == L.PRODUCER_OFFSET
    assert L.C_BASE * 8 == L.CONSUMERS_OFFSET and L.C_WORDS * 8 == L.LINE
    assert L.CONSUMER_DTYPE.fields["cursor"][1] == L.C_CURSOR * 8
    assert L.CONSUMER_DTYPE.fields["state"][1] == L.C_STATE * 8
    assert L.HEADER_DTYPE.fields["producer_pid"][1] == L.H_PRODUCER_PID * 8
    # the producer cursor and each consumer cursor sit alone at the start of their own line
    assert L.PRODUCER_OFFSET % 64 == 0 and L.CONSUMERS_OFFSET % 64 == 0


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_c_compiler_agrees_on_offsets(tmp_path):
    """Compile the committed header and print every offset; compare with numpy's."""
    lines = ['#include <stdio.h>', '#include "hugering_layout.h"', "int main(void) {"]
    structs = [("hr_header", L.HEADER_DTYPE), ("hr_producer_line", L.PRODUCER_DTYPE),
               ("hr_producer_stats", L.PRODUCER_STATS_DTYPE),
               ("hr_source_stats", L.SOURCE_STATS_DTYPE),
               ("hr_consumer_line", L.CONSUMER_DTYPE)]
    for cname, dt in structs:
        lines.append(f'printf("{cname} %zu\\n", sizeof({cname}));')
        for f in dt.names:
            lines.append(f'printf("{cname}.{f} %zu\\n", offsetof({cname}, {f}));')
    for name, _, _, _ in L.SLOT_FIELDS:
        lines.append(f'printf("hr_slot_header.{name} %zu\\n", offsetof(hr_slot_header, {name}));')
    lines += ["return 0;", "}"]
    src = tmp_path / "offsets.c"
    src.write_text("\n".join(lines))
    exe = tmp_path / "offsets"
    subprocess.run(["gcc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-I",
                    str(L.header_path().parent), str(src), "-o", str(exe)], check=True)
    got = dict(line.rsplit(" ", 1) for line in subprocess.run(
        [str(exe)], capture_output=True, text=True, check=True).stdout.splitlines())
    for cname, dt in structs:
        assert int(got[cname]) == dt.itemsize
        for f in dt.names:
            assert int(got[f"{cname}.{f}"]) == dt.fields[f][1], f"{cname}.{f}"
    for name, off, _, _ in L.SLOT_FIELDS:
        assert int(got[f"hr_slot_header.{name}"]) == off
