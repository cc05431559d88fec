// fuzz_http_parser — libFuzzer target for RequestParser (common/http.*). Run with `make fuzz`.
//
// The input's first byte picks the limits (the defaults, or small ones so that 4 KiB inputs
// reach every limit) and, with the second, a split point; the rest is what a client sends.
// It is fed three ways: in one read, in two reads split at that point, and one byte per read.
// Any difference in what the parser reports (each request's consumed bytes and fields, the
// error status) aborts: the same bytes must get the same answer however TCP splits them. ASan
// and UBSan catch the rest (out-of-bounds reads past the buffer, overflow in a size).
#include "http.hpp"

#include "report.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

// Everything a connection would act on, flattened to one comparable string per event.
std::string describe(const Request& r, size_t consumed) {
    std::string s = "complete " + std::to_string(consumed) + " " + r.method + " " + r.target + " " + r.path +
                    " ?" + r.query + " 1." + std::to_string(r.version_minor) + (r.keep_alive ? " ka" : " close");
    for (const auto& [k, v] : r.headers) s += "|" + k + ":" + v;
    return s;
}

std::vector<std::string> feed(std::string_view wire, const std::vector<size_t>& cuts, const HttpLimits& limits) {
    RequestParser parser(limits);
    std::vector<std::string> trace;
    std::string buf;
    size_t from = 0;
    for (size_t cut : cuts) {
        buf.append(wire.substr(from, cut - from));
        from = cut;
        while (true) {
            Request req;
            RequestParser::Result r = parser.parse(buf, req);
            if (r.status == RequestParser::Status::need_more) break;
            if (r.status == RequestParser::Status::error) {
                if (r.error_status < 400 || r.error_status > 505 || r.error_reason.empty()) {
                    fail("bad error %d '%s'\n", r.error_status, r.error_reason.c_str());
                }
                trace.push_back("error " + std::to_string(r.error_status));
                return trace;
            }
            if (r.consumed == 0 || r.consumed > buf.size()) {
                fail("consumed %zu of %zu\n", r.consumed, buf.size());
            }
            trace.push_back(describe(req, r.consumed));
            buf.erase(0, r.consumed);
        }
    }
    return trace;
}

void compare(const std::vector<std::string>& a, const std::vector<std::string>& b, const char* how) {
    if (a == b) return;
    std::string text;
    for (size_t i = 0; i < std::max(a.size(), b.size()); ++i)
        text += std::string("  whole: ") + (i < a.size() ? a[i] : "-") + "\n  " + how + ": " +
                (i < b.size() ? b[i] : "-") + "\n";
    fail("the parser's answer depends on the split (%s):\n%s", how, text.c_str());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    HttpLimits limits;
    if (data[0] & 1) {  // small limits: every limit is reachable in a short input
        limits.max_head = 64 + data[0] % 64;
        limits.max_body = 32 + data[1] % 128;
        limits.max_empty_lines = data[0] % 4;
        limits.max_chunk_line = 8 + data[1] % 16;
    }
    std::string_view wire(reinterpret_cast<const char*>(data) + 2, size - 2);
    size_t split = wire.empty() ? 0 : (static_cast<size_t>(data[0]) << 8 | data[1]) % wire.size();

    std::vector<std::string> whole = feed(wire, {wire.size()}, limits);
    compare(whole, feed(wire, {split, wire.size()}, limits), "split in two");
    std::vector<size_t> bytes;
    for (size_t i = 1; i <= wire.size(); ++i) bytes.push_back(i);
    compare(whole, feed(wire, bytes, limits), "one byte at a time");
    return 0;
}
