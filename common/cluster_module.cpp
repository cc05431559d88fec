// cluster_module.cpp — the façade of cluster_module.hpp: the primary's side (Node's names over
// Cluster, RoundRobinHandle and the reload) and the worker's (WorkerProcess).
#include "cluster_module.hpp"

#include "log.hpp"
#include "net.hpp"
#include "process.hpp"
#include "round_robin_handle.hpp"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sys/epoll.h>
#include <sys/wait.h>

namespace cluster {

const char* policy_name(Policy p) { return p == Policy::rr ? "rr" : "none"; }

std::optional<Policy> parse_policy(std::string_view text) {
    if (text == "rr") return Policy::rr;
    if (text == "none") return Policy::none;
    return std::nullopt;
}

bool is_worker() {
    // Read once: WorkerProcess removes the variable, so that a worker's own children (lab04's
    // offload, an exec'd program) do not believe they are workers too.
    static const bool worker = std::getenv(kUniqueIdEnv) != nullptr;
    return worker;
}
bool is_primary() { return !is_worker(); }

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

// One listening address of the primary, opened at the first worker's listen() and kept.
struct ServerHandle {
    int key = 0;  // its number in the primary's table: dealt connections name it
    Address address;
    Fd listener;
    RoundRobinHandle rr;  // under Policy::rr only
    bool refusing = false;  // logged the bound once for this burst
    EventLoop::TimerId stuck_check = 0;  // the dealer's next deadline (RoundRobinHandle::next_deadline)
    long long stuck_check_at = 0;
};

// A reload in progress (lab14's, through the module's Worker API).
struct Reload {
    int generation = 0;
    std::vector<int> old_ids;   // the workers to replace, in order
    size_t next = 0;            // the slot being replaced
    int new_id = 0;             // the replacement we wait for, or 0
    EventLoop::TimerId timer = 0;
    long long started_ms = 0;
};

template <typename... Args, typename Fn>
void emit(const std::vector<Fn>& listeners, Args&&... args) {
    auto copy = listeners;  // a listener may add listeners
    for (auto& fn : copy) fn(args...);
}

}  // namespace

struct Primary {
    EventLoop loop;
    ::Cluster table{loop, nullptr};
    Settings settings;
    bool set_up = false;
    int next_id = 1;
    std::vector<std::unique_ptr<Worker>> workers;  // oldest first
    std::vector<std::unique_ptr<ServerHandle>> servers;  // by key; the loop's callbacks hold them
    int exit_code = 0;
    std::optional<Reload> reload;
    bool reload_again = false;  // a reload asked for while one ran
    int generation = 0;
    std::vector<std::function<void(Worker&, const Address&)>> on_listening;
    std::vector<std::function<void(Worker&, int, int)>> on_exit;

    Primary();
    Worker* find(pid_t pid);
    Worker* find_id(int id);
    ::Worker* process_of(const Worker& w);
    void handle_message(::Worker& proc, Message& m);
    void query_server(Worker& w, const JsonObject& body);
    ServerHandle* open_server(const Address& address, std::string* error);
    void accept_and_deal(ServerHandle& h);
    void send_handoffs(ServerHandle& h, std::vector<RoundRobinHandle::Handoff> work);
    void reaped(const ::Worker& proc, int status);
    void start_reload();
    void reload_step();
    void reload_listening(Worker& w);
    void reload_finish(bool ok, const std::string& reason);
};

namespace {
Primary& primary() {
    static Primary p;  // lives as long as the process, as Node's module does
    return p;
}
}  // namespace

Primary::Primary() {
    table.on_message([this](::Worker& proc, Message& m) { handle_message(proc, m); });
    table.on_exit([this](const ::Worker& proc, int status) { reaped(proc, status); });
}

Worker* Primary::find(pid_t pid) {
    for (auto& w : workers)
        if (w->pid_ == pid) return w.get();
    return nullptr;
}

Worker* Primary::find_id(int id) {
    for (auto& w : workers)
        if (w->id_ == id) return w.get();
    return nullptr;
}

