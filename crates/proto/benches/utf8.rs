//! UTF-8 validation throughput beside `std::str::from_utf8`, on ASCII and on mixed text.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use wsworker_proto::Utf8Validator;

fn utf8(c: &mut Criterion) {
    let size = 1 << 20;
    let inputs = [
        ("ascii", "hello tom, ".repeat(size / 11)),
        ("mixed", "hello κόσμε 🎉 ".repeat(size / 20)),
    ];
    let mut group = c.benchmark_group("utf8");
    for (name, text) in &inputs {
        let bytes = text.as_bytes();
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("std_from_utf8", name),
            bytes,
            |b, bytes| {
                b.iter(|| std::str::from_utf8(black_box(bytes)).is_ok());
            },
        );
        group.bench_with_input(BenchmarkId::new("validator", name), bytes, |b, bytes| {
            b.iter(|| {
                let mut v = Utf8Validator::new();
                v.feed(black_box(bytes)).is_ok() && v.finish().is_ok()
            });
        });
        // The same text arriving in 4 KiB reads, split inside code points.
        group.bench_with_input(
            BenchmarkId::new("validator_4k_pieces", name),
            bytes,
            |b, bytes| {
                b.iter(|| {
                    let mut v = Utf8Validator::new();
                    bytes
                        .chunks(4093)
                        .all(|piece| v.feed(black_box(piece)).is_ok())
                        && v.finish().is_ok()
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, utf8);
criterion_main!(benches);
