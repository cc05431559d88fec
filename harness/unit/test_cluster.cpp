// test_cluster.cpp — the master's process table (common/cluster.*) at the fd limit: starting a
// worker is a per-worker failure, never the end of the master.
#include "check.hpp"
#include "cluster.hpp"
#include "event_loop.hpp"

#include <cerrno>
#include <csignal>
#include <sys/resource.h>
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

}  // namespace

TEST_MAIN("cluster")
