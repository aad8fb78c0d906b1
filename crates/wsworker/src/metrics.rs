//! Counters a server keeps about itself — connections, messages, bytes, closes by code,
//! refused handshakes by reason, dropped messages — readable from any thread as a
//! [`MetricsSnapshot`] or in the Prometheus text format.
//!
//! Each worker thread has its own block of counters, written only by that thread, so
//! counting a message costs a plain load and store on a cache line no other core writes:
//! no locked instruction and no sharing on the per-message path.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use wsworker_proto::HandshakeError;

/// Why a server refused a connection before it was open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Rejection {
    /// 400: the request is malformed or lacks what a WebSocket handshake needs.
    BadRequest,
    /// 431: the request head is larger than the limit.
    HeaderTooLarge,
    /// 408: the request did not arrive within the handshake timeout.
    Timeout,
    /// 405: not a `GET`.
    MethodNotAllowed,
    /// 426: a WebSocket version other than 13, or a plain HTTP request without an HTTP
    /// handler.
    UpgradeRequired,
    /// 403: the `Origin` is not on the allow-list.
    Origin,
    /// 503: the worker has as many connections as it may have.
    Full,
    /// The application's `on_handshake` rejected it.
    Application,
    /// The TLS handshake failed, or plain HTTP arrived on the TLS port.
    Tls,
    /// The worker had as many handshakes in progress as it may have
    /// ([`Worker::max_pending_handshakes`](crate::Endpoint::max_pending_handshakes)): the
    /// socket was closed as it was accepted, without an answer.
    Pending,
    /// 503: the [`Service`](crate::Service) is shutting down.
    ShuttingDown,
    /// 404: no [route](crate::Endpoint::route) serves the path.
    NotFound,
}

impl Rejection {
    const ALL: [Self; 12] = [
        Self::BadRequest,
        Self::HeaderTooLarge,
        Self::Timeout,
        Self::MethodNotAllowed,
        Self::UpgradeRequired,
        Self::Origin,
        Self::Full,
        Self::Application,
        Self::Tls,
        Self::Pending,
        Self::ShuttingDown,
        Self::NotFound,
    ];

    /// The label used in the Prometheus output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::HeaderTooLarge => "header_too_large",
            Self::Timeout => "timeout",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::UpgradeRequired => "upgrade_required",
            Self::Origin => "origin",
            Self::Full => "full",
            Self::Application => "application",
            Self::Tls => "tls",
            Self::Pending => "pending",
            Self::ShuttingDown => "shutting_down",
            Self::NotFound => "not_found",
        }
    }

    /// The reason a handshake error stands for.
    pub(crate) fn of(error: &HandshakeError) -> Self {
        match error.status() {
            431 => Self::HeaderTooLarge,
            405 => Self::MethodNotAllowed,
            426 => Self::UpgradeRequired,
            _ => Self::BadRequest,
        }
    }
}

/// A close code as the metrics count it: each code RFC 6455 §7.4.1 and the IANA registry
/// define (1000–1015) by itself, and the codes clients choose by range, so that no client can
/// add series of its own to every scrape (up to 2,000 with codes 3000–4999).
///
/// ```
/// use wsworker::server::CloseCodeGroup;
///
/// assert_eq!(CloseCodeGroup::of(1000), CloseCodeGroup::Registered(1000));
/// assert_eq!(CloseCodeGroup::of(4001), CloseCodeGroup::Range4xxx);
/// assert_eq!(CloseCodeGroup::of(4001).to_string(), "4xxx");
/// assert_eq!(CloseCodeGroup::of(1006).to_string(), "1006");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum CloseCodeGroup {
    /// A code of RFC 6455 §7.4.1 or the IANA registry, 1000–1015 (1006: the connection
    /// dropped without a closing handshake).
    Registered(u16),
    /// 3000–3999: codes registered for libraries, frameworks and applications.
    Range3xxx,
    /// 4000–4999: codes for private use.
    Range4xxx,
    /// Any other code.
    Other,
}

