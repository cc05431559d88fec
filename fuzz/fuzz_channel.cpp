// fuzz_channel — libFuzzer target for the channel's framing (common/channel.*): the receiving
// half, which turns bytes and passed fds into messages. Run with `make fuzz`.
//
// No seam in channel.cpp is needed: the target drives the real Channel::receive through a
// socketpair, as a worker's channel is driven. The input is split into pieces at each 0xff
// byte (the piece boundaries become separate writes, so lines arrive cut anywhere); a piece
// whose first byte is 0xfe is sent with one fd attached (SCM_RIGHTS, a memfd),
// as the master sends a connection. After the last piece the peer closes.
// Checked: no crash or out-of-bounds access (ASan, UBSan); receive() never blocks; once it
// says closed or error it keeps saying so; and no fd leaks: every passed fd ends up in a
// Message or is closed by the channel.
#include "channel.hpp"

#include "report.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cerrno>
#include <cstring>
#include <dirent.h>
#include <string>
#include <string_view>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

namespace {

// The fd the "master" passes: a memfd with a name no other descriptor has, so that counting the
// descriptors that point to it finds every copy the channel received (libFuzzer and the
// sanitizers open descriptors of their own, a symbolizer's pipes for instance).
constexpr const char* kPassedName = "clusterlab-fuzz-passed";

int passed_fd() {
    static int fd = memfd_create(kPassedName, MFD_CLOEXEC);
    if (fd < 0) fail("memfd_create: %s\n", std::strerror(errno));
    return fd;
}

int copies_of_passed_fd() {
    std::string want = std::string("/memfd:") + kPassedName;
    int count = 0;
    DIR* dir = opendir("/proc/self/fd");
    if (!dir) fail("opendir /proc/self/fd: %s\n", std::strerror(errno));
    while (dirent* e = readdir(dir)) {
        char path[300], target[300];
        std::snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(path, target, sizeof target - 1);
        if (n <= 0) continue;
        target[n] = 0;
        if (std::string_view(target).substr(0, want.size()) == want) ++count;
    }
    closedir(dir);
    return count;
}

void send_piece(int sock, const uint8_t* p, size_t n, int fd_to_pass) {
    iovec iov{const_cast<uint8_t*>(p), n};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    union {
        cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } control;
    if (fd_to_pass >= 0) {
        mh.msg_control = control.buf;
        mh.msg_controllen = sizeof control.buf;
        cmsghdr* cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(cm), &fd_to_pass, sizeof(int));
    }
    if (sendmsg(sock, &mh, MSG_NOSIGNAL) != static_cast<ssize_t>(n)) {
        fail("sendmsg: %s (the fuzz input must fit in the socket buffer)\n", std::strerror(errno));
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size > 64 * 1024) return 0;  // a piece must fit in the socketpair's buffer
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0) {
        fail("socketpair: %s\n", std::strerror(errno));
    }
    int passed = passed_fd();
    {
        Channel channel{Fd(pair[0])};
        std::vector<Message> messages;
        RecvStatus status = RecvStatus::ok;
        size_t start = 0;
        for (size_t i = 0; i <= size; ++i) {
            if (i < size && data[i] != 0xff) continue;
            const uint8_t* p = data + start;
            size_t n = i - start;
            start = i + 1;
            bool with_fd = n > 0 && p[0] == 0xfe;
            if (with_fd) ++p, --n;
            if (n == 0) continue;
            send_piece(pair[1], p, n, with_fd ? passed : -1);
            RecvStatus now = channel.receive(messages);
            if (status != RecvStatus::ok && now != status) {
                fail("receive() said %d after it had said %d (final)\n", static_cast<int>(now), static_cast<int>(status));
            }
            status = now;
        }
        close(pair[1]);
        RecvStatus last = channel.receive(messages);
        if (last == RecvStatus::ok || (status != RecvStatus::ok && last != status)) {
            fail("receive() after the peer closed: %d (was %d)\n", static_cast<int>(last), static_cast<int>(status));
        }
    }  // the channel and every Message (with its fd) are gone here
    if (int copies = copies_of_passed_fd(); copies != 1)
        fail("a passed descriptor leaked: %d received copies are still open\n", copies - 1);
    return 0;
}
