//! Buffers each worker thread lends to the connection it is working on, so that an idle
//! connection holds none: a connection borrows the read buffer for one read and gives it
//! back as soon as every complete frame in it has been handed out, and the write buffer for
//! one poll, given back once everything in it is written. Only a connection with a partial
//! frame, or with bytes its peer has not taken yet, keeps a buffer of its own.
//! (uWebSockets shares one receive buffer per event loop, and corks sends into one shared
//! buffer, in the same way.)
//!
//! The same goes for the frame buffer a connection's outbound queue encodes its callbacks
//! small replies into ([`crate::shared::Shared::begin_callbacks`]): lent while the callbacks
//! run, given back once the frames are in the connection's send queue.
//!
//! A worker runs one connection at a time on its thread, so one buffer per thread is enough;
//! when the buffer is out (a connection kept it for a partial frame) the next borrower gets
//! a new one.

use std::cell::Cell;

use bytes::BytesMut;
use wsworker_proto::FrameBuffer;

/// How much one read may take. Large enough that a busy connection moves big messages in
/// few reads; it costs one buffer per worker thread, not one per connection.
pub(crate) const READ_SIZE: usize = 64 * 1024;

/// How much room the lent write buffer starts with: the replies of one read batch of small
/// messages fit without growing it.
pub(crate) const WRITE_SIZE: usize = 16 * 1024;

/// A write buffer that grew beyond this is freed rather than kept for the thread: a client
/// copies (to mask) every payload it sends, whatever its size, and a server's buffer grows
/// only while a slow peer's bytes pile up; neither is worth keeping for the next poll. (A read
/// buffer is kept at any size: the next large message reuses it, and the largest message
/// allowed bounds it.)
const WRITE_KEEP_AT_MOST: usize = 1 << 20;

thread_local! {
    static READ: Cell<Option<BytesMut>> = const { Cell::new(None) };
    static WRITE: Cell<Option<BytesMut>> = const { Cell::new(None) };
    static FRAMES: Cell<Option<Box<FrameBuffer>>> = const { Cell::new(None) };
}

/// The thread's read buffer, empty, with room for at least [`READ_SIZE`] bytes.
pub(crate) fn borrow_read() -> BytesMut {
    let mut buf = READ.take().unwrap_or_default();
    // Reclaims the whole allocation when no payload handed out still points into it, and
    // allocates a fresh one otherwise.
    buf.reserve(READ_SIZE);
    buf
}

/// Gives an emptied buffer back to the thread, to be lent again.
pub(crate) fn give_back_read(buf: BytesMut) {
    debug_assert!(buf.is_empty());
    keep(&READ, buf);
}

/// The thread's write buffer, empty, with room for at least [`WRITE_SIZE`] bytes. Frames are
/// encoded into it, and it goes back once everything in it is written; a connection whose
/// peer does not read fast enough keeps it, and the next borrower gets a new one.
pub(crate) fn borrow_write() -> BytesMut {
    let mut buf = WRITE.take().unwrap_or_default();
    buf.reserve(WRITE_SIZE);
    buf
}

/// Gives a written-out buffer back to the thread, to be lent again — unless it grew past
/// [`WRITE_KEEP_AT_MOST`].
pub(crate) fn give_back_write(mut buf: BytesMut) {
    if buf.capacity() > WRITE_KEEP_AT_MOST {
        return;
    }
    buf.clear();
    keep(&WRITE, buf);
}

/// The thread's frame buffer, empty (with the room it had when given back; none at first).
pub(crate) fn borrow_frames() -> Box<FrameBuffer> {
    FRAMES.take().unwrap_or_default()
}

/// Gives an emptied frame buffer back to the thread (one that grew past
/// [`WRITE_KEEP_AT_MOST`] is freed, as a write buffer is). One with no room is kept too: its
/// box is lent for every callback, and would otherwise be allocated for each.
pub(crate) fn give_back_frames(frames: Box<FrameBuffer>) {
    debug_assert!(frames.is_empty());
    if frames.capacity() > WRITE_KEEP_AT_MOST {
        return;
    }
    FRAMES.with(|cell| {
        let kept = cell.take();
        // The one with room stays.
        let keep = match kept {
            Some(kept) if kept.capacity() >= frames.capacity() => kept,
            _ => frames,
        };
        cell.set(Some(keep));
    });
}

/// The capacity of the read buffer the thread holds, if it holds one (not lent out).
#[cfg(test)]
pub(crate) fn read_buffer_at_home() -> Option<usize> {
    READ.with(|cell| {
        let buf = cell.take();
        let capacity = buf.as_ref().map(BytesMut::capacity);
        cell.set(buf);
        capacity
    })
}

/// Keeps one buffer in `slot`: the one already there, or this one.
#[inline]
fn keep(slot: &'static std::thread::LocalKey<Cell<Option<BytesMut>>>, buf: BytesMut) {
    // One access to the thread-local, not two: this runs twice per wake-up.
    slot.with(|cell| {
        let kept = cell.take();
        cell.set(Some(kept.unwrap_or(buf)));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_is_reused_once_its_payloads_are_gone() {
        let mut buf = borrow_read();
        let first = buf.as_ptr();
        buf.extend_from_slice(b"frame");
        let payload = buf.split_to(5).freeze();
        give_back_read(buf);
        drop(payload);
        let again = borrow_read();
        assert!(again.capacity() >= READ_SIZE);
        assert_eq!(again.as_ptr(), first, "the same allocation, reclaimed");
    }

    #[test]
    fn a_payload_still_held_makes_the_next_borrower_get_a_new_buffer() {
        let mut buf = borrow_read();
        buf.extend_from_slice(b"frame");
        let payload = buf.split_to(5).freeze();
        give_back_read(buf);
        let again = borrow_read();
        assert!(again.capacity() >= READ_SIZE);
        assert_eq!(&payload[..], b"frame", "the payload is untouched");
    }

    #[test]
    fn a_write_buffer_grown_past_the_limit_is_freed() {
        let mut huge = borrow_write();
        huge.reserve(2 * WRITE_KEEP_AT_MOST);
        give_back_write(huge);
        assert!(borrow_write().capacity() < 2 * WRITE_KEEP_AT_MOST);
    }

    #[test]
    fn the_write_buffer_is_lent_again_emptied() {
        let mut buf = borrow_write();
        assert!(buf.capacity() >= WRITE_SIZE);
        let first = buf.as_ptr();
        buf.extend_from_slice(b"frame");
        give_back_write(buf);
        let again = borrow_write();
        assert_eq!(again.as_ptr(), first, "the same allocation");
        assert!(again.is_empty());
    }
}
