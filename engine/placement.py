"""Where the poll loop runs, and what stands between it and a steady latency figure.

Two halves, both slow path (setup only, nothing here runs per packet):

* **Placement**: read the machine's topology from sysfs (online, isolated and ``nohz_full``
  cpus, NUMA nodes, hyperthread siblings, a NIC's node), pin the poll thread with
  ``os.sched_setaffinity``, ask the kernel which node a ring's pages sit on (``move_pages``
  with no target nodes is a pure query), and turn what is wrong into one warning line each.
* **Jitter controls**: lock memory (``mlockall``), optional ``SCHED_FIFO``, freeze the garbage
  collector, prefault the ring's pages, and report what was and was not obtained, so the
  operator knows what the latency figures stand on.

Nothing here fails because the machine lacks something: a kernel without NUMA, a VM without
``/sys/devices/system/node``, a virtual NIC without ``numa_node`` or a container that refuses
``mlockall`` all give "unknown" (``None``) or a reported refusal, never an exception.  The only
errors raised are for bad arguments (``pin`` of a cpu that does not exist, a real-time
priority out of range), each naming the value.

sysfs files read (all optional)::

    /sys/devices/system/cpu/online                     "0-3,8-11"  kernel cpu-list syntax
    /sys/devices/system/cpu/isolated                   isolcpus= (empty when none)
    /sys/devices/system/cpu/nohz_full                  nohz_full= (absent or "(null)" when off)
    /sys/devices/system/cpu/cpuN/topology/thread_siblings_list
    /sys/devices/system/node/nodeN/cpulist             one directory per NUMA node
    /sys/class/net/IF/device/numa_node                 -1 when the platform does not say
    /sys/bus/pci/devices/DDDD:BB:DD.F/numa_node

This module imports no numpy at load time (the CLI imports it before the heavy modules, and a
child process that drops privileges can use it from a bare interpreter).
"""
from __future__ import annotations

import ctypes
import errno
import gc
import logging
import mmap
import os
import platform
import resource
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("hugering")

CPU_SYSFS = Path("/sys/devices/system/cpu")
NODE_SYSFS = Path("/sys/devices/system/node")
NET_SYSFS = Path("/sys/class/net")
PCI_SYSFS = Path("/sys/bus/pci/devices")
PROC_STAT = Path("/proc/stat")

BUSY_THRESHOLD = 0.5          # a sibling above this share of non-idle time counts as busy
PAGE = mmap.PAGESIZE

# move_pages(2) is not exported by glibc (libnuma wraps it), so it goes through syscall(2).
# The numbers differ per architecture; an unknown one gives "unsupported", not a guess.
_SYS_MOVE_PAGES = {"x86_64": 279, "aarch64": 239, "riscv64": 239, "ppc64le": 301,
                   "ppc64": 301, "s390x": 310, "i686": 317, "i386": 317}
_MCL_CURRENT, _MCL_FUTURE = 1, 2
_MAX_QUERY_PAGES = 64         # memory_node samples at most this many pages, evenly spaced

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.mlockall.argtypes = [ctypes.c_int]
_libc.mlockall.restype = ctypes.c_int
_libc.mlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mlock.restype = ctypes.c_int


# --- topology (sysfs) -----------------------------------------------------------------------

def parse_cpu_list(text: str) -> list[int]:
    """Kernel cpu-list syntax to a sorted list: ``"0-3,5,7-8"`` -> [0, 1, 2, 3, 5, 7, 8].

    Also the strided form ``"0-15:2/4"`` (in each group of 4 from 0..15, the first 2), which
    ``isolcpus=`` and ``nohz_full=`` accept.  Empty text, whitespace and ``"(null)"`` (what
    ``nohz_full`` reads when off) give [].  Anything else raises ValueError quoting the text."""
    text = (text or "").strip()
    if not text or text == "(null)":
        return []
    cpus: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        try:
            rng, _, stride = part.partition(":")
            lo_s, dash, hi_s = rng.partition("-")
            lo = int(lo_s)
            hi = int(hi_s) if dash else lo
            used, group = 1, 1
            if stride:
                used_s, _, group_s = stride.partition("/")
                used, group = int(used_s), int(group_s)
            if lo < 0 or hi < lo or used < 1 or group < used:
                raise ValueError
        except ValueError:
            raise ValueError(f"bad cpu list {text!r}: {part!r} is not N, N-M or N-M:U/G") from None
        cpus.update(c for c in range(lo, hi + 1) if (c - lo) % group < used)
    return sorted(cpus)


