"""Where a ring's bytes live: a file on hugetlbfs, or POSIX shared memory as the fallback.

A ring called NAME is the file ``hugering.NAME`` on a hugetlbfs mount (``/dev/hugepages`` by
default), so its slots sit in huge pages (fewer TLB misses for a busy-polling reader), or the
POSIX shared-memory object ``/hugering.NAME`` (``/dev/shm/hugering.NAME`` on Linux) created
through ``posix_ipc``.  Files are created mode 0600 (0660 with a group), with O_EXCL, and the
header's magic is written last, so a half-created ring is never mistaken for a good one and a
failure on the way removes what was made.  POSIX shared memory is reserved page by page at
creation (a full /dev/shm is an error then, not a SIGBUS at first touch later), and a hugetlbfs
mount's own ``size=`` limit is checked along with the free huge pages.

Errors are ``RingError`` subclasses with one clear sentence that names the field or the fix.
"""
from __future__ import annotations

import errno
import grp
import logging
import mmap
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import posix_ipc

from . import layout as L

log = logging.getLogger("hugering")

FILE_PREFIX = "hugering."
DEFAULT_HUGETLBFS = "/dev/hugepages"
SHM_DIR = "/dev/shm"
MAX_NAME = 64
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
HOW_TO_ENABLE = ("reserve huge pages and mount hugetlbfs as root: "
                 "echo 256 > /proc/sys/vm/nr_hugepages; mkdir -p /dev/hugepages; "
                 "mount -t hugetlbfs none /dev/hugepages")


class RingError(Exception):
    """Base of every error about a ring (bad name, missing, malformed, no memory)."""


class RingNameError(RingError, ValueError):
    pass


class RingExistsError(RingError, FileExistsError):
    pass


class RingNotFoundError(RingError, FileNotFoundError):
    pass


class RingFormatError(RingError):
    """The file is not a ring this version can map; ``field`` names the offending field."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


class HugepagesError(RingError):
    pass


def validate_name(name) -> str:
    """A ring name is 1..64 characters of letters, digits, '.', '_' and '-', not starting with
    '.' or '-', and without '..': it becomes part of a file name and must never be a path."""
    if not isinstance(name, str):
        raise RingNameError(f"ring name must be a string, not {type(name).__name__}")
    shown = repr(name if len(name) <= 80 else name[:80] + "...")
    if not name:
        raise RingNameError("ring name is empty")
    if "/" in name or "\\" in name or "\x00" in name:
        raise RingNameError(f"ring name {shown} contains a path separator or NUL: "
                            "a name is not a path")
    if ".." in name:
        raise RingNameError(f"ring name {shown} contains '..'")
    if len(name) > MAX_NAME:
        raise RingNameError(f"ring name {shown} is {len(name)} characters; at most {MAX_NAME}")
    if not _NAME_RE.fullmatch(name):
        raise RingNameError(f"ring name {shown} may only hold letters, digits, '.', '_' and '-', "
                            "and must start with a letter or digit")
    return name


# --- hugetlbfs discovery ------------------------------------------------------------------
def _default_hugepage_size() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("Hugepagesize:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 2 << 20


def hugetlbfs_mounts() -> list[tuple[str, int]]:
    """(mount point, page size) of every hugetlbfs mount, from /proc/mounts."""
    out = []
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.split()
        if len(parts) >= 4 and parts[2] == "hugetlbfs":
            size = _default_hugepage_size()
            for opt in parts[3].split(","):
                if opt.startswith("pagesize="):
                    size = _parse_size(opt.split("=", 1)[1])
            out.append((parts[1].replace("\\040", " "), size))
    return out


def _parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().rstrip("B")
    if text and text[-1] in units:
        return int(text[:-1]) * units[text[-1]]
    return int(text)


def mount_free_bytes(path: str) -> tuple[int, int] | None:
    """(free, total) bytes of a size-limited mount (tmpfs, or hugetlbfs with ``size=``), or None
    where the mount has no limit of its own (hugetlbfs without ``size=`` reports 0 blocks)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    if st.f_blocks == 0:
        return None
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def free_hugepages(page_size: int) -> int:
    """Huge pages of this size that a new mapping can still reserve (free minus reserved)."""
    base = Path(f"/sys/kernel/mm/hugepages/hugepages-{page_size // 1024}kB")
    try:
        free = int((base / "free_hugepages").read_text())
        resv = int((base / "resv_hugepages").read_text())
    except (OSError, ValueError):
        return 0
    return max(0, free - resv)


