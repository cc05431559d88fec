// loadgen — clusterlab's HTTP load client: N connections on one epoll loop, one request in flight on each.
// Reports throughput, latency percentiles, status codes, transport errors and the split per X-Worker-Pid.
// Run: `make loadgen && ./loadgen --connections 32 --requests 20000 --keepalive http://127.0.0.1:8000/`
// Mirrors ab (-n, -c, -k: a new connection per request unless keep-alive) and wrk (-d, percentiles).
// `--trace FILE` writes every request (start, end, status, pid, error) on the event log's clock.
//
// Design. One thread, non-blocking sockets, level-triggered epoll. Each Conn owns its socket (an Fd)
// and carries one request at a time; a request ends as a response or as one error (connect,
// reset/eof, timeout, bad response). Every deadline has the same length, so the in-flight requests
// sit in one list ordered by deadline, oldest first: arming, disarming and expiring are O(1).
// As in wrk, every answer of one epoll batch is read before the next requests are written (`next_`):
// the server then finds its requests in bursts, which is what lets one client thread keep up with it.
// A Conn that must start over after a failure waits in `idle_` and is restarted at the top of the
// loop, never from inside the error path, so a run of failures cannot recurse.
// The request bytes are built once; responses are parsed straight out of one shared read buffer,
// and only a line split across two reads is copied (into the Conn's `carry`): no allocation per request.
//
// Ownership: `main` owns the first connection until `Loadgen::run` moves it into conns_[0]; each
// Conn owns its socket; Loadgen owns the epoll fd. The process exits with every fd closed by RAII.

#include "cli.hpp"
#include "fd.hpp"
#include "log.hpp"

#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

// ---------------------------------------------------------------------------------------------
// Small helpers

volatile sig_atomic_t g_stop = 0;  // set by SIGINT/SIGTERM; the loop reports what was done so far
void on_signal(int) { g_stop = 1; }

uint64_t now_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// `lower_b` must already be lower case.
bool iequals(std::string_view a, std::string_view lower_b) {
    if (a.size() != lower_b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (lower(a[i]) != lower_b[i]) return false;
    return true;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// ---------------------------------------------------------------------------------------------
// The command line: options, then one URL

struct Url {
    std::string text;         // as given
    std::string host;         // for getaddrinfo (IPv6 without brackets)
    std::string port = "80";  // digits
    std::string host_header;  // HOST[:PORT] as the Host header wants it
    std::string target = "/"; // /path?query
};

bool parse_url(std::string_view s, Url& u, std::string& why) {
    u.text = std::string(s);
    for (char c : s)
        if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f)
            return why = "it contains a space or a control character", false;
    size_t colon = s.find("://");
    if (colon == std::string_view::npos) return why = "it must start with http://", false;
    std::string_view scheme = s.substr(0, colon);
    if (iequals(scheme, "https")) return why = "https is not supported (plain http only)", false;
    if (!iequals(scheme, "http")) return why = "it must start with http://", false;
    s.remove_prefix(colon + 3);
    size_t end = s.find_first_of("/?#");
    std::string_view authority = s.substr(0, end), rest = end == std::string_view::npos ? "" : s.substr(end);
    if (authority.find('@') != std::string_view::npos) return why = "user names in URLs are not supported", false;
    std::string_view host, port;
    if (!authority.empty() && authority.front() == '[') {  // [IPv6]:port
        size_t close = authority.find(']');
        if (close == std::string_view::npos) return why = "unterminated [IPv6 address]", false;
        host = authority.substr(1, close - 1);
        std::string_view after = authority.substr(close + 1);
        if (!after.empty()) {
            if (after.front() != ':') return why = "junk after the ]", false;
            port = after.substr(1);
            if (port.empty()) return why = "empty port", false;
        }
    } else {
        size_t c = authority.rfind(':');
        host = authority.substr(0, c);
        if (c != std::string_view::npos) {
            port = authority.substr(c + 1);
            if (port.empty()) return why = "empty port", false;
        }
    }
    if (host.empty()) return why = "no host", false;
    if (!port.empty()) {
        long p = 0;
        for (char c : port) {
            if (!is_digit(c) || p > 65535) return why = "the port must be a number from 1 to 65535", false;
            p = p * 10 + (c - '0');
        }
        if (p < 1 || p > 65535) return why = "the port must be a number from 1 to 65535", false;
        u.port = std::to_string(p);
    }
    u.host = std::string(host);
    u.host_header = (authority.front() == '[' ? "[" + u.host + "]" : u.host) + (u.port == "80" ? "" : ":" + u.port);
    rest = rest.substr(0, rest.find('#'));  // a fragment never goes on the wire
    if (rest.empty()) u.target = "/";
    else if (rest.front() == '?') u.target = "/" + std::string(rest);
    else u.target = std::string(rest);
    return true;
}

constexpr long kMaxConnections = 50000;

struct Config {
    Url url;
    long connections = 10;
    long requests = 1000;
    bool requests_given = false;
    double duration_s = 0;  // 0: no time limit
    bool keepalive = false;
    long timeout_ms = 10000;
    std::string method = "GET";
    bool http10 = false;
    bool json = false;
    std::string trace_path;  // --trace FILE: one line per request
};

Config parse_command_line(int argc, char** argv) {
    Config cfg;
    std::string duration_text;
    Cli cli("loadgen",
            "HTTP load client: keeps N requests in flight (one per connection) on one epoll loop, then\n"
            "reports throughput, latency percentiles, status codes, errors and the split per X-Worker-Pid.\n"
            "URL is http://HOST[:PORT][/path][?query]. Like ab (-n -c -k) and wrk (-d).");
    cli.integer("connections", &cfg.connections, 1, kMaxConnections,
                "concurrent connections, one request in flight on each");
    cli.integer("requests", &cfg.requests, 1, 1000000000000L,
                "stop after N requests; with --duration there is no cap unless this is given, then whichever "
                "comes first ends the run");
    cli.text("duration", &duration_text, "SEC",
             "run for SEC seconds (decimals allowed), as many requests as fit (no cap unless --requests is given)");
    cli.flag("keepalive", &cfg.keepalive,
             "reuse connections (HTTP keep-alive, like ab -k); default: one connection per request");
    cli.integer("timeout", &cfg.timeout_ms, 1, 3600000,
                "per-request timeout in ms; a late request is a timeout error");
    cli.choice("method", &cfg.method, {"GET", "HEAD"}, "request method");
    cli.flag("http10", &cfg.http10, "send HTTP/1.0 (with Connection: Keep-Alive under --keepalive)");
    cli.flag("json", &cfg.json, "print the report as one JSON object");
    cli.text("trace", &cfg.trace_path, "FILE",
             "write one line per request to FILE: start end status pid error (wall-clock seconds, as the "
             "labs' t=; tools/timeline.py draws it)");

    auto usage = [&] {
        std::string u = cli.usage();
        u.insert(u.find('\n'), " URL");
        return u;
    };
    auto bad = [&](const std::string& why) {
        std::fprintf(stderr, "loadgen: %s\n\n%s", why.c_str(), usage().c_str());
        std::exit(2);
    };

    // Cli knows only --options, so the one positional argument, the URL, is taken out first.
    static const char* const kTakesValue[] = {"--connections", "--requests", "--duration", "--timeout", "--method",
                                             "--trace"};
    std::vector<const char*> options{argv[0]};
    std::vector<std::string> positional;
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        if (a == "--") {
            while (++i < argc) positional.emplace_back(argv[i]);
            break;
        }
        if (a.size() < 2 || a.front() != '-') {
            positional.emplace_back(a);
            continue;
        }
        if (a.rfind("--", 0) != 0 && a != "-h")
            bad("unknown option '" + std::string(a) +
                "' (loadgen takes long options: --connections, --requests, --keepalive…)");
        options.push_back(argv[i]);
        if (a == "--requests" || a.rfind("--requests=", 0) == 0) cfg.requests_given = true;
        for (const char* name : kTakesValue)
            if (a == name && i + 1 < argc) options.push_back(argv[++i]);
    }
    switch (cli.try_parse(static_cast<int>(options.size()), options.data())) {
    case Cli::Result::help:
        std::fputs(usage().c_str(), stdout);
        std::exit(0);
    case Cli::Result::error:
        bad(cli.error());
        break;
    case Cli::Result::ok:
        break;
    }
    if (positional.empty()) bad("missing URL");
    if (positional.size() > 1) bad("unexpected argument '" + positional[1] + "'");
    std::string why;
    if (!parse_url(positional[0], cfg.url, why)) bad("bad URL '" + positional[0] + "': " + why);
    if (!duration_text.empty()) {
        char* end = nullptr;
        errno = 0;
        double d = std::strtod(duration_text.c_str(), &end);
        if (*end != '\0' || errno != 0 || !std::isfinite(d) || d <= 0 || d > 366 * 86400.0)
            bad("--duration needs a number of seconds greater than 0, got '" + duration_text + "'");
        cfg.duration_s = d;
    }
    return cfg;
}