def format_cpu_list(cpus) -> str:
    """The inverse of parse_cpu_list, with ranges: [0, 1, 2, 5] -> "0-2,5" ("" when empty)."""
    out, run = [], []
    for c in sorted(set(cpus)):
        if run and c == run[-1] + 1:
            run.append(c)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [c]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _read_cpus(path: Path) -> list[int]:
    text = _read(path)
    if text is None:
        return []
    try:
        return parse_cpu_list(text)
    except ValueError:
        log.debug("unparsable cpu list in %s: %r", path, text)
        return []


def online_cpus() -> list[int]:
    """Online cpus (sysfs), falling back to this process's affinity when sysfs is absent."""
    cpus = _read_cpus(CPU_SYSFS / "online")
    return cpus or sorted(os.sched_getaffinity(0))


def isolated_cpus() -> list[int]:
    """Cpus removed from the scheduler's balancing by ``isolcpus=`` ([] when none)."""
    return _read_cpus(CPU_SYSFS / "isolated")


def nohz_full_cpus() -> list[int]:
    """Cpus running tickless with one task (``nohz_full=``); [] when absent or "(null)"."""
    return _read_cpus(CPU_SYSFS / "nohz_full")


def is_isolated(cpu: int) -> bool:
    """True when ``cpu`` is in isolcpus or nohz_full: either keeps most of the scheduler's
    housekeeping off it, which is what a busy-polling core needs."""
    return cpu in isolated_cpus() or cpu in nohz_full_cpus()


def numa_nodes() -> list[int]:
    """NUMA node numbers from /sys/devices/system/node/nodeN ([] without NUMA sysfs)."""
    try:
        names = [p.name for p in NODE_SYSFS.glob("node[0-9]*")]
    except OSError:
        return []
    return sorted(int(n[4:]) for n in names if n[4:].isdigit())


def cpu_node(cpu: int) -> int | None:
    """The NUMA node of ``cpu``, or None when sysfs does not say (no NUMA, no such cpu)."""
    try:
        for p in (CPU_SYSFS / f"cpu{int(cpu)}").glob("node[0-9]*"):
            if p.name[4:].isdigit():
                return int(p.name[4:])
    except OSError:
        pass
    for node in numa_nodes():     # older kernels have no cpuN/nodeM link
        if cpu in _read_cpus(NODE_SYSFS / f"node{node}" / "cpulist"):
            return node
    return None


def sibling_cpus(cpu: int) -> list[int]:
    """Hyperthread siblings of ``cpu`` (the other hardware threads of its core), without it."""
    topo = CPU_SYSFS / f"cpu{int(cpu)}" / "topology"
    sibs = _read_cpus(topo / "thread_siblings_list") or _read_cpus(topo / "core_cpus_list")
    return [c for c in sibs if c != cpu]


def _node_value(path: Path) -> int | None:
    text = _read(path)
    try:
        node = int(text.strip()) if text is not None else -1
    except ValueError:
        return None
    return node if node >= 0 else None


def nic_exists(interface: str) -> bool:
    return bool(interface) and "/" not in interface and (NET_SYSFS / interface).exists()


def _pci_path(pci: str) -> Path:
    pci = pci.strip().lower()
    if pci.count(":") == 1:           # "03:00.0" -> "0000:03:00.0"
        pci = "0000:" + pci
    return PCI_SYSFS / pci


def nic_numa_node(interface: str | None = None, pci: str | None = None) -> int | None:
    """The NUMA node a NIC is attached to, by interface name or PCI address; None when it is
    unknown: no such device, a virtual one (``lo``, veth), or a platform that reports -1.

    A virtio NIC's ``device`` is the virtio device, whose ``numa_node`` lives on the PCI
    function above it, so when ``device/numa_node`` is missing the parents are read."""
    if interface:
        if not nic_exists(interface):
            return None
        dev = NET_SYSFS / interface / "device"
        try:
            dev = dev.resolve(strict=True)
        except OSError:
            return None               # virtual interface: no device behind it
        for d in (dev, *dev.parents):
            if d == Path("/sys/devices") or d == d.parent:
                break
            if (d / "numa_node").exists():
                return _node_value(d / "numa_node")
        return None
    if pci:
        return _node_value(_pci_path(pci) / "numa_node")
    return None


# --- which node holds a mapping ------------------------------------------------------------

