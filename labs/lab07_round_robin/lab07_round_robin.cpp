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
#include "round_robin_handle.hpp"

#include <algorithm>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <vector>

namespace {

struct Options {
    ServerOptions server;
    ConnectionLimits limits;
};

// ------------------------------------------------------------------------------------- worker

// A connection arrives with {"cmd":"connection","id":K,"sent_ms":T,"late_ms":L}; the worker
// serves it and says so with {"act":"accepted","id":K}, in the same turn of its loop, before it
// reads a byte of it. Until then the master keeps its own copy (Node's round_robin_handle does
// the same). It refuses ({"act":"refused"}) one it cannot serve: its fd was lost because this
// worker is at its fd limit, or it comes more than L ms late (the master takes back what goes
// unconfirmed for twice that, so by then it may be someone else's). The master then deals it to
// another worker.
void serve_connection(WorkerRuntime& rt, BurstLog& lost, Message& m) {
    std::int64_t id = m.body.get_int("id");
    JsonObject reply = msg("act", "accepted");
    if (m.fd_lost) {
        lost.add();  // one log line per burst: at the fd limit they come by the hundred
        reply = msg("act", "refused");
        reply.set("reason", "fd-lost");
    } else if (!m.fd) {
        log_event("error message cmd=connection carried no socket");
        reply = msg("act", "refused");
        reply.set("reason", "no-fd");
    } else if (monotonic_ms() - m.body.get_int("sent_ms") > m.body.get_int("late_ms")) {
        reply = msg("act", "refused");  // our copy closes here, unread
        reply.set("reason", "late");
    } else {
        rt.http.adopt(std::move(m.fd));
    }
    reply.set("id", id);
    rt.master.send(reply);
}

// A Node worker under SCHED_RR: it never holds the listening socket; connections come to it.
int run_worker(const Options& opts) {
    WorkerRuntime rt(opts.limits);
    BurstLog lost(rt.loop, "error channel: connection fds lost at our fd limit (EMFILE), handed back to the master:");
    rt.master.on_message([&](Message& m) {
        std::string cmd = m.body.get_string("cmd");
        if (cmd == "connection") serve_connection(rt, lost, m);
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

// The decisions (whose turn, what waits, what is taken back) are RoundRobinHandle's
// (common/round_robin_handle.cpp, Node's RoundRobinHandle); the master does what it decides:
// it accepts, sends each handoff with its fd, reads the answers, and keeps one timer.
struct Dealer {
    Dealer(EventLoop& l, Cluster& c)
        : loop(l), cluster(c), full(l, "queue full: no worker is free, new clients wait in the kernel's backlog:") {}
    EventLoop& loop;
    Cluster& cluster;
    RoundRobinHandle rr;
    int listen_fd = -1;
    bool accepting = true;
    EventLoop::TimerId timer = 0;  // set for rr.next_deadline()
    long long timer_at = 0;
    BurstLog full;  // one line per burst of "the waiting room is full"
};

// How many accepted connections may wait in the master: a quarter of its descriptor limit (at
// most 256), so that at a low limit (prlimit --nofile=64) the master itself never runs out.
size_t waiting_room() {
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY) return RoundRobinHandle::waiting_room(-1);
    return RoundRobinHandle::waiting_room(static_cast<long long>(rl.rlim_cur));
}

void send_handoffs(Dealer& d, std::vector<RoundRobinHandle::Handoff> work);

// A worker died (or its channel did) with handoffs it never confirmed: they were still unread in
// its channel, so the client has sent its request to nobody yet. They are dealt again, first.
std::vector<RoundRobinHandle::Handoff> redeal(Dealer& d, pid_t dead) {
    size_t count = 0;
    auto again = d.rr.remove(dead, monotonic_ms(), &count);
    if (count) log_event("redeal connections=%zu from worker=%d", count, dead);
    return again;
}

// Stop or resume accepting as the waiting room fills and empties: when it is full, newcomers
// wait in the kernel's accept queue (the listen backlog), not in our memory and descriptors.
void watch_listener(Dealer& d) {
    bool room = !d.rr.full();
    if (room == d.accepting) return;
    d.accepting = room;
    d.loop.modify(d.listen_fd, room ? uint32_t{EPOLLIN} : 0u);
    if (!room) d.full.add();
}

// Something is due later (the worker in turn would count as stuck, a rest ends, a handoff is to
// be taken back): look again then. One timer for all of them, not one per connection.
void keep_watching(Dealer& d) {
    long long due = d.rr.next_deadline();
    if (due < 0 || (d.timer && d.timer_at <= due)) return;
    if (d.timer) d.loop.cancel_timer(d.timer);
    d.timer_at = due;
    d.timer = d.loop.add_timer(std::max(1LL, due - monotonic_ms()), [&d] {
        d.timer = 0;
        // The master itself may have been slow to read: an answer already in a channel is news,
        // not silence. Read those channels first, or we would deal again what a worker serves.
        for (pid_t pid : d.rr.overdue(monotonic_ms()))
            if (Worker* w = d.cluster.find_pid(pid)) d.cluster.read_messages(*w);
        std::vector<RoundRobinHandle::TakenBack> taken;
        auto work = d.rr.poll(monotonic_ms(), &taken);
        for (const auto& t : taken)
            log_event("take-back worker=%d id=%llu: no answer in %lld ms, dealt again", t.worker,
                      static_cast<unsigned long long>(t.id), t.held_ms);
        send_handoffs(d, std::move(work));
    });
}

// Sends each handoff: {"cmd":"connection","id":K,"sent_ms":T,"late_ms":L} with the fd, which
// the handle keeps until the worker answers. A send that fails means that worker is gone under
// us (EPIPE, its end of file on the way): what it held is dealt again.
void send_handoffs(Dealer& d, std::vector<RoundRobinHandle::Handoff> work) {
    for (size_t i = 0; i < work.size(); ++i) {
        RoundRobinHandle::Handoff h = work[i];
        JsonObject m = msg("cmd", "connection");
        m.set("id", static_cast<std::int64_t>(h.id));
        m.set("sent_ms", static_cast<std::int64_t>(monotonic_ms()));
        m.set("late_ms", static_cast<std::int64_t>(d.rr.late_ms()));
        Worker* w = d.cluster.find_pid(h.worker);
        if (w && d.cluster.send(*w, m, h.fd)) continue;
        log_event("handoff failed worker=%d: trying the next one", h.worker);
        auto again = redeal(d, h.worker);
        work.insert(work.end(), again.begin(), again.end());
    }
    keep_watching(d);
    watch_listener(d);
}

// The listening socket is the master's alone: accept what is waiting, deal it out.
void accept_and_deal(Dealer& d) {
    d.rr.set_max_waiting(waiting_room());  // the limit may have changed under us (prlimit --pid)
    for (int i = 0; i < 128 && !d.rr.full(); ++i) {  // bounded: acks get their turn
        Accepted a = accept_client(d.listen_fd, /*nonblocking=*/true);
        if (a.status == AcceptStatus::none_pending) break;
        if (a.status != AcceptStatus::client) continue;
        send_handoffs(d, d.rr.distribute(std::move(a.fd), monotonic_ms()));
    }
    watch_listener(d);
}

// The worker's answer. accepted: it has the connection, the master's copy can go (Node: `if
// (reply.accepted) handle.close()`). refused: the connection goes back to the front of the queue
// (Node: `else this.distribute(0, handle)`). Either way the worker is free again, unless it
// refused for lack of descriptors: then it rests a moment.
void on_reply(Dealer& d, const Worker& w, const JsonObject& reply) {
    std::uint64_t id = static_cast<std::uint64_t>(reply.get_int("id"));
    bool known = false;
    std::vector<RoundRobinHandle::Handoff> work;
    if (reply.get_string("act") == "accepted") {
        work = d.rr.acknowledge(w.pid, id, monotonic_ms(), &known);  // the master's copy closes here
    } else {
        auto why = reply.get_string("reason") == "fd-lost" ? RoundRobinHandle::Refusal::fd_lost : RoundRobinHandle::Refusal::late;
        work = d.rr.refuse(w.pid, id, monotonic_ms(), why, &known);
    }
    if (!known)
        log_event("error message act=%s id=%llu from worker=%d matches no handoff", reply.get_string("act").c_str(),
                  static_cast<unsigned long long>(id), w.pid);
    send_handoffs(d, std::move(work));
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
    Dealer dealer(loop, cluster);
    dealer.listen_fd = listener.get();

    size_t wanted = static_cast<size_t>(opts.server.workers);
    bool ready = false;
    cluster.on_message([&](Worker& w, Message& m) {
        std::string act = m.body.get_string("act");
        if (act == "accepted" || act == "refused") return on_reply(dealer, w, m.body);
        if (act == "listening") send_handoffs(dealer, dealer.rr.add(w.pid, monotonic_ms()));  // one more in the ring
        if (ready || cluster.listening_count() < wanted) return;
        ready = true;
        // Only now does the master start taking connections: until every worker can be dealt
        // one, clients wait in the kernel's accept queue.
        if (!loop.add(dealer.listen_fd, EPOLLIN, [&dealer](uint32_t) { accept_and_deal(dealer); }))
            die_errno("epoll_ctl(listener)");
        print_ready("lab07", opts.server.host, port);
    });
    int exit_code = 0;
    cluster.on_exit([&](const Worker& w, int) {
        send_handoffs(dealer, redeal(dealer, w.pid));
        if (cluster.size() > 0 || cluster.shutting_down()) return;
        log_event("no workers left: exiting");  // no restart yet (lab08)
        exit_code = 1;
        loop.stop();
    });

    // Before the first fork: a SIGINT/SIGTERM from now on, even in the middle of start-up, is a
    // clean shutdown (exit 0, every worker reaped) instead of the default death by the signal.
    stop_cluster_on_signals(loop, cluster);

    // A worker that cannot be started (out of fds or processes) is tried again a second later.
    for (size_t i = 0; i < wanted; ++i) {
        cluster.fork_worker_retrying(static_cast<int>(i), kForkRetryMs, [&](Worker& w) {
            JsonObject server = msg("cmd", "server");
            server.set("port", port);
            cluster.send(w, server);  // no fd this time: the listening socket never leaves the master
        });
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
