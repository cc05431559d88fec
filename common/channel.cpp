#include "channel.hpp"
#include "log.hpp"
#include "spawn.hpp"

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

namespace {

// The reserved key that says "an fd travels with this message".
constexpr const char* kFdMark = "fd";

// Our peers attach one fd per message, and Linux never returns the fds of two sendmsg() calls in
// one recvmsg(); room for a few more only lets us report a misbehaving peer precisely.
constexpr int kMaxFdsPerRead = 8;

// Printable start of a bad line for the log: the log is one line per event, so control bytes go.
std::string preview(std::string_view line) {
    std::string s(line.substr(0, 60));
    for (char& c : s)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
    if (line.size() > 60) s += "...";
    return s;
}

}  // namespace

std::pair<Fd, Fd> make_channel_pair() {
    std::pair<Fd, Fd> ends;
    if (!open_channel_pair(&ends.first, &ends.second)) die_errno("socketpair");
    return ends;
}

bool open_channel_pair(Fd* master_end, Fd* worker_end) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return false;
    master_end->reset(sv[0]);
    worker_end->reset(sv[1]);
    return true;
}

Channel::Channel(Fd sock) : sock_(std::move(sock)) {
    if (!set_nonblocking(sock_.get())) log_errno("fcntl(O_NONBLOCK)");
}

// --- sending ------------------------------------------------------------------------------

bool Channel::send(const JsonObject& msg, int fd_to_pass) {
    if (send_broken_) return false;
    JsonObject body = msg;
    if (fd_to_pass >= 0) body.set(kFdMark, true);
    else body.erase(kFdMark);  // a stray mark would make the receiver take someone else's fd

    Outgoing o;
    o.bytes = body.dump() + "\n";
    if (out_.empty()) {
        // Nothing waits ahead of it: send it now, with the caller's fd itself. The first bytes
        // that leave take the fd with them (the kernel holds its own reference from then on), so
        // no duplicate is needed, which matters at the fd limit where dup fails with EMFILE.
        ssize_t n = send_some(o, fd_to_pass);
        if (n < 0) return false;
        if (o.sent == o.bytes.size()) return true;
        if (n > 0) fd_to_pass = -1;  // gone with the first part: the rest is queued without it
    }
    if (fd_to_pass >= 0) {
        // The caller may close its fd the moment we return, but the message has to wait in the
        // queue: hold our own reference until sendmsg() has handed one to the kernel.
        int copy = fcntl(fd_to_pass, F_DUPFD_CLOEXEC, 0);
        if (copy < 0) {
            log_errno("fcntl(F_DUPFD_CLOEXEC)");
            return false;
        }
        o.fd.reset(copy);
    }
    out_.push_back(std::move(o));
    return flush();
}

std::size_t Channel::queued_bytes() const {
    std::size_t n = 0;
    for (const Outgoing& o : out_) n += o.bytes.size() - o.sent;
    return n;
}

