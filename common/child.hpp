// child.hpp — the parent's side of a child process, around spawn_process() (spawn.hpp): Node's
// ChildProcess object and its events, a shell's foreground-job signal handling, what a shell does
// with exit statuses, and lab11's command line. lab11 shows the four ways to start a child and
// the daemon on top of these; the pieces here are what any such parent repeats.
//
// The events, in Node's vocabulary ([parent PID] EVENT key=value… on stderr):
//   spawn child=C file=F     the program runs (spawn_process's error pipe reached end of file)
//   error syscall=spawn …    it could not be started: errno from the error pipe, no exit event
//   data child=C stream=S bytes=N, then the bytes themselves (on_data)
//   exit child=C code=N signal=S        waitpid() reported it (SIGCHLD, read from a signalfd)
//   close child=C code=N signal=S       after exit AND end of file on every pipe (and channel)
//
// Who owns which fd: a ChildProcess owns the read ends of the child's pipes while it watches
// them (it closes the write end of stdin at once: we send nothing); destroying it closes them.
#pragma once

#include "event_loop.hpp"
#include "spawn.hpp"

#include <csignal>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

// Node's ChildProcess: the pid, our ends of its pipes, and the events. `close` is emitted once the
// child has exited AND every stream it holds has reached end of file (or been destroyed): a
// grandchild that inherited the pipe keeps it open after the child itself is gone.
class ChildProcess {
public:
    std::function<void(const char* stream, std::string_view chunk)> on_data;
    std::function<void(int wait_status)> on_exit;
    std::function<void(int wait_status)> on_close;

    ChildProcess(EventLoop& loop, Spawned& s);
    ~ChildProcess();  // no event from a destructor: the parent is leaving
    ChildProcess(const ChildProcess&) = delete;
    ChildProcess& operator=(const ChildProcess&) = delete;

    pid_t pid() const { return pid_; }
    bool running() const { return !exited_; }
    // Signals the child, or its whole process group when it leads one (SpawnRequest::own_group).
    void kill(int sig);

    // Node's stream.destroy() on stdout and stderr: stop reading, close our ends. They count as
    // closed; a grandchild still writing into them gets EPIPE.
    void destroy_streams();

    // fork's channel: 'close' also waits for its 'disconnect'.
    void expect_disconnect() { ++open_; }
    void disconnected();

    // When waitpid() reported this pid (the exit event).
    void exited(int wait_status);

private:
    struct Stream {
        const char* name;
        Fd fd;
    };
    void drop_streams();
    void watch(const char* name, Fd fd);
    void read_chunk(Stream& st);
    void maybe_close();

    EventLoop& loop_;
    pid_t pid_;
    bool group_;
    std::vector<std::unique_ptr<Stream>> streams_;
    int open_ = 0;  // streams (and channel) not yet at end of file
    bool exited_ = false, closed_ = false;
    int status_ = 0;
};

// The error event, as Node's 'error' (err.code, err.syscall, err.path), then 'close' with Node's
// negative errno as the code. Returns the exit code a shell gives: 127 not found, 126 otherwise.
int report_spawn_error(const SpawnRequest& req, const Spawned& s);

// A shell's foreground job: the child watched on `loop`, SIGCHLD reaped (every child, several
// may hide behind one signal), and SIGINT/SIGTERM/SIGHUP passed on to the child while it runs
// (Ctrl-C in a terminal reaches both of us anyway: we share the process group; `kill -INT
// <parent>` reaches the child only through this). Once the child has exited, a signal ends the
// wait for `close` (a grandchild may hold the pipe for ever) with exit_code 128+N.
struct Foreground {
    EventLoop& loop;
    std::unique_ptr<ChildProcess> child;
    int exit_code = 0;

    explicit Foreground(EventLoop& l);
    // Starts `req`: the spawn event and a ChildProcess whose `close` sets exit_code to the
    // child's (shell_exit_code) and stops the loop, or the error event and the exit code.
    bool start(const SpawnRequest& req);

private:
    void reap();
    void on_interrupt(int sig);
};