::Worker* Primary::process_of(const Worker& w) {
    for (::Worker* p : table.workers())
        if (p->pid == w.pid_) return p;
    return nullptr;
}

void Primary::handle_message(::Worker& proc, Message& m) {
    Worker* w = find(proc.pid);
    if (!w) return;
    const JsonObject& body = m.body;
    std::string act = body.get_string("act");
    if (act == "queryServer") return query_server(*w, body);
    if (act == "listening") {
        emit(on_listening, *w, Address{body.get_string("host"), static_cast<int>(body.get_int("port"))});
        return reload_listening(*w);
    }
    if (act == "disconnecting") {  // worker.disconnect() called inside the worker: deal it nothing more
        w->exited_after_disconnect_ = true;
        for (auto& h : servers) h->rr.retire(w->pid_);
        return;
    }
    if (act != "accepted" && act != "refused") return;
    size_t key = static_cast<size_t>(body.get_int("handle"));
    if (key >= servers.size()) return;
    ServerHandle& h = *servers[key];
    auto id = static_cast<std::uint64_t>(body.get_int("id"));
    if (act == "refused") {
        log_event("refused worker=%d id=%llu reason=%s: dealt again", w->pid_, static_cast<unsigned long long>(id),
                  body.get_string("reason").c_str());
        return send_handoffs(h, h.rr.refuse(w->pid_, id, monotonic_ms()));
    }
    bool known = false;
    auto next = h.rr.acknowledge(w->pid_, id, monotonic_ms(), &known);
    if (!known)
        log_event("error message act=accepted id=%llu from worker=%d matches no handoff",
                  static_cast<unsigned long long>(id), w->pid_);
    send_handoffs(h, std::move(next));
}

ServerHandle* Primary::open_server(const Address& address, std::string* error) {
    // One socket per address: a second listen() of the same address (listen(0) included: the
    // key is what the worker asked for, not what the kernel picked) shares the first.
    for (auto& h : servers)
        if (h->address.host == address.host && h->address.port == address.port) return h.get();
    ListenOptions lo;
    lo.host = address.host;
    lo.port = address.port;
    lo.nonblocking = true;
    Fd listener = listen_tcp(lo, error);
    if (!listener) return nullptr;
    auto& h = servers.emplace_back(std::make_unique<ServerHandle>());
    h->key = static_cast<int>(servers.size() - 1);
    h->address = address;
    h->listener = std::move(listener);
    ServerHandle* raw = h.get();
    if (settings.policy == Policy::rr && !loop.add(raw->listener.get(), EPOLLIN, [this, raw](uint32_t) { accept_and_deal(*raw); }))
        die_errno("epoll_ctl(listener)");
    return raw;
}

void Primary::query_server(Worker& w, const JsonObject& body) {
    Address asked{body.get_string("host", "127.0.0.1"), static_cast<int>(body.get_int("port"))};
    ::Worker* proc = process_of(w);
    if (!proc) return;
    std::string error;
    ServerHandle* h = open_server(asked, &error);
    JsonObject reply = msg("cmd", "server");
    reply.set("host", asked.host);
    if (!h) {
        reply.set("error", error);
        table.send(*proc, reply);
        return;
    }
    reply.set("port", local_port(h->listener.get()));
    reply.set("handle", h->key);
    if (settings.policy == Policy::none) {
        table.send(*proc, reply, h->listener.get());  // the socket itself: the worker accepts
        return;
    }
    table.send(*proc, reply);  // no socket: connections will come one by one
    if (!w.exited_after_disconnect_) send_handoffs(*h, h->rr.add(w.pid_, monotonic_ms()));
}

void Primary::accept_and_deal(ServerHandle& h) {
    for (int i = 0; i < 128; ++i) {  // bounded, so acks and signals get their turn under a flood
        Accepted a = accept_client(h.listener.get(), /*nonblocking=*/true);
        if (a.status == AcceptStatus::none_pending) break;
        if (a.status != AcceptStatus::client) continue;
        bool refused = false;
        send_handoffs(h, h.rr.distribute(std::move(a.fd), monotonic_ms(), &refused));
        if (refused && !h.refusing)
            log_event("error every worker busy and %zu connections waiting: refusing new ones", h.rr.waiting());
        h.refusing = refused;
    }
}

