// round_robin_handle.cpp — the round-robin dealer's decisions (lab07): whose turn it is, what
// waits, what is taken back. The rules are in round_robin_handle.hpp.
#include "round_robin_handle.hpp"

#include <algorithm>

std::size_t RoundRobinHandle::waiting_room(long long fd_limit) {
    if (fd_limit < 0) return kMaxWaiting;
    return std::clamp<std::size_t>(static_cast<std::size_t>(fd_limit) / 4, 1, kMaxWaiting);
}

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

RoundRobinHandle::Turn RoundRobinHandle::turn_of(const Slot& s, long long now_ms) const {
    if (now_ms < s.resting_until) return Turn::skip;
    if (!s.busy) return Turn::take;
    // A healthy worker answers within a millisecond: one that has not for stuck_ms is stopped or
    // busy computing, and waiting on it would stall every connection behind it.
    return now_ms - s.busy_since < stuck_ms_ ? Turn::wait : Turn::skip;
}

// BEGIN SOLUTION lab07: deal in turn, i = (i+1) mod n: take a free worker, wait for one whose answer is on the way, skip one that is stuck or resting
RoundRobinHandle::Slot* RoundRobinHandle::next_in_turn(long long now_ms) {
    for (std::size_t tried = 0; tried < ring_.size(); ++tried) {
        Slot& s = ring_[next_ % ring_.size()];
        Turn turn = turn_of(s, now_ms);
        if (turn == Turn::wait) return nullptr;  // its turn, soon: the connection waits here
        next_ = (next_ + 1) % ring_.size();
        if (turn == Turn::take) return &s;
    }
    // Nobody can take it (every worker stuck or resting): the first to answer gets the oldest
    // connection (acknowledge()), or the next poll() does.
    return nullptr;
}
// STUB:
// RoundRobinHandle::Slot* RoundRobinHandle::next_in_turn(long long) {
//     return ring_.empty() ? nullptr : &ring_[0];  // always the first worker
// }
// END SOLUTION

long long RoundRobinHandle::next_deadline() const {
    long long due = -1;
    auto earliest = [&due](long long t) { due = due < 0 ? t : std::min(due, t); };
    if (turn_due_ >= 0) earliest(turn_due_);
    if (!waiting_.empty())
        for (const Slot& s : ring_)
            if (s.resting_until) earliest(s.resting_until);
    for (const auto& [id, f] : in_flight_)
        if (f.client) earliest(f.sent_ms + take_back_ms_);
    return due;
}

std::vector<pid_t> RoundRobinHandle::overdue(long long now_ms) const {
    std::vector<pid_t> out;
    for (const auto& [id, f] : in_flight_)
        if (due_back(f, now_ms) && std::find(out.begin(), out.end(), f.worker) == out.end()) out.push_back(f.worker);
    return out;
}

std::vector<RoundRobinHandle::Handoff> RoundRobinHandle::poll(long long now_ms, std::vector<TakenBack>* taken_back) {
    // Take back, oldest first, what stuck workers have held too long; they stay busy.
    std::vector<std::pair<long long, std::uint64_t>> due;
    for (auto& [id, f] : in_flight_)
        if (due_back(f, now_ms)) due.emplace_back(f.sent_ms, id);
    std::sort(due.rbegin(), due.rend());
    for (auto& [sent, id] : due) {
        InFlight& f = in_flight_.at(id);
        if (taken_back) taken_back->push_back(TakenBack{f.worker, id, now_ms - sent});
        waiting_.push_front(std::move(f.client));
    }
    if (taken_back) std::reverse(taken_back->begin(), taken_back->end());  // oldest first
    return deal_waiting(now_ms);
}

std::vector<RoundRobinHandle::Handoff> RoundRobinHandle::deal_waiting(long long now_ms) {
    // A rest that is over is forgotten, so that next_deadline() never names a time past.
    for (Slot& s : ring_)
        if (s.resting_until && s.resting_until <= now_ms) s.resting_until = 0;
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
    // A connection waits for the worker in turn: look again when that worker would count as
    // stuck. Not when it already does (every worker stuck): that time is past, and a timer set
    // for it would fire again and again until somebody answers.
    turn_due_ = -1;
    if (!waiting_.empty() && !ring_.empty()) {
        const Slot& s = ring_[next_ % ring_.size()];
        if (turn_of(s, now_ms) == Turn::wait) turn_due_ = s.busy_since + stuck_ms_;
    }
    return out;
}

std::vector<RoundRobinHandle::Handoff> RoundRobinHandle::distribute(Fd client, long long now_ms, bool* refused) {
    if (refused) *refused = false;
    if (full()) {
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

std::vector<RoundRobinHandle::Handoff> RoundRobinHandle::refuse(pid_t worker, std::uint64_t id, long long now_ms,
                                                                Refusal why, bool* known) {
    if (why == Refusal::fd_lost)
        for (Slot& s : ring_)
            if (s.worker == worker) s.resting_until = now_ms + kRestMs;
    return settle(worker, id, false, now_ms, known);
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

std::vector<RoundRobinHandle::Handoff> RoundRobinHandle::remove(pid_t worker, long long now_ms, std::size_t* redealt) {
    retire(worker);
    // Its unconfirmed connections were never read by anyone: the clients still wait for an
    // answer. Oldest first, ahead of the ones waiting already.
    std::vector<std::uint64_t> ids;
    for (auto& [id, f] : in_flight_)
        if (f.worker == worker) ids.push_back(id);
    std::sort(ids.rbegin(), ids.rend());
    std::size_t count = 0;
    for (std::uint64_t id : ids) {
        if (in_flight_.at(id).client) {
            waiting_.push_front(std::move(in_flight_.at(id).client));
            ++count;
        }
        in_flight_.erase(id);
    }
    if (redealt) *redealt = count;
    return deal_waiting(now_ms);
}
