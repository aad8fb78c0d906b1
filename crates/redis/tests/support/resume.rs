//! What the resume tests share: a loopback TCP proxy whose connections the test can cut;
//! a client that speaks `wsworker.resume.v1` frame by frame (the protocol itself is what
//! these tests check, so they read it raw), keeping its session with the crate's own
//! [`ClientSession`] and checking it against what came on the wire; and the scene most
//! tests start from ([`Scene`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use wsworker::hub::Stamp;
use wsworker::resume::wire::{self, Positions, ServerFrame};
use wsworker::resume::{ClientSession, FailReason, PROTOCOL, ResumeConfig};
use wsworker::{Message, WebSocket, WsEvent};
use wsworker_redis::RedisConfig;

use super::{Node, RedisServer, WAIT, eventually};

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

/// The place of an `m` as it came on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub topic: String,
    pub offset: u64,
    pub id: u64,
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

/// A client of `wsworker.resume.v1`: its session (token, positions, duplicates dropped) kept
/// by the crate's own [`ClientSession`], as the crate's client keeps it.
pub struct Client {
    pub ws: WebSocket,
    pub session: ClientSession,
    /// Every `m` the session's connections read, in order, duplicates included: read off
    /// the wire, not through the session, so that the tests can check the session's
    /// tracking (and the server) against it ([`Client::assert_consecutive`]).
    pub received: Vec<Placed>,
    /// Messages the session dropped as duplicates (there should be none: the server drops
    /// them).
    pub duplicates: usize,
}

impl Client {
    /// Opens a connection at `url` and starts a session.
    pub async fn start(url: &str) -> (Self, Answer) {
        Self::open(url, ClientSession::default(), Vec::new()).await
    }

    /// Opens a connection at `url` and resumes `self`'s session there.
    pub async fn resume(&self, url: &str) -> (Self, Answer) {
        Self::open(url, self.session.clone(), self.received.clone()).await
    }

    /// A client of `session` (one kept from elsewhere) on `ws`, with nothing read yet: for
    /// [`Client::resume`].
    pub fn resuming(ws: WebSocket, session: ClientSession) -> Self {
        Self {
            ws,
            session,
            received: Vec::new(),
            duplicates: 0,
        }
    }

    /// The session's last position in `topic`.
    pub fn position(&self, topic: &str) -> Stamp {
        self.session
            .position(topic)
            .unwrap_or_else(|| panic!("no position in {topic}"))
    }

