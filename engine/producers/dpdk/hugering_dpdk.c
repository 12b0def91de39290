/* hugering-dpdk — the DPDK producer: every RX queue of every port into its own hugering ring.
 *
 *   hugering-dpdk EAL-ARGS -- --pool I,NAME,COUNT,ELEMENT_SIZE ...
 *                             --port I,DEVICE,RXQ,TXQ,DESC,MTU,POOL,RING[,TXRING] ...
 *                             [--queue-lcores L,L,...] [--hugetlbfs DIR] [--stats-ms N]
 *                             [--duration S]
 *   hugering-dpdk --layout        the ring layout compiled in (JSON), no EAL
 *
 * engine/producers/dpdk.py builds the command line from dpdk_config (validated there; I is the
 * index of the YAML entry, so an error here names the same key, dpdk_config.ports[I].mtu).
 * DEVICE is what rte_eth_dev_get_port_by_name knows: a PCI address (allowed with -a) or a vdev
 * name (net_pcap0 for --vdev=net_pcap0,rx_pcap=F).  RING names the port's rings as
 * engine.config.ring_names does: RING for one RX queue, RING.q0 .. RING.q{N-1} for N.  The
 * rings exist already (the Python side creates or checks them); this program attaches to each
 * as its single producer, and to TXRING (lossless) as a consumer.
 *
 * Data path, per RX queue, on the lcore it is assigned to (--queue-lcores, else round robin
 * over the EAL lcores, the main lcore first; an lcore left without a queue sleeps):
 *
 *   rte_eth_rx_burst(32) ─► hr_reserve ─► copy each mbuf (all segments) into its slot
 *     ─► hr_submit: one release store of the cursor per burst ─► rte_pktmbuf_free_bulk
 *
 * Overload (the ring's, decided at its creation, as every hugering producer): lossless + drop
 * publishes what fits and counts the rest (hr_count_dropped); lossless + wait reserves first
 * and asks the NIC for no more than fits, so the packets stay in the NIC's descriptors and the
 * NIC drops and counts them (imissed -> nic_drops) -- the producer never holds mbufs while it
 * waits; lossy never waits.  A dead or stuck consumer is evicted by hr_reserve's reaper, the
 * same code as the Numba producers.
 *
 * Timestamps: the PMD's RX timestamp (mbuf dynamic field) when the mbuf carries the flag --
 * net_pcap fills it in microseconds without advertising the offload, a NIC with
 * RTE_ETH_RX_OFFLOAD_TIMESTAMP in device clock ticks (calibrated against CLOCK_REALTIME at
 * start) -- otherwise one clock read per burst (the TSC, as CLOCK_REALTIME: burst_clock), which
 * is also the heartbeat.
 *
 * Transmit: a port with TXRING drains it into TX queue 0 on the lcore of its RX queue 0: a
 * burst of slots, copied into mbufs of the port's pool, rte_eth_tx_burst; what the NIC did not
 * take is freed and counted (tx_dropped), never retried.
 *
 * Statistics: once every --stats-ms (default 1000) the main lcore reads rte_eth_stats_get and
 * the mempool counts into each queue's ring: source_stats (src_packets = the queue's own count,
 * q_ipackets; src_missed / src_errors / src_nombuf = the port's imissed / ierrors / rx_nombuf,
 * port-wide because the NIC counts them per port; pool_size / pool_in_use of the port's pool;
 * tx_dropped) and producer_stats.nic_drops = imissed + ierrors + rx_nombuf: every packet the
 * port lost before it reached a ring.
 *
 * Output: stdout carries JSON lines only -- {"event": "startup", ...} once every lcore polls
 * (what EAL, the ports and the pools really got), {"event": "final", ...} at exit.  EAL's log
 * and errors go to stderr.  SIGINT / SIGTERM (or --duration) stop every lcore; then the ports
 * are stopped and closed, the pools freed, rte_eal_cleanup called and the EAL runtime directory
 * of this run's file prefix removed.  Exit 0 stopped cleanly, 1 a setup error, 2 usage.
 */
#include "hugering_ring.h" /* first: it sets the feature macros it needs */
#include "hugering_layout_fields.h"

#include <dirent.h>
#include <inttypes.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>

#include <rte_common.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_mbuf_dyn.h>
#include <rte_mbuf_pool_ops.h>
#include <rte_memcpy.h>
#include <rte_memory.h>
#include <rte_mempool.h>
#include <rte_prefetch.h>
#include <rte_version.h>

#define BURST 32             /* rx_burst size: DPDK's customary vector width */
#define MAX_PORTS 32
#define MAX_POOLS 32
#define MAX_RXQ 1024         /* RX queues over all ports */
#define IDLE_HEARTBEAT 1024  /* empty polls between idle heartbeats (kernels.HEARTBEAT_EVERY) */
#define STATS_CHECK 64       /* main-lcore loop passes between two looks at the TSC */
#define ANCHOR_MS 100        /* the burst clock re-reads CLOCK_REALTIME this often */
#define FULL_PAUSES 32       /* lossless + wait, ring full: pauses before asking again */

enum ts_mode { TS_CLOCK = 0, TS_PCAP_US = 1, TS_NIC_TICKS = 2 };
static const char *const TS_NAMES[] = {"clock", "pmd_us", "pmd_nic_clock"};

struct pool_cfg {
    int index;                /* dpdk_config.buffer_pools[index] */
    char name[RTE_MEMPOOL_NAMESIZE];
    unsigned count;
    unsigned element_size;    /* data room, headroom included */
    struct rte_mempool *mp;
};

struct txq;

struct port_cfg {
    int index;                /* dpdk_config.ports[index] */
    char device[RTE_DEV_NAME_MAX_LEN];
    uint16_t port_id;
    uint16_t rx_queues, tx_queues, desc, mtu;
    char pool_name[RTE_MEMPOOL_NAMESIZE];
    char ring[256];
    char tx_ring[256];
    struct pool_cfg *pool;
    bool started;
    /* what the port got (startup report) */
    uint16_t rx_desc, tx_desc;
    int32_t rx_desc_pmd;      /* rte_eth_rx_queue_info_get's nb_desc, -1 when not reported */
    uint16_t mtu_now;
    int mtu_set_rc;           /* rte_eth_dev_set_mtu's result (-ENOTSUP: the PMD has no op) */
    uint64_t rx_offloads;
    enum ts_mode ts;
    /* TS_NIC_TICKS: ns = base_ns + ((ticks - base_ticks) * mult) >> 32 */
    uint64_t base_ticks, mult;
    int64_t base_ns;
    struct txq *tx;
    struct rte_eth_dev_info info;
};

