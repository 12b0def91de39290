"""What the fault tests share: sizes, the soak workers, private mount namespaces, polling.

Sizes: ``make test`` runs bounded sizes (soak 10^7 messages, fuzz 10^6 frames); with
``HUGERING_LONG=1`` the same tests run the issue's full sizes (10^8 and 10^7).

Private mounts: a resource fault that needs a full /dev/shm, a missing or tiny hugetlbfs must
not touch the machine's own mounts (other processes use them at the same time), so the code
under test runs in a child in its own mount namespace (``unshare -m --propagation private``)
where the test mounts what it needs: a 1 MiB tmpfs over /dev/shm, a hugetlbfs with a ``size=``
limit, or nothing at /dev/hugepages.  The namespace, and every mount in it, goes away with the
child.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools"
HERE = Path(__file__).resolve().parent
for p in (str(TOOLS), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

import soak  # noqa: E402  (tools/soak.py: the stamped producer / consumer workers)

sys.path.insert(0, str(HERE.parent))
from test_multiprocess import wait_until  # noqa: E402,F401  (the multi-process tests' poller)

LONG = os.environ.get("HUGERING_LONG", "") == "1"
SOAK_MESSAGES = 10 ** 8 if LONG else 10 ** 7
FUZZ_FRAMES = 10 ** 7 if LONG else 10 ** 6
PYTHON = sys.executable
HUGERING = str(Path(sys.executable).with_name("hugering"))


def run_in_private_mounts(setup: list[str], code: str, timeout: float = 120) -> dict:
    """Run ``setup`` (shell commands: the mounts) then the Python ``code`` in a private mount
    namespace; the code prints one JSON object as its last line, which is returned (with
    ``stderr``).  Root only."""
    script = " && ".join(setup + [f"exec {shlex.quote(PYTHON)} -c {shlex.quote(code)}"])
    out = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                         capture_output=True, text=True, timeout=timeout, cwd=str(ROOT),
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.returncode == 0, f"child failed (status {out.returncode}):\n{out.stderr[-3000:]}"
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["stderr"] = out.stderr
    return res


def cli(*args: str, timeout: float = 120, env=None, **kw) -> subprocess.CompletedProcess:
    """The ``hugering`` command line, as a user runs it."""
    return subprocess.run([HUGERING, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=str(ROOT), env=env, **kw)


def ring_paths(name: str) -> list[str]:
    """Every backing file of a ring with this name (or a name starting with it)."""
    from shm import backing as B
    return [p for n, p in B.list_rings() if n == name or n.startswith(name + ".")]


def listing(*dirs: str) -> dict[str, list[str]]:
    """Directory listings, to show that a refused operation created nothing."""
    out = {}
    for d in dirs:
        try:
            out[d] = sorted(os.listdir(d))
        except OSError:
            out[d] = []
    return out


def soak_worker(role: str, ring: str, tmp_path: Path, tag: str, **args) -> "soak.Worker":
    """A ``tools/soak.py`` worker whose stderr goes to a file under ``tmp_path``."""
    err = open(tmp_path / f"{tag}.stderr", "wb")
    w = soak.Worker(role, ring, tag, stderr=err, **args)
    w.errfile = err
    return w


def stderr_of(w, tmp_path: Path) -> str:
    try:
        return (tmp_path / f"{w.tag}.stderr").read_text()[-3000:]
    except OSError:
        return ""


def engine_worker(ring: str, tmp_path: Path, tag: str, **args) -> "soak.Worker":
    """An engine consumer (``engine_worker.py``: ``ConsumerEngine`` + ``stamp_handler``)."""
    err = open(tmp_path / f"{tag}.stderr", "wb")
    w = soak.Worker("engine", ring, tag, stderr=err,
                    argv=[PYTHON, str(HERE / "engine_worker.py"), json.dumps({"ring": ring,
                                                                              **args})])
    w.errfile = err
    return w
