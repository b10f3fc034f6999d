// OneDnnBackend core: engine and stream, the plan cache, device description and the plugin's
// registration. The kernels live in onednn_matmul.cpp, onednn_elementwise.cpp and onednn_norm.cpp.
#include "onednn_backend.h"

#include <cstdlib>
#include <string>
#include <utility>

#include "lab/error.h"
#include "lab/plugin.h"
#include "lab/threads.h"

namespace lab::onednn {

namespace {

// A program that feeds ever-new shapes (generation with a growing KV cache, say) would grow the
// cache without bound; past this many plans the cache starts over.
constexpr size_t kMaxPlans = 4096;

const char* isa_name(dnnl::cpu_isa isa) {
    switch (isa) {
        case dnnl::cpu_isa::sse41: return "sse41";
        case dnnl::cpu_isa::avx: return "avx";
        case dnnl::cpu_isa::avx2: return "avx2";
        case dnnl::cpu_isa::avx2_vnni: return "avx2_vnni";
        case dnnl::cpu_isa::avx512_mic: return "avx512_mic";
        case dnnl::cpu_isa::avx512_mic_4ops: return "avx512_mic_4ops";
        case dnnl::cpu_isa::avx512_core: return "avx512_core";
        case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
        case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
        case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
        default: return "generic";
    }
}

}  // namespace

// ---- PlanKey ----

PlanKey& PlanKey::push(int64_t value) {
    if (size_ == kCapacity)
        throw BackendError("onednn backend: a primitive cache key needs more than " + std::to_string(kCapacity) +
                           " fields (plugins/backends/onednn/onednn_backend.h, PlanKey). Hint: raise "
                           "PlanKey::kCapacity.");
    fields_[size_++] = value;
    return *this;
}

PlanKey& PlanKey::push(const Shape& values) {
    push(static_cast<int64_t>(values.size()));
    for (int64_t v : values) push(v);
    return *this;
}

bool PlanKey::operator==(const PlanKey& other) const {
    if (size_ != other.size_) return false;
    for (int i = 0; i < size_; ++i)
        if (fields_[i] != other.fields_[i]) return false;
    return true;
}

size_t PlanKey::hash() const {
    // FNV-1a over the fields' bytes: cheap, and keys differ in small integers.
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < size_; ++i) {
        uint64_t v = static_cast<uint64_t>(fields_[i]);
        for (int byte = 0; byte < 8; ++byte) {
            h ^= (v >> (8 * byte)) & 0xffu;
            h *= 1099511628211ull;
        }
    }
    return static_cast<size_t>(h);
}

// ---- memory descriptors ----

dnnl::memory::desc strided_md(const Shape& dims, const Shape& strides, dnnl::memory::data_type type) {
    return dnnl::memory::desc(dnnl::memory::dims(dims.begin(), dims.end()),
                              type, dnnl::memory::dims(strides.begin(), strides.end()));
}

dnnl::memory::desc contiguous_md(const Shape& dims, dnnl::memory::data_type type) {
    return strided_md(dims, contiguous_strides(dims), type);
}

dnnl::memory unbound_memory(const dnnl::memory::desc& md, const dnnl::engine& engine) {
    return dnnl::memory(md, engine, DNNL_MEMORY_NONE);
}

void Plan::bind(int arg, const void* data) {
    for (Conversion& conversion : conversions) {
        if (conversion.arg == arg) {
            conversion.src.set_data_handle(const_cast<void*>(data));
            return;
        }
    }
    args.at(arg).set_data_handle(const_cast<void*>(data));
}

// ---- OneDnnBackend ----

namespace {

// Whether oneDNN multiplies bf16 matrices with a real kernel on this CPU, not its reference code.
// True when the CPU oneDNN runs on has bf16 instructions (AVX512-BF16, AMX) and oneDNN a bf16
// matmul kernel for it. oneDNN 2.6 also offers bf16 matmuls on plain AVX-512 by emulating them,
// slower than f32; those count as not native, so precision = bf16 multiplies f32 tensors holding
// the bf16 values there. The ISA is oneDNN's effective one, which ONEDNN_MAX_CPU_ISA caps (the
// tests take the emulated path on any CPU that way).
bool bf16_matmul_available(const dnnl::engine& engine) {
    const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
    const auto bf16_isa = static_cast<unsigned>(dnnl::cpu_isa::avx512_core_bf16);
    if ((isa & bf16_isa) != bf16_isa) return false;
    using dt = dnnl::memory::data_type;
    auto md = [](dt type) { return dnnl::memory::desc({16, 16}, type, dnnl::memory::format_tag::ab); };
    try {
        dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(md(dt::bf16), md(dt::bf16), md(dt::f32)), engine);
        return std::string(pd.impl_info_str()).rfind("ref", 0) != 0;
    } catch (const dnnl::error&) {
        return false;
    }
}

}  // namespace

