#include "master_worker.hpp"
#include "log.hpp"

#include <csignal>
#include <memory>

void add_connection_options(Cli& cli, ConnectionLimits& limits) {
    cli.integer("idle-timeout", &limits.idle_timeout_ms, 1, 3600000, "ms a kept-alive connection may sit idle");
    cli.integer("header-timeout", &limits.header_timeout_ms, 1, 3600000, "ms a client has to send a request head");
}

void stop_cluster_on_signals(EventLoop& loop, Cluster& cluster, long timeout_ms, std::function<void()> when_done,
                             std::function<void()> first) {
    auto done = std::make_shared<std::function<void()>>(std::move(when_done));
    auto stop = [&loop, &cluster, timeout_ms, done, first](const char* name) {
        if (cluster.shutting_down()) return;  // a second Ctrl-C changes nothing: the deadline stands
        if (first) first();
        log_event("shutdown signal=%s workers=%zu", name, cluster.size());
        cluster.shutdown(timeout_ms, [&loop, done] {
            if (*done) (*done)();
            loop.stop();
        });
    };
    loop.on_signal(SIGINT, [stop] { stop("SIGINT"); });
    loop.on_signal(SIGTERM, [stop] { stop("SIGTERM"); });
}

BurstLog::BurstLog(EventLoop& loop, std::string event, long window_ms)
    : loop_(loop), event_(std::move(event)), window_ms_(window_ms) {}

void BurstLog::add(std::size_t n) {
    if (count_ == 0) {
        loop_.add_timer(window_ms_, [this] {
            log_event("%s count=%zu window_ms=%ld", event_.c_str(), count_, window_ms_);
            count_ = 0;
        });
    }
    count_ += n;
}

WorkerRuntime::WorkerRuntime(const ConnectionLimits& limits) : loop(), master(loop), http(loop, limits) {
    // The master decides when a worker stops: its SIGTERM ends the loop and run() returns 0.
    loop.on_signal(SIGTERM, [this] { loop.stop(); });
}

int WorkerRuntime::run() {
    master.send(msg("act", "online"));
    loop.run();
    return 0;
}
