// cluster.hpp — the master's process table and the worker's end of the channel (every
// master/worker lab, 05–15, and common/cluster_module.cpp).
//
// Master side (Cluster): one table of workers keyed by id (Node's worker.id: 1, 2, 3… in fork
// order, never reused), each one record: id, slot, pid, generation and a state. Fork a worker = socketpair + fork/exec of this same program with the
// channel's fd number in CLUSTERLAB_CHANNEL_FD (cluster.fork()); watch every channel on the
// event loop; reap exits on SIGCHLD. It logs the contract's events in Node's vocabulary:
//   [master P] fork worker=W          [master P] online worker=W
//   [master P] listening worker=W port=N
//   [master P] disconnect worker=W    (its channel hit end of file: it is gone or going)
//   [master P] exit worker=W code=C signal=S
// Worker side (MasterLink): the channel as `process.send` / `process.on('message')`; end of file
// means the master died, and the worker exits (no orphans). A message whose fd was lost at the
// worker's fd limit is no reason to exit: it arrives with Message::fd_lost set (channel.hpp).
//
// Ownership: Cluster owns each worker's Channel (master end); the worker end is closed in the
// master right after fork, so a worker's death reads as end of file. MasterLink owns the
// worker's end.
#pragma once

#include "channel.hpp"
#include "event_loop.hpp"

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <sys/types.h>
#include <vector>

// How long a master waits before it tries again to start a worker that could not be started.
constexpr long kForkRetryMs = 1000;

// A one-key message: msg("act", "online") is {"act":"online"}.
JsonObject msg(std::string_view key, std::string_view value);

// Where a worker is in its life (Node's worker.state, plus `starting` before its first word).
// Cluster moves it to online and listening when the worker says so and to exited when it is
// reaped; `disconnecting` is the master's to set: the worker is going on purpose — it announced
// its own death (lab09's suicide) or was told to go (lab14's retirement, Node's
// worker.disconnect()) — so its exit is expected, not a crash to restart.
enum class WorkerState { starting, online, listening, disconnecting, exited };

struct Worker {
    int id = 0;            // Node's worker.id: 1, 2, 3… in fork order, never reused
    int slot = 0;          // 0..N-1: a replacement takes the slot of the worker it replaces
    pid_t pid = -1;
    long generation = 0;   // lab14: the reload that started it (0 where nobody reloads)
    WorkerState state = WorkerState::starting;
    // Set when it is reaped: it was disconnecting when it exited (Node's exitedAfterDisconnect),
    // the one thing an exit handler needs from the state that `exited` replaced.
    bool exited_after_disconnect = false;
    std::unique_ptr<Channel> channel;  // null once disconnected

    bool listening() const { return state == WorkerState::listening; }
    // Neither disconnecting nor exited: it still owns its slot.
    bool serving() const { return state != WorkerState::disconnecting && state != WorkerState::exited; }
};

class Cluster {
public:
    using MessageFn = std::function<void(Worker&, Message&)>;
    using ExitFn = std::function<void(const Worker&, int wait_status)>;

    // `argv` is this program's own command line: a worker re-runs it (cluster.fork()).
    Cluster(EventLoop& loop, char** argv);

    // Messages other than online/listening (which Cluster logs and records itself) and, after
    // those two, every message too, so a lab can act on them.
    void on_message(MessageFn fn) { on_message_ = std::move(fn); }
    // After a worker has exited and been reaped and logged: its state is `exited`, workers() no
    // longer lists it, find(id) still finds it until the handler returns; then it is erased.
    void on_exit(ExitFn fn) { on_exit_ = std::move(fn); }

