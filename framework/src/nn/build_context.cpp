#include "lab/build_context.h"

#include "lab/error.h"

namespace lab {

const Options& PlanContext::section(const std::string& name) const {
    auto found = sections.find(name);
    if (found == sections.end() || !found->second)
        throw ConfigError("the run has no [" + name + "] section, which a plugin's check needs; add one");
    return *found->second;
}

}  // namespace lab
