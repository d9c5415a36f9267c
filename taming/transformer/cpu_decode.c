/* Sampling's one-code steps on the CPU, built by taming.native for the CPU at hand:
   - taming_attend: the attention over a reduced key/value cache (decode/attention.py);
   - taming_int8_step: the whole step over int8 weights and an int8 cache (decode/native.py; below);
   - taming_draw: a code per row from its probabilities (decode/loop.py's _draw).

   The attention, for every row b and head h, in one call:
   1. writes the step's key and value (from the fused q|k|v row) at position `pos` of the cache,
      int8 with one float scale per vector (largest magnitude / 127, round half to even: the numbers
      QuantizedCache.write stores) or bf16 (round to nearest even, as torch converts);
   2. attends the query over positions [0, pos]: softmax(q . k / sqrt(hd)) v, every product and sum
      in float, the stored numbers widened as they are loaded: one pass over the keys, one over the
      values, nothing else of cache size.

   Layouts (all contiguous): qkv (B, 3C) = [query | key | value], C = nh * hd; caches (B, nh, max_len,
   hd); int8 scales (B, nh, max_len); out (B, C); work (B, nh, max_len) floats of scratch.

   One source, three builds of the step's int8 dot products, chosen by the compiler's target
   (taming.native picks the target from the CPU class): AVX512-VNNI (vpdpbusd), AVX2 (vpmaddubsw /
   vpmaddwd, the idiom of FBGEMM and llama.cpp) and portable C loops (the compiler vectorizes what it
   can: SSE2, NEON). Every build computes bit-identical numbers: the integer dot products are exact,
   every float sum runs in one fixed order (LANES partial sums, then a fixed tree, below) and
   taming.native compiles without reassociation or contracted multiply-adds (-ffp-contract=off), so
   no target's vector width or FMA changes a rounding. The same seed samples the same codes on an
   AVX-512, an AVX2 and a plain CPU. */
