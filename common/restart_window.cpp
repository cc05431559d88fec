#include "restart_window.hpp"

RestartWindow::RestartWindow(std::size_t limit, long long during_ms)
    : limit_(limit < 1 ? 1 : limit), during_ms_(during_ms < 1 ? 1 : during_ms) {}

bool RestartWindow::allow(long long now_ms) {
    ++total_;
    recent_.push_back(now_ms);
    if (recent_.size() > limit_) recent_.pop_front();  // only the last `limit` matter
    // The material: restart.length >= limit && restart[last] - restart[0] < during.
    bool too_frequent = recent_.size() == limit_ && recent_.back() - recent_.front() < during_ms_;
    return !too_frequent;
}
