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

#include <algorithm>
#include <deque>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unordered_map>
#include <vector>

namespace {

struct Options {
    ServerOptions server;
    ConnectionLimits limits;
};

// ------------------------------------------------------------------------------------- worker

// A handoff older than this when it is read is refused: the master takes back a connection a
// worker has not confirmed within kTakeBackMs (that worker was stopped or stuck), so by then it
// may be someone else's. Half of it leaves a wide margin between "late" and "taken back".
constexpr long kTakeBackMs = 1000;
constexpr long kLateMs = kTakeBackMs / 2;

// A connection arrives with {"cmd":"connection","id":K}; the worker serves it and says so with
// {"act":"accepted","id":K}, in the same turn of its loop, before it reads a byte of it. Until
// then the master keeps its own copy (Node's round_robin_handle does the same). It refuses
// ({"act":"refused"}) one it cannot serve: its fd was lost because this worker is at its fd limit,
// or it comes too late. The master then deals it to another worker.
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
    } else if (monotonic_ms() - m.body.get_int("sent_ms") > kLateMs) {
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

// A worker that refused a connection because it is at its fd limit gets no other for this long.
constexpr long kRestMs = 100;
// A handoff unconfirmed for this long means the worker is not reading its channel: skip it.
constexpr long kStuckMs = 200;

// A connection the master has sent but a worker has not yet confirmed. The master's copy of the
// fd stays open until then: if that worker dies, refuses it or does not answer in time, the
// connection goes to another one.
struct Handoff {
    pid_t worker;
    Fd client;  // invalid once taken back: the worker is still waited for, the client is not
    long long sent_ms;
};

// How many accepted connections may wait in the master: a quarter of its descriptor limit (at
// most 256), so that at a low limit (prlimit --nofile=64) the master itself never runs out.
size_t waiting_room() {
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY) return 256;
    return std::clamp<size_t>(static_cast<size_t>(rl.rlim_cur) / 4, 1, 256);
}

// Node's RoundRobinHandle: the workers, which of them are free, and the connections waiting for one.
struct Dealer {
    Dealer(EventLoop& l, Cluster& c)
        : loop(l), cluster(c), full(l, "queue full: no worker is free, new clients wait in the kernel's backlog:") {}
    EventLoop& loop;
    Cluster& cluster;
    int listen_fd = -1;
    size_t next = 0;  // i: where the next round starts looking
    std::uint64_t last_id = 0;
    std::unordered_map<std::uint64_t, Handoff> in_flight;  // by id
    std::unordered_map<pid_t, long long> resting;          // worker → until (monotonic ms)
    std::deque<Fd> waiting;  // accepted, no free worker yet (oldest first)
    size_t max_waiting = waiting_room();  // the waiting room's size
    bool accepting = true;
    bool tick_pending = false;  // keep_watching's timer is set
    BurstLog full;  // one line per burst of "the waiting room is full"
};

// What the dealer does with the worker whose turn it is:
//   take  it is free: nothing dealt to it is unconfirmed (Node's free list);
//   wait  its last handoff is unconfirmed but recent: its answer is on the way (a healthy worker
//         answers within a millisecond), so the connection waits for it and the turns stay exact;
//   skip  it is gone or not listening yet, its last handoff has gone unconfirmed for kStuckMs
//         (stopped, stuck in a long computation), or it is resting at its fd limit.
enum class Turn { take, wait, skip };

[[maybe_unused]] Turn turn_of(const Dealer& d, const Worker& w) {  // (unused by the exercise stub)
    // No channel: its end of file was read, it is dead even if SIGCHLD has not come yet.
    if (!w.channel || !w.listening()) return Turn::skip;
    auto rest = d.resting.find(w.pid);
    if (rest != d.resting.end() && rest->second > monotonic_ms()) return Turn::skip;
    for (const auto& [id, h] : d.in_flight)
        if (h.worker == w.pid) return monotonic_ms() - h.sent_ms < kStuckMs ? Turn::wait : Turn::skip;
    return Turn::take;
}

// BEGIN SOLUTION: deal in turn, i = (i+1) mod n: take a free worker, wait for one whose answer is on the way, skip one that is gone or stuck
Worker* next_free_worker(Dealer& d) {
    std::vector<Worker*> workers = d.cluster.workers();
    for (size_t tried = 0; tried < workers.size(); ++tried) {
        Worker* w = workers[d.next % workers.size()];
        Turn turn = turn_of(d, *w);
        if (turn == Turn::wait) return nullptr;  // its turn, soon: the connection waits in the master
        d.next = (d.next + 1) % workers.size();
        if (turn == Turn::take) return w;
    }
    return nullptr;  // nobody can take it: the connection waits in the master
}
// STUB:
// Worker* next_free_worker(Dealer& d) {
//     std::vector<Worker*> workers = d.cluster.workers();  // always the first worker
//     return workers.empty() ? nullptr : workers[0];
// }
// END SOLUTION

void take_back_overdue(Dealer& d);
void keep_watching(Dealer& d);

// Sends `client` to `w`: {"cmd":"connection","id":K,"sent_ms":T} with the fd. On success the
// master keeps its copy in in_flight until the worker answers; on failure `client` is untouched.
bool hand_off(Dealer& d, Worker& w, Fd& client) {
    JsonObject m = msg("cmd", "connection");
    m.set("id", static_cast<std::int64_t>(d.last_id + 1));
    m.set("sent_ms", static_cast<std::int64_t>(monotonic_ms()));
    if (!d.cluster.send(w, m, client.get())) return false;
    std::uint64_t id = ++d.last_id;
    d.in_flight.emplace(id, Handoff{w.pid, std::move(client), monotonic_ms()});
    return true;
}

