#include "lab/registry.h"

#include <algorithm>
#include <dlfcn.h>

#include <boost/dll/shared_library.hpp>

#include "lab/error.h"
#include "lab/hash.h"
#include "lab/plugin_kinds.h"
#include "lab/version.h"

namespace lab {

const std::vector<std::string>& Registry::kinds() {
    static const std::vector<std::string> k = [] {
        std::vector<std::string> names;
        for (const PluginKind& kind : plugin_kinds()) names.push_back(kind.name);
        return names;
    }();
    return k;
}

std::string Registry::abi_tag() { return LAB_ABI_TAG; }

std::string plugin_sha256(const PluginInfo& info) { return info.file == "<builtin>" ? "" : sha256_file(info.file); }

namespace {

// Where a registry looked, for the error about a name it does not know.
std::string searched_text(const std::vector<std::filesystem::path>& searched) {
    if (searched.empty()) return "nowhere yet (no plugin folder or file was loaded)";
    return join(std::vector<std::string>(searched.begin(), searched.end()), ", ");
}

void remember(std::vector<std::filesystem::path>& searched, const std::filesystem::path& p) {
    if (std::find(searched.begin(), searched.end(), p) == searched.end()) searched.push_back(p);
}

// A tag "lab-sdk<N>/<compiler>" split into N and the compiler part; N = -1 for a tag of another
// shape (a labrun from before numbered SDK ABIs wrote "lab-<project version>/...", a foreign
// library anything at all).
struct AbiTag {
    long sdk_abi = -1;
    std::string compiler;
};

AbiTag parse_abi_tag(const std::string& tag) {
    static const std::string prefix = "lab-sdk";
    AbiTag parsed;
    const size_t slash = tag.find('/');
    if (tag.rfind(prefix, 0) != 0 || slash == std::string::npos || slash == prefix.size()) return parsed;
    const std::string digits = tag.substr(prefix.size(), slash - prefix.size());
    if (digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) return parsed;
    parsed.sdk_abi = std::stol(digits);
    parsed.compiler = tag.substr(slash + 1);
    return parsed;
}

// Why a plugin with `tag` is refused, naming both SDK ABI numbers (or what the plugin's tag is
// instead) and how to rebuild it. The rebuild is the same in every case: compile the plugin again
// against this labrun's installed headers, with the compiler labrun was built with.
std::string abi_mismatch(const std::filesystem::path& file, const std::string& tag) {
    const AbiTag theirs = parse_abi_tag(tag);
    const AbiTag ours = parse_abi_tag(LAB_ABI_TAG);
    const std::string this_sdk = "this labrun's SDK ABI is " + std::to_string(LAB_SDK_ABI) + " ('" + LAB_ABI_TAG + "')";
    std::string what;
    if (theirs.sdk_abi >= 0 && theirs.sdk_abi != ours.sdk_abi) {
        what = "was built against SDK ABI " + std::to_string(theirs.sdk_abi) + " ('" + tag + "', " +
               (theirs.sdk_abi < ours.sdk_abi ? "older" : "newer") + " than this labrun's) but " + this_sdk +
               ": the two SDKs' headers declare different classes and functions, so calls between labrun and "
               "the plugin could reach the wrong code";
    } else if (theirs.sdk_abi >= 0) {
        what = "was built against SDK ABI " + std::to_string(theirs.sdk_abi) + ", as this labrun, but with compiler ABI '" +
               theirs.compiler + "' ('" + tag + "') where " + this_sdk + ", compiler ABI '" + ours.compiler +
               "'; C++ classes do not cross compiler majors or libstdc++ string ABIs";
    } else if (tag.rfind("lab-", 0) == 0) {
        what = "was built against a labrun SDK from before numbered SDK ABIs ('" + tag + "') but " + this_sdk;
    } else {
        what = "exports ABI tag '" + tag + "', which is not a labrun SDK tag (lab-sdk<N>/gcc-<major>/cxx11abi-<n>); " +
               this_sdk;
    }
    return "plugin '" + file.string() + "' " + what +
           ". Fix: rebuild the plugin against this labrun's SDK with GCC " + std::to_string(__GNUC__) +
           ": in the labrun tree `cmake --build <build folder>`; out of the tree, configure the plugin's project "
           "with -DCMAKE_PREFIX_PATH=<the prefix this labrun was installed to> and build it again "
           "(docs/writing-a-plugin.md)";
}

}  // namespace

void Registry::load_library(const std::filesystem::path& file) {
    load_file(file);
    remember(searched_, file);
}

void Registry::load_file(const std::filesystem::path& file) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(file, ec))
        throw PluginError("plugin '" + file.string() + "': no such file; check the path (plugins are the .so files " +
                          "in the build's plugins/ folder, LAB_PLUGIN_PATH or [experiment] plugins)");
    std::filesystem::path canonical = std::filesystem::canonical(file, ec);
    if (ec) canonical = std::filesystem::absolute(file);
    if (std::find(files_.begin(), files_.end(), canonical) != files_.end()) return;  // already loaded

    // Libraries are never unloaded: objects a plugin made (and their vtables) may live until exit,
    // so each handle is deliberately kept alive for the life of the process.
    auto* lib = new boost::dll::shared_library();
    boost::dll::fs::error_code load_error;
    lib->load(canonical, boost::dll::load_mode::rtld_lazy | boost::dll::load_mode::rtld_local, load_error);
    if (load_error) {
        // Boost.DLL reports a generic error code; the dynamic loader's own text says what failed.
        const char* reason = dlerror();
        delete lib;
        throw PluginError("plugin '" + canonical.string() + "' could not be loaded: " +
                          (reason ? std::string(reason) : load_error.message()) +
                          "; is it a shared library built for this machine, with its dependencies installed?");
    }
    if (!lib->has("lab_plugin_abi") || !lib->has("lab_plugin_register")) {
        delete lib;
        throw PluginError("'" + canonical.string() +
                          "' is not a labrun plugin: it exports no lab_plugin_abi/lab_plugin_register; plugins "
                          "end with LAB_PLUGIN(registry) { ... } (see docs/writing-a-plugin.md)");
    }
    std::string tag = lib->get<const char*()>("lab_plugin_abi")();
    if (tag != abi_tag()) {
        delete lib;
        throw PluginError(abi_mismatch(canonical, tag));
    }
    std::string previous = loading_file_;
    loading_file_ = canonical.string();
    try {
        lib->get<void(Registry&)>("lab_plugin_register")(*this);
    } catch (...) {
        loading_file_ = previous;
        throw;  // the library stays loaded: some of its factories may already be registered
    }
    loading_file_ = previous;
    files_.push_back(canonical);
}

