/* startup_ref — the C reference of tools/bench_startup.py: how soon a consumer process written
 * in C (shm/include/hugering_ring.h) handles its first packet after being spawned.
 *
 *   startup_ref PATH TIMEOUT_S [DPORT_LO DPORT_HI]
 *
 * Maps the ring file PATH (slots read-only, as any consumer), joins it at the producer's
 * cursor, then busy-polls hr_peek for one slot.  For that first packet it does the minimum a
 * filtering consumer does (Ethernet II + IPv4 + UDP, the destination port checked against
 * [DPORT_LO, DPORT_HI], every read checked against the captured length), releases it, and
 * prints one JSON line on stdout:
 *
 *   {"t_main": ns, "t_joined": ns, "t_first": ns, "matched": 0|1, "dport": N}
 *
 * where every t_ is CLOCK_REALTIME (comparable with the parent's time.time_ns() taken just
 * before it spawned this process): at main's entry, after the join, and right after the first
 * packet was handled.  Exit 0 when a packet came, 1 when none came within TIMEOUT_S, 2 on
 * usage / mapping errors.
 */
#include "hugering_ring.h"

#include <stdlib.h>

static int be16(const uint8_t *p)
{
    return (p[0] << 8) | p[1];
}

/* 1 if the frame is IPv4 / UDP to a port in [lo, hi]; *dport gets the port (or -1) */
static int match(const uint8_t *f, int64_t caplen, int lo, int hi, int *dport)
{
    *dport = -1;
    if (caplen < 14 || be16(f + 12) != 0x0800)
        return 0;
    const uint8_t *ip = f + 14;
    if (caplen < 14 + 20 || (ip[0] >> 4) != 4)
        return 0;
    int64_t ihl = (int64_t)(ip[0] & 0x0F) * 4;
    if (ihl < 20 || ip[9] != 17 || caplen < 14 + ihl + 8)
        return 0;
    *dport = be16(ip + ihl + 2);
    return *dport >= lo && *dport <= hi;
}

int main(int argc, char **argv)
{
    int64_t t_main = hr_now_ns();
    if (argc != 3 && argc != 5) {
        fprintf(stderr, "usage: startup_ref PATH TIMEOUT_S [DPORT_LO DPORT_HI]\n");
        return 2;
    }
    double timeout_s = atof(argv[2]);
    int lo = argc == 5 ? atoi(argv[3]) : 0, hi = argc == 5 ? atoi(argv[4]) : 65535;
    hr_ring r;
    char err[512];
    if (hr_map(&r, argv[1], 0, err, sizeof err) < 0) {
        fprintf(stderr, "startup_ref: %s\n", err);
        return 2;
    }
    hr_consumer c;
    if (hr_consumer_open(&c, &r) < 0) {
        fprintf(stderr, "startup_ref: %s has no free consumer line\n", argv[1]);
        hr_unmap(&r);
        return 2;
    }
    int64_t t_joined = hr_now_ns();
    int64_t deadline = hr_mono_ns() + (int64_t)(timeout_s * 1e9);
    int64_t k = 0, polls = 0;
    for (;;) {
        k = hr_peek(&c, 1);
        if (k > 0)
            break;
        if (k < 0)
            hr_rejoin(&c, hr_now_ns()); /* evicted (stalled past the timeout): join again */
        if ((++polls & 4095) == 0 && hr_mono_ns() > deadline)
            break;
    }
    if (k <= 0) {
        fprintf(stderr, "startup_ref: no packet within %.1f s\n", timeout_s);
        hr_consumer_close(&c);
        hr_unmap(&r);
        return 1;
    }
    int64_t slot = hr_consumer_slot(&c, 0);
    const int64_t *w = c.words + slot * c.stride_w;
    int64_t caplen = (w[HR_S_LENS] >> 32) & 0xFFFFFFFF;
    if (caplen > c.slot_size)
        caplen = c.slot_size; /* never trust a length field */
    int dport;
    int matched = match((const uint8_t *)(const void *)(w + HR_S_PAYLOAD), caplen, lo, hi,
                        &dport);
    hr_release(&c, 1);
    int64_t t_first = hr_now_ns();
    printf("{\"t_main\": %lld, \"t_joined\": %lld, \"t_first\": %lld, \"matched\": %d, "
           "\"dport\": %d}\n",
           (long long)t_main, (long long)t_joined, (long long)t_first, matched, dport);
    fflush(stdout);
    hr_consumer_close(&c);
    hr_unmap(&r);
    return 0;
}
