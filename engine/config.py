"""The deployment configuration: one YAML file, typed, defaulted and validated at the edge.

A file holds a ``dpdk_config`` section (the seed lesson's format, accepted exactly as written),
a ``hugering`` section (rings, producers, consumers), or both::

    dpdk_config:
      eal_arguments:
        core_mask: "0xFC"            # hex; cores 2-7
        memory_channels: 4
        hugepages_mount: "/dev/hugepages"
        socket_mem: "4096,4096"      # MB of huge pages per NUMA node
      ports:
        - {device_id: "0000:04:00.0", rx_queues: 2, tx_queues: 2,
           ring_descriptor_size: 1024, mtu: 1500}
      buffer_pools:
        - {pool_name: packet_mempool, element_count: 262143, element_size: 2048}
    hugering:
      rings:
        - {name: md, queues: 2, slots: 65536, slot_size: 2048}
      producers:
        - {kind: dpdk, ring: md, cpu: [2, 3], options: {port: 0}}
      consumers:
        - {name: book, ring: md, handler: "strategy.book:on_packet",
           filter: "udp and dst port 26400", cpu: [0, 1], idle: busy}

``load(path)`` / ``loads(text)`` return a frozen ``Config`` or raise ``ConfigError``, whose text
is one message naming the file and the key: ``deploy.yaml: hugering.consumers[0].idle: expected
one of 'busy', 'spin_yield', 'backoff', got 'spinn'``.  The first problem found is the one
reported (a fix-and-rerun loop, as a compiler's first error).  A bad pcap-filter expression is
the one message that spans lines: the expression and a caret under the offending token follow.

What the file says is checked here; what *this machine* can provide (cores, NUMA nodes, huge
pages, the NIC, interfaces, files) is a separate question: ``machine_problems(cfg)`` lists what
is missing, one line each naming the key, and ``require_machine(cfg, sections)`` raises for the
commands that start things.  ``hugering check`` loads a file, prints the machine's problems as
warnings, and exits 0 when the file itself is valid.

Schema (``key: type = default``; every other key is an error that names the allowed ones)
-----------------------------------------------------------------------------------------
Top level: ``dpdk_config`` and/or ``hugering`` (at least one).

``dpdk_config``
  ``eal_arguments``: ``core_mask: str`` (required; hex, ``0x`` optional, as EAL ``-c``; the
  cores are ``EalArguments.cores``), ``memory_channels: int 1..16 = null`` (EAL ``-n``; a
  socket has at most 12 today), ``hugepages_mount: str = "/dev/hugepages"`` (EAL
  ``--huge-dir``), ``socket_mem: str = null`` ("4096,4096": MB per NUMA node, EAL
  ``--socket-mem``; at most 32 nodes, RTE_MAX_NUMA_NODES of DPDK's x86 build; a single
  unquoted number is read as one node).  Two more EAL options are accepted because running
  more than one DPDK process on a host needs them: ``main_lcore: int`` (``--main-lcore``, one of
  core_mask's cores) and ``file_prefix: str`` (``--file-prefix``).  Nothing else.
  ``ports``: list of ``device_id: str`` (required; a PCI address ``DDDD:BB:DD.F`` or ``BB:DD.F``
  for a NIC bound to vfio-pci, stored as ``DDDD:BB:DD.F`` in lower case, or a DPDK vdev string
  ``net_NAME[,key=value...]`` -- ``net_pcap0,rx_pcap=FILE``, ``net_af_packet0,iface=IF``,
  ``net_af_xdp0,iface=IF``, ``net_null0`` -- for everything else), ``rx_queues: int 1..1024 = 1``, ``tx_queues: int
  0..1024 = 1`` (RTE_MAX_QUEUES_PER_PORT), ``ring_descriptor_size: int = 1024`` (a power of two,
  64..32768: ethdev takes a uint16 count and each PMD publishes its own ``rx_desc_lim`` --
  ixgbe 32..4096, i40e/ice 64..4096, mlx5 up to 32768 -- which the PMD enforces at queue setup),
  ``mtu: int 68..9216 = 1500`` (RTE_ETHER_MIN_MTU .. the common jumbo limit).
  ``buffer_pools``: list of ``pool_name: str`` (required, unique), ``element_count: int
  1..2**32-1`` (required; DPDK's mempool is most memory-efficient at 2**n - 1: any other value
  loads, with advice), ``element_size: int 129..65535 = 2176`` (the mbuf data room including
  RTE_PKTMBUF_HEADROOM, as ``rte_pktmbuf_pool_create``'s ``data_room_size``; default
  RTE_MBUF_DEFAULT_BUF_SIZE).
  Cross-checks: every pool holds a frame of the largest port MTU (element_size - 128 >= mtu +
  14 + 4 + 4); the pools together hold at least the ports' RX descriptors (DPDK fills each
  with an mbuf when a port starts); device ids (the vdev name for a vdev) are unique; ports need a
  pool.  Port ``i`` takes its mbufs from ``buffer_pools[i % len(buffer_pools)]`` (one pool: all
  ports share it).

``hugering``
  ``rings``: list of ``name: str`` (required, unique; ``shm.backing.validate_name``),
  ``slots: int = 65536`` (power of two, 2..shm.layout.MAX_CAPACITY), ``slot_size: int = 2048``
  (MIN_SLOT_SIZE..MAX_SLOT_SIZE), ``mode: lossless|lossy = lossless``, ``full_policy:
  drop|wait = wait``, ``backing: auto|hugetlbfs|shm = auto``, ``hugetlbfs: str = null`` (the
  mount for ``backing: hugetlbfs``; null: /dev/hugepages), ``max_consumers: int
  1..MAX_CONSUMERS_LIMIT = 16``, ``consumer_timeout_s: float > 0 = 1.0``, ``queues: int 1..1024
  = 1`` (one ring per RX queue: ``RingConfig.ring_names()`` is ``NAME`` for one queue and
  ``NAME.q0`` .. ``NAME.q{N-1}`` for N).
  ``producers``: list of ``kind: synthetic|replay|af_xdp|dpdk`` (required), ``ring: str``
  (required; a ring of this file, at most one producer each: the ring is single-producer),
  ``name: str = "<kind>-<ring>"`` (unique), ``cpu: int | [int, ...] = null`` (a list gives one
  cpu per queue), ``restart: never|on-failure|always = on-failure``, ``max_restarts: int >= 0 =
  3``, ``options``: a mapping checked per kind --
    synthetic: ``rate_pps: float >= 0 = 1e6`` (0: flat out), ``count: int >= 1 = null``,
    ``duration_s: float > 0 = null``, ``min_size: int = 64``, ``max_size: int = 128`` (60 ..
    the ring's slot_size), ``seed: int >= 0 = 0``;
    replay: ``file: str`` (required; relative to the configuration file's folder), at most one
    of ``pps: float > 0``, ``speed: float > 0`` (default 1.0) and ``topspeed: bool``, ``loop:
    int >= 0 = 1`` (0: forever, as tcpreplay), ``original_timestamps: bool = false``;
    af_xdp: ``interface: str`` (required), ``queues: [int, ...] = null`` (NIC queue per ring
    queue; null: 0..queues-1), ``xdp_mode: auto|native|skb = auto``, ``bind:
    auto|zerocopy|copy = auto``, ``filter: str = null`` (pcap-filter text: the part the kernel
    can evaluate runs in the XDP program, the rest in user space; null: every frame);
    dpdk: ``port: int = 0`` (an index into dpdk_config.ports, which must exist; the ring's
    queues must equal the port's rx_queues, and the cpus must be cores of core_mask; they are
    the port's lcores, one per RX queue), ``tx_ring: str = null`` (a lossless ring of this file
    whose frames the producer transmits on the port's TX queue 0).
  ``consumers``: list of ``name: str`` (required, unique), ``ring: str`` (required), ``handler:
  "package.module:function" = null`` (null: count only; syntax checked here, imported at
  start), ``filter: str = null`` (pcap-filter text, compiled at load) or ``filters: [rule, ...]
  = null`` (``parsers.filter_yaml`` rules), not both, ``cpu`` (as producers), ``idle:
  busy|spin_yield|backoff = busy``, ``spin_before_idle: int >= 0 = 1000``, ``max_sleep_us: int
  1..100000 = 100``, ``burst: int 1..4096 = 32`` (and <= the ring's slots), ``state_size: int
  1..1048576 = 64`` (int64 words), ``count: int >= 1 = null``, ``duration_s: float > 0 =
  null``, ``realtime: bool = false``, ``lock_memory: bool = true``, ``restart``,
  ``max_restarts`` (as producers).  A ring takes at most ``max_consumers`` consumers.

Numbers: YAML 1.1 (PyYAML) reads ``1e6`` as a string; this loader reads it as the float 1e6,
as YAML 1.2 does.  A key given twice in one mapping is an error (PyYAML would keep the last).
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

# --- limits that are DPDK's or the kernel's (hugering's own come from shm.layout) -------------
RTE_PKTMBUF_HEADROOM = 128
ETHER_HDR_LEN = 14
ETHER_CRC_LEN = 4
VLAN_TAG_LEN = 4
RTE_MBUF_DEFAULT_BUF_SIZE = 2048 + RTE_PKTMBUF_HEADROOM
RTE_MAX_QUEUES_PER_PORT = 1024
RTE_MAX_NUMA_NODES = 32
MIN_MTU, MAX_MTU = 68, 9216
MIN_DESC, MAX_DESC = 64, 32768
MAX_MEMORY_CHANNELS = 16
MAX_CORES = 1024                      # CPU_SETSIZE: the most a mask or affinity call can name
MIN_FRAME = 60                        # the synthetic producer's smallest frame (no FCS)
MAX_QUEUES = 1024
DEFAULT_HUGEPAGES = "/dev/hugepages"

IDLE_STRATEGIES = ("busy", "spin_yield", "backoff")
RESTART_POLICIES = ("never", "on-failure", "always")
PRODUCER_KINDS = ("synthetic", "replay", "af_xdp", "dpdk")
BACKINGS = ("auto", "hugetlbfs", "shm")
XDP_MODES = ("auto", "native", "skb")
XDP_BINDS = ("auto", "zerocopy", "copy")

_PCI_RE = re.compile(r"(?:([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}):([01][0-9a-fA-F])\.([0-7])")
# a DPDK virtual device: an ethdev driver's name and instance, then its devargs
_VDEV_RE = re.compile(r"(net_[A-Za-z0-9_]+)((?:,[A-Za-z0-9_]+=[^,\s]+)*)")
_HANDLER_RE = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_IFNAME_RE = re.compile(r"[^/\s:]{1,15}")         # IFNAMSIZ - 1, no '/', ':' or whitespace
_PREFIX_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


# --- the error -------------------------------------------------------------------------------
class ConfigError(ValueError):
    """A bad configuration value.  ``path`` is the key path (``hugering.consumers[0].idle``, ""
    for the document itself), ``reason`` the message, ``source`` the file; ``str()`` is
    ``FILE: PATH: REASON``.  YAML syntax errors also carry ``line`` and ``column`` (1-based)."""

    def __init__(self, path: str, message: str, source: str | None = None,
                 line: int | None = None, column: int | None = None):
        self.path = path
        self.reason = message
        self.source = source
        self.line = line
        self.column = column
        super().__init__(": ".join(p for p in (source, path, message) if p))


class MachineError(ConfigError):
    """What this machine cannot provide (``require_machine``): ``problems`` holds one
    ``ConfigError`` each; ``str()`` is their lines, the first one's key in ``path``."""

    def __init__(self, problems: list[ConfigError]):
        self.problems = list(problems)
        first = self.problems[0]
        super().__init__(first.path, first.reason, first.source)
        self.args = ("\n".join(str(p) for p in self.problems),)

    def __str__(self) -> str:
        return self.args[0]


