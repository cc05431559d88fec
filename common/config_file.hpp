// config_file.hpp — the `key=value` configuration file of lab14 (and any lab that reloads one):
// parsing, loading, checking against the keys a lab lists, and the reads a worker and a master do
// as they start.
//
// The format, deliberately small so a bad file can be named to the line:
//   - one `key=value` per line; the value is everything after the first '=' (it may hold '=');
//   - spaces and tabs around the key and around the value are dropped;
//   - blank lines and lines whose first non-blank character is '#' are skipped;
//   - a key is letters, digits, '_', '.' or '-'; a key may appear once;
//   - at most kMaxConfigBytes in all, no NUL byte.
// Anything else is an error that names its line (1-based), as `nginx -t` does: the caller
// refuses the whole file, so a half-read configuration never serves.
//
// Which keys a file may hold, and which are numbers within bounds, is the lab's to say (a
// ConfigKey list, checked by check_config / read_config); what the keys MEAN is the lab's too.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

constexpr std::size_t kMaxConfigBytes = 64 * 1024;

struct ConfigEntry {
    std::string key;
    std::string value;
    int line = 0;  // where it was written
};

struct ConfigFile {
    std::string path;
    std::vector<ConfigEntry> entries;  // in file order

    // The entry for `key`, or nullptr.
    const ConfigEntry* find(std::string_view key) const;
    // The value of `key`, or `def`.
    std::string get(std::string_view key, std::string_view def = "") const;
    // The entries as `key=value` lines, in file order: what GET /config answers.
    std::string text() const;
};

struct ConfigError {
    std::string reason;  // "line has no '='", "open: No such file or directory"…
    int line = 0;        // 0: the file as a whole (cannot be read, too big)
};

// Parses `text`. On error returns false, fills *error and leaves *out unspecified.
bool parse_config(std::string_view text, ConfigFile* out, ConfigError* error);
// Reads `path` and parses it. A file that cannot be opened or read is an error with line 0.
bool load_config(const std::string& path, ConfigFile* out, ConfigError* error);

// A whole number within [min, max] in `value`, or false (for the lab's own checks).
bool config_number(const std::string& value, long min, long max, long* out);

// A key a lab's configuration may hold: any value, or (number) a whole number within
// [min, max], which `wants` says in words for the error ("0 or 1").
struct ConfigKey {
    std::string_view name;
    bool number = false;
    long min = 0;
    long max = 0;
    std::string_view wants = "";
};
// Every key among `known` and every number in bounds, or false with the first offending line:
// "unknown key 'colour' (known: greeting, version)", "fail_at_start wants 0 or 1".
bool check_config(const ConfigFile& config, const std::vector<ConfigKey>& known, ConfigError* error);
// load_config + check_config. An empty `path` (no --config) is an empty configuration, always good.
bool read_config(const std::string& path, const std::vector<ConfigKey>& known, ConfigFile* out, ConfigError* error);
// A worker's read as it starts (lab14): read_config, logged — `config error file=F line=N
// reason="…"` if it fails (the worker should exit 1), else `config loaded file=F version=V`
// (F is `none` without a path, V the `version` key or `none`).
bool read_config_at_start(const std::string& path, const std::vector<ConfigKey>& known, ConfigFile* out);
// A master's read as it starts: a bad file is a set-up failure, as in nginx — die() naming the
// file, the line and the reason.
ConfigFile read_config_or_die(const std::string& path, const std::vector<ConfigKey>& known);
