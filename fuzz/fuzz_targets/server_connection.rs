//! A whole server-role connection fed arbitrary bytes in arbitrary pieces, echoing every
//! message as an application would: no panic, and once it fails it stays closed. The top bit
//! of the first byte turns permessage-deflate on (RSV1 accepted, compressed messages
//! inflated under the 4 KiB limit, echoes compressed), with the parameters picked by the
//! second byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsworker_proto::deflate::DeflateParams;
use wsworker_proto::{Config, Connection, Event, ReadyState, Role};

fuzz_target!(|data: &[u8]| {
    let Some((&control, data)) = data.split_first() else {
        return;
    };
    let piece = usize::from(control & 0x3f) + 1;
    let mut config = Config::default()
        .max_message_size(4096)
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
            threshold: 0,
            level: 1,
        }));
    }
    let mut conn = Connection::new(Role::Server, config);
    for chunk in data.chunks(piece) {
        conn.receive(chunk);
        loop {
            match conn.poll_event() {
                Ok(Some(Event::Message(m))) => {
                    let _ = conn.send_message(m);
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    assert!(e.close_code().is_some());
                    assert_eq!(conn.ready_state(), ReadyState::Closed);
                    assert_eq!(conn.poll_event(), Ok(None));
                    return;
                }
            }
        }
        while conn.poll_transmit().is_some() {}
    }
});