/* CLOCK_REALTIME from the TSC: ns = base_ns + ((tsc - base_tsc) * mult >> 32), re-anchored
 * every ANCHOR_MS with one clock_gettime.  The vDSO call was 7% of the loop at 100 Mpps here
 * (perf), the TSC read a third of that; between anchors the error is tsc_hz's error over
 * 100 ms (EAL's calibration; under a microsecond for an error under 10 ppm). */
struct burst_clock {
    uint64_t base_tsc, mult, next_anchor, anchor_every;
    int64_t base_ns;
};

static void clock_anchor(struct burst_clock *c, uint64_t tsc)
{
    c->base_ns = hr_now_ns();
    c->base_tsc = rte_rdtsc();
    c->next_anchor = (tsc > c->base_tsc ? tsc : c->base_tsc) + c->anchor_every;
}

static void clock_init(struct burst_clock *c)
{
    uint64_t hz = rte_get_tsc_hz();
    c->mult = (uint64_t)(((unsigned __int128)1000000000ULL << 32) / hz);
    c->anchor_every = hz / 1000 * ANCHOR_MS;
    clock_anchor(c, 0);
}

static inline int64_t clock_now(struct burst_clock *c)
{
    uint64_t tsc = rte_rdtsc();
    if (unlikely(tsc >= c->next_anchor))
        clock_anchor(c, tsc);
    return c->base_ns + (int64_t)(((unsigned __int128)(tsc - c->base_tsc) * c->mult) >> 32);
}

struct rxq {
    struct port_cfg *port;
    uint16_t queue;
    unsigned lcore;
    int cpu;                  /* sched_getcpu() of the lcore's thread, once it runs */
    char name[300];
    hr_ring ring;
    hr_producer prod;
    bool mapped, attached;
    bool wait_full;           /* lossless + wait: reserve before rx_burst */
    int64_t min_free;         /* wait: fewer free slots than this, pause before polling */
    struct burst_clock clock; /* private to the lcore polling this queue */
    uint64_t empty_polls;
    /* private counters (final report) */
    uint64_t received, published, dropped, truncated, multiseg, pmd_stamped, full_polls;
} __rte_cache_aligned;

struct txq {
    struct port_cfg *port;
    hr_ring ring;
    hr_consumer cons;
    bool mapped, joined;
    uint64_t sent, dropped, too_long, nombuf, lost;
} __rte_cache_aligned;

struct lcore_work {
    struct rxq *rx[MAX_RXQ];
    unsigned n_rx;
    struct txq *tx[MAX_PORTS];
    unsigned n_tx;
};

/* --- configuration (filled from argv, read-only once lcores run) -------------------------- */
static struct pool_cfg pools[MAX_POOLS];
static unsigned n_pools;
static struct port_cfg ports[MAX_PORTS];
static unsigned n_ports;
static struct rxq rxqs[MAX_RXQ];
static unsigned n_rxq;
static struct txq txqs[MAX_PORTS];
static unsigned n_txq;
static struct lcore_work work[RTE_MAX_LCORE];
static int queue_lcores[MAX_RXQ];
static unsigned n_queue_lcores;
static const char *hugetlbfs_dir;
static uint64_t stats_ms = 1000;
static double duration_s;
static int ts_offset = -1;    /* the RX timestamp dynamic field, and its flag */
static uint64_t ts_flag;
static char runtime_dir[PATH_MAX];

/* Set by the signal handler (or --duration), polled by every lcore loop: a plain load of a
 * volatile is enough on x86-64 and keeps the loop's only shared read off any ring line. */
static volatile sig_atomic_t stop_requested;
static volatile int stop_signal;
static unsigned lcores_running; /* lcores that have recorded their cpu (__atomic) */

static void on_signal(int sig)
{
    stop_signal = sig;
    stop_requested = 1;
}

/* --- errors -------------------------------------------------------------------------------- */
static void teardown(void);

static void __attribute__((noreturn, format(printf, 2, 3))) die(int code, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "hugering-dpdk: error: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    fflush(stderr);
    teardown();
    exit(code);
}

/* --- JSON output (stdout: one object per line) ------------------------------------------- */
static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

/* --- --layout: what this binary compiled in ------------------------------------------------ */
static int print_layout(void)
{
    printf("{\"layout_version\": %u, \"table_layout_version\": %d, \"magic\": %" PRIu64
           ", \"structs\": {", HR_LAYOUT_VERSION, HR_TABLE_LAYOUT_VERSION, (uint64_t)HR_MAGIC);
    const char *sep = "";
#define HR_PRINT_STRUCT(s) printf("%s\"" #s "\": %zu", sep, sizeof(s)), sep = ", ";
    HR_LAYOUT_STRUCTS(HR_PRINT_STRUCT)
    printf("}, \"offsets\": {\"producer\": %d, \"producer_stats\": %d, \"source_stats\": %d, "
           "\"consumers\": %d}, \"fields\": [", HR_PRODUCER_OFFSET, HR_PRODUCER_STATS_OFFSET,
           HR_SOURCE_STATS_OFFSET, HR_CONSUMERS_OFFSET);
    sep = "";
#define HR_PRINT_FIELD(s, f)                                                               \
    printf("%s[\"" #s "\", \"" #f "\", %zu, %zu]", sep, offsetof(s, f), sizeof(((s *)0)->f)), \
        sep = ", ";
    HR_LAYOUT_FIELDS(HR_PRINT_FIELD)
    printf("]}\n");
    return 0;
}

/* --- argument parsing ---------------------------------------------------------------------- */
static int split(char *s, char **out, int max)
{
    int n = 0;
    for (char *tok = strsep(&s, ","); tok && n < max; tok = strsep(&s, ","))
        out[n++] = tok;
    return s ? -1 : n; /* more fields than max */
}

static long number(const char *text, long lo, long hi, const char *what)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 0);
    if (errno || end == text || *end || v < lo || v > hi)
        die(2, "%s: expected a whole number from %ld to %ld, got '%s'", what, lo, hi, text);
    return v;
}

static void copy_name(char *dst, size_t cap, const char *src, const char *what)
{
    if (!*src || strlen(src) >= cap)
        die(2, "%s: expected 1..%zu characters, got '%s'", what, cap - 1, src);
    strcpy(dst, src);
}

