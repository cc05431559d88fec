// test_round_robin_handle.cpp — RoundRobinHandle (common/round_robin_handle.*), the dealer of
// lab07 and of lab15's cluster module under SCHED_RR: strictly in turn, skipping a stuck or
// resting worker, queueing when every worker is stuck, taking back what a stuck worker holds,
// dealing again what a dead worker never confirmed. The class reads no clock and does no I/O,
// so every rule is checked here with made-up times.
#include "check.hpp"
#include "round_robin_handle.hpp"

#include <map>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

namespace {

// Workers 1 and 2 join the ring at time 0, in that order: the start of most cases below.
void add_workers_1_and_2(RoundRobinHandle& h) {
    h.add(1, 0);
    h.add(2, 0);
}

// A real descriptor to stand for a client connection (the handle owns and closes it).
Fd connection() {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return Fd();
    close(sv[1]);
    return Fd(sv[0]);
}

// Deals `n` connections, each confirmed at once (a healthy worker); returns who got how many.
std::map<pid_t, int> deal_confirmed(RoundRobinHandle& h, int n, long long now = 1000) {
    std::map<pid_t, int> got;
    for (int i = 0; i < n; ++i) {
        for (auto& d : h.distribute(connection(), now)) {
            ++got[d.worker];
            CHECK(h.acknowledge(d.worker, d.id, now).empty());
        }
    }
    return got;
}

}  // namespace

TEST_CASE("healthy workers split exactly: 1000 connections over 4 are 250 each") {
    RoundRobinHandle h;
    for (pid_t w : {11, 12, 13, 14}) h.add(w, 0);
    auto got = deal_confirmed(h, 1000);
    CHECK_EQ(got.size(), std::size_t{4});
    for (auto& [w, n] : got) CHECK_EQ(n, 250);
}

TEST_CASE("the worker in turn owes a fresh confirmation: the connection waits for it, order kept") {
    RoundRobinHandle h(50);
    add_workers_1_and_2(h);
    auto first = h.distribute(connection(), 0);   // worker 1
    auto second = h.distribute(connection(), 0);  // worker 2
    CHECK_EQ(first.at(0).worker, 1);
    CHECK_EQ(second.at(0).worker, 2);
    CHECK(h.distribute(connection(), 1).empty());  // worker 1's turn, not confirmed yet: wait
    CHECK_EQ(h.waiting(), std::size_t{1});
    CHECK_EQ(h.next_deadline(), 50);
    auto third = h.acknowledge(2, second[0].id, 2);  // worker 2 is free, but it is 1's turn
    CHECK(third.empty());
    auto fourth = h.acknowledge(1, first[0].id, 3);
    CHECK_EQ(fourth.size(), std::size_t{1});
    CHECK_EQ(fourth.at(0).worker, 1);
}

TEST_CASE("a worker that owes a confirmation past stuck_ms loses its turns (SIGSTOP)") {
    RoundRobinHandle h(50);
    add_workers_1_and_2(h);
    auto stuck = h.distribute(connection(), 0);  // worker 1 gets it and never confirms
    CHECK_EQ(stuck.at(0).worker, 1);
    std::map<pid_t, int> got;
    long long now = 10;
    for (int i = 0; i < 10; ++i, now += 5) {
        auto dealt = h.distribute(connection(), now);
        if (dealt.empty()) dealt = h.poll(h.next_deadline());  // the timer the module arms
        for (auto& d : dealt) {
            ++got[d.worker];
            h.acknowledge(d.worker, d.id, now);
        }
    }
    CHECK_EQ(got[1], 0);
    CHECK_EQ(got[2], 10);
    CHECK(h.busy(1));
}

TEST_CASE("every worker stuck: connections queue, and the first to confirm takes the oldest") {
    RoundRobinHandle h(50);
    add_workers_1_and_2(h);
    auto a = h.distribute(connection(), 0);
    auto b = h.distribute(connection(), 0);
    CHECK(h.distribute(connection(), 100).empty());
    CHECK(h.distribute(connection(), 100).empty());
    CHECK_EQ(h.waiting(), std::size_t{2});
    auto next = h.acknowledge(2, b.at(0).id, 200);
    CHECK_EQ(next.size(), std::size_t{1});
    CHECK_EQ(next.at(0).worker, 2);
    CHECK_EQ(h.waiting(), std::size_t{1});
}

TEST_CASE("past max_waiting a connection is refused, not queued") {
    RoundRobinHandle h(50, 1000, 2);
    bool refused = false;
    h.distribute(connection(), 0, &refused);  // no worker at all: waits
    h.distribute(connection(), 0, &refused);
    CHECK(!refused);
    CHECK(h.distribute(connection(), 0, &refused).empty());
    CHECK(refused);
    CHECK_EQ(h.waiting(), std::size_t{2});
    auto dealt = h.add(7, 1);  // a worker arrives: it takes the oldest
    CHECK_EQ(dealt.size(), std::size_t{1});
    CHECK_EQ(dealt.at(0).worker, 7);
}

