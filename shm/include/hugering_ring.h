/* hugering_ring.h — the ring's verbs in C: the twin of shm/kernels.py.
 *
 * Same protocol, same layout (hugering_layout.h, generated from shm/layout.py), same
 * barriers with the same labels as shm/atomics.py, same heartbeat cadence and the same stores
 * to the shared statistics, so that a producer or consumer written in C (a DPDK PMD loop, the
 * C reference of tools/bench_ring.py) interoperates with the Numba kernels on one ring and
 * does the same work per burst.  Header-only: every function is `static inline`.
 *
 * Compile with gcc or clang, -std=c11 or gnu11, Linux.  Include this header FIRST (it asks
 * glibc for getpgid / MAP_POPULATE by defining _DEFAULT_SOURCE when no feature macro is set),
 * or build with -D_GNU_SOURCE / -std=gnu11 as DPDK does.
 *
 * Usage
 * -----
 *   hr_ring r;  char err[256];
 *   if (hr_map(&r, "/dev/hugepages/hugering.md", 1, err, sizeof err) < 0) die(err);
 *
 *   producer (one per ring):                     consumer (one line each):
 *     hr_producer p;                               hr_consumer c;
 *     hr_producer_open(&p, &r);                    hr_consumer_open(&c, &r);
 *     k = hr_reserve(&p, n);                       k = hr_peek(&c, n);     (-1: evicted)
 *     for j < k: hr_write_slot(&p, j, ...)         for j < k: read slot hr_consumer_slot(&c, j)
 *        (or write through hr_slot_base)           hr_release(&c, k);     (-1: evicted)
 *     hr_submit(&p, k, hr_now_ns());               lossy rings: hr_receive(&c, out, n)
 *     hr_producer_close(&p);  hr_unmap(&r);        hr_consumer_close(&c);  hr_unmap(&r);
 *
 * Who may call: one producer per ring (hr_producer is its private state; a second live
 * producer is refused by hr_attach_producer).  Each consumer only writes its own line.  The
 * hot verbs (reserve, write_slot, submit, peek, release, receive) allocate nothing, take no
 * lock and make no system call; the clock is read by the caller once per submit and, on slow
 * paths only, in reserve when the ring is full and in peek / release / receive every 1024 empty
 * polls or released slots (heartbeat).  Overload behaviour is the one documented at the top of
 * shm/kernels.py: lossless rings never overwrite unreleased slots (reserve returns fewer, the
 * caller drops and counts with hr_count_dropped or spins), lossy rings never wait and their
 * consumers count laps in `lost`.
 *
 * Memory ordering (pairs, as in shm/atomics.py):
 *   P1 producer store-release(cursor)   <-> C1 consumer load-acquire(cursor)
 *   C2 consumer store-release(cursor)   <-> P2 producer load-acquire(consumer cursor)
 *   L1 busy stamp + release fence, L2 store-release(seq)  <-> L3 seqlock read in hr_receive
 *   J1 consumer join seq_cst fence      <-> J2 producer seq_cst fence before its scan
 *   E1 producer CAS(state, ACTIVE, EVICTED) <-> E2 consumer load-acquire(own state)
 *
 * Cursors are free-running int64 sequence numbers masked on use; every index below is an
 * int64 word index into the control region (`ctrl`) or the slot region (`words`), exactly as
 * in the Numba kernels, so the two can be read side by side.
 */
#ifndef HUGERING_RING_H
#define HUGERING_RING_H

#if !defined(_GNU_SOURCE) && !defined(_DEFAULT_SOURCE) && !defined(_XOPEN_SOURCE) && \
    !defined(_POSIX_C_SOURCE) && !defined(_BSD_SOURCE)
#define _DEFAULT_SOURCE 1 /* getpgid, MAP_POPULATE, clock_gettime under -std=c11 */
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "hugering_layout.h"

/* --- cadences (mirror shm/kernels.py; a test checks) ------------------------------------ */
#define HR_HEARTBEAT_EVERY 1024            /* kernels.HEARTBEAT_EVERY */
#define HR_REAP_EVERY 16                   /* kernels.REAP_EVERY */
#define HR_HUGETLBFS_MAGIC 0x958458f6u     /* statfs f_type of a hugetlbfs mount */

/* --- int64 word indices (layout.H_* / P_* / PS_* / C_* / S_*) ------------------------- */
#define HR_WORD(off) ((int64_t)((off) / 8))
#define HR_H_CAPACITY HR_WORD(offsetof(hr_header, capacity))
#define HR_H_SLOTS_OFFSET HR_WORD(offsetof(hr_header, slots_offset))
#define HR_H_CONSUMER_TIMEOUT HR_WORD(offsetof(hr_header, consumer_timeout_ns))
#define HR_H_PRODUCER_PID HR_WORD(offsetof(hr_header, producer_pid))
#define HR_H_PRODUCER_START HR_WORD(offsetof(hr_header, producer_start_ns))
#define HR_P_CURSOR HR_WORD(HR_PRODUCER_OFFSET + offsetof(hr_producer_line, cursor))
#define HR_P_HEARTBEAT HR_WORD(HR_PRODUCER_OFFSET + offsetof(hr_producer_line, heartbeat_ns))
#define HR_PS_PUBLISHED HR_WORD(HR_PRODUCER_STATS_OFFSET + offsetof(hr_producer_stats, published))
#define HR_PS_DROPPED_FULL \
    HR_WORD(HR_PRODUCER_STATS_OFFSET + offsetof(hr_producer_stats, dropped_full))
#define HR_PS_EVICTIONS HR_WORD(HR_PRODUCER_STATS_OFFSET + offsetof(hr_producer_stats, evictions))
#define HR_PS_FULL_WAITS \
    HR_WORD(HR_PRODUCER_STATS_OFFSET + offsetof(hr_producer_stats, full_waits))
