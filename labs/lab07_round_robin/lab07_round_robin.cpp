// lab07_round_robin — the master alone accepts, and hands each connection to worker i = (i+1) mod n over the channel.
// Observe: 1,000 connections over 4 workers give 250 each (./loadgen --json: per_pid), against lab06's skew; kill -9 a worker: it is skipped.
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

#include <sys/epoll.h>
#include <unordered_map>
#include <vector>

namespace {

struct Options {
    ServerOptions server;
    ConnectionLimits limits;
};

// ------------------------------------------------------------------------------------- worker

// A connection arrives with {"cmd":"connection","id":K}; the worker serves it and says so with
// {"act":"accepted","id":K}, in the same turn of its loop, before it reads a byte of it. Until
// then the master keeps its own copy (Node's round_robin_handle does the same).
void serve_connection(WorkerRuntime& rt, Message& m) {
    if (!m.fd) {
        log_event("error message cmd=connection carried no socket");
        return;
    }
    rt.http.adopt(std::move(m.fd));
    JsonObject ack = msg("act", "accepted");
    ack.set("id", m.body.get_int("id"));
    rt.master.send(ack);
}

// A Node worker under SCHED_RR: it never holds the listening socket; connections come to it.
int run_worker(const Options& opts) {
    WorkerRuntime rt(opts.limits);
    rt.master.on_message([&](Message& m) {
        std::string cmd = m.body.get_string("cmd");
        if (cmd == "connection") serve_connection(rt, m);
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

// A connection the master has sent but a worker has not yet confirmed. The master's copy of the
// fd stays open until then: if that worker dies first, the connection goes to the next one.
struct Handoff {
    pid_t worker;
    Fd client;
};

struct Dealer {
    explicit Dealer(Cluster& c) : cluster(c) {}
    Cluster& cluster;
    size_t next = 0;  // i: where the next round starts looking
    std::uint64_t last_id = 0;
    std::unordered_map<std::uint64_t, Handoff> in_flight;
};

// BEGIN SOLUTION: send `client` to worker i = (i+1) mod n; a worker that is gone or refuses is skipped for the next
bool hand_off(Dealer& d, Fd client) {
    std::vector<Worker*> workers = d.cluster.workers();
    for (size_t tried = 0; tried < workers.size(); ++tried) {
        Worker* w = workers[d.next % workers.size()];
        d.next = (d.next + 1) % workers.size();
        // No channel: its end of file was read, it is dead even if SIGCHLD has not come yet.
        if (!w->channel || !w->listening) continue;
        JsonObject m = msg("cmd", "connection");
        m.set("id", static_cast<std::int64_t>(d.last_id + 1));
        if (!d.cluster.send(*w, m, client.get())) {
            log_event("handoff failed worker=%d: trying the next one", w->pid);
            continue;
        }
        d.in_flight.emplace(++d.last_id, Handoff{w->pid, std::move(client)});
        return true;
    }
    return false;
}
// STUB:
// bool hand_off(Dealer& d, Fd client) {
//     std::vector<Worker*> workers = d.cluster.workers();  // everything to the first worker
//     if (workers.empty() || !workers[0]->channel) return false;
//     JsonObject m = msg("cmd", "connection");
//     m.set("id", static_cast<std::int64_t>(d.last_id + 1));
//     if (!d.cluster.send(*workers[0], m, client.get())) return false;
//     d.in_flight.emplace(++d.last_id, Handoff{workers[0]->pid, std::move(client)});
//     return true;
// }
// END SOLUTION

void deal(Dealer& d, Fd client) {
    // A connection nobody could take was closed when hand_off returned (its Fd went with it).
    if (!hand_off(d, std::move(client))) log_event("error no worker left to take a connection: closed");
}

// The listening socket is the master's alone: accept everything waiting, deal it out.
void accept_and_deal(Dealer& d, int listen_fd) {
    for (int i = 0; i < 128; ++i) {  // bounded, so acks and signals get their turn under a flood
        Accepted a = accept_client(listen_fd, /*nonblocking=*/true);
        if (a.status == AcceptStatus::none_pending) return;
        if (a.status == AcceptStatus::client) deal(d, std::move(a.fd));
    }
}

// The worker has the connection: the master's copy can go (Node: `if (reply.accepted) handle.close()`).
void on_accepted(Dealer& d, const Worker& w, std::uint64_t id) {
    auto it = d.in_flight.find(id);
    if (it == d.in_flight.end() || it->second.worker != w.pid) {
        log_event("error message act=accepted id=%llu from worker=%d matches no handoff",
                  static_cast<unsigned long long>(id), w.pid);
        return;
    }
    d.in_flight.erase(it);  // closes the master's copy
}

// A worker died with handoffs it never confirmed: they were still unread in its channel, so
// the client has sent its request to nobody yet. Deal them again.
void redeal(Dealer& d, pid_t dead) {
    std::vector<Fd> orphans;
    for (auto it = d.in_flight.begin(); it != d.in_flight.end();) {
        if (it->second.worker != dead) {
            ++it;
            continue;
        }
        orphans.push_back(std::move(it->second.client));
        it = d.in_flight.erase(it);
    }
    if (!orphans.empty()) log_event("redeal connections=%zu from worker=%d", orphans.size(), dead);
    for (Fd& client : orphans) deal(d, std::move(client));
}

int run_master(const Options& opts, char** argv) {
    EventLoop loop;
    Cluster cluster(loop, argv);
    ListenOptions lo;
    lo.host = opts.server.host;
    lo.port = opts.server.port;
    lo.nonblocking = true;
    Fd listener = listen_or_die(lo);
    int port = local_port(listener.get());
    Dealer dealer(cluster);

    size_t wanted = static_cast<size_t>(opts.server.workers);
    bool ready = false;
    cluster.on_message([&](Worker& w, Message& m) {
        if (m.body.get_string("act") == "accepted") return on_accepted(dealer, w, m.body.get_int("id"));
        if (ready || cluster.listening_count() < wanted) return;
        ready = true;
        // Only now does the master start taking connections: until every worker can be dealt
        // one, clients wait in the kernel's accept queue.
        int fd = listener.get();
        if (!loop.add(fd, EPOLLIN, [&dealer, fd](uint32_t) { accept_and_deal(dealer, fd); }))
            die_errno("epoll_ctl(listener)");
        print_ready("lab07", opts.server.host, port);
    });
    int exit_code = 0;
    cluster.on_exit([&](const Worker& w, int) {
        redeal(dealer, w.pid);
        if (cluster.size() > 0 || cluster.shutting_down()) return;
        log_event("no workers left: exiting");  // no restart yet (lab08)
        exit_code = 1;
        loop.stop();
    });

    // Before the first fork: a SIGINT/SIGTERM from now on, even in the middle of start-up, is a
    // clean shutdown (exit 0, every worker reaped) instead of the default death by the signal.
    stop_cluster_on_signals(loop, cluster);

    for (size_t i = 0; i < wanted; ++i) {
        Worker* w = cluster.fork_worker(static_cast<int>(i));
        if (!w) die("could not start worker %zu", i);
        JsonObject server = msg("cmd", "server");
        server.set("port", port);
        cluster.send(*w, server);  // no fd this time: the listening socket never leaves the master
    }
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
