// fd.hpp — a move-only owner of one file descriptor.
//
// Ownership rule for the whole suite: whoever holds the Fd owns the descriptor and it is
// closed exactly once, when the Fd is destroyed or reset. Raw ints are borrowed views
// (`fd.get()`); `release()` hands ownership to someone else (the kernel, via SCM_RIGHTS,
// or another Fd) and says so in the code.
#pragma once

#include <unistd.h>
#include <utility>

class Fd {
public:
    Fd() = default;
    explicit Fd(int fd) : fd_(fd) {}
    ~Fd() { reset(); }

    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    Fd(Fd&& other) noexcept : fd_(other.release()) {}
    Fd& operator=(Fd&& other) noexcept {
        if (this != &other) reset(other.release());
        return *this;
    }

    int get() const { return fd_; }
    bool valid() const { return fd_ >= 0; }
    explicit operator bool() const { return valid(); }

    // Gives up ownership without closing: the caller now owns the number.
    int release() { return std::exchange(fd_, -1); }

    // Closes what we own (if anything) and takes ownership of `fd`.
    void reset(int fd = -1) {
        if (fd_ >= 0) ::close(fd_);  // close(2) errors on a socket carry no information we can act on
        fd_ = fd;
    }

private:
    int fd_ = -1;
};

// Flag helpers: they return false (errno set) on failure.
bool set_nonblocking(int fd, bool on = true);
bool set_cloexec(int fd, bool on = true);
