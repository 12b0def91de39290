/* The C twin of tools/bench_parse.py's timed loop: parse L2-L4 into hugering's record
 * (parsers/include/hugering_record.h, generated from parsers/record.py) and evaluate the same
 * 5-rule filter, hand-coded, over the same frames.
 *
 * Usage:  parse_ref SLOTFILE STRIDE SLOT_SIZE NFRAMES BURST
 * then line commands on stdin (one JSON answer line each on stdout):
 *   run [parse|filter]  one timed pass over all frames (parse only / filter only: breakdown):
 *                       {"impl":"c","frames":N,"hits":H,"elapsed_ns":T}
 *   run touch           the memory floor: read one byte per cache line of every slot's header
 *                       and frame, nothing else (what any parser must at least pay to stream
 *                       the frames in); "hits" is the byte sum, so the loads are not elided
 *   run touch N         the header floor: the same, but only the lines holding the slot header
 *                       and the frame's first N bytes (tools/bench_parse.py sends HEADER_BYTES,
 *                       where the deepest header of its mix ends): the least any parser of
 *                       these slots reads
 *   dump M PATH         parse the first M frames, write their records to PATH
 *   verdicts PATH       write one byte (0/1) per frame: the filter's verdict
 *
 * SLOTFILE holds NFRAMES ring slots back to back (shm.layout.slot_dtype: a 32-byte header with
 * cap_len a little-endian u32 at +20 and wire_len at +16, the frame at +32), as
 * tools/bench_parse.py writes them.  The loop is the one hugering runs: per burst, parse every
 * slot into a record (parsers.l2l4.parse_slots), then filter the burst
 * (parsers.filters.match_slots).
 *
 * The parser follows parsers/l2l4.py: every read checked against the captured length, the
 * same flags.  The filter reads the raw frame exactly as libpcap's unoptimised BPF program for
 *   (udp and dst port 12345) or (tcp and src net 10.1.0.0/16)
 *   or (ip6 and udp and dst portrange 5000-5100) or (udp[8:2] = 0x1234) or (vlan 100 and udp)
 * does (what `Filter.describe()` prints for it): ethertype at 12 for the first four rules,
 * behind the tag (at 16) after `vlan 100`; a load past the captured bytes rejects the frame. */
#define _GNU_SOURCE
#include "hugering_record.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SLOT_HEADER 32
#define SLOT_WIRE_LEN 16
#define SLOT_CAP_LEN 20
#define MAX_CAPLEN (1 << 18)
#define PAYLOAD_LEN_MAX 0xFFFF   /* payload_len is u2: saturates (parsers.l2l4) */
#define SAT(x) ((x) < PAYLOAD_LEN_MAX ? (x) : PAYLOAD_LEN_MAX)
#define MAX_EXT 8

static inline int64_t rd8(const uint8_t *p) { return p[0]; }
static inline int64_t rd16(const uint8_t *p) { return ((int64_t)p[0] << 8) | p[1]; }
static inline int64_t rd32(const uint8_t *p) {
    return ((int64_t)p[0] << 24) | ((int64_t)p[1] << 16) | ((int64_t)p[2] << 8) | p[3];
}
static inline uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

/* the flag for a header crossing `end` below the IP layer (l2l4._short) */
static inline uint32_t short_flag(const hr_record *r) {
    return (r->ip_version == 0 || (r->flags & HR_F_TRUNCATED)) ? HR_F_TRUNCATED : HR_F_MALFORMED;
}

