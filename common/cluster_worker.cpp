// cluster_worker.cpp — a worker's side of cluster_module.hpp (Node's lib/internal/cluster/
// child.js): WorkerProcess, Node's server.listen() and worker.disconnect() inside a worker, over
// WorkerRuntime (master_worker.hpp) and the worker's end of ServerHandle's protocol.
#include "cluster_module.hpp"

#include "log.hpp"
#include "net.hpp"
#include "server_handle.hpp"

#include <sys/epoll.h>

namespace cluster {

WorkerProcess::WorkerProcess(const ConnectionLimits& limits)
    : rt_(limits), lost_(rt_.loop, "error channel: connection fds lost at our fd limit (EMFILE), handed back to the primary:") {
    rt_.master.on_message([this](Message& m) { on_primary(m); });
    // The primary's SIGTERM, or anyone's: leave gracefully, as on worker.disconnect().
    rt_.loop.on_signal(SIGTERM, [this] { disconnect(); });
}

void WorkerProcess::on_primary(Message& m) {
    std::string cmd = m.body.get_string("cmd");
    if (cmd == "connection") rt_.master.send(answer_connection(m, rt_.http, lost_));  // rr: dealt to us
    else if (cmd == "server") serve(m);
    else if (cmd == "disconnect") disconnect();
}

// The primary's answer to listen(): under `none` the socket itself, under `rr` nothing to
// accept on (connections will come one by one), or an error.
void WorkerProcess::serve(Message& m) {
    std::string host = m.body.get_string("host");
    if (m.body.has("error")) {
        // Node emits 'error' on the server; nobody handles it, so the worker dies.
        log_event("fatal listen %s: %s", host.c_str(), m.body.get_string("error").c_str());
        exit_code_ = 1;
        finished_ = true;
        rt_.loop.stop();
        return;
    }
    if (m.fd) {
        int fd = m.fd.get();
        arm_accept_spare();
        if (!rt_.loop.add(fd, EPOLLIN, [this, fd](uint32_t) { rt_.http.accept_all(fd); }))
            die_errno("epoll_ctl(listener)");
        listeners_.push_back(std::move(m.fd));
    }
    JsonObject listening = msg("act", "listening");
    listening.set("host", host);
    listening.set("port", m.body.get_int("port"));
    rt_.master.send(listening);
}

void WorkerProcess::listen(long port, const std::string& host) {
    JsonObject query = msg("act", "queryServer");
    query.set("host", host);
    query.set("port", static_cast<std::int64_t>(port));
    rt_.master.send(query);
}

void WorkerProcess::disconnect() {
    if (leaving_) return;
    leaving_ = true;
    rt_.master.send(msg("act", "disconnecting"));  // no more connections for us (rr)
    for (Fd& l : listeners_) rt_.loop.remove(l.get());
    listeners_.clear();  // none: the primary keeps its copy, so no client is refused
    rt_.http.drain([this] {
        finished_ = true;
        rt_.loop.stop();
    });
    log_event("disconnect draining=%zu", rt_.http.connection_count());
}

int WorkerProcess::run() {
    rt_.master.send(msg("act", "online"));
    while (!finished_) rt_.loop.run();
    rt_.master.flush_blocking();
    return exit_code_;
}

}  // namespace cluster
