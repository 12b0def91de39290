/* match_ref.c -- the C references of tools/bench_match.py, written plainly.
 *
 *   match_ref match <entries.bin> <max_instruments> <max_orders> <max_levels> <out_bytes> <check>
 *   match_ref book  <itch.bin>    <max_instruments> <max_orders> <max_levels> <check>
 *
 * "match": the price-time-priority matching engine of engine/matching.py -- the same order-entry
 * subset in, the same rules, the same ITCH 5.0 output (MoldUDP64 message blocks) byte for byte,
 * the same data structures (order slots on a free stack, FIFO links per level, an open-addressing
 * user-ref table with the same folded hash, levels per book side sorted best last).  With check=1
 * one pass prints the output's length and FNV-1a hash and the counters (the benchmark compares
 * them with hugering's); with check=0 a timed pass (ns) and a latency pass (TSC cycles around
 * each message, exact percentiles) on fresh engines whose memory is touched first.
 *
 * "book": the ITCH order books of engine/book.py (apply_itch_blocks): MoldUDP64 message blocks in,
 * A/F/E/C/X/D/U applied (the orders in their hash slots, the same hash, the same 4-word levels,
 * the same prefetch of the slot 8 blocks ahead, the same overload rules);
 * prints the final open orders, level count and aggregate shares, and the ns of a timed pass.
 *
 * Output: one JSON object on stdout.  gcc -O2, no dependencies.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <x86intrin.h>

typedef int64_t i64;
typedef uint8_t u8;

/* ---- big-endian access ------------------------------------------------------------------ */
static inline i64 rd16(const u8 *p) { return ((i64)p[0] << 8) | p[1]; }
static inline i64 rd32(const u8 *p) { uint32_t v; memcpy(&v, p, 4); return __builtin_bswap32(v); }
static inline i64 rd64(const u8 *p) { uint64_t v; memcpy(&v, p, 8); return (i64)__builtin_bswap64(v); }
static inline void wr16(u8 *p, i64 v) { p[0] = (u8)(v >> 8); p[1] = (u8)v; }
static inline void wr32(u8 *p, i64 v) { uint32_t x = __builtin_bswap32((uint32_t)v); memcpy(p, &x, 4); }
static inline void wr48(u8 *p, i64 v) { wr32(p, v >> 16); wr16(p + 4, v); }
static inline void wr64(u8 *p, i64 v) { uint64_t x = __builtin_bswap64((uint64_t)v); memcpy(p, &x, 8); }

static i64 now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (i64)t.tv_sec * 1000000000 + t.tv_nsec;
}

static double tsc_hz(void) {
    i64 t0 = now_ns();
    uint64_t c0 = __rdtsc();
    while (now_ns() - t0 < 50000000) {}
    uint64_t c1 = __rdtsc();
    i64 t1 = now_ns();
    return (double)(c1 - c0) * 1e9 / (double)(t1 - t0);
}

static u8 *read_file(const char *path, long *n) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    fseek(f, 0, SEEK_END);
    *n = ftell(f);
    fseek(f, 0, SEEK_SET);
    u8 *buf = malloc(*n + 64);
    if (fread(buf, 1, *n, f) != (size_t)*n) { perror("read"); exit(2); }
    fclose(f);
    return buf;
}

static void *touched(size_t bytes) {       /* allocated and written: no page fault when timed */
    void *p = malloc(bytes);
    memset(p, 0, bytes);
    return p;
}

/* ---- the hash table (engine/book.py: pairs key, value; value -1 = empty) ------------------ */
typedef struct { i64 *t; i64 mask; } table;

static void ht_init(table *h, i64 max_entries) {
    i64 cap = 16;
    while (cap < 2 * max_entries) cap *= 2;
    h->mask = cap - 1;
    h->t = touched(2 * cap * sizeof(i64));
    for (i64 i = 0; i < cap; i++) h->t[2 * i + 1] = -1;
}

static inline i64 ht_home(const table *h, i64 k) {
    i64 x = k ^ (k >> 16) ^ (k >> 32) ^ (k >> 48);   /* engine/book.py ht_home */
    x ^= x >> 8;
    return (i64)((uint64_t)x << 1) & h->mask;   /* even homes */
}

static inline i64 ht_find(const table *h, i64 k) {
    i64 i = ht_home(h, k);
    for (;;) {
        i64 v = h->t[2 * i + 1];
        if (v < 0) return -1;
        if (h->t[2 * i] == k) return v;
        i = (i + 1) & h->mask;
    }
}

static inline int ht_insert(table *h, i64 k, i64 v) {
    i64 i = ht_home(h, k);
    for (;;) {
        if (h->t[2 * i + 1] < 0) { h->t[2 * i] = k; h->t[2 * i + 1] = v; return 1; }
        if (h->t[2 * i] == k) return 0;
        i = (i + 1) & h->mask;
    }
}

