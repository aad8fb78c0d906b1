//! Reading: bytes from the socket into the protocol core (through the worker's shared read
//! buffer, a partial frame parked in an allocation of its own size), and every decoded event
//! to the handler.

use super::*;

impl<S, H> Driver<S, H>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    /// Reads what is available and hands every decoded event to the handler.
    pub(super) fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if !self.stage.reads() {
            return Poll::Pending;
        }
        let discard = self.conn.get().is_receive_done();
        if !discard && self.handler.poll_ready(cx).is_pending() {
            return Poll::Pending;
        }
        let conn = self.conn.get();
        let rest = conn.frame_rest();
        let buf = conn.recv_buffer_mut();
        // Between reads a connection holds no buffer, or the start of a frame parked in an
        // allocation of its own size: the read goes into the worker's buffer, the parked
        // bytes copied in front. Only a large partial frame keeps a buffer of its own.
        let parked = (buf.len() <= PARK_AT_MOST).then(|| {
            let mut lent = buffers::borrow_read();
            lent.extend_from_slice(buf);
            std::mem::replace(buf, lent)
        });
        if parked.is_none() {
            // The rest of the frame, and beyond it: a peer whose last read filled the room
            // streams large messages, and a read that takes the next ones too saves a
            // system call for each; a peer that trickles gets no more room than it fills.
            let spare = buf.capacity() - buf.len();
            if self.streaming && spare < rest.saturating_add(buffers::READ_SIZE / 2) {
                buf.reserve(rest.saturating_add(buffers::READ_SIZE));
            } else if spare < READ_RESERVE / 8 {
                buf.reserve(READ_RESERVE);
            }
        }
        let offered = buf.capacity() - buf.len();
        let read = poll_read_buf(Pin::new(&mut self.io), cx, buf);
        let n = match read {
            Poll::Ready(Ok(n)) => n,
            Poll::Ready(Err(e)) => {
                self.give_back_read_buffer(parked);
                return Poll::Ready(Err(e));
            }
            Poll::Pending => {
                self.give_back_read_buffer(parked);
                return Poll::Pending;
            }
        };
        self.streaming = n == offered;
        if n > 0 {
            if let Some(state) = &mut self.keepalive {
                state.heard();
            }
            if let Some(counters) = &self.counters {
                counters.received(n);
            }
        }
        if n == 0 {
            self.read_closed();
        } else if discard {
            // After the close frame nothing more is read, but the socket is drained until
            // the peer closes it, so that closing ours does not reset the connection and
            // destroy the close frame we sent.
            self.conn.get().recv_buffer_mut().clear();
        } else {
            self.process_events();
        }
        self.give_back_read_buffer(None);
        Poll::Ready(Ok(n))
    }

    /// Returns the receive buffer to the worker after a read, unless a large partial frame
    /// is left in it: a small leftover (the start of a frame) is parked in an allocation of
    /// its own size, so that a peer that sends a frame's first byte and then waits holds a
    /// few bytes, not the worker's whole buffer. `parked` is what the read started from,
    /// reused when nothing was read.
    pub(super) fn give_back_read_buffer(&mut self, parked: Option<BytesMut>) {
        let buf = self.conn.get().recv_buffer_mut();
        let left = buf.len();
        if left > PARK_AT_MOST.max(buf.capacity() / 8) {
            // The decoder made room for the rest of a large frame; copying its start out
            // and back in at every read would cost more than the room.
            return;
        }
        let leftover = match parked {
            Some(parked) if parked.len() == left && parked.capacity() == left => parked,
            _ if left == 0 => BytesMut::new(),
            _ => BytesMut::from(&buf[..]),
        };
        let mut lent = std::mem::replace(buf, leftover);
        if lent.capacity() > 0 {
            lent.clear();
            buffers::give_back_read(lent);
        }
    }

    /// Hands every complete event to the handler, each event's sends applied before the
    /// next event.
    pub(super) fn process_events(&mut self) {
        self.begin_callbacks();
        let borrows = self.handler.borrows();
        loop {
            if borrows {
                // A run of plain messages: their replies pile up in the outbound queue and are
                // queued together below, before anything that may queue frames of its own.
                let mut received = 0;
                while let Some(message) = self.conn.get().poll_message_ref() {
                    received += 1;
                    self.handler.on_message_ref(message);
                }
                if let Some(counters) = &self.counters {
                    counters.messages_received(received);
                }
                if received > 0 && self.conn.get().recv_buffer_mut().is_empty() {
                    // Whole messages to the last byte: nothing more can come of this read,
                    // and the replies are taken with the end of the callbacks, in one lock.
                    break;
                }
                self.apply_sent();
            }
            let polled = if borrows {
                self.conn.get().poll_event_ref()
            } else {
                self.conn.get().poll_event().map(|e| e.map(EventRef::Owned))
            };
            match polled {
                Ok(Some(EventRef::Message(message))) => {
                    if let Some(counters) = &self.counters {
                        counters.messages_received(1);
                    }
                    self.handler.on_message_ref(message);
                }
                Ok(Some(EventRef::Owned(event))) => {
                    if let (Event::Message(_), Some(counters)) = (&event, &self.counters) {
                        counters.messages_received(1);
                    }
                    if let Event::Close(frame) = &event {
                        // Whoever started it, the peer's close frame is what gets reported.
                        self.end(CloseInfo {
                            code: frame.as_ref().map_or(CloseCode::NO_STATUS, |f| f.code),
                            reason: frame.as_ref().map(|f| f.reason.clone()).unwrap_or_default(),
                            was_clean: true,
                        });
                    }
                    self.handler.on_event(event);
                }
                Ok(None) => break,
                Err(error) => {
                    self.end(CloseInfo::unclean(
                        error.close_code().unwrap_or(CloseCode::PROTOCOL_ERROR),
                        error.to_string(),
                    ));
                    self.handler.on_error(error.into());
                    self.apply_sent();
                    break;
                }
            }
            // Also after a lent run's flush: what this event queued (a pong, a close) counts
            // against the room of the next run.
            self.apply_sent();
        }
        self.end_callbacks();
    }
}