// ---------------------------------------------------------------------------------------------
// Latency histogram: log-linear buckets (HdrHistogram's layout), 128 per power of two, so any
// percentile is within 0.8% of the truth with a fixed 60 KB of counters, however long the run.
// As in HdrHistogram, a percentile is its bucket's highest value: never under-reported.

class Histogram {
public:
    Histogram() : counts_(kBuckets, 0) {}

    void record(uint64_t ns) {
        ++counts_[index(ns)];
        ++n_;
        min_ = std::min(min_, ns);
        max_ = std::max(max_, ns);
        sum_ += static_cast<double>(ns);
    }
    uint64_t count() const { return n_; }
    uint64_t max() const { return max_; }
    double mean() const { return n_ ? sum_ / static_cast<double>(n_) : 0; }
    // The smallest recorded value that at least p% of the samples do not exceed.
    uint64_t percentile(double p) const {
        if (n_ == 0) return 0;
        uint64_t rank = static_cast<uint64_t>(std::ceil(p / 100.0 * static_cast<double>(n_)));
        rank = std::clamp<uint64_t>(rank, 1, n_);
        uint64_t seen = 0;
        for (size_t i = 0; i < counts_.size(); ++i) {
            seen += counts_[i];
            if (seen >= rank) return std::clamp(highest(i), min_, max_);
        }
        return max_;
    }

private:
    static constexpr int kSubBits = 7;  // 128 sub-buckets per power of two
    static constexpr size_t kSub = size_t{1} << kSubBits;
    static constexpr size_t kBuckets = 2 * kSub + (63 - kSubBits) * kSub;

    static size_t index(uint64_t v) {
        if (v < 2 * kSub) return static_cast<size_t>(v);  // exact below 256
        int shift = (63 - __builtin_clzll(v)) - kSubBits;  // >= 1
        return 2 * kSub + static_cast<size_t>(shift - 1) * kSub + static_cast<size_t>((v >> shift) - kSub);
    }
    static uint64_t highest(size_t i) {  // the largest value that lands in bucket i
        if (i < 2 * kSub) return i;
        int shift = static_cast<int>((i - 2 * kSub) / kSub) + 1;
        uint64_t lowest = static_cast<uint64_t>((i - 2 * kSub) % kSub + kSub) << shift;
        return lowest + ((uint64_t{1} << shift) - 1);
    }

    std::vector<uint64_t> counts_;
    uint64_t n_ = 0, min_ = UINT64_MAX, max_ = 0;
    double sum_ = 0;
};

// ---------------------------------------------------------------------------------------------
// The response parser: incremental, over whatever bytes each read brings. Lines (status, headers,
// chunk sizes, trailers) are parsed in place; body bytes are only counted, never copied.

constexpr size_t kMaxLine = 16 * 1024;         // longest status/header/chunk-size line accepted
constexpr size_t kMaxHeaderBytes = 64 * 1024;  // longest header section accepted

