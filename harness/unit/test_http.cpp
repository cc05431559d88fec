// Unit tests for the incremental HTTP/1.x request parser and the response writer.
#include "check.hpp"
#include "http.hpp"
#include "process.hpp"

#include <cstdio>
#include <ostream>
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

TEST_CASE("the header timeout starts at the first byte, a leading empty line included") {
    RequestParser p;
    CHECK(!p.started(""));
    CHECK(p.started("\r\n"));
    CHECK(p.started("G"));
}

// --- the same bytes, the same answer, however TCP splits them ------------------------------

// What a connection sees from the parser: each complete request (its consumed byte count and
// path) and the error that ended it, if any.
struct Trace {
    std::vector<std::pair<size_t, std::string>> requests;
    int error = 0;
    bool operator==(const Trace& o) const { return requests == o.requests && error == o.error; }
};

std::ostream& operator<<(std::ostream& os, const Trace& t) {
    os << "{";
    for (const auto& [n, path] : t.requests) os << n << ":" << path << " ";
    return os << "error " << t.error << "}";
}

// Feeds `wire` in the pieces that end at each of `cuts` (ascending), as reads would deliver it.
Trace feed_pieces(const std::string& wire, const std::vector<size_t>& cuts) {
    RequestParser parser;
    Trace t;
    std::string buf;
    size_t from = 0;
    for (size_t cut : cuts) {
        buf.append(wire, from, cut - from);
        from = cut;
        while (true) {
            Request req;
            auto r = parser.parse(buf, req);
            if (r.status == Status::need_more) break;
            if (r.status == Status::error) {
                t.error = r.error_status;
                return t;
            }
            t.requests.emplace_back(r.consumed, req.path);
            buf.erase(0, r.consumed);
        }
    }
    return t;
}

// Whole, split in two at every point (at 64 points for long inputs), and one byte at a time:
// every way must give the trace of the whole.
Trace same_however_split(const std::string& wire) {
    Trace whole = feed_pieces(wire, {wire.size()});
    size_t step = wire.size() <= 2048 ? 1 : wire.size() / 64;
    for (size_t cut = 1; cut < wire.size(); cut += step) {
        Trace t = feed_pieces(wire, {cut, wire.size()});
        if (!(t == whole)) {
            CHECK_EQ(t, whole);
            std::fprintf(stderr, "    (split at %zu of %zu)\n", cut, wire.size());
            return whole;
        }
    }
    std::vector<size_t> bytes(wire.size());
    for (size_t i = 0; i < wire.size(); ++i) bytes[i] = i + 1;
    CHECK_EQ(feed_pieces(wire, bytes), whole);
    return whole;
}

std::string chunked_post(const std::string& body_and_end) {
    return "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body_and_end;
}

std::string repeat(const std::string& s, size_t n) {
    std::string out;
    for (size_t i = 0; i < n; ++i) out += s;
    return out;
}

const std::string kNext = "GET /next HTTP/1.1\r\nHost: x\r\n\r\n";

// Every case: the bytes, then how many requests complete and the error that ends it (0: none).
struct Case {
    const char* what;
    std::string wire;
    size_t requests;
    int error;
};

