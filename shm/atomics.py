"""All memory ordering of hugering, in one module.

Numba has no atomics of its own.  These ``intrinsic``s emit LLVM atomic instructions on an
element of a 1-D int64 array (the control region or the slot region seen as int64 words).
Nothing else in the project touches a cursor or a slot stamp: every shared index goes through
one of these functions, so the complete set of barriers can be read here, and each call site
says which barrier it pairs with.

Why atomics even on x86-64, where ordinary loads and stores are already acquire/release in
hardware: the *compiler* is the problem.  A plain load of the producer cursor inside a polling
loop is loop-invariant to LLVM and gets hoisted out of the loop (the consumer then spins
forever); a plain store of a cursor may be sunk below the payload writes it is meant to
publish.  An atomic load/store with acquire/release ordering forbids both, and on x86-64 it
compiles to the same single ``mov`` instruction.  ``fence_seq_cst`` is an ``mfence`` there;
it is used only on slow paths (consumer join, the producer's scan of consumer lines).

The pairs, by label (kernels in ``shm/kernels.py`` and the C twin in
``shm/include/hugering_ring.h`` carry the same labels):

* P1 producer ``store_release(cursor)``          pairs with C1 consumer ``load_acquire(cursor)``:
  a consumer that sees cursor = n sees every slot byte written before it.
* C2 consumer ``store_release(own cursor)``      pairs with P2 producer ``load_acquire`` of it:
  the producer overwrites a slot only after the consumer's reads of it are done.
* L1 lossy producer ``store_relaxed(seq=-1)`` + ``fence_release`` before writing a slot, and
  L2 ``store_release(seq)`` after, pair with L3 consumer ``load_acquire(seq)`` /
  ``fence_acquire`` / ``load_relaxed(seq)`` around its copy (a seqlock): a copy is delivered
  only when the stamp was the expected one before and after it, so no torn slot is delivered.
* J1 consumer join ``fence_seq_cst`` between publishing its line and reading the producer
  cursor pairs with J2, the producer's ``fence_seq_cst`` before it scans consumer lines
  (store-load ordering, Dekker style; see ``kernels.consumer_join``).
* E1 producer ``cas(state, ACTIVE, EVICTED)`` pairs with E2, the consumer's ``load_acquire``
  of its own state in ``peek``.
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def _int64_array(arr) -> bool:
    return isinstance(arr, types.Array) and arr.dtype == types.int64 and arr.ndim == 1


def _element_pointer(context, builder, sig, args):
    aryty, idxty = sig.args[0], sig.args[1]
    ary = context.make_array(aryty)(context, builder, args[0])
    idx = context.cast(builder, args[1], idxty, types.intp)
    return cgutils.get_item_pointer(context, builder, aryty, ary, [idx], wraparound=False)


@intrinsic
def load_acquire(typingctx, arr, idx):
    """``arr[idx]`` with acquire ordering: later loads are not hoisted above it, and it is
    itself never hoisted out of a polling loop."""
    if not (_int64_array(arr) and isinstance(idx, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        return builder.load_atomic(_element_pointer(context, builder, sig, args), "acquire", 8)

    return types.int64(arr, idx), codegen


@intrinsic
def load_relaxed(typingctx, arr, idx):
    """``arr[idx]`` as an atomic load without ordering (re-read every time it is executed)."""
    if not (_int64_array(arr) and isinstance(idx, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        return builder.load_atomic(_element_pointer(context, builder, sig, args), "monotonic", 8)

    return types.int64(arr, idx), codegen


def _store(ordering):
    def impl(typingctx, arr, idx, value):
        if not (_int64_array(arr) and isinstance(idx, types.Integer)
                and isinstance(value, types.Integer)):
            return None
        if not arr.mutable:
            return None  # a read-only mapping stays read-only: no store compiles against it

        def codegen(context, builder, sig, args):
            ptr = _element_pointer(context, builder, sig, args)
            val = context.cast(builder, args[2], sig.args[2], types.int64)
            builder.store_atomic(val, ptr, ordering, 8)
            return context.get_dummy_value()

        return types.void(arr, idx, value), codegen

    return impl


store_release = intrinsic(_store("release"))
store_release.__doc__ = """``arr[idx] = value`` with release ordering: every earlier load and
store is visible to a thread that load-acquires this value."""
store_relaxed = intrinsic(_store("monotonic"))
store_relaxed.__doc__ = """``arr[idx] = value`` as an atomic store without ordering."""


@intrinsic
def cas(typingctx, arr, idx, expected, desired):
    """Compare-and-swap ``arr[idx]`` (sequentially consistent); returns the value found, so the
    swap happened iff the result equals ``expected``."""
    if not (_int64_array(arr) and arr.mutable and isinstance(idx, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig, args)
        exp = context.cast(builder, args[2], sig.args[2], types.int64)
        new = context.cast(builder, args[3], sig.args[3], types.int64)
        pair = builder.cmpxchg(ptr, exp, new, "seq_cst", "seq_cst")
        return builder.extract_value(pair, 0)

    return types.int64(arr, idx, expected, desired), codegen


@intrinsic
def fetch_add(typingctx, arr, idx, delta):
    """Atomically add ``delta`` to ``arr[idx]`` (sequentially consistent); returns the old value.
    Only for counters more than one process may bump; single-writer counters use plain adds."""
    if not (_int64_array(arr) and arr.mutable and isinstance(idx, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig, args)
        d = context.cast(builder, args[2], sig.args[2], types.int64)
        return builder.atomic_rmw("add", ptr, d, "seq_cst")

    return types.int64(arr, idx, delta), codegen


def _fence(ordering):
    def impl(typingctx):
        def codegen(context, builder, sig, args):
            builder.fence(ordering)
            return context.get_dummy_value()

        return types.void(), codegen

    return impl


fence_acquire = intrinsic(_fence("acquire"))
fence_acquire.__doc__ = "Later loads are not reordered before earlier loads (seqlock read side)."
fence_release = intrinsic(_fence("release"))
fence_release.__doc__ = "Later stores are not reordered before earlier ones (seqlock write side)."
fence_seq_cst = intrinsic(_fence("seq_cst"))
fence_seq_cst.__doc__ = "Full barrier, store-load included (slow paths only: an mfence on x86)."


@intrinsic
def compiler_barrier(typingctx):
    """Stops the compiler, not the CPU, from moving memory accesses across this point
    (single-thread signal fence).  Used by benchmarks to keep a timed loop honest."""
    def codegen(context, builder, sig, args):
        builder.fence("seq_cst", "singlethread")
        return context.get_dummy_value()

    return types.void(), codegen


__all__ = [
    "load_acquire", "load_relaxed", "store_release", "store_relaxed", "cas", "fetch_add",
    "fence_acquire", "fence_release", "fence_seq_cst", "compiler_barrier",
]

_ = ir  # llvmlite is the backend these intrinsics emit to; imported to fail early without it
