// lab12_proxy — workers listen on ports of their own; the master accepts on the public port and relays every byte of each connection to the next worker in turn.
// base: lab07
// Observe: `ss -ltn` shows N+1 listeners; 1,000 /sleep clients cost the master ~2,000 fds (lab07's: ~120 at most); kill -9 workers under ab: no request fails.
// Run: make lab12 && ./lab12 --workers 2 [--relay splice], then: curl -s localhost:8000/pid; ./lab12 --print-nginx-conf puts nginx in front of the same workers.
// Mirrors the material's 代理转发 (004: a proxy costs two fds per connection), 001's workers on random ports, and 000's nginx `upstream`.
// stage: relaying proxy, the master connects to a worker per client and copies bytes both ways

#include "cli.hpp"
#include "cluster.hpp"
#include "log.hpp"
#include "master_worker.hpp"
#include "net.hpp"
#include "process.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <exception>
#include <fcntl.h>
#include <memory>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <unordered_map>
#include <vector>

namespace {

struct Options {
    ServerOptions server;
    ConnectionLimits limits;
    long shutdown_timeout_ms = 10000;
    std::string relay = "copy";     // copy: read(2)/write(2) through a buffer; splice: splice(2) through a pipe
    long relay_timeout_ms = 60000;  // nginx's proxy_read_timeout
    long max_fails = 1;             // nginx's max_fails and fail_timeout, with their defaults
    long fail_timeout_ms = 10000;
    bool print_nginx_conf = false;
};

// ---- the worker ----------------------------------------------------------------------------
// lab08's worker, with one change: it opens a listening socket of its own on 127.0.0.1, on a
// port the kernel picks (the material's random ports), and tells the master which one.

struct Serving {
    WorkerRuntime& rt;
    Fd listener{};
    int exit_code = 0;
    bool finished = false;  // drained: leave the loop and exit with exit_code
};

// The material's `childServer.listen(randomPort); process.send(port + ' ready')`, without the
// chance of two workers drawing the same number: port 0 lets the kernel choose a free one.
void serve_own_port(Serving& s) {
    ListenOptions lo;
    lo.host = "127.0.0.1";  // only the master (or an nginx on this machine) talks to a worker
    lo.port = 0;
    lo.nonblocking = true;
    s.listener = listen_or_die(lo);
    int fd = s.listener.get();
    if (!s.rt.loop.add(fd, EPOLLIN, [&s, fd](uint32_t) { s.rt.http.accept_all(fd); })) die_errno("epoll_ctl(listener)");
    JsonObject listening = msg("act", "listening");
    listening.set("port", local_port(fd));
    s.rt.master.send(listening);
}

// Node's server.close(). From now on a connection to this worker's port is refused: that is
// what the master sees of a dying worker, and what --max-fails counts.
void stop_accepting(Serving& s) {
    if (!s.listener) return;
    s.rt.loop.remove(s.listener.get());
    s.listener.reset();
}

// lab08's graceful exit: stop accepting, answer what is in flight, exit when none is left.
void exit_when_drained(Serving& s, int code) {
    if (s.rt.http.draining()) return;
    s.exit_code = code;
    stop_accepting(s);
    s.rt.http.drain([&s] {
        s.finished = true;
        s.rt.loop.stop();
    });
    log_event("drain waiting=%zu", s.rt.http.connection_count());
}

void on_uncaught(Serving& s, const char* what) {
    log_event("uncaught error=\"%s\"", what);
    exit_when_drained(s, 1);
}

int run_worker(const Options& opts) {
    WorkerRuntime rt(opts.limits);
    Serving s{.rt = rt};
    rt.loop.on_signal(SIGTERM, [&s] { exit_when_drained(s, 0); });
    rt.master.send(msg("act", "online"));
    serve_own_port(s);
    while (!s.finished) {
        try {
            rt.loop.run();
        } catch (const std::exception& e) {
            on_uncaught(s, e.what());
        } catch (...) {
            on_uncaught(s, "unknown exception");
        }
    }
    log_event("drained code=%d", s.exit_code);
    rt.master.flush_blocking();
    return s.exit_code;
}

// ---- the master: what it knows of each worker's port -----------------------------------------

// One worker seen as an upstream server, as nginx sees each `server` line of an `upstream`.
struct Upstream {
    int port = 0;
    long fails = 0;               // failed attempts within the current --fail-timeout window
    long long window_start = 0;   // when the first of those failed
    long long down_until = 0;     // not tried before this (monotonic ms)
};

// ---- the master: one relayed connection ------------------------------------------------------
//
// Two sockets, two directions. Each direction moves bytes from one socket to the other; what the
// other side has not taken yet is held, and while a chunk's worth is held the direction stops
// reading its source (back-pressure, wants_read). So a client that never reads stops the
// worker's bytes in the kernel's socket buffers, not in the master's memory: at most two chunks
// per direction, whatever the size of the answer.
//
// Ownership: a Relay owns both sockets and its pipes; Master::relays owns every Relay. The loop
// holds the two fds only while the Relay lives (close_relay removes them first).

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

struct Master {
    const Options& opts;
    EventLoop& loop;
    Cluster& cluster;
    Fd listener;
    int port = 0;
    bool ready = false;
    bool splice = false;
    std::unordered_map<pid_t, Upstream> upstreams{};  // by worker pid; filled by `listening`
    size_t next = 0;                                // round-robin position
    std::unordered_map<uint64_t, std::unique_ptr<Relay>> relays{};
    uint64_t last_id = 0;
    std::vector<char> scratch = std::vector<char>(kChunk);  // every copy goes through this one buffer
    bool sweeping = false;
};

void close_relay(Master& m, Relay& r) {
    m.loop.remove(r.client.get());
    if (r.upstream) m.loop.remove(r.upstream.get());
    m.relays.erase(r.id);  // destroys r: both sockets and the pipes close here
}

// ---- choosing a worker: round-robin over the ports that are up (nginx's default balancing) ----

bool is_up(const Master& m, const Worker& w, long long now) {
    auto it = m.upstreams.find(w.pid);
    return w.channel && w.listening() && it != m.upstreams.end() && it->second.port > 0 && it->second.down_until <= now;
}

Worker* next_worker(Master& m) {
    std::vector<Worker*> workers = m.cluster.workers();
    long long now = m.loop.now();
    for (size_t tried = 0; tried < workers.size(); ++tried) {
        Worker* w = workers[m.next % workers.size()];
        m.next = (m.next + 1) % workers.size();
        if (is_up(m, *w, now)) return w;
    }
    return nullptr;
}

// nginx's max_fails/fail_timeout: --max-fails failed attempts within --fail-timeout ms mark the
// port down for --fail-timeout ms. 0 turns the accounting off.
void note_failure(Master& m, pid_t worker, int port, int error) {
    log_event("upstream-error worker=%d port=%d error=\"%s\"", worker, port, std::strerror(error));
    auto it = m.upstreams.find(worker);
    if (m.opts.max_fails == 0 || it == m.upstreams.end() || it->second.port != port) return;
    Upstream& u = it->second;
    long long now = m.loop.now();
    if (u.down_until > now) return;  // already down: relays that chose it earlier report it too
    if (now - u.window_start > m.opts.fail_timeout_ms) {
        u.fails = 0;
        u.window_start = now;
    }
    if (++u.fails >= m.opts.max_fails) {
        u.down_until = now + m.opts.fail_timeout_ms;
        log_event("down worker=%d port=%d fails=%ld for_ms=%ld", worker, port, u.fails, m.opts.fail_timeout_ms);
        u.fails = 0;
    }
}

// A worker that has exited (or whose channel reads end of file: it is exiting) is gone; one that
// merely closed a connection, like a worker draining after /crash, is not.
bool worker_gone(Master& m, pid_t pid) {
    for (Worker* w : m.cluster.workers()) {
        if (w->pid != pid) continue;
        if (!w->channel) return true;
        char byte;
        return ::recv(w->channel->fd(), &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
    }
    return true;
}

// ---- the relay's event handling --------------------------------------------------------------

void on_client(Master& m, Relay& r, uint32_t events);
void on_upstream(Master& m, Relay& r, uint32_t events);
void update_interest(Master& m, Relay& r);
void upstream_lost(Master& m, Relay& r, int error);

// BEGIN SOLUTION: back-pressure: read a side only while less than one chunk of what it sent waits for the other side
// A direction reads its source only while it holds less than one chunk that the other side has
// not taken. Otherwise a client that never reads would make the master read the worker's whole
// answer into memory (64 MiB for /bytes?n=67108864, times every such client). (Less than a
// chunk, not nothing: a request that arrives while the connect to the worker is still in
// progress is held without the client leaving the epoll set and coming back.)
bool wants_read(const Relay&, const Direction& d) { return !d.eof && d.waiting() < kChunk; }
// STUB:
// bool wants_read(const Relay&, const Direction& d) { return !d.eof; }  // read whatever comes: memory grows with a slow reader
// END SOLUTION

// epoll_ctl only when the interest changes: in the steady state (both sides keeping up) a
// request and its response cost no epoll_ctl at all. A socket with nothing to wait for leaves
// the epoll set: a worker that has sent everything and closed reports EPOLLHUP for as long as
// it is registered, even while we leave its last bytes in the kernel for a slow client.
void watch(Master& m, Relay& r, int fd, uint32_t& current, uint32_t want) {
    if (want == current) return;
    Relay* rp = &r;
    Master* mp = &m;
    bool ok = true;
    if (want == 0) {
        m.loop.remove(fd);
    } else if (current != 0) {
        ok = m.loop.modify(fd, want);
    } else if (fd == r.client.get()) {
        ok = m.loop.add(fd, want, [mp, rp](uint32_t ev) { on_client(*mp, *rp, ev); });
    } else {
        ok = m.loop.add(fd, want, [mp, rp](uint32_t ev) { on_upstream(*mp, *rp, ev); });
    }
    if (!ok) log_errno("epoll_ctl");
    current = want;
}

void update_interest(Master& m, Relay& r) {
    if (r.awaiting_verdict) return watch(m, r, r.client.get(), r.client_events, 0);
    uint32_t c = (wants_read(r, r.up) ? uint32_t{EPOLLIN} : 0u) | (r.down.waiting() ? uint32_t{EPOLLOUT} : 0u);
    watch(m, r, r.client.get(), r.client_events, c);
    // EPOLLOUT while connecting (it says when the handshake is over) or while the client's
    // bytes wait to be written; EPOLLIN while the worker's answer is wanted.
    uint32_t u = r.connecting ? uint32_t{EPOLLOUT}
                              : (wants_read(r, r.down) ? uint32_t{EPOLLIN} : 0u) | (r.up.waiting() ? uint32_t{EPOLLOUT} : 0u);
    if (r.upstream) watch(m, r, r.upstream.get(), r.upstream_events, u);
}

enum class Io { ok, source_failed, sink_failed };

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

Io pump(Master& m, Relay& r, Direction& d) {
    // The client's bytes stay in user space until the worker has replied: a retry on the next
    // worker must be able to send them again. Everything else may take the splice path.
    bool first_request = &d == &r.up && !r.replied();
    if (m.splice && !first_request && d.held.empty()) return splice_once(d);
    Io io = copy_once(d, m.scratch, first_request && r.replayable ? &r.replay : nullptr);
    if (first_request && r.replay.size() > kChunk) {  // an upload: too big to keep for a retry
        r.replayable = false;
        r.replay = std::string();
    }
    return io;
}

bool connect_next(Master& m, Relay& r);

// The client loses: its connection closes before (or in the middle of) an answer. Said in the
// log, because this is the one thing the relay exists to avoid.
void cut_client(Master& m, Relay& r, const char* why, int error) {
    log_event("error client cut worker=%d reason=\"%s\" error=\"%s\" attempts=%d", r.worker, why, std::strerror(error),
              r.attempts);
    close_relay(m, r);
}

// Before any byte reached the client, a worker that refused, reset or vanished costs the client
// nothing: the same bytes go to the next worker. After that, the relay cannot undo what the
// client has seen, and the connection is closed.
void upstream_failed(Master& m, Relay& r, int error, bool count_it) {
    if (count_it) note_failure(m, r.worker, r.worker_port, error);
    bool can_retry = !r.replied() && r.replayable && r.attempts < static_cast<int>(m.cluster.size());
    if (!can_retry) return cut_client(m, r, r.replied() ? "answer cut" : "no retry left", error);
    if (!connect_next(m, r)) return cut_client(m, r, "no worker left to try", error);
}

// The worker reset the connection, or closed it without a word after being asked something.
// If it died with our request, the next worker gets the request and the client never knows. If
// it is alive and closed on purpose (a /crash, say), the client is told the same way: its
// connection closes. Which of the two? A dying process's sockets may close a moment before its
// channel does (the kernel closes its fds in order), so a worker that still looks alive is
// looked at again 100 ms later, with both sides of the relay on hold.
void upstream_lost(Master& m, Relay& r, int error) {
    if (r.replied()) return cut_client(m, r, "answer cut", error);
    if (r.up.eof && r.replay.empty()) return close_relay(m, r);  // the client left without asking
    if (worker_gone(m, r.worker)) return upstream_failed(m, r, error, true);
    m.loop.remove(r.upstream.get());
    r.upstream.reset();
    r.upstream_events = 0;
    r.up.to = r.down.from = -1;
    r.awaiting_verdict = true;
    update_interest(m, r);
    uint64_t id = r.id;
    m.loop.add_timer(100, [&m, id, error] {
        auto it = m.relays.find(id);
        if (it == m.relays.end()) return;
        Relay& late = *it->second;
        late.awaiting_verdict = false;
        if (worker_gone(m, late.worker)) return upstream_failed(m, late, error, true);
        // Alive, and it closed on purpose: its idle timeout for a client that never spoke (a
        // normal end), or a request it would not answer (/crash).
        if (late.replay.empty()) return close_relay(m, late);
        cut_client(m, late, "closed by a live worker", error);
    });
}

// Passes on a finished direction (end of file, every byte delivered) as a half-close; when both
// are finished, the relay is over.
bool finish_directions(Master& m, Relay& r) {
    if (r.up.finished() && r.down.finished()) {
        close_relay(m, r);  // close(2) sends the FINs still owed: no shutdown needed
        return true;
    }
    for (Direction* d : {&r.up, &r.down}) {
        if (!d->finished() || d->shut || d->to < 0) continue;
        d->shut = true;
        ::shutdown(d->to, SHUT_WR);  // ENOTCONN if the peer is already gone: nothing to pass on
    }
    return false;
}

void after_io(Master& m, Relay& r) {
    r.last_active = m.loop.now();
    if (!finish_directions(m, r)) update_interest(m, r);
}

void on_client(Master& m, Relay& r, uint32_t events) {
    if (events & EPOLLOUT && flush(r.down) != Io::ok) return close_relay(m, r);  // the client is gone
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        // Not reading (its bytes wait for the worker) yet told of a reset: nothing to save.
        if (!wants_read(r, r.up)) return close_relay(m, r);
        Io io = pump(m, r, r.up);
        if (io == Io::source_failed) return close_relay(m, r);
        if (io == Io::sink_failed) return upstream_lost(m, r, errno);
    }
    after_io(m, r);
}

void on_upstream(Master& m, Relay& r, uint32_t events) {
    if (r.connecting) {
        // EPOLLOUT alone: the handshake is done. With EPOLLERR or EPOLLHUP it failed; ask why.
        if (events & (EPOLLERR | EPOLLHUP)) {
            int error = ECONNREFUSED;
            socklen_t len = sizeof error;
            getsockopt(r.upstream.get(), SOL_SOCKET, SO_ERROR, &error, &len);
            return upstream_failed(m, r, error ? error : ECONNREFUSED, true);  // refused: it stopped listening
        }
        if (!(events & EPOLLOUT)) return;
        r.connecting = false;
        r.up.to = r.upstream.get();
    }
    if (events & EPOLLOUT && flush(r.up) != Io::ok) return upstream_lost(m, r, errno);
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        errno = ECONNRESET;  // what a report of EPOLLERR/EPOLLHUP while we are not reading means
        Io io = wants_read(r, r.down) ? pump(m, r, r.down) : Io::source_failed;
        int error = io == Io::source_failed ? errno : ECONNRESET;
        if (io == Io::sink_failed) return close_relay(m, r);  // the client is gone
        // Reset, or closed without a word: a worker that died with our connection, before it
        // had our request or before it answered.
        bool silent_eof = r.down.eof && !r.replied();
        if (io == Io::source_failed || silent_eof) return upstream_lost(m, r, error);
        if (r.replied() && !r.replay.empty()) r.replay = std::string();  // no retry from now on
    }
    after_io(m, r);
}

