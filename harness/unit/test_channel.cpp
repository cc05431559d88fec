// test_channel.cpp — the flat-JSON codec and the master<->worker channel (common/json.*,
// common/channel.*): framing, fd passing, a dying peer, and the worker's environment handoff.
#include "channel.hpp"
#include "check.hpp"
#include "json.hpp"
#include "log.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <string>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace {

// --- worker mode ----------------------------------------------------------------------------
// spawn_worker() re-runs this very binary. The re-run finds kChannelEnv set and, before main()
// runs any test, acts as a worker: it reports what it inherited over the channel and exits.

std::string open_fds() {
    std::string list;
    DIR* dir = opendir("/proc/self/fd");
    if (!dir) return "?";
    while (dirent* e = readdir(dir)) {
        if (e->d_name[0] == '.' || std::atoi(e->d_name) == dirfd(dir)) continue;
        list += (list.empty() ? "" : ",") + std::string(e->d_name);
    }
    closedir(dir);
    return list;
}

std::string second_arg() {
    FILE* f = std::fopen("/proc/self/cmdline", "r");
    if (!f) return "?";
    char buf[512];
    size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    buf[n] = '\0';
    size_t first = std::strlen(buf);
    return first + 1 < n ? std::string(buf + first + 1) : "";
}

struct WorkerMode {
    WorkerMode() {
        if (!std::getenv(kChannelEnv)) return;
        set_log_role("worker");
        const int inherited = std::atoi(std::getenv(kChannelEnv));
        Fd sock = channel_from_env();
        sigset_t mask;
        sigprocmask(SIG_BLOCK, nullptr, &mask);
        bool mask_empty = true;
        for (int sig = 1; sig < NSIG; ++sig)
            if (sigismember(&mask, sig) == 1) mask_empty = false;
        struct sigaction pipe_action{}, term_action{};
        sigaction(SIGPIPE, nullptr, &pipe_action);
        sigaction(SIGTERM, nullptr, &term_action);

        JsonObject m;
        m.set("act", "online");
        m.set("pid", static_cast<int>(getpid()));
        m.set("channel_fd", sock.get());
        m.set("inherited", inherited);
        m.set("env_unset", std::getenv(kChannelEnv) == nullptr);
        m.set("cloexec", (fcntl(sock.get(), F_GETFD) & FD_CLOEXEC) != 0);
        m.set("mask_empty", mask_empty);
        m.set("sigpipe_default", pipe_action.sa_handler == SIG_DFL);
        m.set("sigterm_default", term_action.sa_handler == SIG_DFL);
        m.set("fds", open_fds());
        m.set("arg1", second_arg());
        Channel ch(std::move(sock));
        _exit(ch.send_blocking(m) ? 0 : 3);
    }
} worker_mode;

// --- helpers --------------------------------------------------------------------------------

bool write_all(int fd, std::string_view bytes) {
    while (!bytes.empty()) {
        ssize_t n = write(fd, bytes.data(), bytes.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        bytes.remove_prefix(static_cast<size_t>(n));
    }
    return true;
}

// Sends `bytes` with the given fds attached, bypassing Channel: a peer that breaks the rules.
bool raw_sendmsg(int sock, std::string_view bytes, const std::vector<int>& fds) {
    iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
    if (!fds.empty()) {
        mh.msg_control = control.data();
        mh.msg_controllen = control.size();
        cmsghdr* cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(cm), fds.data(), sizeof(int) * fds.size());
    }
    return sendmsg(sock, &mh, MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size());
}

// Receives until `want` messages arrived, the channel closed or failed, or 5 s passed. Flushes
// `sender` on the way, so a burst bigger than the socket buffer can get through.
RecvStatus receive_some(Channel& rx, std::vector<Message>& out, size_t want, Channel* sender = nullptr) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < deadline) {
        if (sender && sender->wants_write() && !sender->flush()) return RecvStatus::error;
        RecvStatus st = rx.receive(out);
        if (st != RecvStatus::ok || out.size() >= want) return st;
        pollfd p{rx.fd(), POLLIN, 0};
        poll(&p, 1, 20);
    }
    return RecvStatus::ok;
}

JsonObject msg(const char* act, int seq = 0) {
    JsonObject m;
    m.set("act", act);
    m.set("seq", seq);
    return m;
}

std::string parse_error(std::string_view text) {
    std::string error;
    auto obj = JsonObject::parse(text, &error);
    return obj ? "<accepted>" : error;
}

bool rejects(std::string_view text) {
    std::string error;
    return !JsonObject::parse(text, &error) && !error.empty();
}

// A temp file nobody else has: its inode identifies it after it travelled over the channel.
Fd temp_file() {
    char path[] = "/tmp/clusterlab-channel-XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0) unlink(path);
    return Fd(fd);
}

ino_t inode_of(int fd) {
    struct stat st;
    return fstat(fd, &st) == 0 ? st.st_ino : 0;
}

