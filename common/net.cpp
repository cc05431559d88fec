#include "net.hpp"
#include "log.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <ctime>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace {
// The spare descriptor for surviving EMFILE: opened once per process, when it first listens or
// serves (arm_accept_spare); a forked child inherits its own copy, which is exactly what it needs.
int g_spare_fd = -1;

void arm_spare() {
    if (g_spare_fd < 0) g_spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}
}  // namespace

Fd listen_tcp(const ListenOptions& opts, std::string* error) {
    arm_spare();  // at start, so a descriptor count taken after the ready line stays flat
    std::string where = opts.host + ":" + std::to_string(opts.port);
    auto fail = [&](const char* call) {
        *error = std::string(call) + " " + where + ": " + std::strerror(errno);
        return Fd();
    };

    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* found = nullptr;
    std::string port = std::to_string(opts.port);
    if (int rc = getaddrinfo(opts.host.c_str(), port.c_str(), &hints, &found); rc != 0) {
        *error = "getaddrinfo " + where + ": " + gai_strerror(rc);
        return Fd();
    }
    std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(found, freeaddrinfo);

    int type = SOCK_STREAM | SOCK_CLOEXEC | (opts.nonblocking ? SOCK_NONBLOCK : 0);
    Fd fd(socket(found->ai_family, type, 0));
    if (!fd) return fail("socket");
    int one = 1;
    // SO_REUSEADDR: restart a lab at once even while old connections sit in TIME_WAIT.
    if (setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) return fail("setsockopt(SO_REUSEADDR)");
    // SO_REUSEPORT before bind: the kernel lets this socket join any group of sockets of the same
    // user bound to the address. After bind (reuseport_owner): the bind itself was exclusive, and
    // only sockets bound from now on may share the port with this one.
    bool before = opts.reuseport && !opts.reuseport_owner;
    if (before && setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
        return fail("setsockopt(SO_REUSEPORT)");
    if (bind(fd.get(), found->ai_addr, found->ai_addrlen) < 0) return fail("bind");
    if (opts.reuseport && opts.reuseport_owner && setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
        return fail("setsockopt(SO_REUSEPORT)");
    if (!opts.bind_only && listen(fd.get(), opts.backlog) < 0) return fail("listen");
    return fd;
}

Fd listen_or_die(const ListenOptions& opts) {
    std::string error;
    Fd fd = listen_tcp(opts, &error);
    if (!fd) die("%s", error.c_str());
    return fd;
}

int local_port(int fd) {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) < 0) return -1;
    if (addr.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
    if (addr.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
    return -1;
}

void arm_accept_spare() { arm_spare(); }

Accepted accept_client(int listen_fd, bool nonblocking) {
    arm_spare();
    int flags = SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0);
    int fd = accept4(listen_fd, nullptr, nullptr, flags);
    if (fd >= 0) return {AcceptStatus::client, Fd(fd)};
    switch (errno) {
    case EAGAIN:
#if EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
        return {AcceptStatus::none_pending, Fd()};
    case EINTR:
        return {AcceptStatus::interrupted, Fd()};
    // A connection that was reset while waiting in the queue, or a network error on it:
    // that client is gone, the listener is fine (accept(2), "Error handling").
    case ECONNABORTED:
    case EPROTO:
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
    case EPERM:  // a firewall rule refused it
        return {AcceptStatus::skipped, Fd()};
    case EMFILE:
    case ENFILE: {
        // A blocking listener (lab01-03) must not take a victim: that accept4 would wait for
        // the NEXT client, maybe long after descriptors are free again, and drop it. There the
        // queued clients wait instead, and we look again in 10 ms (accept4 fails with EMFILE
        // before it would block, so without the pause a blocking loop would spin too).
        int listen_flags = fcntl(listen_fd, F_GETFL);
        bool blocking = listen_flags >= 0 && !(listen_flags & O_NONBLOCK);
        static time_t last_logged = 0;
        time_t now = time(nullptr);
        if (now != last_logged) {
            log_errno(blocking ? "accept4 (clients wait in the queue)" : "accept4 (dropping one client to survive)");
            last_logged = now;
        }
        if (blocking) {
            timespec pause{0, 10 * 1000000L};
            nanosleep(&pause, nullptr);
            return {AcceptStatus::skipped, Fd()};
        }
        // Without this the listener stays readable and a loop spins at 100% CPU on EMFILE.
        if (g_spare_fd >= 0) {
            close(g_spare_fd);
            g_spare_fd = -1;
            int victim = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
            if (victim >= 0) close(victim);
            arm_spare();
        }
        return {AcceptStatus::skipped, Fd()};
    }
    default:
        log_errno("accept4");
        return {AcceptStatus::skipped, Fd()};
    }
}

void print_ready(const char* lab, const std::string& host, int port) {
    std::string shown = host.find(':') != std::string::npos ? "[" + host + "]" : host;
    std::printf("%s listening on http://%s:%d pid=%d\n", lab, shown.c_str(), port, getpid());
    std::fflush(stdout);
}
