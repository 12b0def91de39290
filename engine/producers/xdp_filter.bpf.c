// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * hugering's XDP program: the in-kernel half of a filter.  Frames that some rule selects are
 * redirected to the AF_XDP socket of their RX queue (xsks_map); every other frame goes on to the
 * kernel stack (XDP_PASS), so ARP, ICMP, SSH ... keep working on the interface.
 *
 * Built by `make bpf` (or by engine/producers/afxdp.py on first use):
 *     clang -O2 -g -target bpf -I/usr/include/x86_64-linux-gnu -c xdp_filter.bpf.c -o ...
 *
 * Rules are data, written by engine/producers/xsk_pushdown.py: at most 64 rules, rule i being
 * bit i of a u64.  A rule is a conjunction of constraints, one per class (family, IP protocol,
 * IPv4/IPv6 source / destination / either address as a CIDR, source / destination / either
 * port range, the transport protocols that carry the ports).  Each class is one map lookup that
 * returns the bit set of the rules the frame satisfies in that class; "rules without a
 * constraint in this class" are OR-ed in from the generation's header; the frame is selected
 * by the rules left after AND-ing every class:
 *
 *     m = rules & fam[family] & (proto[p] | ~need_proto) & (src4_lpm[saddr] | ~need_src4) & ...
 *
 * LPM tries return the value of the LONGEST matching prefix only: the user side stores in each
 * prefix's value the bits of every rule whose prefix contains it, so the longest match carries
 * all of them.
 *
 * Generations: every map holds two copies of the rules, generation 0 and 1 (the first byte of an
 * LPM key, the upper half of an array index).  User space writes the inactive generation, then
 * flips `hr_conf[0].gen` with one store: a frame is evaluated entirely against one generation,
 * and rules change while running without reloading the program or touching the socket.
 *
 * Counters (per CPU): hits of each rule of each generation (the FIRST rule that matched, like
 * iptables), then frames passed to the stack, frames redirected, redirects that found no socket.
 *
 * Semantics are libpcap's for the primitives that are pushed down (parsers/filters.py): ports
 * only on IPv4 frames that are not non-first fragments and on IPv6 frames whose next header is
 * directly TCP/UDP/SCTP, IPv6 protocol also behind one fragment header, ARP/RARP addresses at
 * offsets 14 / 24 of the ARP header, no VLAN walking (a tagged frame is "other").
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define MAX_RULES 64
#define MAX_QUEUES 256

/* families (index into hr_gen.fam) -- keep in sync with xsk_pushdown.FAM_* */
#define FAM_IP4 0
#define FAM_IP6 1
#define FAM_ARP 2
#define FAM_RARP 3
#define FAM_OTHER 4
#define N_FAM 5

/* transport classes that carry ports (index into hr_pp) -- xsk_pushdown.PP_* */
#define PPC_NONE 0
#define PPC_TCP 1
#define PPC_UDP 2
#define PPC_SCTP 3

/* counter slots after the 2 * MAX_RULES rule hits -- xsk_pushdown.CNT_* */
#define CNT_PASS (2 * MAX_RULES)
#define CNT_REDIRECT (2 * MAX_RULES + 1)
#define CNT_NO_SOCKET (2 * MAX_RULES + 2)
#define N_COUNTERS (2 * MAX_RULES + 4)

/* One generation of rules: bit sets over rules.  Layout mirrored by xsk_pushdown.GEN_DTYPE. */
struct hr_gen {
	__u64 rules;       /* rules in use */
	__u64 fam[N_FAM];  /* rules that accept this family */
	__u64 need_proto;  /* rules with an IP protocol constraint (hr_proto) */
	__u64 need_src4, need_dst4, need_any4;
	__u64 need_src6, need_dst6, need_any6;
	__u64 need_sport, need_dport, need_aport;  /* need_ports = their OR, checked with hr_pp */
	__u64 pad[2];
};

struct hr_conf {
	__u32 gen;         /* active generation, 0 or 1 */
	__u32 version;     /* bumped by user space at each flip (for tests and reports) */
	__u64 pad[7];
	struct hr_gen g[2];
};

struct lpm4_key {
	__u32 prefixlen;   /* 8 (generation byte) + address prefix */
	__u8 data[8];      /* generation, 4 address bytes, 3 zero bytes */
};

struct lpm6_key {
	__u32 prefixlen;   /* 8 + address prefix */
	__u8 data[20];     /* generation, 16 address bytes, 3 zero bytes */
};

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct hr_conf);
} hr_conf SEC(".maps");

/* [gen * 256 + ip protocol] -> rules */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * 256);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u64);
} hr_proto SEC(".maps");

