//! What the resume tests share: a loopback TCP proxy whose connections the test can cut,
//! and a client that speaks `wsworker.resume.v1` frame by frame (the protocol itself is
//! what these tests check, so they read it raw).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use wsworker::hub::Stamp;
use wsworker::resume::wire::{self, Opening, Positions, ServerFrame};
use wsworker::resume::{FailReason, PROTOCOL};
use wsworker::{Message, WebSocket, WsEvent};

use super::WAIT;

/// Forwards loopback connections to a node; [`Proxy::cut`] drops them all at once, as a
/// network that fails does (no close frame; the server sees the TCP connection end).
pub struct Proxy {
    addr: SocketAddr,
    links: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
    stall: Arc<Stall>,
}

/// Whether the server's bytes stop at the proxy (a client that does not read).
#[derive(Default)]
struct Stall {
    on: AtomicBool,
    off: Notify,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let links: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let stall: Arc<Stall> = Arc::default();
        let (accepted, stalls) = (links.clone(), stall.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let (mut client_rx, mut client_tx) = client.into_split();
                let (mut server_rx, mut server_tx) = server.into_split();
                let up = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_rx, &mut server_tx).await;
                    let _ = server_tx.shutdown().await;
                });
                let stall = stalls.clone();
                let down = tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        while stall.on.load(Ordering::Acquire) {
                            let off = stall.off.notified();
                            if !stall.on.load(Ordering::Acquire) {
                                break;
                            }
                            off.await;
                        }
                        match server_rx.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if client_tx.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = client_tx.shutdown().await;
                });
                let mut links = accepted.lock().unwrap();
                links.push(up.abort_handle());
                links.push(down.abort_handle());
            }
        })
        .abort_handle();
        Self {
            addr,
            links,
            accept,
            stall,
        }
    }

    /// Stops passing the server's bytes on (the client stops reading), or lets them go
    /// again.
    pub fn stall(&self, on: bool) {
        self.stall.on.store(on, Ordering::Release);
        if !on {
            self.stall.off.notify_waiters();
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Drops every connection through the proxy, both ends.
    pub fn cut(&self) {
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// A message as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    /// `m`: a message with its place.
    Placed {
        topic: String,
        offset: u64,
        text: String,
    },
    /// `v`.
    Plain(String),
    Joined(String, Stamp),
    Left(String),
}

/// The answer to the client's opening.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub session: String,
    pub resumed: bool,
    pub recovered: Vec<String>,
    pub failed: Vec<(String, FailReason)>,
    pub positions: Positions,
}

/// A client of `wsworker.resume.v1`, keeping its token and positions as a real one does.
pub struct Client {
    pub ws: WebSocket,
    pub token: String,
    pub positions: Positions,
    /// Messages dropped as duplicates (there should be none: the server drops them).
    pub duplicates: usize,
}

impl Client {
    /// Opens a connection at `url` and starts a session.
    pub async fn start(url: &str) -> (Self, Answer) {
        Self::open(url, Opening::Start, Positions::new()).await
    }

    /// Opens a connection at `url` and resumes `self`'s session there.
    pub async fn resume(&self, url: &str) -> (Self, Answer) {
        Self::open(
            url,
            Opening::Resume {
                token: self.token.clone(),
                positions: self.positions.clone(),
            },
            self.positions.clone(),
        )
        .await
    }

    async fn open(url: &str, opening: Opening, positions: Positions) -> (Self, Answer) {
        let mut builder = WebSocket::builder(url).protocols([PROTOCOL]);
        if std::env::var_os("RESUME_NO_DEFLATE").is_some() {
            builder = builder.permessage_deflate(None);
        }
        let ws = builder.connect().await.unwrap();
        assert_eq!(ws.protocol(), PROTOCOL, "the server agreed to resume");
        ws.send(wire::encode_opening(&opening)).unwrap();
        let mut client = Self {
            ws,
            token: String::new(),
            positions,
            duplicates: 0,
        };
        let answer = {
            let message = client.next_message().await.expect("an answer");
            match wire::parse_server_frame(message.as_bytes()).expect("a protocol frame") {
                ServerFrame::Hello { session, positions } => {
                    client.token = session.token;
                    client.positions.extend(positions.clone());
                    Answer {
                        session: session.session,
                        resumed: false,
                        recovered: Vec::new(),
                        failed: Vec::new(),
                        positions,
                    }
                }
                ServerFrame::Resumed {
                    session,
                    recovered,
                    failed,
                    positions,
                } => {
                    client.token = session.token;
                    client.positions.extend(positions.clone());
                    Answer {
                        session: session.session,
                        resumed: true,
                        recovered,
                        failed,
                        positions,
                    }
                }
                other => panic!("expected hello or resumed first, got {other:?}"),
            }
        };
        (client, answer)
    }

    async fn next_message(&self) -> Option<Message> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await {
                Ok(Some(WsEvent::Message(message))) => return Some(message),
                Ok(Some(WsEvent::Open)) => {}
                Ok(Some(WsEvent::Close(_)) | None) => return None,
                Ok(Some(other)) => panic!("unexpected event {other:?}"),
                Err(_) => panic!("nothing within {WAIT:?}"),
            }
        }
    }

    /// The next message, control frames included; `None` once the connection is closed.
    pub async fn next(&mut self) -> Option<Got> {
        loop {
            let message = self.next_message().await?;
            let got = match wire::parse_server_frame(message.as_bytes()).expect("a frame") {
                ServerFrame::Message {
                    topic,
                    offset,
                    id,
                    epoch,
                    payload,
                } => {
                    let current = self.positions.get(&topic).copied();
                    let epoch = epoch
                        .or(current.map(|s| s.epoch))
                        .expect("an epoch for every topic");
                    if let Some(current) = current
                        && current.epoch == epoch
                        && offset <= current.offset
                    {
                        self.duplicates += 1;
                        continue;
                    }
                    self.positions
                        .insert(topic.clone(), Stamp { epoch, offset, id });
                    Got::Placed {
                        topic,
                        offset,
                        text: String::from_utf8(payload.to_vec()).unwrap(),
                    }
                }
                ServerFrame::Plain(payload) => {
                    Got::Plain(String::from_utf8(payload.to_vec()).unwrap())
                }
                ServerFrame::Joined { topic, position } => {
                    self.positions.insert(topic.clone(), position);
                    Got::Joined(topic, position)
                }
                ServerFrame::Left { topic } => {
                    self.positions.remove(&topic);
                    Got::Left(topic)
                }
                other => panic!("unexpected {other:?}"),
            };
            return Some(got);
        }
    }

    /// The texts of the next `n` placed messages (skipping control frames).
    pub async fn texts(&mut self, n: usize) -> Vec<String> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            match self.next().await.expect("the connection is open") {
                Got::Placed { text, .. } | Got::Plain(text) => out.push(text),
                Got::Joined(..) | Got::Left(_) => {}
            }
        }
        out
    }
}
