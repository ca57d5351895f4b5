/*
 * hbnn_kernel.c -- the bit-packed XOR/popcount GEMM of Hadamard binary (HBNN) layers.
 *
 * Math. For y = X W^T with X (M x K) and W (N x K), both binarised along K:
 *     W~[n,k] = alpha[n, seg(k)] * sign(W[n,k]),     X~[m,k] = beta[m] * sign(X[m,k]),
 * a segment being `s` consecutive entries of a row (s in 8, 16, 32, 64; s = 0 means one
 * segment spanning the whole row; the last segment is shorter when s does not divide K).
 * The +-1 dot product over a segment is len(seg) - 2 * popcount(xbits XOR wbits), so
 *     y[m,n] = beta[m] * sum_seg alpha[n,seg] * (len(seg) - 2 * pc[m,n,seg])
 *            = beta[m] * (A[n] - 2 * sum_seg alpha[n,seg] * pc[m,n,seg]),
 * with A[n] = sum_seg alpha[n,seg] * len(seg).  For s = 0 the count is a single integer and
 *     y[m,n] = beta[m] * (alpha[n] * (K - 2 * pc[m,n])).
 * The last steps are evaluated in double and rounded to float once. The weighted segment
 * sums are accumulated in float lanes on the SIMD paths (in double for s = 64 on AVX2, and on
 * the portable path), so results agree across paths to float rounding; the integer counts
 * are the same everywhere.
 *
 * Bit layout (shared with dualnet/hbnn/kernel.py and the PackedSigns message). A packed row
 * is ceil(K/64) uint64 words; element k is bit (k % 64) of word (k / 64), least significant
 * bit first; the bit is 1 for x >= 0 (so sign(0) = +1, and -0.0 packs as +1) and 0 for
 * x < 0 or NaN.  Bits past K in the last word are 0; since both operands are padded alike,
 * their XOR is 0 and padding never counts (the Python side checks it before calling).
 *
 * Paths. HBNN_PATH_AVX512 (AVX-512 F/BW/DQ + VPOPCNTDQ + BITALG: VPOPCNTQ/D/W/B on 512-bit
 * vectors), HBNN_PATH_AVX2 (nibble-table popcount with VPSHUFB) and HBNN_PATH_PORTABLE
 * (__builtin_popcountll).  The library is compiled without -march flags: the SIMD paths carry
 * per-function target attributes and hbnn_supported_paths() asks the CPU (cpuid via
 * __builtin_cpu_supports, which also checks that the OS saves the vector state), so the same
 * binary runs anywhere.  Every entry point takes the path explicitly; asking for a path the
 * CPU lacks returns HBNN_ERR_PATH instead of executing an illegal instruction.
 *
 * Threads. The output columns (or the rows of X, when there are more of them) are split in
 * contiguous ranges over exactly `threads` pthreads (fewer only when there are fewer blocks
 * of 4 columns or rows than threads); kernel.py picks the count, fewer for small products.
 * The calling thread takes one range itself; if a thread cannot be started, its range runs
 * inline.
 *
 * Status codes: 0 ok, negative for arguments the kernel cannot take (see HBNN_ERR_*);
 * kernel.py turns them into dualnet.errors.KernelError messages.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#define HBNN_ABI_VERSION 1

#define HBNN_OK 0
#define HBNN_ERR_NULL (-1)      /* a required pointer is NULL */
#define HBNN_ERR_SHAPE (-2)     /* M, N, R or K < 1 */
#define HBNN_ERR_SEGMENT (-3)   /* segment size not in {0, 8, 16, 32, 64} */
#define HBNN_ERR_THREADS (-4)   /* threads < 1 */
#define HBNN_ERR_PATH (-5)      /* path unknown, not compiled in, or not supported by this CPU */
#define HBNN_ERR_NOMEM (-6)     /* scratch allocation failed */

#define HBNN_PATH_PORTABLE 0
#define HBNN_PATH_AVX2 1
#define HBNN_PATH_AVX512 2

/* SIMD paths need x86 and a compiler that knows the AVX-512 VPOPCNTDQ/BITALG targets;
 * -DHBNN_PORTABLE_ONLY builds the portable path alone. */
#if !defined(HBNN_PORTABLE_ONLY) && (defined(__x86_64__) || defined(__i386__)) && \
    ((defined(__clang__) && __clang_major__ >= 7) || (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 8))
#define HBNN_X86 1
#include <immintrin.h>
#define AVX2_TARGET __attribute__((target("avx2,fma")))
#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vpopcntdq,avx512bitalg,avx2,fma")))
#else
#define HBNN_X86 0
#endif

#define HBNN_INLINE static inline __attribute__((always_inline))

/* Rows of X kept hot in L2 while all of a thread's W rows stream past (bytes). */
#define X_BLOCK_BYTES (192 * 1024)

/* ------------------------------------------------------------------------------------------ */
/* Small helpers                                                                              */

static int64_t n_words(int64_t K) { return (K + 63) / 64; }

static int64_t n_segments(int64_t K, int s) { return s == 0 ? 1 : (K + s - 1) / s; }

static int64_t segment_length(int64_t K, int s, int64_t seg)
{
    if (s == 0) return K;
    int64_t left = K - seg * (int64_t)s;
    return left < s ? left : s;
}

