//! Counting during a run: echoes, round-trip times and errors, shared by all connections.
//!
//! The counts live in a few shards behind mutexes; a connection adds to its shard once per
//! read (see [`Local`]), not once per message, so the locks cost little even at millions of
//! messages per second. With one runtime thread (the default) there is one shard and its lock
//! is never contended; with more threads there is one shard per thread, and connections are
//! spread over them.

use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;

/// The longest round trip the histograms keep apart, in nanoseconds (an hour); longer ones are
/// recorded as this.
const MAX_RTT_NS: u64 = 3_600_000_000_000;

/// How many of its own errors a connection describes in words before it only counts them.
const LOCAL_SAMPLES: usize = 1;

/// The kinds of error the report counts apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ErrorKind {
    /// The TCP connection could not be made.
    Connect,
    /// The opening handshake failed (a status other than 101, a bad response, an early end).
    Handshake,
    /// The server broke the protocol, closed the connection or ended it while messages were
    /// outstanding, or a socket error occurred.
    Protocol,
    /// An echo that differs from the message sent, or a message nothing was sent for.
    Mismatch,
    /// Something did not happen in time: a connection, the last echoes, the closing handshake.
    Timeout,
}

impl ErrorKind {
    /// Every kind, in the order of the report.
    pub(super) const ALL: [Self; 5] = [
        Self::Connect,
        Self::Handshake,
        Self::Protocol,
        Self::Mismatch,
        Self::Timeout,
    ];

    /// The name used in the report and its JSON.
    pub(super) const fn name(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Handshake => "handshake",
            Self::Protocol => "protocol",
            Self::Mismatch => "mismatch",
            Self::Timeout => "timeout",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Counts of one shard, or of all of them merged.
#[derive(Debug, Clone)]
pub(super) struct Counts {
    /// Correct echoes received during the measured window.
    pub(super) messages: u64,
    /// Correct echoes received after it, while the last ones drained.
    pub(super) drained: u64,
    /// Round-trip times of all correct echoes, in nanoseconds.
    pub(super) rtt_ns: Histogram<u64>,
    /// Errors by kind, indexed as [`ErrorKind::ALL`].
    pub(super) errors: [u64; 5],
    /// The first error of each kind, in words.
    pub(super) samples: [Option<String>; 5],
    /// `--deflate`: the bytes of the messages echoed through permessage-deflate, and the
    /// payload bytes of the server's replies on the wire.
    pub(super) compressed_plain: u64,
    pub(super) compressed_wire: u64,
}

impl Counts {
    /// Empty counts.
    pub(super) fn new() -> Self {
        Self {
            messages: 0,
            drained: 0,
            rtt_ns: Histogram::new_with_bounds(1, MAX_RTT_NS, 3)
                .expect("constant bounds are valid"),
            errors: [0; 5],
            samples: Default::default(),
            compressed_plain: 0,
            compressed_wire: 0,
        }
    }

    /// The number of errors of `kind`.
    pub(super) fn errors(&self, kind: ErrorKind) -> u64 {
        self.errors[kind.index()]
    }

    /// The first error of `kind`, in words.
    pub(super) fn sample(&self, kind: ErrorKind) -> Option<&str> {
        self.samples[kind.index()].as_deref()
    }

    /// All errors, of every kind.
    pub(super) fn total_errors(&self) -> u64 {
        self.errors.iter().sum()
    }

    fn add_error(&mut self, kind: ErrorKind, count: u64, sample: Option<String>) {
        self.errors[kind.index()] += count;
        let slot = &mut self.samples[kind.index()];
        if slot.is_none() {
            *slot = sample;
        }
    }
}

/// The counts of a whole run, written by every connection.
#[derive(Debug)]
pub(super) struct Stats {
    shards: Box<[Mutex<Counts>]>,
}

impl Stats {
    /// Counts with `shards` shards (at least one).
    pub(super) fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(Counts::new()))
                .collect(),
        }
    }

    /// The shard of connection `conn`.
    fn shard(&self, conn: usize) -> MutexGuard<'_, Counts> {
        // A panic elsewhere cannot leave the counts half-updated in a way that matters here.
        self.shards[conn % self.shards.len()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one error of connection `conn`, described as `detail` if it is the first of its
    /// kind.
    pub(super) fn error(&self, conn: usize, kind: ErrorKind, detail: impl fmt::Display) {
        let mut shard = self.shard(conn);
        let sample = shard.samples[kind.index()]
            .is_none()
            .then(|| format!("connection {conn}: {detail}"));
        shard.add_error(kind, 1, sample);
    }

    /// Counts connection `conn`'s compressed echo (`--deflate`).
    #[cfg(feature = "deflate")]
    pub(super) fn compressed(&self, conn: usize, exchanged: super::deflate::Exchanged) {
        let mut shard = self.shard(conn);
        shard.compressed_plain += exchanged.plain;
        shard.compressed_wire += exchanged.wire;
    }

    /// Adds what connection `conn` counted since its last flush, and empties `local`.
    pub(super) fn flush(&self, conn: usize, local: &mut Local) {
        if local.is_empty() {
            return;
        }
        let mut shard = self.shard(conn);
        shard.messages += local.messages;
        shard.drained += local.drained;
        for &ns in &local.rtt_ns {
            shard.rtt_ns.saturating_record(ns.clamp(1, MAX_RTT_NS));
        }
        if local.mismatches > 0 {
            shard.add_error(
                ErrorKind::Mismatch,
                local.mismatches,
                local.mismatch_sample.take(),
            );
        }
        drop(shard);
        local.messages = 0;
        local.drained = 0;
        local.mismatches = 0;
        local.rtt_ns.clear();
    }

    /// Correct echoes in the window and errors so far, for the progress line.
    pub(super) fn progress(&self) -> (u64, u64) {
        self.shards
            .iter()
            .fold((0, 0), |(messages, errors), shard| {
                let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
                (messages + shard.messages, errors + shard.total_errors())
            })
    }

    /// All shards merged.
    pub(super) fn merged(&self) -> Counts {
        let mut total = Counts::new();
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            total.messages += shard.messages;
            total.drained += shard.drained;
            total.compressed_plain += shard.compressed_plain;
            total.compressed_wire += shard.compressed_wire;
            // Same bounds on both sides: adding cannot fail.
            let _ = total.rtt_ns.add(&shard.rtt_ns);
            for kind in ErrorKind::ALL {
                total.add_error(
                    kind,
                    shard.errors(kind),
                    shard.sample(kind).map(str::to_owned),
                );
            }
        }
        total
    }
}