#define HR_PS_NIC_DROPS HR_WORD(HR_PRODUCER_STATS_OFFSET + offsetof(hr_producer_stats, nic_drops))
#define HR_SS(field) HR_WORD(HR_SOURCE_STATS_OFFSET + offsetof(hr_source_stats, field))
#define HR_SS_PACKETS HR_SS(src_packets)
#define HR_SS_MISSED HR_SS(src_missed)
#define HR_SS_ERRORS HR_SS(src_errors)
#define HR_SS_NOMBUF HR_SS(src_nombuf)
#define HR_SS_POOL_SIZE HR_SS(pool_size)
#define HR_SS_POOL_IN_USE HR_SS(pool_in_use)
#define HR_SS_TX_DROPPED HR_SS(tx_dropped)
#define HR_SS_STATS_NS HR_SS(src_stats_ns)
#define HR_C_BASE HR_WORD(HR_CONSUMERS_OFFSET)
#define HR_C_WORDS HR_WORD(HR_LINE)
#define HR_C_CURSOR HR_WORD(offsetof(hr_consumer_line, cursor))
#define HR_C_STATE HR_WORD(offsetof(hr_consumer_line, state))
#define HR_C_PID HR_WORD(offsetof(hr_consumer_line, pid))
#define HR_C_HEARTBEAT HR_WORD(offsetof(hr_consumer_line, heartbeat_ns))
#define HR_C_LOST HR_WORD(offsetof(hr_consumer_line, lost))
#define HR_C_DELIVERED HR_WORD(offsetof(hr_consumer_line, delivered))
#define HR_C_REJOINS HR_WORD(offsetof(hr_consumer_line, rejoins))
#define HR_C_JOINED HR_WORD(offsetof(hr_consumer_line, joined_ns))
#define HR_S_SEQ HR_WORD(offsetof(hr_slot_header, seq))
#define HR_S_TS HR_WORD(offsetof(hr_slot_header, ts_ns))
#define HR_S_LENS 2   /* wire_len | cap_len << 32, one 64-bit store (as kernels.write_slot) */
#define HR_S_PORTQ 3  /* port | queue << 16 | flags << 32 */
#define HR_S_PAYLOAD HR_WORD(HR_SLOT_HEADER_BYTES)
_Static_assert(offsetof(hr_slot_header, wire_len) == 8 * HR_S_LENS, "S_LENS");
_Static_assert(offsetof(hr_slot_header, port) == 8 * HR_S_PORTQ, "S_PORTQ");

/* --- the memory-ordering primitives (shm/atomics.py) ------------------------------------ */
/* Atomic even on x86-64, where plain mov already has acquire/release semantics in hardware:
 * the compiler must neither hoist a polled load out of its loop nor sink a cursor store
 * below the slot writes it publishes.  They compile to a plain mov (fences: mfence for
 * seq_cst, nothing for acquire/release). */
static inline int64_t hr_load_acquire(const int64_t *a, int64_t i)
{
    return __atomic_load_n(&a[i], __ATOMIC_ACQUIRE);
}
static inline int64_t hr_load_relaxed(const int64_t *a, int64_t i)
{
    return __atomic_load_n(&a[i], __ATOMIC_RELAXED);
}
static inline void hr_store_release(int64_t *a, int64_t i, int64_t v)
{
    __atomic_store_n(&a[i], v, __ATOMIC_RELEASE);
}
static inline void hr_store_relaxed(int64_t *a, int64_t i, int64_t v)
{
    __atomic_store_n(&a[i], v, __ATOMIC_RELAXED);
}
/* compare-and-swap (seq_cst); returns the value found: the swap happened iff == expected */
static inline int64_t hr_cas(int64_t *a, int64_t i, int64_t expected, int64_t desired)
{
    __atomic_compare_exchange_n(&a[i], &expected, desired, 0, __ATOMIC_SEQ_CST,
                                __ATOMIC_SEQ_CST);
    return expected;
}

/* --- clocks and liveness (shm/clock.py) -------------------------------------------------- */
/* CLOCK_REALTIME in ns: the ring's time base (slot stamps, heartbeats), vDSO, no syscall. */
static inline int64_t hr_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + (int64_t)ts.tv_nsec;
}
/* CLOCK_MONOTONIC in ns: intervals within one process. */
static inline int64_t hr_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + (int64_t)ts.tv_nsec;
}
/* Does a process with this pid exist?  getpgid needs no permission over the process (kill(pid,
 * 0) fails with EPERM for another user's); a zombie counts as existing. */
static inline int hr_pid_alive(int64_t pid)
{
    if (pid <= 0)
        return 0;
    return getpgid((pid_t)pid) >= 0;
}
/* Is this pid a zombie (dead, not yet reaped)?  Reads /proc/PID/stat; the state follows the
 * last ')' (the command name may itself hold spaces and parentheses).  Setup path only. */
