// lab11_child_process — Node's four ways to start a child (spawn, exec, execFile, fork) are fork, exec, a shell and pipes in four combinations; the parent learns the child's fate through events.
// base: lab04
// Observe: spawn shows each chunk as it arrives, exec prints it all at the end; exit comes before close when a grandchild holds the pipe; strace -f -e trace=process,execve shows /bin/sh -c only under exec; a daemon outlives its terminal.
// Run: make lab11 && ./lab11 spawn sh -c 'echo a; sleep 1; echo b'; ./lab11 exec 'ls | wc -l'; ./lab11 execfile echo 'a;b' '$HOME'; ./lab11 fork; pid=$(./lab11 daemon --out /tmp/d.log); tail -f /tmp/d.log; kill $pid
// Mirrors the material's child_process pages (000–003): spawn/exec/execFile/fork, the exit/close/error/disconnect/message events, spawn(…, {detached: true, stdio: 'ignore'}) with unref().
// stage: child processes: spawn, exec, execFile and fork as system calls; the parent's events; a daemon
//
// The design. One function starts every child: spawn_child() = pipes for the child's stdio, a
// close-on-exec "error pipe", fork, and in the child setsid/chdir/dup2 then execvp. The four ways
// are what is put around it:
//   spawn    CMD ARGS…           no shell; the parent reads the pipes on its event loop (data events)
//   exec     'COMMAND LINE'      spawn("/bin/sh", ["-c", LINE]), output buffered, one callback at the end
//   execfile FILE ARGS…          exec without the shell: the arguments reach the program as they are
//   fork                         spawn of this same program (/proc/self/exe) with a socketpair whose
//                                fd number is in CLUSTERLAB_CHANNEL_FD (lab05's channel): JSON messages
// and daemon = spawn of this program, detached (setsid), stdio on /dev/null, cwd "/", never waited for.
//
// The events, in Node's vocabulary ([parent PID] EVENT key=value… on stderr):
//   spawn child=C file=F     the program runs (the error pipe reached end of file)
//   error syscall=spawn …    it could not be started: the child wrote errno into the error pipe
//   data child=C stream=S bytes=N, then the bytes themselves on our own stdout/stderr
//   exit child=C code=N signal=S        waitpid() reported it (SIGCHLD, read from a signalfd)
//   close child=C code=N signal=S       after exit AND end of file on every pipe (and channel)
//   message / disconnect     the fork channel
// The parent's exit code is the child's: its code, 128+N when signal N ended it, 127 (126) when the
// program was not found (not executable), 2 on bad usage. SIGINT, SIGTERM and SIGHUP sent to the
// parent are passed on to a running child, which is always reaped.
//
// Who owns which fd: spawn_child() creates every pipe CLOEXEC and hands the parent's ends back in
// Spawned (owned Fds); the child's ends are closed in the parent before spawn_child() returns. A
// ChildProcess owns the read ends while it watches them; fork's Channel owns the parent's end of
// the socketpair. In the child, dup2() puts flag-free copies on 0, 1, 2; everything else closes at exec.

#include "channel.hpp"
#include "child.hpp"
#include "cli.hpp"
#include "event_loop.hpp"
#include "log.hpp"
#include "process.hpp"

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <functional>
#include <memory>
#include <string>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace {

// ------------------------------------------------------------------ spawn: one way to start a child

enum class Stdio { pipe, inherit, ignore };  // Node's stdio: 'pipe', 'inherit', 'ignore'

struct SpawnRequest {
    std::string file;               // execvp's file: searched in PATH unless it contains a '/'
    std::vector<std::string> argv;  // argv[0] included
    Stdio stdio = Stdio::pipe;
    int ipc_fd = -1;                // fork: the child's end of the channel, kept open across exec
    bool detached = false;          // setsid(): a session and process group of its own, no terminal
    const char* cwd = nullptr;      // chdir() before exec
};

struct Spawned {
    pid_t pid = -1;
    int error = 0;                      // errno when the program could not be started
    const char* failed_call = nullptr;  // which call failed (execvp, chdir…)
    Fd stdin_w, stdout_r, stderr_r;     // the parent's ends of the pipes (Stdio::pipe only)
};

