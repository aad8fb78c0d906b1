//! Masking throughput beside its baselines: a memcpy of the same buffer (the bar to meet)
//! and the bytewise reference implementation.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use wsworker_proto::mask::{apply_mask, apply_mask_bytewise};

fn mask(c: &mut Criterion) {
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let mut group = c.benchmark_group("mask");
    for size in [20usize, 1024, 64 * 1024, 1 << 20] {
        let src = vec![0x5au8; size];
        let mut buf = vec![0u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("memcpy", size), &size, |b, _| {
            b.iter(|| buf.copy_from_slice(black_box(&src)));
        });
        group.bench_with_input(BenchmarkId::new("apply_mask", size), &size, |b, _| {
            b.iter(|| apply_mask(black_box(&mut buf), key, 0));
        });
        // Unaligned start, as in a payload that follows a 6-byte header in the buffer.
        group.bench_with_input(
            BenchmarkId::new("apply_mask_unaligned", size),
            &size,
            |b, _| {
                b.iter(|| apply_mask(black_box(&mut buf[1..]), key, 0));
            },
        );
        if size <= 64 * 1024 {
            group.bench_with_input(BenchmarkId::new("bytewise", size), &size, |b, _| {
                b.iter(|| apply_mask_bytewise(black_box(&mut buf), key, 0));
            });
        }
    }
    group.finish();
}

criterion_group!(benches, mask);
criterion_main!(benches);