def _as_range(memory) -> tuple[int, int]:
    """(address, length) from a pair or from anything with ``.ctypes.data`` and ``.nbytes``
    (a numpy array such as ``ring.slot_bytes``)."""
    if hasattr(memory, "ctypes") and hasattr(memory, "nbytes"):
        return int(memory.ctypes.data), int(memory.nbytes)
    address, length = memory
    return int(address), int(length)


def _sample_pages(address: int, length: int, max_pages: int) -> list[int]:
    first = address - address % PAGE
    last = (address + max(length, 1) - 1) // PAGE * PAGE
    n = (last - first) // PAGE + 1
    if n <= max_pages:
        return [first + i * PAGE for i in range(n)]
    if max_pages <= 1:
        return [first]
    step = (n - 1) / (max_pages - 1)
    return sorted({first + round(i * step) * PAGE for i in range(max_pages)})


def page_nodes(address: int, length: int, max_pages: int = _MAX_QUERY_PAGES) -> list[int]:
    """Node of each of up to ``max_pages`` pages spread over [address, address+length), each
    read once first so it is present; per page a node number or a negative errno (``-ENOENT``
    not present, ``-EFAULT`` the shared zero page, ...), as ``move_pages(2)`` reports it.

    ``move_pages(0, n, pages, NULL, status, 0)`` moves nothing: with no target nodes it only
    fills ``status``.  Raises OSError when the system call itself fails (ENOSYS: a kernel built
    without NUMA or migration; EPERM: a seccomp filter), and when the architecture's syscall
    number is not known here (ENOSYS).  The range must be mapped and readable."""
    nr = _SYS_MOVE_PAGES.get(platform.machine())
    if nr is None:
        raise OSError(errno.ENOSYS, f"move_pages syscall number unknown on {platform.machine()}")
    pages = _sample_pages(address, length, max_pages)
    n = len(pages)
    for p in pages:           # a read fault makes the page present (a write is not allowed:
        ctypes.c_char.from_address(max(p, address)).value  # the mapping may be read-only)
    ptrs = (ctypes.c_void_p * n)(*pages)
    status = (ctypes.c_int * n)(*([-errno.ENOENT] * n))
    ret = _libc.syscall(ctypes.c_long(nr), ctypes.c_long(0), ctypes.c_ulong(n), ptrs,
                        ctypes.c_void_p(None), status, ctypes.c_int(0))
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"move_pages: {os.strerror(e)}")
    return list(status)


def memory_node(address: int, length: int) -> int | None:
    """The NUMA node holding the pages of a mapping (the commonest over a sample of its pages),
    or None when the kernel cannot say (no NUMA support, pages not present).  The range must
    be mapped and readable; its pages are read, not written."""
    try:
        nodes = [s for s in page_nodes(address, length) if s >= 0]
    except OSError as e:
        log.debug("memory_node unsupported here: %s", e)
        return None
    return max(sorted(set(nodes)), key=nodes.count) if nodes else None


# --- utilisation of other cpus ------------------------------------------------------------

def _cpu_times() -> dict[int, tuple[int, int]]:
    """Per cpu (busy, total) jiffies from /proc/stat.  Idle is idle + iowait; steal counts as
    busy (on a VM it is time the vCPU could not run, which is what a poller feels)."""
    out = {}
    text = _read(PROC_STAT) or ""
    for line in text.splitlines():
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        name, *fields = line.split()
        try:
            cpu = int(name[3:])
            vals = [int(v) for v in fields[:8]]     # guest time is already inside user/nice
        except ValueError:
            continue
        vals += [0] * (8 - len(vals))
        total = sum(vals)
        out[cpu] = (total - vals[3] - vals[4], total)
    return out


def cpu_utilisation(cpus, sample_s: float = 0.05) -> dict[int, float]:
    """Share (0..1) of non-idle time of each cpu over a ``sample_s`` second sample of
    /proc/stat.  /proc/stat counts in USER_HZ ticks (100/s): 50 ms resolves about 10%.
    Cpus that are offline or not listed are left out."""
    cpus = list(cpus)
    if not cpus:
        return {}
    before = _cpu_times()
    time.sleep(sample_s)
    after = _cpu_times()
    out = {}
    for c in cpus:
        if c in before and c in after:
            busy = after[c][0] - before[c][0]
            total = after[c][1] - before[c][1]
            out[c] = min(1.0, max(0.0, busy / total)) if total > 0 else 0.0
    return out


def busy_siblings(cpu: int, sample_s: float = 0.05) -> list[int]:
    """Hyperthread siblings of ``cpu`` more than half busy over a short sample: they share
    the core's execution units and caches with the poll loop.  [] (and no sampling) when the
    cpu has no siblings."""
    util = cpu_utilisation(sibling_cpus(cpu), sample_s)
    return [c for c, u in util.items() if u > BUSY_THRESHOLD]