    // Forks a worker into `slot` (state starting, the next id). Returns it, or nullptr if socketpair or fork failed (logged with
    // the call and strerror: EMFILE at the fd limit, EAGAIN at the process limit). A per-worker
    // failure: the caller keeps serving with the workers it has and tries again later.
    Worker* fork_worker(int slot);
    // The same, with `env` ("KEY=VALUE" each) added to the worker's environment (cluster.fork(env)).
    Worker* fork_worker(int slot, const std::vector<std::string>& env);
    // Node's setupPrimary({exec, args}): from now on workers run `program` with `argv` (argv[0]
    // included) instead of re-running this program (lab15 --exec).
    void set_program(std::string program, std::vector<std::string> argv);
    // fork_worker(slot) now, and if it fails, again every `retry_ms` (logging each miss) until it
    // succeeds or the cluster shuts down; `started` runs with the worker once it exists.
    void fork_worker_retrying(int slot, long retry_ms, std::function<void(Worker&)> started);
    // Sends a message (and optionally an fd, borrowed) without blocking. False if it is gone.
    bool send(Worker& w, const JsonObject& message, int fd = -1);
    // Reads and handles now whatever `w` has sent so far, as the loop would on its next turn:
    // for a decision that must not be taken on stale news (has it answered yet?).
    void read_messages(Worker& w) { if (w.channel) on_channel(w); }

    // Every worker not yet reaped, in id order (= fork order).
    std::vector<Worker*> workers();
    Worker* find(int id);         // nullptr: no such worker (or gone: see on_exit)
    Worker* find_pid(pid_t pid);  // a live one; a linear search: the table holds a handful
    pid_t pid_of(int id);         // find(id)'s pid, -1 if none: for log lines that name pids
    // The worker that owns `slot`: the first in it that is neither disconnecting nor exited (a
    // suicided or retired one still drains there while its replacement owns the slot).
    Worker* serving_in(int slot);
    // serving_in(s)'s id for each slot 0..slots-1 (0: nobody serves it).
    std::vector<int> ids_by_slot(int slots);
    size_t count(WorkerState state) const;
    // Node's worker.disconnect(): the worker goes to `disconnecting` (its exit is expected, not a
    // crash) and is sent {"cmd":"disconnect"}, to drain and exit. False if it was going already.
    bool disconnect_worker(Worker& w);
    // Node's worker.kill(signal): the same, by a signal instead of a message.
    bool kill_worker(Worker& w, int sig);
    size_t size() const { return workers_.size(); }
    size_t listening_count() const;

    // SIGTERM every worker; when all have exited, run `done`. Those still alive after
    // `timeout_ms` get SIGKILL. No zombie is left: every exit is reaped.
    void shutdown(long timeout_ms, std::function<void()> done);
    bool shutting_down() const { return shutting_down_; }

private:
    void on_channel(Worker& w);
    void disconnect(Worker& w);
    void reap();

    EventLoop& loop_;
    char** argv_;
    std::string program_ = "/proc/self/exe";
    std::vector<std::string> program_args_;  // set_program's argv, backing program_argv_
    std::vector<char*> program_argv_;
    std::map<int, Worker> workers_;  // by id; a map's nodes stay put, so Worker* stays valid
    int next_id_ = 1;
    Worker* exiting_ = nullptr;      // the record on_exit is being told about, out of workers_
    MessageFn on_message_;
    ExitFn on_exit_;
    bool shutting_down_ = false;
    std::function<void()> on_all_exited_;
};

// The worker's view of its master.
class MasterLink {
public:
    // Takes the channel from the environment. Returns false if there is none: not a worker.
    static bool is_worker();

    explicit MasterLink(EventLoop& loop);
    void on_message(std::function<void(Message&)> fn) { on_message_ = std::move(fn); }
    // What to do when the master is gone (default: log it and exit 0).
    void on_master_gone(std::function<void()> fn) { on_gone_ = std::move(fn); }
    bool send(const JsonObject& message, int fd = -1);
    // Waits until everything queued has been written (used just before exiting).
    bool flush_blocking();

private:
    void on_channel();
    EventLoop& loop_;
    Channel channel_;
    std::function<void(Message&)> on_message_;
    std::function<void()> on_gone_;
};
