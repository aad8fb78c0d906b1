//! A chat cluster of `wsworker serve --mode chat --redis URL --node-id N` nodes: child
//! processes sharing one `redis-server` (the test's own), for the tests of the cluster, of
//! resume across it and of a slow node.

use std::time::{Duration, Instant};

use super::Serve;

/// Node `id` of the chat sharing the Redis at `redis`, to start with [`ChatNode::start`].
pub struct ChatNode<'a> {
    redis: &'a str,
    id: u16,
    port: u16,
    count: u16,
    extra: Vec<&'a str>,
}

/// Node `id` of the chat sharing the Redis at `redis`: on a free port, 2 workers.
pub fn chat_node(redis: &str, id: u16) -> ChatNode<'_> {
    ChatNode {
        redis,
        id,
        port: 0,
        count: 2,
        extra: Vec::new(),
    }
}

impl<'a> ChatNode<'a> {
    /// On loopback port `port` (one it had before, for a restart).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// With `count` workers.
    pub fn count(mut self, count: u16) -> Self {
        self.count = count;
        self
    }

    /// With more arguments to `serve`.
    pub fn args(mut self, args: &[&'a str]) -> Self {
        self.extra.extend_from_slice(args);
        self
    }

    /// Starts it and waits until it listens and has announced its node id.
    pub fn start(self) -> Serve {
        let listen = format!("websocket://127.0.0.1:{}", self.port);
        let (count, id) = (self.count.to_string(), self.id.to_string());
        let mut args = vec![
            listen.as_str(),
            "--mode",
            "chat",
            "--count",
            &count,
            "--redis",
            self.redis,
            "--node-id",
            &id,
        ];
        args.extend_from_slice(&self.extra);
        let serve = Serve::start(&args);
        assert_eq!(serve.node, Some(self.id), "the node announces its id");
        serve
    }
}

/// Sends probes with `probe` (the probe's number) until `readers` clients have each
/// said `ready` once: then every client's node hears the room. Panics after `limit`.
pub async fn probe_until_ready(
    mut probe: impl FnMut(usize),
    readers: usize,
    ready: &mut tokio::sync::mpsc::UnboundedReceiver<()>,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    let mut got = 0;
    for n in 0.. {
        probe(n);
        let _ = tokio::time::timeout(Duration::from_millis(50), async {
            while got < readers && ready.recv().await.is_some() {
                got += 1;
            }
        })
        .await;
        if got == readers {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {got} of {readers} clients got a probe"
        );
    }
}
