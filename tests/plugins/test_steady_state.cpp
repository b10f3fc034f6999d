// The steady state of training on the oneDNN backend, and on the cuda backend where a GPU is:
// after the first steps have filled the caching allocator and the primitive cache, a training step
// (lab::train_step, the step labrun takes: batch, loss, backward, clipping, AdamW) allocates no new
// memory from the system (cudaMalloc on the GPU) and builds no new primitive (oneDNN primitive,
// cuBLASLt plan or cuDNN graph). Counted by the backend (BackendStats: the allocator's calls to
// the underlying allocator, the primitives created), over GPT and BERT experiments.
#include <catch2/catch.hpp>

#include "cuda_test_support.h"
#include "lab/config.h"
#include "lab/trainer.h"
#include "test_support.h"

namespace {

struct Counts {
    uint64_t device_allocs = 0, requests = 0, primitives = 0, cache_hits = 0;
};

Counts counts(const lab::Backend& backend) {
    lab::BackendStats s = backend.stats();
    return {s.memory.device_allocs, s.memory.requests, s.primitives_created, s.primitive_cache_hits};
}

// What both experiments share: the oneDNN backend, softmax attention, AdamW, small batches.
const char* kCommon = R"(
[backend]
type = onednn
[attention]
type = softmax
[optimizer]
type = adamw
[train]
steps = 8
batch = 4
seq_len = 32
grad_clip = 1.0
)";

// Steps 1..steps of the experiment kCommon + `ini` (later sections add to or override it); the
// counts after each.
std::vector<Counts> step_counts(const std::string& ini, int64_t steps) {
    lab_test::TempDir dir;
    lab::Registry registry;
    registry.load_directory(LAB_PLUGIN_DIR);
    lab::ConfigEnv env;
    env.data_dir = lab_test::shakespeare_data_dir();
    lab::RawConfig raw = lab::load_config(dir.write("steady.ini", kCommon + ini), {}, env);
    lab::RunSpec spec = lab::resolve_run(raw, registry);
    lab::RunEnvironment run_env;
    run_env.data_dir = env.data_dir;
    run_env.quiet = true;
    lab::TrainingStack stack = lab::build_training_stack(spec, registry, run_env);
    std::vector<Counts> out;
    for (int64_t step = 1; step <= steps; ++step) {
        lab::train_step(stack, step);
        out.push_back(counts(*stack.backend));
    }
    return out;
}

void check_steady_after_step_3(const std::vector<Counts>& c, const std::string& what) {
    INFO(what);
    for (size_t i = 3; i < c.size(); ++i) {
        INFO("step " << i + 1 << " against step 3");
        CHECK(c[i].device_allocs == c[2].device_allocs);
        CHECK(c[i].primitives == c[2].primitives);
    }
    // The counters move: every step asks the allocator for memory and runs cached primitives.
    CHECK(c.back().requests > c[2].requests);
    CHECK(c.back().cache_hits > c[2].cache_hits);
    CHECK(c[2].primitives > 10);
    std::printf("[steady] %s: after step 3: %llu system allocations, %llu primitives; steps 4-%zu add %llu and %llu "
                "(%llu allocator requests and %llu primitive reuses per step)\n",
                what.c_str(), static_cast<unsigned long long>(c[2].device_allocs),
                static_cast<unsigned long long>(c[2].primitives), c.size(),
                static_cast<unsigned long long>(c.back().device_allocs - c[2].device_allocs),
                static_cast<unsigned long long>(c.back().primitives - c[2].primitives),
                static_cast<unsigned long long>((c.back().requests - c[2].requests) / (c.size() - 3)),
                static_cast<unsigned long long>((c.back().cache_hits - c[2].cache_hits) / (c.size() - 3)));
}

const char* kGpt = R"(
[tokenizer]
type = char
[task]
type = causal_lm
train = ${data}/tinyshakespeare/input.txt
[model]
type = gpt
layers = 2
heads = 2
hidden = 64
dropout = 0.1
)";

}  // namespace

TEST_CASE("steady state: GPT training steps allocate nothing and build no primitive after step 3", "[steady]") {
    check_steady_after_step_3(step_counts(std::string(kGpt) + "[attention]\nfused = false\n", 8),
                              "gpt, composite softmax attention, dropout 0.1");
    check_steady_after_step_3(step_counts(std::string(kGpt) + "[attention]\nfused = true\n", 8),
                              "gpt, fused softmax attention");
}

TEST_CASE("steady state: bf16 GPT training steps allocate nothing and build no primitive after step 3",
          "[steady][mixed]") {
    // precision = bf16 rounds operands into new tensors and runs bf16 primitives with a scratchpad
    // of the backend's: all of it must come from the caches after the first steps too.
    const std::string bf16 = "[experiment]\nprecision = bf16\n";
    check_steady_after_step_3(step_counts(std::string(kGpt) + bf16 + "[attention]\nfused = false\n", 8),
                              "gpt, bf16, composite softmax attention");
    check_steady_after_step_3(step_counts(std::string(kGpt) + bf16 + "[attention]\nfused = true\n", 8),
                              "gpt, bf16, fused softmax attention");
}

TEST_CASE("steady state: BERT masked-LM steps allocate nothing and build no primitive after step 3", "[steady]") {
    const std::string bert = R"(
[tokenizer]
type = wordpiece
vocab = ${data}/bert-base-uncased/vocab.txt
[task]
type = mlm
train = ${data}/wikitext-2/valid.txt
mask_count = fixed
[model]
type = bert
layers = 2
hidden = 64
heads = 2
intermediate = 128
[schedule]
type = linear
warmup = 2
)";
    check_steady_after_step_3(step_counts(bert, 8), "bert mlm, mask_count = fixed");
}

TEST_CASE("cuda steady state: a warm training step makes no cudaMalloc and builds no plan", "[steady][cuda]") {
    CUDA_BACKEND_OR_SKIP(cuda);
    cuda.reset();  // the experiments make their own
    const std::string gpt = std::string(kGpt) + "[backend]\ntype = cuda\n";
    check_steady_after_step_3(step_counts(gpt + "[attention]\nfused = true\n", 8),
                              "cuda: gpt, fused attention, dropout 0.1, f32");
    check_steady_after_step_3(
        step_counts(gpt + "[attention]\nfused = true\n[experiment]\nprecision = bf16\n[model]\ndropout = 0\n", 8),
        "cuda: gpt, fused attention, bf16 (cuBLASLt bf16, cuDNN attention)");
    check_steady_after_step_3(step_counts(gpt, 8), "cuda: gpt, composite attention, dropout 0.1, f32");
}
