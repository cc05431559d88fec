// lab11_child_process — Node's four ways to start a child (spawn, exec, execFile, fork) are fork, exec, a shell and pipes in four combinations; the parent learns the child's fate through events.
// base: lab04
// Observe: spawn shows each chunk as it arrives, exec prints it all at the end; exit comes before close when a grandchild holds the pipe; strace -f -e trace=process,execve shows /bin/sh -c only under exec; a daemon outlives its terminal.
// Run: make lab11 && ./lab11 spawn sh -c 'echo a; sleep 1; echo b'; ./lab11 exec 'ls | wc -l'; ./lab11 execfile echo 'a;b' '$HOME'; ./lab11 fork; pid=$(./lab11 daemon --out /tmp/d.log); tail -f /tmp/d.log; kill $pid
// Mirrors the material's child_process pages (000–003): spawn/exec/execFile/fork, the exit/close/error/disconnect/message events, spawn(…, {detached: true, stdio: 'ignore'}) with unref().
// stage: child processes: spawn, exec, execFile and fork as system calls; the parent's events; a daemon
//
// The design. Every child starts through spawn_process() (common/spawn.cpp: lab04's fork and pipe
// grown into pipes for stdio, a close-on-exec error pipe, and execve); the four ways are what is
// put around it, and the parent watches the child through common/child.hpp's ChildProcess events.

#include "channel.hpp"
#include "child.hpp"
#include "event_loop.hpp"
#include "log.hpp"
#include "process.hpp"
#include "spawn.hpp"

#include <cstring>
#include <string>
#include <sys/epoll.h>
#include <unistd.h>

namespace {

// child_process.spawn(cmd, args, {stdio}): no shell, no buffer; data as it arrives.
int run_spawn(const std::vector<std::string>& cmd, Stdio stdio) {
    EventLoop loop;
    Foreground fg(loop);
    if (!fg.start(SpawnRequest{cmd[0], cmd, stdio})) return fg.exit_code;
    // cp.stdout.on('data', chunk => process.stdout.write(chunk)), and the same for stderr.
    fg.child->on_data = [](const char* stream, std::string_view chunk) {
        write_all(std::strcmp(stream, "stdout") == 0 ? STDOUT_FILENO : STDERR_FILENO, chunk);
    };
    loop.run();
    return fg.exit_code;
}

// exec (shell) and execfile (no shell), asynchronous or --sync (Node's execSync/execFileSync).
// The callback, (error, stdout, stderr) => print them: the output appears only now, all at once.
int run_exec(const SpawnRequest& req, const ExecOptions& opts) {
    EventLoop loop;
    Foreground fg(loop);
    int exit_code = 0;
    auto report = [&](ExecResult& r, EventLoop& on) {
        log_event("callback error=%s %s stdout_bytes=%zu stderr_bytes=%zu", r.error.c_str(),
                  r.error == "spawn" ? "code=none signal=none" : describe_exit(r.status).c_str(), r.out.size(), r.err.size());
        write_all(STDOUT_FILENO, r.out);
        write_all(STDERR_FILENO, r.err);
        exit_code = r.exit_code;
        on.stop();
    };
    auto go = [&] {
        if (!opts.sync) return exec_call(fg, req, opts, [&](ExecResult& r) { report(r, loop); });
        // execSync: the child is watched on a private loop (as Node's spawnSync runs a libuv loop
        // of its own) while this one, with its timers, waits for it: no tick until it is over.
        EventLoop private_loop;
        Foreground inner(private_loop);
        bool done = false;
        exec_call(inner, req, opts, [&](ExecResult& r) { done = true; report(r, private_loop); });
        if (!done) private_loop.run();
        if (!done) exit_code = inner.exit_code;  // interrupted while waiting for close
        // One more turn of the main loop, so that the timers that fell due meanwhile fire (late).
        loop.add_timer(0, [&loop] { loop.stop(); });
    };
    // With --tick the child starts at the first tick, so the log shows the loop ticking before,
    // and during (async) or not during (--sync) the child's run.
    if (opts.tick_ms > 0) start_ticker(loop, opts.tick_ms, [&](long n) { if (n == 1) go(); });
    else loop.add_timer(0, go);  // from inside the running loop, like every later event
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
            if (m.body.get_string("foo") == "bar") return disconnect();  // the round trip is over: cp.disconnect()
        }
        if (status != RecvStatus::ok) disconnect();
    });
    JsonObject hello;
    hello.set("hello", "world");
    channel->send_blocking(hello);  // cp.send({hello: 'world'})
    loop.run();
    return fg.exit_code;
}

}  // namespace

int main(int argc, char** argv) {
    ensure_standard_fds();
    std::string name = argc > 1 ? argv[1] : "";
    init_process(name == "child" ? "child" : name == "append" ? "daemon" : "parent");
    ChildCommand c = parse_child_command(argc, argv);  // exits 0 on --help, 2 on bad usage
    const std::vector<std::string>& ops = c.operands;
    if (c.name == "spawn") return run_spawn(ops, c.stdio);
    if (c.name == "exec") return run_exec(SpawnRequest{"/bin/sh", {"/bin/sh", "-c", ops[0]}}, c.exec);
    if (c.name == "execfile") return run_exec(SpawnRequest{ops[0], ops}, c.exec);
    if (c.name == "fork") return run_fork(argv[0]);
    if (c.name == "child") return run_fork_child();
    if (c.name == "daemon") return run_daemon(argv[0], c.daemon);
    return run_append(c.daemon);
}
