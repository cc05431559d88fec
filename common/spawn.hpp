// spawn.hpp — the one way the suite starts a program: fork, then exec, with a close-on-exec error
// pipe through which the parent learns why the program could not be started (lab11 introduces
// it; every worker, helper and lab11's four ways start through spawn_process()).
//
// Between fork and exec the child makes only async-signal-safe system calls: it is a copy of a
// parent that may hold locks (malloc's, stdio's) in a state only the parent can undo. So argv,
// the environment and the PATH candidates are all built before fork; the child only dup2s,
// chdirs, setsids, clears one CLOEXEC flag and calls execve on buffers that already exist.
//
// Who owns which fd: every pipe is created CLOEXEC; the parent's ends come back in Spawned
// (owned), the child's ends close in the parent before spawn_process() returns. In the child,
// dup2() puts flag-free copies on 0, 1 and 2, and `ipc_fd` has its CLOEXEC flag cleared:
// everything else closes at exec. Call ensure_standard_fds() (child.hpp) at start-up, so that no
// pipe is created on 0, 1 or 2.
#pragma once

#include "fd.hpp"

#include <string>
#include <sys/types.h>
#include <vector>

enum class Stdio { pipe, inherit, ignore };  // Node's stdio: 'pipe', 'inherit', 'ignore'

struct SpawnRequest {
    std::string file;               // a path if it contains a '/', else searched in PATH (execvp's rule)
    std::vector<std::string> argv;  // argv[0] included
    Stdio stdio = Stdio::pipe;
    int ipc_fd = -1;                // kept open across exec, its number in CLUSTERLAB_CHANNEL_FD (Node's 'ipc')
    bool detached = false;          // setsid(): a session and process group of its own, no terminal
    std::string cwd{};              // chdir() before exec; "" to stay
    std::vector<std::string> env{}; // "KEY=VALUE", added to this process's environment (replacing KEY)
    bool own_group = false;         // setpgid(0, 0): a process group of its own, to be signalled as one
};

struct Spawned {
    pid_t pid = -1;                     // also set when the child ran but could not exec (reaped already)
    int error = 0;                      // errno when the program could not be started, else 0
    const char* failed_call = nullptr;  // which call failed: pipe2, fork, or in the child execve, chdir…
    bool own_group = false;             // it leads a process group of its own (pgid == pid)
    Fd stdin_w, stdout_r, stderr_r;     // the parent's ends of the pipes (Stdio::pipe only)
};

// Starts `req`. Returns once the child has exec'd the program (the error pipe reached end of
// file) or failed to: then `error` and `failed_call` say why and the child is reaped already, so
// no exit status of it ever reaches a waitpid(-1) elsewhere.
Spawned spawn_process(const SpawnRequest& req);
