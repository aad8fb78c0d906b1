//! An echo server: every message back as it came, text as text, binary as binary.
//! `cargo run --example echo -- websocket://127.0.0.1:9001`

use wsworker::Worker;

fn main() -> wsworker::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "websocket://127.0.0.1:9001".to_owned());
    let mut worker = Worker::new(&address)?;
    // The message lent, not given: a small one is read where it arrived and its echo
    // encoded straight into the write buffer.
    worker.on_message_ref(|conn, msg| {
        conn.send(msg)?;
        Ok(())
    });
    worker.run()
}
