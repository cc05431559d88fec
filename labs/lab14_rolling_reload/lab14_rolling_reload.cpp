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
#include "rolling_reload.hpp"

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

// The keys of --config (common/config_file.* parses and checks). fail_at_start=1 passes the check
// but the worker refuses to start: what only a real start finds out, and a reload must survive.
const std::vector<ConfigKey> kConfigKeys = {
    {.name = "greeting"}, {.name = "version"},
    {.name = "fail_at_start", .number = true, .min = 0, .max = 1, .wants = "0 or 1"},
    {.name = "start_delay_ms", .number = true, .min = 0, .max = 600000, .wants = "a whole number of ms up to 600000"},
};

// ---- the worker ----------------------------------------------------------------------------

// A worker: the standard runtime plus this stage's state. Ownership: `listener` is our copy of the
// master's listening socket (it keeps its own: closing ours refuses nobody); `held`, during start_delay_ms.
struct Serving {
    WorkerRuntime& rt;
    long kill_timeout_ms;
    Fd listener{};
    Fd held{};
    long start_delay_ms = 0;
    long generation = 0;    // the master's reload this worker belongs to
    int exit_code = 0;
    bool finished = false;  // drained: leave the loop and exit with exit_code
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

// The graceful exit with its deadline (lab08, lab09): a crash exits 1, SIGTERM or a retirement 0.
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

// The material's process.on('uncaughtException'), with the suicide signal (lab09).
void on_uncaught(Serving& s, const char* what) {
    log_event("uncaught error=\"%s\"", what);
    if (!s.rt.http.draining()) s.rt.master.send(msg("act", "suicide"));
    exit_when_drained(s, 1);
}

int run_worker(const Options& opts) {
    WorkerRuntime rt(opts.limits);
    // SIGHUP is the master's (a terminal hang-up reaches the whole group): a worker is replaced, never reloaded.
    signal(SIGHUP, SIG_IGN);
    Serving s{.rt = rt, .kill_timeout_ms = opts.kill_timeout_ms};
    // Read once, at start: a running worker never changes it. A new configuration means new workers.
    ConfigFile config;
    if (!read_config_at_start(opts.config_path, kConfigKeys, &config)) return 1;
    if (config.get("fail_at_start") == "1") {
        log_event("config refused file=%s reason=fail_at_start=1", opts.config_path.c_str());
        return 1;
    }
    config_number(config.get("start_delay_ms", "0"), 0, 600000, &s.start_delay_ms);
    // GET /config: what this worker read, under which generation (other methods: the 405).
    rt.http.set_routes([&config, &s](const Request& req, HttpServer::ReplyFn reply) {
        if (req.path != "/config" || (req.method != "GET" && !req.is_head())) return false;
        reply({.body = config.entries.empty() ? "# no --config file\n" : config.text(),
               .extra_headers = format("X-Config-Generation: %ld\r\n", s.generation)});
        return true;
    });

    rt.master.on_message([&s](Message& m) {
        std::string cmd = m.body.get_string("cmd");
        if (cmd == "server" && m.fd) {
            s.generation = m.body.get_int("generation");
            // start_delay_ms: a slow start (a cache to warm), on the loop: SIGTERM still works meanwhile.
            s.held = std::move(m.fd);
            s.rt.loop.add_timer(s.start_delay_ms, [&s] { serve_listener(s, std::move(s.held)); });
        } else if (cmd == "disconnect") {
            // Node's worker.disconnect(): the master has a replacement listening; we go quietly.
            log_event("retire stop-accepting generation=%ld", s.generation);
            exit_when_drained(s, 0);
        }
    });
    rt.loop.on_signal(SIGTERM, [&s] { exit_when_drained(s, 0); });  // the master's shutdown: code 0
    rt.master.send(msg("act", "online"));

    // The top of the worker's loop (lab08): a handler's exception lands here, the worker
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

// The master's state. Ownership: `listener`, never accepted on, stays open all along: while workers
// come and go the kernel queues connections, and a newcomer and an old worker share the queue.
struct Master {
    const Options& opts;
    EventLoop& loop;
    Cluster& cluster;
    Fd listener;
    bool ready = false;
    RestartWindow window;   // the times of the last --limit restarts
    bool gave_up = false;   // once given up, never restart again
    int exit_code = 0;
    long generation = 1;    // the newest configuration checked and started
    RollingReload reload;   // decides each step (common/rolling_reload.hpp); we do the I/O
    EventLoop::TimerId reload_timer = 0;  // the step's listen timeout
};

// worker.send('server', server) after cluster.fork(). It reads the file as it starts: the newest generation.
void send_listener(Master& m, Worker& w) {
    w.generation = m.generation;
    JsonObject server = msg("cmd", "server");
    server.set("generation", static_cast<std::int64_t>(m.generation));
    m.cluster.send(w, server, m.listener.get());
}

void stop_if_nothing_left(Master& m);

// lab10's restart: a replacement into the same slot, unless it has been happening too often.
void restart(Master& m, pid_t old, int slot) {
    if (m.gave_up) return;
    if (!m.window.allow(monotonic_ms())) {
        m.gave_up = true;
        log_event("giveup restarts=%zu during_ms=%lld workers=%zu", m.window.total(), m.window.during_ms(),
                  m.cluster.size());
        return;
    }
    Worker* w = m.cluster.fork_worker(slot);
    if (!w) {
        // socketpair or fork failed (logged): try again later, unless a reload fills the slot.
        log_event("restart worker=%d failed retry_in_ms=%ld", old, kForkRetryMs);
        m.loop.add_timer(kForkRetryMs, [&m, old, slot] {
            if (m.cluster.shutting_down() || m.cluster.serving_in(slot)) return;
            restart(m, old, slot);
            stop_if_nothing_left(m);  // that try may have been the one that gave up
        });
        return;
    }
    send_listener(m, *w);
    m.reload.slot_done(slot, w->id);  // on the new file already: a reload skips this slot
    log_event("restart worker=%d replacement=%d", old, w->pid);
}

// After a giveup, the master lives as long as some worker serves, then exits 1.
void stop_if_nothing_left(Master& m) {
    if (!m.gave_up || m.cluster.size() > 0) return;
    log_event("shutdown reason=giveup workers=0");
    m.exit_code = 1;
    m.loop.stop();
}

// Node's worker.disconnect(): it drains and exits 0, expected: never restarted, never counted.
void retire(Master& m, int id, int replacement) {
    Worker* w = m.cluster.find(id);
    if (!w || !m.cluster.disconnect_worker(*w)) return;  // gone or going already (0: died in the step)
    log_event("reload retire generation=%ld slot=%d worker=%d replacement=%d", m.reload.generation(), w->slot, w->pid,
              m.cluster.pid_of(replacement));
}

void begin_reload(Master& m);

// A reload is over, done or aborted: say which generation serves where, then run the queued one.
void reload_over(Master& m) {
    for (int slot = 0; slot < m.opts.server.workers; ++slot) {
        Worker* w = m.cluster.serving_in(slot);
        std::string generation = w ? std::to_string(w->generation) : "none", pid = w ? std::to_string(w->pid) : "none";
        log_event("reload serving slot=%d generation=%s worker=%s", slot, generation.c_str(), pid.c_str());
    }
    if (m.reload.take_queued()) begin_reload(m);
}

// Does what the reload decides until it waits: for a `listening`, an exit or the listen timeout.
void drive_reload(Master& m) {
    m.loop.cancel_timer(m.reload_timer);
    for (;;) {
        ReloadAction a = m.reload.next(monotonic_ms());
        switch (a.kind) {
        case ReloadAction::Kind::start:
            if (Worker* fresh = m.cluster.fork_worker(a.slot)) {
                send_listener(m, *fresh);
                m.reload.started(fresh->id);
                log_event("reload step generation=%ld slot=%d old=%d new=%d", a.generation, a.slot,
                          m.cluster.pid_of(a.old_id), fresh->pid);
            } else {
                m.reload.start_failed();
            }
            continue;
        case ReloadAction::Kind::skip:  // a restart during this reload read the new file already
            log_event("reload step generation=%ld slot=%d skipped worker=%d", a.generation, a.slot,
                      m.cluster.pid_of(a.old_id));
            continue;
        // BEGIN SOLUTION: keep the old worker until the newcomer listens; abort after --listen-timeout
        // Never fewer than N accepting: retired as its newcomer starts, the old worker would leave
        // its slot empty while the newcomer execs (for good, if it never listens).
        case ReloadAction::Kind::retire:
            log_event("reload listening generation=%ld slot=%d worker=%d ms=%lld", a.generation, a.slot,
                      m.cluster.pid_of(a.new_id), a.ms);
            retire(m, a.old_id, a.new_id);
            continue;
        case ReloadAction::Kind::wait:
            if (a.ms >= 0) m.reload_timer = m.loop.add_timer(a.ms, [&m] { drive_reload(m); });
            return;
        // STUB:
        // case ReloadAction::Kind::retire:  // its old worker went when the newcomer started
        //     continue;
        // case ReloadAction::Kind::wait:  // at once (the slot is empty until the newcomer listens), no timer
        //     retire(m, a.old_id, a.new_id);
        //     return;
        // END SOLUTION
        case ReloadAction::Kind::abort: {  // replaced slots keep their new workers, the others their old
            log_event("reload aborted generation=%ld reason=%s slot=%d worker=%d replaced=%d/%ld", a.generation,
                      a.reason.c_str(), a.slot, m.cluster.pid_of(a.new_id), a.replaced, m.opts.server.workers);
            if (Worker* newcomer = m.cluster.find(a.new_id)) m.cluster.kill_worker(*newcomer, SIGKILL);  // expected
            // The slot's old worker died during the step: without the newcomer, lab10's restart.
            if (a.restart_slot && !m.cluster.shutting_down()) restart(m, -1, a.slot);
            return reload_over(m);
        }
        case ReloadAction::Kind::finished: {
            log_event("reload done generation=%ld ms=%lld workers=%ld draining=%zu", a.generation, a.ms,
                      m.opts.server.workers, m.cluster.count(WorkerState::disconnecting));
            return reload_over(m);
        }
        case ReloadAction::Kind::idle: return;
        }
    }
}

// SIGHUP. nginx's rule first: check the whole file, and if anything is wrong change nothing.
// SIGHUPs during a reload (or before ready) make one more after it, which reads the file then.
void begin_reload(Master& m) {
    if (m.cluster.shutting_down()) return log_event("reload ignored reason=shutting-down");
    RollingReload::Request asked = m.reload.request(m.ready);
    if (asked == RollingReload::Request::queued) log_event("reload queued after=%s", m.ready ? "reload" : "start");
    if (asked != RollingReload::Request::begin) return;
    ConfigFile config;
    ConfigError error;
    if (!read_config(m.opts.config_path, kConfigKeys, &config, &error)) {
        log_event("reload aborted generation=%ld reason=\"%s\" line=%d file=%s", m.generation + 1,
                  error.reason.c_str(), error.line, m.opts.config_path.c_str());
        return reload_over(m);
    }
    m.reload.begin(++m.generation, m.cluster.ids_by_slot(m.opts.server.workers), monotonic_ms());
    log_event("reload start generation=%ld workers=%ld config=%s version=%s", m.generation, m.opts.server.workers,
              m.opts.config_path.empty() ? "none" : m.opts.config_path.c_str(), config.get("version", "none").c_str());
    drive_reload(m);
}

// A worker going unasked (a suicide) or gone: lab10's restart, unless it is the reload's newcomer
// (the reload aborts) or the old worker of the slot being replaced (its newcomer replaces it).
void on_worker_gone(Master& m, const Worker& w) {
    pid_t newcomer = m.cluster.pid_of(m.reload.newcomer());
    RollingReload::Gone role = m.reload.gone(w.id);
    if (role == RollingReload::Gone::newcomer) drive_reload(m);  // it aborts
    else if (role == RollingReload::Gone::old_of_step)
        log_event("restart worker=%d replacement=%d reason=reload", w.pid, newcomer);
    else restart(m, w.pid, w.slot);
}

// Replaced on exit: only a worker that died without a word, not a suicided or retired one.
void on_worker_exit(Master& m, const Worker& w) {
    if (m.cluster.shutting_down()) return;  // stopping: nobody is replaced
    if (!w.exited_after_disconnect) on_worker_gone(m, w);
    stop_if_nothing_left(m);
}

// The ready line waits for every initial worker; a suicide is replaced now, not at its exit.
void on_worker_message(Master& m, Worker& w, const Message& message, int port) {
    std::string act = message.body.get_string("act");
    if (act == "listening" && !m.ready && m.cluster.listening_count() >= static_cast<size_t>(m.opts.server.workers)) {
        m.ready = true;
        print_ready("lab14", m.opts.server.host, port);
        if (m.reload.take_queued()) begin_reload(m);
    } else if (act == "listening") {
        m.reload.listening(w.id, monotonic_ms());
        drive_reload(m);
    } else if (act == "suicide" && w.state != WorkerState::disconnecting) {
        w.state = WorkerState::disconnecting;
        log_event("suicide worker=%d", w.pid);
        if (!m.cluster.shutting_down()) on_worker_gone(m, w);
    }
}

int run_master(const Options& opts, char** argv) {
    read_config_or_die(opts.config_path, kConfigKeys);  // a bad file at start: refuse to start, as nginx does
    EventLoop loop;
    Cluster cluster(loop, argv);
    ListenOptions lo;
    lo.host = opts.server.host;
    lo.port = opts.server.port;
    lo.nonblocking = true;  // shared with every worker: their loops must never block in accept
    Master m{.opts = opts, .loop = loop, .cluster = cluster, .listener = listen_or_die(lo),
             .window = RestartWindow(static_cast<size_t>(opts.limit), opts.during_ms),
             .reload = RollingReload(opts.listen_timeout_ms)};
    int port = local_port(m.listener.get());

    cluster.on_message([&m, port](Worker& w, Message& message) { on_worker_message(m, w, message, port); });
    cluster.on_exit([&m](const Worker& w, int) { on_worker_exit(m, w); });
    loop.on_signal(SIGHUP, [&m] { begin_reload(m); });
    // SIGINT/SIGTERM: no more restarts (on_worker_exit sees shutting_down()), no more reload;
    // every worker drains and exits; a worker still busy after --shutdown-timeout gets SIGKILL.
    stop_cluster_on_signals(loop, cluster, opts.shutdown_timeout_ms, {}, [&m] {
        m.loop.cancel_timer(m.reload_timer);
        if (m.reload.cancel()) log_event("reload cancelled generation=%ld reason=shutdown", m.reload.generation());
    });

    for (int slot = 0; slot < opts.server.workers; ++slot)
        cluster.fork_worker_retrying(slot, kForkRetryMs, [&m](Worker& w) { send_listener(m, w); });
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
    cli.text("config", &opts.config_path, "FILE", "key=value lines each worker reads as it starts");
    cli.integer("listen-timeout", &opts.listen_timeout_ms, 1, 3600000,
                "ms a new worker has to listen in before the reload aborts");
    cli.integer("shutdown-timeout", &opts.shutdown_timeout_ms, 1, 3600000,
                "ms the master waits for workers to drain on SIGINT/SIGTERM before SIGKILL");
    cli.integer("kill-timeout", &opts.kill_timeout_ms, 1, 3600000,
                "ms a dying or retired worker may drain before it closes what is left and exits");
    cli.integer("limit", &opts.limit, 1, 1000000, "give up when this many restarts fall within --during");
    cli.integer("during", &opts.during_ms, 1, 86400000, "ms: the window of --limit");
    cli.parse(argc, argv);
    return worker ? run_worker(opts) : run_master(opts, argv);
}