def _fail(path: str, message: str):
    raise ConfigError(path, message)


# --- the schema --------------------------------------------------------------------------------
def _derived(**kw):
    """A field computed from others: compared, shown, but not written back by ``to_dict``."""
    return field(metadata={"derived": True}, **kw)


@dataclass(frozen=True)
class EalArguments:
    core_mask: str
    cores: tuple[int, ...] = _derived(default=())
    memory_channels: int | None = None
    hugepages_mount: str = DEFAULT_HUGEPAGES
    socket_mem: tuple[int, ...] | None = None       # MB per NUMA node, node 0 first
    main_lcore: int | None = None
    file_prefix: str | None = None

    def eal_argv(self) -> list[str]:
        """The EAL command-line arguments these settings stand for."""
        argv = ["-c", self.core_mask, "--huge-dir", self.hugepages_mount]
        if self.memory_channels is not None:
            argv += ["-n", str(self.memory_channels)]
        if self.socket_mem is not None:
            argv += ["--socket-mem", ",".join(map(str, self.socket_mem))]
        if self.main_lcore is not None:
            argv += ["--main-lcore", str(self.main_lcore)]
        if self.file_prefix is not None:
            argv += ["--file-prefix", self.file_prefix]
        return argv


@dataclass(frozen=True)
class PortConfig:
    device_id: str                  # DDDD:BB:DD.F, lower case, or a vdev string as written
    rx_queues: int = 1
    tx_queues: int = 1
    ring_descriptor_size: int = 1024
    mtu: int = 1500

    @property
    def is_vdev(self) -> bool:
        return self.device_id.startswith("net_")

    @property
    def device_name(self) -> str:
        """The name EAL gives the port: the PCI address, or the vdev's name before its args."""
        return self.device_id.split(",", 1)[0]

    @property
    def vdev_args(self) -> dict:
        """``{key: value}`` of a vdev string's devargs (empty for a PCI address)."""
        if not self.is_vdev:
            return {}
        return dict(kv.split("=", 1) for kv in self.device_id.split(",")[1:])

    @property
    def max_frame(self) -> int:
        """Bytes an mbuf must hold past its headroom: MTU + Ethernet header + FCS + one VLAN."""
        return self.mtu + ETHER_HDR_LEN + ETHER_CRC_LEN + VLAN_TAG_LEN


@dataclass(frozen=True)
class BufferPool:
    pool_name: str
    element_count: int
    element_size: int = RTE_MBUF_DEFAULT_BUF_SIZE


@dataclass(frozen=True)
class DpdkConfig:
    eal_arguments: EalArguments
    ports: tuple[PortConfig, ...] = ()
    buffer_pools: tuple[BufferPool, ...] = ()


@dataclass(frozen=True)
class RingConfig:
    name: str
    slots: int = 65536
    slot_size: int = 2048
    mode: str = "lossless"
    full_policy: str = "wait"
    backing: str = "auto"
    hugetlbfs: str | None = None
    max_consumers: int = 16
    consumer_timeout_s: float = 1.0
    queues: int = 1

    def ring_names(self) -> tuple[str, ...]:
        """The shared-memory rings this entry stands for: one per queue."""
        return ring_names(self.name, self.queues)

    def create_kwargs(self) -> dict:
        """Keyword arguments of ``shm.Ring.create`` (besides the name) for each queue's ring."""
        return {"slots": self.slots, "slot_size": self.slot_size, "mode": self.mode,
                "full_policy": self.full_policy, "max_consumers": self.max_consumers,
                "consumer_timeout": self.consumer_timeout_s, "shm": self.backing == "shm",
                "hugetlbfs": ((self.hugetlbfs or DEFAULT_HUGEPAGES)
                              if self.backing == "hugetlbfs" else None)}


def ring_names(name: str, queues: int) -> tuple[str, ...]:
    return (name,) if queues == 1 else tuple(f"{name}.q{i}" for i in range(queues))


@dataclass(frozen=True)
class SyntheticOptions:
    rate_pps: float = 1e6
    count: int | None = None
    duration_s: float | None = None
    min_size: int = 64
    max_size: int = 128
    seed: int = 0


@dataclass(frozen=True)
class ReplayOptions:
    file: str
    pps: float | None = None
    speed: float | None = 1.0
    topspeed: bool = False
    loop: int = 1
    original_timestamps: bool = False


@dataclass(frozen=True)
class AfXdpOptions:
    interface: str
    queues: tuple[int, ...] | None = None
    xdp_mode: str = "auto"
    bind: str = "auto"
    filter: str | None = None       # pcap-filter text: what the XDP program redirects


@dataclass(frozen=True)
class DpdkOptions:
    port: int = 0
    tx_ring: str | None = None      # a lossless ring of the file, transmitted on TX queue 0


ProducerOptions = SyntheticOptions | ReplayOptions | AfXdpOptions | DpdkOptions


def _cpus_for(cpu, queues: int) -> tuple[int, ...] | None:
    if cpu is None:
        return None
    if isinstance(cpu, int):
        return (cpu,) * queues
    return tuple(cpu)


@dataclass(frozen=True)
class ProducerConfig:
    name: str
    kind: str
    ring: str
    options: ProducerOptions
    cpu: int | tuple[int, ...] | None = None
    restart: str = "on-failure"
    max_restarts: int = 3

    def cpus(self, queues: int) -> tuple[int, ...] | None:
        """One cpu per queue (an int pins every queue's thread to it), or None: unpinned."""
        return _cpus_for(self.cpu, queues)


@dataclass(frozen=True)
class ConsumerConfig:
    name: str
    ring: str
    handler: str | None = None
    filter: str | None = None
    filters: list | None = field(default=None, hash=False)   # the YAML rules, as written
    cpu: int | tuple[int, ...] | None = None
    idle: str = "busy"
    spin_before_idle: int = 1000
    max_sleep_us: int = 100
    burst: int = 32
    state_size: int = 64
    count: int | None = None
    duration_s: float | None = None
    realtime: bool = False
    lock_memory: bool = True
    restart: str = "on-failure"
    max_restarts: int = 3

    def cpus(self, queues: int) -> tuple[int, ...] | None:
        return _cpus_for(self.cpu, queues)

    def compile_filter(self):
        """The compiled ``parsers.filters.Filter``, or None (no filter: every packet)."""
        if self.filter is not None:
            from parsers.pcap_filter import compile_pcap_filter
            return compile_pcap_filter(self.filter)
        if self.filters is not None:
            from parsers.filter_yaml import compile_rules
            return compile_rules(self.filters)
        return None

    def handler_parts(self) -> tuple[str, str] | None:
        """(module, function) of ``handler``, or None."""
        if self.handler is None:
            return None
        mod, fn = self.handler.split(":")
        return mod, fn


@dataclass(frozen=True)
class HugeringConfig:
    rings: tuple[RingConfig, ...] = ()
    producers: tuple[ProducerConfig, ...] = ()
    consumers: tuple[ConsumerConfig, ...] = ()

    def ring(self, name: str) -> RingConfig:
        for r in self.rings:
            if r.name == name:
                return r
        raise KeyError(name)


