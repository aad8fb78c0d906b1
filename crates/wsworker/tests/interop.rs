//! Our server and client against peers we did not write: the Python `websockets` and Node
//! `ws` libraries (scripts in `interop/`). These need the peers installed
//! (`bash interop/setup.sh`), so they are ignored by a plain `cargo test`; `.ci/run` installs
//! the peers and runs them with `--ignored`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{PeerServer, closed, message, python, repo_root, run_to_end};
use wsworker::{Handshake, Message, RunningServer, WebSocket, Worker};

/// The server every peer's checklist expects: subprotocol `chat` or `superchat` when
/// offered, echo of every message, and `close CODE REASON` to make the server close.
fn interop_server() -> RunningServer {
    let mut worker = Worker::new("websocket://127.0.0.1:0").unwrap();
    worker.count(2);
    worker.on_handshake(
        |req| match req.protocols().find(|p| ["chat", "superchat"].contains(p)) {
            Some(p) => Handshake::accept_protocol(p),
            None => Handshake::accept(),
        },
    );
    worker.on_message(|conn, msg| {
        if let Some(command) = msg.as_text().and_then(|t| t.strip_prefix("close ")) {
            let (code, reason) = command.split_once(' ').unwrap_or((command, ""));
            let code: u16 = code.parse().unwrap_or(1000);
            conn.close(code, reason)?;
        } else {
            conn.send(msg)?;
        }
        Ok(())
    });
    worker.start().unwrap()
}

/// Runs a checklist script to completion (bounded), printing its report; panics unless it
/// passed every check.
fn run_checklist(command: Command, what: &str) {
    let output = run_to_end(command, what, Duration::from_secs(90));
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!(
        "{what}:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{what} failed:\n{stdout}");
    assert!(stdout.contains(" passed, 0 failed"), "{what}: {stdout}");
}

/// A peer that writes more than a pipe holds, on both streams, before it exits: its output
/// is read while it runs, so it ends at once (read only after its exit, it would block on
/// the full pipe until the limit).
#[test]
fn a_chatty_peer_does_not_block_on_a_full_pipe() {
    let mut command = Command::new("sh");
    command.args([
        "-c",
        "head -c 1048576 /dev/zero && head -c 1048576 /dev/zero >&2",
    ]);
    let output = run_to_end(command, "a chatty peer", Duration::from_secs(20));
    assert!(output.status.success(), "{:?}", output.status);
    assert_eq!(
        (output.stdout.len(), output.stderr.len()),
        (1 << 20, 1 << 20)
    );
}

#[test]
#[ignore = "needs the interop peers: bash interop/setup.sh"]
fn python_websockets_client_against_our_server() {
    let server = interop_server();
    let url = format!("ws://{}/", server.local_addr());
    let mut command = Command::new(python());
    command
        .arg(repo_root().join("interop/python/client_check.py"))
        .arg(&url);
    run_checklist(command, "python client_check");
    server.shutdown();
}

#[test]
#[ignore = "needs the interop peers: bash interop/setup.sh"]
fn node_ws_client_against_our_server() {
    let server = interop_server();
    let url = format!("ws://{}/", server.local_addr());
    let mut command = Command::new("node");
    command
        .arg(repo_root().join("interop/node/client_check.mjs"))
        .arg(&url);
    run_checklist(command, "node client_check");
    server.shutdown();
}

fn python_server() -> PeerServer {
    let mut command = Command::new(python());
    command.arg(repo_root().join("interop/python/echo_server.py"));
    PeerServer::start(command)
}

fn node_server() -> PeerServer {
    let mut command = Command::new("node");
    command.arg(repo_root().join("interop/node/echo_server.mjs"));
    PeerServer::start(command)
}

// ----- our client against their servers ------------------------------------------------

/// The same checklist the peers' `client_check` scripts run, with our client.
async fn client_checklist(port: u16) {
    let url = format!("ws://127.0.0.1:{port}/");

    // subprotocol chosen, and none
    let ws = WebSocket::connect(&url, ["chat"]).await.unwrap();
    assert_eq!(ws.protocol(), "chat");
    ws.close(1000, "").unwrap();
    closed(&ws).await;
    let ws = WebSocket::connect(&url, ["x-unknown"]).await.unwrap();
    assert_eq!(ws.protocol(), "");

    // messages: multi-byte UTF-8, empty text and binary, 1 MiB binary, a burst of 100
    let text = "κόσμε 🎉 hello ✓";
    ws.send(text).unwrap();
    assert_eq!(message(&ws).await, Message::text(text));
    ws.send("").unwrap();
    assert_eq!(message(&ws).await, Message::text(""));
    ws.send(Vec::new()).unwrap();
    assert_eq!(message(&ws).await, Message::binary(Vec::new()));
    let big: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    ws.send(big.clone()).unwrap();
    assert_eq!(message(&ws).await, Message::binary(big));
    for i in 0..100 {
        ws.send(format!("msg-{i}")).unwrap();
    }
    for i in 0..100 {
        assert_eq!(message(&ws).await, Message::text(format!("msg-{i}")));
    }

    // close from our side: the server answers with our code
    ws.close(4000, "client bye").unwrap();
    let info = closed(&ws).await;
    assert!(info.was_clean, "{info:?}");
    assert_eq!(info.code.as_u16(), 4000);

    // close from their side: we see their code and reason
    let ws = WebSocket::connect(&url, ["chat"]).await.unwrap();
    ws.send("close 4001 server bye").unwrap();
    let info = closed(&ws).await;
    assert!(info.was_clean, "{info:?}");
    assert_eq!(
        (info.code.as_u16(), info.reason.as_str()),
        (4001, "server bye")
    );
}

