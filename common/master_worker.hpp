// master_worker.hpp — what every master and every worker of the cluster labs (05–10, 12–15) do
// that is no stage's idea.
//
// A lab's main() is Node's `if (cluster.isMaster) … else …`: run_master() or run_worker(). The
// pieces here are the same in every such lab, so they live once, here:
//   - the worker's standard set-up (WorkerRuntime): an event loop, the channel to the master
//     (MasterLink: its end of file means the master died, and the worker exits), an HTTP server
//     on that loop, SIGTERM = stop; the lab adds what its stage is about (on_message) and run()s;
//   - the master's shutdown on SIGINT/SIGTERM: log it, stop every worker, reap them all, then
//     stop the loop (stop_cluster_on_signals);
//   - the flags every cluster lab shares beyond --host/--port/--workers (add_connection_options).
//
// Ownership: WorkerRuntime owns its loop, its end of the channel and every connection of its
// HttpServer. The master's Cluster owns the workers' channels (see cluster.hpp).
#pragma once

#include "cli.hpp"
#include "cluster.hpp"
#include "event_loop.hpp"
#include "http.hpp"
#include "http_server.hpp"

#include <cstddef>
#include <functional>
#include <string>

// --idle-timeout and --header-timeout: the per-connection limits of the contract (a test makes
// them short to see a slow client cut off without waiting 10 s).
void add_connection_options(Cli& cli, ConnectionLimits& limits);

// True in a process started by Cluster::fork_worker (CLUSTERLAB_CHANNEL_FD is set): Node's
// cluster.isWorker. Call it before anything reads the environment.
inline bool is_worker_process() { return MasterLink::is_worker(); }

// One log line per burst of the same event instead of one per event: the first add() starts a
// window of `window_ms`, and when it ends a single line says how many there were:
// "<event> count=N window_ms=W". For events that come in floods (connections lost at the fd
// limit), where a line each would bury the log and cost the very time that is short. It must
// live as long as its loop (its timer refers to it).
class BurstLog {
public:
    BurstLog(EventLoop& loop, std::string event, long window_ms = 1000);
    void add(std::size_t n = 1);

private:
    EventLoop& loop_;
    std::string event_;
    long window_ms_;
    std::size_t count_ = 0;
};

// The master: on SIGINT or SIGTERM, run `first` (if any: the workers are all still there), log
// "shutdown", SIGTERM every worker (SIGKILL after `timeout_ms`), and once the last one is reaped
// run `when_done` (if any) and stop the loop, so run() returns and the master exits 0 with no
// zombie and no orphan.
void stop_cluster_on_signals(EventLoop& loop, Cluster& cluster, long timeout_ms = 5000,
                             std::function<void()> when_done = {}, std::function<void()> first = {});

// The worker. Construct it first thing in run_worker(): it takes the channel from the
// environment (and removes the variable), so it must exist before anything forks or execs.
class WorkerRuntime {
public:
    explicit WorkerRuntime(const ConnectionLimits& limits);

    // Reports {"act":"online"} (Node's 'online': the worker runs and reads its channel), then
    // runs the loop until SIGTERM. Returns the exit code (0). An exception thrown by a request
    // handler (/crash) is not caught here: it ends this worker, which is what labs 05–07 show.
    int run();

    EventLoop loop;
    MasterLink master;  // process.send / process.on('message') of a Node worker
    HttpServer http;
};
