// lab15_worker — a worker program and nothing else: what `./lab15 --exec ./lab15_worker` runs in
// each worker instead of ./lab15 itself (Node: cluster.setupPrimary({exec: 'worker.js'})).
// Run alone it is not a worker (no channel from a primary) and says so.

#include "cli.hpp"
#include "cluster_module.hpp"
#include "log.hpp"
#include "process.hpp"
#include "../worker.hpp"

#include <cstdio>

int main(int argc, char** argv) {
    init_process("worker");
    WorkerOptions opts;
    Cli cli("lab15_worker", "lab15's worker program, for ./lab15 --exec ./lab15_worker (not to be run alone).");
    add_worker_options(cli, opts);
    cli.parse(argc, argv);
    if (!cluster::is_worker()) {
        std::fprintf(stderr, "lab15_worker: not started by a cluster primary (%s is not set): run ./lab15 --exec %s\n",
                     kChannelEnv, argv[0]);
        return 2;
    }
    return run_worker(opts);
}
