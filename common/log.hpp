// log.hpp — the event log of the contract, and the two tiers of error reporting.
//
// Every line is `[ROLE PID] EVENT key=value… t=SECONDS.mmm` (the wall clock, to the millisecond,
// so the lines of several processes can be laid side by side) and reaches stderr in a single write(2), so
// lines from a master and its workers never interleave, even when they share the terminal.
#pragma once

#include <string>

// The role printed in every log line ("master", "worker", "server"…). Set once per process,
// again in a child right after fork.
void set_log_role(const char* role);
const char* log_role();

// Formats like printf and writes "[ROLE PID] <text> t=SECONDS.mmm\n" with one write(2).
void log_event(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// The same line as a string, newline included, for a process whose stderr is /dev/null and
// which writes its events to a file instead (lab11's daemon).
std::string event_line(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// Set-up failure tier: "[ROLE PID] fatal CALL: strerror(errno)" then exit(1).
[[noreturn]] void die_errno(const char* call);
// Same, with an explicit message instead of errno.
[[noreturn]] void die(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// Per-connection tier: "[ROLE PID] error CALL: strerror(errno)", and carry on.
void log_errno(const char* call);

// printf into a std::string (used by log lines and responses).
std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