TEST_CASE("a dead worker's unconfirmed connection is dealt again, before the ones waiting") {
    RoundRobinHandle h(50);
    add_workers_1_and_2(h);
    auto lost = h.distribute(connection(), 0);  // worker 1, never confirmed
    int lost_fd = lost.at(0).fd;
    auto to2 = h.distribute(connection(), 0);
    h.acknowledge(2, to2.at(0).id, 1);
    auto again = h.remove(1, 2);
    CHECK_EQ(again.size(), std::size_t{1});
    CHECK_EQ(again.at(0).worker, 2);
    CHECK_EQ(again.at(0).fd, lost_fd);  // the same client, not a new one
    CHECK_EQ(h.workers(), std::size_t{1});
}

TEST_CASE("a retired (disconnecting) worker is dealt nothing more but keeps what it was sent") {
    RoundRobinHandle h(50);
    add_workers_1_and_2(h);
    auto sent = h.distribute(connection(), 0);  // worker 1
    h.retire(1);
    CHECK_EQ(h.unconfirmed(), std::size_t{1});
    auto got = deal_confirmed(h, 4, 1);
    CHECK_EQ(got[2], 4);
    CHECK_EQ(got.count(1), std::size_t{0});
    bool known = false;
    h.acknowledge(1, sent.at(0).id, 2, &known);  // it still confirms its last one
    CHECK(known);
    CHECK_EQ(h.unconfirmed(), std::size_t{0});
}

TEST_CASE("a stuck worker's connection is taken back after take_back_ms and dealt to another") {
    RoundRobinHandle h(50, 1000);
    add_workers_1_and_2(h);
    auto stuck = h.distribute(connection(), 0);  // worker 1 never answers
    int fd = stuck.at(0).fd;
    CHECK_EQ(h.next_deadline(), 1000);
    CHECK(h.poll(999).empty());
    auto again = h.poll(1000);
    CHECK_EQ(again.size(), std::size_t{1});
    CHECK_EQ(again.at(0).worker, 2);
    CHECK_EQ(again.at(0).fd, fd);
    CHECK(h.busy(1));  // it still owes an answer: no new connection for it until then
    h.acknowledge(2, again.at(0).id, 1001);
    h.refuse(1, stuck.at(0).id, 5000);  // it ran again, read the message late, refused it
    CHECK(!h.busy(1));
    CHECK_EQ(h.waiting(), std::size_t{0});  // the client was served by 2: nothing to deal again
    CHECK_EQ(h.unconfirmed(), std::size_t{0});
}

TEST_CASE("a refused connection (fd lost, or late) is dealt again first") {
    RoundRobinHandle h(50, 1000);
    add_workers_1_and_2(h);
    auto first = h.distribute(connection(), 0);
    auto again = h.refuse(1, first.at(0).id, 1);
    CHECK_EQ(again.size(), std::size_t{1});
    CHECK_EQ(again.at(0).worker, 2);
    CHECK_EQ(again.at(0).fd, first.at(0).fd);
}

TEST_CASE("a confirmation that matches no handoff is reported, and changes nothing") {
    RoundRobinHandle h;
    h.add(1, 0);
    bool known = true;
    CHECK(h.acknowledge(1, 42, 0, &known).empty());
    CHECK(!known);
}

TEST_CASE("the defaults are the ones lab07 and the module share: stuck after 200 ms, take-back after 1 s") {
    RoundRobinHandle h;
    add_workers_1_and_2(h);
    auto first = h.distribute(connection(), 0);  // worker 1
    auto second = h.distribute(connection(), 0);  // worker 2
    h.acknowledge(2, second.at(0).id, 0);
    // Worker 1 is kept off the CPU for 150 ms (a busy machine): it keeps its turn.
    CHECK(h.distribute(connection(), 150).empty());
    CHECK_EQ(h.next_deadline(), 200);
    auto late = h.acknowledge(1, first.at(0).id, 160);
    CHECK_EQ(late.size(), std::size_t{1});
    CHECK_EQ(late.at(0).worker, 1);
    CHECK_EQ(h.late_ms(), 500);
}

TEST_CASE("the waiting room is a quarter of the descriptor limit, at most 256") {
    CHECK_EQ(RoundRobinHandle::waiting_room(64), std::size_t{16});
    CHECK_EQ(RoundRobinHandle::waiting_room(1024), std::size_t{256});
    CHECK_EQ(RoundRobinHandle::waiting_room(1 << 20), std::size_t{256});
    CHECK_EQ(RoundRobinHandle::waiting_room(2), std::size_t{1});
    CHECK_EQ(RoundRobinHandle::waiting_room(-1), std::size_t{256});
    RoundRobinHandle h;
    h.set_max_waiting(2);
    h.distribute(connection(), 0);  // no worker yet: both wait
    CHECK(!h.full());
    h.distribute(connection(), 0);
    CHECK(h.full());  // a caller that stops accepting now never sees a refusal
    h.add(1, 1);
    CHECK(!h.full());
}