// What the child writes into the error pipe when it cannot become the program: 8 bytes, one
// write, atomic on a pipe.
struct SpawnFailure {
    int32_t call;
    int32_t err;
};
enum ChildCall : int32_t { kExecvp, kSetsid, kChdir, kDup2, kOpenDevNull, kFcntl, kSetenv, kCallCount };
constexpr const char* kChildCallNames[kCallCount] = {"execvp", "setsid", "chdir", "dup2", "open", "fcntl", "setenv"};

std::vector<char*> c_argv(const std::vector<std::string>& args) {
    std::vector<char*> out;
    for (const std::string& a : args) out.push_back(const_cast<char*>(a.c_str()));
    out.push_back(nullptr);
    return out;
}

// BEGIN SOLUTION: spawn(): pipes for the child's stdio, fork, in the child setsid/chdir/dup2 and execvp; a failed exec reported through a close-on-exec error pipe (no exit event), the child reaped
// Between fork and exec: only system calls, then _exit (no atexit handlers, no stdio flush of
// buffers that belong to the parent).
[[noreturn]] void report_and_exit(int report_fd, ChildCall call) {
    SpawnFailure f{call, errno};
    if (write(report_fd, &f, sizeof f) < 0) {}  // the parent then sees end of file and a 127
    _exit(127);
}

Spawned spawn_child(const SpawnRequest& req) {
    Spawned s;
    auto fail = [&s](const char* call) {
        s.error = errno;
        s.failed_call = call;
        return std::move(s);
    };
    // The error pipe. Both ends are CLOEXEC: a successful exec closes the child's write end, so the
    // parent's read() returns 0 ("it runs the program"); a failed exec leaves it open, and the child
    // writes errno into it before it exits. The parent learns ENOENT instead of guessing from a 127.
    int report[2];
    if (pipe2(report, O_CLOEXEC) < 0) return fail("pipe2");
    Fd report_r(report[0]), report_w(report[1]);

    // Stdio pipes, index 0 the read end, 1 the write end, all CLOEXEC: dup2 gives the child
    // flag-free copies on 0, 1 and 2, and every other copy closes at exec.
    Fd in[2], out[2], err[2];
    if (req.stdio == Stdio::pipe) {
        for (Fd* p : {in, out, err}) {
            int fds[2];
            if (pipe2(fds, O_CLOEXEC) < 0) return fail("pipe2");
            p[0].reset(fds[0]);
            p[1].reset(fds[1]);
        }
    }
    std::vector<char*> argv = c_argv(req.argv);  // built before fork: the child only makes system calls
    std::string channel_fd = std::to_string(req.ipc_fd);

    s.pid = fork();
    if (s.pid < 0) return fail("fork");
    if (s.pid == 0) {
        int report_fd = report_w.get();
        reset_signals_for_exec();
        if (req.detached && setsid() < 0) report_and_exit(report_fd, kSetsid);
        if (req.cwd && chdir(req.cwd) < 0) report_and_exit(report_fd, kChdir);
        if (req.stdio == Stdio::pipe) {
            if (dup2(in[0].get(), 0) < 0 || dup2(out[1].get(), 1) < 0 || dup2(err[1].get(), 2) < 0)
                report_and_exit(report_fd, kDup2);
        } else if (req.stdio == Stdio::ignore) {
            int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
            if (null_fd < 0) report_and_exit(report_fd, kOpenDevNull);
            if (dup2(null_fd, 0) < 0 || dup2(null_fd, 1) < 0 || dup2(null_fd, 2) < 0) report_and_exit(report_fd, kDup2);
        }
        if (req.ipc_fd >= 0) {
            if (!set_cloexec(req.ipc_fd, false)) report_and_exit(report_fd, kFcntl);
            if (setenv(kChannelEnv, channel_fd.c_str(), 1) < 0) report_and_exit(report_fd, kSetenv);
        }
        execvp(req.file.c_str(), argv.data());
        report_and_exit(report_fd, kExecvp);
    }

    report_w.reset();  // only the child's copy may hold the pipe open now
    SpawnFailure f{};
    ssize_t n;
    do n = read(report_r.get(), &f, sizeof f);
    while (n < 0 && errno == EINTR);
    if (n == static_cast<ssize_t>(sizeof f)) {
        // It never ran the program and is exiting: reap it here, so no exit event follows.
        while (waitpid(s.pid, nullptr, 0) < 0 && errno == EINTR) {}
        s.error = f.err;
        s.failed_call = f.call >= 0 && f.call < kCallCount ? kChildCallNames[f.call] : "?";
        return s;
    }
    s.stdin_w = std::move(in[1]);
    s.stdout_r = std::move(out[0]);
    s.stderr_r = std::move(err[0]);
    return s;
}
// STUB:
// Spawned spawn_child(const SpawnRequest& req) {
//     Spawned s;
//     std::vector<char*> argv = c_argv(req.argv);
//     s.pid = fork();
//     if (s.pid == 0) {
//         execvp(req.file.c_str(), argv.data());  // the child's stdio is ours; a failure looks like any exit
//         _exit(127);
//     }
//     return s;
// }
// END SOLUTION