static inline int hr_pid_is_zombie(int64_t pid)
{
    char path[64], buf[512];
    if (pid <= 0)
        return 0;
    snprintf(path, sizeof path, "/proc/%lld/stat", (long long)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t got = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (got <= 0)
        return 0;
    buf[got] = '\0';
    char *rp = strrchr(buf, ')');
    return rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X');
}

/* --- a mapped ring ----------------------------------------------------------------------- */
typedef struct hr_ring {
    int fd;
    int writable_slots;
    int64_t *ctrl;          /* control region as int64 words: header, producer, consumers (RW) */
    int64_t *words;         /* slot region as int64 words (a PROT_READ mapping for consumers) */
    uint8_t *slot_bytes;    /* the same slot region as bytes */
    size_t ctrl_len;        /* bytes mapped at offset 0 (= slots_offset) */
    size_t slots_len;       /* bytes mapped at slots_offset (= file_size - slots_offset) */
    int64_t capacity;
    int64_t slot_size;
    int64_t slot_stride;
    int64_t mode;
    int64_t full_policy;
    int64_t max_consumers;
    int64_t consumer_timeout_ns;
    int64_t slots_offset;
    int64_t file_size;
    int64_t page_size;
    int64_t backing;
} hr_ring;

static inline const hr_header *hr_ring_header(const hr_ring *r)
{
    return (const hr_header *)(const void *)r->ctrl;
}
/* slot i (already masked) as its header struct, and its payload */
static inline const hr_slot_header *hr_slot(const hr_ring *r, int64_t i)
{
    return (const hr_slot_header *)(const void *)(r->slot_bytes + i * r->slot_stride);
}
static inline const uint8_t *hr_slot_payload(const hr_ring *r, int64_t i)
{
    return r->slot_bytes + i * r->slot_stride + HR_SLOT_HEADER_BYTES;
}

static inline int hr__fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline int hr__fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static inline void hr_unmap(hr_ring *r)
{
    if (r->ctrl)
        munmap(r->ctrl, r->ctrl_len);
    if (r->words)
        munmap(r->words, r->slots_len);
    if (r->fd >= 0)
        close(r->fd);
    r->ctrl = r->words = NULL;
    r->slot_bytes = NULL;
    r->fd = -1;
}

/* Open a ring file by path (e.g. /dev/hugepages/hugering.NAME or /dev/shm/hugering.NAME),
 * validate its header before mapping anything (magic, version, mode, sizes, offsets, file
 * length: the checks of shm/backing.validate_header), then map the control region read-write
 * and the slot region read-write (writable_slots: producers) or read-only (consumers).  Pages
 * are populated up front.  Returns 0, or -1 with one sentence naming the field in `err`. */
static inline int hr_map(hr_ring *r, const char *path, int writable_slots, char *err,
                         size_t errlen)
{
    hr_header h;
    struct stat st;
    struct statfs sf;
    int64_t sys_page = (int64_t)sysconf(_SC_PAGESIZE);
    memset(r, 0, sizeof *r);
    r->fd = -1;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return hr__fail(err, errlen, "cannot open ring %s: %s", path, strerror(errno));
#define HR__BAD(...) do { close(fd); return hr__fail(err, errlen, __VA_ARGS__); } while (0)
    ssize_t got = pread(fd, &h, sizeof h, 0);
    if (got != (ssize_t)sizeof h)
        HR__BAD("ring %s: field 'file_size' is too small for the %d-byte header", path,
                (int)sizeof h);
    if (h.magic != HR_MAGIC)
        HR__BAD("ring %s: field 'magic' is 0x%016llx, expected 0x%016llx (not a hugering ring, "
                "or one still being created)", path, (unsigned long long)h.magic,
                (unsigned long long)HR_MAGIC);
    if (h.layout_version != HR_LAYOUT_VERSION)
        HR__BAD("ring %s: field 'layout_version' is %u; this header reads version %u", path,
                h.layout_version, HR_LAYOUT_VERSION);
    if (h.mode != HR_MODE_LOSSLESS && h.mode != HR_MODE_LOSSY)
        HR__BAD("ring %s: field 'mode' is %u, expected 0 (lossless) or 1 (lossy)", path, h.mode);
    if (h.full_policy != HR_FULL_DROP && h.full_policy != HR_FULL_WAIT)
        HR__BAD("ring %s: field 'full_policy' is %u, expected 0 (drop) or 1 (wait)", path,
                h.full_policy);
    if (h.capacity < 2 || h.capacity > HR_MAX_CAPACITY || (h.capacity & (h.capacity - 1)))
        HR__BAD("ring %s: field 'capacity' is %lld, expected a power of two from 2 to %lld",
                path, (long long)h.capacity, (long long)HR_MAX_CAPACITY);
    if (h.slot_size < HR_MIN_SLOT_SIZE || h.slot_size > HR_MAX_SLOT_SIZE)
        HR__BAD("ring %s: field 'slot_size' is %u, expected %d..%d", path, h.slot_size,
                HR_MIN_SLOT_SIZE, HR_MAX_SLOT_SIZE);
    if (h.slot_stride != HR_SLOT_STRIDE(h.slot_size))
        HR__BAD("ring %s: field 'slot_stride' is %u, expected %d for slot_size %u", path,
                h.slot_stride, (int)HR_SLOT_STRIDE(h.slot_size), h.slot_size);
    if (h.max_consumers < 1 || h.max_consumers > HR_MAX_CONSUMERS_LIMIT)
        HR__BAD("ring %s: field 'max_consumers' is %u, expected 1..%d", path, h.max_consumers,
                HR_MAX_CONSUMERS_LIMIT);
    int64_t ctrl_bytes = HR_CONSUMERS_OFFSET + (int64_t)HR_LINE * h.max_consumers;
    if (h.slots_offset < ctrl_bytes || h.slots_offset % sys_page)
        HR__BAD("ring %s: field 'slots_offset' is %lld, expected a page multiple >= %lld", path,
                (long long)h.slots_offset, (long long)ctrl_bytes);
    if (fstatfs(fd, &sf) == 0 && (uint32_t)sf.f_type == HR_HUGETLBFS_MAGIC &&
        h.slots_offset % (int64_t)sf.f_bsize)
        HR__BAD("ring %s: field 'slots_offset' is %lld, not a multiple of the mount's %lld-byte "
                "huge page", path, (long long)h.slots_offset, (long long)sf.f_bsize);
    if (fstat(fd, &st) < 0)
        HR__BAD("cannot stat ring %s: %s", path, strerror(errno));
    if (h.file_size != (int64_t)st.st_size)
        HR__BAD("ring %s: field 'file_size' is %lld but the file holds %lld bytes (truncated or "
                "overwritten)", path, (long long)h.file_size, (long long)st.st_size);
    if (h.slots_offset + h.capacity * (int64_t)h.slot_stride > h.file_size)
        HR__BAD("ring %s: field 'file_size' is %lld, too small for %lld slots of stride %u at "
                "offset %lld", path, (long long)h.file_size, (long long)h.capacity,
                h.slot_stride, (long long)h.slots_offset);
    if (h.consumer_timeout_ns <= 0)
        HR__BAD("ring %s: field 'consumer_timeout_ns' is %lld, expected > 0", path,
                (long long)h.consumer_timeout_ns);
#undef HR__BAD
    int flags = MAP_SHARED;
#ifdef MAP_POPULATE
    flags |= MAP_POPULATE; /* no page fault on the hot path */
#endif
    void *c = mmap(NULL, (size_t)h.slots_offset, PROT_READ | PROT_WRITE, flags, fd, 0);
    if (c == MAP_FAILED) {
        int e = errno;
        close(fd);
        return hr__fail(err, errlen, "cannot map the control region of %s: %s", path,
                        strerror(e));
    }
    size_t slen = (size_t)(h.file_size - h.slots_offset);
    void *s = mmap(NULL, slen, PROT_READ | (writable_slots ? PROT_WRITE : 0), flags, fd,
                   (off_t)h.slots_offset);
    if (s == MAP_FAILED) {
        int e = errno;
        munmap(c, (size_t)h.slots_offset);
        close(fd);
        return hr__fail(err, errlen, "cannot map the slot region of %s: %s%s", path,
                        strerror(e), e == ENOMEM ? " (no free huge pages?)" : "");
    }
    r->fd = fd;
    r->writable_slots = writable_slots;
    r->ctrl = (int64_t *)c;
    r->words = (int64_t *)s;
    r->slot_bytes = (uint8_t *)s;
    r->ctrl_len = (size_t)h.slots_offset;
    r->slots_len = slen;
    r->capacity = h.capacity;
    r->slot_size = h.slot_size;
    r->slot_stride = h.slot_stride;
    r->mode = h.mode;
    r->full_policy = h.full_policy;
    r->max_consumers = h.max_consumers;
    r->consumer_timeout_ns = h.consumer_timeout_ns;
    r->slots_offset = h.slots_offset;
    r->file_size = h.file_size;
    r->page_size = h.page_size;
    r->backing = h.backing;
    return 0;
}

/* Map a ring by name as shm.Ring.open finds it: DIR/hugering.NAME on the hugetlbfs mount
 * (`hugetlbfs`, default /dev/hugepages), else /dev/shm/hugering.NAME. */
static inline int hr_map_name(hr_ring *r, const char *name, const char *hugetlbfs,
                              int writable_slots, char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/hugering.%s", hugetlbfs ? hugetlbfs : "/dev/hugepages",
             name);
    if (access(path, F_OK) != 0)
        snprintf(path, sizeof path, "/dev/shm/hugering.%s", name);
    return hr_map(r, path, writable_slots, err, errlen);
}