static int64_t parse_tcp(const uint8_t *f, int64_t off, int64_t end, hr_record *r) {
    if (off + 20 > end) { r->flags |= short_flag(r); return -1; }
    const uint8_t *t = f + off;
    r->sport = rd16(t);
    r->dport = rd16(t + 2);
    r->tcp_seq = rd32(t + 4);
    r->tcp_ack = rd32(t + 8);
    int64_t hlen = (t[12] >> 4) * 4;
    r->tcp_hlen = hlen;
    r->tcp_flags = ((t[12] & 1) << 8) | t[13];
    r->tcp_window = rd16(t + 14);
    r->l4_csum = rd16(t + 16);
    if (hlen < 20) { r->flags |= HR_F_MALFORMED; return -1; }
    if (hlen == 20) return off + 20;
    int64_t hend = off + hlen, oend = hend <= end ? hend : end;
    uint32_t fl = HR_F_TCP_OPTIONS, opts = 0;
    int64_t i = off + 20;
    while (i < oend) {
        int64_t kind = f[i];
        if (kind == 0) break;
        if (kind == 1) { i++; continue; }
        if (i + 2 > oend) { if (hend <= end) fl |= HR_F_MALFORMED; break; }
        int64_t ln = f[i + 1];
        if (ln < 2) { fl |= HR_F_MALFORMED; break; }
        if (i + ln > oend) { if (hend <= end) fl |= HR_F_MALFORMED; break; }
        switch (kind) {
        case 2:
            if (ln == 4) { opts |= 1; r->tcp_mss = rd16(f + i + 2); }
            else fl |= HR_F_MALFORMED;
            break;
        case 3:
            if (ln == 3) { opts |= 2; r->tcp_wscale = f[i + 2]; }
            else fl |= HR_F_MALFORMED;
            break;
        case 4: if (ln == 2) opts |= 4; else fl |= HR_F_MALFORMED; break;
        case 5: if (ln >= 10 && (ln - 2) % 8 == 0) opts |= 16; else fl |= HR_F_MALFORMED; break;
        case 8:
            if (ln == 10) {
                opts |= 8;
                r->tcp_tsval = rd32(f + i + 2);
                r->tcp_tsecr = rd32(f + i + 6);
            } else {
                fl |= HR_F_MALFORMED;
            }
            break;
        default: break;
        }
        i += ln;
    }
    r->tcp_opts = opts;
    if (hend > end) { r->flags |= fl | short_flag(r); return -1; }
    r->flags |= fl;
    return hend;
}

static int64_t parse_ipv6(const uint8_t *f, int64_t off, int64_t end, hr_record *r) {
    if (off + 40 > end) { r->flags |= HR_F_TRUNCATED; return -1; }
    const uint8_t *h6 = f + off;
    if ((h6[0] >> 4) != 6) { r->flags |= HR_F_MALFORMED; return -1; }
    r->ip_version = 6;
    r->tos = ((h6[0] & 15) << 4) | (h6[1] >> 4);
    r->flow_label = ((uint32_t)(h6[1] & 15) << 16) | rd16(h6 + 2);
    int64_t iplen = 40 + rd16(h6 + 4);
    r->ip_len = iplen <= 0xFFFF ? iplen : 0xFFFF;
    int64_t nh = h6[6];
    r->ttl = h6[7];
    memcpy(r->src6, h6 + 8, 16);
    memcpy(r->dst6, h6 + 24, 16);
    uint32_t fl = 0, shortf = HR_F_TRUNCATED;
    int64_t avail = end - off, lim = end;
    if (iplen > avail) fl |= HR_F_TRUNCATED;
    else { if (iplen < avail) fl |= HR_F_PADDED; lim = off + iplen; shortf = HR_F_MALFORMED; }
    int64_t h = off + 40, count = 0;
    int ok = 1;
    while (nh == 0 || nh == 43 || nh == 44 || nh == 60 || nh == 51) {
        if (count >= MAX_EXT) { fl |= HR_F_EXT_CHAIN_LIMIT; ok = 0; break; }
        if (nh == 44) {
            if (h + 8 > lim) { fl |= shortf; ok = 0; break; }
            int64_t fw = rd16(f + h + 2), fo = fw >> 3;
            r->frag_offset = fo;
            r->ip_frag_flags = fw & 1;
            r->ip_id = rd32(f + h + 4);
            if (fo != 0 || (fw & 1)) fl |= HR_F_FRAGMENT;
            nh = f[h];
            h += 8;
            count++;
            if (fo != 0) { fl |= HR_F_NONFIRST_FRAGMENT; break; }
            continue;
        }
        if (h + 2 > lim) { fl |= shortf; ok = 0; break; }
        int64_t hl = nh == 51 ? (f[h + 1] + 2) * 4 : (f[h + 1] + 1) * 8;
        if (h + hl > lim) { fl |= shortf; ok = 0; break; }
        nh = f[h];
        h += hl;
        count++;
    }
    r->ip_proto = nh;
    r->ext_count = count;
    r->ip_hlen = h - off;
    if (count > 0) fl |= HR_F_IPV6_EXT;
    r->flags |= fl;
    return ok ? h : -1;
}