@dataclass(frozen=True)
class Config:
    dpdk: DpdkConfig | None = None
    hugering: HugeringConfig | None = None
    source: str = "<string>"
    base_dir: str | None = field(default=None, compare=False)   # relative paths start here

    def to_dict(self) -> dict:
        """The configuration as plain data in the file's schema, defaults filled in (derived
        fields such as ``cores`` left out): ``loads(yaml.safe_dump(cfg.to_dict()))`` gives an
        equal ``Config``; ``json.dumps`` takes it as is."""
        out: dict = {}
        if self.dpdk is not None:
            out["dpdk_config"] = _plain(self.dpdk)
        if self.hugering is not None:
            out["hugering"] = _plain(self.hugering)
        return out

    def derived(self) -> dict:
        """What the file implies but does not spell out (for ``hugering check --json``)."""
        out: dict = {}
        if self.dpdk is not None:
            out["cores"] = list(self.dpdk.eal_arguments.cores)
            out["eal_argv"] = self.dpdk.eal_arguments.eal_argv()
        if self.hugering is not None:
            out["ring_names"] = {r.name: list(r.ring_names()) for r in self.hugering.rings}
        return out

    def resolve(self, path: str) -> Path:
        """A path from the file, relative ones taken from the file's folder."""
        p = Path(path).expanduser()
        if p.is_absolute() or self.base_dir is None:
            return p
        return Path(self.base_dir) / p


def _plain(obj):
    if dataclasses.is_dataclass(obj):
        out = {}
        for f in dataclasses.fields(obj):
            if f.metadata.get("derived"):
                continue
            v = getattr(obj, f.name)
            if isinstance(obj, EalArguments) and f.name == "socket_mem" and v is not None:
                v = ",".join(map(str, v))
            out[f.name] = _plain(v)
        return out
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    return obj


# --- YAML loading ------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _loader():
    import yaml

    class Loader(yaml.SafeLoader):
        """SafeLoader that refuses duplicate keys and reads 1e6 as a float (YAML 1.2)."""

        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                seen: dict = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        first = seen.get(key)
                    except TypeError:       # an unhashable key: SafeLoader reports it
                        continue
                    if first is not None:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"duplicate key {key!r} (first given on line "
                                        f"{first.line + 1}, column {first.column + 1})",
                            key_node.start_mark)
                    seen[key] = key_node.start_mark
            return super().construct_mapping(node, deep)

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"))
    return Loader


def _parse_yaml(text: str):
    import yaml
    try:
        return yaml.load(text, Loader=_loader())    # noqa: S506 -- a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        what = e.problem or e.context or "syntax error"
        if e.problem and e.context:
            cm = e.context_mark
            what += f" ({e.context}" + (f" from line {cm.line + 1}, column {cm.column + 1}"
                                        if cm is not None and cm is not mark else "") + ")"
        if mark is None:
            _fail("", f"invalid YAML: {what}")
        raise ConfigError("", f"line {mark.line + 1}, column {mark.column + 1}: invalid YAML: "
                          f"{what}", line=mark.line + 1, column=mark.column + 1) from None
    except yaml.YAMLError as e:
        _fail("", f"invalid YAML: {e}")