int read_byte(int fd) {
    unsigned char c;
    return read(fd, &c, 1) == 1 ? c : -1;
}

}  // namespace

// --- JSON -----------------------------------------------------------------------------------

TEST_CASE("json dump is compact, ordered, and replaces keys in place") {
    JsonObject m;
    m.set("act", "listening");
    m.set("port", 8080);
    m.set("ok", true);
    m.set_null("none");
    CHECK_EQ(m.dump(), std::string(R"({"act":"listening","port":8080,"ok":true,"none":null})"));
    m.set("act", std::string("online"));
    m.set("port", std::int64_t{-1});
    CHECK_EQ(m.dump(), std::string(R"({"act":"online","port":-1,"ok":true,"none":null})"));
    m.erase("ok");
    CHECK_EQ(m.dump(), std::string(R"({"act":"online","port":-1,"none":null})"));
    CHECK_EQ(JsonObject().dump(), std::string("{}"));
}

TEST_CASE("json dump escapes quotes, backslashes and control characters") {
    JsonObject m;
    m.set("s", std::string("a\"b\\c\n\t\x01\x1f", 9));
    m.set("k\"ey", "caf\xc3\xa9 /");
    std::string out = m.dump();
    CHECK_EQ(out, std::string(R"({"s":"a\"b\\c\u000a\u0009\u0001\u001f","k\"ey":"café /"})"));
    CHECK(out.find('\n') == std::string::npos);
    std::string nul("x\0y", 3);
    JsonObject z;
    z.set("z", nul);
    CHECK_EQ(z.dump(), std::string(R"({"z":"x\u0000y"})"));
}

TEST_CASE("json round trips every value type") {
    JsonObject m;
    m.set("empty", "");
    m.set("text", std::string("line1\nline2\r\"quoted\" back\\slash \x7f caf\xc3\xa9 \xf0\x9f\x98\x80"));
    m.set("zero", 0);
    m.set("max", INT64_MAX);
    m.set("min", INT64_MIN);
    m.set("yes", true);
    m.set("no", false);
    m.set_null("nothing");
    std::string error;
    auto back = JsonObject::parse(m.dump(), &error);
    CHECK(back.has_value());
    CHECK_EQ(error, std::string(""));
    if (back) {
        CHECK(*back == m);
        CHECK_EQ(back->dump(), m.dump());
        CHECK_EQ(back->get_int("max"), INT64_MAX);
        CHECK_EQ(back->get_int("min"), INT64_MIN);
        CHECK_EQ(back->get_string("text"), m.get_string("text"));
        CHECK(back->is_null("nothing"));
        CHECK_EQ(back->get_bool("no", true), false);
    }
}

TEST_CASE("json parse accepts whitespace and every escape") {
    std::string error;
    auto m = JsonObject::parse(" \t{ \"a\" : \"\\\"\\\\\\/\\b\\f\\n\\r\\t\" ,\n\"b\" : -12 ,\"c\":false, \"d\" : null }\r\n",
                               &error);
    CHECK_EQ(error, std::string(""));
    CHECK(m.has_value());
    if (!m) return;
    CHECK_EQ(m->size(), size_t{4});
    CHECK_EQ(m->get_string("a"), std::string("\"\\/\b\f\n\r\t"));
    CHECK_EQ(m->get_int("b"), std::int64_t{-12});
    CHECK(m->has("c") && !m->get_bool("c", true));
    CHECK(m->is_null("d"));
    auto empty = JsonObject::parse("{ }", nullptr);
    CHECK(empty.has_value() && empty->empty());
}

TEST_CASE("json \\u escapes become UTF-8, surrogate pairs included") {
    auto m = JsonObject::parse(
        R"({"a":"\u0041","e":"\u00e9","euro":"\u20AC","smile":"\ud83d\ude00","nul":"x\u0000y"})", nullptr);
    CHECK(m.has_value());
    if (!m) return;
    CHECK_EQ(m->get_string("a"), std::string("A"));
    CHECK_EQ(m->get_string("e"), std::string("\xc3\xa9"));
    CHECK_EQ(m->get_string("euro"), std::string("\xe2\x82\xac"));
    CHECK_EQ(m->get_string("smile"), std::string("\xf0\x9f\x98\x80"));
    CHECK_EQ(m->get_string("nul"), std::string("x\0y", 3));
}

TEST_CASE("json rejects nested objects and arrays, saying so") {
    CHECK(parse_error(R"({"a":{"b":1}})").find("nested") != std::string::npos);
    CHECK(parse_error(R"({"a":[1,2]})").find("nested") != std::string::npos);
    CHECK(parse_error(R"({"a":1,"b":[]})").find("flat objects only") != std::string::npos);
    CHECK(rejects("[]"));
    CHECK(rejects("[{\"a\":1}]"));
}

