// test_cluster.cpp — the master's process table (common/cluster.*): one record per worker, keyed
// by an id never reused, with a state that ends in `exited`; and at the fd limit, starting a
// worker is a per-worker failure, never the end of the master.
#include "check.hpp"
#include "cluster.hpp"
#include "event_loop.hpp"

#include <cerrno>
#include <csignal>
#include <sys/resource.h>
#include <vector>
#include <unistd.h>

namespace {

TEST_CASE("Cluster::fork_worker returns nullptr when socketpair fails at the fd limit") {
    EventLoop loop;
    char arg0[] = "test_cluster";
    char* argv[] = {arg0, nullptr};
    Cluster cluster(loop, argv);
    rlimit saved{};
    getrlimit(RLIMIT_NOFILE, &saved);
    int lowest_free = dup(0);
    close(lowest_free);
    rlimit tight = saved;
    tight.rlim_cur = static_cast<rlim_t>(lowest_free);  // every lower number is taken
    setrlimit(RLIMIT_NOFILE, &tight);
    Worker* w = cluster.fork_worker(0);  // logs "error socketpair: Too many open files"
    setrlimit(RLIMIT_NOFILE, &saved);
    CHECK(w == nullptr);
    CHECK_EQ(cluster.size(), size_t{0});
}

TEST_CASE("one record per worker: ids in fork order, never reused; exited, and whether it was going") {
    EventLoop loop;
    char arg0[] = "test_cluster";
    char* argv[] = {arg0, nullptr};
    Cluster cluster(loop, argv);
    cluster.set_program("/bin/true", {"true"});  // a worker that exits at once, without a word
    std::vector<Worker> exits;
    cluster.on_exit([&](const Worker& w, int) {
        CHECK(cluster.find(w.id) == &w);  // still found by id while its exit is reported...
        CHECK(cluster.find_pid(w.pid) == nullptr);
        for (Worker* live : cluster.workers()) CHECK(live->id != w.id);  // ...but no longer listed
        exits.push_back(Worker{.id = w.id, .slot = w.slot, .pid = w.pid, .generation = w.generation, .state = w.state,
                               .exited_after_disconnect = w.exited_after_disconnect, .channel = nullptr});
        if (exits.size() == 2) loop.stop();
    });
    Worker* a = cluster.fork_worker(0);
    Worker* b = cluster.fork_worker(1);
    CHECK(a && b);
    if (!a || !b) return;
    CHECK_EQ(a->id, 1);
    CHECK_EQ(b->id, 2);
    CHECK(a->state == WorkerState::starting);
    CHECK(cluster.find(2) == b);
    CHECK(cluster.find_pid(b->pid) == b);
    b->state = WorkerState::disconnecting;  // told to go: its exit is expected
    loop.add_timer(10000, [&] { loop.stop(); });  // a bound, should the exits never come
    loop.run();
    CHECK_EQ(exits.size(), size_t{2});
    for (const Worker& w : exits) {
        CHECK(w.state == WorkerState::exited);
        CHECK_EQ(w.exited_after_disconnect, w.id == 2);
    }
    Worker* c = cluster.fork_worker(0);
    CHECK(c && c->id == 3);  // the ids of the dead are not handed out again
    if (c) kill(c->pid, SIGKILL);
}

}  // namespace

TEST_MAIN("cluster")