struct Response {
    enum Phase : uint8_t { status_line, headers, body, chunk_size, chunk_data, chunk_end, trailers, until_close, done };
    Phase phase = status_line;
    bool head = false;  // the answer to a HEAD: no body, whatever the headers say
    bool http11 = false, close = false, keep_alive = false;
    bool chunked = false, other_coding = false, has_length = false;
    int status = 0;
    uint64_t left = 0;  // Content-Length, then the bytes still due in the body or the chunk
    size_t header_bytes = 0;
    uint8_t pid_len = 0;
    char pid[31];  // X-Worker-Pid

    void reset(bool head_request) {
        *this = Response();
        head = head_request;
    }
    // May the connection carry the next request? (An until-close body never ends in `done`.)
    bool persistent() const { return phase == done && (http11 ? !close : keep_alive); }
    std::string_view worker_pid() const { return {pid, pid_len}; }
};

enum class Feed { more, done, bad };

bool parse_status_line(Response& r, std::string_view line) {
    // HTTP/x.y SSS[ reason]
    if (line.size() < 12 || line.substr(0, 5) != "HTTP/" || !is_digit(line[5]) || line[6] != '.' ||
        !is_digit(line[7]) || line[8] != ' ' || !is_digit(line[9]) || !is_digit(line[10]) || !is_digit(line[11]) ||
        (line.size() > 12 && line[12] != ' '))
        return false;
    r.http11 = line[5] > '1' || (line[5] == '1' && line[7] >= '1');
    r.status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
    return r.status >= 100;
}

bool parse_header(Response& r, std::string_view line) {
    if (line.front() == ' ' || line.front() == '\t') return true;  // obsolete line folding: ignored
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return false;
    std::string_view name = line.substr(0, colon), value = trim(line.substr(colon + 1));
    if (iequals(name, "content-length")) {
        if (value.empty()) return false;
        uint64_t n = 0;
        for (char c : value) {
            if (!is_digit(c) || n > (UINT64_MAX - 9) / 10) return false;
            n = n * 10 + static_cast<uint64_t>(c - '0');
        }
        if (r.has_length && n != r.left) return false;  // two different lengths: a smuggling risk
        r.has_length = true;
        r.left = n;
    } else if (iequals(name, "transfer-encoding")) {
        size_t comma = value.rfind(',');
        std::string_view last = trim(comma == std::string_view::npos ? value : value.substr(comma + 1));
        r.chunked = iequals(last, "chunked");
        r.other_coding = !r.chunked;
    } else if (iequals(name, "connection")) {
        while (!value.empty()) {
            size_t comma = value.find(',');
            std::string_view token = trim(value.substr(0, comma));
            if (iequals(token, "close")) r.close = true;
            if (iequals(token, "keep-alive")) r.keep_alive = true;
            value = comma == std::string_view::npos ? std::string_view() : value.substr(comma + 1);
        }
    } else if (iequals(name, "x-worker-pid")) {
        r.pid_len = static_cast<uint8_t>(std::min(value.size(), sizeof r.pid));
        std::memcpy(r.pid, value.data(), r.pid_len);
    }
    return true;
}

bool end_of_headers(Response& r) {
    if (r.status < 200) {  // 1xx: an interim response; the real one follows
        if (r.status == 101) return false;  // we never asked to switch protocols
        bool head = r.head;
        r.reset(head);
        return true;
    }
    if (r.head || r.status == 204 || r.status == 304) r.phase = Response::done;
    else if (r.chunked) r.phase = Response::chunk_size;
    else if (r.other_coding) r.phase = Response::until_close;
    else if (r.has_length) r.phase = r.left ? Response::body : Response::done;
    else r.phase = Response::until_close;  // no length: the body ends when the server closes
    return true;
}

bool parse_chunk_size(Response& r, std::string_view line) {
    uint64_t n = 0;
    size_t i = 0;
    for (; i < line.size(); ++i) {
        char c = lower(line[i]);
        int d = is_digit(c) ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
        if (d < 0) break;
        if (n >> 60) return false;
        n = n * 16 + static_cast<uint64_t>(d);
    }
    if (i == 0 || (i < line.size() && line[i] != ';' && line[i] != ' ' && line[i] != '\t')) return false;
    r.left = n;
    r.phase = n ? Response::chunk_data : Response::trailers;
    return true;
}

bool on_line(Response& r, std::string_view line) {
    switch (r.phase) {
    case Response::status_line:
        if (!parse_status_line(r, line)) return false;
        r.phase = Response::headers;
        return true;
    case Response::headers:
        return line.empty() ? end_of_headers(r) : parse_header(r, line);
    case Response::chunk_size:
        return parse_chunk_size(r, line);
    case Response::chunk_end:
        r.phase = Response::chunk_size;
        return line.empty();
    case Response::trailers:
        if (line.empty()) r.phase = Response::done;
        return true;
    default:
        return false;
    }
}

// Consumes bytes from data[pos..n). Stops after the end of the response (done) or when it needs
// more bytes (more: an incomplete line starts at `pos`).
Feed feed(Response& r, const char* data, size_t n, size_t& pos) {
    while (pos < n) {
        switch (r.phase) {
        case Response::body:
        case Response::chunk_data: {
            uint64_t take = std::min<uint64_t>(r.left, n - pos);
            pos += static_cast<size_t>(take);
            r.left -= take;
            if (r.left) return Feed::more;
            r.phase = r.phase == Response::body ? Response::done : Response::chunk_end;
            if (r.phase == Response::done) return Feed::done;
            continue;
        }
        case Response::until_close:
            pos = n;
            return Feed::more;
        case Response::done:
            return Feed::done;
        default:
            break;
        }
        const char* nl = static_cast<const char*>(std::memchr(data + pos, '\n', n - pos));
        if (!nl) return n - pos > kMaxLine ? Feed::bad : Feed::more;
        size_t end = static_cast<size_t>(nl - data), len = end - pos;
        if (len > kMaxLine) return Feed::bad;
        if (len && data[end - 1] == '\r') --len;
        if (r.phase == Response::status_line || r.phase == Response::headers || r.phase == Response::trailers) {
            r.header_bytes += end + 1 - pos;
            if (r.header_bytes > kMaxHeaderBytes) return Feed::bad;
        }
        std::string_view line(data + pos, len);
        pos = end + 1;
        if (!on_line(r, line)) return Feed::bad;
    }
    return r.phase == Response::done ? Feed::done : Feed::more;
}

