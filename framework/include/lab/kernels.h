// Kernels that plugins add: operations the Backend interface does not name (an optimizer's update,
// an attention variant's fused kernel), keyed by (operation, backend name), so that a new optimizer
// or attention plugin ships its own kernels without editing the framework or any backend.
//
// An operation is a name and an argument struct. The plugin that defines the operation declares
// both, usually as a KernelOp<Args> constant in a header of its own:
//
//   struct ScaleArgs {                     // what one call gets
//       Tensor x; float alpha = 1;
//       template <class F> void for_each_tensor(F&& f) { f(x, KernelAccess::read_write); }
//   };
//   inline constexpr lab::KernelOp<ScaleArgs> kScale{"my_plugin.scale"};
//
// and registers kernels for it from LAB_PLUGIN:
//
//   registry.kernels().add(kScale, lab::kHostKernel, nullptr, scale_host);        // reference
//   registry.kernels().add(kScale, "cuda", is_f32_contiguous, scale_cuda);        // a fast one
//
// Choosing a kernel (run): the kernels registered for the calling backend's name(), in the order
// they were added, each asked by its supports predicate (given the backend and the call's
// arguments: dtypes, contiguity, sizes) whether it takes the call; a null predicate takes every
// call. When none does, the operation's host kernel (registered for kHostKernel) runs: it is the
// operation's reference and fallback, and
//  - on a backend whose memory is host memory (DeviceKind::cpu) it runs directly on the operands;
//  - on any other backend it runs on host copies of the operands, and the operands it writes are
//    copied back. That is slow (every operand crosses the bus twice per call), but a new backend
//    runs every plugin's operations at once, and a kernel of its own can replace each later.
// counts() says how many calls took each path, so that a test (or a curious user) can see that a
// backend's own kernel ran and not the copy through host memory.
//
// Types: an operation's arguments are fixed by its first registration. A later registration, or a
// call, with another Args type throws PluginError naming the operation and both types: two plugins
// built against different definitions of one operation fail loudly instead of reading each other's
// structs wrongly.
//
// Args must be copyable and have for_each_tensor(f), calling f(Tensor&, KernelAccess) for every
// tensor the kernel touches (undefined tensors, e.g. an unused optional, are skipped): the copy
// through host memory needs to know them.
#pragma once
#include <any>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <typeindex>
#include <typeinfo>
#include <utility>
#include <vector>

#include "lab/backend.h"
#include "lab/tensor.h"

namespace lab {

// The backend name under which an operation's host kernel (its reference and fallback) is added.
inline constexpr const char* kHostKernel = "host";

// How a kernel uses an operand: the copy through host memory copies back only what is written.
enum class KernelAccess { read, read_write };

// An operation's name with its argument type, so that add and run are type-checked at compile time
// within one build (and at run time across plugins built apart).
template <class Args>
struct KernelOp {
    const char* name;
};

// How often an operation ran each way (see run): the calling backend's own kernel, the host kernel
// on host memory, and the host kernel on host copies of a device's operands.
struct KernelCounts {
    uint64_t backend = 0;
    uint64_t host = 0;
    uint64_t through_host = 0;
};

class KernelRegistry {
public:
    template <class Args>
    using Kernel = std::function<void(Backend&, const Args&)>;
    template <class Args>
    using Supports = std::function<bool(const Backend&, const Args&)>;

    KernelRegistry();
    ~KernelRegistry();
    KernelRegistry(const KernelRegistry&) = delete;
    KernelRegistry& operator=(const KernelRegistry&) = delete;
    KernelRegistry(KernelRegistry&&) noexcept;
    KernelRegistry& operator=(KernelRegistry&&) noexcept;

