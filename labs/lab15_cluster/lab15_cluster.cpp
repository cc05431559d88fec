// lab15_cluster — the material's cluster example on a small module with Node's names: everything labs 05–14 built by hand, packaged.
// base: lab10
// Observe: fork, online, listening per worker in Node's order; curl /hello names the child; kill -9 one: `exit … signal=SIGKILL` and a replacement; kill -HUP the primary: every pid changes, no request fails.
// Run: make lab15 && ./lab15 --workers 4, then: for i in $(seq 8); do curl -s localhost:8000/hello; done   (--policy none, or --exec ./lab15_worker)
// Mirrors Node's cluster module (common/cluster_module.hpp maps every name): cluster.isPrimary, cluster.fork(), cluster.on('exit'), setupPrimary({exec}), schedulingPolicy.
// stage: the cluster module: fork, listen, restart and reload behind Node's names

#include "cli.hpp"
#include "cluster_module.hpp"
#include "log.hpp"
#include "net.hpp"
#include "process.hpp"
#include "restart_window.hpp"
#include "worker.hpp"

#include <csignal>
#include <cstring>

namespace {

struct Options {
    WorkerOptions worker;
    long workers = 0;
    std::string policy;  // rr | none; empty: CLUSTERLAB_SCHED_POLICY, else rr (Node's default on Linux)
    std::string exec;    // a separate worker program (setupPrimary({exec}))
    long listen_timeout_ms = 3000;
    long shutdown_timeout_ms = 10000;
};

// What the material's example does in its primary: one worker per CPU, and a worker that dies
// is replaced. A restart limit (lab10) ends a crash loop, and a fork that fails (out of
// descriptors, say) is tried again after kForkRetryMs instead of ending the primary.
void replace(pid_t dead, RestartWindow& restarts) {
    if (!restarts.allow(monotonic_ms())) {
        log_event("giveup restarts=%zu during_ms=%lld workers=%zu", restarts.total(), restarts.during_ms(),
                  cluster::workers().size());
        if (cluster::workers().empty()) cluster::stop(1);
        return;
    }
    if (auto fresh = cluster::fork()) {
        log_event("restart worker=%d replacement=%d", dead, fresh->pid());
        return;
    }
    cluster::loop().add_timer(kForkRetryMs, [dead, &restarts] { replace(dead, restarts); });
}

int run_primary(const Options& opts) {
    cluster::Settings settings;
    if (!opts.exec.empty()) {
        settings.exec = opts.exec;
        settings.args = worker_arguments(opts.worker);
    }
    if (!opts.policy.empty()) setenv(cluster::kPolicyEnv, opts.policy.c_str(), 1);  // --policy wins
    settings.listen_timeout_ms = opts.listen_timeout_ms;
    settings.shutdown_timeout_ms = opts.shutdown_timeout_ms;
    cluster::setup_primary(settings);

    for (long i = 0; i < opts.workers; ++i) cluster::fork();

    RestartWindow restarts(10, 60000);
    cluster::on_exit([&restarts](cluster::Worker& worker, int code, int sig) {
        // BEGIN SOLUTION: replace a worker that died, never one that was asked to leave (a reload, a shutdown)
        if (worker.exited_after_disconnect()) return;  // Node: worker.exitedAfterDisconnect
        log_event("worker %d died (code=%d signal=SIG%s): forking a replacement", worker.pid(), code,
                  sig ? sigabbrev_np(sig) : "NONE");
        replace(worker.pid(), restarts);
        // STUB:
        // (void)code;
        // (void)sig;
        // replace(worker.pid(), restarts);  // every exit is replaced: a reload ends with twice the workers
        // END SOLUTION
    });

    long listening = 0;
    cluster::on_listening([&opts, &listening](cluster::Worker&, const cluster::Address& at) {
        if (++listening == opts.workers) print_ready("lab15", at.host, at.port);  // every initial worker serves
    });
    cluster::loop().on_signal(SIGHUP, [] { cluster::rolling_reload(); });  // lab14's reload
    return cluster::run();
}

}  // namespace

int main(int argc, char** argv) {
    bool primary = cluster::is_primary();
    init_process(primary ? "master" : "worker");
    Options opts;
    opts.workers = default_worker_count();
    Cli cli("lab15", "The cluster module: the material's cluster example on Node's names (fork, exit, "
                     "setupPrimary, schedulingPolicy); SIGHUP replaces every worker, one at a time.");
    add_worker_options(cli, opts.worker);
    cli.integer("workers", &opts.workers, 1, 1024, "workers to fork (default: number of CPUs, at least 2)");
    cli.choice("policy", &opts.policy, {"rr", "none"},
               "rr: the primary accepts and deals; none: workers share the socket (default: $CLUSTERLAB_SCHED_POLICY, else rr)");
    cli.text("exec", &opts.exec, "PROGRAM", "run PROGRAM in each worker instead of this program (e.g. ./lab15_worker)");
    cli.integer("listen-timeout", &opts.listen_timeout_ms, 1, 600000, "ms a reload waits for a new worker to listen");
    cli.integer("shutdown-timeout", &opts.shutdown_timeout_ms, 1, 3600000,
                "ms workers may drain on SIGINT/SIGTERM before SIGKILL");
    cli.parse(argc, argv);
    if (primary) return run_primary(opts);
    return run_worker(opts.worker);
}
