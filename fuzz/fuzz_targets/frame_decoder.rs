//! The frame decoder, fed arbitrary bytes in arbitrary pieces, for both roles: it must
//! never panic, and every payload it hands out must have the length its header announced.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use wsworker_proto::Role;
use wsworker_proto::frame::{Decoded, FrameDecoder};

fuzz_target!(|data: &[u8]| {
    let Some((&control, data)) = data.split_first() else {
        return;
    };
    let role = if control & 1 == 0 { Role::Server } else { Role::Client };
    let piece = usize::from(control >> 1) + 1;
    let mut decoder = FrameDecoder::new(role, 1 << 16);
    decoder.set_allowed_rsv(control >> 5);
    let mut buf = BytesMut::new();
    let mut announced = None;
    for chunk in data.chunks(piece) {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(Decoded::Header(h))) => announced = Some(h.payload_len),
                Ok(Some(Decoded::Payload(p))) => {
                    assert_eq!(Some(p.len() as u64), announced.take());
                }
                Ok(Some(Decoded::Frame(h, p))) => {
                    assert_eq!(announced, None);
                    assert_eq!(p.len() as u64, h.payload_len);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