/* parse one frame f[0:caplen] into r (parsers.l2l4.parse_frame); returns the payload offset */
static int64_t parse_frame(const uint8_t *f, int64_t caplen, hr_record *r) {
    if (caplen < 0) caplen = 0;
    if (caplen > MAX_CAPLEN) caplen = MAX_CAPLEN;
    memset(r, 0, sizeof *r);
    r->caplen = caplen;
    r->l3_off = r->l4_off = r->payload_off = -1;
    int64_t end = caplen;
    if (14 > end) { r->flags |= HR_F_TRUNCATED; return -1; }
    int64_t et = rd16(f + 12), o = 14;
    r->ethertype = et;
    while (et == 0x8100 || et == 0x88A8 || et == 0x9100) {
        if (r->vlan_count >= 2) { r->flags |= HR_F_VLAN_TOO_DEEP; return -1; }
        if (o + 4 > end) { r->flags |= HR_F_TRUNCATED; return -1; }
        int64_t tci = rd16(f + o);
        if (r->vlan_count == 0) {
            r->vlan_tpid = et; r->vlan_id0 = tci & 0xFFF; r->vlan_pcp0 = tci >> 13;
            r->flags |= HR_F_VLAN;
        } else {
            r->vlan_id1 = tci & 0xFFF; r->vlan_pcp1 = tci >> 13;
            r->flags |= HR_F_QINQ;
        }
        r->vlan_count++;
        et = rd16(f + o + 2);
        r->ethertype = et;
        o += 4;
    }
    if (et < 0x0600) {      /* 802.3: a length, after the addresses or after a VLAN tag */
        r->ethertype = 0;
        if (et > 1500) { r->flags |= HR_F_MALFORMED; return -1; }
        int64_t avail = end - o;
        r->flags |= HR_F_LLC | (et > avail ? HR_F_TRUNCATED : et < avail ? HR_F_PADDED : 0);
        int64_t lim = o + et < end ? o + et : end;
        r->payload_off = o;
        r->payload_len = SAT(lim - o);
        return o;
    }
    r->l3_off = o;
    int64_t q;
    if (et == 0x0800) {
        if (o + 20 > end) { r->flags |= HR_F_TRUNCATED; return -1; }
        const uint8_t *ip = f + o;
        int64_t hlen = (ip[0] & 15) * 4;
        if ((ip[0] >> 4) != 4 || hlen < 20) { r->flags |= HR_F_MALFORMED; return -1; }
        r->ip_version = 4;
        r->tos = ip[1];
        int64_t tot = rd16(ip + 2);
        r->ip_len = tot;
        r->ip_hlen = hlen;
        r->ip_id = rd16(ip + 4);
        int64_t ff = rd16(ip + 6), fo = ff & 0x1FFF;
        r->ip_frag_flags = ff >> 13;
        r->frag_offset = fo;
        r->ttl = ip[8];
        r->ip_proto = ip[9];
        r->src4 = rd32(ip + 12);
        r->dst4 = rd32(ip + 16);
        uint32_t fl = hlen > 20 ? HR_F_IP_OPTIONS : 0;
        if (ff & 0x3FFF) { fl |= HR_F_FRAGMENT; if (fo) fl |= HR_F_NONFIRST_FRAGMENT; }
        int64_t avail = end - o;
        if (tot < hlen) { r->flags |= fl | HR_F_MALFORMED; return -1; }
        if (hlen > avail) { r->flags |= fl | HR_F_TRUNCATED; return -1; }
        if (tot > avail) fl |= HR_F_TRUNCATED; else if (tot < avail) fl |= HR_F_PADDED;
        r->flags |= fl;
        q = o + hlen;
    } else if (et == 0x86DD) {
        q = parse_ipv6(f, o, end, r);
    } else if (et == 0x0806) {
        if (o + 8 > end) { r->flags |= HR_F_TRUNCATED; return -1; }
        r->l4_off = o;
        const uint8_t *a = f + o;
        int64_t hl = a[4], pl = a[5], total = 8 + 2 * (hl + pl);
        r->arp_op = rd16(a + 6);
        if (rd16(a) == 1 && rd16(a + 2) == 0x0800 && hl == 6 && pl == 4) {
            if (o + total > end) { r->flags |= HR_F_TRUNCATED; return -1; }
            r->src4 = rd32(a + 14);
            r->dst4 = rd32(a + 24);
        } else {
            r->flags |= HR_F_UNSUPPORTED;
            if (o + total > end) { r->flags |= HR_F_TRUNCATED; return -1; }
        }
        if (o + total < end) r->flags |= HR_F_PADDED;
        r->payload_off = o + total;
        return o + total;
    } else {
        r->l3_off = -1;
        r->flags |= HR_F_UNSUPPORTED;
        r->payload_off = o;
        r->payload_len = SAT(end - o);
        return o;
    }
    if (q < 0) return -1;
    int64_t dend = o + (int64_t)r->ip_len;
    if (dend > end) dend = end;
    int64_t rr;
    if (r->flags & HR_F_NONFIRST_FRAGMENT) {
        rr = q;
    } else {
        int64_t proto = r->ip_proto;
        /* l4_off only for an L4 header whose fixed part is there (else its fields stay 0) */
        if (proto == 17) {
            if (q + 8 > dend) { r->flags |= short_flag(r); return -1; }
            r->l4_off = q;
            const uint8_t *u = f + q;
            r->sport = rd16(u);
            r->dport = rd16(u + 2);
            int64_t ulen = rd16(u + 4);
            r->udp_len = ulen;
            r->l4_csum = rd16(u + 6);
            if (ulen < 8) { r->flags |= HR_F_MALFORMED; return -1; }
            if (!(r->flags & HR_F_FRAGMENT) && ulen != (int64_t)r->ip_len - (int64_t)r->ip_hlen)
                r->flags |= HR_F_LEN_MISMATCH;
            rr = q + 8;
            if (q + ulen < dend) dend = q + ulen;
        } else if (proto == 6) {
            if (q + 20 <= dend) r->l4_off = q;
            rr = parse_tcp(f, q, dend, r);
        } else if (proto == 1 || proto == 58) {
            if (q + 8 > dend) { r->flags |= short_flag(r); return -1; }
            r->l4_off = q;
            r->icmp_type = f[q];
            r->icmp_code = f[q + 1];
            r->l4_csum = rd16(f + q + 2);
            rr = q + 8;
        } else {
            r->flags |= HR_F_UNSUPPORTED;
            rr = q;
        }
        if (rr < 0) return -1;
    }
    r->payload_off = rr;
    r->payload_len = SAT(dend - rr);
    return rr;
}