// One sendmsg() of what is left of `o`, with `fd` attached when >= 0. Returns the bytes sent, 0
// when the socket is full (EAGAIN), or -1 when the channel broke (logged unless the peer is gone).
ssize_t Channel::send_some(Outgoing& o, int fd) {
    iovec iov{o.bytes.data() + o.sent, o.bytes.size() - o.sent};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    union {
        cmsghdr align;  // the control buffer must be aligned like a cmsghdr
        char buf[CMSG_SPACE(sizeof(int))];
    } control;
    if (fd >= 0) {
        std::memset(&control, 0, sizeof control);
        mh.msg_control = control.buf;
        mh.msg_controllen = sizeof control.buf;
        cmsghdr* cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    }
    for (;;) {
        // MSG_NOSIGNAL: a dead peer is a return value (EPIPE), not a SIGPIPE that kills us.
        ssize_t n = sendmsg(sock_.get(), &mh, MSG_NOSIGNAL);
        if (n >= 0) {
            o.sent += static_cast<size_t>(n);
            return n;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        if (errno != EPIPE && errno != ECONNRESET) log_errno("sendmsg");
        send_broken_ = true;
        out_.clear();
        return -1;
    }
}

bool Channel::flush() {
    if (send_broken_) return false;
    while (!out_.empty()) {
        Outgoing& o = out_.front();
        ssize_t n = send_some(o, o.fd.get());
        if (n < 0) return false;
        if (n == 0) return true;  // the socket is full: wants_write() stays true
        // The fd went with these bytes (the kernel holds its own reference now), so the rest of
        // the message, if any, is sent without it.
        o.fd.reset();
        if (o.sent == o.bytes.size()) out_.pop_front();
    }
    return true;
}

bool Channel::send_blocking(const JsonObject& msg, int fd_to_pass) {
    if (!send(msg, fd_to_pass)) return false;
    while (wants_write()) {
        pollfd p{sock_.get(), POLLOUT, 0};
        if (poll(&p, 1, -1) < 0) {
            if (errno == EINTR) continue;
            log_errno("poll");
            return false;
        }
        if (!flush()) return false;  // POLLHUP/POLLERR surface here as EPIPE/ECONNRESET
    }
    return true;
}

// --- receiving ----------------------------------------------------------------------------

RecvStatus Channel::finish(RecvStatus status) {
    recv_state_ = status;
    return status;
}

RecvStatus Channel::receive(std::vector<Message>& out) {
    if (recv_state_ != RecvStatus::ok) return recv_state_;
    for (;;) {
        char data[64 * 1024];
        iovec iov{data, sizeof data};
        union {
            cmsghdr align;
            char buf[CMSG_SPACE(sizeof(int) * kMaxFdsPerRead)];
        } control;
        msghdr mh{};
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        mh.msg_control = control.buf;
        mh.msg_controllen = sizeof control.buf;
        // MSG_CMSG_CLOEXEC: a received fd is CLOEXEC from its first instant, so a fork+exec in
        // between cannot leak it.
        ssize_t n = recvmsg(sock_.get(), &mh, MSG_CMSG_CLOEXEC);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return RecvStatus::ok;
            if (errno == ECONNRESET) {
                // Linux reports a peer that closed with our messages unread in its queue as
                // ECONNRESET instead of end of file; either way the peer is gone.
                n = 0;
            } else {
                log_errno("recvmsg");
                return finish(RecvStatus::error);
            }
        }

        // Queue the fds first: they arrive with (never after) the first byte of their message.
        size_t received = 0;
        for (cmsghdr* cm = CMSG_FIRSTHDR(&mh); n > 0 && cm; cm = CMSG_NXTHDR(&mh, cm)) {
            if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
            size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t k = 0; k < count; ++k) {
                int raw;
                std::memcpy(&raw, CMSG_DATA(cm) + k * sizeof(int), sizeof raw);
                in_fds_.emplace_back(raw);
            }
            received += count;
        }
        if (mh.msg_flags & MSG_CTRUNC) {
            // The kernel could not give us a passed fd and closed it: at our fd limit (EMFILE)
            // it installs none and sets MSG_CTRUNC, and the bytes arrive all the same. Our peers
            // attach one fd per message, and Linux returns the fds of at most one sendmsg() per
            // recvmsg(), so exactly one message in these bytes lost its fd: an invalid entry
            // stands in for it and the channel stays in step. Anything else (some fds of one
            // message came, some not) is not a peer of ours: which fd is whose is unknown.
            if (received > 0) {
                log_event("error channel recvmsg: control data truncated after %zu fd(s)", received);
                return finish(RecvStatus::error);
            }
            in_fds_.emplace_back();
        }

        if (n == 0) {
            // Complete lines were parsed as they arrived: what is left can only be a partial one.
            if (!in_.empty())
                log_event("error channel: peer closed in the middle of a message, %zu bytes dropped",
                          in_.size());
            in_.clear();
            in_fds_.clear();
            return finish(RecvStatus::closed);
        }
        in_.append(data, static_cast<size_t>(n));
        if (!take_lines(out)) return finish(RecvStatus::error);
    }
}

// Parses every complete line in the input buffer and keeps the partial one for later.
bool Channel::take_lines(std::vector<Message>& out) {
    size_t start = 0;
    bool ok = true;
    while (ok) {
        size_t nl = in_.find('\n', start);
        if (nl == std::string::npos) break;
        ok = deliver_line(std::string_view(in_).substr(start, nl - start), out);
        start = nl + 1;
    }
    in_.erase(0, start);  // once per call, not once per line: 1000 lines in one read stay linear
    if (!ok) return false;

    if (in_.size() > kMaxMessageBytes) {
        log_event("error channel: a message is longer than %zu bytes", kMaxMessageBytes);
        return false;
    }
    // With no partial line buffered, every message whose bytes arrived has been parsed, so any fd
    // still queued came with a message that did not claim it (an unmarked or unparsable line).
    // Close it now, or it would be handed to the next message that carries an fd.
    if (in_.empty() && !in_fds_.empty()) {
        log_event("error channel: %zu received fd(s) belonged to no message, closed", in_fds_.size());
        in_fds_.clear();
    }
    return true;
}