static int segment_size_ok(int s) { return s == 0 || s == 8 || s == 16 || s == 32 || s == 64; }

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* ------------------------------------------------------------------------------------------ */
/* Threads: run fn over [0, total) split in `threads` contiguous ranges aligned to `grain`.   */

typedef void (*range_fn)(const void *ctx, int64_t begin, int64_t end);

typedef struct {
    range_fn fn;
    const void *ctx;
    int64_t begin, end;
} range_task;

static void *run_range_task(void *arg)
{
    range_task *t = (range_task *)arg;
    t->fn(t->ctx, t->begin, t->end);
    return NULL;
}

#define MAX_THREADS 256

static void run_parallel(range_fn fn, const void *ctx, int64_t total, int64_t grain, int threads)
{
    int64_t blocks = (total + grain - 1) / grain;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (threads > blocks) threads = (int)blocks;
    if (threads <= 1) {
        fn(ctx, 0, total);
        return;
    }
    range_task tasks[MAX_THREADS];
    pthread_t ids[MAX_THREADS];
    int started[MAX_THREADS];
    for (int t = 0; t < threads; t++) {
        tasks[t].fn = fn;
        tasks[t].ctx = ctx;
        tasks[t].begin = min64(total, blocks * t / threads * grain);
        tasks[t].end = min64(total, blocks * (t + 1) / threads * grain);
    }
    for (int t = 1; t < threads; t++)
        started[t] = pthread_create(&ids[t], NULL, run_range_task, &tasks[t]) == 0;
    run_range_task(&tasks[0]);
    for (int t = 1; t < threads; t++) {
        if (started[t])
            pthread_join(ids[t], NULL);
        else
            run_range_task(&tasks[t]); /* could not start a thread: do its share here */
    }
}

/* ------------------------------------------------------------------------------------------ */
/* CPU features                                                                               */

static int cpu_has_avx2(void)
{
#if HBNN_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

static int cpu_has_avx512(void)
{
#if HBNN_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vpopcntdq") &&
           __builtin_cpu_supports("avx512bitalg");
#else
    return 0;
#endif
}

/* Bit (1 << path) is set for every path compiled in and supported by this CPU. */
int hbnn_supported_paths(void)
{
    int mask = 1 << HBNN_PATH_PORTABLE;
    if (cpu_has_avx2()) mask |= 1 << HBNN_PATH_AVX2;
    if (cpu_has_avx512()) mask |= 1 << HBNN_PATH_AVX512;
    return mask;
}

int hbnn_abi_version(void) { return HBNN_ABI_VERSION; }

static int path_ok(int path)
{
    return path >= 0 && path <= HBNN_PATH_AVX512 && (hbnn_supported_paths() >> path & 1);
}

/* ------------------------------------------------------------------------------------------ */
/* Packing: sign bits of float rows into uint64 words, and optionally alpha = mean |a| per    */
/* segment (summed in double so that every path rounds to the same float).                   */

typedef struct {
    const float *a;
    int64_t K, KW;
    int s;
    uint64_t *bits;
    float *scales;
    int path;
} pack_job;

/* Segment sums of |a| for one row, four independent chains per segment. */
static void abs_segment_means(const float *a, int64_t K, int s, float *out)
{
    int64_t nseg = n_segments(K, s);
    for (int64_t seg = 0; seg < nseg; seg++) {
        int64_t begin = s == 0 ? 0 : seg * s, len = segment_length(K, s, seg);
        const float *p = a + begin;
        double c0 = 0, c1 = 0, c2 = 0, c3 = 0;
        int64_t i = 0;
        for (; i + 4 <= len; i += 4) {
            c0 += p[i] < 0 ? -(double)p[i] : (double)p[i];
            c1 += p[i + 1] < 0 ? -(double)p[i + 1] : (double)p[i + 1];
            c2 += p[i + 2] < 0 ? -(double)p[i + 2] : (double)p[i + 2];
            c3 += p[i + 3] < 0 ? -(double)p[i + 3] : (double)p[i + 3];
        }
        for (; i < len; i++) c0 += p[i] < 0 ? -(double)p[i] : (double)p[i];
        out[seg] = (float)(((c0 + c1) + (c2 + c3)) / (double)len);
    }
}

static void pack_row_portable(const float *a, int64_t K, uint64_t *bits)
{
    int64_t KW = n_words(K);
    for (int64_t w = 0; w < KW; w++) {
        uint64_t word = 0;
        int64_t n = min64(64, K - w * 64);
        const float *p = a + w * 64;
        for (int64_t i = 0; i < n; i++) word |= (uint64_t)(p[i] >= 0.0f) << i;
        bits[w] = word;
    }
}

#if HBNN_X86
AVX2_TARGET
static void pack_row_avx2(const float *a, int64_t K, uint64_t *bits)
{
    const __m256 zero = _mm256_setzero_ps();
    int64_t full = K / 64;
    for (int64_t w = 0; w < full; w++) {
        uint64_t word = 0;
        for (int q = 0; q < 8; q++) {
            __m256 v = _mm256_loadu_ps(a + w * 64 + q * 8);
            word |= (uint64_t)(unsigned)_mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_GE_OQ)) << (q * 8);
        }
        bits[w] = word;
    }
    if (K % 64) pack_row_portable(a + full * 64, K % 64, bits + full);
}

