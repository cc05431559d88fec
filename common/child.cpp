#include "child.hpp"

#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <strings.h>
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
