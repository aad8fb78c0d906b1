//! A socket of the event loop, as the driver sees it: non-blocking reads and writes that
//! return `Pending` when the socket is not ready and leave the wake-up to the loop's epoll.
//!
//! The loop registers every socket edge-triggered and marks it ready when epoll says so; a
//! read or write that finds it drained (`WouldBlock`, or fewer bytes than asked for, as tokio
//! does) clears the mark, so the driver's next look costs no syscall, and the next edge
//! brings the loop back to this connection. The end of either direction (and an error) is
//! never cleared: its edge comes once, possibly with the last bytes, and the read that
//! returns those bytes short must not hide the end that follows them.
//!
//! During the opening handshake the stream belongs to the handshake's future, where the
//! loop cannot mark it: it then keeps no marks and tries every call (the loop polls the
//! handshake on each of its socket's edges, so this costs at most one `WouldBlock` per
//! edge, as a fresh tokio socket does), and starts keeping them when it opens.

use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::pin::Pin;
use std::task::{Context, Poll};

use mio::net::TcpStream;
use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::sys;

/// A connection's socket in the worker's event loop.
#[derive(Debug)]
pub(crate) struct LoopStream {
    io: TcpStream,
    readable: bool,
    writable: bool,
    /// The peer's end or an error was seen: reads go on until they say so.
    read_closed: bool,
    /// Our side cannot send any more (or an error was seen): writes say so.
    write_closed: bool,
    /// The loop marks this stream's readiness (see the module's docs).
    marked: bool,
}

impl LoopStream {
    /// A socket just accepted, for its handshake: no marks kept yet.
    pub(crate) fn accepted(io: TcpStream) -> Self {
        Self {
            io,
            readable: true,
            writable: true,
            read_closed: false,
            write_closed: false,
            marked: false,
        }
    }

    /// From now on the loop marks this stream's readiness: for an open connection. It
    /// starts out marked ready both ways, since bytes may already be waiting.
    pub(crate) fn keep_marks(&mut self) {
        self.marked = true;
        self.readable = true;
        self.writable = true;
    }

    /// The socket, for another owner (HTTP/2's task).
    #[cfg(feature = "hyper")]
    pub(crate) fn into_socket(self) -> TcpStream {
        self.io
    }

    /// Marks what epoll reported.
    pub(super) fn set_ready(&mut self, event: &mio::event::Event) {
        self.set_ends(Ends::of(event));
        self.readable |= event.is_readable();
        self.writable |= event.is_writable();
    }

    /// Marks the ends epoll reported (for an open connection: while it was opening, see
    /// [`Ends`]).
    pub(super) fn set_ends(&mut self, ends: Ends) {
        self.read_closed |= ends.read;
        self.write_closed |= ends.write;
        self.readable |= self.read_closed;
        self.writable |= self.write_closed;
    }
}

/// The ends of a socket's directions (or an error, which ends both) as epoll reports them.
/// Edges report them once: what a handshake's edges reported is kept for the open
/// connection, whose stream starts keeping marks only then.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Ends {
    read: bool,
    write: bool,
}

impl Ends {
    pub(super) fn of(event: &mio::event::Event) -> Self {
        let failed = event.is_error();
        Self {
            read: event.is_read_closed() || failed,
            write: event.is_write_closed() || failed,
        }
    }

    /// Both what `self` and `other` reported.
    pub(super) fn and(self, other: Self) -> Self {
        Self {
            read: self.read || other.read,
            write: self.write || other.write,
        }
    }
}

/// Runs a non-blocking socket call that moves up to `offered` bytes, while `ready` (always,
/// when the stream is not `marked`): a call that would block, or moves fewer bytes (the
/// socket is drained or full), clears `ready`, unless that direction is `closed` (then
/// every call answers at once).
fn attempt(
    ready: &mut bool,
    marked: bool,
    closed: bool,
    offered: usize,
    mut call: impl FnMut() -> io::Result<usize>,
) -> Poll<io::Result<usize>> {
    if marked && !*ready {
        return Poll::Pending;
    }
    loop {
        return match call() {
            Ok(n) => {
                if n < offered && !closed {
                    *ready = false;
                }
                Poll::Ready(Ok(n))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                *ready = false;
                Poll::Pending
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Poll::Ready(Err(e)),
        };
    }
}

impl AsyncRead for LoopStream {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let offered = buf.remaining();
        attempt(
            &mut this.readable,
            this.marked,
            this.read_closed,
            offered,
            || sys::recv(&this.io, buf),
        )
        .map_ok(|_| ())
    }
}

