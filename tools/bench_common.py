"""Shared plumbing for the benchmark programs in ``tools/`` (ring, parsers, ITCH ...).

A benchmark here is a program, not a timed test (DESIGN.md, house style 9): it measures the
hugering code and a reference (C compiled with ``gcc -O2``, a Python library) *in the same
run*, alternating their repeats so that both see the same noise of a shared machine, and
reports medians over the repeats.  This module gives each program the same command line and
output conventions:

* ``add_common_args(parser)``: ``--repeats N``, ``--json``, ``--quick``, ``--cpus 0,1``.
* ``run_alternating(cases, repeats)``: calls each case once per repeat, in turn, and
  ``summarize`` reduces a list of numbers to median / min / max.
* ``emit(result, as_json, table)``: ``--json`` prints exactly one JSON object on stdout (progress
  and diagnostics go to stderr, via ``progress``), otherwise a readable table.
* ``pin(cpu)`` / ``pinned_preexec(cpu)``: CPU affinity for this process or a child.
* ``compile_c(source)``: ``gcc -O2`` into ``tools/reference/build/`` (gitignored), cached by
  a hash of the source, every header it includes, the flags and the compiler version, so a
  second run does not recompile and an edited header does.
* ``Server``: a child driven by line commands, so that two implementations' processes stay up
  and their short timed segments alternate finely (``Child`` / ``wait_all`` for one-shot runs).
* ``use_numba_cache(name, sources)``: a Numba cache keyed by the content of every source the
  timed loops depend on (a cached caller may have inlined an old kernel).
* ``machine_info()``: what the numbers stand on (cores, CPU model, isolated cores, clock source).
* ``percentiles(samples)``: p50 / p99 / p99.9 / p99.99 of latency samples in ns.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Mapping

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "tools"
REFERENCE_DIR = TOOLS / "reference"
BUILD_DIR = REFERENCE_DIR / "build"
INCLUDE_DIR = ROOT / "shm" / "include"
DEFAULT_CFLAGS = ("-O2", "-std=gnu11", "-Wall", "-Wextra")

LATENCY_PERCENTILES = (("p50", 50.0), ("p99", 99.0), ("p999", 99.9), ("p9999", 99.99))


class BenchError(RuntimeError):
    """A benchmark could not run (compiler missing, a child process failed ...)."""


# --- command line and output --------------------------------------------------------------
def parse_cpus(text: str) -> list[int]:
    """``"0,1"`` -> [0, 1]; ``"2-3"`` -> [2, 3].  Every CPU must exist on this machine (whether
    this process may run there is checked by ``check_cpus``, not here: a pinned child parses
    the same defaults)."""
    cpus: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            if "-" in part:
                lo, hi = part.split("-", 1)
                cpus.extend(range(int(lo), int(hi) + 1))
            else:
                cpus.append(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--cpus: {text!r} is not a list like 0,1 or 2-3")
    n = os.cpu_count() or 1
    bad = [c for c in cpus if not 0 <= c < n]
    if bad:
        raise argparse.ArgumentTypeError(f"--cpus: CPU {bad[0]} does not exist (0..{n - 1})")
    if not cpus:
        raise argparse.ArgumentTypeError("--cpus: give at least one CPU, e.g. 0,1")
    return cpus


def check_cpus(cpus: Iterable[int]) -> None:
    """Raise BenchError unless this process may run on every CPU given."""
    allowed = available_cpus()
    bad = [c for c in cpus if c not in allowed]
    if bad:
        raise BenchError(f"--cpus: CPU {bad[0]} is not available to this process (allowed: "
                         f"{','.join(map(str, sorted(allowed)))})")


def add_common_args(parser: argparse.ArgumentParser, default_repeats: int = 5,
                    quick_repeats: int = 1, default_cpus: str = "0,1") -> argparse.ArgumentParser:
    """``--repeats``, ``--json``, ``--quick`` and ``--cpus``; read the repeats back with
    ``repeats(args)`` (the default depends on ``--quick``)."""
    parser.add_argument("--repeats", type=int, default=None,
                        help=f"repeats per case, alternated between cases; medians are "
                             f"reported (default {default_repeats}, {quick_repeats} with --quick)")
    parser.add_argument("--json", action="store_true",
                        help="print exactly one JSON object on stdout (progress goes to stderr)")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes for a smoke test (numbers are not meaningful)")
    parser.add_argument("--cpus", type=parse_cpus, default=default_cpus,
                        help=f"CPUs to pin to, comma separated (default {default_cpus})")
    parser.set_defaults(_default_repeats=default_repeats, _quick_repeats=quick_repeats)
    return parser


def repeats(args: argparse.Namespace) -> int:
    """The number of repeats asked for, or the default (which ``--quick`` lowers)."""
    if args.repeats is not None:
        if args.repeats < 1:
            raise BenchError("--repeats must be >= 1")
        return args.repeats
    return args._quick_repeats if args.quick else args._default_repeats


_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def progress(*args) -> None:
    """A progress line on stderr (stdout is reserved for the result)."""
    if not _quiet:
        print(*args, file=sys.stderr, flush=True)


def emit(result: Mapping, as_json: bool, table: Callable[[Mapping], str] | None = None) -> None:
    if as_json:
        sys.stdout.write(json.dumps(result, sort_keys=False) + "\n")
    else:
        sys.stdout.write((table(result) if table else json.dumps(result, indent=2)) + "\n")
    sys.stdout.flush()


def format_table(headers: list[str], rows: Iterable[Iterable]) -> str:
    """A plain fixed-width table (no dependency): numbers right-aligned, text left-aligned."""
    rows = [["" if v is None else (f"{v:,.3f}" if isinstance(v, float) else str(v)) for v in r]
            for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]

    def line(cells, header=False):
        out = []
        for i, c in enumerate(cells):
            numeric = not header and c[:1] in "-0123456789" and i > 0
            out.append(c.rjust(widths[i]) if numeric else c.ljust(widths[i]))
        return "  ".join(out).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers, True), sep] + [line(r) for r in rows])


# --- statistics ---------------------------------------------------------------------------
def summarize(values: Iterable[float]) -> dict:
    """Median, min and max of a list of measurements (and the list itself, for the record)."""
    vals = [float(v) for v in values]
    if not vals:
        return {"median": None, "min": None, "max": None, "values": []}
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals),
            "values": vals}


def run_alternating(cases: Mapping[str, Callable[[int], object]], repeats: int,
                    label: str = "") -> dict[str, list]:
    """Run every case once per repeat, in turn (A B C A B C ...), so that slow phases of a
    noisy machine hit all cases alike.  Each case gets the repeat index; returns the results
    per case, in order."""
    out: dict[str, list] = {name: [] for name in cases}
    for r in range(repeats):
        for name, fn in cases.items():
            res = fn(r)
            out[name].append(res)
            progress(f"  {label}{' ' if label else ''}repeat {r + 1}/{repeats} {name}: "
                     f"{_short(res)}")
    return out


def _short(res) -> str:
    if isinstance(res, float):
        return f"{res:.3f}"
    if isinstance(res, dict):
        return ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in res.items() if not isinstance(v, (list, dict)))
    return str(res)


def percentiles(samples, points=LATENCY_PERCENTILES) -> dict:
    """Percentiles (ns) of latency samples, with numpy's default (linear) interpolation."""
    import numpy as np

    a = np.asarray(samples)
    if a.size == 0:
        return {name: None for name, _ in points}
    return {name: float(np.percentile(a, q)) for name, q in points}


