//! The reply path: what a connection's own callbacks send goes through the thread-local
//! outbox, encoded at once when it can be, and is applied here as soon as the callback
//! returns, before anything else is read.

use super::*;

impl<S, H> Driver<S, H>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    /// Runs a handler method with this connection's outbox open, then applies what it sent.
    pub(super) fn in_scope(&mut self, f: impl FnOnce(&mut H)) {
        let _scope = outbox::open(self.handler.shared().id(), self.direct());
        let mut sent = outbox::borrow_list();
        f(&mut self.handler);
        self.apply_sent(&mut sent);
        outbox::give_back_list(sent);
    }

    /// What sends from this connection's callbacks may encode at once: messages it sends as
    /// one plain frame, up to the lower buffer limit (a send past it takes the command path,
    /// where the limits are enforced).
    pub(super) fn direct(&self) -> Direct {
        match self.conn.plain_frame_limit() {
            // A larger message goes through the command path, which queues it without a copy
            // (the size below which the protocol core lends and copies messages).
            Some(limit) => Direct {
                max_payload: limit.min(MAX_LENT),
                room: self
                    .config
                    .soft_buffer_limit
                    .min(self.config.hard_buffer_limit)
                    .saturating_sub(self.conn.buffered_amount()),
            },
            None => Direct::NONE,
        }
    }

    /// Applies, in order, what the handler sent through the outbox (the frames encoded at
    /// once, then the commands), and what the callbacks that this fires (buffer full,
    /// errors) send in turn, until nothing is left; then tells the outbox what may be
    /// encoded at once from the buffer as it now is. `sent` is an empty list to use.
    pub(super) fn apply_sent(&mut self, sent: &mut Vec<Command>) {
        loop {
            let mut flushed = None;
            let commands = outbox::take_sent(sent, |frames| {
                if !frames.is_empty() {
                    let count = frames.frames();
                    // Frames are only encoded while the connection can send them (`direct`);
                    // were one dropped, it is not counted, as `apply` does not count it.
                    flushed = Some(self.conn.send_frames(frames).map(|()| count));
                }
                self.direct()
            });
            if let (Some(Ok(count)), Some(counters)) = (&flushed, &self.counters) {
                counters.messages_sent(*count);
            }
            if commands {
                // Nothing is encoded at once while the commands change the buffer
                // (`take_sent` closed the outbox's budget); the callbacks that follow get the
                // one left after.
                for command in sent.drain(..) {
                    self.apply(command);
                }
                outbox::set_direct(self.direct());
            } else if flushed.is_none() {
                return;
            }
            // Only a callback (or a command, whose errors call one) can have sent more.
            if !self.check_buffer() && !commands {
                return;
            }
        }
    }
}