#[tokio::test]
#[ignore = "needs the interop peers: bash interop/setup.sh"]
async fn our_client_against_python_websockets_server() {
    let server = python_server();
    client_checklist(server.port).await;
}

#[tokio::test]
#[ignore = "needs the interop peers: bash interop/setup.sh"]
async fn our_client_against_node_ws_server() {
    let server = node_server();
    client_checklist(server.port).await;
}

// ----- permessage-deflate ----------------------------------------------------------------

/// The same checks with permessage-deflate on (feature `deflate`).
#[cfg(feature = "deflate")]
mod deflate {
    use super::*;

    #[test]
    #[ignore = "needs the interop peers: bash interop/setup.sh"]
    fn python_websockets_client_against_our_server_with_deflate() {
        let server = interop_server();
        let url = format!("ws://{}/", server.local_addr());
        let mut command = Command::new(python());
        command
            .arg(repo_root().join("interop/python/client_check.py"))
            .arg("--deflate")
            .arg(&url);
        run_checklist(command, "python client_check --deflate");
        server.shutdown();
    }

    /// What our server compresses for a client that asked for `server_max_window_bits=8`
    /// inflates with zlib's raw inflate and a 256-byte window, a decoder we did not write
    /// that refuses any back-reference its window does not reach
    /// (`interop/python/deflate_window_check.py`): with our side's context reset after each
    /// message (the default) and kept, and after a connection with a 12-bit window (the
    /// server's default) left its compressor to the worker thread.
    #[test]
    #[ignore = "needs the interop peers: bash interop/setup.sh"]
    fn an_8_bit_window_client_inflates_what_our_server_compresses() {
        use wsworker::proto::deflate::DeflateConfig;

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for (takeover, config) in [
            (
                false,
                DeflateConfig::default().server_no_context_takeover(true),
            ),
            (true, DeflateConfig::default()),
        ] {
            let mut worker = Worker::new("websocket://127.0.0.1:0").unwrap();
            worker.count(1);
            worker.permessage_deflate(Some(config));
            worker.on_message(|conn, msg| {
                conn.send(msg)?;
                Ok(())
            });
            let server = worker.start().unwrap();
            let url = format!("ws://{}/", server.local_addr());
            runtime.block_on(async {
                let ws = WebSocket::builder(url.as_str()).connect().await.unwrap();
                assert!(
                    ws.extensions().starts_with("permessage-deflate"),
                    "{}",
                    ws.extensions()
                );
                let text = "a message that compresses well ".repeat(100);
                ws.send(text.as_str()).unwrap();
                assert_eq!(message(&ws).await, Message::text(text));
                ws.close(1000, "").unwrap();
                closed(&ws).await;
            });
            let mut command = Command::new(python());
            command
                .arg(repo_root().join("interop/python/deflate_window_check.py"))
                .arg(&url);
            run_checklist(
                command,
                &format!("deflate_window_check (context takeover: {takeover})"),
            );
            server.shutdown();
        }
    }

    /// A server whose every message goes to everyone through the Hub (`send_to_all`),
    /// reporting each connection's id as it opens.
    fn fanout_server() -> (RunningServer, wsworker::Hub, std::sync::mpsc::Receiver<u64>) {
        let mut worker = Worker::new("websocket://127.0.0.1:0").unwrap();
        worker.count(2);
        let hub = worker.hub();
        let sender = hub.clone();
        let (opened_tx, opened) = std::sync::mpsc::channel();
        worker.on_connect(move |conn| {
            let _ = opened_tx.send(conn.id());
        });
        worker.on_message(move |_, msg| {
            sender.send_to_all(msg);
            Ok(())
        });
        (worker.start().unwrap(), hub, opened)
    }

    /// Message `k` of `fanout_check.py` (which makes the same).
    fn fanout_message(k: usize) -> String {
        format!(
            "fan-out {k}: {}",
            "the quick brown fox jumps over the lazy dog ".repeat(10 * k + 5)
        )
    }

