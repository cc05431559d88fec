#include "blocking.hpp"
#include "log.hpp"
#include "process.hpp"
#include "router.hpp"

#include <cerrno>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace {

bool write_all(int fd, const std::string& data) {
    size_t done = 0;
    while (done < data.size()) {
        ssize_t n = ::write(fd, data.data() + done, data.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;  // EPIPE, ECONNRESET, or the send timeout: the client is gone
        done += static_cast<size_t>(n);
    }
    return true;
}

// Sleeps until `ms` have passed, resuming after signals that are not a stop request.
bool sleep_unless_stopped(long ms, const std::function<bool()>& stop) {
    long long until = monotonic_ms() + ms;
    for (long long left = ms; left > 0; left = until - monotonic_ms()) {
        if (!sleep_ms(static_cast<long>(left)) && stop()) return false;
    }
    return true;
}

}  // namespace

void serve_client(Fd client, const ConnectionLimits& limits, const std::function<bool()>& stop) {
    int fd = client.get();
    // A client that stops reading must not hold this thread forever in write(2).
    timeval send_timeout{10, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof send_timeout);

    std::string in, out;
    RequestParser parser(limits.http);
    long long idle_since = monotonic_ms();
    long long head_started = -1;  // when the first byte of the current request arrived

    while (true) {
        // Answer every complete request already buffered (pipelining), in order.
        while (true) {
            Request req;
            RequestParser::Result r = parser.parse(in, req);
            if (r.status == RequestParser::Status::need_more) {
                // The client waits for this before it sends the body (RFC 9110 §10.1.1).
                if (r.send_continue && !write_all(fd, "HTTP/1.1 100 Continue\r\n\r\n")) return;
                break;
            }
            out.clear();
            if (r.status == RequestParser::Status::error) {
                append_response(out, r.error_status, r.error_reason + "\n", 1, false, false);
                write_all(fd, out);
                return;
            }
            in.erase(0, r.consumed);
            head_started = parser.started(in) ? monotonic_ms() : -1;

            Action action = route(req);
            switch (action.kind) {
            case Action::Kind::reply:
                break;
            case Action::Kind::sleep:
                if (!sleep_unless_stopped(action.sleep_ms, stop)) return;
                action.body = sleep_body(action.sleep_ms);
                break;
            case Action::Kind::compute:
                action.body = compute_body(action.compute_n, long_computation(action.compute_n));
                break;
            case Action::Kind::crash:
                throw_crash();
            }
            bool keep_alive = req.keep_alive && !stop();
            append_response(out, action.status, action.body, req.version_minor, keep_alive, req.is_head(),
                            action.extra_headers);
            if (!write_all(fd, out) || !keep_alive) return;
            idle_since = monotonic_ms();
        }

        // Wait for more bytes, but not forever: the idle timeout between requests, the header
        // timeout once a request has started (a client sending one byte a second).
        long long deadline = head_started >= 0 ? head_started + limits.header_timeout_ms
                                               : idle_since + limits.idle_timeout_ms;
        long long wait = deadline - monotonic_ms();
        pollfd p{fd, POLLIN, 0};
        int ready = wait > 0 ? poll(&p, 1, static_cast<int>(wait)) : 0;
        if (ready < 0) {
            if (errno == EINTR && !stop()) continue;
            return;
        }
        if (ready == 0) {
            if (head_started >= 0) {
                out.clear();
                append_response(out, 408, "request head not received in time\n", 1, false, false);
                write_all(fd, out);
            }
            return;
        }
        char buf[16384];
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;  // the client closed (0) or reset the connection
        in.append(buf, static_cast<size_t>(n));
        if (head_started < 0 && parser.started(in)) head_started = monotonic_ms();
    }
}
