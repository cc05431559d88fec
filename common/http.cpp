#include "http.hpp"
#include "process.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <ctime>

namespace {

// One table for the character classes of RFC 9110 §5.6.2 and §5.5, built at compile time. A
// table, not strchr: strchr also finds the string's terminating NUL, which let a NUL through.
enum : unsigned char { kToken = 1, kFieldValue = 2, kTarget = 4 };

constexpr std::array<unsigned char, 256> make_classes() {
    std::array<unsigned char, 256> t{};
    for (int c = 0; c < 256; ++c) {
        bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        bool token_punct = false;
        for (char p : std::string_view("!#$%&'*+-.^_`|~")) token_punct = token_punct || c == p;
        if (alnum || token_punct) t[c] |= kToken;
        // field-value: VCHAR, SP, HTAB and obs-text (0x80-0xff); never other controls or DEL
        if (c == '\t' || (c >= 0x20 && c != 0x7f)) t[c] |= kFieldValue;
        // request-target: any visible byte (the router decides what a path means)
        if (c > 0x20 && c != 0x7f) t[c] |= kTarget;
    }
    return t;
}
constexpr std::array<unsigned char, 256> kClass = make_classes();

bool is(unsigned char c, unsigned char cls) { return kClass[c] & cls; }

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
            return false;
    return true;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// Calls fn(token) for each comma-separated element of a header list value.
template <class Fn>
void for_each_token(std::string_view list, Fn fn) {
    while (!list.empty()) {
        size_t comma = list.find(',');
        std::string_view t = trim(list.substr(0, comma));
        if (!t.empty()) fn(t);
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
    }
}

// Content-Length = 1*DIGIT. Leading zeros are allowed (RFC 9110 §8.6 counts digits, not a
// number's shortest spelling); a value past `max` is reported as max + 1, so "too large" and
// "not a number" stay apart.
bool parse_length(std::string_view s, size_t max, size_t* out) {
    if (s.empty()) return false;
    size_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return false;
        if (v <= max) v = v * 10 + static_cast<size_t>(c - '0');
    }
    *out = v > max ? max + 1 : v;
    return true;
}

int hex_digit(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

constexpr size_t kNoLimit = static_cast<size_t>(-1);

}  // namespace

const std::string* Request::header(std::string_view name) const {
    for (const auto& [k, v] : headers)
        if (iequals(k, name)) return &v;
    return nullptr;
}

void RequestParser::reset() {
    state_ = State::leading;
    pos_ = 0;
    limit_ = {kNoLimit, 0, ""};
    empty_lines_ = head_start_ = mark_ = name_end_ = value_start_ = value_end_ = 0;
    body_start_ = body_left_ = chunk_size_ = chunk_digits_ = 0;
    hosts_ = 0;
    has_length_ = false;
    content_length_ = 0;
    te_headers_ = te_chunked_ = 0;
    te_other_ = te_chunked_last_ = false;
    conn_close_ = conn_keep_alive_ = false;
    expect_continue_ = continue_due_ = chunked_ = false;
    pending_ = Request{};
}

RequestParser::Result RequestParser::fail(int status, std::string reason) {
    Result r;
    r.status = Status::error;
    r.error_status = status;
    r.error_reason = std::move(reason);
    return r;
}

RequestParser::Result RequestParser::parse(std::string_view buf, Request& out) {
    Result r = run(buf, out);
    if (r.status == Status::need_more && continue_due_) {
        continue_due_ = false;
        r.send_continue = true;
    }
    return r;
}

RequestParser::Result RequestParser::complete(Request& out) {
    Result r;
    r.status = Status::complete;
    r.consumed = pos_;
    out = std::move(pending_);
    reset();
    return r;
}

