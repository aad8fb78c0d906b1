//! Fan-out from inside a connection's callbacks on a worker's event loop, over loopback: the
//! Hub holds what `on_message` sends to a room or to all until that connection's poll is
//! over, then writes it to each member's socket at once. Every member gets every message,
//! in the order sent; sends made in between and membership changes keep their place; a
//! socket that takes only part of a write gets the rest; members with permessage-deflate
//! get the frames compressed for them.

mod common;

use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use common::{END, RawClient, WAIT, connect_reported, texts_until_end};
use wsworker::hub::FanoutCounts;
use wsworker::{CloseCode, Hub, Message, Metrics, OverflowPolicy, RunningServer, Target, Worker};
use wsworker_proto::Event;

/// A server of one worker (every connection on one event loop) whose connections join
/// "room" as they open, unless they open `/alone`, and report their ids. Each text message
/// is a command for the Hub, run in `on_message`:
///
/// - `g:TEXT` sends TEXT to the room, `x:TEXT` to the room but the sender, `a:TEXT` to all,
///   `B:TEXT` to all with `Connections::broadcast`;
/// - `s:TEXT` sends TEXT back to the sender, with `Connection::send`;
/// - `j:ID` and `l:ID` put connection ID in the room and take it out;
/// - `b:N` sends N messages of [`BIG`] bytes to the room but the sender;
/// - `d:TEXT` sends TEXT to the room but the sender, named twice, and reports the count.
fn server() -> (RunningServer, Hub, mpsc::Receiver<u64>) {
    let (worker, counts) = worker();
    let Server {
        server,
        hub,
        opened,
        ..
    } = start(worker, counts);
    (server, hub, opened)
}

/// The size of each message `b:N` sends.
const BIG: usize = 64 * 1024;

/// [`server`]'s worker, not started; the counts `d:` reports.
fn worker() -> (Worker, mpsc::Receiver<usize>) {
    let mut worker = Worker::new("websocket://127.0.0.1:0").unwrap();
    worker.count(1);
    let (counts_tx, counts) = mpsc::channel();
    let hub = worker.hub();
    worker.on_message(move |conn, msg| {
        let Message::Text(text) = msg else {
            return Ok(());
        };
        let (command, arg) = text.split_once(':').expect("a command");
        let id = || arg.parse::<u64>().expect("a connection id");
        match command {
            "g" => drop(hub.send_to_group("room", arg)),
            "x" => drop(hub.send(Target::group("room").except(conn.id()), arg)),
            "a" => drop(hub.send_to_all(arg)),
            "B" => drop(hub.connections().broadcast(arg)),
            "s" => conn.send(arg)?,
            "j" => hub.join_group(id(), "room")?,
            "l" => hub.leave_group(id(), "room"),
            "b" => {
                for i in 0..arg.parse().expect("a count") {
                    let text = format!("{i:08}{}", "z".repeat(BIG - 8));
                    hub.send(Target::group("room").except(conn.id()), text);
                }
            }
            "d" => {
                let target = Target::group("room").except(conn.id()).except(conn.id());
                let _ = counts_tx.send(hub.send(target, arg));
            }
            other => panic!("unknown command {other}"),
        }
        Ok(())
    });
    (worker, counts)
}

/// A started [`worker`]: the ids of the connections as they open, the counts `d:` reports.
struct Server {
    server: RunningServer,
    hub: Hub,
    metrics: Metrics,
    opened: mpsc::Receiver<u64>,
    counts: mpsc::Receiver<usize>,
}

/// Starts `worker`, its connections joining "room" as they open (unless they open
/// `/alone`) and reporting their ids.
fn start(mut worker: Worker, counts: mpsc::Receiver<usize>) -> Server {
    let (opened_tx, opened) = mpsc::channel();
    worker.on_connect(move |conn| {
        if conn.request().path() != "/alone" {
            conn.join_group("room").unwrap();
        }
        let _ = opened_tx.send(conn.id());
    });
    let hub = worker.hub();
    let metrics = worker.metrics();
    Server {
        server: worker.start().unwrap(),
        hub,
        metrics,
        opened,
        counts,
    }
}