    /// Python `websockets` clients (their own inflate, with the window they agreed to) get
    /// the Hub's messages compressed once for all of them.
    #[test]
    #[ignore = "needs the interop peers: bash interop/setup.sh"]
    fn python_websockets_clients_take_a_fan_out_compressed_once() {
        const CLIENTS: usize = 3;
        const MESSAGES: usize = 4;
        let (server, hub, opened) = fanout_server();
        let url = format!("ws://{}/", server.local_addr());
        let mut command = Command::new(python());
        command
            .arg(repo_root().join("interop/python/fanout_check.py"))
            .arg(&url)
            .arg(CLIENTS.to_string())
            .arg(MESSAGES.to_string());
        let peer = std::thread::spawn(move || {
            run_checklist(command, "python fanout_check");
        });
        for _ in 0..CLIENTS {
            opened.recv_timeout(common::WAIT).expect("a python client");
        }
        let before = hub.connections().fanout_counts();
        for k in 0..MESSAGES {
            assert_eq!(hub.send_to_all(fanout_message(k)), CLIENTS);
        }
        let after = hub.connections().fanout_counts();
        assert_eq!(
            (
                after.compressions - before.compressions,
                after.compressed_sends - before.compressed_sends
            ),
            (MESSAGES as u64, (MESSAGES * CLIENTS) as u64),
            "one compression per message, taken by every client"
        );
        hub.send_to_all("--end--");
        peer.join().expect("fanout_check passed");
        server.shutdown();
    }

    /// `deflate_window_check.py` (zlib's strict inflate with a 256-byte window) with its
    /// messages sent back through the Hub, beside one of our clients with the server's
    /// default 12-bit window: each window gets a compression of its own, and the one made
    /// for 8 bits never refers further back than 256 bytes.
    #[test]
    #[ignore = "needs the interop peers: bash interop/setup.sh"]
    fn an_8_bit_window_client_inflates_a_fan_out_compressed_for_its_window() {
        let (server, hub, opened) = fanout_server();
        let url = format!("ws://{}/", server.local_addr());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let ws = runtime
            .block_on(WebSocket::builder(url.as_str()).connect())
            .unwrap();
        opened.recv_timeout(common::WAIT).expect("our client");
        let mut command = Command::new(python());
        command
            .arg(repo_root().join("interop/python/deflate_window_check.py"))
            .arg(&url);
        let before = hub.connections().fanout_counts();
        run_checklist(command, "deflate_window_check through the Hub");
        let after = hub.connections().fanout_counts();
        // The check's six messages, each compressed once for 8 bits (served with 9) and once
        // for 12: all six shrink with 4 KiB of window, five with 256 bytes (its 1000-byte
        // repeats go plain to that client, as its report says).
        let counts = (
            after.compressions - before.compressions,
            after.compressed_sends - before.compressed_sends,
        );
        assert_eq!(counts, (11, 11));
        runtime.block_on(async {
            for _ in 0..6 {
                assert!(!message(&ws).await.is_text());
            }
        });
        server.shutdown();
    }

    #[test]
    #[ignore = "needs the interop peers: bash interop/setup.sh"]
    fn node_ws_client_against_our_server_with_deflate() {
        let server = interop_server();
        let url = format!("ws://{}/", server.local_addr());
        let mut command = Command::new("node");
        command
            .arg(repo_root().join("interop/node/client_check.mjs"))
            .arg("--deflate")
            .arg(&url);
        run_checklist(command, "node client_check --deflate");
        server.shutdown();
    }

    /// Our client with each permessage-deflate setting alone, then all together, against a
    /// peer's echo server with compression on: the answer is accepted and messages of every
    /// kind make the round trip. `smallest_server_window` is the smallest window the peer can
    /// compress with (Python's zlib refuses 8 bits).
    async fn deflate_round_trips(port: u16, smallest_server_window: u8) {
        use wsworker::proto::deflate::DeflateConfig;

        let url = format!("ws://127.0.0.1:{port}/");
        let json: String = (0..3000)
            .map(|i| format!("{{\"id\": {i}, \"name\": \"item {}\"}}", i % 37))
            .collect();
        let binary: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let configs = [
            DeflateConfig::default(),
            DeflateConfig::default().server_no_context_takeover(true),
            DeflateConfig::default().client_no_context_takeover(true),
            DeflateConfig::default().server_max_window_bits(10),
            DeflateConfig::default().client_max_window_bits(9),
            DeflateConfig::default()
                .server_no_context_takeover(true)
                .client_no_context_takeover(true)
                .server_max_window_bits(smallest_server_window)
                .client_max_window_bits(8)
                .threshold(0)
                .level(1),
        ];
        for config in configs {
            let ws = WebSocket::builder(url.as_str())
                .permessage_deflate(Some(config.clone()))
                .connect()
                .await
                .unwrap_or_else(|e| panic!("{config:?}: {e}"));
            assert!(
                ws.extensions().starts_with("permessage-deflate"),
                "{config:?}: {:?}",
                ws.extensions()
            );
            for sent in [
                Message::text(json.as_str()),
                Message::binary(binary.clone()),
                Message::text(json.as_str()),
                Message::text("short"),
                Message::text(&json[..5000]),
            ] {
                ws.send(sent.clone()).unwrap();
                assert_eq!(message(&ws).await, sent, "{config:?}");
            }
            ws.close(1000, "").unwrap();
            assert!(closed(&ws).await.was_clean, "{config:?}");
        }
    }