// The error event, as Node's 'error' (err.code, err.syscall, err.path), then 'close' with Node's
// negative errno as the code. There is no exit event: no program ever ran.
int report_spawn_error(const SpawnRequest& req, const Spawned& s) {
    std::string during = s.failed_call && std::strcmp(s.failed_call, "execvp") != 0
                             ? std::string(" during=") + s.failed_call : "";
    log_event("error syscall=spawn errno=%s path=%s%s message=\"%s\"", errno_name(s.error),
              shell_quote(req.file).c_str(), during.c_str(), std::strerror(s.error));
    if (s.pid > 0) log_event("close child=%d code=-%d signal=none", s.pid, s.error);
    return s.error == ENOENT ? 127 : 126;  // a shell's "not found" and "found but cannot run"
}

// ------------------------------------------------------------------ the parent's side of one child

// Node's ChildProcess: the pid, our ends of its pipes, and the events. `close` is emitted once the
// child has exited AND every stream it holds has reached end of file (or been destroyed): a
// grandchild that inherited the pipe keeps it open after the child itself is gone.
class ChildProcess {
public:
    std::function<void(const char* stream, std::string_view chunk)> on_data;
    std::function<void(int wait_status)> on_exit;
    std::function<void(int wait_status)> on_close;

    ChildProcess(EventLoop& loop, Spawned& s) : loop_(loop), pid_(s.pid) {
        s.stdin_w.reset();  // cp.stdin.end(): we have nothing to send, and a reader must not wait
        watch("stdout", std::move(s.stdout_r));
        watch("stderr", std::move(s.stderr_r));
    }
    ~ChildProcess() { drop_streams(); }  // no event from a destructor: the parent is leaving
    ChildProcess(const ChildProcess&) = delete;
    ChildProcess& operator=(const ChildProcess&) = delete;

    pid_t pid() const { return pid_; }
    bool running() const { return !exited_; }

    void kill(int sig) {
        if (running() && ::kill(pid_, sig) < 0) log_errno("kill");
    }

    // Node's stream.destroy() on stdout and stderr: stop reading, close our ends. They count as
    // closed; a grandchild still writing into them gets EPIPE.
    void destroy_streams() {
        drop_streams();
        maybe_close();
    }

    // fork's channel: 'close' also waits for its 'disconnect'.
    void expect_disconnect() { ++open_; }
    void disconnected() {
        --open_;
        maybe_close();
    }

    // From reap_children(), when waitpid() reported this pid.
    void exited(int status) {
        exited_ = true;
        status_ = status;
        log_event("exit child=%d %s", pid_, describe_exit(status).c_str());
        if (on_exit) on_exit(status);
        maybe_close();
    }

private:
    struct Stream {
        const char* name;
        Fd fd;
    };

    void drop_streams() {
        for (auto& st : streams_)
            if (st->fd) {
                loop_.remove(st->fd.get());
                st->fd.reset();
                --open_;
            }
    }

    void watch(const char* name, Fd fd) {
        if (!fd) return;  // Stdio::inherit or ignore: nothing of ours to read
        set_nonblocking(fd.get());
        streams_.push_back(std::make_unique<Stream>(Stream{name, std::move(fd)}));
        Stream* st = streams_.back().get();
        ++open_;
        if (!loop_.add(st->fd.get(), EPOLLIN, [this, st](uint32_t) { read_chunk(*st); })) die_errno("epoll_ctl(pipe)");
    }

    // One read() per wake-up: each chunk becomes one data event the moment it arrives.
    void read_chunk(Stream& st) {
        char buf[64 * 1024];
        ssize_t n = read(st.fd.get(), buf, sizeof buf);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
        if (n > 0) {
            log_event("data child=%d stream=%s bytes=%zd", pid_, st.name, n);
            if (on_data) on_data(st.name, std::string_view(buf, static_cast<size_t>(n)));
            return;
        }
        if (n < 0) log_errno("read(pipe)");
        loop_.remove(st.fd.get());  // end of file: every writer (child and grandchildren) closed it
        st.fd.reset();
        --open_;
        maybe_close();
    }

