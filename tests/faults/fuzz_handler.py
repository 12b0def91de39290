"""The fuzz run's engine handler: checks what the parse + filter path made of each hostile frame.

For every packet the engine hands it (the filter passes them all, having evaluated its rules):

* the record's offsets and lengths lie inside the captured bytes (``caplen`` <= slot size);
* every payload byte the record points at is read (under ``NUMBA_BOUNDSCHECK=1`` a read outside
  the slot area raises);
* the frame is copied into a buffer of exactly ``caplen`` bytes and parsed again there: any
  read past the captured length is then a read past the array, which bounds checking turns
  into ``IndexError``; the two records must agree (the ring's may add ``F_TRUNCATED`` where the
  slot's ``cap_len`` lied);
* a frame the generator made bad (``exp_mask`` != 0, by its seq) carries one of the flags it
  must carry.

``state`` is ``(counts, exp_mask, klass, scratch, rec2)``; see ``fuzz_worker.py``.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from parsers.l2l4 import parse_frame
from parsers.record import F_TRUNCATED

N_SEEN, N_BAD, N_FLAGGED, N_UNFLAGGED, N_MISMATCH, N_INVARIANT, N_BYTESUM = range(7)
N_FIRST_UNFLAGGED, N_FIRST_MISMATCH, N_FIRST_INVARIANT, N_LYING, N_LYING_OK = 7, 8, 9, 10, 11
N_CLASS_SEEN, N_CLASS_FLAGGED = 16, 32          # + class id
BAD_FLAGS = 0x1843      # TRUNCATED | MALFORMED | VLAN_TOO_DEEP | EXT_CHAIN_LIMIT | LEN_MISMATCH


@njit(cache=True, nogil=True)
def _u(frames, off, n):
    v = np.int64(0)
    for k in range(n):
        v |= np.int64(frames[off + k]) << (8 * k)
    return v


@njit(cache=True, nogil=True)
def _first(cnt, at, seq):
    if cnt[at] < 0:
        cnt[at] = seq


@njit(cache=True, nogil=True)
def on_burst(recs, frames, bases, sel, n, now, state):
    cnt, exp_mask, klass, scratch, rec2 = state
    mask = exp_mask.shape[0] - 1
    size = scratch.shape[0]
    for j in range(n):
        i = sel[j]
        r = recs[i]
        b = bases[i]
        seq = _u(frames, b - 32, 8)
        raw_cap = _u(frames, b - 12, 4)
        want = exp_mask[seq & mask]
        c = klass[seq & mask]
        cnt[N_SEEN] += 1
        cnt[N_CLASS_SEEN + c] += 1
        cap = np.int64(r.caplen)
        ok = cap <= size
        for o in (r.l3_off, r.l4_off, r.payload_off):
            if o > cap:
                ok = False
        if r.payload_off >= 0:
            if r.payload_len < 0 or np.int64(r.payload_off) + r.payload_len > cap:
                ok = False
            else:
                s = np.int64(0)
                for k in range(r.payload_off, r.payload_off + r.payload_len):
                    s += frames[b + k]
                cnt[N_BYTESUM] += s
        elif r.payload_len != 0:
            ok = False
        if not ok:
            cnt[N_INVARIANT] += 1
            _first(cnt, N_FIRST_INVARIANT, seq)
            continue
        # the same bytes parsed again in an array of exactly caplen bytes
        for k in range(cap):
            scratch[k] = frames[b + k]
        exact = scratch[:cap]
        parse_frame(exact, 0, cap, rec2[0])
        e = rec2[0]
        lying = raw_cap > size
        flags = r.flags & ~F_TRUNCATED if lying else r.flags
        eflags = e.flags & ~F_TRUNCATED if lying else e.flags
        if (flags != eflags or r.l3_off != e.l3_off or r.l4_off != e.l4_off
                or r.payload_off != e.payload_off or r.payload_len != e.payload_len
                or r.ip_proto != e.ip_proto or r.sport != e.sport or r.dport != e.dport
                or r.ext_count != e.ext_count or r.vlan_count != e.vlan_count
                or r.ethertype != e.ethertype or r.ip_len != e.ip_len):
            cnt[N_MISMATCH] += 1
            _first(cnt, N_FIRST_MISMATCH, seq)
        if lying:
            cnt[N_LYING] += 1
            if cap == size and (r.flags & F_TRUNCATED) != 0:
                cnt[N_LYING_OK] += 1
        if r.flags & BAD_FLAGS:
            cnt[N_CLASS_FLAGGED + c] += 1
        if want != 0:
            cnt[N_BAD] += 1
            if r.flags & want:
                cnt[N_FLAGGED] += 1
            else:
                cnt[N_UNFLAGGED] += 1
                _first(cnt, N_FIRST_UNFLAGGED, seq)
    return n