/* [gen * 4 + transport class] -> rules whose ports that class may carry */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * 4);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u64);
} hr_pp SEC(".maps");

/* [gen * 65536 + port] -> rules: source, destination, either ("port N") */
#define PORT_MAP(name)                                    \
	struct {                                          \
		__uint(type, BPF_MAP_TYPE_ARRAY);         \
		__uint(max_entries, 2 * 65536);           \
		__uint(map_flags, BPF_F_MMAPABLE);        \
		__type(key, __u32);                       \
		__type(value, __u64);                     \
	} name SEC(".maps")
PORT_MAP(hr_sport);
PORT_MAP(hr_dport);
PORT_MAP(hr_aport);

#define LPM_MAP(name, keytype)                            \
	struct {                                          \
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);      \
		__uint(max_entries, 4 * MAX_RULES);       \
		__uint(map_flags, BPF_F_NO_PREALLOC);     \
		__type(key, keytype);                     \
		__type(value, __u64);                     \
	} name SEC(".maps")
LPM_MAP(hr_src4, struct lpm4_key);
LPM_MAP(hr_dst4, struct lpm4_key);
LPM_MAP(hr_any4, struct lpm4_key);
LPM_MAP(hr_src6, struct lpm6_key);
LPM_MAP(hr_dst6, struct lpm6_key);
LPM_MAP(hr_any6, struct lpm6_key);

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, N_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} hr_counters SEC(".maps");

static __always_inline void count(__u32 slot)
{
	__u64 *c = bpf_map_lookup_elem(&hr_counters, &slot);

	if (c)
		*c += 1;   /* per-CPU slot: no atomic needed */
}

static __always_inline __u64 lookup_u64(void *map, __u32 key)
{
	__u64 *v = bpf_map_lookup_elem(map, &key);

	return v ? *v : 0;
}

static __always_inline __u64 lpm4(void *map, __u32 gen, const __u8 *addr)
{
	struct lpm4_key k = {};
	__u64 *v;

	k.prefixlen = 8 + 32;
	k.data[0] = gen;
	__builtin_memcpy(&k.data[1], addr, 4);
	v = bpf_map_lookup_elem(map, &k);
	return v ? *v : 0;
}

static __always_inline __u64 lpm6(void *map, __u32 gen, const __u8 *addr)
{
	struct lpm6_key k = {};
	__u64 *v;

	k.prefixlen = 8 + 128;
	k.data[0] = gen;
	__builtin_memcpy(&k.data[1], addr, 16);
	v = bpf_map_lookup_elem(map, &k);
	return v ? *v : 0;
}

/* index of the lowest set bit of a non-zero word (BPF has no ctz instruction) */
static __always_inline __u32 lowest_bit(__u64 m)
{
	__u32 i = 0;

	m &= -m;
	if (m & 0xFFFFFFFF00000000ULL) i += 32;
	if (m & 0xFFFF0000FFFF0000ULL) i += 16;
	if (m & 0xFF00FF00FF00FF00ULL) i += 8;
	if (m & 0xF0F0F0F0F0F0F0F0ULL) i += 4;
	if (m & 0xCCCCCCCCCCCCCCCCULL) i += 2;
	if (m & 0xAAAAAAAAAAAAAAAAULL) i += 1;
	return i;
}

static __always_inline int ppc_of(__u8 proto)
{
	if (proto == IPPROTO_TCP)
		return PPC_TCP;
	if (proto == IPPROTO_UDP)
		return PPC_UDP;
	if (proto == IPPROTO_SCTP)
		return PPC_SCTP;
	return PPC_NONE;
}

