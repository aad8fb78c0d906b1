//! Where a client connection's events go: to the `on_*` callback of their kind when there
//! is one (every panic contained), to the handle's event stream otherwise. One handler
//! serves every connection of a handle that reconnects: it decides, as each ends, whether
//! it was lost (to be replaced) or is over, and speaks `wsworker.resume.v1` when the
//! server agreed to it.

use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use wsworker_proto::{CloseCode, Event, Message, MessageRef, ReadyState, Utf8Bytes};

use super::{ReconnectPolicy, WebSocket, WsEvent, weight};
use crate::buffers;
use crate::driver::Handler;
use crate::error::{Error, Result};
use crate::resume::{ClientSession, ClientStep};
use crate::shared::{CloseInfo, Command, Shared, contain};

type Cb<F> = Option<Box<F>>;
type OpenFn = dyn Fn(&WebSocket) + Send + Sync;
type MessageFn = dyn Fn(&WebSocket, Message) -> Result<()> + Send + Sync;
type ErrorFn = dyn Fn(&WebSocket, &Error) + Send + Sync;
type CloseFn = dyn Fn(&WebSocket, &CloseInfo) + Send + Sync;

/// The callbacks a builder collected.
#[derive(Default)]
pub(super) struct Callbacks {
    pub(super) on_open: Cb<OpenFn>,
    pub(super) on_message: Cb<MessageFn>,
    pub(super) on_error: Cb<ErrorFn>,
    pub(super) on_close: Cb<CloseFn>,
}

/// Tells `connect().await` how the attempt ended.
pub(super) type Ready = oneshot::Sender<Result<()>>;

/// How a connection that opened ended, for the task that drives the connections.
#[derive(Debug)]
pub(super) enum Ended {
    /// It is over, and reported so.
    Over,
    /// It was lost and is to be replaced, as the policy says.
    Lost(CloseInfo),
}

/// Reports one handle's events, across its connections; the driver's [`Handler`] while a
/// connection is open.
pub(super) struct ClientHandler {
    /// The handle given to callbacks; it does not keep the connection open.
    ws: WebSocket,
    callbacks: Callbacks,
    events: mpsc::UnboundedSender<WsEvent>,
    /// Present until the first open when someone awaits it: the open event and a failure
    /// to connect then go there instead of to the stream and the callbacks.
    ready: Option<Ready>,
    /// The error of the last failed attempt, for `ready` when the policy gives up.
    last_error: Option<Error>,
    /// Reconnect as it says; `None`: the first connection's end is the end.
    policy: Option<ReconnectPolicy>,
    /// How the last connection ended.
    ended: Ended,
    /// The session, when resume was asked for.
    resume: Option<ClientSession>,
    /// The current connection speaks `wsworker.resume.v1` (the server agreed to it).
    resuming: bool,
    /// The current connection broke the resume protocol: it is closing, and its frames are
    /// ignored.
    broken: bool,
}

impl ClientHandler {
    pub(super) fn new(
        ws: WebSocket,
        callbacks: Callbacks,
        events: mpsc::UnboundedSender<WsEvent>,
        ready: Option<Ready>,
        policy: Option<ReconnectPolicy>,
        resume: bool,
    ) -> Self {
        Self {
            ws,
            callbacks,
            events,
            ready,
            last_error: None,
            policy,
            ended: Ended::Over,
            resume: resume.then(ClientSession::default),
            resuming: false,
            broken: false,
        }
    }

    pub(super) fn ws(&self) -> &WebSocket {
        &self.ws
    }

    /// How the connection that just ended did; called once per connection, after its
    /// driver is done.
    pub(super) fn take_ended(&mut self) -> Ended {
        std::mem::replace(&mut self.ended, Ended::Over)
    }

    /// The connection could not be established, and no attempt follows.
    pub(super) fn fail(&mut self, error: Error) {
        if let Some(ready) = self.ready.take() {
            self.end_gate();
            let _ = ready.send(Err(error));
            return;
        }
        self.on_error(error);
        self.closed(CloseInfo::dropped());
    }

    /// An attempt failed, under a policy (another follows if it allows). Reported unless
    /// the first open is awaited, whose failure is then the last attempt's.
    pub(super) fn attempt_failed(&mut self, error: Error) {
        if self.ready.is_some() {
            self.last_error = Some(error);
        } else {
            self.on_error(error);
        }
    }