/* Lane i of the result = the sum of the 8 lanes of v[i] (a transposing tree: 21 ops for 8 sums). */
AVX512_TARGET HBNN_INLINE __m512d sum8_pd(const __m512d v[8])
{
    __m512d a[4], b[2];
    for (int i = 0; i < 4; i++) /* 128-bit block j of a[i]: the pair sums of block j of v[2i], v[2i+1] */
        a[i] = _mm512_add_pd(_mm512_unpacklo_pd(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_pd(v[2 * i], v[2 * i + 1]));
    for (int i = 0; i < 2; i++) /* blocks of b[i]: halves of a[2i], then of a[2i+1] */
        b[i] = _mm512_add_pd(_mm512_shuffle_f64x2(a[2 * i], a[2 * i + 1], 0x88), _mm512_shuffle_f64x2(a[2 * i], a[2 * i + 1], 0xdd));
    return _mm512_add_pd(_mm512_shuffle_f64x2(b[0], b[1], 0x88), _mm512_shuffle_f64x2(b[0], b[1], 0xdd));
}

/* Up to 8 segments' vectors of |a| waiting to be summed together. */
typedef struct {
    __m512d v[8];
    int count;
    int64_t first; /* segment index of v[0] */
} pending_sums;

AVX512_TARGET HBNN_INLINE void flush_sums(pending_sums *q, int64_t K, int s, float *scales)
{
    if (!q->count) return;
    for (int i = q->count; i < 8; i++) q->v[i] = _mm512_setzero_pd();
    double len[8];
    for (int i = 0; i < 8; i++) len[i] = i < q->count ? (double)segment_length(K, s, q->first + i) : 1.0;
    __m256 means = _mm512_cvtpd_ps(_mm512_div_pd(sum8_pd(q->v), _mm512_loadu_pd(len)));
    _mm512_mask_storeu_ps(scales + q->first, (__mmask16)((1u << q->count) - 1), _mm512_castps256_ps512(means));
    q->first += q->count;
    q->count = 0;
}

/* Signs and (when `scales`) the per-segment means of |a| in one pass over the row. */
AVX512_TARGET
static void pack_row_avx512(const float *a, int64_t K, int s, uint64_t *bits, float *scales)
{
    const __m512 zero = _mm512_setzero_ps();
    const __m512 abs_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    const int64_t KW = n_words(K), nseg = n_segments(K, s);
    __m512d total = _mm512_setzero_pd();
    pending_sums q;
    q.count = 0;
    q.first = 0;
    for (int64_t w = 0; w < KW; w++) {
        int64_t n = min64(64, K - w * 64);
        const float *p = a + w * 64;
        uint64_t word = 0;
        __m512 v[4];
        for (int r = 0; r < 4; r++) {
            int64_t left = n - r * 16;
            __mmask16 m = left >= 16 ? (__mmask16)0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
            v[r] = _mm512_maskz_loadu_ps(m, p + r * 16);
            word |= (uint64_t)_mm512_mask_cmp_ps_mask(m, v[r], zero, _CMP_GE_OQ) << (r * 16);
        }
        bits[w] = word;
        if (!scales) continue;
        /* d[i] holds |a| of elements 8i .. 8i+7 of this word, in double (0 past K) */
        __m512d d[8];
        for (int r = 0; r < 4; r++) {
            __m512 av = _mm512_and_ps(v[r], abs_mask);
            d[2 * r] = _mm512_cvtps_pd(_mm512_castps512_ps256(av));
            d[2 * r + 1] = _mm512_cvtps_pd(_mm512_extractf32x8_ps(av, 1));
        }
        if (s == 0) {
            total = _mm512_add_pd(total, _mm512_add_pd(_mm512_add_pd(_mm512_add_pd(d[0], d[1]), _mm512_add_pd(d[2], d[3])),
                                                       _mm512_add_pd(_mm512_add_pd(d[4], d[5]), _mm512_add_pd(d[6], d[7]))));
            continue;
        }
        const int per_seg = s / 8; /* vectors of 8 per segment */
        for (int g = 0; g < 8 / per_seg && q.first + q.count < nseg; g++) {
            __m512d acc = d[g * per_seg];
            for (int i = 1; i < per_seg; i++) acc = _mm512_add_pd(acc, d[g * per_seg + i]);
            q.v[q.count++] = acc;
            if (q.count == 8) flush_sums(&q, K, s, scales);
        }
    }
    if (!scales) return;
    if (s == 0)
        scales[0] = (float)(_mm512_reduce_add_pd(total) / (double)K);
    else
        flush_sums(&q, K, s, scales);
}
#endif

static void pack_range(const void *ctx, int64_t r0, int64_t r1)
{
    const pack_job *J = (const pack_job *)ctx;
    int64_t nseg = n_segments(J->K, J->s);
    for (int64_t r = r0; r < r1; r++) {
        const float *a = J->a + r * J->K;
        uint64_t *bits = J->bits + r * J->KW;
        float *scales = J->scales ? J->scales + r * nseg : NULL;
#if HBNN_X86
        if (J->path == HBNN_PATH_AVX512) {
            pack_row_avx512(a, J->K, J->s, bits, scales);
            continue;
        }
        if (J->path == HBNN_PATH_AVX2)
            pack_row_avx2(a, J->K, bits);
        else
            pack_row_portable(a, J->K, bits);
#else
        pack_row_portable(a, J->K, bits);
#endif
        if (scales) abs_segment_means(a, J->K, J->s, scales);
    }
}

/*
 * Pack the signs of the rows of a (R x K, C-contiguous float32) into bits (R x ceil(K/64)).
 * When scales is not NULL, also write the mean |a| of each segment (R x n_segments).
 */
int hbnn_pack_rows(int path, const float *a, int64_t R, int64_t K, int segment_size, uint64_t *bits,
                   float *scales, int threads)
{
    if (!a || !bits) return HBNN_ERR_NULL;
    if (R < 1 || K < 1) return HBNN_ERR_SHAPE;
    if (!segment_size_ok(segment_size)) return HBNN_ERR_SEGMENT;
    if (threads < 1) return HBNN_ERR_THREADS;
    if (!path_ok(path)) return HBNN_ERR_PATH;
    pack_job J = {a, K, n_words(K), segment_size, bits, scales, path};
    run_parallel(pack_range, &J, R, 1, threads);
    return HBNN_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* GEMM                                                                                       */
/*
 * The SIMD paths vectorise across output columns. W is laid out again in panels of L rows
 * (L = 8 on AVX-512, 4 on AVX2) with word k of the panel's rows side by side, so one vector
 * XOR of a panel with a broadcast word of an X row yields the counts of L outputs at once:
 * no horizontal sums, no ragged tail along K (padding bits are 0). MR rows of X x NP panels
 * are kept in registers while k runs over the whole row; a block of X rows stays in L2 while
 * the panels go past. The per-segment alphas of every lane are laid out the same way.
 */

typedef struct {
    const uint64_t *x, *w;
    const float *xscale, *wscale;
    int64_t M, N, K, KW, nseg;
    int s;
    float *out;
    int path;
    int split_n;      /* 1: the thread ranges split the columns (panels); 0: the rows of X */
    int64_t lanes;    /* output columns per panel: 8 (AVX-512), 4 (AVX2), 1 (portable) */
    int64_t panels;   /* ceil(N / lanes) */
    int64_t kstride;  /* words per panel row: KW rounded up to even (the padding word is 0) */
    int64_t kstep;    /* words per alpha chunk: 2 for s = 64 on AVX-512 (see update512), else 1 */
    uint64_t *wpanel; /* [panel][k][lane] words of W (0 past N) */
    void *apanel;     /* s > 0 on SIMD paths: alphas per (panel, step), achunk bytes each */
    int64_t achunk;
    double *coef;     /* [panel * lanes]: alpha[n] for s = 0, A[n] = sum alpha * len for s > 0 */
} gemm_job;

/*
 * Panels for `lanes` output columns per vector.
 *  s = 64 on AVX2: alpha as double, [panel][k][lane];
 *  s = 64 on AVX-512: the counts of two words k, k+1 share a vector of 2 * lanes floats, so
 *  [panel][k/2][D] = alpha[n, k + D % 2] with D / 2 = the column;
 *  s <= 32: alpha as float for the 2 * lanes 32-bit lanes D of a vector (D / 2 = the column,
 *  D % 2 = low or high half of the word), each lane holding V = 32 / s segments that are
 *  converted one j at a time: [panel][k][j][D] = alpha[n, k * 64/s + (D % 2) * 32/s + j].
 */
static int prepare_panels(gemm_job *J, int64_t lanes)
{
    const int64_t N = J->N, KW = J->KW, nseg = J->nseg, P = (N + lanes - 1) / lanes;
    const int s = J->s;
    J->lanes = lanes;
    J->panels = P;
    J->coef = (double *)calloc((size_t)(P * lanes), sizeof(double));
    if (!J->coef) return HBNN_ERR_NOMEM;
    for (int64_t n = 0; n < N; n++) {
        const float *al = J->wscale + n * nseg;
        if (s == 0) {
            J->coef[n] = al[0];
            continue;
        }
        double acc = 0;
        for (int64_t seg = 0; seg < nseg; seg++) acc += (double)al[seg] * (double)segment_length(J->K, s, seg);
        J->coef[n] = acc;
    }
    if (lanes == 1) return HBNN_OK; /* the portable path reads W and alpha as they are */
    const int64_t KS = KW + (KW & 1);
    J->kstride = KS;
    J->kstep = s == 64 && lanes == 8 ? 2 : 1;
    J->wpanel = (uint64_t *)calloc((size_t)(P * KS * lanes), sizeof(uint64_t));
    if (!J->wpanel) return HBNN_ERR_NOMEM;
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < KW; k++) J->wpanel[((n / lanes) * KS + k) * lanes + n % lanes] = J->w[n * KW + k];
    if (s == 0) return HBNN_OK;
    if (s == 64 && lanes == 4) {
        double *tab = (double *)calloc((size_t)(P * KS * lanes), sizeof(double));
        if (!tab) return HBNN_ERR_NOMEM;
        for (int64_t n = 0; n < N; n++)
            for (int64_t k = 0; k < KW; k++) tab[((n / lanes) * KS + k) * lanes + n % lanes] = J->wscale[n * nseg + k];
        J->apanel = tab;
        J->achunk = lanes * (int64_t)sizeof(double);
        return HBNN_OK;
    }
    if (s == 64) {
        float *tab = (float *)calloc((size_t)(P * KS * lanes), sizeof(float));
        if (!tab) return HBNN_ERR_NOMEM;
        for (int64_t n = 0; n < N; n++)
            for (int64_t k = 0; k < KW; k++)
                tab[((n / lanes) * (KS / 2) + k / 2) * 2 * lanes + 2 * (n % lanes) + (k & 1)] = J->wscale[n * nseg + k];
        J->apanel = tab;
        J->achunk = 2 * lanes * (int64_t)sizeof(float);
        return HBNN_OK;
    }
    const int64_t V = 32 / s, F = 2 * lanes, per_word = 64 / s;
    float *tab = (float *)calloc((size_t)(P * KS * V * F), sizeof(float));
    if (!tab) return HBNN_ERR_NOMEM;
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < KW; k++)
            for (int64_t half = 0; half < 2; half++)
                for (int64_t j = 0; j < V; j++) {
                    int64_t seg = k * per_word + half * V + j;
                    if (seg < nseg)
                        tab[(((n / lanes) * KS + k) * V + j) * F + 2 * (n % lanes) + half] = J->wscale[n * nseg + seg];
                }
    J->apanel = tab;
    J->achunk = V * F * (int64_t)sizeof(float);
    return HBNN_OK;
}

