//! Parsing a stream of small masked client frames, as a server receives them: the whole
//! connection (events out, UTF-8 checked) owning each message (`poll_event`), lending it
//! (`poll_event_ref`) or lending runs of plain messages (`poll_message_ref`, the runtime's
//! path), the frame decoder alone, and a memcpy of the same bytes as the floor.
#![allow(missing_docs)]

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use wsworker_proto::frame::{Decoded, FrameDecoder};
use wsworker_proto::{Config, Connection, Event, EventRef, Role};

/// `count` text frames of `size` bytes each, as a client sends them.
fn client_stream(count: usize, size: usize) -> Vec<u8> {
    let mut client = Connection::new(Role::Client, Config::default());
    client.set_mask_seed_insecure_for_tests(7);
    let text = "x".repeat(size);
    let mut out = Vec::new();
    for _ in 0..count {
        client.send_text(text.as_str()).unwrap();
        while let Some(chunk) = client.poll_transmit() {
            out.extend_from_slice(&chunk);
        }
    }
    out
}

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    for size in [20usize, 1024] {
        let count = 10_000;
        let stream = client_stream(count, size);
        group.throughput(Throughput::Bytes(stream.len() as u64));
        group.bench_with_input(BenchmarkId::new("memcpy", size), &stream, |b, stream| {
            let mut buf = vec![0u8; stream.len()];
            b.iter(|| buf.copy_from_slice(black_box(stream)));
        });
        group.bench_with_input(
            BenchmarkId::new("frame_decoder", size),
            &stream,
            |b, stream| {
                b.iter(|| {
                    let mut buf = BytesMut::from(&stream[..]);
                    let mut decoder = FrameDecoder::new(Role::Server, 1 << 20);
                    let mut frames = 0;
                    while let Ok(Some(d)) = decoder.decode(&mut buf) {
                        frames +=
                            usize::from(matches!(d, Decoded::Payload(_) | Decoded::Frame(..)));
                    }
                    assert_eq!(frames, count);
                });
            },
        );
        group.bench_with_input(
            BenchmarkId::new("connection", size),
            &stream,
            |b, stream| {
                b.iter(|| {
                    let mut conn = Connection::new(Role::Server, Config::default());
                    conn.receive(stream);
                    let mut messages = 0;
                    while let Ok(Some(event)) = conn.poll_event() {
                        messages += usize::from(matches!(event, Event::Message(_)));
                    }
                    assert_eq!(messages, count);
                });
            },
        );
        group.bench_with_input(
            BenchmarkId::new("connection_ref", size),
            &stream,
            |b, stream| {
                b.iter(|| {
                    let mut conn = Connection::new(Role::Server, Config::default());
                    conn.receive(stream);
                    let mut messages = 0;
                    while let Ok(Some(event)) = conn.poll_event_ref() {
                        messages += usize::from(matches!(event, EventRef::Message(_)));
                    }
                    assert_eq!(messages, count);
                });
            },
        );
        group.bench_with_input(
            BenchmarkId::new("message_ref", size),
            &stream,
            |b, stream| {
                b.iter(|| {
                    let mut conn = Connection::new(Role::Server, Config::default());
                    conn.receive(stream);
                    let mut bytes = 0;
                    loop {
                        while let Some(message) = conn.poll_message_ref() {
                            bytes += message.len();
                        }
                        if !matches!(conn.poll_event_ref(), Ok(Some(_))) {
                            break;
                        }
                    }
                    assert_eq!(bytes, count * size);
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
