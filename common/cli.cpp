#include "cli.hpp"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <unistd.h>

Cli::Cli(std::string program, std::string summary)
    : program_(std::move(program)), summary_(std::move(summary)) {}

// Designated initializers: each kind of option sets only the fields it uses.
void Cli::flag(const std::string& name, bool* out, const std::string& help) {
    options_.push_back({.name = name, .help = help, .kind = Option::flag, .flag_out = out});
}

void Cli::integer(const std::string& name, long* out, long min, long max, const std::string& help) {
    options_.push_back({.name = name, .metavar = "N", .help = help, .kind = Option::integer, .int_out = out,
                        .min = min, .max = max, .default_text = std::to_string(*out)});
}

void Cli::text(const std::string& name, std::string* out, const std::string& metavar,
               const std::string& help) {
    options_.push_back({.name = name, .metavar = metavar, .help = help, .kind = Option::text, .text_out = out,
                        .default_text = *out});
}

void Cli::choice(const std::string& name, std::string* out, std::vector<std::string> choices,
                 const std::string& help) {
    std::string metavar;  // a|b|c, as --help shows it
    for (size_t i = 0; i < choices.size(); ++i) metavar += (i ? "|" : "") + choices[i];
    options_.push_back({.name = name, .metavar = metavar, .help = help, .kind = Option::choice, .text_out = out,
                        .choices = std::move(choices), .default_text = *out});
}

std::string Cli::usage() const {
    std::string u = "usage: " + program_ + " [options]" + (takes_operands_ ? " " + operand_synopsis_ : "") +
                    "\n" + summary_ + "\n\noptions:\n";
    std::vector<std::string> left;
    size_t width = 0;
    for (const auto& o : options_) {
        left.push_back("--" + o.name + (o.metavar.empty() ? "" : " " + o.metavar));
        width = std::max(width, left.back().size());
    }
    left.push_back("--help");
    for (size_t i = 0; i < left.size(); ++i) {
        std::string help = i < options_.size() ? options_[i].help : "show this help and exit";
        if (i < options_.size() && !options_[i].default_text.empty())
            help += " (default " + options_[i].default_text + ")";
        u += "  " + left[i] + std::string(width + 2 - left[i].size(), ' ') + help + "\n";
    }
    return u;
}

Cli::Result Cli::fail(std::string message) {
    error_ = std::move(message);
    return Result::error;
}

Cli::Result Cli::try_parse(int argc, const char* const* argv) {
    operands_.clear();
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        if (arg == "--help" || arg == "-h") return Result::help;
        if (takes_operands_ && (arg == "--" || arg.rfind("--", 0) != 0)) {
            operands_.assign(argv + i + (arg == "--" ? 1 : 0), argv + argc);
            break;
        }
        if (arg.rfind("--", 0) != 0) return fail("unexpected argument '" + arg + "'");
        std::string name = arg.substr(2), value;
        bool has_value = false;
        if (auto eq = name.find('='); eq != std::string::npos) {
            value = name.substr(eq + 1);
            name.resize(eq);
            has_value = true;
        }
        Option* opt = nullptr;
        for (auto& o : options_)
            if (o.name == name) opt = &o;
        if (!opt) return fail("unknown option '--" + name + "'");
        if (opt->kind == Option::flag) {
            if (has_value) return fail("--" + name + " takes no value");
            *opt->flag_out = true;
            continue;
        }
        if (!has_value) {
            if (i + 1 >= argc) return fail("--" + name + " needs a value");
            value = argv[++i];
        }
        switch (opt->kind) {
        case Option::integer: {
            errno = 0;
            char* end = nullptr;
            long v = std::strtol(value.c_str(), &end, 10);
            if (value.empty() || *end != '\0' || errno == ERANGE)
                return fail("--" + name + " needs a whole number, got '" + value + "'");
            if (v < opt->min || v > opt->max)
                return fail("--" + name + " must be between " + std::to_string(opt->min) + " and " +
                            std::to_string(opt->max) + ", got " + value);
            *opt->int_out = v;
            break;
        }
        case Option::choice: {
            bool known = false;
            for (const auto& c : opt->choices) known = known || c == value;
            if (!known) return fail("--" + name + " must be one of " + opt->metavar + ", got '" + value + "'");
            *opt->text_out = value;
            break;
        }
        case Option::text:
            if (value.empty()) return fail("--" + name + " needs a non-empty value");
            *opt->text_out = value;
            break;
        case Option::flag:
            break;
        }
    }
    if (operands_.size() < min_operands_) return fail("missing " + operand_synopsis_);
    return Result::ok;
}

void Cli::operands(std::string synopsis, std::size_t min_count) {
    takes_operands_ = true;
    operand_synopsis_ = std::move(synopsis);
    min_operands_ = min_count;
}

void Cli::usage_error(const std::string& message) const {
    std::fprintf(stderr, "%s: %s\n\n%s", program_.c_str(), message.c_str(), usage().c_str());
    std::exit(2);
}

void Cli::parse(int argc, char** argv) {
    switch (try_parse(argc, argv)) {
    case Result::ok:
        return;
    case Result::help:
        std::fputs(usage().c_str(), stdout);
        std::exit(0);
    case Result::error:
        std::fprintf(stderr, "%s: %s\n\n%s", program_.c_str(), error_.c_str(), usage().c_str());
        std::exit(2);
    }
}

long default_worker_count() {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus < 2 ? 2 : cpus;
}

void add_server_options(Cli& cli, ServerOptions& opts, bool with_workers) {
    cli.text("host", &opts.host, "ADDR", "address to listen on");
    cli.integer("port", &opts.port, 0, 65535, "TCP port; 0 picks a free one");
    if (with_workers) {
        if (opts.workers == 0) opts.workers = default_worker_count();
        cli.integer("workers", &opts.workers, 1, 256, "number of worker processes");
    }
}