static void parse_app_args(int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        const char *opt = argv[i];
        if (i + 1 >= argc)
            die(2, "%s: missing its value", opt);
        char *val = argv[++i];
        char *f[10];
        char what[96];
        if (!strcmp(opt, "--pool")) {
            if (n_pools == MAX_POOLS)
                die(2, "--pool: at most %d pools", MAX_POOLS);
            if (split(val, f, 4) != 4)
                die(2, "--pool: expected INDEX,NAME,COUNT,ELEMENT_SIZE");
            struct pool_cfg *p = &pools[n_pools++];
            p->index = (int)number(f[0], 0, 1 << 20, "--pool index");
            snprintf(what, sizeof what, "dpdk_config.buffer_pools[%d]", p->index);
            copy_name(p->name, sizeof p->name, f[1], what);
            p->count = (unsigned)number(f[2], 1, UINT32_MAX, what);
            p->element_size = (unsigned)number(f[3], RTE_PKTMBUF_HEADROOM + 1, UINT16_MAX, what);
        } else if (!strcmp(opt, "--port")) {
            if (n_ports == MAX_PORTS)
                die(2, "--port: at most %d ports", MAX_PORTS);
            int n = split(val, f, 9);
            if (n != 8 && n != 9)
                die(2, "--port: expected INDEX,DEVICE,RXQ,TXQ,DESC,MTU,POOL,RING[,TXRING]");
            struct port_cfg *p = &ports[n_ports++];
            p->index = (int)number(f[0], 0, 1 << 20, "--port index");
            snprintf(what, sizeof what, "dpdk_config.ports[%d]", p->index);
            copy_name(p->device, sizeof p->device, f[1], what);
            p->rx_queues = (uint16_t)number(f[2], 1, RTE_MAX_QUEUES_PER_PORT, what);
            p->tx_queues = (uint16_t)number(f[3], 0, RTE_MAX_QUEUES_PER_PORT, what);
            p->desc = (uint16_t)number(f[4], 1, UINT16_MAX, what);
            p->mtu = (uint16_t)number(f[5], RTE_ETHER_MIN_MTU, UINT16_MAX, what);
            copy_name(p->pool_name, sizeof p->pool_name, f[6], what);
            copy_name(p->ring, sizeof p->ring, f[7], what);
            if (n == 9 && *f[8])
                copy_name(p->tx_ring, sizeof p->tx_ring, f[8], what);
        } else if (!strcmp(opt, "--queue-lcores")) {
            char *s = val;
            for (char *tok = strsep(&s, ","); tok; tok = strsep(&s, ",")) {
                if (n_queue_lcores == MAX_RXQ)
                    die(2, "--queue-lcores: at most %d", MAX_RXQ);
                queue_lcores[n_queue_lcores++] =
                    (int)number(tok, 0, RTE_MAX_LCORE - 1, "--queue-lcores");
            }
        } else if (!strcmp(opt, "--hugetlbfs")) {
            hugetlbfs_dir = val;
        } else if (!strcmp(opt, "--stats-ms")) {
            stats_ms = (uint64_t)number(val, 1, 3600000, "--stats-ms");
        } else if (!strcmp(opt, "--duration")) {
            char *end;
            duration_s = strtod(val, &end);
            if (*end || !(duration_s > 0))
                die(2, "--duration: expected seconds > 0, got '%s'", val);
        } else {
            die(2, "unknown option %s", opt);
        }
    }
    if (n_ports == 0)
        die(2, "no --port given");
}

/* --- setup --------------------------------------------------------------------------------- */
static void create_pools(void)
{
    for (unsigned i = 0; i < n_pools; i++) {
        struct pool_cfg *p = &pools[i];
        /* per-lcore cache: DPDK's rule is cache <= count / 1.5 and <= 512; 256 keeps a burst
         * of 32 well inside it without hoarding much of a small pool */
        unsigned cache = p->count / 2 < 256 ? p->count / 2 : 256;
        /* rte_pktmbuf_pool_create, spelled out for one flag: on ordinary 4 KiB pages (--no-huge)
         * mempool keeps each object inside one page so it is IOVA-contiguous, which fits one
         * 2 KiB mbuf per page and doubles the memory.  With IOVA = VA (vfio, or a vdev that does
         * no DMA) virtual contiguity is IOVA contiguity, so objects may cross pages. */
        unsigned flags = 0;
        if (!rte_eal_has_hugepages() && rte_eal_iova_mode() == RTE_IOVA_VA)
            flags |= RTE_MEMPOOL_F_NO_IOVA_CONTIG;
        struct rte_pktmbuf_pool_private priv = {
            .mbuf_data_room_size = (uint16_t)p->element_size, .mbuf_priv_size = 0};
        p->mp = rte_mempool_create_empty(p->name, p->count,
                                         (unsigned)sizeof(struct rte_mbuf) + p->element_size,
                                         cache, sizeof priv, (int)rte_socket_id(), flags);
        int rc = p->mp ? rte_mempool_set_ops_byname(p->mp, rte_mbuf_best_mempool_ops(), NULL)
                       : -rte_errno;
        if (rc == 0) {
            rte_pktmbuf_pool_init(p->mp, &priv);
            rc = rte_mempool_populate_default(p->mp);
            rc = rc < 0 ? rc : 0;
        }
        if (rc != 0)
            die(1, "dpdk_config.buffer_pools[%d]: cannot create pool '%s' of %u x %u B: %s "
                   "(the memory EAL was given -- socket_mem, or -m without huge pages -- must "
                   "hold the pools)", p->index, p->name, p->count, p->element_size,
                rte_strerror(-rc));
        rte_mempool_obj_iter(p->mp, rte_pktmbuf_init, NULL);
    }
}

static void open_rings(struct port_cfg *pt)
{
    char err[512];
    for (uint16_t q = 0; q < pt->rx_queues; q++) {
        if (n_rxq == MAX_RXQ)
            die(1, "more than %d RX queues in all", MAX_RXQ);
        struct rxq *r = &rxqs[n_rxq++];
        r->port = pt;
        r->queue = q;
        r->cpu = -1;
        if (pt->rx_queues == 1)
            snprintf(r->name, sizeof r->name, "%s", pt->ring);
        else
            snprintf(r->name, sizeof r->name, "%s.q%u", pt->ring, q);
        if (hr_map_name(&r->ring, r->name, hugetlbfs_dir, 1, err, sizeof err) < 0)
            die(1, "ring %s (port %s queue %u): %s", r->name, pt->device, q, err);
        r->mapped = true;
        int rc = hr_producer_open(&r->prod, &r->ring);
        if (rc == -1)
            die(1, "ring %s already has a live producer (pid %" PRId64 "): a ring takes one",
                r->name, hr_ring_header(&r->ring)->producer_pid);
        if (rc < 0)
            die(1, "ring %s: cannot attach as its producer", r->name);
        r->attached = true;
        r->wait_full = r->ring.mode == HR_MODE_LOSSLESS && r->ring.full_policy == HR_FULL_WAIT;
        r->min_free = r->ring.capacity / 4 < BURST ? (r->ring.capacity / 4 ? r->ring.capacity / 4
                                                                           : 1)
                                                   : BURST;
    }
    if (pt->tx_ring[0]) {
        struct txq *t = &txqs[n_txq++];
        t->port = pt;
        pt->tx = t;
        if (pt->tx_queues == 0)
            die(1, "dpdk_config.ports[%d].tx_queues: 0, but a TX ring (%s) is given", pt->index,
                pt->tx_ring);
        if (hr_map_name(&t->ring, pt->tx_ring, hugetlbfs_dir, 0, err, sizeof err) < 0)
            die(1, "TX ring %s (port %s): %s", pt->tx_ring, pt->device, err);
        t->mapped = true;
        if (t->ring.mode != HR_MODE_LOSSLESS)
            die(1, "TX ring %s is lossy; a TX ring must be lossless (back-pressure, not laps)",
                pt->tx_ring);
        if (hr_consumer_open(&t->cons, &t->ring) < 0)
            die(1, "TX ring %s: every consumer line is held by a live consumer", pt->tx_ring);
        t->joined = true;
    }
}

