// net.hpp — TCP plumbing: open a listening socket, accept a client, say "ready".
//
// The harmless accept errors and EINTR are handled here, once, so no lab repeats them.
// Ownership: listen_tcp and accept_client return an Fd the caller owns; every socket is CLOEXEC,
// so an exec'd child (lab05+) inherits only what is passed to it on purpose.
#pragma once

#include "fd.hpp"

#include <string>

struct ListenOptions {
    std::string host = "127.0.0.1";
    long port = 8000;
    int backlog = 4096;       // the kernel caps it at net.core.somaxconn
    bool nonblocking = false; // event-driven labs want a non-blocking listener
    bool reuseport = false;   // lab06's SO_REUSEPORT mode
    bool bind_only = false;   // bind without listen(): holds the port (lab06 reserves one for
                              // its SO_REUSEPORT workers) but takes no connection
    bool reuseport_owner = false;  // with reuseport: bind WITHOUT SO_REUSEPORT, then set it. The
                              // bind is then exclusive (EADDRINUSE if anyone holds the port, a
                              // same-user SO_REUSEPORT group included); the option, set after,
                              // lets our own SO_REUSEPORT sockets (lab06's workers) join later
};

// socket + SO_REUSEADDR (+ SO_REUSEPORT, before or after bind) + bind + listen (unless bind_only). On failure returns an invalid Fd and
// sets *error to "bind 127.0.0.1:8000: Address already in use" (the call, the address, strerror).
Fd listen_tcp(const ListenOptions& opts, std::string* error);
// The same, but a failure is a set-up failure: log it and exit(1).
Fd listen_or_die(const ListenOptions& opts);

// The port a bound socket actually got (what --port 0 picked).
int local_port(int fd);

enum class AcceptStatus {
    client,        // fd holds a new connection
    none_pending,  // EAGAIN: the queue is empty (non-blocking listener)
    interrupted,   // EINTR: a signal arrived; the caller checks its flags and calls again
    skipped,       // a connection that died in the queue (ECONNABORTED, EPROTO…) or
                   // EMFILE/ENFILE survived (see accept_client): call again
};
struct Accepted {
    AcceptStatus status;
    Fd fd;
};
// accept4 with SOCK_CLOEXEC (and SOCK_NONBLOCK when asked). Out of descriptors (EMFILE), it
// frees a spare descriptor kept for the purpose, accepts and closes that one client (it sees
// its connection close instead of waiting forever in the queue) and re-arms the spare, as libev
// and Node do; it logs that once a second at most. On a blocking listener it drops nobody: it
// pauses 10 ms and returns `skipped`, and the queued clients wait for a free descriptor.
Accepted accept_client(int listen_fd, bool nonblocking);
// Opens the spare descriptor now instead of at the first accept (listen_tcp does it too), so a
// process that accepts on a socket it did not open itself — a worker handed the master's
// listener — holds a flat count of descriptors from the start. Idempotent.
void arm_accept_spare();

// The contract's ready line on stdout, flushed: "lab01 listening on http://HOST:PORT pid=PID".
void print_ready(const char* lab, const std::string& host, int port);