static void ht_remove(table *h, i64 k) {
    i64 i = ht_home(h, k);
    for (;;) {
        if (h->t[2 * i + 1] < 0) return;
        if (h->t[2 * i] == k) break;
        i = (i + 1) & h->mask;
    }
    i64 j = i;
    for (;;) {
        j = (j + 1) & h->mask;
        if (h->t[2 * j + 1] < 0) break;
        i64 m = ht_home(h, h->t[2 * j]);
        if ((j > i && (m <= i || m > j)) || (j < i && (m <= i && m > j))) {
            h->t[2 * i] = h->t[2 * j];
            h->t[2 * i + 1] = h->t[2 * j + 1];
            i = j;
        }
    }
    h->t[2 * i + 1] = -1;
}

/* first of n levels (stride words, key first) with key >= key: the top 8 linearly, then bisect */
static inline i64 level_search(const i64 *lv, i64 stride, i64 n, i64 key) {
    i64 i = n - 1, stop = n - 8;
    if (stop < 0) stop = 0;
    for (; i >= stop; i--) {
        i64 k = lv[stride * i];
        if (k < key) return i + 1;
        if (k == key) return i;
    }
    if (stop == 0) return 0;
    i64 lo = 0, hi = stop;
    while (lo < hi) {
        i64 mid = (lo + hi) >> 1;
        if (lv[stride * mid] < key) lo = mid + 1; else hi = mid;
    }
    return lo;
}

/* ================================ the matching engine ======================================= */
enum { ITCH_A_LEN = 36, ITCH_E_LEN = 31, ITCH_X_LEN = 23, ITCH_D_LEN = 19, ITCH_U_LEN = 35 };
enum { MIN_ROOM = 128, FILL_ROOM = (2 + ITCH_E_LEN) + (2 + ITCH_A_LEN) };
enum { ST_OK = 0, ST_REST_REFUSED = 1, ST_OUT_CUT = 2, ST_UNKNOWN_TYPE = -1, ST_TRUNCATED = -2,
       ST_BAD_FIELD = -3, ST_DUP_REF = -4, ST_UNKNOWN_REF = -5, ST_FULL = -6 };
enum { C_MESSAGES, C_ENTERED, C_REPLACED, C_CANCEL_MSGS, C_FILLS, C_FILLED_QTY, C_RESTED,
       C_EXPIRED_QTY, C_DELETED, C_REDUCED, C_REPLACE_KEPT, C_REPLACE_MOVED, C_REPLACE_CROSSED,
       C_REJ_TYPE, C_REJ_TRUNC, C_REJ_FIELD, C_REJ_DUP, C_REJ_UNKNOWN, C_REJ_FULL,
       C_REST_REFUSED, C_OUT_CUT, C_NO_ROOM, C_CANCEL_NOOP, N_COUNTERS };
static const i64 MAX_PRICE = 0xFFFFFFFFLL;

typedef struct { i64 oref, uref, loc, side, price, qty, prev, next; } order;
typedef struct { i64 key, qty, count, head, tail, pad[3]; } level;

typedef struct {
    order *orders;
    i64 *free;
    i64 free_top, next_oref, match, clock, status, open;
    table ht;
    level *levels;           /* (2 * (max_instr + 1)) * L */
    i64 *nlev;
    i64 *symbols;
    i64 L, max_instr, max_orders;
    i64 c[N_COUNTERS];
} engine;

static i64 symbol_word(i64 loc) {           /* "S%05d" space padded, as default_symbol() */
    char s[24];
    snprintf(s, sizeof s, "S%05lld", (long long)loc);
    u8 b[8];
    memset(b, ' ', 8);
    memcpy(b, s, strlen(s) < 8 ? strlen(s) : 8);
    return rd64(b);
}

static void engine_init(engine *e, i64 max_instr, i64 max_orders, i64 L) {
    memset(e, 0, sizeof *e);
    e->orders = touched(max_orders * sizeof(order));
    e->free = touched(max_orders * sizeof(i64));
    for (i64 i = 0; i < max_orders; i++) e->free[i] = max_orders - 1 - i;
    e->free_top = max_orders;
    e->next_oref = 1;
    e->clock = 34200000000000LL;
    ht_init(&e->ht, max_orders);
    e->levels = touched(2 * (max_instr + 1) * L * sizeof(level));
    e->nlev = touched(2 * (max_instr + 1) * sizeof(i64));
    e->symbols = touched((max_instr + 1) * sizeof(i64));
    for (i64 l = 1; l <= max_instr; l++) e->symbols[l] = symbol_word(l);
    e->L = L;
    e->max_instr = max_instr;
    e->max_orders = max_orders;
}