    // Adds `kernel` for operation `op` on the backend named `backend` (kHostKernel: the host
    // reference). A null `supports` takes every call. Throws PluginError for an empty name or
    // kernel, an Args type other than the operation's, or a second host kernel for one operation.
    template <class Args>
    void add(const std::string& op, const std::string& backend, Supports<Args> supports, Kernel<Args> kernel) {
        if (!kernel) throw_null_kernel(op, backend);
        add_entry(op, typeid(Args), backend, supports ? std::any(std::move(supports)) : std::any(),
                  std::any(std::move(kernel)));
    }
    template <class Args>
    void add(KernelOp<Args> op, const std::string& backend, std::type_identity_t<Supports<Args>> supports,
             std::type_identity_t<Kernel<Args>> kernel) {
        add<Args>(op.name, backend, std::move(supports), std::move(kernel));
    }

    // Runs operation `op` for `backend` (see the top of this file for which kernel). Throws
    // PluginError for an unknown operation, one whose Args differ, or one with no kernel for the
    // backend and no host kernel; what the kernel throws (ShapeError for bad operands) passes through.
    template <class Args>
    void run(const std::string& op, Backend& backend, const Args& args) const {
        const Operation& operation = find(op, typeid(Args));
        const std::string backend_name = backend.name();
        for (const Entry& entry : operation.entries) {
            if (entry.backend != backend_name) continue;
            if (entry.supports.has_value() &&
                !std::any_cast<const Supports<Args>&>(entry.supports)(std::as_const(backend), args))
                continue;
            operation.counts->backend.fetch_add(1, std::memory_order_relaxed);
            std::any_cast<const Kernel<Args>&>(entry.kernel)(backend, args);
            return;
        }
        const auto& host = std::any_cast<const Kernel<Args>&>(host_kernel(operation, op, backend_name).kernel);
        if (backend.device_kind() == DeviceKind::cpu) {
            operation.counts->host.fetch_add(1, std::memory_order_relaxed);
            host(backend, args);
            return;
        }
        operation.counts->through_host.fetch_add(1, std::memory_order_relaxed);
        Args on_host = args;
        std::vector<std::pair<Tensor, Tensor>> written;  // (the device's operand, its host copy)
        on_host.for_each_tensor([&](Tensor& t, KernelAccess access) {
            if (!t.defined()) return;
            const Tensor device = t;
            t = copy_to_host_backend(device);
            if (access == KernelAccess::read_write) written.emplace_back(device, t);
        });
        host(host_backend(), on_host);
        for (const auto& [device, copy] : written) copy_back(device, copy);
    }
    template <class Args>
    void run(KernelOp<Args> op, Backend& backend, const std::type_identity_t<Args>& args) const {
        run<Args>(op.name, backend, args);
    }

    bool has(const std::string& op) const { return ops_.count(op) != 0; }
    // The backend names with a kernel for `op` (kHostKernel included), in the order added.
    std::vector<std::string> backends(const std::string& op) const;
    std::vector<std::string> operations() const;  // sorted
    // Throws PluginError for an unknown operation.
    KernelCounts counts(const std::string& op) const;

    // The backend that the host kernels run on when a device's operands are copied to the host.
    static Backend& host_backend();

private:
    struct Entry {
        std::string backend;
        std::any supports;  // Supports<Args>, or empty: every call
        std::any kernel;    // Kernel<Args>
    };
    struct AtomicCounts {
        std::atomic<uint64_t> backend{0}, host{0}, through_host{0};
    };
    struct Operation {
        std::type_index args = typeid(void);
        std::vector<Entry> entries;
        std::unique_ptr<AtomicCounts> counts = std::make_unique<AtomicCounts>();
    };

    void add_entry(const std::string& op, const std::type_info& args, const std::string& backend, std::any supports,
                   std::any kernel);
    const Operation& find(const std::string& op, const std::type_info& args) const;
    static const Entry& host_kernel(const Operation& operation, const std::string& op, const std::string& backend);
    [[noreturn]] static void throw_null_kernel(const std::string& op, const std::string& backend);
    static Tensor copy_to_host_backend(const Tensor& device);
    static void copy_back(const Tensor& device, const Tensor& host);

    std::map<std::string, Operation> ops_;
};

}  // namespace lab