# --- Numba cache -------------------------------------------------------------------------------
def numba_cache_dir(name: str, sources: Iterable[str | os.PathLike]) -> str:
    """A Numba cache directory keyed by the content of ``sources`` (and the Python version).

    Numba keys a cached function by its own file only, but LLVM may have inlined code from the
    modules it calls (``shm/kernels.py``): a kernel edited since would then be hidden behind a
    stale cached caller.  Keying the directory by every source the loops depend on makes that
    impossible; the parent and its children compute the same directory."""
    h = hashlib.sha256()
    for p in sorted(Path(s) for s in sources):
        h.update(p.name.encode() + b"\0")
        try:
            h.update(p.read_bytes())
        except OSError:
            pass
    h.update(sys.version.encode())
    base = os.environ.get("HUGERING_BENCH_CACHE") or tempfile.gettempdir()
    return os.path.join(base, f"hugering-{name}-numba-{os.geteuid()}-{h.hexdigest()[:16]}")


def use_numba_cache(name: str, sources: Iterable[str | os.PathLike]) -> str | None:
    """Point NUMBA_CACHE_DIR at ``numba_cache_dir``.  Numba reads it once, when imported: if it
    already is (an interactive session importing a benchmark), nothing changes and None is
    returned."""
    if "numba" in sys.modules:
        progress(f"note: numba was imported before {name}: its cache directory stays "
                 f"{os.environ.get('NUMBA_CACHE_DIR') or 'the default'}")
        return None
    d = numba_cache_dir(name, sources)
    os.environ["NUMBA_CACHE_DIR"] = d
    return d


# --- CPUs and machine -----------------------------------------------------------------------
def available_cpus() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def pin(cpu: int | None) -> bool:
    """Pin the calling process to one CPU; False (and a note on stderr) if that fails."""
    if cpu is None:
        return False
    try:
        os.sched_setaffinity(0, {cpu})
        return True
    except (AttributeError, OSError) as e:
        print(f"warning: cannot pin to CPU {cpu}: {e}", file=sys.stderr)
        return False


