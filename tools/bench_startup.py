#!/usr/bin/env python3
"""Start-up benchmark: how soon a new consumer process handles its first packet.

The acceptance item it checks: "a warm-cache consumer process reaches its first packet in
< 1 s".  What one measurement is: the parent reads CLOCK_REALTIME (``time.time_ns()``) just
before ``subprocess.Popen`` of a small Python script, which does what a strategy process does::

    from engine.loop import ConsumerEngine
    eng = ConsumerEngine(RING, name=..., handler="examples.strategy:on_burst",
                         filter="udp and dst portrange 30001-30004", state_size=8)
    eng.run(count=1)
    print(time.time_ns())          # right after run returns

and the result is the child's timestamp minus the parent's (CLOCK_REALTIME is one clock for
every process of the machine).  Meanwhile a ``SyntheticProducer`` in a thread of this program
(pinned to the first ``--cpus`` entry; children run pinned to the last, inherited from the
spawning thread: a ``preexec_fn`` would turn Python's vfork into a full fork of this process,
7-30 ms here) feeds the ring at ``--rate`` frames/s (100k by default), all of them to
destination ports 30001-30004, so the first packet arrives within microseconds of the loop
starting and passes the filter.

Cases, in the same run:

* **cold**: the child's ``NUMBA_CACHE_DIR`` and ``HUGERING_CACHE_DIR`` point to a new empty
  directory, so every Numba function of the library, the generated filter module and the
  generated loop module compile from scratch (Python's own ``.pyc`` files are not cleared).
* **warm**: the same directories again, after a cold run filled them (second and later
  spawns): what a restarted strategy process pays.
* **reference, bare interpreter** (``reference_python_import_s``): ``python -c "import numpy,
  numba"`` from spawn until the imports are done (the child prints the clock then), the floor
  any Python consumer pays; its spawn-to-exit time is reported too.
* **reference, one cached Numba call** (``reference_numba_cached_call_s``): the same imports
  plus loading one trivial ``@njit(cache=True)`` function from a warm cache and calling it --
  the floor of any process that runs Numba code from the cache (Numba initialises its typing
  and target registries on the first compile *or cache load*).
* **reference, C** (``reference_c_first_packet_s``): ``tools/reference/startup_ref.c`` (the ring
  API of ``shm/include/hugering_ring.h``, ``gcc -O2``) from spawn to its first packet parsed
  and port-checked: the cost of a process start itself.

Besides the headline figure, each Python consumer child reports a breakdown (all from the same
clock): ``interpreter_s`` (spawn to the script's first line), ``import_s`` (``engine.loop`` and
with it numpy and numba), ``construct_s`` (``ConsumerEngine(...)``: ring mapping, filter
compilation, the loop module, and ``warm_up_s``, the warm-up call that compiles or loads the
loop from the cache), ``run_to_handler_s`` (``run()`` start to the handler's clock reading for
the first packet: the slot's timestamp plus its recorded latency, read in a hook on
``eng.report`` that ``run`` calls once the compiled loop returned), ``run_to_return_s``
(``run()`` start to its return), ``report_s`` (of that, the report ``run`` builds after the
loop returned), ``handler_first_packet_s`` (spawn to the handler's clock reading: the headline
without the report) and ``exit_s`` (the child's timestamp to its exit, as seen by the parent).
``env`` records ``PYTHONDONTWRITEBYTECODE``: when set, the repository's modules (and the
generated loop and filter modules) are compiled to bytecode again at every start.

Each repeat runs every case once, in turn (cold first in the repeats that have one, the rest
rotated), and medians over repeats are reported; ``--cold-repeats`` (default 3: a cold start
compiles for tens of seconds here) and ``--repeats`` (warm and references, default 5).

Usage::

    python tools/bench_startup.py                  # table
    python tools/bench_startup.py --json           # one JSON object on stdout
    python tools/bench_startup.py --quick --json   # smoke test: 1 cold, 2 warm

Exit status 1 when a child fails or does not get its packet within ``--timeout``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
ROOT = TOOLS.parent
for _p in (str(ROOT), str(TOOLS)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import bench_common as BC  # noqa: E402

# before numba is imported: this process only runs the synthetic producer's loop
BC.use_numba_cache("bench_startup", [ROOT / "engine" / "producers" / "synthetic.py",
                                     *sorted((ROOT / "shm").glob("*.py"))])

REF_SOURCE = TOOLS / "reference" / "startup_ref.c"
HANDLER = "examples.strategy:on_burst"
FILTER = "udp and dst portrange 30001-30004"
DPORTS = (30001, 30004)
TARGET_WARM_S = 1.0

# The consumer child: a strategy process reduced to its start.  Timestamps are CLOCK_REALTIME
# ns; the first line runs as soon as the interpreter is up.
CHILD_SOURCE = r"""
import time
t_start = time.time_ns()
import json, sys
from engine.loop import ConsumerEngine
t_imported = time.time_ns()
ring_name, name, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
eng = ConsumerEngine(ring_name, name=name, handler=%(handler)r, filter=%(filter)r,
                     state_size=8)