TEST_CASE("json rejects trailing garbage") {
    CHECK(parse_error("{}x").find("after the object") != std::string::npos);
    CHECK(rejects("{} {}"));
    CHECK(rejects(R"({"a":1}})"));
    CHECK(rejects(R"({"a":1},)"));
    CHECK(!rejects("{}  \r\n\t"));
}

TEST_CASE("json rejects bad escapes") {
    CHECK(parse_error(R"({"a":"\x41"})").find("invalid escape") != std::string::npos);
    CHECK(rejects(R"({"a":"\u12"})"));
    CHECK(rejects(R"({"a":"\u12G4"})"));
    CHECK(rejects(R"({"a":"\ud800"})"));        // lone high surrogate
    CHECK(rejects(R"({"a":"\ud800x"})"));
    CHECK(rejects(R"({"a":"\ud800\u0041"})"));  // high surrogate, then not a low one
    CHECK(rejects(R"({"a":"\udc00"})"));        // lone low surrogate
    CHECK(rejects("{\"a\":\"\\"));              // backslash at the very end
    CHECK(rejects(R"({"a\q":1})"));             // keys are strings too
}

TEST_CASE("json rejects malformed objects and unsupported values") {
    const char* bad[] = {
        "", "   ", "1", "\"s\"", "null", "{", "{\"a\"}", "{\"a\" 1}", "{\"a\":1 \"b\":2}", "{\"a\":1,}",
        "{a:1}", "{'a':1}", "{\"a\":\"raw\ncontrol\"}", "{\"a\":\"unterminated}", "{\"a\":1.5}",
        "{\"a\":1e3}", "{\"a\":-}", "{\"a\":01}", "{\"a\":-01}", "{\"a\":9223372036854775808}",
        "{\"a\":-9223372036854775809}", "{\"a\":tru}", "{\"a\":True}", "{\"a\":+1}", "{\"a\":1,\"a\":2}",
        "{,}", "{\"a\":}",
    };
    for (const char* text : bad) {
        if (!rejects(text)) check::fail(__FILE__, __LINE__, std::string("accepted: ") + text);
    }
    CHECK(parse_error("{\"a\":1.5}").find("integers only") != std::string::npos);
    CHECK(parse_error("{\"a\":1,\"a\":2}").find("duplicate") != std::string::npos);
    CHECK(parse_error("{\"a\" 1}").find("offset 5") != std::string::npos);
    CHECK(!JsonObject::parse("nope", nullptr).has_value());  // a null error pointer is allowed
}

TEST_CASE("json getters return the default for missing or mistyped keys") {
    JsonObject m;
    m.set("s", "text");
    m.set("n", 7);
    m.set("b", true);
    CHECK_EQ(m.get_string("missing", "dflt"), std::string("dflt"));
    CHECK_EQ(m.get_string("n", "dflt"), std::string("dflt"));
    CHECK_EQ(m.get_int("s", -5), std::int64_t{-5});
    CHECK_EQ(m.get_int("b", -5), std::int64_t{-5});
    CHECK_EQ(m.get_bool("n", false), false);
    CHECK_EQ(m.get_bool("b", false), true);
    CHECK(m.has("s") && !m.has("missing"));
    CHECK(!m.is_null("s") && !m.is_null("missing"));
}

// --- the channel ----------------------------------------------------------------------------

TEST_CASE("channel carries messages both ways") {
    auto [a_end, b_end] = make_channel_pair();
    CHECK(fcntl(a_end.get(), F_GETFD) & FD_CLOEXEC);
    CHECK(fcntl(b_end.get(), F_GETFD) & FD_CLOEXEC);
    Channel a(std::move(a_end)), b(std::move(b_end));
    CHECK(fcntl(a.fd(), F_GETFL) & O_NONBLOCK);

    std::vector<Message> got;
    CHECK(b.receive(got) == RecvStatus::ok);  // nothing yet, and it must not block
    CHECK(got.empty());

    JsonObject hello = msg("online", 1);
    hello.set("text", "two\nlines");
    CHECK(a.send_blocking(hello));
    CHECK(receive_some(b, got, 1) == RecvStatus::ok);
    CHECK_EQ(got.size(), size_t{1});
    if (got.size() == 1) {
        CHECK_EQ(got[0].body.dump(), hello.dump());
        CHECK(!got[0].fd.valid());
    }
    got.clear();
    CHECK(b.send(msg("reply", 2)));
    CHECK(!b.wants_write());
    CHECK(receive_some(a, got, 1) == RecvStatus::ok);
    CHECK(got.size() == 1 && got[0].body.get_int("seq") == 2);
}