    fn python_server_with_deflate() -> PeerServer {
        let mut command = Command::new(python());
        command
            .arg(repo_root().join("interop/python/echo_server.py"))
            .arg("--deflate");
        PeerServer::start(command)
    }

    fn node_server_with_deflate() -> PeerServer {
        let mut command = Command::new("node");
        command
            .arg(repo_root().join("interop/node/echo_server.mjs"))
            .arg("--deflate");
        PeerServer::start(command)
    }

    #[tokio::test]
    #[ignore = "needs the interop peers: bash interop/setup.sh"]
    async fn our_client_against_python_websockets_server_with_deflate() {
        let server = python_server_with_deflate();
        // The same checklist, compressed (our client offers permessage-deflate by default).
        client_checklist(server.port).await;
        deflate_round_trips(server.port, 9).await;
    }

    #[tokio::test]
    #[ignore = "needs the interop peers: bash interop/setup.sh"]
    async fn our_client_against_node_ws_server_with_deflate() {
        let server = node_server_with_deflate();
        client_checklist(server.port).await;
        deflate_round_trips(server.port, 8).await;
    }
}

// ----- HTTP/2 ----------------------------------------------------------------------------

/// A reader that stops over HTTP/2, with Node's own `http2` client: the send-buffer limits
/// apply as over HTTP/1.1 (tests/http2.rs does the same with hyper's client).
#[cfg(feature = "hyper")]
mod http2 {
    use std::io::{BufRead, BufReader};

    use std::process::{Child, Stdio};

    use common::h2::{Flooded, flooding_worker, full_then_1008, full_then_drops, next_flooded};
    use wsworker::server::OverflowPolicy;

    use super::*;

    const FLOOD: usize = 8 << 20;
    const SOFT: usize = 128 * 1024;
    const HARD: usize = 512 * 1024;

    /// `h2_check.mjs --stall` on `server`: one WebSocket over cleartext HTTP/2 that asks for
    /// [`FLOOD`] bytes and reads none; it exits when its stdin closes (or when this is
    /// dropped: killed by its PID).
    struct StalledNode(Child);

    impl StalledNode {
        fn start(server: &RunningServer) -> Self {
            let mut child = Command::new("node")
                .arg(repo_root().join("interop/node/h2_check.mjs"))
                .arg(format!("http://{}/", server.local_addr()))
                .arg("--stall")
                .env("STALL_BYTES", FLOOD.to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("cannot start node; run `bash interop/setup.sh`");
            let stdout = BufReader::new(child.stdout.take().unwrap());
            let said: Vec<String> = stdout
                .lines()
                .map_while(Result::ok)
                .take_while(|line| line != "stalled")
                .collect();
            assert_eq!(said, ["ok settings"], "h2_check --stall did not get going");
            Self(child)
        }

        /// Closes its stdin: it exits.
        fn release(mut self) {
            drop(self.0.stdin.take());
            let _ = self.0.wait();
        }
    }

    impl Drop for StalledNode {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    #[ignore = "needs the interop peers: bash interop/setup.sh"]
    fn node_http2_reader_that_stops_gets_on_buffer_full_then_1008() {
        let (worker, seen) = flooding_worker(OverflowPolicy::Close, SOFT, HARD);
        let metrics = worker.metrics();
        let server = worker.start().unwrap();
        let node = StalledNode::start(&server);
        full_then_1008(&seen, &metrics, SOFT, HARD);
        node.release();
        server.shutdown();
    }

    #[test]
    #[ignore = "needs the interop peers: bash interop/setup.sh"]
    fn node_http2_reader_that_stops_gets_on_buffer_full_then_drops() {
        let (worker, seen) = flooding_worker(OverflowPolicy::DropNew, SOFT, HARD);
        let metrics = worker.metrics();
        let server = worker.start().unwrap();
        let node = StalledNode::start(&server);
        full_then_drops(&seen, &metrics, SOFT, HARD, FLOOD);
        node.release();
        assert!(
            matches!(next_flooded(&seen), Flooded::Closed(_)),
            "the connection ends with the client"
        );
        server.shutdown();
    }
}
