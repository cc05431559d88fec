// worker_mail.hpp — worker-to-worker messages, relayed by the master and addressed by pid (lab13).
//
// Workers have a channel to the master only (cluster.hpp), never to each other, so a worker
// that wants to reach another asks the master to relay, naming the other by pid (the
// material's 000, on IPC). Two ways, both HTTP routes of a worker:
//   POST /send?to=PID   a text (at most 64 KiB) for worker PID: 202 once the master has put it
//                       in PID's channel (not "read"); PID logs `message from=A bytes=N
//                       text="…"` and keeps the last five. 404: PID is not a live worker; 400:
//                       a bad pid; 413: too long; 503: more than 1 MiB already waits in the
//                       master for PID's channel (it is not reading), rather than the master
//                       buffering for it without bound.
//   GET /inbox?pid=PID  a request and a reply: the master asks PID under an id of its own
//                       (PendingReplies, 2 s: then 504) and answers the asker under the
//                       asker's id (its own PendingReplies, 5 s backstop: the master always
//                       answers). A reply after its deadline is logged `late-reply` and dropped.
// The messages: worker → master {"act":"send","id":N,"to":PID,"text":T},
// {"act":"inbox","id":N,"pid":PID}, {"act":"reply","id":M,"status":S,"body":B}; master → worker
// {"cmd":"message","from":A,"text":T}, {"cmd":"inbox","id":M}, {"cmd":"reply","id":N,"status":S,"body":B}.
//
// Worker side: Mailbox (the routes, the inbox, and ask_master for any question to the master).
// Master side: MailRelay (finds the target in the Cluster's table by pid, relays, answers).
// Ownership: each owns its table of questions waiting for an answer (and their timers); both
// borrow the loop and the channel, which must outlive them.
#pragma once

#include "cluster.hpp"
#include "event_loop.hpp"
#include "http.hpp"
#include "http_server.hpp"
#include "json.hpp"
#include "pending_replies.hpp"

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <sys/types.h>

class Mailbox {
public:
    Mailbox(EventLoop& loop, MasterLink& master) : master_(master), asked_(loop) {}

    // POST /send and GET /inbox (405 for another method); false for any other path.
    bool serve(const Request& req, HttpServer::ReplyFn& reply);
    // Sends `question` (an {"act":…}) to the master with an id, and answers the HTTP request with
    // the {"cmd":"reply"} that comes back under that id, or 504 after 5 s.
    void ask_master(JsonObject question, HttpServer::ReplyFn reply);
    // {"cmd":"message"}, {"cmd":"inbox"} and {"cmd":"reply"} from the master; false for any other.
    bool on_message(const JsonObject& body);

private:
    struct Entry {
        pid_t from;
        std::string text;
    };
    std::string inbox_json() const;

    MasterLink& master_;
    PendingReplies asked_;  // our questions to the master, by id
    std::deque<Entry> inbox_;
    long long received_ = 0;
};

class MailRelay {
public:
    MailRelay(EventLoop& loop, Cluster& cluster) : cluster_(cluster), asked_(loop) {}

    // {"act":"send"}, {"act":"inbox"} and {"act":"reply"} from worker `w`; false for any other.
    bool on_message(Worker& w, const JsonObject& body);
    // {"cmd":"reply","id":id,"status":status,"body":body}: the answer to w's question `id`.
    void answer(Worker& w, std::int64_t id, int status, const std::string& body);

private:
    Worker* find(pid_t pid);
    // nullptr, with the asker answered 404 or 503, when `to` cannot take a message now.
    Worker* target(Worker& from, std::int64_t from_id, pid_t to);
    void relay_message(Worker& from, std::int64_t from_id, pid_t to, const std::string& text);
    void relay_inbox(Worker& from, std::int64_t from_id, pid_t to);

    Cluster& cluster_;
    PendingReplies asked_;  // questions to one worker on behalf of another
};
