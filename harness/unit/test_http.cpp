// Unit tests for the incremental HTTP/1.x request parser and the response writer.
#include "check.hpp"
#include "http.hpp"
#include "process.hpp"

#include <string>
#include <vector>

namespace {

using Status = RequestParser::Status;

// Feeds `wire` to a parser `step` bytes at a time, as a connection would, collecting every
// complete request; stops at the first error (returned in *error_status).
std::vector<Request> feed(const std::string& wire, size_t step, int* error_status = nullptr) {
    RequestParser parser;
    std::vector<Request> out;
    std::string buf;
    size_t pos = 0;
    if (error_status) *error_status = 0;
    while (pos < wire.size()) {
        buf += wire.substr(pos, step);
        pos += step;
        while (true) {
            Request req;
            auto r = parser.parse(buf, req);
            if (r.status == Status::need_more) break;
            if (r.status == Status::error) {
                if (error_status) *error_status = r.error_status;
                return out;
            }
            out.push_back(req);
            buf.erase(0, r.consumed);
        }
    }
    return out;
}

int error_of(const std::string& wire) {
    int status = 0;
    feed(wire, wire.size(), &status);
    return status;
}

const std::string kGet = "GET /sleep?ms=5 HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n";

}  // namespace

TEST_CASE("a whole request in one read") {
    auto reqs = feed(kGet, kGet.size());
    CHECK_EQ(reqs.size(), 1u);
    CHECK_EQ(reqs[0].method, std::string("GET"));
    CHECK_EQ(reqs[0].path, std::string("/sleep"));
    CHECK_EQ(reqs[0].query, std::string("ms=5"));
    CHECK_EQ(reqs[0].version_minor, 1);
    CHECK(reqs[0].keep_alive);
    CHECK(reqs[0].header("user-agent") && *reqs[0].header("USER-AGENT") == "t");
}

TEST_CASE("the same request arriving one byte at a time") {
    auto reqs = feed(kGet, 1);
    CHECK_EQ(reqs.size(), 1u);
    CHECK_EQ(reqs[0].target, std::string("/sleep?ms=5"));
}

TEST_CASE("every split point gives the same request") {
    for (size_t step = 1; step <= kGet.size(); ++step) {
        auto reqs = feed(kGet + kGet, step);
        CHECK_EQ(reqs.size(), 2u);
    }
}

TEST_CASE("several pipelined requests in one read come out in order") {
    std::string wire = "GET /a HTTP/1.1\r\nHost: x\r\n\r\nHEAD /b HTTP/1.1\r\nHost: x\r\n\r\n"
                       "GET /c HTTP/1.0\r\n\r\n";
    auto reqs = feed(wire, wire.size());
    CHECK_EQ(reqs.size(), 3u);
    CHECK_EQ(reqs[0].path, std::string("/a"));
    CHECK(reqs[1].is_head());
    CHECK_EQ(reqs[2].path, std::string("/c"));
    CHECK_EQ(reqs[2].version_minor, 0);
}

TEST_CASE("bare LF line endings and leading empty lines are accepted") {
    auto reqs = feed("\r\n\nGET / HTTP/1.1\nHost: x\n\n", 3);
    CHECK_EQ(reqs.size(), 1u);
}

