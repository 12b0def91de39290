"""The engine's consumer: a compiled poll loop with the user's handler inside it.

A strategy process embeds it like this (``examples/strategy.py`` is a complete one)::

    from numba import njit
    from engine.loop import ConsumerEngine

    @njit(cache=True)
    def on_burst(recs, frames, bases, sel, n, now, state):
        # recs    parsed records of the burst (parsers.record.RECORD_DTYPE): recs[i]
        # frames  the ring's slot area, uint8, read-only (zero-copy; a lossy ring: a private
        #         copy).  Burst packet i's frame is frames[bases[i] : bases[i] + recs[i].caplen];
        #         its slot header (seq, ts_ns, wire_len ...: shm.layout) is the 32 bytes before
        # sel     sel[0:n]: the burst indices the filter passed, in ring order
        # now     CLOCK_REALTIME ns read once for the burst, just before this call (the
        #         latency histogram measures now - slot ts_ns; no need to read a clock again)
        # state   your state: an int64 array (state_size words), or whatever your module's
        #         make_state(state_size) returns -- e.g. a tuple of arrays (order books);
        #         it persists across bursts
        for j in range(n):
            i = sel[j]
            if recs[i].dport == 12345:
                state[0] += 1
        return n          # packets handled; fewer counts the rest as handler errors, < 0 stops

    eng = ConsumerEngine("md", name="strat1", handler=on_burst,
                         filter="udp and dst port 12345", cpu=2)
    report = eng.run(duration=10.0)      # or count=..., or until SIGINT/SIGTERM / hugering stop

The handler can also be named as ``"package.module:function"`` (what ``hugering run`` passes
from the YAML file).  No handler counts the packets.

Compilation: the loop (``engine/loop_body.py``), the handler and the filter's specialised
matcher are compiled into one function -- Numba inlines across them -- in a module generated
into the cache directory (``parsers.filter_codegen.cache_dir``) whose name hashes the loop's,
the handler's and the library's sources, with ``cache=True``: a process that finds it there
loads machine code instead of compiling (``tools/bench_startup.py`` measures both).  Before
the first packet the loop is also *run* once on a private one-slot dummy ring (``warm_up``),
so nothing is left to compile or page in when traffic starts.

Counters and the latency histogram go to the ring's stats region (``engine.stats``), block
``k`` for ring consumer line ``k``; ``hugering stat`` reads them from another process.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
from numba import njit

from engine import loop_codes as B
from engine import stats as S
from parsers.record import new_records
from shm import kernels as K
from shm import layout as L

IDLE_STRATEGIES = {"busy": B.IDLE_BUSY, "spin_yield": B.IDLE_SPIN_YIELD,
                   "backoff": B.IDLE_BACKOFF}
STATUS_NAMES = {B.ST_STOP: "stop requested", B.ST_LIMIT: "count reached",
                B.ST_DEADLINE: "duration reached", B.ST_HANDLER_STOP: "handler asked to stop"}
CHUNK_NS = 50_000_000        # the loop hands back to Python this often (signals, supervisor)
DEFAULT_PRODUCER_TIMEOUT_S = 5.0   # a live producer silent this long counts as gone
_ROOT = Path(__file__).resolve().parents[1]
_LIBRARY = ["engine/loop_body.py", "engine/loop_codes.py", "engine/stats.py", "engine/loop.py", "shm/kernels.py",
            "shm/layout.py", "shm/atomics.py", "shm/clock.py", "shm/pointers.py",
            "parsers/l2l4.py", "parsers/record.py"]


class HandlerError(ValueError):
    """A handler reference that cannot be used (bad syntax, missing, not compiled)."""


@njit(cache=True, nogil=True)
def count_only(recs, frames, bases, sel, n, now, state):
    """The default handler: accept every packet (the counters do the counting)."""
    return n


def resolve_handler(ref):
    """``"package.module:function"`` (or a function) -> (module name, attribute, dispatcher)."""
    from numba.core.registry import CPUDispatcher
    if ref is None:
        ref = "engine.loop:count_only"
    if isinstance(ref, str):
        mod_name, sep, attr = ref.partition(":")
        if not sep or not mod_name or not attr.isidentifier():
            raise HandlerError(f"handler {ref!r}: expected 'package.module:function'")
        try:
            mod = importlib.import_module(mod_name)
        except ImportError as e:
            raise HandlerError(f"handler {ref!r}: cannot import {mod_name!r} ({e})") from None
        fn = getattr(mod, attr, None)
        if fn is None:
            raise HandlerError(f"handler {ref!r}: module {mod_name!r} has no {attr!r}")
    else:
        fn = ref
        mod_name, attr = fn.__module__, getattr(fn, "__name__", "")
        if getattr(sys.modules.get(mod_name), attr, None) is not fn:
            raise HandlerError(f"handler {fn!r} must be a module-level function (the compiled "
                               "loop imports it by name)")
    if not isinstance(fn, CPUDispatcher) and not callable(fn):
        raise HandlerError(f"handler {mod_name}:{attr} is not a function")
    return mod_name, attr, fn


def _handler_source_bytes(mod_name: str) -> bytes:
    mod = sys.modules.get(mod_name)
    path = getattr(mod, "__file__", None)
    try:
        return Path(path).read_bytes() if path else mod_name.encode()
    except OSError:
        return mod_name.encode()


def _library_digest() -> str:
    h = hashlib.sha256()
    for rel in _LIBRARY:
        h.update((_ROOT / rel).read_bytes())
    return h.hexdigest()


def generate_loop_source(mod_name: str, attr: str, is_dispatcher: bool,
                         filter_module: str | None) -> str:
    """The generated module: bindings for HANDLER and MATCH, then loop_body.py verbatim."""
    head = [
        "# Generated by engine/loop.py from engine/loop_body.py; do not edit.",
        f"# handler: {mod_name}:{attr}; filter module: {filter_module}",
        f"from {mod_name} import {attr} as _handler",
    ]
    if is_dispatcher:
        head.append("HANDLER = _handler")
    else:       # a plain Python function: compile it here (cached with the loop)
        head += ["from numba import njit as _njit",
                 "HANDLER = _njit(cache=True, nogil=True)(_handler)"]
    if filter_module:
        head.append(f"from {filter_module} import match_slots_burst as MATCH")
    else:
        head.append("from engine.loop import no_filter_match as MATCH")
    return "\n".join(head) + "\n\n" + (_ROOT / "engine" / "loop_body.py").read_text()


@njit(cache=True, nogil=True)
def no_filter_match(slot_bytes, stride, slot_size, first, count, capacity, recs, verdict,
                    ac_next, ac_out):
    """Never called (``has_filter`` is 0); gives ``MATCH`` a type when there is no filter."""
    return 0


def compile_loop(handler=None, filt=None):
    """The generated loop module for this (handler, filter); compiled on first call of its
    functions, loaded from the disk cache when an identical one was compiled before."""
    from numba.core.registry import CPUDispatcher
    from parsers.filter_codegen import cache_dir
    mod_name, attr, fn = resolve_handler(handler)
    is_disp = isinstance(fn, CPUDispatcher)
    filter_module = None
    if filt is not None:
        spec = filt.specialized
        filter_module = spec.module.__name__
    source = generate_loop_source(mod_name, attr, is_disp, filter_module)
    key = hashlib.sha256("\n".join([_library_digest(), source,
                                    hashlib.sha256(_handler_source_bytes(mod_name)).hexdigest(),
                                    f"boundscheck={os.environ.get('NUMBA_BOUNDSCHECK', '')}"])
                         .encode()).hexdigest()[:24]
    d = cache_dir()
    name = f"hugering_loop_{key}"
    path = d / f"{name}.py"
    if not path.exists() or path.read_text() != source:
        tmp = d / f".tmp-{os.getpid()}-{name}.py"
        tmp.write_text(source)
        os.replace(tmp, path)
        _precompile(path)
    if str(d) not in sys.path:
        sys.path.append(str(d))          # the loop module imports the filter module by name
    mod = sys.modules.get(name)
    if mod is None:
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        try:
            spec.loader.exec_module(mod)
        except BaseException:
            del sys.modules[name]
            raise
    return mod


def _copy_state(state):
    """A scratch copy of a handler state: an array, or a (named) tuple of arrays."""
    if isinstance(state, np.ndarray):
        return state.copy()
    if isinstance(state, tuple):
        items = [_copy_state(x) for x in state]
        return type(state)(*items) if hasattr(state, "_fields") else tuple(items)
    return state                       # a scalar: immutable in the loop anyway


def make_handler_state(handler, state_size: int):
    """The initial state of ``handler``: its module's ``make_state(state_size)`` when it
    defines one (e.g. order books: a tuple of arrays), else ``state_size`` int64 zeros."""
    parts = handler.partition(":") if isinstance(handler, str) else None
    mod = sys.modules.get(parts[0]) if parts else getattr(handler, "__module__", None)
    if isinstance(mod, str):
        mod = sys.modules.get(mod)
    if mod is None and parts:
        try:
            mod = importlib.import_module(parts[0])
        except ImportError:
            mod = None
    make = getattr(mod, "make_state", None)
    return make(state_size) if callable(make) else np.zeros(state_size, np.int64)


def _precompile(path) -> None:
    """Write the module's bytecode now: a process started with PYTHONDONTWRITEBYTECODE (or a
    read-only tree) would otherwise compile the source again at every start."""
    import py_compile
    try:
        py_compile.compile(str(path), doraise=True)
    except (OSError, py_compile.PyCompileError):
        pass


class ConsumerEngine:
    """Setup and driver of one consumer loop (the loop itself is ``engine/loop_body.py``)."""

    def __init__(self, ring, *, name: str = "consumer", handler=None, filter=None,
                 burst: int = 32, state_size: int = 64, idle: str = "busy", spin: int = 1000,
                 max_sleep_us: int = 100, cpu: int | None = None, hugetlbfs: str | None = None,
                 state=None, join: bool = True):
        """``join``: take a consumer line now (it sees what is published from here on);
        False defers that to ``run`` -- what a process does that applies its jitter controls
        (mlockall, prefault: hundreds of ms) in between, or the first packets it handles
        would have waited that long."""
        from parsers.filters import Filter
        from parsers.pcap_filter import compile_pcap_filter
        from shm.ring import Ring
        if idle not in IDLE_STRATEGIES:
            raise ValueError(f"idle: expected one of {', '.join(IDLE_STRATEGIES)}, got {idle!r}")
        if not 1 <= burst <= 4096:
            raise ValueError(f"burst: expected 1..4096, got {burst}")
        self.name = name
        self.idle = idle
        self.cpu = cpu
        self._own_ring = isinstance(ring, str)
        self.ring = Ring.open(ring, hugetlbfs) if isinstance(ring, str) else ring
        if isinstance(filter, str):
            filter = compile_pcap_filter(filter) if filter.strip() else None
        self.filter: Filter | None = filter
        self.module = compile_loop(handler, filter)
        r = self.ring
        self.burst = burst
        self.recs = new_records(burst)
        self.verdict = np.zeros(burst, np.uint8)
        self.bases = np.zeros(burst, np.int64)
        self.frames_ts = np.zeros(burst, np.int64)
        self.sel = np.zeros(burst, np.int32)
        # an int64 array, or any tuple of arrays the handler wants (its module may build it
        # with make_state(state_size)); the loop passes it through untouched
        self.state = make_handler_state(handler, state_size) if state is None else state
        self.lstate = np.zeros(B.LS_WORDS, np.int64)
        if filter is not None:
            sp = filter.specialized
            self.ac_next, self.ac_out = sp.ac_next, sp.ac_out
        else:
            self.ac_next, self.ac_out = np.zeros(256, np.int32), np.zeros(1, np.uint64)
        self.params = (1 if filter is not None else 0, burst, IDLE_STRATEGIES[idle], spin,
                       max_sleep_us * 1000)
        self.lossy = r.mode == L.MODE_LOSSY
        self.copy_words = (np.zeros(burst * r.slot_stride // 8, np.int64) if self.lossy
                           else None)
        self.stats = S.StatsRegion.attach(r)
        self.warm_up_s = self.warm_up()
        self.consumer = None
        self.index = -1
        self.block = None
        self.status = None
        self.watch = None
        self.end_of_stream: str | None = None     # the producer's message while at end of stream
        if join:
            self.join()

    def join(self) -> None:
        """Take a consumer line, at the producer's cursor, and reset its stats block."""
        from shm.ring import Consumer
        if self.consumer is None:
            self.consumer = Consumer(self.ring)
            self.index = self.consumer.index
            self.block = self.stats.reset_block(self.index, os.getpid(), self.name, self.cpu)

    # -- the loop ---------------------------------------------------------------------------
    def _call(self, block, ctrl, words, slot_bytes, cstate, limit, deadline_ns, chunk_ns,
              state, stride, slot_size, capacity, copy_words):
        has_filter, burst, idle, spin, max_sleep = self.params
        if self.lossy:
            return self.module.consume_lossy(
                ctrl, words, copy_words, cstate, stride, slot_size, self.recs, self.verdict,
                self.bases, self.frames_ts, self.sel, state, block, self.lstate, self.ac_next,
                self.ac_out, has_filter, burst, idle, spin, max_sleep, limit, deadline_ns,
                chunk_ns)
        return self.module.consume_lossless(
            ctrl, words, slot_bytes, cstate, stride, slot_size, capacity, self.recs,
            self.verdict, self.bases, self.frames_ts, self.sel, state, block, self.lstate,
            self.ac_next, self.ac_out, has_filter, burst, idle, spin, max_sleep, limit,
            deadline_ns, chunk_ns)

    def warm_up(self) -> float:
        """Compile (or load) the loop and run it once over a private one-packet dummy ring of
        the same geometry, with a scratch state and stats block: the real call then has
        nothing left to compile.  Returns the seconds it took."""
        t0 = time.perf_counter()
        r = self.ring
        cap = 2
        ctrl = np.zeros(L.control_bytes(1) // 8, np.int64)
        slot_area = np.zeros(cap * r.slot_stride, np.uint8)
        frame = bytes(12) + b"\x08\x00" + bytes([0x45]) + bytes(19) + bytes(8)
        slot_area[L.SLOT_HEADER_BYTES:L.SLOT_HEADER_BYTES + len(frame)] = np.frombuffer(
            frame, np.uint8)
        words = slot_area.view(np.int64)
        words[L.S_SEQ] = 0
        words[L.S_TS] = time.time_ns()
        words[L.S_LENS] = len(frame) | (len(frame) << 32)
        ctrl[L.P_CURSOR] = 1
        ctrl[L.C_BASE + L.C_STATE] = L.CONSUMER_ACTIVE
        cstate = np.zeros(K.CSTATE_WORDS, np.int64)
        cstate[K.CS_LINE] = L.C_BASE
        cstate[K.CS_MASK] = cap - 1
        cstate[K.CS_CAPACITY] = cap
        cstate[K.CS_STRIDE_W] = r.slot_stride // 8
        cstate[K.CS_MODE] = r.mode
        cstate[K.CS_SLOT_SIZE] = r.slot_size
        # the same array types as the real call (a consumer maps the slots read-only), or the
        # real call would compile a second specialisation
        ro = slot_area.view()
        ro.flags.writeable = r.slot_bytes.flags.writeable
        words = words.view()
        words.flags.writeable = r.words.flags.writeable
        block = np.zeros(S.BLOCK_BYTES // 8, np.int64)
        state = _copy_state(self.state)    # the handler may rely on its initial state
        copy = (np.zeros(self.burst * r.slot_stride // 8, np.int64) if self.lossy else None)
        from numba.core.errors import NumbaError
        try:
            st = self._call(block, ctrl, words, ro, cstate, 1, 0, 10_000_000, state,
                            r.slot_stride, r.slot_size, cap, copy)
        except NumbaError:
            raise                          # the handler does not compile: say so now
        except Exception:
            return time.perf_counter() - t0    # it ran (and raised on the dummy packet)
        if st != B.ST_LIMIT or block[S.W_RECEIVED] != 1:
            raise RuntimeError(f"warm-up: the loop returned {st} after {block[S.W_RECEIVED]} "
                               "packets (expected 1)")
        return time.perf_counter() - t0

    def run(self, count: int | None = None, duration: float | None = None,
            handle_signals: bool = True, on_chunk=None, chunk_ns: int = CHUNK_NS,
            on_producer_gone: str = "report",
            producer_timeout: float = DEFAULT_PRODUCER_TIMEOUT_S) -> dict:
        """Poll until ``count`` packets, ``duration`` seconds, a stop request (shared flag,
        SIGINT/SIGTERM when ``handle_signals``) or the handler says stop; returns the final
        snapshot (``report()``).

        End of stream (``shm.liveness``): between loop chunks the driver checks the producer.
        Once it is gone (detached, dead, or silent for ``producer_timeout`` s) and everything
        it published has been read, one line says so (a warning when it died or went silent,
        at info level when it closed cleanly); ``on_producer_gone="stop"`` then returns
        (status ``end of stream: ...``), ``"report"`` (the default) keeps polling so that a
        restarted producer is picked up (a second line says so)."""
        from shm.liveness import ProducerWatch
        if on_producer_gone not in ("report", "stop"):
            raise ValueError(f"on_producer_gone: expected 'report' or 'stop', got "
                             f"{on_producer_gone!r}")
        self.watch = ProducerWatch(self.ring, producer_timeout)
        self.join()
        r = self.ring
        # the loop compares with the block's cumulative count: ``count`` more from here
        limit = int(self.block[S.W_RECEIVED]) + int(count) if count else 0
        deadline = time.time_ns() + int(duration * 1e9) if duration else 0
        stopping = []

        def on_signal(signum, frame):
            stopping.append(signum)
            self.block[S.W_STOP] = 1
        old = {}
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    old[sig] = signal.signal(sig, on_signal)
                except ValueError:          # not the main thread
                    pass
        self.block[S.W_STARTED] = time.time_ns()
        self.block[S.W_STATE] = S.STATE_RUNNING
        try:
            while True:
                try:
                    st = self._call(self.block, r.ctrl, r.words, r.slot_bytes,
                                    self.consumer.cstate, limit, deadline, chunk_ns,
                                    self.state, r.slot_stride, r.slot_size, r.capacity,
                                    self.copy_words)
                except Exception as e:     # the handler raised: count, skip the burst, go on
                    self._handler_raised(e)
                    continue
                if st != B.ST_CHUNK:
                    self.status = STATUS_NAMES.get(st, str(st))
                    if stopping:
                        self.status = f"signal {signal.Signals(stopping[0]).name}"
                    # the producer's news of the last chunk too (a new producer that published
                    # its whole stream within one chunk still gets its line and the report)
                    self._producer_event()
                    break
                if self._producer_event() and on_producer_gone == "stop":
                    self.status = f"end of stream: {self.end_of_stream}"
                    break
                if on_chunk is not None and on_chunk(self) is False:
                    self.status = "stopped by caller"
                    break
        finally:
            for sig, h in old.items():
                signal.signal(sig, h)
            self.block[S.W_STATE] = S.STATE_STOPPED
            self.block[S.W_UPDATED] = time.time_ns()
        return self.report()

    def _producer_event(self) -> bool:
        """Check the producer (slow path, once per chunk); True while at end of stream."""
        import logging
        log = logging.getLogger("hugering")
        ended = self.watch.ended
        ev = self.watch.check(self.consumer.cursor)
        if ev is not None:
            kind, st = ev
            # a producer that closed cleanly is the normal end of a finite stream (info); one
            # that died or went silent is a fault (warning), and so is its replacement's news
            fault = (st if kind == "end" else ended).state in ("dead", "stale")
            level = logging.WARNING if fault else logging.INFO
            if kind == "end":
                self.end_of_stream = st.message
                log.log(level, "consumer %s: end of stream on ring %s: %s; all %d published "
                        "slots read", self.name, self.ring.name, st.message, st.cursor)
            else:
                self.end_of_stream = None
                log.log(level, "consumer %s: ring %s has a producer again (pid %d); going on "
                        "from seq %d", self.name, self.ring.name, st.pid, self.consumer.cursor)
        return self.watch.ended is not None

    def _handler_raised(self, exc: Exception) -> None:
        import logging
        n_sel = int(self.lstate[B.LS_SELECTED])
        pending = int(self.lstate[B.LS_PENDING])
        b = self.block
        b[S.W_ERRORS] += n_sel
        b[S.W_RECEIVED] += pending
        b[S.W_FILTERED] += pending - n_sel
        b[S.W_BURSTS] += 1
        if pending and not self.lossy:
            if K.release(self.ring.ctrl, self.consumer.cstate, pending) < 0:
                pass                               # evicted: the next peek rejoins
        self.lstate[B.LS_PENDING] = 0
        self.errors_logged = getattr(self, "errors_logged", 0) + 1
        if self.errors_logged <= 3:
            logging.getLogger("hugering").warning(
                "consumer %s: handler raised %s: %s (burst of %d counted as handler errors)",
                self.name, type(exc).__name__, exc, n_sel)

    def report(self) -> dict:
        snap = self.stats.snapshot(self.index)
        line = self.ring.consumer_lines[self.index]
        snap["ring"] = self.ring.name
        snap["consumer_line"] = self.index
        snap["delivered"] = int(line["delivered"])
        snap["lost"] = int(line["lost"])
        snap["status"] = self.status
        snap["warm_up_s"] = self.warm_up_s
        watch = getattr(self, "watch", None)
        snap["producer"] = (watch.status.as_dict() if watch is not None
                            and watch.status is not None else None)
        snap["end_of_stream"] = self.end_of_stream
        return snap

    def close(self) -> None:
        if getattr(self, "consumer", None) is not None:
            self.consumer.close()
            self.consumer = None
        if self._own_ring and self.ring is not None:
            self.block = None
            self.ring.close()
            self.ring = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
