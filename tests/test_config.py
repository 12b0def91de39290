"""The deployment configuration (``engine.config``) and ``hugering check``.

* the seed lesson's ``dpdk_config`` block (``tests/configs/seed_dpdk.yaml``, copied verbatim and
  pinned by ``SEED_TEXT`` below) loads exactly as written, and ``hugering check`` accepts it on
  this machine, reporting what the machine lacks as warnings;
* each broken variant gives exactly one message, naming the file and the full key path;
* ``machine_problems`` on this real machine (nothing mocked: a cpu, an interface and a file
  that no machine has);
* a valid file round-trips through ``to_dict``; ``ring_names`` per queue.
"""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import yaml

from engine import cli
from engine import config as C

CONFIGS = Path(__file__).resolve().parent / "configs"
SEED = CONFIGS / "seed_dpdk.yaml"

# The seed lesson's block, byte for byte (seed/kernel-bypass-lesson.txt, lines 50-65).
SEED_TEXT = '''\
dpdk_config:
  eal_arguments:
    core_mask: "0xFC" # Allocate cores 2, 3, 4, 5, 6, 7 (avoiding core 0 and 1 for OS)
    memory_channels: 4
    hugepages_mount: "/dev/hugepages"
    socket_mem: "4096,4096" # 4GB allocated per NUMA memory node
  ports:
    - device_id: "0000:04:00.0"
      rx_queues: 2
      tx_queues: 2
      ring_descriptor_size: 1024 # Buffer descriptors in NIC ring
      mtu: 1500
  buffer_pools:
    - pool_name: "packet_mempool"
      element_count: 262143
      element_size: 2048 # Sized to hold standard MTU frames
'''

# A hugering section that uses every kind of entry (valid; no dpdk producer: that needs the
# dpdk_config section, see FULL).
HUGERING = {
    "rings": [
        {"name": "md", "queues": 2, "slots": 1024, "slot_size": 2048, "backing": "shm"},
        {"name": "syn", "slots": 4096, "mode": "lossy", "backing": "shm"},
        {"name": "rp", "slots": 1024, "full_policy": "drop", "backing": "shm"},
    ],
    "producers": [
        {"kind": "af_xdp", "ring": "md", "cpu": [0, 1],
         "options": {"interface": "eth0", "queues": [0, 1], "xdp_mode": "skb"}},
        {"kind": "synthetic", "ring": "syn",
         "options": {"rate_pps": 250000.0, "count": 1000, "max_size": 256, "seed": 7}},
        {"kind": "replay", "ring": "rp", "name": "tape", "options": {"file": "cap.pcap",
                                                                     "pps": 1000.0}},
    ],
    "consumers": [
        {"name": "book", "ring": "md", "handler": "strategy.book:on_packet",
         "filter": "udp and dst port 26400", "cpu": [0, 1], "idle": "spin_yield"},
        {"name": "audit", "ring": "syn", "filters": [{"proto": "udp", "dst_port": 53},
                                                     {"vlan": 100}], "idle": "backoff"},
        {"name": "count", "ring": "rp", "count": 5, "duration_s": 2.5, "realtime": True},
    ],
}

FULL = SEED_TEXT + """\
hugering:
  rings:
    - {name: md, queues: 2, slots: 1024, backing: shm}
  producers:
    - {kind: dpdk, ring: md, cpu: [2, 3], options: {port: 0}}
  consumers:
    - {name: c, ring: md, cpu: 1}
"""


def loads(doc, source="deploy.yaml") -> C.Config:
    text = doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False)
    return C.loads(text, source=source)


def error_of(doc) -> C.ConfigError:
    with pytest.raises(C.ConfigError) as ei:
        loads(doc)
    return ei.value


def hugering(**changes) -> dict:
    """A copy of HUGERING with ``section -> (index, key, value)`` edits (value None: delete)."""
    h = copy.deepcopy(HUGERING)
    for section, edits in changes.items():
        for i, key, value in edits:
            if value is None:
                del h[section][i][key]
            else:
                h[section][i][key] = value
    return {"hugering": h}


def online_cpus() -> set[int]:
    text = Path("/sys/devices/system/cpu/online").read_text()
    out = set()
    for part in text.strip().split(","):
        a, _, b = part.partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return out


def call(capsys, *argv):
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


# --- the seed block ---------------------------------------------------------------------------
def test_seed_fixture_is_the_seed_block():
    assert SEED.read_text() == SEED_TEXT


