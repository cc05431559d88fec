#include "router.hpp"
#include "process.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

bool query_param(const std::string& query, const std::string& name, std::string* value) {
    size_t pos = 0;
    while (pos <= query.size()) {
        size_t amp = query.find('&', pos);
        if (amp == std::string::npos) amp = query.size();
        std::string_view pair(query.data() + pos, amp - pos);
        size_t eq = pair.find('=');
        if (pair.substr(0, eq) == name) {
            *value = eq == std::string_view::npos ? "" : std::string(pair.substr(eq + 1));
            return true;
        }
        pos = amp + 1;
    }
    return false;
}

namespace {
Action reply(int status, std::string body) {
    Action a;
    a.status = status;
    a.body = std::move(body);
    return a;
}

// Reads ?name=N as a whole number within [0, max]; absent means `fallback`.
bool number_param(const Request& req, const char* name, long long fallback, long long max,
                  long long* out, Action* error) {
    std::string text;
    if (!query_param(req.query, name, &text)) {
        *out = fallback;
        return true;
    }
    errno = 0;
    char* end = nullptr;
    long long v = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || errno == ERANGE || v < 0 || v > max) {
        *error = reply(400, std::string(name) + " must be a whole number from 0 to " + std::to_string(max) + "\n");
        return false;
    }
    *out = v;
    return true;
}
}  // namespace

Action route(const Request& req) {
    if (req.method != "GET" && req.method != "HEAD") {
        Action a = reply(405, "method not allowed: use GET or HEAD\n");
        a.extra_headers = "Allow: GET, HEAD\r\n";
        return a;
    }
    const std::string& path = req.path;
    if (path == "/") return reply(200, "hello world\n");
    if (path == "/pid") return reply(200, std::to_string(self_pid()) + "\n");
    if (path == "/sleep") {
        Action a;
        long long ms;
        if (!number_param(req, "ms", kDefaultSleepMs, kMaxSleepMs, &ms, &a)) return a;
        a.kind = Action::Kind::sleep;
        a.sleep_ms = static_cast<long>(ms);
        return a;
    }
    if (path == "/compute") {
        Action a;
        if (!number_param(req, "n", kDefaultComputeN, kMaxComputeN, &a.compute_n, &a)) return a;
        a.kind = Action::Kind::compute;
        return a;
    }
    if (path == "/crash") {
        Action a;
        a.kind = Action::Kind::crash;
        return a;
    }
    if (path == "/bytes") {
        Action a;
        long long n;
        if (!number_param(req, "n", kDefaultBytes, kMaxBytes, &n, &a)) return a;
        return reply(200, bytes_body(n));
    }
    return reply(404, "not found: try / /sleep?ms=N /compute?n=N /crash /pid /bytes?n=N\n");
}

uint64_t long_computation(long long n) {
    // A linear congruential step per iteration: each depends on the last, so the loop can be
    // neither vectorised nor replaced by a formula, and it costs the same everywhere.
    uint64_t x = 0x9E3779B97F4A7C15ULL, sum = 0;
    for (long long i = 0; i < n; ++i) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        sum += x >> 33;
    }
    return sum;
}

std::string bytes_body(long long n) {
    // Written digit by digit rather than with snprintf per line: this route exists to measure
    // relays and back-pressure, so producing the bytes must cost far less than moving them.
    std::string body(static_cast<size_t>(n), '\n');
    static const char hex[] = "0123456789abcdef";
    char line[16];
    line[15] = '\n';
    for (long long off = 0; off < n; off += 16) {
        unsigned long long v = static_cast<unsigned long long>(off);
        for (int i = 14; i >= 0; --i, v >>= 4) line[i] = hex[v & 15];
        std::memcpy(body.data() + off, line, static_cast<size_t>(std::min<long long>(16, n - off)));
    }
    return body;
}

std::string sleep_body(long ms) { return "slept " + std::to_string(ms) + " ms\n"; }

std::string compute_body(long long n, uint64_t result) {
    return "computed n=" + std::to_string(n) + " result=" + std::to_string(result) + "\n";
}

void throw_crash() {
    throw std::runtime_error("GET /crash: a request handler threw and nothing caught it");
}
