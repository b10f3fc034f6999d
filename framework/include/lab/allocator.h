// Caching allocator. Training allocates the same sizes every step; after the first steps every
// request is served from blocks freed by the previous step, so the steady state makes no calls
// to the underlying allocator (counted in stats().device_allocs).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>

namespace lab {

struct AllocatorStats {
    uint64_t requests = 0;       // alloc() calls
    uint64_t device_allocs = 0;  // calls that reached the underlying allocator
    size_t bytes_in_use = 0;
    size_t peak_bytes_in_use = 0;
    size_t bytes_cached = 0;     // free blocks kept for reuse
};

class CachingAllocator {
public:
    using RawAlloc = std::function<void*(size_t)>;
    using RawFree = std::function<void(void*)>;
    CachingAllocator(RawAlloc raw_alloc, RawFree raw_free);
    ~CachingAllocator();
    CachingAllocator(const CachingAllocator&) = delete;
    CachingAllocator& operator=(const CachingAllocator&) = delete;

    // Returns a block of at least `bytes` (rounded up to the 64-byte granule) and its size.
    void* alloc(size_t bytes, size_t* block_bytes);
    void release(void* ptr, size_t block_bytes);
    void empty_cache();  // give every cached block back
    void reset_peak();   // peak_bytes_in_use = bytes_in_use (to measure the peak of one phase)
    AllocatorStats stats() const;

    static size_t round_size(size_t bytes);

private:
    RawAlloc raw_alloc_;
    RawFree raw_free_;
    mutable std::mutex mutex_;
    std::multimap<size_t, void*> free_blocks_;  // size -> block
    AllocatorStats stats_;
};

}  // namespace lab
