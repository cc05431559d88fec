#include "child.hpp"
#include "channel.hpp"
#include "cli.hpp"
#include "log.hpp"
#include "process.hpp"

#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

int signal_number(std::string_view name) {
    if (name.empty()) return 0;
    if (std::isdigit(static_cast<unsigned char>(name[0]))) {
        int n = 0;
        for (char c : name) {
            if (!std::isdigit(static_cast<unsigned char>(c)) || n > NSIG) return 0;
            n = n * 10 + (c - '0');
        }
        return n > 0 && n < NSIG ? n : 0;
    }
    std::string text(name);
    if (strncasecmp(text.c_str(), "SIG", 3) == 0) text.erase(0, 3);
    for (int sig = 1; sig < NSIG; ++sig) {
        const char* abbrev = sigabbrev_np(sig);
        if (abbrev && strcasecmp(abbrev, text.c_str()) == 0) return sig;
    }
    return 0;
}

std::string signal_name(int sig) {
    const char* abbrev = sigabbrev_np(sig);
    return abbrev ? "SIG" + std::string(abbrev) : std::to_string(sig);
}

int shell_exit_code(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return 1;
}

const char* errno_name(int err) {
    const char* name = strerrorname_np(err);
    return name ? name : "EUNKNOWN";
}

void reset_signals_for_exec() {
    sigset_t empty;
    sigemptyset(&empty);
    sigprocmask(SIG_SETMASK, &empty, nullptr);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    // SIGKILL and SIGSTOP cannot be changed, and glibc keeps two real-time signals for itself:
    // sigaction refuses those with EINVAL, which is harmless here.
    for (int sig = 1; sig < NSIG; ++sig) sigaction(sig, &dfl, nullptr);
}

void ensure_standard_fds() {
    for (int fd = 0; fd <= 2; ++fd) {
        if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF) continue;
        // open() returns the lowest free number: this one.
        int null_fd = open("/dev/null", O_RDWR);
        if (null_fd >= 0 && null_fd != fd) close(null_fd);
    }
}

std::string absolute_path(const std::string& path) {
    if (!path.empty() && path[0] == '/') return path;
    char* cwd = getcwd(nullptr, 0);
    if (!cwd) return path;
    std::string out = cwd;
    std::free(cwd);
    if (out.back() != '/') out += '/';
    return out + path;
}

std::string shell_quote(std::string_view text) {
    bool safe = !text.empty();
    for (char c : text)
        safe = safe && (std::isalnum(static_cast<unsigned char>(c)) || std::strchr("@%+=:,./_-", c));
    if (safe) return std::string(text);
    std::string out = "'";
    for (char c : text) {
        if (c == '\'') out += "'\\''";  // close the quote, an escaped quote, open it again
        else out += c;
    }
    return out + "'";
}