#include <math.h>
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* exp(x) for x <= 0, vectorizable: x = n ln2 + r with |r| <= ln2 / 2, a degree-6 polynomial in r
   (Cephes' expf coefficients), 2^n from the exponent bits. Relative error ~1e-7. */
static inline float exp_nonpositive(float x) {
    x = x < -87.0f ? -87.0f : x;
    float n = floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { int32_t i; float f; } two_n;
    two_n.i = ((int32_t)n + 127) << 23;
    return p * two_n.f;
}

static inline float bf16_to_float(uint16_t h) {
    union { uint32_t u; float f; } v;
    v.u = (uint32_t)h << 16;
    return v.f;
}

static inline uint16_t float_to_bf16(float x) {
    union { float f; uint32_t u; } v;
    v.f = x;
    if (x != x) return 0x7fc0;
    return (uint16_t)((v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16);
}

/* Cache rows requested ahead of the int8 attention's two passes: with the cache in memory (inside a
   step the weights have pushed it out of the caches) the hardware prefetcher alone kept ~13 GB/s
   of the ~27 the machine streams; 32-64 rows (2-4 KB) ahead measured 15-25% faster per layer. */
#define PREFETCH_ROWS 48
/* Weight bytes requested ahead in the Linears' one pass over their weights: without, the 2048-input
   fc2 streamed at ~8 GB/s on one thread (AVX2), 1.7x slower than the other Linears; 2 KB ahead
   evened them and took ~5% off a step (AVX2 and VNNI builds). */
#define WEIGHTS_AHEAD 2048

/* a > b ? a : b: one instruction (fmaxf is a libm call when NaNs must be honoured) */
static inline float max_of(float a, float b) { return a > b ? a : b; }

/* Float sums in one order on every target: element i goes to partial sum i % LANES (a "lanes"
   value of 16 floats), the partial sums are added as a fixed tree (16 -> 8 -> 4 -> 2 -> 1, halves
   added pairwise). A reduction left to the compiler is summed in the order of its vector width,
   and the builds would differ in the last bits; here each build does the same arithmetic: one
   AVX-512 register, two AVX2 registers, or 16 floats in plain C (vectorized as the compiler can). */
#define LANES 16

/* the tree over 16 partial sums in memory (the portable build's, and every build's tail path) */
static inline float tree_sum(const float* a) {
    float b[8], c[4];
    for (int j = 0; j < 8; ++j) b[j] = a[j] + a[j + 8];
    for (int j = 0; j < 4; ++j) c[j] = b[j] + b[j + 4];
    return (c[0] + c[2]) + (c[1] + c[3]);
}

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
#include <immintrin.h>
typedef __m512 lanes;
static inline lanes lanes_zero(void) { return _mm512_setzero_ps(); }
static inline lanes lanes_load(const float* x) { return _mm512_loadu_ps(x); }
static inline lanes lanes_load_i8(const int8_t* x) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)x)));
}
static inline lanes lanes_load_bf16(const uint16_t* x) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)x)), 16));
}
static inline lanes lanes_add(lanes a, lanes b) { return _mm512_add_ps(a, b); }
static inline lanes lanes_mul(lanes a, lanes b) { return _mm512_mul_ps(a, b); }
static inline lanes lanes_sub1(lanes a, float c) { return _mm512_sub_ps(a, _mm512_set1_ps(c)); }
static inline lanes lanes_set1(float c) { return _mm512_set1_ps(c); }
static inline __m256 lanes_halves(lanes p) {  /* lanes i + (i + 8): the tree's first level */
    return _mm256_add_ps(_mm512_castps512_ps256(p), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(p), 1)));
}
static inline void lanes_store(float* out, lanes a) { _mm512_storeu_ps(out, a); }
static inline float lanes_tree(lanes p) {
    const __m256 b = lanes_halves(p);
    const __m128 c = _mm_add_ps(_mm256_castps256_ps128(b), _mm256_extractf128_ps(b, 1));
    const __m128 d = _mm_add_ps(c, _mm_movehl_ps(c, c));  /* c0 + c2, c1 + c3 */
    return _mm_cvtss_f32(_mm_add_ss(d, _mm_shuffle_ps(d, d, 1)));
}
#elif defined(__AVX2__)
#include <immintrin.h>
typedef struct { __m256 lo, hi; } lanes;  /* lanes 0-7, 8-15 */
static inline lanes lanes_zero(void) { return (lanes){_mm256_setzero_ps(), _mm256_setzero_ps()}; }
static inline lanes lanes_load(const float* x) { return (lanes){_mm256_loadu_ps(x), _mm256_loadu_ps(x + 8)}; }
static inline lanes lanes_load_i8(const int8_t* x) {
    const __m128i v = _mm_loadu_si128((const __m128i*)x);
    return (lanes){_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)), _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(v, 8)))};
}
static inline lanes lanes_load_bf16(const uint16_t* x) {
    const __m256i v = _mm256_loadu_si256((const __m256i*)x);
    return (lanes){_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(v)), 16)),
                   _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(v, 1)), 16))};
}
static inline lanes lanes_add(lanes a, lanes b) { return (lanes){_mm256_add_ps(a.lo, b.lo), _mm256_add_ps(a.hi, b.hi)}; }
static inline lanes lanes_mul(lanes a, lanes b) { return (lanes){_mm256_mul_ps(a.lo, b.lo), _mm256_mul_ps(a.hi, b.hi)}; }
static inline lanes lanes_sub1(lanes a, float c) {
    const __m256 v = _mm256_set1_ps(c);
    return (lanes){_mm256_sub_ps(a.lo, v), _mm256_sub_ps(a.hi, v)};
}
static inline void lanes_store(float* out, lanes a) { _mm256_storeu_ps(out, a.lo); _mm256_storeu_ps(out + 8, a.hi); }
static inline lanes lanes_set1(float c) { return (lanes){_mm256_set1_ps(c), _mm256_set1_ps(c)}; }
static inline __m256 lanes_halves(lanes p) { return _mm256_add_ps(p.lo, p.hi); }
static inline float lanes_tree(lanes p) {
    const __m256 b = lanes_halves(p);
    const __m128 c = _mm_add_ps(_mm256_castps256_ps128(b), _mm256_extractf128_ps(b, 1));
    const __m128 d = _mm_add_ps(c, _mm_movehl_ps(c, c));
    return _mm_cvtss_f32(_mm_add_ss(d, _mm_shuffle_ps(d, d, 1)));
}
#else
typedef struct { float v[LANES]; } lanes;
static inline lanes lanes_zero(void) { lanes r = {{0}}; return r; }
static inline lanes lanes_load(const float* x) { lanes r; for (int j = 0; j < LANES; ++j) r.v[j] = x[j]; return r; }
static inline lanes lanes_load_i8(const int8_t* x) {
    lanes r;
    for (int j = 0; j < LANES; ++j) r.v[j] = (float)x[j];
    return r;
}
static inline lanes lanes_load_bf16(const uint16_t* x) {
    lanes r;
    for (int j = 0; j < LANES; ++j) r.v[j] = bf16_to_float(x[j]);
    return r;
}
static inline lanes lanes_add(lanes a, lanes b) { for (int j = 0; j < LANES; ++j) a.v[j] += b.v[j]; return a; }
static inline lanes lanes_mul(lanes a, lanes b) { for (int j = 0; j < LANES; ++j) a.v[j] *= b.v[j]; return a; }
static inline lanes lanes_sub1(lanes a, float c) { for (int j = 0; j < LANES; ++j) a.v[j] -= c; return a; }
static inline lanes lanes_set1(float c) { lanes r; for (int j = 0; j < LANES; ++j) r.v[j] = c; return r; }
static inline void lanes_store(float* out, lanes a) { for (int j = 0; j < LANES; ++j) out[j] = a.v[j]; }
static inline float lanes_tree(lanes p) { return tree_sum(p.v); }
#endif

#ifdef __AVX2__
/* out[j] = lanes_tree(p[j]) for 8 partial sums: the same additions in the same grouping, the 8
   trees' levels side by side in 8-float registers (transposed) instead of one tree at a time */
