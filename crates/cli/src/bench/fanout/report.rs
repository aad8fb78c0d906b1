//! The end of a fan-out run: its figures as one JSON object (`--json`) or a short table, and
//! the first error of each kind in words. The formatting helpers are the echo report's.

use std::fmt::Write as _;

use super::peer::OrderError;
use super::{FanoutPlan, Pace};
use crate::bench::report::{Rtt, json_string, line, number, percentiles, percentiles_text};
use crate::bench::stats::{Counts, ErrorKind};

/// One node's share of a fan-out run.
#[derive(Debug)]
pub(in crate::bench) struct NodeCounts {
    /// Its URL, as given.
    pub(in crate::bench) url: String,
    /// Subscribers opened on it.
    pub(in crate::bench) subscribers: u64,
    /// Deliveries to those subscribers.
    pub(in crate::bench) deliveries: u64,
}

/// Everything a fan-out run measured, and what it was asked to do.
#[derive(Debug)]
pub(in crate::bench) struct FanoutReport {
    /// What was asked.
    pub(super) plan: FanoutPlan,
    /// Subscribers whose handshake succeeded.
    pub(super) subscribers: u64,
    /// How long opening the subscribers took, in seconds.
    pub(super) connect_s: f64,
    /// Messages the publisher sent.
    pub(super) published: u64,
    /// The publishing window, in seconds (0 when it did not run).
    pub(super) window_s: f64,
    /// From the window's start to the last delivery, or the window if that is longer, in
    /// seconds: deliveries that lag behind the publisher stretch it.
    pub(super) span_s: f64,
    /// Deliveries, latencies and the errors of the echo mode's kinds.
    pub(super) counts: Counts,
    /// Order errors by kind (as [`OrderError::ALL`]), with the first one in words.
    pub(super) order: [(u64, Option<String>); 4],
    /// This process's CPU time from the start of publishing to the last close, in ns.
    pub(super) cpu_ns: Option<u64>,
    /// Per node (as the plan's URLs), what its subscribers got.
    pub(super) nodes: Vec<NodeCounts>,
}

impl FanoutReport {
    /// A report of a run that has opened `subscribers` connections and nothing more yet.
    pub(super) fn new(plan: FanoutPlan, subscribers: u64, connect_s: f64) -> Self {
        Self {
            plan,
            subscribers,
            connect_s,
            published: 0,
            window_s: 0.0,
            span_s: 0.0,
            counts: Counts::new(),
            order: Default::default(),
            cpu_ns: None,
            nodes: Vec::new(),
        }
    }

    /// Whether the run passes: every subscriber opened, something was published, every
    /// delivery came in order, and no error of any kind.
    pub(in crate::bench) fn succeeded(&self) -> bool {
        self.subscribers == self.plan.conns as u64
            && self.published > 0
            && self.total_errors() == 0
            && self.counts.messages == self.expected()
    }

    /// Every error, of every kind.
    fn total_errors(&self) -> u64 {
        self.counts.total_errors() + self.order.iter().map(|(count, _)| count).sum::<u64>()
    }

    /// Deliveries a correct server makes: every message to every subscriber.
    pub(super) fn expected(&self) -> u64 {
        self.published * self.subscribers
    }

    /// Deliveries per second, over [`Self::span_s`].
    fn deliveries_per_s(&self) -> Option<f64> {
        (self.span_s > 0.0).then(|| self.counts.messages as f64 / self.span_s)
    }

    /// The client's CPU nanoseconds per delivery.
    fn cpu_ns_per_delivery(&self) -> Option<f64> {
        let deliveries = Some(self.counts.messages).filter(|&d| d > 0)?;
        Some(self.cpu_ns? as f64 / deliveries as f64)
    }

    /// Subscribers opened per second of the connect phase.
    fn handshakes_per_s(&self) -> Option<f64> {
        (self.subscribers > 0 && self.connect_s > 0.0)
            .then(|| self.subscribers as f64 / self.connect_s)
    }

