"""Placement and jitter controls against the real machine: no mocked sysfs.

Whatever this machine has (here: 2 vCPUs, one NUMA node, no isolated cores, a virtio NIC that
reports no node) the answers must agree with the kernel's own files, read independently here,
and nothing may raise for what the machine lacks.  Everything that changes process-wide state
(affinity, mlockall, SCHED_FIFO, a frozen gc, dropped privileges) runs in a short child
process, never in pytest's own."""
from __future__ import annotations

import errno
import json
import logging
import mmap
import os
import random
import subprocess
import sys
import textwrap
import time
from dataclasses import FrozenInstanceError
from pathlib import Path

import numpy as np
import pytest

from engine import placement as P
from shm import Ring

ROOT = Path(__file__).resolve().parents[1]
SYS_CPU = Path("/sys/devices/system/cpu")
SYS_NODE = Path("/sys/devices/system/node")


def run_child(code: str, timeout: float = 30) -> str:
    """Run ``code`` in a fresh interpreter with the repository importable; its stdout."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"child failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r.stdout


def child_json(*code: str, timeout: float = 30) -> dict:
    """Run the pieces of code (each dedented on its own) in a child; its last line as JSON."""
    src = "\n".join(textwrap.dedent(c) for c in code)
    return json.loads(run_child(src, timeout).strip().splitlines()[-1])


# --- parse_cpu_list -------------------------------------------------------------------------

def naive_cpu_list(text: str, limit: int = 256) -> list[int]:
    """Membership cpu by cpu, straight from the kernel's description of the syntax."""
    text = text.strip()
    if text in ("", "(null)"):
        return []
    out = []
    for cpu in range(limit):
        for part in text.split(","):
            if ":" in part:
                rng, spec = part.split(":")
                used, group = (int(x) for x in spec.split("/"))
            else:
                rng, used, group = part, 1, 1
            lo, hi = (int(x) for x in rng.split("-")) if "-" in rng else (int(rng),) * 2
            if lo <= cpu <= hi and (cpu - lo) % group < used:
                out.append(cpu)
                break
    return out


@pytest.mark.parametrize("text", [
    "", "\n", "(null)\n", "0", "7\n", "0-3,5,7-8", "7-8,0-3,5", "1-3,2-4", "0,0,0",
    "0-1", " 0-3 , 9 ", "0-15:2/4", "1-17:1/8,3", "0-127", "100-103,5",
])
def test_parse_cpu_list_matches_naive(text):
    assert P.parse_cpu_list(text) == naive_cpu_list(text)


@pytest.mark.parametrize("text", ["a", "3-1", "1-", "-1", "1,,2", "0-3:2", "0-7:3/2", "1.5"])
def test_parse_cpu_list_rejects_garbage_naming_it(text):
    with pytest.raises(ValueError, match="bad cpu list"):
        P.parse_cpu_list(text)


def test_format_then_parse_round_trips():
    rnd = random.Random(4)
    for _ in range(300):
        cpus = sorted(rnd.sample(range(80), rnd.randint(0, 40)))
        assert P.parse_cpu_list(P.format_cpu_list(cpus)) == cpus


def hex_mask_cpus(mask: str) -> list[int]:
    """The kernel's other spelling of a cpu set: comma-separated 32-bit hex words."""
    value = int(mask.strip().replace(",", ""), 16)
    return [i for i in range(value.bit_length()) if value >> i & 1]


def test_parse_agrees_with_the_kernels_own_bitmasks():
    status = dict(line.split(":\t", 1) for line in
                  Path("/proc/self/status").read_text().splitlines() if ":\t" in line)
    assert (P.parse_cpu_list(status["Cpus_allowed_list"])
            == hex_mask_cpus(status["Cpus_allowed"]))
    for node in P.numa_nodes():
        d = SYS_NODE / f"node{node}"
        assert (P.parse_cpu_list((d / "cpulist").read_text())
                == hex_mask_cpus((d / "cpumap").read_text()))


# --- topology -------------------------------------------------------------------------------

