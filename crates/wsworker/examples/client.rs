//! A client in the shape of the browser API: connect, send `tom`, print the answer, close.
//! Start the hello server first (`cargo run --release -- serve`), then
//! `cargo run --example client -- ws://127.0.0.1:2346`.

use wsworker::{ReadyState, WebSocket, WsEvent};

#[tokio::main(flavor = "current_thread")]
async fn main() -> wsworker::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:2346".to_owned());
    let ws = WebSocket::connect(&url, ["chat"]).await?;
    assert_eq!(ws.ready_state(), ReadyState::Open);
    println!("open, protocol {:?}", ws.protocol());
    ws.send("tom")?;
    while let Some(event) = ws.next().await {
        match event {
            WsEvent::Message(msg) => {
                println!("received: {}", msg.to_text()?);
                ws.close(1000, "bye")?;
            }
            WsEvent::Error(error) => eprintln!("error: {error}"),
            WsEvent::Close(info) => {
                println!(
                    "closed: {} {:?} clean={}",
                    info.code, info.reason, info.was_clean
                );
            }
            _ => {}
        }
    }
    Ok(())
}