static void release_panels(gemm_job *J)
{
    free(J->coef);
    free(J->wpanel);
    free(J->apanel);
}

static void tile_portable(const gemm_job *J, int64_t m0, int64_t m1, int64_t n0, int64_t n1)
{
    const int64_t KW = J->KW, nseg = J->nseg;
    const int s = J->s;
    const uint64_t seg_mask = s == 64 || s == 0 ? ~(uint64_t)0 : (((uint64_t)1 << s) - 1);
    for (int64_t m = m0; m < m1; m++) {
        const uint64_t *x = J->x + m * KW;
        const double beta = J->xscale[m];
        for (int64_t n = n0; n < n1; n++) {
            const uint64_t *w = J->w + n * KW;
            if (s == 0) {
                int64_t pc = 0;
                for (int64_t i = 0; i < KW; i++) pc += __builtin_popcountll(x[i] ^ w[i]);
                J->out[m * J->N + n] = (float)(beta * (J->coef[n] * (double)(J->K - 2 * pc)));
                continue;
            }
            const float *alpha = J->wscale + n * nseg;
            const int per_word = 64 / s;
            double acc = 0;
            for (int64_t i = 0; i < KW; i++) {
                uint64_t d = x[i] ^ w[i];
                for (int j = 0; j < per_word && i * per_word + j < nseg; j++)
                    acc += (double)alpha[i * per_word + j] * (double)__builtin_popcountll((d >> (j * s)) & seg_mask);
            }
            J->out[m * J->N + n] = (float)(beta * (J->coef[n] - 2.0 * acc));
        }
    }
}