    /// Every error kind with its count, the echo mode's kinds first.
    fn errors(&self) -> Vec<(&'static str, u64)> {
        let mut errors: Vec<_> = ErrorKind::ALL
            .iter()
            .map(|&kind| (kind.name(), self.counts.errors(kind)))
            .collect();
        errors.extend(
            OrderError::ALL
                .iter()
                .zip(&self.order)
                .map(|(kind, (count, _))| (kind.name(), *count)),
        );
        errors
    }

    /// One JSON object on one line; `null` where a figure does not apply.
    pub(in crate::bench) fn to_json(&self) -> String {
        let latency = percentiles(&self.counts.rtt_ns);
        let (rate, inflight) = match self.plan.pace {
            Pace::Rate(rate) => (Some(rate), None),
            Pace::Inflight(inflight) => (None, Some(inflight)),
        };
        let pick = |f: fn(&Rtt) -> f64| number(latency.as_ref().map(f), 3);
        let errors = self
            .errors()
            .iter()
            .map(|(name, count)| format!("\"{name}\":{count}"))
            .collect::<Vec<_>>()
            .join(",");
        let nodes = self
            .nodes
            .iter()
            .map(|node| {
                format!(
                    "{{\"url\":{},\"subscribers\":{},\"deliveries\":{}}}",
                    json_string(&node.url),
                    node.subscribers,
                    node.deliveries
                )
            })
            .collect::<Vec<_>>()
            .join(",");
        let mut out = String::with_capacity(512);
        let _ = write!(
            out,
            "{{\"mode\":\"fanout\",\"url\":{url},\"room\":{room},\"conns\":{conns},\
             \"size\":{size},\"deflate\":{deflate},\"rate\":{rate},\"inflight\":{inflight},\
             \"duration_s\":{duration},\
             \"connections_opened\":{opened},\"handshakes_per_s\":{handshakes},\
             \"published\":{published},\"deliveries\":{deliveries},\
             \"expected_deliveries\":{expected},\"delivery_span_s\":{span},\
             \"deliveries_per_s\":{per_s},\
             \"latency_us\":{{\"p50\":{p50},\"p99\":{p99},\"p999\":{p999},\"max\":{max}}},\
             \"errors\":{{{errors}}},\"client_cpu_s\":{cpu},\
             \"client_cpu_ns_per_delivery\":{cpu_delivery},\"nodes\":[{nodes}]}}",
            url = json_string(&self.plan.urls[0]),
            room = json_string(&self.plan.room),
            conns = self.plan.conns,
            size = self.plan.size,
            deflate = self.plan.deflate,
            rate = number(rate, 1),
            inflight = inflight.map_or("null".to_owned(), |k| k.to_string()),
            duration = number(Some(self.window_s), 3),
            opened = self.subscribers,
            handshakes = number(self.handshakes_per_s(), 1),
            published = self.published,
            deliveries = self.counts.messages,
            expected = self.expected(),
            span = number(Some(self.span_s), 3),
            per_s = number(self.deliveries_per_s(), 1),
            p50 = pick(|r| r.p50),
            p99 = pick(|r| r.p99),
            p999 = pick(|r| r.p999),
            max = pick(|r| r.max),
            cpu = number(self.cpu_ns.map(|ns| ns as f64 / 1e9), 3),
            cpu_delivery = number(self.cpu_ns_per_delivery(), 1),
        );
        out
    }