// ---------------------------------------------------------------------------------------------
// What a run measured

enum ErrorKind { kConnect, kReset, kTimeout, kBadResponse, kErrorKinds };

struct Stats {
    uint64_t completed = 0, non_2xx = 0, retries = 0, without_pid = 0;
    uint64_t errors[kErrorKinds] = {};
    std::vector<uint64_t> status = std::vector<uint64_t>(1000, 0);
    std::vector<std::pair<std::string, uint64_t>> pids;  // X-Worker-Pid value -> responses
    size_t last_pid = 0;                                  // the pid that answered last: checked first
    Histogram latency;
    double duration_s = 0;
    bool interrupted = false;

    uint64_t error_total() const { return errors[kConnect] + errors[kReset] + errors[kTimeout] + errors[kBadResponse]; }

    void record(const Response& r, uint64_t latency_ns) {
        ++completed;
        latency.record(latency_ns);
        ++status[static_cast<size_t>(r.status)];
        if (r.status < 200 || r.status > 299) ++non_2xx;
        std::string_view pid = r.worker_pid();
        if (pid.empty()) {
            ++without_pid;
            return;
        }
        if (last_pid < pids.size() && pids[last_pid].first == pid) {
            ++pids[last_pid].second;
            return;
        }
        for (size_t i = 0; i < pids.size(); ++i)
            if (pids[i].first == pid) {
                ++pids[last_pid = i].second;
                return;
            }
        if (pids.size() >= 4096) {  // a server inventing values: stop tracking new ones
            ++without_pid;
            return;
        }
        pids.emplace_back(std::string(pid), 1);
        last_pid = pids.size() - 1;
    }
};

// ---------------------------------------------------------------------------------------------
// --trace FILE: one line per finished request, for tools/timeline.py and for anyone with awk:
//   START END STATUS PID ERROR
//   1796171449.786123 1796171449.786412 200 4243 -
//   1796171449.790001 1796171449.790310 - - reset
// START and END are wall-clock seconds with microseconds, the clock of the labs' event log
// (t=SECONDS.mmm), so a request can be put beside the log line that explains it. They are read
// from the monotonic clock, as every latency here is, plus the wall-minus-monotonic offset taken
// once at the start: a wall clock stepped mid-run cannot bend a latency. STATUS and PID are `-`
// for a request that got no response; ERROR is `-` for one that did. Requests still in flight
// when the run ends (--duration, SIGINT) are in neither the report nor the trace.

const char* const kErrorNames[kErrorKinds] = {"connect", "reset", "timeout", "bad_response"};

class Trace {
public:
    Trace() = default;
    Trace(const Trace&) = delete;
    Trace& operator=(const Trace&) = delete;
    ~Trace() {
        if (file_) std::fclose(file_);
    }

    // A set-up step: on failure the caller dies with the path and strerror.
    bool open(const std::string& path) {
        file_ = std::fopen(path.c_str(), "we");  // e: O_CLOEXEC
        if (!file_) return false;
        timespec wall, mono;
        clock_gettime(CLOCK_REALTIME, &wall);
        clock_gettime(CLOCK_MONOTONIC, &mono);
        offset_ns_ = (static_cast<int64_t>(wall.tv_sec) - static_cast<int64_t>(mono.tv_sec)) * 1000000000 +
                     (static_cast<int64_t>(wall.tv_nsec) - static_cast<int64_t>(mono.tv_nsec));
        std::fputs("# loadgen trace: start end status pid error (wall-clock seconds, as the event log's t=)\n", file_);
        return true;
    }

    void request(uint64_t start_ns, uint64_t end_ns, int status, std::string_view pid, const char* error) {
        if (!file_) return;
        char status_text[16] = "-";
        if (status > 0) std::snprintf(status_text, sizeof status_text, "%d", status);
        std::string start = wall(start_ns), end = wall(end_ns);
        std::fprintf(file_, "%s %s %s %.*s %s\n", start.c_str(), end.c_str(), status_text,
                     pid.empty() ? 1 : static_cast<int>(pid.size()), pid.empty() ? "-" : pid.data(),
                     error ? error : "-");
    }

    // Flushes and closes; false (errno set) if any write failed, e.g. a full disk.
    bool close() {
        if (!file_) return true;
        bool ok = !std::ferror(file_);
        ok = (std::fclose(file_) == 0) && ok;
        file_ = nullptr;
        return ok;
    }

private:
    std::string wall(uint64_t mono_ns) const {
        int64_t ns = static_cast<int64_t>(mono_ns) + offset_ns_;
        return format("%lld.%06lld", static_cast<long long>(ns / 1000000000),
                      static_cast<long long>(ns % 1000000000 / 1000));
    }

    FILE* file_ = nullptr;
    int64_t offset_ns_ = 0;
};

// ---------------------------------------------------------------------------------------------
// The load loop

struct Target {
    sockaddr_storage addr{};
    socklen_t len = 0;
    int family = AF_INET;
};

struct Conn {
    enum class State : uint8_t { closed, connecting, sending, receiving };
    Fd fd;
    State state = State::closed;
    uint32_t events = 0;         // what epoll watches on fd (0: not registered)
    bool retried = false;        // this request already had its one retry
    bool retry_pending = false;  // waiting in idle_ to be retried on a fresh connection
    bool got_bytes = false;      // a byte of the response has arrived
    bool armed = false;          // in the deadline list
    unsigned served = 0;         // responses received on this connection
    size_t sent = 0;             // request bytes written
    uint64_t start = 0;          // latency origin: the first write, or the connect for a new connection
    uint64_t deadline = 0;
    Conn* prev = nullptr;
    Conn* next = nullptr;
    Response resp;
    std::string carry;           // an incomplete line left over from the last read
};

