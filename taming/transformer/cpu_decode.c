/* Sampling's one-code steps on the CPU, built by taming.native for the CPU at hand:
   - taming_attend: the attention over a reduced key/value cache (cpu_attention.py);
   - taming_int8_step: the whole step over int8 weights and an int8 cache (cpu_step.py; below).

   The attention, for every row b and head h, in one call:
   1. writes the step's key and value (from the fused q|k|v row) at position `pos` of the cache,
      int8 with one float scale per vector (largest magnitude / 127, round half to even: the numbers
      KVCache.write stores) or bf16 (round to nearest even, as torch converts);
   2. attends the query over positions [0, pos]: softmax(q . k / sqrt(hd)) v, every product and sum
      in float, the stored numbers widened as they are loaded: one pass over the keys, one over the
      values, nothing else of cache size.

   Layouts (all contiguous): qkv (B, 3C) = [query | key | value], C = nh * hd; caches (B, nh, max_len,
   hd); int8 scales (B, nh, max_len); out (B, C); work (B, nh, max_len) floats of scratch.
   Built with reassociation allowed (-fassociative-math): dot products are summed as vector trees. */
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

/* a > b ? a : b: one instruction (fmaxf is a libm call when NaNs must be honoured) */
static inline float max_of(float a, float b) { return a > b ? a : b; }

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
    for (int64_t l = 0; l < n; ++l) m = max_of(m, s[l]);
    float sum = 0.0f;
    #pragma omp simd reduction(+:sum)
    for (int64_t l = 0; l < n; ++l) {
        const float e = exp_nonpositive(s[l] - m);
        s[l] = e;
        sum += e;
    }
    return sum;
}

/* One row and head of attend_int8; always inlined, so a constant hd specializes every loop. */
static inline __attribute__((always_inline)) void int8_head(
        const float* q, int8_t* K, int8_t* V, float* KS, float* VS, float* s, float* y, int64_t C,
        int64_t end, int64_t pos, const int64_t hd) {
    store_int8(q + C, K + pos * hd, KS + pos, hd);
    store_int8(q + 2 * C, V + pos * hd, VS + pos, hd);
    const float inv_sqrt = 1.0f / sqrtf((float)hd);
    for (int64_t l = 0; l < end; ++l) {
        const int8_t* kl = K + l * hd;
        if (l + PREFETCH_ROWS < end) __builtin_prefetch(kl + PREFETCH_ROWS * hd, 0, 0);
        float acc = 0.0f;
        #pragma omp simd reduction(+:acc)
        for (int64_t d = 0; d < hd; ++d) acc += q[d] * (float)kl[d];
        s[l] = acc * inv_sqrt * KS[l];
    }
    const float sum = softmax_numerators(s, end);
    float o[hd];
    for (int64_t d = 0; d < hd; ++d) o[d] = 0.0f;
    for (int64_t l = 0; l < end; ++l) {
        const float p = s[l] * VS[l];
        const int8_t* vl = V + l * hd;
        if (l + PREFETCH_ROWS < end) __builtin_prefetch(vl + PREFETCH_ROWS * hd, 0, 0);
        #pragma omp simd
        for (int64_t d = 0; d < hd; ++d) o[d] += p * (float)vl[d];
    }
    for (int64_t d = 0; d < hd; ++d) y[d] = o[d] / sum;
}

static inline __attribute__((always_inline)) void bf16_head(
        const float* q, uint16_t* K, uint16_t* V, float* s, float* y, int64_t C, int64_t end, int64_t pos,
        const int64_t hd) {
    store_bf16(q + C, K + pos * hd, hd);
    store_bf16(q + 2 * C, V + pos * hd, hd);
    const float inv_sqrt = 1.0f / sqrtf((float)hd);
    for (int64_t l = 0; l < end; ++l) {
        const uint16_t* kl = K + l * hd;
        float acc = 0.0f;
        #pragma omp simd reduction(+:acc)
        for (int64_t d = 0; d < hd; ++d) acc += q[d] * bf16_to_float(kl[d]);
        s[l] = acc * inv_sqrt;
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

/* ---- A whole one-code step of the GPT (int8 weights, int8 key/value cache) in one call ----------

   Per layer: x += proj(attention(qkv(ln1(x)))); x += fc2(gelu(fc1(ln2(x)))); then the logits
   head(ln_f(x)). Every Linear holds int8 weights with one float scale per output row (the same
   numbers as the FBGEMM copies of decoding.py) and runs on VNNI dot products: the activations are
   quantized per row to 8 bits (uint8 with zero point 128, scale max|x| / 127), and
   y = s_x * s_w * (sum_k x_u8 w - 128 * sum_k w) + b. One call instead of ~70 PyTorch ops per
   layer: at batch 4 the step is bound by reading the weights and the cache, not by arithmetic,
   and every op of the PyTorch path costs microseconds of dispatch. Built only where the compiler
   targets AVX512-VNNI (taming_step_available() says so); elsewhere the PyTorch path runs. */

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

int taming_step_available(void) {
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
    return 1;
#else
    return 0;
#endif
}

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
        float mean = 0.0f, var = 0.0f;
        #pragma omp simd reduction(+:mean)
        for (int64_t i = 0; i < c; ++i) mean += xr[i];
        mean /= (float)c;
        #pragma omp simd reduction(+:var)
        for (int64_t i = 0; i < c; ++i) var += (xr[i] - mean) * (xr[i] - mean);
        const float inv = 1.0f / sqrtf(var / (float)c + eps);
        #pragma omp simd
        for (int64_t i = 0; i < c; ++i) out[r * c + i] = (xr[i] - mean) * inv * w[i] + b[i];
    }
}