    async fn open(url: &str, mut session: ClientSession, received: Vec<Placed>) -> (Self, Answer) {
        let mut builder = WebSocket::builder(url).protocols([PROTOCOL]);
        if std::env::var_os("RESUME_NO_DEFLATE").is_some() {
            builder = builder.permessage_deflate(None);
        }
        let ws = builder.connect().await.unwrap();
        assert_eq!(ws.protocol(), PROTOCOL, "the server agreed to resume");
        ws.send(session.opening()).unwrap();
        let mut client = Self {
            ws,
            session,
            received,
            duplicates: 0,
        };
        let message = client.next_message().await.expect("an answer");
        let frame = message.as_bytes();
        client
            .session
            .on_frame(frame)
            .expect("hello or resumed first");
        let answer = match wire::parse_server_frame(frame).expect("a protocol frame") {
            ServerFrame::Hello { session, positions } => Answer {
                session: session.session,
                resumed: false,
                recovered: Vec::new(),
                failed: Vec::new(),
                positions,
            },
            ServerFrame::Resumed {
                session,
                recovered,
                failed,
                positions,
            } => Answer {
                session: session.session,
                resumed: true,
                recovered,
                failed,
                positions,
            },
            other => panic!("expected hello or resumed first, got {other:?}"),
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
            let frame = message.as_bytes();
            let step = self.session.on_frame(frame).expect("a frame");
            let delivered = matches!(step, wsworker::resume::ClientStep::Deliver(_));
            let got = match wire::parse_server_frame(frame).expect("a frame") {
                ServerFrame::Message {
                    topic,
                    offset,
                    id,
                    payload,
                    ..
                } => {
                    self.received.push(Placed {
                        topic: topic.clone(),
                        offset,
                        id,
                    });
                    if !delivered {
                        self.duplicates += 1;
                        continue;
                    }
                    Got::Placed {
                        topic,
                        offset,
                        text: String::from_utf8(payload.to_vec()).unwrap(),
                    }
                }
                ServerFrame::Plain(payload) => {
                    Got::Plain(String::from_utf8(payload.to_vec()).unwrap())
                }
                ServerFrame::Joined { topic, position } => Got::Joined(topic, position),
                ServerFrame::Left { topic } => Got::Left(topic),
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

    /// Checks, by what came on the wire alone, that the session's connections read every
    /// message of `topic` once, in order, with no gap: each offset one after the one
    /// before, each id new.
    pub fn assert_consecutive(&self, topic: &str) {
        let placed: Vec<&Placed> = self.received.iter().filter(|p| p.topic == topic).collect();
        for pair in placed.windows(2) {
            assert_eq!(
                pair[1].offset,
                pair[0].offset + 1,
                "{topic}: {:?} after {:?}",
                pair[1],
                pair[0]
            );
        }
        let ids: std::collections::HashSet<u64> = placed.iter().map(|p| p.id).collect();
        assert_eq!(ids.len(), placed.len(), "{topic}: an id came twice");
    }
}

/// A node of the resume tests: id `id` on `redis`, with the default resume config.
pub fn node(redis: &RedisServer, id: u16) -> Node {
    Node::start_resume(
        RedisConfig::new(redis.url()).node_id(id),
        ResumeConfig::default(),
    )
}

/// `"1"`, `"2"`, …: the texts [`send_range`] sends.
pub fn numbered(range: std::ops::RangeInclusive<usize>) -> Vec<String> {
    range.map(|i| i.to_string()).collect()
}

/// Sends each number of `range` to `group` through `node`.
pub fn send_range(node: &Node, group: &str, range: std::ops::RangeInclusive<usize>) {
    for i in range {
        node.hub.send_to_group(group, i.to_string());
    }
}

/// Waits until `node` has no connection in `group` (it noticed the cut).
pub fn gone(node: &Node, group: &str) {
    eventually("the node notices the cut", || {
        node.hub.group_len(group) == 0
    });
}

/// Where most resume tests start: nodes sharing a Redis, and a client that started a
/// session in a room on node 0, through a proxy the test can cut.
pub struct Scene {
    pub client: Client,
    /// The answer to the client's `start`.
    pub hello: Answer,
    pub proxy: Proxy,
    pub nodes: Vec<Node>,
    pub redis: RedisServer,
    room: String,
}

impl Scene {
    /// `n` nodes (ids 1..=n, [`node`]) on `redis`; the client in `room`.
    pub async fn start(redis: RedisServer, n: u16, room: &str) -> Self {
        let nodes = (1..=n).map(|id| node(&redis, id)).collect();
        Self::with_nodes(redis, nodes, room).await
    }

    /// The client in `room` on `nodes[0]`.
    pub async fn with_nodes(redis: RedisServer, nodes: Vec<Node>, room: &str) -> Self {
        let proxy = Proxy::start(nodes[0].server.local_addr()).await;
        let (client, hello) = Client::start(&format!("{}/?room={room}", proxy.url())).await;
        Self {
            client,
            hello,
            proxy,
            nodes,
            redis,
            room: room.to_owned(),
        }
    }

    /// Sends `range` to the room through node 0; the texts the client read of it.
    pub async fn send_and_read(&mut self, range: std::ops::RangeInclusive<usize>) -> Vec<String> {
        let n = range.clone().count();
        send_range(&self.nodes[0], &self.room, range);
        self.client.texts(n).await
    }

    /// Cuts the client's connection, and waits until node 0 noticed.
    pub fn cut(&self) {
        self.proxy.cut();
        gone(&self.nodes[0], &self.room);
    }
}