#if HBNN_X86
/* ---- AVX-512: VPOPCNT{Q,D,W,B} on 512-bit vectors, 8 columns per panel ---- */

/*
 * Add the (alpha-weighted) counts of d = x ^ w for one (panel, k) to acc; for s = 64, of the
 * two words d (k) and d1 (k + 1), whose counts are merged into the even and odd 32-bit lanes
 * so that one float FMA weighs 16 segments (the FMA and convert units are the bottleneck).
 */
AVX512_TARGET HBNN_INLINE __m512i update512(__m512i acc, __m512i d, __m512i d1, const char *alpha, const int s)
{
    if (s == 0) return _mm512_add_epi64(acc, _mm512_popcnt_epi64(d));
    __m512 f = _mm512_castsi512_ps(acc);
    const float *al = (const float *)alpha;
    if (s == 64) {
        __m512i c = _mm512_mask_shuffle_epi32(_mm512_popcnt_epi64(d), (__mmask16)0xaaaa, _mm512_popcnt_epi64(d1), _MM_PERM_CDAB);
        return _mm512_castps_si512(_mm512_fmadd_ps(_mm512_cvtepi32_ps(c), _mm512_loadu_ps(al), f));
    }
    if (s == 32) {
        __m512 c = _mm512_cvtepi32_ps(_mm512_popcnt_epi32(d));
        return _mm512_castps_si512(_mm512_fmadd_ps(c, _mm512_loadu_ps(al), f));
    }
    if (s == 16) {
        __m512i p = _mm512_popcnt_epi16(d);
        __m512 lo = _mm512_cvtepi32_ps(_mm512_and_si512(p, _mm512_set1_epi32(0xffff)));
        __m512 hi = _mm512_cvtepi32_ps(_mm512_srli_epi32(p, 16));
        f = _mm512_fmadd_ps(lo, _mm512_loadu_ps(al), f);
        return _mm512_castps_si512(_mm512_fmadd_ps(hi, _mm512_loadu_ps(al + 16), f));
    }
    /* s == 8: byte j of every 32-bit lane is moved to the lane's low byte by a shuffle */
    __m512i p = _mm512_popcnt_epi8(d);
    const __m512i offs = _mm512_set_epi32(12, 8, 4, 0, 12, 8, 4, 0, 12, 8, 4, 0, 12, 8, 4, 0);
    for (int j = 0; j < 4; j++) {
        /* lane d of each 128-bit block takes byte 4d + j of that block; 0x80 bytes give zeros */
        const __m512i idx = _mm512_add_epi32(_mm512_set1_epi32((int)(0x80808000u | (unsigned)j)), offs);
        __m512i q = _mm512_shuffle_epi8(p, idx);
        f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(q), _mm512_loadu_ps(al + 16 * j), f);
    }
    return _mm512_castps_si512(f);
}

