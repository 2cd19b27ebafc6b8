/* One rollout step of the action-conditioned predictor's attention, fused: RoPE on the new frame's q/k, the new
 * keys/values written into the K/V cache, softmax(q k^T / sqrt(d)) v over every cached token, and the output
 * written token-major for the output projection. Two element types share one body: fp32 (inputs, cache and output
 * fp32) and bf16 (qkv, K/V cache and output bf16, as under PyTorch's bf16 autocast); the arithmetic is fp32 in both,
 * the bf16 keys/values being widened per head into scratch before the tile loops. (An AMX tile-unit variant of the
 * bf16 path was measured at 1.11x the vector path on bf16 rollouts and removed: docs/DESIGN.md.)
 *
 * Why: in eager PyTorch these are seven passes over memory plus hundreds of small GEMM calls per layer (head dim
 * 32-64, 66 queries, 66-330 keys), which ran at a quarter of this CPU's matmul peak. Here each sample (or each
 * (sample, head)) is one task whose q^T and scores stay in L2, with register-tiled FMA loops.
 *
 * Built at first use with the machine's C compiler (-O3 -march=native -fopenmp) by vjepa2_core/models/native;
 * OpenMP resolves to the runtime PyTorch already loaded, so the work runs on PyTorch's own thread pool.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#ifdef __AVX512F__
#define VL 16 /* floats per vector register */
#define RQ 8  /* query rows per register tile: 8 rows x 2 vectors = 16 accumulators of 32 */
#else
#define VL 8
#define RQ 6 /* 6 x 2 = 12 accumulators of 16 registers */
#endif

typedef float vec __attribute__((vector_size(VL * 4)));
typedef int ivec __attribute__((vector_size(VL * 4)));

static inline vec load(const float *p) {
    vec v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void store(float *p, vec v) { memcpy(p, &v, sizeof v); }

/* bf16: the upper half of an fp32. Widening is exact; narrowing rounds to nearest even (NaN stays a quiet NaN). */
typedef unsigned short bf16;
typedef unsigned int uvec __attribute__((vector_size(VL * 4)));

static inline vec load_bf16(const bf16 *p) {
#if VL == 16
    __m256i h = _mm256_loadu_si256((const __m256i *)p);
    return (vec)_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16);
#else
    uvec u;
    for (int i = 0; i < VL; i++) u[i] = (unsigned)p[i] << 16;
    return (vec)u;
#endif
}

static inline void store_bf16(bf16 *p, vec v) {
#if VL == 16 && defined(__AVX512BF16__)
    __m256bh h = _mm512_cvtneps_pbh((__m512)v);
    memcpy(p, &h, sizeof h);
#else
    uvec u = (uvec)v;
    uvec rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    uvec nan = (uvec)(v != v);
    rounded = (rounded & ~nan) | ((uvec)((u >> 16) | 0x40u) & nan);
    for (int i = 0; i < VL; i++) p[i] = (bf16)rounded[i];
#endif
}

/* Element `i` of an fp32 or a bf16 array (`wide` is a constant in every inlined caller). */
static inline vec load_elems(const void *p, size_t i, const int wide) {
    return wide ? load((const float *)p + i) : load_bf16((const bf16 *)p + i);
}

static inline void store_elems(void *p, size_t i, vec v, const int wide) {
    if (wide)
        store((float *)p + i, v);
    else
        store_bf16((bf16 *)p + i, v);
}

#if VL == 16
static inline vec splat(float x) { return (vec)_mm512_set1_ps(x); }
#elif defined(__AVX__)
static inline vec splat(float x) { return (vec)_mm256_set1_ps(x); }
#else
static inline vec splat(float x) {
    vec v;
    for (int i = 0; i < VL; i++) v[i] = x;
    return v;
}
#endif

static inline vec vmax(vec a, vec b) { /* b where either is NaN, as the max instructions do */
#if VL == 16
    return (vec)_mm512_max_ps((__m512)a, (__m512)b);
#elif defined(__AVX__)
    return (vec)_mm256_max_ps((__m256)a, (__m256)b);
#else
    ivec gt = a > b;
    return (vec)(((ivec)a & gt) | ((ivec)b & ~gt));
#endif
}

