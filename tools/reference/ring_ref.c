/* ring_ref — the C reference of tools/bench_ring.py: the same ring protocol
 * (shm/include/hugering_ring.h, the twin of shm/kernels.py) doing the same work per message
 * as the Numba loops in tools/bench_ring.py, on a ring created by Python (shm.Ring.create).
 *
 *   ring_ref produce PATH N BURST [--latency] [--payload BYTES] [--gap-ns NS] [--stdin]
 *   ring_ref consume PATH N BURST [--latency] [--samples FILE] [--stdin]
 *
 * produce: attach as the ring's producer, wait until a consumer is active, then publish N
 *   messages in bursts of BURST (lossless ring: spin on reserve while full).  Per burst one
 *   clock read, stamped into every slot and used as the heartbeat; per slot the header words
 *   and the payload words (seq + w) written through hr_slot_base.  --latency: one message
 *   every --gap-ns (default 2000), the clock read for each message just before its slot is
 *   written (the one-way latency stamp).
 * consume: join, then read N messages with hr_peek / hr_release; per slot check the sequence
 *   stamp, read the captured length (clamped to the slot) and sum the payload words.  The
 *   time runs from the first message received to the last (CLOCK_MONOTONIC).  --latency: one
 *   clock read per receipt; each slot's (now - ts_ns) goes to --samples FILE (raw int64 ns).
 *
 * --stdin: attach / join once, then run one segment per command line read from stdin, so that
 *   tools/bench_ring.py can alternate short segments of the C and the Numba pair:
 *       tp N            a throughput segment of N messages
 *       lat N [FILE]    a latency segment of N messages (consumer: samples to FILE)
 *   The consumer answers "armed" once it is about to poll, then a JSON line when done; the
 *   producer answers a JSON line.  EOF ends the program.
 *
 * Each segment prints one JSON object on stdout.  Exit 0 on success, 1 on a protocol error
 * (wrong count, bad sequence stamp, eviction), 2 on usage / mapping errors.
 */
#include "hugering_ring.h"

#include <stdlib.h>

struct opts {
    int64_t n, burst, payload, gap_ns;
    int latency;
    const char *samples;
};

static int usage(void)
{
    fprintf(stderr,
            "usage: ring_ref produce PATH N BURST [--latency] [--payload BYTES] [--gap-ns NS]\n"
            "       ring_ref consume PATH N BURST [--latency] [--samples FILE]\n");
    return 2;
}

/* Wait (sleeping, before anything is timed) until some consumer line is active. */
static int wait_for_consumer(const hr_ring *r, double timeout_s)
{
    struct timespec nap = {0, 1000000};
    int64_t deadline = hr_mono_ns() + (int64_t)(timeout_s * 1e9);
    while (hr_mono_ns() < deadline) {
        for (int64_t k = 0; k < r->max_consumers; k++)
            if (hr_load_acquire(r->ctrl, HR_C_BASE + k * HR_C_WORDS + HR_C_STATE) ==
                HR_CONSUMER_ACTIVE)
                return 0;
        nanosleep(&nap, NULL);
    }
    return -1;
}

/* ---- the timed loops: keep them line for line with tools/bench_ring.py ---------------- */
__attribute__((noinline)) static int64_t produce(hr_producer *p, int64_t n, int64_t burst,
                                                  int64_t payload_w, int64_t payload)
{
    int64_t *words = p->words;
    int64_t lens = payload | (payload << 32);
    int64_t sent = 0;
    while (sent < n) {
        int64_t want = n - sent > burst ? burst : n - sent;
        int64_t k = hr_reserve(p, want);
        if (k == 0)
            continue; /* full: the wait policy (spin) */
        int64_t now = hr_now_ns(); /* one clock read per burst: stamp and heartbeat */
        for (int64_t j = 0; j < k; j++) {
            int64_t base = hr_slot_base(p, j);
            int64_t seq = p->head + j;
            words[base + HR_S_TS] = now;
            words[base + HR_S_LENS] = lens;
            words[base + HR_S_PORTQ] = 0;
            for (int64_t w = 0; w < payload_w; w++)
                words[base + HR_S_PAYLOAD + w] = seq + w;
        }
        hr_submit(p, k, now);
        sent += k;
    }
    return sent;
}

__attribute__((noinline)) static int64_t produce_latency(hr_producer *p, int64_t n,
                                                          int64_t payload_w, int64_t payload,
                                                          int64_t gap_ns)
{
    int64_t *words = p->words;
    int64_t lens = payload | (payload << 32);
    int64_t next = hr_now_ns();
    for (int64_t i = 0; i < n; i++) {
        int64_t t = hr_now_ns();
        while (t < next) /* pace: one message per gap, no catch-up bursts */
            t = hr_now_ns();
        next = t + gap_ns;
        int64_t k = hr_reserve(p, 1);
        while (k == 0)
            k = hr_reserve(p, 1);
        int64_t ts = hr_now_ns(); /* the latency stamp: one clock read per message */
        int64_t base = hr_slot_base(p, 0);
        int64_t seq = p->head;
        words[base + HR_S_TS] = ts;
        words[base + HR_S_LENS] = lens;
        words[base + HR_S_PORTQ] = 0;
        for (int64_t w = 0; w < payload_w; w++)
            words[base + HR_S_PAYLOAD + w] = seq + w;
        hr_submit(p, 1, ts);
    }
    return n;
}