// Connects the relay to the next worker that is up. A refusal (a worker that stopped
// listening) is counted against that worker and the next one is tried at once.
bool connect_next(Master& m, Relay& r) {
    if (r.upstream) {
        m.loop.remove(r.upstream.get());
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
    while (r.attempts < static_cast<int>(m.cluster.size())) {
        Worker* w = next_worker(m);
        if (!w) break;
        ++r.attempts;
        r.worker = w->pid;
        r.worker_port = m.upstreams[w->pid].port;
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
            note_failure(m, r.worker, r.worker_port, errno);
            continue;
        }
        r.connecting = rc < 0;
        r.upstream = std::move(s);
        r.down.from = r.upstream.get();
        if (!r.connecting) r.up.to = r.upstream.get();
        update_interest(m, r);
        return true;
    }
    log_event("error no worker took the connection: closed");
    return false;
}

void sweep_idle(Master& m);

void relay_client(Master& m, Fd client) {
    auto owned = std::make_unique<Relay>();
    Relay& r = *owned;
    r.id = ++m.last_id;
    r.client = std::move(client);
    r.up.from = r.client.get();
    r.down.to = r.client.get();
    r.last_active = m.loop.now();
    int one = 1;
    setsockopt(r.client.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    watch(m, r, r.client.get(), r.client_events, EPOLLIN);
    m.relays.emplace(r.id, std::move(owned));
    if (!connect_next(m, r)) return close_relay(m, r);
    if (!m.sweeping) {
        m.sweeping = true;
        m.loop.add_timer(250, [&m] { sweep_idle(m); });
    }
}

// Both sides silent for --relay-timeout ms (a stalled client, a worker that never answers):
// close both, as nginx does after proxy_read_timeout.
void sweep_idle(Master& m) {
    long long now = m.loop.now();
    std::vector<Relay*> expired;
    for (auto& [id, r] : m.relays)
        if (now - r->last_active > m.opts.relay_timeout_ms) expired.push_back(r.get());
    for (Relay* r : expired) {
        log_event("relay-timeout worker=%d idle_ms=%lld", r->worker, now - r->last_active);
        close_relay(m, *r);
    }
    m.sweeping = !m.relays.empty();
    if (m.sweeping) m.loop.add_timer(250, [&m] { sweep_idle(m); });
}

void accept_and_relay(Master& m) {
    for (int i = 0; i < 128; ++i) {  // bounded, so the relays already running get their turn
        Accepted a = accept_client(m.listener.get(), /*nonblocking=*/true);
        if (a.status == AcceptStatus::none_pending) return;
        if (a.status == AcceptStatus::client) relay_client(m, std::move(a.fd));
    }
}

// ---- the master: workers come and go ----------------------------------------------------------

// 000's nginx demo, over the ports these workers have now (a replaced worker gets a new one).
std::string nginx_conf(Master& m) {
    std::string servers;
    for (Worker* w : m.cluster.workers())
        servers += format("        server 127.0.0.1:%d max_fails=%ld fail_timeout=%lds;\n", m.upstreams[w->pid].port,
                          m.opts.max_fails, (m.opts.fail_timeout_ms + 999) / 1000);
    return format(
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
        getpid(), servers.c_str(), m.opts.server.host.c_str(), m.port + 1);
}

Worker* start_worker(Master& m, int slot) {
    Worker* w = m.cluster.fork_worker(slot);
    if (w) return w;
    // fork or socketpair failed (out of processes or descriptors): serve with the workers we
    // have and try this slot again in a second.
    log_event("error fork failed slot=%d: retrying in 1000 ms", slot);
    m.loop.add_timer(1000, [&m, slot] {
        if (!m.cluster.shutting_down()) start_worker(m, slot);
    });
    return nullptr;
}

void on_worker_exit(Master& m, const Worker& old) {
    m.upstreams.erase(old.pid);
    if (m.cluster.shutting_down()) return;
    Worker* w = start_worker(m, old.slot);
    log_event("restart worker=%d replacement=%d", old.pid, w ? w->pid : -1);
}

// `listening port=P`: the worker's port, first or new (a replacement's). When every initial
// worker has one, the master starts accepting and prints the ready line.
void on_worker_message(Master& m, Worker& w, const Message& message) {
    if (message.body.get_string("act") != "listening") return;
    m.upstreams[w.pid] = Upstream{.port = static_cast<int>(message.body.get_int("port"))};
    if (m.ready || m.cluster.listening_count() < static_cast<size_t>(m.opts.server.workers)) return;
    m.ready = true;
    if (!m.loop.add(m.listener.get(), EPOLLIN, [&m](uint32_t) { accept_and_relay(m); })) die_errno("epoll_ctl(listener)");
    print_ready("lab12", m.opts.server.host, m.port);
    if (m.opts.print_nginx_conf) {  // after the ready line, which stays the first line of stdout
        std::string conf = nginx_conf(m);
        std::fwrite(conf.data(), 1, conf.size(), stdout);
        std::fflush(stdout);
    }
}

int run_master(const Options& opts, char** argv) {
    EventLoop loop;
    Cluster cluster(loop, argv);
    ListenOptions lo;
    lo.host = opts.server.host;
    lo.port = opts.server.port;
    lo.nonblocking = true;
    Master m{.opts = opts, .loop = loop, .cluster = cluster, .listener = listen_or_die(lo)};
    m.port = local_port(m.listener.get());
    m.splice = opts.relay == "splice";

    cluster.on_message([&m](Worker& w, Message& message) { on_worker_message(m, w, message); });
    cluster.on_exit([&m](const Worker& w, int) { on_worker_exit(m, w); });
    // Before the first fork, so a SIGTERM that comes while workers start still stops them all.
    // On shutdown the public port closes first; relays in flight run until their workers have
    // drained and closed them.
    stop_cluster_on_signals(loop, cluster, opts.shutdown_timeout_ms, {}, [&m] {
        if (m.ready) m.loop.remove(m.listener.get());
        m.listener.reset();
    });

    for (int slot = 0; slot < opts.server.workers; ++slot) start_worker(m, slot);
    loop.run();
    log_event("shutdown complete code=0");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    bool worker = is_worker_process();
    init_process(worker ? "worker" : "master");
    Options opts;
    Cli cli("lab12", "Relaying proxy: workers listen on ports of their own; the master accepts on the public port "
                     "and relays each connection to the next worker in turn.");
    add_server_options(cli, opts.server, /*with_workers=*/true);
    add_connection_options(cli, opts.limits);
    cli.choice("relay", &opts.relay, {"copy", "splice"},
               "how the master moves bytes: read/write through a buffer, or splice(2) through a pipe");
    cli.integer("relay-timeout", &opts.relay_timeout_ms, 1, 3600000,
                "ms a relayed connection may pass no byte either way before both sides are closed");
    cli.integer("max-fails", &opts.max_fails, 0, 1000000,
                "failed attempts on a worker within --fail-timeout that mark it down (0: never)");
    cli.integer("fail-timeout", &opts.fail_timeout_ms, 1, 3600000, "ms: the window of --max-fails, and how long a worker stays down");
    cli.integer("shutdown-timeout", &opts.shutdown_timeout_ms, 1, 3600000,
                "ms the master waits for workers to drain on SIGINT/SIGTERM before SIGKILL");
    cli.flag("print-nginx-conf", &opts.print_nginx_conf,
             "once every worker listens, print an nginx configuration with an upstream over their ports");
    cli.parse(argc, argv);
    return worker ? run_worker(opts) : run_master(opts, argv);
}
