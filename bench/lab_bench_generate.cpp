// lab_bench_generate: times labrun's text generation (lab::generate, batch 1, greedy) with the KV
// cache and by recomputing the whole context, on a GPT with GPT-2's initialisation. --save writes
// the weights (Hugging Face GPT2Model names) so that bench/hf_generate.py can time transformers'
// generate on the very same model; bench/generate.sh runs the two and prints the ratio.
// Prints one JSON line.
#include <omp.h>

#include <boost/program_options.hpp>
#include <algorithm>
#include <iostream>
#include <sstream>

#include "bench_main.h"
#include "bench_gpt_model.h"
#include "lab/generate.h"
#include "lab/safetensors.h"

namespace po = boost::program_options;

namespace {

std::string json_ids(const std::vector<int32_t>& ids, size_t from) {
    std::ostringstream out;
    out << '[';
    for (size_t i = from; i < ids.size(); ++i) out << (i > from ? "," : "") << ids[i];
    out << ']';
    return out.str();
}

// The median of `repeats` generations (after one untimed warm-up); returns the last generation.
lab::Generation timed(lab::Model& model, const std::vector<int32_t>& prompt, lab::SamplingOptions options,
                      int64_t repeats, double* median_seconds) {
    lab::SamplingOptions warm = options;
    warm.max_tokens = std::min<int64_t>(options.max_tokens, 8);
    lab::generate(model, prompt, warm);
    std::vector<double> seconds;
    lab::Generation g;
    for (int64_t r = 0; r < repeats; ++r) {
        g = lab::generate(model, prompt, options);
        seconds.push_back(g.seconds);
    }
    std::sort(seconds.begin(), seconds.end());
    *median_seconds = seconds[seconds.size() / 2];
    return g;
}

int run(int argc, char** argv) {
    lab_bench::GptShape shape;
    int64_t prompt_tokens, new_tokens, threads, repeats;
    std::string save;
    bool no_cache_too;
    po::options_description desc(
        "lab_bench_generate: time labrun's batch-1 greedy generation with and without the KV cache\n"
        "Options");
    desc.add_options()("help", "show this help")
        ("layers", po::value(&shape.layers)->default_value(6), "transformer blocks")
        ("heads", po::value(&shape.heads)->default_value(6), "attention heads")
        ("hidden", po::value(&shape.hidden)->default_value(384), "model width")
        ("context", po::value(&shape.seq_len)->default_value(512), "learned positions (prompt + new tokens must fit)")
        ("vocab", po::value(&shape.vocab)->default_value(50257), "vocabulary size (GPT-2's: 50257)")
        ("bias", po::value(&shape.bias)->default_value(true), "biases in linear layers and LayerNorms (GPT-2: true)")
        ("prompt-tokens", po::value(&prompt_tokens)->default_value(16), "random prompt length")
        ("new-tokens", po::value(&new_tokens)->default_value(256), "tokens to generate")
        ("repeats", po::value(&repeats)->default_value(3), "timed generations (the median is reported)")
        ("no-cache-too", po::bool_switch(&no_cache_too), "also time generation without the KV cache")
        ("threads", po::value(&threads)->default_value(2), "OpenMP threads")
        ("save", po::value(&save), "write the weights to this .safetensors file (with the prompt as metadata)")
        ("backend", po::value(&shape.backend)->default_value("onednn"), "backend plugin")
        ("plugin-dir", po::value(&shape.plugin_dir)->default_value(LAB_PLUGIN_DIR), "plugin folder");
    if (!lab_bench::parse_options(argc, argv, desc)) return 0;
    if (prompt_tokens < 1 || new_tokens < 1 || repeats < 1)
        throw lab::ConfigError("--prompt-tokens, --new-tokens and --repeats must be at least 1");
    if (prompt_tokens + new_tokens > shape.seq_len)
        throw lab::ConfigError("--prompt-tokens + --new-tokens = " + std::to_string(prompt_tokens + new_tokens) +
                               " do not fit --context " + std::to_string(shape.seq_len));
    omp_set_num_threads(static_cast<int>(threads));

    auto gpt = lab_bench::make_bench_gpt(shape);
    lab::Generator prompt_rng(1, lab::kStreamData);
    std::vector<int32_t> prompt(static_cast<size_t>(prompt_tokens));
    for (auto& id : prompt) id = static_cast<int32_t>(prompt_rng.uniform_int(static_cast<uint64_t>(shape.vocab)));

    if (!save.empty()) {
        lab::Metadata meta{{"prompt", json_ids(prompt, 0)},
                           {"layers", std::to_string(shape.layers)},
                           {"heads", std::to_string(shape.heads)},
                           {"hidden", std::to_string(shape.hidden)},
                           {"context", std::to_string(shape.seq_len)},
                           {"vocab", std::to_string(shape.vocab)},
                           {"bias", shape.bias ? "true" : "false"},
                           {"activation", "gelu"},
                           {"ln_eps", "1e-05"}};
        lab::save_safetensors(save, gpt->model->export_state(), meta);
    }

    lab::SamplingOptions options;
    options.max_tokens = new_tokens;
    options.temperature = 0;  // greedy: both implementations pick the same tokens
    double cached_s = 0, uncached_s = 0;
    lab::Generation g = timed(*gpt->model, prompt, options, repeats, &cached_s);
    if (!g.used_kv_cache) throw lab::ConfigError("the model did not use its KV cache");
    if (no_cache_too) {
        options.kv_cache = false;
        lab::Generation full = timed(*gpt->model, prompt, options, 1, &uncached_s);
        if (full.ids != g.ids) std::cerr << "lab_bench_generate: warning: cached and uncached tokens differ\n";
    }
    auto per_s = [&](double s) { return s > 0 ? static_cast<double>(g.new_tokens) / s : 0.0; };
    std::cout << "{\"impl\":\"labrun-" << shape.backend << "\",\"config\":{\"layers\":" << shape.layers
              << ",\"heads\":" << shape.heads << ",\"hidden\":" << shape.hidden << ",\"context\":" << shape.seq_len
              << ",\"vocab\":" << shape.vocab << ",\"bias\":" << (shape.bias ? "true" : "false")
              << "},\"prompt_tokens\":" << prompt_tokens << ",\"new_tokens\":" << g.new_tokens
              << ",\"seconds\":" << cached_s << ",\"tokens_per_s\":" << per_s(cached_s)
              << ",\"tokens_per_s_no_cache\":" << (no_cache_too ? per_s(uncached_s) : 0.0)
              << ",\"threads\":" << threads << ",\"repeats\":" << repeats
              << ",\"ids\":" << json_ids(g.ids, prompt.size()) << ",\"device\":\"" << gpt->backend->device_info()
              << "\"}\n";
    return 0;
}

}  // namespace

int main(int argc, char** argv) { return lab_bench::main_with_errors("lab_bench_generate", run, argc, argv); }