std::vector<Case> cases() {
    std::string smuggled = "GET /pid HTTP/1.1\r\nHost: a\r\n\r\n";  // 30 bytes
    return {
        {"a plain GET", kGet, 1, 0},
        {"two pipelined requests", kGet + kNext, 2, 0},
        {"Content-Length body then a request", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" + kNext, 2, 0},
        {"Content-Length with leading zeros", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0005\r\n\r\nhello" + kNext, 2, 0},
        {"a Content-Length of 25 digits, mostly zeros", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0000000000000000000000005\r\n\r\nhello" + kNext, 2, 0},
        {"chunked with extensions and trailers", chunked_post("5;a=b\r\nhello\r\n0\r\nT: v\r\n\r\n") + kNext, 2, 0},
        {"absolute-form target", "GET http://example.com/pid?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n", 1, 0},
        {"8 empty lines before a request", repeat("\r\n", 8) + kNext, 1, 0},
        {"a head just under 8 KiB", "GET / HTTP/1.1\r\nHost: x\r\nX: " + std::string(8150, 'a') + "\r\n\r\n", 1, 0},
        // refused
        {"9 empty lines before a request", repeat("\r\n", 9) + kNext, 0, 400},
        {"endless empty lines", repeat("\r\n", 5000), 0, 400},
        {"endless bare LFs", std::string(5000, '\n'), 0, 400},
        {"a bare CR before the request line", "\r\rGET / HTTP/1.1\r\nHost: x\r\n\r\n", 0, 400},
        {"NUL in a header name (the smuggling example)",
         std::string("POST / HTTP/1.1\r\nHost: a\r\nContent-Length\0: 30\r\n\r\n", 49) + smuggled, 0, 400},
        {"NUL in a method", std::string("G\0T / HTTP/1.1\r\nHost: x\r\n\r\n", 27), 0, 400},
        {"a space before the colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 0, 400},
        {"DEL in a header name", "GET / HTTP/1.1\r\nHost: x\r\nA\x7f" "b: c\r\n\r\n", 0, 400},
        {"a control character in a value", "GET / HTTP/1.1\r\nHost: x\r\nX: a\x01z\r\n\r\n", 0, 400},
        {"NUL in a value", std::string("GET / HTTP/1.1\r\nHost: x\r\nX: a\0z\r\n\r\n", 33), 0, 400},
        {"a bare CR in a value", "GET / HTTP/1.1\r\nHost: x\r\nX: a\rz\r\n\r\n", 0, 400},
        {"a TLS hello", std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 15), 0, 400},
        {"HTTP/0.9", "GET /\r\n", 0, 505},
        {"HTTP/0.9 with a bare LF", "GET /index.html\n", 0, 505},
        {"HTTP/2.0", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 0, 505},
        {"a target that is not a path or an http URL", "GET ftp://h/ HTTP/1.1\r\nHost: x\r\n\r\n", 0, 400},
        {"an absolute-form target without a host", "GET http:///x HTTP/1.1\r\nHost: x\r\n\r\n", 0, 400},
        {"a request line over 8 KiB, complete", "GET /" + std::string(9000, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n", 0, 414},
        {"a request line over 8 KiB, never ending", "GET /" + std::string(9000, 'a'), 0, 414},
        {"a head over 8 KiB", "GET / HTTP/1.1\r\nHost: x\r\nX: " + std::string(10240, 'a') + "\r\n\r\n", 0, 431},
        {"a Content-Length over 1 MiB", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n", 0, 413},
        {"a chunk size with a space", chunked_post("5 \r\nhello\r\n0\r\n\r\n"), 0, 400},
        {"a chunk size after a space", chunked_post(" 5\r\nhello\r\n0\r\n\r\n"), 0, 400},
        {"a tab before a chunk extension", chunked_post("5\t;a\r\nhello\r\n0\r\n\r\n"), 0, 400},
        {"a bare LF after a chunk size", chunked_post("5\nhello\r\n0\r\n\r\n"), 0, 400},
        {"a bare LF after chunk data", chunked_post("5\r\nhello\n0\r\n\r\n"), 0, 400},
        {"a bare LF ending the trailers", chunked_post("0\r\n\n"), 0, 400},
        {"a bare LF after a trailer", chunked_post("0\r\nT: v\n\r\n"), 0, 400},
        {"chunk data longer than its size", chunked_post("3\r\nhello\r\n0\r\n\r\n"), 0, 400},
        {"chunked given twice in one header", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 0, 400},
        {"chunked given in two headers", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, 400},
        {"a control character in a trailer", chunked_post("0\r\nT: a\x01\r\n\r\n"), 0, 400},
        {"NUL in a trailer name", chunked_post(std::string("0\r\nT\0: a\r\n\r\n", 12)), 0, 400},
        {"a chunk line over 8 KiB", chunked_post("1;" + std::string(9000, 'e') + "\r\nx\r\n0\r\n\r\n"), 0, 400},
        {"an 8,000-byte chunk extension", chunked_post("1;" + std::string(8000, 'e') + "\r\nx\r\n0\r\n\r\n"), 0, 400},
        {"1 MiB of 1-byte chunks with 4,000-byte extensions",
         chunked_post(repeat("1;" + std::string(4000, 'e') + "\r\nx\r\n", 300) + "0\r\n\r\n"), 0, 413},
        {"endless trailer lines", chunked_post("0\r\n" + repeat("X: y\r\n", 3000)), 0, 431},
        {"a chunk size over 1 MiB", chunked_post("200000\r\n"), 0, 413},
        {"chunks adding up to over 1 MiB", chunked_post(repeat("10000\r\n" + std::string(0x10000, 'd') + "\r\n", 17)), 0, 413},
    };
}

TEST_CASE("every case gets the same answer whole, split at any point, or byte by byte") {
    for (const Case& c : cases()) {
        Trace t = same_however_split(c.wire);
        if (t.requests.size() != c.requests || t.error != c.error)
            check::fail(__FILE__, __LINE__, std::string(c.what) + ": got " + check::show(t) + ", expected " +
                                                std::to_string(c.requests) + " requests, error " + std::to_string(c.error));
    }
}

TEST_CASE("the smuggled request inside a NUL-named header is never served") {
    std::string wire = std::string("POST / HTTP/1.1\r\nHost: a\r\nContent-Length\0: 30\r\n\r\n", 49) +
                       "GET /pid HTTP/1.1\r\nHost: a\r\n\r\n";
    Trace t = same_however_split(wire);
    CHECK(t.requests.empty());
    CHECK_EQ(t.error, 400);
}

TEST_CASE("refused at once: HTTP/0.9, a NUL, too many empty lines (no waiting for more bytes)") {
    for (std::string partial : {std::string("GET /\r"), std::string("GE\0", 3), repeat("\r\n", 9),
                                std::string("\x16\x03\x01", 3)}) {
        RequestParser p;
        Request req;
        CHECK(p.parse(partial, req).status == Status::error);
    }
}

TEST_CASE("an absolute-form target is routed by its path") {
    auto path_query = [](const std::string& target) {
        auto reqs = feed("GET " + target + " HTTP/1.1\r\nHost: h\r\n\r\n", 1);
        return reqs.size() == 1 ? reqs[0].path + "|" + reqs[0].query : std::string("refused");
    };
    CHECK_EQ(path_query("http://example.com/pid"), std::string("/pid|"));
    CHECK_EQ(path_query("HTTP://example.com:8000/sleep?ms=5"), std::string("/sleep|ms=5"));
    CHECK_EQ(path_query("https://example.com"), std::string("/|"));
    CHECK_EQ(path_query("http://example.com?a=1"), std::string("/|a=1"));
    CHECK_EQ(path_query("/plain?q"), std::string("/plain|q"));
}

TEST_CASE("Expect: 100-continue asks for a 100 once, only while the body is still to come") {
    auto continues = [](const std::string& wire, size_t first_piece) {
        RequestParser p;
        Request req;
        int asked = 0;
        std::string buf;
        for (size_t cut : {first_piece, wire.size()}) {
            buf = wire.substr(0, cut);
            for (int again = 0; again < 2; ++again) {  // asking twice must not report it twice
                auto r = p.parse(buf, req);
                asked += r.send_continue;
                if (r.status != Status::need_more) return asked;
            }
        }
        return -1;
    };
    std::string head = "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
    CHECK_EQ(continues(head + "hello", head.size()), 1);      // the body waits for the 100
    CHECK_EQ(continues(head + "hello", head.size() + 2), 1);  // part of it came anyway
    CHECK_EQ(continues(head + "hello", head.size() + 5), 0);  // all of it came: no 100 needed
    std::string chunked = "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nTransfer-Encoding: chunked\r\n\r\n";
    CHECK_EQ(continues(chunked + "0\r\n\r\n", chunked.size()), 1);
    std::string http10 = "POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
    CHECK_EQ(continues(http10 + "hello", http10.size()), 0);  // RFC 9110 §10.1.1: ignored in 1.0
    std::string no_body = "GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n";
    CHECK_EQ(continues(no_body, no_body.size() - 1), 0);
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
