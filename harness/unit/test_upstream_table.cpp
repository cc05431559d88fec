// test_upstream_table.cpp — lab12's worker ports as nginx's upstream servers
// (common/relay.* UpstreamTable): max_fails failures within fail_timeout mark a port down for
// fail_timeout, with made-up clocks.
#include "check.hpp"
#include "relay.hpp"

namespace {
// Worker 100 listening on port 4321, fail_timeout 10 s: where most cases start.
UpstreamTable worker_100_on_port_4321(int max_fails) {
    UpstreamTable t(max_fails, 10000);
    t.set_port(100, 4321);
    return t;
}
}  // namespace

TEST_CASE("a worker is up once its port is known, and not after it is erased") {
    UpstreamTable t(1, 10000);
    CHECK(!t.up(100, 0));
    CHECK_EQ(t.port(100), 0);
    t.set_port(100, 4321);
    CHECK(t.up(100, 0));
    CHECK_EQ(t.port(100), 4321);
    t.erase(100);
    CHECK(!t.up(100, 0));
}

TEST_CASE("max_fails 1: the first failure marks the port down for fail_timeout, then it is up again") {
    UpstreamTable t = worker_100_on_port_4321(1);
    CHECK(t.fail(100, 4321, 5000));
    CHECK(!t.up(100, 5000));
    CHECK(!t.up(100, 14999));
    CHECK(t.up(100, 15000));
}

TEST_CASE("max_fails 3: three failures within fail_timeout mark it down, the same three spread wider do not") {
    UpstreamTable t = worker_100_on_port_4321(3);
    CHECK(!t.fail(100, 4321, 1000));
    CHECK(!t.fail(100, 4321, 2000));
    CHECK(t.fail(100, 4321, 11000));  // 10000 ms after the first: still its window
    CHECK(!t.up(100, 11000));

    UpstreamTable wide = worker_100_on_port_4321(3);
    CHECK(!wide.fail(100, 4321, 1000));
    CHECK(!wide.fail(100, 4321, 2000));
    CHECK(!wide.fail(100, 4321, 11001));  // past the window: a new one starts here
    CHECK(wide.up(100, 11001));
}

TEST_CASE("failures while down count for nothing, and the count starts again after") {
    UpstreamTable t = worker_100_on_port_4321(2);
    CHECK(!t.fail(100, 4321, 0));
    CHECK(t.fail(100, 4321, 1));
    CHECK(!t.fail(100, 4321, 2));  // relays that chose it earlier report it too
    CHECK(t.up(100, 10001));
    CHECK(!t.fail(100, 4321, 10002));
    CHECK(t.up(100, 10002));
}

TEST_CASE("max_fails 0 never marks a port down") {
    UpstreamTable t = worker_100_on_port_4321(0);
    for (int i = 0; i < 100; ++i) CHECK(!t.fail(100, 4321, i));
    CHECK(t.up(100, 100));
}

TEST_CASE("a failure on a port the worker no longer has, or of an unknown worker, counts for nothing") {
    UpstreamTable t = worker_100_on_port_4321(1);
    CHECK(!t.fail(100, 1234, 0));
    CHECK(!t.fail(200, 4321, 0));
    CHECK(t.up(100, 0));
    CHECK(t.fail(100, 4321, 0));
    t.set_port(100, 5555);  // a replacement's port: its record starts again
    CHECK(t.up(100, 1));
}

TEST_MAIN("upstream_table")
