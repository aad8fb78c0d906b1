//! Chat-room server on tokio-tungstenite with a `tokio::sync::broadcast` fan-out, the pattern
//! users write, for bench/run's fan-out scenarios (`wsworker bench --fanout`) beside
//! `wsworker serve --mode chat`.
//!
//! Each connection joins the room named by its request's `?room=NAME` query (read in
//! `accept_hdr_async`'s callback; percent-decoded; no `room`: the room `""`, that of
//! everyone without one). A room is a `broadcast` channel of [`CAPACITY`] messages, created
//! by its first connection and dropped with its last. One task per connection: it splits the
//! WebSocket into sink and stream and `select!`s between the next message from the client
//! (a text or binary message goes into the room's channel, unchanged) and the next message
//! from the channel (sent to the client with `SinkExt::send`, the sender's own messages
//! included, as wsworker's chat does). Close and ping are answered by the library.
//!
//! A connection whose task falls more than [`CAPACITY`] messages behind its room
//! (`RecvError::Lagged`: the channel has overwritten what it had not sent yet) is closed with
//! 1013 (try again later) and a line on stderr saying how many messages it missed: a chat
//! client must not silently miss messages, and a load test must see it (`wsworker bench
//! --fanout` counts the closed connection's missing messages as errors).
//!
//! Like the echo server: one thread (a tokio current-thread runtime), TCP_NODELAY left off,
//! the default `WebSocketConfig`, no permessage-deflate.
//!
//! Usage: `chat-tungstenite 127.0.0.1:PORT`; prints one line on stdout once it listens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_tungstenite::accept_hdr_async;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, frame::coding::CloseCode};
use tokio_tungstenite::tungstenite::{Error, Message, Result};

/// Messages a room's channel holds for its slowest connection before that one lags (and is
/// closed): at `wsworker bench --fanout`'s rates a second of backlog or more.
const CAPACITY: usize = 1024;
/// How long a closing connection waits for the end of the close handshake.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The rooms by name: each one's sender (receivers are made from it with `subscribe`).
#[derive(Default)]
struct Rooms(Mutex<HashMap<String, broadcast::Sender<Message>>>);

impl Rooms {
    /// The room `name`'s sender and a new receiver on it (the room is made if it is new).
    fn join(&self, name: &str) -> (broadcast::Sender<Message>, broadcast::Receiver<Message>) {
        let mut rooms = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let sender = rooms
            .entry(name.to_owned())
            .or_insert_with(|| broadcast::channel(CAPACITY).0)
            .clone();
        let receiver = sender.subscribe();
        (sender, receiver)
    }

    /// Drops the room `name` once it has no connection left (called after a connection's
    /// receiver is dropped), so that rooms do not pile up.
    fn leave(&self, name: &str) {
        let mut rooms = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if rooms
            .get(name)
            .is_some_and(|room| room.receiver_count() == 0)
        {
            rooms.remove(name);
        }
    }
}