/* ===================================== producer ========================================== */
/* The producer's private state (kernels.PS_*); process-local, never shared. */
typedef struct hr_producer {
    int64_t *ctrl;
    int64_t *words;
    uint8_t *slot_bytes;
    int64_t head;           /* PS_HEAD: its copy of its cursor (it is the only writer) */
    int64_t cached_tail;    /* PS_CACHED_TAIL: slowest consumer cursor last seen */
    int64_t mask;
    int64_t capacity;
    int64_t stride_w;       /* slot stride in int64 words */
    int64_t mode;
    int64_t max_consumers;
    int64_t timeout_ns;
    int64_t slot_size;
    int64_t full_calls;     /* reserve calls that found the ring full */
    int64_t published;
    int64_t dropped;
    int64_t pid;
    int64_t track[2 * HR_MAX_CONSUMERS_LIMIT]; /* per consumer: last cursor, when it moved */
} hr_producer;

/* Become the ring's single producer; returns the cursor to resume from, or -1 if another live
 * producer is attached.  A restarted producer resumes where the dead one stopped. */
static inline int64_t hr_attach_producer(int64_t *ctrl, int64_t pid)
{
    for (;;) {
        int64_t old = hr_load_acquire(ctrl, HR_H_PRODUCER_PID);
        if (old != 0 && hr_pid_alive(old))
            return -1; /* a live producer (this process included) is attached */
        if (hr_cas(ctrl, HR_H_PRODUCER_PID, old, pid) == old)
            return hr_load_acquire(ctrl, HR_P_CURSOR);
    }
}

static inline void hr_detach_producer(int64_t *ctrl, int64_t pid)
{
    hr_cas(ctrl, HR_H_PRODUCER_PID, pid, 0);
}

/* Attach as producer and fill the private state (shm.ring.Producer.__init__).  Returns 0, -1
 * if another live producer holds the ring, -2 if the ring was mapped with read-only slots
 * (hr_map's writable_slots = 0). */