/* Two reads of the device clock 20 ms apart against CLOCK_REALTIME: ticks -> ns as a 32.32
 * fixed-point multiplier.  A NIC clock drifts from the host's; over a run of hours the error
 * is that of the NIC's oscillator (tens of ppm), which is what a NIC timestamp means anyway. */
static void calibrate_nic_clock(struct port_cfg *pt)
{
    uint64_t t0, t1;
    if (rte_eth_read_clock(pt->port_id, &t0) != 0) {
        pt->ts = TS_CLOCK;
        return;
    }
    int64_t n0 = hr_now_ns();
    rte_delay_ms(20);
    rte_eth_read_clock(pt->port_id, &t1);
    int64_t n1 = hr_now_ns();
    if (t1 <= t0) {
        pt->ts = TS_CLOCK;
        return;
    }
    pt->mult = (uint64_t)(((unsigned __int128)(n1 - n0) << 32) / (t1 - t0));
    pt->base_ticks = t1;
    pt->base_ns = n1;
}

static void setup_port(struct port_cfg *pt)
{
    char what[64];
    snprintf(what, sizeof what, "dpdk_config.ports[%d]", pt->index);
    if (rte_eth_dev_get_port_by_name(pt->device, &pt->port_id) != 0)
        die(1, "%s.device_id: EAL has no port named '%s' (a PCI address must be bound to "
               "vfio-pci or uio; a vdev needs its --vdev argument)", what, pt->device);
    for (unsigned i = 0; i < n_pools; i++)
        if (!strcmp(pools[i].name, pt->pool_name))
            pt->pool = &pools[i];
    if (!pt->pool)
        die(2, "%s: pool '%s' not given with --pool", what, pt->pool_name);

    struct rte_eth_dev_info *info = &pt->info;
    int rc = rte_eth_dev_info_get(pt->port_id, info);
    if (rc != 0)
        die(1, "%s.device_id: %s: rte_eth_dev_info_get: %s", what, pt->device, rte_strerror(-rc));
    if (pt->rx_queues > info->max_rx_queues)
        die(1, "%s.rx_queues: %u, but %s (%s) has at most %u RX queues", what, pt->rx_queues,
            pt->device, info->driver_name, info->max_rx_queues);
    if (pt->tx_queues > info->max_tx_queues)
        die(1, "%s.tx_queues: %u, but %s (%s) has at most %u TX queues", what, pt->tx_queues,
            pt->device, info->driver_name, info->max_tx_queues);

    struct rte_eth_conf conf;
    memset(&conf, 0, sizeof conf);
    conf.rxmode.mtu = pt->mtu;
    /* an MTU frame longer than one mbuf's data room arrives as a chain when the PMD can
     * scatter (only then: a scattering RX path is a slower one on most NICs) */
    uint32_t room = rte_pktmbuf_data_room_size(pt->pool->mp) - RTE_PKTMBUF_HEADROOM;
    uint32_t frame = pt->mtu + RTE_ETHER_HDR_LEN + RTE_ETHER_CRC_LEN + RTE_VLAN_HLEN;
    if ((info->rx_offload_capa & RTE_ETH_RX_OFFLOAD_SCATTER) && frame > room)
        conf.rxmode.offloads |= RTE_ETH_RX_OFFLOAD_SCATTER;
    if (info->rx_offload_capa & RTE_ETH_RX_OFFLOAD_TIMESTAMP)
        conf.rxmode.offloads |= RTE_ETH_RX_OFFLOAD_TIMESTAMP;
    if (pt->rx_queues > 1 && info->flow_type_rss_offloads) {
        conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS; /* spread flows over the queues (scenario A) */
        conf.rx_adv_conf.rss_conf.rss_hf =
            (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP) & info->flow_type_rss_offloads;
    }
    rc = rte_eth_dev_configure(pt->port_id, pt->rx_queues, pt->tx_queues, &conf);
    if (rc != 0)
        die(1, "%s: rte_eth_dev_configure(%s, %u RX, %u TX queues, mtu %u): %s", what,
            pt->device, pt->rx_queues, pt->tx_queues, pt->mtu, rte_strerror(-rc));
    pt->rx_offloads = conf.rxmode.offloads;

    uint16_t nb_rx = pt->desc, nb_tx = pt->desc;
    rc = rte_eth_dev_adjust_nb_rx_tx_desc(pt->port_id, &nb_rx, &nb_tx);
    if (rc != 0)
        die(1, "%s.ring_descriptor_size: %u: %s", what, pt->desc, rte_strerror(-rc));
    pt->rx_desc = nb_rx;
    pt->tx_desc = nb_tx;
    struct rte_eth_rxconf rxconf = info->default_rxconf;
    rxconf.offloads = conf.rxmode.offloads;
    int socket = rte_eth_dev_socket_id(pt->port_id);
    if (socket < 0)
        socket = (int)rte_socket_id();
    for (uint16_t q = 0; q < pt->rx_queues; q++) {
        rc = rte_eth_rx_queue_setup(pt->port_id, q, nb_rx, (unsigned)socket, &rxconf,
                                    pt->pool->mp);
        if (rc != 0)
            die(1, "%s: RX queue %u with %u descriptors (ring_descriptor_size) from pool %s: "
                   "%s", what, q, nb_rx, pt->pool->name, rte_strerror(-rc));
    }
    struct rte_eth_txconf txconf = info->default_txconf;
    for (uint16_t q = 0; q < pt->tx_queues; q++) {
        rc = rte_eth_tx_queue_setup(pt->port_id, q, nb_tx, (unsigned)socket, &txconf);
        if (rc != 0)
            die(1, "%s: TX queue %u with %u descriptors: %s", what, q, nb_tx, rte_strerror(-rc));
    }
    /* configure set data->mtu; set_mtu asks the PMD itself (af_packet changes the interface) */
    pt->mtu_set_rc = rte_eth_dev_set_mtu(pt->port_id, pt->mtu);
    if (pt->mtu_set_rc != 0 && pt->mtu_set_rc != -ENOTSUP)
        die(1, "%s.mtu: %u: rte_eth_dev_set_mtu: %s", what, pt->mtu,
            rte_strerror(-pt->mtu_set_rc));
    rte_eth_promiscuous_enable(pt->port_id); /* -ENOTSUP on vdevs without it: harmless */
    rc = rte_eth_dev_start(pt->port_id);
    if (rc != 0)
        die(1, "%s: rte_eth_dev_start(%s): %s", what, pt->device, rte_strerror(-rc));
    pt->started = true;
    rte_eth_dev_get_mtu(pt->port_id, &pt->mtu_now);
    struct rte_eth_rxq_info qi;
    pt->rx_desc_pmd = rte_eth_rx_queue_info_get(pt->port_id, 0, &qi) == 0 ? qi.nb_desc : -1;

    if (!strcmp(info->driver_name, "net_pcap"))
        pt->ts = TS_PCAP_US; /* fills the dynfield in us, offload not advertised (22.11) */
    else if (conf.rxmode.offloads & RTE_ETH_RX_OFFLOAD_TIMESTAMP) {
        pt->ts = TS_NIC_TICKS;
        calibrate_nic_clock(pt);
    } else
        pt->ts = TS_CLOCK;
}