class Loadgen {
public:
    Loadgen(const Config& cfg, const Target& target, std::string request, Trace& trace)
        : cfg_(cfg), target_(target), request_(std::move(request)), trace_(trace),
          conns_(static_cast<size_t>(cfg.connections)),
          scratch_(64 * 1024) {
        total_ = (cfg.requests_given || cfg.duration_s == 0) ? static_cast<uint64_t>(cfg.requests) : UINT64_MAX;
        timeout_ns_ = static_cast<uint64_t>(cfg.timeout_ms) * 1000000u;
        head_method_ = cfg.method == "HEAD";
        epoll_.reset(epoll_create1(EPOLL_CLOEXEC));
        if (!epoll_) die_errno("epoll_create1");
        // epoll_pwait runs the SIGINT handler only if it sleeps: one that returns at once (events
        // ready, or a zero timeout) puts the blocking mask back with the signal still pending. A
        // run that always has something ready (a busy server, every connect refused at once)
        // would never stop. A signalfd in the set turns the pending signal into an event.
        sigset_t stop_signals;
        sigemptyset(&stop_signals);
        sigaddset(&stop_signals, SIGINT);
        sigaddset(&stop_signals, SIGTERM);
        stop_fd_.reset(signalfd(-1, &stop_signals, SFD_NONBLOCK | SFD_CLOEXEC));
        if (!stop_fd_) die_errno("signalfd");
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.ptr = nullptr;  // the one event that is not a Conn
        if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, stop_fd_.get(), &ev) < 0) die_errno("epoll_ctl(signalfd)");
        idle_.reserve(conns_.size());
        idle_batch_.reserve(conns_.size());
        next_.reserve(conns_.size());
    }

    // `first` is the connection made by connect_first() (its connect began at `first_start`).
    void run(Fd first, uint64_t first_start, uint64_t run_start, const sigset_t& unblocked) {
        const uint64_t end = cfg_.duration_s > 0 ? run_start + static_cast<uint64_t>(cfg_.duration_s * 1e9) : 0;
        Conn& c0 = conns_[0];
        c0.fd = std::move(first);
        c0.state = Conn::State::sending;
        begin_request(c0, first_start);
        for (size_t i = 1; i < conns_.size(); ++i) idle_.push_back(&conns_[i]);

        std::vector<epoll_event> events(std::min<size_t>(conns_.size(), 512));
        for (;;) {
            uint64_t now = now_ns();
            if (g_stop) {
                stats.interrupted = true;
                break;
            }
            if (end && now >= end) break;
            expire(now);
            start_idle();
            if (!head_ && idle_.empty()) break;  // nothing in flight and nothing left to start

            // Sleep until the oldest deadline or the end of the run, in whole ms rounded up.
            uint64_t wake = head_ ? head_->deadline : UINT64_MAX;
            if (end) wake = std::min(wake, end);
            if (!idle_.empty()) wake = now;
            int timeout_ms = -1;
            if (wake != UINT64_MAX)
                timeout_ms = wake <= now ? 0 : static_cast<int>(std::min<uint64_t>((wake - now + 999999) / 1000000,
                                                                                   1000000000));
            int n = epoll_pwait(epoll_.get(), events.data(), static_cast<int>(events.size()), timeout_ms, &unblocked);
            if (n < 0) {
                if (errno == EINTR) continue;
                die_errno("epoll_wait");
            }
            for (int i = 0; i < n; ++i) {
                if (!events[i].data.ptr) {
                    g_stop = 1;  // the signal stays pending, unread: it ends the run, once
                    continue;
                }
                on_event(*static_cast<Conn*>(events[i].data.ptr), events[i].events);
            }
            send_next();
        }
        stats.duration_s = static_cast<double>(now_ns() - run_start) / 1e9;
    }

    Stats stats;