TEST_CASE("channel reassembles a message written byte by byte") {
    auto [a_end, raw] = make_channel_pair();
    Channel a(std::move(a_end));
    std::string wire = msg("first", 1).dump() + "\n" + msg("second", 2).dump() + "\n";
    std::vector<Message> got;
    size_t first_end = wire.find('\n');
    for (size_t i = 0; i < wire.size(); ++i) {
        CHECK(write_all(raw.get(), wire.substr(i, 1)));
        CHECK(a.receive(got) == RecvStatus::ok);
        size_t expected = i < first_end ? 0 : (i + 1 < wire.size() ? 1 : 2);
        if (got.size() != expected) {
            check::fail(__FILE__, __LINE__, "after byte " + std::to_string(i) + ": " +
                                                std::to_string(got.size()) + " messages");
            break;
        }
    }
    CHECK(got.size() == 2 && got[0].body.get_string("act") == "first" && got[1].body.get_int("seq") == 2);
}

TEST_CASE("channel splits one write holding many messages") {
    auto [a_end, raw] = make_channel_pair();
    Channel a(std::move(a_end));
    std::string wire;
    for (int i = 0; i < 10; ++i) wire += msg("m", i).dump() + "\n";
    CHECK(write_all(raw.get(), wire));
    std::vector<Message> got;
    CHECK(a.receive(got) == RecvStatus::ok);  // one call: everything was already there
    CHECK_EQ(got.size(), size_t{10});
    for (size_t i = 0; i < got.size(); ++i) CHECK_EQ(got[i].body.get_int("seq"), std::int64_t(i));
}

TEST_CASE("channel delivers 1000 messages sent in one burst, in order") {
    auto [a_end, b_end] = make_channel_pair();
    Channel a(std::move(a_end)), b(std::move(b_end));
    for (int i = 0; i < 1000; ++i) {
        JsonObject m = msg("burst", i);
        m.set("pad", std::string(static_cast<size_t>(i % 50), 'x'));
        if (!a.send(m)) {
            check::fail(__FILE__, __LINE__, "send failed at " + std::to_string(i));
            return;
        }
    }
    std::vector<Message> got;
    CHECK(receive_some(b, got, 1000, &a) == RecvStatus::ok);
    CHECK_EQ(got.size(), size_t{1000});
    CHECK(!a.wants_write());
    for (size_t i = 0; i < got.size(); ++i) {
        if (got[i].body.get_int("seq") != std::int64_t(i) || got[i].body.get_string("pad").size() != i % 50) {
            check::fail(__FILE__, __LINE__, "message " + std::to_string(i) + " is " + got[i].body.dump());
            break;
        }
    }
}

TEST_CASE("channel gives each message the fd it was sent with (50 files)") {
    auto [a_end, b_end] = make_channel_pair();
    Channel a(std::move(a_end)), b(std::move(b_end));
    std::vector<ino_t> inodes;
    for (int i = 0; i < 50; ++i) {
        Fd f = temp_file();
        CHECK(f.valid());
        inodes.push_back(inode_of(f.get()));
        CHECK(a.send(msg("file", i), f.get()));
        // f closes here: send() borrowed it, the kernel (or the queue) has its own reference
    }
    std::vector<Message> got;
    CHECK(receive_some(b, got, 50, &a) == RecvStatus::ok);
    CHECK_EQ(got.size(), size_t{50});
    for (size_t i = 0; i < got.size() && i < inodes.size(); ++i) {
        CHECK(got[i].fd.valid());
        CHECK_EQ(got[i].body.get_int("seq"), std::int64_t(i));
        CHECK(!got[i].body.has("fd"));  // the mark is the channel's business, not the caller's
        CHECK_EQ(inode_of(got[i].fd.get()), inodes[i]);
        CHECK(fcntl(got[i].fd.get(), F_GETFD) & FD_CLOEXEC);
    }
}

TEST_CASE("channel interleaves messages with and without fds") {
    auto [a_end, b_end] = make_channel_pair();
    Channel a(std::move(a_end)), b(std::move(b_end));
    for (int i = 0; i < 40; ++i) {
        if (i % 3 == 0) {
            int p[2];
            CHECK(pipe2(p, O_CLOEXEC) == 0);
            Fd rd(p[0]), wr(p[1]);
            unsigned char tag = static_cast<unsigned char>(i);
            CHECK(write(wr.get(), &tag, 1) == 1);
            CHECK(a.send(msg("pipe", i), rd.get()));
        } else {
            CHECK(a.send(msg("plain", i)));
        }
    }
    std::vector<Message> got;
    CHECK(receive_some(b, got, 40, &a) == RecvStatus::ok);
    CHECK_EQ(got.size(), size_t{40});
    for (size_t i = 0; i < got.size(); ++i) {
        CHECK_EQ(got[i].body.get_int("seq"), std::int64_t(i));
        if (i % 3 == 0) {
            CHECK(got[i].fd.valid());
            CHECK_EQ(read_byte(got[i].fd.get()), static_cast<int>(i));
        } else {
            CHECK(!got[i].fd.valid());
        }
    }
}