/// Queues `commands` on `client` and writes them with one write, so that the server reads
/// them together, in one poll of the connection.
fn send_at_once(client: &mut RawClient, commands: &[String]) {
    for command in commands {
        client.conn.send_text(command.as_str()).unwrap();
    }
    client.flush_in_one_write(&[]);
}

/// Waits until at least `n` recipients were written to at once since the count was
/// `before`, and fails if they never are.
fn written_at_once(hub: &Hub, before: u64, n: u64) {
    let written = counts_when(hub, |c| c.written_now >= before + n).written_now - before;
    assert!(
        written >= n,
        "{written} recipients written to at once, not {n}"
    );
}

/// The fan-out counts once `done` says they are complete: a fan-out adds them after its
/// last recipient got the message, and a client may read it before that.
fn counts_when(hub: &Hub, done: impl Fn(&FanoutCounts) -> bool) -> FanoutCounts {
    let deadline = Instant::now() + WAIT;
    loop {
        let counts = hub.connections().fanout_counts();
        if done(&counts) || Instant::now() > deadline {
            return counts;
        }
        thread::yield_now();
    }
}

#[test]
fn a_burst_to_a_room_is_written_to_each_member_at_once_in_order() {
    let (server, hub, opened) = server();
    let (mut publisher, _) = connect_reported(&server, &opened, "/");
    let mut members: Vec<RawClient> = (0..3)
        .map(|_| connect_reported(&server, &opened, "/").0)
        .collect();
    let before = hub.connections().fanout_counts().written_now;

    let mut commands: Vec<String> = (0..20).map(|i| format!("g:{i}")).collect();
    commands.push(format!("g:{END}"));
    send_at_once(&mut publisher, &commands);

    let expected: Vec<String> = (0..20).map(|i| i.to_string()).collect();
    for client in members.iter_mut().chain([&mut publisher]) {
        assert_eq!(texts_until_end(client), expected);
    }
    // Each member was idle: the burst went straight to its socket. (The publisher got each
    // message at once, as it was sent.)
    written_at_once(&hub, before, 3);
    drop((publisher, members));
    server.shutdown();
}

#[test]
fn broadcasts_are_held_too_and_keep_their_place_among_room_messages() {
    let (server, hub, opened) = server();
    let (mut publisher, _) = connect_reported(&server, &opened, "/");
    let (mut member, _) = connect_reported(&server, &opened, "/");
    let (mut outsider, _) = connect_reported(&server, &opened, "/alone");
    let before = hub.connections().fanout_counts().written_now;

    let commands = ["B:1", "B:2", "g:3", "B:4", "g:5"].map(String::from);
    send_at_once(&mut publisher, &commands);
    send_at_once(&mut publisher, &[format!("B:{END}")]);

    assert_eq!(texts_until_end(&mut publisher), ["1", "2", "3", "4", "5"]);
    assert_eq!(texts_until_end(&mut member), ["1", "2", "3", "4", "5"]);
    assert_eq!(texts_until_end(&mut outsider), ["1", "2", "4"]);
    // The member and the outsider, once per run of messages at least.
    written_at_once(&hub, before, 2);
    drop((publisher, member, outsider));
    server.shutdown();
}

#[test]
fn sends_and_membership_changes_in_between_keep_their_place() {
    let (server, _hub, opened) = server();
    let (mut publisher, _) = connect_reported(&server, &opened, "/");
    let (mut stays, _) = connect_reported(&server, &opened, "/");
    let (mut leaves, leaves_id) = connect_reported(&server, &opened, "/");
    let (mut joins, joins_id) = connect_reported(&server, &opened, "/alone");

    let commands = [
        "g:1".to_owned(),
        "g:2".to_owned(),
        // To the sender alone, after what the room was sent before it.
        "s:ack".to_owned(),
        "g:3".to_owned(),
        format!("j:{joins_id}"),
        "g:4".to_owned(),
        format!("l:{leaves_id}"),
        "g:5".to_owned(),
        // Another topic: after the room's messages.
        format!("a:{END}"),
    ];
    send_at_once(&mut publisher, &commands);

    assert_eq!(
        texts_until_end(&mut publisher),
        ["1", "2", "ack", "3", "4", "5"]
    );
    assert_eq!(texts_until_end(&mut stays), ["1", "2", "3", "4", "5"]);
    assert_eq!(texts_until_end(&mut leaves), ["1", "2", "3", "4"]);
    assert_eq!(texts_until_end(&mut joins), ["4", "5"]);
    drop((publisher, stays, leaves, joins));
    server.shutdown();
}