bool Channel::deliver_line(std::string_view line, std::vector<Message>& out) {
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) return true;  // blank line
    std::string error;
    std::optional<JsonObject> body = JsonObject::parse(line, &error);
    if (!body) {
        // One bad line is the sender's bug, not a reason to drop the channel and its worker.
        log_event("error channel: skipped a message that is not valid JSON (%s): %s", error.c_str(),
                  preview(line).c_str());
        return true;
    }
    Message m;
    if (body->get_bool(kFdMark)) {
        if (in_fds_.empty()) {
            log_event("error channel: a message is marked as carrying an fd but none arrived: %s",
                      preview(line).c_str());
            return false;
        }
        m.fd = std::move(in_fds_.front());
        m.fd_lost = !m.fd.valid();
        in_fds_.pop_front();
    }
    body->erase(kFdMark);
    m.body = std::move(*body);
    out.push_back(std::move(m));
    return true;
}

// --- the worker's end -----------------------------------------------------------------------

bool parse_channel_fd(const char* value, int* fd_out, std::string* error) {
    if (!value || !*value) {
        *error = "empty value";
        return false;
    }
    long n = 0;
    for (const char* p = value; *p; ++p) {
        if (*p < '0' || *p > '9') {
            *error = format("'%s' is not a file descriptor number", value);
            return false;
        }
        n = n * 10 + (*p - '0');
        if (n > INT_MAX) {
            *error = format("'%s' is out of range", value);
            return false;
        }
    }
    int fd = static_cast<int>(n);
    struct stat st;
    if (fstat(fd, &st) < 0) {
        *error = format("fd %d: %s", fd, std::strerror(errno));
        return false;
    }
    if (!S_ISSOCK(st.st_mode)) {
        *error = format("fd %d is not a socket", fd);
        return false;
    }
    int domain = 0, type = 0;
    socklen_t len = sizeof domain;
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0 ||
        (len = sizeof type, getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)) {
        *error = format("fd %d: getsockopt: %s", fd, std::strerror(errno));
        return false;
    }
    if (domain != AF_UNIX || type != SOCK_STREAM) {
        *error = format("fd %d is not an AF_UNIX stream socket", fd);
        return false;
    }
    *fd_out = fd;
    return true;
}

Fd channel_from_env() {
    const char* value = std::getenv(kChannelEnv);
    if (!value) return Fd();
    std::string text = value;  // unsetenv() may free the string getenv() pointed into
    unsetenv(kChannelEnv);
    int fd = -1;
    std::string error;
    if (!parse_channel_fd(text.c_str(), &fd, &error)) die("bad %s=%s: %s", kChannelEnv, text.c_str(), error.c_str());
    // The master cleared CLOEXEC so the fd would survive exec; set it again so it does not leak
    // into whatever this worker runs in turn.
    if (!set_cloexec(fd)) die_errno("fcntl(FD_CLOEXEC)");
    // exec of /proc/self/exe names the process "exe" (the kernel takes the name from the path):
    // take back the program's own, so that ps -C, pgrep, top and ss show "lab07", not "exe".
    prctl(PR_SET_NAME, program_invocation_short_name);
    return Fd(fd);
}

pid_t spawn_worker(int worker_end_fd, char* const argv[]) {
    return spawn_worker(worker_end_fd, argv, "/proc/self/exe", {});
}

pid_t spawn_worker(int worker_end_fd, char* const argv[], const char* program, const std::vector<std::string>& env) {
    SpawnRequest req;
    // execv's rule, not execvp's: the program is a path (relative to the current directory), never
    // a name looked up in PATH.
    req.file = std::strchr(program, '/') ? program : std::string("./") + program;
    for (char* const* a = argv; *a; ++a) req.argv.emplace_back(*a);
    req.stdio = Stdio::inherit;
    req.ipc_fd = worker_end_fd;
    req.env = env;
    Spawned s = spawn_process(req);
    if (s.error) {
        log_event("error %s %s: %s", s.failed_call, req.file.c_str(), std::strerror(s.error));
        errno = s.error;
        return -1;
    }
    return s.pid;
}
