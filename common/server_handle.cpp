#include "server_handle.hpp"

#include "log.hpp"
#include "net.hpp"
#include "process.hpp"

#include <algorithm>
#include <sys/epoll.h>
#include <sys/resource.h>

namespace {
// How many accepted connections may wait in the primary: a quarter of its descriptor limit (at
// most 256), so that at a low limit (prlimit --nofile=64) the primary itself never runs out.
size_t waiting_room() {
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY) return RoundRobinHandle::waiting_room(-1);
    return RoundRobinHandle::waiting_room(static_cast<long long>(rl.rlim_cur));
}
}  // namespace

ServerHandle::ServerHandle(EventLoop& loop, Cluster& table, int key, Fd listener, bool deal, bool accept_now)
    : loop_(loop), table_(table), key_(key), listener_(std::move(listener)), deal_(deal),
      full_(loop, "queue full: no worker is free, new clients wait in the kernel's backlog:") {
    if (deal_ && accept_now) start_accepting();
}

// Until this is called nothing is accepted, so the waiting room stays empty and
// watch_listener() never touches the (unwatched) listener.
void ServerHandle::start_accepting() {
    if (!loop_.add(listener_.get(), EPOLLIN, [this](uint32_t) { accept_and_deal(); }))
        die_errno("epoll_ctl(listener)");
}

std::unique_ptr<ServerHandle> ServerHandle::open(EventLoop& loop, Cluster& table, int key, const std::string& host,
                                                 int port, bool deal, std::string* error) {
    ListenOptions lo;
    lo.host = host;
    lo.port = port;
    lo.nonblocking = true;
    Fd listener = listen_tcp(lo, error);
    if (!listener) return nullptr;
    return std::make_unique<ServerHandle>(loop, table, key, std::move(listener), deal);
}

void ServerHandle::serve(Worker& w, const std::string& host) {
    JsonObject reply = msg("cmd", "server");
    reply.set("host", host);
    reply.set("port", local_port(listener_.get()));
    reply.set("handle", key_);
    if (!deal_) {
        table_.send(w, reply, listener_.get());  // the socket itself: the worker accepts
        return;
    }
    table_.send(w, reply);  // no socket: connections will come one by one
    if (w.serving()) send(rr_.add(w.pid, monotonic_ms()));
}

// accepted: the worker has the connection, our copy can go. refused: it goes back to the front
// of the queue, and the worker is free again, unless its fd was lost: then it rests a moment.
void ServerHandle::answer(Worker& w, const JsonObject& body) {
    auto id = static_cast<std::uint64_t>(body.get_int("id"));
    std::string act = body.get_string("act");
    bool known = false;
    std::vector<RoundRobinHandle::Handoff> work;
    if (act == "accepted") {
        work = rr_.acknowledge(w.pid, id, monotonic_ms(), &known);
    } else {
        std::string reason = body.get_string("reason");
        if (reason != "fd-lost")  // those come by the hundred at a worker's fd limit: it logs them per burst
            log_event("refused worker=%d id=%llu reason=%s: dealt again", w.pid, static_cast<unsigned long long>(id),
                      reason.c_str());
        auto why = reason == "fd-lost" ? RoundRobinHandle::Refusal::fd_lost : RoundRobinHandle::Refusal::late;
        work = rr_.refuse(w.pid, id, monotonic_ms(), why, &known);
    }
    if (!known)
        log_event("error message act=%s id=%llu from worker=%d matches no handoff", act.c_str(),
                  static_cast<unsigned long long>(id), w.pid);
    send(std::move(work));
}

void ServerHandle::remove(pid_t worker) { send(redeal(worker)); }

// What a dead worker never confirmed was still unread in its channel: its client has sent its
// request to nobody yet. It is dealt again, first.
std::vector<RoundRobinHandle::Handoff> ServerHandle::redeal(pid_t dead) {
    size_t count = 0;
    auto again = rr_.remove(dead, monotonic_ms(), &count);
    if (count) log_event("redeal connections=%zu from worker=%d", count, dead);
    return again;
}

