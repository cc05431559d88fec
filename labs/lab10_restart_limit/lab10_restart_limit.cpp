// lab10_restart_limit — lab09, but the master stops restarting when --limit restarts fall within --during ms, logs giveup, and exits 1 when its last worker is gone.
// base: lab09
// Observe: a crash loop ends: after the limit the log says giveup, the survivors keep serving, and the master exits 1 with the last of them.
// Run: make lab10 && ./lab10 --workers 2 --limit 3 --during 60000, then: for i in 1 2 3; do curl localhost:8000/crash; done; curl localhost:8000/
// Mirrors the material's 限量重启: isTooFrequently() over the last `limit` restart times, and process.emit('giveup', length, during).
// stage: restart limit: give up after --limit restarts within --during ms

#include "cli.hpp"
#include "cluster.hpp"
#include "log.hpp"
#include "master_worker.hpp"
#include "net.hpp"
#include "process.hpp"
#include "restart_window.hpp"

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

int run_worker(const Options& opts) {
    WorkerRuntime rt(opts.limits);
    Serving s{.rt = rt, .kill_timeout_ms = opts.kill_timeout_ms};

    rt.master.on_message([&s](Message& m) {
        if (m.body.get_string("cmd") == "server" && m.fd) serve_listener(s, std::move(m.fd));
    });
    // The master's SIGTERM (its shutdown) is a graceful exit too, with code 0.
    rt.loop.on_signal(SIGTERM, [&s] { exit_when_drained(s, 0); });
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
// nobody is refused.
struct Master {
    const Options& opts;
    EventLoop& loop;
    Cluster& cluster;
    Fd listener;
    bool ready = false;
    RestartWindow window;   // the times of the last --limit restarts
    bool gave_up = false;   // once given up, never restart again
    int exit_code = 0;
};

// worker.send('server', server) after cluster.fork(): the new worker gets the socket.
void send_listener(Master& m, Worker& w) { m.cluster.send(w, msg("cmd", "server"), m.listener.get()); }

void stop_if_nothing_left(Master& m);

// A worker is going or gone: fork its replacement into the same slot, so the number of
// serving workers stays what --workers asked for — unless it has been happening too often.
void restart(Master& m, pid_t old, int slot) {
    if (m.gave_up) return;
    // BEGIN SOLUTION: give up (log giveup, fork no more) when --limit restarts fall within --during ms
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
    // STUB:
    // // no limit: every death is replaced, and a crash loop never ends
    // END SOLUTION
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
    if (m.cluster.shutting_down()) return;  // stopping: nobody is replaced
    if (!w.exited_after_disconnect) restart(m, w.pid, w.slot);
    stop_if_nothing_left(m);
}

// Cluster has logged online/listening already. The ready line waits for every initial worker.
// A suicide is the worker saying "I am going": replace it now, not when it has exited.
void on_worker_message(Master& m, Worker& w, const Message& message, int port) {
    std::string act = message.body.get_string("act");
    if (act == "listening" && !m.ready && m.cluster.listening_count() >= static_cast<size_t>(m.opts.server.workers)) {
        m.ready = true;
        print_ready("lab10", m.opts.server.host, port);
    } else if (act == "suicide" && w.state != WorkerState::disconnecting) {
        w.state = WorkerState::disconnecting;
        log_event("suicide worker=%d", w.pid);
        if (!m.cluster.shutting_down()) restart(m, w.pid, w.slot);
    }
}

int run_master(const Options& opts, char** argv) {
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
    // SIGINT/SIGTERM: no more restarts (on_worker_exit sees shutting_down()); every worker
    // drains and exits; a worker still busy after --shutdown-timeout gets SIGKILL; we exit 0.
    stop_cluster_on_signals(loop, cluster, opts.shutdown_timeout_ms);

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
    Cli cli("lab10", "Restart limit: the master gives up restarting workers when --limit restarts fall within "
                     "--during ms, and exits 1 when the last worker is gone.");
    add_server_options(cli, opts.server, /*with_workers=*/true);
    add_connection_options(cli, opts.limits);
    cli.integer("shutdown-timeout", &opts.shutdown_timeout_ms, 1, 3600000,
                "ms the master waits for workers to drain on SIGINT/SIGTERM before SIGKILL");
    cli.integer("kill-timeout", &opts.kill_timeout_ms, 1, 3600000,
                "ms a dying worker may drain before it closes what is left and exits");
    cli.integer("limit", &opts.limit, 1, 1000000, "give up when this many restarts fall within --during");
    cli.integer("during", &opts.during_ms, 1, 86400000, "ms: the window of --limit");
    cli.parse(argc, argv);
    return worker ? run_worker(opts) : run_master(opts, argv);
}