static void engine_free(engine *e) {
    free(e->orders); free(e->free); free(e->ht.t); free(e->levels); free(e->nlev); free(e->symbols);
}

static inline level *side_levels(engine *e, i64 loc, i64 side) { return e->levels + (2 * loc + side) * e->L; }
static inline i64 *side_n(engine *e, i64 loc, i64 side) { return e->nlev + 2 * loc + side; }
static inline i64 key_of(i64 side, i64 price) { return side == 0 ? price : -price; }

static inline u8 *hdr(u8 *p, char type, i64 len, i64 loc, i64 clock) {
    wr16(p, len);
    p[2] = (u8)type;
    wr16(p + 3, loc);
    wr16(p + 5, 0);
    wr48(p + 7, clock);
    return p + 2;
}

static i64 out_add(engine *e, u8 *out, i64 o, i64 loc, i64 oref, i64 side, i64 qty, i64 price) {
    u8 *m = hdr(out + o, 'A', ITCH_A_LEN, loc, e->clock);
    wr64(m + 11, oref); m[19] = side == 0 ? 'B' : 'S'; wr32(m + 20, qty);
    wr64(m + 24, e->symbols[loc]); wr32(m + 32, price);
    return o + 2 + ITCH_A_LEN;
}
static i64 out_exec(engine *e, u8 *out, i64 o, i64 loc, i64 oref, i64 qty, i64 match) {
    u8 *m = hdr(out + o, 'E', ITCH_E_LEN, loc, e->clock);
    wr64(m + 11, oref); wr32(m + 19, qty); wr64(m + 23, match);
    return o + 2 + ITCH_E_LEN;
}
static i64 out_cancel(engine *e, u8 *out, i64 o, i64 loc, i64 oref, i64 qty) {
    u8 *m = hdr(out + o, 'X', ITCH_X_LEN, loc, e->clock);
    wr64(m + 11, oref); wr32(m + 19, qty);
    return o + 2 + ITCH_X_LEN;
}
static i64 out_delete(engine *e, u8 *out, i64 o, i64 loc, i64 oref) {
    u8 *m = hdr(out + o, 'D', ITCH_D_LEN, loc, e->clock);
    wr64(m + 11, oref);
    return o + 2 + ITCH_D_LEN;
}
static i64 out_replace(engine *e, u8 *out, i64 o, i64 loc, i64 oref, i64 noref, i64 qty, i64 price) {
    u8 *m = hdr(out + o, 'U', ITCH_U_LEN, loc, e->clock);
    wr64(m + 11, oref); wr64(m + 19, noref); wr32(m + 27, qty); wr32(m + 31, price);
    return o + 2 + ITCH_U_LEN;
}

static void unlink_order(engine *e, i64 s, i64 loc, i64 side, i64 i) {
    order *os = &e->orders[s];
    level *lv = side_levels(e, loc, side);
    i64 *n = side_n(e, loc, side);
    if (os->prev >= 0) e->orders[os->prev].next = os->next; else lv[i].head = os->next;
    if (os->next >= 0) e->orders[os->next].prev = os->prev; else lv[i].tail = os->prev;
    lv[i].qty -= os->qty;
    if (--lv[i].count == 0) {
        memmove(&lv[i], &lv[i + 1], (*n - 1 - i) * sizeof(level));
        (*n)--;
    }
}

static i64 level_of(engine *e, i64 s) {
    order *os = &e->orders[s];
    return level_search(&side_levels(e, os->loc, os->side)->key, sizeof(level) / sizeof(i64),
                        *side_n(e, os->loc, os->side), key_of(os->side, os->price));
}

static int append_order(engine *e, i64 s, i64 loc, i64 side, i64 key, i64 qty) {
    level *lv = side_levels(e, loc, side);
    i64 *np = side_n(e, loc, side), n = *np;
    i64 i = level_search(&lv->key, sizeof(level) / sizeof(i64), n, key);
    order *os = &e->orders[s];
    if (i < n && lv[i].key == key) {
        e->orders[lv[i].tail].next = s;
        os->prev = lv[i].tail;
        os->next = -1;
        lv[i].tail = s;
        lv[i].qty += qty;
        lv[i].count++;
        return 1;
    }
    if (n == e->L) return 0;
    memmove(&lv[i + 1], &lv[i], (n - i) * sizeof(level));
    (*np)++;
    lv[i].key = key; lv[i].qty = qty; lv[i].count = 1; lv[i].head = s; lv[i].tail = s;
    os->prev = -1;
    os->next = -1;
    return 1;
}

