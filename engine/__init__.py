"""hugering's runtime: producers, the poll loop, configuration and the `hugering` command."""
from shm.numba_cache import configure as _configure_numba_cache

_configure_numba_cache()   # before any @njit(cache=True) of ours exists