static inline void lanes_trees8(const lanes* p, float* out) {
    __m256 b[8], c[4], d[2];
    for (int j = 0; j < 8; ++j) b[j] = lanes_halves(p[j]);
    for (int j = 0; j < 4; ++j)  /* b[i] + b[i + 4] of positions j (low half) and j + 4 (high half) */
        c[j] = _mm256_add_ps(_mm256_permute2f128_ps(b[j], b[j + 4], 0x20), _mm256_permute2f128_ps(b[j], b[j + 4], 0x31));
    for (int j = 0; j < 2; ++j)  /* c0 + c2, c1 + c3 of positions 2j, 2j + 1 (and + 4) */
        d[j] = _mm256_add_ps(_mm256_shuffle_ps(c[2 * j], c[2 * j + 1], 0x44), _mm256_shuffle_ps(c[2 * j], c[2 * j + 1], 0xEE));
    _mm256_storeu_ps(out, _mm256_add_ps(_mm256_shuffle_ps(d[0], d[1], 0x88), _mm256_shuffle_ps(d[0], d[1], 0xDD)));
}
#endif

/* the partial sums p, with the tail t[0..n) (n < LANES) added to lanes 0..n-1, through the tree */
static inline float lanes_sum(lanes p, const float* t, int64_t n) {
    if (n == 0) return lanes_tree(p);
    float a[LANES];
    lanes_store(a, p);
    for (int64_t j = 0; j < n; ++j) a[j] += t[j];
    return tree_sum(a);
}

/* sum of x[0..n) */
static inline float sum_of(const float* x, int64_t n) {
    lanes p = lanes_zero();
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES) p = lanes_add(p, lanes_load(x + i));
    return lanes_sum(p, x + i, n - i);
}

/* sum of (x - c)^2 over x[0..n) */
static inline float sum_sq_dev(const float* x, float c, int64_t n) {
    lanes p = lanes_zero();
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        const lanes d = lanes_sub1(lanes_load(x + i), c);
        p = lanes_add(p, lanes_mul(d, d));
    }
    float t[LANES];
    for (int64_t j = 0; i + j < n; ++j) t[j] = (x[i + j] - c) * (x[i + j] - c);
    return lanes_sum(p, t, n - i);
}

/* q . k over [0, n) for int8 and bf16 stored k, widened to float as loaded */
#define DEFINE_DOT(name, T, load_lanes, widen)                                                           \
    static inline float name(const float* q, const T* k, int64_t n) {                                   \
        lanes p = lanes_zero();                                                                           \
        int64_t i = 0;                                                                                    \
        for (; i + LANES <= n; i += LANES) p = lanes_add(p, lanes_mul(lanes_load(q + i), load_lanes(k + i))); \
        float t[LANES];                                                                                   \
        for (int64_t j = 0; i + j < n; ++j) t[j] = q[i + j] * widen(k[i + j]);                            \
        return lanes_sum(p, t, n - i);                                                                    \
    }
DEFINE_DOT(dot_int8, int8_t, lanes_load_i8, (float))
DEFINE_DOT(dot_bf16, uint16_t, lanes_load_bf16, bf16_to_float)

static void store_int8(const float* x, int8_t* out, float* scale, int64_t hd) {
    float m = 0.0f;
    for (int64_t d = 0; d < hd; ++d) m = max_of(m, fabsf(x[d]));
    const float s = max_of(m, 1e-30f) / 127.0f;
    for (int64_t d = 0; d < hd; ++d) out[d] = (int8_t)nearbyintf(x[d] / s);
    *scale = s;
}

static void store_bf16(const float* x, uint16_t* out, int64_t hd) {
    for (int64_t d = 0; d < hd; ++d) out[d] = float_to_bf16(x[d]);
}

/* s[0..n) <- exp(s - max) in place; returns their sum */
static float softmax_numerators(float* s, int64_t n) {
    float m = -INFINITY;
    #pragma omp simd reduction(max:m)
    for (int64_t l = 0; l < n; ++l) m = max_of(m, s[l]);  /* exact in any order */
    #pragma omp simd
    for (int64_t l = 0; l < n; ++l) s[l] = exp_nonpositive(s[l] - m);
    return sum_of(s, n);
}

/* One row and head of attend_int8; always inlined, so a constant hd specializes every loop. The
   scores of 8 positions at a time (their trees side by side), the weighted values in registers:
   the same operations, in the same order per number, as one position at a time. */
