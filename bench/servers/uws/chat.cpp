// chat-uws: a uWebSockets chat-room server for bench/run's fan-out scenarios
// (`wsworker bench --fanout`), beside `wsworker serve --mode chat` and chat-tungstenite.
//
// The same protocol as those: a connection joins the room named by its request's
// `?room=NAME` query (read in the upgrade handler with `getQuery("room")`, which
// percent-decodes it; no `room`: the room "", that of everyone without one); a text or
// binary message from it goes, unchanged, to everyone in its room, the sender included.
// A room is a uWebSockets topic: `subscribe` on open, `App::publish` for each message
// (the app's publish, not the socket's, which would leave the sender out). Close and ping
// are answered by the library.
//
// uWebSockets drops a message for a subscriber whose send backpressure is over
// `maxBackpressure` (16 MiB here, wsworker's send buffer); the `dropped` handler says so on
// stderr, once per connection, and the load generator sees the gap (an error), rather than
// the drop going unnoticed. Otherwise as echo-uws: no permessage-deflate, messages up to
// 64 MiB, no idle timeout, no automatic pings, one thread, no SSL.
//
// Built by bench/servers/uws/build.sh from a uWebSockets source folder (never committed).
// Usage: `chat-uws 127.0.0.1:PORT`; prints one line on stdout once it listens.

#include "common.h"

namespace {
struct PerSocketData {
    std::string room;
    bool dropped = false;
};
} // namespace

int main(int argc, char **argv) {
    auto [host, port] = bench::address(argc, argv, "chat-uws");
    uWS::App app;
    app.ws<PerSocketData>(
           "/*",
           {
               .compression = uWS::DISABLED,
               .maxPayloadLength = 64 << 20,
               .idleTimeout = 0,
               .maxBackpressure = 16 << 20,
               .closeOnBackpressureLimit = false,
               .resetIdleTimeoutOnSend = false,
               .sendPingsAutomatically = false,
               .upgrade =
                   [](auto *res, auto *req, auto *context) {
                       // The request lives only in this callback: the room is copied out.
                       res->template upgrade<PerSocketData>(
                           {.room = std::string(req->getQuery("room"))},
                           req->getHeader("sec-websocket-key"),
                           req->getHeader("sec-websocket-protocol"),
                           req->getHeader("sec-websocket-extensions"), context);
                   },
               .open = [](auto *ws) { ws->subscribe(ws->getUserData()->room); },
               .message =
                   [&app](auto *ws, std::string_view message, uWS::OpCode opCode) {
                       if (opCode == uWS::OpCode::TEXT || opCode == uWS::OpCode::BINARY) {
                           app.publish(ws->getUserData()->room, message, opCode);
                       }
                   },
               .dropped =
                   [](auto *ws, std::string_view, uWS::OpCode) {
                       PerSocketData *data = ws->getUserData();
                       if (!data->dropped) {
                           data->dropped = true;
                           std::fprintf(stderr,
                                        "chat-uws: a connection's send backpressure passed "
                                        "16 MiB: messages to it dropped\n");
                       }
                   },
           })
        .listen(host, port, bench::announce("chat-uws", host, port));
    app.run();
}