// Stop or resume accepting as the waiting room fills and empties: when it is full, newcomers
// wait in the kernel's accept queue (the listen backlog), not in our memory and descriptors.
void watch_listener(Dealer& d) {
    bool room = d.waiting.size() < d.max_waiting;
    if (room == d.accepting) return;
    d.accepting = room;
    d.loop.modify(d.listen_fd, room ? uint32_t{EPOLLIN} : 0u);
    if (!room) d.full.add();
}

// Deals the waiting connections, oldest first, to free workers until one or the other runs out.
void deal_waiting(Dealer& d) {
    size_t failures = 0;
    while (!d.waiting.empty() && failures <= d.cluster.size()) {
        Worker* w = next_free_worker(d);
        if (!w) break;
        if (hand_off(d, *w, d.waiting.front())) {
            d.waiting.pop_front();
        } else {
            ++failures;  // gone under us (EPIPE): its end of file is on the way; try another
            log_event("handoff failed worker=%d: trying the next one", w->pid);
        }
    }
    keep_watching(d);
    watch_listener(d);
}

// While connections wait or handoffs are unconfirmed, look again every kStuckMs even if nothing
// else happens: the worker we wait for may count as stuck by then, and a handoff unconfirmed for
// kTakeBackMs is taken back. One timer for all of them, not one per connection.
void keep_watching(Dealer& d) {
    if (d.tick_pending || (d.waiting.empty() && d.in_flight.empty())) return;
    d.tick_pending = true;
    d.loop.add_timer(kStuckMs, [&d] {
        d.tick_pending = false;
        take_back_overdue(d);
        deal_waiting(d);
    });
}

// The listening socket is the master's alone: accept what is waiting, deal it out.
void accept_and_deal(Dealer& d) {
    d.max_waiting = waiting_room();  // the limit may have changed under us (prlimit --pid)
    for (int i = 0; i < 128 && d.waiting.size() < d.max_waiting; ++i) {  // bounded: acks get their turn
        Accepted a = accept_client(d.listen_fd, /*nonblocking=*/true);
        if (a.status == AcceptStatus::none_pending) break;
        if (a.status != AcceptStatus::client) continue;
        d.waiting.push_back(std::move(a.fd));
        deal_waiting(d);
    }
    watch_listener(d);
}

// A worker has not answered a handoff in kTakeBackMs (stopped, stuck in a computation): deal
// the connection to someone else. The worker stays busy until it answers; if it ever reads the
// message, it finds it late and refuses it.
void take_back_overdue(Dealer& d) {
    auto overdue = [&d](const Handoff& h) { return h.client && monotonic_ms() - h.sent_ms >= kTakeBackMs; };
    // The master itself may have been slow to read: an answer already in a channel is news, not
    // silence. Read those channels first, or we would deal again what a worker already serves.
    for (Worker* w : d.cluster.workers())
        for (const auto& [id, h] : d.in_flight)
            if (h.worker == w->pid && overdue(h)) {
                d.cluster.read_messages(*w);  // may answer (and erase) this handoff
                break;
            }
    for (auto& [id, h] : d.in_flight) {
        if (!overdue(h)) continue;
        log_event("take-back worker=%d id=%llu: no answer in %lld ms, dealt again", h.worker,
                  static_cast<unsigned long long>(id), monotonic_ms() - h.sent_ms);
        d.waiting.push_front(std::move(h.client));
    }
}

// The worker's answer. accepted: it has the connection, the master's copy can go (Node: `if
// (reply.accepted) handle.close()`). refused: the connection goes back to the front of the queue
// (Node: `else this.distribute(0, handle)`). Either way the worker is free again, unless it
// refused for lack of descriptors: then it rests a moment.
void on_reply(Dealer& d, const Worker& w, const JsonObject& reply) {
    std::uint64_t id = static_cast<std::uint64_t>(reply.get_int("id"));
    auto it = d.in_flight.find(id);
    if (it == d.in_flight.end() || it->second.worker != w.pid) {
        log_event("error message act=%s id=%llu from worker=%d matches no handoff", reply.get_string("act").c_str(),
                  static_cast<unsigned long long>(id), w.pid);
        return;
    }
    Fd client = std::move(it->second.client);
    d.in_flight.erase(it);
    bool accepted = reply.get_string("act") == "accepted";
    if (!accepted && client) d.waiting.push_front(std::move(client));
    if (accepted && !client)
        log_event("error worker=%d accepted id=%llu after it was taken back", w.pid, static_cast<unsigned long long>(id));
    if (reply.get_string("reason") == "fd-lost") {
        d.resting[w.pid] = monotonic_ms() + kRestMs;
        d.loop.add_timer(kRestMs, [&d] { deal_waiting(d); });
    }
    deal_waiting(d);  // `client`, if accepted, closes here: the master's copy
}

// A worker died with handoffs it never confirmed: they were still unread in its channel, so
// the client has sent its request to nobody yet. Deal them again, first.
void redeal(Dealer& d, pid_t dead) {
    size_t count = 0;
    for (auto it = d.in_flight.begin(); it != d.in_flight.end();) {
        if (it->second.worker != dead) {
            ++it;
            continue;
        }
        if (it->second.client) {
            d.waiting.push_front(std::move(it->second.client));
            ++count;
        }
        it = d.in_flight.erase(it);
    }
    d.resting.erase(dead);
    if (count) log_event("redeal connections=%zu from worker=%d", count, dead);
    deal_waiting(d);
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
        if (act == "listening") deal_waiting(dealer);  // one more free worker
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
        redeal(dealer, w.pid);
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
