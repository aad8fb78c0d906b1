//! Closing: the state published to the handles, the close timeout armed once the closing
//! handshake starts, the server's half-close (RFC 6455 §7.1.1), and the end.

use super::*;

impl<S, H> Driver<S, H>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    /// Publishes the state to the handles, fires the buffer callbacks, and starts the close
    /// timeout once a close frame went either way.
    pub(super) fn sync_state(&mut self) {
        let state = self.conn.ready_state();
        self.handler
            .shared()
            .set_ready_state(if state == ReadyState::Closed {
                // Closed for the application once the TCP connection is gone too.
                ReadyState::Closing
            } else {
                state
            });
        self.check_buffer();
        if state != ReadyState::Open && matches!(self.stage, Stage::Open) {
            self.stage = Stage::Closing(self.close_timer());
        }
    }

    /// The close timeout, started now: a timer of its own, or `None` on the loop's clock,
    /// whose tick watches the deadline (see `keepalive_tick`): 112 bytes fewer for each
    /// connection while it closes, when many clients leave at once.
    fn close_timer(&mut self) -> Option<Timer> {
        let deadline = Instant::now() + self.config.close_timeout;
        if let Some(state) = &mut self.keepalive
            && state.watch_close(deadline)
        {
            return None;
        }
        Some(Box::pin(tokio::time::sleep_until(deadline)))
    }

    /// Whether the close timeout, run by `timer` or by the loop's clock, has yet to pass.
    fn close_pending(
        timer: &mut Option<Timer>,
        keepalive: Option<&KeepaliveState>,
        cx: &mut Context<'_>,
    ) -> bool {
        match timer {
            Some(timer) => timer.as_mut().poll(cx).is_pending(),
            None => keepalive
                .and_then(KeepaliveState::close_deadline)
                .is_some_and(|deadline| Instant::now() < deadline),
        }
    }

    /// The peer ended its side of the TCP connection.
    pub(super) fn read_closed(&mut self) {
        if !self.conn.get().is_receive_done() {
            // The TCP connection ended without a closing handshake.
            self.end_unless_known(CloseInfo::dropped());
            self.stage = Stage::Ended;
            return;
        }
        // After the peer's close frame: our answer may still be on its way out.
        let timer = match std::mem::replace(&mut self.stage, Stage::Ended) {
            Stage::Closing(timer) | Stage::WriteShut(timer) | Stage::ReadClosed(timer) => timer,
            // The close frame came with the handshake's bytes, before the timeout started.
            _ => self.close_timer(),
        };
        self.stage = Stage::ReadClosed(timer);
    }

    /// Ends the connection once the closing handshake is done and flushed, or the peer
    /// went away, or the close timeout passed.
    pub(super) fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let closed = self.conn.ready_state() == ReadyState::Closed;
        match self.stage {
            Stage::New | Stage::Open => return Poll::Pending,
            Stage::Ended | Stage::Reported => return Poll::Ready(()),
            // Flushed; or the peer is gone mid-conversation, and nothing we queue will be read.
            Stage::ReadClosed(_) if !self.conn.get().wants_transmit() || !closed => {
                self.stage = Stage::Ended;
                return Poll::Ready(());
            }
            // RFC 6455 §7.1.1: the server closes the TCP connection first. Half-close, then
            // wait for the client's end (read side) so no data is lost to a reset.
            Stage::Closing(_)
                if closed
                    && !self.conn.get().wants_transmit()
                    && self.conn.get().role() == Role::Server
                    && Pin::new(&mut self.io).poll_shutdown(cx).is_ready() =>
            {
                self.stage = match std::mem::replace(&mut self.stage, Stage::Ended) {
                    Stage::Closing(timer) => Stage::WriteShut(timer),
                    other => other,
                };
            }
            _ => {}
        }
        if let Stage::Closing(timer) | Stage::ReadClosed(timer) | Stage::WriteShut(timer) =
            &mut self.stage
            && Self::close_pending(timer, self.keepalive.as_ref(), cx)
        {
            return Poll::Pending;
        }
        if let Some(info) = &mut self.close
            && !closed
        {
            info.was_clean = false;
        }
        self.stage = Stage::Ended;
        Poll::Ready(())
    }

    pub(super) fn abort(&mut self, error: io::Error) -> Poll<()> {
        if self.conn.ready_state() != ReadyState::Closed {
            self.end(CloseInfo::dropped());
            self.handler.on_error(Error::Io(error));
        }
        Poll::Ready(())
    }
}

impl<S, H: Handler> Driver<S, H> {
    /// Records how the connection ends: the latest word wins (the peer's close frame over
    /// ours, a protocol error or a dropped socket over either).
    pub(super) fn end(&mut self, info: CloseInfo) {
        self.close = Some(Box::new(info));
    }

    /// Records how the connection ends, unless that is known already (a TCP end after a
    /// close frame says nothing new).
    pub(super) fn end_unless_known(&mut self, info: CloseInfo) {
        self.close.get_or_insert_with(|| Box::new(info));
    }
}