static inline __attribute__((always_inline)) void int8_head(
        const float* q, int8_t* K, int8_t* V, float* KS, float* VS, float* s, float* y, int64_t C,
        int64_t end, int64_t pos, const int64_t hd) {
    store_int8(q + C, K + pos * hd, KS + pos, hd);
    store_int8(q + 2 * C, V + pos * hd, VS + pos, hd);
    const float inv_sqrt = 1.0f / sqrtf((float)hd);
    const int64_t nl = hd / LANES, full = nl * LANES;
    int64_t l = 0;
#ifdef __AVX2__  /* the portable build runs one position at a time: as fast there */
    for (; hd == full && l + 8 <= end; l += 8) {
        lanes p[8];
        for (int j = 0; j < 8; ++j) {
            const int8_t* kl = K + (l + j) * hd;
            if (l + j + PREFETCH_ROWS < end) __builtin_prefetch(kl + PREFETCH_ROWS * hd, 0, 0);
            p[j] = lanes_mul(lanes_load(q), lanes_load_i8(kl));  /* dot_int8's 0 + x: the same value */
            for (int64_t i = LANES; i < hd; i += LANES) p[j] = lanes_add(p[j], lanes_mul(lanes_load(q + i), lanes_load_i8(kl + i)));
        }
        lanes_trees8(p, s + l);
    }
#endif
    for (; l < end; ++l) s[l] = dot_int8(q, K + l * hd, hd);
    for (l = 0; l < end; ++l) s[l] = s[l] * inv_sqrt * KS[l];
    const float sum = softmax_numerators(s, end);
    lanes o[hd / LANES + 1];
    float tail[LANES] = {0};
    for (int64_t i = 0; i < nl; ++i) o[i] = lanes_zero();
    for (l = 0; l < end; ++l) {
        const float p = s[l] * VS[l];
        const int8_t* vl = V + l * hd;
        if (l + PREFETCH_ROWS < end) __builtin_prefetch(vl + PREFETCH_ROWS * hd, 0, 0);
        for (int64_t i = 0; i < nl; ++i) o[i] = lanes_add(o[i], lanes_mul(lanes_set1(p), lanes_load_i8(vl + i * LANES)));
        for (int64_t d = full; d < hd; ++d) tail[d - full] += p * (float)vl[d];
    }
    for (int64_t i = 0; i < nl; ++i) lanes_store(y + i * LANES, o[i]);
    for (int64_t d = 0; d < hd; ++d) y[d] = (d < full ? y[d] : tail[d - full]) / sum;
}

static inline __attribute__((always_inline)) void bf16_head(
        const float* q, uint16_t* K, uint16_t* V, float* s, float* y, int64_t C, int64_t end, int64_t pos,
        const int64_t hd) {
    store_bf16(q + C, K + pos * hd, hd);
    store_bf16(q + 2 * C, V + pos * hd, hd);
    const float inv_sqrt = 1.0f / sqrtf((float)hd);
    for (int64_t l = 0; l < end; ++l) {
        const uint16_t* kl = K + l * hd;
        s[l] = dot_bf16(q, kl, hd) * inv_sqrt;
    }
    const float sum = softmax_numerators(s, end);
    float o[hd];
    for (int64_t d = 0; d < hd; ++d) o[d] = 0.0f;
    for (int64_t l = 0; l < end; ++l) {
        const float p = s[l];
        const uint16_t* vl = V + l * hd;
        #pragma omp simd
        for (int64_t d = 0; d < hd; ++d) o[d] += p * bf16_to_float(vl[d]);
    }
    for (int64_t d = 0; d < hd; ++d) y[d] = o[d] / sum;
}

/* the head sizes of the released models (and common ones) get loops of known length, 2-3x faster */
#define BY_HEAD_SIZE(call)                                           \
    switch (hd) {                                                    \
        case 32: call(32); break;                                    \
        case 64: call(64); break;                                    \
        case 128: call(128); break;                                  \
        default: call(hd);                                           \
    }

/* Every row and head: k_scale, v_scale (B, nh, max_len) given: an int8 cache; NULL: a bf16 one. */
void taming_attend(const float* qkv, void* k_cache, void* v_cache, float* k_scale, float* v_scale, float* out,
                   float* work, int64_t B, int64_t nh, int64_t max_len, int64_t hd, int64_t pos, int threads) {
    const int64_t C = nh * hd, end = pos + 1;
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t bh = 0; bh < B * nh; ++bh) {
        const int64_t b = bh / nh, h = bh % nh;
        const float* q = qkv + b * 3 * C + h * hd;
        const int64_t at = bh * max_len * hd;
        float* y = out + b * C + h * hd;
        if (k_scale) {
#define INT8_HEAD(n) int8_head(q, (int8_t*)k_cache + at, (int8_t*)v_cache + at, k_scale + bh * max_len, \
                               v_scale + bh * max_len, work + bh * max_len, y, C, end, pos, n)
            BY_HEAD_SIZE(INT8_HEAD)
        } else {
#define BF16_HEAD(n) bf16_head(q, (uint16_t*)k_cache + at, (uint16_t*)v_cache + at, work + bh * max_len, y, C, end, \
                               pos, n)
            BY_HEAD_SIZE(BF16_HEAD)
        }
    }
}

/* One code per row of probs (rows, V), given u (rows,) uniform in [0, 1): the first code whose
   cumulative probability exceeds u * total, with the numbers of loop.py's PyTorch ops (torch.cumsum
   sums in double and rounds each partial sum to float; searchsorted(right=True) finds the first
   cdf[j] > t); where no code does (u * total rounded up to the total), the last
   code of nonzero probability (0 if none). Two passes over V numbers instead of ~8 small ops. */
