// relay.cpp — lab12's byte relay (relay.hpp): one relayed connection is two sockets and two
// directions. Each direction moves bytes from one socket to the other; what the other side has
// not taken yet is held, and while a chunk's worth is held the direction stops reading its
// source (back-pressure, wants_read). So a client that never reads stops the worker's bytes in
// the kernel's socket buffers, not in the master's memory: at most two chunks per direction,
// whatever the size of the answer.
#include "relay.hpp"

#include "log.hpp"
#include "net.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

void add_relay_options(Cli& cli, RelayOptions& opts) {
    cli.choice("relay", &opts.mode, {"copy", "splice"},
               "how the master moves bytes: read/write through a buffer, or splice(2) through a pipe");
    cli.integer("relay-timeout", &opts.timeout_ms, 1, 3600000,
                "ms a relayed connection may pass no byte either way before both sides are closed");
    cli.integer("max-fails", &opts.max_fails, 0, 1000000,
                "failed attempts on a worker within --fail-timeout that mark it down (0: never)");
    cli.integer("fail-timeout", &opts.fail_timeout_ms, 1, 3600000, "ms: the window of --max-fails, and how long a worker stays down");
    cli.flag("print-nginx-conf", &opts.print_nginx_conf,
             "once every worker listens, print an nginx configuration with an upstream over their ports");
}

// ---- UpstreamTable ----------------------------------------------------------------------------

int UpstreamTable::port(pid_t worker) const {
    auto it = table_.find(worker);
    return it == table_.end() ? 0 : it->second.port;
}

bool UpstreamTable::up(pid_t worker, long long now_ms) const {
    auto it = table_.find(worker);
    return it != table_.end() && it->second.port > 0 && it->second.down_until <= now_ms;
}

bool UpstreamTable::fail(pid_t worker, int port, long long now_ms) {
    auto it = table_.find(worker);
    if (max_fails_ == 0 || it == table_.end() || it->second.port != port) return false;
    Entry& u = it->second;
    if (u.down_until > now_ms) return false;
    if (u.fails == 0 || now_ms - u.window_start > fail_timeout_ms_) {  // a new window
        u.fails = 0;
        u.window_start = now_ms;
    }
    if (++u.fails < max_fails_) return false;
    u.down_until = now_ms + fail_timeout_ms_;
    u.fails = 0;
    return true;
}

// ---- one relayed connection -------------------------------------------------------------------

constexpr size_t kChunk = 64 * 1024;  // one read (or one splice) at most: the bound per direction

struct Direction {
    int from = -1, to = -1;  // borrowed from the Relay
    std::string held;        // copy: bytes read from `from` that `to` has not taken yet (< 2 chunks)
    size_t held_off = 0;
    Fd pipe_read, pipe_write;  // splice: the pipe in between, made on first use
    size_t in_pipe = 0;        // bytes in it
    uint64_t moved = 0;        // bytes read from `from` so far
    bool eof = false;          // `from` sent its FIN
    bool shut = false;         // and we passed it on: shutdown(to, SHUT_WR)

    // Bytes read and not yet written. A pipe that holds anything counts as full: its capacity
    // is counted in slots, not bytes, so how much more it would take is unknown.
    size_t waiting() const { return held.size() - held_off + (in_pipe ? kChunk : 0); }
    bool finished() const { return eof && waiting() == 0; }
};

struct Relay {
    uint64_t id = 0;
    Fd client, upstream;
    Direction up;    // client → worker: requests
    Direction down;  // worker → client: responses
    pid_t worker = -1;
    int worker_port = 0;
    bool connecting = false;     // connect(2) in progress on `upstream`
    std::string replay;          // every byte the client sent before the first reply
    bool replayable = true;      // replay holds all of them (false once it outgrew kChunk)
    int attempts = 0;            // workers tried
    bool awaiting_verdict = false;  // its worker failed it: is that worker gone? (upstream_lost)
    uint32_t client_events = 0, upstream_events = 0;  // as registered with epoll
    long long last_active = 0;

    // A byte of the worker's answer is on its way to the client: no more retries after this.
    bool replied() const { return down.moved > 0; }
};

