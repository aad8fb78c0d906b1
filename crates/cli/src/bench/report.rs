//! The end of a run: the figures derived from the counts, as one JSON object (`--json`) or
//! as a short table for people, and the first error of each kind in words.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use super::stats::{Counts, ErrorKind};

/// Everything a run measured, and what it was asked to do.
#[derive(Debug)]
pub(super) struct Report {
    /// The URL given.
    pub(super) url: String,
    /// Connections asked for.
    pub(super) conns: usize,
    /// `--idle`: connections held without traffic.
    pub(super) idle: bool,
    /// `--deflate`: what every connection offered and echoed.
    pub(super) deflate: Option<DeflateRun>,
    /// Payload bytes per message.
    pub(super) size: usize,
    /// Binary messages rather than text.
    pub(super) binary: bool,
    /// Messages in flight per connection (at most, with `--rate`).
    pub(super) inflight: usize,
    /// `--rate`: the total messages per second aimed at (closed loop without it).
    pub(super) rate: Option<f64>,
    /// The measured window, in seconds (0 when no connection opened).
    pub(super) window_s: f64,
    /// Connections whose handshake succeeded.
    pub(super) opened: u64,
    /// Connections that could not be opened.
    pub(super) failed: u64,
    /// How long opening them all took, in seconds.
    pub(super) connect_s: f64,
    /// The counts of every connection.
    pub(super) counts: Counts,
    /// This process's CPU time during the window, in nanoseconds, if `/proc` told.
    pub(super) cpu_ns: Option<u64>,
}

/// What the connections of a `--deflate` run did before they idled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DeflateRun {
    /// The `Sec-WebSocket-Extensions` offer.
    pub(super) offer: String,
    /// The size of the message each connection echoed.
    pub(super) size: usize,
}

/// Round-trip percentiles in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Rtt {
    pub(super) p50: f64,
    pub(super) p99: f64,
    pub(super) p999: f64,
    pub(super) max: f64,
}

impl Report {
    /// Whether the run passes: at least one connection and no error of any kind.
    pub(super) fn succeeded(&self) -> bool {
        self.opened > 0 && self.counts.total_errors() == 0
    }

    /// Opened connections per second of the connect phase.
    pub(super) fn handshakes_per_s(&self) -> Option<f64> {
        (self.opened > 0 && self.connect_s > 0.0).then(|| self.opened as f64 / self.connect_s)
    }

    /// Correct echoes in the window; `None` for idle runs.
    pub(super) fn messages(&self) -> Option<u64> {
        (!self.idle).then_some(self.counts.messages)
    }

    /// Echoes per second of the window.
    pub(super) fn msgs_per_s(&self) -> Option<f64> {
        let messages = self.messages()?;
        (self.window_s > 0.0).then(|| messages as f64 / self.window_s)
    }

    /// Payload bytes echoed per second, one way (what came back, not counting what was
    /// sent), in millions.
    pub(super) fn mb_per_s(&self) -> Option<f64> {
        Some(self.msgs_per_s()? * self.size as f64 / 1e6)
    }

    /// Round-trip times of the correct echoes, when there were some.
    pub(super) fn rtt(&self) -> Option<Rtt> {
        if self.idle {
            return None;
        }
        percentiles(&self.counts.rtt_ns)
    }

    /// `--deflate`: the payload bytes of the server's compressed replies over the bytes of
    /// the messages, when some came.
    pub(super) fn compression_ratio(&self) -> Option<f64> {
        self.deflate.as_ref()?;
        let plain = self.counts.compressed_plain;
        (plain > 0).then(|| self.counts.compressed_wire as f64 / plain as f64)
    }

