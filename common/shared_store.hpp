// shared_store.hpp — lab13's "third party": a file of key=value lines that several processes read,
// and how often they read it.
//
// The material (003, 004, 状态共享) keeps shared data outside every worker — a database, a file,
// Redis — and asks how the workers learn that it changed. This file is the stand-in: reading it
// is "checking the store" (what a poll costs), its text is "the state". Here: lab13's flags for it
// (StoreOptions), reading and parsing it, one poller's check (StorePoller: read it, compare with
// the last text), what a worker knows of it (StoreView: GET /state), the master's count of who
// checked it how often (StoreChecks), where it is (StoreFile: --store, or a temporary one lab13
// creates and removes), and the inotify watch of --mode inotify.
//
// Format, one entry per line: `key=value`. The key is trimmed of blanks, the value is everything
// after the first '=' (a trailing \r dropped). Empty lines, lines starting with '#', and lines
// without '=' or with an empty key are skipped. A key given twice keeps its last value, in the
// place of its first.
#pragma once

#include "cli.hpp"
#include "fd.hpp"
#include "json.hpp"

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <sys/types.h>

// A store is a configuration file, not a database: a larger one is an error.
constexpr std::size_t kMaxStoreBytes = 256 * 1024;

// lab13's --store FILE, --mode notify|poll|inotify and --poll-ms MS.
struct StoreOptions {
    std::string path;             // empty: a temporary one, created and removed by the master
    std::string mode = "notify";  // notify: one notifier polls; poll: every worker polls; inotify: the kernel pushes
    long poll_ms = 1000;
};
void add_store_options(Cli& cli, StoreOptions& opts);

struct StoreRead {
    bool ok = false;
    std::string text;   // the whole file; empty when it does not exist (no state yet)
    std::string error;  // when !ok: "open /path: Permission denied", "larger than 262144 bytes"
};

// One check of the store: open, read it all, close. A missing file is an empty store, not an
// error (the operator has not written it yet); a file over max_bytes is an error, and so is
// anything but a regular file (a FIFO, a directory, a device: "… is not a regular file"), which
// is never read, so that a poller never blocks on it.
StoreRead read_store(const std::string& path, std::size_t max_bytes);

// The entries of a store's text as a flat object of strings, in file order.
JsonObject parse_store(std::string_view text);

// One poller's view of the store (a worker in lab13's --mode poll, or the notifier): checking
// it means reading it whole (what a query to the material's database or Redis would cost), and
// it changed when the text differs from the last check.
class StorePoller {
public:
    std::string path;  // set once the master has said where the store is

    // Reads the store once. True, with the new text in *changed, when it differs from the last
    // check (the first successful check always does). An unreadable store keeps the old state
    // and is logged once per distinct error (`store error="…" keeping=last`), not on every poll.
    bool check(std::string* changed);

private:
    std::string last_;  // the text at the last successful check
    bool seen_ = false; // a check has succeeded at least once
    std::string last_error_;
};

// What one worker knows of the store, and how it learned it: GET /state's answer.
class StoreView {
public:
    // Adopts `text` as version `version`, learned `how` ("notify", "poll"); logs
    // `state version=V learned=HOW keys=N`.
    void learn(std::int64_t version, std::string_view text, const char* how);
    std::int64_t version() const { return version_; }
    // {"pid":P,"version":V,"learned":HOW,"values":{…}} and a newline.
    std::string json() const;

private:
    std::int64_t version_ = 0;  // notify: the master's number; poll: this worker's own count
    JsonObject values_;
    const char* learned_ = "nothing";
};

// The master's count of the store's checks, by whoever made them: live pollers by pid, pollers
// that have exited since, and the master's own read. log() writes (lab13's tests parse it)
//   checks at=AT mode=M pollers=N total=T elapsed_ms=E per_second=R poll_ms=P master=X gone=G by=PID:N,…|none
class StoreChecks {
public:
    StoreChecks();
    void count(pid_t poller) { ++by_[poller]; }
    void count_master() { ++master_; }
    // The poller exited: its checks stay in the total, under gone=.
    void forget(pid_t poller);
    void log(const char* at, const std::string& mode, long poll_ms) const;

private:
    std::map<pid_t, long long> by_;
    long long gone_ = 0;
    long long master_ = 0;
    long long started_ms_;
};

// The store lab13's master creates when given none.
constexpr const char* kExampleStore = "# lab13's store: key=value lines. Edit me; every worker's GET /state follows.\n"
                                      "greeting=hello\ncolor=blue\n";

// {"cmd":"store","path":P}: the master tells a poller (a worker in --mode poll, the notifier)
// where the store is.
JsonObject where_the_store_is(const std::string& path);

// Creates a fresh directory $TMPDIR/PREFIX-XXXXXX (TMPDIR defaults to /tmp) holding a file
// `store` with `initial` in it; returns the file's path, or "" with errno set (the directory is
// removed again if the file could not be written).
std::string create_temp_store(const char* prefix, std::string_view initial);
// Removes what create_temp_store made: the file and its directory. Errors are ignored (someone
// may have removed them already).
void remove_temp_store(const std::string& path);

// Where lab13's store is: `given` (--store FILE: the user's, left alone), or when it is empty a
// temporary one (create_temp_store with kExampleStore; a failure dies naming the calls), removed
// again when the StoreFile is destroyed.
class StoreFile {
public:
    StoreFile(const std::string& given, const char* prefix);
    ~StoreFile();
    StoreFile(const StoreFile&) = delete;
    StoreFile& operator=(const StoreFile&) = delete;
    const std::string& path() const { return path_; }
    bool created() const { return created_; }

private:
    std::string path_;
    bool created_;
};

// lab13's --mode inotify: the kernel tells us when the store may have changed, instead of our
// asking every --poll-ms. watch_store() watches the store's DIRECTORY (an editor or `mv` replaces
// the file, and a watch on the old file would see nothing more): a file closed after writing, or
// moved in or out, or deleted. Returns the inotify fd (non-blocking, CLOEXEC), or an invalid Fd
// with errno set.
Fd watch_store(const std::string& path);
// Reads every event waiting on the watch fd; true if one of them names the store's file.
bool store_touched(int watch_fd, const std::string& path);
