#include "http_server.hpp"
#include "log.hpp"
#include "net.hpp"
#include "router.hpp"

#include <cerrno>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

struct HttpServer::Conn {
    Fd fd;
    uint64_t id = 0;
    std::string in;        // bytes received, from in_off on not yet parsed into a request
    size_t in_off = 0;
    std::string out;       // bytes of responses not yet taken by the socket, from out_off on
    size_t out_off = 0;
    RequestParser parser;
    Request pending;       // the request a timer or a child is working on
    bool busy = false;     // a /sleep or an offloaded /compute is in flight
    bool close_after = false;  // close once `out` is written
    bool refused = false;      // closing after an error: the client may still be sending
    bool lingering = false;    // our FIN is sent; reading and discarding until the client's
    long long linger_until = 0;
    bool peer_eof = false;     // the client will send no more (it may still read)
    uint32_t interest = EPOLLIN;  // the events registered with epoll for this fd
    uint64_t requests = 0;     // requests parsed on this connection (0: nothing asked yet)
    bool processing = false;   // inside process(): a hook that answers at once must not re-enter it
    long long last_active = 0;
    long long head_started = -1;
    EventLoop::TimerId timer = 0;

    explicit Conn(HttpLimits limits) : parser(limits) {}
    std::string_view unparsed() const { return std::string_view(in).substr(in_off); }
};

namespace {
// Back-pressure. A client may send requests faster than it reads the answers (pipelining
// without reading). Once this much output waits for it, no more of its requests are answered
// and no more of its bytes are read until the socket takes some: its buffers stay bounded.
constexpr size_t kMaxPendingOutput = 64 * 1024;
// While a connection waits for a timer or a child, at most about this much input is read ahead.
constexpr size_t kMaxReadAhead = 64 * 1024;
// How long a refused client may go on sending before we close anyway (nginx: lingering_time).
constexpr long long kLingerMs = 2000;

size_t pending_output(const std::string& out, size_t out_off) { return out.size() - out_off; }

constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
}  // namespace

HttpServer::HttpServer(EventLoop& loop, ConnectionLimits limits) : loop_(loop), limits_(limits) {
    arm_accept_spare();  // accept_all's EMFILE spare, opened before the first client, not during
}

HttpServer::~HttpServer() {
    for (auto& [fd, c] : conns_) {
        loop_.remove(fd);
        if (c->timer) loop_.cancel_timer(c->timer);
    }
    if (sweeping_) loop_.cancel_timer(sweep_timer_);
}

int HttpServer::accept_all(int listen_fd) {
    int accepted = 0;
    // Bounded, so a flood of connections cannot starve the requests already being served.
    for (int i = 0; i < 128; ++i) {
        Accepted a = accept_client(listen_fd, /*nonblocking=*/true);
        if (a.status == AcceptStatus::none_pending) break;
        if (a.status != AcceptStatus::client) continue;
        serve(std::move(a.fd));
        ++accepted;
    }
    return accepted;
}

void HttpServer::adopt(Fd client) {
    if (!set_nonblocking(client.get())) {
        log_errno("fcntl(O_NONBLOCK)");
        return;
    }
    serve(std::move(client));
}

void HttpServer::serve(Fd client) {
    int fd = client.get();
    auto c = std::make_unique<Conn>(limits_.http);
    c->fd = std::move(client);
    c->id = next_id_++;
    c->last_active = loop_.now();
    uint64_t id = c->id;
    if (!loop_.add(fd, EPOLLIN, [this, fd, id](uint32_t ev) { on_event(fd, id, ev); })) {
        log_errno("epoll_ctl(ADD)");
        return;  // c goes out of scope: the connection closes
    }
    conns_[fd] = std::move(c);
    if (!sweeping_) {
        sweeping_ = true;
        sweep_timer_ = loop_.add_timer(250, [this] { sweep_timeouts(); });
    }
}

HttpServer::Conn* HttpServer::find(int fd, uint64_t id) {
    auto it = conns_.find(fd);
    return it != conns_.end() && it->second->id == id ? it->second.get() : nullptr;
}

