#include "log.hpp"
#include "fd.hpp"

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <unistd.h>

namespace {
const char* g_role = "server";

std::string vformat(const char* fmt, va_list ap) {
    va_list copy;
    va_copy(copy, ap);
    int n = std::vsnprintf(nullptr, 0, fmt, copy);
    va_end(copy);
    std::string out(n > 0 ? n : 0, '\0');
    if (n > 0) std::vsnprintf(out.data(), out.size() + 1, fmt, ap);
    return out;
}

// " t=SECONDS.mmm": the wall clock, so the logs of several processes and a client's own timings
// (loadgen --trace) can be laid on one time axis.
std::string timestamp() {
    timespec now{};
    clock_gettime(CLOCK_REALTIME, &now);
    char buf[40];
    std::snprintf(buf, sizeof buf, " t=%lld.%03ld", static_cast<long long>(now.tv_sec), now.tv_nsec / 1000000);
    return buf;
}

std::string make_line(const std::string& text) {
    return "[" + std::string(g_role) + " " + std::to_string(getpid()) + "] " + text + timestamp() + "\n";
}

void write_line(const std::string& text) {
    std::string line = make_line(text);
    // One write(2) per line is the whole point: a short write to a pipe under PIPE_BUF
    // (4096 bytes) is atomic, so concurrent writers never interleave inside a line.
    const char* p = line.data();
    size_t left = line.size();
    while (left > 0) {
        ssize_t n = ::write(STDERR_FILENO, p, left);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;  // nowhere left to report to
        p += n;
        left -= static_cast<size_t>(n);
    }
}
}  // namespace

bool set_nonblocking(int fd, bool on) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return false;
    flags = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
    return fcntl(fd, F_SETFL, flags) == 0;
}

bool set_cloexec(int fd, bool on) {
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0) return false;
    flags = on ? (flags | FD_CLOEXEC) : (flags & ~FD_CLOEXEC);
    return fcntl(fd, F_SETFD, flags) == 0;
}

void set_log_role(const char* role) { g_role = role; }
const char* log_role() { return g_role; }

std::string format(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    std::string s = vformat(fmt, ap);
    va_end(ap);
    return s;
}

std::string event_line(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    std::string line = make_line(vformat(fmt, ap));
    va_end(ap);
    return line;
}

void log_event(const char* fmt, ...) {
    int saved = errno;
    va_list ap;
    va_start(ap, fmt);
    write_line(vformat(fmt, ap));
    va_end(ap);
    errno = saved;
}

void log_errno(const char* call) {
    int saved = errno;
    write_line(std::string("error ") + call + ": " + std::strerror(saved));
    errno = saved;
}

void die_errno(const char* call) {
    write_line(std::string("fatal ") + call + ": " + std::strerror(errno));
    std::exit(1);
}

void die(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    write_line("fatal " + vformat(fmt, ap));
    va_end(ap);
    std::exit(1);
}
