// event_loop.hpp — the reactor of lab04 and of every master and worker after it: epoll, timers, signals.
//
// Everything that can happen is a callback on this loop: an fd became readable or writable, a
// timer expired, a signal arrived (through a signalfd, so no code runs inside a signal handler).
// Level-triggered: if a callback does not read everything, epoll reports the fd again, which
// keeps the loop correct even when a callback throws (lab08 catches exceptions around run()).
#pragma once

#include "fd.hpp"

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <unordered_map>
#include <vector>

class EventLoop {
public:
    using IoCallback = std::function<void(uint32_t events)>;
    using TimerCallback = std::function<void()>;
    using TimerId = uint64_t;

    EventLoop();  // epoll_create1; a failure is fatal (set-up tier)

    // Watch `fd` for `events` (EPOLLIN, EPOLLOUT…). The loop does not own fd: remove it before
    // closing it. Returns false (errno set) if epoll_ctl refuses.
    bool add(int fd, uint32_t events, IoCallback cb);
    bool modify(int fd, uint32_t events);
    void remove(int fd);

    // Runs `cb` once, `ms` from now. Cancelling an expired or unknown id is harmless.
    TimerId add_timer(long ms, TimerCallback cb);
    void cancel_timer(TimerId id);

    // Delivers `sig` as an event: blocks it for the process and reads it from a signalfd.
    // A forked child inherits the blocked mask: spawn_worker resets it before exec.
    void on_signal(int sig, std::function<void()> cb);

    // Dispatches until stop(). Exceptions from callbacks propagate to the caller; calling run()
    // again resumes (nothing is lost: level-triggered fds report again).
    void run();
    void stop() { running_ = false; }

    // The time this iteration started (monotonic ms): cheap "now" for timeouts.
    long long now() const { return now_; }

private:
    struct Handler {
        IoCallback cb;
        uint32_t generation;
    };
    void run_timers();
    int next_timeout() const;
    void on_signalfd();

    Fd epoll_;
    bool running_ = false;
    long long now_ = 0;
    uint32_t generation_ = 0;  // tells a stale event for a reused fd number from a fresh one
    std::unordered_map<int, std::shared_ptr<Handler>> handlers_;
    std::map<std::pair<long long, TimerId>, TimerCallback> timers_;  // by deadline, then id
    std::unordered_map<TimerId, long long> timer_deadlines_;
    TimerId next_timer_ = 1;
    Fd signal_fd_;
    uint64_t signal_mask_bits_ = 0;
    std::unordered_map<int, std::function<void()>> signal_handlers_;
};
