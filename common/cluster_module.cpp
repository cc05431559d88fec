#include "cluster_module.hpp"

#include "cluster.hpp"
#include "event_loop.hpp"
#include "log.hpp"
#include "net.hpp"
#include "process.hpp"
#include "round_robin_handle.hpp"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
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
    std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::string> args;
    size_t start = 0;
    for (size_t i = 0; i < all.size(); ++i) {
        if (all[i] != '\0') continue;
        args.push_back(all.substr(start, i - start));
        start = i + 1;
    }
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
    std::vector<std::function<void(bool)>> done;
};

}  // namespace

struct Primary {
    EventLoop loop;
    ::Cluster table;
    Settings settings;
    bool set_up = false;
    int next_id = 1;
    std::vector<std::unique_ptr<Worker>> workers;  // oldest first
    std::vector<std::unique_ptr<ServerHandle>> servers;
    bool shutting_down = false;
    int exit_code = 0;
    std::optional<Reload> reload;
    bool reload_again = false;  // a reload asked for while one ran
    std::vector<std::function<void(bool)>> reload_again_done;
    int generation = 0;

    std::vector<std::function<void(const Settings&)>> on_setup;
    std::vector<std::function<void(Worker&)>> on_fork, on_online, on_disconnect;
    std::vector<std::function<void(Worker&, const Address&)>> on_listening;
    std::vector<std::function<void(Worker&, int, int)>> on_exit;
    std::vector<std::function<void(Worker&, const JsonObject&)>> on_message;

    Primary();
    Worker* find(pid_t pid);
    Worker* find_id(int id);
    ::Worker* process_of(const Worker& w);
    void handle_message(::Worker& proc, Message& m);
    void query_server(Worker& w, const JsonObject& body);
    ServerHandle* open_server(const Address& address, std::string* error);
    void accept_and_deal(ServerHandle& h);
    void send_handoffs(ServerHandle& h, std::vector<RoundRobinHandle::Handoff> work);
    void retire_from_servers(Worker& w);  // leaving: deal it nothing more
    void leave_servers(Worker& w);        // gone: deal its unconfirmed connections again
    void reaped(const ::Worker& proc, int status);
    void shutdown(const char* signal_name);
    // reload
    void start_reload(std::vector<std::function<void(bool)>> done);
    void reload_step();
    void reload_finish(bool ok, const std::string& reason);
    void reload_listening(Worker& w);
    void reload_exit(Worker& w);
};

namespace {
Primary& primary() {
    static Primary* p = new Primary();  // lives as long as the process, as Node's module does
    return *p;
}

template <typename... Args, typename Fn>
void emit(const std::vector<Fn>& listeners, Args&&... args) {
    auto copy = listeners;  // a listener may add listeners
    for (auto& fn : copy) fn(args...);
}
}  // namespace

Primary::Primary() : table(loop, nullptr) {
    table.on_message([this](::Worker& proc, Message& m) { handle_message(proc, m); });
    table.on_exit([this](const ::Worker& proc, int status) { reaped(proc, status); });
    loop.on_signal(SIGINT, [this] { shutdown("SIGINT"); });
    loop.on_signal(SIGTERM, [this] { shutdown("SIGTERM"); });
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
    if (act == "online") {
        emit(on_online, *w);
    } else if (act == "queryServer") {
        query_server(*w, body);
    } else if (act == "listening") {
        w->listening_ = true;
        Address a{body.get_string("host"), static_cast<int>(body.get_int("port"))};
        emit(on_listening, *w, a);
        reload_listening(*w);
    } else if (act == "accepted" || act == "refused") {
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
        if (!known) log_event("error message act=accepted id=%llu from worker=%d matches no handoff",
                              static_cast<unsigned long long>(id), w->pid_);
        send_handoffs(h, std::move(next));
    } else if (act == "disconnecting") {
        // worker.disconnect() called inside the worker: deal it nothing more.
        w->exited_after_disconnect_ = true;
        retire_from_servers(*w);
    } else if (act.empty() && !body.has("cmd")) {
        emit(on_message, *w, body);
    }
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
    auto h = std::make_unique<ServerHandle>();
    h->key = static_cast<int>(servers.size());
    h->address = address;
    h->listener = std::move(listener);
    ServerHandle* raw = h.get();
    servers.push_back(std::move(h));
    if (settings.policy == Policy::rr) {
        int fd = raw->listener.get();
        if (!loop.add(fd, EPOLLIN, [this, raw](uint32_t) { accept_and_deal(*raw); })) die_errno("epoll_ctl(listener)");
    }
    return raw;
}