def test_topology_is_consistent_with_sysfs():
    online = P.online_cpus()
    assert online and set(os.sched_getaffinity(0)) <= set(online)
    assert P.isolated_cpus() == P.parse_cpu_list((SYS_CPU / "isolated").read_text())
    nohz = SYS_CPU / "nohz_full"
    assert P.nohz_full_cpus() == (P.parse_cpu_list(nohz.read_text()) if nohz.exists() else [])
    nodes = P.numa_nodes()
    if not SYS_NODE.exists():
        assert nodes == [] and all(P.cpu_node(c) is None for c in online)
        return
    for node in nodes:
        for cpu in P.parse_cpu_list((SYS_NODE / f"node{node}" / "cpulist").read_text()):
            assert P.cpu_node(cpu) == node
    for cpu in online:
        assert P.cpu_node(cpu) in nodes
        sibs = P.sibling_cpus(cpu)
        assert cpu not in sibs and set(sibs) <= set(online)
        for s in sibs:
            assert cpu in P.sibling_cpus(s)
    assert P.cpu_node(99999) is None and P.sibling_cpus(99999) == []


def test_nic_numa_node_never_raises_and_matches_sysfs():
    assert P.nic_numa_node() is None
    assert P.nic_numa_node("lo") is None            # virtual: no device behind it
    assert P.nic_numa_node("hgr-nope0") is None
    assert P.nic_numa_node("../../etc") is None     # never a path
    assert P.nic_numa_node(pci="0000:ff:1f.7") is None
    nodes = P.numa_nodes()
    for dev in Path("/sys/class/net").iterdir():
        node = P.nic_numa_node(dev.name)
        f = dev / "device" / "numa_node"
        if f.exists():
            raw = int(f.read_text())
            assert node == (raw if raw >= 0 else None)
        assert node is None or node in nodes


# --- pin ------------------------------------------------------------------------------------

def test_pin_changes_the_affinity_of_a_child():
    for cpu in sorted(os.sched_getaffinity(0)):
        out = child_json(f"""
            import json, os
            from engine.placement import pin
            before = sorted(os.sched_getaffinity(0))
            pin({cpu})
            print(json.dumps({{"before": before, "after": sorted(os.sched_getaffinity(0))}}))
        """)
        assert out["after"] == [cpu], out


def test_pin_refuses_a_cpu_that_does_not_exist_naming_it():
    before = os.sched_getaffinity(0)
    try:
        with pytest.raises(ValueError, match=r"cpu 9999 does not exist"):
            P.pin(9999)
        for bad in (-1, True, "1", 1.0):
            with pytest.raises(ValueError, match="cpu"):
                P.pin(bad)
    finally:
        os.sched_setaffinity(0, before)
    assert os.sched_getaffinity(0) == before


def test_pin_refuses_a_cpu_outside_the_affinity_mask():
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two cpus")
    out = child_json(f"""
        import json, os
        from engine.placement import pin
        os.sched_setaffinity(0, {{{cpus[0]}}})     # as `taskset -c {cpus[0]}` would
        try:
            pin({cpus[1]})
            print(json.dumps({{"error": None}}))
        except ValueError as e:
            print(json.dumps({{"error": str(e), "now": sorted(os.sched_getaffinity(0))}}))
    """)
    assert out["error"] and f"cpu {cpus[1]} is not allowed" in out["error"], out
    assert out["now"] == [cpus[0]]


# --- check_placement ------------------------------------------------------------------------

def really_isolated(cpu: int) -> bool:
    nohz = SYS_CPU / "nohz_full"
    return (cpu in P.parse_cpu_list((SYS_CPU / "isolated").read_text())
            or (nohz.exists() and cpu in P.parse_cpu_list(nohz.read_text())))


def test_check_placement_reports_isolation_as_the_kernel_says(caplog):
    with caplog.at_level(logging.WARNING, logger="hugering"):
        warnings = P.check_placement(0)
    text = "cpu 0 is not isolated (isolcpus/nohz_full): expect scheduler jitter"
    assert (text in warnings) == (not really_isolated(0))
    if not (SYS_CPU / "isolated").read_text().strip() and not really_isolated(0):
        assert text in warnings                   # this machine: nothing isolated
    assert all("\n" not in w for w in warnings)
    assert [r.getMessage() for r in caplog.records if r.name == "hugering"] == warnings