TEST_CASE("channel queues what the socket does not take, fd attached once") {
    auto [a_end, b_end] = make_channel_pair();
    int small = 4096;
    CHECK(setsockopt(a_end.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small) == 0);
    Channel a(std::move(a_end)), b(std::move(b_end));
    const std::string pad(2000, 'p');
    int sent = 0;
    while (!a.wants_write() && sent < 10000) {
        JsonObject m = msg("fill", sent++);
        m.set("pad", pad);
        CHECK(a.send(m));
    }
    CHECK(a.wants_write());
    int p[2];
    CHECK(pipe2(p, O_CLOEXEC) == 0);
    {
        Fd rd(p[0]), wr(p[1]);
        CHECK(write(wr.get(), "Q", 1) == 1);
        JsonObject big = msg("with-fd", sent++);
        big.set("pad", std::string(50000, 'b'));  // bigger than the buffer: goes out in pieces
        CHECK(a.send(big, rd.get()));
        CHECK(a.wants_write());
    }  // the caller's copies are closed while the message still waits in the queue
    for (int i = 0; i < 3; ++i) CHECK(a.send(msg("after", sent++)));

    std::vector<Message> got;
    CHECK(receive_some(b, got, static_cast<size_t>(sent), &a) == RecvStatus::ok);
    CHECK_EQ(got.size(), static_cast<size_t>(sent));
    int with_fd = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        CHECK_EQ(got[i].body.get_int("seq"), std::int64_t(i));
        if (got[i].fd.valid()) {
            ++with_fd;
            CHECK_EQ(got[i].body.get_string("act"), std::string("with-fd"));
            CHECK_EQ(read_byte(got[i].fd.get()), int{'Q'});
            CHECK_EQ(got[i].body.get_string("pad").size(), size_t{50000});
        }
    }
    CHECK_EQ(with_fd, 1);
    CHECK(!a.wants_write());
}

TEST_CASE("channel attaches a passed fd once, to the first piece of its message") {
    auto [a_end, raw] = make_channel_pair();
    int small = 4096;
    CHECK(setsockopt(a_end.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small) == 0);
    Channel a(std::move(a_end));
    Fd f = temp_file();
    JsonObject big = msg("big");
    big.set("pad", std::string(200000, 'b'));
    CHECK(a.send(big, f.get()));
    CHECK(a.wants_write());  // it did not fit: the rest goes out in later pieces

    // Read it back raw, counting every fd that arrives and noting with which piece.
    std::string bytes;
    int fds = 0, pieces = 0, first_fd_piece = -1;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (bytes.find('\n') == std::string::npos && std::chrono::steady_clock::now() < deadline) {
        if (!a.flush()) break;
        char data[8192];
        iovec iov{data, sizeof data};
        union {
            cmsghdr align;
            char buf[CMSG_SPACE(sizeof(int) * 4)];
        } control;
        msghdr mh{};
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        mh.msg_control = control.buf;
        mh.msg_controllen = sizeof control.buf;
        ssize_t n = recvmsg(raw.get(), &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n <= 0) continue;
        ++pieces;
        for (cmsghdr* cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
            for (size_t k = 0; k < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int); ++k) {
                int got;
                std::memcpy(&got, CMSG_DATA(cm) + k * sizeof(int), sizeof got);
                Fd owned(got);
                CHECK_EQ(inode_of(owned.get()), inode_of(f.get()));
                if (first_fd_piece < 0) first_fd_piece = pieces;
                ++fds;
            }
        }
        bytes.append(data, static_cast<size_t>(n));
    }
    CHECK(pieces > 1);
    CHECK_EQ(fds, 1);
    CHECK_EQ(first_fd_piece, 1);
    CHECK_EQ(bytes.size(), big.dump().size() + std::string(",\"fd\":true\n").size());
}

TEST_CASE("channel delivers complete messages, then closed, when the peer dies mid-message") {
    auto [a_end, raw] = make_channel_pair();
    Channel a(std::move(a_end));
    // The unfinished last line would even parse if it had its newline: it still must not count.
    CHECK(write_all(raw.get(), msg("one", 1).dump() + "\n" + msg("two", 2).dump() + "\n" + msg("three", 3).dump()));
    raw.reset();
    std::vector<Message> got;
    CHECK(a.receive(got) == RecvStatus::closed);
    CHECK_EQ(got.size(), size_t{2});
    CHECK(got.size() == 2 && got[1].body.get_string("act") == "two");
    std::vector<Message> more;
    CHECK(a.receive(more) == RecvStatus::closed);  // sticky, and the partial line never appears
    CHECK(more.empty());
}

TEST_CASE("channel reports closed when the peer dies with our messages unread") {
    auto [a_end, b_end] = make_channel_pair();
    Channel a(std::move(a_end));
    {
        Channel b(std::move(b_end));
        CHECK(b.send(msg("before-death")));
        CHECK(a.send(msg("never-read")));
    }  // b closes with "never-read" in its queue: Linux tells a ECONNRESET rather than EOF
    std::vector<Message> got;
    CHECK(a.receive(got) == RecvStatus::closed);
    CHECK(got.size() == 1 && got[0].body.get_string("act") == "before-death");
}

