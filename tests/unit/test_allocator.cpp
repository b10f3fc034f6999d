// CachingAllocator: rounding, reuse of freed blocks (smallest fitting, at most a quarter over the
// request), statistics, freeing the cache, thread safety; and HostBackend serving tensors from it.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "lab/allocator.h"
#include "lab/host_backend.h"
#include "lab/tensor.h"

using namespace lab;

namespace {

// Raw allocator that counts calls and remembers live blocks.
struct CountingRaw {
    std::mutex mutex;
    int allocs = 0, frees = 0;
    std::set<void*> live;
    CachingAllocator make() {
        return CachingAllocator(
            [this](size_t bytes) {
                void* p = std::aligned_alloc(64, bytes);
                std::lock_guard<std::mutex> lock(mutex);
                ++allocs;
                live.insert(p);
                return p;
            },
            [this](void* p) {
                std::lock_guard<std::mutex> lock(mutex);
                ++frees;
                live.erase(p);
                std::free(p);
            });
    }
};

}  // namespace

TEST_CASE("sizes round up to 64 bytes", "[allocator]") {
    REQUIRE(CachingAllocator::round_size(0) == 64);
    REQUIRE(CachingAllocator::round_size(1) == 64);
    REQUIRE(CachingAllocator::round_size(64) == 64);
    REQUIRE(CachingAllocator::round_size(65) == 128);
    REQUIRE(CachingAllocator::round_size(1000) == 1024);
}

TEST_CASE("a released block serves the next request of the same size", "[allocator]") {
    CountingRaw raw;
    {
        CachingAllocator cache = raw.make();
        size_t got = 0;
        void* p = cache.alloc(1000, &got);
        REQUIRE(got == 1024);
        REQUIRE(reinterpret_cast<uintptr_t>(p) % 64 == 0);
        AllocatorStats s = cache.stats();
        REQUIRE(s.requests == 1);
        REQUIRE(s.device_allocs == 1);
        REQUIRE(s.bytes_in_use == 1024);
        cache.release(p, got);
        s = cache.stats();
        REQUIRE(s.bytes_in_use == 0);
        REQUIRE(s.bytes_cached == 1024);

        void* q = cache.alloc(1000, &got);
        REQUIRE(q == p);
        s = cache.stats();
        REQUIRE(s.requests == 2);
        REQUIRE(s.device_allocs == 1);
        REQUIRE(s.bytes_cached == 0);
        REQUIRE(s.peak_bytes_in_use == 1024);
        cache.release(q, got);
        REQUIRE(raw.allocs == 1);
        REQUIRE(raw.frees == 0);
    }
    // The destructor gives cached blocks back.
    REQUIRE(raw.frees == 1);
    REQUIRE(raw.live.empty());
}

TEST_CASE("reuse takes the smallest fitting block and never one over a quarter above the request", "[allocator]") {
    CountingRaw raw;
    CachingAllocator cache = raw.make();
    size_t s256 = 0, s512 = 0, s4096 = 0;
    void* p256 = cache.alloc(256, &s256);
    void* p512 = cache.alloc(512, &s512);
    void* p4096 = cache.alloc(4096, &s4096);
    cache.release(p4096, s4096);
    cache.release(p512, s512);
    cache.release(p256, s256);
    REQUIRE(raw.allocs == 3);

    size_t got = 0;
    void* q = cache.alloc(240, &got);  // 256 rounded: the 256 block; 512 would fit too, smallest wins
    REQUIRE(q == p256);
    REQUIRE(got == 256);
    void* r = cache.alloc(1024, &got);  // 4096 > 1024 + 256: a new block
    REQUIRE(r != p4096);
    REQUIRE(r != p512);
    REQUIRE(got == 1024);
    REQUIRE(raw.allocs == 4);
    void* t = cache.alloc(300, &got);  // 320 rounded; 512 > 320 + 80: a new block
    REQUIRE(t != p512);
    REQUIRE(got == 320);
    REQUIRE(raw.allocs == 5);
    void* u = cache.alloc(448, &got);  // 512 <= 448 + 112 serves it
    REQUIRE(u == p512);
    REQUIRE(got == 512);
    AllocatorStats s = cache.stats();
    REQUIRE(s.bytes_in_use == 256 + 1024 + 320 + 512);
    REQUIRE(s.bytes_cached == 4096);
    REQUIRE(s.device_allocs == 5);
    REQUIRE(s.requests == 7);

    cache.empty_cache();
    REQUIRE(raw.frees == 1);
    REQUIRE(cache.stats().bytes_cached == 0);
    cache.release(q, 256);
    cache.release(r, 1024);
    cache.release(t, 320);
    cache.release(u, 512);
    REQUIRE(cache.stats().bytes_in_use == 0);
    REQUIRE(cache.stats().peak_bytes_in_use == 256 + 512 + 4096);  // all three live at once
}

TEST_CASE("concurrent alloc and release keep the books straight", "[allocator]") {
    CountingRaw raw;
    CachingAllocator cache = raw.make();
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&cache, t] {
            for (int i = 0; i < 2000; ++i) {
                size_t got = 0;
                const size_t bytes = 64 * static_cast<size_t>(1 + (i + t) % 5);
                void* p = cache.alloc(bytes, &got);
                static_cast<char*>(p)[got - 1] = 1;  // the block is really ours
                cache.release(p, got);
            }
        });
    }
    for (auto& th : threads) th.join();
    const AllocatorStats s = cache.stats();
    REQUIRE(s.requests == 8000);
    REQUIRE(s.bytes_in_use == 0);
    REQUIRE(s.device_allocs == static_cast<uint64_t>(raw.allocs));
    REQUIRE(s.device_allocs <= 4 * 5);  // at most one block per thread per size class
}

TEST_CASE("HostBackend tensors come from the cache after the first step", "[allocator]") {
    HostBackend be;
    { Tensor a = Tensor::empty(be, {64, 64}); }
    const uint64_t allocs_after_first = be.stats().memory.device_allocs;
    REQUIRE(allocs_after_first >= 1);
    const uint64_t requests_before = be.stats().memory.requests;
    for (int step = 0; step < 5; ++step) {
        Tensor a = Tensor::empty(be, {64, 64});
        REQUIRE(a.storage()->bytes >= 64 * 64 * 4);
        REQUIRE(reinterpret_cast<uintptr_t>(a.raw()) % 64 == 0);
    }
    const BackendStats s = be.stats();
    REQUIRE(s.memory.device_allocs == allocs_after_first);
    REQUIRE(s.memory.requests == requests_before + 5);
    REQUIRE(s.memory.bytes_cached >= 64 * 64 * 4);
}