// lab11's options for exec/execfile and daemon/append (parse_child_command below).
struct ExecOptions {
    long timeout_ms = 0;        // 0: none
    long max_buffer = 1 << 20;  // Node's default maxBuffer: 1 MiB (per stream)
    int kill_signal = SIGTERM;
    bool sync = false;          // execSync: the child watched on a private loop
    long tick_ms = 0;           // 0: no ticker
    bool kill_group = false;    // the child in a process group of its own, signalled as a group
};
struct DaemonOptions {
    std::string out, pidfile;  // absolute (daemon) or as given (append)
    long every_ms = 1000;
};
// What the callback of exec/execFile receives: (error, stdout, stderr).
struct ExecResult {
    std::string out, err;
    std::string error = "none";  // none, exit (non-zero code or a signal), timeout, maxbuffer, spawn
    int status = 0;
    int exit_code = 0;           // ours: the child's, as a shell reports it
};
// child_process.execFile(file, args, options, callback): `req` started on fg with its output
// buffered, killed with the kill signal past maxBuffer or the timeout (`error reason=… child=C`
// logged); the callback runs on 'close', or at once when it could not be started.
void exec_call(Foreground& fg, const SpawnRequest& req, const ExecOptions& opts, std::function<void(ExecResult&)> callback);

// setInterval(() => log('tick'), every): `tick n=N late_ms=L` every `every_ms` on `loop`, which
// shows whether the loop is free to run timers; on_tick(n) after each.
void start_ticker(EventLoop& loop, long every_ms, std::function<void(long n)> on_tick);

// lab11's command line, parsed. `lab11 COMMAND --help` lists a command's options; a bad command
// line exits 2 with the reason and the usage.
struct ChildCommand {
    std::string name;  // spawn, exec, execfile, fork, child, daemon, append
    std::vector<std::string> operands;
    Stdio stdio = Stdio::pipe;
    ExecOptions exec;
    DaemonOptions daemon;
};
ChildCommand parse_child_command(int argc, char** argv);

// The material's child.js, what `lab11 fork` runs: process.on('message', m => { log(m);
// process.send({foo: 'bar'}) }) on the channel in CLUSTERLAB_CHANNEL_FD, until it closes.
int run_fork_child();

// `lab11 daemon`: spawn(self, ['append', …], {detached: true, stdio: 'ignore', cwd: '/'}) and
// cp.unref(): prints the daemon's pid and returns without waiting. When it exits, the daemon is
// adopted by init (or the nearest subreaper), which reaps it when its time comes.
int run_daemon(const char* argv0, const DaemonOptions& opts);

// What `lab11 daemon` runs, and `lab11 append` by hand: the material's detached child.js,
// setInterval(() => fs.appendFileSync(out, …), every), with a pidfile, until SIGTERM or SIGINT.
int run_append(const DaemonOptions& opts);

// "SIGTERM", "TERM", "term" or "15" -> 15; 0 when it names no signal.
int signal_number(std::string_view name);
// 15 -> "SIGTERM" (a number as text for a signal without a name).
std::string signal_name(int sig);

// What a shell's $? shows for a wait status: the exit code, or 128+N when signal N ended it.
int shell_exit_code(int wait_status);

// "ENOENT" for ENOENT: the symbolic name Node reports in err.code.
const char* errno_name(int err);

// In a forked child, before exec: an empty signal mask and the default action for every signal.
// exec resets the signals we catch but keeps the ignored ones ignored (our SIGPIPE) and keeps the
// mask (the signals an EventLoop reads from a signalfd): a program must not inherit either.
// Async-signal-safe (sigprocmask and sigaction only).
void reset_signals_for_exec();

// Makes sure fds 0, 1 and 2 are open (on /dev/null if they were closed), so that a pipe or socket
// created later never gets one of those numbers.
void ensure_standard_fds();

// `path` as an absolute path, relative to the current directory (links are not resolved; the
// file need not exist). For a daemon, whose working directory becomes "/".
std::string absolute_path(const std::string& path);

// `text` as one shell word: unchanged when it is made only of safe characters, else in single
// quotes. Used for log values (path=…) and for the command lines the notes quote.
std::string shell_quote(std::string_view text);

// write(2) until all of `data` is written (short writes, EINTR). False on an error (errno set).
bool write_all(int fd, std::string_view data);
