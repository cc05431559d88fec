#include "worker.hpp"

#include "cluster_module.hpp"
#include "process.hpp"
#include "router.hpp"

void add_worker_options(Cli& cli, WorkerOptions& opts) {
    cli.text("host", &opts.host, "ADDR", "address to listen on");
    cli.integer("port", &opts.port, 0, 65535, "port to listen on (0: any free port, the same for every worker)");
    cli.integer("idle-timeout", &opts.limits.idle_timeout_ms, 1, 3600000, "ms a kept-alive connection may sit idle");
    cli.integer("header-timeout", &opts.limits.header_timeout_ms, 1, 3600000, "ms a client has to send a request head");
}

std::vector<std::string> worker_arguments(const WorkerOptions& opts) {
    return {"--host", opts.host, "--port", std::to_string(opts.port), "--idle-timeout",
            std::to_string(opts.limits.idle_timeout_ms), "--header-timeout", std::to_string(opts.limits.header_timeout_ms)};
}

// The material's handler: res.end(`handled by child, pid is ${process.pid}`), at /hello; every
// other route is the contract's (GET / keeps its constant body).
Action handled_by_child(const Request&) {
    Action a;
    a.body = "handled by child, pid is " + std::to_string(self_pid()) + "\n";
    return a;
}

int run_worker(const WorkerOptions& opts) {
    add_lab_route("/hello", handled_by_child);
    cluster::WorkerProcess worker(opts.limits);
    worker.listen(opts.port, opts.host);  // asks the primary for this address's handle
    return worker.run();
}