static void free_slot(engine *e, i64 s) { e->free[e->free_top++] = s; e->open--; }

static i64 rest(engine *e, u8 *out, i64 o, i64 loc, i64 side, i64 uref, i64 qty, i64 price) {
    if (e->free_top == 0) return -1 - o;
    i64 s = e->free[e->free_top - 1];
    if (!append_order(e, s, loc, side, key_of(side, price), qty)) return -1 - o;
    e->free_top--;
    e->open++;
    order *os = &e->orders[s];
    os->oref = e->next_oref++;
    os->uref = uref; os->loc = loc; os->side = side; os->price = price; os->qty = qty;
    ht_insert(&e->ht, uref, s);
    e->c[C_RESTED]++;
    return out_add(e, out, o, loc, os->oref, side, qty, price);
}

/* returns the output offset; *left = quantity left, *cut = stopped for lack of output room */
static i64 match(engine *e, u8 *out, i64 out_size, i64 o, i64 loc, i64 side, i64 qty,
                 i64 limit, int is_market, i64 *left, int *cut) {
    level *lv = side_levels(e, loc, 1 - side);
    i64 *np = side_n(e, loc, 1 - side);
    *cut = 0;
    while (qty > 0) {
        i64 n = *np;
        if (n == 0) break;
        level *b = &lv[n - 1];
        if (!is_market) {
            if (side == 0 && -b->key > limit) break;
            if (side == 1 && b->key < limit) break;
        }
        i64 s = b->head;
        while (qty > 0 && s >= 0) {
            if (out_size - o < FILL_ROOM) {
                b->head = s;
                e->orders[s].prev = -1;
                *left = qty;
                *cut = 1;
                return o;
            }
            order *os = &e->orders[s];
            i64 q = qty < os->qty ? qty : os->qty;
            o = out_exec(e, out, o, loc, os->oref, q, ++e->match);
            e->c[C_FILLS]++;
            e->c[C_FILLED_QTY] += q;
            qty -= q;
            b->qty -= q;
            if (q == os->qty) {
                i64 nxt = os->next;
                ht_remove(&e->ht, os->uref);
                free_slot(e, s);
                b->count--;
                s = nxt;
            } else {
                os->qty -= q;
            }
        }
        if (s < 0) {
            (*np)--;
        } else {
            b->head = s;
            e->orders[s].prev = -1;
        }
    }
    *left = qty;
    return o;
}

static i64 aggress(engine *e, u8 *out, i64 out_size, i64 o, i64 loc, i64 side, i64 uref,
                   i64 qty, i64 price, i64 tif, int is_market, i64 *st) {
    i64 left;
    int cut;
    o = match(e, out, out_size, o, loc, side, qty, price, is_market, &left, &cut);
    *st = ST_OK;
    if (left == 0) return o;
    if (cut) { e->c[C_OUT_CUT]++; *st = ST_OUT_CUT; return o; }
    if (is_market || tif == '3') { e->c[C_EXPIRED_QTY] += left; return o; }
    i64 r = rest(e, out, o, loc, side, uref, left, price);
    if (r < 0) { e->c[C_REST_REFUSED]++; *st = ST_REST_REFUSED; return -1 - r; }
    return r;
}

static i64 do_delete(engine *e, u8 *out, i64 o, i64 s) {
    order *os = &e->orders[s];
    unlink_order(e, s, os->loc, os->side, level_of(e, s));
    o = out_delete(e, out, o, os->loc, os->oref);
    ht_remove(&e->ht, os->uref);
    free_slot(e, s);
    e->c[C_DELETED]++;
    return o;
}

static i64 do_reduce(engine *e, u8 *out, i64 o, i64 s, i64 new_qty) {
    order *os = &e->orders[s];
    i64 i = level_of(e, s);
    i64 d = os->qty - new_qty;
    os->qty = new_qty;
    side_levels(e, os->loc, os->side)[i].qty -= d;
    e->c[C_REDUCED]++;
    return out_cancel(e, out, o, os->loc, os->oref, d);
}

static void rekey(engine *e, i64 s, i64 old, i64 uref) {
    if (uref != old) {
        ht_remove(&e->ht, old);
        ht_insert(&e->ht, uref, s);
        e->orders[s].uref = uref;
    }
}

