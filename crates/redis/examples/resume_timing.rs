//! How long a resume takes, and how fast a replay runs: a client on node A misses `M`
//! messages of its room (its connection stalls, then is cut), then resumes on node B at
//! once. The resume time runs from the cut to the first replayed message (a new TCP
//! connection, the handshake, the session's claim, the history's read, the first frame);
//! the replay, to the last; the rate is `M` over that.
//!
//! Needs `redis-server` on the PATH (interop/setup.sh installs it). Two nodes in this
//! process, one real `redis-server`, loopback:
//!
//! ```text
//! cargo run --release -p wsworker-redis --example resume_timing [-- REPS [M...]]
//! ```

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::resume::{Client, Proxy};
use support::{Node, RedisServer};
use wsworker::hub::Target;
use wsworker::resume::ResumeConfig;
use wsworker_redis::RedisConfig;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let reps: usize = args.next().map_or(5, |a| a.parse().expect("REPS"));
    let mut sizes: Vec<usize> = args.map(|a| a.parse().expect("M")).collect();
    if sizes.is_empty() {
        sizes = vec![100, 1_000, 10_000];
    }
    let most = sizes.iter().copied().max().unwrap_or(0) + 10;
    let redis = RedisServer::start();
    let config = |id| RedisConfig::new(redis.url()).node_id(id).history_len(most);
    let resume = ResumeConfig::default().max_replay(most);
    let nodes = [
        Node::start_resume(config(1), resume),
        Node::start_resume(config(2), resume),
    ];
    println!(
        "missed  to the first replayed, ms  to the last, ms  replayed msgs/s  (medians of {reps}; min..max)"
    );
    for &m in &sizes {
        let mut firsts = Vec::new();
        let mut lasts = Vec::new();
        for rep in 0..reps {
            let room = format!("bench-{m}-{rep}");
            let (first, last) = run(&nodes, &room, m).await;
            firsts.push(first);
            lasts.push(last);
        }
        firsts.sort();
        lasts.sort();
        let last = lasts[reps / 2];
        println!(
            "{m:>6}  {:>8.2} ({:.2}..{:.2})  {:>9.2} ({:.2}..{:.2})  {:>10.0}",
            ms(firsts[reps / 2]),
            ms(firsts[0]),
            ms(firsts[reps - 1]),
            ms(last),
            ms(lasts[0]),
            ms(lasts[reps - 1]),
            m as f64 / last.as_secs_f64(),
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One run: from the cut to the first replayed message, and to the last.
async fn run(nodes: &[Node; 2], room: &str, missed: usize) -> (Duration, Duration) {
    let proxy = Proxy::start(nodes[0].server.local_addr()).await;
    let (mut client, _) = Client::start(&format!("{}/?room={room}", proxy.url())).await;
    nodes[0].hub.send_to_group(room, "0");
    client.texts(1).await;
    // The client stops reading; what it misses is published (and in Redis) before the cut.
    proxy.stall(true);
    for i in 1..missed {
        nodes[0].hub.send_to_group(room, i.to_string());
    }
    nodes[0]
        .hub
        .send_confirmed(Target::group(room), missed.to_string())
        .await
        .expect("published");
    let cut = Instant::now();
    proxy.cut();
    let (mut resumed, answer) = client.resume(&nodes[1].url()).await;
    assert!(answer.failed.is_empty(), "{:?}", answer.failed);
    let first = resumed.texts(1).await;
    let first_at = Instant::now();
    assert_eq!(first, ["1"]);
    let rest = resumed.texts(missed - 1).await;
    let done = Instant::now();
    assert_eq!(
        rest.last().map(String::as_str),
        Some(missed.to_string().as_str())
    );
    (first_at - cut, done - cut)
}
