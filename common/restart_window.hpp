// restart_window.hpp — lab10's restart limit: the material's isTooFrequently() as a small class.
//
// The master remembers the times of the last `limit` restarts (a sliding window over the most
// recent restarts, not a fixed interval on the clock). A restart is refused — the master gives
// up — when, counting the one being asked for, `limit` restarts fall within `during` ms: the
// newest minus the oldest of the last `limit` is less than `during`. So with limit=10 and
// during=60000, nine restarts in a minute go ahead and the tenth is refused; restarts spread
// wider than `during` never give up, however many there are.
//
// Time is passed in (milliseconds on any monotonic clock), so the boundaries can be unit-tested
// without sleeping: harness/unit/test_restart_window.cpp.
#pragma once

#include <cstddef>
#include <deque>

class RestartWindow {
public:
    // limit >= 1 (limit 1 refuses every restart), during_ms >= 1.
    RestartWindow(std::size_t limit, long long during_ms);

    // Records a restart asked for at `now_ms` and says whether it may go ahead. False means
    // give up: `limit` restarts, this one included, within `during` ms. Times must not go back.
    bool allow(long long now_ms);

    // Restarts asked for so far, refused ones included (the material's `length`).
    std::size_t total() const { return total_; }
    std::size_t limit() const { return limit_; }
    long long during_ms() const { return during_ms_; }

private:
    std::size_t limit_;
    long long during_ms_;
    std::deque<long long> recent_;  // the last `limit` restart times, oldest first
    std::size_t total_ = 0;
};
