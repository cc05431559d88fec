// lab06_thundering_herd — N workers wait for connections on one port, in one of five ways, and count every wakeup in shared memory.
// base: lab05
// Observe: kill -USR1 <master pid> prints a per-worker table. The herd is in the `sleeps` column (the kernel counts every wakeup): --mode epoll ~4.3 per connection with 4 workers, accept ~1.0; epoll's user-space `wakeups` stay near 1.00 (the kernel re-checks the socket before waking user space).
// Run: make lab06 && ./lab06 --workers 4 --mode epoll, then: for i in $(seq 200); do curl -s localhost:8000/ >/dev/null; done; kill -USR1 <pid from the ready line>
// Mirrors the material's 惊群 (thundering herd) of workers competing to accept on one shared handle, and nginx's fixes (accept_mutex, EPOLLEXCLUSIVE, reuseport).
// stage: thundering herd, count the wakeups of N workers sharing one socket, and the fixes

#include "cli.hpp"
#include "cluster.hpp"
#include "event_loop.hpp"
#include "http_server.hpp"
#include "log.hpp"
#include "master_worker.hpp"
#include "net.hpp"
#include "process.hpp"
#include "wakeup_counters.hpp"

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <fcntl.h>
#include <new>
#include <sys/epoll.h>
#include <thread>
#include <unistd.h>

namespace {

struct Options {
    ServerOptions server;
    ConnectionLimits limits;
    std::string mode = "epoll";
    long mutex_delay_ms = 500;  // nginx's accept_mutex_delay
};

// ------------------------------------------------------------------- the shared counters

constexpr int kMaxWorkers = 256;  // --workers allows no more

// The memory every process of the lab maps (a memfd: common/wakeup_counters.hpp says why): the
// accept lock of mutex mode and each worker's counters.
struct Shared {
    std::atomic<std::int32_t> accept_lock{0};  // mutex mode: the holder's pid, 0 when free
    WakeupCounters workers[kMaxWorkers];
};

Shared* map_shared(int memfd) { return static_cast<Shared*>(map_shared_memory(memfd, sizeof(Shared))); }

// ------------------------------------------------------------------------------------- worker

// This worker's side of the experiment.
struct Herd {
    std::string mode;
    long mutex_delay_ms = 500;
    Fd listener;                 // the shared socket, or (reuseport) one of its own
    Shared* shared = nullptr;
    WakeupCounters* mine = nullptr;
    Fd from_acceptor;            // accept mode: connections the acceptor thread took
};

// Every mode but accept ends here when its epoll reports the listener readable: that report is
// one wakeup; if another process took the connection first, accept finds nothing and the
// wakeup was wasted.
void release_accept_lock(Herd& h, WorkerRuntime& rt);

void on_wakeup(Herd& h, WorkerRuntime& rt) {
    h.mine->woken(static_cast<std::uint64_t>(rt.http.accept_all(h.listener.get())));
    if (h.mode == "mutex") release_accept_lock(h, rt);
}

void watch_listener(Herd& h, WorkerRuntime& rt, uint32_t events) {
    if (!rt.loop.add(h.listener.get(), events, [&h, &rt](uint32_t) { on_wakeup(h, rt); }))
        die_errno("epoll_ctl(listener)");
}

void try_accept_lock(Herd& h, WorkerRuntime& rt);

// BEGIN SOLUTION: mutex mode: only the holder of the shared accept lock has the listener in its epoll set (nginx's accept_mutex)
// The lock is one word in the shared page: 0 when free, else the holder's pid (nginx's ngx_shmtx,
// an atomic compare-and-swap). It never blocks: a worker that finds it taken goes on serving its
// connections and tries again --accept-mutex-delay ms later.
void try_accept_lock(Herd& h, WorkerRuntime& rt) {
    std::int32_t expected = 0;
    if (h.shared->accept_lock.compare_exchange_strong(expected, self_pid())) {
        watch_listener(h, rt, EPOLLIN);  // the holder alone is woken by a new connection
        return;
    }
    h.mine->lock_polls.fetch_add(1, std::memory_order_relaxed);
    rt.loop.add_timer(h.mutex_delay_ms, [&h, &rt] { try_accept_lock(h, rt); });
}

// The holder has taken what was waiting: it stops watching, frees the lock, and competes for it
// again on its next turn of the loop, like nginx (so at low load it usually wins it back).
void release_accept_lock(Herd& h, WorkerRuntime& rt) {
    rt.loop.remove(h.listener.get());
    h.shared->accept_lock.store(0);
    rt.loop.add_timer(0, [&h, &rt] { try_accept_lock(h, rt); });
}
// STUB:
// void try_accept_lock(Herd& h, WorkerRuntime& rt) { watch_listener(h, rt, EPOLLIN); }  // no lock: everyone watches
// void release_accept_lock(Herd&, WorkerRuntime&) {}
// END SOLUTION

// accept mode: a thread that does nothing but block in accept(2), like each process of a
// prefork server (Apache prefork, lab02). The loop cannot block in accept itself, it has
// connections to serve, so the thread passes what it gets through a pipe, one int per fd.
void acceptor_thread(int listen_fd, int to_loop, WakeupCounters* mine) {
    mine->tid.store(gettid());  // this thread, not the loop's, is the one that sleeps in accept
    for (;;) {
        Accepted a = accept_client(listen_fd, /*nonblocking=*/true);  // the LISTENER blocks: the new socket must not
        mine->woken(a.status == AcceptStatus::client ? 1 : 0);
        if (a.status != AcceptStatus::client) continue;
        int fd = a.fd.release();  // ownership goes through the pipe to the loop
        if (write(to_loop, &fd, sizeof fd) != static_cast<ssize_t>(sizeof fd)) close(fd);
    }
}

void start_acceptor(Herd& h, WorkerRuntime& rt) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) die_errno("pipe2");
    h.from_acceptor.reset(p[0]);
    if (!set_nonblocking(p[0])) die_errno("fcntl(O_NONBLOCK)");
    int from = p[0];
    rt.loop.add(from, EPOLLIN, [&rt, from](uint32_t) {
        int fds[64];
        ssize_t n = read(from, fds, sizeof fds);  // 4-byte writes are atomic: never half an fd
        for (ssize_t i = 0; i < n / static_cast<ssize_t>(sizeof(int)); ++i) rt.http.adopt(Fd(fds[i]));
    });
    // The thread owns the write end for the life of the process. Wait until it has said which
    // thread it is, so that every table reads the sleeps of the thread that waits in accept.
    h.mine->tid.store(0);
    std::thread(acceptor_thread, h.listener.get(), p[1], h.mine).detach();
    while (h.mine->tid.load() == 0) std::this_thread::yield();
}

