#include "config_file.hpp"
#include "fd.hpp"
#include "log.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace {
std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
    return s;
}

bool key_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
           c == '-';
}

bool fail(ConfigError* error, std::string reason, int line) {
    error->reason = std::move(reason);
    error->line = line;
    return false;
}
}  // namespace

const ConfigEntry* ConfigFile::find(std::string_view key) const {
    for (const ConfigEntry& e : entries)
        if (e.key == key) return &e;
    return nullptr;
}

std::string ConfigFile::get(std::string_view key, std::string_view def) const {
    const ConfigEntry* e = find(key);
    return e ? e->value : std::string(def);
}

std::string ConfigFile::text() const {
    std::string out;
    for (const ConfigEntry& e : entries) out += e.key + "=" + e.value + "\n";
    return out;
}

bool parse_config(std::string_view text, ConfigFile* out, ConfigError* error) {
    out->entries.clear();
    if (text.size() > kMaxConfigBytes)
        return fail(error, "file is larger than " + std::to_string(kMaxConfigBytes) + " bytes", 0);
    int number = 0;
    while (!text.empty()) {
        ++number;
        size_t nl = text.find('\n');
        std::string_view raw = text.substr(0, nl);
        text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
        if (raw.find('\0') != std::string_view::npos) return fail(error, "line holds a NUL byte", number);
        std::string_view line = trim(raw);
        if (line.empty() || line.front() == '#') continue;
        size_t eq = line.find('=');
        if (eq == std::string_view::npos) return fail(error, "line has no '=' (want key=value)", number);
        std::string_view key = trim(line.substr(0, eq));
        std::string_view value = trim(line.substr(eq + 1));
        if (key.empty()) return fail(error, "empty key before '='", number);
        for (char c : key)
            if (!key_char(c)) return fail(error, "key '" + std::string(key) + "' has a character other than letters, digits, _ . -", number);
        if (const ConfigEntry* first = out->find(key))
            return fail(error, "key '" + std::string(key) + "' already set on line " + std::to_string(first->line), number);
        out->entries.push_back({std::string(key), std::string(value), number});
    }
    return true;
}

bool load_config(const std::string& path, ConfigFile* out, ConfigError* error) {
    out->path = path;
    // O_NONBLOCK, then a regular file only: a FIFO or a terminal named by mistake must not block
    // the master's loop in read().
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
    if (!fd) return fail(error, std::string("open: ") + std::strerror(errno), 0);
    struct stat st;
    if (::fstat(fd.get(), &st) < 0) return fail(error, std::string("fstat: ") + std::strerror(errno), 0);
    if (!S_ISREG(st.st_mode)) return fail(error, "not a regular file", 0);
    std::string text;
    char buf[8192];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail(error, std::string("read: ") + std::strerror(errno), 0);
        if (n == 0) break;
        text.append(buf, static_cast<size_t>(n));
        if (text.size() > kMaxConfigBytes)
            return fail(error, "file is larger than " + std::to_string(kMaxConfigBytes) + " bytes", 0);
    }
    return parse_config(text, out, error);
}

bool config_number(const std::string& value, long min, long max, long* out) {
    if (value.empty()) return false;
    errno = 0;
    char* end = nullptr;
    long v = std::strtol(value.c_str(), &end, 10);
    if (*end != '\0' || errno == ERANGE || v < min || v > max) return false;
    *out = v;
    return true;
}

bool check_config(const ConfigFile& config, const std::vector<ConfigKey>& known, ConfigError* error) {
    for (const ConfigEntry& e : config.entries) {
        const ConfigKey* key = nullptr;
        for (const ConfigKey& k : known)
            if (k.name == e.key) key = &k;
        long n;
        if (key && (!key->number || config_number(e.value, key->min, key->max, &n))) continue;
        if (key) return fail(error, e.key + " wants " + std::string(key->wants), e.line);
        std::string names;
        for (const ConfigKey& k : known) names += (names.empty() ? "" : ", ") + std::string(k.name);
        return fail(error, "unknown key '" + e.key + "' (known: " + names + ")", e.line);
    }
    return true;
}

bool read_config(const std::string& path, const std::vector<ConfigKey>& known, ConfigFile* out, ConfigError* error) {
    if (path.empty()) return true;
    return load_config(path, out, error) && check_config(*out, known, error);
}

bool read_config_at_start(const std::string& path, const std::vector<ConfigKey>& known, ConfigFile* out) {
    ConfigError error;
    if (!read_config(path, known, out, &error)) {
        log_event("config error file=%s line=%d reason=\"%s\"", path.c_str(), error.line, error.reason.c_str());
        return false;
    }
    log_event("config loaded file=%s version=%s", path.empty() ? "none" : path.c_str(), out->get("version", "none").c_str());
    return true;
}

ConfigFile read_config_or_die(const std::string& path, const std::vector<ConfigKey>& known) {
    ConfigFile config;
    ConfigError error;
    if (!read_config(path, known, &config, &error))
        die("config %s line %d: %s", path.c_str(), error.line, error.reason.c_str());
    return config;
}
