//! Where a client connection's events go: to the `on_*` callback of their kind when there
//! is one (every panic contained), to the handle's event stream otherwise.

use std::task::{Context, Poll};

use tokio::sync::{mpsc, oneshot};
use wsworker_proto::{CloseCode, Event, Message, MessageRef};

use super::{WebSocket, WsEvent, weight};
use crate::buffers;
use crate::driver::Handler;
use crate::error::{Error, Result};
use crate::shared::{CloseInfo, Shared, contain};

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

/// Reports one connection's events; the driver's [`Handler`] once it is open.
pub(super) struct ClientHandler {
    /// The handle given to callbacks; it does not keep the connection open.
    ws: WebSocket,
    callbacks: Callbacks,
    events: mpsc::UnboundedSender<WsEvent>,
    /// Present until the attempt ends when someone awaits it: the open event and a failure
    /// to connect then go there instead of to the stream and the callbacks.
    ready: Option<Ready>,
}

impl ClientHandler {
    pub(super) fn new(
        ws: WebSocket,
        callbacks: Callbacks,
        events: mpsc::UnboundedSender<WsEvent>,
        ready: Option<Ready>,
    ) -> Self {
        Self {
            ws,
            callbacks,
            events,
            ready,
        }
    }

    pub(super) fn ws(&self) -> &WebSocket {
        &self.ws
    }

    /// The connection could not be established.
    pub(super) fn fail(mut self, error: Error) {
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(Err(error));
            return;
        }
        self.on_error(error);
        self.on_close(CloseInfo {
            code: CloseCode::ABNORMAL,
            reason: String::new(),
            was_clean: false,
        });
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
    /// connection with 1011, as on the server.
    fn call(&self, f: impl FnOnce(&WebSocket) -> Result<()>) {
        let error = match contain(|| f(&self.ws)) {
            Ok(Ok(())) => return,
            Ok(Err(error)) => error,
            Err(panic) => Error::CallbackPanic(panic),
        };
        tracing::warn!(url = self.ws.url(), %error, "client callback failed");
        self.report(error);
        self.ws
            .inner
            .start_close(CloseCode::INTERNAL_ERROR, "internal error");
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
        self.message(message.to_owned());
    }

    fn on_error(&mut self, error: Error) {
        tracing::debug!(url = self.ws.url(), %error, "client connection error");
        self.report(error);
    }

    fn on_close(&mut self, info: CloseInfo) {
        match &self.callbacks.on_close {
            Some(cb) => {
                let _ = contain(|| cb(&self.ws, &info));
            }
            None => self.emit(WsEvent::Close(info)),
        }
    }
}