def test_seed_block_loads_as_written():
    cfg = C.load(SEED)
    assert cfg.hugering is None and cfg.source == str(SEED)
    eal = cfg.dpdk.eal_arguments
    assert eal.core_mask == "0xFC" and eal.cores == (2, 3, 4, 5, 6, 7)
    assert eal.memory_channels == 4 and eal.hugepages_mount == "/dev/hugepages"
    assert eal.socket_mem == (4096, 4096)
    assert eal.eal_argv() == ["-c", "0xFC", "--huge-dir", "/dev/hugepages", "-n", "4",
                              "--socket-mem", "4096,4096"]
    assert cfg.dpdk.ports == (C.PortConfig("0000:04:00.0", 2, 2, 1024, 1500),)
    assert cfg.dpdk.buffer_pools == (C.BufferPool("packet_mempool", 262143, 2048),)
    # 262143 = 2^18 - 1: no mempool advice; 6 lcores for 2 RX queues: 4 with nothing to poll
    assert C.advice(cfg) == [f"{SEED}: dpdk_config.eal_arguments.core_mask: 6 cores (2-7) for 2 "
                             "RX queues: the DPDK producer polls one queue per lcore, 4 lcores "
                             "will have nothing to poll (they sleep)"]


def test_check_accepts_seed_with_machine_warnings(capsys):
    rc, out, err = call(capsys, "check", str(SEED))
    assert rc == 0, err
    assert out.startswith(f"{SEED}: ok (0 rings, 0 producers, 0 consumers, 1 dpdk port")
    assert "port     0000:04:00.0: 2 rx / 2 tx queues" in out
    warnings = err.strip().splitlines()
    assert all(w.startswith(f"hugering: warning: {SEED}: ") for w in warnings), err
    assert "error" not in err and "Traceback" not in err
    if not Path("/sys/bus/pci/devices/0000:04:00.0").exists():
        assert (f"hugering: warning: {SEED}: dpdk_config.ports[0].device_id: no PCI device "
                "0000:04:00.0 on this machine (/sys/bus/pci/devices/0000:04:00.0)") in warnings
    absent = sorted({2, 3, 4, 5, 6, 7} - online_cpus())
    core_lines = [w for w in warnings if ".eal_arguments.core_mask: core" in w]
    if absent:
        assert len(core_lines) == 1 and f"{C._fmt_cpus(absent)} of 0xFC do" in core_lines[0]
        assert core_lines[0].endswith(f"not exist on this machine (online: "
                                      f"{C._fmt_cpus(online_cpus())})")
    else:
        assert core_lines == []


def test_check_json(capsys):
    rc, out, err = call(capsys, "check", str(SEED), "--json")
    assert rc == 0
    doc = json.loads(out)
    assert doc["ok"] is True and doc["error"] is None
    assert doc["config"]["dpdk_config"]["eal_arguments"]["socket_mem"] == "4096,4096"
    assert doc["derived"]["cores"] == [2, 3, 4, 5, 6, 7]
    assert doc["counts"] == {"rings": 0, "producers": 0, "consumers": 0, "dpdk_ports": 1}
    assert doc["warnings"] == [w[len("hugering: warning: "):] for w in err.splitlines()]


def test_full_file_with_a_dpdk_producer():
    cfg = loads(FULL)
    p = cfg.hugering.producers[0]
    assert (p.name, p.kind, p.options, p.cpus(2)) == ("dpdk-md", "dpdk", C.DpdkOptions(0),
                                                       (2, 3))
    assert cfg.hugering.consumers[0].cpus(2) == (1, 1)


# --- broken variants: one message each, naming the key path ----------------------------------
def seed_with(old: str, new: str) -> str:
    assert old in SEED_TEXT
    return SEED_TEXT.replace(old, new, 1)


