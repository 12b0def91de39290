"""The DPDK producer (``engine/producers/dpdk/``, ``hugering dpdk``) on real DPDK 22.11 vdevs.

Nothing is mocked: each test starts the real ``hugering-dpdk`` (EAL, a mempool, a port) on a
virtual device and checks what reaches real rings on hugetlbfs:

* a pcap replayed through ``net_pcap`` arrives byte for byte and in order, timestamps from the
  pcap, jumbo frames through chained mbufs, read at once by a Numba consumer (another process)
  and a Python consumer (this one);
* UDP datagrams the kernel sends from a peer namespace reach the ring through
  ``net_af_packet`` on a veth, every one of them;
* the seed's YAML block is refused as written on a machine that lacks its cores, NUMA nodes and
  NIC, naming each key; adapted in those three values it starts and every other field takes
  effect (queues, descriptors, MTU -- the veth's MTU changes --, pool size and element size,
  cores, memory channels);
* SIGTERM stops it within a second, EAL cleaned up, while a second instance keeps running;
* NIC drops (libpcap's kernel drops on a live veth, as ``imissed``) and mempool counts reach the
  ring's counters; the ring's overload rules (drop, wait, lossy, eviction of a stuck consumer)
  hold as for the Python producers; a TX ring drains into the port;
* ``hugering run`` starts a ``kind: dpdk`` producer; a machine without DPDK gets one message
  naming the Debian packages; the program includes the ring header generated from
  ``shm/layout.py`` and its compiled layout equals the table.

Root only (EAL on huge pages, namespaces); CI installs DPDK (.ci/run), where nothing may skip.
Namespaces and veths carry this process's pid and are removed in ``finally`` (tests/netns.py).
"""
from __future__ import annotations

import itertools
import json
import os
import random
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from numba import njit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine import cli  # noqa: E402
from engine import config as C  # noqa: E402
from parsers.pcap import read_capture  # noqa: E402
from shm import layout as L  # noqa: E402
from shm.kernels import CS_CURSOR, consumer_slot, peek, release  # noqa: E402
from shm.ring import Ring  # noqa: E402

SEED = ROOT / "tests" / "configs" / "seed_dpdk.yaml"
pytestmark = [pytest.mark.timeout(180)]
_names = itertools.count()


# --- fixtures and helpers ------------------------------------------------------------------------
def _program():
    from engine.producers import dpdk as D
    try:
        return D.program_path()
    except D.DpdkUnavailable as e:
        pytest.skip(f"DPDK unavailable: {e}")


@pytest.fixture
def program():
    return _program()


@pytest.fixture
def dpdk_root(program, need_root, hugetlbfs):
    """The built program, on a machine where this process may start EAL on huge pages."""
    return program


@pytest.fixture
def rings(request):
    """``make(suffix, **create_kwargs)`` creates a ring named after this test; all removed
    after (queue rings NAME.qI too)."""
    made: list[Ring] = []
    base = f"dp{os.getpid()}-{next(_names)}"

    def make(suffix="", **kw):
        kw.setdefault("hugetlbfs", "/dev/hugepages")
        r = Ring.create(base + suffix, **kw)
        made.append(r)
        return r
    make.base = base
    yield make
    for r in made:
        name = r.name
        r.close()
        try:
            Ring.remove(name)
        except Exception:
            pass


def lcore() -> int:
    """The cpu the producer polls on: the highest one this process may use."""
    return max(os.sched_getaffinity(0))


def dpdk_doc(device: str, rx_queues: int = 1, tx_queues: int = 1, mtu: int = 1500,
             pool: int = 4095, element_size: int = 2176, desc: int = 512,
             cores: list[int] | None = None) -> str:
    mask = sum(1 << c for c in (cores or [lcore()]))
    return (f'dpdk_config:\n'
            f'  eal_arguments: {{core_mask: "{mask:#x}", memory_channels: 4}}\n'
            f'  ports:\n'
            f'    - {{device_id: "{device}", rx_queues: {rx_queues}, tx_queues: {tx_queues}, '
            f'ring_descriptor_size: {desc}, mtu: {mtu}}}\n'
            f'  buffer_pools:\n'
            f'    - {{pool_name: pool0, element_count: {pool}, element_size: {element_size}}}\n')


def producer(doc: str, ring: str, netns: str | None = None, **kw):
    """A DpdkProducer for dpdk_config ``doc`` into ``ring`` (not started); ``netns``: run it
    inside that network namespace (af_packet on the namespace's end of a veth)."""
    from engine.producers import dpdk as D
    plan = D.launch_plan(C.loads(doc), ring=ring, **kw)
    if netns:
        plan.argv = ["ip", "netns", "exec", netns, *plan.argv]
    return D.DpdkProducer(plan)