impl CloseCodeGroup {
    /// The registered codes, 1000 and the 15 after it.
    const REGISTERED: std::ops::RangeInclusive<u16> = 1000..=1015;
    /// How many groups there are: the registered codes and the three others.
    const COUNT: usize = 16 + 3;

    /// The group of `code`.
    pub fn of(code: u16) -> Self {
        match code {
            _ if Self::REGISTERED.contains(&code) => Self::Registered(code),
            3000..=3999 => Self::Range3xxx,
            4000..=4999 => Self::Range4xxx,
            _ => Self::Other,
        }
    }

    /// Where the group is counted among a worker's counters.
    fn index(self) -> usize {
        match self {
            Self::Registered(code) => usize::from(code.saturating_sub(1000)).min(15),
            Self::Range3xxx => 16,
            Self::Range4xxx => 17,
            Self::Other => 18,
        }
    }

    /// The group counted at `index`.
    fn at(index: usize) -> Self {
        match index {
            16 => Self::Range3xxx,
            17 => Self::Range4xxx,
            18 => Self::Other,
            // Below 16: a registered code.
            _ => Self::Registered(1000 + index as u16),
        }
    }
}

/// The `code` label: the code itself, `3xxx`, `4xxx` or `other`.
impl fmt::Display for CloseCodeGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Registered(code) => write!(f, "{code}"),
            Self::Range3xxx => f.write_str("3xxx"),
            Self::Range4xxx => f.write_str("4xxx"),
            Self::Other => f.write_str("other"),
        }
    }
}

/// One worker's counters. Only the worker's own thread writes them (see [`add`]).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct WorkerCounters {
    connections_open: AtomicU64,
    connections_accepted: AtomicU64,
    messages_received: AtomicU64,
    messages_sent: AtomicU64,
    bytes_received: AtomicU64,
    bytes_sent: AtomicU64,
    dropped_messages: AtomicU64,
    /// Written by [`PendingHandshake`]s with locked instructions: one may end (be dropped)
    /// on another thread than the worker's, and handshakes are rare next to messages.
    handshakes_pending: AtomicU64,
    rejections: [AtomicU64; Rejection::ALL.len()],
    /// By [`CloseCodeGroup::index`].
    closes: [AtomicU64; CloseCodeGroup::COUNT],
}

/// Adds to a counter that only the calling worker thread writes: a load and a store, no
/// locked read-modify-write. Readers on other threads see a value at most one update old.
fn add(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

impl WorkerCounters {
    pub(crate) fn opened(&self) {
        add(&self.connections_open, 1);
        add(&self.connections_accepted, 1);
    }

    pub(crate) fn closed(&self, code: u16) {
        add(&self.connections_open, u64::MAX);
        add(&self.closes[CloseCodeGroup::of(code).index()], 1);
    }

    pub(crate) fn received(&self, bytes: usize) {
        add(&self.bytes_received, bytes as u64);
    }

    pub(crate) fn sent(&self, bytes: usize) {
        add(&self.bytes_sent, bytes as u64);
    }

    pub(crate) fn messages_received(&self, n: usize) {
        add(&self.messages_received, n as u64);
    }

    pub(crate) fn messages_sent(&self, n: usize) {
        add(&self.messages_sent, n as u64);
    }

    pub(crate) fn message_dropped(&self) {
        add(&self.dropped_messages, 1);
    }

    pub(crate) fn rejected(&self, reason: Rejection) {
        if let Some(i) = Rejection::ALL.iter().position(|r| *r == reason) {
            add(&self.rejections[i], 1);
        }
    }

    /// The connections this worker has open now.
    pub(crate) fn open(&self) -> u64 {
        self.connections_open.load(Ordering::Relaxed)
    }

    /// Counts a handshake in progress, unless this worker has `max` of them already: then
    /// `None`, and the caller refuses the connection (counted as [`Rejection::Pending`]).
    /// Only the worker's thread begins handshakes, so the check and the count cannot race
    /// with another beginning.
    pub(crate) fn begin_handshake(self: &Arc<Self>, max: usize) -> Option<PendingHandshake> {
        if self.handshakes_pending.load(Ordering::Relaxed) >= max as u64 {
            self.rejected(Rejection::Pending);
            return None;
        }
        self.handshakes_pending.fetch_add(1, Ordering::Relaxed);
        Some(PendingHandshake {
            counters: self.clone(),
        })
    }

    fn snapshot(&self) -> WorkerSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        WorkerSnapshot {
            connections_open: get(&self.connections_open),
            connections_accepted: get(&self.connections_accepted),
            messages_received: get(&self.messages_received),
            messages_sent: get(&self.messages_sent),
            bytes_received: get(&self.bytes_received),
            bytes_sent: get(&self.bytes_sent),
            dropped_messages: get(&self.dropped_messages),
            handshakes_pending: get(&self.handshakes_pending),
        }
    }
}