    void maybe_close() {
        if (!exited_ || open_ > 0 || closed_) return;
        closed_ = true;
        log_event("close child=%d %s", pid_, describe_exit(status_).c_str());
        if (on_close) on_close(status_);
    }

    EventLoop& loop_;
    pid_t pid_;
    std::vector<std::unique_ptr<Stream>> streams_;
    int open_ = 0;  // streams (and channel) not yet at end of file
    bool exited_ = false, closed_ = false;
    int status_ = 0;
};

// SIGCHLD: several children may have exited behind one signal, so loop until waitpid has none.
void reap_children(ChildProcess* child) {
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (child && pid == child->pid()) child->exited(status);
        else log_event("reap pid=%d %s", pid, describe_exit(status).c_str());
    }
}

// A shell's foreground job: the child watched on `loop`, SIGCHLD reaped, and SIGINT/SIGTERM/SIGHUP
// passed on to the child while it runs (Ctrl-C in a terminal reaches both of us anyway: we share
// the process group; `kill -INT <parent>` reaches the child only through this). Once the child has
// exited, a signal ends the wait for `close` (a grandchild may hold the pipe for ever).
struct Foreground {
    EventLoop& loop;
    std::unique_ptr<ChildProcess> child;
    int exit_code = 0;

    explicit Foreground(EventLoop& l) : loop(l) {
        loop.on_signal(SIGCHLD, [this] { reap_children(child.get()); });
        for (int sig : {SIGINT, SIGTERM, SIGHUP}) loop.on_signal(sig, [this, sig] { on_interrupt(sig); });
    }

    // Starts `req`: the spawn event and a ChildProcess, or the error event and the exit code.
    bool start(const SpawnRequest& req) {
        Spawned s = spawn_child(req);
        if (s.error) {
            exit_code = report_spawn_error(req, s);
            return false;
        }
        log_event("spawn child=%d file=%s", s.pid, shell_quote(req.file).c_str());
        child = std::make_unique<ChildProcess>(loop, s);
        return true;
    }

    void on_interrupt(int sig) {
        if (child && child->running()) {
            log_event("forward signal=%s child=%d", signal_name(sig).c_str(), child->pid());
            child->kill(sig);
            return;
        }
        log_event("interrupted signal=%s%s", signal_name(sig).c_str(), child ? " waiting=close" : "");
        exit_code = 128 + sig;
        loop.stop();
    }
};

// setInterval(() => log('tick'), every): shows whether the loop is free to run timers.
void start_ticker(EventLoop& loop, long every_ms, std::function<void(long n)> on_tick) {
    struct Ticker {
        long n = 0;
        long long due = 0;
    };
    auto t = std::make_shared<Ticker>();
    t->due = monotonic_ms() + every_ms;
    auto tick = std::make_shared<std::function<void()>>();
    *tick = [&loop, every_ms, on_tick, t, tick_ref = std::weak_ptr<std::function<void()>>(tick)] {
        long long now = monotonic_ms();
        log_event("tick n=%ld late_ms=%lld", ++t->n, now - t->due);
        t->due = now + every_ms;
        auto again = tick_ref.lock();
        loop.add_timer(every_ms, [again] { (*again)(); });
        if (on_tick) on_tick(t->n);
    };
    loop.add_timer(every_ms, [tick] { (*tick)(); });
}

// ------------------------------------------------------------------ the subcommands

// child_process.spawn(cmd, args, {stdio}): no shell, no buffer; data as it arrives.
int run_spawn(const std::vector<std::string>& cmd, Stdio stdio) {
    EventLoop loop;
    Foreground fg(loop);
    if (!fg.start(SpawnRequest{cmd[0], cmd, stdio})) return fg.exit_code;
    // cp.stdout.on('data', chunk => process.stdout.write(chunk)), and the same for stderr.
    fg.child->on_data = [](const char* stream, std::string_view chunk) {
        write_all(std::strcmp(stream, "stdout") == 0 ? STDOUT_FILENO : STDERR_FILENO, chunk);
    };
    fg.child->on_close = [&](int status) {
        fg.exit_code = shell_exit_code(status);
        loop.stop();
    };
    loop.run();
    return fg.exit_code;
}