# --- pinning --------------------------------------------------------------------------------

def pin(cpu: int) -> None:
    """Pin the calling thread (pid 0 means "this thread" on Linux) to ``cpu``; threads it
    starts afterwards inherit the pin.  Call it from the poll thread before the loop starts.

    Raises ValueError naming the cpu when it does not exist or is outside the current affinity
    mask (taskset, a cpuset): the operator's narrower mask wins over ``--cpu``."""
    if isinstance(cpu, bool) or not isinstance(cpu, int):
        raise ValueError(f"cpu must be an integer, got {cpu!r}")
    online = online_cpus()
    if cpu not in online:
        raise ValueError(f"cpu {cpu} does not exist or is offline "
                         f"(online cpus: {format_cpu_list(online)})")
    allowed = os.sched_getaffinity(0)
    if cpu not in allowed:
        raise ValueError(f"cpu {cpu} is not allowed for this process "
                         f"(affinity {format_cpu_list(allowed)}: taskset or cpuset)")
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as e:      # EINVAL: a cpuset narrower than the mask excludes it
        raise ValueError(f"cpu {cpu} refused by the kernel: {e.strerror}") from None


# --- warnings -------------------------------------------------------------------------------

class PlacementWarning(str):
    """One warning line (a plain ``str`` to print) with ``kind`` saying what it is about:
    "cpu", "isolation", "memory-node", "nic", "nic-node", "sibling"."""
    kind: str

    def __new__(cls, text: str, kind: str):
        self = super().__new__(cls, text)
        self.kind = kind
        return self


def check_placement(cpu: int, *, interface: str | None = None, pci: str | None = None,
                    memory=None, sample_s: float = 0.05) -> list[str]:
    """Warnings (one line each, also logged to the "hugering" logger) about running a poll
    loop on ``cpu``: not isolated, ring memory (``memory``: an (address, length) pair or a
    numpy array) or the NIC (``interface`` or ``pci``) on another NUMA node, a busy
    hyperthread sibling (sampled for ``sample_s`` seconds when the cpu has siblings), an
    interface that does not exist.  Unknowns (no NUMA, a virtual NIC) warn about nothing;
    this never raises for a machine that lacks the sysfs files."""
    out: list[PlacementWarning] = []

    def warn(text, kind):
        out.append(PlacementWarning(text, kind))

    online = online_cpus()
    if cpu not in online:
        warn(f"cpu {cpu} is not an online cpu (online: {format_cpu_list(online)}): "
             "placement not checked", "cpu")
    else:
        if not is_isolated(cpu):
            warn(f"cpu {cpu} is not isolated (isolcpus/nohz_full): expect scheduler jitter",
                 "isolation")
        node = cpu_node(cpu)
        if memory is not None:
            try:
                mnode = memory_node(*_as_range(memory))
            except (TypeError, ValueError) as e:
                mnode = None
                log.debug("memory range not usable: %s", e)
            if mnode is not None and node is not None and mnode != node:
                warn(f"ring memory is on NUMA node {mnode}, cpu {cpu} on node {node}: "
                     "every access crosses the interconnect", "memory-node")
        nic = interface or pci
        if interface and not nic_exists(interface):
            warn(f"NIC {interface} does not exist (no {NET_SYSFS / interface}): "
                 "its NUMA node is not checked", "nic")
        elif pci and not interface and not _pci_path(pci).exists():
            warn(f"NIC {pci} does not exist (no {_pci_path(pci)}): "
                 "its NUMA node is not checked", "nic")
        elif nic:
            nnode = nic_numa_node(interface, pci)
            if nnode is not None and node is not None and nnode != node:
                warn(f"NIC {nic} is on NUMA node {nnode}, cpu {cpu} on node {node}", "nic-node")
        for sib, u in sorted(cpu_utilisation(sibling_cpus(cpu), sample_s).items()):
            if u > BUSY_THRESHOLD:
                warn(f"hyperthread sibling cpu {sib} of cpu {cpu} is busy ({u:.0%})", "sibling")
    for w in out:
        log.warning("%s", w)
    return list(out)


# --- jitter controls ------------------------------------------------------------------------

