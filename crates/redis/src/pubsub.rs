//! The engine's pub/sub connection: keeps the subscriptions the actor asks for, makes the
//! connection again (and every subscription with it) whenever it is lost, and hands the
//! actor what arrives.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout};

use crate::RedisConfig;
use crate::actor::{Event, MAX_BACKOFF};

/// What the pub/sub task is asked to do.
pub(crate) enum SubRequest {
    Subscribe(String),
    Unsubscribe(String),
}

/// Keeps the subscriptions the actor asks for on a pub/sub connection of its own, made
/// again (and every subscription with it) whenever it is lost.
pub(crate) async fn pubsub_task(
    client: redis::Client,
    config: RedisConfig,
    mut requests: mpsc::UnboundedReceiver<SubRequest>,
    events: mpsc::UnboundedSender<Event>,
) {
    let mut wanted: HashSet<String> = HashSet::new();
    let mut backoff = Duration::from_millis(50);
    let apply = |wanted: &mut HashSet<String>, request: SubRequest| match request {
        SubRequest::Subscribe(channel) => wanted.insert(channel),
        SubRequest::Unsubscribe(channel) => wanted.remove(&channel),
    };
    loop {
        let Ok(Ok(pubsub)) = timeout(config.connect_timeout, client.get_async_pubsub()).await
        else {
            sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            while let Ok(request) = requests.try_recv() {
                apply(&mut wanted, request);
            }
            if requests.is_closed() {
                return;
            }
            continue;
        };
        let (mut sink, mut stream) = pubsub.split();
        while let Ok(request) = requests.try_recv() {
            apply(&mut wanted, request);
        }
        let channels: Vec<String> = wanted.iter().cloned().collect();
        if !channels.is_empty()
            && !matches!(
                timeout(config.response_timeout, sink.subscribe(&channels)).await,
                Ok(Ok(()))
            )
        {
            sleep(backoff).await;
            continue;
        }
        backoff = Duration::from_millis(50);
        let _ = events.send(Event::Subscribed(channels));
        loop {
            tokio::select! {
                message = stream.next() => match message {
                    Some(message) => {
                        let _ = events.send(Event::Live(
                            message.get_channel_name().to_owned(),
                            message.get_payload_bytes().to_vec(),
                        ));
                    }
                    None => break,
                },
                request = requests.recv() => {
                    let Some(request) = request else { return };
                    let ok = match request {
                        SubRequest::Subscribe(channel) => {
                            if !wanted.insert(channel.clone()) {
                                continue;
                            }
                            let ok = matches!(
                                timeout(config.response_timeout, sink.subscribe(&channel)).await,
                                Ok(Ok(()))
                            );
                            if ok {
                                let _ = events.send(Event::Subscribed(vec![channel]));
                            }
                            ok
                        }
                        SubRequest::Unsubscribe(channel) => {
                            !wanted.remove(&channel)
                                || matches!(
                                    timeout(config.response_timeout, sink.unsubscribe(&channel)).await,
                                    Ok(Ok(()))
                                )
                        }
                    };
                    if !ok {
                        break;
                    }
                }
            }
        }
        let _ = events.send(Event::PubsubDown);
    }
}
