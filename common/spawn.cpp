#include "spawn.hpp"
#include "channel.hpp"
#include "child.hpp"

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <string_view>
#include <sys/wait.h>
#include <unistd.h>

namespace {

std::vector<char*> pointers(std::vector<std::string>& strings) {
    std::vector<char*> out;
    for (std::string& s : strings) out.push_back(s.data());
    out.push_back(nullptr);
    return out;
}

// The child's environment: ours, minus every KEY that `extra` sets, plus `extra`.
std::vector<std::string> child_environment(const std::vector<std::string>& extra) {
    auto key = [](std::string_view kv) { return kv.substr(0, kv.find('=')); };
    std::vector<std::string> out;
    for (char** e = environ; *e; ++e) {
        bool replaced = false;
        for (const std::string& kv : extra) replaced = replaced || key(kv) == key(*e);
        if (!replaced) out.emplace_back(*e);
    }
    out.insert(out.end(), extra.begin(), extra.end());
    return out;
}

// execvp's search, done before fork: `file` itself if it names a path, else DIR/file for each
// entry of the child's PATH (an empty entry is the current directory; no PATH: /bin:/usr/bin).
std::vector<std::string> exec_candidates(const std::string& file, const std::vector<std::string>& env) {
    if (file.find('/') != std::string::npos) return {file};
    std::string path = "/bin:/usr/bin";
    for (const std::string& kv : env)
        if (kv.rfind("PATH=", 0) == 0) path = kv.substr(5);
    std::vector<std::string> out;
    size_t start = 0;
    for (;;) {
        size_t colon = path.find(':', start);
        std::string dir = path.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
        out.push_back(dir.empty() ? file : dir + "/" + file);
        if (colon == std::string::npos) return out;
        start = colon + 1;
    }
}

}  // namespace

// BEGIN SOLUTION lab11: spawn_process(): pipes for the child's stdio, fork, in the child setsid/chdir/dup2 and execve; a failed exec reported through a close-on-exec error pipe (no exit event), the child reaped
namespace {

// What the child writes into the error pipe when it cannot become the program: 8 bytes, one
// write, atomic on a pipe.
struct SpawnFailure {
    int32_t call;
    int32_t err;
};
enum ChildCall : int32_t { kExecve, kSetsid, kSetpgid, kChdir, kDup2, kOpenDevNull, kFcntl, kCallCount };
constexpr const char* kChildCallNames[kCallCount] = {"execve", "setsid", "setpgid", "chdir", "dup2", "open", "fcntl"};

// Between fork and exec: only system calls, then _exit (no atexit handlers, no second flush of
// stdio buffers that belong to the parent).
[[noreturn]] void report_and_exit(int report_fd, ChildCall call) {
    SpawnFailure f{call, errno};
    if (write(report_fd, &f, sizeof f) < 0) {}  // the parent then sees end of file and a 127
    _exit(127);
}

// `fd` onto `target` without its CLOEXEC flag. dup2(fd, fd) would keep the flag, so a descriptor
// that is already where it belongs only has the flag cleared.
bool place(int fd, int target) {
    if (fd != target) return dup2(fd, target) >= 0;
    return fcntl(fd, F_SETFD, 0) >= 0;
}

}  // namespace

Spawned spawn_process(const SpawnRequest& req) {
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
    // Everything the child will read is built here, before fork: it only makes system calls.
    std::vector<std::string> extra = req.env;
    if (req.ipc_fd >= 0) extra.push_back(std::string(kChannelEnv) + "=" + std::to_string(req.ipc_fd));
    std::vector<std::string> env = child_environment(extra), args = req.argv;
    std::vector<std::string> paths = exec_candidates(req.file, env);
    std::vector<char*> envp = pointers(env), argv = pointers(args), candidates = pointers(paths);
    const char* cwd = req.cwd.empty() ? nullptr : req.cwd.c_str();

    s.pid = fork();
    if (s.pid < 0) return fail("fork");
    if (s.pid == 0) {
        int report_fd = report_w.get();
        reset_signals_for_exec();
        if (req.detached && setsid() < 0) report_and_exit(report_fd, kSetsid);
        // Before exec, and the parent waits for exec: kill(-pid) works the moment we return.
        if (req.own_group && !req.detached && setpgid(0, 0) < 0) report_and_exit(report_fd, kSetpgid);
        if (cwd && chdir(cwd) < 0) report_and_exit(report_fd, kChdir);
        if (req.stdio == Stdio::pipe) {
            if (!place(in[0].get(), 0) || !place(out[1].get(), 1) || !place(err[1].get(), 2))
                report_and_exit(report_fd, kDup2);
        } else if (req.stdio == Stdio::ignore) {
            int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
            if (null_fd < 0) report_and_exit(report_fd, kOpenDevNull);
            if (!place(null_fd, 0) || !place(null_fd, 1) || !place(null_fd, 2)) report_and_exit(report_fd, kDup2);
        }
        if (req.ipc_fd >= 0 && fcntl(req.ipc_fd, F_SETFD, 0) < 0) report_and_exit(report_fd, kFcntl);
        // execvp's rules over the prepared candidates: a directory that lacks the file (ENOENT,
        // ENOTDIR) passes to the next; EACCES is remembered and reported if nothing else runs;
        // any other error stops the search. A file that is neither a binary nor a #! script is
        // ENOEXEC (posix_spawnp's answer; execvp would hand it to /bin/sh).
        bool denied = false;
        for (char* const* path = candidates.data(); *path; ++path) {
            execve(*path, argv.data(), envp.data());
            if (errno == EACCES) denied = true;
            else if (errno != ENOENT && errno != ENOTDIR) break;
        }
        if (denied && (errno == ENOENT || errno == ENOTDIR)) errno = EACCES;
        report_and_exit(report_fd, kExecve);
    }

    report_w.reset();  // only the child's copy may hold the pipe open now
    SpawnFailure f{};
    ssize_t n;
    do n = read(report_r.get(), &f, sizeof f);
    while (n < 0 && errno == EINTR);
    if (n == static_cast<ssize_t>(sizeof f)) {
        // It never ran the program and is exiting: reap it here, so no exit status follows.
        while (waitpid(s.pid, nullptr, 0) < 0 && errno == EINTR) {}
        s.error = f.err;
        s.failed_call = f.call >= 0 && f.call < kCallCount ? kChildCallNames[f.call] : "?";
        return s;
    }
    s.own_group = req.own_group || req.detached;
    s.stdin_w = std::move(in[1]);
    s.stdout_r = std::move(out[0]);
    s.stderr_r = std::move(err[0]);
    return s;
}
// STUB:
// Spawned spawn_process(const SpawnRequest& req) {
//     Spawned s;
//     std::vector<std::string> env = child_environment(req.env), args = req.argv;
//     std::vector<std::string> paths = exec_candidates(req.file, env);
//     std::vector<char*> envp = pointers(env), argv = pointers(args);
//     s.pid = fork();
//     if (s.pid == 0) {
//         reset_signals_for_exec();
//         execve(paths[0].c_str(), argv.data(), envp.data());  // the first PATH entry only; a failure looks like any exit
//         _exit(127);
//     }
//     return s;
// }
// END SOLUTION
