// test_round_robin_handle.cpp — lab15's cluster module deals connections under SCHED_RR with
// RoundRobinHandle (common/round_robin_handle.*): strictly in turn, skipping a stuck worker,
// queueing when every worker is stuck, dealing again what a dead worker never confirmed. The
// class reads no clock and does no I/O, so every rule is checked here with made-up times.
#include "check.hpp"
#include "round_robin_handle.hpp"

#include <map>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

namespace {

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
    h.add(1, 0);
    h.add(2, 0);
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
    h.add(1, 0);
    h.add(2, 0);
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
    h.add(1, 0);
    h.add(2, 0);
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
    h.add(1, 0);
    h.add(2, 0);
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
    h.add(1, 0);
    h.add(2, 0);
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
    h.add(1, 0);
    h.add(2, 0);
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
    h.add(1, 0);
    h.add(2, 0);
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

TEST_MAIN("round_robin_handle")
