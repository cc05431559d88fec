// process.hpp — process plumbing: start-up, signal flags, exit statuses, parent death.
#pragma once

#include <csignal>
#include <string>
#include <sys/types.h>

// Every lab's first call: sets the log role, ignores SIGPIPE (a write to a closed socket
// becomes EPIPE, a per-connection error, instead of killing the server) and turns off core
// files (labs crash on purpose), and lifts the soft limit on open files to the hard one.
void init_process(const char* role);

// This process's pid without a system call (cached; refreshed in a forked child). Used on every
// response for X-Worker-Pid.
pid_t self_pid();

// Signal handlers only set flags (the loop acts on them). install_flag_handler installs one
// WITHOUT SA_RESTART, so a blocking accept/read/sleep returns EINTR and the loop sees the flag.
void install_flag_handler(int sig);
// True if `sig` arrived since the last call (and clears it).
bool take_signal(int sig);
// True if `sig` arrived at any time (not cleared).
bool signal_seen(int sig);

// "code=1 signal=none" or "code=none signal=SIGKILL", for the exit event.
std::string describe_exit(int wait_status);

// In a forked child: ask the kernel to SIGTERM us when the parent dies, and exit at once if it
// already has (the race between fork and prctl).
void die_with_parent(pid_t parent);

// Sleeps ms milliseconds; returns false early if a signal interrupted it.
bool sleep_ms(long ms);

// Milliseconds on the monotonic clock (vDSO: no system call).
long long monotonic_ms();
