// helper_process.hpp — a child of the master that is not a worker (lab13's notifier).
//
// nginx's master forks, beside its workers, a cache manager and a cache loader that serve no
// client; Egg.js forks an "agent" beside its app workers for the jobs that must run once (file
// watching, a long connection to a config centre). A HelperProcess is that: this same program,
// started like a worker (spawn_worker) with a channel to the master, plus the environment
// variable CLUSTERLAB_ROLE naming what it is to be (Node: `child_process.fork(module,
// args, {env})`). It is not in the Cluster's table: it never gets the listening socket, and the
// master's worker count, ready line and restart limit ignore it.
//
// The master learns that it died from its channel's end of file (logged `disconnect ROLE=PID`),
// not from waitpid: the Cluster reaps every child on SIGCHLD (it asks for any pid), so this
// process's exit status goes there. What to do then (restart it) is the lab's business.
//
// Ownership: the HelperProcess owns the master's end of the channel; the child's end is closed
// in the master right after fork, so the child's death reads as end of file.
#pragma once

#include "channel.hpp"
#include "event_loop.hpp"

#include <functional>
#include <memory>
#include <string>
#include <sys/types.h>

constexpr const char* kRoleEnv = "CLUSTERLAB_ROLE";

// In a child: the role it was started with (and the variable is removed, so that its own
// children do not inherit it), or "" in a worker or the master.
std::string take_helper_role();

class HelperProcess {
public:
    // `argv` is this program's own command line, as for Cluster.
    HelperProcess(EventLoop& loop, char** argv, std::string role);
    ~HelperProcess();
    HelperProcess(const HelperProcess&) = delete;
    HelperProcess& operator=(const HelperProcess&) = delete;

    // Starts it (logged `fork ROLE=PID`). False if socketpair, fork or exec failed (logged): a
    // per-process failure, the caller tries again later. Only while none is running.
    bool start();
    pid_t pid() const { return pid_; }
    bool running() const { return channel_ != nullptr; }
    // Monotonic ms of the last start().
    long long started_ms() const { return started_ms_; }

    // Sends without blocking, as Cluster::send. False if it is not running.
    bool send(const JsonObject& message);
    void on_message(std::function<void(Message&)> fn) { on_message_ = std::move(fn); }
    // Its channel hit end of file: it has exited or is exiting. Called with its pid, after
    // running() has become false.
    void on_gone(std::function<void(pid_t)> fn) { on_gone_ = std::move(fn); }

    // SIGTERM, then waits at most timeout_ms for it to exit (SIGKILL after that), reaping it if
    // the Cluster has not already. Blocks: for the master's last moments, when nothing else
    // waits on the loop.
    void stop_and_wait(long timeout_ms);

private:
    void on_channel(uint32_t events);
    void disconnect();

    EventLoop& loop_;
    char** argv_;
    std::string role_;
    pid_t pid_ = -1;
    long long started_ms_ = 0;
    std::unique_ptr<Channel> channel_;
    std::function<void(Message&)> on_message_;
    std::function<void(pid_t)> on_gone_;
};