static inline int hr_producer_open(hr_producer *p, hr_ring *r)
{
    memset(p, 0, sizeof *p);
    if (!r->writable_slots)
        return -2;
    p->pid = (int64_t)getpid();
    int64_t old = r->ctrl[HR_H_PRODUCER_PID];
    if (old != 0 && hr_pid_is_zombie(old))
        /* a dead producer its parent has not reaped yet: getpgid still finds it, but it
         * will never publish again, so it must not block its replacement */
        hr_detach_producer(r->ctrl, old);
    int64_t resume = hr_attach_producer(r->ctrl, p->pid);
    if (resume < 0)
        return -1;
    r->ctrl[HR_H_PRODUCER_START] = hr_now_ns();
    p->ctrl = r->ctrl;
    p->words = r->words;
    p->slot_bytes = r->slot_bytes;
    p->head = resume;
    /* unknown until the consumer lines are scanned (they may not have read what a previous
     * producer published): a tail a whole ring back makes the first reserve scan them */
    p->cached_tail = resume - r->capacity;
    p->mask = r->capacity - 1;
    p->capacity = r->capacity;
    p->stride_w = r->slot_stride / 8;
    p->mode = r->mode;
    p->max_consumers = r->max_consumers;
    p->timeout_ns = r->consumer_timeout_ns;
    p->slot_size = r->slot_size;
    p->published = r->ctrl[HR_PS_PUBLISHED];
    p->dropped = r->ctrl[HR_PS_DROPPED_FULL];
    for (int k = 0; k < HR_MAX_CONSUMERS_LIMIT; k++)
        p->track[2 * k] = -1;
    return 0;
}

static inline void hr_producer_close(hr_producer *p)
{
    if (p->ctrl)
        hr_detach_producer(p->ctrl, p->pid);
    p->ctrl = NULL;
}

/* Word index (into words) of the j-th slot of the burst being reserved. */
static inline int64_t hr_slot_base(const hr_producer *p, int64_t j)
{
    return ((p->head + j) & p->mask) * p->stride_w;
}

/* Slow path: the slowest active consumer's cursor, evicting dead or stuck ones.  `now` is 0
 * when this call should not run the (clock-based) eviction check. */
static inline int64_t hr__scan_tail(hr_producer *p, int64_t head, int64_t n, int64_t now)
{
    int64_t *ctrl = p->ctrl;
    /* J2: pairs with J1 in hr_consumer_join.  Without a store-load barrier here, a consumer
     * that joined just now could be missed by this scan while it also misses our publish. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    int64_t tail = head;
    int64_t cap = p->capacity;
    for (int64_t k = 0; k < p->max_consumers; k++) {
        int64_t line = HR_C_BASE + k * HR_C_WORDS;
        if (hr_load_acquire(ctrl, line + HR_C_STATE) != HR_CONSUMER_ACTIVE)
            continue;
        int64_t cur = hr_load_acquire(ctrl, line + HR_C_CURSOR); /* P2: pairs with C2 */
        int64_t *track = &p->track[2 * k];
        if (cur != track[0]) {
            /* progress restarts its timer (0 = seen moving, time unknown) */
            track[0] = cur;
            track[1] = now;
        }
        if (now != 0 && cap - (head - cur) < n) {
            /* this consumer is what holds the producer back: is it dead or stuck? */
            if (track[1] == 0)
                track[1] = now;
            int64_t hb = hr_load_relaxed(ctrl, line + HR_C_HEARTBEAT);
            int64_t last = track[1] > hb ? track[1] : hb;
            int64_t pid = hr_load_relaxed(ctrl, line + HR_C_PID);
            if (!hr_pid_alive(pid) || now - last > p->timeout_ns) {
                /* E1: pairs with E2 (peek / release load the state with acquire) */
                if (hr_cas(ctrl, line + HR_C_STATE, HR_CONSUMER_ACTIVE, HR_CONSUMER_EVICTED) ==
                    HR_CONSUMER_ACTIVE) {
                    hr_store_relaxed(ctrl, HR_PS_EVICTIONS, ctrl[HR_PS_EVICTIONS] + 1);
                    track[0] = -1;
                }
                continue;
            }
        }
        if (cur < tail)
            tail = cur;
    }
    return tail;
}

/* Reserve up to n slots for writing; returns how many (0..n).  Single producer only.
 * Lossless: never more than the slowest active consumer has released; 0 when full (drop and
 * count with hr_count_dropped, or call again).  Lossy: always n (at most the capacity); the
 * reserved slots are stamped busy first so a reader never takes a half-written slot. */
static inline int64_t hr_reserve(hr_producer *p, int64_t n)
{
    int64_t cap = p->capacity;
    if (n > cap)
        n = cap;
    int64_t head = p->head;
    if (p->mode == HR_MODE_LOSSY) {
        int64_t sw = p->stride_w, mask = p->mask;
        for (int64_t j = 0; j < n; j++) /* L1: pairs with L3 (hr_receive) */
            hr_store_relaxed(p->words, ((head + j) & mask) * sw + HR_S_SEQ, HR_SEQ_BUSY);
        __atomic_thread_fence(__ATOMIC_RELEASE); /* L1: payload stores stay after the mark */
        return n;
    }
    int64_t free_ = cap - (head - p->cached_tail);
    if (free_ >= n)
        return n; /* fast path: the cached tail is enough */
    int64_t now = 0;
    int64_t calls = ++p->full_calls;
    if (calls % HR_REAP_EVERY == 0)
        now = hr_now_ns();
    int64_t tail = hr__scan_tail(p, head, n, now);
    p->cached_tail = tail;
    free_ = cap - (head - tail);
    if (free_ < n) {
        hr_store_relaxed(p->ctrl, HR_PS_FULL_WAITS, p->ctrl[HR_PS_FULL_WAITS] + 1);
        return free_ < 0 ? 0 : free_;
    }
    return n;
}

/* Copy frame[:frame_len] into the j-th reserved slot, clamped to the slot size (the truncation
 * is flagged, the wire length kept).  Returns the captured length. */