bool write_all(int fd, std::string_view data) {
    while (!data.empty()) {
        ssize_t n = write(fd, data.data(), data.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
}

// ------------------------------------------------------------------ ChildProcess

ChildProcess::ChildProcess(EventLoop& loop, Spawned& s) : loop_(loop), pid_(s.pid), group_(s.own_group) {
    s.stdin_w.reset();  // cp.stdin.end(): we have nothing to send, and a reader must not wait
    watch("stdout", std::move(s.stdout_r));
    watch("stderr", std::move(s.stderr_r));
}

ChildProcess::~ChildProcess() { drop_streams(); }

void ChildProcess::kill(int sig) {
    if (running() && ::kill(group_ ? -pid_ : pid_, sig) < 0) log_errno("kill");
}

void ChildProcess::destroy_streams() {
    drop_streams();
    maybe_close();
}

void ChildProcess::disconnected() {
    --open_;
    maybe_close();
}

void ChildProcess::exited(int status) {
    exited_ = true;
    status_ = status;
    log_event("exit child=%d %s", pid_, describe_exit(status).c_str());
    if (on_exit) on_exit(status);
    maybe_close();
}

void ChildProcess::drop_streams() {
    for (auto& st : streams_)
        if (st->fd) {
            loop_.remove(st->fd.get());
            st->fd.reset();
            --open_;
        }
}

void ChildProcess::watch(const char* name, Fd fd) {
    if (!fd) return;  // Stdio::inherit or ignore: nothing of ours to read
    set_nonblocking(fd.get());
    streams_.push_back(std::make_unique<Stream>(Stream{name, std::move(fd)}));
    Stream* st = streams_.back().get();
    ++open_;
    if (!loop_.add(st->fd.get(), EPOLLIN, [this, st](uint32_t) { read_chunk(*st); })) die_errno("epoll_ctl(pipe)");
}

// One read() per wake-up: each chunk becomes one data event the moment it arrives.
void ChildProcess::read_chunk(Stream& st) {
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

void ChildProcess::maybe_close() {
    if (!exited_ || open_ > 0 || closed_) return;
    closed_ = true;
    log_event("close child=%d %s", pid_, describe_exit(status_).c_str());
    if (on_close) on_close(status_);
}

int report_spawn_error(const SpawnRequest& req, const Spawned& s) {
    std::string during = s.failed_call && std::strcmp(s.failed_call, "execve") != 0
                             ? std::string(" during=") + s.failed_call : "";
    log_event("error syscall=spawn errno=%s path=%s%s message=\"%s\"", errno_name(s.error),
              shell_quote(req.file).c_str(), during.c_str(), std::strerror(s.error));
    if (s.pid > 0) log_event("close child=%d code=-%d signal=none", s.pid, s.error);
    return s.error == ENOENT ? 127 : 126;  // a shell's "not found" and "found but cannot run"
}

// ------------------------------------------------------------------ Foreground

Foreground::Foreground(EventLoop& l) : loop(l) {
    loop.on_signal(SIGCHLD, [this] { reap(); });
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) loop.on_signal(sig, [this, sig] { on_interrupt(sig); });
}

bool Foreground::start(const SpawnRequest& req) {
    Spawned s = spawn_process(req);
    if (s.error) {
        exit_code = report_spawn_error(req, s);
        return false;
    }
    log_event("spawn child=%d file=%s", s.pid, shell_quote(req.file).c_str());
    child = std::make_unique<ChildProcess>(loop, s);
    child->on_close = [this](int status) {
        exit_code = shell_exit_code(status);
        loop.stop();
    };
    return true;
}

void Foreground::reap() {
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (child && pid == child->pid()) child->exited(status);
        else log_event("reap pid=%d %s", pid, describe_exit(status).c_str());
    }
}

void Foreground::on_interrupt(int sig) {
    if (child && child->running()) {
        log_event("forward signal=%s child=%d", signal_name(sig).c_str(), child->pid());
        child->kill(sig);
        return;
    }
    log_event("interrupted signal=%s%s", signal_name(sig).c_str(), child ? " waiting=close" : "");
    exit_code = 128 + sig;
    loop.stop();
}

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

// How long a child killed for --timeout or --max-buffer has to exit before SIGKILL.
constexpr long kKillGraceMs = 1000;

void exec_call(Foreground& fg, const SpawnRequest& req, const ExecOptions& opts, std::function<void(ExecResult&)> callback) {
    auto result = std::make_shared<ExecResult>();
    SpawnRequest grouped = req;
    grouped.own_group = opts.kill_group;
    if (!fg.start(grouped)) {
        result->error = "spawn";
        result->exit_code = fg.exit_code;
        return callback(*result);
    }
    ChildProcess& child = *fg.child;
    auto kill_for = [&child, &loop = fg.loop, result, sig = opts.kill_signal](const std::string& reason,
                                                                              const std::string& detail) {
        if (result->error != "none") return;  // killed already
        result->error = reason;
        log_event("error reason=%s child=%d %s killed_with=%s", reason.c_str(), child.pid(), detail.c_str(),
                  signal_name(sig).c_str());
        child.kill(sig);
        // A child that ignores the kill signal (a shell that traps it) must not keep us reading and
        // dropping its output for ever: after the grace period, stop reading and SIGKILL it. Node
        // destroys the streams at once and never escalates (see the notes).
        loop.add_timer(kKillGraceMs, [&child] {
            if (!child.running()) return;
            log_event("kill child=%d signal=SIGKILL reason=grace grace_ms=%ld", child.pid(), kKillGraceMs);
            // SIGKILL first: once it is sent the child's fate is sealed, whatever it does next.
            // Closing the pipes first let a child that was writing die of SIGPIPE instead
            // (exit 141 in CI), before our signal reached it.
            child.kill(SIGKILL);
            child.destroy_streams();
        });
    };
    // Once it is dead, what is left unread is dropped, so a grandchild still holding the pipes
    // cannot delay `close`. Not before: a child still writing into a closed pipe would die of
    // SIGPIPE before our signal reached it, and the log would blame the wrong signal.
    child.on_exit = [&child, result](int) {
        if (result->error != "none" && result->error != "exit") child.destroy_streams();
    };
    child.on_data = [result, max = static_cast<size_t>(opts.max_buffer), kill_for](const char* stream, std::string_view chunk) {
        if (result->error != "none") return;  // killed: read and dropped until it is gone
        std::string& buf = std::strcmp(stream, "stdout") == 0 ? result->out : result->err;
        buf.append(chunk);
        if (buf.size() <= max) return;
        buf.resize(max);  // Node keeps the first maxBuffer bytes
        kill_for("maxbuffer", format("stream=%s max_buffer=%zu", stream, max));
    };
    EventLoop::TimerId timer = 0;
    if (opts.timeout_ms > 0)
        timer = fg.loop.add_timer(opts.timeout_ms, [kill_for, ms = opts.timeout_ms] { kill_for("timeout", format("timeout_ms=%ld", ms)); });
    child.on_close = [&loop = fg.loop, timer, result, callback](int status) {
        loop.cancel_timer(timer);
        result->status = status;
        result->exit_code = shell_exit_code(status);
        if (result->error == "none" && status != 0) result->error = "exit";  // Node: "Command failed"
        callback(*result);
    };
}

// ------------------------------------------------------------------ lab11's command line

namespace {

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

// "none" when this process has no controlling terminal: opening /dev/tty then fails with ENXIO.
const char* controlling_terminal() {
    Fd tty(open("/dev/tty", O_RDONLY | O_NOCTTY | O_CLOEXEC));
    return tty ? "yes" : "none";
}

}  // namespace

ChildCommand parse_child_command(int argc, char** argv) {
    ChildCommand c;
    c.name = argc > 1 ? argv[1] : "";
    if (c.name == "--help" || c.name == "-h") {
        std::fputs(kUsage, stdout);
        std::exit(0);
    }
    if (c.name.empty()) bad_usage("missing COMMAND");
    // Each command parses the arguments after its name: argv + 1 looks like a program's argv.
    int sub_argc = argc - 1;
    char** sub_argv = argv + 1;
    std::string program = "lab11 " + c.name;

    if (c.name == "spawn") {
        std::string stdio = "pipe";
        Cli cli(program, "child_process.spawn(CMD, ARGS, {stdio}): no shell; the child's output shown chunk by chunk.");
        cli.choice("stdio", &stdio, {"pipe", "inherit", "ignore"}, "the child's stdin, stdout and stderr");
        cli.operands("CMD [ARGS...]", 1);
        cli.parse(sub_argc, sub_argv);
        c.operands = cli.operands();
        c.stdio = stdio == "pipe" ? Stdio::pipe : stdio == "inherit" ? Stdio::inherit : Stdio::ignore;
    } else if (c.name == "exec" || c.name == "execfile") {
        bool shell = c.name == "exec";
        ExecOptions& o = c.exec;
        std::string kill_signal = "SIGTERM";
        Cli cli(program, shell ? "child_process.exec(LINE, options, callback): /bin/sh -c LINE, output buffered."
                               : "child_process.execFile(FILE, ARGS, options, callback): no shell, output buffered.");
        cli.integer("timeout", &o.timeout_ms, 0, 86400000, "kill the child after MS milliseconds; 0: never");
        cli.integer("max-buffer", &o.max_buffer, 1, 1L << 30, "kill the child past this many bytes on stdout or stderr");
        cli.text("kill-signal", &kill_signal, "SIG", "the signal for --timeout and --max-buffer");
        cli.flag("sync", &o.sync, "execSync: wait on a private loop; the main loop (and --tick) stalls meanwhile");
        cli.integer("tick", &o.tick_ms, 0, 60000, "log a tick every N ms on the main loop; the child starts at the first; 0: none");
        cli.flag("kill-group", &o.kill_group, "the child in a process group of its own; --timeout and --max-buffer signal the group");
        cli.operands(shell ? "'COMMAND LINE'" : "FILE [ARGS...]", 1);
        cli.parse(sub_argc, sub_argv);
        o.kill_signal = signal_number(kill_signal);
        if (o.kill_signal == 0) cli.usage_error("--kill-signal: no signal called '" + kill_signal + "'");
        c.operands = cli.operands();
        if (shell && c.operands.size() != 1)
            cli.usage_error("exec takes one command line, quoted as one argument: lab11 exec 'ls | wc -l'");
    } else if (c.name == "fork" || c.name == "child") {
        Cli cli(program, c.name == "fork" ? "child_process.fork(): lab11 child with an IPC channel, one message each way."
                                          : "The material's child.js: answers {\"foo\":\"bar\"} on the channel fork gave it.");
        cli.parse(sub_argc, sub_argv);
    } else if (c.name == "daemon" || c.name == "append") {
        DaemonOptions& o = c.daemon;
        Cli cli(program, c.name == "daemon"
                             ? "spawn(lab11 append, {detached: true, stdio: 'ignore', cwd: '/'}) and unref(): prints its pid."
                             : "What daemon runs: append a line to FILE every MS ms until SIGTERM.");
        cli.text("out", &o.out, "FILE", "the file to append a line to (required)");
        cli.integer("every", &o.every_ms, 1, 3600000, "milliseconds between two lines");
        cli.text("pidfile", &o.pidfile, "FILE", "write the daemon's pid there; removed when it stops");
        cli.parse(sub_argc, sub_argv);
        if (o.out.empty()) cli.usage_error("--out FILE is required");
    } else {
        bad_usage("unknown command '" + c.name + "'");
    }
    return c;
}

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

int run_fork_child() {
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

int run_daemon(const char* argv0, const DaemonOptions& opts) {
    std::string out = absolute_path(opts.out);  // the daemon's working directory will be "/"
    // Fail here, where a user can read why, not in a process whose stderr is /dev/null.
    Fd probe(open(out.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644));
    if (!probe) die_errno(format("open %s", out.c_str()).c_str());
    std::string pidfile = opts.pidfile.empty() ? "" : absolute_path(opts.pidfile);
    if (!pidfile.empty()) {
        // The pidfile too: the daemon writes it under this name, then renames it into place.
        std::string tmp = pidfile + ".tmp";
        Fd pid_probe(open(tmp.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644));
        if (!pid_probe) die_errno(format("open pidfile %s", tmp.c_str()).c_str());
        unlink(tmp.c_str());
    }
    std::vector<std::string> args{argv0, "append", "--out", out, "--every", std::to_string(opts.every_ms)};
    if (!pidfile.empty()) args.insert(args.end(), {"--pidfile", pidfile});
    SpawnRequest req{"/proc/self/exe", args, Stdio::ignore, -1, /*detached=*/true, "/"};
    Spawned s = spawn_process(req);
    if (s.error) return report_spawn_error(req, s);
    log_event("spawn child=%d file=%s detached=yes", s.pid, req.file.c_str());
    log_event("unref child=%d", s.pid);
    std::printf("%d\n", s.pid);
    std::fflush(stdout);
    return 0;
}
