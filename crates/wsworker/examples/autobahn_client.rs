//! The Autobahn|Testsuite client testee, built on the public `WebSocket` API alone: asks the
//! fuzzing server for the number of cases, runs each one echoing every message back as it
//! came (text as text, binary as binary), then asks for the reports.
//!
//! `AUTOBAHN_URL=ws://127.0.0.1:9001 cargo run --release --example autobahn_client`

use std::time::Duration;

use wsworker::{WebSocket, WsEvent};

/// The largest message of the 9.* cases.
const MAX_MESSAGE: usize = 16 << 20;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base = std::env::var("AUTOBAHN_URL").unwrap_or_else(|_| "ws://127.0.0.1:9001".into());
    let agent = std::env::var("AUTOBAHN_AGENT").unwrap_or_else(|_| "wsworker".into());

    let count: u32 = {
        let ws = WebSocket::builder(format!("{base}/getCaseCount"))
            .connect()
            .await?;
        let mut count = None;
        while let Some(event) = ws.next().await {
            if let WsEvent::Message(msg) = event {
                count = Some(msg.to_text()?.trim().parse()?);
            }
        }
        count.ok_or("no case count")?
    };
    println!("{count} cases on {base}, agent {agent}");

    for case in 1..=count {
        let url = format!("{base}/runCase?case={case}&agent={agent}");
        // Echo from the callback: it runs on the connection's own task, so the reply is
        // queued without a channel hop.
        let ws = match WebSocket::builder(url)
            .max_message_size(MAX_MESSAGE)
            .connect_timeout(Duration::from_secs(60))
            .on_message(|ws, msg| ws.send(msg))
            .connect()
            .await
        {
            Ok(ws) => ws,
            Err(error) => {
                eprintln!("case {case}: {error}");
                continue;
            }
        };
        while let Some(event) = ws.next().await {
            if let WsEvent::Close(_) = event {
                break;
            }
        }
    }

    let ws = WebSocket::builder(format!("{base}/updateReports?agent={agent}"))
        .connect_timeout(Duration::from_secs(300))
        .connect()
        .await?;
    while ws.next().await.is_some() {}
    println!("reports updated");
    Ok(())
}
