#include "process.hpp"
#include "log.hpp"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <ctime>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {
volatile sig_atomic_t g_pending[NSIG];
volatile sig_atomic_t g_seen[NSIG];
pid_t g_pid = 0;

void on_signal(int sig) {
    g_pending[sig] = 1;
    g_seen[sig] = 1;
}
void refresh_pid() { g_pid = getpid(); }
}  // namespace

void init_process(const char* role) {
    set_log_role(role);
    signal(SIGPIPE, SIG_IGN);
    rlimit no_core{0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    // A server is expected to hold thousands of connections: lift the soft descriptor limit
    // (often 1024) to the hard one.
    rlimit files;
    if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
        files.rlim_cur = files.rlim_max > 1048576 ? 1048576 : files.rlim_max;
        setrlimit(RLIMIT_NOFILE, &files);
    }
    static bool registered = false;
    if (!registered) {
        pthread_atfork(nullptr, nullptr, refresh_pid);
        registered = true;
    }
    refresh_pid();
}

pid_t self_pid() {
    if (g_pid == 0) refresh_pid();
    return g_pid;
}

void install_flag_handler(int sig) {
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: blocking calls must wake up and let the loop look
    if (sigaction(sig, &sa, nullptr) < 0) die_errno("sigaction");
}

bool take_signal(int sig) {
    if (!g_pending[sig]) return false;
    g_pending[sig] = 0;
    return true;
}

bool signal_seen(int sig) { return g_seen[sig] != 0; }

std::string describe_exit(int status) {
    if (WIFEXITED(status)) return "code=" + std::to_string(WEXITSTATUS(status)) + " signal=none";
    if (WIFSIGNALED(status)) {
        const char* name = sigabbrev_np(WTERMSIG(status));
        return std::string("code=none signal=") + (name ? "SIG" + std::string(name) : std::to_string(WTERMSIG(status)));
    }
    return "code=none signal=none";
}

void die_with_parent(pid_t parent) {
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0) log_errno("prctl(PR_SET_PDEATHSIG)");
    if (getppid() != parent) _exit(0);
}

bool sleep_ms(long ms) {
    timespec ts{ms / 1000, (ms % 1000) * 1000000L};
    return nanosleep(&ts, &ts) == 0;
}

long long monotonic_ms() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}
