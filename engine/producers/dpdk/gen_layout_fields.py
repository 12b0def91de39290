"""Generate ``hugering_layout_fields.h`` for the DPDK producer's build (meson runs this).

The header lists every field of every region of ``shm/layout.py``'s tables as
``X(struct, field)`` entries.  ``hugering-dpdk --layout`` expands the list with ``offsetof`` and
``sizeof`` against the structs of ``shm/include/hugering_layout.h`` -- the header the program
really includes -- and prints them, so ``tests/test_dpdk.py`` can compare the program's
compiled layout with the Python table field by field.  A field the table has and the included
header lacks does not compile; one that moved prints a different offset.

    python gen_layout_fields.py OUTPUT.h
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from shm import layout as L  # noqa: E402

# C struct of each region, as shm.layout.c_header names them
STRUCTS = (("hr_header", L.HEADER_FIELDS), ("hr_producer_line", L.PRODUCER_FIELDS),
           ("hr_producer_stats", L.PRODUCER_STATS_FIELDS),
           ("hr_source_stats", L.SOURCE_STATS_FIELDS),
           ("hr_consumer_line", L.CONSUMER_FIELDS), ("hr_slot_header", L.SLOT_FIELDS))


def text() -> str:
    lines = ["/* GENERATED from shm/layout.py by engine/producers/dpdk/gen_layout_fields.py at",
             " * build time; not committed.  X(struct, field) for every field of the tables. */",
             "#ifndef HUGERING_LAYOUT_FIELDS_H",
             "#define HUGERING_LAYOUT_FIELDS_H",
             f"#define HR_TABLE_LAYOUT_VERSION {L.LAYOUT_VERSION}",
             "#define HR_LAYOUT_STRUCTS(X) \\"]
    lines += [f"    X({s}) \\" for s, _ in STRUCTS]
    lines.append("")
    lines.append("#define HR_LAYOUT_FIELDS(X) \\")
    lines += [f"    X({s}, {name}) \\" for s, fields in STRUCTS for name, *_ in fields]
    lines += ["", "#endif", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: gen_layout_fields.py OUTPUT.h", file=sys.stderr)
        sys.exit(2)
    Path(sys.argv[1]).write_text(text())