void Primary::query_server(Worker& w, const JsonObject& body) {
    Address asked{body.get_string("host", "127.0.0.1"), static_cast<int>(body.get_int("port"))};
    std::string error;
    ServerHandle* h = open_server(asked, &error);
    JsonObject reply = msg("cmd", "server");
    reply.set("host", asked.host);
    reply.set("asked", asked.port);  // what the worker's listen() named (0 included)
    ::Worker* proc = process_of(w);
    if (!proc) return;
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
    if (deadline < 0) return;
    if (h.stuck_check && h.stuck_check_at <= deadline) return;
    if (h.stuck_check) loop.cancel_timer(h.stuck_check);
    h.stuck_check_at = deadline;
    h.stuck_check = loop.add_timer(std::max(1LL, deadline - monotonic_ms()), [this, &h] {
        h.stuck_check = 0;
        send_handoffs(h, h.rr.poll(monotonic_ms()));
    });
}

void Primary::retire_from_servers(Worker& w) {
    for (auto& h : servers) h->rr.retire(w.pid_);
}

void Primary::leave_servers(Worker& w) {
    for (auto& h : servers) send_handoffs(*h, h->rr.remove(w.pid_, monotonic_ms()));
}

void Primary::reaped(const ::Worker& proc, int status) {
    auto it = std::find_if(workers.begin(), workers.end(), [&](auto& w) { return w->pid_ == proc.pid; });
    if (it == workers.end()) return;
    std::unique_ptr<Worker> w = std::move(*it);
    workers.erase(it);  // cluster.workers no longer lists it when 'exit' is emitted
    w->dead_ = true;
    w->connected_ = false;
    w->listening_ = false;
    leave_servers(*w);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    emit(on_disconnect, *w);
    reload_exit(*w);
    emit(on_exit, *w, code, sig);
    if (shutting_down && workers.empty()) loop.stop();
}

void Primary::shutdown(const char* signal_name) {
    if (shutting_down) return;  // a second Ctrl-C changes nothing: the deadline stands
    shutting_down = true;
    if (reload) reload_finish(false, "shutdown");
    log_event("shutdown signal=%s workers=%zu", signal_name, workers.size());
    for (auto& w : workers) w->disconnect();
    if (workers.empty()) return loop.stop();
    loop.add_timer(settings.shutdown_timeout_ms, [this] {
        for (auto& w : workers) {
            log_event("kill worker=%d reason=shutdown-timeout", w->pid_);
            w->kill(SIGKILL);
        }
    });
}

