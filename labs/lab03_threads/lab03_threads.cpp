// lab03_threads — threads: one process, and either a thread per connection or a pool of N threads blocking in accept(2).
// base: lab01
// Observe: per-connection serves every sleeper at once (c/N), a pool of N serves min(c, N)/N; ps -L shows the threads; /crash in one thread kills every request.
// Run: make lab03 && ./lab03 (or ./lab03 --model pool --threads 4), then: siege -c 4 -r 2 'http://127.0.0.1:8000/sleep?ms=3000'
// Mirrors the material's "silver age" (白银时代): threads cost less than processes and share memory, and a thread's death is its process's death.
// stage: threads, one per connection or a pool (shared memory, shared fate)
//
// Who owns what: the listening socket belongs to the process and every thread sees it. A
// connection's Fd is moved into the thread that serves it, which closes it when it returns.

#include "blocking.hpp"
#include "cli.hpp"
#include "log.hpp"
#include "net.hpp"
#include "process.hpp"

#include <atomic>
#include <csignal>
#include <string>
#include <system_error>
#include <thread>
#include <unistd.h>

namespace {

bool stop_requested() { return signal_seen(SIGINT) || signal_seen(SIGTERM); }

// Connections being served right now, by all threads: one counter in one address space, no
// IPC needed. That is the "shared memory" half of this stage.
std::atomic<long> g_open_connections{0};

void serve_counted(Fd client, const ConnectionLimits& limits) {
    ++g_open_connections;
    // /crash throws out of serve_client. A thread has no one to hand an exception to: it
    // escapes the thread's function, std::terminate aborts the PROCESS, and every other
    // thread's request dies with it. That is the "shared fate" half.
    serve_client(std::move(client), limits, stop_requested);
    --g_open_connections;
}

// A new thread inherits the signal mask of the thread that creates it. Creating every thread
// with SIGINT and SIGTERM blocked leaves the main thread the only one the kernel can deliver
// them to, so its accept(2) or sigsuspend(2) is the call they interrupt.
sigset_t stop_signals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    return set;
}

template <typename Fn, typename... Args>
bool spawn_detached(Fn&& fn, Args&&... args) {
    sigset_t block = stop_signals(), old;
    pthread_sigmask(SIG_BLOCK, &block, &old);
    bool ok = true;
    try {
        // Detached: nobody joins it; the thread frees itself when fn returns. std::thread copies
        // its arguments, so the thread never refers to this stack frame.
        std::thread(std::forward<Fn>(fn), std::forward<Args>(args)...).detach();
    } catch (const std::system_error& e) {
        // The one exception here that is a system call's error (pthread_create: EAGAIN when
        // out of threads or memory). A per-connection failure: log it, drop that client.
        log_event("error thread: %s", e.what());
        ok = false;
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    return ok;
}

// Model 1, a thread per connection: lab01's loop, except that the main thread hands each
// connection to a new thread and goes straight back to accept(). Nothing bounds the number of
// threads: c concurrent clients get c threads, so throughput is c/N.
void run_server(int listen_fd, const ConnectionLimits& limits) {
    while (!stop_requested()) {
        Accepted a = accept_client(listen_fd, /*nonblocking=*/false);
        if (a.status != AcceptStatus::client) continue;  // interrupted or a dead client: look again
        // BEGIN SOLUTION: hand the connection to a new thread that serves it, and go back to accept() at once
        spawn_detached(serve_counted, std::move(a.fd), limits);
        // STUB:
        // serve_counted(std::move(a.fd), limits);  // served here, so the next accept waits: lab01 again
        // END SOLUTION
    }
}

// Model 2, a pool: N threads, each running lab02's worker loop on the shared socket. The
// kernel's accept queue is the work queue (no mutex, no condition variable of our own), and it
// hands each connection to one blocked thread. N threads serve min(c, N) clients at a time.
void run_worker(int listen_fd, ConnectionLimits limits) {
    log_event("thread tid=%d accepting", gettid());
    while (true) {
        Accepted a = accept_client(listen_fd, /*nonblocking=*/false);
        if (a.status != AcceptStatus::client) continue;
        serve_counted(std::move(a.fd), limits);
    }
}

void start_workers(int listen_fd, const ConnectionLimits& limits, long threads) {
    for (long i = 0; i < threads; ++i) {
        if (!spawn_detached(run_worker, listen_fd, limits)) die("cannot start pool thread %ld of %ld", i + 1, threads);
    }
}

// With a pool, the main thread only waits for SIGINT/SIGTERM. They stay blocked except inside
// sigsuspend(), so one arriving just before it cannot be missed.
void wait_for_stop() {
    sigset_t block = stop_signals(), wait_mask;
    pthread_sigmask(SIG_BLOCK, &block, &wait_mask);
    while (!stop_requested()) sigsuspend(&wait_mask);
}

}  // namespace

int main(int argc, char** argv) {
    init_process("server");
    ServerOptions opts;
    ConnectionLimits limits;
    std::string model = "per-connection";
    long threads = 4;
    Cli cli("lab03", "Threads: a thread per connection, or a pool of N threads sharing the listening socket.");
    add_server_options(cli, opts, /*with_workers=*/false);
    cli.choice("model", &model, {"per-connection", "pool"}, "a thread per connection, or a fixed pool");
    cli.integer("threads", &threads, 1, 10000, "threads in the pool (--model pool)");
    cli.integer("idle-timeout", &limits.idle_timeout_ms, 1, 3600000, "ms a kept-alive connection may sit idle");
    cli.integer("header-timeout", &limits.header_timeout_ms, 1, 3600000, "ms a client has to send a request head");
    cli.parse(argc, argv);

    // Handlers only set flags; only the main thread ever runs them (see stop_signals).
    install_flag_handler(SIGINT);
    install_flag_handler(SIGTERM);

    ListenOptions lo;
    lo.host = opts.host;
    lo.port = opts.port;
    Fd listener = listen_or_die(lo);
    if (model == "pool")
        log_event("listening port=%d model=pool threads=%ld", local_port(listener.get()), threads);
    else
        log_event("listening port=%d model=per-connection", local_port(listener.get()));

    if (model == "pool") start_workers(listener.get(), limits, threads);
    print_ready("lab03", opts.host, local_port(listener.get()));
    if (model == "pool")
        wait_for_stop();
    else
        run_server(listener.get(), limits);

    // Returning from main ends the process, and with it every thread, mid-request or not:
    // this stage has no graceful drain (lab08 adds one).
    log_event("shutdown connections=%ld", g_open_connections.load());
    return 0;
}
