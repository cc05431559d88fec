// lab08_graceful_exit — master + event-driven workers; a worker whose handler throws stops accepting, answers what it has, exits 1; the master forks a replacement on exit.
// base: lab05
// Observe: a /sleep in flight when its worker crashes still gets its answer (Connection: close); while every worker drains, new clients wait in the kernel's queue.
// Run: make lab08 && ./lab08 --workers 2, then: curl -si 'localhost:8000/sleep?ms=3000' & sleep 0.2; curl localhost:8000/crash; wait
// Mirrors the material's process.on('uncaughtException') → worker.close() → process.exit(1), and the master's on('exit') → createWorker().
// stage: graceful exit: a crashed worker drains its connections, the master replaces it on exit

#include "cli.hpp"
#include "cluster.hpp"
#include "log.hpp"
#include "master_worker.hpp"
#include "net.hpp"
#include "process.hpp"

#include <csignal>
#include <exception>
#include <string>
#include <sys/epoll.h>

namespace {

struct Options {
    ServerOptions server;
    ConnectionLimits limits;
    long shutdown_timeout_ms = 10000;
};

// ---- the worker ----------------------------------------------------------------------------

// A worker: the standard runtime (loop, channel, HTTP server) plus what this stage is about.
// Ownership: `listener` is this worker's copy of the master's listening socket (received over
// the channel); the master keeps its own copy open, so closing ours never refuses a client: the
// kernel keeps queueing connections for whoever accepts next.
struct Serving {
    WorkerRuntime& rt;
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

// BEGIN SOLUTION: on an uncaught exception, stop accepting, answer what is in flight (Connection: close), then exit 1
// The graceful exit, for a crash (code 1) and for the master's SIGTERM (code 0) alike: stop
// accepting, then let HttpServer::drain answer every request already in flight (each with
// Connection: close), close idle keep-alive connections, and call back when none is left.
void exit_when_drained(Serving& s, int code) {
    if (s.rt.http.draining()) return;  // already on its way out
    s.exit_code = code;
    stop_accepting(s);
    s.rt.http.drain([&s] {
        s.finished = true;
        s.rt.loop.stop();
    });
    log_event("drain waiting=%zu", s.rt.http.connection_count());
}

// The material's process.on('uncaughtException'): log what escaped, then exit gracefully.
void on_uncaught(Serving& s, const char* what) {
    log_event("uncaught error=\"%s\"", what);
    exit_when_drained(s, 1);
}
// STUB:
// void exit_when_drained(Serving& s, int code) {
//     s.exit_code = code;  // no drain: whatever is in flight dies with the process
//     stop_accepting(s);
//     s.finished = true;
//     s.rt.loop.stop();
// }
//
// void on_uncaught(Serving& s, const char* what) {
//     log_event("uncaught error=\"%s\"", what);
//     exit_when_drained(s, 1);
// }
// END SOLUTION

int run_worker(const Options& opts) {
    WorkerRuntime rt(opts.limits);
    Serving s{.rt = rt};

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
};

// worker.send('server', server) after cluster.fork(): the new worker gets the socket.
void send_listener(Master& m, Worker& w) { m.cluster.send(w, msg("cmd", "server"), m.listener.get()); }

// A worker is gone, whatever the cause: fork its replacement into the same slot, so the
// number of workers stays what --workers asked for.
void restart(Master& m, pid_t old, int slot) {
    Worker* w = m.cluster.fork_worker(slot);
    if (!w) {
        // socketpair or fork failed (logged: out of fds or processes). Not the end of the
        // cluster: the others keep serving, and we try again a little later.
        log_event("restart worker=%d failed retry_in_ms=%ld", old, kForkRetryMs);
        m.loop.add_timer(kForkRetryMs, [&m, old, slot] {
            if (!m.cluster.shutting_down()) restart(m, old, slot);
        });
        return;
    }
    send_listener(m, *w);
    log_event("restart worker=%d replacement=%d", old, w->pid);
}

void on_worker_exit(Master& m, const Worker& w) {
    if (m.cluster.shutting_down()) return;  // stopping: nobody is replaced
    restart(m, w.pid, w.slot);
}

// Cluster has logged online/listening already. The ready line waits for every initial worker.
void on_worker_message(Master& m, Worker&, const Message& message, int port) {
    std::string act = message.body.get_string("act");
    if (act == "listening" && !m.ready && m.cluster.listening_count() >= static_cast<size_t>(m.opts.server.workers)) {
        m.ready = true;
        print_ready("lab08", m.opts.server.host, port);
    }
}

int run_master(const Options& opts, char** argv) {
    EventLoop loop;
    Cluster cluster(loop, argv);
    ListenOptions lo;
    lo.host = opts.server.host;
    lo.port = opts.server.port;
    lo.nonblocking = true;  // shared with every worker: their loops must never block in accept
    Master m{.opts = opts, .loop = loop, .cluster = cluster, .listener = listen_or_die(lo)};
    int port = local_port(m.listener.get());

    cluster.on_message([&m, port](Worker& w, Message& message) { on_worker_message(m, w, message, port); });
    cluster.on_exit([&m](const Worker& w, int) { on_worker_exit(m, w); });
    // SIGINT/SIGTERM: no more restarts (on_worker_exit sees shutting_down()); every worker
    // drains and exits; a worker still busy after --shutdown-timeout gets SIGKILL; we exit 0.
    stop_cluster_on_signals(loop, cluster, opts.shutdown_timeout_ms);

    for (int slot = 0; slot < opts.server.workers; ++slot)
        cluster.fork_worker_retrying(slot, kForkRetryMs, [&m](Worker& w) { send_listener(m, w); });
    loop.run();
    log_event("shutdown complete code=0");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    bool worker = is_worker_process();
    init_process(worker ? "worker" : "master");
    Options opts;
    Cli cli("lab08", "Graceful exit: a worker whose handler throws stops accepting, answers what it has in "
                     "flight, then exits; the master forks a replacement when it exits.");
    add_server_options(cli, opts.server, /*with_workers=*/true);
    add_connection_options(cli, opts.limits);
    cli.integer("shutdown-timeout", &opts.shutdown_timeout_ms, 1, 3600000,
                "ms the master waits for workers to drain on SIGINT/SIGTERM before SIGKILL");
    cli.parse(argc, argv);
    return worker ? run_worker(opts) : run_master(opts, argv);
}
