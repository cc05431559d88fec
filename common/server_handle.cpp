#include "server_handle.hpp"

#include "log.hpp"
#include "net.hpp"
#include "process.hpp"

#include <algorithm>
#include <sys/epoll.h>

ServerHandle::ServerHandle(EventLoop& loop, Cluster& table, int key, Fd listener, bool deal)
    : loop_(loop), table_(table), key_(key), listener_(std::move(listener)), deal_(deal) {
    if (deal_ && !loop_.add(listener_.get(), EPOLLIN, [this](uint32_t) { accept_and_deal(); }))
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

void ServerHandle::answer(Worker& w, const JsonObject& body) {
    auto id = static_cast<std::uint64_t>(body.get_int("id"));
    if (body.get_string("act") == "refused") {
        std::string reason = body.get_string("reason");
        log_event("refused worker=%d id=%llu reason=%s: dealt again", w.pid, static_cast<unsigned long long>(id),
                  reason.c_str());
        auto why = reason == "no-fd" ? RoundRobinHandle::Refusal::fd_lost : RoundRobinHandle::Refusal::late;
        return send(rr_.refuse(w.pid, id, monotonic_ms(), why));  // fd_lost: it rests a moment
    }
    bool known = false;
    auto next = rr_.acknowledge(w.pid, id, monotonic_ms(), &known);
    if (!known)
        log_event("error message act=accepted id=%llu from worker=%d matches no handoff",
                  static_cast<unsigned long long>(id), w.pid);
    send(std::move(next));
}

void ServerHandle::remove(pid_t worker) { send(rr_.remove(worker, monotonic_ms())); }

void ServerHandle::accept_and_deal() {
    for (int i = 0; i < 128; ++i) {  // bounded, so acks and signals get their turn under a flood
        Accepted a = accept_client(listener_.get(), /*nonblocking=*/true);
        if (a.status == AcceptStatus::none_pending) break;
        if (a.status != AcceptStatus::client) continue;
        bool refused = false;
        send(rr_.distribute(std::move(a.fd), monotonic_ms(), &refused));
        if (refused && !refusing_)
            log_event("error every worker busy and %zu connections waiting: refusing new ones", rr_.waiting());
        refusing_ = refused;
    }
}

void ServerHandle::send(std::vector<RoundRobinHandle::Handoff> work) {
    while (!work.empty()) {
        RoundRobinHandle::Handoff next = work.back();
        work.pop_back();
        JsonObject m = msg("cmd", "connection");
        m.set("id", static_cast<std::int64_t>(next.id));
        m.set("handle", key_);
        m.set("sent_ms", static_cast<std::int64_t>(monotonic_ms()));  // read later than late_ms: refused
        m.set("late_ms", static_cast<std::int64_t>(rr_.late_ms()));
        Worker* w = table_.find_pid(next.worker);
        if (w && table_.send(*w, m, next.fd)) continue;
        // Its channel is gone: it is dying. Take its connections back and deal them again.
        auto again = rr_.remove(next.worker, monotonic_ms());
        work.insert(work.end(), again.begin(), again.end());
    }
    // Something is due later (the worker in turn would count as stuck, a connection is to be
    // taken back from a stuck worker): look again then.
    long long deadline = rr_.next_deadline();
    if (deadline < 0 || (deadline_timer_ && deadline_at_ <= deadline)) return;
    if (deadline_timer_) loop_.cancel_timer(deadline_timer_);
    deadline_at_ = deadline;
    deadline_timer_ = loop_.add_timer(std::max(1LL, deadline - monotonic_ms()), [this] {
        deadline_timer_ = 0;
        send(rr_.poll(monotonic_ms()));
    });
}

JsonObject answer_connection(Message& m, HttpServer& http) {
    // Answered in the same turn of the loop, before a byte of it is read, so the primary can
    // close its copy and deal us more.
    const char* refused = nullptr;
    if (!m.fd) refused = "no-fd";
    else if (monotonic_ms() - m.body.get_int("sent_ms") > m.body.get_int("late_ms")) refused = "late";  // closes unread
    JsonObject answer = msg("act", refused ? "refused" : "accepted");
    if (refused) answer.set("reason", refused);
    else http.adopt(std::move(m.fd));
    answer.set("id", m.body.get_int("id"));
    answer.set("handle", m.body.get_int("handle"));
    return answer;
}
