//! The driver over a `tokio::io::duplex`, with tokio's paused clock where time is the subject.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::Waker;

use tokio::io::{AsyncWriteExt, DuplexStream, ReadBuf};
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
    /// Whether the handler takes more events ([`Handler::poll_ready`]).
    ready: Rc<Cell<bool>>,
    /// Sends every message back, from the callback.
    echo: bool,
}

impl Handler for Recorder {
    fn shared(&self) -> &Shared {
        &self.shared
    }

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<()> {
        if self.ready.get() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    fn on_event(&mut self, event: Event) {
        if let Event::Message(message) = event {
            assert!(!self.panic_on_message, "a bug in the library");
            if self.echo {
                self.shared.send(message.clone()).unwrap();
            }
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
    ready: Rc<Cell<bool>>,
}

fn server(panic_on_message: bool) -> Setup {
    server_with(panic_on_message, DriverConfig::default(), 1 << 20)
}

/// A server driver on a pipe that holds `pipe` bytes each way.
fn server_with(panic_on_message: bool, config: DriverConfig, pipe: usize) -> Setup {
    let (io, peer) = tokio::io::duplex(pipe);
    let seen = Rc::new(RefCell::new(Seen::default()));
    let ready = Rc::new(Cell::new(true));
    let handler = Recorder {
        shared: Shared::new(),
        seen: seen.clone(),
        panic_on_message,
        ready: ready.clone(),
        echo: false,
    };
    let counters = Arc::new(WorkerCounters::default());
    let driver = Driver::new(
        io,
        Proto::new(Role::Server, Config::default()),
        handler,
        Arc::new(config),
    )
    .with_counters(counters.clone());
    Setup {
        driver,
        peer,
        seen,
        counters,
        ready,
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
        ..
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
        ..
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
        ..
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
        assert!(!driver.rest(), "a frame's start is held");
        let held = driver.conn.get().recv_buffer_mut();
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
    assert_eq!(driver.conn.get().recv_buffer_mut().capacity(), 0);
    // Nothing in flight: the sweep puts the protocol state to sleep (a poll does not, or
    // a busy connection would wake and sleep for each message).
    assert!(!driver.conn.is_asleep());
    assert!(driver.rest());
    assert!(driver.conn.is_asleep());
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
            assert!(driver.conn.get().recv_buffer_mut().capacity() >= 50_000);
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

/// The client at the other end of the duplex: what the driver wrote, decoded.
struct Client {
    io: DuplexStream,
    proto: Proto,
    /// The driver's write side ended.
    eof: bool,
}

impl Client {
    fn new(io: DuplexStream) -> Self {
        Self {
            io,
            proto: Proto::new(Role::Client, Config::default()),
            eof: false,
        }
    }

    /// Does `f` on the client's protocol core and writes what it queued (and any answer
    /// queued before: a pong, a close frame).
    async fn send(&mut self, f: impl FnOnce(&mut Proto)) {
        f(&mut self.proto);
        self.flush().await;
    }

    async fn flush(&mut self) {
        while let Some(chunk) = self.proto.poll_transmit() {
            self.io.write_all(&chunk).await.unwrap();
        }
    }

    /// The events in what the driver has written so far.
    fn received(&mut self) -> Vec<Event> {
        let mut buf = [0u8; 4096];
        loop {
            let mut read = ReadBuf::new(&mut buf);
            let cx = &mut Context::from_waker(Waker::noop());
            match Pin::new(&mut self.io).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) if read.filled().is_empty() => {
                    self.eof = true;
                    break;
                }
                Poll::Ready(Ok(())) => self.proto.receive(read.filled()),
                _ => break,
            }
        }
        let mut events = Vec::new();
        while let Some(event) = self.proto.poll_event().unwrap() {
            events.push(event);
        }
        events
    }
}

fn close_frame(code: CloseCode, reason: &str) -> Event {
    Event::Close(Some(wsworker_proto::CloseFrame {
        code,
        reason: reason.into(),
    }))
}

#[tokio::test]
async fn a_peer_that_half_closes_without_a_close_frame_ends_the_connection_with_1006() {
    let Setup {
        mut driver,
        mut peer,
        seen,
        ..
    } = server(false);
    assert!(poll(&mut driver).is_pending());
    peer.write_all(&client_frame("last words")).await.unwrap();
    // Only the peer's write side ends: its read side would still take an answer.
    peer.shutdown().await.unwrap();
    assert!(poll(&mut driver).is_ready());
    assert!(matches!(driver.stage, Stage::Reported));
    drop(driver);
    let seen = seen.borrow();
    assert_eq!(
        seen.messages,
        [Message::from("last words")],
        "read before the end"
    );
    assert_eq!(seen.closes[0], CloseInfo::dropped());
}

#[tokio::test]
async fn the_peers_close_is_answered_then_the_server_half_closes_and_waits_for_its_end() {
    let Setup {
        mut driver,
        peer,
        seen,
        ..
    } = server(false);
    let mut client = Client::new(peer);
    assert!(poll(&mut driver).is_pending());
    client
        .send(|c| c.close(CloseCode::NORMAL, "bye").unwrap())
        .await;
    assert!(
        poll(&mut driver).is_pending(),
        "the client's end is awaited"
    );
    assert!(matches!(driver.stage, Stage::WriteShut(_)));
    assert!(
        driver.conn.is_asleep(),
        "the handshake is over: the state machine sleeps until the client's end"
    );
    assert_eq!(driver.conn.ready_state(), ReadyState::Closed);
    assert_eq!(
        client.received(),
        [close_frame(CloseCode::NORMAL, "")],
        "the code echoed"
    );
    assert!(client.eof, "the server's write side is shut");
    assert!(seen.borrow().closes.is_empty());

    client.io.shutdown().await.unwrap();
    assert!(poll(&mut driver).is_ready());
    drop(driver);
    let closes = &seen.borrow().closes;
    assert_eq!(closes.len(), 1);
    assert_eq!(
        closes[0],
        CloseInfo {
            code: CloseCode::NORMAL,
            reason: "bye".into(),
            was_clean: true
        }
    );
}

#[tokio::test]
async fn our_close_waits_for_the_peers_then_the_write_side_is_shut() {
    let Setup {
        mut driver,
        peer,
        seen,
        ..
    } = server(false);
    let mut client = Client::new(peer);
    assert!(poll(&mut driver).is_pending());
    driver
        .handler
        .shared()
        .submit(Command::Close(CloseCode::GOING_AWAY, "leaving".into()))
        .unwrap();
    assert!(poll(&mut driver).is_pending());
    assert!(matches!(driver.stage, Stage::Closing(_)));
    assert!(!driver.rest(), "the peer's close is still to come");
    assert_eq!(
        client.received(),
        [close_frame(CloseCode::GOING_AWAY, "leaving")]
    );
    assert!(!client.eof, "not before the closing handshake is done");
    assert!(
        driver.handler.shared().send("too late").is_err(),
        "closing: sends are refused"
    );

    // The client's protocol core queued its answer when it read ours.
    client.flush().await;
    assert!(poll(&mut driver).is_pending());
    assert!(matches!(driver.stage, Stage::WriteShut(_)));
    assert!(driver.conn.is_asleep());
    assert!(client.received().is_empty());
    assert!(client.eof);
    drop(client);
    assert!(poll(&mut driver).is_ready());
    drop(driver);
    let closes = &seen.borrow().closes;
    assert_eq!(
        closes[0].code,
        CloseCode::GOING_AWAY,
        "the peer's echo of ours"
    );
    assert!(closes[0].was_clean);
}

#[tokio::test(start_paused = true)]
async fn the_close_timeout_ends_a_connection_whose_peer_never_answers_the_close() {
    let Setup {
        mut driver,
        peer: _peer,
        seen,
        ..
    } = server(false);
    assert!(poll(&mut driver).is_pending());
    driver
        .handler
        .shared()
        .submit(Command::Close(CloseCode::NORMAL, String::new()))
        .unwrap();
    assert!(poll(&mut driver).is_pending());
    tokio::time::advance(DriverConfig::default().close_timeout - Duration::from_millis(1)).await;
    assert!(poll(&mut driver).is_pending());
    tokio::time::advance(Duration::from_millis(1)).await;
    ends_by_the_close_timeout(driver, &seen);
}

/// Polls `driver`, whose close timeout passed with our close unanswered: it ends, unclean.
fn ends_by_the_close_timeout(mut driver: Driver<DuplexStream, Recorder>, seen: &RefCell<Seen>) {
    assert!(poll(&mut driver).is_ready());
    drop(driver);
    let closes = &seen.borrow().closes;
    assert_eq!(closes[0].code, CloseCode::NORMAL, "ours, the only one");
    assert!(!closes[0].was_clean);
}

/// A server with [`keepalive_config`] on the loop's clock, polled once (open, asleep): the
/// driver, its client and what its handler saw.
fn on_loop_clock() -> (Driver<DuplexStream, Recorder>, Client, Rc<RefCell<Seen>>) {
    let Setup {
        driver, peer, seen, ..
    } = server_with(false, keepalive_config(), 1 << 20);
    let mut driver = driver.with_loop_clock();
    assert!(poll(&mut driver).is_pending());
    (driver, Client::new(peer), seen)
}

#[tokio::test(start_paused = true)]
async fn on_the_loops_clock_the_close_timeout_is_the_ticks_and_no_timer_of_its_own() {
    let (mut driver, mut client, seen) = on_loop_clock();
    driver
        .handler
        .shared()
        .submit(Command::Close(CloseCode::NORMAL, String::new()))
        .unwrap();
    let start = Instant::now();
    assert!(poll(&mut driver).is_pending());
    assert!(
        matches!(driver.stage, Stage::Closing(None)),
        "the loop's clock watches the close timeout"
    );
    let timeout = DriverConfig::default().close_timeout;
    // Bytes from the peer (a message, not its close) do not move the deadline.
    client.send(|c| c.send_text("late").unwrap()).await;
    assert!(poll(&mut driver).is_pending());
    tokio::time::advance(timeout - Duration::from_millis(1)).await;
    assert!(poll(&mut driver).is_pending());
    assert!(!driver.keepalive_tick(start + timeout - Duration::from_millis(1)));
    // The tick that finds it due has the loop poll it, which ends it.
    assert!(driver.keepalive_tick(start + timeout));
    tokio::time::advance(Duration::from_millis(1)).await;
    ends_by_the_close_timeout(driver, &seen);
}

/// A keepalive of a 10 s interval and a 5 s timeout.
fn keepalive_config() -> DriverConfig {
    DriverConfig {
        keepalive: Some(Keepalive::new(
            Duration::from_secs(10),
            Duration::from_secs(5),
        )),
        ..DriverConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn the_keepalive_pings_a_silent_peer_and_drops_it_when_the_ping_goes_unanswered() {
    let Setup {
        mut driver,
        peer,
        seen,
        ..
    } = server_with(false, keepalive_config(), 1 << 20);
    let mut client = Client::new(peer);
    assert!(poll(&mut driver).is_pending());
    tokio::time::advance(Duration::from_millis(9_999)).await;
    assert!(poll(&mut driver).is_pending());
    assert!(client.received().is_empty(), "not yet");
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(poll(&mut driver).is_pending());
    assert_eq!(client.received(), [Event::Ping(Bytes::new())]);

    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(poll(&mut driver).is_ready());
    drop(driver);
    let closes = &seen.borrow().closes;
    assert_eq!(
        closes[0],
        CloseInfo::unclean(CloseCode::ABNORMAL, "keepalive timeout")
    );
}

#[tokio::test(start_paused = true)]
async fn an_answered_keepalive_ping_keeps_the_connection_and_the_next_comes_an_interval_later() {
    let Setup {
        mut driver, peer, ..
    } = server_with(false, keepalive_config(), 1 << 20);
    let mut client = Client::new(peer);
    assert!(poll(&mut driver).is_pending());
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(poll(&mut driver).is_pending());
    assert_eq!(client.received(), [Event::Ping(Bytes::new())]);
    tokio::time::advance(Duration::from_secs(4)).await;
    client.flush().await; // the pong
    assert!(poll(&mut driver).is_pending());

    // Silence from the pong on: the next ping 10 s after it, not 5 s after the ping.
    tokio::time::advance(Duration::from_secs(6)).await;
    assert!(poll(&mut driver).is_pending());
    assert!(client.received().is_empty());
    tokio::time::advance(Duration::from_secs(4)).await;
    assert!(poll(&mut driver).is_pending());
    assert_eq!(client.received(), [Event::Ping(Bytes::new())]);
}

#[tokio::test(start_paused = true)]
async fn the_keepalive_waits_while_the_handler_takes_no_events_and_counts_afresh_after() {
    let Setup {
        mut driver,
        peer,
        seen,
        ready,
        ..
    } = server_with(false, keepalive_config(), 1 << 20);
    let mut client = Client::new(peer);
    assert!(poll(&mut driver).is_pending());
    ready.set(false);
    assert!(poll(&mut driver).is_pending());
    // Far past the ping and its timeout: the peer's answer could be waiting unread.
    tokio::time::advance(Duration::from_secs(60)).await;
    assert!(poll(&mut driver).is_pending());
    assert!(client.received().is_empty(), "no ping while paused");

    ready.set(true);
    assert!(poll(&mut driver).is_pending());
    tokio::time::advance(Duration::from_millis(9_999)).await;
    assert!(poll(&mut driver).is_pending());
    assert!(
        client.received().is_empty(),
        "silence counted from the resumption"
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(poll(&mut driver).is_pending());
    assert_eq!(client.received(), [Event::Ping(Bytes::new())]);
    assert!(seen.borrow().closes.is_empty());
}

#[tokio::test(start_paused = true)]
async fn on_the_loops_clock_the_keepalive_steps_only_when_ticked() {
    let start = Instant::now();
    let (mut driver, mut client, seen) = on_loop_clock();
    assert!(
        driver.conn.is_asleep(),
        "a connection that opened and waits sleeps"
    );
    tokio::time::advance(Duration::from_secs(60)).await;
    assert!(poll(&mut driver).is_pending());
    assert!(client.received().is_empty(), "no timer of its own");

    assert!(driver.conn.is_asleep(), "polled for nothing, it sleeps");
    // The loop's clock may run ahead of or behind tokio's: the tick's `now` is what counts.
    assert!(!driver.keepalive_tick(start + Duration::from_millis(9_999)));
    assert!(
        driver.conn.is_asleep(),
        "a tick with nothing due leaves it asleep"
    );
    assert!(driver.keepalive_tick(start + Duration::from_secs(10)));
    assert!(poll(&mut driver).is_pending());
    assert_eq!(client.received(), [Event::Ping(Bytes::new())]);
    assert!(driver.rest(), "at rest again once the ping is written");
    assert!(!driver.keepalive_tick(start + Duration::from_millis(14_999)));
    assert!(driver.keepalive_tick(start + Duration::from_secs(15)));
    assert!(
        !driver.keepalive_tick(start + Duration::from_secs(16)),
        "once"
    );
    assert!(poll(&mut driver).is_ready());
    drop(driver);
    assert_eq!(
        seen.borrow().closes[0],
        CloseInfo::unclean(CloseCode::ABNORMAL, "keepalive timeout")
    );
}

#[tokio::test]
async fn a_peer_that_closes_and_ends_its_side_still_gets_what_was_queued_before_the_answer() {
    let Setup {
        mut driver,
        peer,
        seen,
        ..
    } = server_with(false, DriverConfig::default(), 1024);
    let mut client = Client::new(peer);
    assert!(poll(&mut driver).is_pending());
    // More than the pipe holds: the rest waits in the send queue, the close's answer behind it.
    driver.handler.shared().send("z".repeat(4000)).unwrap();
    assert!(poll(&mut driver).is_pending());
    client
        .send(|c| c.close(CloseCode::NORMAL, "").unwrap())
        .await;
    client.io.shutdown().await.unwrap();
    assert!(
        poll(&mut driver).is_pending(),
        "our answer is not written yet"
    );
    assert!(matches!(driver.stage, Stage::ReadClosed(_)));

    let mut events = Vec::new();
    for _ in 0..100 {
        events.extend(client.received());
        if poll(&mut driver).is_ready() {
            break;
        }
    }
    events.extend(client.received());
    assert_eq!(
        events,
        [
            Event::Message(Message::from("z".repeat(4000))),
            close_frame(CloseCode::NORMAL, "")
        ]
    );
    assert!(matches!(driver.stage, Stage::Reported));
    drop(driver);
    assert!(seen.borrow().closes[0].was_clean);
}

/// Counts its wake-ups.
#[derive(Default)]
struct Wakes(std::sync::atomic::AtomicUsize);

impl std::task::Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

#[tokio::test]
async fn a_callbacks_replies_go_out_in_the_same_poll_without_a_wake_up_and_others_wake_it() {
    let Setup {
        mut driver, peer, ..
    } = server(false);
    driver.handler.echo = true;
    let mut client = Client::new(peer);
    let wakes = Arc::new(Wakes::default());
    let waker = Waker::from(wakes.clone());
    let poll = |driver: &mut Driver<DuplexStream, Recorder>| {
        Pin::new(driver).poll(&mut Context::from_waker(&waker))
    };
    assert!(poll(&mut driver).is_pending());
    let stream: Vec<u8> = ["a", "b", &"c".repeat(5000)]
        .iter()
        .flat_map(|m| client_frame(m))
        .collect();
    client.io.write_all(&stream).await.unwrap();
    let woken = || wakes.0.load(std::sync::atomic::Ordering::Relaxed);
    let by_the_socket = woken();
    assert!(poll(&mut driver).is_pending());
    assert_eq!(
        client.received(),
        ["a", "b", &"c".repeat(5000)].map(|m| Event::Message(Message::from(m)))
    );
    assert_eq!(woken(), by_the_socket, "the replies woke nothing");

    // A send from outside the callbacks wakes the driver, once.
    let shared = driver.handler.shared();
    shared.send("from elsewhere").unwrap();
    shared.send("and more").unwrap();
    assert_eq!(woken(), by_the_socket + 1);
    assert!(poll(&mut driver).is_pending());
    assert_eq!(
        client.received(),
        ["from elsewhere", "and more"].map(|m| Event::Message(Message::from(m)))
    );
}

/// A stream that counts the reads that returned bytes.
struct CountedReads {
    io: DuplexStream,
    reads: Rc<Cell<usize>>,
}

impl AsyncRead for CountedReads {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.reads.set(self.reads.get() + 1);
        }
        polled
    }
}

impl AsyncWrite for CountedReads {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn a_peer_streaming_large_frames_is_read_past_each_frames_end() {
    let (io, mut peer) = tokio::io::duplex(4 << 20);
    let reads = Rc::new(Cell::new(0));
    let seen = Rc::new(RefCell::new(Seen::default()));
    let handler = Recorder {
        shared: Shared::new(),
        seen: seen.clone(),
        panic_on_message: false,
        ready: Rc::new(Cell::new(true)),
        echo: false,
    };
    let mut driver = Driver::new(
        CountedReads {
            io,
            reads: reads.clone(),
        },
        Proto::new(Role::Server, Config::default()),
        handler,
        Arc::new(DriverConfig::default()),
    );
    // 16 frames of 64 KiB, all waiting: 1 MiB, 16 reads of the worker's buffer's size.
    let text = "x".repeat(64 * 1024);
    let frame = client_frame(&text);
    for _ in 0..16 {
        peer.write_all(&frame).await.unwrap();
    }
    while seen.borrow().messages.len() < 16 {
        let polled = Pin::new(&mut driver).poll(&mut Context::from_waker(Waker::noop()));
        assert!(polled.is_pending());
    }
    // Stopping each read at a frame's end would take at least one read per frame; reading
    // on past it takes about half that.
    assert!(
        reads.get() <= 11,
        "{} reads for 16 frames of 64 KiB",
        reads.get()
    );
}
