// attention_kernel::amx_matmul (host_amx.h): a training step's bf16 linear layers on AMX.
//
// oneDNN 2.6.3's AMX matmul runs the long, thin products of a transformer's linears at 1,100-1,600
// GFLOP/s on two cores of a Xeon with AMX (lab_bench_matmul --shape), where PyTorch's newer oneDNN
// reaches 2,300-2,900 on those with K >= 1152. Two kernels here do what those do, in plain form:
//
// - x W^T and dy W (a's rows contiguous): b packed once per call into the pairs layout the tile
//   product reads ([K / 2, N, 2], 0.6-1.2 MB for these layers), a's tiles loaded straight from its
//   rows, and one task per 32 rows of c running amx_gemm's 2 x 2 blocks of 16 x 16 tiles over every
//   column block, with all of b in L2: so only for b up to 1.25 MB (larger ones stay on oneDNN).
// - the weight gradient dy^T x (a a transposed view: both operands are stored [K, .] with K the
//   tokens, tens of thousands long). Neither can be read as tiles in place: A tiles need 32
//   consecutive tokens of one feature (a transpose), B tiles pairs of tokens interleaved. The
//   narrower operand is transposed, once, into A tiles for all tokens; the output's columns (the
//   wider operand's features) are cut into slabs, a few per thread, each accumulated over every
//   token in 32 x 32 blocks kept in L2 while its share of the wider operand is interleaved 128
//   tokens at a time into B tiles (lab_bench_matmul --shape M,16384,N,tn: see bench/README.md).
#include "host_amx.h"

#include <algorithm>
#include <cstring>

#include <omp.h>

#include "lab/tensor.h"

namespace lab::attention_kernel {

#if LAB_HAVE_AMX_ATTENTION

// GCC 12's unpack intrinsics in transpose16 start from _mm512_undefined_ps(), which
// -Wmaybe-uninitialized reports inside the compiler's headers (as in host_attention_amx.cpp).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace {

// The largest packed b taken: the shakespeare_char MLP's 1536 x 384 weight is 1.2 MB.
constexpr int64_t kMaxPackedBytes = 1280 * 1024;

// b [K, N] (any strides) in the pairs layout: out[(x * N + n) * 2 + i] = b[2x + i][n].
void pack_pairs(uint16_t* out, const Tensor& b) {
    const int64_t K = b.size(0), N = b.size(1), sk = b.strides()[0], sn = b.strides()[1];
    const uint16_t* src = static_cast<const uint16_t*>(b.raw());
    if (sk == 1) {
        // A transposed weight (x @ W^T): each pair is two neighbours in a row of W, one 32-bit
        // word, so packing transposes words.
#pragma omp parallel for schedule(static)
        for (int64_t x = 0; x < K / 2; ++x)
            for (int64_t n = 0; n < N; ++n) std::memcpy(out + (x * N + n) * 2, src + n * sn + 2 * x, 4);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t x = 0; x < K / 2; ++x) {
        const uint16_t* even = src + 2 * x * sk;
        const uint16_t* odd = even + sk;
        uint16_t* row = out + x * N * 2;
        for (int64_t n = 0; n < N; ++n) {
            row[2 * n] = even[n * sn];
            row[2 * n + 1] = odd[n * sn];
        }
    }
}

// ---- the weight gradient: c = a_rows^T b_rows, both stored [K, .] ----

// Tokens per chunk of B tiles: 128 (4 tile depths) measured best against 64-256 on the step's
// shapes; a chunk of one slab's B tiles (at most 96 KB) then stays in L1 and L2 with the A tiles.
constexpr int64_t kChunkTokens = 128;
// The largest slab of accumulators one thread keeps (f32 P x slab width): 384 x 384 for a
// 384-wide model, well inside a 2 MB L2 with the chunk's tiles.
constexpr int64_t kMaxSlabBytes = 640 * 1024;

// A tiles of src^T: for 16 columns (features) p and 32 rows (tokens) of src, the 16 x 32 tile
// tile[i][j] = src[j][p + i], stored [P / 16][K / 32][16 x 32], so that one feature block's tiles
// follow one another over the tokens. Pairs of tokens are interleaved first (one permute per two
// rows), which makes the rest a transpose of 32-bit words.
void pack_transposed(uint16_t* out, const uint16_t* src, int64_t ld, int64_t K, int64_t P) {
    const int64_t depths = K / kDepthBlock;
    constexpr int64_t group = 8;  // 256 tokens of src rows, re-read from L2 by each feature block
#pragma omp for schedule(static)
    for (int64_t first = 0; first < depths; first += group)
        for (int64_t pb = 0; pb < P / 16; ++pb)
            for (int64_t s = first; s < std::min(first + group, depths); ++s) {
                const uint16_t* rows = src + s * kDepthBlock * ld + pb * 16;
                __m512 words[16];
                for (int x = 0; x < 16; ++x) {
                    const uint16_t* even = rows + 2 * x * ld;
                    __m512i both = _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(even)));
                    both = _mm512_inserti64x4(both, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(even + ld)), 1);
                    words[x] = _mm512_castsi512_ps(interleave_pairs(both));
                }
                transpose16(words);
                uint16_t* tile = out + (pb * depths + s) * 512;
                for (int i = 0; i < 16; ++i) _mm512_storeu_ps(tile + i * 32, words[i]);
            }
}

