#include "cluster.hpp"
#include "log.hpp"
#include "process.hpp"

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/wait.h>

JsonObject msg(std::string_view key, std::string_view value) {
    JsonObject m;
    m.set(key, value);
    return m;
}

Cluster::Cluster(EventLoop& loop, char** argv) : loop_(loop), argv_(argv) {
    loop_.on_signal(SIGCHLD, [this] { reap(); });
}

void Cluster::set_program(std::string program, std::vector<std::string> argv) {
    program_ = std::move(program);
    program_args_ = std::move(argv);
    program_argv_.clear();
    for (std::string& a : program_args_) program_argv_.push_back(a.data());
    program_argv_.push_back(nullptr);
    argv_ = program_argv_.data();
}

Worker* Cluster::fork_worker(int slot) { return fork_worker(slot, {}); }

Worker* Cluster::fork_worker(int slot, const std::vector<std::string>& env) {
    Fd master_end, worker_end;
    if (!open_channel_pair(&master_end, &worker_end)) {
        log_errno("socketpair");
        return nullptr;
    }
    pid_t pid = spawn_worker(worker_end.get(), argv_, program_.c_str(), env);
    if (pid < 0) return nullptr;  // logged by spawn_worker
    // worker_end closes here in the master: from now on only the worker holds it.
    int id = next_id_++;
    Worker& w = workers_[id];
    w.id = id;
    w.slot = slot;
    w.pid = pid;
    w.channel = std::make_unique<Channel>(std::move(master_end));
    Worker* raw = &w;
    loop_.add(raw->channel->fd(), EPOLLIN, [this, raw](uint32_t events) {
        if (events & EPOLLOUT) {
            if (!raw->channel->flush()) return disconnect(*raw);
            if (!raw->channel->wants_write()) loop_.modify(raw->channel->fd(), EPOLLIN);
        }
        if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_channel(*raw);
    });
    log_event("fork worker=%d", pid);
    return raw;
}

void Cluster::fork_worker_retrying(int slot, long retry_ms, std::function<void(Worker&)> started) {
    if (shutting_down_) return;
    if (Worker* w = fork_worker(slot)) return started(*w);
    log_event("retry fork slot=%d in_ms=%ld", slot, retry_ms);
    loop_.add_timer(retry_ms, [this, slot, retry_ms, started = std::move(started)] {
        fork_worker_retrying(slot, retry_ms, started);
    });
}

bool Cluster::send(Worker& w, const JsonObject& message, int fd) {
    if (!w.channel) return false;
    if (!w.channel->send(message, fd)) return false;
    if (w.channel->wants_write()) loop_.modify(w.channel->fd(), EPOLLIN | EPOLLOUT);
    return true;
}

void Cluster::on_channel(Worker& w) {
    std::vector<Message> messages;
    RecvStatus status = w.channel->receive(messages);
    for (Message& m : messages) {
        std::string act = m.body.get_string("act");
        // The state only moves forward (a worker may say listening before online, and one
        // already disconnecting stays so whatever it says); the events are logged regardless.
        bool going = w.state == WorkerState::disconnecting;
        if (act == "online") {
            if (w.state == WorkerState::starting) w.state = WorkerState::online;
            log_event("online worker=%d", w.pid);
        } else if (act == "listening") {
            if (!going) w.state = WorkerState::listening;
            log_event("listening worker=%d port=%lld", w.pid, static_cast<long long>(m.body.get_int("port")));
        }
        if (on_message_) on_message_(w, m);
        if (!w.channel) return;  // the handler disconnected it
    }
    // End of file: the worker is gone (or about to be) even if SIGCHLD has not been handled yet.
    if (status != RecvStatus::ok) disconnect(w);
}

void Cluster::disconnect(Worker& w) {
    if (!w.channel) return;
    loop_.remove(w.channel->fd());
    w.channel.reset();
    log_event("disconnect worker=%d", w.pid);
}

void Cluster::reap() {
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        Worker* found = find_pid(pid);
        if (!found) continue;  // not a worker (lab04-style helpers reap their own)
        // Out of the table first, so that handlers called from here no longer list it; the node
        // keeps the record where it was.
        auto node = workers_.extract(found->id);
        Worker* w = &node.mapped();
        // Its last messages (a suicide, say) may still be unread in the channel when SIGCHLD
        // comes first: read them before the exit event, or they would be lost with the channel.
        if (w->channel) on_channel(*w);
        disconnect(*w);
        w->exited_after_disconnect = w->state == WorkerState::disconnecting;
        w->state = WorkerState::exited;
        log_event("exit worker=%d %s", pid, describe_exit(status).c_str());
        // While its exit is reported, find() still answers for it (state exited), so a handler
        // can name a worker it knew by id; workers() no longer lists it.
        Worker* outer = exiting_;
        exiting_ = w;
        if (on_exit_) on_exit_(*w, status);
        exiting_ = outer;
    }
    if (shutting_down_ && workers_.empty() && on_all_exited_) {
        auto done = std::move(on_all_exited_);
        on_all_exited_ = nullptr;
        done();
    }
}