    /// The next attempt is `attempt`, after `delay`; `close` is how the last connection or
    /// attempt ended.
    pub(super) fn reconnecting(&mut self, attempt: u32, delay: Duration, close: CloseInfo) {
        tracing::debug!(
            url = self.ws.url(),
            attempt,
            ?delay,
            code = close.code.as_u16(),
            "websocket reconnecting"
        );
        if self.ready.is_none() {
            self.emit(WsEvent::Reconnecting {
                attempt,
                delay,
                close,
            });
        }
    }

    /// The handle's connection is over for good: the close event (or the failure of the
    /// awaited first open).
    pub(super) fn closed(&mut self, info: CloseInfo) {
        self.end_gate();
        if let Some(ready) = self.ready.take() {
            let error = self.last_error.take().unwrap_or(Error::Closed);
            let _ = ready.send(Err(error));
            return;
        }
        match &self.callbacks.on_close {
            Some(cb) => {
                let _ = contain(|| cb(&self.ws, &info));
            }
            None => self.emit(WsEvent::Close(info)),
        }
    }

    /// Drops what no connection will send: the held messages, and the commands left for a
    /// driver (none runs any more).
    fn end_gate(&self) {
        if let Some(gate) = &self.ws.inner.gate {
            gate.end();
        }
        drop(self.ws.shared().drain_commands());
    }

    /// The connection is ready for the application's messages: those held go out.
    fn open_gate(&self) {
        if let Some(gate) = &self.ws.inner.gate {
            gate.open(self.ws.shared());
        }
    }

    /// A frame of `wsworker.resume.v1`: `frame` (given whole as `given`, when it was).
    fn resume_frame(&mut self, frame: MessageRef<'_>, given: Option<&Message>) {
        let Some(resume) = self.resume.as_mut().filter(|_| !self.broken) else {
            return;
        };
        match resume.on_frame(frame.as_bytes()) {
            Ok(ClientStep::Deliver(from)) => self.message(payload(frame, given, from)),
            Ok(ClientStep::Skip) => {}
            Ok(ClientStep::Session { id, window }) => {
                self.emit(WsEvent::Session { id, window });
                self.open_gate();
            }
            Ok(ClientStep::Resumed {
                id,
                recovered,
                failed,
            }) => {
                self.emit(WsEvent::Resumed {
                    id,
                    recovered: recovered.into(),
                    failed: failed.into(),
                });
                self.open_gate();
            }
            Err(error) => {
                self.broken = true;
                let error = Error::Resume(error);
                tracing::debug!(url = self.ws.url(), %error, "websocket resume protocol broken");
                self.report(error);
                let _ = self.ws.shared().submit(Command::Close(
                    CloseCode::PROTOCOL_ERROR,
                    "resume protocol error".to_owned(),
                ));
            }
        }
    }

    fn emit(&self, event: WsEvent) {
        let weight = weight(&event);
        // Counted before it is sent: the reader may take it off at once.
        self.ws.inner.backlog.added(weight);
        if self.events.send(event).is_err() {
            // Nobody reads the stream once every handle is gone: the event has nowhere to go.
            self.ws.inner.backlog.taken(weight);
        }
    }

    /// A message from the server, to its callback or to the stream.
    fn message(&self, message: Message) {
        match &self.callbacks.on_message {
            Some(cb) => self.call(|ws| cb(ws, message)),
            None => self.emit(WsEvent::Message(message)),
        }
    }

    /// Calls a callback; a panic or an error is reported as an error event and closes the
    /// connection with the error's own close code, as on the server
    /// ([`crate::callback::ending`]).
    fn call(&self, f: impl FnOnce(&WebSocket) -> Result<()>) {
        let closing = self.ws.ready_state() != ReadyState::Open;
        let Some(error) = crate::callback::run(closing, || f(&self.ws)) else {
            return;
        };
        tracing::warn!(url = self.ws.url(), %error, "client callback failed");
        let (code, reason) = crate::callback::ending(&error);
        self.report(error);
        self.ws.inner.start_close(code, reason);
    }

