/* itch_ref.c -- the C reference of tools/bench_itch.py: ITCH 5.0 decode + full-depth order
 * books, written plainly in C (gcc -O2), doing the same work as engine/book.py's
 * apply_itch_blocks over the same bytes.
 *
 * The same work means the same data-structure choices, not the same code:
 *   - the stream: MoldUDP64 message blocks (u16 big-endian length + ITCH message); a block
 *     whose length is not its type's length is counted (itch_bad) and skipped, a block cut by
 *     the end stops the walk;
 *   - fields read with the generated header's offsets and readers (hugering_itch.h, made from
 *     the same tables as parsers/itch.py);
 *   - the orders *in* the slots of an open-addressing table keyed by order reference (ref,
 *     price, shares, meta = level birth << 17 | locate << 1 | side; meta 0 = empty): linear
 *     probing from engine/book.py's home (the key's 16-bit chunks XORed, then its two low
 *     bytes, doubled: homes are the even slots), backward-shift deletion, capacity a power
 *     of two >= 2 x max_orders;
 *   - the block walk prefetches the slot of the block 8 ahead from its order ref (offset 11);
 *   - per book side a sorted array of price-level keys (key = price for bids, -price for
 *     asks, ascending, the best level last; max_levels rounded up to 8) after 16 sentinel
 *     words (INT64_MIN), followed by the levels' figures (shares, orders, birth, spare), the
 *     sides' heads (levels, hidden) in a dense array of their own; a key found a block of 16
 *     keys at a time from the top (a block reaching below the keys takes in the sentinels),
 *     then bisection below 2 blocks (written the way scalar C wants it: the block's lowest
 *     key tested before its keys are counted, where Numba counts first and tests the count,
 *     a couple of vector compares); an order remembers its level's birth stamp; a full side
 *     evicts its deepest level or hides the new order; every counter and refusal of
 *     engine/book.py.
 * Every field is an int64_t, as in engine/book.py's one int64 array.
 *
 * Usage: itch_ref STREAMFILE NBYTES MAX_INSTRUMENTS MAX_ORDERS MAX_LEVELS
 * then line commands on stdin, one JSON answer per line on stdout:
 *   run [full|walk|decode|noprefetch]
 *                           reset the books (untimed), then time one pass over the stream:
 *                           full = decode + book update, walk = only walk the blocks,
 *                           decode = walk + read every book message's fields (no book),
 *                           noprefetch = full without the prefetch
 *   dump PATH               write the books' final state (the format below) to PATH
 * Dump format (int64, native order): the counters (N_COUNTERS), open orders, then for each
 * locate 1..MAX_INSTRUMENTS and side (bid, ask): levels, hidden orders, then MAX_LEVELS
 * triples (price, shares, orders) best first, zero past the last level.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "hugering_itch.h"

/* --- status codes and counters (engine/book.py's, same order) ---------------------------- */
enum { ST_OK = 0, ST_REMOVED = 1, ST_HIDDEN = 2, ST_CLAMPED = 3, ST_IGNORED = 4,
       ST_UNKNOWN_REF = -1, ST_DUP_REF = -2, ST_ORDERS_FULL = -3, ST_BAD_LOCATE = -4,
       ST_BAD_ARG = -5, ST_BAD_MESSAGE = -6 };
enum { C_ADD, C_EXECUTE, C_CANCEL, C_DELETE, C_REPLACE, C_EXEC_SHARES, C_CANCEL_SHARES,
       C_UNKNOWN_REF, C_DUP_REF, C_ORDERS_FULL, C_BAD_LOCATE, C_BAD_ARG, C_OVER_EXEC,
       C_LEVEL_EVICTED, C_HIDDEN_ADD, C_ITCH_IGNORED, C_ITCH_BAD, N_COUNTERS };

