// config_file.hpp — the `key=value` configuration file of lab14 (and any lab that reloads one).
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
// What the keys MEAN is the lab's business: it checks them (check_config in lab14) after parsing.
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
