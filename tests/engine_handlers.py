"""Handlers the engine tests compile into the loop (importable as ``engine_handlers:NAME``)."""
import numpy as np
from numba import njit


@njit(cache=True, inline="always")
def _ts(frames, base):
    # the slot header's ts_ns: little-endian int64 at 8 bytes into the 32-byte header
    v = 0
    for k in range(8):
        v |= np.int64(frames[base - 24 + k]) << (8 * k)
    return v


@njit(cache=True)
def record_latencies(recs, frames, bases, sel, n, now, state):
    """state[0]: samples so far; state[1 + k]: sample k = now - ts (what the loop records)."""
    for j in range(n):
        c = state[0]
        if 1 + c < state.shape[0]:
            state[1 + c] = now - _ts(frames, bases[sel[j]])
            state[0] = c + 1
    return n


@njit(cache=True)
def sum_ports(recs, frames, bases, sel, n, now, state):
    """state[0] += dport, state[1] += packets: a handler that reads records and nothing else."""
    for j in range(n):
        state[0] += recs[sel[j]].dport
        state[1] += 1
    return n


@njit(cache=True)
def fail_on_seq_multiple(recs, frames, bases, sel, n, now, state):
    """Raises when the synthetic frame's sequence number (UDP payload bytes 8..16) is a
    multiple of state[0]; counts the packets of bursts it completed in state[1]."""
    for j in range(n):
        i = sel[j]
        p = bases[i] + recs[i].payload_off + 8
        seq = 0
        for k in range(8):
            seq = (seq << 8) | frames[p + k]
        if seq % state[0] == 0 and seq > 0:
            raise ValueError("a bad packet")
    state[1] += n
    return n


@njit(cache=True)
def handle_half(recs, frames, bases, sel, n, now, state):
    """Reports only half of each burst handled: the rest counts as handler errors."""
    return n // 2


@njit(cache=True)
def stop_after(recs, frames, bases, sel, n, now, state):
    """Asks the loop to stop once state[0] packets were seen."""
    state[1] += n
    return -1 if state[1] >= state[0] else n
