// lab13_shared_state — lab10's cluster, plus what workers share: they have no channel to each other, so the master relays by pid and owns shared state; one notifier polls the store (a key=value file) and the master pushes each change to every worker, instead of N workers polling it.
// base: lab10
// Observe: edit the store (its path is in the log) and every worker's GET /state flips within one --poll-ms; kill -USR1 the master: `checks ... pollers=1` (notify) against `pollers=N` (--mode poll); POST /send?to=PID reaches that worker, GET /inbox?pid=PID asks it from any worker; GET /count never repeats a number.
// Run: make lab13 && ./lab13 --workers 4 --poll-ms 500, then: curl localhost:8000/state; echo color=red >> STORE; curl -d hi 'localhost:8000/send?to=PID'; curl 'localhost:8000/inbox?pid=PID'; curl localhost:8000/count
// Mirrors the material's 状态共享 (003, 004: a third-party store, polled by every worker or by one process that notifies the others) and 000's IPC note: worker-to-worker messages go through the master, addressed by pid.
// stage: shared state: the master relays by pid and owns state; one notifier instead of N pollers

#include "cli.hpp"
#include "cluster.hpp"
#include "helper_process.hpp"
#include "log.hpp"
#include "master_worker.hpp"
#include "net.hpp"
#include "pending_replies.hpp"
#include "process.hpp"
#include "restart_window.hpp"
#include "router.hpp"
#include "shared_store.hpp"

#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdlib>
#include <deque>
#include <exception>
#include <map>
#include <string>
#include <sys/epoll.h>