/* --- the filter: libpcap's unoptimised program for the expression above -------------------- */
/* each test: 1 true, 0 false, -1 a load past the capture (rejects the frame) */
static inline int ipproto(const uint8_t *f, int64_t end, int64_t eo, int64_t proto) {
    if (eo + 2 > end) return -1;
    int64_t et = rd16(f + eo), l3 = eo + 2;
    if (et == 0x0800) {
        if (l3 + 10 > end) return -1;
        return f[l3 + 9] == proto;
    }
    if (et == 0x86DD) {
        if (l3 + 7 > end) return -1;
        int64_t nh = f[l3 + 6];
        if (nh == proto) return 1;
        if (nh == 44) {
            if (l3 + 41 > end) return -1;
            return f[l3 + 40] == proto;
        }
    }
    return 0;
}

/* tcp/udp/sctp dst port in [lo, hi] */
static inline int dst_port(const uint8_t *f, int64_t end, int64_t lo, int64_t hi) {
    if (14 > end) return -1;
    int64_t et = rd16(f + 12), l3 = 14, p, l4;
    if (et == 0x0800) {
        if (l3 + 10 > end) return -1;
        p = f[l3 + 9];
        if (p != 6 && p != 17 && p != 132) return 0;
        if (rd16(f + l3 + 6) & 0x1FFF) return 0;
        l4 = l3 + 4 * (f[l3] & 0xF);
    } else if (et == 0x86DD) {
        if (l3 + 7 > end) return -1;
        p = f[l3 + 6];
        if (p != 6 && p != 17 && p != 132) return 0;
        l4 = l3 + 40;
    } else {
        return 0;
    }
    if (l4 + 4 > end) return -1;
    int64_t dp = rd16(f + l4 + 2);
    return lo <= dp && dp <= hi;
}

