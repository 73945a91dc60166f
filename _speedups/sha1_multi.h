/*
 * sha1_multi.h - SHA-1 of several independent messages at once (multi-buffer).
 *
 * Why: with the x86 SHA extensions one SHA-1 stream is bound by the latency
 * of the sha1rnds4 dependency chain (each 4-round step needs the previous
 * one's result), not by the unit's throughput.  BitTorrent hashes many
 * independent pieces, so running 2-4 messages ("lanes") through the rounds
 * in lock-step fills the idle issue slots and multiplies per-core throughput.
 *
 * Written from FIPS 180-4 (SHA-1: sections 4.1.1, 4.2.1, 5.1.1, 5.3.1, 6.1.2)
 * and Intel's documented semantics of sha1rnds4/sha1nexte/sha1msg1/sha1msg2.
 *
 * Header-only; every function is static.  Usable from Cython:
 *     cdef extern from "sha1_multi.h" nogil:
 *         int sha1mb_available()
 *         void sha1mb_hash(const unsigned char *const *data, const size_t *len,
 *                          unsigned char (*out)[20], size_t count)
 *
 * sha1mb_hash() is always correct: without SHA-NI (or on non-x86 builds) it
 * falls back to a portable scalar implementation, which is much slower than
 * OpenSSL, so callers should test sha1mb_available() and use OpenSSL
 * otherwise.  Input needs no alignment; data[i] may be NULL when len[i] == 0.
 */
#ifndef SHA1_MULTI_H
#define SHA1_MULTI_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Default number of interleaved lanes.  Measured on AMD EPYC (Zen 3), where
 * sha1rnds4 has ~6 cycles latency but issues every 2 cycles, so one stream
 * uses a third of the unit: 1/2/3/4 lanes gave ~1.6/3.0/3.5/3.9 GB/s per
 * core.  4 lanes win despite spilling (the SHA instructions are legacy SSE,
 * xmm0-15 only), because 3 lanes would need perfect scheduling to hide the
 * latency. */
#ifndef SHA1MB_LANES
#define SHA1MB_LANES 4
#endif
#define SHA1MB_MAX_LANES 4

#if defined(__GNUC__) || defined(__clang__)
#define SHA1MB_FN static __attribute__((unused))
#else
#define SHA1MB_FN static
#endif

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define SHA1MB_X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif

/* ------------------------------------------------------------------------ */
/* Portable pieces: constants, padding, scalar fallback (FIPS 180-4).       */

/* Initial hash value, section 5.3.1. */
static const uint32_t sha1mb_iv[5] = {
    0x67452301u, 0xefcdab89u, 0x98badcfeu, 0x10325476u, 0xc3d2e1f0u
};

static inline uint32_t sha1mb_rol(uint32_t x, int n)
{
    return (x << n) | (x >> (32 - n));
}

static inline uint32_t sha1mb_be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

/* Padding, section 5.1.1: the last rem (< 64) message bytes, 0x80, zeros,
 * then the 64-bit big-endian bit length; 1 block, or 2 when rem >= 56. */
static inline size_t sha1mb_pad(unsigned char buf[128], const unsigned char *tail,
                                size_t rem, uint64_t len)
{
    size_t nb = rem < 56 ? 1 : 2;
    uint64_t bits = len << 3;
    unsigned char *end = buf + nb * 64;
    int i;
    if (rem)
        memcpy(buf, tail, rem);
    buf[rem] = 0x80;
    memset(buf + rem + 1, 0, nb * 64 - 8 - rem - 1);
    for (i = 1; i <= 8; i++, bits >>= 8)
        end[-i] = (unsigned char)bits;
    return nb;
}

/* Scalar compression of nblocks blocks, section 6.1.2, with the functions
 * and constants of sections 4.1.1 and 4.2.1.  Fallback only. */
SHA1MB_FN void sha1mb_blocks_scalar(uint32_t h[5], const unsigned char *p, size_t nblocks)
{
    uint32_t w[80];
    for (; nblocks; nblocks--, p += 64) {
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f, k, t32;
        int t;
        for (t = 0; t < 16; t++)
            w[t] = sha1mb_be32(p + 4 * t);
        for (t = 16; t < 80; t++)
            w[t] = sha1mb_rol(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);
        for (t = 0; t < 80; t++) {
            if (t < 20) {
                f = (b & c) ^ (~b & d);             /* Ch */
                k = 0x5a827999u;
            } else if (t < 40) {
                f = b ^ c ^ d;                      /* Parity */
                k = 0x6ed9eba1u;
            } else if (t < 60) {
                f = (b & c) ^ (b & d) ^ (c & d);    /* Maj */
                k = 0x8f1bbcdcu;
            } else {
                f = b ^ c ^ d;                      /* Parity */
                k = 0xca62c1d6u;
            }
            t32 = sha1mb_rol(a, 5) + f + e + k + w[t];
            e = d;
            d = c;
            c = sha1mb_rol(b, 30);
            b = a;
            a = t32;
        }
        h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
    }
}

