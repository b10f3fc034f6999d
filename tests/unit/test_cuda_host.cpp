// The cuda backend's host-side logic, checked on any machine (no GPU, no CUDA toolkit needed):
//  - plan_matmul (plugins/backends/cuda/cuda_matmul_plan.h): each plan is executed by a small
//    column-major GEMM that reads memory exactly as cuBLASLt reads the plan's layouts (leading
//    dimensions, transposes, batch strides, outer calls) and must give the row-major product of
//    the strided views, for transposed, broadcast and non-mergeable batch layouts;
//  - the device Philox (cuda_philox.h) compiled for the host gives lab/rng.h's numbers.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <vector>

#include "cuda_matmul_plan.h"
#include "cuda_philox.h"
#include "lab/rng.h"

namespace {

using Dims = std::vector<int64_t>;
using lab::cuda::MatmulPlan;
using lab::cuda::OperandLayout;

// A strided row-major operand over its own buffer.
struct View {
    Dims shape, strides;
    std::vector<float> memory;
    float at(const Dims& index) const {
        int64_t offset = 0;
        for (size_t d = 0; d < index.size(); ++d) offset += index[d] * strides[d];
        return memory[static_cast<size_t>(offset)];
    }
};

// A view of `shape` whose memory is laid out in `order` (a permutation of the dims, slowest
// first): e.g. {0, 2, 1} for a transposed matrix in a batch. Broadcast dims get stride 0.
View make_view(const Dims& shape, const Dims& order, const std::vector<bool>& broadcast, std::mt19937& rng) {
    View v;
    v.shape = shape;
    v.strides.assign(shape.size(), 0);
    int64_t stride = 1;
    for (size_t i = order.size(); i-- > 0;) {
        const size_t d = static_cast<size_t>(order[i]);
        if (broadcast[d]) continue;
        v.strides[d] = stride;
        stride *= shape[d];
    }
    std::uniform_real_distribution<float> uniform(-1, 1);
    v.memory.resize(static_cast<size_t>(std::max<int64_t>(stride, 1)));
    for (float& x : v.memory) x = uniform(rng);
    return v;
}

// Element (row, col) of op(X) for a stored column-major matrix X, as cuBLAS reads it.
float op_element(const OperandLayout& layout, const float* base, int64_t row, int64_t col) {
    return layout.transpose ? base[col + row * layout.ld] : base[row + col * layout.ld];
}

// Runs the plan the way cuBLASLt does: D (m x n, column-major, ld m) = op(A) @ op(B), per batch
// and per call, A reading our b and B reading our a.
std::vector<float> run_plan(const MatmulPlan& plan, const View& a, const View& b, int64_t c_elements) {
    std::vector<float> c(static_cast<size_t>(c_elements), 0.0f);
    for (int64_t call = 0; call < plan.calls; ++call) {
        for (int64_t batch = 0; batch < plan.batch; ++batch) {
            const float* A = b.memory.data() + call * plan.b_call_offset + batch * plan.A.batch_stride;
            const float* B = a.memory.data() + call * plan.a_call_offset + batch * plan.B.batch_stride;
            float* D = c.data() + call * plan.c_call_offset + batch * plan.c_batch_stride;
            for (int64_t j = 0; j < plan.n; ++j)
                for (int64_t i = 0; i < plan.m; ++i) {
                    double sum = 0;
                    for (int64_t p = 0; p < plan.k; ++p)
                        sum += op_element(plan.A, A, i, p) * op_element(plan.B, B, p, j);
                    D[i + j * plan.m] = static_cast<float>(sum);
                }
        }
    }
    return c;
}

// The row-major product of the views, c contiguous.
std::vector<float> reference_product(const Dims& c_shape, const View& a, const View& b) {
    const size_t rank = c_shape.size();
    const int64_t M = c_shape[rank - 2], N = c_shape[rank - 1], K = a.shape[rank - 1];
    const int64_t batches = std::accumulate(c_shape.begin(), c_shape.end() - 2, int64_t{1}, std::multiplies<>());
    std::vector<float> c(static_cast<size_t>(batches * M * N));
    for (int64_t batch = 0; batch < batches; ++batch) {
        Dims index(rank, 0);
        for (int64_t rest = batch, d = static_cast<int64_t>(rank) - 3; d >= 0; --d) {
            index[static_cast<size_t>(d)] = rest % c_shape[static_cast<size_t>(d)];
            rest /= c_shape[static_cast<size_t>(d)];
        }
        auto operand_index = [&](const View& v, int64_t r, int64_t col) {
            Dims i = index;
            for (size_t d = 0; d + 2 < rank; ++d)
                if (v.shape[d] == 1) i[d] = 0;
            i[rank - 2] = r, i[rank - 1] = col;
            return i;
        };
        for (int64_t i = 0; i < M; ++i)
            for (int64_t j = 0; j < N; ++j) {
                double sum = 0;
                for (int64_t p = 0; p < K; ++p) sum += a.at(operand_index(a, i, p)) * b.at(operand_index(b, p, j));
                c[static_cast<size_t>((batch * M + i) * N + j)] = static_cast<float>(sum);
            }
    }
    return c;
}

// cuBLAS's validity rules for a stored column-major matrix.
void require_valid_layout(const OperandLayout& layout) {
    CHECK(layout.rows >= 1);
    CHECK(layout.cols >= 1);
    CHECK(layout.ld >= layout.rows);
    CHECK(layout.batch_stride >= 0);
}

struct Case {
    const char* name;
    Dims c_shape, a_shape, a_order, b_shape, b_order;
    std::vector<bool> a_broadcast, b_broadcast;
    int64_t expected_calls;
};

}  // namespace

