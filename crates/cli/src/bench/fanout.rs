//! `wsworker bench URL --fanout`: broadcast through a chat server (`wsworker serve --mode
//! chat`, or any server that relays a room's text messages unchanged to everyone in it).
//!
//! `--conns` subscribers open `URL?room=NAME` (spread round-robin over `URL` and every
//! `--node URL`, the other nodes of a cluster that shares its rooms: subscriber `i` on the
//! `(i mod n)`-th), then one publisher joins the same room on `URL`, waits until every
//! connection is in it, and sends text messages of `--size` bytes for `--duration` seconds:
//! `--rate` per second, evenly paced (the latency at a given load), or closed loop with
//! `--inflight K`, keeping K messages outstanding, a message being done once every
//! subscriber has received it (the most deliveries per second the server sustains, and
//! their latency at that load: see [`completion`]). Each message carries a sequence number
//! and its send time (see [`peer`]); every subscriber checks that each message is the next
//! one (gaps, duplicates, reorders are errors) and records its latency, receive time − send
//! time. The publisher, being in the room, gets its own messages back: it checks them the
//! same way, but they are not deliveries. After publishing, connections wait at most
//! [`DRAIN_TIMEOUT`] for what is still missing (each missing message is an error), then
//! close. The report: the pace, messages published, deliveries (expected: published ×
//! subscribers), deliveries per second (from the window's start to the last delivery, or
//! over the window if that is longer), latency percentiles, errors by kind, this process's
//! CPU time per delivery, and per node its subscribers and their deliveries.
//!
//! - [`peer`]: the subscribers' and the publisher's connections;
//! - [`completion`]: which messages every subscriber has, for `--inflight`;
//! - [`report`]: the figures, as JSON or text.

mod completion;
mod peer;
mod report;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout};

use super::conn::{self, CLOSE_TIMEOUT, Plan};
use super::frames::{Inflate, payload};
use super::stats::Stats;
use super::{MAX_CONCURRENT_HANDSHAKES, cpu};
use completion::Completion;
use peer::{HEAD_LEN, Order, OrderError, Peer, Published, Shared, Window};
pub(super) use report::{FanoutReport, NodeCounts};

/// After publishing, how long connections wait for the messages still missing.
pub(super) const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// The publisher's rate when `--rate` is not given, in messages per second.
pub(super) const DEFAULT_RATE: f64 = 100.0;
/// The highest `--rate` accepted (a bound on the run, not what a server can take).
pub(super) const MAX_RATE: f64 = 1e6;
/// The room when `--room` is not given.
pub(super) const DEFAULT_ROOM: &str = "bench";
/// The smallest message: its head (sequence number and send time).
pub(super) const MIN_SIZE: usize = HEAD_LEN;

/// How the publisher paces its messages.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Pace {
    /// `--rate`: messages per second, evenly spaced.
    Rate(f64),
    /// `--inflight`: closed loop, at most this many messages that not every subscriber has
    /// received yet.
    Inflight(u32),
}

/// What a fan-out run is asked to do.
#[derive(Debug)]
pub(super) struct FanoutPlan {
    /// The URLs given: the publisher's first, then every `--node`.
    pub(super) urls: Vec<String>,
    /// The room the subscribers and the publisher join.
    pub(super) room: String,
    /// Subscribers.
    pub(super) conns: usize,
    /// Bytes per message.
    pub(super) size: usize,
    /// How the publisher paces its messages.
    pub(super) pace: Pace,
    /// The publishing window.
    pub(super) duration: Duration,
    /// `--deflate`: every connection agreed to permessage-deflate; the messages are chat
    /// lines after their head.
    pub(super) deflate: bool,
}

impl FanoutPlan {
    /// The most messages the window can hold, or `None` past what sequence numbers hold.
    pub(super) fn limit(&self) -> Option<u64> {
        match self.pace {
            Pace::Rate(rate) => {
                let limit = (rate * self.duration.as_secs_f64()).ceil();
                (limit <= f64::from(u32::MAX)).then_some(limit as u64)
            }
            // Every sequence number below the sync messages' (the window ends far sooner).
            Pace::Inflight(_) => Some(u64::from(u32::MAX)),
        }
    }
}

