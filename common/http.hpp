// http.hpp — HTTP/1.x for every lab: an incremental request parser and a response writer.
//
// The parser is fed whatever bytes have arrived: one byte at a time, half a request, or several
// pipelined requests in one read. It never copies the buffer; the connection keeps the bytes and
// drops the `consumed` prefix after each complete request. Limits follow the contract: a head
// (request line + headers) over 8 KiB is refused with 431 (414 when the request line alone
// never ends), a malformed request with 400; after any error the connection is closed.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct Request {
    std::string method;   // "GET"
    std::string target;   // "/sleep?ms=100"
    std::string path;     // "/sleep"
    std::string query;    // "ms=100"
    int version_minor = 1;  // HTTP/1.0 or HTTP/1.1
    bool keep_alive = true; // by the rules of the version and the Connection header
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;       // the request's body (Content-Length or chunked, decoded), at most max_body

    bool is_head() const { return method == "HEAD"; }
    // The value of the first header with this name (case-insensitive), or nullptr.
    const std::string* header(std::string_view name) const;
};

struct HttpLimits {
    size_t max_head = 8 * 1024;     // request line + headers
    size_t max_body = 1024 * 1024;  // a body we read (lab13's POST /send uses it) or read past
};

// Per-connection time limits, the same in blocking and event-driven labs.
struct ConnectionLimits {
    long idle_timeout_ms = 5000;     // a kept-alive connection with no new request (Node: 5 s)
    long header_timeout_ms = 10000;  // a request whose head has not fully arrived (slow clients)
    HttpLimits http;
};

class RequestParser {
public:
    enum class Status { need_more, complete, error };
    struct Result {
        Status status = Status::need_more;
        size_t consumed = 0;    // bytes of `buf` that belong to the complete request
        int error_status = 0;   // 400, 413, 414, 431, 501, 505 when status == error
        std::string error_reason;
    };

    explicit RequestParser(HttpLimits limits = {}) : limits_(limits) {}

    // `buf` holds every byte received since the end of the previous request. Call again with
    // the grown buffer after need_more; after complete or error, call reset() (done for you
    // when a request completes).
    Result parse(std::string_view buf, Request& out);
    void reset();
    // True once some bytes of a request have arrived (the header timeout runs from then).
    bool started(std::string_view buf) const;

private:
    Result fail(int status, std::string reason);
    Result parse_head(std::string_view head, Request& out);
    Result parse_chunked(std::string_view buf);

    HttpLimits limits_;
    // Resumable state, so a request that arrives one byte at a time is scanned once.
    size_t skip_ = 0;        // empty lines before the request line (RFC 9112 §2.2)
    size_t scanned_ = 0;     // how far we have looked for the end of the head
    size_t line_start_ = 0;  // start of the line being scanned
    size_t head_len_ = 0;    // set once the head is complete
    size_t body_len_ = 0;    // Content-Length
    bool chunked_ = false;
    // chunked body cursor
    enum class Chunk { size_line, data, data_end, trailer } chunk_phase_ = Chunk::size_line;
    size_t chunk_pos_ = 0, chunk_left_ = 0, chunk_total_ = 0;
    Request pending_;
};

// Appends one complete response to `out`: status line, Date, Content-Type, Content-Length,
// X-Worker-Pid, the Connection header the client's version needs, any extra header lines
// ("Allow: GET, HEAD\r\n"), then the body unless `head_only`.
void append_response(std::string& out, int status, std::string_view body, int version_minor,
                     bool keep_alive, bool head_only, std::string_view extra_headers = {});

const char* reason_phrase(int status);