    /// The `deflate` member of the JSON report: `null` without `--deflate`.
    fn deflate_json(&self) -> String {
        match &self.deflate {
            None => "null".to_owned(),
            Some(run) => format!(
                "{{\"offer\":{offer},\"size\":{size},\"plain_bytes\":{plain},\
                 \"wire_bytes\":{wire},\"ratio\":{ratio}}}",
                offer = json_string(&run.offer),
                size = run.size,
                plain = self.counts.compressed_plain,
                wire = self.counts.compressed_wire,
                ratio = number(self.compression_ratio(), 4),
            ),
        }
    }

    /// The client's CPU seconds during the window.
    pub(super) fn cpu_s(&self) -> Option<f64> {
        self.cpu_ns.map(|ns| ns as f64 / 1e9)
    }

    /// The client's CPU nanoseconds per echoed message.
    pub(super) fn cpu_ns_per_msg(&self) -> Option<f64> {
        let messages = self.messages().filter(|&m| m > 0)?;
        Some(self.cpu_ns? as f64 / messages as f64)
    }

    /// One JSON object on one line, with exactly the documented keys; `null` where a figure
    /// does not apply (traffic figures of an idle run, rates without a window).
    pub(super) fn to_json(&self) -> String {
        let traffic = |value: String| if self.idle { "null".to_owned() } else { value };
        let rtt = self.rtt();
        let pick = |f: fn(&Rtt) -> f64| number(rtt.as_ref().map(f), 3);
        let errors = ErrorKind::ALL
            .iter()
            .map(|&kind| format!("\"{kind}\":{}", self.counts.errors(kind)))
            .collect::<Vec<_>>()
            .join(",");
        let mut out = String::with_capacity(512);
        let _ = write!(
            out,
            "{{\"url\":{url},\"conns\":{conns},\"size\":{size},\"binary\":{binary},\
             \"inflight\":{inflight},\"duration_s\":{duration},\
             \"connections_opened\":{opened},\"connections_failed\":{failed},\
             \"handshakes_per_s\":{handshakes},\"messages\":{messages},\
             \"msgs_per_s\":{msgs},\"mb_per_s\":{mb},\
             \"rtt_us\":{{\"p50\":{p50},\"p99\":{p99},\"p999\":{p999},\"max\":{max}}},\
             \"errors\":{{{errors}}},\"client_cpu_s\":{cpu},\"client_cpu_ns_per_msg\":{cpu_msg},\
             \"deflate\":{deflate}}}",
            url = json_string(&self.url),
            conns = self.conns,
            size = traffic(self.size.to_string()),
            binary = traffic(self.binary.to_string()),
            inflight = traffic(self.inflight.to_string()),
            duration = number(Some(self.window_s), 3),
            opened = self.opened,
            failed = self.failed,
            handshakes = number(self.handshakes_per_s(), 1),
            messages = self.messages().map_or("null".to_owned(), |m| m.to_string()),
            msgs = number(self.msgs_per_s(), 1),
            mb = number(self.mb_per_s(), 3),
            p50 = pick(|r| r.p50),
            p99 = pick(|r| r.p99),
            p999 = pick(|r| r.p999),
            max = pick(|r| r.max),
            cpu = number(self.cpu_s(), 3),
            cpu_msg = number(self.cpu_ns_per_msg(), 1),
            deflate = self.deflate_json(),
        );
        out
    }

