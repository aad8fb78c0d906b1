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
use wsworker::{Hub, Message, RunningServer, Target, Worker};

/// A server of one worker (every connection on one event loop) whose connections join
/// "room" as they open, unless they open `/alone`, and report their ids. Each text message
/// is a command for the Hub, run in `on_message`:
///
/// - `g:TEXT` sends TEXT to the room, `x:TEXT` to the room but the sender, `a:TEXT` to all;
/// - `s:TEXT` sends TEXT back to the sender, with `Connection::send`;
/// - `j:ID` and `l:ID` put connection ID in the room and take it out.
fn server() -> (RunningServer, Hub, mpsc::Receiver<u64>) {
    let mut worker = Worker::new("websocket://127.0.0.1:0").unwrap();
    worker.count(1);
    let (opened_tx, opened) = mpsc::channel();
    worker.on_connect(move |conn| {
        if conn.request().path() != "/alone" {
            conn.join_group("room").unwrap();
        }
        let _ = opened_tx.send(conn.id());
    });
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
            "s" => conn.send(arg)?,
            "j" => hub.join_group(id(), "room")?,
            "l" => hub.leave_group(id(), "room"),
            other => panic!("unknown command {other}"),
        }
        Ok(())
    });
    let hub = worker.hub();
    (worker.start().unwrap(), hub, opened)
}

/// Queues `commands` on `client` and writes them with one write, so that the server reads
/// them together, in one poll of the connection.
fn send_at_once(client: &mut RawClient, commands: &[String]) {
    for command in commands {
        client.conn.send_text(command.as_str()).unwrap();
    }
    client.flush_in_one_write(&[]);
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
    // Each member, the publisher included, was idle: the burst went straight to its socket.
    let written = counts_when(&hub, |c| c.written_now >= before + 4).written_now - before;
    assert!(written >= 4, "{written} members written to at once");
    drop((publisher, members));
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
    let (server, _hub, opened) = server();
    let (mut publisher, _) = connect_reported(&server, &opened, "/");
    let (mut reader, _) = connect_reported(&server, &opened, "/");
    let (mut sleeper, _) = connect_reported(&server, &opened, "/");
    let text = |i: usize| format!("{i:08}{}", "z".repeat(SIZE - 8));

    let reading = thread::spawn(move || {
        let texts = texts_until_end(&mut reader);
        (reader, texts)
    });
    let mut commands: Vec<String> = (0..COUNT).map(|i| format!("x:{}", text(i))).collect();
    commands.push(format!("x:{END}"));
    send_at_once(&mut publisher, &commands);
    let (reader, read) = reading.join().unwrap();
    assert_eq!(read.len(), COUNT);

    // Only now does the sleeper read: every message whole, in order.
    let slept = texts_until_end(&mut sleeper);
    assert_eq!(slept.len(), COUNT);
    for (i, got) in slept.iter().enumerate() {
        assert!(*got == text(i), "message {i} differs");
    }
    assert_eq!(read, slept);
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