static void assign_lcores(void)
{
    unsigned lcores[RTE_MAX_LCORE], n = 0, main_lcore = rte_get_main_lcore(), l;
    lcores[n++] = main_lcore;
    RTE_LCORE_FOREACH_WORKER(l) lcores[n++] = l;
    if (n_queue_lcores && n_queue_lcores != n_rxq)
        die(2, "--queue-lcores: %u given for %u RX queues", n_queue_lcores, n_rxq);
    for (unsigned i = 0; i < n_rxq; i++) {
        unsigned lc = n_queue_lcores ? (unsigned)queue_lcores[i] : lcores[i % n];
        if (!rte_lcore_is_enabled(lc))
            die(2, "--queue-lcores: lcore %u is not an EAL lcore of this run", lc);
        rxqs[i].lcore = lc;
        work[lc].rx[work[lc].n_rx++] = &rxqs[i];
        /* a port's TX ring is drained by the lcore of its RX queue 0 (one thread per TX queue) */
        if (rxqs[i].queue == 0 && rxqs[i].port->tx)
            work[lc].tx[work[lc].n_tx++] = rxqs[i].port->tx;
    }
}

/* --- the poll loop (fast path) ------------------------------------------------------------- */
/* Prefetch for writing: the line arrives in exclusive state.  DPDK's rte_prefetch0_write
 * compiles to a plain read prefetch under its -march=corei7 (no PRFCHW), which leaves the
 * line shared and the store still waiting for the other core to let go of it. */
static inline void prefetch_for_write(const void *p)
{
#if defined(__x86_64__)
    asm volatile("prefetchw %0" : : "m"(*(const volatile char *)p));
#else
    rte_prefetch0_write(p);
#endif
}

static inline int64_t pmd_time_ns(const struct port_cfg *pt, uint64_t v)
{
    if (pt->ts == TS_PCAP_US)
        return (int64_t)v * 1000;
    return pt->base_ns + (int64_t)(((unsigned __int128)(v - pt->base_ticks) * pt->mult) >> 32);
}

/* One mbuf (chain) into slot j of the reserved burst: header words, then every segment until
 * the slot is full.  A frame longer than the slot is cut and flagged, its wire length kept. */
static inline __attribute__((always_inline)) void copy_to_slot(struct rxq *r, int64_t j,
                                                               const struct rte_mbuf *m,
                                                               int64_t ts)
{
    hr_producer *p = &r->prod;
    int64_t base = hr_slot_base(p, j);
    uint32_t wire = m->pkt_len;
    uint32_t cap = wire;
    uint64_t flags = 0;
    if (unlikely(cap > (uint32_t)p->slot_size)) {
        cap = (uint32_t)p->slot_size;
        flags = HR_SLOT_FLAG_TRUNCATED;
        r->truncated++;
    }
    uint8_t *dst = p->slot_bytes + base * 8 + HR_SLOT_HEADER_BYTES;
    if (likely(m->nb_segs == 1)) {
        if (unlikely(cap > m->data_len)) /* pkt_len > data_len: a malformed mbuf */
            cap = m->data_len;
        rte_memcpy(dst, rte_pktmbuf_mtod(m, const void *), cap);
    } else {
        r->multiseg++;
        uint32_t done = 0;
        for (const struct rte_mbuf *s = m; s && done < cap; s = s->next) {
            uint32_t n = s->data_len < cap - done ? s->data_len : cap - done;
            rte_memcpy(dst + done, rte_pktmbuf_mtod(s, const void *), n);
            done += n;
        }
        cap = done;
    }
    p->words[base + HR_S_TS] = ts;
    p->words[base + HR_S_LENS] = (int64_t)((uint64_t)wire | ((uint64_t)cap << 32));
    p->words[base + HR_S_PORTQ] =
        (int64_t)((uint64_t)r->port->port_id | ((uint64_t)r->queue << 16) | (flags << 32));
}

static inline void idle_tick(struct rxq *r)
{
    if (++r->empty_polls % IDLE_HEARTBEAT == 0)
        hr_producer_idle(&r->prod, clock_now(&r->clock)); /* consumers tell idle from dead */
}

