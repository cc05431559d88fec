// router.hpp — the contract's routes, decided once for every lab.
//
// route() only decides WHAT to do; each lab decides HOW, and that is the stage's lesson:
// a blocking lab sleeps in nanosleep, an event loop sets a timer; /compute runs inline or in a
// child process; /crash throws and the lab shows what an uncaught exception costs.
#pragma once

#include "http.hpp"

#include <cstdint>
#include <string>

struct Action {
    enum class Kind { reply, sleep, compute, crash };
    Kind kind = Kind::reply;
    int status = 200;
    std::string body;           // for reply
    std::string extra_headers;  // e.g. "Allow: GET, HEAD\r\n" on a 405
    long sleep_ms = 0;          // for sleep
    long long compute_n = 0;    // for compute
};

constexpr long kDefaultSleepMs = 100;
constexpr long kMaxSleepMs = 600000;
constexpr long long kDefaultComputeN = 300000000;  // ~0.3-1 s of one core
constexpr long long kMaxComputeN = 100000000000LL;
constexpr long long kDefaultBytes = 1024;
constexpr long long kMaxBytes = 64LL * 1024 * 1024;

// GET|HEAD /  /sleep?ms=N  /compute?n=N  /crash  /pid  /bytes?n=N; 405 for other methods, 404
// otherwise.
Action route(const Request& req);

// A lab's own routes (lab13's /send, lab14's /config, lab15's /hello) are not added here: the
// lab gives its HttpServer a handler (HttpServer::set_routes), tried before these, so what a
// route captures lives as long as the server that answers it.

// The body of /bytes?n=N: 16-byte lines, each the hex offset of its first byte ("00000000000010\n"
// is the second), cut at N. Every byte says where it belongs, so a relay that loses, repeats or
// reorders a single line changes the body's hash, and `curl /bytes?n=64` is readable.
std::string bytes_body(long long n);
// The material's longComputation: a CPU-bound loop the compiler cannot fold away.
uint64_t long_computation(long long n);

// The bodies of the slow routes, once the work is done.
std::string sleep_body(long ms);
std::string compute_body(long long n, uint64_t result);

// What /crash does in every lab: throw an exception that no handler catches.
[[noreturn]] void throw_crash();

// The value of `name` in a query string "a=1&b=2", or nullptr.
bool query_param(const std::string& query, const std::string& name, std::string* value);
