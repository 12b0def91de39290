"""Resource faults, injected for real: no huge pages free, hugetlbfs not mounted, /dev/shm full,
a memlock limit too low, a ring that belongs to another user.

Mounts are made in a private mount namespace around a child (``faultkit.run_in_private_mounts``):
the machine's /dev/shm and /dev/hugepages are shared with other processes and are never touched.
Each test asserts the exact error (type and message) and that nothing was left half-created: the
directory the ring would have gone to is as it was before.
"""
from __future__ import annotations

import io
import json
import os
import pwd
import subprocess
import textwrap
from contextlib import redirect_stderr

import pytest

from faultkit import HUGERING, PYTHON, ROOT, listing, run_in_private_mounts
from shm import Ring
from shm import backing as B
from shm import layout as L

pytestmark = pytest.mark.timeout(180)

# Runs in the child: try to create the ring, report the error and what the directories hold.
CREATE = textwrap.dedent("""
    import json, logging, os, subprocess, sys
    from shm import Ring
    from shm import backing as B
    name, kw, dirs, cli = {args}
    warnings = []
    class Keep(logging.Handler):
        def emit(self, rec):
            warnings.append(rec.getMessage())
    logging.getLogger("hugering").addHandler(Keep())
    out = {{"error": None, "type": None, "backing": None}}
    try:
        r = Ring.create(name, **kw)
        out["backing"] = r.info()["backing"]
        out["path"] = r.backing.path
        r.close()
        Ring.remove(name)
    except Exception as e:
        out["error"], out["type"] = str(e), type(e).__name__
    out["warnings"] = warnings
    out["listing"] = {{d: sorted(os.listdir(d)) for d in dirs}}
    if cli:
        p = subprocess.run(["{hugering}", *cli], capture_output=True, text=True)
        out["cli"] = [p.returncode, p.stderr.strip()]
        out["listing_after_cli"] = {{d: sorted(os.listdir(d)) for d in dirs}}
    print(json.dumps(out))
""")


def _create_in(setup: list[str], name: str, kw: dict, dirs: list[str], cli=None) -> dict:
    code = CREATE.format(args=repr((name, kw, dirs, cli)), hugering=HUGERING)
    return run_in_private_mounts(setup, code)


def _one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line of error, got:\n{stderr}"
    return lines[0]


# --- huge pages ------------------------------------------------------------------------------------
@pytest.mark.fault("no-hugepages", fault="no huge pages free",
                   injected="a private hugetlbfs mount limited to 2 pages (size=4M) and a ring "
                            "that needs 6; the same mount over /dev/hugepages for the automatic "
                            "choice",
                   expected="explicit mount: HugepagesError naming the mount, the pages free and "
                            "needed, nothing created; automatic: POSIX shm with one warning "
                            "saying why")
def test_no_free_huge_pages_is_a_clear_error_and_creates_nothing(ring_name, tmp_path, need_root,
                                                                 fault_row):
    mnt = str(tmp_path / "hp")
    os.mkdir(mnt)
    kw = {"slots": 4096, "slot_size": 2048, "hugetlbfs": mnt}
    r = _create_in([f"mount -t hugetlbfs -o size=4M none {mnt}"], ring_name, kw, [mnt],
                   cli=["ring", "create", ring_name, "--slots", "4096", "--hugetlbfs", mnt])
    want = (f"the ring needs 6 huge pages of 2048 KiB but the hugetlbfs mount '{mnt}' has 2 of "
            f"its 2 free (its size= limit); remount it with a larger size= or use another mount")
    assert (r["type"], r["error"]) == ("HugepagesError", want)
    assert r["listing"] == {mnt: []} and r["listing_after_cli"] == {mnt: []}
    assert r["cli"][0] == 1 and _one_line(r["cli"][1]) == f"hugering: error: {want}"
    # the automatic choice, with that small mount as /dev/hugepages: falls back, says why
    auto = _create_in([f"mount -t hugetlbfs -o size=4M none {B.DEFAULT_HUGETLBFS}"], ring_name,
                      {"slots": 4096, "slot_size": 2048}, [B.DEFAULT_HUGETLBFS])
    assert auto["error"] is None and auto["backing"] == "shm", auto
    assert len(auto["warnings"]) == 1
    assert ("uses POSIX shared memory (4 KiB pages) because 2 huge pages of 2048 KiB are free "
            "and the ring needs 6") in auto["warnings"][0]
    assert auto["listing"] == {B.DEFAULT_HUGETLBFS: []}
    assert not os.path.exists(auto["path"])
    fault_row.observe(f"{r['type']}: \"{want}\"; CLI exit 1, one line; automatic choice: shm "
                      f"and one warning")


