// Unit tests for what lab13 added to common/: the request body (http.hpp), the IPC question and
// answer matched by id (pending_replies.hpp), the key=value store and its pollers
// (shared_store.hpp), JSON text (json.hpp), and how far a channel's peer is behind (channel.hpp).
#include "channel.hpp"
#include "check.hpp"
#include "event_loop.hpp"
#include "http.hpp"
#include "pending_replies.hpp"
#include "process.hpp"
#include "shared_store.hpp"

#include <csignal>
#include <cstdio>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

namespace {

Request parse_one(const std::string& wire, size_t* consumed = nullptr) {
    RequestParser parser;
    Request req;
    auto r = parser.parse(wire, req);
    CHECK(r.status == RequestParser::Status::complete);
    if (consumed) *consumed = r.consumed;
    return req;
}

}  // namespace

TEST_CASE("a Content-Length body is kept in the request, and the next request starts after it") {
    std::string wire = "POST /send?to=7 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n";
    size_t consumed = 0;
    Request req = parse_one(wire, &consumed);
    CHECK_EQ(req.body, std::string("hello"));
    CHECK_EQ(wire.substr(consumed, 5), std::string("GET /"));
}

TEST_CASE("a chunked body is decoded, even when it arrives one byte at a time") {
    std::string wire = "POST /send HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "3\r\nhel\r\n2;ext=1\r\nlo\r\n0\r\nTrailer: y\r\n\r\n";
    CHECK_EQ(parse_one(wire).body, std::string("hello"));
    RequestParser parser;
    Request req;
    std::string buf;
    RequestParser::Result r;
    for (char c : wire) {
        buf += c;
        r = parser.parse(buf, req);
        if (r.status != RequestParser::Status::need_more) break;
    }
    CHECK(r.status == RequestParser::Status::complete);
    CHECK_EQ(req.body, std::string("hello"));
}

TEST_CASE("a request without a body has an empty one") {
    CHECK_EQ(parse_one("GET / HTTP/1.1\r\nHost: x\r\n\r\n").body, std::string(""));
}

TEST_CASE("a reply settles its question once, by id; a late or unknown id is refused") {
    EventLoop loop;
    PendingReplies asked(loop);
    int calls = 0;
    std::string got;
    std::int64_t a = asked.ask(1000, [&](const JsonObject* r) { ++calls; got = r ? r->get_string("body") : "timeout"; });
    std::int64_t b = asked.ask(1000, [&](const JsonObject*) { ++calls; });
    CHECK(a != b && a > 0 && b > 0);
    CHECK_EQ(asked.waiting(), size_t{2});
    JsonObject reply;
    reply.set("body", "inbox of a");
    CHECK(asked.settle(a, reply));
    CHECK_EQ(got, std::string("inbox of a"));
    CHECK(!asked.settle(a, reply));    // a second answer to the same question
    CHECK(!asked.settle(999, reply));  // never asked
    CHECK_EQ(calls, 1);
    CHECK_EQ(asked.waiting(), size_t{1});
}

TEST_CASE("a question nobody answers in time gets nullptr once, and its late answer is refused") {
    EventLoop loop;
    PendingReplies asked(loop);
    int timeouts = 0;
    std::int64_t id = asked.ask(20, [&](const JsonObject* r) {
        if (!r) ++timeouts;
        loop.stop();
    });
    loop.add_timer(2000, [&] { loop.stop(); });  // a bound, should the deadline never fire
    loop.run();
    CHECK_EQ(timeouts, 1);
    CHECK_EQ(asked.waiting(), size_t{0});
    CHECK(!asked.settle(id, JsonObject{}));
}

