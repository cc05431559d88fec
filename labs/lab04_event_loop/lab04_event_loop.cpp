// lab04_event_loop — one thread, non-blocking sockets, epoll: the listener and every client are fds in one loop.
// base: lab01
// Observe: 10,000 clients on /sleep?ms=2000 are all answered after ~2 s, but one /compute stalls everyone.
// Run: make lab04 && ./lab04 [--offload], then: ./loadgen --connections 10000 --requests 10000 'http://127.0.0.1:8000/sleep?ms=2000'
// Mirrors the material's "golden age" (黄金时代): Node's event loop, and child_process.fork of a long computation.
// stage: event loop, one thread and epoll (10,000 sleepers at once; one /compute blocks them all)

#include "cli.hpp"
#include "event_loop.hpp"
#include "http_server.hpp"
#include "log.hpp"
#include "net.hpp"
#include "process.hpp"
#include "router.hpp"

#include <cerrno>
#include <csignal>
#include <fcntl.h>
#include <string>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>
#include <unordered_map>

// --offload: each /compute runs in a forked child that writes its answer into a pipe. The loop
// watches the pipe's read end like any socket, so it keeps serving while the child computes.
// Ownership: the loop process holds each pipe's read end (in ComputeChild) until the answer is
// in; the child holds the write end and closes it by exiting.
class Offloader {
public:
    explicit Offloader(EventLoop& loop) : loop_(loop) {}

    void start(long long n, HttpServer::Done done);
    void reap_children();  // on SIGCHLD: collect every exited child, so none stays a zombie
    void kill_children();  // on shutdown: no child outlives the server

private:
    struct ComputeChild {
        Fd pipe;  // read end; invalid once the answer has been delivered
        std::string answer;
        HttpServer::Done done;
    };
    void on_answer(pid_t pid);
    void deliver(ComputeChild& child);

    EventLoop& loop_;
    std::unordered_map<pid_t, ComputeChild> children_;  // forked and not yet reaped
};

// BEGIN SOLUTION: run /compute in a forked child; the loop reads its answer from a pipe
void Offloader::start(long long n, HttpServer::Done done) {
    int ends[2];
    if (pipe2(ends, O_CLOEXEC | O_NONBLOCK) < 0) {
        log_errno("pipe2");
        return done("");  // an empty answer means failure: the client gets a 500
    }
    Fd read_end(ends[0]), write_end(ends[1]);
    pid_t parent = self_pid();
    pid_t pid = fork();
    if (pid < 0) {
        log_errno("fork");
        return done("");
    }
    if (pid == 0) {
        // The child: compute, write the answer, exit. It must not touch the loop it inherited.
        // The loop blocks SIGTERM/SIGINT/SIGCHLD to read them from a signalfd; unblock them here
        // so a SIGTERM ends the child, and ask for one if the server dies first.
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, nullptr);
        die_with_parent(parent);
        // fork copied every descriptor: the listener, the epoll fd, every client socket. Keep
        // only the pipe (as fd 3) and stderr: a client socket the server closes must really
        // close (send its FIN) now, not when this child exits.
        int out = write_end.release();
        if (out != 3 && dup2(out, 3) < 0) _exit(1);
        close_range(4, ~0U, 0);
        std::string body = compute_body(n, long_computation(n));
        // Under PIPE_BUF bytes, so one write(2) delivers it whole.
        ssize_t w = write(3, body.data(), body.size());
        _exit(w == static_cast<ssize_t>(body.size()) ? 0 : 1);
    }
    write_end.reset();  // only the child writes: once it exits, the read end sees end-of-file
    log_event("offload child=%d n=%lld", pid, n);
    int fd = read_end.get();
    ComputeChild& child = children_[pid];
    child.pipe = std::move(read_end);
    child.done = std::move(done);
    if (!loop_.add(fd, EPOLLIN, [this, pid](uint32_t) { on_answer(pid); })) {
        log_errno("epoll_ctl(ADD pipe)");
        kill(pid, SIGKILL);  // reaped on SIGCHLD; the client gets a 500 now
        deliver(child);
    }
}
// STUB:
// void Offloader::start(long long n, HttpServer::Done done) {
//     done(compute_body(n, long_computation(n)));  // still inline: the loop is blocked meanwhile
// }
// END SOLUTION