@pytest.mark.fault("no-hugetlbfs", fault="hugetlbfs not mounted",
                   injected="/dev/hugepages unmounted in a private mount namespace",
                   expected="explicit --hugetlbfs: HugepagesError saying it is not a hugetlbfs "
                            "mount and how to mount one, nothing created; automatic: POSIX shm "
                            "with one warning")
def test_hugetlbfs_not_mounted_is_a_clear_error(ring_name, need_root, fault_row):
    hp = B.DEFAULT_HUGETLBFS
    setup = [f"(! mountpoint -q {hp} || umount -l {hp})"]
    r = _create_in(setup, ring_name, {"slots": 64, "slot_size": 64, "hugetlbfs": hp}, [hp],
                   cli=["ring", "create", ring_name, "--hugetlbfs", hp])
    want = (f"'{hp}' is not a hugetlbfs mount; {B.HOW_TO_ENABLE}")
    assert (r["type"], r["error"]) == ("HugepagesError", want)
    assert r["listing"] == {hp: []} and r["listing_after_cli"] == {hp: []}
    assert r["cli"][0] == 1 and _one_line(r["cli"][1]) == f"hugering: error: {want}"
    auto = _create_in(setup, ring_name, {"slots": 64, "slot_size": 64}, [hp])
    assert auto["error"] is None and auto["backing"] == "shm"
    assert len(auto["warnings"]) == 1
    assert f"because no hugetlbfs is mounted at {hp}; to reserve huge pages" in auto["warnings"][0]
    fault_row.observe(f"{r['type']}: \"{want[:60]}...\"; CLI exit 1, one line; automatic: shm, "
                      f"one warning")


# --- /dev/shm ----------------------------------------------------------------------------------------
@pytest.mark.fault("shm-full", fault="/dev/shm full",
                   injected="a 1 MiB tmpfs mounted over /dev/shm in a private mount namespace; "
                            "an 8 MiB ring, then the engine's stats region of a ring on "
                            "hugetlbfs",
                   expected="RingError naming the space needed and free (before: SIGBUS at first "
                            "touch), the stats region an OSError; /dev/shm left empty; a ring "
                            "that fits is created")
def test_full_dev_shm_is_a_clear_error_not_a_sigbus(ring_name, need_root, hugetlbfs, fault_row):
    setup = [f"mount -t tmpfs -o size=1M tmpfs {B.SHM_DIR}"]
    r = _create_in(setup, ring_name, {"slots": 4096, "slot_size": 2048, "shm": True},
                   [B.SHM_DIR], cli=["ring", "create", ring_name, "--shm", "--slots", "4096"])
    want = (f"cannot create POSIX shared memory for ring '{ring_name}': No space left on device "
            f"reserving 8.3 MiB in /dev/shm (it has 1.0 MiB free of 1.0 MiB); free space there, "
            f"enlarge it (mount -o remount,size=... /dev/shm) or put the ring on hugetlbfs")
    assert (r["type"], r["error"]) == ("RingError", want)
    assert r["listing"] == {B.SHM_DIR: []} and r["listing_after_cli"] == {B.SHM_DIR: []}
    assert r["cli"][0] == 1 and _one_line(r["cli"][1]) == f"hugering: error: {want}"
    small = _create_in(setup, ring_name, {"slots": 8, "slot_size": 64, "shm": True}, [B.SHM_DIR])
    assert small["error"] is None and small["backing"] == "shm"
    # the engine's stats region (a counter page per consumer) lives in /dev/shm too
    code = textwrap.dedent(f"""
        import json, os
        from shm import Ring
        from engine.stats import StatsRegion
        r = Ring.create({ring_name!r}, slots=64, slot_size=64, hugetlbfs="{B.DEFAULT_HUGETLBFS}")
        try:
            StatsRegion.attach(r)
            out = {{"error": None}}
        except OSError as e:
            out = {{"error": str(e)}}
        finally:
            r.close()
            Ring.remove({ring_name!r})
        out["listing"] = sorted(os.listdir("/dev/shm"))
        print(json.dumps(out))
    """)
    st = run_in_private_mounts(["mount -t tmpfs -o size=64k tmpfs /dev/shm"], code)
    assert st["error"] == (f"[Errno 28] cannot create the stats region /dev/shm/hugering-stats."
                           f"{ring_name} (560256 bytes): No space left on device; free space in "
                           f"/dev/shm"), st
    assert st["listing"] == []
    fault_row.observe(f"RingError: \"{want[:90]}...\"; CLI exit 1, one line; stats region: "
                      f"OSError ENOSPC; /dev/shm empty afterwards; an 8-slot ring fits")