t_constructed = time.time_ns()
# instrumentation, not part of a strategy: run() builds its report (eng.report()) after the
# compiled loop returned; note that moment, and when the handler saw the packet: the loop read
# the clock (t) just before calling the handler and recorded t - the slot's timestamp as the
# packet's latency (the slot is read at once: once released, the producer may reuse it)
from engine import stats as S
from shm import layout as L
marks = {"t_loop": None, "t_handled": None}
_report = eng.report


def _report_hook():
    marks["t_loop"] = time.time_ns()
    b, r = eng.block, eng.ring
    if int(b[S.W_LAT_COUNT]) == 1:
        seq = int(b[S.W_LAST_SEQ])
        base = (seq & (r.capacity - 1)) * (r.slot_stride // 8)
        ts = int(r.words[base + L.S_TS])
        if int(r.words[base + L.S_SEQ]) == seq:
            marks["t_handled"] = ts + int(b[S.W_LAT_SUM])
    return _report()


eng.report = _report_hook
t_run = time.time_ns()
rep = eng.run(count=1, duration=timeout)
t_first = time.time_ns()
print(t_first, flush=True)
out = dict(t_start=t_start, t_imported=t_imported, t_constructed=t_constructed, t_run=t_run,
           t_first=t_first, t_handled=marks["t_handled"],
           t_loop=marks["t_loop"], warm_up_s=eng.warm_up_s,
           received=rep["received"], handled=rep["handled"], status=rep["status"])
eng.close()
print(json.dumps(out), flush=True)
sys.exit(0 if rep["received"] >= 1 else 1)
""" % {"handler": HANDLER, "filter": FILTER}

IMPORT_SOURCE = "import numpy, numba, time; print(time.time_ns(), flush=True)"

# a trivial cached function, written into the reference's own cache directory
FLOOR_MODULE = '''
from numba import njit


@njit(cache=True)
def total(a):
    s = 0
    for x in a:
        s += x
    return s
'''
FLOOR_SOURCE = ("import sys, time, numpy; sys.path.insert(0, sys.argv[1]); "
                "import startup_floor as m; m.total(numpy.arange(4)); "
                "print(time.time_ns(), flush=True)")

BREAKDOWN = ("interpreter_s", "import_s", "construct_s", "warm_up_s", "run_to_handler_s",
             "run_to_return_s", "report_s", "handler_first_packet_s", "first_packet_s",
             "exit_s")


# --- spawning ---------------------------------------------------------------------------------
class Spawn:
    """One child process, timed from just before Popen to its exit.  Its stdout and stderr go
    to temporary files; a timer kills it after ``timeout`` seconds (the wait itself blocks, so
    the exit time is not rounded to a polling interval)."""

    def __init__(self, label: str, cmd: list, env: dict, timeout: float):
        self.label = label
        self.cmd = [str(c) for c in cmd]
        out = tempfile.TemporaryFile(mode="w+")
        err = tempfile.TemporaryFile(mode="w+")
        killed = []
        # no preexec_fn: it forces a full fork of this (large) process instead of vfork, which
        # costs 7-30 ms here; the child inherits the main thread's CPU affinity instead
        self.t_spawn = time.time_ns()
        proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                env=env, cwd=ROOT)

        def kill():
            killed.append(True)
            proc.kill()

        timer = threading.Timer(timeout, kill)
        timer.daemon = True
        timer.start()
        try:
            self.rc = proc.wait()
            self.t_exit = time.time_ns()
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        out.seek(0)
        err.seek(0)
        self.stdout, self.stderr = out.read(), err.read()
        out.close()
        err.close()
        if killed:
            raise BC.BenchError(f"{label}: no result within {timeout:.0f} s (killed)\n"
                                f"$ {' '.join(self.cmd)}\n{self.stderr.strip()[-3000:]}")
        if self.rc != 0:
            raise BC.BenchError(f"{label}: exited with {self.rc}\n$ {' '.join(self.cmd)}\n"
                                f"{self.stderr.strip()[-3000:]}")

    def lines(self) -> list[str]:
        return [ln for ln in self.stdout.splitlines() if ln.strip()]

    def since_spawn(self, t_ns: int) -> float:
        return (t_ns - self.t_spawn) / 1e9


def consumer_run(label: str, ring_name: str, cache: str, args, seq: int) -> dict:
    """One Python consumer child with its caches in ``cache``; the breakdown in seconds."""
    env = BC.child_env({"NUMBA_CACHE_DIR": cache, "HUGERING_CACHE_DIR": cache})
    sp = Spawn(label, [sys.executable, "-c", CHILD_SOURCE, ring_name,
                       f"startup{os.getpid()}-{seq}", args.timeout], env, args.timeout)
    try:
        lines = sp.lines()
        t_first = int(lines[0])
        d = json.loads(lines[1])
    except (IndexError, ValueError) as e:
        raise BC.BenchError(f"{label}: unexpected output ({e}):\n{sp.stdout}\n{sp.stderr}")
    if d["t_first"] != t_first or d["received"] < 1:
        raise BC.BenchError(f"{label}: no packet ({d['status']}):\n{sp.stdout}")
    s = sp.since_spawn
    res = {
        "first_packet_s": s(t_first),
        "interpreter_s": s(d["t_start"]),
        "import_s": (d["t_imported"] - d["t_start"]) / 1e9,
        "construct_s": (d["t_constructed"] - d["t_imported"]) / 1e9,
        "warm_up_s": float(d["warm_up_s"]),
        "run_to_return_s": (t_first - d["t_run"]) / 1e9,
        "report_s": (t_first - d["t_loop"]) / 1e9,
        "exit_s": (sp.t_exit - t_first) / 1e9,
    }
    if d["t_handled"] is not None:
        res["run_to_handler_s"] = (d["t_handled"] - d["t_run"]) / 1e9
        res["handler_first_packet_s"] = s(d["t_handled"])
    return res


def import_run(args) -> dict:
    sp = Spawn("bare interpreter", [sys.executable, "-c", IMPORT_SOURCE], BC.child_env(),
               args.timeout)
    return {"imports_done_s": sp.since_spawn(int(sp.lines()[0])),
            "exit_s": sp.since_spawn(sp.t_exit)}


def floor_run(args, floor_dir: str) -> float:
    env = BC.child_env({"NUMBA_CACHE_DIR": floor_dir})
    sp = Spawn("cached Numba call", [sys.executable, "-c", FLOOR_SOURCE, floor_dir], env,
               args.timeout)
    return sp.since_spawn(int(sp.lines()[0]))


def c_run(args, exe: Path, ring_path: str) -> dict:
    sp = Spawn("C consumer", [exe, ring_path, args.timeout, *DPORTS], BC.child_env(),
               args.timeout + 5)
    d = json.loads(sp.lines()[0])
    if not d["matched"]:
        raise BC.BenchError(f"C consumer: first packet to port {d['dport']} did not match")
    return {"first_packet_s": sp.since_spawn(d["t_first"]),
            "exec_to_main_s": sp.since_spawn(d["t_main"]),
            "main_to_first_s": (d["t_first"] - d["t_main"]) / 1e9}


# --- the producer -------------------------------------------------------------------------------
class Feed:
    """A SyntheticProducer in a thread (its loop releases the GIL), pinned to ``cpu``."""

    def __init__(self, ring, rate: float, cpu: int | None):
        from engine.producers.synthetic import SyntheticProducer

        self.prod = SyntheticProducer(ring, rate=rate, sizes=(64, 128), dst_ports=DPORTS)
        self.warm_s = self.prod.warmup()
        self.cpu = cpu
        self._stop = threading.Event()
        self.result: dict | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="feed", daemon=True)
        self.thread.start()

    def _run(self):
        BC.pin(self.cpu)                 # this thread only (sched_setaffinity on its tid)
        try:
            self.result = self.prod.run(stop=self._stop.is_set)
        except BaseException as e:       # reported by check()
            self.error = e

    def check(self) -> None:
        if self.error is not None or not self.thread.is_alive():
            raise BC.BenchError(f"the producer thread stopped: {self.error!r}")

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(10)
        self.prod.close()


# --- report ---------------------------------------------------------------------------------
def table(res: dict) -> str:
    m = res["machine"]
    r = res["runs"]
    lines = [f"consumer start-up: spawn -> first packet handled (handler {res['handler']}, "
             f"filter '{res['filter']}'), feed {res['rate_pps']:,.0f} frames/s; medians of "
             f"{res['repeats']['cold']} cold / {res['repeats']['warm']} warm repeats",
             f"machine: {m['nproc']} x {m['model_name']}"
             f"{', virtualized' if m.get('virtualized') else ''}; numba {m.get('numba')}",
             ""]
    rows = [["cold (empty caches)", r["cold_first_packet_s"]],
            ["warm (caches filled)", r["warm_first_packet_s"]],
            ["ref: python -c 'import numpy, numba' (imports done)",
             r["reference_python_import_s"]],
            ["ref: same, spawn to exit", r["reference_python_import_exit_s"]],
            ["ref: + one cached @njit call", r["reference_numba_cached_call_s"]]]
    if "reference_c_first_packet_s" in r:
        rows.append(["ref: C consumer (startup_ref.c)", r["reference_c_first_packet_s"]])
    lines.append(BC.format_table(["case", "median s", "min s", "max s"],
                                 [[name, s["median"], s["min"], s["max"]] for name, s in rows]))
    lines.append("")
    lines.append(BC.format_table(
        ["breakdown (median s)", "cold", "warm"],
        [[k, res["breakdown"]["cold"].get(k), res["breakdown"]["warm"].get(k)]
         for k in BREAKDOWN]))
    lines.append("")
    ok = res["warm_first_packet_s"] < res["target_warm_s"]
    lines.append(f"warm start {res['warm_first_packet_s']:.3f} s: target < "
                 f"{res['target_warm_s']:.1f} s {'met' if ok else 'NOT met'}; "
                 f"{res['warm_first_packet_s'] / res['reference_python_import_s']:.1f} x the "
                 f"bare 'import numpy, numba'")
    return "\n".join(lines)


def _medians(runs: list[dict]) -> dict:
    keys = [k for k in BREAKDOWN if any(k in r for r in runs)]
    return {k: BC.summarize(r[k] for r in runs if k in r)["median"] for k in keys}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    BC.add_common_args(ap, default_repeats=5, quick_repeats=2)
    ap.add_argument("--cold-repeats", type=int, default=None,
                    help="cold starts (each compiles everything; default 3, 1 with --quick)")
    ap.add_argument("--rate", type=float, default=100_000,
                    help="frames per second fed to the ring (default 100000)")
    ap.add_argument("--timeout", type=float, default=300.0,
                    help="seconds a child may take to get its packet (default 300)")
    ap.add_argument("--no-c", action="store_true", help="skip the C reference")
    ap.add_argument("--hugetlbfs", default=None, help="hugetlbfs mount (default: automatic)")
    ap.add_argument("--shm", action="store_true", help="POSIX shared memory instead")
    args = ap.parse_args(argv)
    try:
        warm_n = BC.repeats(args)
        cold_n = args.cold_repeats if args.cold_repeats is not None else (1 if args.quick else 3)
        if cold_n < 1:
            raise BC.BenchError("--cold-repeats must be >= 1 (the warm case reuses a cold "
                                "run's caches)")
        BC.check_cpus(args.cpus)
        return run(args, cold_n, warm_n)
    except BC.BenchError as e:
        print(f"bench_startup: {e}", file=sys.stderr)
        return 1


def run(args, cold_n: int, warm_n: int) -> int:
    from engine import stats as S
    from shm.ring import Ring

    exe = None
    if not args.no_c:
        if BC.find_cc():
            exe = BC.compile_c(REF_SOURCE, name="startup_ref")
        else:
            BC.progress("no C compiler: the C reference is skipped")
    root = tempfile.mkdtemp(prefix="bench_startup.")
    name = f"bstart{os.getpid()}"
    ring = feed = None
    per = {"cold": [], "warm": [], "import": [], "floor": [], "c": []}
    try:
        # 16384 slots: 160 ms at 100k frames/s before the producer may reuse the first packet's
        # slot, which the child reads after its loop returned (for the handler's clock)
        ring = Ring.create(name, slots=16384, slot_size=256, hugetlbfs=args.hugetlbfs,
                           shm=args.shm)
        feed = Feed(ring, args.rate, args.cpus[0])
        # children inherit the spawning thread's affinity (the feed thread pinned itself)
        BC.pin(args.cpus[-1])
        BC.progress(f"ring {name} ({ring.backing.path}), feed {args.rate:,.0f} frames/s "
                    f"(producer loop ready in {feed.warm_s:.1f} s)")
        floor_dir = os.path.join(root, "floor")
        os.makedirs(floor_dir)
        Path(floor_dir, "startup_floor.py").write_text(FLOOR_MODULE)
        floor_run(args, floor_dir)                 # fills its cache (not recorded)
        warm_dir = None
        seq = 0
        rounds = max(cold_n, warm_n)
        for r in range(rounds):
            if r < cold_n:
                feed.check()
                cache = os.path.join(root, f"cold{r}")
                os.makedirs(cache)
                res = consumer_run("cold consumer", name, cache, args, seq)
                seq += 1
                per["cold"].append(res)
                warm_dir = cache                   # filled now: the warm runs reuse it
                BC.progress(f"  repeat {r + 1}/{rounds} cold: {BC._short(res)}")
            if r >= warm_n:
                continue
            cases = ["warm", "import", "floor"] + (["c"] if exe else [])
            k = r % len(cases)
            for case in cases[k:] + cases[:k]:
                feed.check()
                if case == "warm":
                    res = consumer_run("warm consumer", name, warm_dir, args, seq)
                    seq += 1
                elif case == "import":
                    res = import_run(args)
                elif case == "floor":
                    res = floor_run(args, floor_dir)
                else:
                    res = c_run(args, exe, ring.backing.path)
                per[case].append(res)
                BC.progress(f"  repeat {r + 1}/{rounds} {case}: {BC._short(res)}")
        feed.check()
    finally:
        if feed is not None:
            feed.stop()
        if ring is not None:
            ring.close()
            for fn in (lambda: Ring.remove(name, args.hugetlbfs), lambda: S.remove(name)):
                try:
                    fn()
                except Exception:
                    pass
        shutil.rmtree(root, ignore_errors=True)

    runs = {
        "cold_first_packet_s": BC.summarize(x["first_packet_s"] for x in per["cold"]),
        "warm_first_packet_s": BC.summarize(x["first_packet_s"] for x in per["warm"]),
        "reference_python_import_s": BC.summarize(x["imports_done_s"] for x in per["import"]),
        "reference_python_import_exit_s": BC.summarize(x["exit_s"] for x in per["import"]),
        "reference_numba_cached_call_s": BC.summarize(per["floor"]),
    }
    if per["c"]:
        runs["reference_c_first_packet_s"] = BC.summarize(x["first_packet_s"] for x in per["c"])
        runs["reference_c_exec_to_main_s"] = BC.summarize(x["exec_to_main_s"] for x in per["c"])
    for case in ("cold", "warm"):
        for k in BREAKDOWN:
            if k != "first_packet_s" and any(k in x for x in per[case]):
                runs[f"{case}_{k}"] = BC.summarize(x[k] for x in per[case] if k in x)
    med = {k: v["median"] for k, v in runs.items()}
    result = {
        "benchmark": "startup",
        "cold_first_packet_s": med["cold_first_packet_s"],
        "warm_first_packet_s": med["warm_first_packet_s"],
        "target_warm_s": TARGET_WARM_S,
        "warm_meets_target": med["warm_first_packet_s"] < TARGET_WARM_S,
        "reference_python_import_s": med["reference_python_import_s"],
        "reference_python_import_exit_s": med["reference_python_import_exit_s"],
        "reference_numba_cached_call_s": med["reference_numba_cached_call_s"],
        "reference_c_first_packet_s": med.get("reference_c_first_packet_s"),
        "warm_vs_python_import": med["warm_first_packet_s"] / med["reference_python_import_s"],
        "cold_vs_warm": med["cold_first_packet_s"] / med["warm_first_packet_s"],
        "breakdown": {"cold": _medians(per["cold"]), "warm": _medians(per["warm"])},
        "handler": HANDLER,
        "filter": FILTER,
        "rate_pps": args.rate,
        "repeats": {"cold": cold_n, "warm": warm_n},
        "cpus": {"producer": args.cpus[0], "children": args.cpus[-1]},
        "env": {k: os.environ.get(k) for k in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")},
        "quick": bool(args.quick),
        "machine": BC.machine_info(),
        "runs": runs,
    }
    BC.emit(result, args.json, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