static inline int64_t hr_write_slot(hr_producer *p, int64_t j, const void *frame,
                                    int64_t frame_len, uint32_t wire_len, int64_t ts_ns,
                                    uint16_t port, uint16_t queue)
{
    int64_t base = hr_slot_base(p, j);
    uint64_t flags = 0;
    int64_t cap_len = frame_len;
    if (cap_len > p->slot_size) {
        cap_len = p->slot_size;
        flags = HR_SLOT_FLAG_TRUNCATED;
    }
    if (cap_len < 0)
        cap_len = 0;
    p->words[base + HR_S_TS] = ts_ns;
    p->words[base + HR_S_LENS] = (int64_t)((uint64_t)wire_len | ((uint64_t)cap_len << 32));
    p->words[base + HR_S_PORTQ] =
        (int64_t)((uint64_t)port | ((uint64_t)queue << 16) | (flags << 32));
    memcpy(p->slot_bytes + base * 8 + HR_SLOT_HEADER_BYTES, frame, (size_t)cap_len);
    return cap_len;
}

/* Publish the first k reserved slots (stamp each, then one release store of the cursor).
 * `now` is the producer's clock for its heartbeat.  Returns the new cursor. */
static inline int64_t hr_submit(hr_producer *p, int64_t k, int64_t now)
{
    int64_t head = p->head, sw = p->stride_w, mask = p->mask;
    if (p->mode == HR_MODE_LOSSY) {
        for (int64_t j = 0; j < k; j++) /* L2: pairs with L3; the stamp goes last */
            hr_store_release(p->words, ((head + j) & mask) * sw + HR_S_SEQ, head + j);
    } else {
        for (int64_t j = 0; j < k; j++)
            p->words[((head + j) & mask) * sw + HR_S_SEQ] = head + j; /* covered by P1 */
    }
    head += k;
    p->head = head;
    p->published += k;
    hr_store_release(p->ctrl, HR_P_CURSOR, head); /* P1: pairs with C1 (peek / receive) */
    hr_store_relaxed(p->ctrl, HR_P_HEARTBEAT, now);
    hr_store_relaxed(p->ctrl, HR_PS_PUBLISHED, p->published);
    return head;
}

/* Lossless with the drop policy: record n frames dropped because the ring was full. */
static inline void hr_count_dropped(hr_producer *p, int64_t n)
{
    p->dropped += n;
    hr_store_relaxed(p->ctrl, HR_PS_DROPPED_FULL, p->dropped);
}

/* Upstream (NIC) drops as the source reports them, e.g. rte_eth_stats.imissed. */
static inline void hr_set_nic_drops(hr_producer *p, int64_t total)
{
    hr_store_relaxed(p->ctrl, HR_PS_NIC_DROPS, total);
}

/* One refresh of the source_stats line (what the NIC / mempool report), about once a second.
 * Relaxed stores: readers (hugering stat, the leak monitor) want recent values, not a snapshot
 * consistent with any cursor. */
static inline void hr_set_source_stats(hr_producer *p, int64_t packets, int64_t missed,
                                       int64_t errors, int64_t nombuf, int64_t pool_size,
                                       int64_t pool_in_use, int64_t tx_dropped, int64_t now)
{
    hr_store_relaxed(p->ctrl, HR_SS_PACKETS, packets);
    hr_store_relaxed(p->ctrl, HR_SS_MISSED, missed);
    hr_store_relaxed(p->ctrl, HR_SS_ERRORS, errors);
    hr_store_relaxed(p->ctrl, HR_SS_NOMBUF, nombuf);
    hr_store_relaxed(p->ctrl, HR_SS_POOL_SIZE, pool_size);
    hr_store_relaxed(p->ctrl, HR_SS_POOL_IN_USE, pool_in_use);
    hr_store_relaxed(p->ctrl, HR_SS_TX_DROPPED, tx_dropped);
    hr_store_relaxed(p->ctrl, HR_SS_STATS_NS, now);
}

/* Heartbeat while there is nothing to publish (so consumers can tell idle from dead). */
static inline void hr_producer_idle(hr_producer *p, int64_t now)
{
    hr_store_relaxed(p->ctrl, HR_P_HEARTBEAT, now);
}

/* Spin on hr_reserve until at least one slot is free or deadline_ns (CLOCK_REALTIME, 0 = none)
 * passes: the full-wait policy of a lossless ring. */
static inline int64_t hr_reserve_wait(hr_producer *p, int64_t n, int64_t deadline_ns)
{
    int64_t k = hr_reserve(p, n);
    int64_t spins = 0;
    while (k == 0) {
        spins++;
        if (deadline_ns != 0 && spins % 256 == 0 && hr_now_ns() > deadline_ns)
            return 0;
        k = hr_reserve(p, n);
    }
    return k;
}

/* ===================================== consumer ========================================== */
/* A consumer's private state (kernels.CS_*); process-local, never shared. */
typedef struct hr_consumer {
    int64_t *ctrl;
    const int64_t *words;
    int64_t line;           /* CS_LINE: word index of this consumer's line in ctrl */
    int64_t cursor;         /* CS_CURSOR: its copy of its cursor (it is the only writer) */
    int64_t cached_head;    /* CS_CACHED_HEAD: producer cursor last seen */
    int64_t mask;
    int64_t capacity;
    int64_t stride_w;
    int64_t mode;
    int64_t slot_size;
    int64_t empty_polls;
    int64_t pid;
    int64_t index;          /* which consumer line */
} hr_consumer;

/* Zero the counters of a line just claimed and publish its owner (kernels._fresh_line). */
static inline void hr_fresh_line(int64_t *ctrl, int64_t line, int64_t pid)
{
    hr_store_relaxed(ctrl, line + HR_C_PID, 0);
    for (int64_t w = 2; w < HR_C_WORDS; w++)
        if (w != HR_C_STATE)
            hr_store_relaxed(ctrl, line + w, 0);
    hr_store_relaxed(ctrl, line + HR_C_PID, pid);
}