static i64 process_entry(engine *e, const u8 *buf, i64 off, i64 end, u8 *out, i64 out_size, i64 o) {
    if (out_size - o < MIN_ROOM) { e->c[C_NO_ROOM]++; return -1; }
    e->c[C_MESSAGES]++;
    if (end - off < 1) { e->c[C_REJ_TRUNC]++; e->status = ST_TRUNCATED; return o; }
    const u8 *m = buf + off;
    i64 n = m[0] == 'O' ? 22 : m[0] == 'U' ? 21 : m[0] == 'X' ? 9 : 0;
    if (n == 0) { e->c[C_REJ_TYPE]++; e->status = ST_UNKNOWN_TYPE; return o; }
    if (end - off < n) { e->c[C_REJ_TRUNC]++; e->status = ST_TRUNCATED; return o; }
    i64 st = ST_OK;
    if (m[0] == 'O') {
        i64 uref = rd32(m + 1), sb = m[5], qty = rd32(m + 6), loc = rd16(m + 10);
        i64 price = rd64(m + 12), tif = m[20], typ = m[21];
        i64 side = sb == 'B' ? 0 : sb == 'S' ? 1 : -1;
        int is_market = typ == 'M';
        if (side < 0 || qty == 0 || loc < 1 || loc > e->max_instr || (tif != '0' && tif != '3')
            || (!is_market && (typ != 'L' || price <= 0 || price > MAX_PRICE))) {
            e->c[C_REJ_FIELD]++; st = ST_BAD_FIELD;
        } else if (ht_find(&e->ht, uref) >= 0) {
            e->c[C_REJ_DUP]++; st = ST_DUP_REF;
        } else {
            e->c[C_ENTERED]++;
            o = aggress(e, out, out_size, o, loc, side, uref, qty, price, tif, is_market, &st);
        }
    } else if (m[0] == 'X') {
        i64 uref = rd32(m + 1), qty = rd32(m + 5);
        i64 s = ht_find(&e->ht, uref);
        if (s < 0) { e->c[C_REJ_UNKNOWN]++; st = ST_UNKNOWN_REF; }
        else {
            e->c[C_CANCEL_MSGS]++;
            if (qty == 0) o = do_delete(e, out, o, s);
            else if (qty < e->orders[s].qty) o = do_reduce(e, out, o, s, qty);
            else e->c[C_CANCEL_NOOP]++;
        }
    } else {
        i64 old = rd32(m + 1), uref = rd32(m + 5), qty = rd32(m + 9), price = rd64(m + 13);
        i64 s = ht_find(&e->ht, old);
        if (s < 0) { e->c[C_REJ_UNKNOWN]++; st = ST_UNKNOWN_REF; goto done; }
        if (price <= 0 || price > MAX_PRICE) { e->c[C_REJ_FIELD]++; st = ST_BAD_FIELD; goto done; }
        if (uref != old && ht_find(&e->ht, uref) >= 0) { e->c[C_REJ_DUP]++; st = ST_DUP_REF; goto done; }
        if (qty == 0) { e->c[C_REPLACED]++; o = do_delete(e, out, o, s); goto done; }
        order *os = &e->orders[s];
        i64 loc = os->loc, side = os->side, cur = os->qty;
        if (price == os->price && qty <= cur) {
            e->c[C_REPLACED]++; e->c[C_REPLACE_KEPT]++;
            rekey(e, s, old, uref);
            if (qty < cur) o = do_reduce(e, out, o, s, qty);
            goto done;
        }
        i64 on = *side_n(e, loc, 1 - side);
        if (on > 0) {
            i64 best = side_levels(e, loc, 1 - side)[on - 1].key;
            if ((side == 0 && price >= -best) || (side == 1 && price <= best)) {
                e->c[C_REPLACED]++; e->c[C_REPLACE_CROSSED]++;
                o = do_delete(e, out, o, s);
                e->c[C_DELETED]--;
                o = aggress(e, out, out_size, o, loc, side, uref, qty, price, '0', 0, &st);
                goto done;
            }
        }
        i64 i = level_of(e, s), key = key_of(side, price), mn = *side_n(e, loc, side);
        if (mn == e->L) {
            level *lv = side_levels(e, loc, side);
            i64 j = level_search(&lv->key, sizeof(level) / sizeof(i64), mn, key);
            if (j >= mn || lv[j].key != key) { e->c[C_REJ_FULL]++; st = ST_FULL; goto done; }
        }
        unlink_order(e, s, loc, side, i);
        os->qty = qty;
        os->price = price;
        append_order(e, s, loc, side, key, qty);
        rekey(e, s, old, uref);
        i64 oref = os->oref;
        os->oref = e->next_oref++;
        e->c[C_REPLACED]++; e->c[C_REPLACE_MOVED]++;
        o = out_replace(e, out, o, loc, oref, os->oref, qty, price);
    }
done:
    e->status = st;
    return o;
}

static inline i64 entry_len(u8 t) { return t == 'O' ? 22 : t == 'U' ? 21 : t == 'X' ? 9 : 0; }