static inline void poll_rx(struct rxq *r)
{
    struct rte_mbuf *pkts[BURST];
    hr_producer *p = &r->prod;
    const struct port_cfg *pt = r->port;
    int64_t k;
    uint16_t nb;
    if (r->wait_full) {
        /* lossless + wait: ask the NIC for what fits, so the rest waits in its descriptors
         * (and overflows there, counted as imissed) instead of in mbufs we would hold */
        k = hr_reserve(p, BURST);
        if (k < r->min_free) {
            /* (nearly) full: every reserve that finds it so re-reads the consumers' cursor
             * lines, which their releases are writing; asking again at once would bounce
             * those lines between the cores and slow the very consumer we wait for.  Pause,
             * then take what fits (as the Python producers do), if anything. */
            r->full_polls++;
            for (int i = 0; i < FULL_PAUSES; i++)
                rte_pause();
            k = hr_reserve(p, BURST);
            if (k == 0) {
                idle_tick(r);
                return;
            }
        }
        nb = rte_eth_rx_burst(pt->port_id, r->queue, pkts, (uint16_t)k);
        if (nb == 0) {
            idle_tick(r);
            return;
        }
        k = nb;
    } else {
        nb = rte_eth_rx_burst(pt->port_id, r->queue, pkts, BURST);
        if (nb == 0) {
            idle_tick(r);
            return;
        }
        k = hr_reserve(p, nb); /* lossy: nb; lossless + drop: what fits */
        if (k < nb) {
            hr_count_dropped(p, nb - k);
            r->dropped += (uint64_t)(nb - k);
        }
    }
    int64_t now = clock_now(&r->clock); /* one clock read per burst: stamp and heartbeat */
    if (pt->ts == TS_CLOCK) {
        for (int64_t j = 0; j < k; j++) {
            if (j + 1 < k)
                rte_prefetch0(rte_pktmbuf_mtod(pkts[j + 1], void *));
            copy_to_slot(r, j, pkts[j], now);
        }
    } else {
        for (int64_t j = 0; j < k; j++) {
            const struct rte_mbuf *m = pkts[j];
            int64_t ts = now;
            if (m->ol_flags & ts_flag) {
                ts = pmd_time_ns(pt, *RTE_MBUF_DYNFIELD(m, ts_offset, const uint64_t *));
                r->pmd_stamped++;
            }
            copy_to_slot(r, j, m, ts);
        }
    }
    hr_submit(p, k, now); /* P1: one release store of the cursor for the burst */
    /* The next burst's slots were last read by a consumer on another core: ask for them in
     * exclusive state now, so their ownership moves while this burst's mbufs are freed and the
     * next rx_burst runs, not when the copy stores reach them. */
    for (int64_t j = 0; j < BURST; j++) {
        const uint8_t *slot = p->slot_bytes + hr_slot_base(p, j) * 8;
        prefetch_for_write(slot);
        prefetch_for_write(slot + HR_LINE);
    }
    rte_pktmbuf_free_bulk(pkts, nb);
    r->received += nb;
    r->published += (uint64_t)k;
}

static inline void drain_tx(struct txq *t)
{
    hr_consumer *c = &t->cons;
    int64_t k = hr_peek(c, BURST);
    if (k <= 0) {
        if (k < 0) /* evicted (we were stuck behind a NIC that takes nothing): rejoin */
            t->lost += (uint64_t)hr_rejoin(c, hr_now_ns());
        return;
    }
    struct rte_mbuf *m[BURST];
    if (rte_pktmbuf_alloc_bulk(t->port->pool->mp, m, (unsigned)k) != 0) {
        t->nombuf++; /* the slots stay in the ring: back-pressure, retried next pass */
        return;
    }
    unsigned n = 0;
    for (int64_t j = 0; j < k; j++) {
        int64_t base = hr_consumer_slot(c, j) * c->stride_w;
        int64_t cap = (c->words[base + HR_S_LENS] >> 32) & 0xFFFFFFFF;
        if (cap > c->slot_size)
            cap = c->slot_size; /* never trust a length field */
        if (cap > rte_pktmbuf_tailroom(m[n])) {
            t->too_long++;
            continue;
        }
        rte_memcpy(rte_pktmbuf_mtod(m[n], void *), (const uint8_t *)(c->words + base) +
                   HR_SLOT_HEADER_BYTES, (size_t)cap);
        m[n]->data_len = (uint16_t)cap;
        m[n]->pkt_len = (uint32_t)cap;
        n++;
    }
    if (n < (unsigned)k)
        rte_pktmbuf_free_bulk(m + n, (unsigned)k - n);
    uint16_t sent = rte_eth_tx_burst(t->port->port_id, 0, m, (uint16_t)n);
    if (sent < n) { /* what the NIC did not take: counted, not retried */
        rte_pktmbuf_free_bulk(m + sent, n - sent);
        t->dropped += n - sent;
    }
    t->sent += sent;
    if (hr_release(c, k) < 0)
        t->lost += (uint64_t)hr_rejoin(c, hr_now_ns());
}

/* --- statistics (slow path, main lcore) ---------------------------------------------------- */
static void refresh_stats(void)
{
    int64_t now = hr_now_ns();
    for (unsigned i = 0; i < n_ports; i++) {
        struct port_cfg *pt = &ports[i];
        struct rte_eth_stats st;
        if (rte_eth_stats_get(pt->port_id, &st) != 0)
            continue;
        int64_t pool_size = pt->pool->mp->size;
        int64_t in_use = rte_mempool_in_use_count(pt->pool->mp);
        int64_t tx_dropped = pt->tx ? (int64_t)(pt->tx->dropped + pt->tx->too_long) : 0;
        int64_t drops = (int64_t)(st.imissed + st.ierrors + st.rx_nombuf);
        for (unsigned q = 0; q < n_rxq; q++) {
            struct rxq *r = &rxqs[q];
            if (r->port != pt)
                continue;
            int64_t pkts = pt->rx_queues == 1 ? (int64_t)st.ipackets
                           : r->queue < RTE_ETHDEV_QUEUE_STAT_CNTRS
                               ? (int64_t)st.q_ipackets[r->queue] : 0;
            hr_set_source_stats(&r->prod, pkts, (int64_t)st.imissed, (int64_t)st.ierrors,
                                (int64_t)st.rx_nombuf, pool_size, in_use, tx_dropped, now);
            hr_set_nic_drops(&r->prod, drops);
        }
    }
}

static int lcore_loop(void *arg)
{
    struct lcore_work *w = &work[rte_lcore_id()];
    bool is_main = rte_lcore_id() == rte_get_main_lcore();
    for (unsigned i = 0; i < w->n_rx; i++) {
        w->rx[i]->cpu = sched_getcpu();
        clock_init(&w->rx[i]->clock);
    }
    __atomic_add_fetch(&lcores_running, 1, __ATOMIC_RELEASE);
    if (w->n_rx == 0 && w->n_tx == 0 && !is_main)
        return 0; /* no queue here: the thread sleeps in EAL until the end, no core burnt */
    uint64_t hz = rte_get_tsc_hz();
    uint64_t stats_every = hz / 1000 * stats_ms;
    uint64_t t0 = rte_get_tsc_cycles();
    uint64_t next_stats = t0 + stats_every;
    uint64_t end = duration_s > 0 ? t0 + (uint64_t)(duration_s * (double)hz) : UINT64_MAX;
    unsigned pass = 0;
    while (!stop_requested) {
        for (unsigned i = 0; i < w->n_rx; i++)
            poll_rx(w->rx[i]);
        for (unsigned i = 0; i < w->n_tx; i++)
            drain_tx(w->tx[i]);
        if (is_main && ++pass % STATS_CHECK == 0) {
            uint64_t t = rte_get_tsc_cycles();
            if (t >= next_stats) {
                refresh_stats();
                next_stats = t + stats_every;
            }
            if (t >= end)
                stop_requested = 1;
        }
    }
    return 0;
}