void HttpServer::on_event(int fd, uint64_t id, uint32_t events) {
    Conn* c = find(fd, id);
    if (!c) return;
    if (c->lingering) return linger(*c);
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        // One read per readiness event: if more is waiting, level-triggered epoll says so again,
        // and we save the read that would only have returned EAGAIN.
        char buf[16384];
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n > 0) {
            c->in.append(buf, static_cast<size_t>(n));
            c->last_active = loop_.now();
            if (c->head_started < 0 && c->parser.started(c->unparsed())) c->head_started = loop_.now();
        } else if (n == 0) {
            // The client will send no more (it may have half-closed and still be reading):
            // answer what it asked, then close. flush() (through process() below) stops
            // watching for input, or level-triggered epoll would report this end of file forever.
            c->peer_eof = true;
        } else if (errno != EAGAIN && errno != EINTR) {
            return close_conn(*c);  // ECONNRESET and friends
        }
    }
    process(*c);  // also writes: with EPOLLOUT, what the socket refused before; c may be gone after
}

void HttpServer::process(Conn& c) {
    answer_requests(c);
    flush(c);
}

void HttpServer::answer_requests(Conn& c) {
    c.processing = true;
    struct ClearOnExit {  // however we leave, even by /crash's exception
        bool& flag;
        ~ClearOnExit() { flag = false; }
    } clear_on_exit{c.processing};
    while (!c.busy && !c.close_after && pending_output(c.out, c.out_off) < kMaxPendingOutput) {
        Request req;
        RequestParser::Result r = c.parser.parse(c.unparsed(), req);
        if (r.status == RequestParser::Status::need_more) {
            // The client waits for this before it sends the body (RFC 9110 §10.1.1). In order:
            // every earlier response is already in `out`.
            if (r.send_continue) c.out += kContinue;
            break;
        }
        if (r.status == RequestParser::Status::error) {
            c.close_after = true;
            c.refused = true;
            c.pending.version_minor = 1;
            c.pending.keep_alive = false;
            c.pending.method = "GET";
            respond(c, r.error_status, r.error_reason + "\n");
            break;
        }
        c.in_off += r.consumed;
        ++c.requests;
        c.head_started = c.parser.started(c.unparsed()) ? loop_.now() : -1;
        c.pending = std::move(req);

        if (routes_ && route_to_lab(c)) continue;
        Action action = route(c.pending);
        switch (action.kind) {
        case Action::Kind::reply:
            respond(c, action.status, action.body, action.extra_headers);
            break;
        case Action::Kind::sleep: {
            // Slow I/O without blocking: a timer answers later; the loop serves others meanwhile.
            c.busy = true;
            int fd = c.fd.get();
            uint64_t id = c.id;
            long ms = action.sleep_ms;
            c.timer = loop_.add_timer(ms, [this, fd, id, ms] { finish_slow_request(fd, id, sleep_body(ms)); });
            break;
        }
        case Action::Kind::compute:
            if (!compute_) {
                // Inline: correct, and every other client waits until it is done.
                respond(c, 200, compute_body(action.compute_n, long_computation(action.compute_n)));
            } else {
                c.busy = true;
                int fd = c.fd.get();
                uint64_t id = c.id;
                compute_(action.compute_n, [this, fd, id](std::string body) { finish_slow_request(fd, id, body); });
            }
            break;
        case Action::Kind::crash:
            throw_crash();
        }
    }
    // Drop the bytes already parsed, so a long run of pipelined requests cannot grow `in`.
    if (c.in_off > 0) {
        c.in.erase(0, c.in_off);
        c.in_off = 0;
    }
}

void HttpServer::finish_slow_request(int fd, uint64_t id, const std::string& body) {
    Conn* c = find(fd, id);
    if (!c) return;  // the client left while we worked
    c->busy = false;
    c->timer = 0;
    // An empty body is how a compute hook says the work failed (fork refused, the child died).
    if (body.empty()) respond(*c, 500, "compute failed: see the server's log\n");
    else respond(*c, 200, body);
    // A hook that called done() before returning is still inside process(), which carries on.
    if (!c->processing) process(*c);
}

