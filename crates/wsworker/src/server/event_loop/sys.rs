//! The event loop's two uses of `unsafe`, the crate's only ones, each what tokio does for
//! its own sockets:
//!
//! - reading a socket into the spare capacity of a buffer without zeroing it first: a read
//!   goes into the worker's 64 KiB read buffer, and the safe way (`ReadBuf::
//!   initialize_unfilled`) writes 64 KiB of zeros before every read that brings a few dozen
//!   bytes. Measured with `wsworker bench` (100 connections × 20 B × 16 in flight, `perf
//!   stat` on the server, same run): the safe version costs 230–280 more user-space
//!   instructions and 280–440 more user cycles per echoed message (1,137–1,188 → 1,396–1,413
//!   instructions; cycles +37–55 %);
//! - registering the loop's epoll in tokio's reactor, whose API for a raw descriptor is
//!   `unsafe` (the caller promises the descriptor stays open while registered).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::AsFd;

use socket2::SockRef;
use tokio::io::unix::AsyncFd;
use tokio::io::{Interest, ReadBuf};

/// Registers the loop's epoll in the current tokio runtime, to learn when it has events.
pub(super) fn register_epoll(poll: mio::Poll) -> io::Result<AsyncFd<mio::Poll>> {
    // SAFETY: the `mio::Poll` owns its epoll descriptor and closes it only when dropped; the
    // `AsyncFd` owns the `Poll` from here on, deregisters before dropping it, and the loop
    // never replaces it, so the descriptor stays open and the same while registered.
    let registered = unsafe { AsyncFd::register_with_interest(poll, Interest::READABLE) };
    registered.map_err(io::Error::from)
}

/// Receives into `buf`'s unfilled part and advances it by what arrived; returns how many
/// bytes that was (0 at the end of the stream).
pub(super) fn recv(socket: &impl AsFd, buf: &mut ReadBuf<'_>) -> io::Result<usize> {
    // SAFETY: `recv` only writes into the slice (it never reads from it nor stores
    // uninitialized bytes into it), so no initialized byte becomes uninitialized.
    let unfilled = unsafe { buf.unfilled_mut() };
    let n = SockRef::from(socket).recv(unfilled)?;
    // SAFETY: `recv` returned `n`: it wrote the first `n` bytes of `unfilled`, which begins
    // where the filled part ends.
    unsafe { buf.assume_init(n) };
    buf.advance(n);
    Ok(n)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::mem::MaybeUninit;
    use std::net::{TcpListener, TcpStream};

    use super::*;

    /// The safe version: zero the unfilled part, then read into it.
    fn recv_zeroed(socket: &mut TcpStream, buf: &mut ReadBuf<'_>) -> io::Result<usize> {
        let n = socket.read(buf.initialize_unfilled())?;
        buf.advance(n);
        Ok(n)
    }

    #[test]
    fn reads_the_same_bytes_as_the_safe_version() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut writer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut reader, _) = listener.accept().unwrap();
        let payload: Vec<u8> = (0..=255u8).cycle().take(3000).collect();

        writer.write_all(&payload).unwrap();
        let mut storage = [MaybeUninit::<u8>::uninit(); 4096];
        let mut buf = ReadBuf::uninit(&mut storage);
        buf.put_slice(b"kept");
        let mut got = 0;
        while got < payload.len() {
            got += recv(&reader, &mut buf).unwrap();
        }
        assert_eq!(&buf.filled()[..4], b"kept", "what was filled stays");
        let unsafe_bytes = buf.filled()[4..].to_vec();

        writer.write_all(&payload).unwrap();
        let mut storage = [0u8; 4096];
        let mut buf = ReadBuf::new(&mut storage);
        let mut got = 0;
        while got < payload.len() {
            got += recv_zeroed(&mut reader, &mut buf).unwrap();
        }
        assert_eq!(unsafe_bytes, payload);
        assert_eq!(buf.filled(), &payload[..]);

        drop(writer);
        let mut storage = [MaybeUninit::<u8>::uninit(); 16];
        let mut buf = ReadBuf::uninit(&mut storage);
        assert_eq!(recv(&reader, &mut buf).unwrap(), 0, "the end of the stream");
        assert!(buf.filled().is_empty());
    }
}
