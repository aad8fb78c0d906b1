//! The reply path: what the connection's callbacks send, and what other tasks and threads
//! send, comes through the connection's one outbound queue ([`Shared`]); the driver takes it
//! right after each callback and whenever it is woken, in order: the frames encoded at once,
//! then the commands.

use super::*;
use wsworker_proto::FrameBuffer;

impl<S, H> Driver<S, H>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    /// Runs a handler method, then applies what it sent.
    pub(super) fn in_scope(&mut self, f: impl FnOnce(&mut H)) {
        self.begin_callbacks();
        f(&mut self.handler);
        self.end_callbacks();
    }

    /// The callbacks are about to run: what they send is applied by the driver after each
    /// (no wake-up), and the queue gets the thread's frame buffer to encode small messages
    /// into.
    pub(super) fn begin_callbacks(&mut self) {
        let direct = self.direct();
        if let Some(unused) = self
            .handler
            .shared()
            .begin_callbacks(direct, buffers::borrow_frames())
        {
            buffers::give_back_frames(unused);
        }
    }

    /// The callbacks are over: what they sent is applied (taken in the same lock that ends
    /// them), and the frame buffer goes back to the thread.
    pub(super) fn end_callbacks(&mut self) {
        let mut flushed = None;
        let (commands, frames) = self
            .handler
            .shared()
            .end_callbacks(|frames| flush(self.conn.get(), &self.config, frames, &mut flushed));
        if let Some(frames) = frames {
            buffers::give_back_frames(frames);
        }
        let commands_sent = self.apply_taken(flushed, commands);
        if self.check_buffer() || commands_sent {
            // What the callbacks this fired sent (it woke the driver too; taken now, in order).
            self.apply_sent();
        }
    }

    /// What sends may encode at once; see [`direct`].
    pub(super) fn direct(&mut self) -> Direct {
        direct(self.conn.get(), &self.config)
    }

    /// Applies, in order, what was sent (the frames encoded at once, then the commands),
    /// and what the callbacks that this fires (buffer full, errors) send in turn, until
    /// nothing is left; then tells the queue what may be encoded at once from the buffer as
    /// it now is. Whether anything was applied.
    pub(super) fn apply_sent(&mut self) -> bool {
        let mut applied = false;
        loop {
            let mut flushed = None;
            let Some(commands) = self
                .handler
                .shared()
                .take_sent(|frames| flush(self.conn.get(), &self.config, frames, &mut flushed))
            else {
                return applied;
            };
            applied = true;
            let commands_sent = self.apply_taken(flushed, commands);
            // Only a callback (or a command, whose errors call one) can have sent more.
            if !self.check_buffer() && !commands_sent {
                return applied;
            }
        }
    }

    /// Counts the frames `flush` queued and applies the commands taken after them; whether
    /// there were commands.
    fn apply_taken(
        &mut self,
        flushed: Option<Result<usize, ProtoError>>,
        commands: Vec<Command>,
    ) -> bool {
        if let (Some(Ok(count)), Some(counters)) = (&flushed, &self.counters) {
            counters.messages_sent(*count);
        }
        if commands.is_empty() {
            return false;
        }
        // Nothing is encoded at once while the commands change the buffer (the queue closed
        // the budget); the sends that follow get the one left after.
        for command in commands {
            self.apply(command);
        }
        let direct = self.direct();
        self.handler.shared().set_direct(direct);
        true
    }
}

/// What sends may encode at once: messages `conn` sends as one plain frame, up to the lower
/// buffer limit (a send past it takes the command path, where the limits are enforced).
fn direct(conn: &Proto, config: &DriverConfig) -> Direct {
    match conn.plain_frame_limit() {
        // A larger message goes through the command path, which queues it without a copy
        // (the size below which the protocol core lends and copies messages).
        Some(limit) => Direct {
            max_payload: limit.min(MAX_LENT),
            room: config
                .soft_buffer_limit
                .min(config.hard_buffer_limit)
                .saturating_sub(conn.buffered_amount()),
        },
        None => Direct::NONE,
    }
}

/// Queues the frames taken from the queue on `conn` (`flushed`: how many, or why not), and
/// says what may be encoded at once after them.
fn flush(
    conn: &mut Proto,
    config: &DriverConfig,
    frames: &mut FrameBuffer,
    flushed: &mut Option<Result<usize, ProtoError>>,
) -> Direct {
    if !frames.is_empty() {
        let count = frames.frames();
        // Frames are only encoded while the connection can send them (`direct`); were one
        // dropped, it is not counted, as `apply` does not count it.
        *flushed = Some(conn.send_frames(frames).map(|()| count));
    }
    direct(conn, config)
}
