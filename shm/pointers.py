"""Raw pointers for ``@njit`` hot code.

Indexing a numpy array inside Numba costs a reference count update each time the array is
passed to a non-inlined function and a wrap-around check for negative indices on every access;
in per-byte parsing loops both cost more than the parsing itself.  Hot loops therefore take the
array's data pointer once and index that.  The caller keeps the array alive and checks every
index itself (the parsers check each read against the captured length, and under
``NUMBA_BOUNDSCHECK=1`` against the array's length too).
"""
from __future__ import annotations

from numba import types
from numba.extending import intrinsic


def _codegen(context, builder, signature, args):
    return context.make_array(signature.args[0])(context, builder, args[0]).data


@intrinsic
def data_pointer(typingctx, arr):
    """The data pointer of a C-contiguous array, typed as a pointer to its elements."""
    if not (isinstance(arr, types.Array) and arr.layout == "C"):
        return None
    return types.CPointer(arr.dtype)(arr), _codegen


@intrinsic
def byte_pointer(typingctx, arr):
    """The data pointer of a C-contiguous 1-D uint8 array.  Anything else does not type: a
    strided view or a wider dtype would be read wrongly through a flat byte pointer."""
    if not (isinstance(arr, types.Array) and arr.ndim == 1 and arr.layout == "C"
            and arr.dtype == types.uint8):
        return None
    return types.CPointer(arr.dtype)(arr), _codegen