def test_check_placement_never_raises_for_virtual_or_missing_nics():
    lo = P.check_placement(0, interface="lo")
    assert not [w for w in lo if "NIC" in w]
    missing = P.check_placement(0, interface="hgr-nope0")
    assert [w for w in missing if "hgr-nope0" in w and "does not exist" in w]
    missing_pci = P.check_placement(0, pci="0000:ff:1f.7")
    assert [w for w in missing_pci if "0000:ff:1f.7" in w]
    for dev in Path("/sys/class/net").iterdir():
        for w in P.check_placement(0, interface=dev.name):
            assert "does not exist" not in w
    offline = P.check_placement(9999, interface="lo")
    assert len(offline) == 1 and "cpu 9999 is not an online cpu" in offline[0]


def test_check_placement_memory_on_this_machine():
    a = np.ones(1 << 20, dtype=np.uint8)
    for memory in (a, (a.ctypes.data, a.nbytes)):
        warnings = P.check_placement(0, memory=memory)
        node, mnode = P.cpu_node(0), P.memory_node(a.ctypes.data, a.nbytes)
        mismatch = [w for w in warnings if w.kind == "memory-node"]
        assert bool(mismatch) == (node is not None and mnode is not None and node != mnode)


# --- memory_node ----------------------------------------------------------------------------

def assert_node_or_unsupported(address: int, length: int):
    node = P.memory_node(address, length)
    if node is None:
        with pytest.raises(OSError) as e:
            P.page_nodes(address, length)
        assert e.value.errno in (errno.ENOSYS, errno.EPERM), e.value
    else:
        assert node in P.numa_nodes()
    return node


def test_memory_node_of_a_fresh_touched_mapping():
    m = mmap.mmap(-1, 64 * mmap.PAGESIZE)
    a = np.frombuffer(m, dtype=np.uint8)
    a[::mmap.PAGESIZE] = 1
    node = assert_node_or_unsupported(a.ctypes.data, a.nbytes)
    if node is not None:
        assert P.page_nodes(a.ctypes.data, a.nbytes) == [node] * 64
        # an unaligned sub-range inside one page is that page
        assert P.memory_node(a.ctypes.data + 100, 10) == node
    del a
    m.close()


def test_page_nodes_of_untouched_anonymous_memory_does_not_crash():
    """A read of never-written private memory maps the shared zero page, which move_pages
    reports as -EFAULT: memory_node says None rather than inventing a node."""
    m = mmap.mmap(-1, 8 * mmap.PAGESIZE)
    a = np.frombuffer(m, dtype=np.uint8)
    try:
        status = P.page_nodes(a.ctypes.data, a.nbytes)
    except OSError as e:
        assert e.errno in (errno.ENOSYS, errno.EPERM)
    else:
        assert len(status) == 8
        assert all(s in P.numa_nodes() or s < 0 for s in status)
    del a
    m.close()


def test_memory_node_of_a_shm_ring(ring_name):
    ring = Ring.create(ring_name, slots=64, slot_size=256, shm=True)
    try:
        for arr in (ring.ctrl, ring.slot_bytes):
            assert_node_or_unsupported(arr.ctypes.data, arr.nbytes)
    finally:
        ring.close()


def test_memory_node_of_a_hugetlbfs_ring(ring_name, hugetlbfs):
    ring = Ring.create(ring_name, slots=64, slot_size=256, hugetlbfs=hugetlbfs)
    try:
        assert ring.backing.path.startswith(hugetlbfs)
        assert_node_or_unsupported(ring.slot_bytes.ctypes.data, ring.slot_bytes.nbytes)
    finally:
        ring.close()


# --- utilisation and busy siblings ----------------------------------------------------------

SPIN = """
    import os, sys, time
    os.sched_setaffinity(0, {{{cpu}}})
    print("ready", flush=True)
    end = time.monotonic() + {seconds}
    while time.monotonic() < end:
        pass
"""