/// What one connection counted since it last flushed into its shard.
#[derive(Debug, Default)]
pub(super) struct Local {
    messages: u64,
    drained: u64,
    rtt_ns: Vec<u64>,
    mismatches: u64,
    /// Descriptions this connection still may give (it describes its first mismatch only).
    described: usize,
    mismatch_sample: Option<String>,
}

impl Local {
    /// A correct echo after `rtt`, within the measured window or after it.
    pub(super) fn echo(&mut self, rtt: Duration, in_window: bool) {
        if in_window {
            self.messages += 1;
        } else {
            self.drained += 1;
        }
        self.rtt_ns
            .push(u64::try_from(rtt.as_nanos()).unwrap_or(u64::MAX));
    }

    /// A mismatch on connection `conn`, described by `detail` (called for the connection's
    /// first one only).
    pub(super) fn mismatch<D: fmt::Display>(&mut self, conn: usize, detail: impl FnOnce() -> D) {
        self.mismatches += 1;
        if self.described < LOCAL_SAMPLES {
            self.described += 1;
            self.mismatch_sample = Some(format!("connection {conn}: {}", detail()));
        }
    }

    fn is_empty(&self) -> bool {
        self.messages == 0 && self.drained == 0 && self.mismatches == 0 && self.rtt_ns.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_merge_counts_times_and_first_samples() {
        let stats = Stats::new(2);
        let mut local = Local::default();
        local.echo(Duration::from_micros(100), true);
        local.echo(Duration::from_micros(300), false);
        local.mismatch(0, || "first");
        local.mismatch(0, || "second");
        stats.flush(0, &mut local);
        assert!(local.is_empty());
        local.echo(Duration::from_micros(200), true);
        stats.flush(1, &mut local);
        stats.error(1, ErrorKind::Timeout, "late");
        stats.error(3, ErrorKind::Timeout, "later");
        assert_eq!(stats.progress(), (2, 4));

        let total = stats.merged();
        assert_eq!((total.messages, total.drained), (2, 1));
        assert_eq!(total.rtt_ns.len(), 3);
        assert!(total.rtt_ns.max() >= 300_000);
        assert_eq!(total.errors(ErrorKind::Mismatch), 2);
        assert_eq!(
            total.sample(ErrorKind::Mismatch),
            Some("connection 0: first")
        );
        assert_eq!(total.errors(ErrorKind::Timeout), 2);
        assert_eq!(total.sample(ErrorKind::Timeout), Some("connection 1: late"));
        assert_eq!(total.errors(ErrorKind::Connect), 0);
        assert_eq!(total.total_errors(), 4);
    }
}
