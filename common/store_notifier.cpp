#include "store_notifier.hpp"
#include "cluster.hpp"
#include "event_loop.hpp"
#include "log.hpp"
#include "process.hpp"
#include "shared_store.hpp"

#include <csignal>
#include <functional>
#include <string>
#include <sys/epoll.h>

// ---- the notifier process -------------------------------------------------------------------

int run_store_notifier(bool inotify, long poll_ms) {
    EventLoop loop;
    MasterLink master(loop);  // the master gone: log and exit (no orphan)
    StorePoller poller;
    Fd watch;  // inotify only
    auto check = [&] {
        std::string text;
        if (poller.check(&text)) {
            log_event("changed bytes=%zu", text.size());
            JsonObject store = msg("act", "store");
            store.set("text", text);
            master.send(store);
        }
        master.send(msg("act", "checked"));
    };
    std::function<void()> poll = [&] {
        check();
        loop.add_timer(poll_ms, poll);
    };
    // inotify: no timer. The kernel wakes us when the store's directory changes, and we check
    // then: a change costs one check, and no change costs none.
    auto watch_instead = [&] {
        watch = watch_store(poller.path);
        if (!watch) {  // no inotify here (or out of watches): poll, rather than fail
            log_errno("inotify_init1/inotify_add_watch");
            log_event("inotify unavailable, polling every %ld ms instead", poll_ms);
            return poll();
        }
        int fd = watch.get();
        loop.add(fd, EPOLLIN, [&, fd](uint32_t) {
            if (store_touched(fd, poller.path)) check();
        });
        check();
    };
    master.on_message([&](Message& m) {
        if (m.body.get_string("cmd") != "store" || !poller.path.empty()) return;
        poller.path = m.body.get_string("path");
        if (inotify) watch_instead();
        else poll();
    });
    loop.on_signal(SIGTERM, [&loop] { loop.stop(); });
    signal(SIGUSR1, SIG_IGN);  // the master's "print the checks": a `kill -USR1` to the whole group must not kill us
    master.send(msg("act", "online"));
    loop.run();
    master.flush_blocking();
    return 0;
}

// ---- the master's side ----------------------------------------------------------------------

StoreNotifier::StoreNotifier(EventLoop& loop, char** argv, StoreChecks& checks)
    : loop_(loop), process_(loop, argv, "notifier"), checks_(checks) {
    process_.on_message([this](Message& m) {
        std::string act = m.body.get_string("act");
        if (act == "online") {
            online_ = true;
            log_event("online notifier=%d", process_.pid());
            if (on_online_) on_online_();
        } else if (act == "checked") {
            checks_.count(process_.pid());
        } else if (act == "store") {
            if (on_store_) on_store_(m.body.get_string("text"));
        }
    });
    process_.on_gone([this](pid_t old) { on_gone(old); });
}

void StoreNotifier::start(std::string path) {
    path_ = std::move(path);
    start_now();
}

void StoreNotifier::start_now() {
    if (stopped_ || process_.running()) return;
    online_ = false;
    if (!process_.start()) {
        loop_.add_timer(kForkRetryMs, [this] { start_now(); });
        return;
    }
    process_.send(where_the_store_is(path_));
}

void StoreNotifier::on_gone(pid_t old) {
    checks_.forget(old);
    if (stopped_) return;
    auto restart = [this, old] {
        start_now();
        log_event("restart notifier=%d replacement=%d", old, process_.running() ? process_.pid() : -1);
    };
    if (monotonic_ms() - process_.started_ms() < kForkRetryMs) loop_.add_timer(kForkRetryMs, restart);
    else restart();
}

void StoreNotifier::stop_and_wait(long timeout_ms) {
    stopped_ = true;
    process_.stop_and_wait(timeout_ms);
}