/* returns messages received; *checksum, *bad and *t0 / *t1 (monotonic ns) filled in */
__attribute__((noinline)) static int64_t consume(hr_consumer *c, int64_t n, int64_t burst,
                                                  uint64_t *checksum, int64_t *bad,
                                                  int64_t *t0, int64_t *t1)
{
    const int64_t *words = c->words;
    int64_t sw = c->stride_w, size = c->slot_size;
    uint64_t sum = 0;
    int64_t nbad = 0, got = 0;
    while (got < n) {
        int64_t k = hr_peek(c, burst);
        if (k <= 0) {
            if (k < 0)
                break; /* evicted */
            continue;
        }
        if (got == 0)
            *t0 = hr_mono_ns();
        int64_t cur = c->cursor;
        for (int64_t j = 0; j < k; j++) {
            int64_t base = hr_consumer_slot(c, j) * sw;
            if (words[base + HR_S_SEQ] != cur + j)
                nbad++;
            int64_t cap_len = (words[base + HR_S_LENS] >> 32) & 0xFFFFFFFF;
            if (cap_len > size)
                cap_len = size; /* never trust a length field */
            int64_t pw = (cap_len + 7) >> 3;
            for (int64_t w = 0; w < pw; w++)
                sum += (uint64_t)words[base + HR_S_PAYLOAD + w];
        }
        if (hr_release(c, k) < 0)
            break;
        got += k;
    }
    *t1 = hr_mono_ns();
    *checksum = sum;
    *bad = nbad;
    return got;
}

__attribute__((noinline)) static int64_t consume_latency(hr_consumer *c, int64_t n,
                                                          int64_t burst, int64_t *lat,
                                                          uint64_t *checksum, int64_t *bad)
{
    const int64_t *words = c->words;
    int64_t sw = c->stride_w, size = c->slot_size;
    uint64_t sum = 0;
    int64_t nbad = 0, got = 0;
    while (got < n) {
        int64_t k = hr_peek(c, burst);
        if (k <= 0) {
            if (k < 0)
                break;
            continue;
        }
        if (k > n - got)
            k = n - got;
        int64_t now = hr_now_ns(); /* receipt: one clock read per burst received */
        int64_t cur = c->cursor;
        for (int64_t j = 0; j < k; j++) {
            int64_t base = hr_consumer_slot(c, j) * sw;
            if (words[base + HR_S_SEQ] != cur + j)
                nbad++;
            lat[got + j] = now - words[base + HR_S_TS];
            int64_t cap_len = (words[base + HR_S_LENS] >> 32) & 0xFFFFFFFF;
            if (cap_len > size)
                cap_len = size;
            int64_t pw = (cap_len + 7) >> 3;
            for (int64_t w = 0; w < pw; w++)
                sum += (uint64_t)words[base + HR_S_PAYLOAD + w];
        }
        if (hr_release(c, k) < 0)
            break;
        got += k;
    }
    *checksum = sum;
    *bad = nbad;
    return got;
}

static int run_producer(hr_producer *p, hr_ring *r, int latency, int64_t n,
                        const struct opts *o)
{
    int64_t first = p->head;
    int64_t t0 = hr_mono_ns();
    int64_t sent = latency ? produce_latency(p, n, o->payload / 8, o->payload, o->gap_ns)
                           : produce(p, n, o->burst, o->payload / 8, o->payload);
    int64_t t1 = hr_mono_ns();
    printf("{\"role\": \"producer\", \"impl\": \"c\", \"first_seq\": %lld, "
           "\"messages\": %lld, \"elapsed_ns\": %lld, \"full_waits\": %lld}\n",
           (long long)first, (long long)sent, (long long)(t1 - t0),
           (long long)r->ctrl[HR_PS_FULL_WAITS]);
    fflush(stdout);
    return 0;
}