void Registry::load_directory(const std::filesystem::path& dir) {
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec))
        throw PluginError("plugin folder '" + dir.string() + "' does not exist or is not a folder");
    std::vector<std::filesystem::path> libs;
    for (const auto& entry : std::filesystem::directory_iterator(dir))
        if (entry.is_regular_file() && entry.path().extension() == ".so") libs.push_back(entry.path());
    std::sort(libs.begin(), libs.end());
    remember(searched_, dir);
    for (const auto& lib : libs) load_file(lib);
}

void Registry::add(const std::string& kind, PluginDecl decl, std::any factory) {
    const auto& k = kinds();
    if (std::find(k.begin(), k.end(), kind) == k.end())
        throw PluginError("unknown plugin kind '" + kind + "' (known: " + join(k, ", ") + ")");
    if (decl.name.empty()) throw PluginError("a " + kind + " plugin in '" + loading_file_ + "' has an empty name");
    auto key = std::make_pair(kind, decl.name);
    auto it = plugins_.find(key);
    if (it != plugins_.end())
        throw PluginError(kind + " '" + decl.name + "' is registered twice: by '" + it->second.file + "' and by '" +
                          loading_file_ + "'; remove one of them from the plugin path or rename it");
    PluginInfo info;
    info.kind = kind;
    info.name = std::move(decl.name);
    info.version = std::move(decl.version);
    info.description = std::move(decl.description);
    info.file = loading_file_;
    info.schema = std::move(decl.schema);
    info.attention = std::move(decl.attention);
    info.needs_attention = decl.needs_attention;
    info.validate = std::move(decl.validate);
    info.estimate = std::move(decl.estimate);
    info.factory = std::move(factory);
    plugins_.emplace(key, std::move(info));
}

void Registry::add_attention(PluginDecl decl, AttentionFactory f) {
    AttentionFactory declared = [f = std::move(f), supports = decl.attention.supports](
                                    const Options& opts, const AttentionShape& shape, BuildContext& ctx) {
        std::shared_ptr<Attention> built = f(opts, shape, ctx);
        if (built) built->capabilities_ = supports;
        return built;
    };
    add("attention", std::move(decl), std::move(declared));
}

const PluginInfo& Registry::find(const std::string& kind, const std::string& name) const {
    const auto& k = kinds();
    if (std::find(k.begin(), k.end(), kind) == k.end()) {
        std::string hint = closest_match(kind, k);
        throw PluginError("unknown plugin kind '" + kind + "'" + (hint.empty() ? "" : "; did you mean '" + hint + "'?") +
                          " (known: " + join(k, ", ") + ")");
    }
    auto it = plugins_.find({kind, name});
    if (it != plugins_.end()) return it->second;
    std::vector<std::string> known = names(kind);
    std::string hint = closest_match(name, known);
    throw PluginError("unknown " + kind + " '" + name + "'" + (hint.empty() ? "" : "; did you mean '" + hint + "'?") +
                      " (known " + kind + "s: " + (known.empty() ? std::string("none loaded") : join(known, ", ")) +
                      "); load the plugin that registers it with labrun --plugin-path DIR, `plugins = DIR` in "
                      "[experiment] or the environment variable LAB_PLUGIN_PATH=DIR (folders or .so files; looked in: " +
                      searched_text(searched_) + ")");
}

bool Registry::has(const std::string& kind, const std::string& name) const {
    return plugins_.count({kind, name}) > 0;
}

std::vector<const PluginInfo*> Registry::list() const {
    std::vector<const PluginInfo*> out;
    for (const auto& kind : kinds())
        for (const auto& [key, info] : plugins_)
            if (key.first == kind) out.push_back(&info);
    return out;
}

std::vector<std::string> Registry::names(const std::string& kind) const {
    std::vector<std::string> out;
    for (const auto& [key, info] : plugins_)
        if (key.first == kind) out.push_back(key.second);
    return out;
}

Options plugin_options(const Registry& registry, const std::string& kind, const std::string& name,
                       const std::map<std::string, std::string>& values, const std::string& origin) {
    std::map<std::string, OptionValue> raw;
    for (const auto& [key, value] : values) raw[key] = {value, origin};
    return Options::validate(kind, kind + "/" + name, registry.find(kind, name).schema, raw);
}

}  // namespace lab
