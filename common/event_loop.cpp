#include "event_loop.hpp"
#include "log.hpp"
#include "process.hpp"

#include <cerrno>
#include <csignal>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

EventLoop::EventLoop() : epoll_(epoll_create1(EPOLL_CLOEXEC)) {
    if (!epoll_) die_errno("epoll_create1");
    now_ = monotonic_ms();
}

bool EventLoop::add(int fd, uint32_t events, IoCallback cb) {
    uint32_t gen = ++generation_;
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = (static_cast<uint64_t>(gen) << 32) | static_cast<uint32_t>(fd);
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) < 0) return false;
    handlers_[fd] = std::make_shared<Handler>(Handler{std::move(cb), gen});
    return true;
}

bool EventLoop::modify(int fd, uint32_t events) {
    auto it = handlers_.find(fd);
    if (it == handlers_.end()) return false;
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = (static_cast<uint64_t>(it->second->generation) << 32) | static_cast<uint32_t>(fd);
    return epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev) == 0;
}

void EventLoop::remove(int fd) {
    if (handlers_.erase(fd) == 0) return;
    epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
}

EventLoop::TimerId EventLoop::add_timer(long ms, TimerCallback cb) {
    TimerId id = next_timer_++;
    long long deadline = monotonic_ms() + ms;
    timers_.emplace(std::make_pair(deadline, id), std::move(cb));
    timer_deadlines_[id] = deadline;
    return id;
}

void EventLoop::cancel_timer(TimerId id) {
    auto it = timer_deadlines_.find(id);
    if (it == timer_deadlines_.end()) return;
    timers_.erase({it->second, id});
    timer_deadlines_.erase(it);
}

void EventLoop::on_signal(int sig, std::function<void()> cb) {
    signal_handlers_[sig] = std::move(cb);
    signal_mask_bits_ |= 1ULL << sig;
    sigset_t mask;
    sigemptyset(&mask);
    for (int s = 1; s < 64; ++s)
        if (signal_mask_bits_ & (1ULL << s)) sigaddset(&mask, s);
    if (sigprocmask(SIG_BLOCK, &mask, nullptr) < 0) die_errno("sigprocmask");
    bool first = !signal_fd_;
    int fd = signalfd(first ? -1 : signal_fd_.get(), &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0) die_errno("signalfd");
    if (first) {
        signal_fd_.reset(fd);
        if (!add(fd, EPOLLIN, [this](uint32_t) { on_signalfd(); })) die_errno("epoll_ctl(signalfd)");
    }
}

void EventLoop::on_signalfd() {
    signalfd_siginfo info;
    while (read(signal_fd_.get(), &info, sizeof info) == sizeof info) {
        auto it = signal_handlers_.find(static_cast<int>(info.ssi_signo));
        if (it != signal_handlers_.end()) it->second();
    }
}

int EventLoop::next_timeout() const {
    if (timers_.empty()) return -1;
    long long wait = timers_.begin()->first.first - monotonic_ms();
    if (wait <= 0) return 0;
    return wait > 60000 ? 60000 : static_cast<int>(wait);
}

void EventLoop::run_timers() {
    while (!timers_.empty() && timers_.begin()->first.first <= now_) {
        auto it = timers_.begin();
        TimerCallback cb = std::move(it->second);
        timer_deadlines_.erase(it->first.second);
        timers_.erase(it);  // removed before it runs: a throwing timer cannot fire twice
        cb();
    }
}

void EventLoop::run() {
    running_ = true;
    epoll_event events[256];
    while (running_) {
        int n = epoll_wait(epoll_.get(), events, 256, next_timeout());
        if (n < 0) {
            if (errno == EINTR) continue;
            die_errno("epoll_wait");
        }
        now_ = monotonic_ms();
        for (int i = 0; i < n && running_; ++i) {
            int fd = static_cast<int>(events[i].data.u64 & 0xffffffffu);
            uint32_t gen = static_cast<uint32_t>(events[i].data.u64 >> 32);
            auto it = handlers_.find(fd);
            // The fd may have been removed (or closed and reused) by an earlier callback in
            // this same batch: its event is stale.
            if (it == handlers_.end() || it->second->generation != gen) continue;
            std::shared_ptr<Handler> keep = it->second;  // survives its own remove()
            keep->cb(events[i].events);
        }
        now_ = monotonic_ms();
        run_timers();
    }
}
