#include "round_robin_handle.hpp"

#include <algorithm>

std::vector<RoundRobinHandle::Handoff> RoundRobinHandle::add(pid_t worker, long long now_ms) {
    if (std::none_of(ring_.begin(), ring_.end(), [worker](const Slot& s) { return s.worker == worker; }))
        ring_.push_back(Slot{worker});
    return deal_waiting(now_ms);
}

bool RoundRobinHandle::busy(pid_t worker) const {
    for (const Slot& s : ring_)
        if (s.worker == worker) return s.busy;
    return false;
}

RoundRobinHandle::Slot* RoundRobinHandle::next_in_turn(long long now_ms) {
    // Skip the stuck; stop at the first worker that is free (its turn) or that owes a fresh
    // confirmation (wait for it: it is about to be free).
    for (std::size_t tried = 0; tried < ring_.size(); ++tried) {
        Slot& s = ring_[next_ % ring_.size()];
        if (!s.busy) {
            next_ = (next_ + 1) % ring_.size();
            return &s;
        }
        if (now_ms - s.busy_since < stuck_ms_) return nullptr;
        next_ = (next_ + 1) % ring_.size();
    }
    // Everyone is stuck: the first to confirm gets the oldest connection (acknowledge()).
    return nullptr;
}

long long RoundRobinHandle::next_deadline() const {
    long long due = -1;
    auto earliest = [&due](long long t) { due = due < 0 ? t : std::min(due, t); };
    if (!waiting_.empty() && !ring_.empty()) {
        const Slot& s = ring_[next_ % ring_.size()];
        if (s.busy) earliest(s.busy_since + stuck_ms_);
    }
    for (const auto& [id, f] : in_flight_)
        if (f.client) earliest(f.sent_ms + take_back_ms_);
    return due;
}

std::vector<RoundRobinHandle::Handoff> RoundRobinHandle::poll(long long now_ms) {
    // Take back, oldest first, what stuck workers have held too long; they stay busy.
    std::vector<std::pair<long long, std::uint64_t>> overdue;
    for (auto& [id, f] : in_flight_)
        if (f.client && now_ms - f.sent_ms >= take_back_ms_) overdue.emplace_back(f.sent_ms, id);
    std::sort(overdue.rbegin(), overdue.rend());
    for (auto& [sent, id] : overdue) waiting_.push_front(std::move(in_flight_.at(id).client));
    return deal_waiting(now_ms);
}

std::vector<RoundRobinHandle::Handoff> RoundRobinHandle::deal_waiting(long long now_ms) {
    std::vector<Handoff> out;
    while (!waiting_.empty()) {
        Slot* s = next_in_turn(now_ms);
        if (!s) break;
        s->busy = true;
        s->busy_since = now_ms;
        std::uint64_t id = ++last_id_;
        int fd = waiting_.front().get();
        in_flight_.emplace(id, InFlight{s->worker, std::move(waiting_.front()), now_ms});
        waiting_.pop_front();
        out.push_back(Handoff{s->worker, id, fd});
    }
    return out;
}

std::vector<RoundRobinHandle::Handoff> RoundRobinHandle::distribute(Fd client, long long now_ms, bool* refused) {
    if (refused) *refused = false;
    if (waiting_.size() >= max_waiting_) {
        if (refused) *refused = true;
        return {};  // `client` closes here
    }
    waiting_.push_back(std::move(client));
    return deal_waiting(now_ms);
}

std::vector<RoundRobinHandle::Handoff> RoundRobinHandle::acknowledge(pid_t worker, std::uint64_t id, long long now_ms,
                                                                     bool* known) {
    return settle(worker, id, true, now_ms, known);
}

std::vector<RoundRobinHandle::Handoff> RoundRobinHandle::refuse(pid_t worker, std::uint64_t id, long long now_ms) {
    return settle(worker, id, false, now_ms, nullptr);
}

std::vector<RoundRobinHandle::Handoff> RoundRobinHandle::settle(pid_t worker, std::uint64_t id, bool accepted,
                                                                long long now_ms, bool* known) {
    auto it = in_flight_.find(id);
    bool ok = it != in_flight_.end() && it->second.worker == worker;
    if (known) *known = ok;
    if (!ok) return {};
    // Accepted: the worker has its copy, close ours. Refused: the client is still unserved (unless
    // it was taken back already), first in line.
    if (!accepted && it->second.client) waiting_.push_front(std::move(it->second.client));
    in_flight_.erase(it);
    for (Slot& s : ring_)
        if (s.worker == worker) s.busy = false;
    return deal_waiting(now_ms);
}

void RoundRobinHandle::retire(pid_t worker) {
    auto slot = std::find_if(ring_.begin(), ring_.end(), [worker](const Slot& s) { return s.worker == worker; });
    if (slot == ring_.end()) return;
    std::size_t index = static_cast<std::size_t>(slot - ring_.begin());
    ring_.erase(slot);
    if (next_ > index) --next_;  // keep the turn where it was for the others
    next_ = ring_.empty() ? 0 : next_ % ring_.size();
}

std::vector<RoundRobinHandle::Handoff> RoundRobinHandle::remove(pid_t worker, long long now_ms) {
    retire(worker);
    // Its unconfirmed connections were never read by anyone: the clients still wait for an
    // answer. Oldest first, ahead of the ones waiting already.
    std::vector<std::uint64_t> ids;
    for (auto& [id, f] : in_flight_)
        if (f.worker == worker) ids.push_back(id);
    std::sort(ids.rbegin(), ids.rend());
    for (std::uint64_t id : ids) {
        if (in_flight_.at(id).client) waiting_.push_front(std::move(in_flight_.at(id).client));
        in_flight_.erase(id);
    }
    return deal_waiting(now_ms);
}