// --- rolling reload (lab14) ----------------------------------------------------------------

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
    Worker* fresh = cluster::fork(old->env_);
    if (!fresh) return reload_finish(false, "fork failed");
    r.new_id = fresh->id_;
    log_event("reload step generation=%d slot=%zu old=%d new=%d", r.generation, r.next, old->pid_, fresh->pid_);
    r.timer = loop.add_timer(settings.listen_timeout_ms, [this] {
        reload->timer = 0;
        if (Worker* late = find_id(reload->new_id)) late->kill(SIGKILL);
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

void Primary::reload_exit(Worker& w) {
    if (!reload || w.id_ != reload->new_id) return;
    reload_finish(false, "new worker exited before listening");
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
    for (auto& fn : r.done)
        if (fn) fn(ok);
    if (reload_again && !shutting_down) {
        reload_again = false;
        auto done = std::move(reload_again_done);
        reload_again_done.clear();
        start_reload(std::move(done));  // one reload for every SIGHUP that came during the last
    }
}

// ----------------------------------------------------------------------- the public API

bool Worker::send(const JsonObject& message) {
    ::Worker* proc = primary().process_of(*this);
    return proc && primary().table.send(*proc, message);
}

void Worker::disconnect() {
    if (dead_) return;
    exited_after_disconnect_ = true;
    primary().retire_from_servers(*this);
    if (::Worker* proc = primary().process_of(*this)) primary().table.send(*proc, msg("cmd", "disconnect"));
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
    std::vector<std::string> argv = own_command_line();
    if (argv.empty()) argv.push_back("worker");
    if (!s.exec.empty()) {
        argv = {s.exec};
        argv.insert(argv.end(), s.args.begin(), s.args.end());
        p.table.set_program(s.exec, argv);
    } else {
        if (!s.args.empty()) argv.resize(1), argv.insert(argv.end(), s.args.begin(), s.args.end());
        else s.args.assign(argv.begin() + 1, argv.end());
        p.table.set_program("/proc/self/exe", argv);
    }
    p.settings = std::move(s);
    p.set_up = true;
    log_event("setup exec=%s policy=%s", p.settings.exec.empty() ? "self" : p.settings.exec.c_str(),
              policy_name(p.settings.policy));
    emit(p.on_setup, p.settings);
}

const Settings& settings() { return primary().settings; }

Worker* fork(const std::vector<std::string>& env) {
    Primary& p = primary();
    if (!p.set_up) setup_primary();
    if (p.shutting_down) {  // every worker is on its way out, and so is the primary
        log_event("fork refused reason=shutdown");
        return nullptr;
    }
    int id = p.next_id;
    std::vector<std::string> full = env;
    full.push_back(std::string(kUniqueIdEnv) + "=" + std::to_string(id));
    ::Worker* proc = p.table.fork_worker(static_cast<int>(p.workers.size()), full);
    if (!proc) return nullptr;  // logged (fork or socketpair): the caller may try again later
    ++p.next_id;
    auto w = std::make_unique<Worker>();
    w->id_ = id;
    w->pid_ = proc->pid;
    w->env_ = env;
    Worker* raw = w.get();
    p.workers.push_back(std::move(w));
    emit(p.on_fork, *raw);
    return raw;
}

std::vector<Worker*> workers() {
    std::vector<Worker*> out;
    for (auto& w : primary().workers) out.push_back(w.get());
    return out;
}

void on_setup(std::function<void(const Settings&)> fn) { primary().on_setup.push_back(std::move(fn)); }
void on_fork(std::function<void(Worker&)> fn) { primary().on_fork.push_back(std::move(fn)); }
void on_online(std::function<void(Worker&)> fn) { primary().on_online.push_back(std::move(fn)); }
void on_listening(std::function<void(Worker&, const Address&)> fn) { primary().on_listening.push_back(std::move(fn)); }
void on_disconnect(std::function<void(Worker&)> fn) { primary().on_disconnect.push_back(std::move(fn)); }
void on_exit(std::function<void(Worker&, int, int)> fn) { primary().on_exit.push_back(std::move(fn)); }
void on_message(std::function<void(Worker&, const JsonObject&)> fn) { primary().on_message.push_back(std::move(fn)); }

void rolling_reload(std::function<void(bool)> done) {
    Primary& p = primary();
    if (p.shutting_down) {
        if (done) done(false);
        return;
    }
    if (p.reload) {  // several SIGHUPs during one reload make one more reload, after it
        if (!p.reload_again) log_event("reload queued after=%d", p.generation);
        p.reload_again = true;
        p.reload_again_done.push_back(std::move(done));
        return;
    }
    p.start_reload({std::move(done)});
}

void Primary::start_reload(std::vector<std::function<void(bool)>> done) {
    Reload r;
    r.generation = ++generation;
    r.started_ms = monotonic_ms();
    for (auto& w : workers)
        if (!w->exited_after_disconnect_) r.old_ids.push_back(w->id_);
    r.done = std::move(done);
    reload = std::move(r);
    log_event("reload start generation=%d workers=%zu", reload->generation, reload->old_ids.size());
    reload_step();
}

bool reloading() { return primary().reload.has_value(); }

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

struct WorkerProcess::State {
    explicit State(const ConnectionLimits& limits) : loop(), master(loop), http(loop, limits) {}
    EventLoop loop;
    MasterLink master;
    HttpServer http;
    int id = 0;
    std::vector<Fd> listeners;  // under Policy::none: our copies of the primary's sockets
    std::map<std::string, std::function<void(int)>> waiting_listen;  // "host:port" asked for
    std::function<void(const JsonObject&)> on_message;
    bool leaving = false;
    bool finished = false;
    int exit_code = 0;
};

namespace {
std::string address_key(const std::string& host, long port) { return host + ":" + std::to_string(port); }
}  // namespace

WorkerProcess::WorkerProcess(const ConnectionLimits& limits) {
    const char* id = std::getenv(kUniqueIdEnv);
    int number = id ? std::atoi(id) : 0;
    is_worker();  // remembered before the variable goes
    unsetenv(kUniqueIdEnv);
    state_ = new State(limits);
    State& s = *state_;
    s.id = number;
    s.master.on_message([this](Message& m) {
        State& s = *state_;
        std::string cmd = m.body.get_string("cmd");
        if (cmd == "connection") {
            // rr: the primary accepted this one for us. Confirm in the same turn of the loop,
            // before reading a byte of it, so the primary can close its copy and deal us more.
            // Refused when it comes too late (the primary may have taken it back while we were
            // stopped) or without its fd: the primary deals it to someone else.
            JsonObject answer = msg("act", "accepted");
            if (!m.fd) {
                answer = msg("act", "refused");
                answer.set("reason", "no-fd");
            } else if (monotonic_ms() - m.body.get_int("sent_ms") > m.body.get_int("late_ms")) {
                answer = msg("act", "refused");  // our copy closes unread
                answer.set("reason", "late");
            } else {
                s.http.adopt(std::move(m.fd));
            }
            answer.set("id", m.body.get_int("id"));
            answer.set("handle", m.body.get_int("handle"));
            s.master.send(answer);
        } else if (cmd == "server") {
            std::string host = m.body.get_string("host");
            if (m.body.has("error")) {
                // Node emits 'error' on the server; nobody handles it, so the worker dies.
                log_event("fatal listen %s: %s", host.c_str(), m.body.get_string("error").c_str());
                s.exit_code = 1;
                s.finished = true;
                s.loop.stop();
                return;
            }
            int port = static_cast<int>(m.body.get_int("port"));
            if (m.fd) {  // none: accept on the primary's socket ourselves
                int fd = m.fd.get();
                arm_accept_spare();
                if (!s.loop.add(fd, EPOLLIN, [&s, fd](uint32_t) { s.http.accept_all(fd); })) die_errno("epoll_ctl(listener)");
                s.listeners.push_back(std::move(m.fd));
            }
            JsonObject listening = msg("act", "listening");
            listening.set("host", host);
            listening.set("port", port);
            s.master.send(listening);
            auto it = s.waiting_listen.find(address_key(host, m.body.get_int("asked")));
            if (it != s.waiting_listen.end()) {
                auto fn = std::move(it->second);
                s.waiting_listen.erase(it);
                if (fn) fn(port);
            }
        } else if (cmd == "disconnect") {
            disconnect();
        } else if (cmd.empty() && !m.body.has("act") && s.on_message) {
            s.on_message(m.body);
        }
    });
    // The primary's SIGTERM, or anyone's: leave gracefully, as on worker.disconnect().
    s.loop.on_signal(SIGTERM, [this] { disconnect(); });
}

WorkerProcess::~WorkerProcess() { delete state_; }

int WorkerProcess::id() const { return state_->id; }
HttpServer& WorkerProcess::http() { return state_->http; }
EventLoop& WorkerProcess::loop() { return state_->loop; }

bool WorkerProcess::send(const JsonObject& message) { return state_->master.send(message); }

void WorkerProcess::on_message(std::function<void(const JsonObject&)> fn) { state_->on_message = std::move(fn); }

void WorkerProcess::listen(long port, const std::string& host, std::function<void(int)> on_listening) {
    state_->waiting_listen[address_key(host, port)] = std::move(on_listening);
    JsonObject query = msg("act", "queryServer");
    query.set("host", host);
    query.set("port", static_cast<std::int64_t>(port));
    state_->master.send(query);
}

void WorkerProcess::disconnect() {
    State& s = *state_;
    if (s.leaving) return;
    s.leaving = true;
    s.master.send(msg("act", "disconnecting"));  // no more connections for us (rr)
    for (Fd& l : s.listeners) s.loop.remove(l.get());
    s.listeners.clear();  // none: the primary keeps its copy, so no client is refused
    s.http.drain([&s] {
        s.finished = true;
        s.loop.stop();
    });
    log_event("disconnect draining=%zu", s.http.connection_count());
}

int WorkerProcess::run() {
    State& s = *state_;
    s.master.send(msg("act", "online"));
    while (!s.finished) s.loop.run();
    s.master.flush_blocking();
    return s.exit_code;
}

}  // namespace cluster
