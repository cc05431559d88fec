// cluster_module.hpp — Node's `cluster` module in C++ (lab15): Node's names over the mechanisms
// labs 05–14 put in common/. The module adds no mechanism of its own; it is the façade:
//
//   Node                                  here                                   the mechanism, where it lives
//   cluster.isPrimary, cluster.isWorker   cluster::is_primary(), is_worker()     CLUSTERLAB_UNIQUE_ID (Node: NODE_UNIQUE_ID)
//   cluster.setupPrimary({exec, args})    cluster::setup_primary(settings)       Cluster::set_program (cluster.hpp)
//   cluster.schedulingPolicy              Settings::policy, or the environment:
//     NODE_CLUSTER_SCHED_POLICY=rr|none     CLUSTERLAB_SCHED_POLICY=rr|none
//   cluster.fork()                        cluster::fork()                        Cluster::fork_worker, spawn_worker (channel.hpp)
//   cluster.workers                       cluster::workers()                     Cluster's process table (cluster.hpp)
//   cluster.on('listening' | 'exit')      cluster::on_listening(fn), on_exit(fn)
//   worker.id, worker.process.pid         Worker::id(), Worker::pid()
//   worker.disconnect()                   Worker::disconnect(): dealt nothing     HttpServer::drain (lab08)
//                                           more, it drains and exits 0
//   worker.exitedAfterDisconnect          Worker::exited_after_disconnect()
//   worker.kill(signal)                   Worker::kill(sig)
//   SCHED_RR's RoundRobinHandle           one per listening address             RoundRobinHandle (round_robin_handle.hpp, lab07)
//   (PM2's reload)                        cluster::rolling_reload()              lab14's rolling reload
//   SIGINT/SIGTERM in the primary         disconnect every worker, then exit 0   stop_cluster_on_signals (master_worker.hpp)
//   (a worker) http.createServer(fn)      WorkerProcess::http().set_routes(fn)   HttpServer (http_server.hpp)
//   (a worker) server.listen(port)        WorkerProcess::listen(port, host)
//   (a worker) cluster.worker.disconnect  WorkerProcess::disconnect()
//
// What the module does not decide, as in Node: whether a dead worker is replaced. It reports
// (`exit`, with exited_after_disconnect() telling a crash from a requested exit) and the
// program decides (lab15: with lab10's RestartWindow).
//
// The handle of an address. A worker's listen(port, host) is a request to the primary
// ({"act":"queryServer"}), which opens the socket once per address and keeps it for its whole
// life (so workers come and go and no client is refused: lab10's lesson). With policy `none`
// the primary sends the socket itself and the workers accept on it (lab05: the kernel decides
// who gets a connection); with `rr` the socket never leaves the primary, which accepts and
// deals the connections (lab07's RoundRobinHandle). listen(0) in every worker therefore gives
// every worker the same port, as Node documents.
//
// The log: the contract's events, as Cluster writes them (fork, online, listening, disconnect,
// exit), plus `setup`, `reload …` and `shutdown`.
//
// Ownership: the primary's state (process table, channels, listening sockets, dealt
// connections) lives in this module for the life of the process, as Node's does. A worker's
// WorkerProcess owns its loop, its channel and its connections; it is neither copied nor moved
// (its loop's callbacks refer to it).
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
const char* policy_name(Policy p);
// "rr" or "none"; nullopt for anything else.
std::optional<Policy> parse_policy(std::string_view text);

// The environment variables of the module (Node: NODE_CLUSTER_SCHED_POLICY, NODE_UNIQUE_ID).
constexpr const char* kPolicyEnv = "CLUSTERLAB_SCHED_POLICY";
constexpr const char* kUniqueIdEnv = "CLUSTERLAB_UNIQUE_ID";

struct Settings {
    std::string exec;               // the worker program; empty: this program again
    std::vector<std::string> args;  // its arguments (argv[1]…); empty: our own
    Policy policy = Policy::rr;     // kPolicyEnv wins when set, as Node reads its variable
    long listen_timeout_ms = 3000;  // rolling_reload(): how long a new worker has to listen
    long shutdown_timeout_ms = 10000;  // SIGINT/SIGTERM: how long workers may drain
};

bool is_primary();
bool is_worker();

// ------------------------------------------------------------------------------ the primary

class Worker {
public:
    int id() const { return id_; }
    pid_t pid() const { return pid_; }
    // Graceful: the primary deals it nothing more; it answers what it has with Connection:
    // close and exits 0. Not a crash: its exit event has exited_after_disconnect() true.
    void disconnect();
    void kill(int sig = SIGTERM);
    bool exited_after_disconnect() const { return exited_after_disconnect_; }

private:
    friend struct Primary;
    friend Worker* fork();
    int id_ = 0;
    pid_t pid_ = -1;
    bool dead_ = false;
    bool exited_after_disconnect_ = false;
};

struct Address {
    std::string host;
    int port = 0;
};

// Fills what `settings` leaves empty from the defaults and logs `setup`. Call it before the
// first fork (fork() calls it for you with the defaults).
void setup_primary(Settings settings = {});

// Starts a worker (this program again, or settings().exec). Returns it, or nullptr when fork or
// socketpair failed (logged: try again later) or the primary is shutting down.
Worker* fork();
// The live workers, oldest first (cluster.workers).
std::vector<Worker*> workers();

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
    void confirm(Message& m);  // rr: a connection dealt to us
    void serve(Message& m);    // the primary's answer to listen()

    WorkerRuntime rt_;
    std::vector<Fd> listeners_;  // under Policy::none: our copies of the primary's sockets
    bool leaving_ = false;
    bool finished_ = false;
    int exit_code_ = 0;
};

}  // namespace cluster