fn main() {
    let addr = std::env::args()
        .nth(1)
        .expect("usage: chat-tungstenite 127.0.0.1:PORT");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let listener = TcpListener::bind(&addr).await.expect("bind");
        println!("chat-tungstenite listening on {addr}");
        let rooms = Arc::new(Rooms::default());
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let rooms = Arc::clone(&rooms);
                    tokio::spawn(async move {
                        if let Err(error) = serve(stream, &rooms).await {
                            eprintln!("connection: {error}");
                        }
                    });
                }
                Err(error) => {
                    eprintln!("accept: {error}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    });
}

/// One connection, from its handshake to its end.
async fn serve(stream: TcpStream, rooms: &Rooms) -> Result<()> {
    let mut room = String::new();
    // The callback's error type is tungstenite's (`Callback`), not ours to make smaller.
    #[allow(clippy::result_large_err)]
    let ws = accept_hdr_async(stream, |request: &Request, response: Response| {
        room = request.uri().query().and_then(room_of).unwrap_or_default();
        Ok(response)
    })
    .await?;
    let (sender, mut receiver) = rooms.join(&room);
    let result = relay(ws, &sender, &mut receiver).await;
    drop(receiver);
    rooms.leave(&room);
    result
}

/// Relays the client's messages into the room and the room's messages to the client until
/// either side ends.
async fn relay(
    ws: tokio_tungstenite::WebSocketStream<TcpStream>,
    room: &broadcast::Sender<Message>,
    receiver: &mut broadcast::Receiver<Message>,
) -> Result<()> {
    let (mut sink, mut stream) = ws.split();
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(msg) => {
                    let msg = msg?;
                    if msg.is_text() || msg.is_binary() {
                        // Fails only when no receiver is left, and this connection has one.
                        let _ = room.send(msg);
                    } else if msg.is_close() {
                        // The client closes: no more sends (they would fail, and the task
                        // would drop the socket before the library's close reply went out),
                        // only the end of the close handshake.
                        return finish_close(stream).await;
                    }
                }
                None => return Ok(()),
            },
            msg = receiver.recv() => match msg {
                Ok(msg) => sink.send(msg).await?,
                Err(RecvError::Lagged(missed)) => {
                    eprintln!(
                        "connection lagged {missed} messages behind its room (capacity \
                         {CAPACITY}): closed with 1013"
                    );
                    let close = CloseFrame {
                        code: CloseCode::Again,
                        reason: "lagged behind the room".into(),
                    };
                    // Bounded: a lagging client may be one that does not read at all.
                    let send = sink.send(Message::Close(Some(close)));
                    match tokio::time::timeout(CLOSE_TIMEOUT, send).await {
                        Ok(sent) => sent?,
                        Err(_) => return Ok(()),
                    }
                    return finish_close(stream).await;
                }
                // This connection holds a sender, so the channel cannot close.
                Err(RecvError::Closed) => return Ok(()),
            },
        }
    }
}

/// Reads on after a close frame (the client's, or ours) until the close handshake is done:
/// reading writes the library's reply to the client's close, then the stream ends. A few
/// seconds at most.
async fn finish_close(mut stream: impl StreamExt<Item = Result<Message>> + Unpin) -> Result<()> {
    let drain = async {
        while let Some(msg) = stream.next().await {
            match msg {
                Ok(_) => {}
                // The normal end of a close handshake.
                Err(Error::ConnectionClosed | Error::AlreadyClosed) => break,
                Err(error) => return Err(error),
            }
        }
        Ok(())
    };
    tokio::time::timeout(CLOSE_TIMEOUT, drain)
        .await
        .unwrap_or(Ok(()))
}

/// The `room` parameter of a query string, percent-decoded (`+` as a space); `None` without
/// one, or when it is not UTF-8 once decoded.
fn room_of(query: &str) -> Option<String> {
    let value = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("room="))?;
    let mut bytes = Vec::with_capacity(value.len());
    let mut rest = value.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        rest = tail;
        match byte {
            b'+' => bytes.push(b' '),
            b'%' => match rest.get(..2).and_then(|hex| std::str::from_utf8(hex).ok()) {
                Some(hex) if hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    bytes.push(u8::from_str_radix(hex, 16).ok()?);
                    rest = &rest[2..];
                }
                _ => bytes.push(b'%'),
            },
            _ => bytes.push(byte),
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::room_of;

    #[test]
    fn room_is_read_from_the_query_and_decoded() {
        assert_eq!(room_of("room=bench"), Some("bench".to_owned()));
        assert_eq!(room_of("user=a&room=b%20c+d"), Some("b c d".to_owned()));
        assert_eq!(room_of("room=%E2%82%AC%zz%4"), Some("€%zz%4".to_owned()));
        assert_eq!(room_of("room="), Some(String::new()));
        assert_eq!(room_of("rooms=x"), None);
        assert_eq!(room_of("room=%FF"), None);
    }
}
