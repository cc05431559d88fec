// lab02_fork — forked copies: listen once, then fork M workers that all block in accept(2) on the inherited socket.
// base: lab01
// Observe: M clients asking /sleep?ms=3000 all finish in 3 s (M/N); ps shows M+1 processes, each with its own RSS; /crash kills one worker for good.
// Run: make lab02 && ./lab02 --workers 3, then: siege -c 3 -r 2 'http://127.0.0.1:8000/sleep?ms=3000'
// Mirrors the material's "bronze age" (青铜时代): copy the server process M times, so QPS = M/N.
// stage: forked copies sharing one listening socket (M/N)
//
// Who owns what: the master opens the listening socket before fork(), so every worker holds a
// copy of the same descriptor (same number, same kernel socket, one accept queue). The master
// keeps its copy but never accepts on it; it only waits for signals and reaps children.

#include "blocking.hpp"
#include "cli.hpp"
#include "log.hpp"
#include "net.hpp"
#include "process.hpp"

#include <cerrno>
#include <csignal>
#include <set>
#include <sys/wait.h>
#include <unistd.h>

namespace {

using Workers = std::set<pid_t>;  // the master's process table: the pids of live workers

bool stop_requested() { return signal_seen(SIGINT) || signal_seen(SIGTERM); }

// A worker is lab01's loop in a child process: accept on the shared socket, serve to the end,
// accept again. The kernel gives each queued connection to exactly one of the M blocked
// accepts, so M clients are served at once. /crash throws out of serve_client and nothing
// catches it: std::terminate aborts this worker, and only this worker.
[[noreturn]] void run_worker(int listen_fd, const ConnectionLimits& limits) {
    log_event("listening fd=%d port=%d", listen_fd, local_port(listen_fd));
    while (true) {
        Accepted a = accept_client(listen_fd, /*nonblocking=*/false);
        if (a.status != AcceptStatus::client) continue;  // a dead client: look again
        serve_client(std::move(a.fd), limits, [] { return false; });
    }
}

// The child's side of fork(): it starts as a copy of the master, handlers and signal mask
// included, so undo what belongs to the master. SIGTERM and SIGINT get their default action
// back (a worker here has nothing to clean up: the master's SIGTERM simply ends it, as
// Node's worker.kill() does), and the kernel sends SIGTERM if the master dies first.
void become_worker(pid_t master, const sigset_t& child_mask) {
    set_log_role("worker");
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    sigprocmask(SIG_SETMASK, &child_mask, nullptr);
    die_with_parent(master);
}

// BEGIN SOLUTION: fork n copies after listen(): each child runs run_worker on the inherited socket, the parent records the pid
Workers start_workers(long n, int listen_fd, const ConnectionLimits& limits, const sigset_t& child_mask) {
    pid_t master = getpid();
    Workers workers;
    for (long i = 0; i < n; ++i) {
        pid_t pid = fork();
        if (pid < 0) die_errno("fork");
        if (pid == 0) {
            // The child never returns into this loop: if it did, it would fork children of its own.
            become_worker(master, child_mask);
            run_worker(listen_fd, limits);
        }
        log_event("fork worker=%d", pid);
        workers.insert(pid);
    }
    return workers;
}
// STUB:
// Workers start_workers(long n, int listen_fd, const ConnectionLimits& limits, const sigset_t& child_mask) {
//     (void)n;  // one copy, whatever --workers says: still 1/N, like lab01
//     pid_t master = getpid();
//     pid_t pid = fork();
//     if (pid < 0) die_errno("fork");
//     if (pid == 0) {
//         become_worker(master, child_mask);
//         run_worker(listen_fd, limits);
//     }
//     log_event("fork worker=%d", pid);
//     return Workers{pid};
// }
// END SOLUTION

// Collects every worker that has exited, without blocking. A dead child stays a zombie (its
// exit status kept for us) until waitpid() takes it: that is what this is for.
void reap_children(Workers& workers) {
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        log_event("exit worker=%d %s", pid, describe_exit(status).c_str());
        workers.erase(pid);
    }
}

// SIGTERM every worker, then wait for each (blocking: this stage's workers die at once).
void stop_workers(Workers& workers) {
    log_event("shutdown workers=%zu", workers.size());
    for (pid_t pid : workers) kill(pid, SIGTERM);
    while (!workers.empty()) {
        int status;
        pid_t pid = waitpid(-1, &status, 0);
        if (pid < 0) {
            if (errno == EINTR) continue;
            log_errno("waitpid");
            return;
        }
        log_event("exit worker=%d %s", pid, describe_exit(status).c_str());
        workers.erase(pid);
    }
}

// The master's whole job: sleep until a signal, then act on the flags (nginx's master cycle).
// SIGCHLD, SIGINT and SIGTERM stay blocked except inside sigsuspend(), which unblocks them and
// waits in one step; so a signal cannot slip in between looking at the flags and going to
// sleep (the lost wake-up a pause() or blocking waitpid() loop would have). A crashed worker
// is logged and NOT replaced: restarting is a later stage.
int run_master(Workers& workers, const sigset_t& wait_mask) {
    while (true) {
        sigsuspend(&wait_mask);  // returns after a handler has run
        if (take_signal(SIGCHLD)) reap_children(workers);
        if (stop_requested()) {
            stop_workers(workers);
            log_event("shutdown done");
            return 0;
        }
        if (workers.empty()) {
            // Decided: exit rather than keep the port with nobody accepting, where every new
            // client would connect (the kernel completes the handshake) and then hang.
            log_event("no workers left: exiting");
            return 1;
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    init_process("master");
    ServerOptions opts;
    ConnectionLimits limits;
    Cli cli("lab02", "Forked copies: M worker processes share one listening socket, so M clients are served at once.");
    add_server_options(cli, opts, /*with_workers=*/true);
    cli.integer("idle-timeout", &limits.idle_timeout_ms, 1, 3600000, "ms a kept-alive connection may sit idle");
    cli.integer("header-timeout", &limits.header_timeout_ms, 1, 3600000, "ms a client has to send a request head");
    cli.parse(argc, argv);

    // Handlers only set flags. Block the three signals now: the master takes them only inside
    // sigsuspend(), and each child restores the original mask right after fork().
    install_flag_handler(SIGINT);
    install_flag_handler(SIGTERM);
    install_flag_handler(SIGCHLD);
    sigset_t blocked, original;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGINT);
    sigaddset(&blocked, SIGTERM);
    sigaddset(&blocked, SIGCHLD);
    sigprocmask(SIG_BLOCK, &blocked, &original);

    ListenOptions lo;
    lo.host = opts.host;
    lo.port = opts.port;
    Fd listener = listen_or_die(lo);  // before fork(): this is what makes the socket shared
    log_event("listening port=%d workers=%ld", local_port(listener.get()), opts.workers);

    Workers workers = start_workers(opts.workers, listener.get(), limits, original);
    // Connections that arrive before a worker reaches accept() wait in the queue: ready now.
    print_ready("lab02", opts.host, local_port(listener.get()));
    return run_master(workers, original);
}
