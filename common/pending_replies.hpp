// pending_replies.hpp — asking another process over IPC and matching its answer by an id (lab13).
//
// A channel carries messages both ways in any order, so a question and its answer are tied by a
// number: the asker puts "id" in the question, the answerer copies it into the reply, and the
// asker looks the id up here. Node does the same for every internal request between the cluster
// primary and a worker (a sequence number in each message, and a table of callbacks waiting for
// it), and libraries built on process.send() do it for user code.
//
// Every question has a deadline: a peer that never answers (stopped, busy, dead) must not keep a
// callback, and whatever it holds (an HTTP client waiting), forever. The callback runs exactly
// once: with the reply, or with nullptr when the deadline passed first. A reply that comes after
// the deadline finds no entry: settle() returns false and the caller drops it.
//
// Ownership: the table owns the callbacks and their timers on the loop; destroying it cancels
// the timers without calling anything.
#pragma once

#include "event_loop.hpp"
#include "json.hpp"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <unordered_map>

class PendingReplies {
public:
    using OnReply = std::function<void(const JsonObject* reply)>;  // nullptr: no answer in time

    explicit PendingReplies(EventLoop& loop) : loop_(loop) {}
    ~PendingReplies();
    PendingReplies(const PendingReplies&) = delete;
    PendingReplies& operator=(const PendingReplies&) = delete;

    // Registers a question; returns the id to send with it (1, 2, 3…: never 0, never reused).
    std::int64_t ask(long timeout_ms, OnReply on_reply);
    // The answer to question `id` arrived: runs its callback with it. False if no question with
    // that id is waiting (answered already, timed out, or never asked): the caller drops it.
    bool settle(std::int64_t id, const JsonObject& reply);
    std::size_t waiting() const { return pending_.size(); }

private:
    struct Entry {
        OnReply on_reply;
        EventLoop::TimerId timer;
    };
    EventLoop& loop_;
    std::int64_t next_id_ = 1;
    std::unordered_map<std::int64_t, Entry> pending_;
};
