// check.hpp — the whole unit-test "framework": named test cases and CHECK macros that report
// the file, line, the expression and both values, then a closing line CTest and CI can read:
// "N passed, N failed".
#pragma once

#include <cstdio>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace check {

struct Case {
    const char* name;
    std::function<void()> body;
};

inline std::vector<Case>& cases() {
    static std::vector<Case> all;
    return all;
}
inline int& failures_in_case() {
    static int n = 0;
    return n;
}

struct Register {
    Register(const char* name, std::function<void()> body) { cases().push_back({name, std::move(body)}); }
};

template <class T>
std::string show(const T& v) {
    std::ostringstream os;
    os << v;
    return os.str();
}

inline void fail(const char* file, int line, const std::string& what) {
    ++failures_in_case();
    std::fprintf(stderr, "    %s:%d: %s\n", file, line, what.c_str());
}

// Runs every registered case, prints one line per case and the closing tally.
inline int run_all(const char* suite) {
    int passed = 0, failed = 0;
    for (const auto& c : cases()) {
        failures_in_case() = 0;
        c.body();
        bool ok = failures_in_case() == 0;
        std::printf("%s %s: %s\n", ok ? "PASS" : "FAIL", suite, c.name);
        (ok ? passed : failed)++;
    }
    std::printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}

}  // namespace check

#define CHECK_CAT2(a, b) a##b
#define CHECK_CAT(a, b) CHECK_CAT2(a, b)
#define TEST_CASE(name)                                                              \
    static void CHECK_CAT(test_fn_, __LINE__)();                                     \
    static check::Register CHECK_CAT(test_reg_, __LINE__)(name, CHECK_CAT(test_fn_, __LINE__)); \
    static void CHECK_CAT(test_fn_, __LINE__)()

#define CHECK(expr) \
    do { if (!(expr)) check::fail(__FILE__, __LINE__, "CHECK(" #expr ") is false"); } while (0)

#define CHECK_EQ(actual, expected)                                                             \
    do {                                                                                       \
        auto&& a_ = (actual);                                                                  \
        auto&& e_ = (expected);                                                                \
        if (!(a_ == e_))                                                                       \
            check::fail(__FILE__, __LINE__,                                                    \
                        "CHECK_EQ(" #actual ", " #expected "): got " + check::show(a_) +       \
                            ", expected " + check::show(e_));                                  \
    } while (0)

#define TEST_MAIN(suite) \
    int main() { return check::run_all(suite); }
