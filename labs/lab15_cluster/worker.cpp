#include "worker.hpp"

#include "cluster_module.hpp"
#include "master_worker.hpp"
#include "process.hpp"

void add_worker_options(Cli& cli, WorkerOptions& opts) {
    cli.text("host", &opts.host, "ADDR", "address to listen on");
    cli.integer("port", &opts.port, 0, 65535, "port to listen on (0: any free port, the same for every worker)");
    add_connection_options(cli, opts.limits);
}

std::vector<std::string> worker_arguments(const WorkerOptions& opts) {
    return {"--host", opts.host, "--port", std::to_string(opts.port), "--idle-timeout",
            std::to_string(opts.limits.idle_timeout_ms), "--header-timeout", std::to_string(opts.limits.header_timeout_ms)};
}

// The material's handler: res.end(`handled by child, pid is ${process.pid}`), at GET /hello;
// every other request is the contract's (GET / keeps its constant body, a POST is a 405).
bool handled_by_child(const Request& req, const HttpServer::ReplyFn& reply) {
    if (req.path != "/hello" || (req.method != "GET" && req.method != "HEAD")) return false;
    HttpServer::Reply r;
    r.body = "handled by child, pid is " + std::to_string(self_pid()) + "\n";
    reply(std::move(r));
    return true;
}

int run_worker(const WorkerOptions& opts) {
    cluster::WorkerProcess worker(opts.limits);
    worker.http().set_routes(handled_by_child);
    worker.listen(opts.port, opts.host);  // asks the primary for this address's handle
    return worker.run();
}
