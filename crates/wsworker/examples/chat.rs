//! A chat room: every message goes to everyone connected, on every worker, with the
//! sender's name taken from the handshake's query string (`ws://127.0.0.1:2346/?name=tom`).

use wsworker::{Message, Worker};

/// The name a client chose, kept on its connection.
struct Name(String);

fn main() -> wsworker::Result<()> {
    let mut worker = Worker::new("websocket://0.0.0.0:2346")?;
    worker.count(2);
    let everyone = worker.connections();
    let joined = everyone.clone();
    worker.on_connect(move |conn| {
        let name = conn
            .request()
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("name=")))
            .unwrap_or("anonymous")
            .to_owned();
        joined.broadcast(format!("* {name} joined"));
        conn.set_data(Name(name));
    });
    let room = everyone.clone();
    worker.on_message(move |conn, msg| {
        let name = conn
            .data::<Name>()
            .map_or_else(String::new, |n| n.0.clone());
        room.broadcast(Message::from(format!("{name}: {}", msg.to_text()?)));
        Ok(())
    });
    worker.on_close(move |conn, _| {
        if let Some(name) = conn.data::<Name>() {
            everyone.broadcast(format!("* {} left", name.0));
        }
    });
    worker.run()
}