static i64 process_stream(engine *e, const u8 *buf, i64 end, u8 *out, i64 out_size, i64 *o_end) {
    i64 off = 0, o = 0;
    while (off < end) {
        i64 n = entry_len(buf[off]);
        if (n == 0) { e->c[C_MESSAGES]++; e->c[C_REJ_TYPE]++; e->status = ST_UNKNOWN_TYPE; break; }
        i64 r = process_entry(e, buf, off, end, out, out_size, o);
        if (r < 0) break;
        o = r;
        off += n;
    }
    *o_end = o;
    return off;
}

static int cmp_i64(const void *a, const void *b) {
    i64 x = *(const i64 *)a, y = *(const i64 *)b;
    return x < y ? -1 : x > y;
}

static double pct(const i64 *sorted, i64 n, double q) {     /* numpy's linear interpolation */
    double pos = q / 100.0 * (double)(n - 1);
    i64 lo = (i64)pos;
    double f = pos - (double)lo;
    return lo + 1 < n ? sorted[lo] * (1 - f) + sorted[lo + 1] * f : (double)sorted[lo];
}

static int run_match(int argc, char **argv) {
    if (argc != 8) { fprintf(stderr, "usage: match_ref match FILE MAXI MAXO L OUTBYTES CHECK\n"); return 2; }
    long n;
    u8 *buf = read_file(argv[2], &n);
    i64 maxi = atoll(argv[3]), maxo = atoll(argv[4]), L = atoll(argv[5]), out_size = atoll(argv[6]);
    int check = atoi(argv[7]);
    u8 *out = touched(out_size);
    engine e;
    if (check) {
        engine_init(&e, maxi, maxo, L);
        i64 o;
        i64 off = process_stream(&e, buf, n, out, out_size, &o);
        uint64_t h = 14695981039346656037ULL;
        for (i64 i = 0; i < o; i++) h = (h ^ out[i]) * 1099511628211ULL;
        printf("{\"in_bytes\": %lld, \"out_bytes\": %lld, \"out_hash\": %lld, \"counters\": {"
               "\"messages\": %lld, \"fills\": %lld, \"filled_qty\": %lld, \"rested\": %lld, "
               "\"expired_qty\": %lld, \"deleted\": %lld, \"reduced\": %lld, \"replaced\": %lld, "
               "\"rej_unknown_ref\": %lld, \"open_orders\": %lld}}\n",
               (long long)off, (long long)o, (long long)(i64)h, (long long)e.c[C_MESSAGES],
               (long long)e.c[C_FILLS], (long long)e.c[C_FILLED_QTY], (long long)e.c[C_RESTED],
               (long long)e.c[C_EXPIRED_QTY], (long long)e.c[C_DELETED], (long long)e.c[C_REDUCED],
               (long long)e.c[C_REPLACED], (long long)e.c[C_REJ_UNKNOWN], (long long)e.open);
        return 0;
    }
    /* throughput */
    engine_init(&e, maxi, maxo, L);
    i64 o;
    i64 t0 = now_ns();
    process_stream(&e, buf, n, out, out_size, &o);
    i64 ns = now_ns() - t0;
    i64 msgs = e.c[C_MESSAGES];
    engine_free(&e);
    /* latency: TSC around each message */
    engine_init(&e, maxi, maxo, L);
    i64 *samples = touched((msgs + 1) * sizeof(i64));
    i64 k = 0, off = 0;
    o = 0;
    while (off < n) {
        i64 len = entry_len(buf[off]);
        if (len == 0) break;
        uint64_t c0 = __rdtsc();
        i64 r = process_entry(&e, buf, off, n, out, out_size, o);
        uint64_t c1 = __rdtsc();
        if (r < 0) break;
        samples[k++] = (i64)(c1 - c0);
        o = r;
        off += len;
    }
    qsort(samples, k, sizeof(i64), cmp_i64);
    printf("{\"ns\": %lld, \"messages\": %lld, \"out_bytes\": %lld, \"tsc_hz\": %.1f, "
           "\"latency_cycles\": {\"p50\": %.2f, \"p99\": %.2f, \"p999\": %.2f, \"p9999\": %.2f}}\n",
           (long long)ns, (long long)msgs, (long long)o, tsc_hz(), pct(samples, k, 50),
           pct(samples, k, 99), pct(samples, k, 99.9), pct(samples, k, 99.99));
    return 0;
}

/* ================================ the ITCH order books ====================================== */
/* engine/book.py's design: the orders live in their open-addressing slots (ref, price, shares,
 * meta = birth << 17 | locate << 1 | side; meta 0 = empty), levels are 4-word records per book
 * side sorted best last, and the block walk prefetches the slot of the block 8 ahead. */
typedef struct { i64 ref, price, shares, meta; } brec;
typedef struct { i64 key, shares, orders, birth; } blevel;
enum { PREFETCH_AHEAD = 8 };