/* rows [0, m) of x (row stride k) -> uint8 (row stride kp, zero point 128) and one scale per row;
   rows [m, mp) and columns [k, kp) hold the zero point (they contribute nothing) */
static void quantize_rows(const float* x, int64_t m, int64_t mp, int64_t k, int64_t kp, uint8_t* xq, float* sx) {
    for (int64_t r = 0; r < mp; ++r) {
        uint8_t* q = xq + r * kp;
        if (r >= m) {
            for (int64_t i = 0; i < kp; ++i) q[i] = 128;
            sx[r] = 0.0f;
            continue;
        }
        const float* xr = x + r * k;
        float mx = 0.0f;
        for (int64_t i = 0; i < k; ++i) mx = max_of(mx, fabsf(xr[i]));
        const float s = max_of(mx, 1e-30f) / 127.0f, inv = 1.0f / s;
        #pragma omp simd
        for (int64_t i = 0; i < k; ++i) q[i] = (uint8_t)(int32_t)(nearbyintf(xr[i] * inv) + 128.0f);
        for (int64_t i = k; i < kp; ++i) q[i] = 128;
        sx[r] = s;
    }
}

enum { STORE = 0, ADD = 1, GELU = 2 };

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
#include <immintrin.h>

/* y[r][n] (row stride ldy) = or += (GELU of) the Linear of rows [0, m); called by every thread of a
   parallel region, which share the output blocks of 16 */
static void linear_int8(const PackedLinear* L, const uint8_t* xq, const float* sx, int64_t m, int64_t mp,
                        float* y, int64_t ldy, int mode) {
    const int64_t blocks = (L->n + 15) / 16, groups = L->kp / 4;
    #pragma omp for schedule(static)
    for (int64_t nb = 0; nb < blocks; ++nb) {
        const int8_t* wb = L->w + nb * groups * 64;
        const int64_t n0 = nb * 16;
        const __m512 ws = _mm512_loadu_ps(L->scale + n0);
        const __m512i zero_fix = _mm512_mullo_epi32(_mm512_loadu_si512(L->colsum + n0), _mm512_set1_epi32(128));
        const __m512 bias = _mm512_loadu_ps(L->bias + n0);
        const int64_t count = L->n - n0 < 16 ? L->n - n0 : 16;  /* outputs of this block to write */
        const __mmask16 keep = (__mmask16)((1u << count) - 1u);
        for (int64_t r0 = 0; r0 < mp; r0 += 4) {
            const uint8_t* x0 = xq + r0 * L->kp;
            __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
            for (int64_t g = 0; g < groups; ++g) {
                const __m512i w = _mm512_loadu_si512(wb + g * 64);
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
                const __m512 v = _mm512_fmadd_ps(
                    _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[i], zero_fix)),
                    _mm512_mul_ps(ws, _mm512_set1_ps(sx[r0 + i])), bias);
                float* out = y + (r0 + i) * ldy + n0;
                if (mode == ADD) {
                    _mm512_mask_storeu_ps(out, keep, _mm512_add_ps(_mm512_maskz_loadu_ps(keep, out), v));
                } else {
                    _mm512_mask_storeu_ps(out, keep, v);
                    if (mode == GELU) {
                        #pragma omp simd
                        for (int64_t j = 0; j < count; ++j)
                            out[j] = 0.5f * out[j] * (1.0f + erf_approx(out[j] * 0.70710678118654752f));
                    }
                }
            }
        }
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
#endif

/* tokens (m,) at position pos -> logits (m, vocab); writes pos of every layer's cache. Returns 0;
   -2 for a token outside [0, vocab) (nothing written); -1 where this build has no VNNI step
   (taming_step_available() is 0). */
int taming_int8_step(const StepModel* M, const StepScratch* S, const int64_t* tokens, float* logits, int64_t m,
                     int64_t pos, int threads) {
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
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
#else
    (void)M; (void)S; (void)tokens; (void)logits; (void)m; (void)pos; (void)threads;
    return -1;
#endif
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
