//! The Hub's fan-out with permessage-deflate, over loopback: a message is compressed once per
//! message and set of terms (window, level, threshold) among recipients without context
//! takeover on the server's side, and every recipient gets the frame it can take — the shared
//! compressed one (RSV1 set, read off the wire), or the plain one (context takeover, no
//! compression, a message below the threshold or that compression does not shrink).
#![cfg(feature = "deflate")]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;

use common::{WAIT, message, stop};
use wsworker::hub::FanoutCounts;
use wsworker::proto::deflate::DeflateConfig;
use wsworker::proto::frame::{FrameHeader, OpCode};
use wsworker::proto::handshake::ClientHandshake;
use wsworker::proto::{Config, Connection, Event, Role};
use wsworker::{Hub, Message, RunningServer, WebSocket, Worker};

/// Marks the end of what a test sent.
const END: &str = "--end--";

/// RSV1 in a frame header's `rsv` (RFC 7692 §6: the first frame of a compressed message).
const RSV1: u8 = 0b100;

/// A client on a blocking socket, built on the protocol core: it offers `offer` (or no
/// extension), decodes what comes with the answer's parameters, and keeps every byte the
/// server sent, to read the frames' RSV1 bits off the wire.
struct Peer {
    stream: TcpStream,
    conn: Connection,
    extensions: String,
    wire: Vec<u8>,
}

impl Peer {
    fn connect(addr: SocketAddr, offer: Option<&DeflateConfig>) -> Self {
        let mut handshake = ClientHandshake::new(&format!("ws://{addr}/")).unwrap();
        if let Some(config) = offer {
            handshake = handshake.with_extensions(&config.offer()).unwrap();
        }
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.write_all(&handshake.request_bytes()).unwrap();
        let mut buf = [0u8; 4096];
        let (response, rest) = loop {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "closed during the handshake");
            if let Some(done) = handshake.receive(&buf[..n]).unwrap() {
                break done;
            }
        };
        let params =
            offer.and_then(|config| config.accept_response(response.extensions()).unwrap());
        let mut conn = Connection::new(Role::Client, Config::default().deflate(params));
        conn.receive(&rest);
        Self {
            stream,
            conn,
            extensions: response.extensions_header().to_owned(),
            wire: rest.to_vec(),
        }
    }

    fn flush(&mut self) {
        while let Some(chunk) = self.conn.poll_transmit() {
            self.stream.write_all(&chunk).unwrap();
        }
    }

    fn send(&mut self, text: &str) {
        self.conn.send_text(text).unwrap();
        self.flush();
    }

    /// The next message, reading as needed.
    fn next_message(&mut self) -> Message {
        loop {
            match self.conn.poll_event().unwrap() {
                Some(Event::Message(message)) => return message,
                Some(_) => self.flush(),
                None => {
                    let mut buf = [0u8; 16384];
                    let n = self.stream.read(&mut buf).unwrap();
                    assert!(n > 0, "the server ended the connection");
                    self.wire.extend_from_slice(&buf[..n]);
                    self.conn.receive(&buf[..n]);
                }
            }
        }
    }

    /// The messages up to [`END`].
    fn messages_until_end(&mut self) -> Vec<Message> {
        let mut messages = Vec::new();
        loop {
            let message = self.next_message();
            if message.as_text() == Some(END) {
                return messages;
            }
            messages.push(message);
        }
    }

    /// The data frames received so far, in order: whether RSV1 was set, and the frame's
    /// bytes (header and payload) as they came.
    fn data_frames(&self) -> Vec<(bool, Vec<u8>)> {
        let mut frames = Vec::new();
        let mut at = 0;
        while let Some((header, len)) = FrameHeader::parse(&self.wire[at..]).unwrap() {
            let end = at + len + usize::try_from(header.payload_len).unwrap();
            if end > self.wire.len() {
                break;
            }
            if matches!(header.opcode, OpCode::Text | OpCode::Binary) {
                frames.push((header.rsv & RSV1 != 0, self.wire[at..end].to_vec()));
            }
            at = end;
        }
        frames
    }
}

/// Compressible text, about 3 KB: JSON lines that repeat their keys.
fn chat(seed: u32) -> String {
    (0..60)
        .map(|i| {
            format!(
                "{{\"room\":\"lobby\",\"user\":\"user-{}\",\"text\":\"message {i} of {seed}\"}}\n",
                i % 7
            )
        })
        .collect()
}

/// 4 KiB that deflate does not shrink.
fn noise() -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// A server of two workers with `deflate`, that echoes, and reports each connection's id as
/// it opens.
fn server(deflate: DeflateConfig) -> (RunningServer, Hub, mpsc::Receiver<u64>) {
    let mut worker = Worker::new("websocket://127.0.0.1:0").unwrap();
    worker.count(2).permessage_deflate(Some(deflate));
    let (opened_tx, opened) = mpsc::channel();
    worker.on_connect(move |conn| {
        let _ = opened_tx.send(conn.id());
    });
    worker.on_message(|conn, msg| {
        conn.send(msg)?;
        Ok(())
    });
    let hub = worker.hub();
    (worker.start().unwrap(), hub, opened)
}

fn delta(before: FanoutCounts, after: FanoutCounts) -> (u64, u64) {
    (
        after.compressions - before.compressions,
        after.compressed_sends - before.compressed_sends,
    )
}

