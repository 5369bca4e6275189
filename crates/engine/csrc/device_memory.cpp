// C entry points to libtorch's CUDA caching allocator (memory statistics, emptyCache,
// peak reset), which tch 0.24 does not bind. Wrapped by crates/engine/src/device_memory.rs.
//
// Only the device-generic c10::DeviceAllocator interface is used (c10/core headers), so
// this builds without CUDA headers or a CUDA toolkit. Every function catches all C++
// exceptions: none may unwind into Rust. Return codes: 0 done, 1 no initialised CUDA
// allocator (CPU-only libtorch, no GPU, or CUDA not used yet), -1 an error (an exception,
// or a device index out of range).

#include <c10/core/Allocator.h>
#include <c10/core/CachingDeviceAllocator.h>
#include <c10/core/DeviceType.h>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <utility>

namespace {

constexpr int kDone = 0;
constexpr int kAbsent = 1;
constexpr int kError = -1;

// The CUDA caching allocator, or null when none is registered (libtorch without
// libc10_cuda loaded) or it has not been initialised (CUDA not used yet in this process;
// always the case on a machine without a GPU). c10::GetAllocator is called directly
// rather than c10::getDeviceAllocator, which asserts (throws) on a missing allocator.
c10::DeviceAllocator* cuda_allocator() {
  c10::Allocator* base = c10::GetAllocator(c10::DeviceType::CUDA);
  if (base == nullptr) {
    return nullptr;
  }
  auto* device_allocator = dynamic_cast<c10::DeviceAllocator*>(base);
  if (device_allocator == nullptr || !device_allocator->initialized()) {
    return nullptr;
  }
  return device_allocator;
}

bool valid_device(int device) {
  return device >= 0 && device <= std::numeric_limits<c10::DeviceIndex>::max();
}

constexpr std::size_t kAggregate =
    static_cast<std::size_t>(c10::CachingAllocator::StatType::AGGREGATE);

}  // namespace

extern "C" {

// out4 receives: allocated bytes now, allocated bytes peak, reserved bytes now, reserved
// bytes peak (all pools together). Left untouched unless 0 is returned.
int imagelab_cuda_memory_stats(int device, int64_t* out4) {
  try {
    if (out4 == nullptr || !valid_device(device)) {
      return kError;
    }
    c10::DeviceAllocator* allocator = cuda_allocator();
    if (allocator == nullptr) {
      return kAbsent;
    }
    const c10::CachingDeviceAllocator::DeviceStats stats =
        allocator->getDeviceStats(static_cast<c10::DeviceIndex>(device));
    out4[0] = stats.allocated_bytes[kAggregate].current;
    out4[1] = stats.allocated_bytes[kAggregate].peak;
    out4[2] = stats.reserved_bytes[kAggregate].current;
    out4[3] = stats.reserved_bytes[kAggregate].peak;
    return kDone;
  } catch (...) {
    return kError;
  }
}

// Hands the cached, unused blocks of every device back to the driver.
int imagelab_cuda_empty_cache(void) {
  try {
    c10::DeviceAllocator* allocator = cuda_allocator();
    if (allocator == nullptr) {
      return kAbsent;
    }
    allocator->emptyCache();
    return kDone;
  } catch (...) {
    return kError;
  }
}

// Sets the peak figures of `device` to the current ones.
int imagelab_cuda_reset_peak(int device) {
  try {
    if (!valid_device(device)) {
      return kError;
    }
    c10::DeviceAllocator* allocator = cuda_allocator();
    if (allocator == nullptr) {
      return kAbsent;
    }
    allocator->resetPeakStats(static_cast<c10::DeviceIndex>(device));
    return kDone;
  } catch (...) {
    return kError;
  }
}

// out2 receives the free and total bytes of `device` as the driver reports them
// (cudaMemGetInfo, through the allocator). Left untouched unless 0 is returned.
int imagelab_cuda_mem_info(int device, int64_t* out2) {
  try {
    if (out2 == nullptr || !valid_device(device)) {
      return kError;
    }
    c10::DeviceAllocator* allocator = cuda_allocator();
    if (allocator == nullptr) {
      return kAbsent;
    }
    const std::pair<std::size_t, std::size_t> info =
        allocator->getMemoryInfo(static_cast<c10::DeviceIndex>(device));
    out2[0] = static_cast<int64_t>(info.first);
    out2[1] = static_cast<int64_t>(info.second);
    return kDone;
  } catch (...) {
    return kError;
  }
}

}  // extern "C"
