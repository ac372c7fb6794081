// The bytes that cancelled reads gave back.
#include "fiber/cancel_safe.hpp"

#include <algorithm>

namespace fiber::detail {

std::size_t UnreadBytes::take(std::span<std::byte> into) {
    std::lock_guard lock(mutex_);
    const std::size_t n = std::min(into.size(), bytes_.size());
    std::copy_n(bytes_.begin(), n, into.begin());
    bytes_.erase(bytes_.begin(), bytes_.begin() + static_cast<std::ptrdiff_t>(n));
    pending_.store(!bytes_.empty(), std::memory_order_release);
    return n;
}

void UnreadBytes::put_back(std::span<const std::byte> bytes) {
    std::lock_guard lock(mutex_);
    bytes_.insert(bytes_.begin(), bytes.begin(), bytes.end());
    pending_.store(!bytes_.empty(), std::memory_order_release);
}

}  // namespace fiber::detail
