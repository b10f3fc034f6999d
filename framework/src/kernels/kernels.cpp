// KernelRegistry: the non-template half (registration checks, look-ups, the copies through host
// memory). Choosing and calling a kernel is a template in lab/kernels.h.
#include "lab/kernels.h"

#include <boost/core/demangle.hpp>

#include "lab/error.h"
#include "lab/host_backend.h"

namespace lab {

namespace {

std::string join(const std::vector<std::string>& names) {
    std::string out;
    for (const std::string& name : names) out += (out.empty() ? "" : ", ") + name;
    return out.empty() ? "none" : out;
}

}  // namespace

KernelRegistry::KernelRegistry() = default;
KernelRegistry::~KernelRegistry() = default;
KernelRegistry::KernelRegistry(KernelRegistry&&) noexcept = default;
KernelRegistry& KernelRegistry::operator=(KernelRegistry&&) noexcept = default;

void KernelRegistry::add_entry(const std::string& op, const std::type_info& args, const std::string& backend,
                               std::any supports, std::any kernel) {
    if (op.empty() || backend.empty())
        throw PluginError("kernel registration: empty operation or backend name (operation '" + op + "', backend '" +
                          backend + "'); hint: name both, e.g. add(kAdamWStep, \"cuda\", supports, kernel)");
    auto [it, added] = ops_.try_emplace(op);
    Operation& operation = it->second;
    if (added) {
        operation.args = std::type_index(args);
    } else if (operation.args != std::type_index(args)) {
        throw PluginError("kernel operation '" + op + "': a kernel for backend '" + backend + "' takes arguments " +
                          boost::core::demangle(args.name()) + ", but the operation was registered with " +
                          boost::core::demangle(operation.args.name()) +
                          "; hint: build every plugin that adds kernels for '" + op +
                          "' against the one header that defines its arguments");
    }
    if (backend == kHostKernel)
        for (const Entry& entry : operation.entries)
            if (entry.backend == kHostKernel)
                throw PluginError("kernel operation '" + op +
                                  "' already has a host kernel (its reference); hint: only the plugin that defines "
                                  "the operation adds it, and a library is loaded once");
    operation.entries.push_back({backend, std::move(supports), std::move(kernel)});
}

const KernelRegistry::Operation& KernelRegistry::find(const std::string& op, const std::type_info& args) const {
    auto it = ops_.find(op);
    if (it == ops_.end())
        throw PluginError("no kernel operation '" + op + "' is registered (known: " + join(operations()) +
                          "); hint: load the plugin that defines it (its LAB_PLUGIN adds the kernels)");
    if (it->second.args != std::type_index(args))
        throw PluginError("kernel operation '" + op + "' is called with arguments " +
                          boost::core::demangle(args.name()) + ", but it was registered with " +
                          boost::core::demangle(it->second.args.name()) +
                          "; hint: rebuild the caller and the plugin that defines '" + op + "' against one header");
    return it->second;
}

const KernelRegistry::Entry& KernelRegistry::host_kernel(const Operation& operation, const std::string& op,
                                                          const std::string& backend) {
    for (const Entry& entry : operation.entries)
        if (entry.backend == kHostKernel) return entry;
    std::vector<std::string> names;
    for (const Entry& entry : operation.entries) names.push_back(entry.backend);
    throw PluginError("kernel operation '" + op + "': no kernel for backend '" + backend +
                      "' takes this call and there is no host kernel to fall back to (kernels for: " + join(names) +
                      "); hint: the plugin that defines '" + op + "' should add its host reference under \"" +
                      kHostKernel + "\"");
}

void KernelRegistry::throw_null_kernel(const std::string& op, const std::string& backend) {
    throw PluginError("kernel operation '" + op + "': the kernel added for backend '" + backend +
                      "' is empty; hint: pass a function");
}

std::vector<std::string> KernelRegistry::backends(const std::string& op) const {
    std::vector<std::string> names;
    auto it = ops_.find(op);
    if (it != ops_.end())
        for (const Entry& entry : it->second.entries) names.push_back(entry.backend);
    return names;
}

std::vector<std::string> KernelRegistry::operations() const {
    std::vector<std::string> names;
    for (const auto& [name, operation] : ops_) names.push_back(name);
    return names;
}

KernelCounts KernelRegistry::counts(const std::string& op) const {
    auto it = ops_.find(op);
    if (it == ops_.end())
        throw PluginError("no kernel operation '" + op + "' is registered (known: " + join(operations()) +
                          "); hint: load the plugin that defines it");
    const AtomicCounts& c = *it->second.counts;
    return {c.backend.load(), c.host.load(), c.through_host.load()};
}

Backend& KernelRegistry::host_backend() {
    static HostBackend backend;
    return backend;
}

Tensor KernelRegistry::copy_to_host_backend(const Tensor& device) {
    Tensor host = Tensor::empty(host_backend(), device.shape(), device.dtype());
    if (host.numel() > 0) device.backend().copy_to_host(host.raw(), device.contiguous_copy());
    return host;
}

void KernelRegistry::copy_back(const Tensor& device, const Tensor& host) {
    if (host.numel() == 0) return;
    if (device.is_contiguous()) {
        device.backend().copy_from_host(device, host.raw());
        return;
    }
    // copy_from_host writes contiguous tensors only: stage the values on the device, then scatter.
    Tensor staged = Tensor::empty(device.backend(), device.shape(), device.dtype());
    device.backend().copy_from_host(staged, host.raw());
    device.copy_(staged);
}

}  // namespace lab