TEST_CASE("the store's entries: trimmed keys, values after the first '=', comments and junk skipped") {
    JsonObject v = parse_store("# comment\n\n greeting = hi there\r\nurl=http://x/?a=b\nno equals\n=no key\nk=1\nk=2");
    CHECK_EQ(v.dump(), std::string(R"({"greeting":" hi there","url":"http://x/?a=b","k":"2"})"));
    CHECK_EQ(parse_store("").size(), size_t{0});
}

TEST_CASE("a missing store is empty, a store over the limit is an error, a temp store is removed") {
    StoreRead missing = read_store("/nonexistent/lab13/store", 100);
    CHECK(missing.ok && missing.text.empty());
    std::string path = create_temp_store("lab13-unit", "a=1\nb=2\n");
    CHECK(!path.empty());
    StoreRead r = read_store(path, 100);
    CHECK(r.ok);
    CHECK_EQ(r.text, std::string("a=1\nb=2\n"));
    StoreRead big = read_store(path, 4);
    CHECK(!big.ok && big.error.find("larger than 4 bytes") != std::string::npos);
    remove_temp_store(path);
    CHECK(access(path.c_str(), F_OK) != 0);
    CHECK(access(path.substr(0, path.rfind('/')).c_str(), F_OK) != 0);
}

TEST_CASE("a FIFO where the store should be is an error at once, never a blocked open or read") {
    std::string path = create_temp_store("lab13-unit", "a=1\n");
    CHECK(!path.empty());
    CHECK(::unlink(path.c_str()) == 0 && ::mkfifo(path.c_str(), 0600) == 0);
    alarm(5);  // before the fix open() blocked here for good: the alarm ends the test as a failure
    StoreRead r = read_store(path, 100);
    alarm(0);
    CHECK(!r.ok);
    CHECK(r.error.find("is not a regular file") != std::string::npos);
    StoreRead dir = read_store(path.substr(0, path.rfind('/')), 100);
    CHECK(!dir.ok && dir.error.find("is not a regular file") != std::string::npos);
    remove_temp_store(path);
}

TEST_CASE("a poller sees each new text once, and an unreadable store keeps the old state") {
    std::string path = create_temp_store("lab13-unit", "a=1\n");
    StorePoller p;
    p.path = path;
    std::string text;
    CHECK(p.check(&text) && text == "a=1\n");  // the first check always reports
    CHECK(!p.check(&text));                     // unchanged
    CHECK(::unlink(path.c_str()) == 0 && ::mkfifo(path.c_str(), 0600) == 0);
    CHECK(!p.check(&text));                     // an error: no change, logged once
    CHECK(::unlink(path.c_str()) == 0);
    text.clear();
    CHECK(p.check(&text) && text.empty());      // gone: an empty store is a change
    remove_temp_store(path);
}

TEST_CASE("queued_bytes: what the peer has not taken yet, and none once it reads") {
    auto [a, b] = make_channel_pair();
    Channel sender(std::move(a));
    JsonObject m;
    m.set("text", std::string(64 * 1024, 'x'));
    CHECK_EQ(sender.queued_bytes(), size_t{0});
    size_t sent = 0;
    while (!sender.wants_write()) {  // until the socket buffer is full and the channel queues
        CHECK(sender.send(m));
        ++sent;
    }
    CHECK(sender.queued_bytes() > 0 && sender.queued_bytes() <= sent * (m.dump().size() + 1));
    char buf[65536];
    while (sender.wants_write()) {
        while (::read(b.get(), buf, sizeof buf) == static_cast<ssize_t>(sizeof buf)) {
        }
        CHECK(sender.flush());
    }
    CHECK_EQ(sender.queued_bytes(), size_t{0});
}

TEST_CASE("JSON text: a quoted string, and an object with one more member") {
    CHECK_EQ(json_quoted("a\"b\n"), std::string(R"("a\"b\u000a")"));
    CHECK_EQ(json_with("{}", "v", "[1]"), std::string(R"({"v":[1]})"));
    CHECK_EQ(json_with(R"({"a":1})", "v", R"({"k":"x"})"), std::string(R"({"a":1,"v":{"k":"x"}})"));
}

TEST_MAIN("shared_state")