static int match(const uint8_t *f, int64_t caplen) {
    int r;
    const int64_t end = caplen;
    /* rule 1: udp and dst port 12345 */
    if ((r = ipproto(f, end, 12, 17)) < 0) return 0;
    if (r) {
        if ((r = dst_port(f, end, 12345, 12345)) < 0) return 0;
        if (r) return 1;
    }
    /* rule 2: tcp and src net 10.1.0.0/16 (ip, arp or rarp sender) */
    if ((r = ipproto(f, end, 12, 6)) < 0) return 0;
    if (r) {
        int64_t et = rd16(f + 12), so = -1;      /* ipproto checked that 14 <= end */
        if (et == 0x0800) so = 14 + 12;
        else if (et == 0x0806 || et == 0x8035) so = 14 + 14;
        if (so >= 0) {
            if (so + 4 > end) return 0;
            if ((rd32(f + so) & 0xFFFF0000) == 0x0A010000) return 1;
        }
    }
    /* rule 3: ip6 and udp and dst portrange 5000-5100 */
    if (14 > end) return 0;
    if (rd16(f + 12) == 0x86DD) {
        if ((r = ipproto(f, end, 12, 17)) < 0) return 0;
        if (r) {
            if ((r = dst_port(f, end, 5000, 5100)) < 0) return 0;
            if (r) return 1;
        }
    }
    /* rule 4: udp[8:2] = 0x1234 (udp, not a fragment, load after the IPv4 header) */
    if ((r = ipproto(f, end, 12, 17)) < 0) return 0;
    if (r) {
        if (14 + 8 > end) return 0;
        if ((rd16(f + 14 + 6) & 0x1FFF) == 0) {
            if (14 + 1 > end) return 0;
            int64_t p = 14 + 4 * (f[14] & 0xF) + 8;
            if (p + 2 > end) return 0;
            if (rd16(f + p) == 0x1234) return 1;
        }
    }
    /* rule 5: vlan 100 and udp (udp behind the tag) */
    {
        int64_t et = rd16(f + 12);
        if (et != 0x8100 && et != 0x88A8 && et != 0x9100) return 0;
        if (16 > end) return 0;
        if ((rd16(f + 14) & 0xFFF) != 100) return 0;
        return ipproto(f, end, 16, 17) == 1;
    }
}

/* --- driver ----------------------------------------------------------------------------------- */
static const uint8_t *slots;
static int64_t stride, slot_size, nframes, burst;
static hr_record *recs;
static uint8_t *verdict;

static inline int64_t slot_caplen(int64_t i) {
    int64_t cl = le32(slots + i * stride + SLOT_CAP_LEN);
    return cl > slot_size ? slot_size : cl;
}

/* one pass: per burst, parse every slot into recs[], then filter the burst (mode 0); mode 1
 * only parses, mode 2 only filters (the breakdown `run parse` / `run filter`) */
static int64_t run_pass(int mode) {
    int64_t hits = 0;
    for (int64_t i = 0; i < nframes; i += burst) {
        int64_t k = nframes - i < burst ? nframes - i : burst;
        for (int64_t j = 0; j < k && mode != 2; j++) {
            int64_t cl = le32(slots + (i + j) * stride + SLOT_CAP_LEN);
            int lying = cl > slot_size;
            if (lying) cl = slot_size;
            parse_frame(slots + (i + j) * stride + SLOT_HEADER, cl, &recs[j]);
            if (lying) recs[j].flags |= HR_F_TRUNCATED;
        }
        for (int64_t j = 0; j < k && mode != 1; j++) {
            int ok = match(slots + (i + j) * stride + SLOT_HEADER, slot_caplen(i + j));
            verdict[j] = ok;
            hits += ok;
        }
    }
    return hits;
}