void taming_draw(const float* probs, const float* u, int64_t rows, int64_t V, int64_t* out) {
    for (int64_t r = 0; r < rows; ++r) {
        const float* p = probs + r * V;
        double sum = 0.0;
        int64_t last = 0, j = 0;
        for (int64_t i = 0; i < V; ++i) {
            sum += p[i];
            if (p[i] > 0.0f) last = i;
        }
        const float t = u[r] * (float)sum;
        for (sum = 0.0; j < V; ++j) {
            sum += p[j];
            if ((float)sum > t) break;
        }
        out[r] = j < V ? j : last;
    }
}

/* ---- A whole one-code step of the GPT (int8 weights, int8 key/value cache) in one call ----------

   Per layer: x += proj(attention(qkv(ln1(x)))); x += fc2(gelu(fc1(ln2(x)))); then the logits
   head(ln_f(x)). Every Linear holds int8 weights w in [-127, 127] with one float scale per output
   row (the same numbers as the FBGEMM copies of decode/weights.py); the activations are quantized per row
   to integers a in [-127, 127] (scale max|x| / 127), and y = s_x * s_w * (sum_k a w) + b, the
   integer sum exact in int32 in every build:
   - AVX512-VNNI: vpdpbusd multiplies unsigned by signed bytes, so the activations are stored as
     a + 128 (zero point 128) and 128 * sum_k w is subtracted (colsum);
   - AVX2: vpmaddubsw (unsigned x signed bytes -> pairs summed into 16 bits, saturating) then
     vpmaddwd against ones (pairs of those -> 32 bits). With a + 128 in [1, 255] a pair could reach
     2 * 255 * 127 = 64770 and saturate at 32767, so the activations stay signed and the signs move
     onto them (llama.cpp's idiom): |w| * (a * sign(w)), both factors within 127, a pair at most
     2 * 127 * 127 = 32258 < 32767: never saturates, so the sums equal VNNI's exactly;
   - portable: the same integer sums in C (int32), vectorized by the compiler where it can.
   One call instead of ~70 PyTorch ops per layer: at batch 4 the step is bound by reading the
   weights and the cache, not by arithmetic, and every op of the PyTorch path costs microseconds of
   dispatch. taming_step_variant() names the build. */

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
#define STEP_VARIANT 2   /* AVX512-VNNI */
#define ZERO_POINT 128
#elif defined(__AVX2__)
#define STEP_VARIANT 1   /* AVX2 */
#define ZERO_POINT 0
#else
#define STEP_VARIANT 0   /* portable C */
#define ZERO_POINT 0
#endif

typedef struct {
    const int8_t* w;         /* (np / 16, kp / 4, 16, 4): 16 output rows x 4 inputs per 64 bytes */
    const float* scale;      /* (np,) */
    const int32_t* colsum;   /* (np,) sum over k of w[n][k] */
    const float* bias;       /* (np,) */
    int64_t n, k, kp;        /* outputs, inputs, inputs padded to a multiple of 4 (np: n padded to 16,
                                the padding rows zero) */
} PackedLinear;

typedef struct {
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
    PackedLinear qkv, proj, fc1, fc2;
    int8_t *k_cache, *v_cache;
    float *k_scale, *v_scale;
} StepLayer;

typedef struct {
    int64_t n_layer, n_head, n_embd, vocab, max_len;
    float eps;
    const float* tok_emb;    /* (vocab, C) */
    const float* pos_emb;    /* (block_size, C) */
    const StepLayer* layers;
    const float *lnf_w, *lnf_b;
    PackedLinear head;
} StepModel;

typedef struct {             /* scratch; rows padded to a multiple of 4 (mp) */
    float* x;                /* (m, C) the residual stream */
    float* h;                /* (m, 4C) GELU(fc1) */
    float* qkv;              /* (m, 3C) */
    float* att;              /* (m, C) */
    float* work;             /* (m, n_head, max_len) attention scores */
    float* ln;               /* per thread (threads, m, C) layer norm output */
    uint8_t* xq;             /* per thread (threads, mp, 4C) 8-bit activations */
    float* sx;               /* per thread (threads, mp) their scales */
} StepScratch;

/* 2: AVX512-VNNI, 1: AVX2, 0: portable C (every build has the step; they compute the same numbers) */
int taming_step_variant(void) { return STEP_VARIANT; }

/* erf(x), Abramowitz & Stegun 7.1.26 (absolute error < 1.5e-7), vectorizable */
static inline float erf_approx(float x) {
    const float a = fabsf(x);
    const float t = 1.0f / (1.0f + 0.3275911f * a);
    const float poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
    const float e = 1.0f - poly * exp_nonpositive(-a * a);
    return x < 0.0f ? -e : e;
}

static void layer_norm_rows(const float* x, int64_t m, int64_t c, const float* w, const float* b, float eps,
                            float* out) {
    for (int64_t r = 0; r < m; ++r) {
        const float* xr = x + r * c;
        const float mean = sum_of(xr, c) / (float)c;
        const float inv = 1.0f / sqrtf(sum_sq_dev(xr, mean, c) / (float)c + eps);
        #pragma omp simd
        for (int64_t i = 0; i < c; ++i) out[r * c + i] = (xr[i] - mean) * inv * w[i] + b[i];
    }
}

