#include "shared_store.hpp"
#include "fd.hpp"
#include "log.hpp"
#include "process.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

void add_store_options(Cli& cli, StoreOptions& opts) {
    cli.text("store", &opts.path, "FILE",
             "the shared store, key=value lines (default: a new file in a temporary directory, named in the log "
             "and removed at exit)");
    cli.choice("mode", &opts.mode, {"notify", "poll", "inotify"},
               "notify: one notifier process polls the store and the master pushes changes; poll: every worker "
               "polls it; inotify: the notifier checks only when the kernel says the store changed");
    cli.integer("poll-ms", &opts.poll_ms, 1, 3600000, "ms between two checks of the store, by each poller (not inotify)");
}

StoreRead read_store(const std::string& path, std::size_t max_bytes) {
    StoreRead r;
    // O_NONBLOCK, then a regular file only: a FIFO put where the store should be must not block
    // a poller in open() or read() (it would freeze the notifier, or every worker in poll mode).
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
    if (!fd) {
        if (errno == ENOENT) {
            r.ok = true;
            return r;
        }
        r.error = format("open %s: %s", path.c_str(), std::strerror(errno));
        return r;
    }
    struct stat st;
    if (::fstat(fd.get(), &st) < 0) {
        r.error = format("fstat %s: %s", path.c_str(), std::strerror(errno));
        return r;
    }
    if (!S_ISREG(st.st_mode)) {
        r.error = format("%s is not a regular file", path.c_str());
        return r;
    }
    char buf[16384];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            r.error = format("read %s: %s", path.c_str(), std::strerror(errno));
            return r;
        }
        if (n == 0) break;
        r.text.append(buf, static_cast<size_t>(n));
        if (r.text.size() > max_bytes) {
            r.text.clear();
            r.error = format("%s is larger than %zu bytes", path.c_str(), max_bytes);
            return r;
        }
    }
    r.ok = true;
    return r;
}

namespace {
std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}
}  // namespace

JsonObject parse_store(std::string_view text) {
    JsonObject values;
    while (!text.empty()) {
        size_t eol = text.find('\n');
        std::string_view line = text.substr(0, eol);
        text.remove_prefix(eol == std::string_view::npos ? text.size() : eol + 1);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (trim(line).empty() || trim(line).front() == '#') continue;
        size_t eq = line.find('=');
        if (eq == std::string_view::npos) continue;
        std::string_view key = trim(line.substr(0, eq));
        if (key.empty()) continue;
        values.set(key, line.substr(eq + 1));
    }
    return values;
}

bool StorePoller::check(std::string* changed) {
    StoreRead r = read_store(path, kMaxStoreBytes);
    if (!r.ok) {
        if (r.error != last_error_) log_event("store error=\"%s\" keeping=last", r.error.c_str());
        last_error_ = r.error;
        return false;
    }
    last_error_.clear();
    if (seen_ && r.text == last_) return false;
    seen_ = true;
    last_ = r.text;
    *changed = r.text;
    return true;
}

void StoreView::learn(std::int64_t version, std::string_view text, const char* how) {
    version_ = version;
    values_ = parse_store(text);
    learned_ = how;
    log_event("state version=%lld learned=%s keys=%zu", static_cast<long long>(version), how, values_.size());
}

std::string StoreView::json() const {
    JsonObject head;
    head.set("pid", static_cast<std::int64_t>(self_pid()));
    head.set("version", version_);
    head.set("learned", learned_);
    return json_with(head.dump(), "values", values_.dump()) + "\n";
}

StoreChecks::StoreChecks() : started_ms_(monotonic_ms()) {}

void StoreChecks::forget(pid_t poller) {
    auto it = by_.find(poller);
    if (it == by_.end()) return;
    gone_ += it->second;
    by_.erase(it);
}

void StoreChecks::log(const char* at, const std::string& mode, long poll_ms) const {
    long long total = gone_ + master_;
    std::string by;
    for (auto& [pid, n] : by_) {
        total += n;
        by += (by.empty() ? "" : ",") + std::to_string(pid) + ":" + std::to_string(n);
    }
    long long elapsed = monotonic_ms() - started_ms_;
    log_event("checks at=%s mode=%s pollers=%zu total=%lld elapsed_ms=%lld per_second=%.1f poll_ms=%ld master=%lld "
              "gone=%lld by=%s",
              at, mode.c_str(), by_.size(), total, elapsed, elapsed > 0 ? total * 1000.0 / elapsed : 0.0, poll_ms,
              master_, gone_, by.empty() ? "none" : by.c_str());
}

JsonObject where_the_store_is(const std::string& path) {
    JsonObject m;
    m.set("cmd", "store");
    m.set("path", path);
    return m;
}

std::string create_temp_store(const char* prefix, std::string_view initial) {
    const char* tmp = std::getenv("TMPDIR");
    std::string dir = std::string(tmp && *tmp ? tmp : "/tmp") + "/" + prefix + "-XXXXXX";
    if (!mkdtemp(dir.data())) return "";
    std::string path = dir + "/store";
    Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    bool written = fd && ::write(fd.get(), initial.data(), initial.size()) == static_cast<ssize_t>(initial.size());
    if (!written) {
        int saved = errno;
        ::unlink(path.c_str());
        ::rmdir(dir.c_str());
        errno = saved;
        return "";
    }
    return path;
}

void remove_temp_store(const std::string& path) {
    ::unlink(path.c_str());
    size_t slash = path.rfind('/');
    if (slash != std::string::npos) ::rmdir(path.substr(0, slash).c_str());
}

StoreFile::StoreFile(const std::string& given, const char* prefix)
    : path_(given.empty() ? create_temp_store(prefix, kExampleStore) : given), created_(given.empty()) {
    if (path_.empty()) die_errno("create_temp_store (mkdtemp/open/write)");
}

StoreFile::~StoreFile() {
    if (created_) remove_temp_store(path_);
}

namespace {
std::string dir_of(const std::string& path) {
    size_t slash = path.rfind('/');
    return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
}
std::string base_of(const std::string& path) {
    size_t slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}
}  // namespace

Fd watch_store(const std::string& path) {
    Fd fd(inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
    if (!fd) return fd;
    uint32_t mask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE;
    if (inotify_add_watch(fd.get(), dir_of(path).c_str(), mask) < 0) return Fd();
    return fd;
}

bool store_touched(int watch_fd, const std::string& path) {
    std::string name = base_of(path);
    bool touched = false;
    alignas(inotify_event) char buf[8192];
    for (;;) {
        ssize_t n = ::read(watch_fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return touched;  // EAGAIN: all read
        for (char* p = buf; p < buf + n;) {
            auto* ev = reinterpret_cast<inotify_event*>(p);
            if (ev->mask & IN_Q_OVERFLOW) touched = true;  // events were lost: check anyway
            else if (ev->len > 0 && name == ev->name) touched = true;
            p += sizeof(inotify_event) + ev->len;
        }
    }
}
