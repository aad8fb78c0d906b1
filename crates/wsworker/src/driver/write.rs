//! Writing: what is queued goes out in vectored writes (through the worker's shared write
//! buffer while nothing is left over), and the send buffer's limits — `on_buffer_full`,
//! `on_buffer_drain`, the hard limit's policy — are applied.

use super::*;

impl<S, H> Driver<S, H>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    /// Whether a message may be queued. One that would take the send buffer over the hard
    /// limit is dropped and counted ([`OverflowPolicy::DropNew`]) or closes the connection
    /// with 1008 ([`OverflowPolicy::Close`]) — unless the buffer is empty: the limit is on
    /// messages piling up unread, and a single message as large as the limit (the echo of a
    /// message of the maximum size) must still go out.
    pub(super) fn admit(&mut self, command: &Command) -> bool {
        let queued = self.conn.get().buffered_amount();
        if queued == 0
            || queued + command.weight() <= self.config.hard_buffer_limit
            || self.conn.ready_state() != ReadyState::Open
        {
            return true;
        }
        match self.config.overflow {
            OverflowPolicy::DropNew => {
                if let Some(counters) = &self.counters {
                    counters.message_dropped();
                }
            }
            OverflowPolicy::Close => {
                // A connection that resumes comes back for what it missed: "try again
                // later" rather than a violation.
                let code = if self.handler.shared().resumable() {
                    CloseCode::TRY_AGAIN_LATER
                } else {
                    CloseCode::POLICY_VIOLATION
                };
                let _ = self.conn.get().close(code, "send buffer full");
                self.end(CloseInfo::unclean(code, "send buffer full"));
            }
        }
        false
    }

    /// Lends the worker's write buffer to a connection with nothing queued, for this poll.
    pub(super) fn borrow_write_buffer(&mut self) {
        if !self.conn.get().wants_transmit() {
            // Nothing is queued, so the swap cannot fail; what it gives back is empty.
            let _ = self.conn.get().replace_send_buffer(buffers::borrow_write());
        }
    }

    /// Returns the write buffer to the worker once everything in it is written.
    pub(super) fn give_back_write_buffer(&mut self) {
        if let Ok(buf) = self.conn.get().replace_send_buffer(BytesMut::new())
            && buf.capacity() > 0
        {
            buffers::give_back_write(buf);
        }
    }

    /// Writes everything queued, with one vectored write per batch of slices.
    pub(super) fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let mut wrote = false;
        while self.conn.get().wants_transmit() {
            let written = if self.conn.get().transmit_slice_count() <= FEW_IOV {
                self.write_vectored::<FEW_IOV>(cx)
            } else {
                self.write_vectored::<MAX_IOV>(cx)
            };
            let n = match written {
                Poll::Ready(result) => result?,
                Poll::Pending if wrote => break,
                Poll::Pending => return Poll::Pending,
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.conn.get().advance_transmit(n);
            if let Some(counters) = &self.counters {
                counters.sent(n);
            }
            wrote = true;
        }
        if wrote {
            ready!(Pin::new(&mut self.io).poll_flush(cx))?;
        }
        Poll::Ready(Ok(wrote))
    }

    /// One vectored write of up to `N` slices of what is queued.
    pub(super) fn write_vectored<const N: usize>(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        let mut slices = [IoSlice::new(&[]); N];
        let count = self.conn.get().transmit_slices(&mut slices);
        Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..count])
    }

    /// Writes `bytes`, complete frames of `messages` messages (a fan-out held on the event
    /// loop, `hub::Corking`), straight to the socket when the connection is open and nothing
    /// waits to be sent before them; what the socket does not take is queued ahead of
    /// anything sent later. `None` when it did not take them (they go the ordinary way);
    /// else whether a rest was queued, for the driver to write once the socket has room.
    ///
    /// For a stream whose `Pending` needs no waker: the event loop's, which epoll's edges
    /// bring back.
    pub(crate) fn write_now(&mut self, bytes: &Bytes, messages: usize) -> Option<bool> {
        if !matches!(self.stage, Stage::Open) || self.handler.shared().has_queued() {
            return None;
        }
        if bytes.len() > self.config.hard_buffer_limit {
            // More than the send buffer may hold: message by message, each admitted or not
            // by the buffer's limits.
            return None;
        }
        if !self.conn.is_asleep() {
            let conn = self.conn.get();
            if conn.wants_transmit() || conn.ready_state() != ReadyState::Open {
                return None;
            }
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let written = match Pin::new(&mut self.io).poll_write(&mut cx, bytes) {
            Poll::Ready(Ok(n)) => n,
            Poll::Pending => 0,
            // The driver meets the error at its next write, of these frames queued.
            Poll::Ready(Err(_)) => return None,
        };
        if let Some(counters) = &self.counters {
            counters.sent(written);
            counters.messages_sent(messages);
        }
        if written == bytes.len() {
            return Some(false);
        }
        // The protocol is open: it takes them (the bytes are shared, not copied).
        let queued = self.conn.get().send_written_rest(bytes.slice(written..));
        debug_assert!(queued.is_ok(), "an open connection takes the rest");
        Some(true)
    }

    /// Publishes the buffered amount and fires the buffer callbacks; `true` when one was
    /// called.
    pub(super) fn check_buffer(&mut self) -> bool {
        let buffered = self.conn.get().buffered_amount();
        self.handler.shared().publish_queued(buffered);
        if !self.buffer_full && buffered > self.config.soft_buffer_limit {
            self.buffer_full = true;
            self.handler.on_buffer_full();
        } else if self.buffer_full && buffered == 0 {
            self.buffer_full = false;
            self.handler.on_buffer_drain();
        } else {
            return false;
        }
        true
    }
}