    fn report(&self, error: Error) {
        match &self.callbacks.on_error {
            // A panicking error handler has nowhere left to report to.
            Some(cb) => {
                let _ = contain(|| cb(&self.ws, &error));
            }
            None => self.emit(WsEvent::Error(error)),
        }
    }
}

impl Handler for ClientHandler {
    fn shared(&self) -> &Shared {
        self.ws.shared()
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.ws.inner.backlog.poll_room(cx)
    }

    fn on_open(&mut self) {
        self.broken = false;
        self.resuming = self.resume.is_some() && self.ws.protocol() == crate::resume::PROTOCOL;
        match self.resume.as_mut().filter(|_| self.resuming) {
            // The protocol's first frame, ahead of anything else; the application's
            // messages wait for the answer.
            Some(resume) => {
                let _ = self.ws.shared().send(resume.opening());
            }
            None => self.open_gate(),
        }
        if let Some(cb) = &self.callbacks.on_open {
            self.call(|ws| {
                cb(ws);
                Ok(())
            });
        } else if self.ready.is_none() {
            self.emit(WsEvent::Open);
        }
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(Ok(()));
        }
    }

    fn on_event(&mut self, event: Event) {
        // Pings, pongs and the close frame are the protocol core's business; the close is
        // reported by `on_close`.
        let Event::Message(message) = event else {
            return;
        };
        if self.resuming {
            return self.resume_frame(message.view(), Some(&message));
        }
        // A message handed out whole may be a slice of the buffer it was read into: waiting
        // in the stream, it would keep all of that buffer (64 KiB) alive, and a server
        // trickling one small message per read would cost 64 KiB a message, far beyond what
        // the backlog counts. It is copied out; a larger one takes most of its buffer anyway.
        let message = if self.callbacks.on_message.is_none() && message.len() < buffers::READ_SIZE {
            message.view().to_owned()
        } else {
            message
        };
        self.message(message);
    }

    /// Messages up to 4 KiB arrive lent, and the copy `on_message_ref` makes is right-sized,
    /// where taking them whole would slice the read buffer (and `on_event` copy them).
    fn borrows(&self) -> bool {
        true
    }

    fn on_message_ref(&mut self, message: MessageRef<'_>) {
        if self.resuming {
            return self.resume_frame(message, None);
        }
        self.message(message.to_owned());
    }

    fn on_error(&mut self, error: Error) {
        tracing::debug!(url = self.ws.url(), %error, "client connection error");
        self.report(error);
    }

    fn on_close(&mut self, info: CloseInfo) {
        self.resuming = false;
        let retry = !self.ws.inner.closing.load(Ordering::Acquire)
            && self
                .policy
                .as_ref()
                .is_some_and(|policy| policy.should_reconnect(&info));
        if !retry {
            self.ended = Ended::Over;
            return self.closed(info);
        }
        // Connecting from now on (not closed for a moment): the handle goes on. What was
        // sent and not yet taken by this connection waits for the next.
        self.ws.shared().set_ready_state(ReadyState::Connecting);
        if let Some(gate) = &self.ws.inner.gate {
            gate.close(self.ws.shared());
        }
        self.ended = Ended::Lost(info);
    }
}

/// The payload of a resume frame, from byte `from` on: sliced out of the message given
/// whole when that saves copying a large one, copied otherwise (a small one would keep its
/// read buffer alive).
fn payload(frame: MessageRef<'_>, given: Option<&Message>, from: usize) -> Message {
    let large = frame.len().saturating_sub(from) >= buffers::READ_SIZE;
    match (given, frame) {
        (Some(Message::Binary(bytes)), _) if large && from <= bytes.len() => {
            Message::Binary(bytes.slice(from..))
        }
        (Some(Message::Text(text)), _) if large && from <= text.len() => {
            // A suffix after an ASCII head's newline: still UTF-8 (checked again, cheaply).
            match Utf8Bytes::try_from(text.as_bytes().slice(from..)) {
                Ok(text) => Message::Text(text),
                Err(_) => Message::text(text.get(from..).unwrap_or_default()),
            }
        }
        (_, MessageRef::Text(text)) => Message::text(text.get(from..).unwrap_or_default()),
        (_, MessageRef::Binary(bytes)) => Message::Binary(Bytes::copy_from_slice(
            bytes.get(from..).unwrap_or_default(),
        )),
    }
}