bool HttpServer::route_to_lab(Conn& c) {
    int fd = c.fd.get();
    uint64_t id = c.id, request = c.requests;
    c.busy = true;  // until the lab replies; a reply that comes at once clears it again
    bool mine = routes_(c.pending, [this, fd, id, request](Reply r) { finish_lab_request(fd, id, request, std::move(r)); });
    if (!mine) c.busy = false;
    return mine;
}

void HttpServer::finish_lab_request(int fd, uint64_t id, uint64_t request, Reply r) {
    Conn* c = find(fd, id);
    if (!c || !c->busy || c->requests != request) return;  // gone, or answered already
    c->busy = false;
    respond(*c, r.status, r.body, r.extra_headers);
    if (!c->processing) process(*c);
}

void HttpServer::respond(Conn& c, int status, const std::string& body, std::string_view extra_headers) {
    bool keep_alive = c.pending.keep_alive && !draining_ && !c.close_after;
    if (!keep_alive) c.close_after = true;
    if (c.out_off == c.out.size()) {
        c.out.clear();
        c.out_off = 0;
    } else if (c.out_off >= c.out.size() / 2) {
        c.out.erase(0, c.out_off);  // a slow reader: keep `out` within twice what it holds
        c.out_off = 0;
    }
    append_response(c.out, status, body, c.pending.version_minor, keep_alive, c.pending.is_head(), extra_headers);
}

bool HttpServer::idle(const Conn& c) const {
    return !c.busy && c.out_off == c.out.size() && c.unparsed().empty();
}

void HttpServer::flush(Conn& c) {
    for (;;) {
        // A partial write is normal: the socket takes what fits in its buffer, and EPOLLOUT
        // says when there is room for the rest.
        while (c.out_off < c.out.size()) {
            ssize_t n = ::write(c.fd.get(), c.out.data() + c.out_off, c.out.size() - c.out_off);
            if (n > 0) {
                c.out_off += static_cast<size_t>(n);
                c.last_active = loop_.now();
                continue;
            }
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && errno == EAGAIN) break;
            return close_conn(c);  // EPIPE, ECONNRESET: the client is gone
        }
        // All written, and pipelined requests held back by the output limit are still waiting:
        // answer the next batch and write again.
        if (c.out_off < c.out.size() || c.processing || c.busy || c.close_after || c.unparsed().empty()) break;
        answer_requests(c);
        if (c.out_off == c.out.size()) break;  // nothing new: the rest is an incomplete request
    }
    bool pending = c.out_off < c.out.size();
    if (!pending && !c.busy && c.refused && !c.peer_eof) return start_lingering(c);
    if (!pending && !c.busy && (c.close_after || c.peer_eof || (draining_ && idle(c)))) return close_conn(c);
    update_interest(c);
}

// A lingering close, as nginx does after refusing a request. Closing a socket whose receive
// queue holds unread bytes sends a reset instead of a FIN, and a reset can make the client's
// kernel drop our refusal before the client has read it (a proxy in between, lab12's relay or
// nginx, is such a client). So: send our FIN (the answer is complete), read and throw away what
// the client still sends, and close once it stops, closes, or kLingerMs have passed.
void HttpServer::start_lingering(Conn& c) {
    if (::shutdown(c.fd.get(), SHUT_WR) < 0) return close_conn(c);
    c.lingering = true;
    c.linger_until = loop_.now() + kLingerMs;
    c.in.clear();
    c.in_off = 0;
    c.interest = EPOLLIN;
    loop_.modify(c.fd.get(), EPOLLIN);
}

void HttpServer::linger(Conn& c) {
    char buf[16384];
    for (int i = 0; i < 4; ++i) {  // bounded per event: a flooder gets no more than its share
        ssize_t n = ::read(c.fd.get(), buf, sizeof buf);
        if (n > 0) continue;
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        return close_conn(c);  // end of file (the client closed too) or an error
    }
}

