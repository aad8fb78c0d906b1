//! The frame decoder, fed arbitrary bytes in arbitrary pieces, for both roles: it must
//! never panic, every payload it hands out must have the length its header announced, and
//! decoding in place (whole frames left in the buffer) must find the same frames as
//! splitting them off.
#![no_main]

use bytes::{Buf, BytesMut};
use libfuzzer_sys::fuzz_target;
use wsworker_proto::Role;
use wsworker_proto::frame::{Decoded, FrameDecoder, FrameHeader};

/// What one decoder found: each frame's header and payload (a payload that arrived after
/// its header has `None` beside it), and whether it ended in an error.
type Found = (Vec<(Option<FrameHeader>, Vec<u8>)>, bool);

fn decode_all(data: &[u8], control: u8, in_place: bool) -> Found {
    let role = if control & 1 == 0 { Role::Server } else { Role::Client };
    let piece = usize::from(control >> 1) + 1;
    let mut decoder = FrameDecoder::new(role, 1 << 16);
    decoder.set_allowed_rsv(control >> 5);
    let mut buf = BytesMut::new();
    let mut announced = None;
    let mut found = Vec::new();
    for chunk in data.chunks(piece) {
        buf.extend_from_slice(chunk);
        loop {
            let decoded = if in_place {
                decoder.decode_in_place(&mut buf)
            } else {
                decoder.decode(&mut buf)
            };
            match decoded {
                Ok(Some(Decoded::Header(h))) => {
                    assert_eq!(announced, None);
                    announced = Some(h.payload_len);
                    found.push((Some(h), Vec::new()));
                }
                Ok(Some(Decoded::Payload(p))) => {
                    assert_eq!(Some(p.len() as u64), announced.take());
                    found.push((None, p.to_vec()));
                }
                Ok(Some(Decoded::Frame(h, p))) => {
                    assert!(!in_place);
                    assert_eq!(announced, None);
                    assert_eq!(p.len() as u64, h.payload_len);
                    found.push((Some(h), p.to_vec()));
                }
                Ok(Some(Decoded::InPlace(h))) => {
                    assert!(in_place);
                    assert_eq!(announced, None);
                    let len = usize::try_from(h.payload_len).unwrap();
                    assert!(len <= buf.len());
                    found.push((Some(h), buf[..len].to_vec()));
                    buf.advance(len);
                }
                Ok(None) => break,
                Err(_) => return (found, true),
            }
        }
    }
    (found, false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, data)) = data.split_first() else {
        return;
    };
    let split = decode_all(data, control, false);
    let in_place = decode_all(data, control, true);
    // A frame that arrives whole is one entry in place and one entry split, so the two
    // agree entry by entry.
    assert_eq!(split, in_place);
});