#define KEY_BLOCK 16             /* keys counted at once; sentinels (INT64_MIN) below the keys */
#define KEY_BLOCKS_SCANNED 2     /* blocks from the top before bisecting */
#define SIDE_BID 0
#define SIDE_ASK 1
#define META_BIRTH 17            /* meta = birth << 17 | locate << 1 | side; 0 = empty slot */
#define PREFETCH_AHEAD 8         /* blocks between the prefetch of a slot and its use */

typedef struct {                 /* an order, in its own slot of the order table */
    int64_t ref, price, shares, meta;
} rec_t;

typedef struct {                 /* a level's figures; its key is in the side's key array */
    int64_t shares, orders, birth, spare;
} level_t;

typedef struct {                 /* a side's head, in the dense heads array */
    int64_t nlev, hidden;
} head_t;

typedef struct {
    int64_t max_instr, max_orders, max_levels;
    int64_t mask, birth, open;
    int64_t cnt[N_COUNTERS];
    rec_t *t;                    /* capacity = mask + 1 slots */
    head_t *heads;               /* per side si = 2 * locate + side */
    char *sides;                 /* per side: key_words keys, then max_levels level_t */
    size_t side_bytes, key_words;
} books_t;

static inline int64_t *keys_of(books_t *b, int64_t si) {
    return (int64_t *)(b->sides + (size_t)si * b->side_bytes) + KEY_BLOCK;
}

static inline level_t *levels_of(books_t *b, int64_t si) {
    return (level_t *)(keys_of(b, si) + b->key_words);
}

/* --- the order table: open addressing keyed by order ref, the orders in their slots ----- */
static inline int64_t home(const books_t *b, int64_t key) {
    int64_t h = key ^ (key >> 16) ^ (key >> 32) ^ (key >> 48);   /* engine/book.py ht_home */
    h ^= h >> 8;
    return (int64_t)((uint64_t)h << 1) & b->mask;   /* even homes */
}

static inline rec_t *rec_find(books_t *b, int64_t ref) {
    for (int64_t i = home(b, ref);; i = (i + 1) & b->mask) {
        rec_t *r = &b->t[i];
        if (r->meta == 0)
            return NULL;
        if (r->ref == ref)
            return r;
    }
}

/* the empty slot where ref goes, NULL when ref is already there (load <= 1/2: one exists) */
static inline rec_t *rec_slot_for(books_t *b, int64_t ref) {
    for (int64_t i = home(b, ref);; i = (i + 1) & b->mask) {
        rec_t *r = &b->t[i];
        if (r->meta == 0)
            return r;
        if (r->ref == ref)
            return NULL;
    }
}

/* empty slot r; the records after it that could not sit at their home move back */
static void rec_remove(books_t *b, rec_t *r) {
    int64_t i = r - b->t, j = i;
    for (;;) {
        j = (j + 1) & b->mask;
        if (b->t[j].meta == 0)
            break;
        int64_t k = home(b, b->t[j].ref);
        if ((j > i && (k <= i || k > j)) || (j < i && (k <= i && k > j))) {
            b->t[i] = b->t[j];
            i = j;
        }
    }
    b->t[i].meta = 0;
}

/* --- sorted levels of one side ------------------------------------------------------------- */
/* index of the first key >= key (n when none): blocks of 16 from the top, counted, then
 * bisect; keys[-KEY_BLOCK..-1] are sentinels below every key */