/* Rows m .. m+MR-1 (clamped to mend: extra rows repeat the last one and are not stored) x panels p .. p+NP-1. */
AVX512_TARGET HBNN_INLINE void micro512(const gemm_job *J, int64_t m, int64_t mend, int64_t p, const int s, const int MR,
                                         const int NP)
{
    const int64_t KW = J->KW, KS = J->kstride, achunk = J->achunk;
    const uint64_t *xr[4];
    for (int a = 0; a < MR; a++) xr[a] = J->x + min64(m + a, mend - 1) * KW;
    const uint64_t *wp = J->wpanel + p * KS * 8;
    const char *ap = (const char *)J->apanel + p * (KS / J->kstep) * achunk;
    __m512i acc[4][2];
    for (int a = 0; a < MR; a++)
        for (int b = 0; b < NP; b++) acc[a][b] = _mm512_setzero_si512();
    if (s == 64) { /* two words per step; an odd last word meets the panel's zero padding */
        const int64_t steps = KS / 2;
        for (int64_t t = 0; t < steps; t++) {
            const int64_t k = 2 * t;
            __m512i w0[2], w1[2];
            for (int b = 0; b < NP; b++) {
                w0[b] = _mm512_loadu_si512(wp + (b * KS + k) * 8);
                w1[b] = _mm512_loadu_si512(wp + (b * KS + k + 1) * 8);
            }
            for (int a = 0; a < MR; a++) {
                __m512i x0 = _mm512_set1_epi64((long long)xr[a][k]);
                __m512i x1 = k + 1 < KW ? _mm512_set1_epi64((long long)xr[a][k + 1]) : _mm512_setzero_si512();
                for (int b = 0; b < NP; b++)
                    acc[a][b] = update512(acc[a][b], _mm512_xor_si512(x0, w0[b]), _mm512_xor_si512(x1, w1[b]),
                                          ap + (b * steps + t) * achunk, s);
            }
        }
    } else {
        for (int64_t k = 0; k < KW; k++) {
            __m512i wv[2];
            for (int b = 0; b < NP; b++) wv[b] = _mm512_loadu_si512(wp + (b * KS + k) * 8);
            for (int a = 0; a < MR; a++) {
                __m512i xv = _mm512_set1_epi64((long long)xr[a][k]);
                for (int b = 0; b < NP; b++)
                    acc[a][b] = update512(acc[a][b], _mm512_xor_si512(xv, wv[b]), xv, ap + (b * KS + k) * achunk, s);
            }
        }
    }
    const __m512i even = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 15, 13, 11, 9, 7, 5, 3, 1);
    for (int a = 0; a < MR && m + a < mend; a++) {
        const __m512d beta = _mm512_set1_pd((double)J->xscale[m + a]);
        for (int b = 0; b < NP; b++) {
            int64_t n0 = (p + b) * 8;
            __m512d coef = _mm512_loadu_pd(J->coef + n0), y;
            if (s == 0) {
                __m512d twice = _mm512_add_pd(_mm512_cvtepi64_pd(acc[a][b]), _mm512_cvtepi64_pd(acc[a][b]));
                y = _mm512_mul_pd(beta, _mm512_mul_pd(coef, _mm512_sub_pd(_mm512_set1_pd((double)J->K), twice)));
            } else {
                /* the two 32-bit lanes of a column hold its even and odd segments */
                __m512 f = _mm512_castsi512_ps(acc[a][b]);
                __m512d sum = _mm512_add_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(_mm512_permutexvar_ps(even, f))),
                                            _mm512_cvtps_pd(_mm512_castps512_ps256(_mm512_permutexvar_ps(odd, f))));
                y = _mm512_mul_pd(beta, _mm512_sub_pd(coef, _mm512_add_pd(sum, sum)));
            }
            int64_t valid = J->N - n0;
            __mmask16 mask = valid >= 8 ? (__mmask16)0xff : (__mmask16)((1u << valid) - 1);
            _mm512_mask_storeu_ps(J->out + (m + a) * J->N + n0, mask, _mm512_castps256_ps512(_mm512_cvtpd_ps(y)));
        }
    }
}

/* 4 rows x 2 panels measured best for every segment size on Zen 5 (larger blocks spill) */
AVX512_TARGET HBNN_INLINE void tile512(const gemm_job *J, int64_t m0, int64_t m1, int64_t p0, int64_t p1, const int s)
{
    enum { MR = 4, NP = 2 };
    int64_t mc = X_BLOCK_BYTES / (J->KW * 8);
    mc = mc < MR ? MR : mc / MR * MR;
    for (int64_t mb = m0; mb < m1; mb += mc) {
        int64_t me = min64(mb + mc, m1);
        for (int64_t p = p0; p < p1; p += NP) {
            int64_t left = p1 - p;
            for (int64_t m = mb; m < me; m += MR) {
                if (left >= NP)
                    micro512(J, m, me, p, s, MR, NP);
                else
                    micro512(J, m, me, p, s, MR, 1);
            }
        }
    }
}