typedef struct {
    brec *t;
    i64 mask, max_orders, open, birth;
    blevel *levels;
    i64 *nlev, *hidden;
    i64 L, max_instr;
    i64 unknown, dup, full, bad, ignored;
} books;

static void books_init(books *b, i64 maxi, i64 maxo, i64 L) {
    memset(b, 0, sizeof *b);
    i64 cap = 16;
    while (cap < 2 * maxo) cap *= 2;
    b->mask = cap - 1;
    b->t = touched(cap * sizeof(brec));
    b->max_orders = maxo;
    b->levels = touched(2 * (maxi + 1) * L * sizeof(blevel));
    b->nlev = touched(2 * (maxi + 1) * sizeof(i64));
    b->hidden = touched(2 * (maxi + 1) * sizeof(i64));
    b->L = L;
    b->max_instr = maxi;
}

static inline i64 bhome(const books *b, i64 k) {
    i64 x = k ^ (k >> 16) ^ (k >> 32) ^ (k >> 48);   /* engine/book.py ht_home */
    x ^= x >> 8;
    return (i64)((uint64_t)x << 1) & b->mask;   /* even homes */
}

static inline brec *rec_find(books *b, i64 ref) {
    for (i64 i = bhome(b, ref);; i = (i + 1) & b->mask) {
        brec *r = &b->t[i];
        if (r->meta == 0) return NULL;
        if (r->ref == ref) return r;
    }
}

static inline brec *rec_slot_for(books *b, i64 ref) {
    for (i64 i = bhome(b, ref);; i = (i + 1) & b->mask) {
        brec *r = &b->t[i];
        if (r->meta == 0) return r;
        if (r->ref == ref) return NULL;
    }
}

static void rec_remove(books *b, brec *r) {
    i64 i = r - b->t, j = i;
    for (;;) {
        j = (j + 1) & b->mask;
        if (b->t[j].meta == 0) break;
        i64 k = bhome(b, b->t[j].ref);
        if ((j > i && (k <= i || k > j)) || (j < i && (k <= i && k > j))) {
            b->t[i] = b->t[j];
            i = j;
        }
    }
    b->t[i].meta = 0;
}

static i64 join_level(books *b, i64 bs, i64 key, i64 shares) {
    blevel *lv = b->levels + bs * b->L;
    i64 n = b->nlev[bs];
    i64 i = level_search(&lv->key, 4, n, key);
    if (i < n && lv[i].key == key) { lv[i].shares += shares; lv[i].orders++; return lv[i].birth; }
    if (n == b->L) {
        if (i == 0) { b->hidden[bs]++; return 0; }
        b->hidden[bs] += lv[0].orders;                      /* evict the deepest level */
        memmove(&lv[0], &lv[1], (i - 1) * sizeof(blevel));
        i--;
    } else {
        memmove(&lv[i + 1], &lv[i], (n - i) * sizeof(blevel));
        b->nlev[bs] = n + 1;
    }
    lv[i].key = key; lv[i].shares = shares; lv[i].orders = 1; lv[i].birth = ++b->birth;
    return lv[i].birth;
}

static void take(books *b, const brec *r, i64 q, int gone) {
    i64 side = r->meta & 1, loc = (r->meta >> 1) & 0xFFFF, birth = r->meta >> 17;
    i64 bs = 2 * loc + side;
    if (birth) {
        blevel *lv = b->levels + bs * b->L;
        i64 n = b->nlev[bs];
        i64 i = level_search(&lv->key, 4, n, side ? -r->price : r->price);
        if (i < n && lv[i].birth == birth) {
            lv[i].shares -= q;
            if (gone && --lv[i].orders == 0) {
                memmove(&lv[i], &lv[i + 1], (n - 1 - i) * sizeof(blevel));
                b->nlev[bs] = n - 1;
            }
            return;
        }
    }
    if (gone) b->hidden[bs]--;
}

static void book_add(books *b, i64 loc, i64 ref, i64 sidech, i64 shares, i64 price) {
    i64 side = sidech == 'B' || sidech == 0 ? 0 : sidech == 'S' || sidech == 1 ? 1 : -1;
    if (loc < 1 || loc > b->max_instr || side < 0 || shares <= 0) { b->bad++; return; }
    if (b->open >= b->max_orders) { b->full++; return; }
    brec *r = rec_slot_for(b, ref);
    if (!r) { b->dup++; return; }
    b->open++;
    i64 birth = join_level(b, 2 * loc + side, side ? -price : price, shares);
    r->ref = ref; r->price = price; r->shares = shares; r->meta = (birth << 17) | (loc << 1) | side;
}

