// cluster_module.cpp — the primary's side of cluster_module.hpp (Node's lib/internal/cluster/
// primary.js): Node's names over Cluster's process table, ServerHandle (and its
// RoundRobinHandle) and RollingReload. A worker's side is cluster_worker.cpp (Node's child.js).
#include "cluster_module.hpp"

#include "log.hpp"
#include "process.hpp"
#include "rolling_reload.hpp"
#include "server_handle.hpp"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sys/wait.h>

namespace cluster {

namespace {
// Read before main(): MasterLink takes the variable away when a worker starts.
const bool started_as_worker = is_worker_process();

const char* policy_name(Policy p) { return p == Policy::rr ? "rr" : "none"; }
}  // namespace

bool is_worker() { return started_as_worker; }
bool is_primary() { return !started_as_worker; }

// ============================================================================== the primary

namespace {

// This program's own command line, for workers that re-run it (Node: process.argv).
std::vector<std::string> own_command_line() {
    std::ifstream in("/proc/self/cmdline", std::ios::binary);
    std::vector<std::string> args;
    for (std::string arg; std::getline(in, arg, '\0');) args.push_back(arg);
    if (args.empty()) args.push_back("worker");
    return args;
}

template <typename... Args, typename Fn>
void emit(const std::vector<Fn>& listeners, Args&&... args) {
    auto copy = listeners;  // a listener may add listeners
    for (auto& fn : copy) fn(args...);
}

int exit_code_of(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : -1; }
int signal_of(int status) { return WIFSIGNALED(status) ? WTERMSIG(status) : 0; }

}  // namespace

struct Primary {
    EventLoop loop;
    ::Cluster table{loop, nullptr};  // the one process table
    Settings settings;
    bool set_up = false;
    struct Served {
        Address asked;  // what the workers' listen() named: listen(0) shares the first port 0
        std::unique_ptr<ServerHandle> handle;
    };
    std::vector<Served> servers;  // by handle key
    int exit_code = 0;
    RollingReload reload{0};  // setup_primary sets its listen timeout
    long generation = 0;
    size_t reload_slots = 0;
    EventLoop::TimerId reload_timer = 0;
    std::vector<std::function<void(Worker&, const Address&)>> on_listening;
    std::vector<std::function<void(Worker&, int, int)>> on_exit;

    Primary() {
        table.on_message([this](::Worker& w, Message& m) { handle_message(w, m); });
        table.on_exit([this](const ::Worker& w, int status) { reaped(*table.find(w.id), status); });
    }

    void handle_message(::Worker& w, Message& m) {
        std::string act = m.body.get_string("act");
        if (act == "queryServer") {
            Address asked{m.body.get_string("host", "127.0.0.1"), static_cast<int>(m.body.get_int("port"))};
            return query_server(w, asked);
        }
        if (act == "listening") {
            Worker view(w);
            emit(on_listening, view, Address{m.body.get_string("host"), static_cast<int>(m.body.get_int("port"))});
            reload.listening(w.id, monotonic_ms());
            return drive_reload();
        }
        if (act == "disconnecting") return disconnect(w, false);  // worker.disconnect() inside the worker
        size_t key = static_cast<size_t>(m.body.get_int("handle"));
        if ((act == "accepted" || act == "refused") && key < servers.size()) servers[key].handle->answer(w, m.body);
    }

    // One socket per address, opened at the first listen() of it and kept.
    void query_server(::Worker& w, const Address& asked) {
        auto same = [&](const Served& s) { return s.asked.host == asked.host && s.asked.port == asked.port; };
        auto it = std::find_if(servers.begin(), servers.end(), same);
        if (it == servers.end()) {
            std::string error;
            int key = static_cast<int>(servers.size());
            bool deal = settings.policy == Policy::rr;
            auto handle = ServerHandle::open(loop, table, key, asked.host, asked.port, deal, &error);
            if (!handle) {
                JsonObject reply = msg("cmd", "server");
                reply.set("host", asked.host);
                reply.set("error", error);
                table.send(w, reply);
                return;
            }
            it = servers.insert(servers.end(), Served{asked, std::move(handle)});
        }
        it->handle->serve(w, asked.host);
    }

    void disconnect(::Worker& w, bool tell) {
        if (!w.serving()) return;
        w.state = WorkerState::disconnecting;  // its exit is expected: exited_after_disconnect
        for (Served& s : servers) s.handle->retire(w.pid);
        if (tell) table.send(w, msg("cmd", "disconnect"));
    }

    void reaped(::Worker& w, int status) {
        for (Served& s : servers) s.handle->remove(w.pid);  // what it had not confirmed is dealt again
        // A worker the reload has not reached yet is replaced by the program, as after any crash.
        if (reload.gone(w.id) == RollingReload::Gone::other && w.slot >= 0) reload.slot_done(w.slot, 0);
        drive_reload();
        Worker view(w);
        emit(on_exit, view, exit_code_of(status), signal_of(status));
    }

    // --- the rolling reload: lab14's RollingReload decides, this does what it says ------------
    void begin_reload() {
        std::vector<int> worker_of_slot;
        for (::Worker* w : table.workers()) {  // the workers alive now get the slots; others none
            w->slot = w->serving() ? static_cast<int>(worker_of_slot.size()) : -1;
            if (w->serving()) worker_of_slot.push_back(w->id);
        }
        reload_slots = worker_of_slot.size();
        reload.begin(++generation, std::move(worker_of_slot), monotonic_ms());
        log_event("reload start generation=%ld workers=%zu", generation, reload_slots);
        drive_reload();
    }

