"""@njit header parsers, filters and application decoders (see the parsers issue)."""
from shm.numba_cache import configure as _configure_numba_cache

_configure_numba_cache()   # before any @njit(cache=True) of ours exists