/// One handshake in progress, counted against
/// [`Worker::max_pending_handshakes`](crate::Endpoint::max_pending_handshakes) until it is
/// dropped: held by the handshake's future, it is dropped on every way a handshake ends
/// (open, refused, timed out, failed, or the future dropped after a panic or at shutdown).
#[derive(Debug)]
pub(crate) struct PendingHandshake {
    counters: Arc<WorkerCounters>,
}

impl Drop for PendingHandshake {
    fn drop(&mut self) {
        self.counters
            .handshakes_pending
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// A server's counters: get it from [`Worker::metrics`](crate::Endpoint::metrics) (before or
/// after starting) and read it from any thread. Cheap to clone.
///
/// ```
/// let worker = wsworker::Worker::new("websocket://127.0.0.1:0")?;
/// let metrics = worker.metrics();
/// let server = worker.start()?;
/// let now = metrics.snapshot();
/// assert_eq!(now.total().connections_open, 0);
/// assert!(metrics.to_prometheus().contains("wsworker_connections_open{worker=\"0\"} 0"));
/// server.shutdown();
/// # Ok::<(), wsworker::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    workers: Arc<OnceLock<Vec<Arc<WorkerCounters>>>>,
}

impl Metrics {
    /// Allocates the counters of `count` workers; called once, when the server starts.
    pub(crate) fn start(&self, count: usize) -> Vec<Arc<WorkerCounters>> {
        self.workers
            .get_or_init(|| (0..count).map(|_| Arc::default()).collect())
            .clone()
    }

    /// The counters as they are now. Empty before the server starts.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let mut snapshot = MetricsSnapshot::default();
        for worker in self.workers.get().into_iter().flatten() {
            snapshot.workers.push(worker.snapshot());
            for (i, reason) in Rejection::ALL.iter().enumerate() {
                let n = worker.rejections[i].load(Ordering::Relaxed);
                if n > 0 {
                    *snapshot.rejections.entry(*reason).or_default() += n;
                }
            }
            for (i, closes) in worker.closes.iter().enumerate() {
                let n = closes.load(Ordering::Relaxed);
                if n > 0 {
                    *snapshot.closes.entry(CloseCodeGroup::at(i)).or_default() += n;
                }
            }
        }
        snapshot
    }

    /// The counters now, in the Prometheus text exposition format (version 0.0.4).
    pub fn to_prometheus(&self) -> String {
        self.snapshot().to_prometheus()
    }
}

/// One worker's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerSnapshot {
    /// WebSocket connections open now.
    pub connections_open: u64,
    /// Connections whose opening handshake succeeded, since the start.
    pub connections_accepted: u64,
    /// Complete messages received.
    pub messages_received: u64,
    /// Messages queued for sending (broadcast frames included).
    pub messages_sent: u64,
    /// Bytes read on WebSocket connections, the opening handshake's request and frame
    /// headers included (after TLS decryption).
    pub bytes_received: u64,
    /// Bytes written on WebSocket connections, the opening handshake's response and frame
    /// headers included (before TLS encryption).
    pub bytes_sent: u64,
    /// Messages dropped at the hard send-buffer limit under
    /// [`OverflowPolicy::DropNew`](crate::server::OverflowPolicy::DropNew).
    pub dropped_messages: u64,
    /// Connections accepted whose opening handshake (TLS and WebSocket, or a plain HTTP
    /// answer) is in progress now.
    pub handshakes_pending: u64,
}

