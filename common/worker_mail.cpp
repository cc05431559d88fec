#include "worker_mail.hpp"
#include "log.hpp"
#include "process.hpp"
#include "router.hpp"

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <utility>

namespace {

constexpr std::size_t kMaxSendBytes = 64 * 1024;  // POST /send's body
constexpr long kInboxTimeoutMs = 2000;            // GET /inbox: how long the master waits for PID
constexpr long kMasterTimeoutMs = 5000;           // a worker's backstop for any question to the master
constexpr std::size_t kInboxKeep = 5;             // messages a worker keeps
constexpr std::size_t kInboxShowBytes = 4096;     // of each, in GET /inbox
constexpr std::size_t kLogTextBytes = 200;        // of each, in the `message` log line
// A target this far behind (bytes the master holds for it, beyond what its socket buffer took) is
// not reading: 503 rather than buffer without bound. Not "any byte queued": a healthy worker
// under a burst of sends is briefly behind, and must not be refused (issue 24, fault 7).
constexpr std::size_t kMaxBehindBytes = 1 << 20;

// ?NAME=PID: a process id, or a 400 saying what is wrong.
bool pid_param(const Request& req, const char* name, pid_t* out, HttpServer::ReplyFn& reply) {
    std::string text;
    errno = 0;
    char* end = nullptr;
    long v = query_param(req.query, name, &text) ? std::strtol(text.c_str(), &end, 10) : 0;
    if (text.empty() || *end != '\0' || errno == ERANGE || v < 1 || v > INT_MAX) {
        reply({400, std::string(name) + " must be a process id (a whole number from 1)\n", ""});
        return false;
    }
    *out = static_cast<pid_t>(v);
    return true;
}

}  // namespace

// ---- the worker's side ----------------------------------------------------------------------

bool Mailbox::serve(const Request& req, HttpServer::ReplyFn& reply) {
    bool send = req.path == "/send";
    if (!send && req.path != "/inbox") return false;
    if (send && req.method != "POST") {
        reply({405, "method not allowed: use POST\n", "Allow: POST\r\n"});
        return true;
    }
    if (!send && req.method != "GET" && req.method != "HEAD") {
        reply({405, "method not allowed: use GET or HEAD\n", "Allow: GET, HEAD\r\n"});
        return true;
    }
    pid_t pid;
    if (!pid_param(req, send ? "to" : "pid", &pid, reply)) return true;
    if (!send) {
        JsonObject ask = msg("act", "inbox");
        ask.set("pid", static_cast<std::int64_t>(pid));
        ask_master(std::move(ask), std::move(reply));
        return true;
    }
    if (req.body.size() > kMaxSendBytes) {
        reply({413, "a message is at most " + std::to_string(kMaxSendBytes) + " bytes\n", ""});
        return true;
    }
    JsonObject note = msg("act", "send");
    note.set("to", static_cast<std::int64_t>(pid));
    note.set("text", req.body);
    ask_master(std::move(note), std::move(reply));
    return true;
}

// {"act":...,"id":N} out, {"cmd":"reply","id":N,"status":S,"body":B} back, matched by the id.
void Mailbox::ask_master(JsonObject question, HttpServer::ReplyFn reply) {
    std::int64_t id = asked_.ask(kMasterTimeoutMs, [reply](const JsonObject* answer) {
        if (!answer) return reply({504, "the master did not answer in time\n", ""});
        reply({static_cast<int>(answer->get_int("status", 500)), answer->get_string("body"), ""});
    });
    question.set("id", id);
    master_.send(question);
}

// GET /inbox's body, as this worker tells it.
std::string Mailbox::inbox_json() const {
    std::string list = "[";
    for (const Entry& e : inbox_) {
        JsonObject m;
        m.set("from", static_cast<std::int64_t>(e.from));
        m.set("bytes", static_cast<std::int64_t>(e.text.size()));
        m.set("text", std::string_view(e.text).substr(0, kInboxShowBytes));
        list += (list.size() > 1 ? "," : "") + m.dump();
    }
    JsonObject head;
    head.set("pid", static_cast<std::int64_t>(self_pid()));
    head.set("received", static_cast<std::int64_t>(received_));
    return json_with(head.dump(), "messages", list + "]") + "\n";
}

