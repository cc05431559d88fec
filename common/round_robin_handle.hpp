// round_robin_handle.hpp — who gets the next connection under cluster.SCHED_RR (lab15's module).
//
// Node's primary keeps one RoundRobinHandle per listening address: it accepts, and hands each
// connection to a worker over the channel; the worker confirms, and only then is it dealt
// another. This class is that bookkeeping and nothing else (no sockets are read or written
// here), so it is unit-tested without processes: harness/unit/test_round_robin_handle.cpp.
//
// The rules:
//   - Workers are dealt strictly in turn: connection k goes to worker k mod n, as in lab07, and
//     a worker holds at most one connection it has not confirmed yet (Node's free list).
//   - The worker whose turn it is may still owe a confirmation: then the connections wait for
//     it, briefly. A healthy worker confirms within a millisecond (in the same turn of its loop),
//     so healthy workers split exactly: 1,000 connections over 4 workers are 250 each.
//   - A worker that has owed its confirmation for longer than `stuck_ms` is stuck (SIGSTOP, a
//     long /compute) and loses its turns until it answers: it does not collect 1/n of the
//     connections, which would wait on it. When every worker is stuck, connections wait here, in
//     order, up to `max_waiting`, for the first worker that answers. Past the bound a
//     connection is refused (closed).
//   - The connection a stuck worker was sent is taken back after `take_back_ms` and dealt to
//     someone else: its client waits about that long, not until the worker runs again. The
//     worker stays busy until it answers, and when it does read the message, it must refuse it
//     (it is late: the sender stamps the time) so that two workers never serve one client.
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
    // A connection to send now: {"cmd":"connection","id":id} with fd (borrowed: the handle keeps
    // it until acknowledge()).
    struct Handoff {
        pid_t worker;
        std::uint64_t id;
        int fd;
    };

    explicit RoundRobinHandle(long long stuck_ms = 50, long long take_back_ms = 1000, std::size_t max_waiting = 1024)
        : stuck_ms_(stuck_ms), take_back_ms_(take_back_ms), max_waiting_(max_waiting) {}

    // A worker must refuse a connection message older than this when it reads it: by the time
    // its answer could arrive, the connection may have been taken back.
    long long late_ms() const { return take_back_ms_ / 2; }

    // Every call takes the time now (monotonic ms): the class reads no clock, so tests need
    // no sleep.

    // A worker listens on this address (its listen() reached the primary): it joins the ring,
    // free, and takes the oldest waiting connection if there is one.
    std::vector<Handoff> add(pid_t worker, long long now_ms);
    // The worker is leaving: no more connections for it; those it was sent are still its own.
    void retire(pid_t worker);
    // The worker is gone: no more connections for it, and its unconfirmed ones go back to the
    // head of the queue, dealt again to whoever is free.
    std::vector<Handoff> remove(pid_t worker, long long now_ms);
    // A new connection: the handoff to send now, or none (it waits; or, past the bound, it is
    // closed and `refused` is set so the caller can log it).
    std::vector<Handoff> distribute(Fd client, long long now_ms, bool* refused = nullptr);
    // The worker confirmed connection `id`: the primary's copy is closed and the worker is free,
    // so the oldest waiting connection (if any) goes to it. False `*known` for an id that is not
    // that worker's (a bug worth a log line).
    std::vector<Handoff> acknowledge(pid_t worker, std::uint64_t id, long long now_ms, bool* known = nullptr);
    // The worker refused connection `id` (it came late, or its fd was lost): the worker is free,
    // and the connection, unless it was taken back already, is dealt again first.
    std::vector<Handoff> refuse(pid_t worker, std::uint64_t id, long long now_ms);
    // The next time something is due (a worker in turn becomes stuck, a connection is to be taken
    // back), or -1: the caller arms a timer and calls poll() then.
    long long next_deadline() const;
    std::vector<Handoff> poll(long long now_ms);

    std::size_t workers() const { return ring_.size(); }
    std::size_t waiting() const { return waiting_.size(); }
    std::size_t unconfirmed() const { return in_flight_.size(); }
    bool busy(pid_t worker) const;

private:
    struct Slot {
        pid_t worker;
        bool busy = false;       // holds an unconfirmed handoff
        long long busy_since = 0;
    };
    struct InFlight {
        pid_t worker;
        Fd client;  // invalid once taken back: the worker still owes an answer, the client waits no more
        long long sent_ms;
    };
    Slot* next_in_turn(long long now_ms);  // who gets the next connection now, or null: wait
    std::vector<Handoff> deal_waiting(long long now_ms);

    std::vector<Handoff> settle(pid_t worker, std::uint64_t id, bool accepted, long long now_ms, bool* known);

    long long stuck_ms_;
    long long take_back_ms_;
    std::size_t max_waiting_;
    std::vector<Slot> ring_;
    std::size_t next_ = 0;   // where the next turn starts looking
    std::uint64_t last_id_ = 0;
    std::deque<Fd> waiting_;
    std::unordered_map<std::uint64_t, InFlight> in_flight_;
};