/* Claim a free consumer line, or one left by a dead process (kernels.claim_line); returns its
 * index or -1 when all lines are held by live consumers.  Setup path only.  The pid
 * goes in right after the claim, so a process that dies between claim and join leaves a line
 * the next claimer can take over. */
static inline int64_t hr_claim_line(int64_t *ctrl, int64_t max_consumers, int64_t pid)
{
    for (int64_t k = 0; k < max_consumers; k++) {
        int64_t line = HR_C_BASE + k * HR_C_WORDS;
        if (hr_cas(ctrl, line + HR_C_STATE, HR_CONSUMER_FREE, HR_CONSUMER_CLAIMED) ==
            HR_CONSUMER_FREE) {
            hr_fresh_line(ctrl, line, pid);
            return k;
        }
    }
    for (int64_t k = 0; k < max_consumers; k++) {
        int64_t line = HR_C_BASE + k * HR_C_WORDS;
        int64_t state = hr_load_acquire(ctrl, line + HR_C_STATE);
        if (state == HR_CONSUMER_FREE)
            continue;
        int64_t owner = hr_load_relaxed(ctrl, line + HR_C_PID);
        if (state == HR_CONSUMER_CLAIMED && owner == 0)
            continue; /* being claimed right now: pid not yet in */
        if (!hr_pid_alive(owner) &&
            hr_cas(ctrl, line + HR_C_STATE, state, HR_CONSUMER_CLAIMED) == state) {
            hr_fresh_line(ctrl, line, pid);
            return k;
        }
    }
    return -1;
}

/* Activate this consumer's (already claimed) line at the producer's current cursor.  A new
 * consumer sees what is published after it joined.  Publish the line as active, full barrier
 * (J1: pairs with J2 in the producer's scan), then read the producer cursor: either the
 * producer's next scan sees us, or we see everything it published before that scan. */
static inline int64_t hr_consumer_join(hr_consumer *c, int64_t pid, int64_t now)
{
    int64_t *ctrl = c->ctrl;
    int64_t line = c->line;
    hr_store_relaxed(ctrl, line + HR_C_PID, pid);
    hr_store_relaxed(ctrl, line + HR_C_HEARTBEAT, now);
    hr_store_relaxed(ctrl, line + HR_C_JOINED, now);
    int64_t h0 = hr_load_acquire(ctrl, HR_P_CURSOR);
    hr_store_release(ctrl, line + HR_C_CURSOR, h0);
    hr_store_release(ctrl, line + HR_C_STATE, HR_CONSUMER_ACTIVE);
    __atomic_thread_fence(__ATOMIC_SEQ_CST); /* J1: pairs with J2 (hr__scan_tail) */
    int64_t h1 = hr_load_acquire(ctrl, HR_P_CURSOR);
    hr_store_release(ctrl, line + HR_C_CURSOR, h1);
    c->cursor = h1;
    c->cached_head = h1;
    return h1;
}

/* Claim a line, fill the private state and join (shm.ring.Consumer.__init__).  Returns the
 * line index, or -1 when every line is held by a live consumer. */
static inline int64_t hr_consumer_open(hr_consumer *c, hr_ring *r)
{
    memset(c, 0, sizeof *c);
    c->pid = (int64_t)getpid();
    int64_t k = hr_claim_line(r->ctrl, r->max_consumers, c->pid);
    if (k < 0)
        return -1;
    c->index = k;
    c->ctrl = r->ctrl;
    c->words = r->words;
    c->line = HR_C_BASE + k * HR_C_WORDS;
    c->mask = r->capacity - 1;
    c->capacity = r->capacity;
    c->stride_w = r->slot_stride / 8;
    c->mode = r->mode;
    c->slot_size = r->slot_size;
    hr_consumer_join(c, c->pid, hr_now_ns());
    return k;
}

/* Free this consumer's line (a clean exit; a crashed consumer is evicted instead). */
static inline void hr_consumer_leave(hr_consumer *c)
{
    hr_store_release(c->ctrl, c->line + HR_C_STATE, HR_CONSUMER_FREE);
}
static inline void hr_consumer_close(hr_consumer *c)
{
    if (c->ctrl)
        hr_consumer_leave(c);
    c->ctrl = NULL;
}

/* After an eviction: count what was missed and join again at the producer's cursor.  Returns
 * the number of sequence numbers missed, or -1 if the line was not evicted. */
static inline int64_t hr_rejoin(hr_consumer *c, int64_t now)
{
    int64_t *ctrl = c->ctrl;
    int64_t line = c->line;
    int64_t old = c->cursor;
    if (hr_cas(ctrl, line + HR_C_STATE, HR_CONSUMER_EVICTED, HR_CONSUMER_CLAIMED) !=
        HR_CONSUMER_EVICTED)
        return -1;
    int64_t h = hr_consumer_join(c, c->pid, now);
    int64_t missed = h > old ? h - old : 0;
    hr_store_relaxed(ctrl, line + HR_C_LOST, ctrl[line + HR_C_LOST] + missed);
    hr_store_relaxed(ctrl, line + HR_C_REJOINS, ctrl[line + HR_C_REJOINS] + 1);
    return missed;
}

/* Slot index (masked) of the j-th slot of the burst last peeked. */
static inline int64_t hr_consumer_slot(const hr_consumer *c, int64_t j)
{
    return (c->cursor + j) & c->mask;
}

/* How many slots (0..n) are ready to read in place from c->cursor; -1 if the producer evicted
 * this consumer (call hr_rejoin).  Lossless rings only: a lossy ring is read with hr_receive. */
