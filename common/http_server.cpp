#include "http_server.hpp"
#include "log.hpp"
#include "net.hpp"
#include "router.hpp"

#include <cerrno>
#include <sys/epoll.h>
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
    bool peer_eof = false;     // the client will send no more (it may still read)
    bool want_write = false;   // EPOLLOUT is registered
    long long last_active = 0;
    long long head_started = -1;
    EventLoop::TimerId timer = 0;

    explicit Conn(HttpLimits limits) : parser(limits) {}
    std::string_view unparsed() const { return std::string_view(in).substr(in_off); }
};

HttpServer::HttpServer(EventLoop& loop, ConnectionLimits limits) : loop_(loop), limits_(limits) {}

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
            // answer what it asked, then close. Stop watching for input, or level-triggered
            // epoll would report this end of file forever.
            c->peer_eof = true;
            loop_.modify(fd, c->want_write ? uint32_t{EPOLLOUT} : 0u);
        } else if (errno != EAGAIN && errno != EINTR) {
            return close_conn(*c);  // ECONNRESET and friends
        }
    }
    process(*c);
    if (events & EPOLLOUT) flush(*c);
}

void HttpServer::process(Conn& c) {
    while (!c.busy && !c.close_after) {
        Request req;
        RequestParser::Result r = c.parser.parse(c.unparsed(), req);
        if (r.status == RequestParser::Status::need_more) break;
        if (r.status == RequestParser::Status::error) {
            c.close_after = true;
            c.pending.version_minor = 1;
            c.pending.keep_alive = false;
            c.pending.method = "GET";
            respond(c, r.error_status, r.error_reason + "\n");
            break;
        }
        c.in_off += r.consumed;
        c.head_started = c.parser.started(c.unparsed()) ? loop_.now() : -1;
        c.pending = std::move(req);

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
    if (c.in_off == c.in.size()) {
        c.in.clear();
        c.in_off = 0;
    }
    flush(c);
}

void HttpServer::finish_slow_request(int fd, uint64_t id, const std::string& body) {
    Conn* c = find(fd, id);
    if (!c) return;  // the client left while we worked
    c->busy = false;
    c->timer = 0;
    respond(*c, 200, body);
    process(*c);
}

void HttpServer::respond(Conn& c, int status, const std::string& body, std::string_view extra_headers) {
    bool keep_alive = c.pending.keep_alive && !draining_ && !c.close_after;
    if (!keep_alive) c.close_after = true;
    if (c.out_off == c.out.size()) {
        c.out.clear();
        c.out_off = 0;
    }
    append_response(c.out, status, body, c.pending.version_minor, keep_alive, c.pending.is_head(), extra_headers);
    ++served_;
}

bool HttpServer::idle(const Conn& c) const {
    return !c.busy && c.out_off == c.out.size() && c.unparsed().empty();
}

void HttpServer::flush(Conn& c) {
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
    bool pending = c.out_off < c.out.size();
    if (pending != c.want_write) {
        // Ask for EPOLLOUT only while output is waiting; otherwise the loop would spin on it.
        c.want_write = pending;
        uint32_t events = (c.peer_eof ? 0u : uint32_t{EPOLLIN}) | (pending ? uint32_t{EPOLLOUT} : 0u);
        loop_.modify(c.fd.get(), events);
    }
    if (pending || c.busy) return;
    if (c.close_after || c.peer_eof || (draining_ && idle(c))) close_conn(c);
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
    std::vector<Conn*> idle_conns;
    for (auto& [fd, c] : conns_)
        if (idle(*c)) idle_conns.push_back(c.get());
    for (Conn* c : idle_conns) close_conn(*c);
    if (conns_.empty() && on_drained_) {
        auto done = std::move(on_drained_);
        on_drained_ = nullptr;
        done();
    }
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
