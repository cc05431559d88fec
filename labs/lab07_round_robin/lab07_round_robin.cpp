// lab07_round_robin — the master alone accepts, and hands each connection to worker i = (i+1) mod n over the channel, skipping a worker that has not confirmed its last one (Node's free list).
// base: lab05
// Observe: 1,000 connections over 4 workers give 250 each (./loadgen --json: per_pid), against lab06's skew; kill -9 or kill -STOP a worker: it is skipped, and what it held is dealt again.
// Run: make lab07 && ./lab07 --workers 4, then: ./loadgen --connections 8 --requests 1000 http://127.0.0.1:8000/
// Mirrors the material's Round-Robin (轮询调度) and Node's cluster.SCHED_RR: the master distributes, workers never see the listener.
// stage: round-robin, the master accepts and deals connections out to the workers in turn

#include "cli.hpp"
#include "cluster.hpp"
#include "event_loop.hpp"
#include "http_server.hpp"
#include "log.hpp"
#include "master_worker.hpp"
#include "net.hpp"
#include "process.hpp"
#include "server_handle.hpp"

#include <string>

namespace {

struct Options {
    ServerOptions server;
    ConnectionLimits limits;
};

// ------------------------------------------------------------------------------------- worker

// A Node worker under SCHED_RR: it never holds the listening socket; connections come to it,
// each as {"cmd":"connection","id":K,...} with its fd. answer_connection() (common/server_handle.cpp)
// adopts it and answers {"act":"accepted","id":K} in the same turn of the loop, before it reads a
// byte of it, or refuses it: its fd was lost at our fd limit, or it came too late (the master
// may have taken it back by then). Until the answer the master keeps its own copy.
int run_worker(const Options& opts) {
    WorkerRuntime rt(opts.limits);
    BurstLog lost(rt.loop, "error channel: connection fds lost at our fd limit (EMFILE), handed back to the master:");
    rt.master.on_message([&](Message& m) {
        std::string cmd = m.body.get_string("cmd");
        if (cmd == "connection") rt.master.send(answer_connection(m, rt.http, lost));
        if (cmd == "server") {
            // Ready to be dealt connections of this port (it has no socket of its own to show).
            JsonObject listening = msg("act", "listening");
            listening.set("port", m.body.get_int("port"));
            rt.master.send(listening);
        }
    });
    return rt.run();
}

// ------------------------------------------------------------------------------------- master

// The listening socket is the master's alone. The decisions (whose turn, what waits, what is
// taken back) are RoundRobinHandle's (common/round_robin_handle.cpp, Node's RoundRobinHandle);
// ServerHandle in dealt mode (common/server_handle.cpp, which lab15's cluster module uses too)
// does what it decides: it accepts, sends each handoff with its fd, reads the answers, and keeps
// one timer.
int run_master(const Options& opts, char** argv) {
    EventLoop loop;
    Cluster cluster(loop, argv);
    ListenOptions lo;
    lo.host = opts.server.host;
    lo.port = opts.server.port;
    lo.nonblocking = true;
    Fd listener = listen_or_die(lo);
    int port = local_port(listener.get());
    ServerHandle dealer(loop, cluster, /*key=*/0, std::move(listener), /*deal=*/true, /*accept_now=*/false);

    size_t wanted = static_cast<size_t>(opts.server.workers);
    bool ready = false;
    cluster.on_message([&](Worker& w, Message& m) {
        std::string act = m.body.get_string("act");
        if (act == "accepted" || act == "refused") return dealer.answer(w, m.body);
        if (ready || cluster.listening_count() < wanted) return;
        ready = true;
        // Only now does the master start taking connections: until every worker can be dealt
        // one, clients wait in the kernel's accept queue.
        dealer.start_accepting();
        print_ready("lab07", opts.server.host, port);
    });
    int exit_code = 0;
    cluster.on_exit([&](const Worker& w, int) {
        dealer.remove(w.pid);  // what it had not confirmed is dealt again
        if (cluster.size() > 0 || cluster.shutting_down()) return;
        log_event("no workers left: exiting");  // no restart yet (lab08)
        exit_code = 1;
        loop.stop();
    });

    // Before the first fork: a SIGINT/SIGTERM from now on, even in the middle of start-up, is a
    // clean shutdown (exit 0, every worker reaped) instead of the default death by the signal.
    stop_cluster_on_signals(loop, cluster);

    // A worker that cannot be started (out of fds or processes) is tried again a second later.
    // The dealer tells it the port (no fd: the listening socket never leaves the master) and
    // puts it in the ring; nothing is dealt before every worker says it listens.
    for (size_t i = 0; i < wanted; ++i)
        cluster.fork_worker_retrying(static_cast<int>(i), kForkRetryMs, [&](Worker& w) { dealer.serve(w, opts.server.host); });
    loop.run();
    return exit_code;
}

}  // namespace

int main(int argc, char** argv) {
    bool worker = is_worker_process();
    init_process(worker ? "worker" : "master");
    Options opts;
    Cli cli("lab07", "round-robin: the master accepts every connection and deals it to worker i = (i+1) mod n.");
    add_server_options(cli, opts.server, /*with_workers=*/true);
    add_connection_options(cli, opts.limits);
    cli.parse(argc, argv);
    return worker ? run_worker(opts) : run_master(opts, argv);
}
