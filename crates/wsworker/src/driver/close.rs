//! Closing: the state published to the handles, the close timeout armed once the closing
//! handshake starts, the server's half-close (RFC 6455 §7.1.1), and the end.

use super::*;

impl<S, H> Driver<S, H>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    /// Publishes the state to the handles and fires the buffer callbacks.
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
        if state != ReadyState::Open && self.deadline.is_none() {
            self.deadline = Some(Box::pin(tokio::time::sleep_until(
                Instant::now() + self.config.close_timeout,
            )));
        }
    }

    /// Ends the connection once the closing handshake is done and flushed, or the peer
    /// went away, or the close timeout passed.
    pub(super) fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.read_eof && !self.conn.wants_transmit() {
            return Poll::Ready(());
        }
        if self.read_eof && self.conn.ready_state() != ReadyState::Closed {
            // The peer is gone mid-conversation: nothing we queue will be read.
            return Poll::Ready(());
        }
        if self.conn.ready_state() == ReadyState::Closed
            && !self.conn.wants_transmit()
            && !self.write_shut
            && self.conn.role() == Role::Server
        {
            // RFC 6455 §7.1.1: the server closes the TCP connection first. Half-close, then
            // wait for the client's end (read side) so no data is lost to a reset.
            if Pin::new(&mut self.io).poll_shutdown(cx).is_ready() {
                self.write_shut = true;
            }
        }
        if let Some(deadline) = &mut self.deadline
            && deadline.as_mut().poll(cx).is_ready()
        {
            if let Some(info) = &mut self.close
                && self.conn.ready_state() != ReadyState::Closed
            {
                info.was_clean = false;
            }
            return Poll::Ready(());
        }
        Poll::Pending
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