def spinning(cpu: int, seconds: float = 0.6) -> subprocess.Popen:
    """A child spinning on ``cpu`` for ``seconds`` (short: this machine is shared)."""
    p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(SPIN.format(cpu=cpu,
                                                                             seconds=seconds))],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def test_cpu_utilisation_sees_a_spinning_cpu():
    cpu = max(os.sched_getaffinity(0))
    p = spinning(cpu)
    try:
        util = P.cpu_utilisation([cpu], sample_s=0.3)
    finally:
        p.wait(timeout=10)
    assert util[cpu] > P.BUSY_THRESHOLD, util
    assert P.cpu_utilisation([], 1.0) == {}
    assert P.cpu_utilisation([99999], 0.01) == {}


def test_busy_siblings_on_this_machine():
    for cpu in P.online_cpus():
        sibs = P.sibling_cpus(cpu)
        if not sibs:
            t = time.monotonic()
            assert P.busy_siblings(cpu, sample_s=1.0) == []
            assert time.monotonic() - t < 0.5     # no siblings, no sampling
            continue
        sib = sibs[0]
        if sib not in os.sched_getaffinity(0):
            continue
        p = spinning(sib)
        try:
            assert sib in P.busy_siblings(cpu, sample_s=0.3)
            assert any(w.kind == "sibling" and f"sibling cpu {sib} of cpu {cpu}" in w
                       for w in P.check_placement(cpu, sample_s=0.2))
        finally:
            p.wait(timeout=10)
        break


# --- jitter controls ------------------------------------------------------------------------

REPORT = """
    import dataclasses, gc, json, os
    print(json.dumps(dict(dataclasses.asdict(rep), gc_enabled=gc.isenabled(),
                          freeze_count=gc.get_freeze_count(), vmlck=P.locked_kb(),
                          policy=os.sched_getscheduler(0), uid=os.getuid(),
                          line=globals().get("line"),
                          cap_eff=[l.split()[1] for l in open("/proc/self/status")
                                   if l.startswith("CapEff")][0])))
"""


def test_jitter_controls_as_root(need_root):
    out = child_json("""
        import numpy as np
        from engine import placement as P
        buf = np.zeros(4 << 20, dtype=np.uint8)
        rep = P.apply_jitter_controls(prefault=[buf, (buf.ctypes.data, 4096)])
    """, REPORT)
    assert out["memory_locked"] and out["lock_error"] is None, out
    assert out["vmlck"] > 4096, out                   # the whole process, buf included
    assert out["prefaulted_bytes"] == (4 << 20) + 4096
    assert out["gc_frozen"] and out["freeze_count"] > 0 and not out["gc_enabled"]
    assert not out["realtime"] and out["policy"] == os.SCHED_OTHER


def test_realtime_as_root(need_root):
    # tiny and short: it runs at real-time priority
    out = child_json("""
        import os
        from engine import placement as P
        rep = P.apply_jitter_controls(lock_memory=False, realtime=True, rt_priority=10,
                                      freeze_gc=False)
    """, REPORT, timeout=10)
    assert out["realtime"] and out["rt_priority"] == 10, out
    assert out["policy"] == os.SCHED_FIFO
    assert out["gc_enabled"] and out["vmlck"] == 0


