#include "pending_replies.hpp"

#include <utility>

PendingReplies::~PendingReplies() {
    for (auto& [id, e] : pending_) loop_.cancel_timer(e.timer);
}

std::int64_t PendingReplies::ask(long timeout_ms, OnReply on_reply) {
    std::int64_t id = next_id_++;
    EventLoop::TimerId timer = loop_.add_timer(timeout_ms, [this, id] {
        auto it = pending_.find(id);
        if (it == pending_.end()) return;
        OnReply fn = std::move(it->second.on_reply);
        pending_.erase(it);  // before the call: the callback may ask again
        fn(nullptr);
    });
    pending_.emplace(id, Entry{std::move(on_reply), timer});
    return id;
}

bool PendingReplies::settle(std::int64_t id, const JsonObject& reply) {
    auto it = pending_.find(id);
    if (it == pending_.end()) return false;
    loop_.cancel_timer(it->second.timer);
    OnReply fn = std::move(it->second.on_reply);
    pending_.erase(it);
    fn(&reply);
    return true;
}
