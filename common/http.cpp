#include "http.hpp"
#include "process.hpp"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <ctime>

namespace {

bool is_tchar(unsigned char c) {
    // RFC 9110 §5.6.2 token characters.
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

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
        fn(trim(list.substr(0, comma)));
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
    }
}

// A line without its terminator: "\r\n" or a bare "\n" (RFC 9112 §2.2 lets us accept LF).
std::string_view strip_eol(std::string_view line) {
    if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    return line;
}

bool parse_size(std::string_view s, int base, size_t* out) {
    if (s.empty() || s.size() > 15) return false;
    size_t v = 0;
    for (char c : s) {
        int d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (base == 16 && c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (base == 16 && c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return false;
        v = v * base + d;
    }
    *out = v;
    return true;
}

}  // namespace

const std::string* Request::header(std::string_view name) const {
    for (const auto& [k, v] : headers)
        if (iequals(k, name)) return &v;
    return nullptr;
}

void RequestParser::reset() {
    skip_ = scanned_ = line_start_ = head_len_ = body_len_ = 0;
    chunked_ = false;
    chunk_phase_ = Chunk::size_line;
    chunk_pos_ = chunk_left_ = chunk_total_ = 0;
    pending_ = Request{};
}

bool RequestParser::started(std::string_view buf) const {
    for (char c : buf)
        if (c != '\r' && c != '\n') return true;
    return false;
}

RequestParser::Result RequestParser::fail(int status, std::string reason) {
    Result r;
    r.status = Status::error;
    r.error_status = status;
    r.error_reason = std::move(reason);
    return r;
}

RequestParser::Result RequestParser::parse(std::string_view buf, Request& out) {
    if (head_len_ == 0) {
        // Skip the empty lines a client may send before a request line.
        if (scanned_ == skip_) {
            while (skip_ < buf.size() && (buf[skip_] == '\r' || buf[skip_] == '\n')) ++skip_;
            scanned_ = line_start_ = skip_;
        }
        // Look for the empty line that ends the head, resuming where the last call stopped.
        while (scanned_ < buf.size()) {
            if (buf[scanned_++] != '\n') continue;
            std::string_view line = strip_eol(buf.substr(line_start_, scanned_ - line_start_));
            if (line.empty()) {
                head_len_ = scanned_;
                break;
            }
            line_start_ = scanned_;
        }
        if (head_len_ == 0) {
            size_t have = buf.size() - skip_;
            if (have > limits_.max_head) {
                bool line_ended = line_start_ > skip_;
                return line_ended ? fail(431, "request header fields too large")
                                  : fail(414, "request line longer than 8 KiB");
            }
            return {};
        }
        if (head_len_ - skip_ > limits_.max_head) return fail(431, "request header fields too large");
        Result r = parse_head(buf.substr(skip_, head_len_ - skip_), pending_);
        if (r.status == Status::error) return r;
    }

    // The body: keep it in the request (lab13's POST /send reads it), and step past it, so the
    // next pipelined request starts right.
    size_t end = head_len_ + body_len_;
    if (chunked_) {
        Result r = parse_chunked(buf);
        if (r.status != Status::complete) return r;
        end = r.consumed;
    } else if (buf.size() < end) {
        return {};
    } else {
        pending_.body.assign(buf.substr(head_len_, body_len_));
    }
    out = std::move(pending_);
    reset();
    Result done;
    done.status = Status::complete;
    done.consumed = end;
    return done;
}

RequestParser::Result RequestParser::parse_head(std::string_view head, Request& req) {
    size_t eol = head.find('\n');
    std::string_view line = strip_eol(head.substr(0, eol + 1));
    head.remove_prefix(eol + 1);

    // request-line = method SP request-target SP HTTP-version
    size_t sp1 = line.find(' ');
    size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos)
        return fail(400, "malformed request line");
    std::string_view method = line.substr(0, sp1);
    std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    std::string_view version = line.substr(sp2 + 1);
    if (method.empty()) return fail(400, "empty method");
    for (unsigned char c : method)
        if (!is_tchar(c)) return fail(400, "invalid character in method");
    if (target.empty() || (target[0] != '/' && target != "*")) return fail(400, "request target must start with /");
    for (unsigned char c : target)
        if (c <= 0x20 || c == 0x7f) return fail(400, "invalid character in request target");
    if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.' ||
        !std::isdigit(static_cast<unsigned char>(version[5])) || !std::isdigit(static_cast<unsigned char>(version[7])))
        return fail(400, "malformed HTTP version");
    if (version[5] != '1') return fail(505, "only HTTP/1.0 and HTTP/1.1 are supported");
    req.method = method;
    req.target = target;
    size_t q = target.find('?');
    req.path = target.substr(0, q);
    req.query = q == std::string_view::npos ? "" : target.substr(q + 1);
    req.version_minor = version[7] == '0' ? 0 : 1;

    // header-field = field-name ":" OWS field-value OWS
    bool has_length = false, close = false, keep_alive = false;
    int hosts = 0;
    while (!head.empty()) {
        eol = head.find('\n');
        line = strip_eol(head.substr(0, eol + 1));
        head.remove_prefix(eol + 1);
        if (line.empty()) break;
        if (line[0] == ' ' || line[0] == '\t') return fail(400, "obsolete header line folding");
        size_t colon = line.find(':');
        if (colon == std::string_view::npos || colon == 0) return fail(400, "header line without a name and a colon");
        std::string_view name = line.substr(0, colon);
        for (unsigned char c : name)
            if (!is_tchar(c)) return fail(400, "invalid character in header name");
        std::string_view value = trim(line.substr(colon + 1));
        for (unsigned char c : value)
            if ((c < 0x20 && c != '\t') || c == 0x7f) return fail(400, "control character in header value");

        if (iequals(name, "Host")) {
            ++hosts;
        } else if (iequals(name, "Content-Length")) {
            size_t n;
            if (!parse_size(value, 10, &n)) return fail(400, "invalid Content-Length");
            if (has_length && n != body_len_) return fail(400, "conflicting Content-Length headers");
            has_length = true;
            body_len_ = n;
        } else if (iequals(name, "Transfer-Encoding")) {
            std::string_view last;
            for_each_token(value, [&](std::string_view t) { last = t; });
            if (!iequals(last, "chunked")) return fail(501, "unsupported transfer coding");
            chunked_ = true;
        } else if (iequals(name, "Connection")) {
            for_each_token(value, [&](std::string_view t) {
                if (iequals(t, "close")) close = true;
                if (iequals(t, "keep-alive")) keep_alive = true;
            });
        }
        req.headers.emplace_back(name, value);
    }
    if (req.version_minor == 1 && hosts != 1) return fail(400, "HTTP/1.1 needs exactly one Host header");
    // RFC 9112 §6.3: both framings at once is how request smuggling starts; refuse it.
    if (chunked_ && has_length) return fail(400, "both Transfer-Encoding and Content-Length");
    if (chunked_ && req.version_minor == 0) return fail(400, "Transfer-Encoding in an HTTP/1.0 request");
    if (body_len_ > limits_.max_body) return fail(413, "request body too large");
    req.keep_alive = req.version_minor == 1 ? !close : (keep_alive && !close);
    return {};
}