// The state machine. Each case looks at the byte at pos_ (some take a run of bytes at once, with
// the same effect as one at a time) and moves pos_ past what it accepted. Before each step the
// active limit is checked, so a limit is hit at the same byte however the input was split.
RequestParser::Result RequestParser::run(std::string_view buf, Request& out) {
    const size_t n = buf.size();
    const auto* b = reinterpret_cast<const unsigned char*>(buf.data());
    while (true) {
        if (state_ == State::body) {  // no byte needed to finish: a body may be empty
            size_t take = std::min(body_left_, n - pos_);
            pending_.body.append(buf.substr(pos_, take));  // kept: lab13's POST /send reads it
            pos_ += take;
            body_left_ -= take;
            if (body_left_ > 0) return {};
            return complete(out);
        }
        if (pos_ >= n) return {};
        if (pos_ >= limit_.at) return fail(limit_.status, limit_.reason);
        const size_t stop = std::min(n, limit_.at);  // runs of bytes end here
        unsigned char c = b[pos_];
        switch (state_) {
        case State::leading:
            if (c == '\r') {
                state_ = State::leading_lf;
                ++pos_;
                break;
            }
            if (c == '\n') {
                ++pos_;
                if (++empty_lines_ > limits_.max_empty_lines) return fail(400, "too many empty lines before the request line");
                break;
            }
            head_start_ = mark_ = pos_;
            limit_ = {pos_ + limits_.max_head, 414, "request line too long"};
            state_ = State::method;
            break;
        case State::leading_lf:
            if (c != '\n') return fail(400, "bare CR before the request line");
            ++pos_;
            if (++empty_lines_ > limits_.max_empty_lines) return fail(400, "too many empty lines before the request line");
            state_ = State::leading;
            break;

        // request-line = method SP request-target SP HTTP-version (RFC 9112 §3)
        case State::method:
            while (pos_ < stop && is(b[pos_], kToken)) ++pos_;
            if (pos_ == stop) break;
            if (b[pos_] != ' ') return fail(400, "invalid character in method");
            if (pos_ == mark_) return fail(400, "empty method");
            pending_.method.assign(buf.substr(mark_, pos_ - mark_));
            mark_ = ++pos_;
            state_ = State::target;
            break;
        case State::target:
            while (pos_ < stop && is(b[pos_], kTarget)) ++pos_;
            if (pos_ == stop) break;
            c = b[pos_];
            if (pos_ == mark_) return fail(400, "malformed request line");
            if (c == '\r' || c == '\n')
                // "GET /" and nothing else: an HTTP/0.9 request. Answered at once, with the
                // version we do speak, instead of waiting for header lines that never come.
                return fail(505, "HTTP/0.9 request (no HTTP version): send GET / HTTP/1.1");
            if (c != ' ') return fail(400, "invalid character in request target");
            pending_.target.assign(buf.substr(mark_, pos_ - mark_));
            mark_ = ++pos_;
            state_ = State::version;
            break;
        case State::version:
            while (pos_ < stop && is(b[pos_], kTarget)) ++pos_;
            if (pos_ == stop) break;
            c = b[pos_];
            if (c == '\r' || c == '\n') {
                Result r = end_request_line(buf.substr(mark_, pos_ - mark_));
                if (r.status == Status::error) return r;
                ++pos_;
                state_ = c == '\r' ? State::request_line_lf : State::field_start;
                limit_.status = 431;
                limit_.reason = "request header fields too large";
                break;
            }
            return fail(400, c == ' ' ? "malformed request line" : "invalid character in HTTP version");
        case State::request_line_lf:
            if (c != '\n') return fail(400, "bare CR in the request line");
            ++pos_;
            state_ = State::field_start;
            break;

        // field-line = field-name ":" OWS field-value OWS (RFC 9112 §5), ended by CRLF or a
        // bare LF (RFC 9112 §2.2 lets a server accept that in the head, as most do)
        case State::field_start:
            if (c == '\r' || c == '\n') {
                ++pos_;
                if (c == '\r') {
                    state_ = State::head_end_lf;
                    break;
                }
                if (Result r = end_head(); r.status == Status::error) return r;
                break;
            }
            if (c == ' ' || c == '\t') return fail(400, "obsolete header line folding");
            mark_ = pos_;
            state_ = State::field_name;
            break;
        case State::field_name:
            while (pos_ < stop && is(b[pos_], kToken)) ++pos_;
            if (pos_ == stop) break;
            if (b[pos_] != ':') return fail(400, "invalid character in header name");
            if (pos_ == mark_) return fail(400, "header line without a name");
            name_end_ = pos_;
            value_start_ = ++pos_;
            state_ = State::field_value;
            break;
        case State::field_value:
            while (pos_ < stop && is(b[pos_], kFieldValue)) ++pos_;
            if (pos_ == stop) break;
            c = b[pos_];
            if (c != '\r' && c != '\n') return fail(400, "control character in header value");
            value_end_ = pos_++;
            if (c == '\r') {
                state_ = State::field_lf;
                break;
            }
            if (Result r = end_field_line(buf); r.status == Status::error) return r;
            state_ = State::field_start;
            break;
        case State::field_lf:
            if (c != '\n') return fail(400, "bare CR in a header line");
            ++pos_;
            if (Result r = end_field_line(buf); r.status == Status::error) return r;
            state_ = State::field_start;
            break;
        case State::head_end_lf:
            if (c != '\n') return fail(400, "bare CR in the head");
            ++pos_;
            if (Result r = end_head(); r.status == Status::error) return r;
            break;

        // chunked-body (RFC 9112 §7.1). Stricter than the head: every line ends in CRLF.
        case State::chunk_size:
            if (int d = hex_digit(c); d >= 0) {
                ++pos_;
                ++chunk_digits_;
                chunk_size_ = chunk_size_ * 16 + static_cast<size_t>(d);
                if (chunk_size_ > limits_.max_body) return fail(413, "request body too large");
                break;
            }
            if (chunk_digits_ == 0 || (c != ';' && c != '\r')) {
                if (c == '\n') return fail(400, "bare LF in a chunked body");
                return fail(400, "invalid chunk size");
            }
            ++pos_;
            state_ = c == ';' ? State::chunk_ext : State::chunk_size_lf;
            break;
        case State::chunk_ext:  // read past: no route uses an extension
            while (pos_ < stop && is(b[pos_], kFieldValue)) ++pos_;
            if (pos_ == stop) break;
            if (b[pos_] == '\n') return fail(400, "bare LF in a chunked body");
            if (b[pos_] != '\r') return fail(400, "control character in a chunk extension");
            ++pos_;
            state_ = State::chunk_size_lf;
            break;
        case State::chunk_size_lf:
            if (c != '\n') return fail(400, "bare CR in a chunked body");
            ++pos_;
            if (chunk_size_ == 0) {
                start_trailers();
                break;
            }
            // The data and its CRLF must fit: say so now rather than after a megabyte.
            if (chunk_size_ + 2 > body_start_ + limits_.max_body - pos_) return fail(413, "request body too large");
            limit_ = {body_start_ + limits_.max_body, 413, "request body too large"};
            body_left_ = chunk_size_;
            state_ = State::chunk_data;
            break;
        case State::chunk_data: {
            size_t take = std::min(body_left_, n - pos_);
            pending_.body.append(buf.substr(pos_, take));  // decoded: the data without its framing
            pos_ += take;
            body_left_ -= take;
            if (body_left_ == 0) state_ = State::chunk_data_cr;
            break;
        }
        case State::chunk_data_cr:
            if (c != '\r') return fail(400, "chunk data longer than its size");
            ++pos_;
            state_ = State::chunk_data_lf;
            break;
        case State::chunk_data_lf:
            if (c != '\n') return fail(400, "chunk data longer than its size");
            ++pos_;
            start_chunk_line();
            break;
        case State::trailer_start:
            if (c == '\r') {
                ++pos_;
                state_ = State::trailer_end_lf;
                break;
            }
            if (c == '\n') return fail(400, "bare LF in a chunked body");
            if (c == ' ' || c == '\t') return fail(400, "obsolete line folding in a trailer");
            mark_ = pos_;
            state_ = State::trailer_name;
            break;
        case State::trailer_name:
            while (pos_ < stop && is(b[pos_], kToken)) ++pos_;
            if (pos_ == stop) break;
            if (b[pos_] != ':') return fail(400, "invalid character in a trailer name");
            if (pos_ == mark_) return fail(400, "trailer line without a name");
            ++pos_;
            state_ = State::trailer_value;
            break;
        case State::trailer_value:  // read past: trailers are not merged into the headers
            while (pos_ < stop && is(b[pos_], kFieldValue)) ++pos_;
            if (pos_ == stop) break;
            if (b[pos_] == '\n') return fail(400, "bare LF in a chunked body");
            if (b[pos_] != '\r') return fail(400, "control character in a trailer value");
            ++pos_;
            state_ = State::trailer_lf;
            break;
        case State::trailer_lf:
            if (c != '\n') return fail(400, "bare CR in a trailer");
            ++pos_;
            state_ = State::trailer_start;
            break;
        case State::trailer_end_lf:
            if (c != '\n') return fail(400, "bare CR in a chunked body");
            ++pos_;
            return complete(out);
        case State::body:
            break;  // handled above the switch
        }
    }
}

