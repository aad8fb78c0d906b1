//! A whole server-role connection fed arbitrary bytes in arbitrary pieces, echoing every
//! message as an application would: no panic, and once it fails it stays closed. The top bit
//! of the first byte turns permessage-deflate on (RSV1 accepted, compressed messages
//! inflated under the 8 KiB limit, echoes compressed), with the parameters picked by the
//! second byte.
//!
//! Two connections take the same pieces: one the way `poll_event` hands messages out, one the
//! way a runtime that lends them does (runs of `poll_message_ref` whose echoes wait in a
//! `FrameBuffer`, or behind a queued one, until the next `poll_event_ref`). They must report
//! the same events and send the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsworker_proto::deflate::DeflateParams;
use wsworker_proto::{
    Config, Connection, Error, Event, EventRef, FrameBuffer, Message, MessageRef, ReadyState, Role,
};

/// The reference: every event as `poll_event` gives it, each echo queued at once.
fn feed_reference(conn: &mut Connection, seen: &mut Vec<Event>) -> Option<Error> {
    loop {
        match conn.poll_event() {
            Ok(Some(event)) => {
                if let Event::Message(m) = &event {
                    let _ = conn.send_message(m.clone());
                }
                seen.push(event);
            }
            Ok(None) => return None,
            Err(e) => return Some(e),
        }
    }
}

/// Echoes waiting to be queued, as a runtime's outbox keeps them: encoded in `frames` while
/// they fit a plain frame and nothing waits in `queued`, in `queued` after that.
#[derive(Default)]
struct Echoes {
    frames: FrameBuffer,
    queued: Vec<Message>,
}

impl Echoes {
    fn push(&mut self, m: MessageRef<'_>, limit: Option<usize>) {
        match limit {
            Some(limit) if self.queued.is_empty() && m.len() <= limit => self.frames.push(m),
            _ => self.queued.push(m.to_owned()),
        }
    }

    fn flush(&mut self, conn: &mut Connection) {
        if !self.frames.is_empty() {
            conn.send_frames(&mut self.frames)
                .expect("frames only while sendable");
        }
        for m in self.queued.drain(..) {
            let _ = conn.send_message(m);
        }
    }
}

/// The lending runtime's way.
fn feed_lending(
    conn: &mut Connection,
    echoes: &mut Echoes,
    seen: &mut Vec<Event>,
) -> Option<Error> {
    loop {
        let limit = conn.plain_frame_limit();
        while let Some(m) = conn.poll_message_ref() {
            seen.push(Event::Message(m.to_owned()));
            echoes.push(m, limit);
        }
        echoes.flush(conn);
        let limit = conn.plain_frame_limit();
        match conn.poll_event_ref() {
            Ok(Some(EventRef::Message(m))) => {
                seen.push(Event::Message(m.to_owned()));
                echoes.push(m, limit);
            }
            Ok(Some(EventRef::Owned(event))) => {
                if let Event::Message(m) = &event {
                    echoes.push(m.view(), limit);
                }
                seen.push(event);
            }
            Ok(None) => return None,
            Err(e) => return Some(e),
        }
        echoes.flush(conn);
    }
}

fn drain(conn: &mut Connection, out: &mut Vec<u8>) {
    while let Some(chunk) = conn.poll_transmit() {
        out.extend_from_slice(&chunk);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, data)) = data.split_first() else {
        return;
    };
    let piece = usize::from(control & 0x3f) + 1;
    let mut config = Config::default()
        .max_message_size(8192)
        .fragment_size((control & 0x40 != 0).then_some(7));
    let mut data = data;
    if control & 0x80 != 0 {
        let Some((&params, rest)) = data.split_first() else {
            return;
        };
        data = rest;
        config = config.deflate(Some(DeflateParams {
            server_no_context_takeover: params & 0x01 != 0,
            client_no_context_takeover: params & 0x02 != 0,
            server_max_window_bits: 8 + ((params >> 2) & 0x07),
            client_max_window_bits: 8 + ((params >> 5) & 0x07),
            threshold: usize::from(params & 0x80 != 0) * 16,
            level: 1,
            ..DeflateParams::default()
        }));
    }
    let mut reference = Connection::new(Role::Server, config.clone());
    let mut lending = Connection::new(Role::Server, config);
    let mut echoes = Echoes::default();
    let (mut seen, mut seen_lent) = (Vec::new(), Vec::new());
    let (mut out, mut out_lent) = (Vec::new(), Vec::new());
    for chunk in data.chunks(piece) {
        reference.receive(chunk);
        lending.receive(chunk);
        let error = feed_reference(&mut reference, &mut seen);
        let error_lent = feed_lending(&mut lending, &mut echoes, &mut seen_lent);
        drain(&mut reference, &mut out);
        drain(&mut lending, &mut out_lent);
        assert_eq!(seen, seen_lent);
        assert_eq!(out, out_lent);
        assert_eq!(error, error_lent);
        if let Some(e) = error {
            assert!(e.close_code().is_some());
            for conn in [&mut reference, &mut lending] {
                assert_eq!(conn.ready_state(), ReadyState::Closed);
                assert_eq!(conn.poll_event(), Ok(None));
                assert!(conn.poll_message_ref().is_none());
            }
            return;
        }
    }
});
