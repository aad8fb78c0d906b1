//! A node too slow for Redis: its subscriber stalls (the process is stopped) while a room is
//! busy, Redis cuts it off at its pub/sub output limit, and the node — running again —
//! reconnects and fills the gap from the room's stream: its client misses nothing.
//!
//! Ignored by default: it needs `redis-server` (interop/setup.sh installs it).

mod common;
#[path = "../../redis/tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::{Serve, cluster};
use support::{Inbox, RedisServer, eventually};
use wsworker::WebSocket;

/// Node `id` of the chat sharing `redis`, with one worker and its counters served.
fn chat_node(redis: &RedisServer, id: u16) -> Serve {
    cluster::chat_node(&redis.url(), id)
        .count(1)
        .args(&["--metrics", "127.0.0.1:0"])
        .start()
}

/// An engine counter from the node's `/metrics`.
fn metric(node: &Serve, name: &str) -> u64 {
    let mut stream = TcpStream::connect(node.metrics.unwrap()).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (interop/setup.sh installs it)"]
async fn a_node_cut_off_by_redis_for_being_slow_fills_the_gap_and_misses_nothing() {
    // 400 messages of 16 KiB: 6.4 MB, past what the stopped node's socket buffers and the
    // 256 kB limit hold, and within the room's 1,000 messages of history.
    const N: usize = 400;
    const SIZE: usize = 16 << 10;
    let redis = RedisServer::start();
    let () = redis.query(&[
        "CONFIG",
        "SET",
        "client-output-buffer-limit",
        "pubsub 256kb 128kb 1",
    ]);
    let fast = chat_node(&redis, 1);
    let slow = chat_node(&redis, 2);
    let url = |node: &Serve| format!("{}?room=busy", node.url());
    let publisher = WebSocket::connect(&url(&fast), [""; 0]).await.unwrap();
    let mut echo = Inbox::new(publisher);
    let mut listener = Inbox::new(WebSocket::connect(&url(&slow), [""; 0]).await.unwrap());
    eventually("both members are in Redis", || {
        let members: Vec<String> = redis.query(&["SMEMBERS", "wsw:p:g:busy"]);
        members.len() == 2
    });
    let message = |i: usize| format!("{i:05}{}", "x".repeat(SIZE - 5));

    slow.signal("STOP");
    for i in 1..=N {
        echo.ws.send(message(i)).unwrap();
    }
    // Every message published: the publisher hears each back through Redis.
    for i in 1..=N {
        assert_eq!(echo.next().await[..5], message(i)[..5]);
    }
    eventually("Redis cut the stalled subscriber off", || {
        let clients: String = redis.query(&["CLIENT", "LIST", "TYPE", "pubsub"]);
        clients.lines().count() == 1
    });
    slow.signal("CONT");

    for i in 1..=N {
        let got = listener.next().await;
        assert_eq!(got.len(), SIZE);
        assert_eq!(got[..5], message(i)[..5], "message {i} in its place");
    }
    assert!(metric(&slow, "wsworker_engine_gap_fills_total") >= 1);
    assert!(metric(&slow, "wsworker_engine_filled_total") >= 1);
    assert_eq!(metric(&slow, "wsworker_engine_resyncs_total"), 0);
}