def pinned_preexec(cpu: int | None):
    """A ``preexec_fn`` for subprocess.Popen that pins the child before it execs (the affinity
    survives exec, so it holds for C programs and Python alike)."""
    if cpu is None:
        return None

    def _pin():
        os.sched_setaffinity(0, {cpu})

    return _pin


def isolated_cpus() -> str:
    try:
        return Path("/sys/devices/system/cpu/isolated").read_text().strip()
    except OSError:
        return ""


def machine_info() -> dict:
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        clocksource = Path("/sys/devices/system/clocksource/clocksource0/"
                           "current_clocksource").read_text().strip()
    except OSError:
        clocksource = ""
    info = {
        "nproc": os.cpu_count(),
        "model_name": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "isolated_cpus": isolated_cpus(),
        "clocksource": clocksource,
        "virtualized": _hypervisor(),
    }
    try:
        import numba
        import numpy

        info["numba"] = numba.__version__
        info["numpy"] = numpy.__version__
    except ImportError:
        pass
    cc = compiler_version()
    if cc:
        info["cc"] = cc
    return info


def _hypervisor() -> bool:
    try:
        return " hypervisor" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


# --- compiling C references -----------------------------------------------------------------
def find_cc() -> str | None:
    return os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")


_cc_version_cache: dict[str, str] = {}


def compiler_version(cc: str | None = None) -> str:
    cc = cc or find_cc()
    if not cc:
        return ""
    if cc not in _cc_version_cache:
        try:
            out = subprocess.run([cc, "--version"], capture_output=True, text=True, check=True)
            _cc_version_cache[cc] = out.stdout.splitlines()[0].strip()
        except (OSError, subprocess.CalledProcessError, IndexError):
            _cc_version_cache[cc] = ""
    return _cc_version_cache[cc]


def _dependencies(cc: str, source: Path, include_dirs: list[Path], flags: list[str]) -> list[Path]:
    """The source and every non-system header it includes (``cc -MM``)."""
    cmd = [cc, *flags, *[f"-I{d}" for d in include_dirs], "-MM", str(source)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return [source]
    deps = out.replace("\\\n", " ").split(":", 1)[-1].split()
    return [source] + [Path(d) for d in deps if Path(d).resolve() != source.resolve()]


def compile_c(source: str | os.PathLike, *, name: str | None = None,
              include_dirs: Iterable[str | os.PathLike] = (INCLUDE_DIR,),
              flags: Iterable[str] = DEFAULT_CFLAGS, libs: Iterable[str] = (),
              build_dir: str | os.PathLike = BUILD_DIR, werror: bool = False) -> Path:
    """Compile one C file into an executable under ``build_dir`` and return its path.

    Cached by content: the file name carries a hash of the source, its included headers, the
    flags and the compiler version, so an unchanged program is not rebuilt and a changed header
    is.  The build goes to a temporary name and is renamed into place, so concurrent callers
    (parallel tests) never see a half-written binary.  Raises BenchError with the compiler's
    output on failure."""
    cc = find_cc()
    if not cc:
        raise BenchError("no C compiler found (set CC or install gcc)")
    source = Path(source).resolve()
    include_dirs = [Path(d).resolve() for d in include_dirs]
    flags = list(flags) + (["-Werror"] if werror else [])
    libs = list(libs)
    h = hashlib.sha256()
    h.update(compiler_version(cc).encode())
    h.update("\0".join(flags + libs).encode())
    for dep in _dependencies(cc, source, include_dirs, flags):
        h.update(str(dep.name).encode())
        try:
            h.update(dep.read_bytes())
        except OSError:
            pass
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    exe = build_dir / f"{name or source.stem}-{h.hexdigest()[:16]}"
    if exe.exists():
        return exe
    fd, tmp = tempfile.mkstemp(prefix=exe.name + ".", dir=build_dir)
    os.close(fd)
    cmd = [cc, *flags, *[f"-I{d}" for d in include_dirs], "-o", tmp, str(source), *libs]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        os.unlink(tmp)
        raise BenchError(f"compiling {source.name} failed:\n$ {' '.join(cmd)}\n{proc.stderr}")
    if proc.stderr.strip():
        progress(f"compiler warnings for {source.name}:\n{proc.stderr}")
    os.chmod(tmp, 0o755)
    os.replace(tmp, exe)
    for old in build_dir.glob(f"{name or source.stem}-" + "?" * 16):
        if old != exe:                 # an earlier build of the same program: superseded
            try:
                old.unlink()
            except OSError:
                pass
    return exe


# --- child processes ------------------------------------------------------------------------
def child_env(extra: Mapping[str, str] | None = None) -> dict:
    """Environment for a benchmark's child processes: the repository on PYTHONPATH."""
    env = dict(os.environ)
    pp = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + pp if pp else "")
    if extra:
        env.update(extra)
    return env


