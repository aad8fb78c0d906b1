//! The ceiling: the least work any WebSocket echo server can do, to measure the others against.
//!
//! It is "a plain TCP echo of the same bytes" in spirit. A byte-for-byte TCP echo cannot
//! serve a WebSocket client: the client's frames are masked, and a client must reject masked
//! frames from the server. So this server does only what the protocol makes unavoidable:
//!
//! - the opening handshake, minimal: read the request up to `\r\n\r\n`, answer `101` with the
//!   `Sec-WebSocket-Accept` of its `Sec-WebSocket-Key` (SHA-1 then base64); nothing else of
//!   the request is checked;
//! - then, for every read batch (into one reused 64 KiB buffer per connection): parse each
//!   frame header, write it back without the mask bit and key, unmask the payload, and send
//!   the whole batch back with one `write_all`. The reply header is 4 bytes shorter than the
//!   client's, so the pass that unmasks writes each payload byte where it goes in the reply
//!   (a few bytes towards the start of the same buffer): no copy besides that pass.
//!
//! There is no UTF-8 check, no size limit, no reassembly of fragments, no buffering of
//! messages: every frame, control frames included, goes back as it came (a close frame is
//! echoed, which is the close handshake's reply), possibly cut across reads. A tokio
//! current-thread runtime, as the other bench servers; TCP_NODELAY on, as wsworker sets it
//! (it writes once per read batch: there are no small writes for Nagle's algorithm to join).
//!
//! Two more modes, after the same handshake:
//!
//! - `--tcp`: the stricter limit, a plain TCP echo: every byte read goes back as it came,
//!   frames neither parsed nor unmasked. No WebSocket client accepts that (the frames come
//!   back masked); `wsworker bench --masked-echo` does, and unmasks them to check them.
//! - `--fanout` ([`fanout`]): the least work a fan-out can do, for bench/run's fan-out
//!   scenarios: every data frame from any connection unmasked and written to every
//!   connection (the sender included), nothing else; all connections are one room.
//!
//! Usage: `echo-ceiling 127.0.0.1:PORT [--tcp | --fanout]`; prints one line on stdout once
//! it listens.

mod fanout;

use std::io;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::{Digest as _, Sha1};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// Bytes read at most at once (the reused buffer of each connection).
const BUF_SIZE: usize = 64 << 10;
/// An opening handshake request larger than this is refused.
const MAX_REQUEST: usize = 8 << 10;
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// What the server does after the handshake.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// Every frame back, unmasked (the default).
    Unmask,
    /// Every byte back as it came (`--tcp`).
    Tcp,
    /// Every data frame, unmasked, to every connection (`--fanout`).
    Fanout,
}

const USAGE: &str = "usage: echo-ceiling 127.0.0.1:PORT [--tcp | --fanout]";

fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().expect(USAGE);
    let mode = match args.next().as_deref() {
        None => Mode::Unmask,
        Some("--tcp") => Mode::Tcp,
        Some("--fanout") => Mode::Fanout,
        Some(_) => panic!("{USAGE}"),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    // A LocalSet: the fan-out's connections share `Rc`s (one thread, no locks).
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let listener = TcpListener::bind(&addr).await.expect("bind");
        println!("echo-ceiling listening on {addr} ({mode:?})");
        let hub = fanout::Hub::default();
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let hub = hub.clone();
                    tokio::task::spawn_local(async move {
                        let result = match mode {
                            Mode::Unmask => echo(stream).await,
                            Mode::Tcp => echo_bytes(stream).await,
                            Mode::Fanout => hub.serve(stream).await,
                        };
                        if let Err(error) = result {
                            eprintln!("connection: {error}");
                        }
                    });
                }
                Err(error) => {
                    eprintln!("accept: {error}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    });
}

async fn echo(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    // Not initialised: a read touches only the pages it fills.
    let mut buf = Vec::with_capacity(BUF_SIZE);
    handshake(&mut stream, &mut buf).await?;
    let mut frames = Frames::default();
    loop {
        let (reply, used) = frames.unmask(&mut buf);
        if reply > 0 {
            stream.write_all(&buf[..reply]).await?;
        }
        // At most an incomplete header (13 bytes) is left for the next read.
        buf.copy_within(used.., 0);
        buf.truncate(buf.len() - used);
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}

/// `--tcp`: after the handshake, every byte back as it came, one write per read.
async fn echo_bytes(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(BUF_SIZE);
    handshake(&mut stream, &mut buf).await?;
    loop {
        if !buf.is_empty() {
            stream.write_all(&buf).await?;
            buf.clear();
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}

/// Reads the opening handshake request and answers 101; leaves in `buf` whatever followed
/// the request.
pub(crate) async fn handshake(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    let end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > MAX_REQUEST {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request too large",
            ));
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    };
    let request = String::from_utf8_lossy(&buf[..end]);
    let key = request
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("sec-websocket-key"))
        .map(|(_, value)| value.trim())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Sec-WebSocket-Key"))?;
    let accept = BASE64.encode(Sha1::new().chain_update(key).chain_update(GUID).finalize());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    stream.write_all(response.as_bytes()).await?;
    buf.drain(..end);
    Ok(())
}

/// Where the frame stream stands between two reads.
#[derive(Default)]
struct Frames {
    /// Payload bytes of the current frame not yet seen.
    remaining: u64,
    /// The current frame's masking key, rotated so that `key[0]` applies to the next byte.
    key: [u8; 4],
}

impl Frames {
    /// Turns the client's bytes in `buf` into the reply, in place. Returns the reply's length
    /// (it is `buf[..reply]`) and how many bytes were used: the rest is an incomplete header.
    fn unmask(&mut self, buf: &mut [u8]) -> (usize, usize) {
        let (mut read, mut write) = (0, 0);
        loop {
            if self.remaining > 0 {
                let n = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(buf.len() - read);
                unmask_to(buf, read, write, n, &mut self.key);
                (read, write) = (read + n, write + n);
                self.remaining -= n as u64;
                if self.remaining > 0 {
                    return (write, read);
                }
            }
            let Some(header) = Header::parse(&buf[read..]) else {
                return (write, read);
            };
            // The header without the mask bit and key: first byte and length as they came.
            buf.copy_within(read..read + header.kept, write);
            buf[write + 1] &= 0x7f;
            (self.remaining, self.key) = (header.len, header.key);
            (read, write) = (read + header.size, write + header.kept);
        }
    }
}

/// A frame header.
pub(crate) struct Header {
    /// Its size in bytes.
    pub(crate) size: usize,
    /// The bytes of it that the reply keeps (all but the masking key).
    pub(crate) kept: usize,
    /// Payload length.
    pub(crate) len: u64,
    /// Masking key (zero when the frame is not masked).
    pub(crate) key: [u8; 4],
}

impl Header {
    /// The header at the start of `bytes`, if it is all there.
    pub(crate) fn parse(bytes: &[u8]) -> Option<Self> {
        let b1 = *bytes.get(1)?;
        let rest = &bytes[2..];
        let (kept, len) = match b1 & 0x7f {
            126 => (
                4,
                u64::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?)),
            ),
            127 => (10, u64::from_be_bytes(rest.get(..8)?.try_into().ok()?)),
            short => (2, u64::from(short)),
        };
        let mut key = [0; 4];
        let size = if b1 & 0x80 != 0 {
            key.copy_from_slice(bytes.get(kept..kept + 4)?);
            kept + 4
        } else {
            kept
        };
        Some(Self {
            size,
            kept,
            len,
            key,
        })
    }
}

/// XORs `n` bytes at `from` with the rotating `key` into `to` (`to <= from`), 8 at a time.
fn unmask_to(buf: &mut [u8], from: usize, to: usize, n: usize, key: &mut [u8; 4]) {
    let mut wide = [0; 8];
    wide[..4].copy_from_slice(key);
    wide[4..].copy_from_slice(key);
    let wide = u64::from_ne_bytes(wide);
    let mut i = 0;
    while i + 8 <= n {
        let word = u64::from_ne_bytes(buf[from + i..from + i + 8].try_into().unwrap()) ^ wide;
        buf[to + i..to + i + 8].copy_from_slice(&word.to_ne_bytes());
        i += 8;
    }
    while i < n {
        buf[to + i] = buf[from + i] ^ key[i % 4];
        i += 1;
    }
    key.rotate_left(n % 4);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(opcode: u8, payload: &[u8], key: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = vec![0x80 | opcode];
        let mask = if key.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n @ 0..=125 => out.push(mask | n as u8),
            n @ 126..=0xffff => {
                out.push(mask | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(mask | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match key {
            Some(key) => {
                out.extend_from_slice(&key);
                out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
            }
            None => out.extend_from_slice(payload),
        }
        out
    }

    #[test]
    fn masked_frames_come_back_unmasked_however_they_are_cut() {
        let payloads: Vec<Vec<u8>> = [0, 1, 20, 125, 126, 1000, 70_000]
            .iter()
            .map(|&n| (0..n).map(|i| (i * 7 % 251) as u8).collect())
            .collect();
        let key = Some([0x12, 0x34, 0x56, 0x78]);
        let sent: Vec<u8> = payloads.iter().flat_map(|p| frame(2, p, key)).collect();
        let expected: Vec<u8> = payloads.iter().flat_map(|p| frame(2, p, None)).collect();
        for step in [1, 3, 7, 64, 4096, BUF_SIZE] {
            let (mut frames, mut buf, mut reply) = (Frames::default(), Vec::new(), Vec::new());
            for chunk in sent.chunks(step) {
                buf.extend_from_slice(chunk);
                let (len, used) = frames.unmask(&mut buf);
                reply.extend_from_slice(&buf[..len]);
                buf.drain(..used);
            }
            assert!(buf.is_empty());
            assert!(reply == expected, "step {step}");
        }
    }
}