#[test]
fn a_member_that_does_not_read_gets_the_rest_of_what_its_socket_did_not_take() {
    // 10 MiB for a member that reads nothing meanwhile: more than loopback's socket buffers
    // hold, less than the send buffer's hard limit (16 MiB).
    const COUNT: usize = 160;
    const SIZE: usize = 64 * 1024;
    let (server, hub, opened) = server();
    let (mut publisher, _) = connect_reported(&server, &opened, "/");
    let (mut reader, _) = connect_reported(&server, &opened, "/");
    let (mut sleeper, _) = connect_reported(&server, &opened, "/");
    let text = |i: usize| format!("{i:08}{}", "z".repeat(SIZE - 8));
    let before = hub.connections().fanout_counts().written_now;

    let reading = thread::spawn(move || {
        let texts = texts_until_end(&mut reader);
        (reader, texts)
    });
    let mut commands: Vec<String> = (0..COUNT).map(|i| format!("x:{}", text(i))).collect();
    commands.push(format!("x:{END}"));
    send_at_once(&mut publisher, &commands);
    let (reader, read) = reading.join().unwrap();
    assert_eq!(read.len(), COUNT);

    // Only now does the sleeper read: every message whole, in order. (What its socket did
    // not take of the first write was queued, and what followed went the ordinary way.)
    let slept = texts_until_end(&mut sleeper);
    assert_eq!(slept.len(), COUNT);
    for (i, got) in slept.iter().enumerate() {
        assert!(*got == text(i), "message {i} differs");
    }
    assert_eq!(read, slept);
    // Both were written to at once, at least at first.
    written_at_once(&hub, before, 2);
    drop((publisher, reader, sleeper));
    server.shutdown();
}

/// Our own client offers permessage-deflate, and the server agrees without context takeover
/// on its side: such members get the burst compressed once for all of them, the others
/// plain, written at once.
#[cfg(feature = "deflate")]
#[tokio::test]
async fn members_with_permessage_deflate_get_the_burst_compressed() {
    use common::{message, stop};
    use wsworker::WebSocket;

    let (server, hub, opened) = server();
    let addr = server.local_addr();
    let url = format!("ws://{addr}/");
    let mut compressing = Vec::new();
    for _ in 0..2 {
        let ws = WebSocket::connect(&url, Vec::<String>::new())
            .await
            .unwrap();
        assert!(ws.extensions().starts_with("permessage-deflate"));
        compressing.push(ws);
    }
    let (mut plain, publisher) = tokio::task::spawn_blocking(move || {
        let plain = RawClient::connect(addr, "/", &[]).unwrap();
        let publisher = RawClient::connect(addr, "/alone", &[]).unwrap();
        (plain, publisher)
    })
    .await
    .unwrap();
    for _ in 0..4 {
        opened.recv_timeout(WAIT).unwrap();
    }
    let before = hub.connections().fanout_counts();

    // Long and repetitive: worth compressing.
    let texts: Vec<String> = (0..5)
        .map(|i| format!("{i} {}", "chat ".repeat(100)))
        .collect();
    let mut commands: Vec<String> = texts.iter().map(|t| format!("g:{t}")).collect();
    commands.push(format!("g:{END}"));
    let mut publisher = publisher;
    send_at_once(&mut publisher, &commands);

    for ws in &compressing {
        for text in &texts {
            assert_eq!(message(ws).await, Message::text(text.as_str()));
        }
        assert_eq!(message(ws).await, Message::text(END));
    }
    let got = tokio::task::spawn_blocking(move || {
        let texts = texts_until_end(&mut plain);
        (plain, texts)
    })
    .await
    .unwrap();
    assert_eq!(got.1, texts);
    let after = counts_when(&hub, |c| {
        c.compressed_sends >= before.compressed_sends + 10 && c.written_now > before.written_now
    });
    assert!(
        after.compressed_sends - before.compressed_sends >= 10,
        "each compressing member took each message compressed"
    );
    assert!(
        after.written_now > before.written_now,
        "the plain member at once"
    );
    drop((publisher, got));
    stop(server).await;
}

