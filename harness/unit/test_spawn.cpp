// test_spawn.cpp — the one fork+exec (common/spawn.*) and spawn_worker on top of it: a program
// that cannot be started is an error from the error pipe (errno and the failed call), never an
// exit status; stdio pipes, the environment, the working directory, PATH search, the signal state
// and the inherited channel fd reach the program as asked.
#include "channel.hpp"
#include "check.hpp"
#include "spawn.hpp"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <string>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

// Everything until end of file, or what came within 5 s (a hung child fails the check, not the run).
std::string read_all(int fd) {
    std::string out;
    for (;;) {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, 5000) <= 0) return out + "<timeout>";
        char buf[4096];
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return out;
        out.append(buf, static_cast<size_t>(n));
    }
}

int wait_status(pid_t pid) {
    int status = -1;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    return status;
}

// Runs `req` with its stdio on pipes, returns its stdout and checks that it exited 0.
std::string output_of(SpawnRequest req) {
    req.stdio = Stdio::pipe;
    Spawned s = spawn_process(req);
    CHECK_EQ(s.error, 0);
    if (s.error) return "<spawn failed: " + std::string(s.failed_call) + ">";
    s.stdin_w.reset();
    std::string out = read_all(s.stdout_r.get());
    CHECK_EQ(wait_status(s.pid), 0);
    return out;
}

// A scratch directory, removed with what the test put in it.
struct TempDir {
    std::string path;
    std::vector<std::string> files;
    TempDir() {
        char tmpl[] = "/tmp/test_spawn.XXXXXX";
        path = mkdtemp(tmpl) ? tmpl : "/tmp";
    }
    std::string add(const std::string& name, const char* text, mode_t mode) {
        std::string p = path + "/" + name;
        FILE* f = std::fopen(p.c_str(), "w");
        if (f) {
            std::fputs(text, f);
            std::fclose(f);
        }
        chmod(p.c_str(), mode);
        files.push_back(p);
        return p;
    }
    ~TempDir() {
        for (const std::string& f : files) unlink(f.c_str());
        rmdir(path.c_str());
    }
};

// The child was reaped inside spawn_process: nobody's waitpid will see an exit status of it.
void check_reaped_already(pid_t pid) {
    CHECK(pid > 0);
    errno = 0;
    CHECK_EQ(waitpid(pid, nullptr, WNOHANG), -1);
    CHECK_EQ(errno, ECHILD);
}

}  // namespace

TEST_CASE("a missing program is ENOENT from execve through the error pipe, not an exit status") {
    Spawned s = spawn_process(SpawnRequest{"/nonexistent/program", {"program"}});
    CHECK_EQ(s.error, ENOENT);
    CHECK(s.failed_call && std::strcmp(s.failed_call, "execve") == 0);
    CHECK(!s.stdout_r.valid() && !s.stderr_r.valid() && !s.stdin_w.valid());
    check_reaped_already(s.pid);
}

TEST_CASE("a name found in no PATH entry is ENOENT from execve") {
    Spawned s = spawn_process(SpawnRequest{"no-such-command-for-test-spawn", {"x"}});
    CHECK_EQ(s.error, ENOENT);
    CHECK(s.failed_call && std::strcmp(s.failed_call, "execve") == 0);
    check_reaped_already(s.pid);
}

TEST_CASE("a file that is not executable is EACCES") {
    TempDir dir;
    std::string file = dir.add("data", "not a program\n", 0644);
    Spawned s = spawn_process(SpawnRequest{file, {"data"}});
    CHECK_EQ(s.error, EACCES);
    check_reaped_already(s.pid);
}

