//! `wsworker serve --mode chat --redis URL --node-id N` as a cluster: nodes are child
//! processes sharing one real `redis-server`, their clients talk to them over loopback. A
//! node killed with SIGKILL under load leaves the others gapless and its presence purged;
//! two Chromium pages on two nodes chat through the demo page; and the command's errors
//! around `--redis` and `--node-id`.
//!
//! The tests that need `redis-server` (and Chromium) are ignored by default:
//! interop/setup.sh installs them, and `.ci/run` runs them with `cargo test -- --ignored`.

mod common;
// The Redis harness of wsworker-redis's own tests: a `redis-server` per test on a free port.
#[path = "../../redis/tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::cluster::{chat_node, probe_until_ready};
use common::{Serve, chromium_check, wsworker_within};
use support::{RedisServer, WAIT};
use tokio::sync::mpsc;
use wsworker::hub::engine::node_of;
use wsworker::{Message, WebSocket, WsEvent};

/// The chat room of the load test, its presence set and its pub/sub channel in Redis
/// (crates/redis/src/scripts.rs: `P:p:TOPIC`, `P:c:TOPIC`, a group's topic is `g:NAME`).
const ROOM: &str = "r";
const ROOM_PRESENCE: &str = "wsw:p:g:r";
const ROOM_CHANNEL: &str = "wsw:c:g:r";
/// The nodes' heartbeats: a sorted set of node ids.
const NODES: &str = "wsw:nodes";

/// What the load test's publisher sends before the numbered messages, until every client
/// has received one: then every client's node is subscribed to the room.
const PROBE: &str = "probe";

/// A chat client of `serve` in room [`ROOM`] as user `user`.
async fn room_client(serve: &Serve, user: &str) -> WebSocket {
    let url = format!("{}?room={ROOM}&user={user}", serve.url());
    WebSocket::connect(&url, [""; 0]).await.unwrap()
}

/// What a client read: the texts after the probes, and whether its connection ended; and
/// the client, kept open (a client closed would leave the room).
struct Received {
    texts: Vec<String>,
    ended: bool,
    _ws: WebSocket,
}

/// Reads `ws` until it has `want` texts after the probes, its connection ends, or nothing
/// comes for [`WAIT`]. Says `ready` on its first probe. A probe after the first numbered
/// message is kept, so that the comparison fails on it.
async fn read_room(ws: WebSocket, want: usize, ready: mpsc::UnboundedSender<()>) -> Received {
    let mut texts = Vec::with_capacity(want);
    let mut probed = false;
    while texts.len() < want {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Ok(Some(WsEvent::Message(Message::Text(text)))) => {
                if text.starts_with(PROBE) && texts.is_empty() {
                    if !probed {
                        probed = true;
                        let _ = ready.send(());
                    }
                } else {
                    texts.push(text.to_string());
                }
            }
            Ok(Some(WsEvent::Message(Message::Binary(_)))) => texts.push("(binary)".to_owned()),
            Ok(Some(WsEvent::Close(_)) | None) => {
                return Received {
                    texts,
                    ended: true,
                    _ws: ws,
                };
            }
            // Open, or an error (a Close follows it).
            Ok(Some(_)) => {}
            Err(_) => break,
        }
    }
    Received {
        texts,
        ended: false,
        _ws: ws,
    }
}

/// Checks that `got` is `1`, `2`, … `n` (`whole`), or a beginning of it (not `whole`), and
/// says where it is not without printing thousands of messages.
fn check_sequence(who: &str, got: &[String], n: usize, whole: bool) {
    if let Some(i) = (0..got.len().min(n)).find(|&i| got[i] != (i + 1).to_string()) {
        panic!(
            "{who}: message {} is {:?}, expected {} (the ones before: {:?})",
            i + 1,
            got[i],
            i + 1,
            &got[i.saturating_sub(3)..i]
        );
    }
    assert!(
        got.len() <= n,
        "{who}: {} messages, more than {n}",
        got.len()
    );
    if whole {
        assert_eq!(got.len(), n, "{who}: only the first {} of {n}", got.len());
    }
}

/// How many of the room's members (connection ids in its presence set) each node has.
fn room_members_by_node(redis: &RedisServer) -> HashMap<u16, usize> {
    let members: Vec<u64> = redis.query(&["SMEMBERS", ROOM_PRESENCE]);
    let mut by_node = HashMap::new();
    for id in members {
        *by_node.entry(node_of(id)).or_default() += 1;
    }
    by_node
}

/// Node `id`'s last heartbeat in Redis, if it is registered.
fn heartbeat(redis: &RedisServer, id: u16) -> Option<String> {
    redis.query(&["ZSCORE", NODES, &id.to_string()])
}

