// worker.hpp — lab15's worker: the part of the program that serves. It lives in a file of its own
// because the material recommends it (master and worker code apart) and because it is linked
// twice: into ./lab15, which re-runs itself as a worker (cluster.fork()), and into the separate
// ./lab15_worker program that `./lab15 --exec ./lab15_worker` runs instead (setupPrimary({exec})).
#pragma once

#include "cli.hpp"
#include "http.hpp"

#include <string>

struct WorkerOptions {
    std::string host = "127.0.0.1";
    long port = 8000;
    ConnectionLimits limits;
};

// --host, --port, --idle-timeout, --header-timeout: what a worker needs to know.
void add_worker_options(Cli& cli, WorkerOptions& opts);
// The same flags as arguments, for a worker program started with --exec.
std::vector<std::string> worker_arguments(const WorkerOptions& opts);

// http.createServer(handler).listen(port) in a worker; returns its exit code.
int run_worker(const WorkerOptions& opts);