AVX512_TARGET static void tile_avx512(const gemm_job *J, int64_t m0, int64_t m1, int64_t p0, int64_t p1)
{
    switch (J->s) {
    case 0: tile512(J, m0, m1, p0, p1, 0); break;
    case 64: tile512(J, m0, m1, p0, p1, 64); break;
    case 32: tile512(J, m0, m1, p0, p1, 32); break;
    case 16: tile512(J, m0, m1, p0, p1, 16); break;
    default: tile512(J, m0, m1, p0, p1, 8); break;
    }
}

/* ---- AVX2: nibble-table popcount (VPSHUFB), 4 columns per panel ---- */

AVX2_TARGET HBNN_INLINE __m256i popcnt_bytes256(__m256i v)
{
    const __m256i table = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2,
                                           3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f);
    __m256i lo = _mm256_and_si256(v, low), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
    return _mm256_add_epi8(_mm256_shuffle_epi8(table, lo), _mm256_shuffle_epi8(table, hi));
}

/* small non-negative int64 lanes (< 2^52) to double, exactly: put them in the mantissa of 2^52 */
AVX2_TARGET HBNN_INLINE __m256d small_epi64_to_pd(__m256i v)
{
    const __m256i magic = _mm256_set1_epi64x(0x4330000000000000LL);
    return _mm256_sub_pd(_mm256_castsi256_pd(_mm256_or_si256(v, magic)), _mm256_castsi256_pd(magic));
}

AVX2_TARGET HBNN_INLINE __m256i update256(__m256i acc, __m256i d, const char *alpha, const int s)
{
    __m256i p = popcnt_bytes256(d);
    if (s == 0) return _mm256_add_epi64(acc, _mm256_sad_epu8(p, _mm256_setzero_si256()));
    if (s == 64) {
        __m256d c = small_epi64_to_pd(_mm256_sad_epu8(p, _mm256_setzero_si256()));
        return _mm256_castpd_si256(_mm256_fmadd_pd(c, _mm256_loadu_pd((const double *)alpha), _mm256_castsi256_pd(acc)));
    }
    const float *al = (const float *)alpha;
    __m256 f = _mm256_castsi256_ps(acc);
    if (s == 32) {
        __m256i q = _mm256_madd_epi16(_mm256_maddubs_epi16(p, _mm256_set1_epi8(1)), _mm256_set1_epi16(1));
        return _mm256_castps_si256(_mm256_fmadd_ps(_mm256_cvtepi32_ps(q), _mm256_loadu_ps(al), f));
    }
    if (s == 16) {
        __m256i q = _mm256_maddubs_epi16(p, _mm256_set1_epi8(1));
        __m256 lo = _mm256_cvtepi32_ps(_mm256_and_si256(q, _mm256_set1_epi32(0xffff)));
        __m256 hi = _mm256_cvtepi32_ps(_mm256_srli_epi32(q, 16));
        f = _mm256_fmadd_ps(lo, _mm256_loadu_ps(al), f);
        return _mm256_castps_si256(_mm256_fmadd_ps(hi, _mm256_loadu_ps(al + 8), f));
    }
    const __m256i byte = _mm256_set1_epi32(0xff);
    f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(p, byte)), _mm256_loadu_ps(al), f);
    f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(p, 8), byte)), _mm256_loadu_ps(al + 8), f);
    f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(p, 16), byte)), _mm256_loadu_ps(al + 16), f);
    return _mm256_castps_si256(_mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(p, 24)), _mm256_loadu_ps(al + 24), f));
}

AVX2_TARGET HBNN_INLINE void micro256(const gemm_job *J, int64_t m, int64_t mend, int64_t p, const int s, const int MR,
                                      const int NP)
{
    const int64_t KW = J->KW, KS = J->kstride, achunk = J->achunk;
    const uint64_t *xr[2];
    for (int a = 0; a < MR; a++) xr[a] = J->x + min64(m + a, mend - 1) * KW;
    const uint64_t *wp = J->wpanel + p * KS * 4;
    const char *ap = (const char *)J->apanel + p * KS * achunk;
    __m256i acc[2][2];
    for (int a = 0; a < MR; a++)
        for (int b = 0; b < NP; b++) acc[a][b] = _mm256_setzero_si256();
    for (int64_t k = 0; k < KW; k++) {
        __m256i wv[2];
        for (int b = 0; b < NP; b++) wv[b] = _mm256_loadu_si256((const __m256i *)(wp + (b * KS + k) * 4));
        for (int a = 0; a < MR; a++) {
            __m256i xv = _mm256_set1_epi64x((long long)xr[a][k]);
            for (int b = 0; b < NP; b++)
                acc[a][b] = update256(acc[a][b], _mm256_xor_si256(xv, wv[b]), ap + (b * KS + k) * achunk, s);
        }
    }
    const __m256i even = _mm256_setr_epi32(0, 2, 4, 6, 0, 0, 0, 0), odd = _mm256_setr_epi32(1, 3, 5, 7, 0, 0, 0, 0);
    for (int a = 0; a < MR && m + a < mend; a++) {
        const __m256d beta = _mm256_set1_pd((double)J->xscale[m + a]);
        for (int b = 0; b < NP; b++) {
            int64_t n0 = (p + b) * 4;
            __m256d coef = _mm256_loadu_pd(J->coef + n0), y;
            if (s == 0) {
                __m256d pc = small_epi64_to_pd(acc[a][b]);
                y = _mm256_mul_pd(beta, _mm256_mul_pd(coef, _mm256_sub_pd(_mm256_set1_pd((double)J->K), _mm256_add_pd(pc, pc))));
            } else {
                __m256d sum;
                if (s == 64) {
                    sum = _mm256_castsi256_pd(acc[a][b]);
                } else {
                    __m256 f = _mm256_castsi256_ps(acc[a][b]);
                    sum = _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(_mm256_permutevar8x32_ps(f, even))),
                                        _mm256_cvtps_pd(_mm256_castps256_ps128(_mm256_permutevar8x32_ps(f, odd))));
                }
                y = _mm256_mul_pd(beta, _mm256_sub_pd(coef, _mm256_add_pd(sum, sum)));
            }
            int64_t valid = J->N - n0;
            float *dst = J->out + (m + a) * J->N + n0;
            __m128 yf = _mm256_cvtpd_ps(y);
            if (valid >= 4)
                _mm_storeu_ps(dst, yf);
            else
                _mm_maskstore_ps(dst, _mm_cmpgt_epi32(_mm_set1_epi32((int)valid), _mm_setr_epi32(0, 1, 2, 3)), yf);
        }
    }
}