BROKEN = [
    # (id, document, full key path, fragments of the message)
    ("unknown key with suggestion",
     seed_with("    memory_channels: 4", "    memory_chanels: 4"),
     "dpdk_config.eal_arguments.memory_chanels",
     ["unknown key 'memory_chanels'; did you mean 'memory_channels'?",
      "(allowed: core_mask, memory_channels, hugepages_mount, socket_mem, main_lcore, "
      "file_prefix)"]),
    ("unknown consumer key",
     hugering(consumers=[(0, "idel", "busy")]),
     "hugering.consumers[0].idel", ["unknown key 'idel'; did you mean 'idle'?"]),
    ("unknown top-level key",
     SEED_TEXT + "hugerng:\n  rings: []\n",
     "hugerng", ["did you mean 'hugering'?", "(allowed: dpdk_config, hugering)"]),
    ("wrong type",
     seed_with("      rx_queues: 2", "      rx_queues: two"),
     "dpdk_config.ports[0].rx_queues",
     ["expected an integer from 1 to 1024, got string 'two'"]),
    ("quoted number",
     seed_with("    memory_channels: 4", '    memory_channels: "4"'),
     "dpdk_config.eal_arguments.memory_channels",
     ["got string '4' (a number in quotes is a string: remove the quotes)"]),
    ("buffer element smaller than the MTU frame",
     seed_with("      element_size: 2048", "      element_size: 1600"),
     "dpdk_config.buffer_pools[0].element_size",
     ["1600 B cannot hold an MTU frame: element_size - 128 (RTE_PKTMBUF_HEADROOM) must be >= "
      "max port mtu 1500 + 14 (Ethernet) + 4 (FCS) + 4 (one VLAN tag) = 1522, and 1600 - 128 "
      "= 1472"]),
    ("core mask zero",
     seed_with('"0xFC"', '"0x0"'),
     "dpdk_config.eal_arguments.core_mask", ["core mask '0x0' selects no core"]),
    ("core mask not hex",
     seed_with('"0xFC"', '"zz"'),
     "dpdk_config.eal_arguments.core_mask",
     ["expected a hex core mask like \"0xFC\", got 'zz'"]),
    ("core mask unquoted",
     seed_with('"0xFC"', "0xFC"),
     "dpdk_config.eal_arguments.core_mask",
     ["expected a hex string like \"0xFC\", got integer 252 (quote it"]),
    ("bad PCI address",
     seed_with('"0000:04:00.0"', '"0000:04:00:0"'),
     "dpdk_config.ports[0].device_id",
     ["expected a PCI address DDDD:BB:DD.F or BB:DD.F", "got '0000:04:00:0'"]),
    ("PCI function above 7",
     seed_with('"0000:04:00.0"', '"04:00.8"'),
     "dpdk_config.ports[0].device_id", ["got '04:00.8'"]),
    ("descriptor count not a power of two",
     seed_with("ring_descriptor_size: 1024", "ring_descriptor_size: 1000"),
     "dpdk_config.ports[0].ring_descriptor_size",
     ["expected a power of two from 64 to 32768, got 1000"]),
    ("mtu out of range",
     seed_with("mtu: 1500", "mtu: 65000"),
     "dpdk_config.ports[0].mtu", ["expected an integer from 68 to 9216, got 65000"]),
    ("socket_mem not numbers",
     seed_with('"4096,4096"', '"abc"'),
     "dpdk_config.eal_arguments.socket_mem",
     ["comma-separated whole numbers like \"4096,4096\"; got 'abc' (entry 0: 'abc')"]),
    ("socket_mem all zero",
     seed_with('"4096,4096"', '"0,0"'),
     "dpdk_config.eal_arguments.socket_mem", ["'0,0' gives no memory to any NUMA node"]),
    ("duplicate pool names",
     SEED_TEXT + '    - {pool_name: "packet_mempool", element_count: 1023}\n',
     "dpdk_config.buffer_pools[1].pool_name",
     ["duplicate pool_name 'packet_mempool' (also dpdk_config.buffer_pools[0])"]),
    ("pools smaller than the RX descriptors",
     seed_with("element_count: 262143", "element_count: 1023"),
     "dpdk_config.buffer_pools",
     ["the pools hold 1023 elements in all, fewer than the ports' 2048 RX descriptors"]),
    ("main_lcore outside core_mask",
     seed_with("    memory_channels: 4", "    memory_channels: 4\n    main_lcore: 0"),
     "dpdk_config.eal_arguments.main_lcore",
     ["core 0 is not in core_mask '0xFC' (cores 2-7)"]),
    ("consumer naming a missing ring",
     hugering(consumers=[(0, "ring", "mdd")]),
     "hugering.consumers[0].ring",
     ["no ring named 'mdd'; did you mean 'md'? (rings: md, syn, rp)"]),
    ("producer naming a missing ring",
     hugering(producers=[(1, "ring", "nope")]),
     "hugering.producers[1].ring", ["no ring named 'nope'"]),
    ("bad idle strategy",
     hugering(consumers=[(0, "idle", "spinn")]),
     "hugering.consumers[0].idle",
     ["expected one of 'busy', 'spin_yield', 'backoff', got 'spinn'"]),
    ("bad filter expression",
     hugering(consumers=[(0, "filter", "udp and dst prot 53")]),
     "hugering.consumers[0].filter",
     ["(column 13)\n    udp and dst prot 53\n                ^^^^"]),
    ("bad filter rule",
     hugering(consumers=[(1, "filters", [{"proto": "udp"}, {"dst_port": 70000}])]),
     "hugering.consumers[1].filters[1].dst_port", ["70000 is not a port (0..65535)"]),
    ("filter and filters",
     hugering(consumers=[(0, "filters", [{"proto": "udp"}])]),
     "hugering.consumers[0].filters", ["give filter (pcap-filter text) or filters"]),
    ("bad slot_size",
     hugering(rings=[(1, "slot_size", 16)]),
     "hugering.rings[1].slot_size", ["expected an integer from 64 to 9216, got 16"]),
    ("slots not a power of two",
     hugering(rings=[(0, "slots", 1000)]),
     "hugering.rings[0].slots", ["expected a power of two from 2 to 67108864, got 1000"]),
    ("bad ring name",
     hugering(rings=[(2, "name", "a/b")]),
     "hugering.rings[2].name", ["contains a path separator"]),
    ("derived queue name too long",
     hugering(rings=[(0, "name", "m" * 62)]),
     "hugering.rings[0].name", ["with queues: 2 the rings are named '.q0' .. '.q1' after it: ring name", "at most 64"]),
    ("duplicate ring names",
     hugering(rings=[(2, "name", "syn")]),
     "hugering.rings[2].name", ["duplicate name 'syn' (also hugering.rings[1])"]),
    ("duplicate consumer names",
     hugering(consumers=[(2, "name", "book")]),
     "hugering.consumers[2].name", ["duplicate name 'book' (also hugering.consumers[0])"]),
    ("two producers on one ring",
     hugering(producers=[(2, "ring", "syn")]),
     "hugering.producers[2].ring",
     ["ring 'syn' already has a producer (hugering.producers[1])"]),
    ("cpu list length mismatch",
     hugering(consumers=[(0, "cpu", [0, 1, 1])]),
     "hugering.consumers[0].cpu",
     ["a list gives one cpu per queue: ring 'md' has 2 queues, the list has 3"]),
    ("negative cpu",
     hugering(consumers=[(2, "cpu", -1)]),
     "hugering.consumers[2].cpu", ["expected a cpu number >= 0, got -1"]),
    ("dpdk producer without dpdk_config",
     hugering(producers=[(1, "kind", "dpdk"), (1, "options", None)]),
     "hugering.producers[1].kind", ["a dpdk producer needs the dpdk_config section"]),
    ("dpdk producer cpu outside core_mask",
     FULL.replace("cpu: [2, 3]", "cpu: [1, 2]"),
     "hugering.producers[0].cpu", ["cpu 1 is not a core of dpdk_config.eal_arguments"]),
    ("dpdk producer queues differ from the port's",
     FULL.replace("{name: md, queues: 2,", "{name: md, queues: 4,").replace("[2, 3]", "2"),
     "hugering.producers[0].options.port",
     ["port 0 (0000:04:00.0) has 2 RX queues and ring 'md' has 4"]),
    ("replay without its file",
     hugering(producers=[(2, "options", {"speed": 2.0})]),
     "hugering.producers[2].options.file", ["missing (required)"]),
    ("replay with two rates",
     hugering(producers=[(2, "options", {"file": "x.pcap", "pps": 10.0, "topspeed": True})]),
     "hugering.producers[2].options.topspeed",
     ["give at most one of pps, speed and topspeed (got pps and topspeed)"]),
    ("synthetic frame larger than the slot",
     hugering(producers=[(1, "options", {"max_size": 4096})]),
     "hugering.producers[1].options.max_size", ["expected an integer from 60 to 2048"]),
    ("af_xdp queue count",
     hugering(producers=[(0, "options", {"interface": "eth0", "queues": [3]})]),
     "hugering.producers[0].options.queues", ["one NIC queue per ring queue"]),
    ("bad handler",
     hugering(consumers=[(0, "handler", "strategy.book.on_packet")]),
     "hugering.consumers[0].handler", ['expected "package.module:function"']),
    ("burst larger than the ring",
     hugering(consumers=[(2, "burst", 2048)]),
     "hugering.consumers[2].burst", ["burst 2048 is larger than ring 'rp' (1024 slots)"]),
    ("boolean expected",
     hugering(consumers=[(2, "realtime", "yes please")]),
     "hugering.consumers[2].realtime", ["expected true or false, got string 'yes please'"]),
    ("missing required name",
     hugering(consumers=[(1, "name", None)]),
     "hugering.consumers[1].name", ["missing (required)"]),
    ("hugetlbfs with shm backing",
     hugering(rings=[(0, "hugetlbfs", "/dev/hugepages")]),
     "hugering.rings[0].hugetlbfs", ["only used with backing: hugetlbfs (backing is 'shm')"]),
    ("vdev devargs without a value",
     seed_with('"0000:04:00.0"', '"net_pcap0,rx_pcap"'),
     "dpdk_config.ports[0].device_id",
     ["expected a DPDK vdev string net_NAME[,key=value...]", "got 'net_pcap0,rx_pcap'"]),
    ("neither PCI nor vdev",
     seed_with('"0000:04:00.0"', '"eth0"'),
     "dpdk_config.ports[0].device_id",
     ["or a DPDK vdev string like \"net_pcap0,rx_pcap=FILE\", got 'eth0'"]),
    ("two ports on one vdev name",
     SEED_TEXT.replace('"0000:04:00.0"', '"net_null0"').replace(
         "  buffer_pools:", '    - {device_id: "net_null0,size=128"}\n  buffer_pools:'),
     "dpdk_config.ports[1].device_id",
     ["duplicate device_id 'net_null0' (also dpdk_config.ports[0])"]),
    ("af_packet frames larger than the mbufs",
     seed_with('"0000:04:00.0"', '"net_af_packet0,iface=eth0"'),
     "dpdk_config.ports[0].device_id",
     ["net_af_packet0: framesz 2048 carries 2016 B per frame, more than pool 'packet_mempool' "
      "holds (2048 - 128 = 1920 B); e.g. framesz=1792,blocksz=28672"]),
    ("af_packet frames that do not tile a block",
     seed_with('"0000:04:00.0"', '"net_af_packet0,iface=eth0,framesz=1792"'),
     "dpdk_config.ports[0].device_id",
     ["blocksz 4096 is not a multiple of framesz 1792"]),
    ("dpdk TX ring that does not exist",
     FULL.replace("options: {port: 0}", "options: {port: 0, tx_ring: out}"),
     "hugering.producers[0].options.tx_ring", ["no ring named 'out'"]),
    ("dpdk TX ring that is lossy",
     FULL.replace("options: {port: 0}", "options: {port: 0, tx_ring: out}").replace(
         "  producers:", "    - {name: out, mode: lossy, backing: shm}\n  producers:"),
     "hugering.producers[0].options.tx_ring",
     ["ring 'out' is lossy with 1 queue(s); a TX ring must be lossless"]),
    ("dpdk TX ring on a port without TX queues",
     FULL.replace("options: {port: 0}", "options: {port: 0, tx_ring: out}").replace(
         "tx_queues: 2", "tx_queues: 0"),
     "hugering.producers[0].options.tx_ring", ["has tx_queues: 0"]),
]