RequestParser::Result RequestParser::end_request_line(std::string_view version) {
    if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.' ||
        !std::isdigit(static_cast<unsigned char>(version[5])) || !std::isdigit(static_cast<unsigned char>(version[7])))
        return fail(400, "malformed HTTP version");
    if (version[5] != '1') return fail(505, "only HTTP/1.0 and HTTP/1.1 are supported");
    pending_.version_minor = version[7] == '0' ? 0 : 1;

    // origin-form "/path?query", asterisk-form "*", or absolute-form "http://host/path?query",
    // which a server must accept (RFC 9112 §3.2.2): its path is what the router sees.
    std::string_view target = pending_.target;
    std::string_view origin;
    if (target[0] == '/' || target == "*") {
        origin = target;
    } else {
        size_t scheme_end = target.find("://");
        std::string_view scheme = target.substr(0, scheme_end);
        if (scheme_end == std::string_view::npos || !(iequals(scheme, "http") || iequals(scheme, "https")))
            return fail(400, "request target must start with / (or be an absolute http:// URL)");
        std::string_view rest = target.substr(scheme_end + 3);
        size_t path_start = rest.find_first_of("/?");
        if (rest.substr(0, path_start).empty()) return fail(400, "absolute-form target without a host");
        origin = path_start == std::string_view::npos ? std::string_view() : rest.substr(path_start);
    }
    size_t q = origin.find('?');
    pending_.path = origin.substr(0, q);
    if (pending_.path.empty()) pending_.path = "/";
    pending_.query = q == std::string_view::npos ? "" : origin.substr(q + 1);
    return {};
}