namespace {

constexpr size_t kMaxStoreBytes = 256 * 1024;  // a configuration file, not a database
constexpr size_t kMaxSendBytes = 64 * 1024;    // POST /send's body
constexpr long kInboxTimeoutMs = 2000;         // GET /inbox: how long the master waits for PID
constexpr long kMasterTimeoutMs = 5000;        // a worker's backstop for any question to the master
constexpr long kRetryMs = 1000;                // a fork that failed, a notifier that died young
constexpr size_t kInboxKeep = 5;               // messages a worker keeps
constexpr size_t kInboxShowBytes = 4096;       // of each, in GET /inbox
constexpr size_t kLogTextBytes = 200;          // of each, in the `message` log line
constexpr const char* kInitialStore = "# lab13's store: key=value lines. Edit me; every worker's GET /state follows.\n"
                                      "greeting=hello\ncolor=blue\n";

struct Options {
    ServerOptions server;
    ConnectionLimits limits;
    long shutdown_timeout_ms = 10000;
    long kill_timeout_ms = 5000;  // the material's 5 s
    long limit = 10;              // the material's limit and during
    long during_ms = 60000;
    std::string store;            // empty: a temporary one, created and removed by the master
    std::string mode = "notify";  // notify: one notifier polls; poll: every worker polls; inotify: the kernel pushes
    long poll_ms = 1000;
};

// ---- polling the store (a worker in --mode poll, or the notifier) ---------------------------

// One poller's view of the store: checking it means reading it whole (what a query to the
// material's database or Redis would cost), and it changed when the text differs from the last.
struct Poller {
    std::string path;
    std::string last;  // the text at the last successful check
    bool seen = false; // a check has succeeded at least once
    std::string last_error;
};

// Reads the store once. Returns true, with the new text in `changed`, when it differs from the
// last check (the first successful check always does). An unreadable store keeps the old state
// and is logged once per distinct error, not on every poll.
bool check_store(Poller& p, std::string* changed) {
    StoreRead r = read_store(p.path, kMaxStoreBytes);
    if (!r.ok) {
        if (r.error != p.last_error) log_event("store error=\"%s\" keeping=last", r.error.c_str());
        p.last_error = r.error;
        return false;
    }
    p.last_error.clear();
    if (p.seen && r.text == p.last) return false;
    p.seen = true;
    p.last = r.text;
    *changed = r.text;
    return true;
}

// ---- the worker ----------------------------------------------------------------------------

// What one worker knows of the store, and how it learned it.
struct KnownState {
    std::int64_t version = 0;  // notify: the master's number; poll: this worker's own count
    JsonObject values;
    const char* learned = "nothing";
};

struct InboxEntry {
    pid_t from;
    std::string text;
};

// A worker: the standard runtime (loop, channel, HTTP server) plus what this stage is about.
// Ownership: `listener` is this worker's copy of the master's listening socket (received over
// the channel); the master keeps its own copy open, so closing ours never refuses a client: the
// kernel keeps queueing connections for whoever accepts next.
struct Serving {
    WorkerRuntime& rt;
    long kill_timeout_ms;
    Fd listener{};
    int exit_code = 0;
    bool finished = false;  // drained: leave the loop and exit with exit_code
    // New here: what this worker knows and keeps.
    const Options& opts;
    KnownState state{};
    Poller poller{};  // --mode poll only
    std::deque<InboxEntry> inbox{};
    long long received = 0;
    long long local_count = 0;      // GET /count?owner=worker: the wrong way, for the notes
    PendingReplies asked{rt.loop};  // our questions to the master, by id
};

void learn_state(Serving& s, std::int64_t version, std::string_view text, const char* how) {
    s.state.version = version;
    s.state.values = parse_store(text);
    s.state.learned = how;
    log_event("state version=%lld learned=%s keys=%zu", static_cast<long long>(version), how, s.state.values.size());
}

// --mode poll: this worker checks the store itself, every --poll-ms, and tells the master it did
// (only so that the master can count the checks: N pollers against one).
void poll_store(Serving& s) {
    std::string text;
    if (check_store(s.poller, &text)) learn_state(s, s.state.version + 1, text, "poll");
    s.rt.master.send(msg("act", "checked"));
    s.rt.loop.add_timer(s.opts.poll_ms, [&s] { poll_store(s); });
}

// {"cmd":"message"}: another worker's text, relayed by the master. Keep the last few.
void receive_message(Serving& s, pid_t from, std::string text) {
    ++s.received;
    std::string shown = text.size() > kLogTextBytes ? text.substr(0, kLogTextBytes) + "..." : text;
    log_event("message from=%d bytes=%zu text=%s", from, text.size(), json_quoted(shown).c_str());
    s.inbox.push_back({from, std::move(text)});
    if (s.inbox.size() > kInboxKeep) s.inbox.pop_front();
}

// GET /inbox's body, as this worker tells it.
std::string inbox_json(const Serving& s) {
    std::string list = "[";
    for (const InboxEntry& e : s.inbox) {
        JsonObject m;
        m.set("from", static_cast<std::int64_t>(e.from));
        m.set("bytes", static_cast<std::int64_t>(e.text.size()));
        m.set("text", std::string_view(e.text).substr(0, kInboxShowBytes));
        list += (list.size() > 1 ? "," : "") + m.dump();
    }
    JsonObject head;
    head.set("pid", static_cast<std::int64_t>(self_pid()));
    head.set("received", static_cast<std::int64_t>(s.received));
    return json_with(head.dump(), "messages", list + "]") + "\n";
}

// {"cmd":"inbox","id":N}: the master asks for our inbox on behalf of another worker. The reply
// carries the same id, so the master knows which question it answers.
void answer_inbox(Serving& s, std::int64_t id) {
    JsonObject reply = msg("act", "reply");
    reply.set("id", id);
    reply.set("status", 200);
    reply.set("body", inbox_json(s));
    s.rt.master.send(reply);
}

// Asks the master and answers the HTTP request with whatever it replies: {"act":...,"id":N}
// out, {"cmd":"reply","id":N,"status":S,"body":B} back, matched by the id (pending_replies.hpp).
void ask_master(Serving& s, JsonObject question, HttpServer::ReplyFn reply) {
    std::int64_t id = s.asked.ask(kMasterTimeoutMs, [reply](const JsonObject* answer) {
        if (!answer) return reply({504, "the master did not answer in time\n", ""});
        reply({static_cast<int>(answer->get_int("status", 500)), answer->get_string("body"), ""});
    });
    question.set("id", id);
    s.rt.master.send(question);
}

// ?NAME=PID: a process id, or a 400 saying what is wrong.
bool pid_param(const Request& req, const char* name, pid_t* out, HttpServer::ReplyFn& reply) {
    std::string text;
    errno = 0;
    char* end = nullptr;
    long v = query_param(req.query, name, &text) ? std::strtol(text.c_str(), &end, 10) : 0;
    if (text.empty() || *end != '\0' || errno == ERANGE || v < 1 || v > INT_MAX) {
        reply({400, std::string(name) + " must be a process id (a whole number from 1)\n", ""});
        return false;
    }
    *out = static_cast<pid_t>(v);
    return true;
}

std::string state_json(const Serving& s) {
    JsonObject head;
    head.set("pid", static_cast<std::int64_t>(self_pid()));
    head.set("version", s.state.version);
    head.set("learned", s.state.learned);
    return json_with(head.dump(), "values", s.state.values.dump()) + "\n";
}

// This lab's routes, before the contract's: GET /state, POST /send, GET /inbox, GET /count.
bool serve_shared_routes(Serving& s, const Request& req, HttpServer::ReplyFn reply) {
    const std::string& path = req.path;
    if (path != "/state" && path != "/send" && path != "/inbox" && path != "/count") return false;
    bool post = path == "/send";
    if (post ? req.method != "POST" : (req.method != "GET" && req.method != "HEAD")) {
        if (post) reply({405, "method not allowed: use POST\n", "Allow: POST\r\n"});
        else reply({405, "method not allowed: use GET or HEAD\n", "Allow: GET, HEAD\r\n"});
        return true;
    }
    pid_t pid;
    if (path == "/state") {
        reply({200, state_json(s), ""});
    } else if (path == "/send") {
        if (!pid_param(req, "to", &pid, reply)) return true;
        if (req.body.size() > kMaxSendBytes) {
            reply({413, "a message is at most " + std::to_string(kMaxSendBytes) + " bytes\n", ""});
            return true;
        }
        JsonObject send = msg("act", "send");
        send.set("to", static_cast<std::int64_t>(pid));
        send.set("text", req.body);
        ask_master(s, std::move(send), std::move(reply));
    } else if (path == "/inbox") {
        if (!pid_param(req, "pid", &pid, reply)) return true;
        JsonObject ask = msg("act", "inbox");
        ask.set("pid", static_cast<std::int64_t>(pid));
        ask_master(s, std::move(ask), std::move(reply));
    } else {
        std::string owner;
        if (query_param(req.query, "owner", &owner) && owner == "worker")
            reply({200, std::to_string(++s.local_count) + "\n", ""});  // each worker counts alone
        else
            ask_master(s, msg("act", "count"), std::move(reply));
    }
    return true;
}

// {"cmd":"server"} arrived with the listening socket: accept on it, tell the master (lab05).
void serve_listener(Serving& s, Fd listener) {
    if (s.listener || s.rt.http.draining()) return;  // a second one, or too late: it closes here
    s.listener = std::move(listener);
    int fd = s.listener.get();
    if (!s.rt.loop.add(fd, EPOLLIN, [&s, fd](uint32_t) { s.rt.http.accept_all(fd); })) die_errno("epoll_ctl(listener)");
    JsonObject listening = msg("act", "listening");
    listening.set("port", local_port(fd));
    s.rt.master.send(listening);
}

// Node's server.close(): no more accept() here. Connections already accepted stay.
void stop_accepting(Serving& s) {
    if (!s.listener) return;
    s.rt.loop.remove(s.listener.get());
    s.listener.reset();
}

// The graceful exit, for a crash (code 1) and for the master's SIGTERM (code 0) alike: stop
// accepting, then let HttpServer::drain answer every request already in flight (each with
// Connection: close), close idle keep-alive connections, and call back when none is left.
// New here: a deadline. A client that keeps its request open (a long /sleep, a stalled
// download) must not keep a dead worker alive: after --kill-timeout we close what is left
// and exit anyway, saying how many requests we cut.
void exit_when_drained(Serving& s, int code) {
    if (s.rt.http.draining()) return;  // already on its way out
    s.exit_code = code;
    stop_accepting(s);
    s.rt.http.drain([&s] {
        s.finished = true;
        s.rt.loop.stop();
    });
    log_event("drain waiting=%zu", s.rt.http.connection_count());
    if (s.finished) return;
    s.rt.loop.add_timer(s.kill_timeout_ms, [&s] {
        size_t cut = s.rt.http.close_all();
        log_event("kill-timeout ms=%ld cut=%zu", s.kill_timeout_ms, cut);
        s.finished = true;
        s.rt.loop.stop();
    });
}

// The material's process.on('uncaughtException'), with the suicide signal: first tell the
// master we are going, so it forks our replacement NOW, while we still drain; only then stop
// accepting. Without it (lab08) the master learns of our death only from exit, after the drain.
void on_uncaught(Serving& s, const char* what) {
    log_event("uncaught error=\"%s\"", what);
    if (!s.rt.http.draining()) s.rt.master.send(msg("act", "suicide"));
    exit_when_drained(s, 1);
}

// Everything the master sends a worker. The channel is ordered: a new worker reads the state
// (or the store's path) before the listening socket, so it never serves without a state.
void on_master_message(Serving& s, Message& m) {
    std::string cmd = m.body.get_string("cmd");
    if (cmd == "server" && m.fd) {
        serve_listener(s, std::move(m.fd));
    } else if (cmd == "state") {
        learn_state(s, m.body.get_int("version"), m.body.get_string("text"), "notify");
    } else if (cmd == "store") {
        s.poller.path = m.body.get_string("path");
        poll_store(s);
    } else if (cmd == "message") {
        receive_message(s, static_cast<pid_t>(m.body.get_int("from")), m.body.get_string("text"));
    } else if (cmd == "inbox") {
        answer_inbox(s, m.body.get_int("id"));
    } else if (cmd == "reply") {
        s.asked.settle(m.body.get_int("id"), m.body);  // false: too late, its client got a 504
    }
}

int run_worker(const Options& opts) {
    WorkerRuntime rt(opts.limits);
    Serving s{.rt = rt, .kill_timeout_ms = opts.kill_timeout_ms, .opts = opts};

    rt.master.on_message([&s](Message& m) { on_master_message(s, m); });
    rt.http.set_routes([&s](const Request& req, HttpServer::ReplyFn reply) {
        return serve_shared_routes(s, req, std::move(reply));
    });
    // The master's SIGTERM (its shutdown) is a graceful exit too, with code 0.
    rt.loop.on_signal(SIGTERM, [&s] { exit_when_drained(s, 0); });
    signal(SIGUSR1, SIG_IGN);  // the master's "print the checks": a `kill -USR1` to the whole group must not kill us
    rt.master.send(msg("act", "online"));

    // The top of the worker's loop. A request handler that throws (/crash) unwinds out of
    // loop.run() to here instead of ending the process; the loop's state stays usable
    // (level-triggered epoll reports again whatever that iteration did not get to), so after
    // deciding what to do we simply run it again, until the drain says we are done.
    while (!s.finished) {
        try {
            rt.loop.run();
        } catch (const std::exception& e) {
            on_uncaught(s, e.what());
        } catch (...) {
            on_uncaught(s, "unknown exception");
        }
    }
    log_event("drained code=%d", s.exit_code);
    rt.master.flush_blocking();
    return s.exit_code;
}

// ---- the notifier --------------------------------------------------------------------------

// The one poller of --mode notify: a child of the master that serves no HTTP. It checks the
// store every --poll-ms and sends the master the new text when it changed; the master numbers
// it and tells every worker. Still polling, as the material says, but once instead of N times.
int run_notifier(const Options& opts) {
    EventLoop loop;
    MasterLink master(loop);  // the master gone: log and exit (no orphan)
    Poller poller;
    Fd watch;  // --mode inotify
    auto check = [&] {
        std::string text;
        if (check_store(poller, &text)) {
            log_event("changed bytes=%zu", text.size());
            JsonObject store = msg("act", "store");
            store.set("text", text);
            master.send(store);
        }
        master.send(msg("act", "checked"));
    };
    std::function<void()> poll = [&] {
        check();
        loop.add_timer(opts.poll_ms, poll);
    };
    // --mode inotify: no timer. The kernel wakes us when the store's directory changes, and we
    // check then: a change costs one check, and no change costs none.
    auto watch_instead = [&] {
        watch = watch_store(poller.path);
        if (!watch) {  // no inotify here (or out of watches): poll, rather than fail
            log_errno("inotify_init1/inotify_add_watch");
            log_event("inotify unavailable, polling every %ld ms instead", opts.poll_ms);
            return poll();
        }
        int fd = watch.get();
        loop.add(fd, EPOLLIN, [&, fd](uint32_t) {
            if (store_touched(fd, poller.path)) check();
        });
        check();
    };
    master.on_message([&](Message& m) {
        if (m.body.get_string("cmd") != "store" || !poller.path.empty()) return;
        poller.path = m.body.get_string("path");
        if (opts.mode == "inotify") watch_instead();
        else poll();
    });
    loop.on_signal(SIGTERM, [&loop] { loop.stop(); });
    signal(SIGUSR1, SIG_IGN);  // as in a worker
    master.send(msg("act", "online"));
    loop.run();
    master.flush_blocking();
    return 0;
}

// ---- the master ----------------------------------------------------------------------------

// The master's state. Ownership: `listener` is the listening socket; the master never accepts
// on it but keeps it open for its whole life, so that while workers come and go the kernel
// still completes handshakes and queues connections (the listen backlog): clients wait,
// nobody is refused. New here: `notifier`, the store, the state and the counter it owns.
struct Master {
    const Options& opts;
    EventLoop& loop;
    Cluster& cluster;
    HelperProcess& notifier;
    Fd listener;
    std::string store_path{};
    bool created_store = false;
    bool ready = false;
    RestartWindow window;   // the times of the last --limit restarts
    bool gave_up = false;   // once given up, never restart again
    int exit_code = 0;
    // The state the master owns and hands out (notify): the store's text, numbered.
    std::int64_t version = 0;
    std::string text{};
    std::int64_t counter = 0;                // GET /count
    PendingReplies asked{loop};              // questions to one worker on behalf of another
    // Checks of the store, counted where they happen: live pollers by pid, and the rest.
    std::map<pid_t, long long> checks_by{};
    long long checks_gone = 0;               // by pollers that have exited since
    long long checks_master = 0;             // the master's own read at start-up (notify)
    long long started_ms = monotonic_ms();
    bool notifier_online = false;
};

bool notify_mode(const Master& m) { return m.opts.mode != "poll"; }  // notify or inotify: a notifier

Worker* find_worker(Master& m, pid_t pid) {
    for (Worker* w : m.cluster.workers())
        if (w->pid == pid && w->channel) return w;
    return nullptr;
}

// {"cmd":"reply"}: the answer to a worker's question, under the worker's own id.
void answer(Master& m, Worker& w, std::int64_t id, int status, const std::string& body) {
    JsonObject reply = msg("cmd", "reply");
    reply.set("id", id);
    reply.set("status", status);
    reply.set("body", body);
    m.cluster.send(w, reply);
}

// The one place workers learn the store from in --mode notify: the master, which heard it from
// the notifier. A newcomer (a worker just forked: at start, a replacement, a retry) is told the
// current state first thing; a change (newcomer == nullptr) is told to every worker.
void share_state(Master& m, Worker* newcomer) {
    // BEGIN SOLUTION: send the current state to a newly forked worker, and each new version to every worker
    JsonObject state = msg("cmd", "state");
    state.set("version", m.version);
    state.set("text", m.text);
    if (newcomer) {
        m.cluster.send(*newcomer, state);
        return;
    }
    for (Worker* w : m.cluster.workers()) m.cluster.send(*w, state);
    // STUB:
    // // nobody is told: every worker keeps the state it started with (none)
    // (void)m;
    // (void)newcomer;
    // END SOLUTION
}

// The notifier says the store changed. The master dedups (a restarted notifier reports what
// it reads first, changed or not) and numbers the versions: one sequence for everyone.
void adopt_store_text(Master& m, const std::string& text) {
    if (m.version > 0 && text == m.text) return;
    m.text = text;
    ++m.version;
    log_event("state version=%lld bytes=%zu keys=%zu", static_cast<long long>(m.version), text.size(),
              parse_store(text).size());
    share_state(m, nullptr);
}

void maybe_ready(Master& m, int port) {
    if (m.ready || m.cluster.listening_count() < static_cast<size_t>(m.opts.server.workers)) return;
    if (notify_mode(m) && !m.notifier_online) return;
    m.ready = true;
    print_ready("lab13", m.opts.server.host, port);
}

// SIGUSR1 and shutdown: how many times the store was checked, and by whom.
void print_checks(Master& m, const char* at) {
    long long total = m.checks_gone + m.checks_master;
    std::string by;
    for (auto& [pid, n] : m.checks_by) {
        total += n;
        by += (by.empty() ? "" : ",") + std::to_string(pid) + ":" + std::to_string(n);
    }
    long long elapsed = monotonic_ms() - m.started_ms;
    log_event("checks at=%s mode=%s pollers=%zu total=%lld elapsed_ms=%lld per_second=%.1f poll_ms=%ld master=%lld "
              "gone=%lld by=%s",
              at, m.opts.mode.c_str(), m.checks_by.size(), total, elapsed, elapsed > 0 ? total * 1000.0 / elapsed : 0.0,
              m.opts.poll_ms, m.checks_master, m.checks_gone, by.empty() ? "none" : by.c_str());
}

void forget_poller(Master& m, pid_t pid) {
    auto it = m.checks_by.find(pid);
    if (it == m.checks_by.end()) return;
    m.checks_gone += it->second;
    m.checks_by.erase(it);
}

// cluster.fork() followed by worker.send('server', server): the new worker gets the socket,
// after what it must know first (the state, or where the store is).
Worker* start_worker(Master& m, int slot) {
    Worker* w = m.cluster.fork_worker(slot);
    if (!w) {
        // fork or socketpair failed (at the descriptor limit, say): keep serving with the
        // workers we have, and try this slot again later.
        log_event("fork-failed slot=%d retry_ms=%ld", slot, kRetryMs);
        m.loop.add_timer(kRetryMs, [&m, slot] {
            if (!m.cluster.shutting_down() && !m.gave_up) start_worker(m, slot);
        });
        return nullptr;
    }
    if (notify_mode(m)) {
        share_state(m, w);
    } else {
        JsonObject store = msg("cmd", "store");
        store.set("path", m.store_path);
        m.cluster.send(*w, store);
    }
    m.cluster.send(*w, msg("cmd", "server"), m.listener.get());
    return w;
}

// A worker is going or gone: fork its replacement into the same slot, so the number of
// serving workers stays what --workers asked for — unless it has been happening too often
// (lab10's restart limit, unchanged; lab10's exercise, solved).
void restart(Master& m, const Worker& old) {
    if (m.gave_up) return;
    if (!m.window.allow(monotonic_ms())) {
        m.gave_up = true;
        log_event("giveup restarts=%zu during_ms=%lld workers=%zu", m.window.total(), m.window.during_ms(),
                  m.cluster.size());
        return;
    }
    Worker* w = start_worker(m, old.slot);
    log_event("restart worker=%d replacement=%d", old.pid, w ? w->pid : -1);
}

// Only a worker that died without a word (SIGKILL, the OOM killer, a segfault) is replaced on
// exit; one that sent a suicide was replaced then, and is never replaced twice.
// After a giveup, the master lives as long as some worker serves, then exits 1: nothing is left
// to supervise, and whoever supervises the master (systemd, a shell loop) should know.
void on_worker_exit(Master& m, const Worker& w) {
    forget_poller(m, w.pid);
    if (m.cluster.shutting_down()) return;  // stopping: nobody is replaced
    if (!w.exited_after_disconnect) restart(m, w);
    if (m.gave_up && m.cluster.size() == 0) {
        log_event("shutdown reason=giveup workers=0");
        m.exit_code = 1;
        m.loop.stop();
    }
}

void start_notifier(Master& m) {
    if (m.cluster.shutting_down() || m.notifier.running()) return;
    m.notifier_online = false;
    if (!m.notifier.start()) {
        m.loop.add_timer(kRetryMs, [&m] { start_notifier(m); });
        return;
    }
    JsonObject store = msg("cmd", "store");
    store.set("path", m.store_path);
    m.notifier.send(store);
}

// The notifier's channel closed: it died. Restart it — at once, unless it died young (a crash
// loop must not spin): then after kRetryMs.
void on_notifier_gone(Master& m, pid_t old) {
    forget_poller(m, old);
    if (m.cluster.shutting_down()) return;
    bool young = monotonic_ms() - m.notifier.started_ms() < kRetryMs;
    auto restart = [&m, old] {
        start_notifier(m);
        log_event("restart notifier=%d replacement=%d", old, m.notifier.running() ? m.notifier.pid() : -1);
    };
    if (young) m.loop.add_timer(kRetryMs, restart);
    else restart();
}

void on_notifier_message(Master& m, Message& message, int port) {
    std::string act = message.body.get_string("act");
    if (act == "online") {
        m.notifier_online = true;
        log_event("online notifier=%d", m.notifier.pid());
        maybe_ready(m, port);
    } else if (act == "checked") {
        ++m.checks_by[m.notifier.pid()];
    } else if (act == "store") {
        adopt_store_text(m, message.body.get_string("text"));
    }
}

// A worker asks for worker `to`'s inbox. The master asks `to` under an id of its own, and
// when the reply with that id comes back, answers the asker under the asker's id. Nobody
// answers in kInboxTimeoutMs: 504.
void relay_inbox(Master& m, Worker& from, std::int64_t from_id, pid_t to) {
    Worker* target = find_worker(m, to);
    if (!target) return answer(m, from, from_id, 404, "no worker with pid " + std::to_string(to) + "\n");
    if (target->channel->wants_write())
        return answer(m, from, from_id, 503, "worker " + std::to_string(to) + " is not reading its channel\n");
    pid_t asker = from.pid;
    std::int64_t id = m.asked.ask(kInboxTimeoutMs, [&m, asker, from_id, to](const JsonObject* reply) {
        Worker* w = find_worker(m, asker);
        if (!w) return;  // the asker is gone: nobody to answer
        if (!reply)
            return answer(m, *w, from_id, 504,
                          "worker " + std::to_string(to) + " did not answer within " + std::to_string(kInboxTimeoutMs) + " ms\n");
        answer(m, *w, from_id, static_cast<int>(reply->get_int("status", 500)), reply->get_string("body"));
    });
    JsonObject question = msg("cmd", "inbox");
    question.set("id", id);
    m.cluster.send(*target, question);
}

// A worker's text for worker `to`: relayed at once. 202 means it is in `to`'s channel, not
// that `to` has read it. A target that does not read its channel gets no more (503), or the
// master would buffer for it without bound.
void relay_message(Master& m, Worker& from, std::int64_t from_id, pid_t to, const std::string& text) {
    Worker* target = find_worker(m, to);
    if (!target) return answer(m, from, from_id, 404, "no worker with pid " + std::to_string(to) + "\n");
    if (target->channel->wants_write())
        return answer(m, from, from_id, 503, "worker " + std::to_string(to) + " is not reading its channel\n");
    JsonObject note = msg("cmd", "message");
    note.set("from", static_cast<std::int64_t>(from.pid));
    note.set("text", text);
    if (!m.cluster.send(*target, note))
        return answer(m, from, from_id, 404, "worker " + std::to_string(to) + " is gone\n");
    answer(m, from, from_id, 202, "delivered to the channel of worker " + std::to_string(to) + "\n");
}

// Cluster has logged online/listening already. The ready line waits for every initial worker
// (and the notifier). A suicide is the worker saying "I am going": replace it now, not when it
// has exited. New here: the questions workers ask the master, each answered under its id.
void on_worker_message(Master& m, Worker& w, const Message& message, int port) {
    const JsonObject& body = message.body;
    std::string act = body.get_string("act");
    std::int64_t id = body.get_int("id");
    if (act == "listening") {
        maybe_ready(m, port);
    } else if (act == "suicide" && w.state != WorkerState::disconnecting) {
        w.state = WorkerState::disconnecting;
        log_event("suicide worker=%d", w.pid);
        if (!m.cluster.shutting_down()) restart(m, w);
    } else if (act == "checked") {
        ++m.checks_by[w.pid];
    } else if (act == "count") {
        answer(m, w, id, 200, std::to_string(++m.counter) + "\n");  // the single owner
    } else if (act == "send") {
        relay_message(m, w, id, static_cast<pid_t>(body.get_int("to")), body.get_string("text"));
    } else if (act == "inbox") {
        relay_inbox(m, w, id, static_cast<pid_t>(body.get_int("pid")));
    } else if (act == "reply") {
        if (!m.asked.settle(id, body)) log_event("late-reply worker=%d id=%lld dropped", w.pid, static_cast<long long>(id));
    }
}

// Where the store is: --store FILE, or a fresh one in a temporary directory (removed at exit).
void open_store(Master& m) {
    if (!m.opts.store.empty()) {
        m.store_path = m.opts.store;
    } else {
        m.store_path = create_temp_store("lab13", kInitialStore);
        if (m.store_path.empty()) die_errno("create_temp_store (mkdtemp/open/write)");
        m.created_store = true;
    }
    log_event("store path=%s created=%s mode=%s poll_ms=%ld", m.store_path.c_str(), m.created_store ? "yes" : "no",
              m.opts.mode.c_str(), m.opts.poll_ms);
    if (!notify_mode(m)) return;
    // The master's own first read, so that every worker starts with a state (version 1).
    StoreRead r = read_store(m.store_path, kMaxStoreBytes);
    ++m.checks_master;
    if (!r.ok) log_event("store error=\"%s\" starting=empty", r.error.c_str());
    adopt_store_text(m, r.text);
}

int run_master(const Options& opts, char** argv) {
    EventLoop loop;
    Cluster cluster(loop, argv);
    HelperProcess notifier(loop, argv, "notifier");
    ListenOptions lo;
    lo.host = opts.server.host;
    lo.port = opts.server.port;
    lo.nonblocking = true;  // shared with every worker: their loops must never block in accept
    Master m{.opts = opts, .loop = loop, .cluster = cluster, .notifier = notifier, .listener = listen_or_die(lo),
             .window = RestartWindow(static_cast<size_t>(opts.limit), opts.during_ms)};
    int port = local_port(m.listener.get());

    cluster.on_message([&m, port](Worker& w, Message& message) { on_worker_message(m, w, message, port); });
    cluster.on_exit([&m](const Worker& w, int) { on_worker_exit(m, w); });
    notifier.on_message([&m, port](Message& message) { on_notifier_message(m, message, port); });
    notifier.on_gone([&m](pid_t old) { on_notifier_gone(m, old); });
    // Before anything is forked. SIGINT/SIGTERM: no more restarts (on_worker_exit sees
    // shutting_down()); the notifier is stopped first, then every worker drains and exits; a
    // worker still busy after --shutdown-timeout gets SIGKILL; we exit 0. SIGUSR1: the checks.
    stop_cluster_on_signals(loop, cluster, opts.shutdown_timeout_ms, {}, [&m] { m.notifier.stop_and_wait(2000); });
    loop.on_signal(SIGUSR1, [&m] { print_checks(m, "SIGUSR1"); });

    open_store(m);
    if (notify_mode(m)) start_notifier(m);
    for (int slot = 0; slot < opts.server.workers; ++slot) start_worker(m, slot);
    loop.run();
    notifier.stop_and_wait(2000);  // after a giveup it is still running
    print_checks(m, "shutdown");
    if (m.created_store) remove_temp_store(m.store_path);
    log_event("shutdown complete code=%d", m.exit_code);
    return m.exit_code;
}

}  // namespace

