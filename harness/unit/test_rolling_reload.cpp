// test_rolling_reload.cpp — the rolling reload's decisions (common/rolling_reload.*), without a
// process: made-up worker ids and clocks. Slots in order, one at a time; an old worker retires
// only once its newcomer listens; a newcomer that dies or never listens aborts the reload and the
// old workers stay; SIGHUPs during a reload make one more; a crash during a reload.
#include "check.hpp"
#include "rolling_reload.hpp"

#include <ostream>
#include <string>

using Kind = ReloadAction::Kind;

std::ostream& operator<<(std::ostream& os, Kind k) {
    const char* names[] = {"idle", "wait", "start", "skip", "retire", "abort", "finished"};
    return os << names[static_cast<int>(k)];
}

namespace {

constexpr long long kListenTimeout = 3000;

// Reload generation 2 over workers 1, 2, 3 (slots 0, 1, 2) at t=1000.
RollingReload begun(int slots = 3) {
    RollingReload r(kListenTimeout);
    CHECK(r.request(true) == RollingReload::Request::begin);
    std::vector<int> ids;
    for (int s = 0; s < slots; ++s) ids.push_back(s + 1);
    r.begin(2, ids, 1000);
    return r;
}

// One whole step for the next slot: start → newcomer `id` → it listens `after` ms later →
// retire. Returns the retire decision.
ReloadAction step(RollingReload& r, int id, long long at, long long after = 10) {
    ReloadAction start = r.next(at);
    CHECK_EQ(start.kind, Kind::start);
    r.started(id);
    CHECK_EQ(r.next(at).kind, Kind::wait);
    r.listening(id, at + after);
    return r.next(at + after);
}

}  // namespace

TEST_CASE("slots are replaced in order, one at a time, then finished") {
    RollingReload r = begun();
    for (int slot = 0; slot < 3; ++slot) {
        ReloadAction start = r.next(1000 + slot * 100);
        CHECK_EQ(start.kind, Kind::start);
        CHECK_EQ(start.slot, slot);
        CHECK_EQ(start.generation, 2L);
        CHECK_EQ(start.old_id, slot + 1);
        r.started(10 + slot);
        // Until the newcomer listens, nothing else: no second newcomer, no retirement.
        CHECK_EQ(r.next(1000 + slot * 100 + 5).kind, Kind::wait);
        CHECK_EQ(r.next(1000 + slot * 100 + 6).kind, Kind::wait);
        r.listening(10 + slot, 1000 + slot * 100 + 50);
        ReloadAction retire = r.next(1000 + slot * 100 + 50);
        CHECK_EQ(retire.kind, Kind::retire);
        CHECK_EQ(retire.slot, slot);
        CHECK_EQ(retire.old_id, slot + 1);
        CHECK_EQ(retire.new_id, 10 + slot);
        CHECK_EQ(retire.ms, 50LL);
    }
    ReloadAction done = r.next(1400);
    CHECK_EQ(done.kind, Kind::finished);
    CHECK_EQ(done.ms, 400LL);
    CHECK_EQ(done.replaced, 3);
    CHECK(!r.running());
    CHECK_EQ(r.next(1500).kind, Kind::idle);
}

TEST_CASE("the old worker retires only when its own newcomer listens") {
    RollingReload r = begun();
    CHECK_EQ(r.next(1000).kind, Kind::start);
    r.started(10);
    r.listening(2, 1010);   // an old worker's late `listening`: not the newcomer
    r.listening(99, 1010);  // nobody we know
    CHECK_EQ(r.next(1010).kind, Kind::wait);
    r.listening(10, 1020);
    CHECK_EQ(r.next(1020).kind, Kind::retire);
}

TEST_CASE("wait says how long is left of the listen timeout") {
    RollingReload r = begun();
    r.next(1000);
    r.started(10);
    ReloadAction wait = r.next(1000);
    CHECK_EQ(wait.ms, kListenTimeout);
    CHECK_EQ(wait.old_id, 1);  // the step it waits for
    CHECK_EQ(wait.new_id, 10);
    CHECK_EQ(r.next(2500).ms, 1500LL);
}

TEST_CASE("a newcomer that dies at start aborts; the old ones keep their slots") {
    RollingReload r = begun();
    CHECK_EQ(step(r, 10, 1000).kind, Kind::retire);  // slot 0 replaced
    CHECK_EQ(r.next(1100).kind, Kind::start);         // slot 1
    r.started(11);
    CHECK(r.gone(11) == RollingReload::Gone::newcomer);
    ReloadAction a = r.next(1200);
    CHECK_EQ(a.kind, Kind::abort);
    CHECK_EQ(a.reason, std::string("new-worker-exited"));
    CHECK_EQ(a.slot, 1);
    CHECK_EQ(a.new_id, 11);
    CHECK(!a.restart_slot);  // worker 2 still serves slot 1
    CHECK_EQ(a.replaced, 1);
    CHECK(!r.running());
    CHECK_EQ(r.next(1300).kind, Kind::idle);  // and worker 3 (slot 2) is never touched
}

TEST_CASE("a newcomer that does not listen within the listen timeout aborts") {
    RollingReload r = begun();
    r.next(1000);
    r.started(10);
    CHECK_EQ(r.next(1000 + kListenTimeout - 1).kind, Kind::wait);
    ReloadAction a = r.next(1000 + kListenTimeout);
    CHECK_EQ(a.kind, Kind::abort);
    CHECK_EQ(a.reason, std::string("listen-timeout"));
    CHECK_EQ(a.new_id, 10);  // still alive: the caller kills it
    CHECK_EQ(a.replaced, 0);
    r.listening(10, 1000 + kListenTimeout + 1);  // too late: changes nothing
    CHECK_EQ(r.next(1000 + kListenTimeout + 1).kind, Kind::idle);
}