struct ExecOptions {
    long timeout_ms = 0;          // 0: none
    long max_buffer = 1 << 20;    // Node's default maxBuffer: 1 MiB (per stream)
    std::string kill_signal = "SIGTERM";
    bool sync = false;
    long tick_ms = 0;
};

// What the callback of exec/execFile receives: (error, stdout, stderr).
struct ExecResult {
    std::string out, err;
    std::string error = "none";  // none, exit (non-zero code or a signal), timeout, maxbuffer, spawn
    int status = 0;
    int exit_code = 0;           // ours: the child's, as a shell reports it
};

// child_process.execFile(file, args, options, callback): spawn with buffered output, killed with
// the kill signal past maxBuffer or the timeout; the callback runs on 'close'.
void exec_call(Foreground& fg, const SpawnRequest& req, const ExecOptions& opts, int kill_signal,
               std::function<void(ExecResult&)> callback) {
    auto result = std::make_shared<ExecResult>();
    if (!fg.start(req)) {
        result->error = "spawn";
        result->exit_code = fg.exit_code;
        callback(*result);
        return;
    }
    ChildProcess& child = *fg.child;
    EventLoop& loop = fg.loop;
    EventLoop::TimerId timer = 0;
    auto kill_for = [&child, kill_signal, result](const std::string& reason, const std::string& detail) {
        if (result->error != "none") return;  // killed already
        result->error = reason;
        log_event("error reason=%s child=%d %s killed_with=%s", reason.c_str(), child.pid(), detail.c_str(),
                  signal_name(kill_signal).c_str());
        child.kill(kill_signal);
    };
    // Once it is dead, what is left unread is dropped: our ends of the pipes close, so a grandchild
    // still holding them cannot delay `close` (Node destroys the streams too, but at once). Not
    // before: a child still writing into a closed pipe would die of SIGPIPE before our signal
    // reached it (a shell that catches SIGINT does), and the log would blame the wrong signal.
    child.on_exit = [&child, result](int) {
        if (result->error != "none" && result->error != "exit") child.destroy_streams();
    };
    child.on_data = [result, max = static_cast<size_t>(opts.max_buffer), kill_for](const char* stream,
                                                                                    std::string_view chunk) {
        if (result->error != "none") return;  // killed: read and dropped until it is gone
        std::string& buf = std::strcmp(stream, "stdout") == 0 ? result->out : result->err;
        buf.append(chunk);
        if (buf.size() <= max) return;
        buf.resize(max);  // Node keeps the first maxBuffer bytes
        kill_for("maxbuffer", format("stream=%s max_buffer=%zu", stream, max));
    };
    if (opts.timeout_ms > 0)
        timer = loop.add_timer(opts.timeout_ms, [kill_for, ms = opts.timeout_ms] {
            kill_for("timeout", format("timeout_ms=%ld", ms));
        });
    child.on_close = [&loop, timer, result, callback](int status) {
        loop.cancel_timer(timer);
        result->status = status;
        result->exit_code = shell_exit_code(status);
        if (result->error == "none" && status != 0) result->error = "exit";  // Node: "Command failed"
        callback(*result);
    };
}

// The callback: (error, stdout, stderr) => print them. The output appears only now, all at once.
void print_result(const ExecResult& r) {
    log_event("callback error=%s %s stdout_bytes=%zu stderr_bytes=%zu", r.error.c_str(),
              r.error == "spawn" ? "code=none signal=none" : describe_exit(r.status).c_str(), r.out.size(),
              r.err.size());
    write_all(STDOUT_FILENO, r.out);
    write_all(STDERR_FILENO, r.err);
}

// exec (shell) and execfile (no shell), asynchronous or --sync (Node's execSync/execFileSync).
int run_exec(const SpawnRequest& req, const ExecOptions& opts, int kill_signal) {
    EventLoop loop;
    Foreground fg(loop);
    int exit_code = 0;
    auto go = [&] {
        if (!opts.sync) {
            exec_call(fg, req, opts, kill_signal, [&](ExecResult& r) {
                print_result(r);
                exit_code = r.exit_code;
                loop.stop();
            });
            return;
        }
        // execSync: the child is watched on a private loop (as Node's spawnSync runs a libuv loop
        // of its own) while this one, with its timers, waits for it: no tick until it is over.
        EventLoop private_loop;
        Foreground inner(private_loop);
        bool done = false;
        exec_call(inner, req, opts, kill_signal, [&](ExecResult& r) {
            print_result(r);
            exit_code = r.exit_code;
            done = true;
            private_loop.stop();
        });
        if (!done) private_loop.run();
        if (!done) exit_code = inner.exit_code;  // interrupted while waiting for close
        // One more turn of the main loop, so that the timers that fell due meanwhile fire (late).
        loop.add_timer(0, [&loop] { loop.stop(); });
    };
    if (opts.tick_ms > 0) {
        // The child starts at the first tick, so the log shows the loop ticking before, and
        // during (async) or not during (--sync) the child's run.
        start_ticker(loop, opts.tick_ms, [&](long n) {
            if (n == 1) go();
        });
    } else {
        loop.add_timer(0, go);  // from inside the running loop, like every later event
    }
    loop.run();
    return fg.exit_code ? fg.exit_code : exit_code;
}

