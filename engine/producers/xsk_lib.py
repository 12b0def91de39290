"""ctypes bindings to Debian's libxdp 1.3 (AF_XDP sockets, XDP program attach) and libbpf 1.1
(map access), plus the build of hugering's XDP program.  No compiled Python extension.

Nothing here is imported by the rest of the project unless AF_XDP is used: ``load()`` opens the
libraries on first use and raises ``MissingDependency`` naming the Debian package when one is
absent, so a machine without libxdp/clang runs everything else.

    lib = load()                       # .xdp (libxdp.so.1), .bpf (libbpf.so.1), .libc
    obj = bpf_object_path()            # engine/producers/xdp_filter.bpf.o, built if missing

Only what the producer needs is declared; every function gets ``argtypes``/``restype`` (a
wrong pointer width is the classic ctypes bug).  libxdp and libbpf print their diagnostics
through a callback set here: the lines go to the ``hugering.afxdp`` logger at debug level and
the last ones are kept (``recent_messages``) so an error message can quote what the library
said.
"""
from __future__ import annotations

import collections
import ctypes
import ctypes.util
import hashlib
import logging
import os
import shutil
import subprocess
from pathlib import Path

log = logging.getLogger("hugering.afxdp")

INSTALL_HINT = ("apt-get install libxdp1 libbpf1 (run time) or libxdp-dev libbpf-dev xdp-tools "
                "clang llvm (to build hugering's XDP program)")
SRC = Path(__file__).with_name("xdp_filter.bpf.c")
OBJ = SRC.with_suffix("").with_suffix(".bpf.o")          # next to the source (make bpf)
CLANG_FLAGS = ["-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu"]

# <linux/if_xdp.h>
SOL_XDP = 283
XDP_STATISTICS = 7
XDP_OPTIONS = 8
XDP_OPTIONS_ZEROCOPY = 1
XDP_SHARED_UMEM = 1 << 0
XDP_COPY = 1 << 1
XDP_ZEROCOPY = 1 << 2
XDP_USE_NEED_WAKEUP = 1 << 3
XDP_RING_NEED_WAKEUP = 1
XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD = 1
# <linux/if_link.h> attach flags, and libxdp's enum xdp_attach_mode
XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_MODE_UNSPEC, XDP_MODE_NATIVE, XDP_MODE_SKB, XDP_MODE_HW = 0, 1, 2, 3
MODE_NAMES = {XDP_MODE_UNSPEC: "none", XDP_MODE_NATIVE: "native", XDP_MODE_SKB: "skb",
              XDP_MODE_HW: "hw"}
MSG_DONTWAIT = 0x40


class MissingDependency(RuntimeError):
    """A system component AF_XDP needs is not installed; the message names the package."""


# --- structures (xsk.h, if_xdp.h) -------------------------------------------------------------
class XskRing(ctypes.Structure):
    """DEFINE_XSK_RING: the same layout for xsk_ring_prod and xsk_ring_cons.  libxdp fills in
    the pointers into the mmapped ring; the hot loop uses them (never the cached fields)."""
    _fields_ = [("cached_prod", ctypes.c_uint32), ("cached_cons", ctypes.c_uint32),
                ("mask", ctypes.c_uint32), ("size", ctypes.c_uint32),
                ("producer", ctypes.c_void_p), ("consumer", ctypes.c_void_p),
                ("ring", ctypes.c_void_p), ("flags", ctypes.c_void_p)]


class XskUmemConfig(ctypes.Structure):
    _fields_ = [("fill_size", ctypes.c_uint32), ("comp_size", ctypes.c_uint32),
                ("frame_size", ctypes.c_uint32), ("frame_headroom", ctypes.c_uint32),
                ("flags", ctypes.c_uint32)]


class XskSocketConfig(ctypes.Structure):
    _fields_ = [("rx_size", ctypes.c_uint32), ("tx_size", ctypes.c_uint32),
                ("libxdp_flags", ctypes.c_uint32), ("xdp_flags", ctypes.c_uint32),
                ("bind_flags", ctypes.c_uint16)]


class XdpStatistics(ctypes.Structure):
    _fields_ = [("rx_dropped", ctypes.c_uint64), ("rx_invalid_descs", ctypes.c_uint64),
                ("tx_invalid_descs", ctypes.c_uint64), ("rx_ring_full", ctypes.c_uint64),
                ("rx_fill_ring_empty_descs", ctypes.c_uint64),
                ("tx_ring_empty_descs", ctypes.c_uint64)]


