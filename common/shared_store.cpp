#include "shared_store.hpp"
#include "fd.hpp"
#include "log.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <sys/inotify.h>
#include <unistd.h>

StoreRead read_store(const std::string& path, std::size_t max_bytes) {
    StoreRead r;
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
        if (errno == ENOENT) {
            r.ok = true;
            return r;
        }
        r.error = format("open %s: %s", path.c_str(), std::strerror(errno));
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

std::string json_quoted(std::string_view text) {
    JsonObject one;
    one.set("", text);
    std::string dumped = one.dump();  // {"":"..."}
    return dumped.substr(4, dumped.size() - 5);
}

std::string json_with(const std::string& object, std::string_view key, std::string_view json_value) {
    std::string out = object.substr(0, object.size() - 1);  // without the closing brace
    if (out.size() > 1) out += ',';
    out += json_quoted(key);
    out += ':';
    out += json_value;
    out += '}';
    return out;
}
