// relay.hpp — lab12's byte relay: the master accepts on the public port and relays every byte
// of each connection to a worker's own port, as nginx's stream proxy does (notes/lab12_proxy.md
// walks through it). Used by lab12.
//
//   - RelayOptions, add_relay_options(): --relay copy|splice, --relay-timeout, --max-fails,
//     --fail-timeout, --print-nginx-conf.
//   - UpstreamTable: each worker's port and nginx's max_fails/fail_timeout accounting. It
//     decides and does no I/O; the clock is passed in (harness/unit/test_upstream_table.cpp).
//   - Relays: every relayed connection on the master's loop — two sockets and two directions,
//     back-pressure both ways, half-close, the retry on the next worker of a request that no
//     byte of an answer has followed yet, and the idle timeout — and the nginx configuration
//     over the same ports (print_nginx_conf).
//
// Its event-log lines: upstream-error, down, relay-timeout, error client cut, error no worker
// took the connection.
//
// Ownership: Relays owns every relayed connection (both sockets, and the pipes of splice). The
// loop holds a connection's fds only while it lives: they are removed before it is destroyed.
#pragma once

#include "cli.hpp"
#include "cluster.hpp"
#include "event_loop.hpp"
#include "fd.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <sys/types.h>
#include <unordered_map>
#include <vector>

struct RelayOptions {
    std::string mode = "copy";  // copy: read(2)/write(2) through a buffer; splice: splice(2) through a pipe
    long timeout_ms = 60000;    // nginx's proxy_read_timeout
    long max_fails = 1;         // nginx's max_fails and fail_timeout, with their defaults
    long fail_timeout_ms = 10000;
    bool print_nginx_conf = false;
};
void add_relay_options(Cli& cli, RelayOptions& opts);

// The workers seen as upstream servers, as nginx sees the `server` lines of an `upstream`: a
// port each, and --max-fails failed attempts within --fail-timeout ms mark a port down for
// --fail-timeout ms (max_fails 0: never).
class UpstreamTable {
public:
    UpstreamTable(long max_fails, long fail_timeout_ms) : max_fails_(max_fails), fail_timeout_ms_(fail_timeout_ms) {}

    // The worker's port, first or new (a replacement's): its failures start again from none.
    void set_port(pid_t worker, int port) { table_[worker] = Entry{.port = port}; }
    void erase(pid_t worker) { table_.erase(worker); }
    int port(pid_t worker) const;  // 0: not known
    // It has a port and is not marked down.
    bool up(pid_t worker, long long now_ms) const;
    // A failed attempt on `port` of `worker`. True when this one marks it down. A failure on a
    // port the worker no longer has, or while it is down already (connections that chose it
    // earlier report it too), counts for nothing.
    bool fail(pid_t worker, int port, long long now_ms);

private:
    struct Entry {
        int port = 0;
        long fails = 0;              // failed attempts within the current window
        long long window_start = 0;  // when the first of those failed
        long long down_until = 0;    // not tried before this
    };
    long max_fails_;
    long fail_timeout_ms_;
    std::unordered_map<pid_t, Entry> table_;
};

struct Relay;  // one relayed connection (relay.cpp)

class Relays {
public:
    // The lab's choice of a worker for the next attempt, among those whose ports are up (never
    // empty). Asked again for each retry.
    using ChooseFn = std::function<Worker*(const std::vector<Worker*>& up)>;

    Relays(EventLoop& loop, Cluster& cluster, const RelayOptions& opts, ChooseFn choose);
    ~Relays();
    Relays(const Relays&) = delete;
    Relays& operator=(const Relays&) = delete;

    // Accepts what waits on `listen_fd` (at most 128 at a time, so the relays already running
    // get their turn) and connects each client to a worker.
    void accept_all(int listen_fd);
    // After the ready line: an nginx configuration with an `upstream` over the workers' current
    // ports, listening on host:port (000's nginx demo, in front of the same workers).
    void print_nginx_conf(const std::string& host, int port);

    UpstreamTable upstreams;

private:
    void start(Fd client);
    bool connect_next(Relay& r);
    Worker* next_worker();
    bool worker_gone(pid_t pid);
    void note_failure(pid_t worker, int port, int error);
    void watch(Relay& r, int fd, uint32_t& current, uint32_t want);
    void update_interest(Relay& r);
    void on_client(Relay& r, uint32_t events);
    void on_upstream(Relay& r, uint32_t events);
    void after_io(Relay& r);
    bool finish_directions(Relay& r);
    void cut_client(Relay& r, const char* why, int error);
    void upstream_failed(Relay& r, int error, bool count_it);
    void upstream_lost(Relay& r, int error);
    void close(Relay& r);
    void sweep_idle();

    EventLoop& loop_;
    Cluster& cluster_;
    RelayOptions opts_;
    ChooseFn choose_;
    bool splice_;
    std::unordered_map<uint64_t, std::unique_ptr<Relay>> relays_;
    uint64_t last_id_ = 0;
    std::vector<char> scratch_;     // every copy goes through this one buffer
    std::vector<Worker*> up_;       // next_worker's candidates, kept to spare an allocation
    bool sweeping_ = false;         // sweep_idle's timer is set
};