TEST_CASE("PATH search skips a non-executable match, and reports EACCES if nothing else runs") {
    TempDir a, b;
    a.add("prog", "#!/bin/sh\necho from-a\n", 0644);  // found first, cannot run
    b.add("prog", "#!/bin/sh\necho from-b\n", 0755);
    SpawnRequest req{"prog", {"prog"}};
    req.env = {"PATH=" + a.path + ":" + b.path};
    CHECK_EQ(output_of(req), std::string("from-b\n"));
    req.env = {"PATH=/nonexistent:" + a.path};
    Spawned s = spawn_process(req);
    CHECK_EQ(s.error, EACCES);
    CHECK(s.failed_call && std::strcmp(s.failed_call, "execve") == 0);
    check_reaped_already(s.pid);
}

TEST_CASE("a successful spawn runs the program and leaves its exit status to the caller") {
    Spawned s = spawn_process(SpawnRequest{"sh", {"sh", "-c", "exit 7"}, Stdio::inherit});
    CHECK_EQ(s.error, 0);
    CHECK(s.failed_call == nullptr);
    CHECK(s.pid > 0);
    int status = wait_status(s.pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 7);
}

TEST_CASE("Stdio::pipe connects stdin, stdout and stderr to the parent's ends") {
    Spawned s = spawn_process(
        SpawnRequest{"/bin/sh", {"sh", "-c", "echo out; echo err >&2; read line; echo \"got $line\""}});
    CHECK_EQ(s.error, 0);
    if (s.error) return;
    CHECK(s.stdin_w.valid() && s.stdout_r.valid() && s.stderr_r.valid());
    CHECK_EQ(write(s.stdin_w.get(), "hi\n", 3), ssize_t{3});
    s.stdin_w.reset();
    CHECK_EQ(read_all(s.stdout_r.get()), std::string("out\ngot hi\n"));
    CHECK_EQ(read_all(s.stderr_r.get()), std::string("err\n"));
    CHECK_EQ(wait_status(s.pid), 0);
}

TEST_CASE("Stdio::ignore puts 0, 1 and 2 on /dev/null") {
    // The answer leaves through a pipe passed as the ipc fd: the child's stdio goes nowhere.
    int p[2];
    CHECK(pipe2(p, O_CLOEXEC) == 0);
    Fd r(p[0]), w(p[1]);
    SpawnRequest req{"/bin/sh", {"sh", "-c",
                                 "x=$(readlink /proc/$$/fd/0 /proc/$$/fd/1 /proc/$$/fd/2); "
                                 "echo $x >/proc/$$/fd/$CLUSTERLAB_CHANNEL_FD"}};
    req.stdio = Stdio::ignore;
    req.ipc_fd = w.get();
    Spawned s = spawn_process(req);
    CHECK_EQ(s.error, 0);
    w.reset();
    CHECK_EQ(read_all(r.get()), std::string("/dev/null /dev/null /dev/null\n"));
    CHECK_EQ(wait_status(s.pid), 0);
}

TEST_CASE("the environment is ours plus req.env, which replaces a KEY we have; ours is unchanged") {
    setenv("TEST_SPAWN_KEPT", "kept", 1);
    setenv("TEST_SPAWN_REPLACED", "old", 1);
    SpawnRequest req{"sh", {"sh", "-c", "echo \"$TEST_SPAWN_KEPT|$TEST_SPAWN_REPLACED|$TEST_SPAWN_NEW\"; env | grep -c '^TEST_SPAWN_REPLACED='"}};
    req.env = {"TEST_SPAWN_REPLACED=new", "TEST_SPAWN_NEW=a b=c"};
    CHECK_EQ(output_of(req), std::string("kept|new|a b=c\n1\n"));
    CHECK_EQ(std::string(std::getenv("TEST_SPAWN_REPLACED")), std::string("old"));
    CHECK(std::getenv("TEST_SPAWN_NEW") == nullptr);
    unsetenv("TEST_SPAWN_KEPT");
    unsetenv("TEST_SPAWN_REPLACED");
}