@pytest.mark.parametrize("doc,path,fragments", [b[1:] for b in BROKEN],
                         ids=[b[0] for b in BROKEN])
def test_broken_variant_names_the_key(doc, path, fragments):
    e = error_of(doc)
    assert e.path == path, str(e)
    assert e.source == "deploy.yaml"
    assert str(e).startswith(f"deploy.yaml: {path}: "), str(e)
    for frag in fragments:
        assert frag in str(e), str(e)
    if "\n" in str(e):                  # only the filter caret spans lines
        assert "^" in str(e) and path.endswith(".filter")


def test_yaml_syntax_error_gives_line_and_column():
    text = "hugering:\n  rings:\n    - name: md\n      slots: [1024\n  consumers: []\n"
    e = error_of(text)
    assert e.path == "" and e.line == 5 and e.column is not None
    assert str(e).startswith("deploy.yaml: line 5, column ")
    assert "invalid YAML" in str(e) and "\n" not in str(e)


def test_duplicate_yaml_key_is_an_error():
    e = error_of("hugering:\n  rings:\n    - name: md\n      slots: 1024\n      slots: 2048\n")
    assert str(e) == ("deploy.yaml: line 5, column 7: invalid YAML: duplicate key 'slots' "
                      "(first given on line 4, column 7)")


