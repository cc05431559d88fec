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
#include "process.hpp"
#include "restart_window.hpp"
#include "router.hpp"
#include "shared_store.hpp"
#include "store_notifier.hpp"
#include "worker_mail.hpp"

#include <csignal>
#include <exception>
#include <string>
#include <sys/epoll.h>

namespace {

struct Options {
    ServerOptions server;
    ConnectionLimits limits;
    long shutdown_timeout_ms = 10000;
    long kill_timeout_ms = 5000;  // the material's 5 s
    long limit = 10;              // the material's limit and during
    long during_ms = 60000;
    StoreOptions store;  // --store, --mode, --poll-ms (shared_store.hpp)
};

// ---- the worker ----------------------------------------------------------------------------

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
    // New here: what this worker knows of the store (GET /state), and its questions to the master.
    long poll_ms = 0;
    StoreView state{};
    StorePoller poller{};              // --mode poll only
    Mailbox mail{rt.loop, rt.master};  // POST /send, GET /inbox, any question to the master
    long long local_count = 0;         // GET /count?owner=worker: the wrong way, for the notes
};

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

// --mode poll: this worker checks the store itself, every --poll-ms, and tells the master it did
// (only so that the master can count the checks: N pollers against one).
void poll_store(Serving& s) {
    std::string text;
    if (s.poller.check(&text)) s.state.learn(s.state.version() + 1, text, "poll");
    s.rt.master.send(msg("act", "checked"));
    s.rt.loop.add_timer(s.poll_ms, [&s] { poll_store(s); });
}

// This lab's routes, before the contract's. POST /send and GET /inbox are the mail's
// (worker_mail.cpp); GET /state answers from what this worker knows; GET /count asks the master,
// the one owner of the counter.
bool serve_shared_routes(Serving& s, const Request& req, HttpServer::ReplyFn reply) {
    if (s.mail.serve(req, reply)) return true;
    if (req.path != "/state" && req.path != "/count") return false;
    if (req.method != "GET" && req.method != "HEAD") {
        reply({405, "method not allowed: use GET or HEAD\n", "Allow: GET, HEAD\r\n"});
        return true;
    }
    std::string owner;
    if (req.path == "/state")
        reply({200, s.state.json(), ""});
    else if (query_param(req.query, "owner", &owner) && owner == "worker")
        reply({200, std::to_string(++s.local_count) + "\n", ""});  // each worker counts alone
    else
        s.mail.ask_master(msg("act", "count"), std::move(reply));
    return true;
}

// Everything the master sends a worker. The channel is ordered: a new worker reads the state
// (or the store's path) before the listening socket, so it never serves without a state.
void on_master_message(Serving& s, Message& m) {
    std::string cmd = m.body.get_string("cmd");
    if (cmd == "server" && m.fd) {
        serve_listener(s, std::move(m.fd));
    } else if (cmd == "state") {
        s.state.learn(m.body.get_int("version"), m.body.get_string("text"), "notify");
    } else if (cmd == "store") {
        s.poller.path = m.body.get_string("path");
        poll_store(s);
    } else {
        s.mail.on_message(m.body);
    }
}