// child_process.fork(): this same program again, as `child`, with an IPC channel: lab05's
// socketpair, its fd number in CLUSTERLAB_CHANNEL_FD. stdio inherited, as Node's fork does.
int run_fork(const char* argv0) {
    EventLoop loop;
    Foreground fg(loop);
    auto [parent_end, child_end] = make_channel_pair();
    if (!fg.start(SpawnRequest{"/proc/self/exe", {argv0, "child"}, Stdio::inherit, child_end.get()}))
        return fg.exit_code;
    child_end.reset();  // the child's copy is the only one now: its exit reads as end of file here
    ChildProcess& child = *fg.child;
    child.expect_disconnect();
    child.on_close = [&](int status) {
        fg.exit_code = shell_exit_code(status);
        loop.stop();
    };

    auto channel = std::make_unique<Channel>(std::move(parent_end));
    // cp.disconnect(), or the child closed its end: either way the channel is gone.
    auto disconnect = [&] {
        log_event("disconnect child=%d", child.pid());  // logged first: the child's own line follows
        loop.remove(channel->fd());
        channel.reset();
        child.disconnected();
    };
    loop.add(channel->fd(), EPOLLIN, [&](uint32_t) {
        std::vector<Message> messages;
        RecvStatus status = channel->receive(messages);
        for (Message& m : messages) {
            log_event("message child=%d body=%s", child.pid(), m.body.dump().c_str());
            if (m.body.get_string("foo") == "bar") {
                disconnect();  // the round trip is over: cp.disconnect(); the child sees end of file
                return;
            }
        }
        if (status != RecvStatus::ok) disconnect();
    });
    JsonObject hello;
    hello.set("hello", "world");
    channel->send_blocking(hello);  // cp.send({hello: 'world'})
    loop.run();
    return fg.exit_code;
}

// The material's child.js: process.on('message', m => { log(m); process.send({foo: 'bar'}) }).
int run_child() {
    Fd fd = channel_from_env();
    if (!fd) die("%s is not set: `lab11 child` is what `lab11 fork` runs", kChannelEnv);
    EventLoop loop;
    Channel parent(std::move(fd));
    loop.add(parent.fd(), EPOLLIN, [&](uint32_t) {
        std::vector<Message> messages;
        RecvStatus status = parent.receive(messages);
        for (Message& m : messages) {
            log_event("message body=%s", m.body.dump().c_str());
            JsonObject reply;
            reply.set("foo", "bar");
            parent.send_blocking(reply);
        }
        if (status != RecvStatus::ok) {
            log_event("disconnect");  // the parent closed the channel: nothing keeps us alive
            loop.stop();
        }
    });
    loop.run();
    return 0;
}

struct DaemonOptions {
    std::string out, pidfile;
    long every_ms = 1000;
};

// spawn(self, ['append', …], {detached: true, stdio: 'ignore', cwd: '/'}); cp.unref(): the parent
// prints the daemon's pid and returns without waiting. When it exits, the daemon is adopted by
// init (or the nearest subreaper), which reaps it when its time comes.
int run_daemon(const char* argv0, const DaemonOptions& opts) {
    std::string out = absolute_path(opts.out);  // the daemon's working directory will be "/"
    // Fail here, where a user can read why, not in a process whose stderr is /dev/null.
    Fd probe(open(out.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644));
    if (!probe) die_errno(format("open %s", out.c_str()).c_str());
    std::vector<std::string> args{argv0, "append", "--out", out, "--every", std::to_string(opts.every_ms)};
    if (!opts.pidfile.empty()) args.insert(args.end(), {"--pidfile", absolute_path(opts.pidfile)});
    SpawnRequest req{"/proc/self/exe", args, Stdio::ignore, -1, /*detached=*/true, "/"};
    Spawned s = spawn_child(req);
    if (s.error) return report_spawn_error(req, s);
    log_event("spawn child=%d file=%s detached=yes", s.pid, req.file.c_str());
    log_event("unref child=%d", s.pid);
    std::printf("%d\n", s.pid);
    std::fflush(stdout);
    return 0;
}