void Offloader::on_answer(pid_t pid) {
    auto it = children_.find(pid);
    if (it == children_.end() || !it->second.pipe) return;
    ComputeChild& child = it->second;
    char buf[512];
    ssize_t n = read(child.pipe.get(), buf, sizeof buf);
    if (n > 0) {
        child.answer.append(buf, static_cast<size_t>(n));
        return;  // level-triggered: we hear again, and end-of-file comes when the child exits
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    deliver(child);
}

// The child has closed its end (it exited, or is exiting): answer the client, stop watching.
void Offloader::deliver(ComputeChild& child) {
    loop_.remove(child.pipe.get());
    child.pipe.reset();
    auto done = std::move(child.done);
    // A complete answer ends with a newline; anything else means the child died mid-way.
    done(!child.answer.empty() && child.answer.back() == '\n' ? child.answer : "");
}

void Offloader::reap_children() {
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        log_event("exit child=%d %s", pid, describe_exit(status).c_str());
        auto it = children_.find(pid);
        if (it == children_.end()) continue;
        if (it->second.pipe) {
            // SIGCHLD came before the pipe's end-of-file in this batch: whatever the child
            // wrote is already in the pipe, so read it now.
            char buf[512];
            ssize_t n;
            while ((n = read(it->second.pipe.get(), buf, sizeof buf)) > 0)
                it->second.answer.append(buf, static_cast<size_t>(n));
            deliver(it->second);
        }
        children_.erase(it);
    }
}

void Offloader::kill_children() {
    for (auto& [pid, child] : children_) {
        kill(pid, SIGKILL);
        int status = 0;
        pid_t r;
        while ((r = waitpid(pid, &status, 0)) < 0 && errno == EINTR) {
        }
        if (r == pid) log_event("exit child=%d %s", pid, describe_exit(status).c_str());
        if (child.pipe) loop_.remove(child.pipe.get());
    }
    children_.clear();
}

namespace {

// The whole design: one thread waits in epoll_wait for whichever fd is ready — the listener
// (a new client), a client socket (bytes to read, room to write), a timer (a /sleep is due), the
// signalfd (SIGTERM) or a compute child's pipe — and runs its callback. No callback may block:
// a slow one (inline /compute) delays every other client.
void run_server(int listen_fd, const std::string& host, const ConnectionLimits& limits, bool offload) {
    EventLoop loop;
    HttpServer server(loop, limits);
    Offloader offloader(loop);

    // The non-blocking listener is just another fd: readable means "connections are waiting".
    if (!loop.add(listen_fd, EPOLLIN, [&](uint32_t) { server.accept_all(listen_fd); }))
        die_errno("epoll_ctl(listener)");

    // Signals as events: read from a signalfd on the loop, so no code runs in a handler.
    loop.on_signal(SIGTERM, [&] { loop.stop(); });
    loop.on_signal(SIGINT, [&] { loop.stop(); });
    if (offload) {
        loop.on_signal(SIGCHLD, [&] { offloader.reap_children(); });
        server.set_compute([&](long long n, HttpServer::Done done) { offloader.start(n, std::move(done)); });
    }

    // Ready only now, with the loop and its fds in place: the server can serve.
    print_ready("lab04", host, local_port(listen_fd));

    // /crash throws out of run() and nobody catches it: the one thread dies, and every
    // connection with it (the material: an uncaught exception ends the Node process).
    loop.run();

    log_event("shutdown connections=%zu", server.connection_count());
    offloader.kill_children();
    server.close_all();
}

}  // namespace

int main(int argc, char** argv) {
    init_process("server");
    ServerOptions opts;
    ConnectionLimits limits;
    bool offload = false;
    Cli cli("lab04", "The event loop: one thread serves every connection with epoll; /compute blocks them all.");
    add_server_options(cli, opts, /*with_workers=*/false);
    cli.flag("offload", &offload, "run /compute in a forked child process, so the loop stays responsive");
    cli.integer("idle-timeout", &limits.idle_timeout_ms, 1, 3600000, "ms a kept-alive connection may sit idle");
    cli.integer("header-timeout", &limits.header_timeout_ms, 1, 3600000, "ms a client has to send a request head");
    cli.parse(argc, argv);

    ListenOptions lo;
    lo.host = opts.host;
    lo.port = opts.port;
    lo.nonblocking = true;  // accept must never block the loop: EAGAIN means "no one left"
    Fd listener = listen_or_die(lo);
    log_event("listening port=%d offload=%s", local_port(listener.get()), offload ? "on" : "off");

    run_server(listener.get(), opts.host, limits, offload);
    return 0;
}
