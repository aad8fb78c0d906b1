//! Hooks for the benchmarks (`benches/`): public so that they can reach the Hub's fan-out
//! without sockets in the way, left out of the documentation as no application needs them.

use std::net::SocketAddr;

use wsworker_proto::ReadyState;
use wsworker_proto::handshake::parse_request;

use crate::hub::{Hub, WeakHub};
use crate::resume::ResumeConfig;
use crate::server::{Connection, Connections};
use crate::shared::Shared;

/// A Hub over open connections that no driver serves: what a send queues stays in their
/// inboxes until [`FanOut::drain`].
#[derive(Debug)]
pub struct FanOut {
    hub: Hub,
    conns: Vec<Connection>,
}

impl FanOut {
    /// `n` connections, none of which resumes; with `resume`, the Hub is set for resume
    /// all the same (as a server whose clients do not ask for it).
    ///
    /// # Panics
    /// Never in practice: the request it parses is a constant.
    #[allow(clippy::expect_used)]
    pub fn new(n: usize, resume: bool) -> Self {
        let connections = Connections::new(1);
        let hub = Hub::new(connections.clone());
        if resume {
            hub.resume(ResumeConfig::default())
                .expect("a new Hub has no resume set");
        }
        let head = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";
        let peer = SocketAddr::from(([127, 0, 0, 1], 9));
        let conns = (0..n)
            .map(|_| {
                let (request, _) = parse_request(head, 1024)
                    .ok()
                    .flatten()
                    .expect("a valid request");
                let conn = Connection::new(
                    Shared::new(),
                    0,
                    Some(peer),
                    request,
                    None,
                    WeakHub::default(),
                    None,
                );
                conn.shared().set_ready_state(ReadyState::Open);
                connections.insert(&conn);
                conn
            })
            .collect();
        Self { hub, conns }
    }

    /// The Hub to send through.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Empties every connection's inbox, as their drivers would.
    pub fn drain(&self) {
        for conn in &self.conns {
            drop(conn.shared().drain_commands());
        }
    }
}

/// `size` bytes of a chat's traffic: JSON lines whose user, words, id and time vary, drawn
/// from `seed` (so that every connection sends its own message, the same in every run): the
/// compressible text of the deflate measurements (`wsworker bench --deflate`,
/// `examples/idle_rss`).
pub fn chat_lines(size: usize, seed: u64) -> String {
    const WORDS: [&str; 16] = [
        "hello", "there", "meeting", "at", "noon", "today", "thanks", "see", "you", "soon", "the",
        "build", "is", "green", "again", "ok",
    ];
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = String::with_capacity(size + 160);
    let mut id = 1_000_000 + seed.wrapping_mul(1000);
    while out.len() < size {
        let user = next() % 50;
        let words: Vec<&str> = (0..3 + next() % 8)
            .map(|_| WORDS[(next() % WORDS.len() as u64) as usize])
            .collect();
        id = id.wrapping_add(1 + next() % 3);
        let ts = 1_767_225_600_000_u64.wrapping_add(id.wrapping_mul(37) + next() % 1000);
        out.push_str(&format!(
            "{{\"type\":\"message\",\"room\":\"general\",\"user\":\"user-{user:04}\",\
             \"id\":{id},\"ts\":{ts},\"text\":\"{}\"}}\n",
            words.join(" ")
        ));
    }
    // ASCII: any length is a character boundary.
    out.truncate(size);
    out
}
