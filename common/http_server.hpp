// http_server.hpp — HTTP connections on an event loop: the other half of lab04's chapter, and the
// server inside every event-driven worker of labs 05–15.
//
// Each connection is a small state machine driven by readiness events: bytes arrive → parse →
// route → reply now (/), reply later from a timer (/sleep) or from a child (/compute with
// offload) → write what the socket takes, keep the rest until EPOLLOUT. Nothing blocks, so one
// thread holds thousands of connections. Requests on one connection are answered in order.
//
// Ownership: the server owns every connection's Fd; the listening socket stays the caller's.
#pragma once

#include "event_loop.hpp"
#include "fd.hpp"
#include "http.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

class HttpServer {
public:
    using Done = std::function<void(std::string body)>;
    using ComputeFn = std::function<void(long long n, Done done)>;

    explicit HttpServer(EventLoop& loop, ConnectionLimits limits = {});
    ~HttpServer();
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    // Accepts every connection waiting on a non-blocking listener and serves each one.
    // Returns how many it accepted.
    int accept_all(int listen_fd);
    // Serves a connection accepted elsewhere (lab07: handed over by the master).
    void adopt(Fd client);

    // How /compute runs. By default inline: the loop does nothing else until it is done
    // (lab04's lesson). Lab04's --offload passes a function that forks the work to a child
    // and calls done(body) when the child answers. done("") means the work failed: the client
    // gets a 500. done may also be called before the hook returns.
    void set_compute(ComputeFn fn) { compute_ = std::move(fn); }

    // A lab's own routes, tried before the contract's (lab13: POST /send, /inbox, /count).
    // The handler returns false for a request that is not its own (route() answers it), or true
    // and then calls `reply` exactly once, at once or later from the loop (after asking another
    // process, say). Until then the connection waits, as for /sleep. A reply for a connection
    // that has gone, or a second reply, is dropped.
    struct Reply {
        int status = 200;
        std::string body;
        std::string extra_headers;  // e.g. "Allow: POST\r\n"
    };
    using ReplyFn = std::function<void(Reply)>;
    using RoutesFn = std::function<bool(const Request& req, ReplyFn reply)>;
    void set_routes(RoutesFn fn) { routes_ = std::move(fn); }

    // Graceful exit (lab08): from now on every response carries Connection: close, idle
    // kept-alive connections are closed at once, and on_drained runs when the last connection
    // is gone. A connection that has not sent its first request yet is not idle: it is served
    // (or closed by the idle timeout). Safe to call from a catch block: it never parses input.
    void drain(std::function<void()> on_drained);
    bool draining() const { return draining_; }
    // Closes every connection now; returns how many had a request in flight (lab09's deadline).
    size_t close_all();

    size_t connection_count() const { return conns_.size(); }

private:
    struct Conn;
    void serve(Fd client);
    void on_event(int fd, uint64_t id, uint32_t events);
    void process(Conn& c);          // answer_requests, then flush
    void answer_requests(Conn& c);  // parse and answer what has arrived, within the back-pressure limits
    void update_interest(Conn& c);  // EPOLLIN/EPOLLOUT as the connection's buffers require
    void finish_slow_request(int fd, uint64_t id, const std::string& body);
    bool route_to_lab(Conn& c);  // the lab's own routes (set_routes); false: not one of them
    void finish_lab_request(int fd, uint64_t id, uint64_t request, Reply r);
    void respond(Conn& c, int status, const std::string& body, std::string_view extra_headers = {});
    void flush(Conn& c);
    void close_conn(Conn& c);
    void start_lingering(Conn& c);  // after a refusal: FIN now, close when the client stops sending
    void linger(Conn& c);
    void sweep_timeouts();
    Conn* find(int fd, uint64_t id);
    bool idle(const Conn& c) const;
    bool input_waiting(const Conn& c) const;  // request bytes in the socket, not read yet

    EventLoop& loop_;
    ConnectionLimits limits_;
    ComputeFn compute_;
    RoutesFn routes_;
    std::unordered_map<int, std::unique_ptr<Conn>> conns_;
    uint64_t next_id_ = 1;
    bool sweeping_ = false;
    EventLoop::TimerId sweep_timer_ = 0;
    bool draining_ = false;
    std::function<void()> on_drained_;
};
