// server_handle.hpp — the handle of one listening address in a cluster's primary (lab07's
// master, and lab15's module, common/cluster_module.cpp): the socket, opened once (lab07: before
// the first fork; the module: at the first worker's listen()) and kept for the primary's life (workers come and go, and the kernel keeps queueing clients:
// lab10's lesson), and how its connections reach the workers. Node keeps the same two kinds:
//   - shared (cluster.SCHED_NONE): the worker gets the socket itself and accepts on it; the
//     kernel decides who gets a connection (lab05, lab06's herd);
//   - dealt (cluster.SCHED_RR): the socket never leaves the primary, which accepts and deals
//     each connection over the worker's channel. Who gets it is RoundRobinHandle's decision
//     (sans-IO, lab07); this class does its I/O, for lab07's master and the module: accept while the
//     waiting room has space (a quarter of the fd limit; when it is full, newcomers wait in the
//     kernel's backlog), send each handoff, feed the workers' answers back, and look again at
//     the handle's next deadline (reading the overdue workers' channels first: an answer
//     already there is news, not silence).
//
// The protocol, both ends:
//   primary → worker  {"cmd":"server","host":H,"port":P,"handle":K}, with the socket if shared
//   primary → worker  {"cmd":"connection","id":I,"handle":K,"sent_ms":T,"late_ms":L} + the client
//   worker → primary  {"act":"accepted"|"refused","id":I,"handle":K[,"reason":late|fd-lost|no-fd]}:
//                     the worker's end is answer_connection(), in the same turn of its loop
//
// Ownership: the handle owns its listening socket; its RoundRobinHandle owns every connection
// it holds until a worker confirms it. The loop's callbacks refer to the handle: it is neither
// copied nor moved, and lives as long as the loop.
#pragma once

#include "cluster.hpp"
#include "event_loop.hpp"
#include "fd.hpp"
#include "http_server.hpp"
#include "master_worker.hpp"
#include "round_robin_handle.hpp"

#include <memory>
#include <string>
#include <sys/types.h>
#include <vector>

class ServerHandle {
public:
    // Opens host:port (non-blocking). `key` names the handle in the messages; `deal`: rr (the
    // primary accepts), else shared. Null, with the reason in *error, if the socket fails.
    static std::unique_ptr<ServerHandle> open(EventLoop& loop, Cluster& table, int key, const std::string& host,
                                              int port, bool deal, std::string* error);
    // A dealt handle accepts at once, unless `accept_now` is false: then not before
    // start_accepting() (lab07 waits until every worker listens, so that the first connections
    // split exactly; until then clients wait in the kernel's accept queue).
    ServerHandle(EventLoop& loop, Cluster& table, int key, Fd listener, bool deal, bool accept_now = true);
    void start_accepting();
    ServerHandle(const ServerHandle&) = delete;
    ServerHandle& operator=(const ServerHandle&) = delete;

    // A worker's listen() of this address: the answer (the socket too if shared); if dealt, a
    // worker that is not leaving joins the ring.
    void serve(Worker& w, const std::string& host);
    // The worker's answer to a dealt connection.
    void answer(Worker& w, const JsonObject& body);
    // The worker is leaving: it is dealt nothing more; what it was sent is still its own.
    void retire(pid_t worker) { rr_.retire(worker); }
    // The worker is gone: what it had not confirmed is dealt again.
    void remove(pid_t worker);

private:
    void accept_and_deal();
    void send(std::vector<RoundRobinHandle::Handoff> work);
    std::vector<RoundRobinHandle::Handoff> redeal(pid_t dead);
    void look_again();  // at rr_.next_deadline()
    void watch_listener();  // accept only while the waiting room has space

    EventLoop& loop_;
    Cluster& table_;
    int key_;
    Fd listener_;
    bool deal_;
    RoundRobinHandle rr_;
    bool accepting_ = true;
    BurstLog full_;  // one line per burst of "the waiting room is full"
    EventLoop::TimerId deadline_timer_ = 0;
    long long deadline_at_ = 0;
};

// The worker's end of a dealt connection: `http` adopts it, or it is refused (it came later than
// late_ms: the primary may have taken it back; or its fd was lost at our fd limit: counted in
// `lost`, one log line per burst). Returns the answer to send.
JsonObject answer_connection(Message& m, HttpServer& http, BurstLog& lost);
