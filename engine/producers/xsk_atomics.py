"""Memory ordering of the AF_XDP rings, in one module (the 32-bit twin of ``shm/atomics.py``).

The four XSK rings (fill, completion, RX, TX) are single-producer / single-consumer rings
shared with the kernel, each with a free-running u32 ``producer`` and ``consumer`` index on its
own cache line.  The hot loop sees each index as a 1-element ``uint32`` array (a
``numba.carray`` over the mmapped address) and touches it only through these intrinsics, for
the same two reasons as in ``shm/atomics.py``: a plain load in a polling loop is hoisted out of
the loop by LLVM, and a plain store may be sunk below the descriptor writes it publishes.  On
x86-64 each compiles to one ``mov``.

Values are returned zero-extended to int64 and stored truncated to 32 bits, so that index
arithmetic in the caller stays in int64 (``(prod - cons) & 0xFFFFFFFF``) and never mixes
uint32/uint64 with int64 (Numba would promote the mix to float64).

The kernel's side (``net/xdp/xsk_queue.h``) labels its barriers A-D::

    producer                          consumer
    if (LOAD ->consumer) {   (A)      LOAD.acq ->producer    (C)
        STORE $data                   LOAD $data
        STORE.rel ->producer (B)      STORE.rel ->consumer   (D)
    }

and ours carry the same letters with the ring's name (engine/producers/afxdp.py):

* RX (kernel produces, we consume): ``load_acquire_u32(rx.producer)`` is our RX-C, pairing with
  the kernel's RX-B: a descriptor we read was completely written, and so was its frame.
  ``store_release_u32(rx.consumer)`` is our RX-D, pairing with the kernel's RX-A: the kernel
  reuses a descriptor slot only after our reads of it are done.
* Fill (we produce, the kernel consumes): ``store_release_u32(fill.producer)`` is our FQ-B,
  pairing with the kernel's FQ-C: the kernel sees the frame addresses we wrote before the
  index that publishes them.  The producer keeps at most ``fill size`` frames in the UMEM, so
  the fill ring can never be full and our FQ-A (``load_acquire_u32(fill.consumer)``) is only
  read for reports.
* TX / completion mirror them (TX-B/TX-A ours as producer, CQ-C/CQ-D ours as consumer).
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def _u32_array(arr) -> bool:
    return isinstance(arr, types.Array) and arr.dtype == types.uint32 and arr.ndim == 1


def _element_pointer(context, builder, sig, args):
    aryty, idxty = sig.args[0], sig.args[1]
    ary = context.make_array(aryty)(context, builder, args[0])
    idx = context.cast(builder, args[1], idxty, types.intp)
    return cgutils.get_item_pointer(context, builder, aryty, ary, [idx], wraparound=False)


def _load(ordering):
    def impl(typingctx, arr, idx):
        if not (_u32_array(arr) and isinstance(idx, types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            v = builder.load_atomic(_element_pointer(context, builder, sig, args), ordering, 4)
            return builder.zext(v, ir.IntType(64))

        return types.int64(arr, idx), codegen

    return impl


load_acquire_u32 = intrinsic(_load("acquire"))
load_acquire_u32.__doc__ = """``arr[idx]`` (u32) with acquire ordering, zero-extended to int64:
later loads (descriptors, frame bytes) are not hoisted above it, and it is never hoisted out of
a polling loop.  The C barrier of the consumer side (RX-C, CQ-C) or the producer's A (FQ-A)."""
load_relaxed_u32 = intrinsic(_load("monotonic"))
load_relaxed_u32.__doc__ = """``arr[idx]`` (u32) as an atomic load without ordering (flags
words: re-read every time it runs)."""


def _store(ordering):
    def impl(typingctx, arr, idx, value):
        if not (_u32_array(arr) and arr.mutable and isinstance(idx, types.Integer)
                and isinstance(value, types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            ptr = _element_pointer(context, builder, sig, args)
            val = context.cast(builder, args[2], sig.args[2], types.int64)
            builder.store_atomic(builder.trunc(val, ir.IntType(32)), ptr, ordering, 4)
            return context.get_dummy_value()

        return types.void(arr, idx, value), codegen

    return impl


store_release_u32 = intrinsic(_store("release"))
store_release_u32.__doc__ = """``arr[idx] = value & 0xFFFFFFFF`` with release ordering: every
earlier load and store (descriptor reads, address writes) is done before the kernel can see the
new index.  The B barrier of the producer side (FQ-B, TX-B) or the consumer's D (RX-D, CQ-D)."""


__all__ = ["load_acquire_u32", "load_relaxed_u32", "store_release_u32"]