TEST_CASE("keep-alive by the rules of each version") {
    auto ka = [](const std::string& wire) { return feed(wire, wire.size()).at(0).keep_alive; };
    CHECK(ka("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    CHECK(!ka("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
    CHECK(!ka("GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, CLOSE\r\n\r\n"));
    CHECK(!ka("GET / HTTP/1.0\r\n\r\n"));
    CHECK(ka("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
}

TEST_CASE("a Content-Length body is read past, so the next request starts right") {
    std::string wire = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /next HTTP/1.1\r\nHost: x\r\n\r\n";
    for (size_t step : {1ul, 7ul, wire.size()}) {
        auto reqs = feed(wire, step);
        CHECK_EQ(reqs.size(), 2u);
        if (reqs.size() == 2) CHECK_EQ(reqs[1].path, std::string("/next"));
    }
}

TEST_CASE("a chunked body is read past, extensions and trailers included") {
    std::string wire = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nTrailer: t\r\n\r\n"
                       "GET /after HTTP/1.1\r\nHost: x\r\n\r\n";
    for (size_t step : {1ul, 4ul, wire.size()}) {
        auto reqs = feed(wire, step);
        CHECK_EQ(reqs.size(), 2u);
        if (reqs.size() == 2) CHECK_EQ(reqs[1].path, std::string("/after"));
    }
}

TEST_CASE("malformed requests are 400") {
    CHECK_EQ(error_of("garbage\r\n\r\n"), 400);
    CHECK_EQ(error_of("GET  / HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
    CHECK_EQ(error_of("GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n"), 400);
    CHECK_EQ(error_of("GET noslash HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
    CHECK_EQ(error_of("G(T / HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
    CHECK_EQ(error_of("GET / HTTX/1.1\r\nHost: x\r\n\r\n"), 400);
    CHECK_EQ(error_of("GET / HTTP/1.1\r\n\r\n"), 400);                       // no Host
    CHECK_EQ(error_of("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);  // two Hosts
    CHECK_EQ(error_of("GET / HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n"), 400);
    CHECK_EQ(error_of("GET / HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n"), 400);
    CHECK_EQ(error_of("GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n folded\r\n\r\n"), 400);
    CHECK_EQ(error_of("GET / HTTP/1.1\r\nHost: x\r\nX: a\x01z\r\n\r\n"), 400);
    CHECK_EQ(error_of("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n"), 400);
    CHECK_EQ(error_of("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"), 400);
    CHECK_EQ(error_of("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
    CHECK_EQ(error_of("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"), 400);
    CHECK_EQ(error_of(std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 15)), 400);  // a TLS hello
}

TEST_CASE("the size limits: 431, 414, 413; other versions 505; other codings 501") {
    CHECK_EQ(error_of("GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(10240, 'a') + "\r\n\r\n"), 431);
    CHECK_EQ(error_of("GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(10240, 'a')), 431);  // never ends
    CHECK_EQ(error_of("GET /" + std::string(9000, 'a')), 414);
    CHECK_EQ(error_of("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n"), 413);
    CHECK_EQ(error_of("GET / HTTP/2.0\r\nHost: x\r\n\r\n"), 505);
    CHECK_EQ(error_of("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"), 501);
    // Just under the limit is fine.
    std::string near = "GET / HTTP/1.1\r\nHost: x\r\nX: " + std::string(8000, 'a') + "\r\n\r\n";
    CHECK_EQ(feed(near, 100).size(), 1u);
}

TEST_CASE("a request still arriving is reported as started") {
    RequestParser p;
    CHECK(!p.started("\r\n"));
    CHECK(p.started("G"));
}

TEST_CASE("responses carry Content-Length, X-Worker-Pid and the right Connection header") {
    std::string out;
    append_response(out, 200, "hello world\n", 1, true, false);
    CHECK(out.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
    CHECK(out.find("Content-Length: 12\r\n") != std::string::npos);
    CHECK(out.find("X-Worker-Pid: " + std::to_string(self_pid()) + "\r\n") != std::string::npos);
    CHECK(out.find("Connection:") == std::string::npos);
    CHECK(out.size() >= 12 && out.substr(out.size() - 12) == "hello world\n");

    out.clear();
    append_response(out, 200, "hello world\n", 0, true, true);
    CHECK(out.find("Connection: keep-alive\r\n") != std::string::npos);
    CHECK(out.find("Content-Length: 12\r\n") != std::string::npos);
    CHECK(out.substr(out.size() - 4) == "\r\n\r\n");  // HEAD: headers only

    out.clear();
    append_response(out, 405, "no\n", 1, false, false, "Allow: GET, HEAD\r\n");
    CHECK(out.rfind("HTTP/1.1 405 Method Not Allowed\r\n", 0) == 0);
    CHECK(out.find("Connection: close\r\nAllow: GET, HEAD\r\n") != std::string::npos);
}

TEST_MAIN("http")