int run_worker(const Options& opts) {
    WorkerRuntime rt(opts.limits);
    Serving s{.rt = rt, .kill_timeout_ms = opts.kill_timeout_ms, .poll_ms = opts.store.poll_ms};

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

// ---- the master ----------------------------------------------------------------------------

// The master's state. Ownership: `listener` is the listening socket; the master never accepts
// on it but keeps it open for its whole life, so that while workers come and go the kernel
// still completes handshakes and queues connections (the listen backlog): clients wait,
// nobody is refused. New here: the notifier, and what the master owns for every worker.
struct Master {
    const Options& opts;
    EventLoop& loop;
    Cluster& cluster;
    Fd listener;
    bool ready = false;
    RestartWindow window;   // the times of the last --limit restarts
    bool gave_up = false;   // once given up, never restart again
    int exit_code = 0;
    StoreNotifier& notifier;  // the one poller of notify mode (store_notifier.hpp)
    StoreChecks& checks;      // who read the store how often (SIGUSR1, shutdown)
    StoreFile store;          // --store FILE, or a temporary one removed at exit
    // The state the master owns and hands out (notify): the store's text, numbered.
    std::int64_t version = 0;
    std::string text{};
    std::int64_t counter = 0;       // GET /count
    MailRelay mail{loop, cluster};  // POST /send and GET /inbox, relayed by pid (worker_mail.hpp)
};

bool notify_mode(const Master& m) { return m.opts.store.mode != "poll"; }  // notify or inotify: a notifier

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

// worker.send('server', server) after cluster.fork(): the new worker gets the socket, after
// what it must know first (the state, or where the store is).
void send_listener(Master& m, Worker& w) {
    if (notify_mode(m)) share_state(m, &w);
    else m.cluster.send(w, where_the_store_is(m.store.path()));
    m.cluster.send(w, msg("cmd", "server"), m.listener.get());
}

void stop_if_nothing_left(Master& m);

// A worker is going or gone: fork its replacement into the same slot, so the number of
// serving workers stays what --workers asked for — unless it has been happening too often.
void restart(Master& m, pid_t old, int slot) {
    if (m.gave_up) return;
    // A worker that dies again and again is a bug, not bad luck: restarting it forever only
    // burns CPU and fills the log. Count this restart in the window (a try that could not
    // fork counts too); if it makes --limit within --during ms, give up. The workers still
    // alive keep serving.
    if (!m.window.allow(monotonic_ms())) {
        m.gave_up = true;
        log_event("giveup restarts=%zu during_ms=%lld workers=%zu", m.window.total(), m.window.during_ms(),
                  m.cluster.size());
        return;
    }
    Worker* w = m.cluster.fork_worker(slot);
    if (!w) {
        // socketpair or fork failed (logged: out of fds or processes). Not the end of the
        // cluster: the others keep serving, and we try again a little later.
        log_event("restart worker=%d failed retry_in_ms=%ld", old, kForkRetryMs);
        m.loop.add_timer(kForkRetryMs, [&m, old, slot] {
            if (m.cluster.shutting_down()) return;
            restart(m, old, slot);
            stop_if_nothing_left(m);  // that try may have been the one that gave up
        });
        return;
    }
    send_listener(m, *w);
    log_event("restart worker=%d replacement=%d", old, w->pid);
}

// After a giveup, the master lives as long as some worker serves, then exits 1: nothing is left
// to supervise, and whoever supervises the master (systemd, a shell loop) should know.
void stop_if_nothing_left(Master& m) {
    if (!m.gave_up || m.cluster.size() > 0) return;
    log_event("shutdown reason=giveup workers=0");
    m.exit_code = 1;
    m.loop.stop();
}

// Only a worker that died without a word (SIGKILL, the OOM killer, a segfault) is replaced on
// exit; one that sent a suicide was replaced then, and is never replaced twice.
void on_worker_exit(Master& m, const Worker& w) {
    m.checks.forget(w.pid);
    if (m.cluster.shutting_down()) return;  // stopping: nobody is replaced
    if (!w.exited_after_disconnect) restart(m, w.pid, w.slot);
    stop_if_nothing_left(m);
}

// The ready line waits for every initial worker, and for the notifier (notify, inotify).
void maybe_ready(Master& m, int port) {
    if (m.ready || m.cluster.listening_count() < static_cast<size_t>(m.opts.server.workers)) return;
    if (notify_mode(m) && !m.notifier.online()) return;
    m.ready = true;
    print_ready("lab13", m.opts.server.host, port);
}

// Cluster has logged online/listening already. A suicide is the worker saying "I am going":
// replace it now. New here: workers' questions, answered by id: the count (one owner), the mail.
void on_worker_message(Master& m, Worker& w, const Message& message, int port) {
    std::string act = message.body.get_string("act");
    if (act == "listening") {
        maybe_ready(m, port);
    } else if (act == "suicide" && w.state != WorkerState::disconnecting) {
        w.state = WorkerState::disconnecting;
        log_event("suicide worker=%d", w.pid);
        if (!m.cluster.shutting_down()) restart(m, w.pid, w.slot);
    } else if (act == "checked") {
        m.checks.count(w.pid);
    } else if (act == "count") {
        m.mail.answer(w, message.body.get_int("id"), 200, std::to_string(++m.counter) + "\n");
    } else {
        m.mail.on_message(w, message.body);
    }
}

// In notify mode the master reads the store once itself, so that every worker starts with a state.
void open_store(Master& m) {
    log_event("store path=%s created=%s mode=%s poll_ms=%ld", m.store.path().c_str(), m.store.created() ? "yes" : "no",
              m.opts.store.mode.c_str(), m.opts.store.poll_ms);
    if (!notify_mode(m)) return;
    StoreRead r = read_store(m.store.path(), kMaxStoreBytes);
    m.checks.count_master();
    if (!r.ok) log_event("store error=\"%s\" starting=empty", r.error.c_str());
    adopt_store_text(m, r.text);
}

int run_master(const Options& opts, char** argv) {
    EventLoop loop;
    Cluster cluster(loop, argv);
    StoreChecks checks;
    StoreNotifier notifier(loop, argv, checks);
    ListenOptions lo;
    lo.host = opts.server.host;
    lo.port = opts.server.port;
    lo.nonblocking = true;  // shared with every worker: their loops must never block in accept
    Master m{.opts = opts, .loop = loop, .cluster = cluster, .listener = listen_or_die(lo),
             .window = RestartWindow(static_cast<size_t>(opts.limit), opts.during_ms),
             .notifier = notifier, .checks = checks,
             .store = StoreFile(opts.store.path, "lab13")};
    int port = local_port(m.listener.get());

    cluster.on_message([&m, port](Worker& w, Message& message) { on_worker_message(m, w, message, port); });
    cluster.on_exit([&m](const Worker& w, int) { on_worker_exit(m, w); });
    notifier.on_online([&m, port] { maybe_ready(m, port); });
    notifier.on_store([&m](const std::string& text) { adopt_store_text(m, text); });
    // SIGINT/SIGTERM: no more restarts (on_worker_exit sees shutting_down()); the notifier stops, then every
    // worker drains and exits; a worker still busy after --shutdown-timeout gets SIGKILL; we exit 0.
    stop_cluster_on_signals(loop, cluster, opts.shutdown_timeout_ms, {}, [&m] { m.notifier.stop_and_wait(2000); });
    loop.on_signal(SIGUSR1, [&] { checks.log("SIGUSR1", opts.store.mode, opts.store.poll_ms); });

    open_store(m);
    if (notify_mode(m)) notifier.start(m.store.path());
    for (int slot = 0; slot < opts.server.workers; ++slot)
        cluster.fork_worker_retrying(slot, kForkRetryMs, [&m](Worker& w) { send_listener(m, w); });
    loop.run();
    notifier.stop_and_wait(2000);  // after a giveup it is still running
    checks.log("shutdown", opts.store.mode, opts.store.poll_ms);
    log_event("shutdown complete code=%d", m.exit_code);
    return m.exit_code;
}

}  // namespace

int main(int argc, char** argv) {
    bool worker = is_worker_process();
    bool notifier = worker && take_helper_role() == "notifier";
    init_process(!worker ? "master" : notifier ? "notifier" : "worker");
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
    add_store_options(cli, opts.store);
    cli.parse(argc, argv);
    if (!worker) return run_master(opts, argv);
    return notifier ? run_store_notifier(opts.store.mode == "inotify", opts.store.poll_ms) : run_worker(opts);
}