TEST_CASE("the timeout is per step: a slow reload of fast steps is not aborted") {
    RollingReload r = begun();
    CHECK_EQ(step(r, 10, 1000, 2000).kind, Kind::retire);
    CHECK_EQ(step(r, 11, 3000, 2000).kind, Kind::retire);
    CHECK_EQ(step(r, 12, 5000, 2000).kind, Kind::retire);
    CHECK_EQ(r.next(7000).kind, Kind::finished);
}

TEST_CASE("a newcomer that cannot be forked aborts with fork-failed") {
    RollingReload r = begun();
    r.next(1000);
    r.start_failed();
    ReloadAction a = r.next(1000);
    CHECK_EQ(a.kind, Kind::abort);
    CHECK_EQ(a.reason, std::string("fork-failed"));
    CHECK_EQ(a.new_id, 0);
}

TEST_CASE("a second SIGHUP during a reload queues exactly one more, after it") {
    RollingReload r = begun();
    CHECK(r.request(true) == RollingReload::Request::queued);
    CHECK(r.request(true) == RollingReload::Request::queued_again);
    CHECK(!r.take_queued());  // not while this one runs
    step(r, 10, 1000);
    step(r, 11, 1100);
    step(r, 12, 1200);
    CHECK_EQ(r.next(1300).kind, Kind::finished);
    CHECK(r.take_queued());
    CHECK(!r.take_queued());  // once
    CHECK(r.request(true) == RollingReload::Request::begin);
}

TEST_CASE("a SIGHUP before the cluster is ready waits for it; an abort lets the queued one run") {
    RollingReload r(kListenTimeout);
    CHECK(r.request(false) == RollingReload::Request::queued);
    CHECK(r.take_queued());  // the caller asks once it is ready
    r.begin(2, {1, 2}, 1000);
    CHECK(r.request(true) == RollingReload::Request::queued);
    r.next(1000);
    r.started(10);
    r.gone(10);
    CHECK_EQ(r.next(1001).kind, Kind::abort);
    CHECK(r.take_queued());
}

TEST_CASE("the step's old worker crashes before its newcomer listens: the newcomer replaces it") {
    RollingReload r = begun();
    ReloadAction start = r.next(1000);
    r.started(10);
    CHECK(r.gone(start.old_id) == RollingReload::Gone::old_of_step);  // do not restart it
    CHECK(r.gone(start.old_id) == RollingReload::Gone::other);        // its exit after its suicide
    r.listening(10, 1050);
    ReloadAction retire = r.next(1050);
    CHECK_EQ(retire.kind, Kind::retire);
    CHECK_EQ(retire.old_id, 0);  // nobody left to retire
    CHECK_EQ(retire.new_id, 10);
}

TEST_CASE("the step's old worker crashes, then its newcomer dies: the slot is to be restarted") {
    RollingReload r = begun();
    r.next(1000);
    r.started(10);
    r.gone(1);
    r.gone(10);
    ReloadAction a = r.next(1010);
    CHECK_EQ(a.kind, Kind::abort);
    CHECK(a.restart_slot);
    CHECK_EQ(a.slot, 0);
}

TEST_CASE("a crash in a slot not reached yet: its restart is on the new generation, the step is skipped") {
    RollingReload r = begun();
    r.next(1000);
    r.started(10);
    CHECK(r.gone(2) == RollingReload::Gone::other);  // slot 1's worker: the caller restarts it
    r.slot_done(1, 20);                              // ...from the new file
    r.listening(10, 1010);
    CHECK_EQ(r.next(1010).kind, Kind::retire);
    ReloadAction skip = r.next(1010);
    CHECK_EQ(skip.kind, Kind::skip);
    CHECK_EQ(skip.slot, 1);
    CHECK_EQ(skip.old_id, 20);
    ReloadAction start = r.next(1010);
    CHECK_EQ(start.kind, Kind::start);
    CHECK_EQ(start.slot, 2);
}

TEST_CASE("a crash in a slot not reached yet and no restart: the reload fills the empty slot") {
    RollingReload r = begun(2);
    step(r, 10, 1000);
    CHECK(r.gone(2) == RollingReload::Gone::other);
    ReloadAction start = r.next(1100);
    CHECK_EQ(start.kind, Kind::start);
    CHECK_EQ(start.slot, 1);
    CHECK_EQ(start.old_id, 0);
    r.started(11);
    r.listening(11, 1110);
    ReloadAction retire = r.next(1110);
    CHECK_EQ(retire.kind, Kind::retire);
    CHECK_EQ(retire.old_id, 0);
}

TEST_CASE("a crash of a worker already replaced or retired changes nothing") {
    RollingReload r = begun();
    step(r, 10, 1000);
    CHECK(r.gone(1) == RollingReload::Gone::other);   // the retired old one exits
    CHECK(r.gone(10) == RollingReload::Gone::other);  // slot 0's new one crashes: lab10's business
    r.slot_done(0, 30);                               // its restart: slot 0 was reached already
    CHECK_EQ(r.next(1100).kind, Kind::start);
    CHECK_EQ(r.next(1100).kind, Kind::wait);          // still the one step in progress
}

TEST_CASE("shutdown cancels the reload and the queued one") {
    RollingReload r = begun();
    r.request(true);
    r.next(1000);
    r.started(10);
    CHECK(r.cancel());
    CHECK(!r.running());
    CHECK_EQ(r.next(1010).kind, Kind::idle);
    CHECK(!r.take_queued());
    CHECK(!r.cancel());
}

TEST_MAIN("rolling_reload")