bool Mailbox::on_message(const JsonObject& body) {
    std::string cmd = body.get_string("cmd");
    if (cmd == "message") {  // another worker's text: keep the last few
        ++received_;
        pid_t from = static_cast<pid_t>(body.get_int("from"));
        std::string text = body.get_string("text");
        std::string shown = text.size() > kLogTextBytes ? text.substr(0, kLogTextBytes) + "..." : text;
        log_event("message from=%d bytes=%zu text=%s", from, text.size(), json_quoted(shown).c_str());
        inbox_.push_back({from, std::move(text)});
        if (inbox_.size() > kInboxKeep) inbox_.pop_front();
    } else if (cmd == "inbox") {  // the master asks on behalf of another worker, under its own id
        JsonObject reply = msg("act", "reply");
        reply.set("id", body.get_int("id"));
        reply.set("status", 200);
        reply.set("body", inbox_json());
        master_.send(reply);
    } else if (cmd == "reply") {
        asked_.settle(body.get_int("id"), body);  // false: too late, its client got a 504
    } else {
        return false;
    }
    return true;
}

// ---- the master's side ----------------------------------------------------------------------

bool MailRelay::on_message(Worker& w, const JsonObject& body) {
    std::string act = body.get_string("act");
    std::int64_t id = body.get_int("id");
    if (act == "send") {
        relay_message(w, id, static_cast<pid_t>(body.get_int("to")), body.get_string("text"));
    } else if (act == "inbox") {
        relay_inbox(w, id, static_cast<pid_t>(body.get_int("pid")));
    } else if (act == "reply") {
        if (!asked_.settle(id, body)) log_event("late-reply worker=%d id=%lld dropped", w.pid, static_cast<long long>(id));
    } else {
        return false;
    }
    return true;
}

void MailRelay::answer(Worker& w, std::int64_t id, int status, const std::string& body) {
    JsonObject reply = msg("cmd", "reply");
    reply.set("id", id);
    reply.set("status", status);
    reply.set("body", body);
    cluster_.send(w, reply);
}

Worker* MailRelay::find(pid_t pid) {
    Worker* w = cluster_.find_pid(pid);
    return w && w->channel ? w : nullptr;  // disconnected: nobody to relay to
}

Worker* MailRelay::target(Worker& from, std::int64_t from_id, pid_t to) {
    Worker* t = find(to);
    if (!t) {
        answer(from, from_id, 404, "no worker with pid " + std::to_string(to) + "\n");
        return nullptr;
    }
    if (t->channel->queued_bytes() > kMaxBehindBytes) {
        answer(from, from_id, 503, "worker " + std::to_string(to) + " is not reading its channel\n");
        return nullptr;
    }
    return t;
}

// Relayed at once. 202 means it is in `to`'s channel, not that `to` has read it.
void MailRelay::relay_message(Worker& from, std::int64_t from_id, pid_t to, const std::string& text) {
    Worker* t = target(from, from_id, to);
    if (!t) return;
    JsonObject note = msg("cmd", "message");
    note.set("from", static_cast<std::int64_t>(from.pid));
    note.set("text", text);
    if (!cluster_.send(*t, note)) return answer(from, from_id, 404, "worker " + std::to_string(to) + " is gone\n");
    answer(from, from_id, 202, "delivered to the channel of worker " + std::to_string(to) + "\n");
}

// The master asks `to` under an id of its own, and when the reply with that id comes back,
// answers the asker under the asker's id. Nobody answers in kInboxTimeoutMs: 504.
void MailRelay::relay_inbox(Worker& from, std::int64_t from_id, pid_t to) {
    Worker* t = target(from, from_id, to);
    if (!t) return;
    pid_t asker = from.pid;  // not &from: the asker may be gone by the time the answer comes
    std::int64_t id = asked_.ask(kInboxTimeoutMs, [this, asker, from_id, to](const JsonObject* reply) {
        Worker* w = find(asker);
        if (!w) return;  // nobody to answer
        if (!reply)
            return answer(*w, from_id, 504,
                          "worker " + std::to_string(to) + " did not answer within " + std::to_string(kInboxTimeoutMs) + " ms\n");
        answer(*w, from_id, static_cast<int>(reply->get_int("status", 500)), reply->get_string("body"));
    });
    JsonObject question = msg("cmd", "inbox");
    question.set("id", id);
    cluster_.send(*t, question);
}