// How this worker waits for connections: the stage's five answers.
void serve_listener(Herd& h, WorkerRuntime& rt, Fd received, const Options& opts) {
    if (!h.mine) die("message cmd=server came before cmd=stats");  // the channel keeps order: a bug
    if (h.mode == "reuseport") {
        // Its own socket on the shared port: the kernel picks a socket per connection by a hash
        // of the addresses, so each connection wakes the one worker whose queue it lands in.
        ListenOptions lo;
        lo.host = opts.server.host;
        lo.port = received ? local_port(received.get()) : 0;
        lo.nonblocking = true;
        lo.reuseport = true;
        h.listener = listen_or_die(lo);
    } else {
        if (!received) die("message cmd=server carried no socket");
        h.listener = std::move(received);
    }
    h.mine->tid.store(gettid());
    if (h.mode == "accept") start_acceptor(h, rt);
    else if (h.mode == "epoll" || h.mode == "reuseport") watch_listener(h, rt, EPOLLIN);
    else if (h.mode == "exclusive") watch_listener(h, rt, EPOLLIN | EPOLLEXCLUSIVE);
    else if (h.mode == "mutex") try_accept_lock(h, rt);
    JsonObject listening = msg("act", "listening");
    listening.set("port", local_port(h.listener.get()));
    rt.master.send(listening);
}

int run_worker(const Options& opts) {
    WorkerRuntime rt(opts.limits);
    signal(SIGUSR1, SIG_IGN);  // the table is the master's: `pkill -USR1 lab06` must not kill workers
    Herd h;
    h.mode = opts.mode;
    h.mutex_delay_ms = opts.mutex_delay_ms;
    rt.master.on_message([&](Message& m) {
        std::string cmd = m.body.get_string("cmd");
        if (cmd == "stats") {
            if (!m.fd) die("message cmd=stats carried no memory");
            h.shared = map_shared(m.fd.get());  // the mapping outlives the fd, which closes here
            h.mine = &h.shared->workers[std::clamp<std::int64_t>(m.body.get_int("slot"), 0, kMaxWorkers - 1)];
        }
        if (cmd == "server") serve_listener(h, rt, std::move(m.fd), opts);
    });
    return rt.run();
}

