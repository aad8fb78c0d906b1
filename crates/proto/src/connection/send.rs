//! The outgoing side: frames encoded into a queue of chunks ready for one vectored write.
//!
//! Headers and small payloads are copied into one contiguous buffer, because copying a few
//! dozen bytes costs less than another entry in the write; a large payload on the server
//! side joins the queue as its own `Bytes`, never copied. A client copies every payload
//! once, as it must mask it and the caller's bytes may be shared.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

use crate::frame::{FrameHeader, MAX_HEADER_LEN};
use crate::mask::apply_mask;

/// Payloads up to this size are copied next to their header rather than queued by reference:
/// below it a copy costs less than the reference count, the extra slice in the vectored
/// write and the receive buffer kept from reuse until the write (a 1 KiB echo went from
/// 0.82x to 0.96x of a plain TCP echo, with the lent write buffer, when this went up
/// from 512 B).
pub(super) const COPY_THRESHOLD: usize = 4 * 1024;

/// Encoded frames waiting to be written, in order: `chunks` first, then `tail`.
#[derive(Debug, Default)]
pub(crate) struct SendQueue {
    chunks: VecDeque<Bytes>,
    tail: BytesMut,
    len: usize,
}

impl SendQueue {
    /// Queues one frame; `header.mask` says whether to mask the payload.
    pub(crate) fn push_frame(&mut self, header: &FrameHeader, payload: Bytes) {
        let mut head = [0u8; MAX_HEADER_LEN];
        let head_len = header.encode(&mut head);
        self.len += head_len + payload.len();
        self.tail.extend_from_slice(&head[..head_len]);
        if let Some(key) = header.mask {
            let start = self.tail.len();
            self.tail.extend_from_slice(&payload);
            apply_mask(&mut self.tail[start..], key, 0);
        } else if payload.len() <= COPY_THRESHOLD {
            self.tail.extend_from_slice(&payload);
        } else {
            self.chunks.push_back(self.tail.split().freeze());
            self.chunks.push_back(payload);
        }
    }

    /// Queues bytes that are already a complete encoded frame (a broadcast frame).
    pub(crate) fn push_encoded(&mut self, frame: Bytes) {
        self.len += frame.len();
        if frame.len() <= COPY_THRESHOLD {
            self.tail.extend_from_slice(&frame);
        } else {
            if !self.tail.is_empty() {
                self.chunks.push_back(self.tail.split().freeze());
            }
            self.chunks.push_back(frame);
        }
    }

    /// Queues the encoded frames in `frames` and leaves it empty: when nothing is queued and
    /// they are more than [`COPY_THRESHOLD`] bytes, by swapping it with the (empty) buffer
    /// frames are encoded into, otherwise by copying.
    pub(crate) fn push_frames(&mut self, frames: &mut BytesMut) {
        self.len += frames.len();
        // A swap hands the caller's buffer to the queue and the queue's to the caller: worth
        // it for many bytes, but for a few frames a copy into the queue's buffer (usually
        // the worker's hot write buffer) is cheaper, and leaves that buffer with the worker
        // rather than with the caller (a fan-out's recipient, which would keep it).
        if self.len == frames.len() && frames.len() > COPY_THRESHOLD {
            self.chunks.clear();
            std::mem::swap(&mut self.tail, frames);
        } else {
            self.tail.extend_from_slice(frames);
        }
        frames.clear();
    }

    /// Puts `buf` in place of the (empty) buffer frames are encoded into, returning that
    /// one; `Err(buf)` while anything is queued.
    pub(crate) fn replace_buffer(&mut self, mut buf: BytesMut) -> Result<BytesMut, BytesMut> {
        if self.len > 0 {
            return Err(buf);
        }
        buf.clear();
        self.chunks.clear();
        Ok(std::mem::replace(&mut self.tail, buf))
    }

    /// Bytes waiting to be written.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Takes the next chunk to write.
    pub(crate) fn pop(&mut self) -> Option<Bytes> {
        let chunk = match self.chunks.pop_front() {
            Some(chunk) => chunk,
            None if !self.tail.is_empty() => self.tail.split().freeze(),
            None => return None,
        };
        self.len -= chunk.len();
        Some(chunk)
    }

    /// How many slices [`SendQueue::io_slices`] would fill, given room.
    pub(crate) fn slice_count(&self) -> usize {
        self.chunks.len() + usize::from(!self.tail.is_empty())
    }

    /// Fills `dst` with the queued chunks, in order; returns how many slices it filled.
    pub(crate) fn io_slices<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let queued = self.chunks.iter().map(|c| &c[..]);
        let tail = Some(&self.tail[..]).filter(|t| !t.is_empty());
        let mut filled = 0;
        for (slot, chunk) in dst.iter_mut().zip(queued.chain(tail)) {
            *slot = IoSlice::new(chunk);
            filled += 1;
        }
        filled
    }

    /// Drops the first `n` bytes, which were written.
    pub(crate) fn advance(&mut self, mut n: usize) {
        n = n.min(self.len);
        self.len -= n;
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                self.tail.advance(n);
                break;
            };
            if n < front.len() {
                front.advance(n);
                break;
            }
            n -= front.len();
            self.chunks.pop_front();
        }
        if self.len == 0 {
            // Starting over at the front lets the buffer be reused instead of growing.
            self.tail.clear();
        }
    }
}
