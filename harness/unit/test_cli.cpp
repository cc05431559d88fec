// Unit tests for the command line every lab shares.
#include "check.hpp"
#include "cli.hpp"

#include <vector>

namespace {
struct Parsed {
    Cli::Result result;
    std::string error;
    ServerOptions opts;
    std::string mode = "accept";
    bool offload = false;
};

Parsed parse(std::vector<const char*> args, bool with_workers = true) {
    Parsed p;
    Cli cli("labXX", "test");
    add_server_options(cli, p.opts, with_workers);
    cli.choice("mode", &p.mode, {"accept", "epoll"}, "how workers wait");
    cli.flag("offload", &p.offload, "fork /compute");
    args.insert(args.begin(), "labXX");
    p.result = cli.try_parse(static_cast<int>(args.size()), args.data());
    p.error = cli.error();
    return p;
}
using R = Cli::Result;
}  // namespace

TEST_CASE("defaults follow the contract") {
    Parsed p = parse({});
    CHECK(p.result == R::ok);
    CHECK_EQ(p.opts.host, std::string("127.0.0.1"));
    CHECK_EQ(p.opts.port, 8000L);
    CHECK(p.opts.workers >= 2);
    CHECK_EQ(p.opts.workers, default_worker_count());
}

TEST_CASE("values with a space or an equals sign") {
    Parsed p = parse({"--port", "0", "--workers=3", "--host=0.0.0.0", "--mode", "epoll", "--offload"});
    CHECK(p.result == R::ok);
    CHECK_EQ(p.opts.port, 0L);
    CHECK_EQ(p.opts.workers, 3L);
    CHECK_EQ(p.opts.host, std::string("0.0.0.0"));
    CHECK_EQ(p.mode, std::string("epoll"));
    CHECK(p.offload);
}

TEST_CASE("--help is recognised anywhere") {
    CHECK(parse({"--port", "1", "--help"}).result == R::help);
    CHECK(parse({"-h"}).result == R::help);
}

TEST_CASE("bad input says what is wrong") {
    struct Case {
        std::vector<const char*> args;
        const char* says;
    };
    for (const Case& c : std::vector<Case>{
             {{"--port", "http"}, "--port needs a whole number, got 'http'"},
             {{"--port", "70000"}, "--port must be between 0 and 65535, got 70000"},
             {{"--port"}, "--port needs a value"},
             {{"--workers", "0"}, "--workers must be between 1 and 256, got 0"},
             {{"--mode", "herd"}, "--mode must be one of accept|epoll, got 'herd'"},
             {{"--offload=yes"}, "--offload takes no value"},
             {{"--wrokers", "2"}, "unknown option '--wrokers'"},
             {{"stray"}, "unexpected argument 'stray'"},
             {{"--host", ""}, "--host needs a non-empty value"},
         }) {
        Parsed p = parse(c.args);
        CHECK(p.result == R::error);
        CHECK_EQ(p.error, std::string(c.says));
    }
}

TEST_CASE("labs without workers have no --workers flag") {
    CHECK(parse({"--workers", "2"}, false).result == R::error);
}

TEST_CASE("the usage lists every flag with its default") {
    ServerOptions opts;
    Cli cli("lab07", "Round-robin.");
    add_server_options(cli, opts, true);
    std::string u = cli.usage();
    CHECK(u.find("usage: lab07 [options]") != std::string::npos);
    CHECK(u.find("--port N") != std::string::npos);
    CHECK(u.find("(default 8000)") != std::string::npos);
    CHECK(u.find("--workers N") != std::string::npos);
    CHECK(u.find("--help") != std::string::npos);
}

TEST_CASE("a command with operands stops at the first one and keeps the rest untouched") {
    long timeout = 0;
    Cli cli("lab11 exec", "Runs a command.");
    cli.integer("timeout", &timeout, 0, 1000000, "ms");
    cli.operands("CMD [ARGS...]", 1);
    std::vector<const char*> args{"lab11 exec", "--timeout", "5", "ls", "--timeout", "-l"};
    CHECK(cli.try_parse(static_cast<int>(args.size()), args.data()) == R::ok);
    CHECK_EQ(timeout, 5L);
    CHECK_EQ(cli.operands().size(), std::size_t(3));
    CHECK_EQ(cli.operands()[1], std::string("--timeout"));
    std::vector<const char*> dashdash{"lab11 exec", "--", "--weird"};
    CHECK(cli.try_parse(3, dashdash.data()) == R::ok);
    CHECK_EQ(cli.operands()[0], std::string("--weird"));
    std::vector<const char*> none{"lab11 exec", "--timeout", "5"};
    CHECK(cli.try_parse(3, none.data()) == R::error);
    CHECK_EQ(cli.error(), std::string("missing CMD [ARGS...]"));
    CHECK(cli.usage().find("usage: lab11 exec [options] CMD [ARGS...]") != std::string::npos);
}

TEST_MAIN("cli")