TEST_CASE("a worker that lost a descriptor at its fd limit rests, skipped, then is dealt again") {
    RoundRobinHandle h(50, 1000);
    add_workers_1_and_2(h);
    auto first = h.distribute(connection(), 0);  // worker 1
    auto again = h.refuse(1, first.at(0).id, 10, RoundRobinHandle::Refusal::fd_lost);
    CHECK_EQ(again.at(0).worker, 2);  // the same client, to the next worker
    CHECK_EQ(again.at(0).fd, first.at(0).fd);
    h.acknowledge(2, again.at(0).id, 11);
    auto during = h.distribute(connection(), 20);  // 1 rests: 2 again, out of turn
    CHECK_EQ(during.at(0).worker, 2);
    h.acknowledge(2, during.at(0).id, 21);
    auto after = h.distribute(connection(), 10 + RoundRobinHandle::kRestMs);  // rested
    CHECK_EQ(after.at(0).worker, 1);
}

TEST_CASE("when the only worker rests, the connection waits for the end of the rest, no longer") {
    RoundRobinHandle h(50, 1000);
    h.add(1, 0);
    auto first = h.distribute(connection(), 0);
    CHECK(h.refuse(1, first.at(0).id, 10, RoundRobinHandle::Refusal::fd_lost).empty());
    CHECK_EQ(h.waiting(), std::size_t{1});
    CHECK_EQ(h.next_deadline(), 10 + RoundRobinHandle::kRestMs);
    CHECK(h.poll(10 + RoundRobinHandle::kRestMs - 1).empty());
    auto dealt = h.poll(10 + RoundRobinHandle::kRestMs);
    CHECK_EQ(dealt.size(), std::size_t{1});
    CHECK_EQ(dealt.at(0).fd, first.at(0).fd);
}

TEST_CASE("every worker stuck: the next deadline is the take-back, never a time already past") {
    RoundRobinHandle h(50, 1000);
    add_workers_1_and_2(h);
    h.distribute(connection(), 0);
    h.distribute(connection(), 0);
    CHECK(h.distribute(connection(), 10).empty());
    CHECK_EQ(h.next_deadline(), 50);  // worker 1, in turn, would count as stuck then
    CHECK(h.poll(50).empty());        // both stuck now: nobody to deal to
    CHECK_EQ(h.next_deadline(), 1000);  // not 50 again: a timer would spin until an answer
}

TEST_CASE("a late refusal does not rest the worker") {
    RoundRobinHandle h(50, 1000);
    add_workers_1_and_2(h);
    auto first = h.distribute(connection(), 0);
    auto again = h.refuse(1, first.at(0).id, 10);  // late
    h.acknowledge(2, again.at(0).id, 11);
    auto next = h.distribute(connection(), 12);
    CHECK_EQ(next.at(0).worker, 1);
}

TEST_CASE("poll reports what it took back and from whom; overdue names the workers first") {
    RoundRobinHandle h(50, 1000);
    add_workers_1_and_2(h);
    auto stuck = h.distribute(connection(), 0);  // worker 1 never answers
    CHECK(h.overdue(999).empty());
    std::vector<pid_t> due = h.overdue(1000);
    CHECK_EQ(due.size(), std::size_t{1});
    CHECK_EQ(due.at(0), 1);
    std::vector<RoundRobinHandle::TakenBack> taken;
    auto again = h.poll(1200, &taken);
    CHECK_EQ(taken.size(), std::size_t{1});
    CHECK_EQ(taken.at(0).worker, 1);
    CHECK_EQ(taken.at(0).id, stuck.at(0).id);
    CHECK_EQ(taken.at(0).held_ms, 1200);
    CHECK_EQ(again.at(0).worker, 2);
    h.acknowledge(2, again.at(0).id, 1201);
    CHECK(h.overdue(5000).empty());  // taken back once: the client is no longer its
}

TEST_CASE("remove says how many unconfirmed connections it deals again") {
    RoundRobinHandle h(50, 1000);
    add_workers_1_and_2(h);
    h.distribute(connection(), 0);  // worker 1, never confirmed
    std::size_t redealt = 99;
    h.remove(1, 1, &redealt);
    CHECK_EQ(redealt, std::size_t{1});
    h.remove(1, 2, &redealt);  // again (its exit after a failed send): nothing more
    CHECK_EQ(redealt, std::size_t{0});
}

TEST_MAIN("round_robin_handle")