    /// A few aligned lines for a terminal.
    pub(in crate::bench) fn to_text(&self) -> String {
        let plan = &self.plan;
        let mut lines = vec![format!("wsworker bench --fanout {}", plan.urls[0])];
        let handshakes = self
            .handshakes_per_s()
            .map(|rate| format!(", {rate:.0} handshakes/s"))
            .unwrap_or_default();
        lines.push(line(
            "subscribers",
            format!(
                "{} of {} opened in room {:?}{handshakes}",
                self.subscribers, plan.conns, plan.room
            ),
        ));
        if self.nodes.len() > 1 {
            let nodes = (self.nodes.iter().enumerate())
                .map(|(i, node)| {
                    let s = if node.subscribers == 1 { "" } else { "s" };
                    let publisher = if i == 0 { " and the publisher" } else { "" };
                    format!(
                        "{}: {} subscriber{s}{publisher}, {} deliveries",
                        node.url, node.subscribers, node.deliveries
                    )
                })
                .collect::<Vec<_>>();
            lines.push(line("nodes", nodes.join("; ")));
        }
        let pace = match plan.pace {
            Pace::Rate(rate) => format!("paced at {rate} msgs/s"),
            Pace::Inflight(inflight) => {
                let per_s = if self.window_s > 0.0 {
                    format!(": {:.0} msgs/s", self.published as f64 / self.window_s)
                } else {
                    String::new()
                };
                format!("{inflight} in flight (closed loop){per_s}")
            }
        };
        lines.push(line(
            "published",
            format!(
                "{} messages of {} bytes{}, {pace}, {:.2} s",
                self.published,
                plan.size,
                if plan.deflate {
                    " (permessage-deflate)"
                } else {
                    ""
                },
                self.window_s
            ),
        ));
        let per_s = self
            .deliveries_per_s()
            .map_or("-".to_owned(), |r| format!("{r:.0}"));
        lines.push(line(
            "delivered",
            format!(
                "{} of {} expected, {per_s} deliveries/s (the last {:.2} s after the first \
                 message)",
                self.counts.messages,
                self.expected(),
                self.span_s
            ),
        ));
        lines.push(line(
            "latency",
            percentiles_text(percentiles(&self.counts.rtt_ns)),
        ));
        lines.push(line(
            "errors",
            if self.total_errors() == 0 {
                "none".to_owned()
            } else {
                self.errors()
                    .iter()
                    .map(|(name, count)| format!("{name} {count}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ));
        let per_delivery = self
            .cpu_ns_per_delivery()
            .map(|ns| format!(", {ns:.0} ns per delivery"))
            .unwrap_or_default();
        lines.push(line(
            "client cpu",
            self.cpu_ns.map_or("unknown".to_owned(), |ns| {
                format!("{:.2} s{per_delivery}", ns as f64 / 1e9)
            }),
        ));
        lines.join("\n") + "\n"
    }

    /// The first error of each kind that occurred, with its count, one per line; and what
    /// did not add up.
    pub(in crate::bench) fn error_lines(&self) -> Vec<String> {
        let described = |name: &str, count: u64, first: Option<&str>| {
            format!(
                "{count} {name} error{s}, the first: {first}",
                s = if count == 1 { "" } else { "s" },
                first = first.unwrap_or("(no detail)")
            )
        };
        let mut lines: Vec<_> = ErrorKind::ALL
            .iter()
            .filter(|&&kind| self.counts.errors(kind) > 0)
            .map(|&kind| {
                described(
                    kind.name(),
                    self.counts.errors(kind),
                    self.counts.sample(kind),
                )
            })
            .collect();
        lines.extend(
            OrderError::ALL
                .iter()
                .zip(&self.order)
                .filter(|(_, (count, _))| *count > 0)
                .map(|(kind, (count, first))| described(kind.name(), *count, first.as_deref())),
        );
        if self.subscribers == 0 {
            lines.push(format!(
                "no subscriber could connect to {}",
                self.plan.urls.join(", ")
            ));
        } else if self.published == 0 {
            lines.push("nothing was published".to_owned());
        } else if self.counts.messages != self.expected() {
            lines.push(format!(
                "{} deliveries of {} expected",
                self.counts.messages,
                self.expected()
            ));
            // Across nodes, which node's subscribers went short says where to look.
            if self.nodes.len() > 1 {
                lines.extend(
                    (self.nodes.iter())
                        .filter(|node| node.deliveries != node.subscribers * self.published)
                        .map(|node| {
                            format!(
                                "{}: {} deliveries of {} expected ({} subscribers)",
                                node.url,
                                node.deliveries,
                                node.subscribers * self.published,
                                node.subscribers
                            )
                        }),
                );
            }
        }
        lines
    }
}