/* x rounded to the nearest integer */
static inline vec vround(vec x) {
#if VL == 16
    return (vec)_mm512_roundscale_ps((__m512)x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
#elif defined(__AVX__)
    return (vec)_mm256_round_ps((__m256)x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
#else
    vec h = x + splat(0.5f), f = __builtin_convertvector(__builtin_convertvector(h, ivec), vec);
    return f - (vec)((ivec)splat(1.0f) & (f > h)); /* truncation -> floor(x + 1/2) */
#endif
}

/* y * 2^n for integral n >= -126 */
static inline vec scale_pow2(vec y, vec n) {
#if VL == 16
    return (vec)_mm512_scalef_ps((__m512)y, (__m512)n);
#else
    return y * (vec)((__builtin_convertvector(n, ivec) + 127) << 23);
#endif
}

/* exp for x <= 0 (scores minus their row maximum): Cody-Waite range reduction and a degree-6 polynomial
 * (Cephes' expf coefficients, ~1 ulp); below -87.3 it returns about 1e-38 instead of 0 (harmless: every row's
 * maximum contributes exp(0) = 1 to its sum). NaN stays NaN. */
static inline vec exp_nonpositive(vec x) {
    x = vmax(splat(-87.3f), x);
    vec n = vround(x * splat(1.44269504088896341f));
    vec r = x - n * splat(0.693359375f) - n * splat(-2.12194440e-4f);
    vec y = splat(1.9875691500e-4f);
    y = y * r + splat(1.3981999507e-3f);
    y = y * r + splat(8.3334519073e-3f);
    y = y * r + splat(4.1665795894e-2f);
    y = y * r + splat(1.6666665459e-1f);
    y = y * r + splat(5.0000001201e-1f);
    return scale_pow2(y * r * r + r + splat(1.0f), n);
}

static inline size_t round_up(size_t x, size_t m) { return (x + m - 1) / m * m; }

/* Queries padded for both the score tiles (lanes over queries) and the output tiles (RQ rows). */
static inline size_t padded_queries(int N) { return round_up(round_up(N, RQ), VL); }

/* Scratch floats one task of `heads` heads needs: q^T [heads, D, nq], scores^T [L, nq], 1/row sums [nq], and one
 * head's keys and values widened to fp32 [2, L, D] (bf16 caches). */
static size_t scratch_floats(int heads, int N, int L, int D) {
    size_t nq = padded_queries(N);
    return (size_t)heads * nq * D + (size_t)L * nq + nq + (size_t)2 * L * D;
}

/* Pair swap (x[1], x[0], x[3], x[2], ...): the partner of each element in the reference's RoPE. */
static inline vec swap_pairs(vec x) {
#if VL == 16
    return __builtin_shuffle(x, (ivec){1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14});
#else
    return __builtin_shuffle(x, (ivec){1, 0, 3, 2, 5, 4, 7, 6});
#endif
}

/* Transpose VL x VL floats held as VL vectors. Each pass makes row 2i / 2i+1 the low / high half of rows i and
 * i + VL/2 zipped, which rotates the bits of (row, column) by one; log2(VL) passes swap row and column. */
static inline void transpose(vec *r) {
#if VL == 16
    const ivec lo = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23};
    const ivec hi = {8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
#else
    const ivec lo = {0, 8, 1, 9, 2, 10, 3, 11}, hi = {4, 12, 5, 13, 6, 14, 7, 15};
#endif
    for (int width = 1; width < VL; width *= 2) { /* log2(VL) passes */
        vec t[VL];
        for (int i = 0; i < VL / 2; i++) {
            t[2 * i] = __builtin_shuffle(r[i], r[i + VL / 2], lo);
            t[2 * i + 1] = __builtin_shuffle(r[i], r[i + VL / 2], hi);
        }
        memcpy(r, t, sizeof t);
    }
}

/* RoPE tables for one call: [0] cos and [1] signed sin (-sin on even, +sin on odd dims) for k, [2], [3] the same
 * times the attention scale for q. x_rot = x * cos + swap_pairs(x) * signed_sin. */
typedef struct {
    const float *cos_k, *sin_k, *cos_q, *sin_q;
} rope_tables;

/* Heads h0..h1-1 of sample b. Inlined per head dim (32, 64, other) so that row offsets are constants in the tile
 * loops. A task takes all heads of a sample where there are enough samples: the sample's qkv rows are then read
 * once, front to back, instead of one head's slice per task. */
static inline __attribute__((always_inline)) void attend(const void *qkv, rope_tables rope, void *keys,
                                                         void *values, void *out, int b, int h0, int h1, int N,
                                                         int H, const int D, int cap, int past, float *scratch,
                                                         const int wide) {
    const int L = past + N;
    const size_t nq = padded_queries(N);
    const size_t token = (size_t)3 * H * D; /* qkv stride between tokens */
    float *ST = scratch + (size_t)(h1 - h0) * D * nq, *inv = ST + (size_t)L * nq, *widened = inv + nq;
    const size_t x = (size_t)b * N * token; /* this sample's first qkv element */

    /* 1. RoPE: q (scaled) into q^T [D, nq] per head, VL x VL blocks transposed in registers (padding queries 0);
     * k and v appended to the cache */
    for (size_t n0 = 0; n0 < nq; n0 += VL) {
        for (int h = h0; h < h1; h++) {
            float *QT = scratch + (size_t)(h - h0) * D * nq;
            for (int d = 0; d < D; d += VL) {
                vec rows[VL];
                for (int i = 0; i < VL; i++) {
                    const size_t n = n0 + i, t = n * D + d;
                    if (n >= (size_t)N) {
                        rows[i] = splat(0.0f);
                        continue;
                    }
                    const size_t q = x + n * token + (size_t)h * D + d, k = q + (size_t)H * D, v = k + (size_t)H * D;
                    const size_t row = (((size_t)b * H + h) * cap + past + n) * D + d;
                    vec qd = load_elems(qkv, q, wide), kd = load_elems(qkv, k, wide);
                    rows[i] = qd * load(rope.cos_q + t) + swap_pairs(qd) * load(rope.sin_q + t);
                    store_elems(keys, row, kd * load(rope.cos_k + t) + swap_pairs(kd) * load(rope.sin_k + t), wide);
                    store_elems(values, row, load_elems(qkv, v, wide), wide);
                }
                transpose(rows);
                for (int i = 0; i < VL; i++) store(QT + (size_t)(d + i) * nq + n0, rows[i]);
            }
        }
    }

    for (int h = h0; h < h1; h++) {
        const float *QT = scratch + (size_t)(h - h0) * D * nq;
        const size_t head = ((size_t)b * H + h) * cap * D;
        const float *K = (const float *)keys + head, *V = (const float *)values + head;
        if (!wide) { /* the attended keys/values are the cache's (rounded) ones, as on PyTorch's bf16 path */
            float *Kw = widened, *Vw = widened + (size_t)L * D;
            for (size_t i = 0; i < (size_t)L * D; i += VL) {
                store(Kw + i, load_bf16((const bf16 *)keys + head + i));
                store(Vw + i, load_bf16((const bf16 *)values + head + i));
            }
            K = Kw, V = Vw;
        }
        /* 2. scores^T [L, nq] = K Q^T: tiles of RQ keys x 2 vectors of queries, then KR keys x 1 vector */
        enum { KR = 2 * RQ };
        size_t n0 = 0;
        for (; n0 + 2 * VL <= nq; n0 += 2 * VL) {
            int l0 = 0;
            for (; l0 + RQ <= L; l0 += RQ) {
                vec acc[RQ][2];
                for (int r = 0; r < RQ; r++) acc[r][0] = acc[r][1] = splat(0.0f);
                for (int d = 0; d < D; d++) {
                    vec q0 = load(QT + (size_t)d * nq + n0), q1 = load(QT + (size_t)d * nq + n0 + VL);
                    for (int r = 0; r < RQ; r++) {
                        vec k = splat(K[(size_t)(l0 + r) * D + d]);
                        acc[r][0] += k * q0;
                        acc[r][1] += k * q1;
                    }
                }
                for (int r = 0; r < RQ; r++) {
                    store(ST + (size_t)(l0 + r) * nq + n0, acc[r][0]);
                    store(ST + (size_t)(l0 + r) * nq + n0 + VL, acc[r][1]);
                }
            }
            for (; l0 < L; l0++) {
                vec a0 = splat(0.0f), a1 = splat(0.0f);
                for (int d = 0; d < D; d++) {
                    vec k = splat(K[(size_t)l0 * D + d]);
                    a0 += k * load(QT + (size_t)d * nq + n0);
                    a1 += k * load(QT + (size_t)d * nq + n0 + VL);
                }
                store(ST + (size_t)l0 * nq + n0, a0);
                store(ST + (size_t)l0 * nq + n0 + VL, a1);
            }
        }
        for (; n0 < nq; n0 += VL) {
            int l0 = 0;
            for (; l0 + KR <= L; l0 += KR) {
                vec acc[KR];
                for (int r = 0; r < KR; r++) acc[r] = splat(0.0f);
                for (int d = 0; d < D; d++) {
                    vec qd = load(QT + (size_t)d * nq + n0);
                    for (int r = 0; r < KR; r++) acc[r] += splat(K[(size_t)(l0 + r) * D + d]) * qd;
                }
                for (int r = 0; r < KR; r++) store(ST + (size_t)(l0 + r) * nq + n0, acc[r]);
            }
            for (; l0 < L; l0++) {
                vec acc = splat(0.0f);
                for (int d = 0; d < D; d++) acc += splat(K[(size_t)l0 * D + d]) * load(QT + (size_t)d * nq + n0);
                store(ST + (size_t)l0 * nq + n0, acc);
            }
        }

        /* 3. softmax numerators in place, lanes over queries; 1 / sums in inv */
        for (size_t n0 = 0; n0 < nq; n0 += VL) {
            vec m = load(ST + n0);
            for (int l = 1; l < L; l++) m = vmax(m, load(ST + (size_t)l * nq + n0));
            vec sum = splat(0.0f);
            for (int l = 0; l < L; l++) {
                vec p = exp_nonpositive(load(ST + (size_t)l * nq + n0) - m);
                store(ST + (size_t)l * nq + n0, p);
                sum += p;
            }
            store(inv + n0, splat(1.0f) / sum);
        }

        /* 4. out[b, n, h, :] = (P V)[n] / sum: tiles of RQ queries x 2 vectors (or 1 where D is an odd number of them) */
        const size_t o = (size_t)b * N * H * D + (size_t)h * D;
        const size_t out_token = (size_t)H * D;
        for (size_t n0 = 0; n0 < (size_t)N; n0 += RQ) {
            int d0 = 0;
            for (; d0 + 2 * VL <= D; d0 += 2 * VL) {
                vec acc[RQ][2];
                for (int r = 0; r < RQ; r++) acc[r][0] = acc[r][1] = splat(0.0f);
                for (int l = 0; l < L; l++) {
                    vec v0 = load(V + (size_t)l * D + d0), v1 = load(V + (size_t)l * D + d0 + VL);
                    const float *p = ST + (size_t)l * nq + n0;
                    for (int r = 0; r < RQ; r++) {
                        acc[r][0] += splat(p[r]) * v0;
                        acc[r][1] += splat(p[r]) * v1;
                    }
                }
                for (int r = 0; r < RQ && n0 + r < (size_t)N; r++) {
                    const size_t dst = o + (n0 + r) * out_token + d0;
                    store_elems(out, dst, acc[r][0] * splat(inv[n0 + r]), wide);
                    store_elems(out, dst + VL, acc[r][1] * splat(inv[n0 + r]), wide);
                }
            }
            for (; d0 < D; d0 += VL) {
                vec acc[RQ];
                for (int r = 0; r < RQ; r++) acc[r] = splat(0.0f);
                for (int l = 0; l < L; l++) {
                    vec v0 = load(V + (size_t)l * D + d0);
                    const float *p = ST + (size_t)l * nq + n0;
                    for (int r = 0; r < RQ; r++) acc[r] += splat(p[r]) * v0;
                }
                for (int r = 0; r < RQ && n0 + r < (size_t)N; r++)
                    store_elems(out, o + (n0 + r) * out_token + d0, acc[r] * splat(inv[n0 + r]), wide);
            }
        }
    }
}


/* Width of this build's vectors: head dims must be a multiple of it. */
int frame_attention_vector_width(void) { return VL; }

/* Bytes of scratch one thread needs at most for a call (tasks of all `H` heads). */
size_t frame_attention_scratch_bytes(int H, int N, int L, int D) {
    return sizeof(float) * scratch_floats(H, N, L, D);
}

/* qkv [B, N, 3, H, D] contiguous; cos/sin [N, D] fp32; keys/values [B, H, cap, D] contiguous holding `past` tokens
 * (the new N are written after them); out [B, N, H, D]. qkv, keys, values and out are fp32 (`wide`) or bf16.
 * Returns 0, or -1 on bad sizes / no memory. */
static int run(const void *qkv, const float *cos_t, const float *sin_t, void *keys, void *values, void *out, int B,
               int N, int H, int D, int cap, int past, float scale, int threads, const int wide) {
    if (B < 1 || N < 1 || H < 1 || D < VL || D % VL || past < 0 || past + N > cap || threads < 1) return -1;
    const size_t table = (size_t)N * D;
    float *tables = malloc(sizeof(float) * 4 * table);
    if (!tables) return -1;
    for (size_t i = 0; i < table; i++) {
        float s = (i % 2) ? sin_t[i] : -sin_t[i];
        tables[i] = cos_t[i];
        tables[table + i] = s;
        tables[2 * table + i] = cos_t[i] * scale;
        tables[3 * table + i] = s * scale;
    }
    rope_tables rope = {tables, tables + table, tables + 2 * table, tables + 3 * table};
    const int per_sample = B >= 2 * threads; /* enough samples: one task per sample (all heads), else per head */
    const long tasks = per_sample ? B : (long)B * H;
    const size_t need = frame_attention_scratch_bytes(per_sample ? H : 1, N, past + N, D);
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        float *scratch = malloc(need);
        failed = scratch == NULL;
#pragma omp for schedule(static)
        for (long t = 0; t < tasks; t++) {
            if (!scratch) continue;
            const int b = per_sample ? (int)t : (int)(t / H), h0 = per_sample ? 0 : (int)(t % H);
            const int h1 = per_sample ? H : h0 + 1;
            if (wide && D == 32)
                attend(qkv, rope, keys, values, out, b, h0, h1, N, H, 32, cap, past, scratch, 1);
            else if (wide && D == 64)
                attend(qkv, rope, keys, values, out, b, h0, h1, N, H, 64, cap, past, scratch, 1);
            else if (wide)
                attend(qkv, rope, keys, values, out, b, h0, h1, N, H, D, cap, past, scratch, 1);
            else if (D == 32)
                attend(qkv, rope, keys, values, out, b, h0, h1, N, H, 32, cap, past, scratch, 0);
            else if (D == 64)
                attend(qkv, rope, keys, values, out, b, h0, h1, N, H, 64, cap, past, scratch, 0);
            else
                attend(qkv, rope, keys, values, out, b, h0, h1, N, H, D, cap, past, scratch, 0);
        }
        free(scratch);
    }
    free(tables);
    return failed ? -1 : 0;
}

int frame_attention(const float *qkv, const float *cos_t, const float *sin_t, float *keys, float *values, float *out,
                    int B, int N, int H, int D, int cap, int past, float scale, int threads) {
    return run(qkv, cos_t, sin_t, keys, values, out, B, N, H, D, cap, past, scale, threads, 1);
}

/* bf16 tensors (the arithmetic fp32). */
int frame_attention_bf16(const bf16 *qkv, const float *cos_t, const float *sin_t, bf16 *keys, bf16 *values,
                         bf16 *out, int B, int N, int H, int D, int cap, int past, float scale, int threads) {
    return run(qkv, cos_t, sin_t, keys, values, out, B, N, H, D, cap, past, scale, threads, 0);
}