class XdpOptions(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint32)]


class BpfTestRunOpts(ctypes.Structure):
    """libbpf 1.1 ``struct bpf_test_run_opts`` (``sz`` first, as every libbpf opts struct)."""
    _fields_ = [("sz", ctypes.c_size_t), ("data_in", ctypes.c_void_p),
                ("data_out", ctypes.c_void_p), ("data_size_in", ctypes.c_uint32),
                ("data_size_out", ctypes.c_uint32), ("ctx_in", ctypes.c_void_p),
                ("ctx_out", ctypes.c_void_p), ("ctx_size_in", ctypes.c_uint32),
                ("ctx_size_out", ctypes.c_uint32), ("retval", ctypes.c_uint32),
                ("repeat", ctypes.c_int), ("duration", ctypes.c_uint32),
                ("flags", ctypes.c_uint32), ("cpu", ctypes.c_uint32),
                ("batch_size", ctypes.c_uint32)]


# --- the libraries ----------------------------------------------------------------------------
_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
recent_messages: collections.deque = collections.deque(maxlen=40)


class Lib:
    """The opened libraries with their prototypes declared."""

    def __init__(self):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.bpf = _open("bpf", "libbpf.so.1", "libbpf1")
        self.xdp = _open("xdp", "libxdp.so.1", "libxdp1")
        P, I, U32, U64, S = (ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32, ctypes.c_uint64,
                             ctypes.c_char_p)
        pp = ctypes.POINTER(ctypes.c_void_p)
        ring = ctypes.POINTER(XskRing)
        x, b, c = self.xdp, self.bpf, self.libc
        _proto(x.libxdp_get_error, ctypes.c_long, P)
        _proto(x.libxdp_set_print, P, _PRINT_FN)
        _proto(x.xdp_program__open_file, P, S, S, P)
        _proto(x.xdp_program__from_id, P, U32)
        _proto(x.xdp_program__close, None, P)
        _proto(x.xdp_program__attach, I, P, I, I, ctypes.c_uint)
        _proto(x.xdp_program__detach, I, P, I, I, ctypes.c_uint)
        _proto(x.xdp_program__is_attached, I, P, I)
        _proto(x.xdp_program__name, S, P)
        _proto(x.xdp_program__id, U32, P)
        _proto(x.xdp_program__fd, I, P)
        _proto(x.xdp_program__bpf_obj, P, P)
        _proto(x.xdp_multiprog__get_from_ifindex, P, I)
        _proto(x.xdp_multiprog__main_prog, P, P)
        _proto(x.xdp_multiprog__attach_mode, I, P)
        _proto(x.xdp_multiprog__is_legacy, ctypes.c_bool, P)
        _proto(x.xdp_multiprog__detach, I, P)
        _proto(x.xdp_multiprog__close, None, P)
        _proto(x.xsk_umem__create, I, pp, P, U64, ring, ring, ctypes.POINTER(XskUmemConfig))
        _proto(x.xsk_umem__delete, I, P)
        _proto(x.xsk_umem__fd, I, P)
        _proto(x.xsk_socket__create, I, pp, S, U32, P, ring, ring,
               ctypes.POINTER(XskSocketConfig))
        _proto(x.xsk_socket__delete, None, P)
        _proto(x.xsk_socket__fd, I, P)
        _proto(x.xsk_socket__update_xskmap, I, P, I)
        _proto(b.libbpf_set_print, P, _PRINT_FN)
        _proto(b.bpf_object__find_map_fd_by_name, I, P, S)
        _proto(b.bpf_map_update_elem, I, I, P, P, U64)
        _proto(b.bpf_map_lookup_elem, I, I, P, P)
        _proto(b.bpf_map_delete_elem, I, I, P)
        _proto(b.libbpf_num_possible_cpus, I)
        _proto(b.libbpf_get_error, ctypes.c_long, P)
        _proto(b.bpf_object__open_file, P, S, P)
        _proto(b.bpf_object__load, I, P)
        _proto(b.bpf_object__close, None, P)
        _proto(b.bpf_object__find_program_by_name, P, P, S)
        _proto(b.bpf_program__fd, I, P)
        _proto(b.bpf_prog_test_run_opts, I, I, ctypes.POINTER(BpfTestRunOpts))
        _proto(b.bpf_obj_get_info_by_fd, I, I, P, ctypes.POINTER(ctypes.c_uint32))
        _proto(b.bpf_map_get_fd_by_id, I, U32)
        _proto(b.bpf_map_get_next_key, I, I, P, P)
        _proto(c.getsockopt, I, I, I, I, P, ctypes.POINTER(ctypes.c_uint32))
        _proto(c.recvfrom, ctypes.c_ssize_t, I, P, ctypes.c_size_t, I, P, P)
        _proto(c.sendto, ctypes.c_ssize_t, I, P, ctypes.c_size_t, I, P, ctypes.c_uint32)
        _proto(c.vsnprintf, I, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
               ctypes.c_void_p)
        _proto(c.if_nametoindex, ctypes.c_uint, S)
        self._print_cb = _PRINT_FN(self._on_print)    # kept alive as long as the libraries
        self.xdp.libxdp_set_print(self._print_cb)
        self.bpf.libbpf_set_print(self._print_cb)
        self.ncpus = max(1, self.bpf.libbpf_num_possible_cpus())

    def _on_print(self, level, fmt, ap):
        buf = ctypes.create_string_buffer(1024)
        try:
            self.libc.vsnprintf(buf, len(buf), fmt, ap)
            text = buf.value.decode(errors="replace").rstrip()
        except Exception:            # never let an exception cross the C boundary
            text = (fmt or b"").decode(errors="replace").rstrip()
        if text:
            recent_messages.append(text)
            log.debug("lib: %s", text)
        return 0

    def ptr_error(self, ptr) -> int:
        """0 if ``ptr`` is a valid object, else the negative errno libxdp encoded in it."""
        if not ptr:
            return -(ctypes.get_errno() or 22)
        return int(self.xdp.libxdp_get_error(ptr))


