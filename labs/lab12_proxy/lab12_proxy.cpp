// lab12_proxy — workers listen on ports of their own; the master accepts on the public port and relays every byte of each connection to the next worker in turn.
// base: lab07
// Observe: `ss -ltn` shows N+1 listeners; 1,000 /sleep clients cost the master ~2,000 fds (lab07's: under 300, bench/bench_proxy.sh); kill -9 workers under ab: no request fails.
// Run: make lab12 && ./lab12 --workers 2 [--relay splice], then: curl -s localhost:8000/pid; ./lab12 --print-nginx-conf puts nginx in front of the same workers.
// Mirrors the material's 代理转发 (004: a proxy costs two fds per connection), 001's workers on random ports, and 000's nginx `upstream`.
// stage: relaying proxy, the master connects to a worker per client and copies bytes both ways

#include "cli.hpp"
#include "cluster.hpp"
#include "event_loop.hpp"
#include "http_server.hpp"
#include "log.hpp"
#include "master_worker.hpp"
#include "net.hpp"
#include "process.hpp"
#include "relay.hpp"

#include <csignal>
#include <exception>
#include <sys/epoll.h>
#include <vector>

namespace {

struct Options {
    ServerOptions server;
    ConnectionLimits limits;
    RelayOptions relay;
    long shutdown_timeout_ms = 10000;
};

// ------------------------------------------------------------------------------------- worker

// lab08's worker (a crash or the master's SIGTERM: stop accepting, answer what is in flight,
// exit), with one change: it opens a listening socket of its own on 127.0.0.1, on a port the
// kernel picks, and tells the master which one. Nothing comes over the channel.
struct Serving {
    WorkerRuntime& rt;
    Fd listener{};
    int exit_code = 0;
    bool finished = false;  // drained: leave the loop and exit with exit_code
};

// The material's `childServer.listen(randomPort); process.send(port + ' ready')`, without the
// chance of two workers drawing the same number: port 0 lets the kernel choose a free one.
void serve_own_port(Serving& s) {
    ListenOptions lo;
    lo.host = "127.0.0.1";  // only the master (or an nginx on this machine) talks to a worker
    lo.port = 0;
    lo.nonblocking = true;
    s.listener = listen_or_die(lo);
    int fd = s.listener.get();
    if (!s.rt.loop.add(fd, EPOLLIN, [&s, fd](uint32_t) { s.rt.http.accept_all(fd); })) die_errno("epoll_ctl(listener)");
    JsonObject listening = msg("act", "listening");
    listening.set("port", local_port(fd));
    s.rt.master.send(listening);
}

// lab08's graceful exit. Closing the listener is Node's server.close(): from now on a connection
// to this worker's port is refused, which is what the master sees of a dying worker, and what
// --max-fails counts.
void exit_when_drained(Serving& s, int code) {
    if (s.rt.http.draining()) return;
    s.exit_code = code;
    s.rt.loop.remove(s.listener.get());
    s.listener.reset();
    s.rt.http.drain([&s] {
        s.finished = true;
        s.rt.loop.stop();
    });
    log_event("drain waiting=%zu", s.rt.http.connection_count());
}

int run_worker(const Options& opts) {
    WorkerRuntime rt(opts.limits);
    Serving s{.rt = rt};
    rt.loop.on_signal(SIGTERM, [&s] { exit_when_drained(s, 0); });
    rt.master.send(msg("act", "online"));
    serve_own_port(s);
    while (!s.finished) {  // a handler that throws (/crash) unwinds to here: the material's uncaughtException
        try {
            rt.loop.run();
        } catch (const std::exception& e) {
            log_event("uncaught error=\"%s\"", e.what());
            exit_when_drained(s, 1);
        } catch (...) {
            log_event("uncaught error=\"unknown exception\"");
            exit_when_drained(s, 1);
        }
    }
    log_event("drained code=%d", s.exit_code);
    rt.master.flush_blocking();
    return s.exit_code;
}

// ------------------------------------------------------------------------------------- master

// The relaying itself (per client: a socket to a worker, two directions with back-pressure,
// half-close, a retry on the next worker while no byte of an answer has reached the client,
// nginx's max_fails) is Relays, in common/relay.cpp: notes/lab12_proxy.md walks through it.
// What is the master's own here: which worker a connection goes to, and the ports it learns.
int run_master(const Options& opts, char** argv) {
    EventLoop loop;
    Cluster cluster(loop, argv);
    ListenOptions lo;
    lo.host = opts.server.host;
    lo.port = opts.server.port;
    lo.nonblocking = true;
    Fd listener = listen_or_die(lo);
    int port = local_port(listener.get());
    // lab07's turn, i = (i+1) mod n, over the workers whose ports are up (nginx's default
    // balancing): a connection goes to the next one, and so does its retry.
    size_t next = 0;
    Relays relays(loop, cluster, opts.relay, [&next](const std::vector<Worker*>& up) { return up[next++ % up.size()]; });

    size_t wanted = static_cast<size_t>(opts.server.workers);
    bool ready = false;
    cluster.on_message([&](Worker& w, Message& m) {
        std::string act = m.body.get_string("act");
        if (act == "listening") relays.upstreams.set_port(w.pid, static_cast<int>(m.body.get_int("port")));  // first or new
        if (ready || cluster.listening_count() < wanted) return;
        ready = true;
        // Only now does the master start taking connections: until every worker can be dealt
        // one, clients wait in the kernel's accept queue.
        if (!loop.add(listener.get(), EPOLLIN, [&](uint32_t) { relays.accept_all(listener.get()); }))
            die_errno("epoll_ctl(listener)");
        print_ready("lab12", opts.server.host, port);
        if (opts.relay.print_nginx_conf) relays.print_nginx_conf(opts.server.host, port + 1);  // after the ready line
    });
    // lab08's restart: a worker gone for whatever cause is replaced in its slot (on a new port).
    cluster.on_exit([&](const Worker& w, int) {
        relays.upstreams.erase(w.pid);
        if (cluster.shutting_down()) return;
        cluster.fork_worker_retrying(w.slot, kForkRetryMs, [old = w.pid](Worker& fresh) {
            log_event("restart worker=%d replacement=%d", old, fresh.pid);
        });
    });

    // Before the first fork: a SIGINT/SIGTERM from now on, even in the middle of start-up, is a
    // clean shutdown (exit 0, every worker reaped) instead of the default death by the signal.
    // The public port closes first; relays in flight run until their workers have drained.
    stop_cluster_on_signals(loop, cluster, opts.shutdown_timeout_ms, {}, [&] {
        if (ready) loop.remove(listener.get());
        listener.reset();
    });

    // A worker that cannot be started (out of fds or processes) is tried again a second later.
    for (size_t i = 0; i < wanted; ++i) cluster.fork_worker_retrying(static_cast<int>(i), kForkRetryMs, [](Worker&) {});
    loop.run();
    log_event("shutdown complete code=0");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    bool worker = is_worker_process();
    init_process(worker ? "worker" : "master");
    Options opts;
    Cli cli("lab12", "Relaying proxy: workers listen on ports of their own; the master accepts on the public port "
                     "and relays each connection to the next worker in turn.");
    add_server_options(cli, opts.server, /*with_workers=*/true);
    add_connection_options(cli, opts.limits);
    add_relay_options(cli, opts.relay);
    cli.integer("shutdown-timeout", &opts.shutdown_timeout_ms, 1, 3600000,
                "ms the master waits for workers to drain on SIGINT/SIGTERM before SIGKILL");
    cli.parse(argc, argv);
    return worker ? run_worker(opts) : run_master(opts, argv);
}