void HttpServer::update_interest(Conn& c) {
    size_t out_waiting = pending_output(c.out, c.out_off);
    // After an error nothing more is parsed, so nothing more is read: a flood that is being
    // refused cannot grow `in` while the refusal is written.
    bool read_more = !c.peer_eof && !c.close_after && out_waiting < kMaxPendingOutput &&
                     !(c.busy && c.unparsed().size() >= kMaxReadAhead);
    // EPOLLOUT only while output is waiting; otherwise the level-triggered loop would spin on it.
    uint32_t want = (read_more ? uint32_t{EPOLLIN} : 0u) | (out_waiting ? uint32_t{EPOLLOUT} : 0u);
    if (want == c.interest) return;
    c.interest = want;
    loop_.modify(c.fd.get(), want);
}

void HttpServer::close_conn(Conn& c) {
    int fd = c.fd.get();
    loop_.remove(fd);
    if (c.timer) loop_.cancel_timer(c.timer);
    conns_.erase(fd);  // destroys c: the Fd closes here
    if (draining_ && conns_.empty() && on_drained_) {
        auto done = std::move(on_drained_);
        on_drained_ = nullptr;
        done();
    }
}

void HttpServer::drain(std::function<void()> on_drained) {
    draining_ = true;
    on_drained_ = std::move(on_drained);
    // Close what is idle now; everything else is answered (with Connection: close) first.
    // Not idle, although nothing is being worked on:
    //  - a connection that has not sent its first request yet: its bytes may be on their way
    //    (accepted an instant ago); closing it would lose a request the client already sent.
    //    It is served, or closed by the idle timeout if nothing comes.
    //  - a kept-alive connection whose next request is already in the socket but not read
    //    yet: closing it would reset the connection under a request in flight.
    // And a connection whose responses were queued but not written (an exception left the
    // loop between respond() and flush()) gets EPOLLOUT, or nobody would ever write them.
    std::vector<Conn*> all;
    for (auto& [fd, c] : conns_) all.push_back(c.get());
    for (Conn* c : all) {  // each step closes at most c itself, so the others stay valid
        if (c->lingering) {
            close_conn(*c);  // refused and answered already: nothing of it is in flight
        } else if (idle(*c) && c->requests > 0) {
            if (!input_waiting(*c)) close_conn(*c);  // looked at just before closing: a small window
        } else if (!c->busy && c->out_off < c->out.size()) {
            update_interest(*c);  // EPOLLOUT: the loop writes it (inside the worker's try, as
                                  // flushing may answer a pipelined request, which may throw)
        }
    }
    if (conns_.empty() && on_drained_) {
        auto done = std::move(on_drained_);
        on_drained_ = nullptr;
        done();
    }
}

bool HttpServer::input_waiting(const Conn& c) const {
    char byte;
    return ::recv(c.fd.get(), &byte, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
}

size_t HttpServer::close_all() {
    size_t in_flight = 0;
    std::vector<Conn*> all;
    for (auto& [fd, c] : conns_) {
        if (!idle(*c)) ++in_flight;
        all.push_back(c.get());
    }
    for (Conn* c : all) close_conn(*c);
    return in_flight;
}

void HttpServer::sweep_timeouts() {
    long long now = loop_.now();
    std::vector<Conn*> expired;
    std::vector<Conn*> too_slow;
    for (auto& [fd, c] : conns_) {
        if (c->lingering) {
            if (now >= c->linger_until) expired.push_back(c.get());
            continue;
        }
        if (c->busy) continue;
        if (c->out_off < c->out.size()) {
            // A client that stopped reading its responses.
            if (now - c->last_active > limits_.header_timeout_ms) expired.push_back(c.get());
        } else if (c->head_started >= 0) {
            if (now - c->head_started > limits_.header_timeout_ms) too_slow.push_back(c.get());
        } else if (now - c->last_active > limits_.idle_timeout_ms) {
            expired.push_back(c.get());
        }
    }
    for (Conn* c : expired) close_conn(*c);
    for (Conn* c : too_slow) {
        // Tell a slow client why, as nginx does with 408, then close.
        c->pending = Request{};
        c->pending.keep_alive = false;
        c->close_after = true;
        c->in.clear();
        c->in_off = 0;
        respond(*c, 408, "request head not received in time\n");
        flush(*c);
    }
    if (conns_.empty()) {
        sweeping_ = false;
        return;
    }
    sweep_timer_ = loop_.add_timer(250, [this] { sweep_timeouts(); });
}
