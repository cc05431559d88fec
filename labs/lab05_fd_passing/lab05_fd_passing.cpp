// lab05_fd_passing — the master opens the listening socket and SENDS it to its workers over a socketpair (SCM_RIGHTS).
// base: lab02
// Observe: workers accept on a socket they never opened (ss -ltnp, ls -l /proc/PID/fd); JSON messages both ways in the log.
// Run: make lab05 && ./lab05 --workers 2, then: curl -s localhost:8000/pid; ./lab05 --master-accepts: master and workers take turns.
// Mirrors the material's 句柄传递 (handle passing): child.send('server', server), then server.close() in the parent.
// stage: fd passing, the master hands its listening socket to workers over the IPC channel

#include "cli.hpp"
#include "cluster.hpp"
#include "event_loop.hpp"
#include "http_server.hpp"
#include "log.hpp"
#include "master_worker.hpp"
#include "net.hpp"
#include "process.hpp"

#include <sys/epoll.h>

namespace {

struct Options {
    ServerOptions server;
    ConnectionLimits limits;
    bool master_accepts = false;
};

// ------------------------------------------------------------------------------------- worker

// BEGIN SOLUTION: serve the listening socket the master sent: watch it on the loop, accept, report "listening"
void serve_listener(WorkerRuntime& rt, Fd& listener, Fd received) {
    if (!received) {
        log_event("error message cmd=server carried no socket");
        return;
    }
    // The same socket the master bound, not a copy of it: one open file, several descriptors
    // in several processes. Whoever calls accept first gets the next connection.
    listener = std::move(received);
    int fd = listener.get();
    if (!rt.loop.add(fd, EPOLLIN, [&rt, fd](uint32_t) { rt.http.accept_all(fd); })) die_errno("epoll_ctl(listener)");
    JsonObject listening = msg("act", "listening");
    listening.set("port", local_port(fd));
    rt.master.send(listening);
}
// STUB:
// void serve_listener(WorkerRuntime& rt, Fd& listener, Fd received) {
//     listener = std::move(received);  // kept, but nobody ever accepts on it
//     JsonObject listening = msg("act", "listening");
//     listening.set("port", local_port(listener.get()));
//     rt.master.send(listening);
// }
// END SOLUTION

// A Node worker: process.on('message', (m, handle) => …). It never calls socket/bind/listen.
int run_worker(const Options& opts) {
    WorkerRuntime rt(opts.limits);
    Fd listener;  // arrives with {"cmd":"server"}
    rt.master.on_message([&](Message& m) {
        if (m.body.has("hello")) {
            log_event("message from=master hello=%s", m.body.get_string("hello").c_str());
            JsonObject reply = msg("hello", "master");
            reply.set("pid", static_cast<std::int64_t>(self_pid()));
            rt.master.send(reply);
        }
        if (m.body.get_string("cmd") == "server") serve_listener(rt, listener, std::move(m.fd));
    });
    return rt.run();
}

// ------------------------------------------------------------------------------------- master

// child.send({hello: 'worker'}) and child.send('server', server). The fd is borrowed: the kernel
// takes its own reference when the message leaves, so the master may close its copy later.
void send_listener(Cluster& cluster, Worker& w, int listen_fd) {
    cluster.send(w, msg("hello", "worker"));
    cluster.send(w, msg("cmd", "server"), listen_fd);
}

int run_master(const Options& opts, char** argv) {
    EventLoop loop;
    Cluster cluster(loop, argv);
    ListenOptions lo;
    lo.host = opts.server.host;
    lo.port = opts.server.port;
    // O_NONBLOCK belongs to the open file, so every process that holds the socket shares it:
    // event loops need it, and a worker cannot change it without changing it for all.
    lo.nonblocking = true;
    Fd listener = listen_or_die(lo);
    int port = local_port(listener.get());
    HttpServer http(loop, opts.limits);  // used with --master-accepts only

    size_t wanted = static_cast<size_t>(opts.server.workers);
    bool ready = false;
    cluster.on_message([&](Worker& w, Message& m) {
        if (m.body.has("hello"))
            log_event("message worker=%d hello=%s pid=%lld", w.pid, m.body.get_string("hello").c_str(),
                      static_cast<long long>(m.body.get_int("pid")));
        if (ready || cluster.listening_count() < wanted) return;
        ready = true;
        if (!opts.master_accepts) {
            // The material's server.close(): every worker holds the socket now, the master no
            // longer needs it. The port stays open as long as one worker does.
            log_event("close listener port=%d reason=every-worker-has-it", port);
            listener.reset();
        }
        print_ready("lab05", opts.server.host, port);
    });
    int exit_code = 0;
    cluster.on_exit([&](const Worker&, int) {
        // No restart yet (lab08): each death leaves one worker fewer. With the last one, the
        // last copy of the listening socket is closed and the port refuses connections.
        if (cluster.size() > 0 || cluster.shutting_down() || opts.master_accepts) return;
        log_event("no workers left: exiting");
        exit_code = 1;
        loop.stop();
    });

    // Before the first fork: a SIGINT/SIGTERM from now on, even in the middle of start-up, is a
    // clean shutdown (exit 0, every worker reaped) instead of the default death by the signal.
    stop_cluster_on_signals(loop, cluster);

    // A worker that cannot be started (out of fds or processes) is tried again a second later.
    for (size_t i = 0; i < wanted; ++i)
        cluster.fork_worker_retrying(static_cast<int>(i), kForkRetryMs,
                                     [&](Worker& w) { send_listener(cluster, w, listener.get()); });
    if (opts.master_accepts) {
        // "handled by parent": the master competes for connections on the same socket.
        int fd = listener.get();
        if (!loop.add(fd, EPOLLIN, [&http, fd](uint32_t) { http.accept_all(fd); })) die_errno("epoll_ctl(listener)");
    }
    loop.run();
    return exit_code;
}

}  // namespace

int main(int argc, char** argv) {
    bool worker = is_worker_process();
    init_process(worker ? "worker" : "master");
    Options opts;
    Cli cli("lab05", "fd passing: the master opens the listening socket and sends it to its workers.");
    add_server_options(cli, opts.server, /*with_workers=*/true);
    add_connection_options(cli, opts.limits);
    cli.flag("master-accepts", &opts.master_accepts, "the master keeps its copy and accepts too (handled by parent/child)");
    cli.parse(argc, argv);
    // Node's `if (cluster.isMaster)`: the same program, two roles; a worker is this program
    // re-run by the master with CLUSTERLAB_CHANNEL_FD in its environment.
    return worker ? run_worker(opts) : run_master(opts, argv);
}
