#include "rolling_reload.hpp"

#include <utility>

RollingReload::RollingReload(long long listen_timeout_ms) : listen_timeout_ms_(listen_timeout_ms) {}

RollingReload::Request RollingReload::request(bool ready) {
    if (!running_ && ready) return Request::begin;
    // Several SIGHUPs during a reload coalesce into one more, run when this one is over: the
    // file is read then, so the last edit wins and nothing is replaced twice for nothing.
    if (queued_) return Request::queued_again;
    queued_ = true;
    return Request::queued;
}

bool RollingReload::take_queued() {
    if (running_ || !queued_) return false;
    queued_ = false;
    return true;
}

void RollingReload::begin(long generation, std::vector<int> worker_of_slot, long long now_ms) {
    running_ = true;
    generation_ = generation;
    started_ms_ = now_ms;
    slots_.clear();
    for (int id : worker_of_slot) slots_.push_back(Slot{.worker = id});
    next_slot_ = 0;
    phase_ = Phase::pick;
    old_id_ = new_id_ = 0;
    old_died_ = false;
    abort_reason_.clear();
}

bool RollingReload::ahead(int slot) const {
    size_t s = static_cast<size_t>(slot);
    // During a step its own slot is taken: only the slots after it are ahead.
    return s < slots_.size() && (s > next_slot_ || (s == next_slot_ && phase_ == Phase::pick));
}

int RollingReload::replaced() const {
    int n = 0;
    for (const Slot& s : slots_) n += s.current ? 1 : 0;
    return n;
}

ReloadAction RollingReload::finish(ReloadAction::Kind kind) {
    ReloadAction a;
    a.kind = kind;
    a.generation = generation_;
    a.replaced = replaced();
    running_ = false;
    return a;
}

ReloadAction RollingReload::next(long long now_ms) {
    if (!running_) return {};
    if (phase_ == Phase::waiting && abort_reason_.empty() && now_ms - step_started_ms_ >= listen_timeout_ms_)
        abort_reason_ = "listen-timeout";
    if (!abort_reason_.empty()) {
        ReloadAction a = finish(ReloadAction::Kind::abort);
        a.slot = static_cast<int>(next_slot_);
        a.new_id = new_id_;
        a.reason = std::move(abort_reason_);
        a.restart_slot = old_died_;
        abort_reason_.clear();
        return a;
    }
    ReloadAction a;
    a.generation = generation_;
    switch (phase_) {
    case Phase::pick:
        if (next_slot_ == slots_.size()) {
            a = finish(ReloadAction::Kind::finished);
            a.ms = now_ms - started_ms_;
            return a;
        }
        a.slot = static_cast<int>(next_slot_);
        if (slots_[next_slot_].current) {  // a restart during this reload read the new file already
            a.kind = ReloadAction::Kind::skip;
            a.old_id = slots_[next_slot_++].worker;
            return a;
        }
        phase_ = Phase::starting;
        old_id_ = a.old_id = slots_[next_slot_].worker;
        old_died_ = false;
        new_id_ = 0;
        step_started_ms_ = now_ms;
        a.kind = ReloadAction::Kind::start;
        return a;
    case Phase::starting:  // the caller has not said started() or start_failed() yet
        a.kind = ReloadAction::Kind::wait;
        a.ms = -1;
        return a;
    case Phase::waiting:
        // The old worker keeps accepting until its newcomer says `listening`: retiring it now
        // would leave its slot empty while the newcomer starts, and for good if it never listens.
        a.kind = ReloadAction::Kind::wait;
        a.slot = static_cast<int>(next_slot_);
        a.old_id = old_died_ ? 0 : old_id_;
        a.new_id = new_id_;
        a.ms = step_started_ms_ + listen_timeout_ms_ - now_ms;
        return a;
    case Phase::listened:
        a.kind = ReloadAction::Kind::retire;
        a.slot = static_cast<int>(next_slot_);
        a.old_id = old_died_ ? 0 : old_id_;  // a crashed one is on its way out already
        a.new_id = new_id_;
        a.ms = listened_ms_ - step_started_ms_;
        slots_[next_slot_++] = Slot{.worker = new_id_, .current = true};
        phase_ = Phase::pick;
        old_id_ = new_id_ = 0;
        return a;
    }
    return a;
}

void RollingReload::started(int new_id) {
    if (!running_ || phase_ != Phase::starting) return;
    new_id_ = new_id;
    phase_ = Phase::waiting;
}

void RollingReload::start_failed() {
    if (running_ && phase_ == Phase::starting) abort_reason_ = "fork-failed";
}

void RollingReload::listening(int id, long long now_ms) {
    if (!running_ || phase_ != Phase::waiting || id != new_id_ || !abort_reason_.empty()) return;
    phase_ = Phase::listened;
    listened_ms_ = now_ms;
}

RollingReload::Gone RollingReload::gone(int id) {
    if (!running_ || id == 0) return Gone::other;
    bool in_step = phase_ == Phase::starting || phase_ == Phase::waiting;
    if (phase_ == Phase::waiting && id == new_id_) {
        if (abort_reason_.empty()) abort_reason_ = "new-worker-exited";
        return Gone::newcomer;
    }
    if (in_step && id == old_id_ && !old_died_) {
        // Before its newcomer listened: the newcomer is already its replacement, so nothing else
        // is started (or the slot would end up with two workers).
        old_died_ = true;
        return Gone::old_of_step;
    }
    for (size_t s = 0; s < slots_.size(); ++s)
        if (slots_[s].worker == id && ahead(static_cast<int>(s))) slots_[s] = Slot{};  // empty until restarted
    return Gone::other;
}

void RollingReload::slot_done(int slot, int id) {
    if (running_ && ahead(slot)) slots_[static_cast<size_t>(slot)] = Slot{.worker = id, .current = true};
}

bool RollingReload::cancel() {
    bool was = running_;
    running_ = queued_ = false;
    return was;
}
