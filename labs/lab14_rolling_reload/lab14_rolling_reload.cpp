// lab14_rolling_reload — lab10, plus SIGHUP: the master checks --config, then replaces its workers one slot at a time, each new one listening before the old one retires.
// base: lab10
// Observe: under load every pid changes and GET /config flips to the new version with 0 failed requests; a bad file is refused before anything changes (`reload aborted … line=N`).
// Run: make lab14 && ./lab14 --workers 2 --config app.conf, then edit app.conf and: kill -HUP <master pid>; curl localhost:8000/config
// Mirrors the material's 平滑重启 (start the new worker first, then close the old one) and 动态重新载入; nginx's HUP (check the file first), PM2's reload (listen_timeout, kill_timeout), Node's worker.disconnect()/exitedAfterDisconnect.
// stage: rolling reload: SIGHUP replaces every worker, each new one listening before the old one retires

#include "cli.hpp"
#include "cluster.hpp"
#include "config_file.hpp"
#include "log.hpp"
#include "master_worker.hpp"
#include "net.hpp"
#include "process.hpp"
#include "restart_window.hpp"
#include "router.hpp"

#include <csignal>
#include <exception>
#include <string>
#include <sys/epoll.h>

namespace {

struct Options {
    ServerOptions server;
    ConnectionLimits limits;
    long shutdown_timeout_ms = 10000;
    long kill_timeout_ms = 5000;  // the material's 5 s; PM2's kill_timeout is 1600 ms
    long limit = 10;              // the material's limit and during
    long during_ms = 60000;
    long listen_timeout_ms = 3000;  // PM2's listen_timeout
    std::string config_path;        // --config; empty: no file
};

// ---- the configuration ---------------------------------------------------------------------

// What the keys mean (common/config_file.hpp parses the lines). Master and worker run the same
// check, so a file the master accepts is one every worker can read, with one exception on
// purpose: fail_at_start=1 passes the check and makes the worker refuse to start. It stands for
// everything only a real start can find out (new code that throws at start-up, a database that
// is down, a missing file): the failure a reload must survive.
bool check_config(const ConfigFile& config, ConfigError* error) {
    for (const ConfigEntry& e : config.entries) {
        long n;
        if (e.key == "greeting" || e.key == "version") continue;
        if (e.key == "fail_at_start" && config_number(e.value, 0, 1, &n)) continue;
        if (e.key == "start_delay_ms" && config_number(e.value, 0, 600000, &n)) continue;
        error->line = e.line;
        if (e.key == "fail_at_start" || e.key == "start_delay_ms")
            error->reason = e.key + " wants " + (e.key == "fail_at_start" ? "0 or 1" : "a whole number of ms up to 600000");
        else
            error->reason = "unknown key '" + e.key + "' (known: greeting, version, fail_at_start, start_delay_ms)";
        return false;
    }
    return true;
}

// Reads and checks --config (no --config: an empty configuration, always good).
bool read_config(const std::string& path, ConfigFile* config, ConfigError* error) {
    if (path.empty()) return true;
    return load_config(path, config, error) && check_config(*config, error);
}

// ---- the worker ----------------------------------------------------------------------------

// A worker: the standard runtime (loop, channel, HTTP server) plus what this stage is about.
// Ownership: `listener` is this worker's copy of the master's listening socket (received over
// the channel); the master keeps its own copy open, so closing ours never refuses a client: the
// kernel keeps queueing connections for whoever accepts next. `held` is the same socket when it
// arrived before the worker was ready to serve (start_delay_ms).
struct Serving {
    WorkerRuntime& rt;
    long kill_timeout_ms;
    Fd listener{};
    Fd held{};
    bool started = false;   // start-up done: the listener may be served
    long generation = 0;    // the master's reload generation this worker belongs to
    int exit_code = 0;
    bool finished = false;  // drained: leave the loop and exit with exit_code
};

// {"cmd":"server"} arrived with the listening socket: accept on it, tell the master (lab05).
// The master counts us as accepting from the moment it reads `listening`, so we send it only
// once the socket is in our epoll set.
void serve_listener(Serving& s, Fd listener) {
    if (s.listener || s.rt.http.draining()) return;  // a second one, or too late: it closes here
    if (!s.started) {
        s.held = std::move(listener);  // served when start-up is over
        return;
    }
    s.listener = std::move(listener);
    int fd = s.listener.get();
    if (!s.rt.loop.add(fd, EPOLLIN, [&s, fd](uint32_t) { s.rt.http.accept_all(fd); })) die_errno("epoll_ctl(listener)");
    JsonObject listening = msg("act", "listening");
    listening.set("port", local_port(fd));
    s.rt.master.send(listening);
}

// Node's server.close(): no more accept() here. Connections already accepted stay.
void stop_accepting(Serving& s) {
    s.held.reset();
    if (!s.listener) return;
    s.rt.loop.remove(s.listener.get());
    s.listener.reset();
}

// The graceful exit, for a crash (code 1), the master's SIGTERM and a retirement (code 0)
// alike: stop accepting, answer every request already in flight (each with Connection: close),
// close idle keep-alive connections, exit when none is left — or after --kill-timeout, closing
// what is left and saying how many requests were cut.
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

// The material's process.on('uncaughtException') with the suicide signal (lab09).
void on_uncaught(Serving& s, const char* what) {
    log_event("uncaught error=\"%s\"", what);
    if (!s.rt.http.draining()) s.rt.master.send(msg("act", "suicide"));
    exit_when_drained(s, 1);
}

int run_worker(const Options& opts) {
    WorkerRuntime rt(opts.limits);
    // SIGHUP is the master's: a worker is reloaded by being replaced, never in place. (A
    // terminal hang-up reaches the whole process group; the workers leave it to the master.)
    signal(SIGHUP, SIG_IGN);
    Serving s{.rt = rt, .kill_timeout_ms = opts.kill_timeout_ms};

    // The configuration is read once, here, at start: a running worker never changes it. A
    // new configuration means new workers.
    ConfigFile config;
    ConfigError error;
    if (!read_config(opts.config_path, &config, &error)) {
        log_event("config error file=%s line=%d reason=\"%s\"", opts.config_path.c_str(), error.line, error.reason.c_str());
        return 1;
    }
    if (config.get("fail_at_start") == "1") {
        log_event("config refused file=%s reason=fail_at_start=1", opts.config_path.c_str());
        return 1;
    }
    log_event("config loaded file=%s version=%s", opts.config_path.empty() ? "none" : opts.config_path.c_str(),
              config.get("version", "none").c_str());
    add_lab_route("/config", [&config, &s](const Request&) {
        Action a;
        a.body = config.entries.empty() ? "# no --config file\n" : config.text();
        a.extra_headers = format("X-Config-Generation: %ld\r\n", s.generation);
        return a;
    });

    rt.master.on_message([&s](Message& m) {
        std::string cmd = m.body.get_string("cmd");
        if (cmd == "server" && m.fd) {
            s.generation = m.body.get_int("generation");
            serve_listener(s, std::move(m.fd));
        } else if (cmd == "disconnect") {
            // Node's worker.disconnect(): the master has a replacement listening; we go quietly.
            log_event("retire stop-accepting generation=%ld", s.generation);
            exit_when_drained(s, 0);
        }
    });
    // The master's SIGTERM (its shutdown) is a graceful exit too, with code 0.
    rt.loop.on_signal(SIGTERM, [&s] { exit_when_drained(s, 0); });

    // start_delay_ms: a slow start (warming a cache, connecting to a database), on the loop so
    // that SIGTERM and the master's messages are still handled meanwhile.
    long delay = 0;
    config_number(config.get("start_delay_ms", "0"), 0, 600000, &delay);
    auto start = [&s] {
        s.started = true;
        if (s.held) serve_listener(s, std::move(s.held));
    };
    if (delay > 0) rt.loop.add_timer(delay, start);
    else start();
    rt.master.send(msg("act", "online"));

    // The top of the worker's loop (lab08): an exception from a handler lands here, the worker
    // drains, and the loop runs again until the drain is done.
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

// One rolling reload in progress: which slot is being replaced, by whom.
struct Reload {
    bool running = false;
    bool pending = false;        // SIGHUPs that came during this one: one more reload after it
    long generation = 0;         // the generation being rolled out
    long long started_ms = 0;
    int next_slot = 0;           // the next slot to replace
    int slot = -1;               // the slot being replaced now
    pid_t old_pid = -1;          // its worker until the newcomer listens (-1: none, or it died)
    bool old_died = false;       // it died during the step: the newcomer is its replacement
    pid_t new_pid = -1;          // the newcomer, until it listens
    long long step_started_ms = 0;
    EventLoop::TimerId listen_timer = 0;
};

// The master's state. Ownership: `listener` is the listening socket; the master never accepts
// on it but keeps it open for its whole life, so that while workers come and go the kernel
// still completes handshakes and queues connections: clients wait, nobody is refused. This is
// what lets a newcomer and an old worker accept from the same queue during a reload.
struct Master {
    const Options& opts;
    EventLoop& loop;
    Cluster& cluster;
    Fd listener;
    bool ready = false;
    RestartWindow window;   // the times of the last --limit restarts
    bool gave_up = false;   // once given up, never restart again
    int exit_code = 0;
    long generation = 1;                 // the newest configuration checked and started
    Reload reload{};
};

// The worker that owns `slot` now: not disconnecting (retired, or dying by its own suicide: its
// replacement owns the slot then). nullptr if the slot is empty.
Worker* slot_owner(Master& m, int slot) {
    for (Worker* w : m.cluster.workers())
        if (w->slot == slot && w->serving()) return w;
    return nullptr;
}

// cluster.fork() followed by worker.send('server', server). A worker reads the file when it
// starts, so whatever forks it — a reload or a restart — it belongs to the newest generation.
Worker* start_worker(Master& m, int slot) {
    Worker* w = m.cluster.fork_worker(slot);
    if (!w) return nullptr;
    w->generation = m.generation;
    JsonObject server = msg("cmd", "server");
    server.set("generation", static_cast<std::int64_t>(m.generation));
    m.cluster.send(*w, server, m.listener.get());
    return w;
}

// lab10's restart: a dead worker's slot gets a replacement, unless too often. If the fork fails
// (out of processes or descriptors), the slot is tried again a second later; meanwhile the
// others serve.
void restart(Master& m, pid_t old, int slot) {
    if (m.gave_up) return;
    if (!m.window.allow(monotonic_ms())) {
        m.gave_up = true;
        log_event("giveup restarts=%zu during_ms=%lld workers=%zu", m.window.total(), m.window.during_ms(),
                  m.cluster.size());
        return;
    }
    Worker* w = start_worker(m, slot);
    log_event("restart worker=%d replacement=%d", old, w ? w->pid : -1);
    if (w) return;
    m.loop.add_timer(kForkRetryMs, [&m, slot] {
        if (m.cluster.shutting_down() || slot_owner(m, slot)) return;
        restart(m, -1, slot);
    });
}

// "Which generation serves where": one line per slot, after every reload, done or aborted.
void log_serving(Master& m) {
    for (int slot = 0; slot < m.opts.server.workers; ++slot) {
        Worker* w = slot_owner(m, slot);
        if (w) log_event("reload serving slot=%d generation=%ld worker=%d", slot, w->generation, w->pid);
        else log_event("reload serving slot=%d generation=none worker=none", slot);
    }
}

void start_reload(Master& m);

// Node's worker.disconnect(): the worker stops accepting, finishes what it has and exits 0.
// From now on its exit is expected (exitedAfterDisconnect): never restarted, never counted
// toward --limit.
void retire(Master& m, pid_t pid, pid_t replacement) {
    Worker* w = pid > 0 ? m.cluster.find_pid(pid) : nullptr;
    if (!w || w->state == WorkerState::disconnecting) return;  // gone or going already
    w->state = WorkerState::disconnecting;
    log_event("reload retire generation=%ld slot=%d worker=%d replacement=%d", m.reload.generation, w->slot, pid,
              replacement);
    m.cluster.send(*w, msg("cmd", "disconnect"));
}

void finish_reload(Master& m) {
    Reload& r = m.reload;
    r.running = false;
    size_t draining = 0;
    for (Worker* w : m.cluster.workers()) draining += w->state == WorkerState::disconnecting;
    log_event("reload done generation=%ld ms=%lld workers=%ld draining=%zu", r.generation,
              monotonic_ms() - r.started_ms, m.opts.server.workers, draining);
    log_serving(m);
    if (r.pending) {
        r.pending = false;
        start_reload(m);
    }
}

// The newcomer exited, or did not listen in time, or could not be forked: stop here. The slots
// already replaced keep their new workers, the others their old ones; the newcomer is reaped.
void abort_reload(Master& m, const char* reason) {
    Reload& r = m.reload;
    m.loop.cancel_timer(r.listen_timer);
    r.listen_timer = 0;
    r.running = false;
    Worker* newcomer = r.new_pid > 0 ? m.cluster.find_pid(r.new_pid) : nullptr;
    if (newcomer) newcomer->state = WorkerState::disconnecting;  // its exit is ours: not a crash to restart
    int replaced = 0;
    for (int slot = 0; slot < m.opts.server.workers; ++slot) {
        Worker* w = slot_owner(m, slot);
        replaced += w && w->generation >= r.generation;
    }
    log_event("reload aborted generation=%ld reason=%s slot=%d worker=%d replaced=%d/%ld", r.generation, reason,
              r.slot, r.new_pid, replaced, m.opts.server.workers);
    if (newcomer) kill(r.new_pid, SIGKILL);  // Cluster reaps it and logs its exit
    if (r.old_died && !m.cluster.shutting_down()) {
        // The slot's old worker died while its newcomer started: without the newcomer, lab10's
        // restart applies after all.
        restart(m, r.old_pid, r.slot);
    }
    r.new_pid = r.old_pid = -1;
    log_serving(m);
    if (r.pending) {
        r.pending = false;
        start_reload(m);
    }
}

// One step: fork the newcomer for the next slot that is not on this generation yet. The old
// worker keeps accepting until the newcomer says `listening` (on_newcomer_listening).
void replace_next_slot(Master& m) {
    Reload& r = m.reload;
    while (r.next_slot < m.opts.server.workers) {
        int slot = r.next_slot++;
        Worker* old = slot_owner(m, slot);
        if (old && old->generation >= r.generation) {
            // A restart during this reload read the new file already.
            log_event("reload step generation=%ld slot=%d skipped worker=%d", r.generation, slot, old->pid);
            continue;
        }
        r.slot = slot;
        r.old_pid = old ? old->pid : -1;
        r.old_died = false;
        r.step_started_ms = monotonic_ms();
        Worker* fresh = start_worker(m, slot);
        if (!fresh) return abort_reload(m, "fork-failed");
        r.new_pid = fresh->pid;
        log_event("reload step generation=%ld slot=%d old=%d new=%d", r.generation, slot, r.old_pid, r.new_pid);
        // BEGIN SOLUTION: keep the old worker until the newcomer listens; abort after --listen-timeout
        // Never fewer than N accepting: the old worker retires only when the newcomer has said
        // `listening` (on_newcomer_listening). Retiring it now would leave its slot empty while
        // the newcomer execs and starts (and for good, if it never listens). A newcomer that
        // does not listen in time is given up on, and the old worker stays.
        r.listen_timer = m.loop.add_timer(m.opts.listen_timeout_ms, [&m] { abort_reload(m, "listen-timeout"); });
        // STUB:
        // retire(m, r.old_pid, r.new_pid);  // at once: its slot is empty until the newcomer listens
        // END SOLUTION
        return;
    }
    finish_reload(m);
}

// The newcomer is accepting: now, and only now, the old worker of its slot may stop.
void on_newcomer_listening(Master& m) {
    Reload& r = m.reload;
    m.loop.cancel_timer(r.listen_timer);
    r.listen_timer = 0;
    log_event("reload listening generation=%ld slot=%d worker=%d ms=%lld", r.generation, r.slot, r.new_pid,
              monotonic_ms() - r.step_started_ms);
    if (!r.old_died) retire(m, r.old_pid, r.new_pid);  // a crashed one is on its way out already
    r.old_pid = r.new_pid = -1;
    replace_next_slot(m);
}

// SIGHUP. nginx's rule first: read and check the whole file, and if anything is wrong change
// nothing at all. Then one slot at a time (replace_next_slot).
void start_reload(Master& m) {
    Reload& r = m.reload;
    if (m.cluster.shutting_down()) return;
    if (r.running || !m.ready) {
        // Several SIGHUPs during a reload coalesce into one more, run when this one is over: the
        // file is read then, so the last edit wins and nothing is replaced twice for nothing.
        if (!r.pending) log_event("reload queued after=%s", r.running ? "reload" : "start");
        r.pending = true;
        return;
    }
    ConfigFile config;
    ConfigError error;
    if (!read_config(m.opts.config_path, &config, &error)) {
        log_event("reload aborted generation=%ld reason=\"%s\" line=%d file=%s", m.generation + 1,
                  error.reason.c_str(), error.line, m.opts.config_path.c_str());
        log_serving(m);
        return;
    }
    r = Reload{};
    r.running = true;
    r.generation = ++m.generation;
    r.started_ms = monotonic_ms();
    log_event("reload start generation=%ld workers=%ld config=%s version=%s", r.generation, m.opts.server.workers,
              m.opts.config_path.empty() ? "none" : m.opts.config_path.c_str(), config.get("version", "none").c_str());
    replace_next_slot(m);
}

// The step's old worker died (a crash, a kill) before its newcomer listened: the newcomer is
// already its replacement, so nothing is forked (or the slot would end up with two workers).
bool replaced_by_newcomer(Master& m, const Worker& w) {
    Reload& r = m.reload;
    if (!r.running || w.pid != r.old_pid) return false;
    if (!r.old_died) log_event("restart worker=%d replacement=%d reason=reload", w.pid, r.new_pid);
    r.old_died = true;
    return true;
}

// Exits: a retired worker's is expected (not restarted, not counted); the newcomer's aborts the
// reload; any other is lab10's, unless the newcomer of its slot already replaces it.
void on_worker_exit(Master& m, const Worker& w) {
    if (m.cluster.shutting_down()) return;  // stopping: nobody is replaced
    if (m.reload.running && w.pid == m.reload.new_pid) {
        abort_reload(m, "new-worker-exited");
    } else if (!w.exited_after_disconnect && !replaced_by_newcomer(m, w)) {
        restart(m, w.pid, w.slot);
    }
    if (m.gave_up && m.cluster.size() == 0) {
        log_event("shutdown reason=giveup workers=0");
        m.exit_code = 1;
        m.loop.stop();
    }
}

// Cluster has logged online/listening already. The ready line waits for every initial worker.
void on_worker_message(Master& m, Worker& w, const Message& message, int port) {
    std::string act = message.body.get_string("act");
    if (act == "listening") {
        if (!m.ready && m.cluster.listening_count() >= static_cast<size_t>(m.opts.server.workers)) {
            m.ready = true;
            print_ready("lab14", m.opts.server.host, port);
            if (m.reload.pending) {
                m.reload.pending = false;
                start_reload(m);
            }
        }
        if (m.reload.running && w.pid == m.reload.new_pid) on_newcomer_listening(m);
    } else if (act == "suicide" && w.state != WorkerState::disconnecting) {
        w.state = WorkerState::disconnecting;
        log_event("suicide worker=%d", w.pid);
        if (!m.cluster.shutting_down() && !replaced_by_newcomer(m, w)) restart(m, w.pid, w.slot);
    }
}

int run_master(const Options& opts, char** argv) {
    // A bad file at start is a set-up failure: refuse to start, as nginx does.
    ConfigFile config;
    ConfigError error;
    if (!read_config(opts.config_path, &config, &error))
        die("config %s line %d: %s", opts.config_path.c_str(), error.line, error.reason.c_str());

    EventLoop loop;
    Cluster cluster(loop, argv);
    ListenOptions lo;
    lo.host = opts.server.host;
    lo.port = opts.server.port;
    lo.nonblocking = true;  // shared with every worker: their loops must never block in accept
    Master m{.opts = opts, .loop = loop, .cluster = cluster, .listener = listen_or_die(lo),
             .window = RestartWindow(static_cast<size_t>(opts.limit), opts.during_ms)};
    int port = local_port(m.listener.get());

    cluster.on_message([&m, port](Worker& w, Message& message) { on_worker_message(m, w, message, port); });
    cluster.on_exit([&m](const Worker& w, int) { on_worker_exit(m, w); });
    loop.on_signal(SIGHUP, [&m] {
        if (m.cluster.shutting_down()) return log_event("reload ignored reason=shutting-down");
        start_reload(m);
    });
    // SIGINT/SIGTERM, even in the middle of a reload: forget the reload, then lab10's shutdown
    // (every worker drains and exits, newcomers and retired ones included; we exit 0).
    stop_cluster_on_signals(loop, cluster, opts.shutdown_timeout_ms, {}, [&m] {
        Reload& r = m.reload;
        if (!r.running) return;
        m.loop.cancel_timer(r.listen_timer);
        log_event("reload cancelled generation=%ld reason=shutdown", r.generation);
        r.running = r.pending = false;
    });

    for (int slot = 0; slot < opts.server.workers; ++slot) start_worker(m, slot);
    loop.run();
    log_event("shutdown complete code=%d", m.exit_code);
    return m.exit_code;
}

}  // namespace

int main(int argc, char** argv) {
    bool worker = is_worker_process();
    init_process(worker ? "worker" : "master");
    Options opts;
    Cli cli("lab14", "Rolling reload: on SIGHUP the master checks --config, then replaces each worker by a new "
                     "one that is listening before the old one retires; a bad file or a new worker that fails "
                     "aborts the reload.");
    add_server_options(cli, opts.server, /*with_workers=*/true);
    add_connection_options(cli, opts.limits);
    cli.text("config", &opts.config_path, "FILE",
             "key=value lines each worker reads when it starts (greeting, version, fail_at_start, start_delay_ms)");
    cli.integer("listen-timeout", &opts.listen_timeout_ms, 1, 3600000,
                "ms a new worker has to report listening during a reload before the reload is aborted");
    cli.integer("shutdown-timeout", &opts.shutdown_timeout_ms, 1, 3600000,
                "ms the master waits for workers to drain on SIGINT/SIGTERM before SIGKILL");
    cli.integer("kill-timeout", &opts.kill_timeout_ms, 1, 3600000,
                "ms a dying or retired worker may drain before it closes what is left and exits");
    cli.integer("limit", &opts.limit, 1, 1000000, "give up when this many restarts fall within --during");
    cli.integer("during", &opts.during_ms, 1, 86400000, "ms: the window of --limit");
    cli.parse(argc, argv);
    return worker ? run_worker(opts) : run_master(opts, argv);
}
