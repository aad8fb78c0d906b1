//! `--fanout`: the least work a fan-out can do, the ceiling of bench/run's fan-out scenarios.
//!
//! After the handshake, a connection's reads are cut into whole frames (a frame cut across
//! reads waits for the rest: frames from different senders must not interleave). Each data
//! frame (text, binary, continuation) is unmasked (header 4 bytes shorter, payload unmasked
//! into the batch) and the batch of one read is written to every open connection, the
//! sender included; a control frame goes back to its sender only (a close frame echoed is
//! the close handshake's reply). There are no rooms (every connection is in the one room,
//! whatever its `?room=`), no UTF-8 check, no limits.
//!
//! Writing: a connection whose send queue is empty is written to at once (`try_write`); what
//! the socket does not take is queued and written by that connection's writer task when the
//! socket is writable. Queues have no bound. One thread, `Rc`s, no locks.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::rc::Rc;

use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::{BUF_SIZE, Header, handshake};

/// The open connections, shared by their tasks.
#[derive(Clone, Default)]
pub(crate) struct Hub(Rc<HubInner>);

#[derive(Default)]
struct HubInner {
    peers: RefCell<HashMap<u64, Rc<Peer>>>,
    next_id: Cell<u64>,
}

/// One connection's writing side.
struct Peer {
    stream: Rc<TcpStream>,
    /// Bytes the socket has not taken yet, in order.
    queue: RefCell<Vec<u8>>,
    /// Wakes the writer task when `queue` gets bytes or the connection ends.
    wake: Notify,
    closed: Cell<bool>,
}

impl Peer {
    /// Writes `bytes` now as far as the socket takes them; queues the rest.
    fn send(&self, bytes: &[u8]) {
        if bytes.is_empty() || self.closed.get() {
            return;
        }
        let mut queue = self.queue.borrow_mut();
        let written = if queue.is_empty() {
            self.stream.try_write(bytes).unwrap_or(0)
        } else {
            0
        };
        if written < bytes.len() {
            queue.extend_from_slice(&bytes[written..]);
            self.wake.notify_one();
        }
    }

    /// Writes the queue out whenever it has bytes, until the connection ends.
    async fn write_queued(&self) -> io::Result<()> {
        loop {
            self.wake.notified().await;
            loop {
                if self.closed.get() {
                    return Ok(());
                }
                if self.queue.borrow().is_empty() {
                    break;
                }
                self.stream.writable().await?;
                let mut queue = self.queue.borrow_mut();
                match self.stream.try_write(&queue) {
                    Ok(n) => drop(queue.drain(..n)),
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                    Err(error) => return Err(error),
                }
            }
        }
    }
}

impl Hub {
    /// One connection, from its handshake to its end.
    pub(crate) async fn serve(&self, mut stream: TcpStream) -> io::Result<()> {
        stream.set_nodelay(true)?;
        let mut buf = Vec::with_capacity(BUF_SIZE);
        handshake(&mut stream, &mut buf).await?;
        let stream = Rc::new(stream);
        let peer = Rc::new(Peer {
            stream: Rc::clone(&stream),
            queue: RefCell::new(Vec::new()),
            wake: Notify::new(),
            closed: Cell::new(false),
        });
        let id = self.0.next_id.get();
        self.0.next_id.set(id + 1);
        self.0.peers.borrow_mut().insert(id, Rc::clone(&peer));
        let writer = tokio::task::spawn_local({
            let peer = Rc::clone(&peer);
            async move { peer.write_queued().await }
        });
        let result = self.relay(&stream, &peer, buf).await;
        self.0.peers.borrow_mut().remove(&id);
        peer.closed.set(true);
        peer.wake.notify_one();
        let written = writer.await.unwrap_or(Ok(()));
        result.and(written)
    }

    /// Reads the connection's frames and sends them on until it ends.
    async fn relay(&self, stream: &TcpStream, peer: &Peer, mut buf: Vec<u8>) -> io::Result<()> {
        let (mut data, mut control) = (Vec::new(), Vec::new());
        loop {
            let used = split(&buf, &mut data, &mut control);
            buf.drain(..used);
            if !data.is_empty() {
                // Collected first: a send does not touch the map, but a peer may end meanwhile.
                let peers: Vec<Rc<Peer>> = self.0.peers.borrow().values().cloned().collect();
                for other in &peers {
                    other.send(&data);
                }
                data.clear();
            }
            peer.send(&control);
            control.clear();
            buf.reserve(BUF_SIZE);
            stream.readable().await?;
            match stream.try_read_buf(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(error),
            }
        }
    }
}

/// Cuts the whole frames at the start of `buf` into `data` (data frames) and `control`
/// (control frames), each unmasked; returns how many bytes of `buf` they took.
fn split(buf: &[u8], data: &mut Vec<u8>, control: &mut Vec<u8>) -> usize {
    let mut read = 0;
    while let Some(header) = Header::parse(&buf[read..]) {
        let Some(end) = usize::try_from(header.len)
            .ok()
            .and_then(|len| (read + header.size).checked_add(len))
            .filter(|&end| end <= buf.len())
        else {
            break;
        };
        let out = if buf[read] & 0x08 == 0 {
            &mut *data
        } else {
            &mut *control
        };
        let at = out.len();
        out.extend_from_slice(&buf[read..read + header.kept]);
        out[at + 1] &= 0x7f;
        unmask_into(&buf[read + header.size..end], header.key, out);
        read = end;
    }
    read
}

/// Appends `payload` XORed with `key` to `out`, 8 bytes at a time.
fn unmask_into(payload: &[u8], key: [u8; 4], out: &mut Vec<u8>) {
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut words = payload.chunks_exact(8);
    for word in &mut words {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(word);
        out.extend_from_slice(&(u64::from_ne_bytes(bytes) ^ wide).to_ne_bytes());
    }
    let rest = words.remainder();
    out.extend(
        rest.iter()
            .zip(key.iter().cycle())
            .map(|(byte, k)| byte ^ k),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_frames_are_split_into_data_and_control_and_unmasked() {
        let key = [1, 2, 3, 4];
        let masked = |opcode: u8, payload: &[u8]| {
            let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8];
            frame.extend_from_slice(&key);
            frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
            frame
        };
        let plain = |opcode: u8, payload: &[u8]| {
            let mut frame = vec![0x80 | opcode, payload.len() as u8];
            frame.extend_from_slice(payload);
            frame
        };
        let mut buf = masked(1, b"hello, fan-out!");
        buf.extend(masked(8, b"\x03\xe8"));
        buf.extend(masked(2, b"0123456789"));
        let whole = buf.len();
        buf.extend(&masked(1, b"cut")[..5]);
        let (mut data, mut control) = (Vec::new(), Vec::new());
        assert_eq!(split(&buf, &mut data, &mut control), whole);
        assert_eq!(
            data,
            [plain(1, b"hello, fan-out!"), plain(2, b"0123456789")].concat()
        );
        assert_eq!(control, plain(8, b"\x03\xe8"));
    }
}
