//! A whole server-role connection fed arbitrary bytes in arbitrary pieces, echoing every
//! message as an application would: no panic, and once it fails it stays closed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsworker_proto::{Config, Connection, Event, ReadyState, Role};

fuzz_target!(|data: &[u8]| {
    let Some((&control, data)) = data.split_first() else {
        return;
    };
    let piece = usize::from(control & 0x3f) + 1;
    let config = Config::default()
        .max_message_size(4096)
        .fragment_size((control & 0x40 != 0).then_some(7));
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
