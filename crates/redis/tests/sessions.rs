//! What the engine keeps for clients that resume, against a real `redis-server`: topics'
//! positions and history with message ids, sessions written ahead and claimed once, and
//! epochs that outlive a restart only when Redis is durable.
//!
//! Ignored by default (they need `redis-server`, which `interop/setup.sh` installs); `.ci/run`
//! runs them with `--include-ignored`.

mod support;

use std::time::Duration;

use support::{Node, RedisServer};
use wsworker::hub::engine::{History, Reply, Sessions};
use wsworker::hub::{EngineError, Stamp, Target, Topic};
use wsworker_redis::{RedisConfig, RedisEngine};

/// Calls `f` with a reply that resolves the returned future.
async fn ask<T: Send + 'static>(f: impl FnOnce(Reply<T>)) -> Result<T, EngineError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    f(Box::new(move |answer| {
        let _ = tx.send(answer);
    }));
    tokio::time::timeout(support::WAIT, rx)
        .await
        .expect("an answer")
        .expect("the engine answers")
}

fn engine(redis: &RedisServer, node: u16) -> RedisEngine {
    RedisEngine::start(RedisConfig::new(redis.url()).node_id(node)).unwrap()
}

async fn position(engine: &RedisEngine, topic: Topic) -> Stamp {
    let sessions = engine_sessions(engine);
    ask(|reply| sessions.positions(vec![topic], reply))
        .await
        .unwrap()[0]
}

fn engine_sessions(engine: &RedisEngine) -> &dyn Sessions {
    wsworker::hub::Engine::sessions(engine).expect("the Redis engine keeps sessions")
}

async fn publish(node: &Node, group: &str, text: String) -> Stamp {
    let position = node
        .hub
        .send_confirmed(Target::group(group), text)
        .await
        .unwrap()
        .expect("a place in the topic");
    Stamp {
        epoch: position.epoch,
        offset: position.offset,
        id: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (interop/setup.sh installs it)"]
async fn a_position_given_before_the_first_message_keeps_its_epoch_and_history_has_ids() {
    let redis = RedisServer::start();
    let node = Node::start(&redis, 1);
    let reader = engine(&redis, 2);
    let sessions = engine_sessions(&reader);
    let room = Topic::Group("room".into());

    // A topic with no message gets an epoch at offset 0, and keeps it.
    let empty = position(&reader, room.clone()).await;
    assert!(empty.epoch > 0);
    assert_eq!((empty.offset, empty.id), (0, 0));
    assert_eq!(position(&reader, room.clone()).await, empty);

    let mut published = Vec::new();
    for i in 1..=5 {
        published.push(publish(&node, "room", format!("m{i}")).await);
    }
    assert!(published.iter().all(|p| p.epoch == empty.epoch));
    assert_eq!(
        published.iter().map(|p| p.offset).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );

    let History { top, entries } = ask(|reply| sessions.history(room.clone(), 2, 10, reply))
        .await
        .unwrap();
    let entries = entries.expect("within the maximum");
    assert_eq!(
        entries.iter().map(|(s, _)| s.offset).collect::<Vec<_>>(),
        [2, 3, 4, 5]
    );
    let texts: Vec<String> = entries
        .iter()
        .map(|(_, e)| e.message.to_text().unwrap().to_owned())
        .collect();
    assert_eq!(texts, ["m2", "m3", "m4", "m5"]);
    assert!(
        entries
            .iter()
            .all(|(s, _)| s.epoch == empty.epoch && s.id != 0)
    );
    let ids: std::collections::HashSet<u64> = entries.iter().map(|(s, _)| s.id).collect();
    assert_eq!(ids.len(), 4, "every message has its own id");
    // The top is the last entry, id and all; a position read now says the same.
    assert_eq!(top, entries[3].0);
    assert_eq!(position(&reader, room.clone()).await, top);

    // More than the maximum: no entries, the top still told.
    let far = ask(|reply| sessions.history(room.clone(), 1, 4, reply))
        .await
        .unwrap();
    assert_eq!((far.top, far.entries), (top, None));
    let exact = ask(|reply| sessions.history(room.clone(), 1, 5, reply))
        .await
        .unwrap();
    assert_eq!(exact.entries.map(|e| e.len()), Some(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (interop/setup.sh installs it)"]
async fn a_session_is_written_once_claimed_once_and_not_written_back_after_its_claim() {
    let redis = RedisServer::start();
    let engine = engine(&redis, 1);
    let sessions = engine_sessions(&engine);
    let ttl = Duration::from_secs(60);
    let save = |record: &'static [u8], create| {
        ask(move |reply| sessions.save("tok", record.to_vec(), ttl, create, reply))
    };
    assert!(save(b"one", true).await.unwrap(), "a new session");
    assert!(!save(b"two", true).await.unwrap(), "a token is used once");
    assert!(save(b"three", false).await.unwrap(), "an update");
    let ttl_left: i64 = redis.query(&["PTTL", "wsw:sess:tok"]);
    assert!(ttl_left > 50_000 && ttl_left <= 60_000, "{ttl_left}");

    // Two claims at once: one gets the record.
    let (a, b) = tokio::join!(
        ask(|reply| sessions.claim("tok", reply)),
        ask(|reply| sessions.claim("tok", reply))
    );
    let mut claims = [a.unwrap(), b.unwrap()];
    claims.sort();
    assert_eq!(claims, [None, Some(b"three".to_vec())]);
    // The old connection's update after the claim does not bring the session back.
    assert!(!save(b"four", false).await.unwrap());
    assert_eq!(
        ask(|reply| sessions.claim("tok", reply)).await.unwrap(),
        None
    );

    // A session kept alive has its TTL renewed; once let go it expires a TTL later.
    assert!(save(b"five", true).await.unwrap());
    sessions.keep("tok", Duration::from_millis(1_500), true);
    sessions.keep("tok", Duration::from_millis(1_500), false);
    support::eventually("the session's TTL is the window", || {
        let ttl: i64 = redis.query(&["PTTL", "wsw:sess:tok"]);
        (0..=1_500).contains(&ttl)
    });
    support::eventually("the session expires", || {
        let exists: i64 = redis.query(&["EXISTS", "wsw:sess:tok"]);
        exists == 0
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (interop/setup.sh installs it)"]
async fn a_durable_redis_keeps_epochs_across_a_restart_and_a_volatile_one_does_not() {
    for durable in [true, false] {
        let mut redis = RedisServer::start_durable(durable);
        let node = Node::start(&redis, 1);
        let before = publish(&node, "room", "before".into()).await;
        redis.restart();
        // The node reconnects by itself; its next publish sees the restarted server.
        let after = loop {
            match node
                .hub
                .send_confirmed(Target::group("room"), "after")
                .await
            {
                Ok(Some(position)) => break position,
                Ok(None) => unreachable!("a group message has a place"),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        if durable {
            assert_eq!(
                (after.epoch, after.offset),
                (before.epoch, 2),
                "AOF with appendfsync always loses nothing: the same epoch goes on"
            );
        } else {
            assert_ne!(after.epoch, before.epoch, "history lost: a new epoch");
            assert_eq!(after.offset, 1);
        }
    }
}