static void book_reduce(books *b, i64 ref, i64 q) {
    brec *r = rec_find(b, ref);
    if (!r) { b->unknown++; return; }
    if (q <= 0) { b->bad++; return; }
    if (q > r->shares) q = r->shares;
    int gone = q == r->shares;
    take(b, r, q, gone);
    if (gone) { rec_remove(b, r); b->open--; } else r->shares -= q;
}

static void book_delete(books *b, i64 ref) {
    brec *r = rec_find(b, ref);
    if (!r) { b->unknown++; return; }
    take(b, r, r->shares, 1);
    rec_remove(b, r);
    b->open--;
}

static void book_replace(books *b, i64 old, i64 nw, i64 shares, i64 price) {
    brec *r = rec_find(b, old);
    if (!r) { b->unknown++; return; }
    if (nw != old && rec_find(b, nw)) { b->dup++; return; }
    if (shares <= 0) { b->bad++; return; }
    take(b, r, r->shares, 1);
    i64 meta = r->meta, loc = (meta >> 1) & 0xFFFF, side = meta & 1;
    rec_remove(b, r);
    i64 birth = join_level(b, 2 * loc + side, side ? -price : price, shares);
    r = rec_slot_for(b, nw);
    r->ref = nw; r->price = price; r->shares = shares; r->meta = (birth << 17) | (loc << 1) | side;
}

static const u8 ITCH_LEN[256] = {
    ['S'] = 12, ['R'] = 39, ['H'] = 25, ['Y'] = 20, ['L'] = 26, ['V'] = 35, ['W'] = 12, ['K'] = 28,
    ['J'] = 35, ['h'] = 21, ['A'] = 36, ['F'] = 40, ['E'] = 31, ['C'] = 36, ['X'] = 23, ['D'] = 19,
    ['U'] = 35, ['P'] = 44, ['Q'] = 40, ['B'] = 19, ['I'] = 50, ['N'] = 20, ['O'] = 48,
};

static i64 apply_blocks(books *b, const u8 *buf, i64 end) {
    i64 off = 0, pf = 0;
    for (int k = 0; k < PREFETCH_AHEAD && end - pf >= 2; k++) pf += 2 + rd16(buf + pf);
    while (end - off >= 2) {
        i64 n = rd16(buf + off);
        if (end - off - 2 < n) break;
        if (end - pf >= 2 + 19) {
            __builtin_prefetch(&b->t[bhome(b, rd64(buf + pf + 2 + 11))]);
            pf += 2 + rd16(buf + pf);
        }
        const u8 *m = buf + off + 2;
        if (n == 0 || ITCH_LEN[m[0]] != n) { b->bad++; off += 2 + n; continue; }
        switch (m[0]) {
        case 'D': book_delete(b, rd64(m + 11)); break;
        case 'A': case 'F': book_add(b, rd16(m + 1), rd64(m + 11), m[19], rd32(m + 20), rd32(m + 32)); break;
        case 'U': book_replace(b, rd64(m + 11), rd64(m + 19), rd32(m + 27), rd32(m + 31)); break;
        case 'E': case 'C': case 'X': book_reduce(b, rd64(m + 11), rd32(m + 19)); break;
        default: b->ignored++;
        }
        off += 2 + n;
    }
    return off;
}

static int run_book(int argc, char **argv) {
    if (argc != 7) { fprintf(stderr, "usage: match_ref book FILE MAXI MAXO L CHECK\n"); return 2; }
    long n;
    u8 *buf = read_file(argv[2], &n);
    i64 maxi = atoll(argv[3]), maxo = atoll(argv[4]), L = atoll(argv[5]);
    books b;
    books_init(&b, maxi, maxo, L);
    i64 t0 = now_ns();
    i64 off = apply_blocks(&b, buf, n);
    i64 ns = now_ns() - t0;
    i64 levels = 0, shares = 0;
    for (i64 bs = 2; bs < 2 * (maxi + 1); bs++) {
        levels += b.nlev[bs];
        for (i64 i = 0; i < b.nlev[bs]; i++) shares += b.levels[bs * L + i].shares;
    }
    printf("{\"ns\": %lld, \"end\": %lld, \"digest\": {\"open_orders\": %lld, \"levels\": %lld, "
           "\"shares\": %lld}, \"unknown_ref\": %lld, \"dup_ref\": %lld, \"ignored\": %lld}\n",
           (long long)ns, (long long)off, (long long)b.open, (long long)levels, (long long)shares,
           (long long)b.unknown, (long long)b.dup, (long long)b.ignored);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "match") == 0) return run_match(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "book") == 0) return run_book(argc, argv);
    fprintf(stderr, "usage: match_ref match|book ...\n");
    return 2;
}
