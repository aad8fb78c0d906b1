// What echo-uws and chat-uws share: reading `127.0.0.1:PORT` from the command line and
// announcing, with one line on stdout, that the server listens (bench/run waits for it).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

#include "App.h"

namespace bench {

/// The host and port of `HOST:PORT` (the last colon splits them); exits with a usage line
/// on anything else.
inline std::pair<std::string, int> address(int argc, char **argv, const char *name) {
    std::string arg = argc == 2 ? argv[1] : "";
    size_t colon = arg.rfind(':');
    int port = colon == std::string::npos ? 0 : std::atoi(arg.c_str() + colon + 1);
    if (port <= 0 || port > 65535) {
        std::fprintf(stderr, "usage: %s 127.0.0.1:PORT\n", name);
        std::exit(2);
    }
    return {arg.substr(0, colon), port};
}

/// The listen callback: one line on stdout once listening (flushed: stdout is a file
/// under bench/run), or exit 1 when the address cannot be bound.
inline auto announce(const char *name, std::string host, int port) {
    return [name, host, port](us_listen_socket_t *socket) {
        if (!socket) {
            std::fprintf(stderr, "%s: cannot listen on %s:%d\n", name, host.c_str(), port);
            std::exit(1);
        }
        std::printf("%s listening on %s:%d\n", name, host.c_str(), port);
        std::fflush(stdout);
    };
}

} // namespace bench
