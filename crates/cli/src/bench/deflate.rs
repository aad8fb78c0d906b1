//! `--idle N --deflate`: what permessage-deflate costs a server that holds connections. Each
//! connection offers permessage-deflate as the library's client does
//! (`permessage-deflate; client_max_window_bits`), then, before it idles, echoes one text
//! message of `--size` bytes — JSON chat lines, as compressible as a chat's traffic —
//! through the negotiated compression, with `wsworker_proto`'s own [`Connection`]: the
//! server has inflated one message and compressed one reply, as after real traffic. The
//! reply's payload bytes on the wire, beside the message's, give the compression ratio.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wsworker::bench::chat_lines;
use wsworker_proto::deflate::{DeflateConfig, DeflateParams};
use wsworker_proto::frame::FrameHeader;
use wsworker_proto::handshake::Response;
use wsworker_proto::{Config, Connection, Event, Message, Role};

use super::conn::{Failure, fail, invalid_frame, io_fail, server_closed};
use super::stats::ErrorKind;

/// The message size of `--deflate` without `--size`.
pub(super) const DEFAULT_SIZE: usize = 1024;

/// What every connection of a `--deflate` run does after its handshake.
#[derive(Debug, Clone)]
pub(super) struct DeflatePlan {
    /// The settings offered and checked against the answer: the library client's default.
    pub(super) config: DeflateConfig,
    /// The message's size in bytes.
    pub(super) size: usize,
}

impl DeflatePlan {
    /// The library client's default offer, with messages of `size` bytes.
    pub(super) fn new(size: usize) -> Self {
        Self {
            config: DeflateConfig::default(),
            size,
        }
    }
}

/// One echo's bytes: the message's, and the payload of the server's reply as it came.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Exchanged {
    pub(super) plain: u64,
    pub(super) wire: u64,
}

/// Checks that the server accepted permessage-deflate, echoes connection `index`'s message
/// through it and checks the echo. `received` holds what followed the handshake response.
/// Returns what the server sent after its reply (for the raw connection that goes on from
/// here) and the bytes of the exchange.
pub(super) async fn exchange(
    stream: &mut TcpStream,
    response: &Response,
    received: Vec<u8>,
    index: usize,
    plan: &DeflatePlan,
) -> Result<(Vec<u8>, Exchanged), Failure> {
    let params = agreed(&plan.config, response)?;
    let mut conn = Connection::new(Role::Client, Config::default().deflate(Some(params)));
    let text = chat_lines(plan.size, index as u64);
    conn.send_text(text.clone())
        .map_err(invalid_frame_or_state)?;
    transmit(stream, &mut conn).await?;
    let mut wire = received;
    conn.receive(&wire);
    let mut buf = vec![0u8; 16 << 10];
    loop {
        match conn.poll_event().map_err(invalid_frame_or_state)? {
            Some(Event::Message(Message::Text(echo))) if echo.as_str() == text => break,
            Some(Event::Message(other)) => {
                return Err(fail(
                    ErrorKind::Mismatch,
                    format!(
                        "the compressed echo differs from the {}-byte text sent: a {}-byte {}",
                        text.len(),
                        other.len(),
                        if other.is_text() { "text" } else { "binary" }
                    ),
                ));
            }
            Some(Event::Close(frame)) => {
                let (code, reason) =
                    frame.map_or((None, String::new()), |f| (Some(f.code.as_u16()), f.reason));
                return Err(server_closed(code, &reason));
            }
            // Pings are answered by the connection: the pong goes out with the next write.
            Some(_) => transmit(stream, &mut conn).await?,
            None => {
                let read = stream
                    .read(&mut buf)
                    .await
                    .map_err(io_fail("reading the compressed echo"))?;
                if read == 0 {
                    return Err(fail(
                        ErrorKind::Protocol,
                        "the server ended the connection before the compressed echo",
                    ));
                }
                wire.extend_from_slice(&buf[..read]);
                conn.receive(&buf[..read]);
            }
        }
    }
    transmit(stream, &mut conn).await?;
    // The server sends nothing unasked right after an echo; whatever did come is raw bytes
    // for the connection that goes on without compression state.
    let rest = conn.recv_buffer_mut().split().to_vec();
    let payload = data_payload_bytes(&wire[..wire.len() - rest.len()]).map_err(invalid_frame)?;
    Ok((
        rest,
        Exchanged {
            plain: text.len() as u64,
            wire: payload,
        },
    ))
}

/// The permessage-deflate parameters the server agreed to for `config`'s offer; a server that
/// declines it, or answers what was not offered, fails the connection's handshake.
pub(super) fn agreed(
    config: &DeflateConfig,
    response: &Response,
) -> Result<DeflateParams, Failure> {
    match config.accept_response(response.extensions()) {
        Ok(Some(params)) => Ok(params),
        Ok(None) => Err(fail(
            ErrorKind::Handshake,
            "the server did not accept permessage-deflate",
        )),
        Err(error) => Err(fail(ErrorKind::Handshake, error.to_string())),
    }
}

/// A protocol error of the connection (a frame it rejected, or a state it refused).
fn invalid_frame_or_state(error: wsworker_proto::Error) -> Failure {
    fail(
        ErrorKind::Protocol,
        format!("permessage-deflate exchange: {error}"),
    )
}

/// Writes whatever the connection has queued.
async fn transmit(stream: &mut TcpStream, conn: &mut Connection) -> Result<(), Failure> {
    while let Some(bytes) = conn.poll_transmit() {
        stream
            .write_all(&bytes)
            .await
            .map_err(io_fail("sending the compressed message"))?;
    }
    Ok(())
}

/// The payload bytes of the data frames among the whole frames at the start of `wire`.
fn data_payload_bytes(mut wire: &[u8]) -> Result<u64, wsworker_proto::ProtocolError> {
    let mut total = 0;
    while let Some((header, header_len)) = FrameHeader::parse(wire)? {
        let Some(rest) = usize::try_from(header.payload_len)
            .ok()
            .and_then(|len| len.checked_add(header_len))
            .and_then(|frame_len| wire.get(frame_len..))
        else {
            break;
        };
        if !header.opcode.is_control() {
            total += header.payload_len;
        }
        wire = rest;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_lines_are_ascii_json_lines_of_the_size_asked_for() {
        for size in [0, 1, 100, 1024, 10_000] {
            let text = chat_lines(size, 7);
            assert_eq!(text.len(), size);
            assert!(text.is_ascii());
        }
        let text = chat_lines(4096, 1);
        let first = text.lines().next().unwrap();
        assert!(
            first.starts_with("{\"type\":\"message\"") && first.ends_with("\"}"),
            "{first}"
        );
        assert_eq!(chat_lines(1024, 3), chat_lines(1024, 3));
        assert_ne!(chat_lines(1024, 3), chat_lines(1024, 4));
    }

    #[test]
    fn only_data_frames_count_and_partial_frames_do_not() {
        // A ping (2 + 3), a compressed text frame (2 + 5), half of another frame.
        let wire = [
            0x89, 3, b'a', b'b', b'c', 0xc1, 5, 1, 2, 3, 4, 5, 0x81, 10, 1,
        ];
        assert_eq!(data_payload_bytes(&wire), Ok(5));
    }
}