TEST_CASE("channel send to a gone peer returns false, without SIGPIPE") {
    struct sigaction dfl{}, old{};
    dfl.sa_handler = SIG_DFL;  // so a missing MSG_NOSIGNAL would kill this test
    sigaction(SIGPIPE, &dfl, &old);
    auto [a_end, b_end] = make_channel_pair();
    Channel a(std::move(a_end));
    b_end.reset();
    CHECK(!a.send(msg("hello")));
    CHECK(!a.send(msg("again")));
    CHECK(!a.send_blocking(msg("blocking")));
    CHECK(!a.wants_write());
    sigaction(SIGPIPE, &old, nullptr);
}

TEST_CASE("channel skips a line that is not JSON and keeps going") {
    auto [a_end, raw] = make_channel_pair();
    Channel a(std::move(a_end));
    CHECK(write_all(raw.get(), "{\"seq\":1}\nnot json at all\n\n{\"nested\":{}}\n{\"seq\":2}\n"));
    std::vector<Message> got;
    CHECK(a.receive(got) == RecvStatus::ok);
    CHECK_EQ(got.size(), size_t{2});
    CHECK(got.size() == 2 && got[0].body.get_int("seq") == 1 && got[1].body.get_int("seq") == 2);
    CHECK(write_all(raw.get(), "{\"seq\":3}\n"));
    got.clear();
    CHECK(a.receive(got) == RecvStatus::ok);
    CHECK(got.size() == 1 && got[0].body.get_int("seq") == 3);
}

TEST_CASE("channel strips a caller's fd mark from a message sent without an fd") {
    auto [a_end, b_end] = make_channel_pair();
    Channel a(std::move(a_end)), b(std::move(b_end));
    JsonObject m = msg("liar");
    m.set("fd", true);
    CHECK(a.send(m));
    std::vector<Message> got;
    CHECK(receive_some(b, got, 1) == RecvStatus::ok);
    CHECK(got.size() == 1 && !got[0].fd.valid() && !got[0].body.has("fd"));
}

TEST_CASE("channel reports a message marked with an fd that never came") {
    auto [a_end, raw] = make_channel_pair();
    Channel a(std::move(a_end));
    CHECK(write_all(raw.get(), "{\"seq\":1}\n{\"act\":\"x\",\"fd\":true}\n"));
    std::vector<Message> got;
    CHECK(a.receive(got) == RecvStatus::error);
    CHECK(got.size() == 1 && got[0].body.get_int("seq") == 1);  // what came before is still good
    CHECK(a.receive(got) == RecvStatus::error);
}

TEST_CASE("channel closes an fd that no message claims") {
    auto [a_end, raw] = make_channel_pair();
    Channel a(std::move(a_end));
    int p[2];
    CHECK(pipe2(p, O_CLOEXEC) == 0);
    Fd rd(p[0]), wr(p[1]);
    CHECK(raw_sendmsg(raw.get(), "{\"seq\":1}\n", {rd.get()}));
    rd.reset();
    std::vector<Message> got;
    CHECK(a.receive(got) == RecvStatus::ok);
    CHECK(got.size() == 1 && !got[0].fd.valid());
    // If the channel still held the read end, this write would succeed.
    struct sigaction ign{}, old{};
    ign.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ign, &old);
    errno = 0;
    CHECK(write(wr.get(), "x", 1) == -1 && errno == EPIPE);
    sigaction(SIGPIPE, &old, nullptr);
}

TEST_CASE("channel reports truncated control data instead of losing fds silently") {
    auto [a_end, raw] = make_channel_pair();
    Channel a(std::move(a_end));
    std::vector<Fd> files;
    std::vector<int> numbers;
    for (int i = 0; i < 32; ++i) {
        files.push_back(temp_file());
        numbers.push_back(files.back().get());
    }
    CHECK(raw_sendmsg(raw.get(), "{\"act\":\"many\",\"fd\":true}\n", numbers));
    std::vector<Message> got;
    CHECK(a.receive(got) == RecvStatus::error);
    CHECK(got.empty());
}

TEST_CASE("channel gives up on a line longer than kMaxMessageBytes") {
    auto [a_end, raw] = make_channel_pair();
    Channel a(std::move(a_end));
    CHECK(set_nonblocking(raw.get()));
    const std::string chunk(64 * 1024, 'x');
    size_t written = 0;
    RecvStatus st = RecvStatus::ok;
    std::vector<Message> got;
    while (st == RecvStatus::ok && written < 4 * kMaxMessageBytes) {
        ssize_t n = write(raw.get(), chunk.data(), chunk.size());
        if (n > 0) written += static_cast<size_t>(n);
        st = a.receive(got);
    }
    CHECK(st == RecvStatus::error);
    CHECK(got.empty());
}