/// One per-worker metric: name, type, help text and how to read it.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&WorkerSnapshot) -> u64,
);

/// A server's counters at one moment, from [`Metrics::snapshot`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Per worker, in worker id order.
    pub workers: Vec<WorkerSnapshot>,
    /// Connections ended, by close code (1006 when the connection dropped without a closing
    /// handshake), the codes clients choose grouped by range: look one up with
    /// [`CloseCodeGroup::of`]. Only groups that occurred are present.
    pub closes: BTreeMap<CloseCodeGroup, u64>,
    /// Connections refused before they opened, by reason.
    pub rejections: BTreeMap<Rejection, u64>,
}

impl MetricsSnapshot {
    /// The sum over all workers.
    pub fn total(&self) -> WorkerSnapshot {
        self.workers
            .iter()
            .fold(WorkerSnapshot::default(), |sum, w| WorkerSnapshot {
                connections_open: sum.connections_open + w.connections_open,
                connections_accepted: sum.connections_accepted + w.connections_accepted,
                messages_received: sum.messages_received + w.messages_received,
                messages_sent: sum.messages_sent + w.messages_sent,
                bytes_received: sum.bytes_received + w.bytes_received,
                bytes_sent: sum.bytes_sent + w.bytes_sent,
                dropped_messages: sum.dropped_messages + w.dropped_messages,
                handshakes_pending: sum.handshakes_pending + w.handshakes_pending,
            })
    }