static inline int64_t hr_peek(hr_consumer *c, int64_t n)
{
    int64_t cur = c->cursor;
    int64_t avail = c->cached_head - cur;
    if (avail >= n)
        return n; /* fast path: no shared line touched */
    int64_t *ctrl = c->ctrl;
    int64_t line = c->line;
    if (hr_load_acquire(ctrl, line + HR_C_STATE) != HR_CONSUMER_ACTIVE) /* E2: pairs with E1 */
        return -1;
    int64_t head = hr_load_acquire(ctrl, HR_P_CURSOR); /* C1: pairs with P1 (hr_submit) */
    c->cached_head = head;
    avail = head - cur;
    if (avail <= 0) {
        int64_t polls = ++c->empty_polls;
        if (polls % HR_HEARTBEAT_EVERY == 0)
            hr_store_relaxed(ctrl, line + HR_C_HEARTBEAT, hr_now_ns());
        return 0;
    }
    return avail < n ? avail : n;
}

/* Hand k peeked slots back to the producer; returns k, or -1 if the producer evicted this
 * consumer meanwhile (the slots read since may have been overwritten: discard, hr_rejoin). */
static inline int64_t hr_release(hr_consumer *c, int64_t k)
{
    int64_t *ctrl = c->ctrl;
    int64_t line = c->line;
    int64_t old = c->cursor;
    int64_t cur = old + k;
    /* the in-place slot reads above must be done before we ask whether we were evicted
     * (free on x86; on weaker CPUs loads may otherwise complete after the state load) */
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (hr_load_acquire(ctrl, line + HR_C_STATE) != HR_CONSUMER_ACTIVE) /* E2: pairs with E1 */
        return -1; /* evicted: the burst is discarded; the cursor stays before it (-> lost) */
    c->cursor = cur;
    hr_store_release(ctrl, line + HR_C_CURSOR, cur); /* C2: pairs with P2 (hr__scan_tail) */
    hr_store_relaxed(ctrl, line + HR_C_DELIVERED, ctrl[line + HR_C_DELIVERED] + k);
    if ((cur ^ old) >= HR_HEARTBEAT_EVERY) /* crossed a multiple of 1024 (roughly) */
        hr_store_relaxed(ctrl, line + HR_C_HEARTBEAT, hr_now_ns());
    return k;
}

/* Lossy rings: copy up to n published slots into `out` (private, n * stride_w int64 words),
 * delivering only slots that were not overwritten during the copy (a seqlock read).  Returns
 * the number copied.  Lapping is counted in `lost` and the cursor resynchronises half a ring
 * behind the producer.  Works on lossless rings too (a copy instead of zero-copy). */
static inline int64_t hr_receive(hr_consumer *c, int64_t *out, int64_t n)
{
    int64_t *ctrl = c->ctrl;
    const int64_t *words = c->words;
    int64_t line = c->line, cap = c->capacity, mask = c->mask, sw = c->stride_w;
    int64_t size_w = (c->slot_size + 7) / 8;
    int64_t cur = c->cursor;
    int64_t head = hr_load_acquire(ctrl, HR_P_CURSOR); /* C1: pairs with P1 (hr_submit) */
    int64_t lost = 0;
    int resync = 0;
    if (head - cur > cap) { /* a whole ring behind: certainly lapped */
        lost = head - cap / 2 - cur;
        cur = head - cap / 2;
        resync = 1;
    }
    int64_t k = 0;
    int lapped = 0;
    while (k < n && cur < head) {
        int64_t base = (cur & mask) * sw;
        if (hr_load_acquire(words, base + HR_S_SEQ) != cur) { /* L3: pairs with L1/L2 */
            lapped = 1;
            break;
        }
        int64_t ob = k * sw;
        int64_t lens = words[base + HR_S_LENS];
        int64_t cap_len = (lens >> 32) & 0xFFFFFFFF;
        int64_t payload_w = ((cap_len < c->slot_size ? cap_len : c->slot_size) + 7) / 8;
        if (payload_w > size_w)
            payload_w = size_w;
        out[ob + HR_S_TS] = words[base + HR_S_TS];
        out[ob + HR_S_LENS] = lens;
        out[ob + HR_S_PORTQ] = words[base + HR_S_PORTQ];
        for (int64_t w = 0; w < payload_w; w++)
            out[ob + HR_S_PAYLOAD + w] = words[base + HR_S_PAYLOAD + w];
        __atomic_thread_fence(__ATOMIC_ACQUIRE); /* L3: the copy completes before the re-check */
        if (hr_load_relaxed(words, base + HR_S_SEQ) != cur) {
            lapped = 1;
            break;
        }
        out[ob + HR_S_SEQ] = cur;
        k++;
        cur++;
    }
    if (lapped) {
        head = hr_load_acquire(ctrl, HR_P_CURSOR);
        int64_t target = head - cap / 2;
        if (target > cur) {
            lost += target - cur;
            cur = target;
        }
        resync = 1;
    }
    if (resync) /* once per call, however it was lapped */
        hr_store_relaxed(ctrl, line + HR_C_REJOINS, ctrl[line + HR_C_REJOINS] + 1);
    if (lost != 0)
        hr_store_relaxed(ctrl, line + HR_C_LOST, ctrl[line + HR_C_LOST] + lost);
    c->cursor = cur;
    hr_store_release(ctrl, line + HR_C_CURSOR, cur); /* C2 (a lossless ring's producer reads it) */
    if (k > 0) {
        hr_store_relaxed(ctrl, line + HR_C_DELIVERED, ctrl[line + HR_C_DELIVERED] + k);
    } else {
        int64_t polls = ++c->empty_polls;
        if (polls % HR_HEARTBEAT_EVERY == 0)
            hr_store_relaxed(ctrl, line + HR_C_HEARTBEAT, hr_now_ns());
    }
    return k;
}

#endif /* HUGERING_RING_H */