/* rows [0, m) of x (row stride k) -> integers in [-127, 127] plus ZERO_POINT as bytes (row stride
   kp) and one scale per row; rows [m, mp) and columns [k, kp) hold the zero point (they contribute
   nothing) */
static void quantize_rows(const float* x, int64_t m, int64_t mp, int64_t k, int64_t kp, uint8_t* xq, float* sx) {
    for (int64_t r = 0; r < mp; ++r) {
        uint8_t* q = xq + r * kp;
        if (r >= m) {
            for (int64_t i = 0; i < kp; ++i) q[i] = ZERO_POINT;
            sx[r] = 0.0f;
            continue;
        }
        const float* xr = x + r * k;
        float mx = 0.0f;
        #pragma omp simd reduction(max:mx)
        for (int64_t i = 0; i < k; ++i) mx = max_of(mx, fabsf(xr[i]));  /* exact in any order */
        const float s = max_of(mx, 1e-30f) / 127.0f, inv = 1.0f / s;
        #pragma omp simd
        for (int64_t i = 0; i < k; ++i) q[i] = (uint8_t)(int32_t)(nearbyintf(xr[i] * inv) + (float)ZERO_POINT);
        for (int64_t i = k; i < kp; ++i) q[i] = ZERO_POINT;
        sx[r] = s;
    }
}

enum { STORE = 0, ADD = 1, GELU = 2 };

/* out[0..count) = or += (GELU of) v: the end of every build's Linear for one row and 16 outputs */
static inline void finish_row(float* out, const float* v, int64_t count, int mode) {
    for (int64_t j = 0; j < count; ++j) out[j] = mode == ADD ? out[j] + v[j] : v[j];
    if (mode == GELU) {
        #pragma omp simd
        for (int64_t j = 0; j < count; ++j) out[j] = 0.5f * out[j] * (1.0f + erf_approx(out[j] * 0.70710678118654752f));
    }
}

/* y[r][n] (row stride ldy) = or += (GELU of) the Linear of rows [0, m); called by every thread of a
   parallel region, which share the output blocks of 16. Each build computes, per row and output,
   (float)(integer sum) * (s_w * s_x) + b, then adds or stores: the same operations in the same order. */
static void linear_int8(const PackedLinear* L, const uint8_t* xq, const float* sx, int64_t m, int64_t mp,
                        float* y, int64_t ldy, int mode) {
    const int64_t blocks = (L->n + 15) / 16, groups = L->kp / 4;
    #pragma omp for schedule(static)
    for (int64_t nb = 0; nb < blocks; ++nb) {
        const int8_t* wb = L->w + nb * groups * 64;
        const int64_t n0 = nb * 16;
        const int64_t count = L->n - n0 < 16 ? L->n - n0 : 16;  /* outputs of this block to write */
#if STEP_VARIANT == 2
        const __m512 ws = _mm512_loadu_ps(L->scale + n0);
        const __m512i zero_fix = _mm512_mullo_epi32(_mm512_loadu_si512(L->colsum + n0), _mm512_set1_epi32(128));
        const __m512 bias = _mm512_loadu_ps(L->bias + n0);
        const __mmask16 keep = (__mmask16)((1u << count) - 1u);
        for (int64_t r0 = 0; r0 < mp; r0 += 4) {
            const uint8_t* x0 = xq + r0 * L->kp;
            __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
            for (int64_t g = 0; g < groups; ++g) {
                const __m512i w = _mm512_loadu_si512(wb + g * 64);
                __builtin_prefetch(wb + g * 64 + WEIGHTS_AHEAD, 0, 0);
                int32_t v0, v1, v2, v3;
                __builtin_memcpy(&v0, x0 + 4 * g, 4);
                __builtin_memcpy(&v1, x0 + L->kp + 4 * g, 4);
                __builtin_memcpy(&v2, x0 + 2 * L->kp + 4 * g, 4);
                __builtin_memcpy(&v3, x0 + 3 * L->kp + 4 * g, 4);
                a0 = _mm512_dpbusd_epi32(a0, _mm512_set1_epi32(v0), w);
                a1 = _mm512_dpbusd_epi32(a1, _mm512_set1_epi32(v1), w);
                a2 = _mm512_dpbusd_epi32(a2, _mm512_set1_epi32(v2), w);
                a3 = _mm512_dpbusd_epi32(a3, _mm512_set1_epi32(v3), w);
            }
            __m512i acc[4] = {a0, a1, a2, a3};
            for (int64_t i = 0; i < 4 && r0 + i < m; ++i) {
                const __m512 v = _mm512_add_ps(_mm512_mul_ps(
                    _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[i], zero_fix)),
                    _mm512_mul_ps(ws, _mm512_set1_ps(sx[r0 + i]))), bias);
                float* out = y + (r0 + i) * ldy + n0;
                if (mode == ADD) {
                    _mm512_mask_storeu_ps(out, keep, _mm512_add_ps(_mm512_maskz_loadu_ps(keep, out), v));
                } else {
                    _mm512_mask_storeu_ps(out, keep, v);
                    if (mode == GELU) finish_row(out, out, count, GELU);
                }
            }
        }