namespace {

enum class Io { ok, source_failed, sink_failed };

// BEGIN SOLUTION lab12: back-pressure: read a side only while less than one chunk of what it sent waits for the other side
// A direction reads its source only while it holds less than one chunk that the other side has
// not taken. Otherwise a client that never reads would make the master read the worker's whole
// answer into memory (64 MiB for /bytes?n=67108864, times every such client). (Less than a
// chunk, not nothing: a request that arrives while the connect to the worker is still in
// progress is held without the client leaving the epoll set and coming back.)
bool wants_read(const Relay&, const Direction& d) { return !d.eof && d.waiting() < kChunk; }
// STUB:
// bool wants_read(const Relay&, const Direction& d) { return !d.eof; }  // read whatever comes: memory grows with a slow reader
// END SOLUTION

// Writes what the direction holds to its sink, as far as the sink takes it now.
Io flush(Direction& d) {
    while (d.held_off < d.held.size()) {
        ssize_t n = ::write(d.to, d.held.data() + d.held_off, d.held.size() - d.held_off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno == EAGAIN ? Io::ok : Io::sink_failed;
        d.held_off += static_cast<size_t>(n);
    }
    d.held.clear();  // keeps its capacity: the next slow write reuses it
    d.held_off = 0;
    while (d.in_pipe > 0) {
        ssize_t n = ::splice(d.pipe_read.get(), nullptr, d.to, nullptr, d.in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno == EAGAIN ? Io::ok : Io::sink_failed;
        d.in_pipe -= static_cast<size_t>(n);
    }
    return Io::ok;
}

// One read from the source, then straight on to the sink; what the sink does not take is held
// (and, with back-pressure, the source is not read again until it is taken). One read per
// readiness event: if more is waiting, level-triggered epoll says so again, and we save the
// read that would only have returned EAGAIN. `keep` (the client's bytes before the first
// reply) gets a copy too.
Io copy_once(Direction& d, std::vector<char>& scratch, std::string* keep) {
    ssize_t n = ::read(d.from, scratch.data(), scratch.size());
    if (n < 0) return errno == EAGAIN || errno == EINTR ? Io::ok : Io::source_failed;
    if (n == 0) {
        d.eof = true;
        return Io::ok;
    }
    d.moved += static_cast<uint64_t>(n);
    if (keep) keep->append(scratch.data(), static_cast<size_t>(n));
    size_t sent = 0;
    if (d.waiting() == 0 && d.to >= 0) {  // to < 0: still connecting, so everything is held
        ssize_t w = ::write(d.to, scratch.data(), static_cast<size_t>(n));
        if (w < 0 && errno != EAGAIN && errno != EINTR) return Io::sink_failed;
        sent = w > 0 ? static_cast<size_t>(w) : 0;
    }
    d.held.append(scratch.data() + sent, static_cast<size_t>(n) - sent);
    return Io::ok;
}

// The same with splice(2): socket → pipe → socket; the bytes never enter our memory. The pipe
// is this direction's buffer, and the back-pressure is the same: nothing is read while it holds
// bytes the sink has not taken.
Io splice_once(Direction& d) {
    if (!d.pipe_read) {
        int p[2];
        if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0) {
            log_errno("pipe2");
            return Io::source_failed;
        }
        d.pipe_read.reset(p[0]);
        d.pipe_write.reset(p[1]);
    }
    ssize_t n = ::splice(d.from, nullptr, d.pipe_write.get(), nullptr, kChunk, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n < 0) return errno == EAGAIN || errno == EINTR ? Io::ok : Io::source_failed;
    if (n == 0) {
        d.eof = true;
        return Io::ok;
    }
    d.moved += static_cast<uint64_t>(n);
    d.in_pipe += static_cast<size_t>(n);
    return flush(d);
}

Io pump(Relay& r, Direction& d, bool splice, std::vector<char>& scratch) {
    // The client's bytes stay in user space until the worker has replied: a retry on the next
    // worker must be able to send them again. Everything else may take the splice path.
    bool first_request = &d == &r.up && !r.replied();
    if (splice && !first_request && d.held.empty()) return splice_once(d);
    Io io = copy_once(d, scratch, first_request && r.replayable ? &r.replay : nullptr);
    if (first_request && r.replay.size() > kChunk) {  // an upload: too big to keep for a retry
        r.replayable = false;
        r.replay = std::string();
    }
    return io;
}

}  // namespace

// ---- Relays -----------------------------------------------------------------------------------

Relays::Relays(EventLoop& loop, Cluster& cluster, const RelayOptions& opts, ChooseFn choose)
    : upstreams(opts.max_fails, opts.fail_timeout_ms), loop_(loop), cluster_(cluster), opts_(opts),
      choose_(std::move(choose)), splice_(opts.mode == "splice"), scratch_(kChunk) {}

Relays::~Relays() = default;

void Relays::close(Relay& r) {
    loop_.remove(r.client.get());
    if (r.upstream) loop_.remove(r.upstream.get());
    relays_.erase(r.id);  // destroys r: both sockets and the pipes close here
}

// The lab's choice among the workers that are up: listening, their channel open, their port
// known and not marked down.
Worker* Relays::next_worker() {
    long long now = loop_.now();
    up_.clear();
    for (Worker* w : cluster_.workers())
        if (w->channel && w->listening() && upstreams.up(w->pid, now)) up_.push_back(w);
    return up_.empty() ? nullptr : choose_(up_);
}

void Relays::note_failure(pid_t worker, int port, int error) {
    log_event("upstream-error worker=%d port=%d error=\"%s\"", worker, port, std::strerror(error));
    if (upstreams.fail(worker, port, loop_.now()))
        log_event("down worker=%d port=%d fails=%ld for_ms=%ld", worker, port, opts_.max_fails, opts_.fail_timeout_ms);
}

// A worker that has exited (or whose channel reads end of file: it is exiting) is gone; one that
// merely closed a connection, like a worker draining after /crash, is not.
bool Relays::worker_gone(pid_t pid) {
    Worker* w = cluster_.find_pid(pid);
    if (!w || !w->channel) return true;
    char byte;
    return ::recv(w->channel->fd(), &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

// epoll_ctl only when the interest changes: in the steady state (both sides keeping up) a
// request and its response cost no epoll_ctl at all. A socket with nothing to wait for leaves
// the epoll set: a worker that has sent everything and closed reports EPOLLHUP for as long as
// it is registered, even while we leave its last bytes in the kernel for a slow client.
void Relays::watch(Relay& r, int fd, uint32_t& current, uint32_t want) {
    if (want == current) return;
    Relay* rp = &r;
    bool ok = true;
    if (want == 0) {
        loop_.remove(fd);
    } else if (current != 0) {
        ok = loop_.modify(fd, want);
    } else if (fd == r.client.get()) {
        ok = loop_.add(fd, want, [this, rp](uint32_t ev) { on_client(*rp, ev); });
    } else {
        ok = loop_.add(fd, want, [this, rp](uint32_t ev) { on_upstream(*rp, ev); });
    }
    if (!ok) log_errno("epoll_ctl");
    current = want;
}

void Relays::update_interest(Relay& r) {
    if (r.awaiting_verdict) return watch(r, r.client.get(), r.client_events, 0);
    uint32_t c = (wants_read(r, r.up) ? uint32_t{EPOLLIN} : 0u) | (r.down.waiting() ? uint32_t{EPOLLOUT} : 0u);
    watch(r, r.client.get(), r.client_events, c);
    // EPOLLOUT while connecting (it says when the handshake is over) or while the client's
    // bytes wait to be written; EPOLLIN while the worker's answer is wanted.
    uint32_t u = r.connecting ? uint32_t{EPOLLOUT}
                              : (wants_read(r, r.down) ? uint32_t{EPOLLIN} : 0u) | (r.up.waiting() ? uint32_t{EPOLLOUT} : 0u);
    if (r.upstream) watch(r, r.upstream.get(), r.upstream_events, u);
}

// The client loses: its connection closes before (or in the middle of) an answer. Said in the
// log, because this is the one thing the relay exists to avoid.
void Relays::cut_client(Relay& r, const char* why, int error) {
    log_event("error client cut worker=%d reason=\"%s\" error=\"%s\" attempts=%d", r.worker, why, std::strerror(error),
              r.attempts);
    close(r);
}

// Before any byte reached the client, a worker that refused, reset or vanished costs the client
// nothing: the same bytes go to the next worker. After that, the relay cannot undo what the
// client has seen, and the connection is closed.
void Relays::upstream_failed(Relay& r, int error, bool count_it) {
    if (count_it) note_failure(r.worker, r.worker_port, error);
    bool can_retry = !r.replied() && r.replayable && r.attempts < static_cast<int>(cluster_.size());
    if (!can_retry) return cut_client(r, r.replied() ? "answer cut" : "no retry left", error);
    if (!connect_next(r)) return cut_client(r, "no worker left to try", error);
}

// The worker reset the connection, or closed it without a word after being asked something.
// If it died with our request, the next worker gets the request and the client never knows. If
// it is alive and closed on purpose (a /crash, say), the client is told the same way: its
// connection closes. Which of the two? A dying process's sockets may close a moment before its
// channel does (the kernel closes its fds in order), so a worker that still looks alive is
// looked at again 100 ms later, with both sides of the relay on hold.
void Relays::upstream_lost(Relay& r, int error) {
    if (r.replied()) return cut_client(r, "answer cut", error);
    if (r.up.eof && r.replay.empty()) return close(r);  // the client left without asking
    if (worker_gone(r.worker)) return upstream_failed(r, error, true);
    loop_.remove(r.upstream.get());
    r.upstream.reset();
    r.upstream_events = 0;
    r.up.to = r.down.from = -1;
    r.awaiting_verdict = true;
    update_interest(r);
    uint64_t id = r.id;
    loop_.add_timer(100, [this, id, error] {
        auto it = relays_.find(id);
        if (it == relays_.end()) return;
        Relay& late = *it->second;
        late.awaiting_verdict = false;
        if (worker_gone(late.worker)) return upstream_failed(late, error, true);
        // Alive, and it closed on purpose: its idle timeout for a client that never spoke (a
        // normal end), or a request it would not answer (/crash).
        if (late.replay.empty()) return close(late);
        cut_client(late, "closed by a live worker", error);
    });
}

// Passes on a finished direction (end of file, every byte delivered) as a half-close; when both
// are finished, the relay is over.
bool Relays::finish_directions(Relay& r) {
    if (r.up.finished() && r.down.finished()) {
        close(r);  // close(2) sends the FINs still owed: no shutdown needed
        return true;
    }
    for (Direction* d : {&r.up, &r.down}) {
        if (!d->finished() || d->shut || d->to < 0) continue;
        d->shut = true;
        ::shutdown(d->to, SHUT_WR);  // ENOTCONN if the peer is already gone: nothing to pass on
    }
    return false;
}

void Relays::after_io(Relay& r) {
    r.last_active = loop_.now();
    if (!finish_directions(r)) update_interest(r);
}

void Relays::on_client(Relay& r, uint32_t events) {
    if (events & EPOLLOUT && flush(r.down) != Io::ok) return close(r);  // the client is gone
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        // Not reading (its bytes wait for the worker) yet told of a reset: nothing to save.
        if (!wants_read(r, r.up)) return close(r);
        Io io = pump(r, r.up, splice_, scratch_);
        if (io == Io::source_failed) return close(r);
        if (io == Io::sink_failed) return upstream_lost(r, errno);
    }
    after_io(r);
}

void Relays::on_upstream(Relay& r, uint32_t events) {
    if (r.connecting) {
        // EPOLLOUT alone: the handshake is done. With EPOLLERR or EPOLLHUP it failed; ask why.
        if (events & (EPOLLERR | EPOLLHUP)) {
            int error = ECONNREFUSED;
            socklen_t len = sizeof error;
            getsockopt(r.upstream.get(), SOL_SOCKET, SO_ERROR, &error, &len);
            return upstream_failed(r, error ? error : ECONNREFUSED, true);  // refused: it stopped listening
        }
        if (!(events & EPOLLOUT)) return;
        r.connecting = false;
        r.up.to = r.upstream.get();
    }
    if (events & EPOLLOUT && flush(r.up) != Io::ok) return upstream_lost(r, errno);
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        errno = ECONNRESET;  // what a report of EPOLLERR/EPOLLHUP while we are not reading means
        Io io = wants_read(r, r.down) ? pump(r, r.down, splice_, scratch_) : Io::source_failed;
        int error = io == Io::source_failed ? errno : ECONNRESET;
        if (io == Io::sink_failed) return close(r);  // the client is gone
        // Reset, or closed without a word: a worker that died with our connection, before it
        // had our request or before it answered.
        bool silent_eof = r.down.eof && !r.replied();
        if (io == Io::source_failed || silent_eof) return upstream_lost(r, error);
        if (r.replied() && !r.replay.empty()) r.replay = std::string();  // no retry from now on
    }
    after_io(r);
}

// Connects the relay to the next worker that is up. A refusal (a worker that stopped
// listening) is counted against that worker and the next one is tried at once.
bool Relays::connect_next(Relay& r) {
    if (r.upstream) {
        loop_.remove(r.upstream.get());
        r.upstream.reset();
        r.upstream_events = 0;
    }
    r.up.to = -1;
    r.down.from = -1;
    // What the client sent so far goes again, from the start; nothing came back.
    r.up.held = r.replay;
    r.up.held_off = 0;
    r.up.shut = false;
    r.down.eof = false;
    while (r.attempts < static_cast<int>(cluster_.size())) {
        Worker* w = next_worker();
        if (!w) break;
        ++r.attempts;
        r.worker = w->pid;
        r.worker_port = upstreams.port(w->pid);
        Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        if (!s) {
            log_errno("socket");  // EMFILE: this client is closed, the master serves the rest
            return false;
        }
        int one = 1;
        setsockopt(s.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(static_cast<uint16_t>(r.worker_port));
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int rc = ::connect(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
        if (rc < 0 && errno != EINPROGRESS) {
            note_failure(r.worker, r.worker_port, errno);
            continue;
        }
        r.connecting = rc < 0;
        r.upstream = std::move(s);
        r.down.from = r.upstream.get();
        if (!r.connecting) r.up.to = r.upstream.get();
        update_interest(r);
        return true;
    }
    log_event("error no worker took the connection: closed");
    return false;
}

void Relays::start(Fd client) {
    auto owned = std::make_unique<Relay>();
    Relay& r = *owned;
    r.id = ++last_id_;
    r.client = std::move(client);
    r.up.from = r.client.get();
    r.down.to = r.client.get();
    r.last_active = loop_.now();
    int one = 1;
    setsockopt(r.client.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    watch(r, r.client.get(), r.client_events, EPOLLIN);
    relays_.emplace(r.id, std::move(owned));
    if (!connect_next(r)) return close(r);
    if (!sweeping_) {
        sweeping_ = true;
        loop_.add_timer(250, [this] { sweep_idle(); });
    }
}

// Both sides silent for --relay-timeout ms (a stalled client, a worker that never answers):
// close both, as nginx does after proxy_read_timeout.
void Relays::sweep_idle() {
    long long now = loop_.now();
    std::vector<Relay*> expired;
    for (auto& [id, r] : relays_)
        if (now - r->last_active > opts_.timeout_ms) expired.push_back(r.get());
    for (Relay* r : expired) {
        log_event("relay-timeout worker=%d idle_ms=%lld", r->worker, now - r->last_active);
        close(*r);
    }
    sweeping_ = !relays_.empty();
    if (sweeping_) loop_.add_timer(250, [this] { sweep_idle(); });
}

void Relays::accept_all(int listen_fd) {
    for (int i = 0; i < 128; ++i) {
        Accepted a = accept_client(listen_fd, /*nonblocking=*/true);
        if (a.status == AcceptStatus::none_pending) return;
        if (a.status == AcceptStatus::client) start(std::move(a.fd));
    }
}

void Relays::print_nginx_conf(const std::string& host, int port) {
    std::string servers;
    for (Worker* w : cluster_.workers())
        servers += format("        server 127.0.0.1:%d max_fails=%ld fail_timeout=%lds;\n", upstreams.port(w->pid),
                          opts_.max_fails, (opts_.fail_timeout_ms + 999) / 1000);
    std::string conf = format(
        "# nginx in front of lab12's workers (pid %d), instead of its master.\n"
        "# The ports are the ones the kernel gave these workers: a restarted worker gets another.\n"
        "# Save it: ./lab12 --print-nginx-conf | sed -u 1d > lab12-nginx.conf (the first line is the ready line)\n"
        "# Run it:  mkdir -p nginx-tmp && nginx -p \"$PWD/nginx-tmp/\" -e stderr -c \"$PWD/lab12-nginx.conf\"\n"
        "# nginx listens on the port after lab12's; change `listen` if that one is taken.\n"
        "daemon off;\n"
        "worker_processes 1;\n"
        "pid nginx.pid;\n"
        "error_log stderr;\n"
        "events { worker_connections 4096; }\n"
        "http {\n"
        "    access_log off;\n"
        "    client_body_temp_path body; proxy_temp_path proxy;\n"
        "    fastcgi_temp_path fastcgi; uwsgi_temp_path uwsgi; scgi_temp_path scgi;\n"
        "    upstream lab12_workers {\n"
        "%s"
        "        keepalive 32;\n"
        "    }\n"
        "    server {\n"
        "        listen %s:%d;\n"
        "        location / {\n"
        "            proxy_pass http://lab12_workers;\n"
        "            proxy_http_version 1.1;\n"
        "            proxy_set_header Connection \"\";\n"
        "            proxy_next_upstream error timeout;\n"
        "        }\n"
        "    }\n"
        "}\n",
        getpid(), servers.c_str(), host.c_str(), port);
    std::fwrite(conf.data(), 1, conf.size(), stdout);
    std::fflush(stdout);
}