@pytest.mark.parametrize("text,message", [
    ("", "the file is empty"),
    ("- 1\n- 2\n", "expected a mapping with 'dpdk_config' and/or 'hugering', got a list of 2"),
    ("hugering:\n", "expected a 'dpdk_config' or a 'hugering' section"),
])
def test_document_level_errors(text, message):
    e = error_of(text)
    assert e.path == "" and str(e).startswith("deploy.yaml: ") and message in str(e)


def test_check_rejects_a_broken_file(capsys, tmp_path):
    f = tmp_path / "deploy.yaml"
    f.write_text(yaml.safe_dump(hugering(consumers=[(0, "idle", "spinn")])))
    rc, out, err = call(capsys, "check", str(f))
    assert rc == 2 and out == ""
    assert err == (f"hugering: error: {f}: hugering.consumers[0].idle: expected one of 'busy', "
                   "'spin_yield', 'backoff', got 'spinn'\n")
    rc, out, err = call(capsys, "check", str(f), "--json")
    assert rc == 2 and err.startswith("hugering: error: ")
    doc = json.loads(out)
    assert doc["ok"] is False and doc["config"] is None
    assert doc["error"]["path"] == "hugering.consumers[0].idle"


def test_check_missing_file(capsys, tmp_path):
    rc, out, err = call(capsys, "check", str(tmp_path / "nope.yaml"))
    assert rc == 2 and err == f"hugering: error: {tmp_path / 'nope.yaml'}: no such file\n"