void Primary::send_handoffs(ServerHandle& h, std::vector<RoundRobinHandle::Handoff> work) {
    while (!work.empty()) {
        RoundRobinHandle::Handoff next = work.back();
        work.pop_back();
        Worker* w = find(next.worker);
        ::Worker* proc = w ? process_of(*w) : nullptr;
        JsonObject m = msg("cmd", "connection");
        m.set("id", static_cast<std::int64_t>(next.id));
        m.set("handle", h.key);
        m.set("sent_ms", static_cast<std::int64_t>(monotonic_ms()));  // read later than late_ms: refuse it
        m.set("late_ms", static_cast<std::int64_t>(h.rr.late_ms()));
        if (proc && table.send(*proc, m, next.fd)) continue;
        // Its channel is gone: it is dying. Take its connections back and deal them again.
        auto again = h.rr.remove(next.worker, monotonic_ms());
        work.insert(work.end(), again.begin(), again.end());
    }
    // Something is due later (the worker in turn would count as stuck, a connection is to be
    // taken back from a stuck worker): look again then.
    long long deadline = h.rr.next_deadline();
    if (deadline < 0 || (h.stuck_check && h.stuck_check_at <= deadline)) return;
    if (h.stuck_check) loop.cancel_timer(h.stuck_check);
    h.stuck_check_at = deadline;
    h.stuck_check = loop.add_timer(std::max(1LL, deadline - monotonic_ms()), [this, &h] {
        h.stuck_check = 0;
        send_handoffs(h, h.rr.poll(monotonic_ms()));
    });
}