TEST_CASE("cwd is entered before exec; a cwd that does not exist is ENOENT from chdir") {
    SpawnRequest req{"/bin/pwd", {"pwd"}};
    req.cwd = "/";
    CHECK_EQ(output_of(req), std::string("/\n"));
    req.cwd = "/nonexistent/dir";
    Spawned s = spawn_process(req);
    CHECK_EQ(s.error, ENOENT);
    CHECK(s.failed_call && std::strcmp(s.failed_call, "chdir") == 0);
    check_reaped_already(s.pid);
}

TEST_CASE("detached: a session of its own") {
    SpawnRequest req{"/bin/sh", {"sh", "-c", "cut -d' ' -f6 /proc/$$/stat"}};  // field 6: the session
    req.detached = true;
    Spawned s = spawn_process(req);
    CHECK_EQ(s.error, 0);
    if (s.error) return;
    s.stdin_w.reset();
    std::string out = read_all(s.stdout_r.get());
    CHECK_EQ(std::atoi(out.c_str()), static_cast<int>(s.pid));  // a session leader: sid == pid
    CHECK_EQ(wait_status(s.pid), 0);
}

TEST_CASE("the program starts with an empty signal mask and nothing ignored") {
    sigset_t block, old_mask;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGCHLD);
    sigprocmask(SIG_BLOCK, &block, &old_mask);
    struct sigaction ign {}, old_pipe {};
    ign.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ign, &old_pipe);
    std::string status = output_of(SpawnRequest{"grep", {"grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"}});
    sigprocmask(SIG_SETMASK, &old_mask, nullptr);
    sigaction(SIGPIPE, &old_pipe, nullptr);
    // "SigBlk:\tHEX\nSigIgn:\tHEX\n". Only the standard signals (1-31, the low 31 bits) are ours
    // to reset: glibc keeps 32 and 33 for itself and its sigaction refuses them.
    unsigned long long blocked = 0, ignored = 0;
    CHECK_EQ(std::sscanf(status.c_str(), "SigBlk: %llx SigIgn: %llx", &blocked, &ignored), 2);
    CHECK_EQ(blocked, 0ULL);
    CHECK_EQ(ignored & 0x7fffffffULL, 0ULL);
}

TEST_CASE("ipc_fd stays open across exec and its number is in CLUSTERLAB_CHANNEL_FD") {
    auto [ours, theirs] = make_channel_pair();
    SpawnRequest req{"/bin/sh", {"sh", "-c", "echo \"$CLUSTERLAB_CHANNEL_FD\"; test -S /proc/self/fd/$CLUSTERLAB_CHANNEL_FD && echo open; test -e /proc/self/fd/" + std::to_string(ours.get()) + " || echo closed"}};
    req.ipc_fd = theirs.get();
    CHECK_EQ(output_of(req), std::to_string(theirs.get()) + "\nopen\nclosed\n");
}

TEST_CASE("spawn_worker returns -1 with errno set when exec fails, and leaves no child behind") {
    auto [ours, theirs] = make_channel_pair();
    char arg0[] = "missing";
    char* argv[] = {arg0, nullptr};
    std::fflush(nullptr);
    errno = 0;
    pid_t pid = spawn_worker(theirs.get(), argv, "/nonexistent/worker", {});
    CHECK_EQ(pid, -1);
    CHECK_EQ(errno, ENOENT);
    errno = 0;
    CHECK_EQ(waitpid(-1, nullptr, WNOHANG), -1);
    CHECK_EQ(errno, ECHILD);
}

TEST_CASE("spawn_worker takes a program without a '/' as a path, never a PATH lookup") {
    auto [ours, theirs] = make_channel_pair();
    char arg0[] = "sh";
    char* argv[] = {arg0, nullptr};
    std::fflush(nullptr);
    errno = 0;
    CHECK_EQ(spawn_worker(theirs.get(), argv, "sh", {}), -1);  // ./sh does not exist here
    CHECK_EQ(errno, ENOENT);
}

TEST_MAIN("spawn")
