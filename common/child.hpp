// child.hpp — what a parent that starts other programs needs around fork and exec, and what a
// shell does with their exit statuses (lab11). The fork/exec itself is the lab's idea and lives in
// the lab file; these are the small pieces any such parent repeats.
#pragma once

#include <string>
#include <string_view>

// "SIGTERM", "TERM", "term" or "15" -> 15; 0 when it names no signal.
int signal_number(std::string_view name);
// 15 -> "SIGTERM" (a number as text for a signal without a name).
std::string signal_name(int sig);

// What a shell's $? shows for a wait status: the exit code, or 128+N when signal N ended it.
int shell_exit_code(int wait_status);

// "ENOENT" for ENOENT: the symbolic name Node reports in err.code.
const char* errno_name(int err);

// In a forked child, before exec: an empty signal mask and the default action for every signal.
// exec resets the signals we catch but keeps the ignored ones ignored (our SIGPIPE) and keeps the
// mask (the signals an EventLoop reads from a signalfd): a program must not inherit either.
// Async-signal-safe (sigprocmask and sigaction only).
void reset_signals_for_exec();

// Makes sure fds 0, 1 and 2 are open (on /dev/null if they were closed), so that a pipe or socket
// created later never gets one of those numbers: dup2(fd, fd) would not clear its CLOEXEC flag.
void ensure_standard_fds();

// `path` as an absolute path, relative to the current directory (links are not resolved; the
// file need not exist). For a daemon, whose working directory becomes "/".
std::string absolute_path(const std::string& path);

// `text` as one shell word: unchanged when it is made only of safe characters, else in single
// quotes. Used for log values (path=…) and for the command lines the notes quote.
std::string shell_quote(std::string_view text);

// write(2) until all of `data` is written (short writes, EINTR). False on an error (errno set).
bool write_all(int fd, std::string_view data);
