//! A stream whose first reads give back bytes read from it already: the HTTP/2 preface (and
//! whatever followed it) that the opening handshake read to tell HTTP/2 from HTTP/1.1,
//! replayed to hyper, which must see the connection from its first byte.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// `inner`, with `read` in front of what it reads.
#[derive(Debug)]
pub(crate) struct Rewind<S> {
    read: BytesMut,
    inner: S,
}

impl<S> Rewind<S> {
    /// `inner`, whose reads begin with `read`.
    pub(crate) fn new(read: BytesMut, inner: S) -> Self {
        Self { read, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read.is_empty() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let n = this.read.len().min(buf.remaining());
        buf.put_slice(&this.read[..n]);
        this.read.advance(n);
        if this.read.is_empty() {
            // Its memory goes with the last byte, not with the connection.
            this.read = BytesMut::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn replays_what_was_read_then_reads_on_and_writes_through() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut stream = Rewind::new(BytesMut::from(&b"PRI * "[..]), near);
        far.write_all(b"HTTP/2.0").await.unwrap();
        drop(far.shutdown().await);
        let mut small = [0u8; 4];
        stream.read_exact(&mut small).await.unwrap();
        assert_eq!(
            &small, b"PRI ",
            "a read smaller than the replay takes part of it"
        );
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"* HTTP/2.0");

        let (near, mut far) = tokio::io::duplex(64);
        let mut stream = Rewind::new(BytesMut::new(), near);
        stream.write_all(b"SETTINGS").await.unwrap();
        let mut got = [0u8; 8];
        far.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"SETTINGS");
    }
}