// "none" when this process has no controlling terminal: opening /dev/tty then fails with ENXIO.
const char* controlling_terminal() {
    Fd tty(open("/dev/tty", O_RDONLY | O_NOCTTY | O_CLOEXEC));
    return tty ? "yes" : "none";
}

// The material's detached child.js: setInterval(() => fs.appendFileSync(out, …), every). What
// `daemon` runs; run by hand, it is the same loop in the foreground (try it under nohup).
int run_append(const DaemonOptions& opts) {
    // exec of /proc/self/exe names the process "exe": take back our own name for ps and top.
    prctl(PR_SET_NAME, program_invocation_short_name);
    // A daemon keeps no descriptor it did not open itself (whatever its starter leaked).
    close_range(3, ~0U, 0);
    auto append = [&](const std::string& line) {
        Fd f(open(opts.out.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644));
        if (!f || !write_all(f.get(), line)) log_errno("append");
    };
    if (!opts.pidfile.empty()) {
        // Written whole under another name, then renamed: a reader never sees half a pid.
        std::string tmp = opts.pidfile + ".tmp";
        Fd f(open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0644));
        if (!f || !write_all(f.get(), std::to_string(getpid()) + "\n") || rename(tmp.c_str(), opts.pidfile.c_str()) < 0)
            die_errno(format("write pidfile %s", opts.pidfile.c_str()).c_str());
    }
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd)) std::strcpy(cwd, "?");
    append(event_line("start sid=%d pgid=%d ppid=%d tty=%s cwd=%s every_ms=%ld", getsid(0), getpgrp(), getppid(),
                      controlling_terminal(), cwd, opts.every_ms));

    EventLoop loop;
    long lines = 0;
    std::function<void()> tick = [&] {
        append(event_line("append n=%ld", ++lines));
        loop.add_timer(opts.every_ms, tick);
    };
    loop.add_timer(opts.every_ms, tick);
    for (int sig : {SIGTERM, SIGINT})
        loop.on_signal(sig, [&, sig] {
            append(event_line("shutdown signal=%s lines=%ld", signal_name(sig).c_str(), lines));
            if (!opts.pidfile.empty()) unlink(opts.pidfile.c_str());
            loop.stop();
        });
    loop.run();
    return 0;
}

// ------------------------------------------------------------------ the command line

constexpr const char* kUsage =
    "usage: lab11 COMMAND [options] [ARGS...]\n"
    "Node's four ways to start a child process, as system calls, and a daemon. Not a server.\n"
    "\n"
    "commands:\n"
    "  spawn [--stdio pipe|inherit|ignore] CMD [ARGS...]  run CMD (PATH lookup, no shell); show each chunk as it arrives\n"
    "  exec [options] 'COMMAND LINE'                      /bin/sh -c 'COMMAND LINE'; the output buffered, printed at the end\n"
    "  execfile [options] FILE [ARGS...]                  the same without a shell: the arguments are not interpreted\n"
    "  fork                                               run `lab11 child` with an IPC channel: {\"hello\":\"world\"} -> {\"foo\":\"bar\"}\n"
    "  daemon --out FILE [--every MS] [--pidfile FILE]    start `lab11 append` detached (own session, no terminal,\n"
    "                                                     stdio on /dev/null, cwd /); print its pid and return\n"
    "  child                                              what fork runs (needs CLUSTERLAB_CHANNEL_FD)\n"
    "  append --out FILE [--every MS] [--pidfile FILE]    what daemon runs: append a line every MS ms, in the foreground\n"
    "\n"
    "`lab11 COMMAND --help` lists a command's options. The event log goes to stderr.\n"
    "Exit status: the child's (128+N when signal N ended it), 127 when the program was not found,\n"
    "126 when it could not be executed, 2 on bad usage.\n";

[[noreturn]] void bad_usage(const std::string& message) {
    std::fprintf(stderr, "lab11: %s\n\n%s", message.c_str(), kUsage);
    std::exit(2);
}

