// The plugin kinds: the one table that says which kinds exist, which experiment-file section
// chooses each, whether the section may be left out, and what the kind is for. The registry
// (which kinds a plugin may register), the experiment-file resolver (which sections exist, in
// which order they are resolved, which default `type` each has), `labrun --help` and
// `labrun --list` all read this table; a new kind is one row here and one add_<kind> in registry.h.
#pragma once
#include <string>
#include <vector>

namespace lab {

struct PluginKind {
    std::string name;          // "attention": the kind a plugin registers under (PluginInfo::kind)
    std::string section;       // "attention": the experiment-file section whose `type` picks the plugin
    std::string default_type;  // the plugin used when the section gives no `type` ("" = `type` is required)
    std::string description;   // one line for --help and the docs
};

// Every kind, in the order an experiment is resolved and built (backend first: the others are
// built on it) and in which `labrun --list` prints plugins.
const std::vector<PluginKind>& plugin_kinds();

// The row of `kind`, or nullptr when there is no such kind.
const PluginKind* find_plugin_kind(const std::string& kind);

}  // namespace lab