def mount_page_size(path: str) -> int | None:
    """Page size of the hugetlbfs mount at ``path``, or None if it is not one."""
    real = os.path.realpath(path)
    for mnt, size in hugetlbfs_mounts():
        if os.path.realpath(mnt) == real:
            return size
    return None


# --- the backing object -------------------------------------------------------------------
@dataclass
class Backing:
    name: str
    kind: int                 # layout.BACKING_HUGETLBFS or layout.BACKING_SHM
    path: str                 # the file (for shm: its /dev/shm path, for messages and ls)
    fd: int
    page_size: int

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def unlink(self) -> None:
        _unlink(self.kind, self.name, self.path)


def _unlink(kind: int, name: str, path: str) -> None:
    if kind == L.BACKING_SHM:
        try:
            posix_ipc.unlink_shared_memory("/" + FILE_PREFIX + name)
        except posix_ipc.ExistentialError:
            pass
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _shm_path(name: str) -> str:
    return os.path.join(SHM_DIR, FILE_PREFIX + name)


def choose_backing(name: str, nbytes_hint: int, hugetlbfs: str | None, shm: bool):
    """Decide where a new ring goes: (kind, directory or None, page size, why-not-hugepages).

    Explicit ``hugetlbfs`` that cannot serve the ring is an error; the automatic choice falls
    back to POSIX shared memory, and ``why`` (None when nothing fell back) is what the caller
    warns about once the ring exists (``warn_fallback``)."""
    if shm:
        return L.BACKING_SHM, None, mmap.PAGESIZE, None
    if hugetlbfs is not None:
        if not os.path.isdir(hugetlbfs):
            raise HugepagesError(f"hugetlbfs path {hugetlbfs!r} does not exist; {HOW_TO_ENABLE}")
        size = mount_page_size(hugetlbfs)
        if size is None:
            raise HugepagesError(f"{hugetlbfs!r} is not a hugetlbfs mount; {HOW_TO_ENABLE}")
        if not os.access(hugetlbfs, os.W_OK | os.X_OK):
            raise HugepagesError(f"this user may not create files in {hugetlbfs!r}; give it "
                                 "a hugetlbfs mount it owns (mount -t hugetlbfs -o uid=UID,"
                                 "gid=GID none DIR) or use --shm")
        need = -(-nbytes_hint // size)
        have = free_hugepages(size)
        if have < need:
            raise HugepagesError(
                f"the ring needs {need} huge pages of {size >> 10} KiB but {have} are free; "
                f"{HOW_TO_ENABLE.replace('256', str(max(256, need + 16)))}")
        limit = mount_free_bytes(hugetlbfs)
        if limit is not None and limit[0] // size < need:
            # the pool has pages, but this mount's size= option caps what it may take
            raise HugepagesError(
                f"the ring needs {need} huge pages of {size >> 10} KiB but the hugetlbfs mount "
                f"{hugetlbfs!r} has {limit[0] // size} of its {limit[1] // size} free (its "
                f"size= limit); remount it with a larger size= or use another mount")
        return L.BACKING_HUGETLBFS, hugetlbfs, size, None
    size = mount_page_size(DEFAULT_HUGETLBFS)
    if size is None:
        why = f"no hugetlbfs is mounted at {DEFAULT_HUGETLBFS}"
    elif not os.access(DEFAULT_HUGETLBFS, os.W_OK | os.X_OK):
        why = f"this user may not create files in {DEFAULT_HUGETLBFS}"
    else:
        need = -(-nbytes_hint // size)
        have = free_hugepages(size)
        limit = mount_free_bytes(DEFAULT_HUGETLBFS)
        if limit is not None:
            have = min(have, limit[0] // size)
        if have >= need:
            return L.BACKING_HUGETLBFS, DEFAULT_HUGETLBFS, size, None
        why = f"{have} huge pages of {size >> 10} KiB are free and the ring needs {need}"
    return L.BACKING_SHM, None, mmap.PAGESIZE, why


def warn_fallback(name: str, why: str | None) -> None:
    """The one warning line of an automatic fallback to POSIX shared memory."""
    if why:
        log.warning("ring %r uses POSIX shared memory (4 KiB pages) because %s; to %s",
                    name, why, HOW_TO_ENABLE)


def existing_path(name: str) -> str | None:
    """Path of a ring with this name on any backing (hugetlbfs mounts, POSIX shm), or None.
    A name is unique across backings: ``open`` must never have two candidates."""
    for n, path in list_rings():
        if n == name:
            return path
    return None


def create_file(name: str, kind: int, directory: str | None, page_size: int, nbytes: int,
                group: str | None) -> Backing:
    """Create and size the backing object exclusively; the caller writes the header."""
    mode = 0o660 if group else 0o600
    other = existing_path(name)
    if other is not None:
        raise RingExistsError(f"ring {name!r} already exists ({other}); "
                              f"remove it with: hugering ring rm {name}")
    if kind == L.BACKING_SHM:
        path = _shm_path(name)
        try:
            shm = posix_ipc.SharedMemory("/" + FILE_PREFIX + name,
                                         posix_ipc.O_CREX, mode=mode, size=nbytes)
        except posix_ipc.ExistentialError:
            raise RingExistsError(f"ring {name!r} already exists ({path}); "
                                  f"remove it with: hugering ring rm {name}") from None
        except OSError as e:
            raise RingError(f"cannot create POSIX shared memory for ring {name!r} "
                            f"({nbytes} bytes at {SHM_DIR}): {e.strerror or e}") from None
        fd = os.dup(shm.fd)
        shm.close_fd()
        try:
            # tmpfs sizes a file without allocating it: a full /dev/shm would only show later,
            # as SIGBUS in whichever process first touches a missing page.  Reserve every page
            # now, so that "no room" is this error and nothing is left behind.
            os.posix_fallocate(fd, 0, nbytes)
        except OSError as e:
            os.close(fd)
            _unlink(L.BACKING_SHM, name, path)
            raise RingError(f"cannot create POSIX shared memory for ring {name!r}: "
                            f"{e.strerror} reserving {_mib(nbytes)} in {SHM_DIR}"
                            f"{_shm_room()}") from None
    else:
        path = os.path.join(directory, FILE_PREFIX + name)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        except FileExistsError:
            raise RingExistsError(f"ring {name!r} already exists ({path}); "
                                  f"remove it with: hugering ring rm {name}") from None
        except PermissionError as e:
            raise RingError(f"cannot create {path}: {e.strerror}") from None
        try:
            os.ftruncate(fd, nbytes)
        except OSError as e:
            os.close(fd)
            os.unlink(path)
            raise HugepagesError(f"cannot size {path} to {nbytes} bytes: {e.strerror}; "
                                 f"{HOW_TO_ENABLE}") from None
    backing = Backing(name, kind, path, fd, page_size)
    try:
        os.fchmod(fd, mode)  # the umask must not widen or narrow what was asked for
        if group:
            try:
                gid = grp.getgrnam(group).gr_gid
            except KeyError:
                raise RingError(f"group {group!r} does not exist") from None
            os.fchown(fd, -1, gid)
    except BaseException:
        backing.close()
        backing.unlink()
        raise
    return backing


_SHM_FIX = (f"free space there, enlarge it (mount -o remount,size=... {SHM_DIR}) or put the "
            "ring on hugetlbfs")


def _shm_room() -> str:
    room = mount_free_bytes(SHM_DIR)
    if room is None:
        return ""
    return f" (it has {_mib(room[0])} free of {_mib(room[1])}); {_SHM_FIX}"


def open_file(name: str, hugetlbfs: str | None = None) -> Backing:
    """Find an existing ring by name: the given hugetlbfs mount, else every hugetlbfs mount,
    else POSIX shared memory."""
    validate_name(name)
    dirs = [hugetlbfs] if hugetlbfs else [m for m, _ in hugetlbfs_mounts()]
    for d in dirs:
        path = os.path.join(d, FILE_PREFIX + name)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        except PermissionError:
            raise RingError(f"ring {name!r} ({path}) exists but this user may not open it "
                            f"(owner uid {os.stat(path).st_uid}, mode "
                            f"{oct(os.stat(path).st_mode & 0o777)})") from None
        return Backing(name, L.BACKING_HUGETLBFS, path, fd, mount_page_size(d) or (2 << 20))
    try:
        shm = posix_ipc.SharedMemory("/" + FILE_PREFIX + name)
    except posix_ipc.ExistentialError:
        where = ", ".join(dirs + [SHM_DIR]) if dirs else SHM_DIR
        raise RingNotFoundError(f"ring {name!r} does not exist (looked in {where}); "
                                f"create it with: hugering ring create {name}") from None
    except posix_ipc.PermissionsError:
        raise RingError(f"ring {name!r} ({_shm_path(name)}) exists but this user may not "
                        "open it") from None
    fd = os.dup(shm.fd)
    shm.close_fd()
    return Backing(name, L.BACKING_SHM, _shm_path(name), fd, mmap.PAGESIZE)


def list_rings(hugetlbfs: str | None = None) -> list[tuple[str, str]]:
    """(name, path) of every ring file visible on this machine."""
    dirs = [hugetlbfs] if hugetlbfs else [m for m, _ in hugetlbfs_mounts()]
    seen = []
    for d in dirs + [SHM_DIR]:
        try:
            entries = sorted(os.listdir(d))
        except OSError:
            continue
        for entry in entries:
            if entry.startswith(FILE_PREFIX):
                seen.append((entry[len(FILE_PREFIX):], os.path.join(d, entry)))
    return seen


def read_header(backing: Backing) -> np.void:
    raw = os.pread(backing.fd, L.HEADER_BYTES, 0)
    if len(raw) < L.HEADER_BYTES:
        raise RingFormatError(
            f"ring {backing.name!r} ({backing.path}): field 'file_size' is {len(raw)} bytes, "
            f"smaller than the {L.HEADER_BYTES}-byte header", "file_size")
    return np.frombuffer(raw, dtype=L.HEADER_DTYPE)[0]


def validate_header(h, backing: Backing) -> None:
    """Refuse anything this version cannot map safely, naming the field.  Runs before mmap."""
    where = f"ring {backing.name!r} ({backing.path})"

    def bad(field, text):
        raise RingFormatError(f"{where}: field '{field}' {text}", field)

    if int(h["magic"]) != L.MAGIC:
        bad("magic", f"is 0x{int(h['magic']):016x}, expected 0x{L.MAGIC:016x} "
                     "(not a hugering ring, or one still being created)")
    if int(h["layout_version"]) != L.LAYOUT_VERSION:
        bad("layout_version", f"is {int(h['layout_version'])}; this hugering reads version "
                              f"{L.LAYOUT_VERSION}")
    if int(h["mode"]) not in (L.MODE_LOSSLESS, L.MODE_LOSSY):
        bad("mode", f"is {int(h['mode'])}, expected 0 (lossless) or 1 (lossy)")
    if int(h["full_policy"]) not in (L.FULL_DROP, L.FULL_WAIT):
        bad("full_policy", f"is {int(h['full_policy'])}, expected 0 (drop) or 1 (wait)")
    cap = int(h["capacity"])
    if cap < 2 or cap > L.MAX_CAPACITY or cap & (cap - 1):
        bad("capacity", f"is {cap}, expected a power of two from 2 to {L.MAX_CAPACITY}")
    size = int(h["slot_size"])
    if not L.MIN_SLOT_SIZE <= size <= L.MAX_SLOT_SIZE:
        bad("slot_size", f"is {size}, expected {L.MIN_SLOT_SIZE}..{L.MAX_SLOT_SIZE}")
    if int(h["slot_stride"]) != L.slot_stride(size):
        bad("slot_stride", f"is {int(h['slot_stride'])}, expected {L.slot_stride(size)} for "
                           f"slot_size {size}")
    maxc = int(h["max_consumers"])
    if not 1 <= maxc <= L.MAX_CONSUMERS_LIMIT:
        bad("max_consumers", f"is {maxc}, expected 1..{L.MAX_CONSUMERS_LIMIT}")
    off = int(h["slots_offset"])
    if off < L.control_bytes(maxc) or off % mmap.PAGESIZE:
        bad("slots_offset", f"is {off}, expected a page multiple >= {L.control_bytes(maxc)}")
    if backing.kind == L.BACKING_HUGETLBFS and off % backing.page_size:
        bad("slots_offset", f"is {off}, not a multiple of the mount's {backing.page_size}-byte "
                            "huge page")
    fsize = int(h["file_size"])
    actual = os.fstat(backing.fd).st_size
    if fsize != actual:
        bad("file_size", f"is {fsize} but the file holds {actual} bytes (truncated or "
                         "overwritten)")
    if off + cap * L.slot_stride(size) > fsize:
        bad("file_size", f"is {fsize}, too small for {cap} slots of stride "
                         f"{L.slot_stride(size)} at offset {off}")
    if int(h["consumer_timeout_ns"]) <= 0:
        bad("consumer_timeout_ns", f"is {int(h['consumer_timeout_ns'])}, expected > 0")


def map_region(backing: Backing, length: int, offset: int, writable: bool) -> mmap.mmap:
    """mmap a region with its pages populated up front (no page fault on the hot path)."""
    prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
    flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
    try:
        return mmap.mmap(backing.fd, length, flags=flags, prot=prot, offset=offset)
    except OSError as e:
        if e.errno == errno.ENOMEM and backing.kind == L.BACKING_HUGETLBFS:
            raise HugepagesError(f"cannot map {length} bytes of {backing.path}: no free huge "
                                 f"pages; {HOW_TO_ENABLE}") from None
        raise
