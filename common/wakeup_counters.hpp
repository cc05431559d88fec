// wakeup_counters.hpp — lab06's instrument: per-worker wakeup counters in memory that every
// process of the lab maps, and the table the master prints from them beside what the kernel
// counts for each waiting thread. The five ways of waiting are lab06's own; this only measures.
//
// The memory is an anonymous file (memfd), not a MAP_SHARED|MAP_ANONYMOUS mapping: fork+exec
// would lose such a mapping (exec replaces the whole address space), whereas a file has an fd,
// and an fd travels over the channel like the listening socket does. Each process maps it.
#pragma once

#include "fd.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <sys/types.h>

// One worker's counters: only that worker writes them, the master reads them for its table.
// Atomics work across processes only if they are lock-free (a lock would live in one process's
// memory): on x86-64 and arm64 they are.
struct WakeupCounters {
    std::atomic<std::uint64_t> wakeups{0};     // the listener woke it: accept returned, or epoll reported the listener
    std::atomic<std::uint64_t> accepted{0};    // connections it got
    std::atomic<std::uint64_t> wasted{0};      // woken for nothing: accept found the queue empty (EAGAIN)
    std::atomic<std::uint64_t> lock_polls{0};  // mutex mode: tries at the accept lock that found it taken
    std::atomic<std::int32_t> pid{0};          // set by the master at fork
    std::atomic<std::int32_t> tid{0};          // the thread that waits for connections (the master reads its /proc entry)

    // One wakeup that got `connections` (0: wasted).
    void woken(std::uint64_t connections) {
        wakeups.fetch_add(1, std::memory_order_relaxed);
        (connections ? accepted : wasted).fetch_add(connections ? connections : 1, std::memory_order_relaxed);
    }
};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free && std::atomic<std::int32_t>::is_always_lock_free);

// A memfd of `size` zero bytes named `name` (it shows as /memfd:NAME in /proc/PID/maps).
Fd create_shared_memory(const char* name, std::size_t size);
// Maps it shared, read-write, in this process; dies naming mmap on failure. The mapping
// outlives the fd.
void* map_shared_memory(int memfd, std::size_t size);

// What the kernel counts for a thread: every time it blocked and was woken again
// (/proc/PID/task/TID/status: voluntary_ctxt_switches). It sees the wakeups user space cannot:
// epoll_wait checks the listener again before returning, so a worker woken for a connection
// another one already took goes back to sleep without ever returning. -1 once the thread is gone.
long long voluntary_switches(pid_t pid, pid_t tid);

// The per-worker table, one line a row, as the harness reads it:
//   lab06 table mode=M when=W
//   worker pid wakeups accepted wasted sleeps   (a row per slot, then "total")
//   summary mode=M workers=N connections=… wakeups=… wasted=… sleeps=… wakeups_per_connection=…
//           sleeps_per_connection=… accepted_max_min=… [lock_polls=… in mutex mode]
// Rows: wakeups and wasted as WakeupCounters counts them; sleeps = voluntary_switches() of the
// waiting thread, serving included (-1 if it is gone).
std::string wakeup_table(const WakeupCounters* slots, std::size_t n, const std::string& mode, const char* when);