# --- defaults, types, round trip ---------------------------------------------------------------
def test_defaults():
    cfg = loads("hugering:\n  rings: [{name: md}]\n  producers: [{kind: synthetic, ring: md}]\n"
                "  consumers: [{name: c, ring: md}]\n")
    r = cfg.hugering.rings[0]
    assert (r.slots, r.slot_size, r.mode, r.full_policy, r.backing, r.hugetlbfs,
            r.max_consumers, r.consumer_timeout_s, r.queues) == \
        (65536, 2048, "lossless", "wait", "auto", None, 16, 1.0, 1)
    p = cfg.hugering.producers[0]
    assert (p.name, p.cpu, p.restart, p.max_restarts) == ("synthetic-md", None, "on-failure", 3)
    assert p.options == C.SyntheticOptions(rate_pps=1e6, count=None, duration_s=None,
                                           min_size=64, max_size=128, seed=0)
    c = cfg.hugering.consumers[0]
    assert (c.handler, c.filter, c.filters, c.idle, c.spin_before_idle, c.max_sleep_us,
            c.burst, c.state_size, c.count, c.duration_s, c.realtime, c.lock_memory) == \
        (None, None, None, "busy", 1000, 100, 32, 64, None, None, False, True)
    assert c.compile_filter() is None
    assert cfg.dpdk is None
    assert r.create_kwargs() == {"slots": 65536, "slot_size": 2048, "mode": "lossless",
                                 "full_policy": "wait", "max_consumers": 16,
                                 "consumer_timeout": 1.0, "shm": False, "hugetlbfs": None}


def test_replay_rate_defaults_and_yaml12_floats():
    cfg = loads("hugering:\n  rings: [{name: a}, {name: b}]\n  producers:\n"
                "    - {kind: replay, ring: a, options: {file: x.pcap}}\n"
                "    - {kind: synthetic, ring: b, options: {rate_pps: 2.5e6}}\n")
    o = cfg.hugering.producers[0].options
    assert (o.pps, o.speed, o.topspeed, o.loop) == (None, 1.0, False, 1)
    assert cfg.hugering.producers[1].options.rate_pps == 2.5e6     # YAML 1.1 would say "2.5e6"


def test_valid_hugering_round_trips_through_to_dict():
    cfg = loads({"hugering": HUGERING})
    d = cfg.to_dict()
    assert C.loads(yaml.safe_dump(d), source="deploy.yaml") == cfg
    assert json.loads(json.dumps(d)) == d
    book = d["hugering"]["consumers"][0]
    assert book["cpu"] == [0, 1] and book["filter"] == "udp and dst port 26400"
    assert d["hugering"]["producers"][0]["options"] == {"interface": "eth0", "queues": [0, 1],
                                                        "xdp_mode": "skb", "bind": "auto",
                                                        "filter": None}
    full = loads(FULL)
    assert C.loads(yaml.safe_dump(full.to_dict()), source="deploy.yaml") == full


def test_filters_compile():
    cfg = loads({"hugering": HUGERING})
    book, audit, _ = cfg.hugering.consumers
    assert book.compile_filter().source == "udp and dst port 26400"
    assert audit.compile_filter() is not None
    assert book.handler_parts() == ("strategy.book", "on_packet")


def test_ring_names_per_queue():
    cfg = loads({"hugering": HUGERING})
    md, syn, _ = cfg.hugering.rings
    assert md.ring_names() == ("md.q0", "md.q1")
    assert syn.ring_names() == ("syn",)
    assert C.ring_names("feed", 4) == ("feed.q0", "feed.q1", "feed.q2", "feed.q3")
    assert cfg.derived()["ring_names"] == {"md": ["md.q0", "md.q1"], "syn": ["syn"],
                                           "rp": ["rp"]}
    e = error_of({"hugering": {"rings": [{"name": "md", "queues": 2}, {"name": "md.q1"}]}})
    assert e.path == "hugering.rings[1].name" and "also a ring of hugering.rings[0]" in str(e)