#elif STEP_VARIANT == 1
        const __m256i ones = _mm256_set1_epi16(1);
        for (int64_t r0 = 0; r0 < mp; r0 += 4) {
            const uint8_t* x0 = xq + r0 * L->kp;
            __m256i acc[2][4];  /* outputs 0-7 and 8-15 of the block, for 4 rows */
            for (int half = 0; half < 2; ++half)
                for (int i = 0; i < 4; ++i) acc[half][i] = _mm256_setzero_si256();
            for (int64_t g = 0; g < groups; ++g) {
                int32_t v[4];
                for (int i = 0; i < 4; ++i) __builtin_memcpy(v + i, x0 + i * L->kp + 4 * g, 4);
                __builtin_prefetch(wb + g * 64 + WEIGHTS_AHEAD, 0, 0);
                for (int half = 0; half < 2; ++half) {
                    const __m256i w = _mm256_loadu_si256((const __m256i*)(wb + g * 64 + 32 * half));
                    const __m256i aw = _mm256_sign_epi8(w, w);  /* |w| */
                    /* 4 signed activations in every lane, given w's signs: |w| * (a * sign(w)) */
                    for (int i = 0; i < 4; ++i)
                        acc[half][i] = _mm256_add_epi32(acc[half][i], _mm256_madd_epi16(
                            _mm256_maddubs_epi16(aw, _mm256_sign_epi8(_mm256_set1_epi32(v[i]), w)), ones));
                }
            }
            for (int64_t i = 0; i < 4 && r0 + i < m; ++i) {
                const __m256 s = _mm256_set1_ps(sx[r0 + i]);
                float v[16];
                for (int half = 0; half < 2; ++half)
                    _mm256_storeu_ps(v + 8 * half, _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(acc[half][i]),
                        _mm256_mul_ps(_mm256_loadu_ps(L->scale + n0 + 8 * half), s)), _mm256_loadu_ps(L->bias + n0 + 8 * half)));
                finish_row(y + (r0 + i) * ldy + n0, v, count, mode);
            }
        }
#else
        for (int64_t r0 = 0; r0 < mp; r0 += 4) {
            const int8_t* x0 = (const int8_t*)xq + r0 * L->kp;
            int32_t acc[4][16] = {{0}};
            for (int64_t g = 0; g < groups; ++g) {
                const int8_t* w = wb + g * 64;
                for (int i = 0; i < 4; ++i) {
                    const int8_t* x = x0 + i * L->kp + 4 * g;
                    for (int j = 0; j < 16; ++j)
                        acc[i][j] += x[0] * w[4 * j] + x[1] * w[4 * j + 1] + x[2] * w[4 * j + 2] + x[3] * w[4 * j + 3];
                }
            }
            for (int64_t i = 0; i < 4 && r0 + i < m; ++i) {
                float v[16];
                for (int j = 0; j < 16; ++j)
                    v[j] = (float)acc[i][j] * (L->scale[n0 + j] * sx[r0 + i]) + L->bias[n0 + j];
                finish_row(y + (r0 + i) * ldy + n0, v, count, mode);
            }
        }
#endif
    }
}

/* every row and head of the layer's attention (int8_head), shared by the threads of a region */
static void attention_rows(const StepLayer* L, const StepModel* M, const float* qkv, float* att, float* work,
                           int64_t m, int64_t pos) {
    const int64_t nh = M->n_head, C = M->n_embd, hd = C / nh, end = pos + 1, max_len = M->max_len;
    #pragma omp for schedule(static)
    for (int64_t bh = 0; bh < m * nh; ++bh) {
        const int64_t b = bh / nh, h = bh % nh;
        const float* q = qkv + b * 3 * C + h * hd;
#define STEP_HEAD(n) int8_head(q, L->k_cache + bh * max_len * hd, L->v_cache + bh * max_len * hd, \
                               L->k_scale + bh * max_len, L->v_scale + bh * max_len, work + bh * max_len, \
                               att + b * C + h * hd, C, end, pos, n)
        BY_HEAD_SIZE(STEP_HEAD)
    }
}

/* One Linear alone, as the step runs it (for tests): x (m, L->k) float -> y (m, L->n); xq (mp, L->kp)
   bytes and sx (mp,) floats of scratch, mp = m rounded up to a multiple of 4. One thread. */
void taming_int8_linear(const PackedLinear* L, const float* x, int64_t m, float* y, uint8_t* xq, float* sx) {
    const int64_t mp = (m + 3) / 4 * 4;
    quantize_rows(x, m, mp, L->k, L->kp, xq, sx);
    linear_int8(L, xq, sx, m, mp, y, L->n, STORE);  /* outside a parallel region: its loop runs here */
}

/* tokens (m,) at position pos -> logits (m, vocab); writes pos of every layer's cache. Returns 0;
   -2 for a token outside [0, vocab) (nothing written). */