def load(path) -> Config:
    """Read and validate a configuration file (``ConfigError`` names the file and key)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("", "no such file", str(p)) from None
    except UnicodeDecodeError as e:
        raise ConfigError("", f"not UTF-8 text ({e.reason} at byte {e.start})", str(p)) from None
    except OSError as e:
        raise ConfigError("", f"cannot read: {e.strerror or e}", str(p)) from None
    return loads(text, source=str(p), base_dir=str(p.resolve().parent))


def loads(text: str, source: str = "<string>", base_dir: str | None = None) -> Config:
    """Validate configuration text; ``source`` names it in messages, ``base_dir`` is where
    relative paths in it start (None: the current directory when they are used)."""
    try:
        doc = _parse_yaml(text)
        return _build(doc, source, base_dir)
    except ConfigError as e:
        raise ConfigError(e.path, e.reason, source, e.line, e.column) from None


# --- value checkers (each raises ConfigError naming the key) ----------------------------------
def _join(path: str, key) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _typename(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (list, tuple)):
        return "list"
    if isinstance(v, dict):
        return "mapping"
    return type(v).__name__


def _show(v) -> str:
    """``string 'abc'``, ``integer 5``, ``boolean true``, ``list``: for 'got ...'."""
    t = _typename(v)
    if v is None:
        return "null"
    if isinstance(v, bool):
        return f"boolean {'true' if v else 'false'}"
    if isinstance(v, (int, float)):
        return f"{t} {v!r}"
    if isinstance(v, str):
        s = v if len(v) <= 60 else v[:57] + "..."
        return f"{t} {s!r}"
    if isinstance(v, (list, tuple)):
        return f"a list of {len(v)}"
    if isinstance(v, dict):
        return "a mapping"
    return t


def _wrong(path: str, expected: str, v):
    hint = ""
    if isinstance(v, str):
        try:
            float(v.replace("_", ""))
            hint = " (a number in quotes is a string: remove the quotes)"
        except ValueError:
            pass
    _fail(path, f"expected {expected}, got {_show(v)}{hint}")


def _mapping(v, path: str, allowed: tuple[str, ...], required: tuple[str, ...] = (),
             what: str = "a mapping") -> dict:
    if v is None:
        v = {}
    if not isinstance(v, dict):
        _wrong(path, what, v)
    for k in v:
        if not isinstance(k, str):
            _fail(path, f"keys must be strings, got {_show(k)}")
        if k not in allowed:
            close = difflib.get_close_matches(k, allowed, n=1, cutoff=0.6)
            sugg = f"; did you mean '{close[0]}'?" if close else ""
            _fail(_join(path, k), f"unknown key '{k}'{sugg} (allowed: {', '.join(allowed)})")
    for k in required:
        if v.get(k) is None:
            _fail(_join(path, k), "missing (required)" if k not in v
                  else "required, got null")
    return v


def _list(v, path: str, what: str = "a list") -> list:
    if v is None:
        return []
    if not isinstance(v, list):
        _wrong(path, what, v)
    return v


def _int(v, path: str, lo: int | None = None, hi: int | None = None, pow2: bool = False,
         nullable: bool = False) -> int | None:
    if v is None and nullable:
        return None
    what = "a power of two" if pow2 else "an integer"
    if lo is not None and hi is not None:
        rng = f" from {lo} to {hi}"
    elif lo is not None:
        rng = f" >= {lo}"
    elif hi is not None:
        rng = f" <= {hi}"
    else:
        rng = ""
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and v.is_integer() and abs(v) < 2 ** 63:
            v = int(v)                          # 1.0e6 written for a count
        else:
            _wrong(path, what + rng + (" or null" if nullable else ""), v)
    if (lo is not None and v < lo) or (hi is not None and v > hi) or (pow2 and v & (v - 1)):
        _fail(path, f"expected {what}{rng}, got {v}")
    return v


def _float(v, path: str, lo: float | None = None, lo_open: bool = False,
           hi: float | None = None, nullable: bool = False) -> float | None:
    if v is None and nullable:
        return None
    if lo is None:
        rng = ""
    else:
        rng = f" {'>' if lo_open else '>='} {_num(lo)}"
    if hi is not None:
        rng += f" and < {_num(hi)}" if rng else f" < {_num(hi)}"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        _wrong(path, "a number" + rng + (" or null" if nullable else ""), v)
    v = float(v)
    if not math.isfinite(v) or (lo is not None and (v <= lo if lo_open else v < lo)) \
            or (hi is not None and v >= hi):
        _fail(path, f"expected a number{rng}, got {_num(v)}")
    return v


def _num(x: float) -> str:
    """1e6 rather than 1e+06."""
    return f"{x:g}".replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")


def _bool(v, path: str) -> bool:
    if not isinstance(v, bool):
        _wrong(path, "true or false", v)
    return v


def _str(v, path: str, nullable: bool = False, what: str = "a string") -> str | None:
    if v is None and nullable:
        return None
    if not isinstance(v, str):
        _wrong(path, what + (" or null" if nullable else ""), v)
    if not v.strip():
        _fail(path, f"expected {what}, got an empty string")
    return v


def _choice(v, path: str, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    if not isinstance(v, str) or v not in choices:
        shown = repr(v) if isinstance(v, str) else _show(v)
        _fail(path, f"expected one of {', '.join(repr(c) for c in choices)}, got {shown}")
    return v


def _name(v, path: str, what: str = "a name") -> str:
    v = _str(v, path, what=what)
    if len(v) > 64 or not _NAME_RE.fullmatch(v):
        _fail(path, f"{what} is 1..64 letters, digits, '.', '_' and '-', starting with a "
                    f"letter or digit; got {v!r}")
    return v


def _cpu(v, path: str):
    if v is None:
        return None
    if isinstance(v, list):
        if not v:
            _fail(path, "expected a cpu number, a list of them (one per queue) or null, "
                        "got an empty list")
        return tuple(_cpu_one(c, _join(path, i)) for i, c in enumerate(v))
    if isinstance(v, bool) or not isinstance(v, int):
        _wrong(path, "a cpu number, a list of them (one per queue) or null", v)
    return _cpu_one(v, path)


def _cpu_one(v, path: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        _wrong(path, "a cpu number", v)
    if v < 0:
        _fail(path, f"expected a cpu number >= 0, got {v}")
    if v >= MAX_CORES:
        _fail(path, f"expected a cpu number below {MAX_CORES} (CPU_SETSIZE), got {v}")
    return v


def _fmt_cpus(cpus: Iterable[int]) -> str:
    """0-3,8 (the kernel's cpu-list syntax)."""
    cs = sorted(set(cpus))
    out, i = [], 0
    while i < len(cs):
        j = i
        while j + 1 < len(cs) and cs[j + 1] == cs[j] + 1:
            j += 1
        out.append(str(cs[i]) if i == j else f"{cs[i]}-{cs[j]}")
        i = j + 1
    return ",".join(out) or "none"


def _parse_cpulist(text: str) -> set[int]:
    out: set[int] = set()
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-", 1)
            out.update(range(int(a), int(b) + 1))
        else:
            out.add(int(part))
    return out


# --- dpdk_config -------------------------------------------------------------------------------
_TOP = ("dpdk_config", "hugering")
_DPDK = ("eal_arguments", "ports", "buffer_pools")
_EAL = ("core_mask", "memory_channels", "hugepages_mount", "socket_mem", "main_lcore",
        "file_prefix")
_PORT = ("device_id", "rx_queues", "tx_queues", "ring_descriptor_size", "mtu")
_POOL = ("pool_name", "element_count", "element_size")


def _core_mask(v, path: str) -> tuple[str, tuple[int, ...]]:
    if isinstance(v, int) and not isinstance(v, bool):
        _fail(path, f"expected a hex string like \"0xFC\", got integer {v} (quote it: YAML "
                    "reads 0xFC without quotes as a number)")
    if not isinstance(v, str):
        _wrong(path, 'a hex string like "0xFC"', v)
    t = v.strip()
    digits = t[2:] if t[:2].lower() == "0x" else t
    if not digits or not re.fullmatch(r"[0-9a-fA-F]+", digits):
        _fail(path, f"expected a hex core mask like \"0xFC\", got {v!r}")
    mask = int(digits, 16)
    if mask == 0:
        _fail(path, f"core mask {v!r} selects no core; DPDK needs at least one")
    if mask.bit_length() > MAX_CORES:
        _fail(path, f"core mask {v!r} names core {mask.bit_length() - 1}; at most "
                    f"{MAX_CORES} cores (CPU_SETSIZE)")
    return v, tuple(i for i in range(mask.bit_length()) if mask >> i & 1)


def _socket_mem(v, path: str) -> tuple[int, ...] | None:
    if v is None:
        return None
    if isinstance(v, int) and not isinstance(v, bool):
        v = str(v)
    if not isinstance(v, str):
        _wrong(path, 'a string of MB per NUMA node like "4096,4096"', v)
    parts = [p.strip() for p in v.split(",")]
    mb = []
    for i, p in enumerate(parts):
        if not p.isdigit():
            _fail(path, f"expected MB per NUMA node, comma-separated whole numbers like "
                        f"\"4096,4096\"; got {v!r} (entry {i}: {p!r})")
        mb.append(int(p))
    if len(mb) > RTE_MAX_NUMA_NODES:
        _fail(path, f"{len(mb)} NUMA nodes given; DPDK takes at most {RTE_MAX_NUMA_NODES}")
    if not any(mb):
        _fail(path, f"{v!r} gives no memory to any NUMA node")
    return tuple(mb)


def _eal(v, path: str) -> EalArguments:
    d = _mapping(v, path, _EAL, required=("core_mask",))
    mask, cores = _core_mask(d["core_mask"], _join(path, "core_mask"))
    mc = _int(d.get("memory_channels"), _join(path, "memory_channels"), 1,
              MAX_MEMORY_CHANNELS, nullable=True)
    mount = _str(d.get("hugepages_mount", DEFAULT_HUGEPAGES), _join(path, "hugepages_mount"),
                 what="a path")
    sm = _socket_mem(d.get("socket_mem"), _join(path, "socket_mem"))
    main = None
    if d.get("main_lcore") is not None:
        main = _int(d["main_lcore"], _join(path, "main_lcore"), 0, MAX_CORES - 1)
        if main not in cores:
            _fail(_join(path, "main_lcore"), f"core {main} is not in core_mask {mask!r} "
                                             f"(cores {_fmt_cpus(cores)})")
    prefix = _str(d.get("file_prefix"), _join(path, "file_prefix"), nullable=True)
    if prefix is not None and not _PREFIX_RE.fullmatch(prefix):
        _fail(_join(path, "file_prefix"), f"expected 1..64 letters, digits, '_', '.' and '-', "
                                          f"got {prefix!r}")
    return EalArguments(core_mask=mask, cores=cores, memory_channels=mc, hugepages_mount=mount,
                        socket_mem=sm, main_lcore=main, file_prefix=prefix)


def _device(v, path: str) -> str:
    if not isinstance(v, str):
        _wrong(path, 'a PCI address like "0000:04:00.0" or a vdev like "net_null0"', v)
    t = v.strip()
    if t.startswith("net_"):
        if not _VDEV_RE.fullmatch(t):
            _fail(path, f"expected a DPDK vdev string net_NAME[,key=value...] like "
                        f"\"net_pcap0,rx_pcap=FILE\" (no spaces; values without commas), "
                        f"got {v!r}")
        return t
    m = _PCI_RE.fullmatch(t)
    if not m:
        _fail(path, f"expected a PCI address DDDD:BB:DD.F or BB:DD.F (hex; device 00-1f, "
                    f"function 0-7) like \"0000:04:00.0\", or a DPDK vdev string like "
                    f"\"net_pcap0,rx_pcap=FILE\", got {v!r}")
    dom, bus, dev, fn = m.groups()
    return f"{(dom or '0000').lower()}:{bus.lower()}:{dev.lower()}.{fn}"


def _port(v, path: str) -> PortConfig:
    d = _mapping(v, path, _PORT, required=("device_id",))
    return PortConfig(
        device_id=_device(d["device_id"], _join(path, "device_id")),
        rx_queues=_int(d.get("rx_queues", 1), _join(path, "rx_queues"), 1,
                       RTE_MAX_QUEUES_PER_PORT),
        tx_queues=_int(d.get("tx_queues", 1), _join(path, "tx_queues"), 0,
                       RTE_MAX_QUEUES_PER_PORT),
        ring_descriptor_size=_int(d.get("ring_descriptor_size", 1024),
                                  _join(path, "ring_descriptor_size"), MIN_DESC, MAX_DESC,
                                  pow2=True),
        mtu=_int(d.get("mtu", 1500), _join(path, "mtu"), MIN_MTU, MAX_MTU))


def _pool(v, path: str) -> BufferPool:
    d = _mapping(v, path, _POOL, required=("pool_name", "element_count"))
    name = _str(d["pool_name"], _join(path, "pool_name"), what="a pool name")
    if len(name) > 25:           # RTE_MEMPOOL_NAMESIZE 32 less the "MP_" prefix and NUL
        _fail(_join(path, "pool_name"), f"at most 25 characters (DPDK's RTE_MEMPOOL_NAMESIZE),"
                                        f" got {len(name)}")
    return BufferPool(
        pool_name=name,
        element_count=_int(d["element_count"], _join(path, "element_count"), 1, 2 ** 32 - 1),
        element_size=_int(d.get("element_size", RTE_MBUF_DEFAULT_BUF_SIZE),
                          _join(path, "element_size"), RTE_PKTMBUF_HEADROOM + 1, 65535))


def _dpdk(v, path: str) -> DpdkConfig:
    d = _mapping(v, path, _DPDK, required=("eal_arguments",))
    eal = _eal(d["eal_arguments"], _join(path, "eal_arguments"))
    pp = _join(path, "ports")
    ports = tuple(_port(p, _join(pp, i)) for i, p in enumerate(_list(d.get("ports"), pp)))
    bp = _join(path, "buffer_pools")
    pools = tuple(_pool(p, _join(bp, i))
                  for i, p in enumerate(_list(d.get("buffer_pools"), bp)))
    _unique([p.device_name for p in ports], pp, "device_id")
    _unique([p.pool_name for p in pools], bp, "pool_name")
    if ports:
        if not pools:
            _fail(bp, "the ports need at least one buffer pool to receive into")
        widest = max(ports, key=lambda p: p.mtu)
        for i, pool in enumerate(pools):
            room = pool.element_size - RTE_PKTMBUF_HEADROOM
            if room < widest.max_frame:
                _fail(_join(_join(bp, i), "element_size"),
                      f"{pool.element_size} B cannot hold an MTU frame: element_size - "
                      f"{RTE_PKTMBUF_HEADROOM} (RTE_PKTMBUF_HEADROOM) must be >= max port mtu "
                      f"{widest.mtu} + {ETHER_HDR_LEN} (Ethernet) + {ETHER_CRC_LEN} (FCS) + "
                      f"{VLAN_TAG_LEN} (one VLAN tag) = {widest.max_frame}, and "
                      f"{pool.element_size} - {RTE_PKTMBUF_HEADROOM} = {room}")
        for i, p in enumerate(ports):
            if p.device_name.startswith("net_af_packet"):
                _af_packet_fits(p, pools[i % len(pools)], _join(_join(pp, i), "device_id"))
        desc = sum(p.rx_queues * p.ring_descriptor_size for p in ports)
        have = sum(p.element_count for p in pools)
        if have < desc:
            _fail(bp, f"the pools hold {have} elements in all, fewer than the ports' {desc} RX "
                      "descriptors (sum of rx_queues x ring_descriptor_size): DPDK fills every "
                      "RX descriptor with an mbuf when a port starts")
    return DpdkConfig(eal_arguments=eal, ports=ports, buffer_pools=pools)


def _af_packet_fits(p: PortConfig, pool: BufferPool, path: str) -> None:
    """net_af_packet copies each TPACKET frame into one mbuf: the frame (framesz less its
    32-byte header) must fit the pool's data room, and frames must tile a block exactly."""
    args = p.vdev_args
    try:
        framesz, blocksz = int(args.get("framesz", 2048)), int(args.get("blocksz", 4096))
    except ValueError:
        _fail(path, f"{p.device_name}: framesz and blocksz must be whole numbers")
    if framesz <= 0 or blocksz % framesz:
        _fail(path, f"{p.device_name}: blocksz {blocksz} is not a multiple of framesz {framesz} "
                    "(the kernel's packet ring would deliver nothing)")
    room = pool.element_size - RTE_PKTMBUF_HEADROOM
    if framesz - 32 > room:
        _fail(path, f"{p.device_name}: framesz {framesz} carries {framesz - 32} B per frame, more "
                    f"than pool {pool.pool_name!r} holds ({pool.element_size} - "
                    f"{RTE_PKTMBUF_HEADROOM} = {room} B); e.g. framesz=1792,blocksz=28672 (an "
                    "MTU 1500 frame still fits), or a larger element_size")


def _unique(names: list, path: str, key: str) -> None:
    seen: dict = {}
    for i, n in enumerate(names):
        if n in seen:
            _fail(_join(_join(path, i), key), f"duplicate {key} {n!r} (also {path}[{seen[n]}])")
        seen[n] = i


# --- hugering ----------------------------------------------------------------------------------
_HUGERING = ("rings", "producers", "consumers")
_RING = ("name", "slots", "slot_size", "mode", "full_policy", "backing", "hugetlbfs",
         "max_consumers", "consumer_timeout_s", "queues")
_PRODUCER = ("name", "kind", "ring", "cpu", "restart", "max_restarts", "options")
_OPTIONS = {
    "synthetic": ("rate_pps", "count", "duration_s", "min_size", "max_size", "seed"),
    "replay": ("file", "pps", "speed", "topspeed", "loop", "original_timestamps"),
    "af_xdp": ("interface", "queues", "xdp_mode", "bind", "filter"),
    "dpdk": ("port", "tx_ring"),
}
_CONSUMER = ("name", "ring", "handler", "filter", "filters", "cpu", "idle", "spin_before_idle",
             "max_sleep_us", "burst", "state_size", "count", "duration_s", "realtime",
             "lock_memory", "restart", "max_restarts")


def _ring_name(v, path: str) -> str:
    from shm.backing import RingNameError, validate_name
    if not isinstance(v, str):
        _wrong(path, "a ring name", v)
    try:
        return validate_name(v)
    except RingNameError as e:
        _fail(path, str(e))


def _ring(v, path: str) -> RingConfig:
    from shm import layout as L
    d = _mapping(v, path, _RING, required=("name",))
    name = _ring_name(d["name"], _join(path, "name"))
    queues = _int(d.get("queues", 1), _join(path, "queues"), 1, MAX_QUEUES)
    for derived in ring_names(name, queues)[-1:]:        # the longest derived name
        if derived != name:
            try:
                _ring_name(derived, "")
            except ConfigError as e:
                _fail(_join(path, "name"), f"with queues: {queues} the rings are named "
                                           f"'.q0' .. '.q{queues - 1}' after it: {e.reason}")
    backing = _choice(d.get("backing", "auto"), _join(path, "backing"), BACKINGS)
    mount = _str(d.get("hugetlbfs"), _join(path, "hugetlbfs"), nullable=True, what="a path")
    if mount is not None and backing != "hugetlbfs":
        _fail(_join(path, "hugetlbfs"), f"a hugetlbfs mount is only used with backing: "
                                        f"hugetlbfs (backing is {backing!r})")
    return RingConfig(
        name=name,
        slots=_int(d.get("slots", 65536), _join(path, "slots"), 2, L.MAX_CAPACITY, pow2=True),
        slot_size=_int(d.get("slot_size", L.DEFAULT_SLOT_SIZE), _join(path, "slot_size"),
                       L.MIN_SLOT_SIZE, L.MAX_SLOT_SIZE),
        mode=_choice(d.get("mode", "lossless"), _join(path, "mode"), tuple(L.MODES)),
        full_policy=_choice(d.get("full_policy", "wait"), _join(path, "full_policy"),
                            tuple(L.FULL_POLICIES)),
        backing=backing,
        hugetlbfs=mount,
        max_consumers=_int(d.get("max_consumers", L.DEFAULT_MAX_CONSUMERS),
                           _join(path, "max_consumers"), 1, L.MAX_CONSUMERS_LIMIT),
        consumer_timeout_s=_float(d.get("consumer_timeout_s", 1.0),
                                  _join(path, "consumer_timeout_s"), 0, lo_open=True, hi=9e9),
        queues=queues)


def _ring_ref(v, path: str, rings: dict) -> RingConfig:
    if not isinstance(v, str):
        _wrong(path, "the name of a ring", v)
    if v not in rings:
        if not rings:
            _fail(path, f"no ring named {v!r}: hugering.rings is empty")
        close = difflib.get_close_matches(v, list(rings), n=1, cutoff=0.6)
        sugg = f"; did you mean {close[0]!r}?" if close else ""
        _fail(path, f"no ring named {v!r}{sugg} (rings: {', '.join(rings)})")
    return rings[v]


def _check_cpu_len(cpu, ring: RingConfig, path: str) -> None:
    if isinstance(cpu, tuple) and len(cpu) != ring.queues:
        _fail(path, f"a list gives one cpu per queue: ring {ring.name!r} has {ring.queues} "
                    f"queue{'s' if ring.queues != 1 else ''}, the list has {len(cpu)}")


def _options(kind: str, v, path: str, ring: RingConfig, dpdk: DpdkConfig | None,
             kind_path: str) -> ProducerOptions:
    keys = _OPTIONS[kind]
    j = lambda k: _join(path, k)            # noqa: E731
    if kind == "synthetic":
        d = _mapping(v, path, keys)
        lo = _int(d.get("min_size", 64), j("min_size"), MIN_FRAME, ring.slot_size)
        hi = _int(d.get("max_size", max(lo, min(128, ring.slot_size))), j("max_size"),
                  MIN_FRAME, ring.slot_size)
        if lo > hi:
            _fail(j("min_size"), f"min_size {lo} is larger than max_size {hi}")
        return SyntheticOptions(
            rate_pps=_float(d.get("rate_pps", 1e6), j("rate_pps"), 0, hi=1e10),
            count=_int(d.get("count"), j("count"), 1, nullable=True),
            duration_s=_float(d.get("duration_s"), j("duration_s"), 0, lo_open=True,
                              nullable=True),
            min_size=lo, max_size=hi,
            seed=_int(d.get("seed", 0), j("seed"), 0, 2 ** 64 - 1))
    if kind == "replay":
        d = _mapping(v, path, keys, required=("file",), what="a mapping with 'file'")
        rates = [k for k in ("pps", "speed", "topspeed")
                 if k in d and d[k] is not None and d[k] is not False]
        if len(rates) > 1:
            _fail(j(rates[1]), f"give at most one of pps, speed and topspeed (got "
                               f"{' and '.join(rates)})")
        pps = _float(d.get("pps"), j("pps"), 0, lo_open=True, hi=1e10, nullable=True)
        top = _bool(d.get("topspeed", False), j("topspeed"))
        speed = _float(d.get("speed"), j("speed"), 0, lo_open=True, hi=1e6, nullable=True)
        if pps is None and not top and speed is None:
            speed = 1.0
        return ReplayOptions(
            file=_str(d["file"], j("file"), what="a file path"), pps=pps, speed=speed,
            topspeed=top, loop=_int(d.get("loop", 1), j("loop"), 0),
            original_timestamps=_bool(d.get("original_timestamps", False),
                                      j("original_timestamps")))
    if kind == "af_xdp":
        d = _mapping(v, path, keys, required=("interface",), what="a mapping with 'interface'")
        ifname = _str(d["interface"], j("interface"), what="an interface name")
        if not _IFNAME_RE.fullmatch(ifname) or ifname in (".", ".."):
            _fail(j("interface"), f"expected an interface name (1..15 characters, no '/', ':' "
                                  f"or space), got {ifname!r}")
        queues = None
        if d.get("queues") is not None:
            raw = _list(d["queues"], j("queues"), "a list of NIC queue numbers or null")
            queues = tuple(_int(q, _join(j("queues"), i), 0, MAX_QUEUES - 1)
                           for i, q in enumerate(raw))
            if len(queues) != ring.queues:
                _fail(j("queues"), f"one NIC queue per ring queue: ring {ring.name!r} has "
                                   f"{ring.queues}, the list has {len(queues)}")
            _unique_values(queues, j("queues"))
        flt = d.get("filter")
        if flt is not None:
            if not isinstance(flt, str):
                _wrong(j("filter"), "pcap-filter text", flt)
            from parsers.filters import FilterSyntaxError
            from parsers.pcap_filter import compile_pcap_filter
            try:
                compile_pcap_filter(flt)
            except FilterSyntaxError as e:
                _fail(j("filter"), str(e))
        return AfXdpOptions(
            interface=ifname, queues=queues,
            xdp_mode=_choice(d.get("xdp_mode", "auto"), j("xdp_mode"), XDP_MODES),
            bind=_choice(d.get("bind", "auto"), j("bind"), XDP_BINDS), filter=flt)
    # dpdk
    d = _mapping(v, path, keys)
    if dpdk is None:
        _fail(kind_path, "a dpdk producer needs the dpdk_config section (its EAL arguments, "
                         "ports and buffer pools)")
    n = len(dpdk.ports)
    if n == 0:
        _fail(kind_path, "a dpdk producer needs a port: dpdk_config.ports is empty")
    port = _int(d.get("port", 0), j("port"), 0, n - 1)
    if dpdk.ports[port].rx_queues != ring.queues:
        _fail(j("port"), f"port {port} ({dpdk.ports[port].device_id}) has "
                         f"{dpdk.ports[port].rx_queues} RX queues and ring {ring.name!r} has "
                         f"{ring.queues}: one ring queue per RX queue")
    tx = _str(d.get("tx_ring"), j("tx_ring"), nullable=True, what="the name of a ring")
    if tx is not None and dpdk.ports[port].tx_queues == 0:
        _fail(j("tx_ring"), f"port {port} ({dpdk.ports[port].device_id}) has tx_queues: 0; "
                            "transmitting needs at least one TX queue")
    return DpdkOptions(port=port, tx_ring=tx)


def _unique_values(values, path: str) -> None:
    seen: dict = {}
    for i, v in enumerate(values):
        if v in seen:
            _fail(_join(path, i), f"{v} is given twice (also [{seen[v]}])")
        seen[v] = i


def _producer(v, path: str, rings: dict, dpdk: DpdkConfig | None) -> ProducerConfig:
    d = _mapping(v, path, _PRODUCER, required=("kind", "ring"))
    kind = _choice(d["kind"], _join(path, "kind"), PRODUCER_KINDS)
    ring = _ring_ref(d["ring"], _join(path, "ring"), rings)
    name = _name(d.get("name") or f"{kind}-{ring.name}", _join(path, "name"),
                 "a producer name")
    cpu = _cpu(d.get("cpu"), _join(path, "cpu"))
    _check_cpu_len(cpu, ring, _join(path, "cpu"))
    opts = _options(kind, d.get("options"), _join(path, "options"), ring, dpdk,
                    _join(path, "kind"))
    if kind == "dpdk" and cpu is not None:
        cores = set(dpdk.eal_arguments.cores)
        for c in (cpu if isinstance(cpu, tuple) else (cpu,)):
            if c not in cores:
                _fail(_join(path, "cpu"), f"cpu {c} is not a core of dpdk_config.eal_arguments"
                                          f".core_mask {dpdk.eal_arguments.core_mask!r} "
                                          f"({_fmt_cpus(cores)}): a DPDK producer's queues are "
                                          "polled by EAL lcores")
    return ProducerConfig(
        name=name, kind=kind, ring=ring.name, options=opts, cpu=cpu,
        restart=_choice(d.get("restart", "on-failure"), _join(path, "restart"),
                        RESTART_POLICIES),
        max_restarts=_int(d.get("max_restarts", 3), _join(path, "max_restarts"), 0, 10 ** 6))


def _consumer(v, path: str, rings: dict) -> ConsumerConfig:
    d = _mapping(v, path, _CONSUMER, required=("name", "ring"))
    j = lambda k: _join(path, k)            # noqa: E731
    name = _name(d["name"], j("name"), "a consumer name")
    ring = _ring_ref(d["ring"], j("ring"), rings)
    handler = _str(d.get("handler"), j("handler"), nullable=True,
                   what='"package.module:function"')
    if handler is not None and not _HANDLER_RE.fullmatch(handler):
        _fail(j("handler"), f'expected "package.module:function" (dotted module, a colon, a '
                            f'function name), got {handler!r}')
    flt = d.get("filter")
    rules = d.get("filters")
    if flt is not None and rules is not None:
        _fail(j("filters"), "give filter (pcap-filter text) or filters (YAML rules), not both")
    if flt is not None:
        if not isinstance(flt, str):
            _wrong(j("filter"), "pcap-filter text", flt)
        from parsers.filters import FilterSyntaxError
        from parsers.pcap_filter import compile_pcap_filter
        try:
            compile_pcap_filter(flt)
        except FilterSyntaxError as e:
            _fail(j("filter"), str(e))
    if rules is not None:
        if not isinstance(rules, list):
            _wrong(j("filters"), "a list of filter rules", rules)
        from parsers.filter_yaml import compile_rules
        from parsers.filters import FilterConfigError, FilterSyntaxError
        try:
            compile_rules(rules, j("filters"))
        except FilterConfigError as e:
            _fail(e.path or j("filters"), e.reason)
        except FilterSyntaxError as e:
            _fail(j("filters"), str(e))
    cpu = _cpu(d.get("cpu"), j("cpu"))
    _check_cpu_len(cpu, ring, j("cpu"))
    burst = _int(d.get("burst", 32), j("burst"), 1, 4096)
    if burst > ring.slots:
        _fail(j("burst"), f"burst {burst} is larger than ring {ring.name!r} ({ring.slots} "
                          "slots)")
    return ConsumerConfig(
        name=name, ring=ring.name, handler=handler, filter=flt,
        filters=_copy(rules), cpu=cpu,
        idle=_choice(d.get("idle", "busy"), j("idle"), IDLE_STRATEGIES),
        spin_before_idle=_int(d.get("spin_before_idle", 1000), j("spin_before_idle"), 0,
                              2 ** 31 - 1),
        max_sleep_us=_int(d.get("max_sleep_us", 100), j("max_sleep_us"), 1, 100_000),
        burst=burst,
        state_size=_int(d.get("state_size", 64), j("state_size"), 1, 1 << 20),
        count=_int(d.get("count"), j("count"), 1, nullable=True),
        duration_s=_float(d.get("duration_s"), j("duration_s"), 0, lo_open=True, nullable=True),
        realtime=_bool(d.get("realtime", False), j("realtime")),
        lock_memory=_bool(d.get("lock_memory", True), j("lock_memory")),
        restart=_choice(d.get("restart", "on-failure"), j("restart"), RESTART_POLICIES),
        max_restarts=_int(d.get("max_restarts", 3), j("max_restarts"), 0, 10 ** 6))


def _copy(v):
    if isinstance(v, list):
        return [_copy(x) for x in v]
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    return v


def _hugering(v, path: str, dpdk: DpdkConfig | None) -> HugeringConfig:
    d = _mapping(v, path, _HUGERING)
    rp = _join(path, "rings")
    ring_list = _list(d.get("rings"), rp)
    if not ring_list:
        _fail(rp, "at least one ring is needed" if "rings" not in d or d["rings"] is None
              else "at least one ring is needed, got an empty list")
    rings = tuple(_ring(r, _join(rp, i)) for i, r in enumerate(ring_list))
    _unique([r.name for r in rings], rp, "name")
    # a derived queue name (md.q0) must not be another entry's name
    owner: dict = {}
    for i, r in enumerate(rings):
        for n in r.ring_names():
            if n in owner and owner[n] != i:
                _fail(_join(_join(rp, i), "name"),
                      f"ring name {n!r} is also a ring of {rp}[{owner[n]}]")
            owner[n] = i
    by_name = {r.name: r for r in rings}

    pp = _join(path, "producers")
    producers = tuple(_producer(p, _join(pp, i), by_name, dpdk)
                      for i, p in enumerate(_list(d.get("producers"), pp)))
    _unique([p.name for p in producers], pp, "name")
    fed: dict = {}
    for i, p in enumerate(producers):
        if p.ring in fed:
            _fail(_join(_join(pp, i), "ring"),
                  f"ring {p.ring!r} already has a producer ({pp}[{fed[p.ring]}]): a ring has "
                  "a single producer")
        fed[p.ring] = i
    for i, p in enumerate(producers):
        tx = getattr(p.options, "tx_ring", None)
        if tx is None:
            continue
        tp = _join(_join(_join(pp, i), "options"), "tx_ring")
        txr = _ring_ref(tx, tp, by_name)
        if txr.mode != "lossless" or txr.queues != 1:
            _fail(tp, f"ring {tx!r} is {txr.mode} with {txr.queues} queue(s); a TX ring must be "
                      "lossless (frames wait for the NIC, they are not lapped) with one queue")
        if tx == p.ring:
            _fail(tp, f"ring {tx!r} is the producer's own RX ring")

    cp = _join(path, "consumers")
    consumers = tuple(_consumer(c, _join(cp, i), by_name)
                      for i, c in enumerate(_list(d.get("consumers"), cp)))
    _unique([c.name for c in consumers], cp, "name")
    per_ring: dict = {}
    for i, c in enumerate(consumers):
        per_ring[c.ring] = per_ring.get(c.ring, 0) + 1
        if per_ring[c.ring] > by_name[c.ring].max_consumers:
            _fail(_join(_join(cp, i), "ring"),
                  f"ring {c.ring!r} takes at most {by_name[c.ring].max_consumers} consumers "
                  f"(its max_consumers); this is consumer {per_ring[c.ring]}")
    return HugeringConfig(rings=rings, producers=producers, consumers=consumers)


def _build(doc, source: str, base_dir: str | None) -> Config:
    if doc is None:
        _fail("", "the file is empty; expected a mapping with 'dpdk_config' and/or 'hugering'")
    d = _mapping(doc, "", _TOP, what="a mapping with 'dpdk_config' and/or 'hugering'")
    if d.get("dpdk_config") is None and d.get("hugering") is None:
        _fail("", "expected a 'dpdk_config' or a 'hugering' section (or both)")
    dpdk = _dpdk(d["dpdk_config"], "dpdk_config") if d.get("dpdk_config") is not None else None
    hr = _hugering(d["hugering"], "hugering", dpdk) if d.get("hugering") is not None else None
    return Config(dpdk=dpdk, hugering=hr, source=source, base_dir=base_dir)


# --- advice: valid, but probably not what was meant -------------------------------------------
def advice(cfg: Config) -> list[str]:
    """Lines about a valid file that a reviewer would flag (each names its key): a mempool
    size DPDK wastes memory on, a poll loop sharing a core with a DPDK lcore or with another
    busy poll loop."""
    out: list[str] = []
    src = cfg.source

    def say(path, msg):
        out.append(str(ConfigError(path, msg, src)))

    if cfg.dpdk is not None:
        for i, p in enumerate(cfg.dpdk.buffer_pools):
            n = p.element_count
            if n & (n + 1):
                best = (1 << max(1, (n + 1).bit_length() - 1)) - 1
                say(f"dpdk_config.buffer_pools[{i}].element_count",
                    f"{n} is not 2^n - 1; DPDK's mempool (a power-of-two ring) is sized best at "
                    f"2^n - 1, e.g. {best} or {2 * best + 1}")
        cores = cfg.dpdk.eal_arguments.cores
        queues = sum(p.rx_queues for p in cfg.dpdk.ports)
        mp = "dpdk_config.eal_arguments.core_mask"
        if queues and len(cores) < queues:
            say(mp, f"{len(cores)} core{'s' * (len(cores) != 1)} ({_fmt_cpus(cores)}) for "
                    f"{queues} RX queues: each lcore polls {-(-queues // len(cores))} queues in "
                    "turn; one core per RX queue is what scales")
        elif queues and len(cores) > queues:
            say(mp, f"{len(cores)} cores ({_fmt_cpus(cores)}) for {queues} RX queue"
                    f"{'s' * (queues != 1)}: the DPDK producer polls one queue per lcore, "
                    f"{len(cores) - queues} lcore{'s' * (len(cores) - queues != 1)} will have "
                    "nothing to poll (they sleep)")
    if cfg.hugering is not None:
        h = cfg.hugering
        lcores = set(cfg.dpdk.eal_arguments.cores) if cfg.dpdk is not None else set()
        busy: dict = {}
        for kind, items in (("producers", h.producers), ("consumers", h.consumers)):
            for i, it in enumerate(items):
                cpus = it.cpus(h.ring(it.ring).queues)
                if cpus is None:
                    continue
                path = f"hugering.{kind}[{i}].cpu"
                if kind == "consumers" and lcores & set(cpus):
                    say(path, f"cpu {_fmt_cpus(lcores & set(cpus))} is also a DPDK lcore of "
                              "dpdk_config.eal_arguments.core_mask, which EAL busy-polls")
                if kind == "producers" or it.idle == "busy":
                    for c in cpus:
                        busy.setdefault(c, []).append(path)
        for c, paths in sorted(busy.items()):
            if len(paths) > 1:
                say(paths[1], f"cpu {c} also runs {paths[0]}: two busy-polling loops on one "
                              "core halve each other")
    return out


# --- this machine ------------------------------------------------------------------------------
SYS_CPU = Path("/sys/devices/system/cpu")
SYS_NODE = Path("/sys/devices/system/node")
SYS_PCI = Path("/sys/bus/pci/devices")
SYS_NET = Path("/sys/class/net")
SYS_HUGEPAGES = Path("/sys/kernel/mm/hugepages")


def _online_cpus() -> set[int]:
    for name in ("online", "present"):
        try:
            return _parse_cpulist((SYS_CPU / name).read_text())
        except (OSError, ValueError):
            continue
    return set(range(os.cpu_count() or 1))


def _allowed_cpus() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def _numa_nodes() -> set[int]:
    try:
        nodes = {int(p.name[4:]) for p in SYS_NODE.iterdir()
                 if p.name.startswith("node") and p.name[4:].isdigit()}
    except OSError:
        nodes = set()
    return nodes or {0}              # a kernel without NUMA: everything is node 0


def _free_pages(page_size: int, node: int | None = None) -> int | None:
    kb = page_size // 1024
    if node is None:
        from shm.backing import free_hugepages
        if not (SYS_HUGEPAGES / f"hugepages-{kb}kB").is_dir():
            return None
        return free_hugepages(page_size)
    f = SYS_NODE / f"node{node}" / "hugepages" / f"hugepages-{kb}kB" / "free_hugepages"
    try:
        return int(f.read_text())
    except (OSError, ValueError):
        return None


def _size(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} B"


def _ring_pages(r: RingConfig, page: int) -> int:
    """Huge pages one queue's ring file takes (as ``shm.Ring.create`` sizes it)."""
    from shm import layout as L
    size = L.round_up(L.round_up(L.control_bytes(r.max_consumers), page)
                      + r.slots * L.slot_stride(r.slot_size), page)
    return size // page


def _machine(cfg: Config) -> list[tuple[str, str]]:
    from shm.backing import hugetlbfs_mounts, mount_page_size
    out: list[tuple[str, str]] = []
    online = _online_cpus()
    allowed = _allowed_cpus()
    nodes = _numa_nodes()
    mounts = hugetlbfs_mounts()

    def cpu_problems(path: str, cpus: Iterable[int], what: str = "cpu", of: str = ""):
        cpus = sorted(set(cpus))
        missing = [c for c in cpus if c not in online]
        if missing:
            many = len(missing) > 1
            out.append((path, f"{what}{'s' if many else ''} {_fmt_cpus(missing)}{of} "
                              f"{'do' if many else 'does'} not exist on this machine (online: "
                              f"{_fmt_cpus(online)})"))
        if allowed is not None:
            barred = [c for c in cpus if c in online and c not in allowed]
            if barred:
                many = len(barred) > 1
                out.append((path, f"{what}{'s' if many else ''} {_fmt_cpus(barred)}{of} "
                                  f"{'exist' if many else 'exists'} but this process may not "
                                  f"run there (allowed: {_fmt_cpus(allowed)}; a cgroup cpuset "
                                  "or taskset)"))

    def mount_problem(path: str, mount: str) -> int | None:
        size = mount_page_size(mount)
        if size is None:
            here = ", ".join(m for m, _ in mounts) or "none"
            out.append((path, f"{mount} is not a hugetlbfs mount (hugetlbfs mounts here: "
                              f"{here})"))
        return size

    demand: dict = {}                       # page size -> pages socket_mem takes
    if cfg.dpdk is not None:
        eal = cfg.dpdk.eal_arguments
        ep = "dpdk_config.eal_arguments"
        cpu_problems(f"{ep}.core_mask", eal.cores, "core", f" of {eal.core_mask}")
        left = online - set(eal.cores)
        if not left:
            out.append((f"{ep}.core_mask", f"{eal.core_mask} takes every online core "
                                           f"({_fmt_cpus(online)}); leave at least one for the "
                                           "system and the consumers"))
        page = mount_problem(f"{ep}.hugepages_mount", eal.hugepages_mount)
        if eal.socket_mem is not None:
            for node, mb in enumerate(eal.socket_mem):
                if mb and node not in nodes:
                    out.append((f"{ep}.socket_mem", f"{mb} MB for NUMA node {node}, which this "
                                                    f"machine does not have (nodes: "
                                                    f"{_fmt_cpus(nodes)})"))
            if page is not None:
                total = 0
                for node, mb in enumerate(eal.socket_mem):
                    need = -(-mb * (1 << 20) // page)
                    total += need
                    free = _free_pages(page, node) if node in nodes else None
                    if mb and free is not None and free < need:
                        out.append((f"{ep}.socket_mem", f"{mb} MB on NUMA node {node} needs "
                                                        f"{need} huge pages of {_size(page)}; "
                                                        f"{free} are free there"))
                demand[page] = total
        for i, p in enumerate(cfg.dpdk.ports):
            path = f"dpdk_config.ports[{i}].device_id"
            if p.is_vdev:
                out += [(path, m) for m in _vdev_problems(p, cfg)]
                continue
            dev = SYS_PCI / p.device_id
            if not dev.exists():
                out.append((path, f"no PCI device {p.device_id} on this machine ({dev})"))
                continue
            try:
                driver = (dev / "driver").resolve().name if (dev / "driver").exists() else None
            except OSError:
                driver = None
            if driver not in DPDK_PCI_DRIVERS:
                now = f"is bound to the kernel driver {driver}" if driver else "has no driver"
                out.append((path, f"{p.device_id} {now}; DPDK needs it bound to vfio-pci "
                                  f"(dpdk-devbind.py --bind=vfio-pci {p.device_id})"))
                continue
            try:
                node = int((dev / "numa_node").read_text())
            except (OSError, ValueError):
                node = -1
            sm = eal.socket_mem
            if node >= 0 and sm is not None and (node >= len(sm) or sm[node] == 0):
                out.append((path, f"{p.device_id} sits on NUMA node {node} but "
                                  f"{ep}.socket_mem gives that node no memory"))

        if page is not None and cfg.dpdk.ports:
            need = pool_memory_bytes(cfg.dpdk)
            free = _free_pages(page)
            if free is not None and need > free * page:
                out.append((f"dpdk_config.buffer_pools", f"the pools need about "
                            f"{need >> 20} MB and {eal.hugepages_mount} has {free} free huge "
                            f"pages of {_size(page)} ({free * page >> 20} MB){NO_HUGE_FALLBACK}"))

    if cfg.hugering is not None:
        h = cfg.hugering
        used: dict = {}                     # page size -> pages the rings so far take
        for i, r in enumerate(h.rings):
            rp = f"hugering.rings[{i}]"
            if r.backing == "shm":
                continue
            if r.backing == "hugetlbfs":
                mount = r.hugetlbfs or DEFAULT_HUGEPAGES
                page = mount_problem(f"{rp}.hugetlbfs" if r.hugetlbfs else f"{rp}.backing",
                                     mount)
                fallback = ""
            else:
                mount = DEFAULT_HUGEPAGES
                page = mount_page_size(mount)
                fallback = AUTO_FALLBACK
                if page is None:
                    continue                # auto without hugetlbfs is shm, by design
            if page is None:
                continue
            if not os.access(mount, os.W_OK | os.X_OK):
                out.append((f"{rp}.backing", f"this user may not create files in {mount}"
                                             f"{fallback}"))
                continue
            need = _ring_pages(r, page) * r.queues
            before = used.get(page, 0) + demand.get(page, 0)
            used[page] = used.get(page, 0) + need
            free = _free_pages(page)
            if free is not None and before + need > free:
                also = f" after the {before} taken before it" if before else ""
                sock = " (dpdk_config socket_mem counted)" if demand.get(page) else ""
                each = f" ({r.queues} queues x {need // r.queues})" if r.queues > 1 else ""
                out.append((rp, f"ring {r.name!r} needs {need} huge pages of {_size(page)}"
                                f"{each} and {free} are free{also}{sock}{fallback}"))
        for kind, items in (("producers", h.producers), ("consumers", h.consumers)):
            for i, it in enumerate(items):
                cpus = it.cpus(h.ring(it.ring).queues)
                if cpus is not None:
                    cpu_problems(f"hugering.{kind}[{i}].cpu", cpus)
        for i, p in enumerate(h.producers):
            op = f"hugering.producers[{i}].options"
            o = p.options
            if isinstance(o, ReplayOptions):
                f = cfg.resolve(o.file)
                if not f.is_file():
                    out.append((f"{op}.file", f"no such file: {f}"))
                elif not os.access(f, os.R_OK):
                    out.append((f"{op}.file", f"this user may not read {f}"))
            elif isinstance(o, AfXdpOptions):
                dev = SYS_NET / o.interface
                if not dev.exists():
                    here = sorted(x.name for x in SYS_NET.iterdir()) if SYS_NET.is_dir() else []
                    out.append((f"{op}.interface", f"no network interface {o.interface!r} on "
                                                   f"this machine (interfaces: "
                                                   f"{', '.join(here) or 'none'})"))
                    continue
                queues = o.queues if o.queues is not None else \
                    tuple(range(h.ring(p.ring).queues))
                try:
                    rx = {int(q.name[3:]) for q in (dev / "queues").iterdir()
                          if q.name.startswith("rx-")}
                except (OSError, ValueError):
                    rx = set()
                absent = [q for q in queues if rx and q not in rx]
                if absent:
                    out.append((f"{op}.queues" if o.queues is not None else f"{op}.interface",
                                f"{o.interface} has RX queues {_fmt_cpus(rx)}; queue "
                                f"{_fmt_cpus(absent)} does not exist"))
    return out


# ``backing: auto`` without usable huge pages is not a problem: the ring goes to POSIX shared
# memory, as documented.  Those lines end with this text; ``check`` shows them as advice and
# ``require_machine`` does not refuse on them.  DPDK pools larger than the free huge pages are
# the same kind of line: the producer runs EAL on ordinary pages (engine/producers/dpdk.py).
AUTO_FALLBACK = " (backing auto: it would fall back to POSIX shared memory)"
NO_HUGE_FALLBACK = (": the DPDK producer would run EAL without huge pages (--no-huge -m), "
                    "socket_mem unused")
_FALLBACKS = (AUTO_FALLBACK, NO_HUGE_FALLBACK)

# PCI drivers a DPDK PMD can drive a NIC through (mlx4/mlx5 are bifurcated: the kernel driver
# stays bound)
DPDK_PCI_DRIVERS = ("vfio-pci", "uio_pci_generic", "igb_uio", "mlx5_core", "mlx4_core")


def pool_memory_bytes(dpdk: DpdkConfig) -> int:
    """About what EAL must hold for the buffer pools: per element the mbuf header (128 B),
    the data room and the mempool object header (64 B), a cache line for DPDK's
    memory-channel spreading, the pool's ring of pointers; plus 32 MB for EAL and ethdev."""
    total = 32 << 20
    for b in dpdk.buffer_pools:
        obj = -(-(128 + b.element_size + 64) // 64) * 64 + 64
        ring = 1 << (b.element_count + 1).bit_length()
        total += b.element_count * obj + 8 * ring
    return total


def _vdev_problems(p: PortConfig, cfg: Config) -> list[str]:
    """What a vdev string names that this machine lacks: a pcap file to read, an interface."""
    out = []
    args = p.vdev_args
    for key in ("rx_pcap",):
        if key in args:
            f = cfg.resolve(args[key])
            if not f.is_file():
                out.append(f"{p.device_name}: {key}={args[key]}: no such file ({f})")
            elif not os.access(f, os.R_OK):
                out.append(f"{p.device_name}: {key}={args[key]}: this user may not read it")
    for key in ("iface", "rx_iface", "rx_iface_in", "tx_iface"):
        if key in args and not (SYS_NET / args[key]).exists():
            out.append(f"{p.device_name}: {key}={args[key]}: no such network interface")
    return out


def _hard_problems(cfg: Config) -> list[tuple[str, str]]:
    return [(p, m) for p, m in _machine(cfg) if not m.endswith(_FALLBACKS)]


def fallbacks(cfg: Config) -> list[str]:
    """The rings with ``backing: auto`` that will land in POSIX shared memory here, and DPDK
    pools that will not fit in the free huge pages."""
    return [str(ConfigError(p, m, cfg.source)) for p, m in _machine(cfg)
            if m.endswith(_FALLBACKS)]


def machine_problems(cfg: Config) -> list[str]:
    """What this machine cannot provide for ``cfg``, one line each naming the key (``FILE:
    KEY: what is missing``).  Reads sysfs and /proc; changes nothing.  Empty: all there."""
    return [str(ConfigError(p, m, cfg.source)) for p, m in _hard_problems(cfg)]


SECTIONS = ("dpdk_config", "hugering", "hugering.rings", "hugering.producers",
            "hugering.consumers")


def require_machine(cfg: Config, sections: Iterable[str] | None = None) -> None:
    """Raise ``MachineError`` (a ``ConfigError``) listing what this machine lacks for the parts
    about to start: ``sections`` holds key prefixes (``"dpdk_config"``, ``"hugering.rings"``,
    ``"hugering.consumers"`` ...; None: everything)."""
    if sections is not None:
        sections = tuple(sections)
        for s in sections:
            if s not in SECTIONS:
                raise ValueError(f"unknown section {s!r}; expected one of {', '.join(SECTIONS)}")
    problems = [ConfigError(p, m, cfg.source) for p, m in _hard_problems(cfg)
                if sections is None or any(p == s or p.startswith(s + ".")
                                           or p.startswith(s + "[") for s in sections)]
    if problems:
        raise MachineError(problems)


def summary(cfg: Config) -> list[str]:
    """A few lines saying what the file sets up (for ``hugering check``)."""
    lines = []
    if cfg.dpdk is not None:
        d = cfg.dpdk
        e = d.eal_arguments
        mem = f", socket_mem {','.join(map(str, e.socket_mem))} MB" if e.socket_mem else ""
        lines.append(f"dpdk       cores {_fmt_cpus(e.cores)} ({e.core_mask}){mem}, huge pages "
                     f"at {e.hugepages_mount}")
        for p in d.ports:
            lines.append(f"  port     {p.device_id}: {p.rx_queues} rx / {p.tx_queues} tx queues "
                         f"x {p.ring_descriptor_size} descriptors, mtu {p.mtu}")
        for b in d.buffer_pools:
            lines.append(f"  pool     {b.pool_name}: {b.element_count} x {b.element_size} B")
    if cfg.hugering is not None:
        h = cfg.hugering
        for r in h.rings:
            q = f" x {r.queues} queues" if r.queues > 1 else ""
            lines.append(f"ring       {r.name}{q}: {r.slots} slots x {r.slot_size} B, {r.mode}"
                         + (f"/{r.full_policy}" if r.mode == "lossless" else "")
                         + f", {r.backing}")
        for p in h.producers:
            cpu = "" if p.cpu is None else f", cpu {_fmt_cpu(p.cpu)}"
            lines.append(f"producer   {p.name}: {p.kind} -> {p.ring}{cpu}")
        for c in h.consumers:
            what = c.handler or "count only"
            if c.filter is not None:
                what += f", filter {c.filter!r}"
            elif c.filters is not None:
                what += f", {len(c.filters)} filter rule{'s' if len(c.filters) != 1 else ''}"
            cpu = "" if c.cpu is None else f", cpu {_fmt_cpu(c.cpu)}"
            lines.append(f"consumer   {c.name}: {c.ring} -> {what}, idle {c.idle}{cpu}")
    return lines


def _fmt_cpu(cpu) -> str:
    return str(cpu) if isinstance(cpu, int) else ",".join(map(str, cpu))


def counts(cfg: Config) -> dict:
    h = cfg.hugering
    return {"rings": len(h.rings) if h else 0, "producers": len(h.producers) if h else 0,
            "consumers": len(h.consumers) if h else 0,
            "dpdk_ports": len(cfg.dpdk.ports) if cfg.dpdk else 0}


__all__ = ["Config", "DpdkConfig", "EalArguments", "PortConfig", "BufferPool", "HugeringConfig",
           "RingConfig", "ProducerConfig", "ConsumerConfig", "SyntheticOptions", "ReplayOptions",
           "AfXdpOptions", "DpdkOptions", "ConfigError", "MachineError", "load", "loads",
           "machine_problems", "require_machine", "advice", "summary", "counts", "ring_names"]