/// Subscribers of `channel` in Redis (one per node subscribed).
fn numsub(redis: &RedisServer, channel: &str) -> i64 {
    let (_, n): (String, i64) = redis.query(&["PUBSUB", "NUMSUB", channel]);
    n
}

/// Three nodes, two clients of room `r` on each and a publisher on node 1 sending 3,000
/// numbered messages to the room (10 every 10 ms); after the first 1,000, node 2 is killed
/// with SIGKILL. The clients of nodes 1 and 3 get exactly 1..=3,000 in order — node 3's
/// only through Redis, as it is another process — and node 2's a beginning of it until
/// their connections end. Node 2's memberships leave the room's presence set, and node 2
/// the heartbeats, within the node TTL (5 s) plus a heartbeat (1 s): waited for with a
/// deadline of 10 s after the kill. Nodes 1 and 3 then stop gracefully and take their own
/// memberships out at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (interop/setup.sh installs it)"]
async fn a_node_killed_under_load_leaves_the_others_gapless_and_its_presence_purged() {
    const N: usize = 3_000;
    const KILL_AFTER: usize = 1_000;
    const BATCH: usize = 10;
    /// Node TTL 5 s + heartbeat 1 s, and slack for a loaded machine.
    const PURGE_DEADLINE: Duration = Duration::from_secs(10);

    let redis = RedisServer::start();
    let mut nodes: Vec<Serve> = (1..=3)
        .map(|id| chat_node(&redis.url(), id).start())
        .collect();

    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let publisher = room_client(&nodes[0], "publisher").await;
    // (who, its node, its reader); the publisher, in the room too, reads its own messages.
    let mut readers = vec![(
        "node 1's publisher".to_owned(),
        1,
        tokio::spawn(read_room(publisher.clone(), N, ready_tx.clone())),
    )];
    for (i, node) in nodes.iter().enumerate() {
        for k in 0..2 {
            let ws = room_client(node, &format!("n{}c{k}", i + 1)).await;
            readers.push((
                format!("node {} client {k}", i + 1),
                i + 1,
                tokio::spawn(read_room(ws, N, ready_tx.clone())),
            ));
        }
    }

    // Probes until every client has one: every node has joined the room in Redis.
    let probe = |n| publisher.send(format!("{PROBE} {n}")).unwrap();
    probe_until_ready(probe, readers.len(), &mut ready_rx, WAIT).await;
    assert_eq!(numsub(&redis, ROOM_CHANNEL), 3, "each node subscribed once");
    let members = room_members_by_node(&redis);
    assert_eq!(members, HashMap::from([(1, 3), (2, 2), (3, 2)]));
    assert!(heartbeat(&redis, 2).is_some(), "node 2 beats");

    // The load, bounded in count and rate; node 2 dies a third of the way.
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut killed_at = None;
    for i in 1..=N {
        if i % BATCH == 1 {
            tick.tick().await;
        }
        publisher.send(i.to_string()).unwrap();
        if i == KILL_AFTER {
            nodes[1].kill_9();
            killed_at = Some(Instant::now());
        }
    }
    let killed_at = killed_at.unwrap();

    let mut clients = Vec::new();
    for (who, node, reader) in readers {
        let received = reader.await.unwrap();
        if node == 2 {
            assert!(received.ended, "{who}: its connection ended with its node");
            assert!(received.texts.len() < N, "{who}: cut off partway");
            check_sequence(&who, &received.texts, N, false);
        } else {
            assert!(!received.ended, "{who}: connection ended");
            check_sequence(&who, &received.texts, N, true);
        }
        clients.push(received);
    }

    // Node 2's presence is purged by the others' heartbeats.
    loop {
        let members = room_members_by_node(&redis);
        let beat = heartbeat(&redis, 2);
        if !members.contains_key(&2) && beat.is_none() {
            assert_eq!(
                members,
                HashMap::from([(1, 3), (3, 2)]),
                "nodes 1 and 3 stay"
            );
            break;
        }
        assert!(
            killed_at.elapsed() < PURGE_DEADLINE,
            "{PURGE_DEADLINE:?} after kill -9, node 2 still has {:?} room members and \
             heartbeat {beat:?}",
            members.get(&2)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for user in ["n2c0", "n2c1"] {
        let left: i64 = redis.query(&["EXISTS", &format!("wsw:p:u:{user}")]);
        assert_eq!(left, 0, "user {user}'s presence");
    }
    assert!(heartbeat(&redis, 1).is_some() && heartbeat(&redis, 3).is_some());
    support::eventually("node 2's subscription is gone", || {
        numsub(&redis, ROOM_CHANNEL) == 2
    });

    // A graceful stop takes a node's memberships out itself.
    drop((publisher, clients));
    let three = nodes.pop().unwrap();
    let one = nodes.remove(0);
    assert_eq!(three.stop(), 0);
    assert_eq!(one.stop(), 0);
    let left: i64 = redis.query(&["SCARD", ROOM_PRESENCE]);
    assert_eq!(left, 0, "no member left after the nodes stopped");
    let beating: i64 = redis.query(&["ZCARD", NODES]);
    assert_eq!(beating, 0, "no node left in the heartbeats");
}

/// Two Chromium pages in one room on two nodes (the demo page's chat view, as
/// interop/node/chat_check.mjs drives it with two URLs): alice on node 1, bób on node 2.
/// Alice's room message shows on bób's page and bób's on alice's; carol, on node 2, reaches
/// alice on node 1 with `@alice …`; dave, on node 1 without a room, reaches everyone; each
/// page's list of received messages is exact. The nodes offer resume (`--redis`): the
/// chat speaks `wsworker.resume.v1` through web/resume.js, heads and all.
#[test]
#[ignore = "needs redis-server and Chromium (interop/setup.sh installs them)"]
fn chromium_pages_on_two_nodes_chat_through_the_demo_page() {
    let redis = RedisServer::start();
    let one = chat_node(&redis.url(), 1).start();
    let two = chat_node(&redis.url(), 2).start();
    let url_one = format!("http://{}/", one.addr);
    let url_two = format!("http://{}/", two.addr);
    let stdout = chromium_check("chat_check.mjs", &[&url_one, &url_two]);
    for placed in [
        format!("alice on {url_one}"),
        format!("dave on {url_one}"),
        format!("bób on {url_two}"),
        format!("carol on {url_two}"),
    ] {
        assert!(stdout.contains(&placed), "{placed}: {stdout}");
    }
    assert!(stdout.contains("PASS exact-lists"), "{stdout}");
    assert!(
        stdout.contains(", protocol wsworker.resume.v1)"),
        "{stdout}"
    );
    assert_eq!(one.stop(), 0);
    assert_eq!(two.stop(), 0);
}

/// Runs `wsworker serve websocket://127.0.0.1:0 --mode chat ARGS`, which should fail at
/// once: its exit code, stdout and stderr. A hang (past [`WAIT`]) is a failure.
fn chat_node_failing(args: &[&str]) -> (i32, String, String) {
    let command = ["serve", "websocket://127.0.0.1:0", "--mode", "chat"];
    wsworker_within(&[&command[..], args].concat(), WAIT)
}

/// `--redis` with nothing listening: exit 1 before serving, one line naming Redis and the
/// URL without its password (the engine gives up after its 3 s connect timeout at most).
#[test]
fn serve_with_an_unreachable_redis_fails_clearly() {
    let (code, stdout, stderr) = chat_node_failing(&["--redis", "redis://:hunter2@127.0.0.1:1"]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stdout, "", "nothing announced");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("wsworker: cannot use Redis at redis://:***@127.0.0.1:1: "),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

/// `--node-id` needs `--redis`, and 0 is not a node id: usage errors (exit 2) from the
/// argument parser, before anything starts.
#[test]
fn serve_node_id_is_checked() {
    let (code, stdout, stderr) = chat_node_failing(&["--node-id", "5"]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stdout, "");
    assert!(stderr.contains("--redis <URL>"), "{stderr}");

    let (code, stdout, stderr) =
        chat_node_failing(&["--redis", "redis://127.0.0.1:1", "--node-id", "0"]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stdout, "");
    assert!(
        stderr.contains("invalid value '0' for '--node-id <ID>'"),
        "{stderr}"
    );
}

/// A second node with the id of a live one is refused (exit 1, the reason on one line);
/// the live node goes on. Both use a Redis user with a password, which neither prints.
#[test]
#[ignore = "needs redis-server (interop/setup.sh installs it)"]
fn serve_refuses_the_node_id_of_a_live_node() {
    let redis = RedisServer::start();
    let () = redis.query(&[
        "ACL", "SETUSER", "node", "on", ">hunter2", "~*", "&*", "+@all",
    ]);
    let url = redis.url().replace("redis://", "redis://node:hunter2@");
    let printed = redis.url().replace("redis://", "redis://node:***@");
    let args = ["--redis", &url, "--node-id", "1"];
    let one = Serve::start(&[&["websocket://127.0.0.1:0", "--mode", "chat"][..], &args].concat());
    assert_eq!(one.node, Some(1));
    assert_eq!(one.redis.as_deref(), Some(printed.as_str()));

    let (code, stdout, stderr) = chat_node_failing(&args);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stdout, "", "nothing announced");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!("wsworker: cannot use Redis at {printed}: ")),
        "{stderr}"
    );
    assert!(last.contains("node id 1 is taken"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(heartbeat(&redis, 1).is_some(), "node 1 still registered");
    assert_eq!(one.stop(), 0);
}