def test_advice():
    cfg = loads(seed_with("element_count: 262143", "element_count: 262144"))
    assert C.advice(cfg)[0] == (
        "deploy.yaml: dpdk_config.buffer_pools[0].element_count: 262144 is not 2^n - 1; "
        "DPDK's mempool (a power-of-two ring) is sized best at 2^n - 1, e.g. 262143 or 524287")
    one_core = loads(seed_with('"0xFC"', '"0x4"'))
    assert C.advice(one_core) == [
        "deploy.yaml: dpdk_config.eal_arguments.core_mask: 1 core (2) for 2 RX queues: each "
        "lcore polls 2 queues in turn; one core per RX queue is what scales"]
    assert C.advice(loads(seed_with('"0xFC"', '"0xC"'))) == []      # 2 cores, 2 queues
    full = loads(FULL.replace("{name: c, ring: md, cpu: 1}", "{name: c, ring: md, cpu: 3}"))
    lines = C.advice(full)
    assert any(line.startswith("deploy.yaml: hugering.consumers[0].cpu: cpu 3 is also a DPDK "
                               "lcore") for line in lines), lines
    assert any("cpu 3 also runs hugering.producers[0].cpu" in line for line in lines), lines


# --- this machine ------------------------------------------------------------------------------
def machine_doc() -> dict:
    """Valid, and no machine has cpu 999, interface nosuchif0 or the replay file."""
    return hugering(consumers=[(0, "cpu", [0, 999])],
                    producers=[(0, "options", {"interface": "nosuchif0"}),
                               (2, "options", {"file": "missing.pcap"})])


def test_machine_problems_on_this_machine(tmp_path):
    f = tmp_path / "deploy.yaml"
    f.write_text(yaml.safe_dump(machine_doc()))
    cfg = C.load(f)
    problems = C.machine_problems(cfg)
    assert f"{f}: hugering.consumers[0].cpu: cpu 999 does not exist on this machine (online: " \
           f"{C._fmt_cpus(online_cpus())})" in problems
    assert any(p.startswith(f"{f}: hugering.producers[0].options.interface: no network "
                            "interface 'nosuchif0' on this machine (interfaces: ")
               for p in problems), problems
    assert f"{f}: hugering.producers[2].options.file: no such file: " \
           f"{tmp_path / 'missing.pcap'}" in problems
    assert all("\n" not in p for p in problems)
    # the replay file, once there, is no longer a problem (relative to the file's folder)
    (tmp_path / "missing.pcap").write_bytes(b"")
    assert not any(".options.file" in p for p in C.machine_problems(C.load(f)))


def test_require_machine(tmp_path):
    f = tmp_path / "deploy.yaml"
    f.write_text(yaml.safe_dump(machine_doc()))
    cfg = C.load(f)
    with pytest.raises(C.MachineError) as ei:
        C.require_machine(cfg, ["hugering.consumers"])
    e = ei.value
    assert isinstance(e, C.ConfigError)
    assert [p.path for p in e.problems] == ["hugering.consumers[0].cpu"]
    assert str(e) == str(e.problems[0]) and "cpu 999" in str(e)
    with pytest.raises(C.MachineError) as ei:
        C.require_machine(cfg)
    paths = [p.path for p in ei.value.problems]
    assert {"hugering.consumers[0].cpu", "hugering.producers[0].options.interface",
            "hugering.producers[2].options.file"} <= set(paths)
    assert str(ei.value).count("\n") == len(paths) - 1
    C.require_machine(cfg, ["hugering.rings"])          # shm rings: nothing to lack
    with pytest.raises(ValueError):
        C.require_machine(cfg, ["hugering.ringz"])


def test_machine_problems_for_cpus_that_exist(tmp_path):
    cpu = min(os.sched_getaffinity(0))
    cfg = loads(hugering(consumers=[(0, "cpu", cpu)]))
    assert not any(p.startswith("deploy.yaml: hugering.consumers[0].cpu")
                   for p in C.machine_problems(cfg))


def test_check_prints_machine_problems_as_warnings(capsys, tmp_path):
    f = tmp_path / "deploy.yaml"
    f.write_text(yaml.safe_dump(machine_doc()))
    rc, out, err = call(capsys, "check", str(f))
    assert rc == 0
    assert out.startswith(f"{f}: ok (3 rings, 3 producers, 3 consumers, 0 dpdk ports; ")
    lines = err.strip().splitlines()
    assert all(line.startswith(f"hugering: warning: {f}: ") for line in lines), err
    assert any("hugering.consumers[0].cpu: cpu 999" in line for line in lines)


