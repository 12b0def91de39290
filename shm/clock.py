"""Clocks callable from ``@njit`` code without allocation or a Python object.

Numba nopython code has no clock of its own.  ``now_ns`` calls libc ``clock_gettime`` (served
by the vDSO, no system call: ~20-30 ns) on a timespec that lives on the stack, so it works in
any kernel and caches with ``cache=True``.  ``CLOCK_REALTIME`` is the ring's time base: slot
timestamps are compared with pcap timestamps, NIC timestamps and other processes' clocks, so
they must all be on one epoch-based clock.  ``mono_ns`` is for intervals within one process.
``getpgid_alive`` answers "does this pid exist" without needing permission over the process
(``kill(pid, 0)`` fails with EPERM for another user's process; ``getpgid`` does not).
"""
from __future__ import annotations

import time

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

CLOCK_REALTIME = 0
CLOCK_MONOTONIC = 1


@intrinsic
def _clock_gettime_ns(typingctx, clock_id):
    if not isinstance(clock_id, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        i32, i64 = ir.IntType(32), ir.IntType(64)
        timespec = ir.LiteralStructType([i64, i64])
        fnty = ir.FunctionType(i32, [i32, timespec.as_pointer()])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "clock_gettime")
        ts = cgutils.alloca_once(builder, timespec)
        builder.call(fn, [builder.trunc(args[0], i32), ts])
        zero = ir.Constant(i32, 0)
        sec = builder.load(builder.gep(ts, [zero, zero]))
        nsec = builder.load(builder.gep(ts, [zero, ir.Constant(i32, 1)]))
        return builder.add(builder.mul(sec, ir.Constant(i64, 1_000_000_000)), nsec)

    return types.int64(clock_id), codegen


@intrinsic
def _getpgid(typingctx, pid):
    if not isinstance(pid, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i32, [i32]), "getpgid")
        r = builder.call(fn, [builder.trunc(args[0], i32)])
        return builder.sext(r, ir.IntType(64))

    return types.int64(pid), codegen


@intrinsic
def _sched_yield(typingctx):
    def codegen(context, builder, sig, args):
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i32, []),
                                            "sched_yield")
        return builder.sext(builder.call(fn, []), ir.IntType(64))
    return types.int64(), codegen


@intrinsic
def _nanosleep(typingctx, ns):
    if not isinstance(ns, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        i32, i64 = ir.IntType(32), ir.IntType(64)
        timespec = ir.LiteralStructType([i64, i64])
        fnty = ir.FunctionType(i32, [timespec.as_pointer(), timespec.as_pointer()])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "nanosleep")
        ts = cgutils.alloca_once(builder, timespec)
        billion = ir.Constant(i64, 1_000_000_000)
        zero = ir.Constant(i32, 0)
        builder.store(builder.sdiv(args[0], billion), builder.gep(ts, [zero, zero]))
        builder.store(builder.srem(args[0], billion), builder.gep(ts, [zero, ir.Constant(i32, 1)]))
        r = builder.call(fn, [ts, ts.type(None)])
        return builder.sext(r, i64)
    return types.int64(ns), codegen


@njit(cache=True, nogil=True)
def sched_yield():
    """Give the cpu to another runnable thread, if any (libc ``sched_yield``)."""
    return _sched_yield()


@njit(cache=True, nogil=True)
def sleep_ns(ns):
    """Sleep about ``ns`` nanoseconds (libc ``nanosleep``; the kernel adds its timer slack, 50 us
    by default for a normal thread).  Returns 0, or -1 when a signal cut it short."""
    if ns <= 0:
        return 0
    return _nanosleep(ns)


@njit(cache=True, nogil=True)
def now_ns():
    """CLOCK_REALTIME in ns (the ring's time base)."""
    return _clock_gettime_ns(CLOCK_REALTIME)


@njit(cache=True, nogil=True)
def mono_ns():
    """CLOCK_MONOTONIC in ns (intervals within one process)."""
    return _clock_gettime_ns(CLOCK_MONOTONIC)


@njit(cache=True, nogil=True)
def pid_alive(pid):
    """True while a process with this pid exists (a zombie counts as existing)."""
    if pid <= 0:
        return False
    return _getpgid(pid) >= 0


def now_ns_py() -> int:
    return time.time_ns()
