// test_config_file.cpp — lab14's key=value configuration file (common/config_file.*): what is
// accepted, and that every refusal names the right line.
#include "check.hpp"
#include "config_file.hpp"

#include <cstdio>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace {

ConfigError refusal(const std::string& text) {
    ConfigFile c;
    ConfigError e;
    CHECK(!parse_config(text, &c, &e));
    return e;
}

}  // namespace

TEST_CASE("key=value lines, in file order, with spaces, comments and blank lines skipped") {
    ConfigFile c;
    ConfigError e;
    CHECK(parse_config("# the app\n\n greeting = hello world \nversion=2\r\nurl=http://x/?a=b\n", &c, &e));
    CHECK_EQ(c.entries.size(), size_t{3});
    CHECK_EQ(c.get("greeting"), std::string("hello world"));
    CHECK_EQ(c.get("version"), std::string("2"));
    CHECK_EQ(c.get("url"), std::string("http://x/?a=b"));  // the value is everything after the first '='
    CHECK_EQ(c.entries[1].line, 4);
    CHECK_EQ(c.get("missing", "dflt"), std::string("dflt"));
    CHECK_EQ(c.text(), std::string("greeting=hello world\nversion=2\nurl=http://x/?a=b\n"));
}

TEST_CASE("an empty file and a file without a final newline are fine; an empty value too") {
    ConfigFile c;
    ConfigError e;
    CHECK(parse_config("", &c, &e));
    CHECK(c.entries.empty());
    CHECK(parse_config("a=1\nb=", &c, &e));
    CHECK_EQ(c.entries.size(), size_t{2});
    CHECK_EQ(c.get("b", "x"), std::string(""));
}

TEST_CASE("each refusal names its line") {
    CHECK_EQ(refusal("a=1\nno equals here\n").line, 2);
    CHECK_EQ(refusal("a=1\n\n\n=3\n").line, 4);
    CHECK_EQ(refusal("a=1\nb c=2\n").line, 2);
    ConfigError dup = refusal("a=1\n# x\na=2\n");
    CHECK_EQ(dup.line, 3);
    CHECK(dup.reason.find("already set on line 1") != std::string::npos);
    CHECK_EQ(refusal(std::string("a=1\nb=\0\n", 8)).line, 2);
}

TEST_CASE("a file too large is refused as a whole (line 0)") {
    std::string big(kMaxConfigBytes + 1, '#');
    ConfigError e = refusal(big);
    CHECK_EQ(e.line, 0);
}

TEST_CASE("load_config: a missing file is an error with line 0 naming open(2)") {
    ConfigFile c;
    ConfigError e;
    CHECK(!load_config("/nonexistent/clusterlab.conf", &c, &e));
    CHECK_EQ(e.line, 0);
    CHECK(e.reason.find("open: No such file") == 0);
}

TEST_CASE("load_config refuses what is not a regular file (a directory, a FIFO) without blocking") {
    ConfigFile c;
    ConfigError e;
    CHECK(!load_config("/tmp", &c, &e));
    CHECK_EQ(e.reason, std::string("not a regular file"));
    char dir[] = "/tmp/clusterlab-fifo-XXXXXX";
    CHECK(mkdtemp(dir) != nullptr);
    std::string fifo = std::string(dir) + "/conf";
    CHECK(mkfifo(fifo.c_str(), 0600) == 0);
    CHECK(!load_config(fifo, &c, &e));  // no writer: a blocking open or read would hang here
    CHECK_EQ(e.reason, std::string("not a regular file"));
    unlink(fifo.c_str());
    rmdir(dir);
}

TEST_CASE("load_config reads a real file") {
    char path[] = "/tmp/clusterlab-config-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    const char text[] = "version=7\n";
    CHECK(write(fd, text, sizeof text - 1) == static_cast<ssize_t>(sizeof text - 1));
    close(fd);
    ConfigFile c;
    ConfigError e;
    CHECK(load_config(path, &c, &e));
    CHECK_EQ(c.get("version"), std::string("7"));
    unlink(path);
}

TEST_CASE("config_number: whole numbers within bounds only") {
    long n = -1;
    CHECK(config_number("0", 0, 1, &n) && n == 0);
    CHECK(config_number("600000", 0, 600000, &n) && n == 600000);
    CHECK(!config_number("600001", 0, 600000, &n));
    CHECK(!config_number("", 0, 1, &n));
    CHECK(!config_number("1x", 0, 1, &n));
    CHECK(!config_number("-1", 0, 1, &n));
}

TEST_CASE("check_config: unknown keys and numbers out of bounds name their line and what is known") {
    std::vector<ConfigKey> known = {{.name = "version"},
                                    {.name = "fail_at_start", .number = true, .min = 0, .max = 1, .wants = "0 or 1"}};
    ConfigFile c;
    ConfigError e;
    CHECK(parse_config("version=anything\nfail_at_start=1\n", &c, &e) && check_config(c, known, &e));
    CHECK(parse_config("version=2\n\ncolour=red\n", &c, &e));
    CHECK(!check_config(c, known, &e));
    CHECK_EQ(e.line, 3);
    CHECK_EQ(e.reason, std::string("unknown key 'colour' (known: version, fail_at_start)"));
    CHECK(parse_config("fail_at_start=2\n", &c, &e));
    CHECK(!check_config(c, known, &e));
    CHECK_EQ(e.line, 1);
    CHECK_EQ(e.reason, std::string("fail_at_start wants 0 or 1"));
}

TEST_CASE("read_config: no path is an empty configuration; a missing file is refused") {
    ConfigFile c;
    ConfigError e;
    CHECK(read_config("", {}, &c, &e));
    CHECK(c.entries.empty());
    CHECK(!read_config("/nonexistent/clusterlab.conf", {}, &c, &e));
    CHECK_EQ(e.line, 0);
}

TEST_MAIN("config_file")