// Walks a chunked body from where the last call stopped; complete when the last chunk and its
// trailer section have arrived. Result.consumed is where the next request starts.
RequestParser::Result RequestParser::parse_chunked(std::string_view buf) {
    if (chunk_pos_ == 0) chunk_pos_ = head_len_;
    while (true) {
        if (chunk_phase_ == Chunk::data) {
            size_t take = std::min(chunk_left_, buf.size() - chunk_pos_);
            pending_.body.append(buf.substr(chunk_pos_, take));
            chunk_pos_ += take;
            chunk_left_ -= take;
            if (chunk_left_ > 0) return {};
            chunk_phase_ = Chunk::data_end;
            continue;
        }
        size_t eol = buf.find('\n', chunk_pos_);
        if (eol == std::string_view::npos) {
            if (buf.size() - chunk_pos_ > limits_.max_head) return fail(400, "chunk line too long");
            return {};
        }
        std::string_view line = strip_eol(buf.substr(chunk_pos_, eol + 1 - chunk_pos_));
        chunk_pos_ = eol + 1;
        switch (chunk_phase_) {
        case Chunk::size_line: {
            std::string_view size = line.substr(0, line.find(';'));  // drop chunk extensions
            size_t n;
            if (!parse_size(trim(size), 16, &n)) return fail(400, "invalid chunk size");
            chunk_total_ += n;
            if (chunk_total_ > limits_.max_body) return fail(413, "request body too large");
            chunk_left_ = n;
            chunk_phase_ = n == 0 ? Chunk::trailer : Chunk::data;
            break;
        }
        case Chunk::data_end:
            if (!line.empty()) return fail(400, "chunk data longer than its size");
            chunk_phase_ = Chunk::size_line;
            break;
        case Chunk::trailer:
            if (line.empty()) {
                Result r;
                r.status = Status::complete;
                r.consumed = chunk_pos_;
                return r;
            }
            break;
        case Chunk::data:
            break;
        }
    }
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
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
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
