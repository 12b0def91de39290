"""The DPDK producer from Python: build ``hugering-dpdk``, turn ``dpdk_config`` into its
command line, run it, read what it reports.

    from engine import config as C
    from engine.producers.dpdk import DpdkProducer, launch_plan
    cfg = C.load("deploy.yaml")
    plan = launch_plan(cfg, port=0, ring="md")          # rings md (1 queue) or md.q0, md.q1 ...
    with DpdkProducer(plan) as p:                       # EAL up, ports started, lcores polling
        print(p.startup["ports"][0]["queues"])          # what each queue really got
        final = p.stop()                                # SIGTERM; ports closed, EAL cleaned up

The program itself (``engine/producers/dpdk/hugering_dpdk.c``, its docstring has the data
path) is C against Debian's DPDK 22.11: a poll loop per lcore, ``rte_eth_rx_burst`` into the
ring through ``shm/include/hugering_ring.h`` (the C twin of the Numba verbs).  It is built with
meson and ninja on first use (``program_path``), next to its source when that folder is
writable, else under ``~/.cache/hugering``; ``make dpdk`` does the same ahead of time.  A
machine without DPDK raises ``DpdkUnavailable`` naming the Debian packages; nothing else in the
project imports this module.

EAL arguments (``launch_plan``), from ``dpdk_config.eal_arguments.eal_argv()`` plus what a
producer that shares its machine needs:

* cores: ``-c core_mask`` as written, or ``-l`` the producer's ``cpu`` list (``hugering run``);
  RX queue i is polled by lcore i (round robin when there are fewer lcores than queues);
* memory: huge pages at ``hugepages_mount`` (``--huge-dir`` with ``--huge-unlink``: no map files
  are left there) with ``socket_mem`` as written, when the mount's free huge pages hold the
  pools; otherwise EAL runs on ordinary pages (``--no-huge -m MB``, sized to the pools) and the
  startup note says why.  Not ``--in-memory``: EAL then keeps no shared configuration and drops
  ``-n`` (``rte_memory_get_nchannel()`` reads 0, so ``memory_channels`` would be ignored);
* a file prefix of its own (``file_prefix`` as written, else ``hugering-PID-N``) so that several
  producers run side by side; the program removes its runtime directory at exit, and the next
  launch removes those of runs killed with -9 (``sweep_stale_runtime_dirs``, in the notes);
* devices: ``-a ADDRESS`` for a PCI port, ``--vdev=STRING`` for a virtual one, and ``--no-pci``
  when no port is PCI -- EAL must not probe the machine's other NICs;
* ``--no-telemetry``, ``--log-level=notice``.

Reports: the program prints JSON lines -- ``startup`` once every lcore polls (EAL, pools and
ports as DPDK set them up: queues, descriptors, MTU, pool size and element size, the lcore and
cpu of each queue, memory channels) and ``final`` at exit (port counters, per-queue counters,
``eal_cleanup``).  Port statistics and mempool counts also go into each queue's ring every
second (``Ring.info()["source"]`` / ``["producer"]["nic_drops"]``).
"""
from __future__ import annotations

import collections
import fcntl
import hashlib
import itertools
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine import config as C

SRC_DIR = Path(__file__).with_name("dpdk")
PROGRAM = "hugering-dpdk"
DEBIAN_PACKAGES = "libdpdk-dev dpdk pkg-config meson ninja-build libpcap-dev"
INSTALL_HINT = (f"apt-get install --no-install-recommends {DEBIAN_PACKAGES} (DPDK 22.11 and "
                "its build tools; libpcap-dev for net_pcap)")
STARTUP_TIMEOUT_S = 120.0      # EAL init + a 262143-mbuf pool on ordinary pages: a few s
STOP_TIMEOUT_S = 10.0
PR_SET_PDEATHSIG = 1
_prefixes = itertools.count()


class DpdkUnavailable(RuntimeError):
    """DPDK (or its build tools) is not installed; the message names the Debian packages."""


class DpdkError(RuntimeError):
    """The program refused or failed to start; ``str()`` quotes its error line(s)."""


# --- building -----------------------------------------------------------------------------------
def _build_dir() -> Path:
    if os.access(SRC_DIR, os.W_OK):
        return SRC_DIR / "build"
    tag = hashlib.sha256(str(SRC_DIR).encode()).hexdigest()[:12]
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hugering" / \
        f"dpdk-build-{tag}"