impl AsyncWrite for LoopStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        attempt(
            &mut this.writable,
            this.marked,
            this.write_closed,
            buf.len(),
            // send(2), not write(2): a socket's write goes through the VFS first
            // (`vfs_write`, `fdget_pos`, `sock_write_iter`), a few percent of a fan-out's
            // kernel time.
            || SockRef::from(&this.io).send(buf),
        )
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let offered = bufs.iter().map(|b| b.len()).sum();
        let this = self.get_mut();
        attempt(
            &mut this.writable,
            this.marked,
            this.write_closed,
            offered,
            || match bufs {
                [one] => SockRef::from(&this.io).send(one),
                _ => SockRef::from(&this.io).send_vectored(bufs),
            },
        )
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(match self.io.shutdown(Shutdown::Write) {
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::mem::MaybeUninit;
    use std::time::{Duration, Instant};

    use mio::{Events, Interest, Poll as Epoll, Token};

    use super::*;

    /// The bound on every wait for the kernel.
    const WAIT: Duration = Duration::from_secs(10);

    /// Polls a read into a fresh buffer: the bytes, or `None` for `Pending`.
    fn read(stream: &mut LoopStream) -> Option<Vec<u8>> {
        let mut storage = [MaybeUninit::<u8>::uninit(); 64];
        let mut buf = ReadBuf::uninit(&mut storage);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match Pin::new(stream).poll_read(&mut cx, &mut buf) {
            Poll::Ready(result) => {
                result.unwrap();
                Some(buf.filled().to_vec())
            }
            Poll::Pending => None,
        }
    }

    /// A connected pair on loopback: the peer, and the accepted socket as the loop has it.
    fn accepted_pair() -> (std::net::TcpStream, TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        peer.set_read_timeout(Some(WAIT)).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        accepted.set_nonblocking(true).unwrap();
        (peer, TcpStream::from_std(accepted))
    }

    /// Waits until the kernel has the stream's socket ready for `interest`, without touching
    /// the stream's marks: a fresh epoll reports the readiness the socket has when it is
    /// registered (or the next edge), as `poll(2)` would.
    fn wait_until(stream: &mut LoopStream, interest: Interest) {
        let mut epoll = Epoll::new().unwrap();
        epoll
            .registry()
            .register(&mut stream.io, Token(0), interest)
            .unwrap();
        let mut events = Events::with_capacity(8);
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "the socket never became {interest:?}");
            epoll.poll(&mut events, Some(left)).unwrap();
            let ready = events.iter().any(|event| {
                (interest.is_readable() && event.is_readable())
                    || (interest.is_writable() && event.is_writable())
            });
            if ready {
                break;
            }
        }
        epoll.registry().deregister(&mut stream.io).unwrap();
    }

    #[test]
    fn a_handshake_stream_tries_every_read_and_an_open_one_waits_for_its_mark() {
        let (mut peer, accepted) = accepted_pair();
        let mut stream = LoopStream::accepted(accepted);

        assert_eq!(read(&mut stream), None, "nothing yet");
        peer.write_all(b"GET").unwrap();
        wait_until(&mut stream, Interest::READABLE);
        assert_eq!(
            read(&mut stream).as_deref(),
            Some(&b"GET"[..]),
            "no mark kept: the read after `WouldBlock` tries again"
        );

        stream.keep_marks();
        assert_eq!(
            read(&mut stream),
            None,
            "marked ready, drained: the mark clears"
        );
        peer.write_all(b" /").unwrap();
        wait_until(&mut stream, Interest::READABLE);
        assert_eq!(
            read(&mut stream),
            None,
            "open: no syscall until the loop marks it again"
        );
    }

    /// Polls a write: how much was written, or `None` for `Pending`.
    fn write(stream: &mut LoopStream, bytes: &[u8]) -> Option<usize> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match Pin::new(stream).poll_write(&mut cx, bytes) {
            Poll::Ready(result) => Some(result.unwrap()),
            Poll::Pending => None,
        }
    }

    /// Writes until the socket's buffers are full (`Pending`), then lets the peer read as
    /// many bytes as that wrote (all but what was left unread before), and waits until the
    /// kernel has room again.
    fn fill_then_drain(stream: &mut LoopStream, peer: &mut std::net::TcpStream) {
        let chunk = vec![0u8; 64 * 1024];
        let mut written = 0;
        while let Some(n) = write(stream, &chunk) {
            written += n;
        }
        let mut sink = vec![0u8; 1 << 20];
        while written > 0 {
            let n = peer.read(&mut sink[..written.min(1 << 20)]).unwrap();
            assert_ne!(n, 0);
            written -= n;
        }
        wait_until(stream, Interest::WRITABLE);
    }

    #[test]
    fn a_handshake_stream_tries_every_write_and_an_open_one_waits_for_its_mark() {
        let (mut peer, accepted) = accepted_pair();
        let mut stream = LoopStream::accepted(accepted);
        fill_then_drain(&mut stream, &mut peer);
        assert_eq!(
            write(&mut stream, b"x"),
            Some(1),
            "no mark kept: the write after `WouldBlock` tries again"
        );

        stream.keep_marks();
        fill_then_drain(&mut stream, &mut peer);
        assert_eq!(
            write(&mut stream, b"x"),
            None,
            "open: no syscall until the loop marks it again"
        );
    }

    #[test]
    fn the_end_that_arrives_with_the_last_bytes_is_not_lost() {
        let (mut peer, mut accepted) = accepted_pair();
        let mut epoll = Epoll::new().unwrap();
        epoll
            .registry()
            .register(&mut accepted, Token(0), Interest::READABLE)
            .unwrap();
        let mut stream = LoopStream::accepted(accepted);
        stream.keep_marks();

        assert_eq!(read(&mut stream), None, "nothing yet: the mark is cleared");
        assert_eq!(
            read(&mut stream),
            None,
            "and stays cleared without an event"
        );

        // The last bytes and the end, reported before the read (by one edge or two).
        peer.write_all(b"bye").unwrap();
        drop(peer);
        let mut events = Events::with_capacity(8);
        let deadline = Instant::now() + WAIT;
        while !stream.read_closed {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "epoll never reported the end");
            epoll.poll(&mut events, Some(left)).unwrap();
            for event in &events {
                stream.set_ready(event);
            }
        }
        assert_eq!(read(&mut stream).as_deref(), Some(&b"bye"[..]));
        assert_eq!(
            read(&mut stream).as_deref(),
            Some(&b""[..]),
            "the short read did not hide the end of the stream"
        );
    }
}
