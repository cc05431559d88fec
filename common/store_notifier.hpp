// store_notifier.hpp — lab13's notifier: the one process that checks the store for every worker
// (--mode notify and --mode inotify), so that N workers do not each poll it. Both its sides:
// what it runs (run_store_notifier) and how the master keeps one running (StoreNotifier).
//
// A child of the master that serves no HTTP: a HelperProcess (helper_process.hpp) started with
// CLUSTERLAB_ROLE=notifier, whose main() calls run_store_notifier(). It reports
// {"act":"online"}, waits for {"cmd":"store","path":P}, then checks the store (StorePoller,
// shared_store.hpp) every poll_ms — or, with `inotify`, only when the kernel says the store's
// directory changed (watch_store; where inotify is unavailable it says so and polls instead).
// Each check is reported as {"act":"checked"} (only so that the master can count checks), and a
// changed text, logged `changed bytes=N`, as {"act":"store","text":T}: the master numbers it and
// tells every worker. SIGTERM ends it; so does the master's death (its channel's end of file).
//
// The master's side, StoreNotifier: starts it and tells it where the store is; restarts it when
// its channel closes (logged `restart notifier=OLD replacement=NEW`) — at once, or after
// kForkRetryMs if it died younger than that (a notifier that cannot start must not spin); a start
// that fails (socketpair, fork) is tried again after kForkRetryMs. Its checks are counted in the
// master's StoreChecks (a dead notifier's under gone=), its news handed to the callbacks.
// Ownership: StoreNotifier owns the HelperProcess (the master's end of the channel).
#pragma once

#include "event_loop.hpp"
#include "helper_process.hpp"
#include "shared_store.hpp"

#include <functional>
#include <string>

// Runs the notifier until SIGTERM or the master is gone; returns the exit code (0).
int run_store_notifier(bool inotify, long poll_ms);

class StoreNotifier {
public:
    StoreNotifier(EventLoop& loop, char** argv, StoreChecks& checks);

    // It reported {"act":"online"} (logged `online notifier=PID`): it reads its channel.
    void on_online(std::function<void()> fn) { on_online_ = std::move(fn); }
    // It read a text different from its last one (a restarted notifier's first read counts).
    void on_store(std::function<void(const std::string& text)> fn) { on_store_ = std::move(fn); }

    // Starts it for the store at `path`, and keeps one running until stop_and_wait().
    void start(std::string path);
    bool online() const { return online_; }
    // HelperProcess::stop_and_wait, and it is never started again (the master's shutdown).
    void stop_and_wait(long timeout_ms);

private:
    void start_now();
    void on_gone(pid_t old);

    EventLoop& loop_;
    HelperProcess process_;
    StoreChecks& checks_;
    std::string path_;
    bool online_ = false;
    bool stopped_ = false;
    std::function<void()> on_online_;
    std::function<void(const std::string&)> on_store_;
};
