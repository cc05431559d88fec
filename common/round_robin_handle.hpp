// round_robin_handle.hpp — who gets the next connection under round-robin (cluster.SCHED_RR):
// lab07's dealer, which lab15's cluster module drives too.
//
// Node's primary keeps one RoundRobinHandle per listening address: it accepts, and hands each
// connection to a worker over the channel; the worker confirms, and only then is it dealt
// another. This class is that bookkeeping and nothing else (no sockets are read or written
// here, no clock is read), so it is unit-tested without processes:
// harness/unit/test_round_robin_handle.cpp. common/server_handle.cpp (lab07's master and the
// cluster module's; lab07's note walks through both files) sends what it decides and feeds it
// the workers' answers.
//
// The rules:
//   - Workers are dealt strictly in turn: connection k goes to worker k mod n, and a worker
//     holds at most one connection it has not confirmed yet (Node's free list).
//   - The worker whose turn it is may still owe a confirmation: then the connections wait for
//     it, briefly. A healthy worker confirms within a millisecond (in the same turn of its loop),
//     so healthy workers split exactly: 1,000 connections over 4 workers are 250 each.
//   - A worker that has owed its confirmation for longer than `stuck_ms` is stuck (SIGSTOP, a
//     long /compute) and loses its turns until it answers: it does not collect 1/n of the
//     connections, which would wait on it. When every worker is stuck, connections wait here, in
//     order, up to `max_waiting`, for the first worker that answers. Past the bound a
//     connection is refused (closed); a caller that would rather leave newcomers in the kernel's
//     accept queue stops accepting while full() (lab07 does).
//   - The connection a stuck worker was sent is taken back after `take_back_ms` and dealt to
//     someone else: its client waits about that long, not until the worker runs again. The
//     worker stays busy until it answers, and when it does read the message, it must refuse it
//     (it is late: the sender stamps the time, late_ms()) so that two workers never serve one
//     client.
//   - A worker that refuses a connection because its descriptor was lost (it is at its fd
//     limit) rests for kRestMs: it is skipped meanwhile, instead of being dealt the next
//     connection it cannot receive either.
//   - A worker that is leaving (worker.disconnect()) is dealt nothing more, but what it was
//     sent is still its own: it will confirm and serve it. A worker that died is dealt nothing
//     more either, and what it had not confirmed (still unread in its channel) goes back to the
//     head of the queue, for the next free worker.
//
// Ownership: the handle owns every connection it holds (waiting or unconfirmed) and closes a
// connection's fd when its worker confirms (the worker has its own copy by then).
#pragma once

#include "fd.hpp"

#include <cstddef>
#include <cstdint>
#include <deque>
#include <sys/types.h>
#include <unordered_map>
#include <vector>

class RoundRobinHandle {
public:
    // The parameters, one set for lab07 and the cluster module (they had drifted apart: 200 vs
    // 50 ms, 256 vs 1,024). 200 ms to count as stuck: a healthy worker answers within a
    // millisecond, but on a busy 2-core machine the scheduler can keep it off the CPU for tens
    // of milliseconds, and at 50 ms such a worker lost turns (lab07's tests and note promise
    // exactly 250 each for 1,000 connections over 4 workers). A stuck worker costs the queue
    // 200 ms once, well inside the 1 s take-back.
    static constexpr long long kStuckMs = 200;
    static constexpr long long kTakeBackMs = 1000;
    // A worker that lost a descriptor at its fd limit is dealt nothing for this long.
    static constexpr long long kRestMs = 100;
    // At most 256 connections wait: a quarter of the usual 1,024-descriptor limit, so the
    // primary (which holds every waiting one) keeps descriptors for its own work. 1,024 waiting
    // would exhaust that limit before the bound was ever reached.
    static constexpr std::size_t kMaxWaiting = 256;

    // How many connections may wait under a descriptor limit of `fd_limit` (-1: unlimited): a
    // quarter of it, between 1 and kMaxWaiting (prlimit --nofile=64: 16).
    static std::size_t waiting_room(long long fd_limit);

    // A connection to send now: {"cmd":"connection","id":id} with fd (borrowed: the handle keeps
    // it until acknowledge()).
    struct Handoff {
        pid_t worker;
        std::uint64_t id;
        int fd;
    };
    // A connection poll() took back from a stuck worker, for the caller's log line.
    struct TakenBack {
        pid_t worker;
        std::uint64_t id;
        long long held_ms;  // how long it went unconfirmed
    };
    enum class Refusal { late, fd_lost };

    explicit RoundRobinHandle(long long stuck_ms = kStuckMs, long long take_back_ms = kTakeBackMs,
                              std::size_t max_waiting = kMaxWaiting)
        : stuck_ms_(stuck_ms), take_back_ms_(take_back_ms), max_waiting_(max_waiting) {}

