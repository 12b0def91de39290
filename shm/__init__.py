"""hugering's shared-memory packet ring: layout, backing memory, atomics and the @njit verbs.

``shm.layout`` is the single source of truth for the bytes; ``shm.kernels`` holds the hot
verbs (reserve/submit, peek/release, receive); ``shm.ring`` the Python surface.
"""
from .numba_cache import configure as _configure_numba_cache

_configure_numba_cache()   # before any @njit(cache=True) of ours exists
from .backing import (HugepagesError, RingError, RingExistsError, RingFormatError,  # noqa: F401
                      RingNameError, RingNotFoundError)
from .ring import Consumer, Producer, Ring  # noqa: F401

__all__ = ["Ring", "Producer", "Consumer", "RingError", "RingExistsError", "RingFormatError",
           "RingNameError", "RingNotFoundError", "HugepagesError"]
