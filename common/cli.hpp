// cli.hpp — the command line every lab shares.
//
// A lab declares its flags, then calls parse(): `--help` prints the usage to stdout and exits 0;
// a bad flag or value prints what is wrong and the usage to stderr and exits 2 (the contract).
// Both `--port 8080` and `--port=8080` work.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

class Cli {
public:
    Cli(std::string program, std::string summary);

    void flag(const std::string& name, bool* out, const std::string& help);
    void integer(const std::string& name, long* out, long min, long max, const std::string& help);
    void text(const std::string& name, std::string* out, const std::string& metavar, const std::string& help);
    void choice(const std::string& name, std::string* out, std::vector<std::string> choices,
                const std::string& help);

    enum class Result { ok, help, error };
    // Parses without exiting: for tests. On error, error() says what is wrong.
    Result try_parse(int argc, const char* const* argv);
    const std::string& error() const { return error_; }
    std::string usage() const;

    // Parses, and on --help or a bad command line prints and exits as the contract says.
    void parse(int argc, char** argv);

    // For a command that takes operands after its options (`lab11 spawn [options] CMD [ARGS…]`):
    // parsing stops at the first argument that is not an option, or after `--`, and everything
    // from there on is left in operands() untouched (a command's own flags are not ours). Fewer
    // than `min_count` operands is a bad command line. `synopsis` ("CMD [ARGS…]") goes in the usage.
    void operands(std::string synopsis, std::size_t min_count);
    const std::vector<std::string>& operands() const { return operands_; }

    // For what parse() cannot check (a bad operand, a value with its own syntax): prints
    // "program: message", the usage to stderr and exits 2, like a bad flag.
    [[noreturn]] void usage_error(const std::string& message) const;

private:
    struct Option {
        std::string name = {}, metavar = {}, help = {};
        enum Kind { flag, integer, text, choice } kind = flag;
        bool* flag_out = nullptr;
        long* int_out = nullptr;
        long min = 0, max = 0;
        std::string* text_out = nullptr;
        std::vector<std::string> choices = {};
        std::string default_text = {};
    };
    Result fail(std::string message);
    std::string program_, summary_, error_;
    std::vector<Option> options_;
    bool takes_operands_ = false;
    std::string operand_synopsis_;
    std::size_t min_operands_ = 0;
    std::vector<std::string> operands_;
};

// The flags of the contract: --host, --port and (for labs with workers) --workers.
struct ServerOptions {
    std::string host = "127.0.0.1";
    long port = 8000;
    long workers = 0;  // filled by add_server_options: number of CPUs, at least 2
};
void add_server_options(Cli& cli, ServerOptions& opts, bool with_workers);
long default_worker_count();