@dataclass(frozen=True)
class JitterReport:
    """What ``apply_jitter_controls`` obtained.  ``*_error`` is None when it worked or was not
    asked for, else one line saying why not."""
    lock_requested: bool
    memory_locked: bool           # mlockall(MCL_CURRENT | MCL_FUTURE) succeeded
    ranges_locked: bool           # mlockall refused, but the prefault ranges were mlock()ed
    lock_error: str | None
    locked_kb: int | None         # VmLck from /proc/self/status afterwards
    realtime_requested: bool
    realtime: bool                # the calling thread runs SCHED_FIFO
    rt_priority: int | None
    realtime_error: str | None
    gc_frozen: bool
    frozen_objects: int
    prefaulted_bytes: int
    prefault_error: str | None

    def parts(self) -> list[str]:
        """Short phrases for the start-up line."""
        if not self.lock_requested:
            lock = "mlockall off"
        elif self.memory_locked:
            lock = "mlockall ok"
        elif self.ranges_locked:
            lock = f"mlockall refused ({_short(self.lock_error)}), ring locked"
        else:
            lock = f"mlockall refused ({_short(self.lock_error)})"
        if self.realtime:
            rt = f"SCHED_FIFO {self.rt_priority}"
        elif self.realtime_requested:
            rt = f"SCHED_FIFO refused ({_short(self.realtime_error)})"
        else:
            rt = "SCHED_FIFO off"
        out = [lock, rt, "gc frozen" if self.gc_frozen else "gc on"]
        if self.prefaulted_bytes:
            out.append(f"prefaulted {_size(self.prefaulted_bytes)}")
        return out


def _short(err: str | None) -> str:
    return (err or "?").split(":")[0]


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def locked_kb() -> int | None:
    """VmLck of this process in kB (None when /proc does not say)."""
    for line in (_read(Path("/proc/self/status")) or "").splitlines():
        if line.startswith("VmLck:"):
            return int(line.split()[1])
    return None


def _errno_text(e: int) -> str:
    return f"{errno.errorcode.get(e, str(e))}: {os.strerror(e)}"


def _mlock_error(e: int) -> str:
    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    limit = "unlimited" if soft == resource.RLIM_INFINITY else _size(soft)
    if e == errno.ENOMEM:
        return (f"ENOMEM: RLIMIT_MEMLOCK {limit} is below this process's size "
                "(raise `ulimit -l` / LimitMEMLOCK=, or grant CAP_IPC_LOCK)")
    if e == errno.EPERM:
        return f"EPERM: no CAP_IPC_LOCK and RLIMIT_MEMLOCK {limit}"
    return _errno_text(e)


def prefault_pages(ranges) -> int:
    """Read one byte per page of each range (numpy arrays or (address, length) pairs) so the
    first packet does not take a page fault; returns the bytes covered.  Reads, not writes:
    a consumer's slot mapping is read-only.  (For a shared file mapping a read fault maps the
    page writable where the mapping is, so a producer's first write does not fault either.)"""
    import numpy as np
    total = 0
    for r in ranges:
        address, length = _as_range(r)
        if length <= 0:
            continue
        view = np.ctypeslib.as_array((ctypes.c_uint8 * length).from_address(address))
        int(view[0])                       # the (possibly partial) first page
        first = (-address) % PAGE          # offset of the first page boundary in the range
        if first < length:
            int(np.bitwise_or.reduce(view[first::PAGE]))
        total += length
    return total


def _page_span(address: int, length: int) -> tuple[int, int]:
    start = address - address % PAGE
    return start, (address + length - start + PAGE - 1) // PAGE * PAGE


