// http.hpp — HTTP/1.x for every lab: an incremental request parser and a response writer.
//
// The parser is fed whatever bytes have arrived: one byte at a time, half a request, or several
// pipelined requests in one read. It never copies the buffer and never looks at a byte twice:
// it resumes where the last call stopped, so reading a request costs time linear in its bytes,
// and the same bytes get the same answer however TCP splits them. The connection keeps the bytes
// and drops the `consumed` prefix after each complete request.
//
// What it refuses, and with what (after any error the connection is closed):
//   400  a malformed request line or header line: a byte outside the token set in a method or a
//        field name (NUL included), a control character other than HTAB in a field value, a bare
//        CR, obsolete line folding, more than a few empty lines before the request line;
//        ambiguous framing (Content-Length with Transfer-Encoding, `chunked` twice); a malformed
//        chunked body (spaces in a chunk size, bare LF, data longer than its size, chunk
//        extensions longer than max_chunk_line)
//   413  a body larger than max_body. For a chunked body every byte on the wire counts: sizes,
//        extensions, line ends, data and trailers, so a connection's memory stays bounded
//   414  a request line longer than max_head; 431 a head (or a trailer section) longer than that
//   501  a transfer coding other than chunked; 505 any version but HTTP/1.x, HTTP/0.9 included
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct Request {
    std::string method;   // "GET"
    std::string target;   // "/sleep?ms=100", as sent (absolute-form too: "http://host/sleep?ms=100")
    std::string path;     // "/sleep" (the path of an absolute-form target; "/" when it has none)
    std::string query;    // "ms=100"
    int version_minor = 1;  // HTTP/1.0 or HTTP/1.1
    bool keep_alive = true; // by the rules of the version and the Connection header
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;       // the request's body (Content-Length, or chunked and decoded), at most max_body

    bool is_head() const { return method == "HEAD"; }
    // The value of the first header with this name (case-insensitive), or nullptr.
    const std::string* header(std::string_view name) const;
};

struct HttpLimits {
    size_t max_head = 8 * 1024;        // request line + headers (and, apart, a trailer section)
    size_t max_body = 1024 * 1024;     // a body we read (lab13's POST /send) or read past, framing included
    size_t max_empty_lines = 8;        // empty lines tolerated before a request line (RFC 9112 §2.2)
    size_t max_chunk_line = 4 * 1024;  // a chunk-size line with its extensions
};

// Per-connection time limits, the same in blocking and event-driven labs.
struct ConnectionLimits {
    long idle_timeout_ms = 5000;     // a kept-alive connection with no new request (Node: 5 s)
    long header_timeout_ms = 10000;  // a request not complete this long after its first byte (slow clients)
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
        // The head asked `Expect: 100-continue` and its body has not all arrived: write
        // "HTTP/1.1 100 Continue" now, or the client waits (curl: 1 s) before sending it.
        // Reported once per request, with need_more.
        bool send_continue = false;
    };

    explicit RequestParser(HttpLimits limits = {}) : limits_(limits) { reset(); }

    // `buf` holds every byte received since the end of the previous request. Call again with
    // the grown buffer (same prefix) after need_more; after complete or error, call reset()
    // (done for you when a request completes).
    Result parse(std::string_view buf, Request& out);
    void reset();
    // True once any byte of the next request has arrived, a leading empty line included: the
    // header timeout runs from then.
    bool started(std::string_view buf) const { return !buf.empty(); }

private:
    enum class State {
        leading, leading_lf,                         // empty lines before the request line
        method, target, version, request_line_lf,    // the request line
        field_start, field_name, field_value, field_lf, head_end_lf,  // header lines
        body,                                        // Content-Length bytes
        chunk_size, chunk_ext, chunk_size_lf,        // a chunk-size line
        chunk_data, chunk_data_cr, chunk_data_lf,    // a chunk's data and its CRLF
        trailer_start, trailer_name, trailer_value, trailer_lf, trailer_end_lf,
    };
    // The first byte index that breaks a limit in the current state, and the answer then.
    struct Limit {
        size_t at;
        int status;
        const char* reason;
    };

    Result fail(int status, std::string reason);
    Result run(std::string_view buf, Request& out);
    Result end_request_line(std::string_view buf);
    Result end_field_line(std::string_view buf);
    Result end_head();
    void start_chunk_line();
    void start_trailers();
    Result complete(Request& out);

    HttpLimits limits_;
    State state_;
    size_t pos_;             // the next byte to look at; everything before it is parsed
    Limit limit_;
    size_t empty_lines_;
    size_t head_start_;      // where the request line starts (after any empty lines)
    size_t mark_;            // start of the token or line being read
    size_t name_end_, value_start_, value_end_;  // of the field line being read
    size_t body_start_;      // where the body starts (the head's end)
    size_t body_left_;       // Content-Length bytes still to come
    size_t chunk_size_;
    size_t chunk_digits_;
    // What the header lines said, checked once the head is complete.
    int hosts_;
    bool has_length_;
    size_t content_length_;
    int te_headers_, te_chunked_;
    bool te_other_, te_chunked_last_;
    bool conn_close_, conn_keep_alive_;
    bool expect_continue_;
    bool continue_due_;      // send_continue not reported yet
    bool chunked_;
    Request pending_;
};

// Appends one complete response to `out`: status line, Date, Content-Type, Content-Length,
// X-Worker-Pid, the Connection header the client's version needs, any extra header lines
// ("Allow: GET, HEAD\r\n"), then the body unless `head_only`.
void append_response(std::string& out, int status, std::string_view body, int version_minor,
                     bool keep_alive, bool head_only, std::string_view extra_headers = {});

const char* reason_phrase(int status);
