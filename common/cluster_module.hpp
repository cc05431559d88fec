// cluster_module.hpp — Node's `cluster` module in C++: labs 05–14 behind a few names (lab15).
//
// Every earlier cluster lab built one piece by hand; this module packages them, under Node's
// names, so that the material's cluster example is a short program (labs/lab15_cluster):
//
//   Node                                     here                                  built in
//   cluster.isPrimary (isMaster)             cluster::is_primary()                 lab05
//   cluster.isWorker, NODE_UNIQUE_ID         cluster::is_worker(), CLUSTERLAB_UNIQUE_ID
//   cluster.setupPrimary({exec, args})       cluster::setup_primary(settings)       lab15
//   cluster.settings                         cluster::settings()
//   cluster.schedulingPolicy                 Settings::policy, or the environment:  lab06/07
//     NODE_CLUSTER_SCHED_POLICY=rr|none        CLUSTERLAB_SCHED_POLICY=rr|none
//   cluster.fork(env)                        cluster::fork(env)                     lab05
//   cluster.workers                          cluster::workers()
//   cluster.on('fork' | 'online' | 'listening' | 'disconnect' | 'exit' | 'message' | 'setup')
//                                            cluster::on_fork(fn) … on_setup(fn)    lab05
//   worker.id, worker.process.pid            Worker::id(), Worker::pid()
//   worker.send(message)                     Worker::send(message)                  lab05
//   worker.disconnect()                      Worker::disconnect(): stop accepting,  lab08
//                                              drain, exit 0
//   worker.exitedAfterDisconnect             Worker::exited_after_disconnect()      lab14
//   worker.kill(signal)                      Worker::kill(sig)
//   worker.isDead(), worker.isConnected()    Worker::is_dead(), is_connected()
//   (a worker) process.send, process.on('message')    WorkerProcess::send, on_message
//   (a worker) server.listen(port)           WorkerProcess::listen(port): asks the   lab05/07
//                                              primary for the handle of that address
//
// What the module does not decide, as in Node: whether a dead worker is replaced. It reports
// (`exit`, with exited_after_disconnect() telling a crash from a requested exit) and the
// program decides; RestartWindow (lab10) and rolling_reload() (lab14) are there to help.
//
// The handle of an address. A worker's listen(port, host) is a request to the primary
// ({"act":"queryServer"}), which opens the socket once per address and keeps it for its whole
// life (so workers come and go and no client is refused: lab10's lesson). With policy `none`
// the primary sends the socket itself and the workers accept on it (lab05: the kernel decides
// who gets a connection); with `rr` the socket never leaves the primary, which accepts and
// deals the connections (lab07, with Node's free list: RoundRobinHandle). listen(0) in every
// worker therefore gives every worker the same port, as Node documents.
//
// The log: the contract's events, as Cluster writes them (fork, online, listening, disconnect,
// exit), plus `setup`, `reload …` and `shutdown`.
//
// Ownership: the primary's state (process table, channels, listening sockets, dealt
// connections) lives in this module for the life of the process, as Node's does; a Worker object
// lives in cluster::workers() until its exit event has been delivered.
#pragma once

#include "http.hpp"
#include "http_server.hpp"
#include "json.hpp"

#include <csignal>
#include <functional>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

class EventLoop;
class MasterLink;

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
    std::vector<std::string> args;  // its arguments (argv[1]…); for this program: our own
    Policy policy = Policy::rr;     // from kPolicyEnv when set, as Node reads its variable
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
    bool send(const JsonObject& message);
    // Graceful: the worker stops accepting (the primary stops dealing to it), answers what it
    // has with Connection: close, closes its channel and exits 0. Not a crash: its exit event
    // has exited_after_disconnect() true.
    void disconnect();
    void kill(int sig = SIGTERM);
    bool is_dead() const { return dead_; }
    bool is_connected() const { return connected_; }
    bool exited_after_disconnect() const { return exited_after_disconnect_; }
    bool is_listening() const { return listening_; }
    const std::vector<std::string>& env() const { return env_; }

private:
    friend struct Primary;
    friend Worker* fork(const std::vector<std::string>& env);
    friend void rolling_reload(std::function<void(bool replaced_all)> done);
    int id_ = 0;
    pid_t pid_ = -1;
    std::vector<std::string> env_;
    bool dead_ = false, connected_ = true, listening_ = false, exited_after_disconnect_ = false;
};

struct Address {
    std::string host;
    int port = 0;
};

// setup_primary: fills what `settings` leaves empty from the defaults and emits `setup`.
// Call it before the first fork (fork() calls it for you with the defaults).
void setup_primary(Settings settings = {});
const Settings& settings();

// Starts a worker (this program again, or settings().exec) with `env` added to its
// environment. Returns it, or nullptr when fork or socketpair failed (logged: try again later)
// or the primary is shutting down (SIGINT/SIGTERM: no new worker then).
Worker* fork(const std::vector<std::string>& env = {});
// The live workers, oldest first (cluster.workers).
std::vector<Worker*> workers();

void on_setup(std::function<void(const Settings&)> fn);
void on_fork(std::function<void(Worker&)> fn);
void on_online(std::function<void(Worker&)> fn);
void on_listening(std::function<void(Worker&, const Address&)> fn);
void on_disconnect(std::function<void(Worker&)> fn);
// code is the exit code (-1 when a signal ended it); sig the signal (0 when it exited).
void on_exit(std::function<void(Worker&, int code, int sig)> fn);
void on_message(std::function<void(Worker&, const JsonObject&)> fn);

// lab14's rolling reload: each worker alive now is replaced, one at a time, by a new one (same
// env) that is listening before the old one is disconnected, so never fewer workers accept
// than before. A new worker that exits or does not listen within settings().listen_timeout_ms
// aborts it: the rest keep their old workers. A reload asked for during one runs after it.
// `done(true)` when every worker was replaced, `done(false)` when it was aborted.
void rolling_reload(std::function<void(bool replaced_all)> done = {});
bool reloading();

// The primary's event loop (Node runs its own implicitly): runs until every worker is gone
// after a SIGINT/SIGTERM (which disconnect()s them all: exit 0), or stop(code).
int run();
void stop(int exit_code);
EventLoop& loop();

// ------------------------------------------------------------------------------- a worker

// The worker's side: cluster.worker, process.send/on('message'), and server.listen() under a
// cluster. Construct it first thing in a worker (it takes the channel from the environment).
class WorkerProcess {
public:
    explicit WorkerProcess(const ConnectionLimits& limits = {});
    ~WorkerProcess();

    int id() const;  // cluster.worker.id
    bool send(const JsonObject& message);
    void on_message(std::function<void(const JsonObject&)> fn);
    // server.listen(port, host): asks the primary for the handle of that address; `http` serves
    // whatever it gets (accepted here under `none`, dealt by the primary under `rr`).
    // `on_listening(port)` once it is serving (the primary logs `listening`).
    void listen(long port, const std::string& host = "127.0.0.1", std::function<void(int port)> on_listening = {});
    // worker.disconnect() from inside: stop accepting, drain, close the channel, exit 0.
    void disconnect();
    // Runs the loop until the worker is done. Returns its exit code.
    int run();

    HttpServer& http();
    EventLoop& loop();

private:
    struct State;
    State* state_;
};

}  // namespace cluster