    /// A few aligned lines for a terminal.
    pub(super) fn to_text(&self) -> String {
        let mut lines = vec![format!("wsworker bench {}", self.url)];
        let handshakes = self
            .handshakes_per_s()
            .map(|rate| format!(", {rate:.0} handshakes/s"))
            .unwrap_or_default();
        lines.push(line(
            "connections",
            format!("{} opened, {} failed{handshakes}", self.opened, self.failed),
        ));
        // Without an open connection no window ran: only the errors are left to tell.
        if self.opened > 0 && self.idle {
            if let Some(run) = &self.deflate {
                let ratio = self
                    .compression_ratio()
                    .map_or("-".to_owned(), |ratio| format!("{ratio:.3}"));
                lines.push(line(
                    "deflate",
                    format!(
                        "offered {:?}; one {}-byte text message echoed per connection, \
                         replies {ratio} of the message bytes on the wire",
                        run.offer, run.size
                    ),
                ));
            }
            lines.push(line(
                "held",
                format!("{:.2} s without traffic", self.window_s),
            ));
        } else if self.opened > 0 {
            let kind = if self.binary { "binary" } else { "text" };
            let pace = match self.rate {
                Some(rate) => format!(
                    "paced at {rate} msgs/s in all, at most {} in flight",
                    self.inflight
                ),
                None => format!("{} in flight", self.inflight),
            };
            lines.push(line(
                "load",
                format!(
                    "{}-byte {kind} messages, {pace} per connection, {:.2} s",
                    self.size, self.window_s
                ),
            ));
            let msgs = self
                .msgs_per_s()
                .map_or("-".to_owned(), |r| format!("{r:.0}"));
            let mb = self
                .mb_per_s()
                .map_or("-".to_owned(), |r| format!("{r:.2}"));
            lines.push(line(
                "echoed",
                format!(
                    "{} messages, {msgs} msgs/s, {mb} MB/s of payload (one way)",
                    self.counts.messages
                ),
            ));
            lines.push(line("rtt", percentiles_text(self.rtt())));
        }
        lines.push(line(
            "errors",
            if self.counts.total_errors() == 0 {
                "none".to_owned()
            } else {
                ErrorKind::ALL
                    .iter()
                    .map(|&kind| format!("{kind} {}", self.counts.errors(kind)))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ));
        let per_message = self
            .cpu_ns_per_msg()
            .map(|ns| format!(", {ns:.0} ns per message"))
            .unwrap_or_default();
        if self.opened > 0 {
            lines.push(line(
                "client cpu",
                self.cpu_s().map_or("unknown".to_owned(), |s| {
                    format!("{s:.2} s in the window{per_message}")
                }),
            ));
        }
        lines.join("\n") + "\n"
    }

    /// The first error of each kind that occurred, with its count, one per line.
    pub(super) fn error_lines(&self) -> Vec<String> {
        ErrorKind::ALL
            .iter()
            .filter(|&&kind| self.counts.errors(kind) > 0)
            .map(|&kind| {
                let count = self.counts.errors(kind);
                let first = self.counts.sample(kind).unwrap_or("(no detail)");
                format!(
                    "{count} {kind} error{s}, the first: {first}",
                    s = if count == 1 { "" } else { "s" }
                )
            })
            .collect()
    }
}

/// The percentiles of a histogram of nanoseconds, in microseconds; `None` when it is empty.
pub(super) fn percentiles(histogram: &Histogram<u64>) -> Option<Rtt> {
    if histogram.is_empty() {
        return None;
    }
    let us = |ns: u64| ns as f64 / 1e3;
    Some(Rtt {
        p50: us(histogram.value_at_quantile(0.5)),
        p99: us(histogram.value_at_quantile(0.99)),
        p999: us(histogram.value_at_quantile(0.999)),
        max: us(histogram.max()),
    })
}

/// The four percentiles in the units that suit them, for the text report.
pub(super) fn percentiles_text(rtt: Option<Rtt>) -> String {
    match rtt {
        Some(rtt) => format!(
            "p50 {}  p99 {}  p99.9 {}  max {}",
            duration(rtt.p50),
            duration(rtt.p99),
            duration(rtt.p999),
            duration(rtt.max)
        ),
        None => "-".to_owned(),
    }
}

/// A labelled row of the table.
pub(super) fn line(label: &str, text: String) -> String {
    format!("  {label:<13}{text}")
}

/// Microseconds in the unit that suits them.
pub(super) fn duration(us: f64) -> String {
    if us < 1e3 {
        format!("{us:.0} µs")
    } else if us < 1e6 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// A JSON number with `decimals` decimals, or `null` (also for what JSON cannot write).
pub(super) fn number(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(value) if value.is_finite() => format!("{value:.decimals$}"),
        _ => "null".to_owned(),
    }
}

/// A JSON string literal.
pub(super) fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::bench::stats::{Local, Stats};