def apply_jitter_controls(*, lock_memory: bool = True, realtime: bool = False,
                          rt_priority: int = 50, freeze_gc: bool = True,
                          prefault: tuple = ()) -> JitterReport:
    """Apply the jitter controls to this process (and, for SCHED_FIFO, the calling thread: call
    it from the poll thread once setup is done, after the ring is mapped and the loop
    compiled).  Never raises for a refusal; every refusal is in the report and logged.

    * ``prefault``: numpy arrays or (address, length) pairs whose pages are read now.
    * ``lock_memory``: ``mlockall(MCL_CURRENT | MCL_FUTURE)``.  Every mapped page becomes
      resident and stays so, including pages mapped later (a large ring will occupy its full
      size in RAM, which is the point).  An ordinary user gets EPERM (RLIMIT_MEMLOCK 0) or
      ENOMEM (the process exceeds RLIMIT_MEMLOCK); then the ``prefault`` ranges alone are
      ``mlock``ed if the limit allows, and the report says "ring locked".
    * ``realtime``: ``SCHED_FIFO`` at ``rt_priority`` (1..99) for the calling thread.  A
      busy-polling FIFO thread never yields: on a core that is not isolated it starves that
      core's kernel threads until RT throttling (``sched_rt_runtime_us``) steps in.
    * ``freeze_gc``: ``gc.collect(); gc.freeze(); gc.disable()``: what setup allocated moves to
      the permanent generation and no collection pass can stop the loop afterwards.
    """
    if realtime:
        lo, hi = os.sched_get_priority_min(os.SCHED_FIFO), os.sched_get_priority_max(os.SCHED_FIFO)
        if isinstance(rt_priority, bool) or not isinstance(rt_priority, int) \
                or not lo <= rt_priority <= hi:
            raise ValueError(f"rt_priority must be an integer {lo}..{hi}, got {rt_priority!r}")
    ranges = [_as_range(r) for r in prefault]

    pre_bytes, pre_err = 0, None
    try:
        pre_bytes = prefault_pages(ranges)
    except (ImportError, OSError, ValueError) as e:
        pre_err = f"prefault failed: {e}"
        log.warning("%s", pre_err)

    mem_locked = ranges_locked = False
    lock_err = None
    if lock_memory:
        if _libc.mlockall(_MCL_CURRENT | _MCL_FUTURE) == 0:
            mem_locked = True
        else:
            lock_err = _mlock_error(ctypes.get_errno())
            if ranges:
                ranges_locked = all(_libc.mlock(ctypes.c_void_p(s), n) == 0
                                    for s, n in (_page_span(a, ln) for a, ln in ranges))
            log.warning("mlockall refused (%s)%s", lock_err,
                        "; the ring's pages are locked" if ranges_locked else
                        ": page faults and swap can reach the poll loop")

    is_rt, rt_err = False, None
    if realtime:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(rt_priority))
            is_rt = os.sched_getscheduler(0) == os.SCHED_FIFO
        except OSError as e:
            rt_err = _errno_text(e.errno) + (
                " (needs root or CAP_SYS_NICE with RLIMIT_RTPRIO)" if e.errno == errno.EPERM
                else "")
            log.warning("SCHED_FIFO refused (%s)", rt_err)

    frozen = 0
    if freeze_gc:
        gc.collect()
        gc.freeze()
        gc.disable()
        frozen = gc.get_freeze_count()

    return JitterReport(
        lock_requested=lock_memory, memory_locked=mem_locked, ranges_locked=ranges_locked,
        lock_error=lock_err, locked_kb=locked_kb(),
        realtime_requested=realtime, realtime=is_rt, rt_priority=rt_priority if is_rt else None,
        realtime_error=rt_err, gc_frozen=freeze_gc, frozen_objects=frozen,
        prefaulted_bytes=pre_bytes, prefault_error=pre_err)


# --- the start-up line ----------------------------------------------------------------------

def startup_line(cpu: int | None, warnings, jitter: JitterReport | None, *,
                 hugepages: bool | None, memory=None) -> str:
    """One line saying what the latency figures stand on, e.g.
    ``placement: cpu 1 (not isolated) · node 0 (ring node 0) · mlockall ok · SCHED_FIFO off ·
    gc frozen · hugepages yes``.

    ``warnings`` is what ``check_placement`` returned (its kinds mark NUMA mismatches);
    ``memory`` (optional, as for check_placement) adds the ring's node; ``cpu`` None means the
    loop is not pinned."""
    kinds = {getattr(w, "kind", None) for w in warnings}
    parts = []
    if cpu is None:
        parts.append("cpu not pinned")
    else:
        parts.append(f"cpu {cpu} ({'isolated' if is_isolated(cpu) else 'not isolated'})")
        node = cpu_node(cpu)
        if node is None or not numa_nodes():
            parts.append("no NUMA")
        else:
            where = f"node {node}"
            extra = []
            if memory is not None:
                try:
                    mnode = memory_node(*_as_range(memory))
                except (TypeError, ValueError):
                    mnode = None
                extra.append(f"ring node {'?' if mnode is None else mnode}")
            if kinds & {"memory-node", "nic-node"}:
                extra.append("NUMA mismatch")
            parts.append(where + (f" ({', '.join(extra)})" if extra else ""))
    if "sibling" in kinds:
        parts.append("busy HT sibling")
    if jitter is not None:
        parts.extend(jitter.parts())
    parts.append({True: "hugepages yes", False: "hugepages no", None: "hugepages ?"}[hugepages])
    return "placement: " + " · ".join(p.replace("\n", " ") for p in parts)
