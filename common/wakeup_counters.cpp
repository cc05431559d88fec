// wakeup_counters.cpp — lab06's shared counters and its table (see wakeup_counters.hpp).
#include "wakeup_counters.hpp"

#include "log.hpp"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <sys/mman.h>
#include <unistd.h>

Fd create_shared_memory(const char* name, std::size_t size) {
    Fd memfd(memfd_create(name, MFD_CLOEXEC));
    if (!memfd) die_errno("memfd_create");
    if (ftruncate(memfd.get(), static_cast<off_t>(size)) < 0) die_errno("ftruncate(memfd)");
    return memfd;
}

void* map_shared_memory(int memfd, std::size_t size) {
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    if (p == MAP_FAILED) die_errno("mmap(memfd)");
    return p;
}

long long voluntary_switches(pid_t pid, pid_t tid) {
    FILE* f = std::fopen(format("/proc/%d/task/%d/status", pid, tid).c_str(), "r");
    if (!f) return -1;
    long long n = -1;
    char line[256];
    while (std::fgets(line, sizeof line, f))
        if (std::sscanf(line, "voluntary_ctxt_switches: %lld", &n) == 1) break;
    std::fclose(f);
    return n;
}

std::string wakeup_table(const WakeupCounters* slots, std::size_t n, const std::string& mode, const char* when) {
    std::string out = format("lab06 table mode=%s when=%s\n", mode.c_str(), when);
    out += format("%6s %8s %10s %10s %10s %10s\n", "worker", "pid", "wakeups", "accepted", "wasted", "sleeps");
    std::uint64_t wakeups = 0, accepted = 0, wasted = 0, polls = 0, most = 0, least = UINT64_MAX;
    long long sleeps = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const WakeupCounters& c = slots[i];
        std::uint64_t w = c.wakeups.load(), a = c.accepted.load(), x = c.wasted.load();
        long long z = voluntary_switches(c.pid.load(), c.tid.load());
        out += format("%6zu %8d %10" PRIu64 " %10" PRIu64 " %10" PRIu64 " %10lld\n", i, c.pid.load(), w, a, x, z);
        wakeups += w;
        accepted += a;
        wasted += x;
        polls += c.lock_polls.load();
        sleeps += std::max(z, 0LL);
        most = std::max(most, a);
        least = std::min(least, a);
    }
    out += format("%6s %8s %10" PRIu64 " %10" PRIu64 " %10" PRIu64 " %10lld\n", "total", "", wakeups, accepted, wasted, sleeps);
    auto per = [accepted](double x) { return accepted ? format("%.2f", x / static_cast<double>(accepted)) : std::string("nan"); };
    std::string ratio = least ? format("%.2f", static_cast<double>(most) / static_cast<double>(least)) : "inf";
    out += format("summary mode=%s workers=%zu connections=%" PRIu64 " wakeups=%" PRIu64 " wasted=%" PRIu64
                  " sleeps=%lld wakeups_per_connection=%s sleeps_per_connection=%s accepted_max_min=%s",
                  mode.c_str(), n, accepted, wakeups, wasted, sleeps, per(static_cast<double>(wakeups)).c_str(),
                  per(static_cast<double>(sleeps)).c_str(), ratio.c_str());
    if (mode == "mutex") out += format(" lock_polls=%" PRIu64, polls);
    return out + "\n";
}