AVX2_TARGET HBNN_INLINE void tile256(const gemm_job *J, int64_t m0, int64_t m1, int64_t p0, int64_t p1, const int s)
{
    enum { MR = 2, NP = 2 };
    int64_t mc = X_BLOCK_BYTES / (J->KW * 8);
    mc = mc < MR ? MR : mc / MR * MR;
    for (int64_t mb = m0; mb < m1; mb += mc) {
        int64_t me = min64(mb + mc, m1);
        for (int64_t p = p0; p < p1; p += NP)
            for (int64_t m = mb; m < me; m += MR) {
                if (p1 - p >= NP)
                    micro256(J, m, me, p, s, MR, NP);
                else
                    micro256(J, m, me, p, s, MR, 1);
            }
    }
}

AVX2_TARGET static void tile_avx2(const gemm_job *J, int64_t m0, int64_t m1, int64_t p0, int64_t p1)
{
    switch (J->s) {
    case 0: tile256(J, m0, m1, p0, p1, 0); break;
    case 64: tile256(J, m0, m1, p0, p1, 64); break;
    case 32: tile256(J, m0, m1, p0, p1, 32); break;
    case 16: tile256(J, m0, m1, p0, p1, 16); break;
    default: tile256(J, m0, m1, p0, p1, 8); break;
    }
}
#endif /* HBNN_X86 */

/* One thread's share: a range of panels (columns) or of rows of X. */
static void gemm_range(const void *ctx, int64_t begin, int64_t end)
{
    const gemm_job *J = (const gemm_job *)ctx;
    int64_t m0 = 0, m1 = J->M, p0 = 0, p1 = J->panels;
    if (J->split_n) {
        p0 = begin;
        p1 = end;
    } else {
        m0 = begin;
        m1 = end;
    }
#if HBNN_X86
    if (J->path == HBNN_PATH_AVX512) {
        tile_avx512(J, m0, m1, p0, p1);
        return;
    }
    if (J->path == HBNN_PATH_AVX2) {
        tile_avx2(J, m0, m1, p0, p1);
        return;
    }
#endif
    tile_portable(J, m0, m1, p0, p1); /* lanes == 1: panels are columns */
}

/*
 * out (M x N) = the HBNN product of packed rows xbits (M x ceil(K/64)) with scales xscale (M)
 * and packed rows wbits (N x ceil(K/64)) with per-segment scales wscale (N x n_segments).
 */
int hbnn_gemm(int path, const uint64_t *xbits, const float *xscale, const uint64_t *wbits, const float *wscale,
              int64_t M, int64_t N, int64_t K, int segment_size, float *out, int threads)
{
    if (!xbits || !xscale || !wbits || !wscale || !out) return HBNN_ERR_NULL;
    if (M < 1 || N < 1 || K < 1) return HBNN_ERR_SHAPE;
    if (!segment_size_ok(segment_size)) return HBNN_ERR_SEGMENT;
    if (threads < 1) return HBNN_ERR_THREADS;
    if (!path_ok(path)) return HBNN_ERR_PATH;
    gemm_job J;
    memset(&J, 0, sizeof J);
    J.x = xbits;
    J.w = wbits;
    J.xscale = xscale;
    J.wscale = wscale;
    J.M = M;
    J.N = N;
    J.K = K;
    J.KW = n_words(K);
    J.nseg = n_segments(K, segment_size);
    J.s = segment_size;
    J.out = out;
    J.path = path;
    int status = prepare_panels(&J, path == HBNN_PATH_AVX512 ? 8 : path == HBNN_PATH_AVX2 ? 4 : 1);
    if (status != HBNN_OK) {
        release_panels(&J);
        return status;
    }
    J.split_n = J.panels * J.lanes >= M;
    run_parallel(gemm_range, &J, J.split_n ? J.panels : M, 4, threads);
    release_panels(&J);
    return HBNN_OK;
}