private:
    // A new request on `c`: on its open connection if it has one, else on a new one.
    void begin_request(Conn& c, uint64_t now) {
        ++issued_;
        c.start = now;
        c.retried = false;
        attempt(c, now);
    }

    // One try at c's current request (a retry keeps its latency origin).
    void attempt(Conn& c, uint64_t now) {
        c.got_bytes = false;
        c.sent = 0;
        c.resp.reset(head_method_);
        c.carry.clear();
        arm(c, now);
        if (c.fd) send_request(c);
        else open_connection(c);
    }

    void open_connection(Conn& c) {
        int s = socket(target_.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (s < 0) return fail(c, kConnect);  // EMFILE, ENOBUFS…: this request fails, the run goes on
        c.fd.reset(s);
        c.served = 0;
        c.events = 0;
        if (connect(s, reinterpret_cast<const sockaddr*>(&target_.addr), target_.len) == 0) {
            c.state = Conn::State::sending;
            return send_request(c);
        }
        if (errno != EINPROGRESS) return fail(c, kConnect);
        c.state = Conn::State::connecting;
        watch(c, EPOLLOUT);
    }

    void send_request(Conn& c) {
        while (c.sent < request_.size()) {
            ssize_t n = send(c.fd.get(), request_.data() + c.sent, request_.size() - c.sent, MSG_NOSIGNAL);
            if (n >= 0) {
                c.sent += static_cast<size_t>(n);
            } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
                c.state = Conn::State::sending;
                watch(c, EPOLLIN | EPOLLOUT);
                return;
            } else if (errno != EINTR) {
                return fail(c, kReset);  // EPIPE/ECONNRESET: a kept-alive connection the server closed
            }
        }
        c.state = Conn::State::receiving;
        watch(c, EPOLLIN);
    }

    void watch(Conn& c, uint32_t mask) {
        if (c.events == mask) return;
        epoll_event ev{};
        ev.events = mask;
        ev.data.ptr = &c;
        if (epoll_ctl(epoll_.get(), c.events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c.fd.get(), &ev) < 0)
            die_errno("epoll_ctl");  // only ENOMEM/ENOSPC can get here: the machine is out of resources
        c.events = mask;
    }

    void on_event(Conn& c, uint32_t ev) {
        switch (c.state) {
        case Conn::State::closed:
            return;
        case Conn::State::connecting:
            if (ev & (EPOLLERR | EPOLLHUP)) {
                int err = 0;
                socklen_t len = sizeof err;
                getsockopt(c.fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
                errno = err ? err : ECONNREFUSED;
                return fail(c, kConnect);
            }
            c.state = Conn::State::sending;
            return send_request(c);
        case Conn::State::sending:
            if (ev & EPOLLOUT) send_request(c);
            if (c.state == Conn::State::closed || !(ev & (EPOLLIN | EPOLLERR | EPOLLHUP))) return;
            return receive(c);
        case Conn::State::receiving:
            return receive(c);
        }
    }

    void receive(Conn& c) {
        ssize_t n = recv(c.fd.get(), scratch_.data(), scratch_.size(), 0);
        if (n > 0) {
            c.got_bytes = true;
            return on_bytes(c, scratch_.data(), static_cast<size_t>(n));
        }
        if (n == 0) {  // the server closed: the end of an until-close body, or an error
            if (c.resp.phase == Response::until_close) return complete(c);
            return fail(c, kReset);
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        fail(c, kReset);
    }

    void on_bytes(Conn& c, const char* data, size_t n) {
        bool carried = !c.carry.empty();
        if (carried) {  // the rare case: a line split across reads
            c.carry.append(data, n);
            data = c.carry.data();
            n = c.carry.size();
        }
        size_t pos = 0;
        switch (feed(c.resp, data, n, pos)) {
        case Feed::bad:
            return fail(c, kBadResponse);
        case Feed::more:
            if (carried) c.carry.erase(0, pos);
            else c.carry.assign(data + pos, n - pos);
            return;
        case Feed::done:
            if (pos != n) return fail(c, kBadResponse);  // bytes after the response we never asked for
            c.carry.clear();
            return complete(c);
        }
    }

    void complete(Conn& c) {
        uint64_t now = now_ns();
        stats.record(c.resp, now - c.start);
        trace_.request(c.start, now, c.resp.status, c.resp.worker_pid(), nullptr);
        ++c.served;
        disarm(c);
        bool reuse = cfg_.keepalive && c.resp.persistent();
        if (!reuse || issued_ >= total_) close_connection(c);
        if (issued_ < total_) {  // the next request goes out once the whole batch of answers is read
            ++issued_;
            next_.push_back(&c);
        }
    }

    void send_next() {
        for (Conn* c : next_) {
            uint64_t now = now_ns();  // each request's own start: a batch of writes takes a while
            c->start = now;
            c->retried = false;
            attempt(*c, now);
        }
        next_.clear();
    }

    // The request on `c` failed: count it, close the connection, and queue `c` to start over.
    // A kept-alive connection that closes before any byte of the response gets one retry.
    void fail(Conn& c, ErrorKind kind) {
        bool retry = kind == kReset && cfg_.keepalive && c.served > 0 && !c.got_bytes && !c.retried;
        disarm(c);
        close_connection(c);
        if (retry) {
            ++stats.retries;
            c.retried = true;
            c.retry_pending = true;
            idle_.push_back(&c);
            return;
        }
        ++stats.errors[kind];
        trace_.request(c.start, now_ns(), 0, {}, kErrorNames[kind]);
        if (issued_ < total_) idle_.push_back(&c);
    }

    void close_connection(Conn& c) {
        c.fd.reset();  // close(2) also drops it from the epoll set
        c.state = Conn::State::closed;
        c.events = 0;
    }

    // Starts the Conns waiting in idle_, at most kStartBurst per turn of the loop: 10,000 connects in
    // one go would leave the first connections silent for as long as the last take to be issued, and
    // a server may rightly close a connection that sends nothing. A restart that fails lands in idle_
    // again, for the next turn.
    void start_idle() {
        constexpr size_t kStartBurst = 256;
        idle_batch_.swap(idle_);
        size_t started = 0;
        for (Conn* c : idle_batch_) {
            if (started == kStartBurst) {
                idle_.push_back(c);
                continue;
            }
            ++started;
            if (c->retry_pending) {
                c->retry_pending = false;
                attempt(*c, now_ns());
            } else if (issued_ < total_) {
                begin_request(*c, now_ns());
            }
        }
        idle_batch_.clear();
    }

    // The deadline list: every request has the same timeout, so appending keeps it sorted.
    void arm(Conn& c, uint64_t now) {
        disarm(c);
        c.deadline = now + timeout_ns_;
        c.prev = tail_;
        c.next = nullptr;
        (tail_ ? tail_->next : head_) = &c;
        tail_ = &c;
        c.armed = true;
    }
    void disarm(Conn& c) {
        if (!c.armed) return;
        (c.prev ? c.prev->next : head_) = c.next;
        (c.next ? c.next->prev : tail_) = c.prev;
        c.prev = c.next = nullptr;
        c.armed = false;
    }
    void expire(uint64_t now) {
        while (head_ && head_->deadline <= now) fail(*head_, kTimeout);
    }

    const Config& cfg_;
    const Target& target_;
    const std::string request_;  // built once, written as is for every request
    Trace& trace_;
    Fd epoll_;
    Fd stop_fd_;  // signalfd for SIGINT/SIGTERM (see the constructor)
    std::vector<Conn> conns_;  // never resized: epoll events point into it
    std::vector<Conn*> idle_, idle_batch_;
    std::vector<Conn*> next_;  // answered in this batch: their next request is written after it
    Conn* head_ = nullptr;  // the deadline list, oldest first
    Conn* tail_ = nullptr;
    uint64_t total_ = 0, issued_ = 0, timeout_ns_ = 0;  // requests to make (UINT64_MAX: no count), begun so far
    bool head_method_ = false;  // HEAD requests: responses carry no body
    std::vector<char> scratch_;  // the one read buffer
};

// ---------------------------------------------------------------------------------------------
// Set-up: resolve, the first connection, the request bytes

std::vector<Target> resolve(const Url& u) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    int rc = getaddrinfo(u.host.c_str(), u.port.c_str(), &hints, &res);
    if (rc != 0) {
        std::fprintf(stderr, "loadgen: resolve %s: %s\n", u.host.c_str(), gai_strerror(rc));
        std::exit(1);
    }
    std::vector<Target> out;
    for (addrinfo* a = res; a; a = a->ai_next) {
        if (a->ai_addrlen > sizeof(sockaddr_storage)) continue;
        Target t;
        std::memcpy(&t.addr, a->ai_addr, a->ai_addrlen);
        t.len = a->ai_addrlen;
        t.family = a->ai_family;
        out.push_back(t);
    }
    freeaddrinfo(res);
    return out;
}

