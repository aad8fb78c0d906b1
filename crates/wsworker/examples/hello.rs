//! The classic Workerman example: `Worker("websocket://0.0.0.0:2346")` with `count = 4`,
//! answering `hello <message>`. Try it with `wsworker connect ws://127.0.0.1:2346`.

use wsworker::Worker;

fn main() -> wsworker::Result<()> {
    let mut worker = Worker::new("websocket://0.0.0.0:2346")?;
    worker.count(4);
    worker.on_message(|conn, msg| {
        conn.send(format!("hello {}", msg.to_text()?))?;
        Ok(())
    });
    worker.run()
}
