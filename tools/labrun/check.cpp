// labrun --check: the attention conformance check from the command line (check.h).
#include "check.h"

#include <omp.h>

#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "lab/attention_check.h"
#include "lab/error.h"
#include "lab/hash.h"
#include "lab/results.h"

namespace {

// "attention/NAME" or "NAME" -> NAME.
std::string attention_name(const std::string& target) {
    std::string name = target;
    auto slash = target.find('/');
    if (slash != std::string::npos) {
        if (target.substr(0, slash) != "attention")
            throw lab::ConfigError("--check " + target +
                                   ": only attention plugins have a conformance check; give attention/NAME, e.g. "
                                   "--check attention/softmax");
        name = target.substr(slash + 1);
    }
    if (name.empty())
        throw lab::ConfigError("--check '" + target + "': no plugin name; give attention/NAME, e.g. attention/softmax");
    return name;
}

std::map<std::string, std::string> parse_plugin_options(const std::vector<std::string>& args) {
    std::map<std::string, std::string> options;
    for (size_t i = 1; i < args.size(); ++i) {
        auto eq = args[i].find('=');
        if (eq == std::string::npos || eq == 0)
            throw lab::ConfigError("--check: argument '" + args[i] +
                                   "' is not key=value; give the plugin's options as key=value, e.g. fused=true");
        std::string key = args[i].substr(0, eq);
        if (options.count(key))
            throw lab::ConfigError("--check: option '" + key + "' is given twice ('" + key + "=" + options[key] +
                                   "' and '" + args[i] + "'); give each option once");
        options[key] = args[i].substr(eq + 1);
    }
    return options;
}

std::vector<int64_t> parse_lengths(const std::string& text) {
    std::vector<int64_t> lengths;
    std::stringstream in(text);
    for (std::string item; std::getline(in, item, ',');) {
        int64_t value = 0;
        if (!lab::Options::parse_int(item, &value) || value < 1)
            throw lab::ConfigError("--profile-lengths '" + text + "': '" + item +
                                   "' is not a positive integer; give sequence lengths like 128,256,512");
        lengths.push_back(value);
    }
    if (lengths.empty())
        throw lab::ConfigError("--profile-lengths '" + text + "' names no length; give e.g. 128,256 (or --no-profile)");
    return lengths;
}

std::string join_lengths(const std::vector<int64_t>& lengths) {
    std::string out;
    for (int64_t n : lengths) {
        if (!out.empty()) out += ",";
        out += std::to_string(n);
    }
    return out;
}

std::string source_revision() {
#ifdef LAB_SOURCE_DIR
    return lab::code_revision(LAB_SOURCE_DIR);
#else
    return "unknown";
#endif
}

// The run's params and its configuration text (hashed into runs.config_hash).
struct CheckRecord {
    std::vector<std::pair<std::string, std::string>> params;
    std::string config_text;
};

CheckRecord describe_check(const std::string& name, const lab::Options& options, const std::string& backend,
                           const lab::AttentionCheckSettings& settings) {
    CheckRecord record;
    record.params = {{"check.plugin", "attention/" + name},
                     {"check.profile_lengths", join_lengths(settings.profile_lengths)},
                     {"experiment.backend", backend},
                     {"experiment.seed", std::to_string(settings.seed)},
                     {"check.rope", settings.rope ? "true" : "false"},
                     {"attention.type", name}};
    for (const auto& [key, value] : options.values()) record.params.emplace_back("attention." + key, value.text);
    for (const auto& [key, value] : record.params) record.config_text += key + " = " + value + "\n";
    return record;
}

void add_plugin(lab::ResultStore& store, int64_t run, const lab::PluginInfo& info) {
    store.add_plugin(run, info.kind, info.name, info.version, info.file, lab::plugin_sha256(info),
                     lab::Registry::abi_tag());
}

}  // namespace

int run_attention_check(const lab::Registry& registry, const std::vector<std::string>& args,
                        const CheckCliOptions& cli) {
    std::ostream& out = cli.out ? *cli.out : std::cout;
    if (args.empty())
        throw lab::ConfigError("--check needs a plugin: labrun --check attention/NAME [key=value ...]");
    const std::string name = attention_name(args[0]);

    lab::AttentionCheckSettings settings;
    settings.options = parse_plugin_options(args);
    settings.seed = cli.seed;
    settings.rope = cli.rope;
    if (cli.no_profile) settings.profile_lengths.clear();
    else if (!cli.profile_lengths.empty()) settings.profile_lengths = parse_lengths(cli.profile_lengths);
    // Every argument is checked before anything runs or is recorded.
    const lab::PluginInfo& info = registry.find("attention", name);
    const lab::Options options = lab::plugin_options(registry, "attention", name, settings.options, "--check");

    const std::string backend_name =
        !cli.backend.empty() ? cli.backend : registry.has("backend", "onednn") ? "onednn" : "reference";
    std::shared_ptr<lab::Backend> backend = registry.factory<lab::BackendFactory>("backend", backend_name)(
        lab::plugin_options(registry, "backend", backend_name, {}, "--backend"));

    std::unique_ptr<lab::ResultStore> store;
    int64_t run = 0;
    if (!cli.db.empty()) {
        store = std::make_unique<lab::ResultStore>(cli.db);
        store->mark_interrupted_runs();
        CheckRecord described = describe_check(name, options, backend_name, settings);
        lab::RunRecord record;
        record.name = "check attention/" + name;
        record.experiment = record.name;
        record.config_text = described.config_text;
        record.config_hash = lab::sha256_hex(described.config_text);
        record.backend = backend_name;
        record.device = backend->device_info();
        record.precision = "fp32";
        record.host = lab::host_name();
        record.code_revision = source_revision();
        record.seed = static_cast<int64_t>(settings.seed);
        record.threads = omp_get_max_threads();
        record.libraries = nlohmann::json(backend->library_versions()).dump();
        run = store->begin_run(record, described.params);
        add_plugin(*store, run, info);
        add_plugin(*store, run, registry.find("backend", backend_name));
    }

    out << "checking attention/" << name << " on " << backend->device_info() << "\n";
    lab::AttentionCheckReport report;
    try {
        report = lab::check_attention(registry, *backend, name, settings);
    } catch (const std::exception& e) {
        if (store) store->finish_run(run, lab::RunStatus::failed, e.what());
        throw;
    }
    out << report.format();

    if (store) {
        std::string failures;
        for (const lab::AttentionCheckResult& check : report.checks) {
            if (check.status == lab::AttentionCheckResult::Status::skipped) continue;
            bool passed = check.status == lab::AttentionCheckResult::Status::passed;
            store->add_metric(run, 0, "check/" + check.name, passed ? 1.0 : 0.0);
            if (!passed) failures += (failures.empty() ? "" : "; ") + check.name + ": " + check.detail;
        }
        for (const lab::AttentionCostRow& row : report.profile) {
            if (!row.error.empty()) continue;  // the failure is in the report text
            store->add_metric(run, row.seq_len, "cost/forward_ms", row.forward_ms);
            store->add_metric(run, row.seq_len, "cost/train_ms", row.train_ms);
            store->add_metric(run, row.seq_len, "cost/peak_mem_mb", row.peak_mb);
        }
        store->add_text(run, 0, "check/report", report.format());
        if (report.passed()) store->finish_run(run, lab::RunStatus::finished, "");
        else store->finish_run(run, lab::RunStatus::failed, "conformance check failed: " + failures);
        out << "recorded as run " << run << " in " << cli.db << "\n";
    }
    return report.passed() ? 0 : 1;
}