/* --- reports ------------------------------------------------------------------------------- */
static void print_startup(int argc, char **argv)
{
    FILE *f = stdout;
    fprintf(f, "{\"event\": \"startup\", \"pid\": %d, \"dpdk\": ", (int)getpid());
    json_str(f, rte_version());
    fprintf(f, ", \"eal\": {\"argv\": [");
    for (int i = 0; i < argc; i++) {
        if (i)
            fputs(", ", f);
        json_str(f, argv[i]);
    }
    unsigned l;
    fprintf(f, "], \"lcores\": [");
    const char *sep = "";
    RTE_LCORE_FOREACH(l) {
        fprintf(f, "%s%u", sep, l);
        sep = ", ";
    }
    fprintf(f, "], \"main_lcore\": %u, \"memory_channels\": %u, \"huge_pages\": %s, "
               "\"iova\": \"%s\", \"heap_bytes_per_socket\": [",
            rte_get_main_lcore(), rte_memory_get_nchannel(),
            rte_eal_has_hugepages() ? "true" : "false",
            rte_eal_iova_mode() == RTE_IOVA_VA ? "va" : "pa");
    for (int s = 0; s < (int)rte_socket_count(); s++) {
        struct rte_malloc_socket_stats ms;
        memset(&ms, 0, sizeof ms);
        rte_malloc_get_socket_stats(rte_socket_id_by_idx(s), &ms);
        fprintf(f, "%s%zu", s ? ", " : "", ms.heap_totalsz_bytes);
    }
    fprintf(f, "], \"runtime_dir\": ");
    json_str(f, runtime_dir);
    fprintf(f, "}, \"pools\": [");
    for (unsigned i = 0; i < n_pools; i++) {
        struct rte_mempool *mp = pools[i].mp;
        fprintf(f, "%s{\"index\": %d, \"name\": ", i ? ", " : "", pools[i].index);
        json_str(f, mp->name);
        fprintf(f, ", \"size\": %u, \"data_room\": %u, \"element_bytes\": %u, "
                   "\"object_bytes\": %u, \"cache_size\": %u, \"socket\": %d, \"in_use\": %u, "
                   "\"available\": %u}",
                mp->size, rte_pktmbuf_data_room_size(mp), mp->elt_size,
                mp->header_size + mp->elt_size + mp->trailer_size, mp->cache_size,
                mp->socket_id, rte_mempool_in_use_count(mp), rte_mempool_avail_count(mp));
    }
    fprintf(f, "], \"ports\": [");
    for (unsigned i = 0; i < n_ports; i++) {
        struct port_cfg *pt = &ports[i];
        struct rte_eth_dev_info info;
        rte_eth_dev_info_get(pt->port_id, &info); /* after start: the queues as configured */
        fprintf(f, "%s{\"index\": %d, \"device\": ", i ? ", " : "", pt->index);
        json_str(f, pt->device);
        fprintf(f, ", \"port_id\": %u, \"driver\": ", pt->port_id);
        json_str(f, info.driver_name);
        fprintf(f, ", \"socket\": %d, \"rx_queues\": %u, \"tx_queues\": %u, "
                   "\"rx_desc\": %u, \"tx_desc\": %u, \"rx_desc_pmd\": %d, \"rx_desc_max\": %u, "
                   "\"mtu\": %u, \"mtu_set\": ",
                rte_eth_dev_socket_id(pt->port_id), info.nb_rx_queues, info.nb_tx_queues,
                pt->rx_desc, pt->tx_desc, pt->rx_desc_pmd, info.rx_desc_lim.nb_max, pt->mtu_now);
        json_str(f, pt->mtu_set_rc == 0 ? "pmd" : "ethdev only (the PMD has no mtu_set)");
        fprintf(f, ", \"pool\": ");
        json_str(f, pt->pool->name);
        fprintf(f, ", \"scatter\": %s, \"timestamps\": \"%s\", \"tx_ring\": ",
                pt->rx_offloads & RTE_ETH_RX_OFFLOAD_SCATTER ? "true" : "false", TS_NAMES[pt->ts]);
        if (pt->tx)
            json_str(f, pt->tx_ring);
        else
            fputs("null", f);
        fprintf(f, ", \"queues\": [");
        sep = "";
        for (unsigned q = 0; q < n_rxq; q++) {
            struct rxq *r = &rxqs[q];
            if (r->port != pt)
                continue;
            fprintf(f, "%s{\"queue\": %u, \"lcore\": %u, \"cpu\": %d, \"ring\": ", sep, r->queue,
                    r->lcore, r->cpu);
            json_str(f, r->name);
            fprintf(f, ", \"mode\": \"%s\"}", r->ring.mode == HR_MODE_LOSSY ? "lossy"
                                              : r->wait_full ? "lossless/wait" : "lossless/drop");
            sep = ", ";
        }
        fprintf(f, "]}");
    }
    fprintf(f, "]}\n");
    fflush(f);
}

struct final_port {
    struct rte_eth_stats st;
    unsigned in_use, available;
};