// Connects to the first address that answers, within the timeout. Returns the socket, or an
// empty Fd with errno set (or with `interrupted` set, on SIGINT/SIGTERM).
Fd connect_first(const std::vector<Target>& targets, long timeout_ms, const sigset_t& unblocked, size_t& chosen,
                 uint64_t& started, bool& interrupted) {
    int last_error = ECONNREFUSED;
    for (size_t i = 0; i < targets.size(); ++i) {
        const Target& t = targets[i];
        started = now_ns();
        Fd s(socket(t.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        if (!s) die_errno("socket");
        int err = 0;
        if (connect(s.get(), reinterpret_cast<const sockaddr*>(&t.addr), t.len) < 0) {
            err = errno;
            if (err == EINPROGRESS) {
                const uint64_t deadline = started + static_cast<uint64_t>(timeout_ms) * 1000000u;
                pollfd p{s.get(), POLLOUT, 0};
                for (;;) {
                    uint64_t now = now_ns();
                    if (now >= deadline) {
                        err = ETIMEDOUT;
                        break;
                    }
                    timespec ts{static_cast<time_t>((deadline - now) / 1000000000u),
                                static_cast<long>((deadline - now) % 1000000000u)};
                    int n = ppoll(&p, 1, &ts, &unblocked);
                    if (g_stop) return interrupted = true, Fd();
                    if (n < 0 && errno == EINTR) continue;
                    if (n < 0) die_errno("ppoll");
                    if (n == 0) continue;
                    socklen_t len = sizeof err;
                    if (getsockopt(s.get(), SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
                    break;
                }
            }
        }
        if (err == 0) {
            chosen = i;
            return s;
        }
        last_error = err;
    }
    errno = last_error;
    return Fd();
}

std::string build_request(const Config& cfg) {
    std::string r = cfg.method + " " + cfg.url.target + (cfg.http10 ? " HTTP/1.0" : " HTTP/1.1") + "\r\n";
    r += "Host: " + cfg.url.host_header + "\r\n";
    r += "User-Agent: clusterlab-loadgen\r\nAccept: */*\r\n";
    if (cfg.keepalive && cfg.http10) r += "Connection: Keep-Alive\r\n";  // 1.0 closes unless asked
    if (!cfg.keepalive && !cfg.http10) r += "Connection: close\r\n";     // 1.1 keeps alive unless told
    return r + "\r\n";
}

void raise_fd_limit(long connections) {
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) return;
    rlim_t need = static_cast<rlim_t>(connections) + 32;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur >= need) return;
    if (rl.rlim_cur == RLIM_INFINITY) return;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
        std::fprintf(stderr, "loadgen: --connections %ld needs %llu file descriptors, the limit is %llu (ulimit -Hn)\n",
                     connections, static_cast<unsigned long long>(need), static_cast<unsigned long long>(rl.rlim_max));
        std::exit(1);
    }
    rl.rlim_cur = need;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) die_errno("setrlimit");
}

// ---------------------------------------------------------------------------------------------
// The report

double ms(uint64_t ns) { return static_cast<double>(ns) / 1e6; }
unsigned long long ull(uint64_t v) { return v; }

// Pids in numeric order (shorter digit strings first), other values after, alphabetically.
std::vector<std::pair<std::string, uint64_t>> sorted_pids(const Stats& s) {
    auto pids = s.pids;
    std::sort(pids.begin(), pids.end(), [](const auto& a, const auto& b) {
        return a.first.size() != b.first.size() ? a.first.size() < b.first.size() : a.first < b.first;
    });
    return pids;
}

// max/min of the per-pid counts, or 0 with fewer than two pids.
double pid_ratio(const Stats& s) {
    if (s.pids.size() < 2) return 0;
    uint64_t lo = UINT64_MAX, hi = 0;
    for (const auto& p : s.pids) lo = std::min(lo, p.second), hi = std::max(hi, p.second);
    return static_cast<double>(hi) / static_cast<double>(lo);
}

double rps(const Stats& s) { return s.duration_s > 0 ? static_cast<double>(s.completed) / s.duration_s : 0; }