/* ------------------------------------------------------------------------ */
/* SHA-NI kernels.                                                           */

#ifdef SHA1MB_X86

#define SHA1MB_TARGET __attribute__((target("sha,sse4.1,ssse3")))

/* Cached CPUID result: -1 unknown, else 0/1.  A race only repeats the test. */
static int sha1mb_cpu_ok = -1;

SHA1MB_FN int sha1mb_available(void)
{
    int ok = sha1mb_cpu_ok;
    if (ok < 0) {
        unsigned a, b, c, d;
        ok = 0;
        if (__get_cpuid(1, &a, &b, &c, &d) &&
            (c & (1u << 9)) && (c & (1u << 19)) &&          /* SSSE3, SSE4.1 */
            __get_cpuid_count(7, 0, &a, &b, &c, &d) &&
            (b & (1u << 29)))                                /* SHA */
            ok = 1;
        sha1mb_cpu_ok = ok;
    }
    return ok;
}

/*
 * Register layout used by the SHA instructions: ABCD in one xmm with A in
 * the top dword; E rides in the top dword of the message operand, so
 * sha1rnds4 gets (W[t]+E, W[t+1], W[t+2], W[t+3]) high to low and does
 * rounds t..t+3 (imm selects f and K: 0-19, 20-39, 40-59, 60-79).  The E
 * for the next 4 rounds is rol30(A from 4 rounds back), which sha1nexte adds
 * to W's top dword.  sha1msg1/sha1msg2 compute the section 6.1.2 step 1
 * schedule W[t] = rol1(W[t-3]^W[t-8]^W[t-14]^W[t-16]) four words at a time.
 *
 * The lanes are written out with per-lane variables (a0, a1, ...) by the
 * SHA1MB_EACHn macros (arrays indexed by lane would be left in memory), and
 * each 4-round step of all lanes is issued back to back: the lanes'
 * dependency chains are independent, so the out-of-order core overlaps them.
 */
#define SHA1MB_EACH1(X, ...) X(0, __VA_ARGS__)
#define SHA1MB_EACH2(X, ...) SHA1MB_EACH1(X, __VA_ARGS__) X(1, __VA_ARGS__)
#define SHA1MB_EACH3(X, ...) SHA1MB_EACH2(X, __VA_ARGS__) X(2, __VA_ARGS__)
#define SHA1MB_EACH4(X, ...) SHA1MB_EACH3(X, __VA_ARGS__) X(3, __VA_ARGS__)

#define SHA1MB_DECL(l, u) \
    __m128i a##l, e##l, sa##l, se##l, pv##l, t##l, m0##l, m1##l, m2##l, m3##l; \
    const unsigned char *q##l = p[l];

/* State words h0..h3 reversed so that A is in the top dword. */
#define SHA1MB_LOAD(l, u) \
    a##l = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)st[l]), 0x1B); \
    e##l = _mm_set_epi32((int)st[l][4], 0, 0, 0);