# --- memlock -------------------------------------------------------------------------------------------
LOW_MEMLOCK = ["prlimit", "--memlock=65536:65536", "setpriv", "--bounding-set=-ipc_lock",
               "--inh-caps=-ipc_lock", "--"]


@pytest.mark.fault("memlock-engine", fault="memlock limit too low: the engine's jitter controls",
                   injected="RLIMIT_MEMLOCK 64 KiB and no CAP_IPC_LOCK (prlimit, setpriv); a "
                            "consumer process locks its memory and a 32 MiB ring",
                   expected="no crash: one warning naming the refusal and its cause, the report "
                            "says memory not locked, the consumer runs")
def test_low_memlock_is_reported_by_the_engine_not_fatal(ring_name, need_root, fault_row):
    code = textwrap.dedent(f"""
        import json, logging, resource
        from engine.placement import apply_jitter_controls
        from shm import Ring
        warnings = []
        class Keep(logging.Handler):
            def emit(self, rec):
                warnings.append(rec.getMessage())
        logging.getLogger("hugering").addHandler(Keep())
        r = Ring.create({ring_name!r}, slots=1 << 14, slot_size=2048, shm=True)
        try:
            rep = apply_jitter_controls(prefault=[r.slot_bytes], freeze_gc=False)
            print(json.dumps({{"locked": rep.memory_locked, "ranges": rep.ranges_locked,
                              "error": rep.lock_error, "parts": rep.parts(),
                              "warnings": warnings,
                              "limit": resource.getrlimit(resource.RLIMIT_MEMLOCK)}}))
        finally:
            r.close()
            Ring.remove({ring_name!r})
    """)
    p = subprocess.run(LOW_MEMLOCK + [PYTHON, "-c", code], capture_output=True, text=True,
                       timeout=120, cwd=str(ROOT), env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["limit"] == [65536, 65536]
    assert r["locked"] is False and r["ranges"] is False
    assert len(r["warnings"]) == 1 and r["warnings"][0].startswith("mlockall refused (")
    assert r["warnings"][0].endswith(": page faults and swap can reach the poll loop")
    assert r["error"] in r["warnings"][0]
    fault_row.observe(f"warning: \"{r['warnings'][0]}\"; start-up line: "
                      f"{' · '.join(r['parts'])}")


@pytest.mark.fault("memlock-afxdp", fault="memlock limit too low: the AF_XDP producer",
                   injected="RLIMIT_MEMLOCK 1 MiB and no CAP_IPC_LOCK; an AF_XDP producer on a "
                            "veth whose UMEM needs 8 MiB",
                   expected="AfXdpError(kind=memlock) saying the limit, the need and how to "
                            "raise it; no XDP program attached, no UMEM file, the ring has no "
                            "producer")
def test_low_memlock_refuses_the_af_xdp_producer_cleanly(ring_name, need_root, hugetlbfs,
                                                         fault_row):
    ifname = f"hrf{os.getpid() % 100000}"
    peer = ifname + "p"
    subprocess.run(["ip", "link", "add", ifname, "type", "veth", "peer", "name", peer],
                   check=True, capture_output=True)
    try:
        for dev in (ifname, peer):
            subprocess.run(["ip", "link", "set", dev, "up"], check=True, capture_output=True)
        def umem_files():      # the producer's UMEM files (other processes use the mount too)
            return {n for n in listing(B.DEFAULT_HUGETLBFS)[B.DEFAULT_HUGETLBFS]
                    if n.startswith(".hugering-umem.")}
        before = umem_files()
        ring = Ring.create(ring_name, slots=1024, hugetlbfs=hugetlbfs)
        code = textwrap.dedent(f"""
            import json
            from shm import Ring
            from engine.producers.afxdp import AfXdpProducer, AfXdpError
            ring = Ring.open({ring_name!r}, writable_slots=True)
            try:
                AfXdpProducer(ring, {ifname!r}, frames=4096)
                out = {{"kind": None}}
            except AfXdpError as e:
                out = {{"kind": e.kind, "msg": str(e)}}
            print(json.dumps(out))
        """)
        p = subprocess.run(["prlimit", "--memlock=1048576:1048576"] + LOW_MEMLOCK[2:] +
                           [PYTHON, "-c", code], capture_output=True, text=True, timeout=120,
                           cwd=str(ROOT), env=dict(os.environ, PYTHONPATH=str(ROOT)))
        assert p.returncode == 0, p.stderr[-2000:]
        r = json.loads(p.stdout.strip().splitlines()[-1])
        assert r["kind"] == "memlock", r
        assert r["msg"].startswith("memlock limit too low: RLIMIT_MEMLOCK is 1 MiB (ulimit -l "
                                   "1024), hard limit 1 MiB (ulimit -l 1024), and the UMEM needs "
                                   "8 MiB of locked memory"), r["msg"]
        assert "'ulimit -l unlimited'" in r["msg"] and "or use fewer --frames" in r["msg"]
        link = subprocess.run(["ip", "-d", "link", "show", ifname], capture_output=True,
                              text=True).stdout
        assert "prog/xdp" not in link, link
        assert umem_files() == before
        assert int(ring.ctrl[L.H_PRODUCER_PID]) == 0 and int(ring.ctrl[L.P_CURSOR]) == 0
        ring.close()
        fault_row.observe(f"AfXdpError(memlock): \"{r['msg'][:110]}...\"; no XDP program, no "
                          f"UMEM file, ring untouched")
    finally:
        subprocess.run(["ip", "link", "del", ifname], capture_output=True)


# --- another user's ring -----------------------------------------------------------------------------
def _as_user(uid: int, gid: int, fn) -> dict:
    """Run ``fn()`` in a forked child that has dropped to uid/gid; its JSON result."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            data = json.dumps(fn()).encode()
        except BaseException as e:       # noqa: BLE001 -- reported to the parent
            data = json.dumps({"child_error": repr(e)}).encode()
        os.write(w, data)
        os._exit(0)
    os.close(w)
    chunks = []
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(b"".join(chunks))


@pytest.mark.fault("other-user", fault="a ring created by another user",
                   injected="root creates a ring (mode 0600) on hugetlbfs and on POSIX shm; a "
                            "process running as 'nobody' opens, creates, removes it, and runs "
                            "hugering ring info / stat on it",
                   expected="permission errors naming the owner uid and mode (create: 'already "
                            "exists'); the ring's bytes unchanged")
@pytest.mark.parametrize("where", ["hugetlbfs", "shm"])
def test_ring_of_another_user_is_refused_and_left_alone(ring_name, need_root, hugetlbfs,
                                                        fault_row, where):
    ring = Ring.create(ring_name, slots=64, slot_size=64, shm=where == "shm",
                       hugetlbfs=hugetlbfs if where == "hugetlbfs" else None)
    with ring.producer() as p:
        p.publish([b"mine"] * 5)
    path = ring.backing.path
    before = open(path, "rb").read()
    nobody = pwd.getpwnam("nobody")

    def attempts():
        from engine.cli import main
        from shm import Ring as R
        out = {}
        for what, call in (("open", lambda: R.open(ring_name)),
                           ("create", lambda: R.create(ring_name, slots=64, slot_size=64,
                                                       shm=True)),
                           ("remove", lambda: R.remove(ring_name))):
            try:
                call()
                out[what] = None
            except Exception as e:           # noqa: BLE001
                out[what] = f"{type(e).__name__}: {e}"
        for verb in (["ring", "info", ring_name], ["stat", ring_name, "--json"]):
            err = io.StringIO()
            with redirect_stderr(err):
                rc = main(verb)
            out[verb[0] + (" " + verb[1] if verb[0] == "ring" else "")] = [rc, err.getvalue()]
        return out

    # everything the child runs is imported now: as 'nobody' it cannot read this Python's
    # library (the interpreter may live in root's home)
    import engine.cli
    import engine.leak  # noqa: F401
    import engine.stats  # noqa: F401
    import shm.liveness  # noqa: F401
    engine.cli.build_parser()
    r = _as_user(nobody.pw_uid, nobody.pw_gid, attempts)
    assert "child_error" not in r, r
    if where == "hugetlbfs":
        denied = (f"RingError: ring '{ring_name}' ({path}) exists but this user may not open it "
                  f"(owner uid 0, mode 0o600)")
    else:
        denied = f"RingError: ring '{ring_name}' ({path}) exists but this user may not open it"
    assert r["open"] == denied and r["remove"] == denied
    assert r["create"] == (f"RingExistsError: ring '{ring_name}' already exists ({path}); remove "
                           f"it with: hugering ring rm {ring_name}")
    for verb in ("ring info", "stat"):
        rc, err = r[verb]
        assert rc == 1 and err.strip() == "hugering: error: " + denied.split(": ", 1)[1], err
    assert open(path, "rb").read() == before
    ring.close()
    fault_row.observe(f"{where}: open/remove/ring info/stat: \"{denied.split(': ', 1)[1]}\"; "
                      f"create: already exists; bytes unchanged")