std::vector<Worker*> Cluster::workers() {
    std::vector<Worker*> out;
    for (auto& [id, w] : workers_) out.push_back(&w);
    return out;
}

Worker* Cluster::find(int id) {
    auto it = workers_.find(id);
    if (it != workers_.end()) return &it->second;
    return exiting_ && exiting_->id == id ? exiting_ : nullptr;
}

Worker* Cluster::find_pid(pid_t pid) {
    for (auto& [id, w] : workers_)
        if (w.pid == pid) return &w;
    return nullptr;
}

pid_t Cluster::pid_of(int id) {
    Worker* w = find(id);
    return w ? w->pid : -1;
}

Worker* Cluster::serving_in(int slot) {
    for (auto& [id, w] : workers_)
        if (w.slot == slot && w.serving()) return &w;
    return nullptr;
}

std::vector<int> Cluster::ids_by_slot(int slots) {
    std::vector<int> ids;
    for (int slot = 0; slot < slots; ++slot) {
        Worker* w = serving_in(slot);
        ids.push_back(w ? w->id : 0);
    }
    return ids;
}

size_t Cluster::count(WorkerState state) const {
    size_t n = 0;
    for (auto& [id, w] : workers_) n += w.state == state ? 1 : 0;
    return n;
}

bool Cluster::disconnect_worker(Worker& w) {
    if (!w.serving()) return false;
    w.state = WorkerState::disconnecting;
    send(w, msg("cmd", "disconnect"));
    return true;
}

bool Cluster::kill_worker(Worker& w, int sig) {
    if (!w.serving()) return false;
    w.state = WorkerState::disconnecting;
    ::kill(w.pid, sig);  // reaped and logged as any exit
    return true;
}

size_t Cluster::listening_count() const {
    size_t n = 0;
    for (auto& [id, w] : workers_) n += w.listening() ? 1 : 0;
    return n;
}

void Cluster::shutdown(long timeout_ms, std::function<void()> done) {
    shutting_down_ = true;
    on_all_exited_ = std::move(done);
    for (auto& [id, w] : workers_) kill(w.pid, SIGTERM);
    loop_.add_timer(timeout_ms, [this] {
        for (auto& [id, w] : workers_) {
            log_event("kill worker=%d reason=shutdown-timeout", w.pid);
            kill(w.pid, SIGKILL);
        }
    });
    reap();  // nothing to wait for if there are no workers
}

bool MasterLink::is_worker() { return std::getenv(kChannelEnv) != nullptr; }

MasterLink::MasterLink(EventLoop& loop) : loop_(loop), channel_(channel_from_env()) {
    // Ctrl-C in a terminal reaches the whole process group; the master decides what the
    // workers do, so a worker ignores SIGINT and waits for the master's SIGTERM.
    signal(SIGINT, SIG_IGN);
    loop_.add(channel_.fd(), EPOLLIN, [this](uint32_t events) {
        if (events & EPOLLOUT) {
            channel_.flush();
            if (!channel_.wants_write()) loop_.modify(channel_.fd(), EPOLLIN);
        }
        if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_channel();
    });
}

bool MasterLink::send(const JsonObject& message, int fd) {
    if (!channel_.send(message, fd)) return false;
    if (channel_.wants_write()) loop_.modify(channel_.fd(), EPOLLIN | EPOLLOUT);
    return true;
}

bool MasterLink::flush_blocking() {
    while (channel_.wants_write()) {
        if (!channel_.flush()) return false;
        pollfd p{channel_.fd(), POLLOUT, 0};
        if (channel_.wants_write() && poll(&p, 1, 1000) <= 0) return false;
    }
    return true;
}

void MasterLink::on_channel() {
    std::vector<Message> messages;
    RecvStatus status = channel_.receive(messages);
    for (Message& m : messages)
        if (on_message_) on_message_(m);
    if (status == RecvStatus::ok) return;
    loop_.remove(channel_.fd());
    if (on_gone_) return on_gone_();
    // Say what happened: end of file is the master's death; an error (logged by the channel just
    // before) is a channel we can no longer trust, with the master maybe still alive.
    if (status == RecvStatus::closed) log_event("disconnect master gone, exiting");
    else log_event("disconnect channel error, exiting");
    std::exit(0);
}