int main(int argc, char** argv) {
    bool child = is_worker_process();
    std::string role = child ? take_helper_role() : "";
    bool notifier = role == "notifier";
    init_process(!child ? "master" : notifier ? "notifier" : "worker");
    Options opts;
    Cli cli("lab13", "Shared state: workers talk through the master (POST /send, GET /inbox), the master owns "
                     "shared state (GET /count), and one notifier polls the store and pushes changes to every "
                     "worker (GET /state) instead of every worker polling it.");
    add_server_options(cli, opts.server, /*with_workers=*/true);
    add_connection_options(cli, opts.limits);
    cli.integer("shutdown-timeout", &opts.shutdown_timeout_ms, 1, 3600000,
                "ms the master waits for workers to drain on SIGINT/SIGTERM before SIGKILL");
    cli.integer("kill-timeout", &opts.kill_timeout_ms, 1, 3600000,
                "ms a dying worker may drain before it closes what is left and exits");
    cli.integer("limit", &opts.limit, 1, 1000000, "give up when this many restarts fall within --during");
    cli.integer("during", &opts.during_ms, 1, 86400000, "ms: the window of --limit");
    cli.text("store", &opts.store, "FILE",
             "the shared store, key=value lines (default: a new file in a temporary directory, named in the log "
             "and removed at exit)");
    cli.choice("mode", &opts.mode, {"notify", "poll", "inotify"},
               "notify: one notifier process polls the store and the master pushes changes; poll: every worker "
               "polls it; inotify: the notifier checks only when the kernel says the store changed");
    cli.integer("poll-ms", &opts.poll_ms, 1, 3600000, "ms between two checks of the store, by each poller (not inotify)");
    cli.parse(argc, argv);
    if (!child) return run_master(opts, argv);
    return notifier ? run_notifier(opts) : run_worker(opts);
}