OneDnnBackend::OneDnnBackend(int64_t threads) {
    set_threads(threads);
    try {
        engine_ = dnnl::engine(dnnl::engine::kind::cpu, 0);
        stream_ = dnnl::stream(engine_);
        native_bf16_ = bf16_matmul_available(engine_);
    } catch (const dnnl::error& e) {
        throw BackendError(std::string("backend onednn: could not create the oneDNN CPU engine: ") + e.what() +
                           ". Hint: check that libdnnl matches the version this plugin was built with.");
    }
}

OneDnnBackend::~OneDnnBackend() = default;

std::string OneDnnBackend::library_version() {
    const dnnl_version_t* version = dnnl_version();
    return std::to_string(version->major) + "." + std::to_string(version->minor) + "." +
           std::to_string(version->patch);
}

std::string OneDnnBackend::device_info() const {
    return HostBackend::device_info() + ", oneDNN " + library_version() + " (" +
           isa_name(dnnl::get_effective_cpu_isa()) + ")";
}

Plan* OneDnnBackend::find_plan(const PlanKey& key) {
    auto it = plans_.find(key);
    if (it == plans_.end()) return nullptr;
    ++primitive_cache_hits_;
    return it->second.get();
}

Plan& OneDnnBackend::insert_plan(const PlanKey& key, std::unique_ptr<Plan> plan) {
    if (plans_.size() >= kMaxPlans) plans_.clear();
    primitives_created_ += plan->primitive_count();
    return *plans_.emplace(key, std::move(plan)).first->second;
}

void OneDnnBackend::execute(Plan& plan, const char* kernel) {
    if (plan.scratchpad_bytes > 0) {
        if (plan.scratchpad_bytes > scratchpad_capacity_) {
            const size_t bytes = (plan.scratchpad_bytes + 4095) / 4096 * 4096;
            scratchpad_.reset(static_cast<char*>(std::aligned_alloc(4096, bytes)));
            if (!scratchpad_) {
                scratchpad_capacity_ = 0;
                throw BackendError(std::string("backend onednn: out of memory allocating ") + std::to_string(bytes) +
                                   " bytes of scratch for the " + kernel + " primitive");
            }
            scratchpad_capacity_ = bytes;
        }
        plan.args.at(DNNL_ARG_SCRATCHPAD).set_data_handle(scratchpad_.get());
    }
    try {
        for (Plan::Conversion& conversion : plan.conversions)
            conversion.primitive.execute(stream_, conversion.src, conversion.dst);
        plan.primitive.execute(stream_, plan.args);
        stream_.wait();
    } catch (const dnnl::error& e) {
        throw BackendError(std::string("backend onednn: the oneDNN ") + kernel + " primitive failed: " + e.what() +
                           ". Hint: rerun with ONEDNN_VERBOSE=1 to see the primitive, or use backend = "
                           "reference to check the inputs.");
    }
}

}  // namespace lab::onednn

LAB_PLUGIN(registry) {
    lab::OptionSchema schema;
    schema.integer("threads", 0,
                   "OpenMP threads for oneDNN and the host kernels; 0 = all cores ([experiment] threads is its old "
                   "spelling)")
        .at_least(0);
    registry.add_backend(
        {"onednn", LAB_VERSION,
         "CPU backend on oneDNN " + lab::onednn::OneDnnBackend::library_version() +
             ": matmul, eltwise, binary, softmax and layer norm primitives cached by shape; other kernels "
             "from the reference backend",
         schema},
        [](const lab::Options& options) -> std::shared_ptr<lab::Backend> {
            return std::make_shared<lab::onednn::OneDnnBackend>(options.get_int("threads"));
        });
}