// B tiles of src's columns [0, width) over its first `pairs` pair-rows g (rows 2g, 2g + 1): tile
// [s][n / 16] (s = g / 16) row g % 16 = (src[2g][n], src[2g + 1][n]) for its 16 n.
void pack_pairs_chunk(uint16_t* out, const uint16_t* src, int64_t ld, int64_t width, int64_t pairs) {
    static const auto index = [](int from) {
        alignas(64) uint16_t order[32];
        for (int i = 0; i < 16; ++i) {
            order[2 * i] = static_cast<uint16_t>(from + i);
            order[2 * i + 1] = static_cast<uint16_t>(32 + from + i);
        }
        return _mm512_load_si512(order);
    };
    static const __m512i low = index(0), high = index(16);
    // The rows are read a slab's width at a time, one page or more apart: the hardware
    // prefetchers do not follow that, so the rows 8 pair-rows ahead are asked for.
    constexpr int64_t ahead = 8;
    for (int64_t g = 0; g < pairs; ++g) {
        const uint16_t* even = src + 2 * g * ld;
        for (int64_t n = 0; n < width; n += 32) {
            _mm_prefetch(reinterpret_cast<const char*>(even + ahead * ld + n), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(even + (ahead + 1) * ld + n), _MM_HINT_T0);
        }
        uint16_t* row = out + (g / 16 * (width / 16)) * 512 + g % 16 * 32;
        for (int64_t n = 0; n < width; n += 32) {
            const __m512i a = _mm512_loadu_si512(even + n), b = _mm512_loadu_si512(even + ld + n);
            _mm512_storeu_si512(row + n * 32, _mm512_permutex2var_epi16(a, low, b));
            _mm512_storeu_si512(row + n * 32 + 512, _mm512_permutex2var_epi16(a, high, b));
        }
    }
}

// Accumulators [P / 32][width / 32] blocks of 4 tiles (rows p, p + 16 by columns n, n + 16), over
// `depths` tile depths: A tiles of each 32 features follow one another `a_step` tiles apart, B
// tiles of a depth are width / 16 tiles long. A first chunk starts the blocks from zero.
void accumulate_chunk(float* blocks, const uint16_t* a_tiles, int64_t a_step, const uint16_t* b_tiles, int64_t P,
                      int64_t width, int64_t depths, bool first) {
    const int64_t b_step = width / 16 * 512;
    for (int64_t nb = 0; nb < width / 32; ++nb)
        for (int64_t pb = 0; pb < P / 32; ++pb) {
            float* block = blocks + (pb * (width / 32) + nb) * 1024;
            if (first) {
                _tile_zero(0);
                _tile_zero(1);
                _tile_zero(2);
                _tile_zero(3);
            } else {
                _tile_loadd(0, block, 64);
                _tile_loadd(1, block + 256, 64);
                _tile_loadd(2, block + 512, 64);
                _tile_loadd(3, block + 768, 64);
            }
            const uint16_t* a0 = a_tiles + 2 * pb * a_step * 512;
            const uint16_t* a1 = a0 + a_step * 512;
            const uint16_t* b0 = b_tiles + 2 * nb * 512;
            // The next block's A tiles, from L2 into L1 while this block multiplies.
            const char* next = pb + 1 < P / 32 ? reinterpret_cast<const char*>(a0 + 2 * a_step * 512) : nullptr;
            for (int64_t s = 0; s < depths; ++s) {
                if (next)
                    for (int line = 0; line < 16; ++line) {
                        _mm_prefetch(next + s * 1024 + line * 64, _MM_HINT_T0);
                        _mm_prefetch(next + (a_step + s) * 1024 + line * 64, _MM_HINT_T0);
                    }
                _tile_loadd(4, a0 + s * 512, 64);
                _tile_loadd(5, a1 + s * 512, 64);
                _tile_loadd(6, b0 + s * b_step, 64);
                _tile_loadd(7, b0 + s * b_step + 512, 64);
                _tile_dpbf16ps(0, 4, 6);
                _tile_dpbf16ps(1, 4, 7);
                _tile_dpbf16ps(2, 5, 6);
                _tile_dpbf16ps(3, 5, 7);
            }
            _tile_stored(0, block, 64);
            _tile_stored(1, block + 256, 64);
            _tile_stored(2, block + 512, 64);
            _tile_stored(3, block + 768, 64);
        }
}