class Child:
    """A child process whose stdout and stderr go to temporary files (never a pipe that could
    fill up and stall a timed loop)."""

    def __init__(self, name: str, cmd: list[str], cpu: int | None = None,
                 env: Mapping[str, str] | None = None, cwd: str | os.PathLike | None = None):
        self.name = name
        self.cmd = [str(c) for c in cmd]
        self._out = tempfile.TemporaryFile(mode="w+")
        self._err = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=self._err, env=dict(env) if env else child_env(),
                                     cwd=cwd or ROOT, preexec_fn=pinned_preexec(cpu))

    def poll(self):
        return self.proc.poll()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def _read(self, f) -> str:
        f.seek(0)
        return f.read()

    @property
    def stdout(self) -> str:
        return self._read(self._out)

    @property
    def stderr(self) -> str:
        return self._read(self._err)

    def close(self) -> None:
        self._out.close()
        self._err.close()


class Server:
    """A child process driven by line commands: the parent writes one command per line to its
    stdin and reads its answers, one per line, from its stdout (stderr goes to a temporary
    file, shown when it fails).  Benchmarks use it to keep a pair of processes alive across
    many short timed segments, so that the segments of two implementations can alternate
    finely on a noisy machine without paying a process start per segment."""

    def __init__(self, name: str, cmd: list, cpu: int | None = None,
                 env: Mapping[str, str] | None = None, cwd: str | os.PathLike | None = None):
        self.name = name
        self.cmd = [str(c) for c in cmd]
        self._err = tempfile.TemporaryFile(mode="w+")
        self._buf = b""
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._err, env=dict(env) if env else child_env(),
                                     cwd=cwd or ROOT, preexec_fn=pinned_preexec(cpu), bufsize=0)

    @property
    def stderr(self) -> str:
        self._err.seek(0)
        return self._err.read()

    def _fail(self, what: str) -> BenchError:
        rc = self.proc.poll()
        state = f"exited with {rc}" if rc is not None else "is still running"
        return BenchError(f"{self.name} {what} ({state}):\n$ {' '.join(self.cmd)}\n"
                          f"{self.stderr.strip()[-4000:]}")

    def send(self, line: str) -> None:
        try:
            self.proc.stdin.write((line.rstrip("\n") + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._fail(f"did not take the command {line.strip()!r}") from None

    def recv(self, timeout: float) -> str:
        """The next line of output (without its newline); BenchError at EOF or timeout."""
        import select

        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._fail(f"gave no answer within {timeout:.0f} s")
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise self._fail("closed its output")
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def recv_json(self, timeout: float) -> dict:
        line = self.recv(timeout)
        try:
            return json.loads(line)
        except ValueError:
            raise self._fail(f"answered {line!r}, not JSON") from None

    def close(self, timeout: float = 10.0) -> int | None:
        """End of input; wait for the child to exit (kill it after ``timeout``)."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.proc.stdout.close()
        self._err.close()
        return rc


def wait_all(children: Iterable[Child], timeout: float) -> dict[str, str]:
    """Wait for every child; returns each one's stdout by name.  As soon as one fails, or at the
    timeout, the others are killed and BenchError carries the failing child's stderr."""
    children = list(children)
    deadline = time.monotonic() + timeout
    try:
        while True:
            running = False
            for c in children:
                rc = c.poll()
                if rc is None:
                    running = True
                elif rc != 0:
                    raise BenchError(f"{c.name} exited with {rc}:\n$ {' '.join(c.cmd)}\n"
                                     f"{c.stderr.strip()[-4000:]}")
            if not running:
                break
            if time.monotonic() > deadline:
                late = [c.name for c in children if c.poll() is None]
                raise BenchError(f"{', '.join(late)} did not finish within {timeout:.0f} s")
            time.sleep(0.01)
        outs = {}
        for c in children:
            err = c.stderr.strip()
            if err:
                progress(f"[{c.name}] {err[-2000:]}")
            outs[c.name] = c.stdout
        return outs
    finally:
        for c in children:
            c.kill()
            c.close()


def last_json_line(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise BenchError(f"no JSON result in child output: {text[-500:]!r}")


__all__ = [
    "BenchError", "ROOT", "TOOLS", "BUILD_DIR", "INCLUDE_DIR", "LATENCY_PERCENTILES",
    "add_common_args", "repeats", "parse_cpus", "check_cpus", "set_quiet", "progress", "emit",
    "format_table", "summarize", "run_alternating", "percentiles", "numba_cache_dir",
    "use_numba_cache", "available_cpus", "pin", "pinned_preexec", "isolated_cpus",
    "machine_info", "find_cc", "compiler_version", "compile_c", "child_env", "Child", "Server",
    "wait_all", "last_json_line",
]