/// Every kind of recipient in one fan-out, on a server that lets each client choose (no
/// `server_no_context_takeover` of its own): clients that ask the server for no context
/// takeover with its default 12-bit window, and with a 10-bit one (two sets of terms: two
/// compressions per message), clients with context takeover, clients without compression.
#[test]
fn each_message_is_compressed_once_per_set_of_terms_and_every_recipient_decodes_it() {
    let (server, hub, opened) = server(DeflateConfig::default());
    let addr = server.local_addr();
    let shared_12 = DeflateConfig::default().server_no_context_takeover(true);
    let shared_10 = shared_12.clone().server_max_window_bits(10);
    let takeover = DeflateConfig::default();
    let kinds: [(&str, Option<&DeflateConfig>, usize); 4] = [
        ("shared, 12 bits", Some(&shared_12), 3),
        ("shared, 10 bits", Some(&shared_10), 2),
        ("context takeover", Some(&takeover), 2),
        ("no compression", None, 2),
    ];
    let mut peers: Vec<(&str, Peer)> = Vec::new();
    for (kind, offer, count) in kinds {
        for _ in 0..count {
            peers.push((kind, Peer::connect(addr, offer)));
            opened.recv_timeout(WAIT).expect("on_connect");
        }
    }
    let extensions = |kind: &str| {
        let (_, peer) = peers.iter().find(|(k, _)| *k == kind).unwrap();
        peer.extensions.clone()
    };
    assert_eq!(
        extensions("shared, 12 bits"),
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=12; \
         client_max_window_bits=12"
    );
    assert_eq!(
        extensions("shared, 10 bits"),
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; \
         client_max_window_bits=12"
    );
    assert_eq!(
        extensions("context takeover"),
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
    );
    assert_eq!(extensions("no compression"), "");

    // The connections with context takeover first get a message compressed for each of
    // them alone (the echo): their contexts hold it from now on.
    let echoed = chat(0);
    for (_, peer) in peers.iter_mut().filter(|(k, _)| *k == "context takeover") {
        peer.send(&echoed);
        assert_eq!(peer.next_message(), Message::text(echoed.as_str()));
    }

    let sent = [
        Message::text(chat(1)),
        Message::text("hi"),      // below the threshold (32 bytes)
        Message::binary(noise()), // not made smaller
        Message::binary(chat(2).into_bytes()),
    ];
    let compressible = [true, false, false, true];
    let before = hub.connections().fanout_counts();
    for message in &sent {
        assert_eq!(hub.send_to_all(message.clone()), peers.len());
    }
    // Two messages compressed, each once for the 12-bit and once for the 10-bit recipients;
    // five recipients took each of those.
    assert_eq!(delta(before, hub.connections().fanout_counts()), (4, 10));
    assert_eq!(hub.send_to_all(END), peers.len());

    let mut compressed_12: Vec<Vec<u8>> = Vec::new();
    for (kind, peer) in &mut peers {
        let kind = *kind;
        assert_eq!(peer.messages_until_end(), sent, "{kind}");
        let frames = peer.data_frames();
        // The echo, if any, is the first frame; then the fan-out's four, then END.
        let fanout = &frames[frames.len() - 5..frames.len() - 1];
        let rsv1: Vec<bool> = fanout.iter().map(|(rsv1, _)| *rsv1).collect();
        match kind {
            "shared, 12 bits" | "shared, 10 bits" => assert_eq!(rsv1, compressible, "{kind}"),
            _ => assert_eq!(rsv1, [false; 4], "{kind}"),
        }
        if kind == "shared, 12 bits" {
            // The same compressed bytes for every recipient with the same terms.
            let first = fanout[0].1.clone();
            assert!(first.len() < sent[0].len() / 2, "{}", first.len());
            compressed_12.push(first);
        }
        if kind == "context takeover" {
            // Its context is intact: the same text again, compressed for it alone against
            // what it had, is far smaller and still decodes.
            assert!(frames[0].0, "the echo was compressed");
            peer.send(&echoed);
            assert_eq!(peer.next_message(), Message::text(echoed.as_str()));
            let again = peer.data_frames().pop().unwrap();
            assert!(
                again.0 && again.1.len() < frames[0].1.len() / 4,
                "{}",
                again.1.len()
            );
        }
    }
    assert!(compressed_12.windows(2).all(|pair| pair[0] == pair[1]));
    drop(peers);
    server.shutdown();
}

/// The server's default answer (no context takeover on its side): our own client, with
/// compression on as it is by default, gets a group's messages compressed once for all.
#[tokio::test]
async fn our_clients_get_a_group_message_compressed_once_for_all() {
    let mut worker = Worker::new("websocket://127.0.0.1:0").unwrap();
    worker.count(2);
    worker.on_connect(|conn| {
        conn.join_group("room").unwrap();
    });
    let hub = worker.hub();
    let server = worker.start().unwrap();
    let url = format!("ws://{}/", server.local_addr());
    let mut clients = Vec::new();
    for _ in 0..4 {
        let ws = WebSocket::connect(&url, Vec::<String>::new())
            .await
            .unwrap();
        assert!(
            ws.extensions()
                .starts_with("permessage-deflate; server_no_context_takeover"),
            "{}",
            ws.extensions()
        );
        clients.push(ws);
    }
    // The connections join as they open, before the client sees the handshake's answer.
    assert_eq!(hub.group_len("room"), 4);
    let before = hub.connections().fanout_counts();
    let texts: Vec<String> = (0..5).map(chat).collect();
    for text in &texts {
        assert_eq!(hub.send_to_group("room", text.as_str()), 4);
    }
    assert_eq!(delta(before, hub.connections().fanout_counts()), (5, 20));
    for ws in &clients {
        for text in &texts {
            assert_eq!(message(ws).await, Message::text(text.as_str()));
        }
    }
    // `Connections::broadcast` shares the same path.
    let before = hub.connections().fanout_counts();
    assert_eq!(hub.connections().broadcast(chat(9)), 4);
    assert_eq!(delta(before, hub.connections().fanout_counts()), (1, 4));
    for ws in &clients {
        assert_eq!(message(ws).await, Message::text(chat(9)));
    }
    stop(server).await;
}