void add_exec_options(Cli& cli, ExecOptions& opts) {
    cli.integer("timeout", &opts.timeout_ms, 0, 86400000, "kill the child after MS milliseconds; 0: never");
    cli.integer("max-buffer", &opts.max_buffer, 1, 1L << 30, "kill the child past this many bytes on stdout or stderr");
    cli.text("kill-signal", &opts.kill_signal, "SIG", "the signal for --timeout and --max-buffer");
    cli.flag("sync", &opts.sync, "execSync: wait on a private loop; the main loop (and --tick) stalls meanwhile");
    cli.integer("tick", &opts.tick_ms, 0, 60000, "log a tick every N ms on the main loop; the child starts at the first; 0: none");
}

void add_daemon_options(Cli& cli, DaemonOptions& opts) {
    cli.text("out", &opts.out, "FILE", "the file to append a line to (required)");
    cli.integer("every", &opts.every_ms, 1, 3600000, "milliseconds between two lines");
    cli.text("pidfile", &opts.pidfile, "FILE", "write the daemon's pid there; removed when it stops");
}

}  // namespace

int main(int argc, char** argv) {
    ensure_standard_fds();
    std::string command = argc > 1 ? argv[1] : "";
    init_process(command == "child" ? "child" : command == "append" ? "daemon" : "parent");
    if (command == "--help" || command == "-h") {
        std::fputs(kUsage, stdout);
        return 0;
    }
    if (command.empty()) bad_usage("missing COMMAND");
    // Each command parses the arguments after its name: argv + 1 looks like a program's argv.
    int sub_argc = argc - 1;
    char** sub_argv = argv + 1;
    std::string program = "lab11 " + command;

    if (command == "spawn") {
        std::string stdio = "pipe";
        Cli cli(program, "child_process.spawn(CMD, ARGS, {stdio}): no shell; the child's output shown chunk by chunk.");
        cli.choice("stdio", &stdio, {"pipe", "inherit", "ignore"}, "the child's stdin, stdout and stderr");
        cli.operands("CMD [ARGS...]", 1);
        cli.parse(sub_argc, sub_argv);
        return run_spawn(cli.operands(), stdio == "pipe" ? Stdio::pipe : stdio == "inherit" ? Stdio::inherit : Stdio::ignore);
    }
    if (command == "exec" || command == "execfile") {
        bool shell = command == "exec";
        ExecOptions opts;
        Cli cli(program, shell ? "child_process.exec(LINE, options, callback): /bin/sh -c LINE, output buffered."
                               : "child_process.execFile(FILE, ARGS, options, callback): no shell, output buffered.");
        add_exec_options(cli, opts);
        cli.operands(shell ? "'COMMAND LINE'" : "FILE [ARGS...]", 1);
        cli.parse(sub_argc, sub_argv);
        int kill_signal = signal_number(opts.kill_signal);
        if (kill_signal == 0) cli.usage_error("--kill-signal: no signal called '" + opts.kill_signal + "'");
        const std::vector<std::string>& ops = cli.operands();
        if (shell && ops.size() != 1)
            cli.usage_error("exec takes one command line, quoted as one argument: lab11 exec 'ls | wc -l'");
        SpawnRequest req = shell ? SpawnRequest{"/bin/sh", {"/bin/sh", "-c", ops[0]}} : SpawnRequest{ops[0], ops};
        return run_exec(req, opts, kill_signal);
    }
    if (command == "fork" || command == "child") {
        Cli cli(program, command == "fork" ? "child_process.fork(): lab11 child with an IPC channel, one message each way."
                                           : "The material's child.js: answers {\"foo\":\"bar\"} on the channel fork gave it.");
        cli.parse(sub_argc, sub_argv);
        return command == "fork" ? run_fork(argv[0]) : run_child();
    }
    if (command == "daemon" || command == "append") {
        DaemonOptions opts;
        Cli cli(program, command == "daemon"
                             ? "spawn(lab11 append, {detached: true, stdio: 'ignore', cwd: '/'}) and unref(): prints its pid."
                             : "What daemon runs: append a line to FILE every MS ms until SIGTERM.");
        add_daemon_options(cli, opts);
        cli.parse(sub_argc, sub_argv);
        if (opts.out.empty()) cli.usage_error("--out FILE is required");
        return command == "daemon" ? run_daemon(argv[0], opts) : run_append(opts);
    }
    bad_usage("unknown command '" + command + "'");
}
