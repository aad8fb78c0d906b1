//! The driver over a `tokio::io::duplex`, with tokio's paused clock where time is the subject.

use std::cell::RefCell;
use std::rc::Rc;
use std::task::Waker;

use tokio::io::{AsyncWriteExt, DuplexStream};
use wsworker_proto::{Config, Message};

use super::*;
use crate::shared::contain;

/// What the test handler saw.
#[derive(Default)]
struct Seen {
    messages: Vec<Message>,
    closes: Vec<CloseInfo>,
}

/// Records events; panics on a message when told to, as a bug of ours would (nothing
/// contains it, unlike the server's callbacks).
struct Recorder {
    shared: Shared,
    seen: Rc<RefCell<Seen>>,
    panic_on_message: bool,
}

impl Handler for Recorder {
    fn shared(&self) -> &Shared {
        &self.shared
    }

    fn on_event(&mut self, event: Event) {
        if let Event::Message(message) = event {
            assert!(!self.panic_on_message, "a bug in the library");
            self.seen.borrow_mut().messages.push(message);
        }
    }

    fn on_error(&mut self, _: Error) {}

    fn on_close(&mut self, info: CloseInfo) {
        self.seen.borrow_mut().closes.push(info);
    }
}

struct Setup {
    driver: Driver<DuplexStream, Recorder>,
    peer: DuplexStream,
    seen: Rc<RefCell<Seen>>,
    counters: Arc<WorkerCounters>,
}

fn server(panic_on_message: bool) -> Setup {
    let (io, peer) = tokio::io::duplex(1 << 20);
    let seen = Rc::new(RefCell::new(Seen::default()));
    let handler = Recorder {
        shared: Shared::new(),
        seen: seen.clone(),
        panic_on_message,
    };
    let counters = Arc::new(WorkerCounters::default());
    let driver = Driver::new(
        io,
        Proto::new(Role::Server, Config::default()),
        handler,
        Arc::default(),
    )
    .with_counters(counters.clone());
    Setup {
        driver,
        peer,
        seen,
        counters,
    }
}

/// A client's (masked) frame of a text message.
fn client_frame(text: &str) -> Vec<u8> {
    let mut client = Proto::new(Role::Client, Config::default());
    client.send_text(text.to_owned()).unwrap();
    let mut bytes = Vec::new();
    while let Some(chunk) = client.poll_transmit() {
        bytes.extend_from_slice(&chunk);
    }
    bytes
}

fn poll(driver: &mut Driver<DuplexStream, Recorder>) -> Poll<()> {
    Pin::new(driver).poll(&mut Context::from_waker(Waker::noop()))
}

#[tokio::test]
async fn a_driver_dropped_before_the_end_reports_1006_and_balances_the_counters() {
    let Setup {
        mut driver,
        seen,
        counters,
        peer: _peer,
    } = server(false);
    assert!(poll(&mut driver).is_pending());
    assert_eq!(counters.open(), 1);
    // As the worker's runtime does with the connections left at the shutdown deadline.
    drop(driver);
    let closes = &seen.borrow().closes;
    assert_eq!(closes.len(), 1, "on_close ran once");
    assert_eq!(closes[0].code, CloseCode::ABNORMAL);
    assert!(!closes[0].was_clean);
    assert_eq!(counters.open(), 0);
}

#[tokio::test]
async fn a_panic_out_of_the_driver_still_ends_the_connection_properly() {
    let Setup {
        mut driver,
        mut peer,
        seen,
        counters,
    } = server(true);
    peer.write_all(&client_frame("boom")).await.unwrap();
    // The event loop contains a panic that escapes a connection, then drops it.
    assert!(contain(|| poll(&mut driver)).is_err());
    drop(driver);
    let closes = &seen.borrow().closes;
    assert_eq!(closes.len(), 1, "on_close ran once");
    assert_eq!(closes[0].code, CloseCode::ABNORMAL);
    assert_eq!(counters.open(), 0, "the max_connections slot is free again");
}

