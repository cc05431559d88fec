#include "helper_process.hpp"
#include "log.hpp"
#include "process.hpp"

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <utility>
#include <vector>

std::string take_helper_role() {
    const char* value = std::getenv(kRoleEnv);
    std::string role = value ? value : "";
    unsetenv(kRoleEnv);
    return role;
}

HelperProcess::HelperProcess(EventLoop& loop, char** argv, std::string role)
    : loop_(loop), argv_(argv), role_(std::move(role)) {}

HelperProcess::~HelperProcess() {
    if (channel_) loop_.remove(channel_->fd());
}

bool HelperProcess::start() {
    if (channel_) return true;
    // Not make_channel_pair(): that dies on failure (a set-up failure), and restarting a helper
    // at the descriptor limit is a per-process failure the master survives.
    int ends[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) < 0) {
        log_errno("socketpair");
        return false;
    }
    Fd master_end(ends[0]), child_end(ends[1]);
    // The role travels in the child's environment only (spawn_process builds it before fork).
    pid_t pid = spawn_worker(child_end.get(), argv_, "/proc/self/exe", {std::string(kRoleEnv) + "=" + role_});
    if (pid < 0) return false;  // logged by spawn_worker
    // child_end closes here in the master.
    pid_ = pid;
    started_ms_ = monotonic_ms();
    channel_ = std::make_unique<Channel>(std::move(master_end));
    loop_.add(channel_->fd(), EPOLLIN, [this](uint32_t events) { on_channel(events); });
    log_event("fork %s=%d", role_.c_str(), pid_);
    return true;
}

bool HelperProcess::send(const JsonObject& message) {
    if (!channel_ || !channel_->send(message)) return false;
    if (channel_->wants_write()) loop_.modify(channel_->fd(), EPOLLIN | EPOLLOUT);
    return true;
}

void HelperProcess::on_channel(uint32_t events) {
    if (events & EPOLLOUT) {
        if (!channel_->flush()) return disconnect();
        if (!channel_->wants_write()) loop_.modify(channel_->fd(), EPOLLIN);
    }
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR))) return;
    std::vector<Message> messages;
    RecvStatus status = channel_->receive(messages);
    for (Message& m : messages) {
        if (on_message_) on_message_(m);
        if (!channel_) return;
    }
    if (status != RecvStatus::ok) disconnect();
}

void HelperProcess::disconnect() {
    if (!channel_) return;
    loop_.remove(channel_->fd());
    channel_.reset();
    log_event("disconnect %s=%d", role_.c_str(), pid_);
    if (on_gone_) on_gone_(pid_);
}

void HelperProcess::stop_and_wait(long timeout_ms) {
    if (pid_ <= 0) return;
    pid_t pid = std::exchange(pid_, -1);
    int status;
    if (!channel_) {
        // Seen gone already: reap it if the Cluster has not, and never signal a pid that may
        // belong to someone else by now.
        waitpid(pid, &status, WNOHANG);
        return;
    }
    kill(pid, SIGTERM);  // before closing the channel, so that it ends by the signal, not by "master gone"
    loop_.remove(channel_->fd());
    channel_.reset();
    long long deadline = monotonic_ms() + timeout_ms;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid || (r < 0 && errno == ECHILD)) break;  // reaped now, or by the Cluster before
        if (r < 0 && errno == EINTR) continue;
        if (monotonic_ms() >= deadline) {
            log_event("kill %s=%d reason=shutdown-timeout", role_.c_str(), pid);
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            break;
        }
        sleep_ms(5);
    }
}