TEST_CASE("plan_matmul: cuBLASLt layouts of strided views give the row-major product", "[cuda]") {
    std::mt19937 rng(7);
    const std::vector<Case> cases = {
        {"2-D, both contiguous", {5, 7}, {5, 3}, {0, 1}, {3, 7}, {0, 1}, {0, 0}, {0, 0}, 1},
        {"2-D, a transposed (x^T W)", {5, 7}, {5, 3}, {1, 0}, {3, 7}, {0, 1}, {0, 0}, {0, 0}, 1},
        {"2-D, b transposed (x W^T)", {5, 7}, {5, 3}, {0, 1}, {3, 7}, {1, 0}, {0, 0}, {0, 0}, 1},
        {"2-D, both transposed", {4, 6}, {4, 9}, {1, 0}, {9, 6}, {1, 0}, {0, 0}, {0, 0}, 1},
        {"2-D, one row", {1, 6}, {1, 5}, {0, 1}, {5, 6}, {0, 1}, {0, 0}, {0, 0}, 1},
        {"2-D, one column", {6, 1}, {6, 5}, {0, 1}, {5, 1}, {1, 0}, {0, 0}, {0, 0}, 1},
        {"3-D batch, b transposed (q k^T)",
         {3, 4, 5},
         {3, 4, 6},
         {0, 1, 2},
         {3, 6, 5},
         {0, 2, 1},
         {0, 0, 0},
         {0, 0, 0},
         1},
        {"3-D, b broadcast over the batch",
         {3, 4, 5},
         {3, 4, 6},
         {0, 1, 2},
         {1, 6, 5},
         {0, 1, 2},
         {0, 0, 0},
         {0, 0, 0},
         1},
        {"3-D, a batch-minor ([B, M, K] stored as [M, B, K])",
         {3, 4, 5},
         {3, 4, 6},
         {1, 0, 2},
         {3, 6, 5},
         {0, 1, 2},
         {0, 0, 0},
         {0, 0, 0},
         1},
        {"4-D heads [B, H, T, D] as views of [B, T, H, D]",
         {2, 3, 4, 5},
         {2, 3, 4, 6},
         {0, 2, 1, 3},
         {2, 3, 6, 5},
         {0, 3, 1, 2},
         {0, 0, 0, 0},
         {0, 0, 0, 0},
         2},
        {"4-D, both contiguous: one merged batch",
         {2, 3, 4, 5},
         {2, 3, 4, 6},
         {0, 1, 2, 3},
         {2, 3, 6, 5},
         {0, 1, 2, 3},
         {0, 0, 0, 0},
         {0, 0, 0, 0},
         1},
        {"4-D, b broadcast over the first batch dim",
         {2, 3, 4, 5},
         {2, 3, 4, 6},
         {0, 1, 2, 3},
         {1, 3, 6, 5},
         {0, 1, 2, 3},
         {0, 0, 0, 0},
         {0, 0, 0, 0},
         2},
        {"4-D, a expanded (stride 0) over heads",
         {2, 3, 4, 5},
         {2, 3, 4, 6},
         {0, 1, 2, 3},
         {2, 3, 6, 5},
         {0, 1, 2, 3},
         {0, 1, 0, 0},
         {0, 0, 0, 0},
         2},
    };
    for (const Case& test : cases) {
        const View a = make_view(test.a_shape, test.a_order, test.a_broadcast, rng);
        const View b = make_view(test.b_shape, test.b_order, test.b_broadcast, rng);
        const MatmulPlan plan = lab::cuda::plan_matmul(test.c_shape, a.shape, a.strides, b.shape, b.strides);
        INFO(test.name);
        REQUIRE_FALSE(plan.copy_a);
        REQUIRE_FALSE(plan.copy_b);
        require_valid_layout(plan.A);
        require_valid_layout(plan.B);
        CHECK(plan.calls == test.expected_calls);
        const int64_t c_elements =
            std::accumulate(test.c_shape.begin(), test.c_shape.end(), int64_t{1}, std::multiplies<>());
        const std::vector<float> got = run_plan(plan, a, b, c_elements);
        const std::vector<float> want = reference_product(test.c_shape, a, b);
        double difference = 0;
        for (size_t i = 0; i < want.size(); ++i) difference = std::max(difference, std::fabs(double(got[i]) - want[i]));
        std::printf("[plan_matmul] %-52s calls %lld x batch %lld, max diff %.1e\n", test.name,
                    static_cast<long long>(plan.calls), static_cast<long long>(plan.batch), difference);
        CHECK(difference < 1e-5);
    }
}

