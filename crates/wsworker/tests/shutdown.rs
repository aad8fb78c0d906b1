//! Graceful stop: every connection's end is reported, however it ends — closed in time, or
//! still closing when the shutdown deadline passes.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::{RawClient, WAIT, hello_worker};
use wsworker::server::CloseCodeGroup;
use wsworker::{CloseCode, CloseInfo, Worker};
use wsworker_proto::Event;

/// A hello worker that reports each connection's opening and close.
fn recording_worker() -> (Worker, mpsc::Receiver<()>, mpsc::Receiver<CloseInfo>) {
    let mut worker = hello_worker();
    let (opened_tx, opened) = mpsc::channel();
    worker.on_connect(move |_| {
        let _ = opened_tx.send(());
    });
    let (closed_tx, closed) = mpsc::channel();
    worker.on_close(move |_, info| {
        let _ = closed_tx.send(info.clone());
    });
    (worker, opened, closed)
}

#[test]
fn a_connection_still_closing_at_the_shutdown_deadline_gets_on_close_and_is_counted_closed() {
    let (mut worker, opened, closed) = recording_worker();
    // The closing handshake would be waited for far longer than the stop waits.
    worker
        .close_timeout(Duration::from_secs(600))
        .shutdown_timeout(Duration::from_millis(200));
    let metrics = worker.metrics();
    let server = worker.start().unwrap();
    let connections = server.connections().clone();

    // A client that will not answer the server's close frame while the server stops.
    let mut client = RawClient::connect(server.local_addr(), "/", &[]).unwrap();
    opened.recv_timeout(WAIT).expect("on_connect");
    assert_eq!(connections.len(), 1);

    server.shutdown();

    let info = closed.recv_timeout(WAIT).expect("on_close at the deadline");
    assert_eq!(info.code, CloseCode::ABNORMAL);
    assert!(!info.was_clean);
    let snapshot = metrics.snapshot();
    assert_eq!(snapshot.total().connections_open, 0);
    assert_eq!(
        snapshot.closes.get(&CloseCodeGroup::Registered(1006)),
        Some(&1)
    );
    assert!(connections.is_empty(), "the registry let it go");
    // It had been asked to close, with 1001, before the deadline.
    match client.next_event() {
        Some(Ok(Event::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::GOING_AWAY),
        other => panic!("expected the server's close frame, got {other:?}"),
    }
}

#[test]
fn a_client_that_closes_in_time_is_reported_clean_at_shutdown() {
    let (worker, opened, closed) = recording_worker();
    let metrics = worker.metrics();
    let server = worker.start().unwrap();
    let addr = server.local_addr();
    connect_a_client_that_answers_the_close(&opened, addr);

    let stopper = std::thread::spawn(move || server.shutdown());
    let info = closed.recv_timeout(WAIT).expect("on_close");
    stopper.join().unwrap();
    assert_eq!(info.code, CloseCode::GOING_AWAY);
    assert!(info.was_clean);
    assert_eq!(metrics.snapshot().total().connections_open, 0);
}

/// Connects a client that answers the server's close as it reads it, on a thread of its own.
fn connect_a_client_that_answers_the_close(
    opened: &mpsc::Receiver<()>,
    addr: std::net::SocketAddr,
) {
    let mut client = RawClient::connect(addr, "/", &[]).unwrap();
    opened.recv_timeout(WAIT).expect("on_connect");
    std::thread::spawn(move || client.events_until_close());
}