    // A worker must refuse a connection message older than this when it reads it: by the time
    // its answer could arrive, the connection may have been taken back.
    long long late_ms() const { return take_back_ms_ / 2; }
    // The bound may follow the descriptor limit, which can change under a running process
    // (prlimit --pid): connections already waiting past a smaller bound stay.
    void set_max_waiting(std::size_t n) { max_waiting_ = n; }
    bool full() const { return waiting_.size() >= max_waiting_; }

    // Every call takes the time now (monotonic ms): the class reads no clock, so tests need
    // no sleep.

    // A worker listens on this address (its listen() reached the primary): it joins the ring,
    // free, and takes the oldest waiting connection if there is one.
    std::vector<Handoff> add(pid_t worker, long long now_ms);
    // The worker is leaving: no more connections for it; those it was sent are still its own.
    void retire(pid_t worker);
    // The worker is gone: no more connections for it, and its unconfirmed ones go back to the
    // head of the queue, dealt again to whoever is free (`*redealt`: how many, for a log line).
    std::vector<Handoff> remove(pid_t worker, long long now_ms, std::size_t* redealt = nullptr);
    // A new connection: the handoff to send now, or none (it waits; or, past the bound, it is
    // closed and `refused` is set so the caller can log it).
    std::vector<Handoff> distribute(Fd client, long long now_ms, bool* refused = nullptr);
    // The worker confirmed connection `id`: the primary's copy is closed and the worker is free,
    // so the oldest waiting connection (if any) goes to it. False `*known` for an id that is not
    // that worker's (a bug worth a log line).
    std::vector<Handoff> acknowledge(pid_t worker, std::uint64_t id, long long now_ms, bool* known = nullptr);
    // The worker refused connection `id` (it came late, or its fd was lost: then it rests): the
    // worker is free, and the connection, unless it was taken back already, is dealt again first.
    std::vector<Handoff> refuse(pid_t worker, std::uint64_t id, long long now_ms, Refusal why = Refusal::late,
                                bool* known = nullptr);
    // The next time something is due (a worker in turn becomes stuck, a rest ends while
    // connections wait, a connection is to be taken back), or -1: the caller arms a timer and
    // calls poll() then.
    long long next_deadline() const;
    // The workers holding a connection that poll(now_ms) would take back: a caller that may have
    // been slow to read its channels reads theirs first (an answer already there is news, not
    // silence).
    std::vector<pid_t> overdue(long long now_ms) const;
    std::vector<Handoff> poll(long long now_ms, std::vector<TakenBack>* taken_back = nullptr);

    std::size_t workers() const { return ring_.size(); }
    std::size_t waiting() const { return waiting_.size(); }
    std::size_t unconfirmed() const { return in_flight_.size(); }
    bool busy(pid_t worker) const;

private:
    struct Slot {
        pid_t worker;
        bool busy = false;       // holds an unconfirmed handoff
        long long busy_since = 0;
        long long resting_until = 0;  // 0: not resting
    };
    struct InFlight {
        pid_t worker;
        Fd client;  // invalid once taken back: the worker still owes an answer, the client waits no more
        long long sent_ms;
    };
    // What the dealer does with the worker whose turn it is:
    //   take  it is free: nothing dealt to it is unconfirmed (Node's free list);
    //   wait  its last handoff is unconfirmed but recent: its answer is on the way, so the
    //         connection waits for it and the turns stay exact;
    //   skip  its last handoff has gone unconfirmed for stuck_ms (stopped, stuck in a long
    //         computation), or it is resting at its fd limit.
    enum class Turn { take, wait, skip };
    Turn turn_of(const Slot& s, long long now_ms) const;
    Slot* next_in_turn(long long now_ms);  // who gets the next connection now, or null: wait
    std::vector<Handoff> deal_waiting(long long now_ms);
    bool due_back(const InFlight& f, long long now_ms) const { return f.client && now_ms - f.sent_ms >= take_back_ms_; }

    std::vector<Handoff> settle(pid_t worker, std::uint64_t id, bool accepted, long long now_ms, bool* known);

    long long stuck_ms_;
    long long take_back_ms_;
    std::size_t max_waiting_;
    std::vector<Slot> ring_;
    std::size_t next_ = 0;   // i: where the next turn starts looking
    long long turn_due_ = -1;  // when the worker in turn, waited for, would count as stuck
    std::uint64_t last_id_ = 0;
    std::deque<Fd> waiting_;  // accepted, no free worker yet (oldest first): Node's `handles`
    std::unordered_map<std::uint64_t, InFlight> in_flight_;  // by id
};