// ------------------------------------------------------------------------------------- master

// The per-worker table (common/wakeup_counters.cpp), on stdout so it can be piped and read by tests.
void print_table(const Shared& s, size_t slots, const Options& opts, const char* when) {
    std::fputs(wakeup_table(s.workers, slots, opts.mode, when).c_str(), stdout);
    std::fflush(stdout);
}

int run_master(const Options& opts, char** argv) {
    EventLoop loop;
    Cluster cluster(loop, argv);
    ListenOptions lo;
    lo.host = opts.server.host;
    lo.port = opts.server.port;
    // O_NONBLOCK belongs to the open file that every process shares: blocking for accept mode
    // (its threads sleep in accept), non-blocking for every mode that waits in epoll.
    lo.nonblocking = opts.mode != "accept";
    // reuseport: the master only holds the port (bound, not listening, so the kernel never
    // queues a connection on it); each worker binds and listens on its own socket. The master's
    // bind is exclusive (SO_REUSEPORT is set only after it): a second lab06 on this port fails
    // with EADDRINUSE instead of joining our group and sharing our connections.
    lo.reuseport = lo.bind_only = lo.reuseport_owner = opts.mode == "reuseport";
    Fd listener = listen_or_die(lo);
    int port = local_port(listener.get());

    // The shared page, created before any worker exists.
    Fd memfd = create_shared_memory("lab06-counters", sizeof(Shared));
    Shared* shared = new (map_shared(memfd.get())) Shared();

    size_t wanted = static_cast<size_t>(opts.server.workers);
    bool ready = false;
    int exit_code = 0;
    cluster.on_message([&](Worker&, Message&) {
        if (ready || cluster.listening_count() < wanted) return;
        ready = true;
        print_ready("lab06", opts.server.host, port);
    });
    cluster.on_exit([&](const Worker& w, int) {
        // A worker that died holding the accept lock would hold it forever: the master frees it,
        // as nginx's master does (ngx_shmtx_force_unlock) when it reaps a worker.
        std::int32_t holder = w.pid;
        if (shared->accept_lock.compare_exchange_strong(holder, 0))
            log_event("unlock accept-lock worker=%d reason=exit", w.pid);
        if (cluster.size() > 0 || cluster.shutting_down()) return;
        log_event("no workers left: exiting");  // no restart yet (lab08)
        print_table(*shared, wanted, opts, "exit");
        exit_code = 1;
        loop.stop();
    });
    loop.on_signal(SIGUSR1, [&] { print_table(*shared, wanted, opts, "SIGUSR1"); });

    // Before the first fork: a SIGINT/SIGTERM from now on, even in the middle of start-up, is a
    // clean shutdown (exit 0, every worker reaped) instead of the default death by the signal.
    // The last table is printed before the workers are stopped: the kernel's counts go with them.
    stop_cluster_on_signals(loop, cluster, 5000, {}, [&] { print_table(*shared, wanted, opts, "shutdown"); });

    // A worker that cannot be started (out of fds or processes) is tried again a second later.
    for (size_t i = 0; i < wanted; ++i) {
        cluster.fork_worker_retrying(static_cast<int>(i), kForkRetryMs, [&, i](Worker& w) {
            shared->workers[i].pid.store(w.pid);
            JsonObject stats = msg("cmd", "stats");
            stats.set("slot", static_cast<std::int64_t>(i));
            cluster.send(w, stats, memfd.get());
            JsonObject server = msg("cmd", "server");
            server.set("mode", opts.mode);
            cluster.send(w, server, listener.get());
        });
    }
    loop.run();
    return exit_code;
}

}  // namespace

int main(int argc, char** argv) {
    bool worker = is_worker_process();
    init_process(worker ? "worker" : "master");
    Options opts;
    Cli cli("lab06", "thundering herd: N workers wait on one port; count who is woken per connection.");
    add_server_options(cli, opts.server, /*with_workers=*/true);
    add_connection_options(cli, opts.limits);
    cli.choice("mode", &opts.mode, {"accept", "epoll", "exclusive", "reuseport", "mutex"},
               "how workers wait: block in accept, epoll, EPOLLEXCLUSIVE, SO_REUSEPORT, or an accept lock");
    cli.integer("accept-mutex-delay", &opts.mutex_delay_ms, 1, 60000,
                "mutex mode: ms a worker waits before trying a taken lock again (nginx's accept_mutex_delay)");
    cli.parse(argc, argv);
    return worker ? run_worker(opts) : run_master(opts, argv);
}