// --- the worker's end -----------------------------------------------------------------------

TEST_CASE("channel_from_env returns an invalid Fd when the variable is absent") {
    unsetenv(kChannelEnv);
    Fd fd = channel_from_env();
    CHECK(!fd.valid());
}

TEST_CASE("channel_from_env takes a valid fd, unsets the variable, sets CLOEXEC") {
    auto [a_end, b_end] = make_channel_pair();
    CHECK(set_cloexec(b_end.get(), false));  // as spawn_worker leaves it for exec
    int number = b_end.get();
    setenv(kChannelEnv, std::to_string(number).c_str(), 1);
    Fd got = channel_from_env();
    CHECK_EQ(got.get(), number);
    CHECK(std::getenv(kChannelEnv) == nullptr);
    CHECK(fcntl(number, F_GETFD) & FD_CLOEXEC);
    unsetenv(kChannelEnv);
    got.release();  // b_end owns the same number
}

TEST_CASE("parse_channel_fd rejects garbage, closed fds and non-sockets") {
    int fd = -1;
    std::string error;
    for (const char* text : {"", "abc", "-1", "12x", " 3", "3 ", "0x3", "99999999999999999999"}) {
        error.clear();
        if (parse_channel_fd(text, &fd, &error) || error.empty())
            check::fail(__FILE__, __LINE__, std::string("accepted: '") + text + "'");
    }
    int p[2];
    CHECK(pipe2(p, O_CLOEXEC) == 0);
    Fd rd(p[0]), wr(p[1]);
    CHECK(!parse_channel_fd(std::to_string(rd.get()).c_str(), &fd, &error));
    CHECK(error.find("not a socket") != std::string::npos);
    int closed_number = rd.get();
    rd.reset();
    CHECK(!parse_channel_fd(std::to_string(closed_number).c_str(), &fd, &error));
    Fd dgram(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    CHECK(!parse_channel_fd(std::to_string(dgram.get()).c_str(), &fd, &error));
    Fd inet(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    CHECK(!parse_channel_fd(std::to_string(inet.get()).c_str(), &fd, &error));
    auto [a_end, b_end] = make_channel_pair();
    CHECK(parse_channel_fd(std::to_string(b_end.get()).c_str(), &fd, &error));
    CHECK_EQ(fd, b_end.get());
}

TEST_CASE("channel_from_env dies (exit 1) on a bad value") {
    for (const char* bad : {"garbage", "", "100000"}) {
        std::fflush(nullptr);  // or the child's exit() prints our buffered output a second time
        pid_t pid = fork();
        if (pid == 0) {
            setenv(kChannelEnv, bad, 1);
            Fd fd = channel_from_env();
            _exit(fd.valid() ? 10 : 11);  // should not get here
        }
        int status = 0;
        CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
        if (!(WIFEXITED(status) && WEXITSTATUS(status) == 1))
            check::fail(__FILE__, __LINE__, std::string("value '") + bad + "': status " + std::to_string(status));
    }
}

TEST_CASE("spawn_worker re-runs this program with only the channel inherited") {
    auto [master_end, worker_end] = make_channel_pair();
    // Leave traps in the master that the worker must not inherit.
    struct sigaction ign{}, old_pipe{}, old_term{};
    ign.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ign, &old_pipe);
    sigaction(SIGTERM, &ign, &old_term);
    sigset_t block, old_mask;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigaddset(&block, SIGCHLD);
    sigprocmask(SIG_BLOCK, &block, &old_mask);

    char arg0[] = "test_channel", arg1[] = "--as-worker";
    char* argv[] = {arg0, arg1, nullptr};
    std::fflush(nullptr);
    pid_t pid = spawn_worker(worker_end.get(), argv);

    sigprocmask(SIG_SETMASK, &old_mask, nullptr);
    sigaction(SIGPIPE, &old_pipe, nullptr);
    sigaction(SIGTERM, &old_term, nullptr);
    CHECK(pid > 0);
    if (pid <= 0) return;
    const int worker_number = worker_end.get();
    worker_end.reset();  // the master's copy: without this, the worker's death is no EOF

    Channel ch(std::move(master_end));
    std::vector<Message> got;
    RecvStatus st = receive_some(ch, got, 1);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    // The worker may have exited before we read: its message then comes together with the EOF.
    CHECK(st == RecvStatus::ok || st == RecvStatus::closed);
    CHECK_EQ(got.size(), size_t{1});
    if (got.empty()) return;
    const JsonObject& m = got[0].body;
    CHECK_EQ(m.get_string("act"), std::string("online"));
    CHECK_EQ(m.get_int("pid"), std::int64_t{pid});
    CHECK_EQ(m.get_int("inherited"), std::int64_t{worker_number});
    CHECK_EQ(m.get_int("channel_fd"), std::int64_t{worker_number});
    CHECK_EQ(m.get_string("arg1"), std::string("--as-worker"));
    CHECK(m.get_bool("env_unset"));
    CHECK(m.get_bool("cloexec"));
    CHECK(m.get_bool("mask_empty"));
    CHECK(m.get_bool("sigpipe_default"));
    CHECK(m.get_bool("sigterm_default"));
    // The master's end (still open here, CLOEXEC) must not have crossed exec.
    std::string fds = "," + m.get_string("fds") + ",";
    CHECK(fds.find("," + std::to_string(ch.fd()) + ",") == std::string::npos);
    CHECK(fds.find("," + std::to_string(worker_number) + ",") != std::string::npos);
    std::vector<Message> more;
    CHECK(receive_some(ch, more, 1) == RecvStatus::closed);  // the worker exited
}

// --- at the fd limit (EMFILE) ---------------------------------------------------------------

// Lowers the soft RLIMIT_NOFILE to the lowest free descriptor number, so that no descriptor can
// be opened or received until it is restored (the destructor). Every number below is in use.
struct NoMoreFds {
    rlimit saved{};
    NoMoreFds() {
        getrlimit(RLIMIT_NOFILE, &saved);
        int lowest_free = dup(0);
        close(lowest_free);
        rlimit tight = saved;
        tight.rlim_cur = static_cast<rlim_t>(lowest_free);
        setrlimit(RLIMIT_NOFILE, &tight);
    }
    ~NoMoreFds() { setrlimit(RLIMIT_NOFILE, &saved); }
};

TEST_CASE("a message whose fd is lost at the receiver's fd limit arrives with fd_lost, and the channel stays in step") {
    auto [a_end, b_end] = make_channel_pair();
    Channel a(std::move(a_end)), b(std::move(b_end));
    int p[2];
    CHECK(pipe2(p, O_CLOEXEC) == 0);
    Fd pr(p[0]), pw(p[1]);
    CHECK(a.send(msg("first", 1), pr.get()));
    CHECK(a.send(msg("second", 2), pr.get()));
    CHECK(a.send(msg("plain", 3)));
    std::vector<Message> got;
    RecvStatus st;
    {
        NoMoreFds full;
        st = receive_some(b, got, 3);
    }
    // The kernel closed both fds (MSG_CTRUNC) but every byte arrived: three messages, in order.
    CHECK(st == RecvStatus::ok);
    CHECK_EQ(got.size(), size_t{3});
    if (got.size() == 3) {
        CHECK_EQ(got[0].body.get_int("seq"), std::int64_t{1});
        CHECK(got[0].fd_lost && !got[0].fd);
        CHECK(got[1].fd_lost && !got[1].fd);
        CHECK(!got[2].fd_lost && !got[2].fd);
        CHECK_EQ(got[2].body.get_string("act"), std::string("plain"));
    }
    // With room again, the next fd arrives with its own message, not with a lost one's.
    CHECK(a.send(msg("third", 4), pw.get()));
    std::vector<Message> more;
    CHECK(receive_some(b, more, 1) == RecvStatus::ok);
    CHECK_EQ(more.size(), size_t{1});
    if (more.size() == 1) {
        CHECK_EQ(more[0].body.get_int("seq"), std::int64_t{4});
        CHECK(more[0].fd && !more[0].fd_lost);
        struct stat got_st{}, want_st{};
        fstat(more[0].fd.get(), &got_st);
        fstat(pw.get(), &want_st);
        CHECK(got_st.st_ino == want_st.st_ino);
    }
}

TEST_CASE("at the sender's fd limit, send() passes the caller's fd itself instead of failing to duplicate it") {
    auto [a_end, b_end] = make_channel_pair();
    Channel a(std::move(a_end)), b(std::move(b_end));
    int p[2];
    CHECK(pipe2(p, O_CLOEXEC) == 0);
    Fd pr(p[0]), pw(p[1]);
    bool sent;
    {
        NoMoreFds full;
        sent = a.send(msg("conn", 1), pr.get());  // nothing queued: no dup needed
    }
    CHECK(sent);
    CHECK(!a.broken());
    std::vector<Message> got;
    CHECK(receive_some(b, got, 1) == RecvStatus::ok);
    CHECK(got.size() == 1 && got[0].fd);
}

TEST_CASE("open_channel_pair fails with EMFILE at the fd limit instead of dying") {
    Fd m, w;
    bool opened;
    int error;
    {
        NoMoreFds full;
        opened = open_channel_pair(&m, &w);
        error = errno;
    }
    CHECK(!opened);
    CHECK_EQ(error, EMFILE);
    CHECK(!m && !w);
    CHECK(open_channel_pair(&m, &w));
    CHECK(m && w);
}

TEST_MAIN("channel")