/// `url` with `room=NAME` added to its query (percent-encoded).
pub(super) fn room_url(url: &str, room: &str) -> String {
    let mut out = url.to_owned();
    out.push(if url.contains('?') { '&' } else { '?' });
    out.push_str("room=");
    for byte in room.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Runs the fan-out measurement: `nodes` are the connection plans of the URLs (the room's
/// URL, the address, the source addresses), the publisher's first. Returns the report.
pub(super) async fn drive(plan: FanoutPlan, nodes: Vec<Arc<Plan>>, shards: usize) -> FanoutReport {
    let stats = Arc::new(Stats::new(shards));
    let connect_began = Instant::now();
    let opened = dial_subscribers(&nodes, plan.conns, &stats).await;
    let connect_s = connect_began.elapsed().as_secs_f64();
    let subscribers = opened.len() as u64;
    let shared = Arc::new(Shared {
        template: if plan.deflate {
            wsworker::bench::chat_lines(plan.size, 0).into_bytes()
        } else {
            payload(plan.size, false)
        },
        epoch: Instant::now(),
        stats: Arc::clone(&stats),
        order: Order::default(),
        synced: AtomicU64::new(0),
        last_delivery_ns: AtomicU64::new(0),
        node_deliveries: nodes.iter().map(|_| AtomicU64::new(0)).collect(),
        completion: match plan.pace {
            // At most 1,000,000 subscribers (the arguments' bound).
            Pace::Inflight(inflight) => Some(Completion::new(
                inflight,
                u32::try_from(subscribers).unwrap_or(u32::MAX),
            )),
            Pace::Rate(_) => None,
        },
    });
    let mut node_subscribers = vec![0; nodes.len()];
    for (index, ..) in &opened {
        node_subscribers[index % nodes.len()] += 1;
    }
    let mut report = FanoutReport::new(plan, subscribers, connect_s);
    let (published_tx, published_rx) = watch::channel(None);
    let mut tasks = JoinSet::new();
    for (index, stream, leftover, inflate) in opened {
        let node = index % nodes.len();
        let peer = Peer::new(index, node, stream, &leftover, Arc::clone(&shared), false)
            .with_inflate(inflate);
        tasks.spawn(peer.subscribe(published_rx.clone()));
    }
    drop(published_rx);
    if subscribers > 0 {
        let index = report.plan.conns;
        match conn::dial(index, &nodes[0]).await {
            Ok((stream, leftover, _, inflate)) => {
                let peer = Peer::new(index, 0, stream, &leftover, Arc::clone(&shared), true)
                    .with_inflate(inflate);
                let publisher = tokio::spawn(peer.publish(
                    report.plan.pace,
                    report.plan.duration,
                    report.plan.limit().unwrap_or(0),
                    // Every subscriber and the publisher itself.
                    subscribers + 1,
                    published_tx,
                ));
                let window = join_bounded(&mut tasks, publisher, &stats).await;
                report.published = window.sent;
                report.window_s = window.duration.as_secs_f64();
                let last = shared.last_delivery_ns.load(Ordering::Relaxed);
                report.span_s = (Duration::from_nanos(last.saturating_sub(window.at_ns)))
                    .as_secs_f64()
                    .max(report.window_s);
                report.cpu_ns = window
                    .cpu_before
                    .zip(cpu::process_cpu_ns())
                    .map(|(before, after)| after.saturating_sub(before));
            }
            Err(failure) => {
                stats.error(
                    index,
                    failure.kind,
                    format!("(the publisher) {}", failure.detail),
                );
                // Nothing was published: the subscribers close at once.
                published_tx.send_replace(Some(Published {
                    count: 0,
                    deadline: Instant::now(),
                }));
                join_bounded(
                    &mut tasks,
                    tokio::spawn(async { Window::default() }),
                    &stats,
                )
                .await;
            }
        }
    }
    report.nodes = (report.plan.urls.iter())
        .zip(node_subscribers)
        .zip(&shared.node_deliveries)
        .map(|((url, subscribers), deliveries)| NodeCounts {
            url: url.clone(),
            subscribers,
            deliveries: deliveries.load(Ordering::Relaxed),
        })
        .collect();
    report.counts = stats.merged();
    report.order =
        OrderError::ALL.map(|kind| (shared.order.count(kind), shared.order.sample(kind)));
    report
}

/// Opens `conns` subscribers, subscriber `i` on node `i mod n`, at most
/// [`MAX_CONCURRENT_HANDSHAKES`] handshakes at a time; failures are counted. Returns the
/// open ones: index, stream, bytes after the handshake, inflater (with `--deflate`).
async fn dial_subscribers(
    nodes: &[Arc<Plan>],
    conns: usize,
    stats: &Stats,
) -> Vec<(usize, tokio::net::TcpStream, Vec<u8>, Option<Inflate>)> {
    let permits = Arc::new(Semaphore::new(MAX_CONCURRENT_HANDSHAKES));
    let mut dials = JoinSet::new();
    for index in 0..conns {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        let plan = Arc::clone(&nodes[index % nodes.len()]);
        dials.spawn(async move {
            let result = conn::dial(index, &plan).await;
            drop(permit);
            (index, result)
        });
    }
    let mut opened = Vec::with_capacity(conns);
    while let Some(joined) = dials.join_next().await {
        // A dial does not panic; a join error would only be a bug, and counts as nothing.
        let Ok((index, result)) = joined else {
            continue;
        };
        match result {
            Ok((stream, leftover, _, inflate)) => opened.push((index, stream, leftover, inflate)),
            Err(failure) => stats.error(index, failure.kind, failure.detail),
        }
    }
    opened
}

/// Waits for the publisher and every subscriber. Each bounds its own drain and close; the
/// limit here only guards against a bug. Returns what the publisher did.
async fn join_bounded(
    tasks: &mut JoinSet<()>,
    publisher: tokio::task::JoinHandle<Window>,
    stats: &Stats,
) -> Window {
    let limit = DRAIN_TIMEOUT + CLOSE_TIMEOUT + Duration::from_secs(5);
    let published = publisher.await.unwrap_or_default();
    if timeout(limit, async { while tasks.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        for _ in 0..tasks.len() {
            stats.error(
                0,
                super::stats::ErrorKind::Timeout,
                "a connection did not finish closing",
            );
        }
        tasks.abort_all();
    }
    published
}