TEST_CASE("plan_matmul asks for a copy where cuBLASLt has no layout", "[cuda]") {
    // a [4, 6] viewed with strides (12, 2): neither rows nor columns contiguous.
    MatmulPlan plan = lab::cuda::plan_matmul({4, 5}, {4, 6}, {12, 2}, {6, 5}, {5, 1});
    CHECK(plan.copy_a);
    CHECK_FALSE(plan.copy_b);
    // b with stride-0 rows (an expanded row vector): ld would be 0.
    plan = lab::cuda::plan_matmul({4, 5}, {4, 6}, {6, 1}, {6, 5}, {0, 1});
    CHECK(plan.copy_b);
    CHECK_FALSE(plan.copy_a);
}

TEST_CASE("the cuda backend's Philox gives lab/rng.h's numbers on the host", "[cuda]") {
    const lab::RngKey keys[] = {{0, 0, 0},
                                {1234, 2, 0},
                                {0xfedcba9876543210ull, 0x0123456789abcdefull, 7},
                                {42, lab::kStreamDropout, 1ull << 33}};
    for (const lab::RngKey& key : keys) {
        for (uint64_t block = 0; block < 64; ++block) {
            const auto want = lab::philox_block(key.seed, key.stream, block);
            const auto got = lab::cuda::philox_block(key.seed, key.stream, block);
            for (int w = 0; w < 4; ++w) REQUIRE(got.w[w] == want[static_cast<size_t>(w)]);
        }
        for (uint64_t i = 0; i < 1000; i += 7)
            REQUIRE(lab::cuda::philox_uniform(key.seed, key.stream, key.offset, i) == lab::philox_uniform(key, i));
    }
}