static void print_final(const struct final_port *fp, int cleanup_rc, double elapsed)
{
    FILE *f = stdout;
    fprintf(f, "{\"event\": \"final\", \"stopped_by\": \"%s\", \"elapsed_s\": %.6f, "
               "\"eal_cleanup\": %d, \"ports\": [",
            stop_signal == SIGINT ? "SIGINT" : stop_signal == SIGTERM ? "SIGTERM" : "duration",
            elapsed, cleanup_rc);
    for (unsigned i = 0; i < n_ports; i++) {
        const struct port_cfg *pt = &ports[i];
        const struct rte_eth_stats *st = &fp[i].st;
        fprintf(f, "%s{\"index\": %d, \"ipackets\": %" PRIu64 ", \"imissed\": %" PRIu64
                   ", \"ierrors\": %" PRIu64 ", \"rx_nombuf\": %" PRIu64 ", \"opackets\": %"
                   PRIu64 ", \"oerrors\": %" PRIu64 ", \"pool_in_use\": %u, \"pool_available\": "
                   "%u, \"q_ipackets\": [",
                i ? ", " : "", pt->index, st->ipackets, st->imissed, st->ierrors, st->rx_nombuf,
                st->opackets, st->oerrors, fp[i].in_use, fp[i].available);
        for (unsigned q = 0; q < pt->rx_queues && q < RTE_ETHDEV_QUEUE_STAT_CNTRS; q++)
            fprintf(f, "%s%" PRIu64, q ? ", " : "", st->q_ipackets[q]);
        fprintf(f, "], \"queues\": [");
        const char *sep = "";
        for (unsigned q = 0; q < n_rxq; q++) {
            const struct rxq *r = &rxqs[q];
            if (r->port != pt)
                continue;
            fprintf(f, "%s{\"queue\": %u, \"received\": %" PRIu64 ", \"published\": %" PRIu64
                       ", \"dropped\": %" PRIu64 ", \"truncated\": %" PRIu64 ", \"multiseg\": %"
                       PRIu64 ", \"pmd_stamped\": %" PRIu64 ", \"full_polls\": %" PRIu64 "}",
                    sep, r->queue, r->received, r->published, r->dropped, r->truncated,
                    r->multiseg, r->pmd_stamped, r->full_polls);
            sep = ", ";
        }
        fprintf(f, "]");
        if (pt->tx)
            fprintf(f, ", \"tx\": {\"sent\": %" PRIu64 ", \"dropped\": %" PRIu64 ", \"too_long\": %"
                       PRIu64 ", \"nombuf\": %" PRIu64 ", \"lost\": %" PRIu64 "}",
                    pt->tx->sent, pt->tx->dropped, pt->tx->too_long, pt->tx->nombuf,
                    pt->tx->lost);
        fprintf(f, "}");
    }
    fprintf(f, "]}\n");
    fflush(f);
}

/* --- teardown ------------------------------------------------------------------------------ */
static bool eal_up;

static void remove_runtime_dir(void)
{
    /* EAL leaves its config and fbarray files in /var/run/dpdk/PREFIX after rte_eal_cleanup;
     * the prefix is this run's own, so nothing else can be using them any more. */
    if (!runtime_dir[0])
        return;
    DIR *d = opendir(runtime_dir);
    if (!d)
        return;
    struct dirent *e;
    char path[PATH_MAX + 256];
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(path, sizeof path, "%s/%s", runtime_dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(runtime_dir);
}

static void release_rings(void)
{
    for (unsigned i = 0; i < n_rxq; i++) {
        if (rxqs[i].attached) {
            hr_producer_close(&rxqs[i].prod);
            rxqs[i].attached = false;
        }
        if (rxqs[i].mapped) {
            hr_unmap(&rxqs[i].ring);
            rxqs[i].mapped = false;
        }
    }
    for (unsigned i = 0; i < n_txq; i++) {
        if (txqs[i].joined) {
            hr_consumer_close(&txqs[i].cons);
            txqs[i].joined = false;
        }
        if (txqs[i].mapped) {
            hr_unmap(&txqs[i].ring);
            txqs[i].mapped = false;
        }
    }
}

static int teardown_eal(void)
{
    for (unsigned i = 0; i < n_ports; i++) {
        if (ports[i].started) {
            rte_eth_dev_stop(ports[i].port_id);
            rte_eth_dev_close(ports[i].port_id);
            ports[i].started = false;
        }
    }
    for (unsigned i = 0; i < n_pools; i++) {
        if (pools[i].mp) {
            rte_mempool_free(pools[i].mp);
            pools[i].mp = NULL;
        }
    }
    int rc = 0;
    if (eal_up) {
        rc = rte_eal_cleanup();
        eal_up = false;
    }
    remove_runtime_dir();
    return rc;
}

static void teardown(void)
{
    release_rings();
    teardown_eal();
}

/* ------------------------------------------------------------------------------------------- */
int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "--layout"))
        return print_layout();
    /* EAL's log to stderr: stdout carries only this program's JSON lines */
    rte_openlog_stream(stderr);
    int eal_argc = argc;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--")) {
            eal_argc = i;
            break;
        }
    /* rte_eal_init permutes argv: keep the EAL arguments as given, for the startup report */
    char **eal_args = calloc((size_t)eal_argc + 1, sizeof *eal_args);
    for (int i = 0; eal_args && i < eal_argc; i++)
        eal_args[i] = strdup(argv[i]);
    int rc = rte_eal_init(eal_argc, argv);
    if (rc < 0)
        die(1, "EAL initialisation failed: %s (its log above says why)",
            rte_strerror(rte_errno));
    eal_up = true;
    snprintf(runtime_dir, sizeof runtime_dir, "%s", rte_eal_get_runtime_dir());
    if (eal_argc < argc)
        parse_app_args(argc - eal_argc - 1, argv + eal_argc + 1);
    else
        die(2, "no application arguments after '--'");

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    /* the RX timestamp field: registered here so its offset is known whichever PMD fills it */
    if (rte_mbuf_dyn_rx_timestamp_register(&ts_offset, &ts_flag) != 0)
        die(1, "cannot register the mbuf RX timestamp field: %s", rte_strerror(rte_errno));
    create_pools();
    for (unsigned i = 0; i < n_ports; i++) {
        open_rings(&ports[i]);
        setup_port(&ports[i]);
    }
    assign_lcores();
    refresh_stats(); /* pool size and a first snapshot before any consumer looks */

    int64_t t0 = hr_mono_ns();
    unsigned l, workers = 0;
    RTE_LCORE_FOREACH_WORKER(l) {
        rte_eal_remote_launch(lcore_loop, NULL, l);
        workers++;
    }
    while (__atomic_load_n(&lcores_running, __ATOMIC_ACQUIRE) < workers && !stop_requested)
        rte_pause();
    /* the main lcore's cpu is its own: record it before the report, then poll */
    for (unsigned i = 0; i < work[rte_get_main_lcore()].n_rx; i++)
        work[rte_get_main_lcore()].rx[i]->cpu = sched_getcpu();
    print_startup(eal_args ? eal_argc - 1 : 0, eal_args ? eal_args + 1 : NULL);
    lcore_loop(NULL);
    rte_eal_mp_wait_lcore();
    double elapsed = (double)(hr_mono_ns() - t0) / 1e9;

    refresh_stats();
    struct final_port fp[MAX_PORTS];
    memset(fp, 0, sizeof fp);
    for (unsigned i = 0; i < n_ports; i++) {
        rte_eth_stats_get(ports[i].port_id, &fp[i].st);
        fp[i].in_use = rte_mempool_in_use_count(ports[i].pool->mp);
        fp[i].available = rte_mempool_avail_count(ports[i].pool->mp);
    }
    release_rings();
    rc = teardown_eal();
    print_final(fp, rc, elapsed);
    return rc == 0 ? 0 : 1;
}