@pytest.mark.parametrize("memlock, expect", [(1 << 20, "ENOMEM"), (0, "EPERM")])
def test_jitter_controls_as_an_ordinary_user(need_root, memlock, expect):
    """An ordinary user (uid 65534, no capabilities) is refused, never raised at.

    The child drops to nobody itself after importing, rather than being started by
    ``runuser``/``setpriv``: the venv's interpreter lives under /root, which nobody cannot
    execute.  setresuid from root clears every capability, which the child reports."""
    out = child_json(f"""
        import dataclasses, gc, json, os, resource   # all imported before dropping to nobody
        import numpy as np
        from engine import placement as P
        resource.setrlimit(resource.RLIMIT_MEMLOCK, ({memlock}, {memlock}))
        resource.setrlimit(resource.RLIMIT_RTPRIO, (0, 0))
        ring = np.zeros(64 << 10, dtype=np.uint8)
        os.setgroups([])
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)
        rep = P.apply_jitter_controls(realtime=True, prefault=[ring])
        # and the rest of start-up still works as nobody, with the gc frozen
        line = P.startup_line(0, P.check_placement(0, memory=ring), rep, hugepages=False,
                              memory=ring)
    """, REPORT)
    assert out["uid"] == 65534 and int(out["cap_eff"], 16) == 0, out
    assert not out["memory_locked"] and out["lock_error"].startswith(expect), out
    if expect == "ENOMEM":        # 64 KiB fits under a 1 MiB limit: the ring alone is locked
        assert out["ranges_locked"] and out["vmlck"] >= 64, out
    else:
        assert not out["ranges_locked"] and out["vmlck"] == 0, out
    assert not out["realtime"] and out["realtime_error"].startswith("EPERM"), out
    assert out["policy"] == os.SCHED_OTHER
    assert out["gc_frozen"] and out["freeze_count"] > 0
    assert out["prefaulted_bytes"] == 64 << 10
    assert f"mlockall refused ({expect})" in out["line"] and "SCHED_FIFO refused (EPERM)" in \
        out["line"], out["line"]


def test_rt_priority_is_validated_before_anything_is_applied():
    for bad in (0, 100, True, "50"):
        with pytest.raises(ValueError, match="rt_priority"):
            P.apply_jitter_controls(lock_memory=False, realtime=True, rt_priority=bad,
                                    freeze_gc=False)
    assert os.sched_getscheduler(0) == os.SCHED_OTHER and gc_enabled()


def gc_enabled() -> bool:
    import gc
    return gc.isenabled()


# --- the start-up line ----------------------------------------------------------------------

def report(**kw) -> P.JitterReport:
    base = dict(lock_requested=True, memory_locked=True, ranges_locked=False, lock_error=None,
                locked_kb=1234, realtime_requested=False, realtime=False, rt_priority=None,
                realtime_error=None, gc_frozen=True, frozen_objects=10, prefaulted_bytes=0,
                prefault_error=None)
    base.update(kw)
    return P.JitterReport(**base)


def test_jitter_report_is_frozen():
    with pytest.raises(FrozenInstanceError):
        report().memory_locked = False


def test_startup_line_is_one_line_and_says_what_was_obtained():
    a = np.ones(1 << 16, dtype=np.uint8)
    warnings = P.check_placement(0, interface="hgr-nope0", memory=a)
    line = P.startup_line(0, warnings, report(), hugepages=True, memory=a)
    assert "\n" not in line and line.startswith("placement: cpu 0 (")
    assert ("(not isolated)" in line) == (not really_isolated(0))
    node = P.cpu_node(0)
    if node is not None:
        mnode = P.memory_node(a.ctypes.data, a.nbytes)
        assert f"node {node} (ring node {'?' if mnode is None else mnode}" in line
    for part in ("mlockall ok", "SCHED_FIFO off", "gc frozen", "hugepages yes"):
        assert part in line, line

    refused = report(memory_locked=False, lock_error="EPERM: no CAP_IPC_LOCK",
                     realtime_requested=True, realtime_error="EPERM: Operation not permitted",
                     gc_frozen=False, prefaulted_bytes=3 << 20)
    line = P.startup_line(None, [], refused, hugepages=False)
    assert line == ("placement: cpu not pinned · mlockall refused (EPERM) · "
                    "SCHED_FIFO refused (EPERM) · gc on · prefaulted 3.0 MiB · hugepages no")
    rt = report(realtime_requested=True, realtime=True, rt_priority=50, ranges_locked=True,
                memory_locked=False, lock_error="ENOMEM: RLIMIT_MEMLOCK 8.0 MiB is below")
    line = P.startup_line(None, [], rt, hugepages=None)
    assert "mlockall refused (ENOMEM), ring locked · SCHED_FIFO 50" in line
    assert line.endswith("hugepages ?")