void Primary::reaped(const ::Worker& proc, int status) {
    auto it = std::find_if(workers.begin(), workers.end(), [&](auto& w) { return w->pid_ == proc.pid; });
    if (it == workers.end()) return;
    std::unique_ptr<Worker> w = std::move(*it);
    workers.erase(it);  // cluster.workers no longer lists it when 'exit' is emitted
    w->dead_ = true;
    for (auto& h : servers) send_handoffs(*h, h->rr.remove(w->pid_, monotonic_ms()));  // deal its unconfirmed again
    if (reload && w->id_ == reload->new_id) reload_finish(false, "new worker exited before listening");
    emit(on_exit, *w, WIFEXITED(status) ? WEXITSTATUS(status) : -1, WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

// --- rolling reload (lab14) ----------------------------------------------------------------

void Primary::start_reload() {
    Reload r;
    r.generation = ++generation;
    r.started_ms = monotonic_ms();
    for (auto& w : workers)
        if (!w->exited_after_disconnect_) r.old_ids.push_back(w->id_);
    reload = std::move(r);
    log_event("reload start generation=%d workers=%zu", reload->generation, reload->old_ids.size());
    reload_step();
}

void Primary::reload_step() {
    Reload& r = *reload;
    while (r.next < r.old_ids.size()) {
        Worker* old = find_id(r.old_ids[r.next]);
        if (old && !old->exited_after_disconnect_) break;
        ++r.next;  // it died (and was replaced by the program) or is already leaving
    }
    if (r.next == r.old_ids.size()) {
        log_event("reload done generation=%d ms=%lld workers=%zu", r.generation, monotonic_ms() - r.started_ms,
                  workers.size());
        return reload_finish(true, "");
    }
    Worker* old = find_id(r.old_ids[r.next]);
    Worker* fresh = cluster::fork();
    if (!fresh) return reload_finish(false, "fork failed");
    r.new_id = fresh->id_;
    log_event("reload step generation=%d slot=%zu old=%d new=%d", r.generation, r.next, old->pid_, fresh->pid_);
    r.timer = loop.add_timer(settings.listen_timeout_ms, [this] {
        reload->timer = 0;
        reload_finish(false, "listen-timeout");
    });
}

void Primary::reload_listening(Worker& w) {
    if (!reload || w.id_ != reload->new_id) return;
    Reload& r = *reload;
    loop.cancel_timer(r.timer);
    r.timer = 0;
    r.new_id = 0;
    // The newcomer accepts now: only then may the old one stop. Never fewer workers accepting.
    if (Worker* old = find_id(r.old_ids[r.next])) {
        log_event("reload listening generation=%d slot=%zu worker=%d", r.generation, r.next, w.pid_);
        log_event("reload retire generation=%d slot=%zu worker=%d replacement=%d", r.generation, r.next, old->pid_, w.pid_);
        old->disconnect();
    }
    ++r.next;
    reload_step();
}

void Primary::reload_finish(bool ok, const std::string& reason) {
    Reload r = std::move(*reload);
    reload.reset();
    if (r.timer) loop.cancel_timer(r.timer);
    if (!ok) {
        if (Worker* fresh = find_id(r.new_id)) fresh->kill(SIGKILL);
        log_event("reload aborted generation=%d reason=\"%s\" replaced=%zu/%zu", r.generation, reason.c_str(), r.next,
                  r.old_ids.size());
    }
    if (reload_again) {
        reload_again = false;
        start_reload();  // one reload for every SIGHUP that came during the last
    }
}

// ----------------------------------------------------------------------- the public API

void Worker::disconnect() {
    if (dead_) return;
    exited_after_disconnect_ = true;
    Primary& p = primary();
    for (auto& h : p.servers) h->rr.retire(pid_);
    if (::Worker* proc = p.process_of(*this)) p.table.send(*proc, msg("cmd", "disconnect"));
}

void Worker::kill(int sig) {
    if (!dead_) ::kill(pid_, sig);
}

void setup_primary(Settings s) {
    Primary& p = primary();
    if (const char* env = std::getenv(kPolicyEnv)) {
        if (auto policy = parse_policy(env)) s.policy = *policy;
        else log_event("error %s=%s is neither rr nor none: using %s", kPolicyEnv, env, policy_name(s.policy));
    }
    std::vector<std::string> own = own_command_line();
    if (s.exec.empty() && s.args.empty()) s.args.assign(own.begin() + 1, own.end());
    std::vector<std::string> argv{s.exec.empty() ? own[0] : s.exec};
    argv.insert(argv.end(), s.args.begin(), s.args.end());
    p.table.set_program(s.exec.empty() ? "/proc/self/exe" : s.exec, argv);
    p.settings = std::move(s);
    p.set_up = true;
    // SIGINT/SIGTERM: no reload starts any more, every worker is disconnected (dealt nothing
    // more, then SIGTERM: it drains), and the loop stops when the last one has exited.
    stop_cluster_on_signals(p.loop, p.table, p.settings.shutdown_timeout_ms, {}, [&p] {
        p.reload_again = false;
        if (p.reload) p.reload_finish(false, "shutdown");
        for (auto& w : p.workers) w->disconnect();
    });
    log_event("setup exec=%s policy=%s", p.settings.exec.empty() ? "self" : p.settings.exec.c_str(),
              policy_name(p.settings.policy));
}

Worker* fork() {
    Primary& p = primary();
    if (!p.set_up) setup_primary();
    if (p.table.shutting_down()) {  // every worker is on its way out, and so is the primary
        log_event("fork refused reason=shutdown");
        return nullptr;
    }
    int id = p.next_id;
    ::Worker* proc = p.table.fork_worker(id, {std::string(kUniqueIdEnv) + "=" + std::to_string(id)});
    if (!proc) return nullptr;  // logged (fork or socketpair): the caller may try again later
    ++p.next_id;
    auto& w = p.workers.emplace_back(std::make_unique<Worker>());
    w->id_ = id;
    w->pid_ = proc->pid;
    return w.get();
}

std::vector<Worker*> workers() {
    std::vector<Worker*> out;
    for (auto& w : primary().workers) out.push_back(w.get());
    return out;
}

void on_listening(std::function<void(Worker&, const Address&)> fn) { primary().on_listening.push_back(std::move(fn)); }
void on_exit(std::function<void(Worker&, int, int)> fn) { primary().on_exit.push_back(std::move(fn)); }

void rolling_reload() {
    Primary& p = primary();
    if (p.table.shutting_down()) return;
    if (!p.reload) return p.start_reload();
    if (!p.reload_again) log_event("reload queued after=%d", p.generation);  // several SIGHUPs: one more reload
    p.reload_again = true;
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

// =============================================================================== a worker

WorkerProcess::WorkerProcess(const ConnectionLimits& limits) : rt_(limits) {
    is_worker();  // remembered before the variable goes
    unsetenv(kUniqueIdEnv);
    rt_.master.on_message([this](Message& m) { on_primary(m); });
    // The primary's SIGTERM, or anyone's: leave gracefully, as on worker.disconnect().
    rt_.loop.on_signal(SIGTERM, [this] { disconnect(); });
}

void WorkerProcess::on_primary(Message& m) {
    std::string cmd = m.body.get_string("cmd");
    if (cmd == "connection") confirm(m);
    else if (cmd == "server") serve(m);
    else if (cmd == "disconnect") disconnect();
}

void WorkerProcess::confirm(Message& m) {
    // rr: the primary accepted this one for us. Confirm in the same turn of the loop, before
    // reading a byte of it, so the primary can close its copy and deal us more. Refused when it
    // comes too late (the primary may have taken it back while we were stopped) or without its
    // fd: the primary deals it to someone else.
    const char* refused = nullptr;
    if (!m.fd) refused = "no-fd";
    else if (monotonic_ms() - m.body.get_int("sent_ms") > m.body.get_int("late_ms")) refused = "late";  // closes unread
    JsonObject answer = msg("act", refused ? "refused" : "accepted");
    if (refused) answer.set("reason", refused);
    else rt_.http.adopt(std::move(m.fd));
    answer.set("id", m.body.get_int("id"));
    answer.set("handle", m.body.get_int("handle"));
    rt_.master.send(answer);
}

void WorkerProcess::serve(Message& m) {
    std::string host = m.body.get_string("host");
    if (m.body.has("error")) {
        // Node emits 'error' on the server; nobody handles it, so the worker dies.
        log_event("fatal listen %s: %s", host.c_str(), m.body.get_string("error").c_str());
        exit_code_ = 1;
        finished_ = true;
        rt_.loop.stop();
        return;
    }
    if (m.fd) {  // none: accept on the primary's socket ourselves
        int fd = m.fd.get();
        arm_accept_spare();
        if (!rt_.loop.add(fd, EPOLLIN, [this, fd](uint32_t) { rt_.http.accept_all(fd); })) die_errno("epoll_ctl(listener)");
        listeners_.push_back(std::move(m.fd));
    }
    JsonObject listening = msg("act", "listening");
    listening.set("host", host);
    listening.set("port", m.body.get_int("port"));
    rt_.master.send(listening);
}

void WorkerProcess::listen(long port, const std::string& host) {
    JsonObject query = msg("act", "queryServer");
    query.set("host", host);
    query.set("port", static_cast<std::int64_t>(port));
    rt_.master.send(query);
}

void WorkerProcess::disconnect() {
    if (leaving_) return;
    leaving_ = true;
    rt_.master.send(msg("act", "disconnecting"));  // no more connections for us (rr)
    for (Fd& l : listeners_) rt_.loop.remove(l.get());
    listeners_.clear();  // none: the primary keeps its copy, so no client is refused
    rt_.http.drain([this] {
        finished_ = true;
        rt_.loop.stop();
    });
    log_event("disconnect draining=%zu", rt_.http.connection_count());
}

int WorkerProcess::run() {
    rt_.master.send(msg("act", "online"));
    while (!finished_) rt_.loop.run();
    rt_.master.flush_blocking();
    return exit_code_;
}

}  // namespace cluster