    fn report(idle: bool) -> Report {
        let stats = Stats::new(1);
        let mut local = Local::default();
        for us in 1..=1000 {
            local.echo(Duration::from_micros(us), true);
        }
        stats.flush(0, &mut local);
        stats.error(0, ErrorKind::Mismatch, "sent \"a\", got \"b\"");
        Report {
            url: "ws://127.0.0.1:9/\"x\"".to_owned(),
            conns: 2,
            idle,
            deflate: None,
            size: 20,
            binary: false,
            inflight: 16,
            rate: None,
            window_s: 2.0,
            opened: 2,
            failed: 0,
            connect_s: 0.5,
            counts: stats.merged(),
            cpu_ns: Some(1_000_000),
        }
    }

    #[test]
    fn json_has_the_documented_figures() {
        let json = report(false).to_json();
        assert!(json.starts_with(r#"{"url":"ws://127.0.0.1:9/\"x\"","conns":2,"size":20,"binary":false,"inflight":16,"duration_s":2.000,"connections_opened":2,"connections_failed":0,"handshakes_per_s":4.0,"messages":1000,"msgs_per_s":500.0,"mb_per_s":0.010,"rtt_us":{"p50":500."#), "{json}");
        assert!(json.ends_with(r#""errors":{"connect":0,"handshake":0,"protocol":0,"mismatch":1,"timeout":0},"client_cpu_s":0.001,"client_cpu_ns_per_msg":1000.0,"deflate":null}"#), "{json}");
        let idle = report(true).to_json();
        assert!(
            idle.contains(r#""size":null,"binary":null,"inflight":null"#),
            "{idle}"
        );
        assert!(idle.contains(r#""messages":null,"msgs_per_s":null,"mb_per_s":null,"rtt_us":{"p50":null,"p99":null,"p999":null,"max":null}"#), "{idle}");
        assert!(idle.contains(r#""client_cpu_ns_per_msg":null"#), "{idle}");
    }

    #[test]
    fn deflate_runs_report_the_offer_and_the_ratio() {
        let mut report = report(true);
        report.deflate = Some(DeflateRun {
            offer: "permessage-deflate; client_max_window_bits".to_owned(),
            size: 1024,
        });
        report.counts.compressed_plain = 2048;
        report.counts.compressed_wire = 512;
        assert_eq!(report.compression_ratio(), Some(0.25));
        let json = report.to_json();
        assert!(
            json.ends_with(
                r#""deflate":{"offer":"permessage-deflate; client_max_window_bits","size":1024,"plain_bytes":2048,"wire_bytes":512,"ratio":0.2500}}"#
            ),
            "{json}"
        );
        let text = report.to_text();
        assert!(
            text.contains("one 1024-byte text message echoed per connection, replies 0.250"),
            "{text}"
        );
        // No echo came back: no ratio.
        report.counts.compressed_plain = 0;
        assert_eq!(report.compression_ratio(), None);
        assert!(report.to_json().contains(r#""ratio":null"#));
    }

    #[test]
    fn text_and_error_lines_name_the_figures() {
        let report = report(false);
        let text = report.to_text();
        for expected in [
            "2 opened, 0 failed, 4 handshakes/s",
            "1000 messages, 500 msgs/s",
            "p50 500 µs",
            "mismatch 1",
            "1000 ns per message",
        ] {
            assert!(text.contains(expected), "{expected}: {text}");
        }
        assert!(!report.succeeded());
        assert_eq!(
            report.error_lines(),
            ["1 mismatch error, the first: connection 0: sent \"a\", got \"b\""]
        );
        assert_eq!(duration(1500.0), "1.50 ms");
        assert_eq!(number(Some(f64::NAN), 1), "null");
        assert_eq!(json_string("a\u{1}\\"), "\"a\\u0001\\\\\"");
    }
}