SEC("xdp")
int hugering_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u32 zero = 0;
	struct hr_conf *conf = bpf_map_lookup_elem(&hr_conf, &zero);
	struct hr_gen *g;
	__u32 gen, base, ppc = PPC_NONE;
	__u64 m, need_ports;
	__u16 sport = 0, dport = 0;
	int have_proto = 0, have_v4 = 0, have_v6 = 0, have_ports = 0;
	__u8 proto = 0;
	const __u8 *src = 0, *dst = 0;

	if (!conf)
		return XDP_PASS;
	gen = conf->gen & 1;
	g = &conf->g[gen];
	m = g->rules;
	if (!m)
		goto pass;
	if ((void *)(eth + 1) > data_end)
		goto pass;   /* a runt: libpcap's loads would fail too, so no rule can select it */

	__u16 et = bpf_ntohs(eth->h_proto);
	void *l3 = (void *)(eth + 1);

	if (et == ETH_P_IP) {
		struct iphdr *ip = l3;

		m &= g->fam[FAM_IP4];
		if ((void *)(ip + 1) > data_end)
			goto pass;
		proto = ip->protocol;
		have_proto = 1;
		src = (const __u8 *)&ip->saddr;
		dst = (const __u8 *)&ip->daddr;
		have_v4 = 1;
		/* ports: not a non-first fragment, TCP/UDP/SCTP, after IHL words */
		if ((bpf_ntohs(ip->frag_off) & 0x1FFF) == 0) {
			__u32 ihl = (ip->ihl & 0xF) * 4;
			__u8 *l4 = (__u8 *)l3 + ihl;

			ppc = ppc_of(proto);
			if (ppc != PPC_NONE && (void *)(l4 + 4) <= data_end) {
				sport = ((__u16)l4[0] << 8) | l4[1];
				dport = ((__u16)l4[2] << 8) | l4[3];
				have_ports = 1;
			} else {
				ppc = PPC_NONE;
			}
		}
	} else if (et == ETH_P_IPV6) {
		struct ipv6hdr *ip6 = l3;

		m &= g->fam[FAM_IP6];
		if ((void *)(ip6 + 1) > data_end)
			goto pass;
		proto = ip6->nexthdr;
		src = (const __u8 *)&ip6->saddr;
		dst = (const __u8 *)&ip6->daddr;
		have_v6 = 1;
		__u8 *l4 = (__u8 *)(ip6 + 1);

		if (proto == 44) {   /* one fragment header: its next header is the protocol */
			if ((void *)(l4 + 1) > data_end)
				goto pass;
			proto = l4[0];
		} else {
			ppc = ppc_of(proto);
			if (ppc != PPC_NONE && (void *)(l4 + 4) <= data_end) {
				sport = ((__u16)l4[0] << 8) | l4[1];
				dport = ((__u16)l4[2] << 8) | l4[3];
				have_ports = 1;
			} else {
				ppc = PPC_NONE;
			}
		}
		have_proto = 1;
	} else if (et == ETH_P_ARP || et == ETH_P_RARP) {
		__u8 *a = l3;

		m &= g->fam[et == ETH_P_ARP ? FAM_ARP : FAM_RARP];
		if ((void *)(a + 28) <= data_end) {
			src = a + 14;   /* sender protocol address */
			dst = a + 24;   /* target protocol address */
			have_v4 = 1;
		}
	} else {
		m &= g->fam[FAM_OTHER];
	}
	if (!m)
		goto pass;

	base = gen * 256;
	if (have_proto)
		m &= lookup_u64(&hr_proto, base + proto) | ~g->need_proto;
	else
		m &= ~g->need_proto;

	if (have_v4 && src && dst) {
		if (m & g->need_src4)
			m &= lpm4(&hr_src4, gen, src) | ~g->need_src4;
		if (m & g->need_dst4)
			m &= lpm4(&hr_dst4, gen, dst) | ~g->need_dst4;
		if (m & g->need_any4)
			m &= lpm4(&hr_any4, gen, src) | lpm4(&hr_any4, gen, dst) | ~g->need_any4;
	} else {
		m &= ~(g->need_src4 | g->need_dst4 | g->need_any4);
	}
	if (have_v6 && src && dst) {
		if (m & g->need_src6)
			m &= lpm6(&hr_src6, gen, src) | ~g->need_src6;
		if (m & g->need_dst6)
			m &= lpm6(&hr_dst6, gen, dst) | ~g->need_dst6;
		if (m & g->need_any6)
			m &= lpm6(&hr_any6, gen, src) | lpm6(&hr_any6, gen, dst) | ~g->need_any6;
	} else {
		m &= ~(g->need_src6 | g->need_dst6 | g->need_any6);
	}

	need_ports = g->need_sport | g->need_dport | g->need_aport;
	if (m & need_ports) {
		if (have_ports) {
			base = gen * 65536;
			m &= lookup_u64(&hr_pp, gen * 4 + ppc) | ~need_ports;
			m &= lookup_u64(&hr_sport, base + sport) | ~g->need_sport;
			m &= lookup_u64(&hr_dport, base + dport) | ~g->need_dport;
			m &= lookup_u64(&hr_aport, base + sport) | lookup_u64(&hr_aport, base + dport)
			     | ~g->need_aport;
		} else {
			m &= ~need_ports;
		}
	}
	if (!m)
		goto pass;

	count(gen * MAX_RULES + lowest_bit(m));
	long r = bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_PASS);
	if (r == XDP_REDIRECT)
		count(CNT_REDIRECT);
	else
		count(CNT_NO_SOCKET);
	return r;

pass:
	count(CNT_PASS);
	return XDP_PASS;
}

char _license[] SEC("license") = "Dual BSD/GPL";