def _open(short: str, soname: str, package: str):
    name = ctypes.util.find_library(short) or soname
    try:
        return ctypes.CDLL(name, use_errno=True)
    except OSError:
        try:
            return ctypes.CDLL(soname, use_errno=True)
        except OSError as e:
            raise MissingDependency(f"AF_XDP needs {soname} (Debian package {package}): {e}; "
                                    f"{INSTALL_HINT}") from None


def _proto(fn, restype, *argtypes) -> None:
    fn.restype = restype
    fn.argtypes = list(argtypes)


_LIB: Lib | None = None


def load() -> Lib:
    """The libraries, opened once per process (``MissingDependency`` names what is missing)."""
    global _LIB
    if _LIB is None:
        _LIB = Lib()
    return _LIB


def last_messages(n: int = 3) -> str:
    """The library's last diagnostic lines, for an error message ("" if none)."""
    lines = [m for m in list(recent_messages)[-n:] if m]
    return ("; libxdp/libbpf said: " + " | ".join(lines)) if lines else ""


# --- the BPF object ---------------------------------------------------------------------------
def _cache_obj() -> Path:
    digest = hashlib.sha256(SRC.read_bytes()).hexdigest()[:16]
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hugering"
    return base / f"xdp_filter.{digest}.bpf.o"


def _fresh(obj: Path) -> bool:
    try:
        return obj.stat().st_mtime >= SRC.stat().st_mtime and obj.stat().st_size > 0
    except OSError:
        return False


def bpf_object_path() -> Path:
    """The compiled XDP program: ``xdp_filter.bpf.o`` next to its source when it is at least as
    new as the source (``make bpf`` builds it there), else built now with clang -- next to the
    source if that folder is writable, else in ~/.cache/hugering (keyed by the source's hash)."""
    if _fresh(OBJ):
        return OBJ
    cached = _cache_obj()
    if cached.exists() and cached.stat().st_size > 0:
        return cached
    clang = shutil.which("clang")
    if clang is None:
        raise MissingDependency(
            f"building hugering's XDP program ({SRC.name}) needs clang, which is not installed "
            f"(Debian packages clang llvm libbpf-dev); {INSTALL_HINT}, or run 'make bpf' on a "
            "machine that has them")
    if not Path("/usr/include/bpf/bpf_helpers.h").exists():
        raise MissingDependency(f"building {SRC.name} needs the libbpf headers (Debian package "
                                f"libbpf-dev); {INSTALL_HINT}")
    target = OBJ if os.access(OBJ.parent, os.W_OK) else cached
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + f".{os.getpid()}.tmp")
    cmd = [clang, *CLANG_FLAGS, "-c", str(SRC), "-o", str(tmp)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"building {SRC.name} failed: {' '.join(cmd)}:\n"
                           f"{out.stderr.strip()[-3000:]}")
    os.replace(tmp, target)
    log.info("built %s", target)
    return target
