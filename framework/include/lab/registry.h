// The plugin registry: factories by (kind, name), each with its option schema, loaded from
// shared libraries through Boost.DLL.
//
// A plugin library exports two C symbols (written for it by the LAB_PLUGIN macro in plugin.h):
//   lab_plugin_abi       -> the ABI tag the plugin was compiled with (LAB_ABI_TAG, lab/version.h:
//                           the SDK ABI number of lab/sdk_abi.h and the compiler's C++ ABI)
//   lab_plugin_register  -> registers the plugin's factories
// The registry refuses a library whose tag differs from liblab's. Libraries are never unloaded:
// objects a plugin made may live until exit (see load_library).
#pragma once
#include <any>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "lab/attention.h"
#include "lab/backend.h"
#include "lab/build_context.h"
#include "lab/kernels.h"
#include "lab/model.h"
#include "lab/optimizer.h"
#include "lab/options.h"
#include "lab/task.h"
#include "lab/tokenizer.h"

namespace lab {

// Checks and estimates made from options alone, before anything is built (lab/run_plan.h): what
// `labrun --dry-run` and the run both call when an experiment is resolved.
using ValidateHook = std::function<void(const PlanContext&)>;
using EstimateHook = std::function<PluginEstimate(const PlanContext&)>;

using BackendFactory = std::function<std::shared_ptr<Backend>(const Options&)>;
using TokenizerFactory = std::function<std::shared_ptr<Tokenizer>(const Options&, BuildContext&)>;
using AttentionFactory =
    std::function<std::shared_ptr<Attention>(const Options&, const AttentionShape&, BuildContext&)>;
using ModelFactory = std::function<std::shared_ptr<Model>(const Options&, BuildContext&)>;
using OptimizerFactory = std::function<std::shared_ptr<Optimizer>(const Options&, NamedTensors, BuildContext&)>;
using ScheduleFactory = std::function<std::shared_ptr<Schedule>(const Options&, const ScheduleContext&)>;
using TaskFactory = std::function<std::shared_ptr<Task>(const Options&, BuildContext&)>;

// What a plugin says about one of its factories.
struct PluginDecl {
    PluginDecl(std::string name_, std::string version_, std::string description_, OptionSchema schema_ = {})
        : name(std::move(name_)), version(std::move(version_)), description(std::move(description_)),
          schema(std::move(schema_)) {}

    std::string name;
    std::string version;
    std::string description;
    OptionSchema schema;
    // Attention plugins: what the variant supports, and where it equals attention/softmax.
    AttentionTraits attention;
    // Model and task plugins: what they need of the experiment's attention. An experiment whose
    // attention lacks one is refused when it is resolved (before any data is read).
    AttentionCapabilities needs_attention;
    // Cross-option rules (heads dividing hidden, seq_len within the model's positions, ...),
    // checked when the experiment is resolved, before any data is read: throws ConfigError naming
    // the keys, what was expected and what to change. The factory calls the same rule functions,
    // so each rule is written once. Empty: the schema's per-option checks are all there is.
    ValidateHook validate;
    // What the plugin will allocate, from its options alone: parameters (exactly), activations per
    // token, optimizer state, a vocabulary size the options fix (PluginEstimate). Used to refuse a
    // run that cannot fit before building it. Empty: the plugin allocates nothing worth counting.
    EstimateHook estimate;
};

struct PluginInfo {
    std::string kind, name, version, description;
    std::string file;  // the shared library, or "<builtin>" for factories added in-process
    OptionSchema schema;
    AttentionTraits attention;
    AttentionCapabilities needs_attention;
    ValidateHook validate;  // PluginDecl::validate
    EstimateHook estimate;  // PluginDecl::estimate
    std::any factory;
};

// The sha256 of the library `info` came from, in hex ("" for a factory built into the host): what
// the plugins table records of a run, so that a rerun can tell two builds of a plugin apart.
std::string plugin_sha256(const PluginInfo& info);

class Registry {
public:
    static const std::vector<std::string>& kinds();  // the names of plugin_kinds() (plugin_kinds.h), in its order
    static std::string abi_tag();                     // liblab's tag

    // Loads one plugin library. Throws PluginError naming the file (missing file, not a plugin,
    // ABI tag mismatch with both SDK ABI numbers and tags and how to rebuild, duplicate registration).
    void load_library(const std::filesystem::path& file);
    // Loads every *.so in a directory (sorted by name). Throws if the directory does not exist.
    void load_directory(const std::filesystem::path& dir);

    void add_backend(PluginDecl decl, BackendFactory f) { add("backend", std::move(decl), std::move(f)); }
    void add_tokenizer(PluginDecl decl, TokenizerFactory f) { add("tokenizer", std::move(decl), std::move(f)); }
    // The factory is wrapped so that every object it builds carries decl.attention.supports
    // (Attention::capabilities()): the declaration is the one statement of what a variant supports.
    void add_attention(PluginDecl decl, AttentionFactory f);
    void add_model(PluginDecl decl, ModelFactory f) { add("model", std::move(decl), std::move(f)); }
    void add_optimizer(PluginDecl decl, OptimizerFactory f) { add("optimizer", std::move(decl), std::move(f)); }
    void add_schedule(PluginDecl decl, ScheduleFactory f) { add("schedule", std::move(decl), std::move(f)); }
    void add_task(PluginDecl decl, TaskFactory f) { add("task", std::move(decl), std::move(f)); }
    // Kernels for operations that plugins define (lab/kernels.h): an optimizer's update, say,
    // registered from LAB_PLUGIN and run through ctx.registry->kernels().
    KernelRegistry& kernels() { return kernels_; }
    const KernelRegistry& kernels() const { return kernels_; }

    // Throws PluginError for an unknown kind or name, listing the known names of that kind and
    // the closest match; for an unknown name also the ways to load more plugins and the folders
    // and files this registry has loaded from.
    const PluginInfo& find(const std::string& kind, const std::string& name) const;
    bool has(const std::string& kind, const std::string& name) const;
    std::vector<const PluginInfo*> list() const;  // sorted by kind, then name
    std::vector<std::string> names(const std::string& kind) const;
    std::vector<std::filesystem::path> loaded_files() const { return files_; }
    // The folders given to load_directory and the files given to load_library, in that order.
    std::vector<std::filesystem::path> searched_paths() const { return searched_; }

    template <class Factory>
    const Factory& factory(const std::string& kind, const std::string& name) const {
        return std::any_cast<const Factory&>(find(kind, name).factory);
    }

private:
    void add(const std::string& kind, PluginDecl decl, std::any factory);
    void load_file(const std::filesystem::path& file);
    std::map<std::pair<std::string, std::string>, PluginInfo> plugins_;
    KernelRegistry kernels_;
    std::vector<std::filesystem::path> files_;
    std::vector<std::filesystem::path> searched_;
    std::string loading_file_ = "<builtin>";
};

// The options of plugin kind/name from plain key -> value text (tests, benchmarks, tools that make
// a plugin outside an experiment file), validated against its schema; `origin` names the source
// in errors. Throws PluginError for an unknown plugin, ConfigError for a bad option.
Options plugin_options(const Registry& registry, const std::string& kind, const std::string& name,
                       const std::map<std::string, std::string>& values, const std::string& origin = "arguments");

}  // namespace lab