// c (+)= the slab's accumulators: c[p][n0 + n] or, transposed, c[n0 + n][p].
void write_slab(float* c, int64_t ldc, const float* blocks, int64_t P, int64_t n0, int64_t width, bool transposed,
                bool accumulate) {
    for (int64_t pb = 0; pb < P / 32; ++pb)
        for (int64_t nb = 0; nb < width / 32; ++nb)
            for (int tile = 0; tile < 4; ++tile) {
                const int64_t p = pb * 32 + (tile >> 1) * 16, n = n0 + nb * 32 + (tile & 1) * 16;
                const float* values = blocks + (pb * (width / 32) + nb) * 1024 + tile * 256;
                __m512 rows[16];
                for (int i = 0; i < 16; ++i) rows[i] = _mm512_loadu_ps(values + i * 16);
                if (transposed) transpose16(rows);
                float* out = transposed ? c + n * ldc + p : c + p * ldc + n;
                for (int i = 0; i < 16; ++i) {
                    float* row = out + i * ldc;
                    _mm512_storeu_ps(row, accumulate ? _mm512_add_ps(_mm512_loadu_ps(row), rows[i]) : rows[i]);
                }
            }
}

// c [M, N] (+)= a [M, K] . b [K, N] where a is a transposed view (its storage [K, M], rows lda
// apart) and b's rows are contiguous (ldb apart). Both are read as their storage, src [K, width].
bool multiply_transposed_a(Backend& backend, const Tensor& c, const Tensor& a, const Tensor& b, bool accumulate) {
    const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
    // The narrower operand is the one transposed (into A tiles); c is then written transposed
    // when that is b.
    const bool transposed = N < M;
    const int64_t P = transposed ? N : M, Q = transposed ? M : N;
    const uint16_t* a_src = static_cast<const uint16_t*>((transposed ? b : a).raw());
    const uint16_t* b_src = static_cast<const uint16_t*>((transposed ? a : b).raw());
    const int64_t lda = transposed ? b.strides()[0] : a.strides()[1];
    const int64_t ldb = transposed ? a.strides()[1] : b.strides()[0];

    // Slabs of Q: a multiple of the thread count, each at most 384 wide and small enough for L2.
    const int64_t threads = omp_get_max_threads();
    const int64_t widest = std::clamp<int64_t>(kMaxSlabBytes / (P * 4) / 32 * 32, 32, 384);
    const int64_t slabs_wanted = threads * ((Q + threads * widest - 1) / (threads * widest));
    const int64_t slab = std::max<int64_t>(32, (Q / slabs_wanted + 31) / 32 * 32);
    const int64_t slabs = (Q + slab - 1) / slab;
    const int64_t depths = K / kDepthBlock;

    // One allocation: the A tiles, then per thread a slab of accumulators and a chunk of B tiles.
    const int64_t a_values = P * K, per_thread = P * slab * 2 + slab * kChunkTokens;
    const Tensor storage = Tensor::empty(backend, {a_values + threads * per_thread}, DType::bf16);
    uint16_t* a_tiles = static_cast<uint16_t*>(storage.raw());
    float* c_rows = c.data<float>();
#pragma omp parallel
    {
        pack_transposed(a_tiles, a_src, lda, K, P);  // an omp for: every thread waits for all A tiles
        uint16_t* own = a_tiles + a_values + omp_get_thread_num() * per_thread;
        float* blocks = reinterpret_cast<float*>(own);
        uint16_t* b_tiles = own + P * slab * 2;
        configure_tiles();
#pragma omp for schedule(static)
        for (int64_t index = 0; index < slabs; ++index) {
            const int64_t n0 = index * slab, width = std::min(slab, Q - n0);
            for (int64_t t0 = 0; t0 < K; t0 += kChunkTokens) {
                const int64_t tokens = std::min(kChunkTokens, K - t0);
                pack_pairs_chunk(b_tiles, b_src + t0 * ldb + n0, ldb, width, tokens / 2);
                accumulate_chunk(blocks, a_tiles + t0 / kDepthBlock * 512, depths, b_tiles, P, width,
                                 tokens / kDepthBlock, t0 == 0);
            }
            write_slab(c_rows, N, blocks, P, n0, width, transposed, accumulate);
        }
        _tile_release();
    }
    return true;
}

}  // namespace

