// test_restart_window.cpp — lab10's restart limit (common/restart_window.*): the sliding window
// of the last `limit` restart times, tested on its boundaries with made-up clocks.
#include "check.hpp"
#include "restart_window.hpp"

#include <cstddef>

namespace {

// Asks for `n` restarts, `gap` ms apart from `start`; returns how many were allowed before the
// first refusal (n if none was refused).
std::size_t allowed_before_refusal(RestartWindow& w, std::size_t n, long long gap, long long start = 1000) {
    for (std::size_t i = 0; i < n; ++i)
        if (!w.allow(start + static_cast<long long>(i) * gap)) return i;
    return n;
}

}  // namespace

TEST_CASE("limit restarts spanning during - 1 ms: the limit-th is refused (just inside)") {
    // 3 restarts; the first and the third are 59999 ms apart: all three within 60000 ms.
    RestartWindow w(3, 60000);
    CHECK(w.allow(0));
    CHECK(w.allow(30000));
    CHECK(!w.allow(59999));
    CHECK_EQ(w.total(), std::size_t{3});
}

TEST_CASE("limit restarts spanning exactly during: allowed (just outside, the material's <)") {
    RestartWindow w(3, 60000);
    CHECK(w.allow(0));
    CHECK(w.allow(30000));
    CHECK(w.allow(60000));
}

TEST_CASE("limit restarts at the same instant: refused") {
    RestartWindow w(10, 60000);
    CHECK_EQ(allowed_before_refusal(w, 10, 0), std::size_t{9});
}

TEST_CASE("the defaults: nine restarts in a minute go ahead, the tenth is refused") {
    RestartWindow w(10, 60000);
    // 6666 ms apart: the 10th comes 59994 ms after the 1st.
    CHECK_EQ(allowed_before_refusal(w, 10, 6666), std::size_t{9});
}

TEST_CASE("restarts spread wider than the window never give up") {
    RestartWindow w(10, 60000);
    // 6667 ms apart: any 10 consecutive restarts span 60003 ms.
    CHECK_EQ(allowed_before_refusal(w, 1000, 6667), std::size_t{1000});
    CHECK_EQ(w.total(), std::size_t{1000});
}

TEST_CASE("only the last limit restarts count: an old burst is forgotten") {
    RestartWindow w(3, 1000);
    CHECK(w.allow(0));
    CHECK(w.allow(10));       // two quick ones...
    CHECK(w.allow(5000));     // ...then a pause: 0, 10, 5000 span 5000 ms
    CHECK(w.allow(5010));     // 10, 5000, 5010 span 5000 ms
    CHECK(!w.allow(5020));    // 5000, 5010, 5020 span 20 ms: give up
}

TEST_CASE("fewer than limit restarts never give up, however close") {
    RestartWindow w(5, 60000);
    for (int i = 0; i < 4; ++i) CHECK(w.allow(100));
}

TEST_CASE("limit 1 refuses every restart") {
    RestartWindow w(1, 60000);
    CHECK(!w.allow(0));
    CHECK(!w.allow(1000000));
}

TEST_CASE("a refused restart still counts as a restart time") {
    // Like the material, the refused one is pushed too: the window moves on with it.
    RestartWindow w(2, 100);
    CHECK(w.allow(0));
    CHECK(!w.allow(50));      // 0, 50: refused
    CHECK(w.allow(150));      // 50, 150: span 100, not < 100
    CHECK_EQ(w.total(), std::size_t{3});
}

TEST_CASE("nonsense limits are clamped to 1") {
    RestartWindow w(0, 0);
    CHECK_EQ(w.limit(), std::size_t{1});
    CHECK_EQ(w.during_ms(), 1LL);
}

TEST_MAIN("restart_window")
