// shared_store.hpp — lab13's "third party": a file of key=value lines that several processes read.
//
// The material (003, 004, 状态共享) keeps shared data outside every worker — a database, a file,
// Redis — and asks how the workers learn that it changed. This file is the stand-in: reading it
// is "checking the store" (what a poll costs), its text is "the state". Also here: the JSON text
// lab13 answers with (the channel's JsonObject is flat, but a response may nest one object or an
// array of them).
//
// Format, one entry per line: `key=value`. The key is trimmed of blanks, the value is everything
// after the first '=' (a trailing \r dropped). Empty lines, lines starting with '#', and lines
// without '=' or with an empty key are skipped. A key given twice keeps its last value, in the
// place of its first.
#pragma once

#include "fd.hpp"
#include "json.hpp"

#include <cstddef>
#include <string>
#include <string_view>

struct StoreRead {
    bool ok = false;
    std::string text;   // the whole file; empty when it does not exist (no state yet)
    std::string error;  // when !ok: "open /path: Permission denied", "larger than 262144 bytes"
};

// One check of the store: open, read it all, close. A missing file is an empty store, not an
// error (the operator has not written it yet); a file over max_bytes is an error.
StoreRead read_store(const std::string& path, std::size_t max_bytes);

// The entries of a store's text as a flat object of strings, in file order.
JsonObject parse_store(std::string_view text);

// Creates a fresh directory $TMPDIR/PREFIX-XXXXXX (TMPDIR defaults to /tmp) holding a file
// `store` with `initial` in it; returns the file's path, or "" with errno set (the directory is
// removed again if the file could not be written).
std::string create_temp_store(const char* prefix, std::string_view initial);
// Removes what create_temp_store made: the file and its directory. Errors are ignored (someone
// may have removed them already).
void remove_temp_store(const std::string& path);

// lab13's --mode inotify: the kernel tells us when the store may have changed, instead of our
// asking every --poll-ms. watch_store() watches the store's DIRECTORY (an editor or `mv` replaces
// the file, and a watch on the old file would see nothing more): a file closed after writing, or
// moved in or out, or deleted. Returns the inotify fd (non-blocking, CLOEXEC), or an invalid Fd
// with errno set.
Fd watch_store(const std::string& path);
// Reads every event waiting on the watch fd; true if one of them names the store's file.
bool store_touched(int watch_fd, const std::string& path);

// `text` as a JSON string literal, quotes included: "a\"b\n".
std::string json_quoted(std::string_view text);
// `object` (a dumped JSON object) with one more member whose value is already JSON text:
// json_with("{\"a\":1}", "b", "[2]") is {"a":1,"b":[2]}.
std::string json_with(const std::string& object, std::string_view key, std::string_view json_value);
