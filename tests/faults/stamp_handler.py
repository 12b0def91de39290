"""An engine handler that checks the soak producer's stamps, and can crash on request.

``tools/soak.py``'s producer writes, in every slot, the producer id in payload word 0 and the
sequence number in every other word (``END_ID`` marks the end of the stream).  ``on_burst``
checks each packet the engine hands it the way the soak consumer does -- the next sequence
number, whole, from the expected producer (a higher id takes over: a restarted producer) --
and stops the loop at the end marker.

Crash injection (``state[ST_CRASH_AT]`` >= 0): at the first packet with a sequence number at or
above it the handler raises an exception (``ST_CRASH_KIND`` 1) or kills its own process with
SIGSEGV from inside the compiled code (2), mid-burst, holding the burst it was given.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

END_ID = 0x454E44
ST_EXP, ST_DATA, ST_LOST, ST_DUP, ST_CORRUPT, ST_PROD, ST_SWITCHES, ST_END = range(8)
ST_CRASH_AT, ST_CRASH_KIND, ST_FIRST_SEQ, ST_LAST_SEQ = 8, 9, 10, 11
STATE_WORDS = 16
CRASH_RAISE, CRASH_SEGV = 1, 2


def make_state(state_size: int) -> np.ndarray:
    s = np.zeros(max(state_size, STATE_WORDS), np.int64)
    s[ST_EXP] = s[ST_END] = s[ST_CRASH_AT] = s[ST_FIRST_SEQ] = s[ST_LAST_SEQ] = -1
    s[ST_PROD] = 1
    return s


@intrinsic
def _raise_signal(typingctx, sig):
    """libc raise(sig): a real crash of this process from inside the compiled handler."""
    if not isinstance(sig, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i32, [i32]),
                                            "raise")
        return builder.sext(builder.call(fn, [builder.trunc(args[0], i32)]), ir.IntType(64))
    return types.int64(sig), codegen


@njit(cache=True, nogil=True)
def _word(frames, off):
    v = np.int64(0)
    for k in range(8):
        v |= np.int64(frames[off + k]) << (8 * k)
    return v


@njit(cache=True, nogil=True)
def on_burst(recs, frames, bases, sel, n, now, state):
    for j in range(n):
        b = bases[sel[j]]
        slot_seq = _word(frames, b - 32)
        nwords = recs[sel[j]].caplen // 8
        pid = _word(frames, b)
        seq = _word(frames, b + 8)
        # (a producer's message only: the engine's warm-up runs the handler on a dummy frame)
        if state[ST_CRASH_AT] >= 0 and seq >= state[ST_CRASH_AT] and pid == state[ST_PROD]:
            kind = state[ST_CRASH_KIND]
            state[ST_CRASH_AT] = -1                # once
            if kind == CRASH_SEGV:
                _raise_signal(11)
            raise ValueError("handler crash injected")
        whole = seq == slot_seq and nwords >= 2
        for w in range(2, nwords):
            if _word(frames, b + 8 * w) != seq:
                whole = False
        if pid != END_ID and pid != state[ST_PROD]:
            if pid > state[ST_PROD]:
                state[ST_PROD] = pid
                state[ST_SWITCHES] += 1
            else:
                whole = False
        if not whole:
            state[ST_CORRUPT] += 1
            continue
        if state[ST_FIRST_SEQ] < 0:
            state[ST_FIRST_SEQ] = seq
            state[ST_EXP] = seq
        exp = state[ST_EXP]
        if seq > exp:
            state[ST_LOST] += seq - exp
        elif seq < exp:
            state[ST_DUP] += 1
            continue
        state[ST_EXP] = seq + 1
        state[ST_LAST_SEQ] = seq
        if pid == END_ID:
            state[ST_END] = seq
            return -1                              # stop the loop: the stream is over
        state[ST_DATA] += 1
    return n