static int run_consumer(hr_consumer *c, int latency, int64_t n, const struct opts *o,
                        const char *samples, int announce)
{
    uint64_t sum = 0;
    int64_t bad = 0, got, t0 = 0, t1 = 0;
    int64_t first = c->cursor;
    if (latency) {
        size_t bytes = (size_t)(n > 0 ? n : 1) * sizeof(int64_t);
        int64_t *lat = malloc(bytes);
        if (!lat)
            return 2;
        memset(lat, 0, bytes); /* fault the pages in before anything is timed */
        if (announce) {
            printf("armed\n");
            fflush(stdout);
        }
        got = consume_latency(c, n, o->burst, lat, &sum, &bad);
        if (samples) {
            FILE *f = fopen(samples, "wb");
            if (!f || fwrite(lat, sizeof *lat, (size_t)got, f) != (size_t)got) {
                fprintf(stderr, "ring_ref: cannot write %s\n", samples);
                free(lat);
                return 2;
            }
            fclose(f);
        }
        free(lat);
    } else {
        if (announce) {
            printf("armed\n");
            fflush(stdout);
        }
        got = consume(c, n, o->burst, &sum, &bad, &t0, &t1);
    }
    printf("{\"role\": \"consumer\", \"impl\": \"c\", \"first_seq\": %lld, "
           "\"messages\": %lld, \"elapsed_ns\": %lld, \"checksum\": %lld, "
           "\"bad_seq\": %lld}\n",
           (long long)first, (long long)got, (long long)(t1 - t0), (long long)(int64_t)sum,
           (long long)bad);
    fflush(stdout);
    return got == n && bad == 0 ? 0 : 1;
}

/* one command line "tp N" or "lat N [FILE]"; returns 1 on a good parse */
static int parse_command(char *line, int *latency, int64_t *n, char **file)
{
    char *save = NULL;
    char *kind = strtok_r(line, " \t\r\n", &save);
    char *num = strtok_r(NULL, " \t\r\n", &save);
    *file = strtok_r(NULL, " \t\r\n", &save);
    if (!kind || !num)
        return 0;
    if (!strcmp(kind, "tp"))
        *latency = 0;
    else if (!strcmp(kind, "lat"))
        *latency = 1;
    else
        return 0;
    char *end;
    *n = strtoll(num, &end, 10);
    return *end == '\0' && *n >= 0;
}

int main(int argc, char **argv)
{
    if (argc < 5)
        return usage();
    const char *role = argv[1], *path = argv[2];
    struct opts o = {atoll(argv[3]), atoll(argv[4]), 64, 2000, 0, NULL};
    int serve = 0;
    for (int i = 5; i < argc; i++) {
        if (!strcmp(argv[i], "--latency"))
            o.latency = 1;
        else if (!strcmp(argv[i], "--stdin"))
            serve = 1;
        else if (!strcmp(argv[i], "--payload") && i + 1 < argc)
            o.payload = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--gap-ns") && i + 1 < argc)
            o.gap_ns = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--samples") && i + 1 < argc)
            o.samples = argv[++i];
        else
            return usage();
    }
    if (o.n < 0 || o.burst < 1)
        return usage();
    int producer = !strcmp(role, "produce");
    if (!producer && strcmp(role, "consume"))
        return usage();

    hr_ring r;
    char err[512];
    if (hr_map(&r, path, producer, err, sizeof err) < 0) {
        fprintf(stderr, "ring_ref: %s\n", err);
        return 2;
    }
    int rc = 0;
    char line[4096];
    int latency;
    int64_t n;
    char *file;
    if (producer) {
        if (o.payload < 0 || o.payload > r.slot_size || o.payload % 8) {
            fprintf(stderr, "ring_ref: --payload must be a multiple of 8 up to %lld\n",
                    (long long)r.slot_size);
            return 2;
        }
        hr_producer *p = malloc(sizeof *p);
        if (!p || hr_producer_open(p, &r) < 0) {
            fprintf(stderr, "ring_ref: %s already has a live producer (pid %lld)\n", path,
                    (long long)r.ctrl[HR_H_PRODUCER_PID]);
            return 2;
        }
        if (wait_for_consumer(&r, 60.0) < 0) {
            fprintf(stderr, "ring_ref: no consumer joined %s within 60 s\n", path);
            return 2;
        }
        if (!serve)
            rc = run_producer(p, &r, o.latency, o.n, &o);
        else
            while (rc == 0 && fgets(line, sizeof line, stdin)) {
                if (!parse_command(line, &latency, &n, &file)) {
                    fprintf(stderr, "ring_ref: bad command %s", line);
                    rc = 2;
                    break;
                }
                rc = run_producer(p, &r, latency, n, &o);
            }
        hr_producer_close(p);
        free(p);
    } else {
        hr_consumer c;
        if (hr_consumer_open(&c, &r) < 0) {
            fprintf(stderr, "ring_ref: %s has no free consumer line\n", path);
            return 2;
        }
        if (!serve)
            rc = run_consumer(&c, o.latency, o.n, &o, o.samples, 0);
        else
            while (rc == 0 && fgets(line, sizeof line, stdin)) {
                if (!parse_command(line, &latency, &n, &file)) {
                    fprintf(stderr, "ring_ref: bad command %s", line);
                    rc = 2;
                    break;
                }
                rc = run_consumer(&c, latency, n, &o, file, 1);
            }
        hr_consumer_close(&c);
    }
    hr_unmap(&r);
    return rc;
}
