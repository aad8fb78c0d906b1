//! The decision about a WebSocket upgrade request, whatever carried it (our own HTTP/1.1
//! reader, or hyper's HTTP/1.1 or HTTP/2): the origin allow-list, the application's
//! decision, resume, permessage-deflate and the connection limit; then the open
//! connection's handle and handler. Only the response's shape differs by transport.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::time::Instant;
use wsworker_proto::Config;
use wsworker_proto::handshake::Request;

use super::callbacks::{Attached, Callbacks, Handshake, ServerHandler};
use super::connection::Connection;
use super::refusal::Refusal;
use super::{Routed, ServerContext};
use crate::metrics::{Rejection, WorkerCounters};
use crate::resume::ResumeConfig;
use crate::shared::{Shared, next_serial};

/// An upgrade request that may open: what its response says and what its connection gets.
pub(crate) struct Accepted {
    /// The subprotocol chosen.
    pub(crate) protocol: Option<String>,
    /// The `Sec-WebSocket-Extensions` answer.
    pub(crate) extensions: Option<String>,
    /// The application's extra response headers.
    pub(crate) headers: Vec<(String, String)>,
    /// The connection's protocol settings, with the negotiated compression.
    pub(crate) config: Config,
    data: Option<Attached>,
    resume: Option<ResumeConfig>,
    callbacks: Arc<Callbacks>,
}

/// Decides about a valid upgrade `request` (its route found, `validate_upgrade` passed):
/// accepted, or the refusal to answer with (counted in `counters`). Nothing is awaited
/// after the connection limit is checked, so a caller that opens the connection without
/// awaiting cannot overshoot it.
pub(crate) async fn decide(
    request: &Request,
    routed: Routed<'_>,
    ctx: &ServerContext,
    counters: &WorkerCounters,
    deadline: Instant,
) -> Result<Accepted, Vec<u8>> {
    let settings = routed.settings;
    if let Some(allow_list) = &settings.allowed_origins
        && !super::origin::allowed(request.origin(), allow_list)
    {
        return Err(Refusal::of(Rejection::Origin).counted(counters));
    }
    let decision = match &routed.callbacks.on_handshake {
        Some(on_handshake) => {
            match tokio::time::timeout_at(deadline, on_handshake.decide(request)).await {
                Ok(decision) => decision,
                Err(_) => return Err(Refusal::of(Rejection::Timeout).counted(counters)),
            }
        }
        None => Handshake::accept(),
    };
    let resume = ctx.hub.resume_config();
    let (protocol, headers, data) = match decision {
        // A client that asks to resume gets it, unless the application chose otherwise.
        Handshake::Accept {
            protocol: None,
            headers,
            data,
        } if resume.is_some() && request.protocols().any(|p| p == crate::resume::PROTOCOL) => {
            (Some(crate::resume::PROTOCOL.to_owned()), headers, data)
        }
        Handshake::Accept {
            protocol,
            headers,
            data,
        } => (protocol, headers, data),
        Handshake::Reject { status, body } => {
            return Err(Refusal::application(status, body.as_bytes()).counted(counters));
        }
    };
    let (extensions, config) = super::extensions::negotiate(request, settings);
    if let Some(max) = ctx.settings.max_connections
        && counters.open() >= max as u64
    {
        return Err(Refusal::of(Rejection::Full).counted(counters));
    }
    let resume = resume.filter(|_| protocol.as_deref() == Some(crate::resume::PROTOCOL));
    Ok(Accepted {
        protocol,
        extensions,
        headers,
        config,
        data,
        resume,
        callbacks: routed.callbacks.clone(),
    })
}

impl Accepted {
    /// The application's extra headers, borrowed as the handshake's response builders
    /// take them.
    pub(crate) fn header_refs(&self) -> Vec<(&str, &str)> {
        self.headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }

    /// The open connection's handle and the handler its driver calls. The connection keeps
    /// `request` for its whole life.
    pub(crate) fn open(
        self,
        request: Request,
        peer: Option<SocketAddr>,
        worker_id: usize,
        ctx: &ServerContext,
    ) -> ServerHandler {
        let resume = self.resume.map(crate::hub::ResumeState::new);
        let mut shared = Shared::with_id(ctx.hub.connection_id(next_serial()));
        if resume.is_some() {
            shared.set_resumable();
        }
        #[cfg(feature = "deflate")]
        shared.set_shared_deflate(
            self.config
                .deflate_value()
                .and_then(wsworker_proto::deflate::SharedDeflate::for_server),
        );
        let conn = Connection::new(
            shared,
            worker_id,
            peer,
            request,
            self.protocol,
            ctx.hub.downgrade(),
            resume,
        );
        if let Some(data) = self.data {
            conn.attach(data);
        }
        ServerHandler {
            conn,
            callbacks: self.callbacks,
        }
    }
}