    /// These counters in the Prometheus text exposition format (version 0.0.4).
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        let per_worker: [Family; 8] = [
            (
                "wsworker_connections_open",
                "gauge",
                "WebSocket connections open now.",
                |w| w.connections_open,
            ),
            (
                "wsworker_connections_accepted_total",
                "counter",
                "Connections whose opening handshake succeeded.",
                |w| w.connections_accepted,
            ),
            (
                "wsworker_messages_received_total",
                "counter",
                "Complete messages received.",
                |w| w.messages_received,
            ),
            (
                "wsworker_messages_sent_total",
                "counter",
                "Messages queued for sending.",
                |w| w.messages_sent,
            ),
            (
                "wsworker_bytes_received_total",
                "counter",
                "Bytes read on WebSocket connections, the handshake's request and frame headers included.",
                |w| w.bytes_received,
            ),
            (
                "wsworker_bytes_sent_total",
                "counter",
                "Bytes written on WebSocket connections, the handshake's response and frame headers included.",
                |w| w.bytes_sent,
            ),
            (
                "wsworker_dropped_messages_total",
                "counter",
                "Messages dropped at the hard send-buffer limit.",
                |w| w.dropped_messages,
            ),
            (
                "wsworker_handshakes_pending",
                "gauge",
                "Connections whose opening handshake is in progress.",
                |w| w.handshakes_pending,
            ),
        ];
        for (name, kind, help, get) in per_worker {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (id, worker) in self.workers.iter().enumerate() {
                let _ = writeln!(out, "{name}{{worker=\"{id}\"}} {}", get(worker));
            }
        }
        let _ = writeln!(
            out,
            "# HELP wsworker_closes_total Connections ended, by close code.\n\
             # TYPE wsworker_closes_total counter"
        );
        for (group, n) in &self.closes {
            let _ = writeln!(out, "wsworker_closes_total{{code=\"{group}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP wsworker_handshake_rejections_total Connections refused before they \
             opened, by reason.\n# TYPE wsworker_handshake_rejections_total counter"
        );
        for reason in Rejection::ALL {
            let n = self.rejections.get(&reason).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "wsworker_handshake_rejections_total{{reason=\"{}\"}} {n}",
                reason.as_str()
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up_across_workers_and_render_as_prometheus() {
        let metrics = Metrics::default();
        let workers = metrics.start(2);
        workers[0].opened();
        workers[1].opened();
        workers[1].opened();
        workers[1].messages_received(1);
        workers[1].received(26);
        workers[0].closed(1000);
        workers[1].closed(1000);
        workers[1].closed(4001);
        workers[0].rejected(Rejection::Origin);
        workers[1].rejected(Rejection::Origin);
        workers[1].message_dropped();

        let snapshot = metrics.snapshot();
        let total = snapshot.total();
        assert_eq!(total.connections_open, 0);
        assert_eq!(total.connections_accepted, 3);
        assert_eq!(snapshot.workers[1].connections_open, 0);
        assert_eq!(
            snapshot.closes,
            BTreeMap::from([
                (CloseCodeGroup::Registered(1000), 2),
                (CloseCodeGroup::Range4xxx, 1)
            ])
        );
        assert_eq!(
            snapshot.rejections,
            BTreeMap::from([(Rejection::Origin, 2)])
        );

        let text = snapshot.to_prometheus();
        for line in [
            "wsworker_connections_accepted_total{worker=\"1\"} 2",
            "wsworker_messages_received_total{worker=\"1\"} 1",
            "wsworker_bytes_received_total{worker=\"1\"} 26",
            "wsworker_dropped_messages_total{worker=\"1\"} 1",
            "wsworker_closes_total{code=\"4xxx\"} 1",
            "wsworker_handshake_rejections_total{reason=\"origin\"} 2",
            "wsworker_handshake_rejections_total{reason=\"full\"} 0",
            "# TYPE wsworker_connections_open gauge",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn codes_clients_choose_are_grouped_by_range() {
        let metrics = Metrics::default();
        let workers = metrics.start(1);
        for code in [
            1000, 1006, 1015, 3000, 3999, 4000, 4999, 5000, 2999, 999, 1016,
        ] {
            workers[0].opened();
            workers[0].closed(code);
        }
        let snapshot = metrics.snapshot();
        let labels: Vec<(String, u64)> = snapshot
            .closes
            .iter()
            .map(|(group, n)| (group.to_string(), *n))
            .collect();
        let expected = [
            ("1000", 1),
            ("1006", 1),
            ("1015", 1),
            ("3xxx", 2),
            ("4xxx", 2),
        ];
        let mut expected: Vec<(String, u64)> =
            expected.iter().map(|(l, n)| (l.to_string(), *n)).collect();
        expected.push(("other".to_owned(), 4));
        assert_eq!(labels, expected);
        for index in 0..CloseCodeGroup::COUNT {
            assert_eq!(CloseCodeGroup::at(index).index(), index);
        }
    }

    #[test]
    fn pending_handshakes_are_bounded_and_end_when_dropped() {
        let metrics = Metrics::default();
        let workers = metrics.start(1);
        let first = workers[0].begin_handshake(2).unwrap();
        let second = workers[0].begin_handshake(2).unwrap();
        assert!(workers[0].begin_handshake(2).is_none());
        let snapshot = metrics.snapshot();
        assert_eq!(snapshot.total().handshakes_pending, 2);
        assert_eq!(
            snapshot.rejections,
            BTreeMap::from([(Rejection::Pending, 1)])
        );
        drop(first);
        let third = workers[0].begin_handshake(2).unwrap();
        drop((second, third));
        let text = metrics.to_prometheus();
        for line in [
            "wsworker_handshakes_pending{worker=\"0\"} 0",
            "wsworker_handshake_rejections_total{reason=\"pending\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
        }
    }

    #[test]
    fn a_snapshot_before_the_start_is_empty() {
        let metrics = Metrics::default();
        assert_eq!(metrics.snapshot(), MetricsSnapshot::default());
        assert!(
            metrics
                .to_prometheus()
                .contains("# TYPE wsworker_closes_total counter")
        );
    }
}
