//! Counters a server keeps about itself — connections, messages, bytes, closes by code,
//! refused handshakes by reason, dropped messages — readable from any thread as a
//! [`MetricsSnapshot`] or in the Prometheus text format.
//!
//! Each worker thread has its own block of counters, written only by that thread, so
//! counting a message costs a plain load and store on a cache line no other core writes:
//! no locked instruction and no sharing on the per-message path.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

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
}

impl Rejection {
    const ALL: [Self; 9] = [
        Self::BadRequest,
        Self::HeaderTooLarge,
        Self::Timeout,
        Self::MethodNotAllowed,
        Self::UpgradeRequired,
        Self::Origin,
        Self::Full,
        Self::Application,
        Self::Tls,
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
    rejections: [AtomicU64; Rejection::ALL.len()],
    /// Closes are rare next to messages; a map keeps every code an application may use.
    closes: Mutex<BTreeMap<u16, u64>>,
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
        let mut closes = self.closes.lock().unwrap_or_else(|e| e.into_inner());
        *closes.entry(code).or_default() += 1;
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
        }
    }
}

/// A server's counters: get it from [`Worker::metrics`](crate::Worker::metrics) (before or
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
            let closes = worker.closes.lock().unwrap_or_else(|e| e.into_inner());
            for (code, n) in closes.iter() {
                *snapshot.closes.entry(*code).or_default() += n;
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
    /// WebSocket bytes read, frame headers included (after TLS decryption).
    pub bytes_received: u64,
    /// WebSocket bytes written, frame headers included (before TLS encryption).
    pub bytes_sent: u64,
    /// Messages dropped at the hard send-buffer limit under
    /// [`OverflowPolicy::DropNew`](crate::server::OverflowPolicy::DropNew).
    pub dropped_messages: u64,
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
    /// handshake).
    pub closes: BTreeMap<u16, u64>,
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
            })
    }

    /// These counters in the Prometheus text exposition format (version 0.0.4).
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        let per_worker: [Family; 7] = [
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
                "WebSocket bytes read, frame headers included.",
                |w| w.bytes_received,
            ),
            (
                "wsworker_bytes_sent_total",
                "counter",
                "WebSocket bytes written, frame headers included.",
                |w| w.bytes_sent,
            ),
            (
                "wsworker_dropped_messages_total",
                "counter",
                "Messages dropped at the hard send-buffer limit.",
                |w| w.dropped_messages,
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
        for (code, n) in &self.closes {
            let _ = writeln!(out, "wsworker_closes_total{{code=\"{code}\"}} {n}");
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
        assert_eq!(snapshot.closes, BTreeMap::from([(1000, 2), (4001, 1)]));
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
            "wsworker_closes_total{code=\"4001\"} 1",
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