void ServerHandle::accept_and_deal() {
    rr_.set_max_waiting(waiting_room());  // the limit may have changed under us (prlimit --pid)
    for (int i = 0; i < 128 && !rr_.full(); ++i) {  // bounded, so acks and signals get their turn
        Accepted a = accept_client(listener_.get(), /*nonblocking=*/true);
        if (a.status == AcceptStatus::none_pending) break;
        if (a.status != AcceptStatus::client) continue;
        send(rr_.distribute(std::move(a.fd), monotonic_ms()));
    }
    watch_listener();
}

void ServerHandle::watch_listener() {
    bool room = !rr_.full();
    if (room == accepting_) return;
    accepting_ = room;
    loop_.modify(listener_.get(), room ? uint32_t{EPOLLIN} : 0u);
    if (!room) full_.add();
}

void ServerHandle::send(std::vector<RoundRobinHandle::Handoff> work) {
    for (size_t i = 0; i < work.size(); ++i) {
        RoundRobinHandle::Handoff next = work[i];
        JsonObject m = msg("cmd", "connection");
        m.set("id", static_cast<std::int64_t>(next.id));
        m.set("handle", key_);
        m.set("sent_ms", static_cast<std::int64_t>(monotonic_ms()));  // read later than late_ms: refused
        m.set("late_ms", static_cast<std::int64_t>(rr_.late_ms()));
        Worker* w = table_.find_pid(next.worker);
        if (w && table_.send(*w, m, next.fd)) continue;
        // Its channel is gone (EPIPE, its end of file on the way): what it held is dealt again.
        log_event("handoff failed worker=%d: trying the next one", next.worker);
        auto again = redeal(next.worker);
        work.insert(work.end(), again.begin(), again.end());
    }
    if (deal_) {
        look_again();
        watch_listener();
    }
}

// Something is due later (the worker in turn would count as stuck, a rest ends, a handoff is to
// be taken back): look again then. One timer for all of them.
void ServerHandle::look_again() {
    long long deadline = rr_.next_deadline();
    if (deadline < 0 || (deadline_timer_ && deadline_at_ <= deadline)) return;
    if (deadline_timer_) loop_.cancel_timer(deadline_timer_);
    deadline_at_ = deadline;
    deadline_timer_ = loop_.add_timer(std::max(1LL, deadline - monotonic_ms()), [this] {
        deadline_timer_ = 0;
        for (pid_t pid : rr_.overdue(monotonic_ms()))  // an answer already in a channel is news
            if (Worker* w = table_.find_pid(pid)) table_.read_messages(*w);
        std::vector<RoundRobinHandle::TakenBack> taken;
        auto work = rr_.poll(monotonic_ms(), &taken);
        for (const auto& t : taken)
            log_event("take-back worker=%d id=%llu: no answer in %lld ms, dealt again", t.worker,
                      static_cast<unsigned long long>(t.id), t.held_ms);
        send(std::move(work));
    });
}

JsonObject answer_connection(Message& m, HttpServer& http, BurstLog& lost) {
    // Answered in the same turn of the loop, before a byte of it is read, so the primary can
    // close its copy and deal us more.
    JsonObject answer = msg("act", "refused");
    if (m.fd_lost) {
        lost.add();  // at the fd limit they come by the hundred
        answer.set("reason", "fd-lost");
    } else if (!m.fd) {
        log_event("error message cmd=connection carried no socket");
        answer.set("reason", "no-fd");
    } else if (monotonic_ms() - m.body.get_int("sent_ms") > m.body.get_int("late_ms")) {
        answer.set("reason", "late");  // our copy closes here, unread
    } else {
        answer = msg("act", "accepted");
        http.adopt(std::move(m.fd));
    }
    answer.set("id", m.body.get_int("id"));
    answer.set("handle", m.body.get_int("handle"));
    return answer;
}
