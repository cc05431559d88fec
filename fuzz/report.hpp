// report.hpp — how a fuzz target says why it aborts.
//
// `make fuzz` runs targets with -close_fd_mask=2: libFuzzer discards what the code under test
// writes to stderr (the channel logs a line per bad message, millions in a minute) and keeps
// its own and the sanitizers' reports on a duplicate of stderr. A target's own explanation must
// reach that duplicate too, so LLVMFuzzerInitialize, which runs before libFuzzer closes stderr,
// keeps one for report(). Include this header once per target.
#pragma once

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <unistd.h>

namespace fuzz {
inline int report_fd = 2;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    int fd = dup(2);
    if (fd >= 0) fuzz::report_fd = fd;
    return 0;
}

// printf to the real stderr, then abort: libFuzzer saves the input as a crash.
[[noreturn]] __attribute__((format(printf, 1, 2))) inline void fail(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vdprintf(fuzz::report_fd, fmt, ap);
    va_end(ap);
    std::abort();
}
