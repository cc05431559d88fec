// cluster_module.hpp — Node's `cluster` module in C++ (lab15): Node's names over the mechanisms
// labs 05–14 put in common/. The primary's side is cluster_module.cpp, a worker's
// cluster_worker.cpp (as Node splits lib/internal/cluster/primary.js and child.js).
//
//   Node                                 here                                  the mechanism
//   cluster.isPrimary, cluster.isWorker  is_primary(), is_worker()             CLUSTERLAB_CHANNEL_FD set?
//                                                                              (Node: NODE_CHANNEL_FD)
//   cluster.setupPrimary({exec, args})   setup_primary(settings)               Cluster::set_program
//   cluster.schedulingPolicy             Settings::policy; the environment     ServerHandle: shared or
//     NODE_CLUSTER_SCHED_POLICY=rr|none    CLUSTERLAB_SCHED_POLICY wins         dealt (server_handle.hpp)
//   cluster.fork()                       fork()                                Cluster::fork_worker → spawn
//   cluster.workers                      workers()                             Cluster's table (cluster.hpp)
//   cluster.on('listening' | 'exit')     on_listening(fn), on_exit(fn)
//   worker.process.pid                   Worker::pid()                         the Worker record
//   worker.disconnect()                  Worker::disconnect()                  WorkerState::disconnecting
//   worker.exitedAfterDisconnect         Worker::exited_after_disconnect()
//   worker.kill(signal)                  Worker::kill(sig)
//   RoundRobinHandle (SCHED_RR)          one per dealt address                 RoundRobinHandle (lab07)
//   (PM2's reload)                       rolling_reload()                      RollingReload (lab14)
//   SIGINT/SIGTERM in the primary        every worker disconnected, exit 0     stop_cluster_on_signals
//   http.createServer(fn), in a worker   WorkerProcess::http().set_routes(fn)  HttpServer
//   server.listen(port), in a worker     WorkerProcess::listen(port, host)     {"act":"queryServer"}
//   worker.disconnect(), in a worker     WorkerProcess::disconnect(); SIGTERM  HttpServer::drain (lab08)
//
// What the module does not decide, as in Node: whether a dead worker is replaced. It reports
// (`exit`, with exited_after_disconnect() telling a crash from a requested exit) and the
// program decides (lab15: with lab10's RestartWindow).
//
// The handle of an address. A worker's listen(port, host) is a request to the primary, which
// opens the socket once per address and keeps it (ServerHandle): under `none` the workers get
// the socket and accept on it, under `rr` the primary accepts and deals. The key is the address
// the worker asked for, so listen(0) in every worker gives every worker the same port, as Node
// documents.
//
// The log: the contract's events, as Cluster writes them (fork, online, listening, disconnect,
// exit), plus `setup`, `reload …` (lab14's words) and `shutdown`.
//
// Ownership: the primary's state (process table, channels, listening sockets, dealt
// connections) lives in the module for the life of the process, as Node's does; a Worker is a
// view of its record in that table. A worker's WorkerProcess owns its loop, its channel and its
// connections; it is neither copied nor moved (its loop's callbacks refer to it).
#pragma once

#include "http.hpp"
#include "http_server.hpp"
#include "master_worker.hpp"

#include <csignal>
#include <functional>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

namespace cluster {

enum class Policy { rr, none };  // cluster.SCHED_RR, cluster.SCHED_NONE

// The scheduling policy's environment variable (Node: NODE_CLUSTER_SCHED_POLICY).
constexpr const char* kPolicyEnv = "CLUSTERLAB_SCHED_POLICY";

struct Settings {
    std::string exec;               // the worker program; empty: this program again
    std::vector<std::string> args;  // its arguments (argv[1]…); empty: our own
    Policy policy = Policy::rr;     // kPolicyEnv wins when set, as Node reads its variable
    long listen_timeout_ms = 3000;  // rolling_reload(): how long a new worker has to listen
    long shutdown_timeout_ms = 10000;  // SIGINT/SIGTERM: how long workers may drain
};

// A worker is a process started with a channel (CLUSTERLAB_CHANNEL_FD, Node: NODE_CHANNEL_FD),
// as read when the program started: WorkerProcess takes the variable away.
bool is_primary();
bool is_worker();

// ------------------------------------------------------------------------------ the primary

// A worker in the primary: a view of its record in Cluster's process table (common/cluster.hpp),
// which owns it; valid until its exit event has been delivered.
class Worker {
public:
    explicit Worker(::Worker& record) : record_(&record) {}
    pid_t pid() const { return record_->pid; }
    // Graceful: the primary deals it nothing more; it answers what it has with Connection:
    // close and exits 0. Not a crash: its exit event has exited_after_disconnect() true.
    void disconnect();
    void kill(int sig = SIGTERM);
    bool exited_after_disconnect() const {
        return record_->exited_after_disconnect || record_->state == WorkerState::disconnecting;
    }

private:
    ::Worker* record_;
};

struct Address {
    std::string host;
    int port = 0;
};

// Fills what `settings` leaves empty from the defaults and logs `setup`. Call it before the
// first fork (fork() calls it for you with the defaults).
void setup_primary(Settings settings = {});

// Starts a worker (this program again, or settings().exec). Returns it, or nothing when fork or
// socketpair failed (logged: try again later) or the primary is shutting down.
std::optional<Worker> fork();
// The live workers, oldest first (cluster.workers).
std::vector<Worker> workers();

void on_listening(std::function<void(Worker&, const Address&)> fn);
// code is the exit code (-1 when a signal ended it); sig the signal (0 when it exited).
void on_exit(std::function<void(Worker&, int code, int sig)> fn);

// lab14's rolling reload: each worker alive now is replaced, one at a time, by a new one that is
// listening before the old one is disconnected, so never fewer workers accept than before. A
// new worker that exits or does not listen within listen_timeout_ms aborts it: the rest keep
// their old workers. Reloads asked for during one make one more, after it.
void rolling_reload();

// The primary's event loop (Node runs its own implicitly): runs until every worker is gone
// after a SIGINT/SIGTERM (which disconnect()s them all), or stop(code). Returns the exit code.
int run();
void stop(int exit_code);
EventLoop& loop();

// ------------------------------------------------------------------------------- a worker

// The worker's side: server.listen() under a cluster, and disconnect(). Construct it first
// thing in a worker (it takes the channel from the environment).
class WorkerProcess {
public:
    explicit WorkerProcess(const ConnectionLimits& limits = {});
    WorkerProcess(const WorkerProcess&) = delete;
    WorkerProcess& operator=(const WorkerProcess&) = delete;

    // server.listen(port, host): asks the primary for the handle of that address; http() serves
    // whatever it gets (accepted here under `none`, dealt by the primary under `rr`).
    void listen(long port, const std::string& host = "127.0.0.1");
    // worker.disconnect() from inside: stop accepting, drain, exit 0. SIGTERM does the same.
    void disconnect();
    // Runs the loop until the worker is done. Returns its exit code.
    int run();
    HttpServer& http() { return rt_.http; }

private:
    void on_primary(Message& m);
    void serve(Message& m);  // the primary's answer to listen()

    WorkerRuntime rt_;
    BurstLog lost_;  // dealt connections whose fd was lost at our fd limit
    std::vector<Fd> listeners_;  // under Policy::none: our copies of the primary's sockets
    bool leaving_ = false;
    bool finished_ = false;
    int exit_code_ = 0;
};

}  // namespace cluster