std::string text_report(const Config& cfg, const Stats& s) {
    std::string o;
    auto line = [&o](const char* label, const std::string& value) { o += format("%-14s%s\n", label, value.c_str()); };
    const Histogram& h = s.latency;
    line("URL:", cfg.url.text);
    line("connections:", std::to_string(cfg.connections));
    line("mode:", std::string(cfg.keepalive ? "keep-alive" : "connection per request") + ", " + cfg.method +
                      (cfg.http10 ? " HTTP/1.0" : " HTTP/1.1"));
    std::string failed = s.error_total() ? format(", %llu failed", ull(s.error_total())) : "";
    line("requests:", format("%llu completed", ull(s.completed)) + failed);
    line("duration:", format("%.3f s", s.duration_s));
    line("throughput:", format("%.1f req/s", rps(s)));
    line("latency (ms):", format("p50 %.3f  p90 %.3f  p99 %.3f  max %.3f  mean %.3f", ms(h.percentile(50)),
                                 ms(h.percentile(90)), ms(h.percentile(99)), ms(h.max()), h.mean() / 1e6));
    std::string codes;
    for (size_t code = 0; code < s.status.size(); ++code)
        if (s.status[code]) codes += format("%s%zu: %llu", codes.empty() ? "" : "  ", code, ull(s.status[code]));
    line("status:", codes.empty() ? "none" : codes);
    line("non-2xx:", std::to_string(s.non_2xx));
    line("errors:", format("connect %llu  reset/eof %llu  timeout %llu  bad response %llu  (total %llu)",
                           ull(s.errors[kConnect]), ull(s.errors[kReset]), ull(s.errors[kTimeout]),
                           ull(s.errors[kBadResponse]), ull(s.error_total())));
    line("retries:", std::to_string(s.retries));
    const char* label = "per pid:";
    for (const auto& [pid, n] : sorted_pids(s)) {
        line(label, pid + ": " + std::to_string(n));
        label = "";
    }
    if (s.without_pid) line(label, format("(no X-Worker-Pid): %llu", ull(s.without_pid)));
    else if (s.pids.empty()) line(label, "none");
    if (s.pids.size() > 1) line("", format("max/min %.2f", pid_ratio(s)));
    if (s.interrupted) line("stopped:", "interrupted; the figures cover what was done so far");
    return o;
}

void json_string(std::string& o, std::string_view v) {
    o += '"';
    for (char c : v) {
        unsigned char u = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') o += '\\', o += c;
        else if (u < 0x20 || u >= 0x7f) o += format("\\u%04x", u);
        else o += c;
    }
    o += '"';
}

std::string json_report(const Config& cfg, const Stats& s) {
    auto n = [](uint64_t v) { return std::to_string(v); };
    const Histogram& h = s.latency;
    std::string o = "{\"url\":";
    json_string(o, cfg.url.text);
    o += ",\"connections\":" + std::to_string(cfg.connections);
    o += std::string(",\"keepalive\":") + (cfg.keepalive ? "true" : "false");
    o += ",\"method\":\"" + cfg.method + "\"";
    o += std::string(",\"http_version\":\"") + (cfg.http10 ? "1.0" : "1.1") + "\"";
    o += ",\"requests\":" + n(s.completed);
    o += format(",\"duration_s\":%.3f,\"rps\":%.1f", s.duration_s, rps(s));
    o += format(",\"latency_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"max\":%.3f,\"mean\":%.3f}",
                ms(h.percentile(50)), ms(h.percentile(90)), ms(h.percentile(99)), ms(h.max()), h.mean() / 1e6);
    o += ",\"status\":{";
    const char* sep = "";
    for (size_t code = 0; code < s.status.size(); ++code) {
        if (!s.status[code]) continue;
        o += sep + ("\"" + std::to_string(code) + "\":") + n(s.status[code]);
        sep = ",";
    }
    o += "},\"non_2xx\":" + n(s.non_2xx);
    o += ",\"errors\":{\"connect\":" + n(s.errors[kConnect]) + ",\"reset\":" + n(s.errors[kReset]) +
         ",\"timeout\":" + n(s.errors[kTimeout]) + ",\"bad_response\":" + n(s.errors[kBadResponse]) +
         ",\"total\":" + n(s.error_total()) + "}";
    o += ",\"retries\":" + n(s.retries);
    o += ",\"per_pid\":{";
    sep = "";
    for (const auto& [pid, count] : sorted_pids(s)) {
        o += sep;
        json_string(o, pid);
        o += ":" + n(count);
        sep = ",";
    }
    o += "},\"without_pid\":" + n(s.without_pid);
    o += s.pids.size() > 1 ? format(",\"per_pid_ratio\":%.3f", pid_ratio(s)) : ",\"per_pid_ratio\":null";
    o += std::string(",\"interrupted\":") + (s.interrupted ? "true" : "false") + "}\n";
    return o;
}

}  // namespace

int main(int argc, char** argv) {
    set_log_role("loadgen");
    Config cfg = parse_command_line(argc, argv);
    signal(SIGPIPE, SIG_IGN);  // belt and braces: every send() already passes MSG_NOSIGNAL
    raise_fd_limit(cfg.connections);
    std::vector<Target> targets = resolve(cfg.url);

    // SIGINT/SIGTERM stay blocked except inside ppoll/epoll_pwait, so the flag is never missed
    // between a check and a wait; the handler only sets it.
    sigset_t stop_signals, unblocked;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    sigprocmask(SIG_BLOCK, &stop_signals, &unblocked);
    sigdelset(&unblocked, SIGINT);
    sigdelset(&unblocked, SIGTERM);
    struct sigaction sa{};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);

    Trace trace;
    if (!cfg.trace_path.empty() && !trace.open(cfg.trace_path)) {
        std::fprintf(stderr, "loadgen: open --trace %s: %s\n", cfg.trace_path.c_str(), std::strerror(errno));
        return 1;
    }

    const uint64_t run_start = now_ns();
    size_t chosen = 0;
    uint64_t first_start = 0;
    bool interrupted = false;
    Fd first = connect_first(targets, cfg.timeout_ms, unblocked, chosen, first_start, interrupted);
    if (!first && !interrupted) {
        std::fprintf(stderr, "loadgen: connect: %s (%s)\n", std::strerror(errno), cfg.url.host_header.c_str());
        return 1;
    }

    Loadgen load(cfg, targets[chosen], build_request(cfg), trace);
    if (first) {
        load.run(std::move(first), first_start, run_start, unblocked);
    } else {
        load.stats.interrupted = true;
        load.stats.duration_s = static_cast<double>(now_ns() - run_start) / 1e9;
    }
    if (!trace.close()) {
        std::fprintf(stderr, "loadgen: write --trace %s: %s\n", cfg.trace_path.c_str(), std::strerror(errno));
        return 1;
    }
    std::string report = cfg.json ? json_report(cfg, load.stats) : text_report(cfg, load.stats);
    std::fwrite(report.data(), 1, report.size(), stdout);
    std::fflush(stdout);
    return 0;
}
