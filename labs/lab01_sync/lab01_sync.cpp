// lab01_sync — the iterative server: accept one connection, serve it to the end, accept the next.
// Observe: four clients asking /sleep?ms=200 at once finish after 200, 400, 600, 800 ms; throughput is 1/N.
// Run: make lab01 && ./lab01, then: siege -c 2 -r 3 'http://127.0.0.1:8000/sleep?ms=3000'
// Mirrors the material's "stone age" (石器时代): a synchronous server serves one request at a time.
// stage: sync server, one request at a time (1/N)

#include "blocking.hpp"
#include "cli.hpp"
#include "log.hpp"
#include "net.hpp"
#include "process.hpp"

#include <csignal>

namespace {

bool stop_requested() { return signal_seen(SIGINT) || signal_seen(SIGTERM); }

// The whole design: while serve_client runs, nobody else is accepted. Later clients wait in
// the kernel's accept queue (the listen backlog), already connected, until this loop comes back.
void run_server(int listen_fd, const ConnectionLimits& limits) {
    // BEGIN SOLUTION: until asked to stop, accept the next connection and serve it to the end
    while (!stop_requested()) {
        Accepted a = accept_client(listen_fd, /*nonblocking=*/false);
        if (a.status != AcceptStatus::client) continue;  // interrupted or a dead client: look again
        serve_client(std::move(a.fd), limits, stop_requested);
    }
    // STUB:
    // (void)limits;
    // while (!stop_requested()) {
    //     Accepted a = accept_client(listen_fd, /*nonblocking=*/false);  // accepted, closed unanswered
    // }
    // END SOLUTION
}

}  // namespace

int main(int argc, char** argv) {
    init_process("server");
    ServerOptions opts;
    ConnectionLimits limits;
    Cli cli("lab01", "The sync server: one connection at a time, so N waiting clients see N x the latency.");
    add_server_options(cli, opts, /*with_workers=*/false);
    cli.integer("idle-timeout", &limits.idle_timeout_ms, 1, 3600000, "ms a kept-alive connection may sit idle");
    cli.integer("header-timeout", &limits.header_timeout_ms, 1, 3600000, "ms a client has to send a request head");
    cli.parse(argc, argv);

    // Signal handlers only set flags; accept/read/sleep return EINTR and the loops look at them.
    install_flag_handler(SIGINT);
    install_flag_handler(SIGTERM);

    ListenOptions lo;
    lo.host = opts.host;
    lo.port = opts.port;
    Fd listener = listen_or_die(lo);
    log_event("listening port=%d", local_port(listener.get()));
    print_ready("lab01", opts.host, local_port(listener.get()));

    run_server(listener.get(), limits);
    log_event("shutdown");
    return 0;
}
