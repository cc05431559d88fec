// Unit tests for the router shared by every lab: what each route decides.
#include "check.hpp"
#include "router.hpp"
#include "process.hpp"

#include <stdexcept>

namespace {
Request make(const std::string& method, const std::string& target) {
    Request r;
    r.method = method;
    r.target = target;
    size_t q = target.find('?');
    r.path = target.substr(0, q);
    r.query = q == std::string::npos ? "" : target.substr(q + 1);
    return r;
}
using Kind = Action::Kind;
}  // namespace

TEST_CASE("GET / always answers the same body") {
    Action a = route(make("GET", "/"));
    CHECK(a.kind == Kind::reply);
    CHECK_EQ(a.status, 200);
    CHECK_EQ(a.body, std::string("hello world\n"));
    CHECK_EQ(route(make("GET", "/?x=1")).body, std::string("hello world\n"));
}

TEST_CASE("HEAD is routed like GET") {
    CHECK_EQ(route(make("HEAD", "/")).status, 200);
    CHECK(route(make("HEAD", "/sleep")).kind == Kind::sleep);
}

TEST_CASE("/pid answers this process's pid") {
    CHECK_EQ(route(make("GET", "/pid")).body, std::to_string(self_pid()) + "\n");
}

TEST_CASE("/sleep takes ms, defaulting to 100, within bounds") {
    CHECK_EQ(route(make("GET", "/sleep")).sleep_ms, kDefaultSleepMs);
    CHECK_EQ(route(make("GET", "/sleep?ms=2500")).sleep_ms, 2500L);
    CHECK_EQ(route(make("GET", "/sleep?a=1&ms=7&b")).sleep_ms, 7L);
    CHECK_EQ(route(make("GET", "/sleep?ms=0")).sleep_ms, 0L);
    for (const char* bad : {"/sleep?ms=", "/sleep?ms=x", "/sleep?ms=-5", "/sleep?ms=1.5", "/sleep?ms=99999999999999999999",
                            "/sleep?ms=600001"}) {
        Action a = route(make("GET", bad));
        CHECK(a.kind == Kind::reply);
        CHECK_EQ(a.status, 400);
    }
}

TEST_CASE("/compute takes n, and the computation depends on n") {
    Action a = route(make("GET", "/compute?n=1000"));
    CHECK(a.kind == Kind::compute);
    CHECK_EQ(a.compute_n, 1000LL);
    CHECK_EQ(route(make("GET", "/compute")).compute_n, kDefaultComputeN);
    CHECK(long_computation(1000) != long_computation(1001));
    CHECK_EQ(long_computation(1000), long_computation(1000));
    CHECK_EQ(route(make("GET", "/compute?n=abc")).status, 400);
}

TEST_CASE("/crash is a crash, and throw_crash throws") {
    CHECK(route(make("GET", "/crash")).kind == Kind::crash);
    bool thrown = false;
    try {
        throw_crash();
    } catch (const std::runtime_error&) {
        thrown = true;
    }
    CHECK(thrown);
}

TEST_CASE("unknown paths are 404, other methods 405 with Allow") {
    CHECK_EQ(route(make("GET", "/nope")).status, 404);
    CHECK_EQ(route(make("GET", "/sleepy")).status, 404);
    Action a = route(make("POST", "/"));
    CHECK_EQ(a.status, 405);
    CHECK_EQ(a.extra_headers, std::string("Allow: GET, HEAD\r\n"));
    CHECK_EQ(route(make("DELETE", "/crash")).status, 405);  // a DELETE never crashes anything
}

TEST_CASE("query_param finds names exactly") {
    std::string v;
    CHECK(query_param("ms=5", "ms", &v) && v == "5");
    CHECK(!query_param("xms=5", "ms", &v));
    CHECK(query_param("a&ms", "ms", &v) && v.empty());
    CHECK(!query_param("", "ms", &v));
}

TEST_CASE("bytes_body: 16-byte lines that name their offset, cut at n") {
    CHECK_EQ(bytes_body(0), std::string());
    CHECK_EQ(bytes_body(16), std::string("000000000000000\n"));
    CHECK_EQ(bytes_body(37), std::string("000000000000000\n000000000000010\n00000"));
    std::string big = bytes_body(0x123456 + 16);
    CHECK_EQ(big.size(), size_t{0x123456 + 16});
    CHECK_EQ(big.substr(0x123450, 16), std::string("000000000123450\n"));
}

TEST_MAIN("router")