#[tokio::test]
async fn a_driver_dropped_unopened_balances_the_counters_without_on_close() {
    let Setup {
        driver,
        seen,
        counters,
        ..
    } = server(false);
    assert_eq!(counters.open(), 1);
    drop(driver);
    assert!(seen.borrow().closes.is_empty(), "never reported open");
    assert_eq!(counters.open(), 0);
}

#[tokio::test]
async fn a_connection_ended_normally_reports_once() {
    let Setup {
        mut driver,
        peer,
        seen,
        counters,
    } = server(false);
    assert!(poll(&mut driver).is_pending());
    drop(peer);
    assert!(poll(&mut driver).is_ready());
    drop(driver);
    assert_eq!(seen.borrow().closes.len(), 1);
    assert_eq!(counters.open(), 0);
}

#[tokio::test]
async fn the_start_of_a_frame_is_parked_small_and_the_read_buffer_goes_back() {
    let Setup {
        mut driver,
        mut peer,
        seen,
        ..
    } = server(false);
    let frame = client_frame("hello");
    // A frame's first byte, then its next few, each read on its own.
    for (at, end) in [(0, 1), (1, 3), (3, 9)] {
        peer.write_all(&frame[at..end]).await.unwrap();
        assert!(poll(&mut driver).is_pending());
        let held = driver.conn.recv_buffer_mut();
        // Once the header (2 bytes and the 4 of the mask) is whole, the payload's start
        // is what is left.
        let left = if end < 6 { end } else { end - 6 };
        assert_eq!(held.len(), left, "the leftover is kept");
        assert!(
            held.capacity() < 64,
            "the leftover of {end} bytes holds {} bytes",
            held.capacity()
        );
        assert!(
            buffers::read_buffer_at_home().is_some_and(|c| c >= buffers::READ_SIZE),
            "the worker's read buffer is back"
        );
    }
    peer.write_all(&frame[9..]).await.unwrap();
    assert!(poll(&mut driver).is_pending());
    assert_eq!(seen.borrow().messages, [Message::from("hello")]);
    assert_eq!(driver.conn.recv_buffer_mut().capacity(), 0);
}

#[tokio::test]
async fn a_large_partial_frame_keeps_its_buffer_and_arrives_whole() {
    let Setup {
        mut driver,
        mut peer,
        seen,
        ..
    } = server(false);
    let text = "x".repeat(300_000);
    let frame = client_frame(&text);
    let mut sent = 0;
    for piece in frame.chunks(50_000) {
        peer.write_all(piece).await.unwrap();
        sent += piece.len();
        assert!(poll(&mut driver).is_pending());
        if sent < frame.len() {
            // Far more than a leftover worth parking: the decoder's room stays.
            assert!(driver.conn.recv_buffer_mut().capacity() >= 50_000);
        }
    }
    assert_eq!(seen.borrow().messages, [Message::from(text)]);
}

#[tokio::test]
async fn frames_split_anywhere_across_reads_arrive_whole() {
    let Setup {
        mut driver,
        mut peer,
        seen,
        ..
    } = server(false);
    let messages: Vec<String> = (0..40).map(|i| "m".repeat(i * 37)).collect();
    let stream: Vec<u8> = messages.iter().flat_map(|m| client_frame(m)).collect();
    // Reads of every size from 1 byte up, so each read ends at another point of a frame.
    let mut at = 0;
    let mut size = 1;
    while at < stream.len() {
        let end = (at + size).min(stream.len());
        peer.write_all(&stream[at..end]).await.unwrap();
        assert!(poll(&mut driver).is_pending());
        at = end;
        size += 7;
    }
    let seen = seen.borrow();
    let got: Vec<&str> = seen.messages.iter().map(|m| m.to_text().unwrap()).collect();
    assert_eq!(got, messages);
}