/// A client sends a message to its own room and its close frame in one write (a chat client
/// saying goodbye): the server reads both in one poll. The room's message is the sender's
/// before its close frame is read, and goes out before the server's answering close.
#[test]
fn a_publisher_whose_close_comes_with_its_message_still_gets_that_message() {
    let (server, _hub, opened) = server();
    let (mut publisher, _) = connect_reported(&server, &opened, "/");
    let (mut member, _) = connect_reported(&server, &opened, "/");

    publisher.conn.send_text("g:goodbye").unwrap();
    publisher.conn.close(CloseCode::NORMAL, "bye").unwrap();
    publisher.flush_in_one_write(&[]);

    assert_eq!(next_text(&mut member), "goodbye");
    let events = publisher.events_until_close();
    assert!(
        matches!(&events[..], [Event::Message(Message::Text(t)), Event::Close(_)] if t.as_str() == "goodbye"),
        "the sender's own copy, then the server's close frame: {events:?}"
    );
    drop((publisher, member));
    server.shutdown();
}

/// A burst held in one poll for a member that reads nothing keeps to the hard limit of the
/// send buffer: past it, messages are dropped (`OverflowPolicy::DropNew`), as they are when
/// sent one by one.
#[test]
fn a_held_burst_to_a_member_that_does_not_read_keeps_to_the_hard_limit() {
    const SOFT: usize = 16 * 1024;
    const HARD: usize = 64 * 1024;
    // 12.5 MiB: far more than the kernel takes for a peer that does not read.
    const COUNT: usize = 200;
    let (mut worker, counts) = worker();
    worker.send_buffer_limits(SOFT, HARD);
    worker.overflow_policy(OverflowPolicy::DropNew);
    let Server {
        server,
        hub,
        metrics,
        opened,
        ..
    } = start(worker, counts);
    let (mut publisher, _) = connect_reported(&server, &opened, "/");
    let (sleeper, sleeper_id) = connect_reported(&server, &opened, "/");
    let sleeper_conn = hub.connections().get(sleeper_id).expect("open");

    publisher.conn.send_text(format!("b:{COUNT}")).unwrap();
    publisher.flush();

    // A frame of BIG bytes (a 10-byte header) may go past the limit once: the first message
    // into an empty buffer is always taken. (Until the driver has weighed them, messages
    // sent count in the buffered amount too: it settles.)
    let bound = HARD + BIG + 10;
    let deadline = Instant::now() + WAIT;
    let (dropped, buffered) = loop {
        let dropped = metrics.snapshot().total().dropped_messages;
        let buffered = sleeper_conn.buffered_amount();
        if (dropped > 0 && buffered <= bound) || Instant::now() > deadline {
            break (dropped, buffered);
        }
        thread::yield_now();
    };
    assert!(
        buffered <= bound,
        "{buffered} bytes queued for a member that does not read, over the hard limit \
         ({HARD}); {dropped} messages dropped"
    );
    assert!(dropped > 0, "the messages past the hard limit are dropped");
    drop((publisher, sleeper));
    server.shutdown();
}

/// `Target::except` may be repeated: naming the sender twice leaves out one connection, and
/// the count of a held send says so.
#[test]
fn a_send_that_leaves_the_sender_out_twice_counts_the_others() {
    let (worker, counts) = worker();
    let Server {
        server,
        opened,
        counts,
        ..
    } = start(worker, counts);
    let (mut publisher, _) = connect_reported(&server, &opened, "/");
    let (mut member, _) = connect_reported(&server, &opened, "/");

    publisher.conn.send_text("d:twice").unwrap();
    publisher.flush();

    assert_eq!(next_text(&mut member), "twice");
    assert_eq!(
        counts.recv_timeout(WAIT).expect("the count"),
        1,
        "one member but the sender"
    );
    drop((publisher, member));
    server.shutdown();
}

/// The next text `client` receives.
fn next_text(client: &mut RawClient) -> String {
    match client.next_event() {
        Some(Ok(Event::Message(Message::Text(text)))) => text.to_string(),
        other => panic!("expected a text message, got {other:?}"),
    }
}
