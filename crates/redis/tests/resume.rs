//! Resume across nodes (`wsworker.resume.v1`), against a real `redis-server`: a client whose
//! connection is cut resumes on another node and gets exactly what it missed, or is told per
//! topic why not.
//!
//! Ignored by default (they need `redis-server`, which `interop/setup.sh` installs); `.ci/run`
//! runs them with `--include-ignored`.

mod support;

use std::time::Duration;

use support::resume::{Client, Got, Proxy, Scene, node, numbered, send_range};
use support::{Node, RedisServer, eventually};
use wsworker::hub::Target;
use wsworker::resume::{ClientSession, FailReason, ResumeConfig};
use wsworker_redis::RedisConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (interop/setup.sh installs it)"]
async fn a_cut_client_resumes_on_another_node_with_exactly_what_it_missed() {
    let mut scene = Scene::start(RedisServer::start(), 2, "r").await;
    let hello = &scene.hello;
    assert!(hello.positions.contains_key("g:r") && hello.positions.contains_key("all"));

    assert_eq!(scene.send_and_read(1..=100).await, numbered(1..=100));
    assert_eq!(scene.client.position("g:r").offset, 100);

    scene.cut();
    let nodes = &scene.nodes;
    send_range(&nodes[1], "r", 101..=150);

    // On node 2, with no room in the URL: the session brings the group back.
    let (mut resumed, answer) = scene.client.resume(&nodes[1].url()).await;
    assert!(answer.resumed);
    assert_eq!(answer.session, scene.hello.session, "the same session");
    assert!(answer.failed.is_empty(), "{:?}", answer.failed);
    assert!(answer.recovered.contains(&"g:r".to_owned()));
    assert_eq!(resumed.texts(50).await, numbered(101..=150));
    assert_eq!(resumed.position("g:r").offset, 150);
    // Live messages follow, once each.
    send_range(&nodes[0], "r", 151..=152);
    assert_eq!(resumed.texts(2).await, numbered(151..=152));
    assert_eq!(resumed.duplicates, 0);
    resumed.assert_consecutive("g:r");
    assert_eq!(nodes[1].hub.group_len("r"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (interop/setup.sh installs it)"]
async fn publishing_all_through_a_resume_leaves_no_gap_and_no_duplicate_at_the_seam() {
    const N: usize = 3_000;
    let scene = Scene::start(RedisServer::start(), 3, "seam").await;
    let (nodes, mut client) = (&scene.nodes, scene.client);
    let publisher = {
        let hub = nodes[2].hub.clone();
        std::thread::spawn(move || {
            for i in 1..=N {
                hub.send_to_group("seam", i.to_string());
                if i % 50 == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        })
    };
    let mut got = client.texts(N / 3).await;
    scene.proxy.cut();
    let (mut resumed, answer) = client.resume(&nodes[1].url()).await;
    assert!(answer.failed.is_empty(), "{:?}", answer.failed);
    got.extend(resumed.texts(N - got.len()).await);
    publisher.join().unwrap();
    assert_eq!(got, numbered(1..=N), "every message once, in order");
    assert_eq!(
        resumed.duplicates, 0,
        "the server dropped the seam's duplicates"
    );
    resumed.assert_consecutive("g:seam");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (interop/setup.sh installs it)"]
async fn two_resumes_with_one_token_at_once_and_exactly_one_wins() {
    let mut scene = Scene::start(RedisServer::start(), 2, "r").await;
    scene.send_and_read(1..=3).await;
    scene.cut();
    let (nodes, client) = (&scene.nodes, &scene.client);
    let urls = [nodes[0].url(), nodes[1].url()];
    let (a, b) = tokio::join!(client.resume(&urls[0]), client.resume(&urls[1]));
    let answers = [&a.1, &b.1];
    let winners = answers.iter().filter(|a| a.failed.is_empty()).count();
    assert_eq!(winners, 1, "{answers:?}");
    let loser = answers.iter().find(|a| !a.failed.is_empty()).unwrap();
    assert!(
        loser.failed.iter().all(|(_, r)| *r == FailReason::Expired),
        "{loser:?}"
    );
    assert!(loser.failed.iter().any(|(t, _)| t == "g:r"));
    // The winner is in the room again; the loser is not.
    assert_eq!(nodes[0].hub.group_len("r") + nodes[1].hub.group_len("r"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (interop/setup.sh installs it)"]
async fn past_the_kept_history_a_topic_fails_expired_with_no_partial_replay() {
    // Streams trimmed in nodes of 10 entries: MAXLEN ~ 100 keeps 100 to 110.
    let redis = RedisServer::start_with(&["--stream-node-max-entries", "10"]);
    let config = |id| RedisConfig::new(redis.url()).node_id(id).history_len(100);
    let nodes = vec![
        Node::start_resume(config(1), ResumeConfig::default()),
        Node::start_resume(config(2), ResumeConfig::default()),
    ];
    let mut scene = Scene::with_nodes(redis, nodes, "r").await;
    scene.send_and_read(1..=10).await;
    scene.cut();
    let nodes = &scene.nodes;
    send_range(&nodes[1], "r", 11..=160);
    let (mut resumed, answer) = scene.client.resume(&nodes[1].url()).await;
    assert_eq!(answer.failed, vec![("g:r".to_owned(), FailReason::Expired)]);
    assert_eq!(
        answer.positions["g:r"].offset, 160,
        "it goes on from the top"
    );
    // Nothing of the gap; the next live message is the next one.
    send_range(&nodes[0], "r", 161..=161);
    assert_eq!(resumed.texts(1).await, numbered(161..=161));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (interop/setup.sh installs it)"]
async fn offsets_reissued_after_a_simulated_failover_fail_mismatch() {
    let mut scene = Scene::start(RedisServer::start(), 2, "r").await;
    scene.send_and_read(1..=50).await;
    scene.cut();
    let (redis, nodes) = (&scene.redis, &scene.nodes);
    // A failover to a replica that had only the first 40: the stream made again from
    // them, the offset back at 40.
    let _: redis::Value = redis.query(&[
        "EVAL",
        "local kept = redis.call('XRANGE', KEYS[1], '-', '40-1') \
         redis.call('DEL', KEYS[1]) \
         for _, e in ipairs(kept) do redis.call('XADD', KEYS[1], e[1], unpack(e[2])) end \
         redis.call('HSET', KEYS[2], 'o', 40)",
        "2",
        "wsw:s:g:r",
        "wsw:t:g:r",
    ]);
    send_range(&nodes[1], "r", 1041..=1050); // offsets 41..50 again, other messages
    let (_, answer) = scene.client.resume(&nodes[1].url()).await;
    assert_eq!(
        answer.failed,
        vec![("g:r".to_owned(), FailReason::Mismatch)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (interop/setup.sh installs it)"]
async fn a_redis_restart_is_resumed_across_with_aof_always_and_fails_epoch_without() {
    for durable in [true, false] {
        let mut scene = Scene::start(RedisServer::start_durable(durable), 2, "r").await;
        // A plain member stays on node 2, so that it keeps hearing the topic.
        let (_witness, _) = scene.nodes[1].connect("/?room=r").await;
        scene.send_and_read(1..=20).await;
        scene.cut();
        scene.redis.restart();
        let nodes = &scene.nodes;
        // Once the nodes are back, 10 more.
        let mut sent = 0;
        while sent < 10 {
            match nodes[1]
                .hub
                .send_confirmed(Target::group("r"), (21 + sent).to_string())
                .await
            {
                Ok(_) => sent += 1,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        // The application joins the room from the URL, as it would on a fresh connection:
        // without persistence the session itself is gone.
        let url = format!("{}/?room=r", nodes[1].url());
        let (mut resumed, answer) = scene.client.resume(&url).await;
        if durable {
            assert!(answer.failed.is_empty(), "{:?}", answer.failed);
            assert_eq!(resumed.texts(10).await, numbered(21..=30));
        } else {
            assert!(
                answer
                    .failed
                    .contains(&("g:r".to_owned(), FailReason::Epoch))
                    && answer.failed.iter().all(|(_, r)| *r == FailReason::Epoch),
                "{:?}",
                answer.failed
            );
            // And the node that heard the topic all along was told too.
            let resync = nodes[1]
                .resyncs
                .recv_timeout(support::WAIT)
                .expect("a resync");
            assert_eq!(resync.topic, wsworker::hub::Topic::Group("r".into()));
            // Live messages after the failure carry the new epoch.
            send_range(&nodes[0], "r", 31..=31);
            match resumed.next().await.unwrap() {
                Got::Placed { text, .. } => assert_eq!(text, "31"),
                other => panic!("{other:?}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (interop/setup.sh installs it)"]
async fn a_client_too_slow_for_its_buffer_is_closed_1013_and_resumes_its_backlog() {
    const N: usize = 3_000;
    let redis = RedisServer::start();
    let config = |id| {
        RedisConfig::new(redis.url())
            .node_id(id)
            .history_len(N + 100)
    };
    let resume = ResumeConfig::default().max_replay(N + 100);
    let nodes = [
        Node::start_custom(config(1), move |worker| {
            worker.resume(resume).unwrap();
            worker.send_buffer_limits(64 * 1024, 256 * 1024);
        }),
        Node::start_resume(config(2), resume),
    ];
    let proxy = Proxy::start(nodes[0].server.local_addr()).await;
    let (mut client, _) = Client::start(&format!("{}/?room=r", proxy.url())).await;
    // Letters that do not repeat: the client offers permessage-deflate, and the Hub would
    // compress a run of one letter to almost nothing (the buffer limits would not be met).
    let text = |i: usize| {
        let mut x = i as u64 ^ 0x9e37_79b9_7f4a_7c15;
        let noise: String = (0..4_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'a' + (x % 26) as u8)
            })
            .collect();
        format!("{i:06}-{noise}")
    };
    for i in 1..=10 {
        nodes[0].hub.send_to_group("r", text(i));
    }
    assert_eq!(
        client.texts(10).await,
        (1..=10).map(text).collect::<Vec<_>>()
    );

    // The client stops reading; 12 MB more are sent: more than the sockets hold and the
    // send buffer's hard limit.
    proxy.stall(true);
    for i in 11..=N {
        nodes[0].hub.send_to_group("r", text(i));
    }
    let (_, code) = nodes[0]
        .closes
        .recv_timeout(support::WAIT)
        .expect("the slow client is closed");
    assert_eq!(code, 1013, "try again later");
    proxy.cut();

    let (mut resumed, answer) = client.resume(&nodes[1].url()).await;
    assert!(answer.failed.is_empty(), "{:?}", answer.failed);
    // Whatever it had read before it stalled, the rest comes from the history.
    let from = client.position("g:r").offset as usize + 1;
    let rest = resumed.texts(N - from + 1).await;
    assert_eq!(rest, (from..=N).map(text).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (interop/setup.sh installs it)"]
async fn a_quiet_topic_whose_history_expired_still_resumes_when_nothing_was_missed() {
    let redis = RedisServer::start();
    let config = |id| {
        RedisConfig::new(redis.url())
            .node_id(id)
            .history_ttl(Duration::from_millis(300))
    };
    let nodes = vec![
        Node::start_resume(config(1), ResumeConfig::default()),
        Node::start_resume(config(2), ResumeConfig::default()),
    ];
    let mut scene = Scene::with_nodes(redis, nodes, "r").await;
    scene.send_and_read(1..=5).await;
    scene.cut();
    eventually("the room's history expires", || {
        let kept: i64 = scene.redis.query(&["EXISTS", "wsw:s:g:r"]);
        kept == 0
    });
    let nodes = &scene.nodes;
    let (mut resumed, answer) = scene.client.resume(&nodes[1].url()).await;
    assert!(answer.failed.is_empty(), "{:?}", answer.failed);
    assert!(answer.recovered.contains(&"g:r".to_owned()));
    send_range(&nodes[0], "r", 6..=6);
    assert_eq!(resumed.texts(1).await, numbered(6..=6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (interop/setup.sh installs it)"]
async fn a_resume_cut_before_its_answer_leaves_the_session_for_the_next_try() {
    let mut scene = Scene::start(RedisServer::start(), 2, "r").await;
    scene.send_and_read(1..=3).await;
    scene.cut();
    let (nodes, client) = (&scene.nodes, &scene.client);
    send_range(&nodes[0], "r", 4..=5);
    // A resume whose connection is cut right after its opening frame went out.
    for _ in 0..5 {
        let proxy = Proxy::start(nodes[1].server.local_addr()).await;
        let ws = wsworker::WebSocket::builder(proxy.url())
            .protocols([wsworker::resume::PROTOCOL])
            .connect()
            .await
            .unwrap();
        ws.send(client.session.clone().opening()).unwrap();
        proxy.cut();
    }
    // However far each got, the session is still there under its token.
    let mut answer = None;
    for _ in 0..50 {
        let (mut resumed, got) = client.resume(&nodes[1].url()).await;
        if got.failed.is_empty() {
            assert_eq!(resumed.texts(2).await, numbered(4..=5));
            answer = Some(got);
            break;
        }
        // A cut resume still putting the session back: try again.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(answer.is_some(), "the session was lost with a cut resume");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (interop/setup.sh installs it)"]
async fn a_client_cannot_replay_a_rooms_history_from_before_it_joined() {
    let redis = RedisServer::start();
    let nodes = [node(&redis, 1), node(&redis, 2)];
    let (mut insider, hello) = Client::start(&format!("{}/?room=r", nodes[0].url())).await;
    send_range(&nodes[0], "r", 1..=5);
    insider.texts(5).await;
    // A newcomer whom the application puts in the room, claiming to have been there
    // from the start (offset 0 of the room's epoch), with a token of no session.
    let epoch = hello.positions["g:r"].epoch;
    let newcomer = Client::resuming(
        insider.ws.clone(),
        ClientSession::restore(
            "0123456789abcdef0123456789abcdef".into(),
            [(
                "g:r".to_owned(),
                wsworker::hub::Stamp {
                    epoch,
                    offset: 0,
                    id: 0,
                },
            )]
            .into(),
        ),
    );
    let (mut joined, answer) = newcomer
        .resume(&format!("{}/?room=r", nodes[1].url()))
        .await;
    assert_eq!(answer.failed, vec![("g:r".to_owned(), FailReason::Expired)]);
    assert_eq!(answer.positions["g:r"].offset, 5, "it starts at its join");
    send_range(&nodes[0], "r", 6..=6);
    assert_eq!(
        joined.texts(1).await,
        numbered(6..=6),
        "no history before the join"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (interop/setup.sh installs it)"]
async fn a_gap_the_node_cannot_fill_closes_resuming_clients_which_resume_with_its_failure() {
    let redis = RedisServer::start();
    let nodes = [node(&redis, 1), node(&redis, 2)];
    let (mut client, _) = Client::start(&format!("{}/?room=r", nodes[1].url())).await;
    send_range(&nodes[0], "r", 1..=3);
    client.texts(3).await;
    // Offsets 4..=8 taken with nothing in the stream: the node sees a hole it cannot fill.
    let _: i64 = redis.query(&["HINCRBY", "wsw:t:g:r", "o", "5"]);
    send_range(&nodes[0], "r", 9..=9);
    assert_eq!(
        client.next().await,
        None,
        "closed rather than skipping the hole"
    );
    let (_, code) = nodes[1].closes.recv_timeout(support::WAIT).unwrap();
    assert_eq!(code, 1013);
    let (_, answer) = client.resume(&nodes[0].url()).await;
    assert_eq!(answer.failed, vec![("g:r".to_owned(), FailReason::Expired)]);
}
