"""Two network namespaces joined by a veth pair, for tests that need real kernel traffic.

    with VethPair() as v:                       # root only
        v.run("a", ["ping", "-c", "1", v.ip4("b")])
        p = v.popen("b", ["tcpdump", "-i", v.ifname("b"), "-w", path])
        v.python("a", "import socket; ...")     # a snippet run inside namespace a

Names carry the test process's pid and a counter (``hr<pid>x<n>a``), so parallel test runs never
collide, and everything is deleted in ``__exit__`` (deleting a namespace deletes its end of
the veth, which deletes the pair) — also when setup failed half way.  ``sweep_stale()`` removes
leftovers of test processes that died without cleaning up.

Addresses are private to the pair: 10.<a>.<b>.1/24 and fd00:<a>:<b>::1/64 on side ``a``,
``.2``/``::2`` on side ``b``, derived from the pid so two pairs do not share a subnet.  Nothing
is routed outside the two namespaces.  IPv6 duplicate address detection is off so the
addresses work at once.  Helper processes started with ``popen`` are killed at exit.
"""
from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import time

_counter = itertools.count()
_NAME = re.compile(r"^hr(\d+)x\d+[ab]$")


class NetnsError(RuntimeError):
    pass


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and out.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {out.stderr.strip()}")
    return out


def available() -> str | None:
    """None if this process can make namespaces and veth pairs, else why not."""
    if os.geteuid() != 0:
        return "needs root"
    if shutil.which("ip") is None:
        return "needs iproute2 (ip)"
    return None


def sweep_stale() -> None:
    """Delete namespaces left by test processes that no longer exist."""
    out = _ip("netns", "list", check=False).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        m = _NAME.match(name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            _ip("netns", "del", name, check=False)


class VethPair:
    def __init__(self, mtu: int = 1500):
        pid = os.getpid()
        n = next(_counter)
        self.tag = f"hr{pid}x{n}"
        self.ns = {"a": self.tag + "a", "b": self.tag + "b"}
        self.dev = {"a": self.tag + "a", "b": self.tag + "b"}   # ifnames (<= 15 chars)
        if len(self.tag) + 1 > 15:
            raise NetnsError(f"interface name {self.tag}a too long")
        x, y = (pid >> 8) & 0xFF, (pid + n) & 0xFF
        self._v4 = f"10.{x}.{y}"
        self._v6 = f"fd00:{x:x}:{y:x}"
        self.mtu = mtu
        self._procs: list[subprocess.Popen] = []

    # --- addresses and names ---
    def ip4(self, side: str) -> str:
        return f"{self._v4}.{1 if side == 'a' else 2}"

    def ip6(self, side: str) -> str:
        return f"{self._v6}::{1 if side == 'a' else 2}"

    def ifname(self, side: str) -> str:
        return self.dev[side]

    def mac(self, side: str) -> bytes:
        out = self.run(side, ["cat", f"/sys/class/net/{self.dev[side]}/address"]).stdout
        return bytes.fromhex(out.strip().replace(":", ""))

    # --- lifecycle ---
    def __enter__(self) -> "VethPair":
        try:
            sweep_stale()
            for side in "ab":
                _ip("netns", "add", self.ns[side])
            _ip("link", "add", self.dev["a"], "mtu", str(self.mtu), "type", "veth",
                "peer", "name", self.dev["b"], "mtu", str(self.mtu))
            for side in "ab":
                ns, dev = self.ns[side], self.dev[side]
                _ip("link", "set", dev, "netns", ns)
                self.run(side, ["sysctl", "-qw", f"net.ipv6.conf.{dev}.accept_dad=0"])
                self.run(side, ["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0"])
                _ip("-n", ns, "addr", "add", f"{self.ip4(side)}/24", "dev", dev)
                _ip("-n", ns, "-6", "addr", "add", f"{self.ip6(side)}/64", "dev", dev, "nodad")
                _ip("-n", ns, "link", "set", "lo", "up")
                _ip("-n", ns, "link", "set", dev, "up")
            self._wait_up()
        except BaseException:
            self.close()
            raise
        return self

    def _wait_up(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = [_ip("-n", self.ns[s], "-o", "link", "show", self.dev[s]).stdout for s in "ab"]
            addrs = _ip("-n", self.ns["a"], "-6", "-o", "addr", "show", self.dev["a"]).stdout
            if all("LOWER_UP" in st for st in states) and "tentative" not in addrs:
                return
            time.sleep(0.05)
        raise NetnsError("veth pair did not come up")

    def close(self) -> None:
        for p in self._procs:
            if p.poll() is None:
                p.kill()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self._procs.clear()
        for side in "ab":
            _ip("netns", "del", self.ns[side], check=False)
        _ip("link", "del", self.dev["a"], check=False)   # only if it never left the root ns

    def __exit__(self, *exc) -> None:
        self.close()

    # --- running things inside ---
    def _cmd(self, side: str, argv) -> list[str]:
        return ["ip", "netns", "exec", self.ns[side], *argv]

    def run(self, side: str, argv, timeout: float = 30, check: bool = True,
            **kw) -> subprocess.CompletedProcess:
        out = subprocess.run(self._cmd(side, argv), capture_output=True, text=True,
                             timeout=timeout, **kw)
        if check and out.returncode != 0:
            raise NetnsError(f"{' '.join(argv)} in {self.ns[side]}: rc {out.returncode}: "
                             f"{out.stderr.strip()[-2000:]}")
        return out

    def popen(self, side: str, argv, **kw) -> subprocess.Popen:
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        p = subprocess.Popen(self._cmd(side, argv), **kw)
        self._procs.append(p)
        return p

    def python(self, side: str, code: str, *args: str, timeout: float = 30,
               background: bool = False):
        """Run a Python snippet (this interpreter) inside a namespace."""
        argv = [sys.executable, "-c", code, *args]
        if background:
            return self.popen(side, argv, text=True)
        return self.run(side, argv, timeout=timeout)

    @staticmethod
    def stop(p: subprocess.Popen, sig: int = signal.SIGINT, timeout: float = 10) -> int:
        """Stop a helper politely (tcpdump flushes its file on SIGINT), then by force."""
        if p.poll() is None:
            p.send_signal(sig)
            try:
                return p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
        return p.wait(timeout=timeout)