static int64_t key_search(const int64_t *keys, int64_t n, int64_t key) {
    int64_t hi = n;
    for (int blk = 0; blk < KEY_BLOCKS_SCANNED; blk++) {
        const int64_t *k = keys + hi - KEY_BLOCK;
        if (k[0] < key) {
            int64_t c = 0;
            for (int j = 0; j < KEY_BLOCK; j++)
                c += k[j] < key;
            return hi - KEY_BLOCK + c;
        }
        hi -= KEY_BLOCK;
    }
    int64_t lo = 0;
    while (lo < hi) {
        int64_t mid = (lo + hi) >> 1;
        if (keys[mid] < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* one order of `shares` at `key` joins the side; its level's birth stamp, 0 when hidden */
static int64_t join_level(books_t *b, int64_t si, int64_t key, int64_t shares) {
    head_t *hd = &b->heads[si];
    int64_t *keys = keys_of(b, si);
    level_t *lv = levels_of(b, si);
    int64_t n = hd->nlev;
    int64_t i = key_search(keys, n, key);
    if (i < n && keys[i] == key) {                   /* an existing level */
        lv[i].shares += shares;
        lv[i].orders += 1;
        return lv[i].birth;
    }
    if (n == b->max_levels) {                        /* side full */
        if (i == 0) {
            hd->hidden++;
            b->cnt[C_HIDDEN_ADD]++;
            return 0;
        }
        hd->hidden += lv[0].orders;                  /* evict the deepest level */
        b->cnt[C_LEVEL_EVICTED]++;
        i--;
        memmove(&keys[0], &keys[1], (size_t)i * sizeof(int64_t));
        memmove(&lv[0], &lv[1], (size_t)i * sizeof(level_t));
    } else {
        memmove(&keys[i + 1], &keys[i], (size_t)(n - i) * sizeof(int64_t));
        memmove(&lv[i + 1], &lv[i], (size_t)(n - i) * sizeof(level_t));
        hd->nlev = n + 1;
    }
    int64_t birth = ++b->birth;
    keys[i] = key;
    lv[i].shares = shares;
    lv[i].orders = 1;
    lv[i].birth = birth;
    return birth;
}

/* take q shares of order r off its level (and the order itself when gone) */
static void take(books_t *b, const rec_t *r, int64_t q, int gone) {
    int64_t side = r->meta & 1, birth = r->meta >> META_BIRTH;
    int64_t si = 2 * ((r->meta >> 1) & 0xFFFF) + side;
    head_t *hd = &b->heads[si];
    if (birth != 0) {
        int64_t key = side == SIDE_ASK ? -r->price : r->price;
        int64_t *keys = keys_of(b, si);
        level_t *lv = levels_of(b, si);
        int64_t n = hd->nlev;
        int64_t i = key_search(keys, n, key);
        if (i < n && lv[i].birth == birth) {
            lv[i].shares -= q;
            if (gone && --lv[i].orders == 0) {
                memmove(&keys[i], &keys[i + 1], (size_t)(n - 1 - i) * sizeof(int64_t));
                memmove(&lv[i], &lv[i + 1], (size_t)(n - 1 - i) * sizeof(level_t));
                hd->nlev = n - 1;
            }
            return;
        }
    }
    if (gone)
        hd->hidden--;                                /* a hidden order */
}

/* --- the update kernels ---------------------------------------------------------------------- */
static int book_add(books_t *b, int64_t loc, int64_t ref, int64_t side, int64_t q, int64_t p) {
    if (loc < 1 || loc > b->max_instr) {
        b->cnt[C_BAD_LOCATE]++;
        return ST_BAD_LOCATE;
    }
    int64_t s = (side == 0 || side == 'B') ? 0 : (side == 1 || side == 'S') ? 1 : -1;
    if (s < 0 || q <= 0 || p == INT64_MIN) {       /* INT64_MIN: key_search's sentinel */
        b->cnt[C_BAD_ARG]++;
        return ST_BAD_ARG;
    }
    if (b->open >= b->max_orders) {
        b->cnt[C_ORDERS_FULL]++;
        return ST_ORDERS_FULL;
    }
    rec_t *r = rec_slot_for(b, ref);
    if (!r) {
        b->cnt[C_DUP_REF]++;
        return ST_DUP_REF;
    }
    b->open++;
    int64_t birth = join_level(b, 2 * loc + s, s == SIDE_BID ? p : -p, q);
    r->ref = ref;
    r->price = p;
    r->shares = q;
    r->meta = (birth << META_BIRTH) | (loc << 1) | s;
    b->cnt[C_ADD]++;
    return birth != 0 ? ST_OK : ST_HIDDEN;
}

static int reduce(books_t *b, int64_t ref, int64_t q, int c_ops, int c_shares) {
    rec_t *r = rec_find(b, ref);
    if (!r) {
        b->cnt[C_UNKNOWN_REF]++;
        return ST_UNKNOWN_REF;
    }
    if (q <= 0) {
        b->cnt[C_BAD_ARG]++;
        return ST_BAD_ARG;
    }
    int64_t left = r->shares;
    int st = ST_OK;
    if (q >= left) {
        if (q > left) {
            b->cnt[C_OVER_EXEC]++;
            st = ST_CLAMPED;
            q = left;
        } else {
            st = ST_REMOVED;
        }
    }
    b->cnt[c_ops]++;
    b->cnt[c_shares] += q;
    int gone = q == left;
    take(b, r, q, gone);
    if (gone) {
        rec_remove(b, r);
        b->open--;
    } else {
        r->shares = left - q;
    }
    return st;
}

static int book_delete(books_t *b, int64_t ref) {
    rec_t *r = rec_find(b, ref);
    if (!r) {
        b->cnt[C_UNKNOWN_REF]++;
        return ST_UNKNOWN_REF;
    }
    b->cnt[C_DELETE]++;
    b->cnt[C_CANCEL_SHARES] += r->shares;
    take(b, r, r->shares, 1);
    rec_remove(b, r);
    b->open--;
    return ST_OK;
}

static int book_replace(books_t *b, int64_t old, int64_t new, int64_t q, int64_t p) {
    rec_t *r = rec_find(b, old);
    if (!r) {
        b->cnt[C_UNKNOWN_REF]++;
        return ST_UNKNOWN_REF;
    }
    if (new != old && rec_find(b, new)) {
        b->cnt[C_DUP_REF]++;
        return ST_DUP_REF;
    }
    if (q <= 0 || p == INT64_MIN) {
        b->cnt[C_BAD_ARG]++;
        return ST_BAD_ARG;
    }
    take(b, r, r->shares, 1);
    int64_t meta = r->meta, loc = (meta >> 1) & 0xFFFF, s = meta & 1;
    rec_remove(b, r);                                /* records may move: find the new slot after */
    int64_t birth = join_level(b, 2 * loc + s, s == SIDE_BID ? p : -p, q);
    r = rec_slot_for(b, new);
    r->ref = new;
    r->price = p;
    r->shares = q;
    r->meta = (birth << META_BIRTH) | (loc << 1) | s;
    b->cnt[C_REPLACE]++;
    return birth != 0 ? ST_OK : ST_HIDDEN;
}

/* --- ITCH glue ------------------------------------------------------------------------------- */
static int apply_msg(books_t *b, const uint8_t *m) {
    switch (m[0]) {
    case ITCH_MSG_ORDER_DELETE:
        return book_delete(b, (int64_t)itch_be64(m + ITCH_D_ORDER_REF));
    case ITCH_MSG_ADD_ORDER:
        return book_add(b, itch_be16(m + ITCH_LOCATE), (int64_t)itch_be64(m + ITCH_A_ORDER_REF),
                        m[ITCH_A_SIDE], itch_be32(m + ITCH_A_SHARES), itch_be32(m + ITCH_A_PRICE));
    case ITCH_MSG_ORDER_REPLACE:
        return book_replace(b, (int64_t)itch_be64(m + ITCH_U_ORDER_REF),
                            (int64_t)itch_be64(m + ITCH_U_NEW_ORDER_REF),
                            itch_be32(m + ITCH_U_SHARES), itch_be32(m + ITCH_U_PRICE));
    case ITCH_MSG_ORDER_EXECUTED:
        return reduce(b, (int64_t)itch_be64(m + ITCH_E_ORDER_REF),
                      itch_be32(m + ITCH_E_EXECUTED_SHARES), C_EXECUTE, C_EXEC_SHARES);
    case ITCH_MSG_ORDER_CANCEL:
        return reduce(b, (int64_t)itch_be64(m + ITCH_X_ORDER_REF),
                      itch_be32(m + ITCH_X_CANCELED_SHARES), C_CANCEL, C_CANCEL_SHARES);
    case ITCH_MSG_ADD_ORDER_MPID:
        return book_add(b, itch_be16(m + ITCH_LOCATE), (int64_t)itch_be64(m + ITCH_F_ORDER_REF),
                        m[ITCH_F_SIDE], itch_be32(m + ITCH_F_SHARES), itch_be32(m + ITCH_F_PRICE));
    case ITCH_MSG_ORDER_EXECUTED_PRICE:
        return reduce(b, (int64_t)itch_be64(m + ITCH_C_ORDER_REF),
                      itch_be32(m + ITCH_C_EXECUTED_SHARES), C_EXECUTE, C_EXEC_SHARES);
    default:
        b->cnt[C_ITCH_IGNORED]++;
        return ST_IGNORED;
    }
}

/* the blocks in buf[off:end]; returns the offset where the walk stopped.  Fast path (as in
 * engine/book.py): the order-table slot of the block PREFETCH_AHEAD blocks ahead is prefetched
 * from its order ref (offset 11 in every order message), so its miss overlaps the work between */
static int64_t apply_blocks(books_t *b, const uint8_t *buf, int64_t off, int64_t end) {
    int64_t pf = off;
    for (int k = 0; k < PREFETCH_AHEAD && end - pf >= 2; k++)
        pf += 2 + itch_be16(buf + pf);
    while (end - off >= 2) {
        int64_t n = itch_be16(buf + off);
        if (end - off - 2 < n)
            break;
        if (end - pf >= 2 + 19) {
            __builtin_prefetch(&b->t[home(b, (int64_t)itch_be64(buf + pf + 2 + 11))], 0, 3);
            pf += 2 + itch_be16(buf + pf);
        }
        if (n == 0 || itch_msg_len[buf[off + 2]] != n)
            b->cnt[C_ITCH_BAD]++;
        else
            apply_msg(b, buf + off + 2);
        off += 2 + n;
    }
    return off;
}

/* breakdown: the same without the prefetch */
static int64_t apply_blocks_noprefetch(books_t *b, const uint8_t *buf, int64_t off, int64_t end) {
    while (end - off >= 2) {
        int64_t n = itch_be16(buf + off);
        if (end - off - 2 < n)
            break;
        if (n == 0 || itch_msg_len[buf[off + 2]] != n)
            b->cnt[C_ITCH_BAD]++;
        else
            apply_msg(b, buf + off + 2);
        off += 2 + n;
    }
    return off;
}

/* breakdown: only walk the blocks (and check their lengths) */
static int64_t walk_blocks(const uint8_t *buf, int64_t off, int64_t end, int64_t *sum) {
    int64_t s = 0;
    while (end - off >= 2) {
        int64_t n = itch_be16(buf + off);
        if (end - off - 2 < n)
            break;
        if (n != 0 && itch_msg_len[buf[off + 2]] == n)
            s += buf[off + 2];
        off += 2 + n;
    }
    *sum = s;
    return off;
}

/* breakdown: walk + read every field the book path reads, folded into a checksum */
static int64_t decode_blocks(const uint8_t *buf, int64_t off, int64_t end, int64_t *sum) {
    uint64_t s = 0;                                  /* wraps, as int64 does in Numba */
    while (end - off >= 2) {
        int64_t n = itch_be16(buf + off);
        if (end - off - 2 < n)
            break;
        const uint8_t *m = buf + off + 2;
        if (n != 0 && itch_msg_len[m[0]] == n) {
            switch (m[0]) {
            case 'D': s += (int64_t)itch_be64(m + ITCH_D_ORDER_REF); break;
            case 'A':
                s += itch_be16(m + ITCH_LOCATE) + (int64_t)itch_be64(m + ITCH_A_ORDER_REF) +
                     m[ITCH_A_SIDE] + itch_be32(m + ITCH_A_SHARES) + itch_be32(m + ITCH_A_PRICE);
                break;
            case 'U':
                s += (int64_t)itch_be64(m + ITCH_U_ORDER_REF) +
                     (int64_t)itch_be64(m + ITCH_U_NEW_ORDER_REF) + itch_be32(m + ITCH_U_SHARES) +
                     itch_be32(m + ITCH_U_PRICE);
                break;
            case 'E':
                s += (int64_t)itch_be64(m + ITCH_E_ORDER_REF) +
                     itch_be32(m + ITCH_E_EXECUTED_SHARES);
                break;
            case 'X':
                s += (int64_t)itch_be64(m + ITCH_X_ORDER_REF) +
                     itch_be32(m + ITCH_X_CANCELED_SHARES);
                break;
            case 'F':
                s += itch_be16(m + ITCH_LOCATE) + (int64_t)itch_be64(m + ITCH_F_ORDER_REF) +
                     m[ITCH_F_SIDE] + itch_be32(m + ITCH_F_SHARES) + itch_be32(m + ITCH_F_PRICE);
                break;
            case 'C':
                s += (int64_t)itch_be64(m + ITCH_C_ORDER_REF) +
                     itch_be32(m + ITCH_C_EXECUTED_SHARES);
                break;
            default: s += 1; break;
            }
        }
        off += 2 + n;
    }
    *sum = (int64_t)s;
    return off;
}

/* --- setup ----------------------------------------------------------------------------------- */
/* 64-byte aligned, with numpy's page policy: numpy (the hugering side's allocator) asks for
 * transparent huge pages on every allocation of 4 MiB or more (madvise MADV_HUGEPAGE over the
 * whole pages inside it), so this does too -- otherwise, with THP in "madvise" mode, the two
 * sides would differ in TLB misses, not in their code (1000 instruments: ~40 MB of books) */
static void *alloc64(size_t bytes) {
    size_t size = (bytes + 63) / 64 * 64;
    void *p = aligned_alloc(64, size);
    if (!p) {
        fprintf(stderr, "out of memory (%zu bytes)\n", bytes);
        exit(1);
    }
    if (size >= ((size_t)1 << 22)) {
        uintptr_t a = ((uintptr_t)p + 4095) & ~(uintptr_t)4095;
        if (a < (uintptr_t)p + size)
            madvise((void *)a, (uintptr_t)p + size - a, MADV_HUGEPAGE);
    }
    return p;
}

static void books_init(books_t *b, int64_t max_instr, int64_t max_orders, int64_t max_levels) {
    int64_t cap = 16;
    while (cap < 2 * max_orders)
        cap *= 2;
    b->max_instr = max_instr;
    b->max_orders = max_orders;
    b->max_levels = max_levels;
    b->mask = cap - 1;
    b->key_words = (size_t)(max_levels + 7) / 8 * 8;
    b->side_bytes =
        (KEY_BLOCK + b->key_words) * sizeof(int64_t) + (size_t)max_levels * sizeof(level_t);
    b->t = alloc64((size_t)cap * sizeof(rec_t));
    b->heads = alloc64((size_t)(2 * (max_instr + 1)) * sizeof(head_t));
    b->sides = alloc64((size_t)(2 * (max_instr + 1)) * b->side_bytes);
}

/* a fresh day: every byte of the books written (so every page is mapped before a timed pass,
 * as the hugering side's np.copyto from a pristine state does) */
static void books_reset(books_t *b) {
    b->birth = 0;
    b->open = 0;
    memset(b->cnt, 0, sizeof b->cnt);
    memset(b->t, 0, (size_t)(b->mask + 1) * sizeof(rec_t));
    memset(b->heads, 0, (size_t)(2 * (b->max_instr + 1)) * sizeof(head_t));
    memset(b->sides, 0, (size_t)(2 * (b->max_instr + 1)) * b->side_bytes);
    for (int64_t si = 0; si < 2 * (b->max_instr + 1); si++)
        for (int j = 1; j <= KEY_BLOCK; j++)
            keys_of(b, si)[-j] = INT64_MIN;
}

static void books_dump(books_t *b, FILE *out) {
    fwrite(b->cnt, sizeof(int64_t), N_COUNTERS, out);
    fwrite(&b->open, sizeof(int64_t), 1, out);
    int64_t *row = calloc((size_t)(2 + 3 * b->max_levels), sizeof(int64_t));
    for (int64_t loc = 1; loc <= b->max_instr; loc++) {
        for (int64_t s = 0; s < 2; s++) {
            int64_t si = 2 * loc + s, n = b->heads[si].nlev;
            memset(row, 0, (size_t)(2 + 3 * b->max_levels) * sizeof(int64_t));
            row[0] = n;
            row[1] = b->heads[si].hidden;
            for (int64_t j = 0; j < n; j++) {
                const level_t *v = &levels_of(b, si)[n - 1 - j];
                int64_t key = keys_of(b, si)[n - 1 - j];
                row[2 + 3 * j] = s == SIDE_BID ? key : -key;
                row[3 + 3 * j] = v->shares;
                row[4 + 3 * j] = v->orders;
            }
            fwrite(row, sizeof(int64_t), (size_t)(2 + 3 * b->max_levels), out);
        }
    }
    free(row);
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s STREAMFILE NBYTES MAX_INSTRUMENTS MAX_ORDERS MAX_LEVELS\n",
                argv[0]);
        return 2;
    }
    int64_t nbytes = atoll(argv[2]), max_instr = atoll(argv[3]), max_orders = atoll(argv[4]),
            max_levels = atoll(argv[5]);
    if (nbytes < 0 || max_instr < 1 || max_orders < 1 || max_levels < 1) {
        fprintf(stderr, "bad sizes\n");
        return 2;
    }
    FILE *fp = fopen(argv[1], "rb");
    if (!fp) {
        perror(argv[1]);
        return 1;
    }
    uint8_t *buf = alloc64((size_t)nbytes + 64);
    if (fread(buf, 1, (size_t)nbytes, fp) != (size_t)nbytes) {
        fprintf(stderr, "%s: short read\n", argv[1]);
        return 1;
    }
    fclose(fp);
    books_t b;
    books_init(&b, max_instr, max_orders, max_levels);
    books_reset(&b);
    char line[4096];
    setvbuf(stdout, NULL, _IOLBF, 0);
    while (fgets(line, sizeof line, stdin)) {
        char path[4000];
        if (strncmp(line, "run", 3) == 0) {
            static const char *names[] = {"full", "walk", "decode", "noprefetch"};
            int mode = 0;
            for (int k = 1; k < 4; k++)
                if (line[3] == ' ' && strncmp(line + 4, names[k], strlen(names[k])) == 0)
                    mode = k;
            books_reset(&b);
            int64_t sum = 0, stop;
            int64_t t0 = now_ns();
            if (mode == 0)
                stop = apply_blocks(&b, buf, 0, nbytes);
            else if (mode == 1)
                stop = walk_blocks(buf, 0, nbytes, &sum);
            else if (mode == 2)
                stop = decode_blocks(buf, 0, nbytes, &sum);
            else
                stop = apply_blocks_noprefetch(&b, buf, 0, nbytes);
            int64_t t1 = now_ns();
            printf("{\"impl\":\"c\",\"mode\":\"%s\",\"elapsed_ns\":%lld,\"stop\":%lld,"
                   "\"open_orders\":%lld,\"adds\":%lld,\"sum\":%lld}\n",
                   names[mode], (long long)(t1 - t0), (long long)stop, (long long)b.open,
                   (long long)b.cnt[C_ADD], (long long)sum);
        } else if (sscanf(line, "dump %3999s", path) == 1) {
            FILE *out = fopen(path, "wb");
            if (!out) {
                perror(path);
                return 1;
            }
            books_dump(&b, out);
            fclose(out);
            printf("{\"ok\":1}\n");
        } else {
            fprintf(stderr, "unknown command: %s", line);
            return 2;
        }
    }
    return 0;
}