def _require_tools() -> None:
    for tool, pkg in (("pkg-config", "pkg-config"), ("meson", "meson"), ("ninja", "ninja-build")):
        if shutil.which(tool) is None:
            raise DpdkUnavailable(f"building {PROGRAM} needs {tool} (Debian package {pkg}); "
                                  f"{INSTALL_HINT}")
    out = subprocess.run(["pkg-config", "--modversion", "libdpdk"], capture_output=True,
                         text=True)
    if out.returncode != 0:
        raise DpdkUnavailable(f"building {PROGRAM} needs DPDK's development files (pkg-config "
                              f"finds no libdpdk); {INSTALL_HINT}")


def program_path() -> Path:
    """The built program, (re)built now when its sources or the ring headers changed (ninja
    decides; a no-op costs a few ms).  Concurrent callers wait for one build."""
    bd = _build_dir()
    exe = bd / PROGRAM
    if shutil.which("ninja") is None and exe.exists():
        return exe                         # built elsewhere (make dpdk), tools gone since
    _require_tools()
    bd.parent.mkdir(parents=True, exist_ok=True)
    tag = hashlib.sha256(str(bd).encode()).hexdigest()[:12]
    # the lock lives outside the source tree (not a file to commit, nor one the build removes)
    with open(Path(tempfile.gettempdir()) / f"hugering-dpdk-build-{tag}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (bd / "build.ninja").exists():
            shutil.rmtree(bd, ignore_errors=True)
            _run_build(["meson", "setup", str(bd), str(SRC_DIR), f"-Dpython={sys.executable}"])
        _run_build(["ninja", "-C", str(bd)])
    return exe


def _run_build(cmd: list[str]) -> None:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise DpdkError(f"building {PROGRAM} failed: {' '.join(cmd)}:\n"
                        f"{(out.stdout + out.stderr).strip()[-3000:]}")


# --- the command line ------------------------------------------------------------------------
@dataclass
class LaunchPlan:
    argv: list[str]                 # the whole command line
    eal_argv: list[str]             # the EAL part (what dpdk_config stands for, as run)
    memory: str                     # "hugepages" | "no-huge"
    file_prefix: str
    rings: list[str]                # one per RX queue, in queue order
    ports: list[int]                # indices into dpdk_config.ports
    notes: list[str] = field(default_factory=list)   # what differs from the file, and why


def port_pool(dpdk: C.DpdkConfig, port: int) -> C.BufferPool:
    """The pool port ``port`` takes its mbufs from (engine.config's rule)."""
    return dpdk.buffer_pools[port % len(dpdk.buffer_pools)]


def runtime_base() -> Path:
    """Where EAL keeps its runtime directories (``eal_get_runtime_dir``): /var/run/dpdk for
    root, else $XDG_RUNTIME_DIR/dpdk (or /tmp/dpdk)."""
    if os.geteuid() == 0:
        return Path("/var/run/dpdk")
    return Path(os.environ.get("XDG_RUNTIME_DIR") or "/tmp") / "dpdk"


def sweep_stale_runtime_dirs(base: Path | None = None) -> list[str]:
    """Remove the EAL runtime directories of our own file prefixes (``hugering-PID-N``) whose
    process is gone: a run stopped cleanly removes its directory, one killed with -9 cannot,
    and each run has a prefix of its own, so they would pile up.  Returns the names removed."""
    from shm.clock import pid_alive
    base = base or runtime_base()
    removed = []
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return removed
    for name in names:
        parts = name.split("-")
        if len(parts) != 3 or parts[0] != "hugering" or not parts[1].isdigit() \
                or not parts[2].isdigit() or pid_alive(int(parts[1])):
            continue
        shutil.rmtree(base / name, ignore_errors=True)
        if not (base / name).exists():
            removed.append(name)
    return removed


def launch_plan(cfg: C.Config, port: int = 0, ring: str | None = None,
                tx_ring: str | None = None, cpus: list[int] | None = None,
                memory: str = "auto", file_prefix: str | None = None,
                hugetlbfs: str | None = None, duration: float | None = None,
                stats_ms: int = 1000, program: Path | None = None) -> LaunchPlan:
    """The command line that runs dpdk_config.ports[port] into ring ``ring`` (rings
    ``ring.qI`` for several RX queues).  ``cpus``: one lcore per RX queue instead of the
    core_mask (``hugering run``'s producer ``cpu``).  ``memory``: auto (huge pages when the
    pools fit in the free ones), hugepages, no-huge."""
    d = cfg.dpdk
    if d is None or not d.ports:
        raise C.ConfigError("dpdk_config", "no dpdk_config ports to run", cfg.source)
    if not 0 <= port < len(d.ports):
        raise C.ConfigError("dpdk_config.ports", f"no port {port} (the file has "
                                                 f"{len(d.ports)})", cfg.source)
    if memory not in ("auto", "hugepages", "no-huge"):
        raise ValueError(f"memory must be auto, hugepages or no-huge, got {memory!r}")
    pc = d.ports[port]
    pool = port_pool(d, port)
    eal = d.eal_arguments
    argv = eal.eal_argv()
    notes: list[str] = []
    if cpus is not None:
        if len(cpus) != pc.rx_queues:
            raise ValueError(f"cpus: one per RX queue ({pc.rx_queues}), got {len(cpus)}")
        i = argv.index("-c")
        lcores = sorted(set(cpus))
        argv[i:i + 2] = ["-l", ",".join(map(str, lcores))]
        if eal.main_lcore is not None and eal.main_lcore not in lcores:
            j = argv.index("--main-lcore")
            del argv[j:j + 2]
    # memory: huge pages when the pools fit in what the mount has free, else ordinary pages
    from shm.backing import mount_page_size
    need = C.pool_memory_bytes(C.DpdkConfig(eal, (pc,), (pool,)))
    page = mount_page_size(eal.hugepages_mount)
    free = C._free_pages(page) if page else None
    fits = page is not None and free is not None and free * page >= need
    mode = memory if memory != "auto" else ("hugepages" if fits else "no-huge")
    if mode == "no-huge":
        mb = -(-need // (64 << 20)) * 64
        i = argv.index("--huge-dir")
        del argv[i:i + 2]
        if "--socket-mem" in argv:
            i = argv.index("--socket-mem")
            del argv[i:i + 2]
        argv += ["--no-huge", "-m", str(mb)]
        why = ("asked for (--memory no-huge)" if memory == "no-huge" else
               f"{eal.hugepages_mount} is not a hugetlbfs mount" if page is None else
               f"the pools need about {need >> 20} MB and {eal.hugepages_mount} has {free} free "
               f"huge pages of {page >> 20} MiB")
        notes.append(f"EAL runs on ordinary pages (--no-huge -m {mb}): {why}; "
                     "socket_mem is not applied")
    else:
        argv.append("--huge-unlink")       # the map files go as soon as they are mapped
    stale = sweep_stale_runtime_dirs()
    if stale:
        notes.append(f"removed the EAL runtime director{'y' if len(stale) == 1 else 'ies'} of "
                     f"{len(stale)} killed run{'s' * (len(stale) > 1)} ({', '.join(stale)})")
    prefix = eal.file_prefix or file_prefix or f"hugering-{os.getpid()}-{next(_prefixes)}"
    if "--file-prefix" not in argv:
        argv += ["--file-prefix", prefix]
    if pc.is_vdev:
        argv += ["--no-pci", f"--vdev={pc.device_id}"]
    else:
        argv += ["-a", pc.device_id]
    argv += ["--no-telemetry", "--log-level=notice"]

    ring = ring or "dpdk"
    rings = list(C.ring_names(ring, pc.rx_queues))
    app = ["--pool", f"{d.buffer_pools.index(pool)},{pool.pool_name},{pool.element_count},"
                     f"{pool.element_size}",
           "--port", f"{port},{pc.device_name},{pc.rx_queues},{pc.tx_queues},"
                     f"{pc.ring_descriptor_size},{pc.mtu},{pool.pool_name},{ring}"
                     + (f",{tx_ring}" if tx_ring else ""),
           "--stats-ms", str(stats_ms)]
    if cpus is not None:
        app += ["--queue-lcores", ",".join(map(str, cpus))]
    if hugetlbfs:
        app += ["--hugetlbfs", hugetlbfs]
    if duration:
        app += ["--duration", repr(float(duration))]
    exe = str(program) if program else str(program_path())
    return LaunchPlan(argv=[exe, *argv, "--", *app], eal_argv=argv, memory=mode,
                      file_prefix=prefix, rings=rings, ports=[port], notes=notes)


# --- running ------------------------------------------------------------------------------------
def _die_with_parent():
    """preexec: SIGTERM the program if the Python process that started it dies (a kill -9 of
    hugering run or of a test must not leave an lcore busy-polling)."""
    import ctypes
    try:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class DpdkProducer:
    """One running ``hugering-dpdk``.  ``start()`` returns once it reports ``startup`` (raises
    ``DpdkError`` with its error lines if it exits first); ``stop()`` sends SIGTERM and returns
    the ``final`` report.  stderr lines are kept (``stderr_lines``) and, with ``echo``, copied
    to this process's stderr as they come."""

    def __init__(self, plan: LaunchPlan, echo: bool = False,
                 startup_timeout: float = STARTUP_TIMEOUT_S):
        self.plan = plan
        self.echo = echo
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self.startup: dict | None = None
        self.final: dict | None = None
        self.stderr_lines: collections.deque = collections.deque(maxlen=200)
        self._err_thread: threading.Thread | None = None
        self._stopped_at: float | None = None
        self.stop_s: float | None = None        # SIGTERM -> exit

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def _drain_stderr(self) -> None:
        for line in self.proc.stderr:
            line = line.rstrip("\n")
            self.stderr_lines.append(line)
            if self.echo:
                print(line, file=sys.stderr, flush=True)

    def _errors(self) -> str:
        lines = list(self.stderr_lines)
        mine = [ln for ln in lines if ln.startswith("hugering-dpdk: error:")]
        return "\n".join(mine or lines[-15:]) or "(no message)"

    def start(self) -> dict:
        self.proc = subprocess.Popen(self.plan.argv, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                                     preexec_fn=_die_with_parent)
        self._err_thread = threading.Thread(target=self._drain_stderr, daemon=True)
        self._err_thread.start()
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + self.startup_timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.kill()
                    raise DpdkError(f"{PROGRAM} did not report startup within "
                                    f"{self.startup_timeout:.0f} s: {self._errors()}")
                if not sel.select(timeout=min(left, 0.5)):
                    if self.proc.poll() is not None:
                        break
                    continue
                line = self.proc.stdout.readline()
                if not line:
                    break
                doc = _json(line)
                if doc and doc.get("event") == "startup":
                    self.startup = doc
                    return doc
        finally:
            sel.close()
        rc = self.proc.wait()
        self._err_thread.join(timeout=5)
        raise DpdkError(f"{PROGRAM} exited with status {rc} before it started: "
                        f"{self._errors()}")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig: int = signal.SIGTERM) -> None:
        if self.running():
            self._stopped_at = time.monotonic()
            self.proc.send_signal(sig)

    def wait(self, timeout: float | None = None) -> dict | None:
        """Wait for the program to exit (after a signal or its --duration); the final report."""
        out, _ = self.proc.communicate(timeout=timeout)
        if self._stopped_at is not None:
            self.stop_s = time.monotonic() - self._stopped_at
        if self._err_thread is not None:
            self._err_thread.join(timeout=5)
        for line in out.splitlines():
            doc = _json(line)
            if doc and doc.get("event") == "final":
                self.final = doc
        return self.final

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> dict | None:
        """Ask it to stop (SIGTERM: the lcores leave their loops, ports are stopped and closed,
        pools freed, EAL cleaned up) and return its final report; SIGKILL after ``timeout``."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.send_signal(sig)
            try:
                return self.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise DpdkError(f"{PROGRAM} (pid {self.proc.pid}) ignored {sig!r} for "
                                f"{timeout:.0f} s: killed") from None
        return self.final if self.final is not None else self.wait(timeout)

    def kill(self) -> None:
        if self.running():
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> "DpdkProducer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.stop()
        finally:
            self.kill()

    def returncode(self) -> int | None:
        return self.proc.returncode if self.proc else None


def _json(line: str) -> dict | None:
    try:
        doc = json.loads(line)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def main(argv=None) -> int:
    """``python -m engine.producers.dpdk --build``: build the program (``make dpdk``)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv != ["--build"]:
        print("usage: python -m engine.producers.dpdk --build", file=sys.stderr)
        return 2
    try:
        print(program_path())
    except DpdkUnavailable as e:
        print(f"hugering: error: {e}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