/* mode 3: touch every cache line of the slot header and the frame's first `limit` bytes
 * (all of its cap_len bytes when limit < 0), nothing else */
static int64_t touch_pass(int64_t limit) {
    int64_t sum = 0;
    for (int64_t i = 0; i < nframes; i++) {
        const uint8_t *s = slots + i * stride;
        int64_t cl = slot_caplen(i);
        int64_t end = SLOT_HEADER + (limit >= 0 && cl > limit ? limit : cl);
        for (int64_t j = 0; j < end; j += 64) sum += s[j];
    }
    return sum;
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s SLOTFILE STRIDE SLOT_SIZE NFRAMES BURST\n", argv[0]);
        return 2;
    }
    stride = atoll(argv[2]);
    slot_size = atoll(argv[3]);
    nframes = atoll(argv[4]);
    burst = atoll(argv[5]);
    if (stride <= SLOT_HEADER || slot_size > stride - SLOT_HEADER || nframes < 0 || burst < 1) {
        fprintf(stderr, "bad geometry\n");
        return 2;
    }
    FILE *fp = fopen(argv[1], "rb");
    if (!fp) { perror(argv[1]); return 1; }
    uint8_t *buf = aligned_alloc(64, (size_t)(stride * nframes + 64));
    if (!buf || fread(buf, 1, (size_t)(stride * nframes), fp) != (size_t)(stride * nframes)) {
        fprintf(stderr, "%s: short read\n", argv[1]);
        return 1;
    }
    fclose(fp);
    slots = buf;
    recs = aligned_alloc(64, sizeof(hr_record) * (size_t)burst + 64);
    verdict = malloc((size_t)burst);
    char line[4096];
    setvbuf(stdout, NULL, _IOLBF, 0);
    while (fgets(line, sizeof line, stdin)) {
        char path[4000];
        long long m;
        if (strncmp(line, "run", 3) == 0) {
            long long limit = -1;   /* run touch [N]: the first N bytes of each frame */
            int mode = strncmp(line, "run parse", 9) == 0    ? 1
                       : strncmp(line, "run filter", 10) == 0 ? 2
                       : strncmp(line, "run touch", 9) == 0  ? 3
                                                              : 0;
            if (mode == 3 && sscanf(line, "run touch %lld", &limit) == 1 && limit < 0) {
                fprintf(stderr, "run touch N: N must be >= 0\n");
                return 2;
            }
            int64_t t0 = now_ns();
            int64_t hits = mode == 3 ? touch_pass(limit) : run_pass(mode);
            int64_t t1 = now_ns();
            printf("{\"impl\":\"c\",\"frames\":%lld,\"hits\":%lld,\"elapsed_ns\":%lld}\n",
                   (long long)nframes, (long long)hits, (long long)(t1 - t0));
        } else if (sscanf(line, "dump %lld %3999s", &m, path) == 2) {
            if (m > nframes) m = nframes;
            FILE *out = fopen(path, "wb");
            hr_record r;
            for (int64_t i = 0; i < m; i++) {
                int64_t cl = le32(slots + i * stride + SLOT_CAP_LEN);
                int lying = cl > slot_size;
                parse_frame(slots + i * stride + SLOT_HEADER, lying ? slot_size : cl, &r);
                if (lying) r.flags |= HR_F_TRUNCATED;
                fwrite(&r, sizeof r, 1, out);
            }
            fclose(out);
            printf("{\"ok\":%lld}\n", m);
        } else if (sscanf(line, "verdicts %3999s", path) == 1) {
            FILE *out = fopen(path, "wb");
            for (int64_t i = 0; i < nframes; i++) {
                uint8_t v = match(slots + i * stride + SLOT_HEADER, slot_caplen(i));
                fwrite(&v, 1, 1, out);
            }
            fclose(out);
            printf("{\"ok\":%lld}\n", (long long)nframes);
        } else {
            fprintf(stderr, "unknown command: %s", line);
            return 2;
        }
    }
    return 0;
}