#define SHA1MB_STORE(l, u) \
    _mm_storeu_si128((__m128i *)st[l], _mm_shuffle_epi32(a##l, 0x1B)); \
    st[l][4] = (uint32_t)_mm_extract_epi32(e##l, 3);

/* Save the chaining value and load 16 big-endian words, W[0] on top. */
#define SHA1MB_BEGIN(l, u) \
    sa##l = a##l; se##l = e##l; \
    m0##l = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(q##l)), bswap); \
    m1##l = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(q##l + 16)), bswap); \
    m2##l = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(q##l + 32)), bswap); \
    m3##l = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(q##l + 48)), bswap); \
    q##l += 64;

/* Rounds 0-3: E is the chaining value itself, so a plain add. */
#define SHA1MB_R0(l, u) \
    t##l = _mm_add_epi32(e##l, m0##l); pv##l = a##l; \
    a##l = _mm_sha1rnds4_epu32(a##l, t##l, 0);

/* Four rounds on words already in w. */
#define SHA1MB_R(l, w, f) \
    t##l = _mm_sha1nexte_epu32(pv##l, w##l); pv##l = a##l; \
    a##l = _mm_sha1rnds4_epu32(a##l, t##l, f);

/* Four rounds after computing the next 4 schedule words into wi from
 * wi = W[t-16..], wj = W[t-12..], wk = W[t-8..], wm = W[t-4..]. */
#define SHA1MB_RS(l, wi, wj, wk, wm, f) \
    wi##l = _mm_sha1msg2_epu32( \
        _mm_xor_si128(_mm_sha1msg1_epu32(wi##l, wj##l), wk##l), wm##l); \
    SHA1MB_R(l, wi, f)

/* Section 6.1.2 step 4: add the working variables to the chaining value;
 * the final E is rol30 of A from rounds 76-79's input. */
#define SHA1MB_END(l, u) \
    e##l = _mm_sha1nexte_epu32(pv##l, se##l); \
    a##l = _mm_add_epi32(a##l, sa##l);

#define SHA1MB_DEFINE_KERNEL(name, EACH) \
SHA1MB_FN SHA1MB_TARGET __attribute__((noinline)) void \
name(uint32_t *const *st, const unsigned char *const *p, size_t nblocks) \
{ \
    const __m128i bswap = _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, \
                                       8, 9, 10, 11, 12, 13, 14, 15); \
    EACH(SHA1MB_DECL, ) \
    EACH(SHA1MB_LOAD, ) \
    for (; nblocks; nblocks--) { \
        EACH(SHA1MB_BEGIN, ) \
        EACH(SHA1MB_R0, ) \
        EACH(SHA1MB_R, m1, 0) \
        EACH(SHA1MB_R, m2, 0) \
        EACH(SHA1MB_R, m3, 0) \
        EACH(SHA1MB_RS, m0, m1, m2, m3, 0)   /* rounds 16-19 */ \
        EACH(SHA1MB_RS, m1, m2, m3, m0, 1) \
        EACH(SHA1MB_RS, m2, m3, m0, m1, 1) \
        EACH(SHA1MB_RS, m3, m0, m1, m2, 1) \
        EACH(SHA1MB_RS, m0, m1, m2, m3, 1) \
        EACH(SHA1MB_RS, m1, m2, m3, m0, 1)   /* rounds 36-39 */ \
        EACH(SHA1MB_RS, m2, m3, m0, m1, 2) \
        EACH(SHA1MB_RS, m3, m0, m1, m2, 2) \
        EACH(SHA1MB_RS, m0, m1, m2, m3, 2) \
        EACH(SHA1MB_RS, m1, m2, m3, m0, 2) \
        EACH(SHA1MB_RS, m2, m3, m0, m1, 2)   /* rounds 56-59 */ \
        EACH(SHA1MB_RS, m3, m0, m1, m2, 3) \
        EACH(SHA1MB_RS, m0, m1, m2, m3, 3) \
        EACH(SHA1MB_RS, m1, m2, m3, m0, 3) \
        EACH(SHA1MB_RS, m2, m3, m0, m1, 3) \
        EACH(SHA1MB_RS, m3, m0, m1, m2, 3)   /* rounds 76-79 */ \
        EACH(SHA1MB_END, ) \
    } \
    EACH(SHA1MB_STORE, ) \
}

/* sha1mb_ni_xN: nblocks 64-byte blocks of N independent lanes. */
SHA1MB_DEFINE_KERNEL(sha1mb_ni_x1, SHA1MB_EACH1)
SHA1MB_DEFINE_KERNEL(sha1mb_ni_x2, SHA1MB_EACH2)
SHA1MB_DEFINE_KERNEL(sha1mb_ni_x3, SHA1MB_EACH3)
SHA1MB_DEFINE_KERNEL(sha1mb_ni_x4, SHA1MB_EACH4)

#else /* !SHA1MB_X86 */

SHA1MB_FN int sha1mb_available(void)
{
    return 0;
}

#endif /* SHA1MB_X86 */

/* ------------------------------------------------------------------------ */
/* Lane scheduler (portable).                                               */

/* One lane: a message in flight, first its whole blocks straight from the
 * caller's buffer, then its 1-2 padded final blocks from buf. */
struct sha1mb_lane {
    const unsigned char *p;     /* next block */
    size_t nb;                  /* blocks left in the current phase */
    size_t msg;                 /* index of the message */
    int tail;                   /* 0: message body, 1: padded tail in buf */
    uint32_t h[5];
    unsigned char buf[128];
};

/* Switch a lane to its padded tail once its whole blocks are done. */
static inline void sha1mb_lane_tail(struct sha1mb_lane *ln, size_t len)
{
    ln->nb = sha1mb_pad(ln->buf, ln->p, len & 63, (uint64_t)len);
    ln->p = ln->buf;
    ln->tail = 1;
}

static inline void sha1mb_lane_start(struct sha1mb_lane *ln, const unsigned char *data,
                                     size_t len, size_t msg)
{
    memcpy(ln->h, sha1mb_iv, sizeof ln->h);
    ln->p = data;
    ln->nb = len >> 6;
    ln->msg = msg;
    ln->tail = 0;
    if (ln->nb == 0)
        sha1mb_lane_tail(ln, len);
}

/* Run nblocks blocks on n lanes at once. */
static inline void sha1mb_blocks(int n, int ni, uint32_t *const *st,
                                 const unsigned char *const *p, size_t nblocks)
{
#ifdef SHA1MB_X86
    if (ni) {
        switch (n) {
        case 1: sha1mb_ni_x1(st, p, nblocks); return;
        case 2: sha1mb_ni_x2(st, p, nblocks); return;
        case 3: sha1mb_ni_x3(st, p, nblocks); return;
        case 4: sha1mb_ni_x4(st, p, nblocks); return;
        }
    }
#endif
    (void)ni;
    for (int i = 0; i < n; i++)
        sha1mb_blocks_scalar(st[i], p[i], nblocks);
}

/*
 * Hash count messages with up to `lanes` (1..4) interleaved.  Each step runs
 * the blocks all active lanes have in common; a lane that runs out moves to
 * its padded tail, and a finished lane takes the next message, so lanes stay
 * busy even when lengths differ; once the queue is empty the remaining lanes
 * finish with fewer lanes.  Equal-length messages need just two steps per
 * group: all whole blocks, then the padded tails.
 */
SHA1MB_FN void sha1mb_hash_lanes(const unsigned char *const *data, const size_t *len,
                                 unsigned char (*out)[20], size_t count, int lanes)
{
    struct sha1mb_lane ln[SHA1MB_MAX_LANES];
    int act[SHA1MB_MAX_LANES];
    uint32_t *st[SHA1MB_MAX_LANES];
    const unsigned char *p[SHA1MB_MAX_LANES];
    int ni = sha1mb_available(), nact = 0, i, j;
    size_t next = 0;

    if (!ni)
        lanes = 1;                  /* scalar code gains nothing from lanes */
    if (lanes < 1)
        lanes = 1;
    if (lanes > SHA1MB_MAX_LANES)
        lanes = SHA1MB_MAX_LANES;
    if (count > (size_t)lanes) {
        /* Spread equal-length messages evenly over the waves: 5 messages
         * run as 3+2 rather than 4+1, since a lone lane runs at 1x. */
        size_t waves = (count + (size_t)lanes - 1) / (size_t)lanes;
        lanes = (int)((count + waves - 1) / waves);
    }
    while (nact < lanes && next < count) {
        sha1mb_lane_start(&ln[nact], data[next], len[next], next);
        act[nact] = nact;
        nact++;
        next++;
    }
    while (nact > 0) {
        size_t m = ln[act[0]].nb;
        for (i = 1; i < nact; i++)
            if (ln[act[i]].nb < m)
                m = ln[act[i]].nb;
        for (i = 0; i < nact; i++) {
            st[i] = ln[act[i]].h;
            p[i] = ln[act[i]].p;
        }
        sha1mb_blocks(nact, ni, st, p, m);
        for (i = 0; i < nact; i++) {
            struct sha1mb_lane *l = &ln[act[i]];
            l->p += 64 * m;
            l->nb -= m;
            if (l->nb)
                continue;
            if (!l->tail) {
                sha1mb_lane_tail(l, len[l->msg]);
                continue;
            }
            for (j = 0; j < 5; j++) {   /* digest: H0..H4 big-endian */
                out[l->msg][4 * j + 0] = (unsigned char)(l->h[j] >> 24);
                out[l->msg][4 * j + 1] = (unsigned char)(l->h[j] >> 16);
                out[l->msg][4 * j + 2] = (unsigned char)(l->h[j] >> 8);
                out[l->msg][4 * j + 3] = (unsigned char)l->h[j];
            }
            if (next < count) {
                sha1mb_lane_start(l, data[next], len[next], next);
                next++;
            } else {
                act[i] = act[--nact];
                i--;                    /* revisit the lane moved here */
            }
        }
    }
}

/* Standard SHA-1 digests of count independent messages: out[i] = SHA1(data[i], len[i]). */
SHA1MB_FN void sha1mb_hash(const unsigned char *const *data, const size_t *len,
                           unsigned char (*out)[20], size_t count)
{
    sha1mb_hash_lanes(data, len, out, count, SHA1MB_LANES);
}

#endif /* SHA1_MULTI_H */