def wait_for(cond, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def udp_frames(n: int, seed: int = 1, jumbo=(4000, 9000, 3000, 7000, 2500)) -> list[bytes]:
    """Ethernet/IPv4/UDP frames of random sizes 60..1514 and a few jumbo ones; byte 42.. holds
    the frame number, the rest is random."""
    rnd = random.Random(seed)
    sizes = [rnd.randrange(60, 1515) for _ in range(n - len(jumbo))]
    for k, j in enumerate(jumbo):
        sizes.insert((k + 1) * len(sizes) // (len(jumbo) + 1), j)
    out = []
    for i, size in enumerate(sizes):
        eth = bytes.fromhex("020000000002020000000001") + b"\x08\x00"
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, size - 14, i & 0xFFFF, 0, 64, 17, 0,
                         bytes([10, 9, 0, 1]), bytes([10, 9, 0, 2]))
        udp = struct.pack("!HHHH", 40000 + i % 7, 26400, size - 34, 0)
        body = struct.pack("!Q", i) + rnd.randbytes(size - 50)
        out.append(eth + ip + udp + body)
    return out


def write_pcap(path: Path, frames: list[bytes], t0: int = 1_700_000_000) -> list[int]:
    """A classic microsecond pcap; returns each frame's timestamp in ns."""
    ts = []
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, fr in enumerate(frames):
            sec, usec = t0 + i // 1000, (i * 997) % 1_000_000
            f.write(struct.pack("<IIII", sec, usec, len(fr), len(fr)) + fr)
            ts.append(sec * 1_000_000_000 + usec * 1000)
    return ts


def fnv1a(b: bytes) -> int:
    h = 0xCBF29CE484222325
    for x in b:
        h = ((h ^ x) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h - (1 << 64) if h >= 1 << 63 else h


# --- a Numba consumer, run as this file in its own process ----------------------------------
@njit(cache=True, nogil=True)
def numba_consume(ctrl, words, slot_bytes, cstate, stride, size, n, out):
    """Read n slots in place: per slot (seq - expected, wire_len, ts_ns, FNV-1a of the
    payload) into out; returns how many were read."""
    got = 0
    while got < n:
        k = peek(ctrl, cstate, 32)
        if k <= 0:
            if k < 0:
                break
            continue
        cur = cstate[CS_CURSOR]
        for j in range(k):
            s = consumer_slot(cstate, j)
            base = s * (stride // 8)
            lens = words[base + L.S_LENS]
            cap = (lens >> 32) & 0xFFFFFFFF
            if cap > size:
                cap = size                           # never trust a length field
            h = np.uint64(0xCBF29CE484222325)
            off = s * stride + L.SLOT_HEADER_BYTES
            for b in range(cap):
                h = (h ^ np.uint64(slot_bytes[off + b])) * np.uint64(0x100000001B3)
            out[got + j, 0] = words[base + L.S_SEQ] - (cur + j)      # 0 when in order
            out[got + j, 1] = lens & 0xFFFFFFFF
            out[got + j, 2] = words[base + L.S_TS]
            out[got + j, 3] = np.int64(h)
        if release(ctrl, cstate, k) < 0:
            break
        got += k
    return got


def _numba_consumer_main(ring_name: str, n: int) -> None:
    ring = Ring.open(ring_name)
    c = ring.consumer()
    out = np.zeros((max(n, 1), 4), np.int64)
    numba_consume(ring.ctrl, ring.words, ring.slot_bytes, c.cstate, ring.slot_stride,
                  ring.slot_size, 0, out)                       # compiled before "ready"
    print("ready", flush=True)
    got = numba_consume(ring.ctrl, ring.words, ring.slot_bytes, c.cstate, ring.slot_stride,
                        ring.slot_size, n, out)
    c.close()
    print(json.dumps({"got": int(got), "rows": out[:got].tolist()}), flush=True)


# --- acceptance 5: the header ------------------------------------------------------------------
def test_program_includes_the_layout_header_generated_from_the_table(program):
    header = ROOT / "shm" / "include" / "hugering_layout.h"
    assert header.read_text() == L.c_header()        # the committed header is the generated one
    # the header the build really read (ninja's dependency log) is that file, and no copy of it
    # exists elsewhere in the tree
    build = program.parent
    deps = subprocess.run(["ninja", "-C", str(build), "-t", "deps"], capture_output=True,
                          text=True, check=True).stdout
    used = {(build / line.strip()).resolve() for line in deps.splitlines()
            if line.strip().endswith((".h",)) and "hugering_" in line}
    assert header.resolve() in used and (header.parent / "hugering_ring.h").resolve() in used
    assert {p.name for p in used} >= {"hugering_layout.h", "hugering_ring.h",
                                      "hugering_layout_fields.h"}
    copies = [p for p in ROOT.rglob("hugering_layout.h")
              if ".venv" not in p.parts and "build" not in p.parts]
    assert copies == [header]
    # what the binary compiled in equals the table, field by field
    got = json.loads(subprocess.run([str(program), "--layout"], capture_output=True, text=True,
                                    check=True).stdout)
    assert got["layout_version"] == got["table_layout_version"] == L.LAYOUT_VERSION
    assert got["magic"] == L.MAGIC
    structs = {"hr_header": (L.HEADER_FIELDS, L.HEADER_BYTES),
               "hr_producer_line": (L.PRODUCER_FIELDS, L.LINE),
               "hr_producer_stats": (L.PRODUCER_STATS_FIELDS, L.LINE),
               "hr_source_stats": (L.SOURCE_STATS_FIELDS, L.LINE),
               "hr_consumer_line": (L.CONSUMER_FIELDS, L.LINE),
               "hr_slot_header": (L.SLOT_FIELDS, L.SLOT_HEADER_BYTES)}
    assert got["structs"] == {s: size for s, (_, size) in structs.items()}
    want = [[s, name, off, np.dtype(typ).itemsize]
            for s, (fields, _) in structs.items() for name, off, typ, _ in fields]
    assert got["fields"] == want
    assert got["offsets"] == {"producer": L.PRODUCER_OFFSET,
                              "producer_stats": L.PRODUCER_STATS_OFFSET,
                              "source_stats": L.SOURCE_STATS_OFFSET,
                              "consumers": L.CONSUMERS_OFFSET}


def test_missing_dpdk_names_the_debian_packages(tmp_path):
    """Without pkg-config/meson/ninja on PATH the build stops with one message naming the
    Debian packages (a real environment without the tools, not a mock)."""
    code = ("from engine.producers import dpdk as D\n"
            "try:\n    D._require_tools()\nexcept D.DpdkUnavailable as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, env={"PATH": str(tmp_path), "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    msg = out.stdout.strip()
    assert msg.startswith("building hugering-dpdk needs pkg-config (Debian package pkg-config)")
    assert "apt-get install --no-install-recommends libdpdk-dev dpdk pkg-config meson " \
           "ninja-build libpcap-dev" in msg


# --- acceptance 1: real traffic --------------------------------------------------------------
def test_pcap_replay_reaches_numba_and_python_consumers_byte_identical_in_order(
        dpdk_root, rings, tmp_path):
    frames = udp_frames(2000)
    ts = write_pcap(tmp_path / "feed.pcap", frames)
    # fewer slots than frames: the lossless + wait ring holds the producer back on both readers
    ring = rings(slots=1024, slot_size=L.MAX_SLOT_SIZE, full_policy="wait")
    nb = subprocess.Popen([sys.executable, __file__, "consume", ring.name, str(len(frames))],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert nb.stdout.readline().strip() == "ready", nb.stderr.read()
        with ring.consumer() as py:
            doc = dpdk_doc(f"net_pcap0,rx_pcap={tmp_path / 'feed.pcap'}")
            with producer(doc, ring.name) as p:
                port = p.startup["ports"][0]
                assert (port["driver"], port["timestamps"]) == ("net_pcap", "pmd_us")
                seen = []
                for batch in py.batches(max_batch=64, timeout=10.0):
                    for rec in batch:
                        cap = int(rec["cap_len"])
                        seen.append((int(rec["seq"]), bytes(rec["payload"][:cap]),
                                     int(rec["wire_len"]), int(rec["ts_ns"]), int(rec["port"]),
                                     int(rec["queue"]), int(rec["flags"])))
                    if len(seen) == len(frames):
                        break
                final = p.stop()
        out, err = nb.communicate(timeout=60)
    finally:
        if nb.poll() is None:
            nb.kill()
    assert len(seen) == len(frames)
    for i, (seq, data, wire, t, prt, q, flags) in enumerate(seen):
        assert seq == i and data == frames[i] and wire == len(frames[i]), f"frame {i}"
        assert (t, prt, q, flags) == (ts[i], port["port_id"], 0, 0), f"frame {i}"
    q = final["ports"][0]["queues"][0]
    assert q["published"] == q["received"] == len(frames) and q["dropped"] == 0
    assert q["multiseg"] == 5                   # the jumbo frames came as mbuf chains
    assert q["pmd_stamped"] == len(frames)
    res = json.loads(out.strip().splitlines()[-1])
    assert res["got"] == len(frames), err
    rows = res["rows"]
    assert [r[0] for r in rows] == [0] * len(frames)                  # in order
    assert [r[1] for r in rows] == [len(f) for f in frames]
    assert [r[2] for r in rows] == ts
    assert [r[3] for r in rows] == [fnv1a(f) for f in frames]         # byte for byte


def test_kernel_udp_through_af_packet_arrives_complete(dpdk_root, rings):
    from netns import VethPair
    n = 3000
    ring = rings(slots=8192, slot_size=2048, full_policy="wait")
    with VethPair() as v:
        doc = dpdk_doc(f"net_af_packet0,iface={v.ifname('a')},framecnt=8192")
        with ring.consumer() as c, producer(doc, ring.name, netns=v.ns["a"]) as p:
            assert p.startup["ports"][0]["driver"] == "net_af_packet"
            code = ("import socket, struct\n"
                    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                    f"for i in range({n}):\n"
                    f"    s.sendto(b'hugering' + struct.pack('!I', i) + bytes(i % 200), "
                    f"('{v.ip4('a')}', 26401))\n")
            v.python("b", code)
            got = []
            for batch in c.batches(max_batch=256, timeout=3.0):
                for rec in batch:
                    fr = bytes(rec["payload"][:int(rec["cap_len"])])
                    # IPv4 / UDP to port 26401 (the kernel also sends ARP and IPv6 ND frames)
                    if fr[12:14] == b"\x08\x00" and fr[23] == 17 and fr[36:38] == b"\x67\x21":
                        assert fr[42:50] == b"hugering"
                        i = struct.unpack("!I", fr[50:54])[0]
                        assert fr[54:] == bytes(i % 200) and len(fr) == 54 + i % 200
                        got.append(i)
                if len(got) == n:
                    break
            final = p.stop()
    assert got == list(range(n))                  # every datagram, once, in order
    assert final["ports"][0]["ipackets"] >= n


# --- acceptance 2: the seed's block ----------------------------------------------------------
def test_seed_as_written_is_refused_naming_each_key_it_lacks(capsys):
    rc = cli.main(["dpdk", str(SEED), "--ring", "nosuchring"])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    online = C._online_cpus()
    expected = []
    if not {2, 3, 4, 5, 6, 7} <= online:
        expected.append("dpdk_config.eal_arguments.core_mask: core")
    if 1 not in C._numa_nodes():
        expected.append("dpdk_config.eal_arguments.socket_mem: 4096 MB for NUMA node 1, which "
                        "this machine does not have")
    if not Path("/sys/bus/pci/devices/0000:04:00.0").exists():
        expected.append("dpdk_config.ports[0].device_id: no PCI device 0000:04:00.0")
    assert expected, "this machine has everything the seed asks for"
    assert rc == 1, err
    assert lines[0].startswith(f"hugering: error: {SEED}: ")
    for frag in expected:
        assert sum(frag in line for line in lines) == 1, (frag, err)
    assert all(line.startswith(("hugering: error: ", f"{SEED}: ")) for line in lines), err
    assert out == ""


def test_committed_adapted_seed_differs_from_the_seed_in_three_values_only():
    """tests/configs/dpdk_seed_net_null.yaml (README's example) is the seed with core_mask,
    socket_mem and device_id adapted to a 2-core, one-node machine without the NIC."""
    seed, ours = C.load(SEED).to_dict(), C.load(SEED.with_name("dpdk_seed_net_null.yaml"))
    assert ours.dpdk.eal_arguments.core_mask == "0x2" and ours.dpdk.ports[0].device_id == \
        "net_null0" and ours.dpdk.eal_arguments.socket_mem == (64,)
    d = ours.to_dict()
    d["dpdk_config"]["eal_arguments"].update(core_mask="0xFC", socket_mem="4096,4096")
    d["dpdk_config"]["ports"][0]["device_id"] = "0000:04:00.0"
    assert d == seed
    if 1 in C._online_cpus():      # what the seed lacked here, this file does not
        assert not [x for x in C.machine_problems(ours)
                    if ".core_mask:" in x or "NUMA node" in x or ".device_id:" in x]


def adapted_seed(device: str, core: int) -> str:
    """The seed's block with exactly core_mask, socket_mem and device_id changed."""
    text = SEED.read_text()
    new = (text.replace('"0xFC"', f'"{1 << core:#x}"')
               .replace('"4096,4096"', '"64"')
               .replace('"0000:04:00.0"', f'"{device}"'))
    changed = [(a, b) for a, b in zip(text.splitlines(), new.splitlines()) if a != b]
    assert [a.split(":")[0].strip() for a, _ in changed] == ["core_mask", "socket_mem",
                                                             "- device_id"]
    return new


def test_seed_adapted_to_this_machine_takes_effect(dpdk_root, rings, tmp_path):
    """core_mask -> one allowed core, socket_mem -> 64 MB on node 0, device_id -> an af_packet
    vdev with two queue pairs on a veth whose MTU is 1400.  Everything else as the seed wrote
    it.  ``hugering check`` and ``hugering dpdk`` run in the veth's namespace (where the
    interface is); the startup report, the rings, the interface and the final report show each
    field in effect."""
    from netns import VethPair
    core = lcore()
    for q in range(2):
        rings(f".q{q}", slots=4096, slot_size=2048, mode="lossy")
    base = rings.base
    with VethPair(mtu=1400) as v:
        f = tmp_path / "seed_adapted.yaml"
        f.write_text(adapted_seed(f"net_af_packet0,iface={v.ifname('a')},qpairs=2,"
                                  "blocksz=28672,framesz=1792", core))
        chk = v.run("a", [sys.executable, "-m", "engine.cli", "check", str(f)], check=False)
        assert chk.returncode == 0 and "error" not in chk.stderr, chk.stderr
        assert not [w for w in chk.stderr.splitlines()
                    if "core_mask: core" in w or "eal_arguments.socket_mem" in w
                    or ".device_id" in w]
        run = v.popen("a", [sys.executable, "-m", "engine.cli", "dpdk", str(f), "--ring", base,
                            "--json"], text=True, cwd=ROOT)
        seen = []
        while not any(f"queue 1 -> ring {base}.q1" in x for x in seen):   # the startup report
            line = run.stderr.readline()
            assert line or run.poll() is None, "\n".join(seen)
            seen.append(line)
        mtu_now = v.run("a", ["cat", f"/sys/class/net/{v.ifname('a')}/mtu"]).stdout.strip()
        code = ("import socket\n"
                "for sport in range(30000, 30064):\n"
                "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                "    s.bind(('', sport))\n"
                "    for _ in range(5):\n"
                f"        s.sendto(b'q' * 32, ('{v.ip4('a')}', 26402))\n")
        v.python("b", code)
        qrings = [Ring.open(f"{base}.q{q}") for q in range(2)]
        try:
            wait_for(lambda: all(r.info()["producer"]["published"] > 0 for r in qrings),
                     what="both queues' rings to receive")
            wait_for(lambda: all(r.info()["source"]["src_packets"] > 0 for r in qrings),
                     what="the port statistics in both rings")
            src = [r.info()["source"] for r in qrings]
        finally:
            for r in qrings:
                r.close()
        run.send_signal(signal.SIGTERM)
        out, err = run.communicate(timeout=30)
    assert run.returncode == cli.EXIT_INTERRUPTED, err
    doc = json.loads(out)
    s, final = doc["startup"], doc["final"]
    e = s["eal"]
    assert e["lcores"] == [core] and e["main_lcore"] == core                 # core_mask
    assert e["memory_channels"] == 4                                         # memory_channels
    port, = s["ports"]
    assert (port["rx_queues"], port["tx_queues"]) == (2, 2)                  # rx/tx_queues
    assert [q["ring"] for q in port["queues"]] == [f"{base}.q0", f"{base}.q1"]
    assert all((q["lcore"], q["cpu"]) == (core, core) for q in port["queues"])
    assert port["rx_desc"] == port["tx_desc"] == 1024                        # descriptors
    assert port["mtu"] == 1500 and port["mtu_set"] == "pmd" and mtu_now == "1500"   # mtu
    pool, = s["pools"]                                                       # buffer_pools
    assert (pool["name"], pool["size"], pool["data_room"]) == ("packet_mempool", 262143, 2048)
    assert pool["element_bytes"] == 128 + 2048                # struct rte_mbuf + element_size
    assert all(x["pool_size"] == 262143 for x in src)
    fin = final["ports"][0]
    assert all(q["published"] > 0 for q in fin["queues"])     # the kernel's fanout spread flows
    assert sum(q["published"] for q in fin["queues"]) >= 64 * 5
    assert final["eal_cleanup"] == 0
    if doc["memory"] == "no-huge":                             # said why, on stderr
        assert any("EAL runs on ordinary pages" in x for x in seen)


def test_memory_channels_change_the_mempool_object_spread(dpdk_root, rings):
    """-n is not only recorded: DPDK pads mempool objects so consecutive ones start on other
    memory channels (2240 B = 35 lines is already odd for 4 channels; 5 channels pad it)."""
    ring = rings(slots=64, slot_size=64, mode="lossy")
    sizes = {}
    for channels in (4, 5):
        doc = dpdk_doc("net_null0", element_size=2048).replace("memory_channels: 4",
                                                               f"memory_channels: {channels}")
        with producer(doc, ring.name) as p:
            assert p.startup["eal"]["memory_channels"] == channels
            sizes[channels] = p.startup["pools"][0]["object_bytes"]
    assert sizes[4] == 2240 and sizes[5] != 2240 and (sizes[5] // 64) % 5 != 0


# --- acceptance 3: stopping ------------------------------------------------------------------
def test_sigterm_stops_within_a_second_beside_a_second_instance(dpdk_root, rings, tmp_path):
    a, b = rings("a", slots=1024, slot_size=64, mode="lossy"), rings("b", slots=1024,
                                                                     slot_size=64, mode="lossy")
    cpus = sorted(os.sched_getaffinity(0))
    docs = []
    for i, ring in enumerate((a, b)):
        f = tmp_path / f"{ring.name}.yaml"
        f.write_text(dpdk_doc("net_null0", cores=[cpus[-1 - i % len(cpus)]]))
        docs.append(f)
    procs = [subprocess.Popen([sys.executable, "-m", "engine.cli", "dpdk", str(f), "--ring",
                               r.name, "--json"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT)
             for f, r in zip(docs, (a, b))]
    try:
        for r in (a, b):
            wait_for(lambda: r.info()["producer"]["published"] > 1000, what=f"{r.name} fills")
        pa = a.info()["producer"]["pid"]
        prefix = f"/var/run/dpdk"
        dirs = {d for d in os.listdir(prefix) if d.startswith("hugering-")}
        t0 = time.monotonic()
        procs[0].send_signal(signal.SIGTERM)
        out, err = procs[0].communicate(timeout=10)
        stop_s = time.monotonic() - t0
        assert procs[0].returncode == cli.EXIT_INTERRUPTED, err
        doc = json.loads(out)
        assert stop_s < 1.0, stop_s                      # the whole CLI process, not just EAL
        assert doc["final"]["stopped_by"] == "SIGTERM" and doc["final"]["eal_cleanup"] == 0
        assert doc["stop_s"] < 1.0
        assert not os.path.exists(f"/proc/{pa}")
        gone = dirs - {d for d in os.listdir(prefix)}
        assert doc["startup"]["eal"]["runtime_dir"].rsplit("/", 1)[1] in gone   # cleaned up
        assert a.info()["producer"]["pid"] == 0          # detached from its ring
        n = b.info()["producer"]["published"]            # the other instance runs on
        wait_for(lambda: b.info()["producer"]["published"] > n + 1000, what="b still running")
        assert doc["startup"]["eal"]["runtime_dir"] != ""
    finally:
        for pr in procs:
            if pr.poll() is None:
                pr.send_signal(signal.SIGTERM)
                pr.communicate(timeout=10)
    assert procs[1].returncode == cli.EXIT_INTERRUPTED


def test_kill_9_then_a_restart_resumes_the_ring_and_sweeps_the_dead_runs_directory(
        dpdk_root, rings, tmp_path):
    """kill -9 of the DPDK program: the CLI says how it died; EAL's runtime directory of that
    run is left (nothing could remove it) and the next start removes it and says so; the new
    producer attaches to the same ring and publishes on from the cursor."""
    r = rings("k", slots=1024, slot_size=64, mode="lossy")
    f = tmp_path / "k.yaml"
    f.write_text(dpdk_doc("net_null0"))
    cmd = [sys.executable, "-m", "engine.cli", "dpdk", str(f), "--ring", r.name, "--json"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=ROOT)
    try:
        wait_for(lambda: r.info()["producer"]["published"] > 1000, what="the ring fills")
        pid = r.info()["producer"]["pid"]
        os.kill(pid, signal.SIGKILL)
        out, err = first.communicate(timeout=20)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == cli.EXIT_RUNTIME and "exited with status -9" in err, err
    runtime = json.loads(out.splitlines()[0])["startup"]["eal"]["runtime_dir"]
    assert os.path.isdir(runtime)                    # what a killed run leaves behind
    cut = r.info()["producer"]["cursor"]
    p = subprocess.run(cmd[:-1] + ["--duration", "1"], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr
    name = os.path.basename(runtime)
    assert f"removed the EAL runtime directory of 1 killed run ({name})" in p.stderr, p.stderr
    assert not os.path.exists(runtime)
    info = r.info()["producer"]
    assert info["pid"] == 0 and info["cursor"] > cut     # resumed on the same ring, detached


# --- observability and overload -----------------------------------------------------------------
def test_nic_drops_and_pool_counts_reach_the_ring(dpdk_root, rings, tmp_path):
    """Scenario A: a lossless + wait ring that nobody drains stops the producer polling; the
    kernel then drops at libpcap's socket on the veth (net_pcap rx_iface) and DPDK reports them
    as imissed -- nic_drops in the ring.  Scenario B's counter: pool_in_use follows the mbufs
    net_pcap holds (infinite_rx keeps a copy of every packet of its file)."""
    from netns import VethPair
    ring = rings(slots=64, slot_size=2048, full_policy="wait", consumer_timeout=60.0)
    with VethPair() as v, ring.consumer():           # joined, never releases
        doc = dpdk_doc(f"net_pcap0,rx_iface={v.ifname('a')}")
        with producer(doc, ring.name, netns=v.ns["a"], stats_ms=100) as p:
            code = ("import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                    f"for i in range(100000): s.sendto(b'x' * 64, ('{v.ip4('a')}', 9999))\n")
            v.python("b", code, timeout=60)
            info = wait_for(lambda: (lambda i: i if i["producer"]["nic_drops"] > 1000 else None)(
                ring.info()), what="NIC drops in the ring")
            final = p.stop()
    assert info["producer"]["published"] == 64 and info["producer"]["dropped_full"] == 0
    assert info["producer"]["nic_drops"] == info["source"]["src_missed"]
    assert final["ports"][0]["imissed"] >= info["source"]["src_missed"] > 1000
    assert info["source"]["pool_size"] == 4095

    frames = udp_frames(1500, jumbo=())
    write_pcap(tmp_path / "loop.pcap", frames)
    lossy = rings("l", slots=1024, slot_size=2048, mode="lossy")
    doc = dpdk_doc(f"net_pcap0,rx_pcap={tmp_path / 'loop.pcap'},infinite_rx=1", pool=4095)
    with producer(doc, lossy.name, stats_ms=100) as p:
        assert p.startup["pools"][0]["in_use"] >= 1500     # the file, preloaded into mbufs
        src = wait_for(lambda: (lambda s: s if s["src_packets"] > 10 * 1500 else None)(
            lossy.info()["source"]), what="port statistics")
        final = p.stop()
    assert src["pool_size"] == 4095 and 1500 <= src["pool_in_use"] <= 1500 + 2 * 256 + 32
    assert final["ports"][0]["queues"][0]["pmd_stamped"] == 0   # infinite_rx: no timestamps
    assert src["src_missed"] == src["src_nombuf"] == src["src_errors"] == 0


def test_overload_rules_match_the_python_producers(dpdk_root, rings):
    """The same rules as every hugering producer (hr_reserve is the C twin of the kernels):
    lossless + drop counts what does not fit; lossless + wait publishes nothing more until the
    consumer releases; a consumer that makes no progress for consumer_timeout is evicted; lossy
    never waits and the lapped consumer counts its loss."""
    doc = dpdk_doc("net_null0")
    drop = rings("d", slots=256, slot_size=64, full_policy="drop", consumer_timeout=0.5)
    c = drop.consumer()
    with producer(doc, drop.name, stats_ms=100):
        wait_for(lambda: drop.info()["producer"]["evictions"] >= 1, what="the eviction")
        info = drop.info()["producer"]
        assert info["dropped_full"] > 0                      # full: dropped and counted first
        assert int(c.line["state"]) == L.CONSUMER_EVICTED
        assert c.poll(32).size == 0 and int(c.line["lost"]) > 0     # it rejoins, counting
    c.close()

    wait = rings("w", slots=256, slot_size=64, full_policy="wait", consumer_timeout=60.0)
    with wait.consumer() as c, producer(doc, wait.name):
        wait_for(lambda: wait.info()["producer"]["published"] == 256, what="a full ring")
        time.sleep(0.3)
        info = wait.info()["producer"]
        assert info["published"] == 256 and info["dropped_full"] == 0 and info["full_waits"] > 0
        batch = c.poll(100)
        assert [int(x) for x in batch["seq"]] == list(range(100))
        c.release()
        wait_for(lambda: wait.info()["producer"]["published"] == 356, what="100 more")

    lossy = rings("l", slots=256, slot_size=64, mode="lossy")
    with lossy.consumer() as c, producer(doc, lossy.name):
        wait_for(lambda: lossy.info()["producer"]["published"] > 10_000, what="laps")
        got = c.poll(32)
        assert got.size > 0 and int(c.line["lost"]) > 0
        assert lossy.info()["producer"]["dropped_full"] == 0
        # net_null gives no timestamps: the producer's burst clock (TSC -> CLOCK_REALTIME)
        assert all(abs(int(t) - time.time_ns()) < 2_000_000_000 for t in got["ts_ns"])


def test_dead_consumer_is_evicted(dpdk_root, rings):
    ring = rings(slots=256, slot_size=64, full_policy="wait", consumer_timeout=60.0)
    code = ("import sys, time\nsys.path.insert(0, %r)\nfrom shm.ring import Ring\n"
            "c = Ring.open(%r).consumer()\nprint('joined', flush=True)\ntime.sleep(60)\n"
            % (str(ROOT), ring.name))
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "joined"
        with producer(dpdk_doc("net_null0"), ring.name):
            wait_for(lambda: ring.info()["producer"]["published"] == 256, what="a full ring")
            holder.kill()
            holder.wait()
            wait_for(lambda: ring.info()["producer"]["evictions"] == 1, what="the eviction")
            wait_for(lambda: ring.info()["producer"]["published"] > 10_000, what="free again")
    finally:
        if holder.poll() is None:
            holder.kill()


def test_tx_ring_drains_into_the_port(dpdk_root, rings, tmp_path):
    rx = rings("rx", slots=64, slot_size=2048, mode="lossy")
    tx = rings("tx", slots=256, slot_size=2048, full_policy="wait")
    frames = udp_frames(600, seed=3, jumbo=())
    doc = dpdk_doc(f"net_pcap0,tx_pcap={tmp_path / 'out.pcap'}")
    from engine.producers import dpdk as D
    plan = D.launch_plan(C.loads(doc), ring=rx.name, tx_ring=tx.name)
    with D.DpdkProducer(plan) as p:
        assert p.startup["ports"][0]["tx_ring"] == tx.name
        with tx.producer() as pub:
            assert pub.publish(frames, timeout=20.0) == len(frames)
        wait_for(lambda: tx.info()["consumers"][0]["delivered"] == len(frames),
                 what="the TX ring drained")
        final = p.stop()
    assert final["ports"][0]["tx"] == {"sent": 600, "dropped": 0, "too_long": 0, "nombuf": 0,
                                       "lost": 0}
    assert final["ports"][0]["opackets"] == 600
    cap = read_capture(tmp_path / "out.pcap", slot_size=2048)
    assert [bytes(r["payload"][:int(r["cap_len"])]) for r in cap.slots[:cap.count]] == frames


# --- hugering run ------------------------------------------------------------------------------
def test_hugering_run_starts_a_dpdk_producer(dpdk_root, tmp_path):
    frames = udp_frames(400, seed=5, jumbo=())
    write_pcap(tmp_path / "feed.pcap", frames)
    name = f"dr{os.getpid()}"
    (tmp_path / "deploy.yaml").write_text(
        dpdk_doc("net_pcap0,rx_pcap=feed.pcap") +
        "hugering:\n"
        f"  rings:\n    - {{name: {name}, slots: 1024, backing: hugetlbfs}}\n"
        f"  producers:\n    - {{kind: dpdk, ring: {name}, cpu: {lcore()}}}\n"
        f"  consumers:\n    - {{name: count, ring: {name}, count: {len(frames)}}}\n")
    run = subprocess.Popen([sys.executable, "-m", "engine.cli", "run",
                            str(tmp_path / "deploy.yaml"), "--json"], cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        # the net_pcap file is finite but the port is not: stop the run once the consumer has
        # counted every frame and left
        deadline = time.monotonic() + 150
        err = []
        while True:
            line = run.stderr.readline()
            err.append(line)
            assert line or run.poll() is None, "".join(err)
            if "consumer count (pid" in line and "exited with status 0" in line:
                break
            assert time.monotonic() < deadline, "".join(err)
        run.send_signal(signal.SIGTERM)
        out, rest = run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, "".join(err) + rest
    rep = json.loads(out)
    kids = {c["name"]: c for c in rep["children"]}
    assert set(kids) == {"count", f"dpdk-{name}"}
    assert kids["count"]["final"]["received"] == len(frames)
    prod = kids[f"dpdk-{name}"]["final"]
    assert prod["published"] == len(frames) and prod["final"]["eal_cleanup"] == 0
    assert prod["startup"]["ports"][0]["queues"][0]["cpu"] == lcore()


# --- the benchmark -----------------------------------------------------------------------------
def test_bench_dpdk_quick(dpdk_root):
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "bench_dpdk.py"), "--quick",
                          "--json"], capture_output=True, text=True, timeout=170, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout)
    for key in ("producer_mpps", "consumer_mpps", "consumer_loss", "testpmd_mpps",
                "ratio_vs_testpmd"):
        assert isinstance(res[key], (int, float)), key
    assert res["producer_mpps"] > 0 and res["testpmd_mpps"] > 0
    assert res["consumer_loss"] == 0
    assert set(res["cases"]) == {"net_null", "net_pcap"}


if __name__ == "__main__":
    if sys.argv[1] == "consume":
        _numba_consumer_main(sys.argv[2], int(sys.argv[3]))