    void drive_reload() {
        loop.cancel_timer(reload_timer);
        for (;;) {
            ReloadAction a = reload.next(monotonic_ms());
            ::Worker* old = table.find(a.old_id);
            ::Worker* fresh = table.find(a.new_id);
            pid_t new_pid = fresh ? fresh->pid : 0;
            switch (a.kind) {
            case ReloadAction::Kind::idle:
                return;
            case ReloadAction::Kind::wait:  // for the newcomer's `listening`, or its listen timeout
                if (a.ms >= 0) reload_timer = loop.add_timer(std::max(1LL, a.ms), [this] { drive_reload(); });
                return;
            case ReloadAction::Kind::skip:
                continue;
            case ReloadAction::Kind::start:
                fresh = table.shutting_down() ? nullptr : table.fork_worker(a.slot);
                if (!fresh) {
                    reload.start_failed();
                    continue;
                }
                fresh->generation = a.generation;
                log_event("reload step generation=%ld slot=%d old=%d new=%d", a.generation, a.slot,
                          old ? old->pid : 0, fresh->pid);
                reload.started(fresh->id);
                continue;
            case ReloadAction::Kind::retire:  // the newcomer accepts now: only then may the old one stop
                log_event("reload listening generation=%ld slot=%d worker=%d", a.generation, a.slot, new_pid);
                if (!old) continue;
                log_event("reload retire generation=%ld slot=%d worker=%d replacement=%d", a.generation, a.slot,
                          old->pid, new_pid);
                disconnect(*old, true);
                continue;
            case ReloadAction::Kind::abort:
                if (fresh) Worker(*fresh).kill(SIGKILL);  // unless it has exited already
                log_event("reload aborted generation=%ld reason=\"%s\" replaced=%d/%zu", a.generation,
                          a.reason.c_str(), a.replaced, reload_slots);
                break;
            case ReloadAction::Kind::finished:
                log_event("reload done generation=%ld ms=%lld workers=%zu", a.generation, a.ms, table.size());
                break;
            }
            if (reload.take_queued()) begin_reload();  // one more for every SIGHUP during this one
            return;
        }
    }
};

namespace {
Primary& primary() {
    static Primary p;  // lives as long as the process, as Node's module does
    return p;
}
}  // namespace

// ----------------------------------------------------------------------- the public API

void Worker::disconnect() { primary().disconnect(*record_, true); }

void Worker::kill(int sig) {
    if (record_->state != WorkerState::exited) ::kill(record_->pid, sig);
}

void setup_primary(Settings s) {
    Primary& p = primary();
    if (const char* env = std::getenv(kPolicyEnv)) {  // the environment wins, as in Node
        std::string_view asked = env;
        if (asked == "rr" || asked == "none") s.policy = asked == "rr" ? Policy::rr : Policy::none;
        else log_event("error %s=%s is neither rr nor none: using %s", kPolicyEnv, env, policy_name(s.policy));
    }
    std::vector<std::string> own = own_command_line();
    if (s.exec.empty() && s.args.empty()) s.args.assign(own.begin() + 1, own.end());
    std::vector<std::string> argv{s.exec.empty() ? own[0] : s.exec};
    argv.insert(argv.end(), s.args.begin(), s.args.end());
    p.table.set_program(s.exec.empty() ? "/proc/self/exe" : s.exec, argv);
    p.settings = std::move(s);
    p.reload = RollingReload(p.settings.listen_timeout_ms);
    p.set_up = true;
    // SIGINT/SIGTERM: no reload goes on, every worker is disconnected (dealt nothing more, then
    // SIGTERM: it drains), and the loop stops when the last one has exited.
    stop_cluster_on_signals(p.loop, p.table, p.settings.shutdown_timeout_ms, {}, [&p] {
        if (p.reload.cancel()) log_event("reload aborted generation=%ld reason=\"shutdown\"", p.generation);
        for (::Worker* w : p.table.workers()) p.disconnect(*w, true);
    });
    log_event("setup exec=%s policy=%s", p.settings.exec.empty() ? "self" : p.settings.exec.c_str(),
              policy_name(p.settings.policy));
}

std::optional<Worker> fork() {
    Primary& p = primary();
    if (!p.set_up) setup_primary();
    if (p.table.shutting_down()) {  // every worker is on its way out, and so is the primary
        log_event("fork refused reason=shutdown");
        return std::nullopt;
    }
    ::Worker* w = p.table.fork_worker(-1);  // no slot: a reload gives slots to the workers it finds
    if (!w) return std::nullopt;  // logged (fork or socketpair): the caller may try again later
    w->generation = p.generation;
    return Worker(*w);
}

std::vector<Worker> workers() {
    std::vector<Worker> out;
    for (::Worker* w : primary().table.workers()) out.emplace_back(*w);
    return out;
}

void on_listening(std::function<void(Worker&, const Address&)> fn) { primary().on_listening.push_back(std::move(fn)); }
void on_exit(std::function<void(Worker&, int, int)> fn) { primary().on_exit.push_back(std::move(fn)); }

void rolling_reload() {
    Primary& p = primary();
    if (p.table.shutting_down()) return;
    RollingReload::Request r = p.reload.request(true);
    if (r == RollingReload::Request::begin) return p.begin_reload();
    if (r == RollingReload::Request::queued) log_event("reload queued after=%ld", p.generation);  // one more, after it
}

int run() {
    Primary& p = primary();
    p.loop.run();
    log_event("shutdown complete code=%d", p.exit_code);
    return p.exit_code;
}

void stop(int exit_code) {
    primary().exit_code = exit_code;
    primary().loop.stop();
}

EventLoop& loop() { return primary().loop; }

}  // namespace cluster
