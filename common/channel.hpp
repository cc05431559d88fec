// channel.hpp — the master<->worker IPC channel: Node's child_process IPC (NODE_CHANNEL_FD) in
// plain POSIX.
//
// The wire: an AF_UNIX SOCK_STREAM socketpair carrying newline-delimited JSON objects (one
// message per line, see json.hpp). A message may carry ONE file descriptor (a listening socket,
// an accepted connection) via SCM_RIGHTS; such a message is marked in its JSON with the reserved
// key "fd":true, as Node marks messages with a handle (NODE_HANDLE). The channel adds and strips
// the mark itself: callers pass the fd to send() and find it in Message::fd.
//
// Who owns which fd:
//   - make_channel_pair() returns two owned ends, both CLOEXEC. The master keeps master_end in a
//     Channel; worker_end is for the child: pass worker_end.get() to spawn_worker(), then the
//     master closes its copy (let the Fd go) so that the worker's death reads as end-of-file.
//   - Channel owns its socket, and closes it when destroyed.
//   - send(msg, fd) BORROWS fd: the caller still owns it and may close it as soon as send()
//     returns. When nothing is queued, send() passes the caller's fd itself (the kernel takes
//     its own reference), so no duplicate is needed even at the fd limit; only a message that
//     has to wait in the output queue gets the channel's own duplicate.
//   - receive() hands each received fd to the caller inside Message::fd (owned, CLOEXEC).
//     Received fds that no message claims are closed by the channel.
//   - At the receiver's fd limit (EMFILE) the kernel cannot install a passed fd: it closes it
//     and says so with MSG_CTRUNC, but the message's bytes still arrive. The channel stays in
//     step: that message comes out with no fd and Message::fd_lost set, and the sender, which
//     still holds its own copy, can deal it elsewhere or close it.
//   - In the worker, channel_from_env() returns the inherited channel end as an owned Fd.
//   - spawn_worker() leaves only the channel end open across exec: everything else is CLOEXEC.
#pragma once

#include "fd.hpp"
#include "json.hpp"

#include <cstddef>
#include <deque>
#include <string>
#include <sys/types.h>
#include <utility>
#include <vector>

// The environment variable naming the worker's channel fd (Node: NODE_CHANNEL_FD).
constexpr const char* kChannelEnv = "CLUSTERLAB_CHANNEL_FD";

// A line longer than this without a newline is a broken or hostile peer, not a message: the
// receiver reports an error instead of buffering without bound.
constexpr std::size_t kMaxMessageBytes = 1 << 20;

struct Message {
    JsonObject body;       // what the sender passed to send(), without the "fd" mark
    Fd fd;                 // the fd that travelled with it, or invalid
    bool fd_lost = false;  // it carried an fd, but this process was at its fd limit (EMFILE)
                           // when it arrived: the kernel closed it (MSG_CTRUNC). fd is invalid.
};

// ok: messages (maybe none) were appended. closed: the peer is gone (end of file); every complete
// message that arrived before it was appended first. error: the channel can no longer be trusted
// (a syscall failed, fds do not match their messages); messages appended before
// the error are still valid, and the caller should close the channel.
// closed and error are sticky: later calls return the same status.
enum class RecvStatus { ok, closed, error };

// socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC). Returns {master_end, worker_end}. A failure is
// a set-up failure: die_errno("socketpair").
std::pair<Fd, Fd> make_channel_pair();
// The same without dying: false with errno set (EMFILE at the fd limit), nothing logged. For a
// master that is already serving, a channel it cannot open is one worker fewer, not the end.
bool open_channel_pair(Fd* master_end, Fd* worker_end);

class Channel {
public:
    // Takes ownership of `sock` and makes it non-blocking.
    explicit Channel(Fd sock);

    int fd() const { return sock_.get(); }

    // Never blocks. Writes what the socket takes now and queues the rest of the message in the
    // output buffer (the fd is attached once, to the first bytes actually sent). Returns false
    // when the message cannot be delivered: the peer is gone (EPIPE/ECONNRESET, not logged: the
    // caller decides what a gone peer means) or an error (logged); then broken() is true, and
    // every later send() is false too. Also false, with the channel intact, when the message had
    // to be queued and its fd could not be duplicated (EMFILE, logged): that message only is not
    // sent. Messages are sent in the order of the calls, queued or not.
    bool send(const JsonObject& msg, int fd_to_pass = -1);
    bool broken() const { return send_broken_; }

    // True while the output buffer holds bytes: an event loop then waits for EPOLLOUT on fd()
    // and calls flush().
    bool wants_write() const { return !out_.empty(); }
    // The bytes of the output buffer not yet written: how far the peer is behind (lab13's relay
    // refuses more for a worker that is far behind, rather than buffer without bound).
    std::size_t queued_bytes() const;

    // Writes as much of the output buffer as the socket takes now. Same return value as send().
    bool flush();

    // For code without an event loop (a worker's first "online" message, tests): send(), then
    // wait with poll() until the whole output buffer, earlier messages included, is written.
    // Blocks for as long as the peer does not read.
    bool send_blocking(const JsonObject& msg, int fd_to_pass = -1);

    // Reads everything available now (recvmsg until EAGAIN) and appends each complete message to
    // `out`, with the fd it carried. A partial line waits in the input buffer for the next call.
    // A line that is not valid JSON is logged and skipped. See RecvStatus.
    RecvStatus receive(std::vector<Message>& out);

private:
    struct Outgoing {
        std::string bytes;  // the whole line, newline included
        std::size_t sent = 0;
        Fd fd;              // our duplicate of the fd to pass; reset once the kernel has it
    };

    ssize_t send_some(Outgoing& o, int fd);
    bool take_lines(std::vector<Message>& out);
    bool deliver_line(std::string_view line, std::vector<Message>& out);
    RecvStatus finish(RecvStatus status);

    Fd sock_;
    std::deque<Outgoing> out_;
    bool send_broken_ = false;
    std::string in_;            // bytes received but not yet parsed: at most one partial line
    std::deque<Fd> in_fds_;     // received fds waiting for the message that carries them; an
                                // invalid one stands for an fd the kernel could not give us
    RecvStatus recv_state_ = RecvStatus::ok;
};

// Worker side: reads kChannelEnv. Absent: returns an invalid Fd (this process is the master).
// Present: validates it (parse_channel_fd), unsetenv()s it so our own children do not inherit a
// stale number, sets CLOEXEC and returns it. Present but bad: dies with a message saying why.
Fd channel_from_env();

// The validation behind channel_from_env(), without dying: `value` must be a decimal number
// naming an open AF_UNIX stream socket. Returns true and sets *fd_out, or false with *error set.
bool parse_channel_fd(const char* value, int* fd_out, std::string* error);

// cluster.fork(): re-runs this same program (/proc/self/exe) with `argv` as a worker, through
// spawn_process() (spawn.hpp): the worker's stdio is ours, worker_end_fd the one descriptor
// inherited across exec, its number in kChannelEnv. Returns the child's pid once it runs the
// program, or -1 with errno set when it could not be started: the failed call (socketpair is the
// caller's; fork, or in the child execve, fcntl…) and strerror are logged, and no exit status follows.
pid_t spawn_worker(int worker_end_fd, char* const argv[]);
// The same, running `program` (a path, as execv takes it: no PATH search) instead of this program,
// with `env` ("KEY=VALUE" each) added to the worker's environment: Node's setupPrimary({exec}) and
// cluster.fork(env) (lab15).
pid_t spawn_worker(int worker_end_fd, char* const argv[], const char* program, const std::vector<std::string>& env);
