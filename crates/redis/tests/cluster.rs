//! Three nodes and one real `redis-server`: every client's sequence is exact (no loss, no
//! duplicate, in order), and a node hears only the topics it has members of.
//!
//! Ignored by default: they need `redis-server` (interop/setup.sh installs it); `.ci/run`
//! runs them with `cargo test -- --ignored`.

mod support;

use std::collections::HashSet;

use support::{Node, RedisServer, eventually, next_text, try_next_text};
use wsworker::hub::Target;

const NEEDS_REDIS: &str = "needs redis-server (interop/setup.sh installs it)";

/// Subscribers of `channel` in Redis.
fn numsub(redis: &RedisServer, channel: &str) -> i64 {
    let (_, n): (String, i64) = redis.query(&["PUBSUB", "NUMSUB", channel]);
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (interop/setup.sh installs it)"]
async fn ten_thousand_messages_to_all_reach_every_node_in_order() {
    let _ = NEEDS_REDIS;
    const N: usize = 10_000;
    let redis = RedisServer::start();
    let nodes: Vec<Node> = (1..=3).map(|id| Node::start(&redis, id)).collect();
    let mut clients = Vec::new();
    for node in &nodes {
        for _ in 0..2 {
            clients.push(node.connect("/").await.0);
        }
    }
    let readers: Vec<_> = clients
        .into_iter()
        .map(|ws| {
            tokio::spawn(async move {
                let mut got = Vec::with_capacity(N);
                for _ in 0..N {
                    got.push(next_text(&ws).await);
                }
                got
            })
        })
        .collect();
    let hub = nodes[0].hub.clone();
    std::thread::spawn(move || {
        for i in 1..=N {
            hub.send_to_all(i.to_string());
        }
    });
    let expected: Vec<String> = (1..=N).map(|i| i.to_string()).collect();
    for reader in readers {
        assert_eq!(reader.await.unwrap(), expected);
    }
    for node in &nodes {
        assert!(node.resyncs.try_recv().is_err(), "no resync");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (interop/setup.sh installs it)"]
async fn a_user_on_two_nodes_hears_a_third_which_holds_no_subscription_for_it() {
    let redis = RedisServer::start();
    let nodes: Vec<Node> = (1..=3).map(|id| Node::start(&redis, id)).collect();
    let (tom_1, id_1) = nodes[0].connect("/?user=tom").await;
    let (tom_3, id_3) = nodes[2].connect("/?user=tom").await;
    let (ann_2, _) = nodes[1].connect("/?user=ann").await;

    // The memberships are in effect cluster-wide once queries from another node see them
    // (each node writes its own: one round trip after its connection opened).
    let mut both = vec![id_1, id_3];
    both.sort_unstable();
    eventually("both of tom's connections are seen from node 2", || {
        futures_lite_block(nodes[1].hub.cluster().uid_connections("tom")) == both
    });
    assert!(nodes[1].hub.cluster().is_uid_online("tom").await.unwrap());
    assert!(!nodes[1].hub.cluster().is_uid_online("bob").await.unwrap());
    assert!(!nodes[1].hub.is_uid_online("tom"), "not on node 2 itself");

    // A node subscribes once it has read where the topic stands (what is published
    // meanwhile is read from the topic's stream): wait for it.
    eventually("nodes 1 and 3 subscribed to tom's channel", || {
        numsub(&redis, "wsw:c:u:tom") == 2
    });
    eventually("node 2 subscribed to ann's channel", || {
        numsub(&redis, "wsw:c:u:ann") == 1
    });
    let channels: Vec<String> = redis.query(&["PUBSUB", "CHANNELS", "wsw:c:u:*"]);
    assert_eq!(
        channels.into_iter().collect::<HashSet<_>>(),
        HashSet::from(["wsw:c:u:tom".to_owned(), "wsw:c:u:ann".to_owned()])
    );

    nodes[1].hub.send_to_uid("tom", "hi tom");
    nodes[1]
        .hub
        .send(Target::uid("tom").except(id_3), "only the first");
    nodes[1].hub.send_to_uid("ann", "hi ann");
    assert_eq!(next_text(&tom_1).await, "hi tom");
    assert_eq!(next_text(&tom_3).await, "hi tom");
    assert_eq!(next_text(&tom_1).await, "only the first");
    assert_eq!(next_text(&ann_2).await, "hi ann");

    // One connection, addressed from another node by its id alone.
    nodes[1].hub.send_to_conn(id_3, "to the third's tom");
    assert_eq!(next_text(&tom_3).await, "to the third's tom");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (interop/setup.sh installs it)"]
async fn a_group_member_hears_the_group_until_it_leaves() {
    let redis = RedisServer::start();
    let nodes: Vec<Node> = (1..=3).map(|id| Node::start(&redis, id)).collect();
    let (member, member_id) = nodes[1].connect("/").await;
    let (witness, _) = nodes[0].connect("/?room=red").await;
    nodes[1].hub.join_group(member_id, "red").unwrap();
    eventually("node 2's join is seen from node 3", || {
        futures_lite_block(nodes[2].hub.cluster().group_len("red")) == 2
    });

    nodes[2].hub.send_to_group("red", "first");
    assert_eq!(next_text(&member).await, "first");
    assert_eq!(next_text(&witness).await, "first");

    nodes[1].hub.leave_group(member_id, "red");
    eventually("node 2 unsubscribed from the group", || {
        numsub(&redis, "wsw:c:g:red") == 1
    });
    nodes[2].hub.send_to_group("red", "second");
    assert_eq!(next_text(&witness).await, "second");
    // Node 2's own channel, after the group's message: the member hears this, not that.
    nodes[2].hub.send_to_conn(member_id, "end");
    assert_eq!(next_text(&member).await, "end");

    // ungroup from node 3 empties it on every node.
    nodes[2].hub.ungroup("red");
    eventually("the group is empty everywhere", || {
        futures_lite_block(nodes[2].hub.cluster().group_len("red")) == 0
    });
    assert_eq!(nodes[0].hub.group_len("red"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (interop/setup.sh installs it)"]
async fn two_nodes_publishing_at_once_show_every_node_one_order() {
    const EACH: usize = 2_000;
    let redis = RedisServer::start();
    let nodes: Vec<Node> = (1..=3).map(|id| Node::start(&redis, id)).collect();
    let mut clients = Vec::new();
    for node in &nodes {
        clients.push(node.connect("/?room=race").await.0);
    }
    eventually("every member is seen", || {
        futures_lite_block(nodes[0].hub.cluster().group_len("race")) == 3
    });
    // Presence is written before a node's subscription is up: a burst larger than the
    // history sent in between would be trimmed before the node's fill reads it (reported
    // to on_resync, as it must be, but not what this test is about).
    eventually("every node hears the group", || {
        numsub(&redis, "wsw:c:g:race") == 3
    });
    let readers: Vec<_> = clients
        .into_iter()
        .map(|ws| {
            tokio::spawn(async move {
                let mut got = Vec::with_capacity(2 * EACH);
                while got.len() < 2 * EACH {
                    match try_next_text(&ws).await {
                        Some(text) => got.push(text),
                        None => break,
                    }
                }
                got
            })
        })
        .collect();
    let senders: Vec<_> = [0, 2]
        .into_iter()
        .map(|n| {
            let hub = nodes[n].hub.clone();
            std::thread::spawn(move || {
                for i in 0..EACH {
                    hub.send_to_group("race", format!("{n}:{i}"));
                }
            })
        })
        .collect();
    for sender in senders {
        sender.join().unwrap();
    }
    let mut orders = Vec::new();
    for reader in readers {
        orders.push(reader.await.unwrap());
    }
    for (n, order) in orders.iter().enumerate() {
        assert_eq!(
            order.len(),
            2 * EACH,
            "node {}'s client got {} messages, the last {:?}; engine:\n{}",
            n + 1,
            order.len(),
            order.last(),
            nodes[n].hub.engine_prometheus()
        );
    }
    assert_eq!(orders[0], orders[1], "nodes 1 and 2 saw one order");
    assert_eq!(orders[0], orders[2], "nodes 1 and 3 saw one order");
    for n in [0, 2] {
        let own: Vec<&String> = orders[0]
            .iter()
            .filter(|m| m.starts_with(&format!("{n}:")))
            .collect();
        let sent: Vec<String> = (0..EACH).map(|i| format!("{n}:{i}")).collect();
        assert_eq!(
            own,
            sent.iter().collect::<Vec<_>>(),
            "each sender's order kept"
        );
    }
}

/// Runs a query future to its end from a synchronous check.
fn futures_lite_block<T>(future: impl Future<Output = wsworker::Result<T>>) -> T {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(future)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (interop/setup.sh installs it)"]
async fn a_node_that_stops_sends_what_it_queued_then_leaves() {
    const N: usize = 8_000; // within the queue (10,000)
    let redis = RedisServer::start();
    let first = Node::start(&redis, 1);
    let second = Node::start(&redis, 2);
    let (listener, _) = second.connect("/?room=r").await;
    let (_member, _) = first.connect("/?room=r").await;
    eventually("both members are seen", || {
        futures_lite_block(second.hub.cluster().group_len("r")) == 2
    });
    for i in 1..=N {
        first.hub.send_to_group("r", i.to_string());
    }
    // At once: the server stops (its connections close and leave), then its Hub and engine go.
    let Node { server, hub, .. } = first;
    tokio::task::spawn_blocking(move || {
        server.shutdown();
        drop(hub);
    })
    .await
    .unwrap();
    // The engine has stopped: its node left Redis, and what it had queued went out first.
    let nodes: Vec<String> = redis.query(&["ZRANGE", "wsw:nodes", "0", "-1"]);
    assert_eq!(nodes, ["2"]);
    for i in 1..=N {
        assert_eq!(next_text(&listener).await, i.to_string());
    }
}