RequestParser::Result RequestParser::end_field_line(std::string_view buf) {
    std::string_view name = buf.substr(mark_, name_end_ - mark_);
    std::string_view value = trim(buf.substr(value_start_, value_end_ - value_start_));
    if (iequals(name, "Host")) {
        ++hosts_;
    } else if (iequals(name, "Content-Length")) {
        size_t v;
        if (!parse_length(value, limits_.max_body, &v)) return fail(400, "invalid Content-Length");
        if (has_length_ && v != content_length_) return fail(400, "conflicting Content-Length headers");
        has_length_ = true;
        content_length_ = v;
    } else if (iequals(name, "Transfer-Encoding")) {
        ++te_headers_;
        for_each_token(value, [&](std::string_view t) {
            te_chunked_last_ = iequals(t, "chunked");
            if (te_chunked_last_) ++te_chunked_;
            else te_other_ = true;
        });
    } else if (iequals(name, "Connection")) {
        for_each_token(value, [&](std::string_view t) {
            if (iequals(t, "close")) conn_close_ = true;
            if (iequals(t, "keep-alive")) conn_keep_alive_ = true;
        });
    } else if (iequals(name, "Expect")) {
        expect_continue_ = iequals(value, "100-continue");
    }
    pending_.headers.emplace_back(name, value);
    return {};
}