# --- DPDK virtual devices and the DPDK producer's machine checks ---------------------------------
def test_vdev_device_ids_load_as_written():
    cfg = loads(seed_with('"0000:04:00.0"', '"net_pcap0,rx_pcap=cap.pcap,infinite_rx=1"'))
    p = cfg.dpdk.ports[0]
    assert p.device_id == "net_pcap0,rx_pcap=cap.pcap,infinite_rx=1" and p.is_vdev
    assert p.device_name == "net_pcap0"
    assert p.vdev_args == {"rx_pcap": "cap.pcap", "infinite_rx": "1"}
    pci = loads(SEED_TEXT).dpdk.ports[0]
    assert not pci.is_vdev and pci.device_name == "0000:04:00.0" and pci.vdev_args == {}
    opts = loads(FULL.replace("options: {port: 0}", "options: {port: 0, tx_ring: out}").replace(
        "  producers:", "    - {name: out, backing: shm}\n  producers:"))
    assert opts.hugering.producers[0].options == C.DpdkOptions(port=0, tx_ring="out")


def test_vdev_machine_problems(tmp_path):
    f = tmp_path / "deploy.yaml"
    f.write_text(seed_with('"0000:04:00.0"', '"net_pcap0,rx_pcap=cap.pcap"'))
    probs = [p for p in C.machine_problems(C.load(f)) if ".device_id" in p]
    assert probs == [f"{f}: dpdk_config.ports[0].device_id: net_pcap0: rx_pcap=cap.pcap: no such "
                     f"file ({tmp_path / 'cap.pcap'})"]
    (tmp_path / "cap.pcap").write_bytes(b"")            # relative to the file's folder
    assert not any(".device_id" in p for p in C.machine_problems(C.load(f)))
    f.write_text(seed_with('"0000:04:00.0"', '"net_af_xdp0,iface=nosuchif0"'))
    assert [p for p in C.machine_problems(C.load(f)) if ".device_id" in p] == [
        f"{f}: dpdk_config.ports[0].device_id: net_af_xdp0: iface=nosuchif0: no such network "
        "interface"]


def test_pci_device_bound_to_a_kernel_driver_is_a_problem(tmp_path):
    """A PCI device this machine has (any) is refused unless a DPDK-capable driver holds it."""
    devices = sorted(C.SYS_PCI.iterdir()) if C.SYS_PCI.is_dir() else []
    bound = [d for d in devices if (d / "driver").exists()
             and (d / "driver").resolve().name not in C.DPDK_PCI_DRIVERS]
    if not bound:                   # a machine without PCI (microVM): the absent-device line
        cfg = loads(seed_with('"0000:04:00.0"', '"0000:7f:1f.7"'))
        assert any("dpdk_config.ports[0].device_id: no PCI device 0000:7f:1f.7" in p
                   for p in C.machine_problems(cfg))
        return
    dev = bound[0]
    drv = (dev / "driver").resolve().name
    cfg = loads(seed_with('"0000:04:00.0"', f'"{dev.name}"'))
    assert f"deploy.yaml: dpdk_config.ports[0].device_id: {dev.name} is bound to the kernel " \
           f"driver {drv}; DPDK needs it bound to vfio-pci (dpdk-devbind.py --bind=vfio-pci " \
           f"{dev.name})" in C.machine_problems(cfg)


def test_pools_larger_than_the_free_huge_pages_are_a_fallback_not_a_problem():
    from shm.backing import mount_page_size
    page = mount_page_size("/dev/hugepages")
    if page is None:
        pytest.skip("needs hugetlbfs at /dev/hugepages")
    free = C._free_pages(page)
    count = 2 ** ((free * page // 2240).bit_length() + 1) - 1     # more than the free pages
    cfg = loads(seed_with("element_count: 262143", f"element_count: {count}"))
    need = C.pool_memory_bytes(cfg.dpdk)
    assert need > free * page
    line = [x for x in C.fallbacks(cfg) if "dpdk_config.buffer_pools:" in x]
    assert len(line) == 1 and line[0].endswith(C.NO_HUGE_FALLBACK), C.fallbacks(cfg)
    assert f"the pools need about {need >> 20} MB" in line[0]
    assert not any("buffer_pools" in p for p in C.machine_problems(cfg))
    small = loads(seed_with("element_count: 262143", "element_count: 4095"))
    assert not any("buffer_pools" in x for x in C.fallbacks(small))
