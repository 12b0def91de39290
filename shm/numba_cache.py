"""Numba's on-disk cache, keyed by the whole project's source.

Numba keys a cached function on its own file only.  A function that inlined a kernel from
another file keeps the old machine code after that file changes -- e.g. a strategy handler
that inlines ``engine.book`` keeps reading the books with the old layout after an upgrade,
and loops forever on the new one.  So, unless ``NUMBA_CACHE_DIR`` is set, the cache directory
is ``<cache root>/numba/<hash of every .py file of shm, parsers and engine>``: any change to
the library (an upgrade, an edit) starts from an empty cache, and nothing stale is ever loaded.
The cache root is the one ``parsers.filter_codegen.cache_dir`` uses (``$HUGERING_CACHE_DIR``,
``$XDG_CACHE_HOME/hugering``, ``~/.cache/hugering``).  The newest few directories are kept.

Called first thing by the ``shm``, ``parsers`` and ``engine`` packages, before any of their
``@njit(cache=True)`` functions exists (a function's cache location is fixed when it is
decorated).  Your own modules' functions share the directory, so they start afresh too.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

KEEP = 4                 # digest directories kept (the newest)
_DONE = False
ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("shm", "parsers", "engine")


def source_digest() -> str:
    h = hashlib.sha256()
    for pkg in PACKAGES:
        for p in sorted((ROOT / pkg).rglob("*.py")):
            h.update(str(p.relative_to(ROOT)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def cache_root(sub: str) -> Path:
    """``<root>/<sub>``, created: root is ``$HUGERING_CACHE_DIR``, ``$XDG_CACHE_HOME/hugering``
    or ``~/.cache/hugering``, the first one this user can write; else a private temporary
    directory.  Shared by the Numba cache and the generated filter/loop modules."""
    for cand in (os.environ.get("HUGERING_CACHE_DIR"),
                 os.path.join(os.environ["XDG_CACHE_HOME"], "hugering")
                 if os.environ.get("XDG_CACHE_HOME") else None,
                 os.path.join(os.path.expanduser("~"), ".cache", "hugering")):
        if not cand:
            continue
        d = Path(cand) / sub
        try:
            d.mkdir(parents=True, exist_ok=True)
            if os.access(d, os.W_OK | os.X_OK):
                return d
        except OSError:
            continue
    d = Path(tempfile.gettempdir()) / f"hugering-{sub}-{os.getuid()}"
    d.mkdir(mode=0o700, exist_ok=True)
    return d


def _prune(root: Path, keep: Path) -> None:
    try:
        dirs = sorted((d for d in root.iterdir() if d.is_dir() and d != keep),
                      key=lambda d: d.stat().st_mtime, reverse=True)
    except OSError:
        return
    for d in dirs[KEEP - 1:]:
        shutil.rmtree(d, ignore_errors=True)


def configure() -> str | None:
    """Point Numba's cache at the directory of this source tree (once per process); returns
    it, or None when ``NUMBA_CACHE_DIR`` was set by the user (then that one is used)."""
    global _DONE
    if _DONE:
        return os.environ.get("NUMBA_CACHE_DIR")
    _DONE = True
    if os.environ.get("NUMBA_CACHE_DIR"):
        return None
    root = cache_root("numba")
    d = root / source_digest()
    new = not d.exists()
    d.mkdir(exist_ok=True)
    os.utime(d)
    if new:
        _prune(root, d)
    os.environ["NUMBA_CACHE_DIR"] = str(d)        # child processes inherit it
    import sys
    if "numba" in sys.modules:                   # read at import; set it where it is used
        from numba.core import config
        config.CACHE_DIR = str(d)
    return str(d)