bool amx_matmul(Backend& backend, const Tensor& c, const Tensor& a, const Tensor& b, const Tensor* bias, float alpha,
                bool accumulate, const Tensor* addend) {
    if (a.dim() != 2 || b.dim() != 2 || c.dim() != 2 || alpha != 1.0f) return false;
    if (a.dtype() != DType::bf16 || b.dtype() != DType::bf16 || c.dtype() != DType::f32 || !c.is_contiguous())
        return false;
    const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
    if (b.size(0) != K || c.size(0) != M || c.size(1) != N || M % 32 || N % 32 || K % 32) return false;
    // Below about 16M multiply-adds packing and starting the tiles cost more than oneDNN saves.
    if (static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K) < 16e6) return false;
    if (bias && (bias->dtype() != DType::f32 || !bias->is_contiguous() || bias->numel() != N)) return false;
    if (addend && (accumulate || addend->dtype() != DType::f32 || !addend->is_contiguous() ||
                   addend->shape() != c.shape()))
        return false;
    // The weight gradient dy^T x: a transposed view, b's rows contiguous, no bias.
    if (a.strides()[0] == 1 && a.strides()[1] != 1) {
        if (bias || addend || b.strides()[1] != 1 || !amx_attention_ready()) return false;
        return multiply_transposed_a(backend, c, a, b, accumulate);
    }
    if (a.strides()[1] != 1) return false;
    // Every 32 rows of c read all of packed b, which must stay in L2: with a larger b the kernel
    // fell behind oneDNN (GPT-2's 768 x 2304 weight, 3.5 MB: 1,190 against 1,395 GFLOP/s; square
    // 1024: 1,540 against 1,825), where blocking over K and N would be needed.
    if (K * N * 2 > kMaxPackedBytes) return false;
    if (!amx_attention_ready()) return false;

    const Tensor packed = Tensor::empty(backend, {K * N}, DType::bf16);
    uint16_t* b_pairs = static_cast<uint16_t*>(packed.raw());
    pack_pairs(b_pairs, b);
    const uint16_t* a_rows = static_cast<const uint16_t*>(a.raw());
    const int64_t lda = a.strides()[0];
    float* c_rows = c.data<float>();
    const float* bias_data = bias ? bias->data<float>() : nullptr;
    const float* addend_rows = addend ? addend->data<float>() : nullptr;
    const int64_t blocks = M / 32;
#pragma omp parallel if (blocks > 1)
    {
        configure_tiles();
#pragma omp for schedule(static)
        for (int64_t block = 0; block < blocks; ++block) {
            float* cb = c_rows + block * 32 * N;
            amx_gemm(cb, N, a_rows + block * 32 * lda, lda, b_pairs, 32, N, K, accumulate,
                     addend_rows ? addend_rows + block * 32 * N : nullptr);
            if (bias_data)
                for (int64_t r = 0; r < 32; ++r)
                    for (int64_t n = 0; n < N; ++n) cb[r * N + n] += bias_data[n];
        }
        _tile_release();
    }
    return true;
}

#else  // built without AMX

bool amx_matmul(Backend&, const Tensor&, const Tensor&, const Tensor&, const Tensor*, float, bool, const Tensor*) {
    return false;
}

#endif

}  // namespace lab::attention_kernel