int taming_int8_step(const StepModel* M, const StepScratch* S, const int64_t* tokens, float* logits, int64_t m,
                     int64_t pos, int threads) {
    const int64_t C = M->n_embd, mp = (m + 3) / 4 * 4;
    for (int64_t r = 0; r < m; ++r)
        if (tokens[r] < 0 || tokens[r] >= M->vocab) return -2;
    for (int64_t r = 0; r < m; ++r)
        for (int64_t i = 0; i < C; ++i)
            S->x[r * C + i] = M->tok_emb[tokens[r] * C + i] + M->pos_emb[pos * C + i];
    /* The small row-wise work (layer norms, quantizing activations) is done by every thread for
       itself, into its own buffers: no thread waits while another does it alone, and the only
       synchronization is the barrier ending each shared loop (the Linears, the attention). */
    #pragma omp parallel num_threads(threads)
    {
#ifdef _OPENMP
        const int64_t t = omp_get_thread_num();
#else
        const int64_t t = 0;
#endif
        float* ln = S->ln + t * m * C;
        uint8_t* xq = S->xq + t * mp * 4 * C;
        float* sx = S->sx + t * mp;
        for (int64_t l = 0; l < M->n_layer; ++l) {
            const StepLayer* L = M->layers + l;
            layer_norm_rows(S->x, m, C, L->ln1_w, L->ln1_b, M->eps, ln);
            quantize_rows(ln, m, mp, C, L->qkv.kp, xq, sx);
            linear_int8(&L->qkv, xq, sx, m, mp, S->qkv, 3 * C, STORE);
            attention_rows(L, M, S->qkv, S->att, S->work, m, pos);
            quantize_rows(S->att, m, mp, C, L->proj.kp, xq, sx);
            linear_int8(&L->proj, xq, sx, m, mp, S->x, C, ADD);
            layer_norm_rows(S->x, m, C, L->ln2_w, L->ln2_b, M->eps, ln);
            quantize_rows(ln, m, mp, C, L->fc1.kp, xq, sx);
            linear_int8(&L->fc1, xq, sx, m, mp, S->h, L->fc1.n, GELU);
            quantize_rows(S->h, m, mp, L->fc1.n, L->fc2.kp, xq, sx);
            linear_int8(&L->fc2, xq, sx, m, mp, S->x, C, ADD);
        }
        layer_norm_rows(S->x, m, C, M->lnf_w, M->lnf_b, M->eps, ln);
        quantize_rows(ln, m, mp, C, M->head.kp, xq, sx);
        linear_int8(&M->head, xq, sx, m, mp, logits, M->vocab, STORE);
    }
    return 0;
}

/* ---- The layout of the structures above, checked against the ctypes mirror -----------------------
   Every structure and field the Python side mirrors (taming/transformer/decode/native.py), once:
   taming_layout_names() names them in this order, taming_layout(out, n) writes each structure's
   size and each field's offset in the same order into out[0..n) and returns how many numbers that
   is. The mirror is compared with them by name when the library loads: a field added, dropped or
   moved on one side only is an error there, never a kernel reading the wrong pointer. */
#include <stddef.h>

#define TAMING_LAYOUT(S, F) \
    S(PackedLinear) F(PackedLinear, w) F(PackedLinear, scale) F(PackedLinear, colsum) F(PackedLinear, bias) \
    F(PackedLinear, n) F(PackedLinear, k) F(PackedLinear, kp) \
    S(StepLayer) F(StepLayer, ln1_w) F(StepLayer, ln1_b) F(StepLayer, ln2_w) F(StepLayer, ln2_b) F(StepLayer, qkv) \
    F(StepLayer, proj) F(StepLayer, fc1) F(StepLayer, fc2) F(StepLayer, k_cache) F(StepLayer, v_cache) \
    F(StepLayer, k_scale) F(StepLayer, v_scale) \
    S(StepModel) F(StepModel, n_layer) F(StepModel, n_head) F(StepModel, n_embd) F(StepModel, vocab) \
    F(StepModel, max_len) F(StepModel, eps) F(StepModel, tok_emb) F(StepModel, pos_emb) F(StepModel, layers) \
    F(StepModel, lnf_w) F(StepModel, lnf_b) F(StepModel, head) \
    S(StepScratch) F(StepScratch, x) F(StepScratch, h) F(StepScratch, qkv) F(StepScratch, att) \
    F(StepScratch, work) F(StepScratch, ln) F(StepScratch, xq) F(StepScratch, sx)
#define LAYOUT_SIZE(T) (int64_t)sizeof(T),
#define LAYOUT_OFFSET(T, f) (int64_t)offsetof(T, f),
#define LAYOUT_STRUCT_NAME(T) #T " "
#define LAYOUT_FIELD_NAME(T, f) #f " "

const char* taming_layout_names(void) { return TAMING_LAYOUT(LAYOUT_STRUCT_NAME, LAYOUT_FIELD_NAME); }

int64_t taming_layout(int64_t* out, int64_t n) {
    const int64_t layout[] = {TAMING_LAYOUT(LAYOUT_SIZE, LAYOUT_OFFSET)};
    const int64_t count = (int64_t)(sizeof(layout) / sizeof(layout[0]));
    for (int64_t i = 0; i < count && i < n; ++i) out[i] = layout[i];
    return count;
}
