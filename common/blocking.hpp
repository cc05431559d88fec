// blocking.hpp — serve_client for the blocking labs (01 sync, 02 fork, 03 threads).
//
// One connection, served to the end by the calling thread: read, parse, route, act, write,
// again while the connection is kept alive. /sleep really sleeps here, which is the point of
// these stages: while it sleeps, this thread (and, in lab01, the whole server) serves nobody.
#pragma once

#include "fd.hpp"
#include "http.hpp"

#include <functional>


// Returns when the client closes, times out, errs, or `stop()` turns true (it is asked after
// every interrupted system call, so a SIGTERM handler's flag ends a long sleep at once).
// /crash throws out of here: what happens next is the calling lab's lesson.
void serve_client(Fd client, const ConnectionLimits& limits, const std::function<bool()>& stop);
