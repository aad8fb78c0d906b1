//! The Hub's plain fan-out: `send_to_all` to 1,000 connections of this node, whose inboxes
//! no driver empties while it is timed (they are emptied between batches, untimed). Once
//! with a Hub that has no resume set, once with one set for resume whose connections do not
//! resume.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use wsworker::bench::FanOut;

/// Sends timed between two drains: the inboxes stay small.
const BATCH: u64 = 16;

fn send_to_all(c: &mut Criterion) {
    let mut group = c.benchmark_group("hub_send_to_all");
    let n = 1000;
    group.throughput(Throughput::Elements(n as u64));
    for (name, resume) in [("plain", false), ("resume_set", true)] {
        let fanout = FanOut::new(n, resume);
        let payload = vec![b'x'; 64];
        group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let batch = left.min(BATCH);
                    let start = Instant::now();
                    for _ in 0..batch {
                        black_box(fanout.hub().send_to_all(payload.clone()));
                    }
                    spent += start.elapsed();
                    fanout.drain();
                    left -= batch;
                }
                spent
            });
        });
    }
    group.finish();
}

criterion_group!(benches, send_to_all);
criterion_main!(benches);