// The empty line has arrived: check what the header lines said together, then frame the body.
RequestParser::Result RequestParser::end_head() {
    Request& req = pending_;
    if (req.version_minor == 1 && hosts_ != 1) return fail(400, "HTTP/1.1 needs exactly one Host header");
    if (te_headers_ > 0) {
        // RFC 9112 §6.3: both framings at once is how request smuggling starts; so is a body
        // whose end two readers could find in different places.
        if (has_length_) return fail(400, "both Transfer-Encoding and Content-Length");
        if (req.version_minor == 0) return fail(400, "Transfer-Encoding in an HTTP/1.0 request");
        if (te_chunked_ > 1) return fail(400, "chunked given twice");
        if (te_other_) return fail(501, "unsupported transfer coding");
        if (te_chunked_ == 0) return fail(400, "empty Transfer-Encoding");
        chunked_ = te_chunked_last_;
    }
    if (has_length_ && content_length_ > limits_.max_body) return fail(413, "request body too large");
    req.keep_alive = req.version_minor == 1 ? !conn_close_ : (conn_keep_alive_ && !conn_close_);
    body_start_ = pos_;
    // RFC 9110 §10.1.1: an HTTP/1.1 client that expects 100-continue waits for it before the
    // body. (An HTTP/1.0 client cannot have meant it: ignored, as the RFC says.)
    bool has_body = chunked_ || content_length_ > 0;
    continue_due_ = expect_continue_ && has_body && req.version_minor == 1;
    if (chunked_) {
        start_chunk_line();
    } else {
        body_left_ = content_length_;
        limit_ = {kNoLimit, 0, ""};
        state_ = State::body;
    }
    return {};
}

void RequestParser::start_chunk_line() {
    size_t body_end = body_start_ + limits_.max_body;
    size_t line_end = pos_ + limits_.max_chunk_line;
    limit_ = line_end < body_end ? Limit{line_end, 400, "chunk extensions too long"}
                                 : Limit{body_end, 413, "request body too large"};
    chunk_size_ = chunk_digits_ = 0;
    state_ = State::chunk_size;
}

void RequestParser::start_trailers() {
    size_t body_end = body_start_ + limits_.max_body;
    size_t section_end = pos_ + limits_.max_head;
    limit_ = section_end < body_end ? Limit{section_end, 431, "trailer section too large"}
                                    : Limit{body_end, 413, "request body too large"};
    state_ = State::trailer_start;
}

const char* reason_phrase(int status) {
    switch (status) {
    case 200: return "OK";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 504: return "Gateway Timeout";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

namespace {
// "Date: Sat, 21 Nov 2026 19:03:59 GMT\r\n", formatted once a second per thread.
const std::string& date_header() {
    thread_local time_t cached_at = -1;
    thread_local std::string line;
    time_t now = time(nullptr);  // vDSO: no system call
    if (now != cached_at) {
        tm utc;
        gmtime_r(&now, &utc);
        char buf[64];
        strftime(buf, sizeof buf, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &utc);
        line = buf;
        cached_at = now;
    }
    return line;
}
}  // namespace

void append_response(std::string& out, int status, std::string_view body, int version_minor,
                     bool keep_alive, bool head_only, std::string_view extra_headers) {
    out += "HTTP/1.1 ";
    out += std::to_string(status);
    out += ' ';
    out += reason_phrase(status);
    out += "\r\n";
    out += date_header();
    out += "Content-Type: text/plain; charset=utf-8\r\nContent-Length: ";
    out += std::to_string(body.size());
    out += "\r\nX-Worker-Pid: ";
    out += std::to_string(self_pid());
    out += "\r\n";
    // HTTP/1.1 is persistent unless told otherwise; HTTP/1.0 only when both sides say so.
    if (!keep_alive) out += "Connection: close\r\n";
    else if (version_minor == 0) out += "Connection: keep-alive\r\n";
    out += extra_headers;
    out += "\r\n";
    if (!head_only) out += body;
}
