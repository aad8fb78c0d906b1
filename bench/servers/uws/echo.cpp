// echo-uws: a uWebSockets echo server for bench/run, beside the Rust echo servers.
//
// Each message goes back as it came (text as text, binary as binary) with `ws->send`, as
// uWebSockets' own examples/EchoServer.cpp does. Settings chosen to match the other bench
// servers: no permessage-deflate (`DISABLED`), messages up to 64 MiB (scenario E sends
// 16 MiB), 64 MiB of send backpressure per connection before a message would be dropped,
// no idle timeout and no automatic pings (the idle scenario holds connections silent).
// One thread (uSockets' epoll loop), no SSL; uSockets sets TCP_NODELAY on every socket and
// uWebSockets corks the replies to one read into one write.
//
// Built by bench/servers/uws/build.sh from a uWebSockets source folder (never committed).
// Usage: `echo-uws 127.0.0.1:PORT`; prints one line on stdout once it listens.

#include "common.h"

namespace {
struct PerSocketData {};
} // namespace

int main(int argc, char **argv) {
    auto [host, port] = bench::address(argc, argv, "echo-uws");
    uWS::App()
        .ws<PerSocketData>("/*",
                           {
                               .compression = uWS::DISABLED,
                               .maxPayloadLength = 64 << 20,
                               .idleTimeout = 0,
                               .maxBackpressure = 64 << 20,
                               .closeOnBackpressureLimit = false,
                               .resetIdleTimeoutOnSend = false,
                               .sendPingsAutomatically = false,
                               .message = [](auto *ws, std::string_view message,
                                             uWS::OpCode opCode) { ws->send(message, opCode); },
                           })
        .listen(host, port, bench::announce("echo-uws", host, port))
        .run();
}
