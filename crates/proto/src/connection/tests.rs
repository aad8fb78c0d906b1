//! Connection tests: one per rule of RFC 6455 a receiver must check, named after the rule,
//! plus the closing handshake, fragmentation both ways, and chunking invariance.

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::error::{CapacityError, ProtocolError};
use crate::message::{Event, EventRef};

// ----- helpers -----------------------------------------------------------------------------

/// Encodes one frame as a peer of `receiver` would send it (masked towards a server).
fn frame_to(receiver: Role, fin: bool, rsv: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = (receiver == Role::Server).then_some([0x11, 0x22, 0x33, 0x44]);
    raw_frame(fin, rsv, opcode, mask, payload)
}

fn raw_frame(fin: bool, rsv: u8, opcode: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | (rsv << 4) | opcode];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => out.push(mask_bit | n as u8),
        n @ 126..=0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mut payload = payload.to_vec();
    if let Some(key) = mask {
        out.extend_from_slice(&key);
        crate::mask::apply_mask(&mut payload, key, 0);
    }
    out.extend_from_slice(&payload);
    out
}

fn server() -> Connection {
    Connection::new(Role::Server, Config::default())
}

/// Everything the connection queued for sending, concatenated.
fn drain(conn: &mut Connection) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = conn.poll_transmit() {
        out.extend_from_slice(&chunk);
    }
    out
}

/// All events until the connection needs more bytes, and the error that ended them, if any.
fn events(conn: &mut Connection) -> (Vec<Event>, Option<Error>) {
    let mut out = Vec::new();
    loop {
        match conn.poll_event() {
            Ok(Some(e)) => out.push(e),
            Ok(None) => return (out, None),
            Err(e) => return (out, Some(e)),
        }
    }
}

/// Feeds `input` to a server and returns the error it fails with and the close code it sent.
fn server_fails_with(input: &[u8]) -> (Error, u16) {
    let mut conn = server();
    conn.receive(input);
    let (_, error) = events(&mut conn);
    let error = error.expect("the connection should fail");
    let sent = drain(&mut conn);
    // An unmasked close frame with a code: 0x88, len, code.
    let close_at = sent
        .windows(1)
        .position(|w| w[0] == 0x88)
        .expect("a close frame was sent");
    let code = u16::from_be_bytes([sent[close_at + 2], sent[close_at + 3]]);
    assert_eq!(conn.ready_state(), ReadyState::Closed);
    assert_eq!(conn.poll_event(), Ok(None), "nothing after a failure");
    (error, code)
}

// ----- §5.1 masking ---------------------------------------------------------------------

#[test]
fn server_fails_on_unmasked_client_frame_1002() {
    let (error, code) = server_fails_with(&raw_frame(true, 0, 1, None, b"hi"));
    assert_eq!(error, ProtocolError::UnmaskedFrameFromClient.into());
    assert_eq!(code, 1002);
}

#[test]
fn client_fails_on_masked_server_frame_1002() {
    let mut conn = Connection::new(Role::Client, Config::default());
    conn.receive(&raw_frame(true, 0, 1, Some([1, 2, 3, 4]), b"hi"));
    assert_eq!(
        conn.poll_event(),
        Err(ProtocolError::MaskedFrameFromServer.into())
    );
    // The client's close frame is masked: 0x88 then 0x80 | len.
    let sent = drain(&mut conn);
    assert_eq!(sent[0], 0x88);
    assert_eq!(sent[1] & 0x80, 0x80);
}

#[test]
fn client_masks_every_frame_and_server_never_does() {
    let mut client = Connection::new(Role::Client, Config::default());
    client.send_text("x").unwrap();
    client.send_ping("p").unwrap();
    let bytes = drain(&mut client);
    assert_eq!(bytes[1] & 0x80, 0x80);
    assert_eq!(bytes[2 + 4 + 1 + 1] & 0x80, 0x80);
    let mut server = server();
    server.send_text("x").unwrap();
    assert_eq!(drain(&mut server), b"\x81\x01x");
}

// ----- §5.2 reserved bits and opcodes, lengths -------------------------------------------

#[test]
fn reserved_bits_without_extension_fail_1002() {
    for rsv in 1..8 {
        let (error, code) = server_fails_with(&frame_to(Role::Server, true, rsv, 1, b"x"));
        assert_eq!(error, ProtocolError::ReservedBitsSet(rsv).into());
        assert_eq!(code, 1002);
    }
}

#[test]
fn reserved_opcodes_fail_1002() {
    for op in [3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
        let (error, code) = server_fails_with(&frame_to(Role::Server, true, 0, op, b""));
        assert_eq!(error, ProtocolError::ReservedOpcode(op).into());
        assert_eq!(code, 1002);
    }
}

#[test]
fn length_with_top_bit_set_fails_1002() {
    let mut frame = vec![0x82, 0xff];
    frame.extend_from_slice(&(1u64 << 63).to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    let (error, code) = server_fails_with(&frame);
    assert_eq!(error, ProtocolError::LengthTopBitSet.into());
    assert_eq!(code, 1002);
}

// ----- §5.5 control frames ---------------------------------------------------------------

#[test]
fn control_frame_over_125_bytes_fails_1002() {
    let (error, code) = server_fails_with(&frame_to(Role::Server, true, 0, 9, &[0; 126]));
    assert_eq!(error, ProtocolError::ControlFrameTooLong(126).into());
    assert_eq!(code, 1002);
}

#[test]
fn fragmented_control_frame_fails_1002() {
    let (error, code) = server_fails_with(&frame_to(Role::Server, false, 0, 9, b"x"));
    assert_eq!(error, ProtocolError::FragmentedControlFrame.into());
    assert_eq!(code, 1002);
}

#[test]
fn ping_is_answered_with_pong_carrying_the_same_payload() {
    let mut conn = server();
    conn.receive(&frame_to(Role::Server, true, 0, 9, b"are you there"));
    assert_eq!(
        conn.poll_event(),
        Ok(Some(Event::Ping(Bytes::from_static(b"are you there"))))
    );
    assert_eq!(drain(&mut conn), b"\x8a\x0dare you there");
}

#[test]
fn every_ping_gets_its_pong_while_the_queue_is_short() {
    // Autobahn 2.10: ten pings in one go, ten pongs.
    let mut conn = server();
    for i in 0..10u8 {
        conn.receive(&frame_to(Role::Server, true, 0, 9, &[i]));
    }
    let (events, error) = events(&mut conn);
    assert_eq!((events.len(), error), (10, None));
    let expected: Vec<u8> = (0..10u8).flat_map(|i| [0x8a, 1, i]).collect();
    assert_eq!(drain(&mut conn), expected);
}

#[test]
fn a_ping_flood_into_a_backed_up_queue_costs_one_pong() {
    // RFC 6455 §5.5.3: only the latest ping needs an answer.
    let mut conn = server();
    conn.send_binary(vec![0u8; PONG_COALESCE_AT]).unwrap();
    let queued = conn.buffered_amount();
    let mut flood = Vec::new();
    for i in 0..100_000u32 {
        flood.extend_from_slice(&frame_to(Role::Server, true, 0, 9, &i.to_be_bytes()));
    }
    conn.receive(&flood);
    let (events, error) = events(&mut conn);
    assert_eq!((events.len(), error), (100_000, None));
    assert_eq!(
        conn.buffered_amount(),
        queued,
        "no pong queued behind the backlog"
    );
    let out = drain(&mut conn);
    assert_eq!(
        out.len(),
        queued + 6,
        "one pong once the backlog is written"
    );
    assert_eq!(&out[queued..], b"\x8a\x04\x00\x01\x86\x9f");
}

#[test]
fn a_held_back_pong_goes_out_before_the_close_frame() {
    let mut conn = server();
    conn.send_binary(vec![0u8; PONG_COALESCE_AT]).unwrap();
    let queued = conn.buffered_amount();
    conn.receive(&frame_to(Role::Server, true, 0, 9, b"p"));
    conn.receive(&frame_to(Role::Server, true, 0, 8, b"\x03\xe8"));
    let (_, error) = events(&mut conn);
    assert_eq!(error, None);
    let out = drain(&mut conn);
    assert_eq!(&out[queued..], b"\x8a\x01p\x88\x02\x03\xe8");
}

#[test]
fn control_frames_between_fragments_are_handled_in_place() {
    let mut conn = server();
    conn.receive(&frame_to(Role::Server, false, 0, 1, b"hel"));
    conn.receive(&frame_to(Role::Server, true, 0, 9, b"p"));
    conn.receive(&frame_to(Role::Server, true, 0, 0xa, b"q"));
    conn.receive(&frame_to(Role::Server, true, 0, 0, b"lo"));
    let (events, error) = events(&mut conn);
    assert_eq!(error, None);
    assert_eq!(
        events,
        vec![
            Event::Ping(Bytes::from_static(b"p")),
            Event::Pong(Bytes::from_static(b"q")),
            Event::Message(Message::text("hello")),
        ]
    );
}

// ----- §5.4 fragmentation ----------------------------------------------------------------

#[test]
fn continuation_without_start_fails_1002() {
    let (error, code) = server_fails_with(&frame_to(Role::Server, true, 0, 0, b"x"));
    assert_eq!(error, ProtocolError::ContinuationWithoutStart.into());
    assert_eq!(code, 1002);
}

#[test]
fn new_data_frame_inside_unfinished_message_fails_1002() {
    let mut input = frame_to(Role::Server, false, 0, 1, b"a");
    input.extend(frame_to(Role::Server, true, 0, 2, b"b"));
    let (error, code) = server_fails_with(&input);
    assert_eq!(
        error,
        ProtocolError::DataFrameInsideFragmentedMessage.into()
    );
    assert_eq!(code, 1002);
}

#[test]
fn fragmented_binary_message_is_reassembled() {
    let mut conn = server();
    conn.receive(&frame_to(Role::Server, false, 0, 2, &[1, 2]));
    conn.receive(&frame_to(Role::Server, false, 0, 0, &[]));
    conn.receive(&frame_to(Role::Server, true, 0, 0, &[3]));
    assert_eq!(
        conn.poll_event(),
        Ok(Some(Event::Message(Message::binary(vec![1, 2, 3]))))
    );
}

// ----- §5.6 / §8.1 UTF-8 -----------------------------------------------------------------

#[test]
fn invalid_utf8_in_text_fails_1007() {
    let (error, code) = server_fails_with(&frame_to(Role::Server, true, 0, 1, &[b'a', 0xff]));
    assert_eq!(error, ProtocolError::InvalidUtf8.into());
    assert_eq!(code, 1007);
}

#[test]
fn invalid_utf8_fails_on_the_first_bad_fragment_not_at_the_end() {
    // Autobahn 6.4.1: the second fragment is invalid; the third never needs to arrive.
    let mut conn = server();
    conn.receive(&frame_to(Role::Server, false, 0, 1, "κόσμε".as_bytes()));
    conn.receive(&frame_to(
        Role::Server,
        false,
        0,
        0,
        &[0xf4, 0x90, 0x80, 0x80],
    ));
    assert_eq!(conn.poll_event(), Err(ProtocolError::InvalidUtf8.into()));
}

#[test]
fn invalid_utf8_fails_inside_a_frame_that_has_not_fully_arrived() {
    // Autobahn 6.4.3/6.4.4: one frame, sent in pieces; the invalid bytes come in the middle.
    let mut frame = frame_to(Role::Server, true, 0, 1, &[b'a'; 20]);
    let payload_start = frame.len() - 20;
    frame[payload_start + 5] = 0xff ^ 0x22; // masked with key byte 1 → 0xff once unmasked
    let mut conn = server();
    conn.receive(&frame[..payload_start + 8]);
    assert_eq!(conn.poll_event(), Err(ProtocolError::InvalidUtf8.into()));
}

#[test]
fn utf8_split_across_fragments_is_valid() {
    let text = "κόσμε";
    let bytes = text.as_bytes();
    let mut conn = server();
    conn.receive(&frame_to(Role::Server, false, 0, 1, &bytes[..1]));
    conn.receive(&frame_to(Role::Server, true, 0, 0, &bytes[1..]));
    assert_eq!(
        conn.poll_event(),
        Ok(Some(Event::Message(Message::text(text))))
    );
}

#[test]
fn text_message_ending_inside_a_code_point_fails_1007() {
    let (error, code) = server_fails_with(&frame_to(Role::Server, true, 0, 1, &[0xe2, 0x82]));
    assert_eq!(error, ProtocolError::InvalidUtf8.into());
    assert_eq!(code, 1007);
}

// ----- §5.5.1 / §7 closing ---------------------------------------------------------------

#[test]
fn close_payload_of_one_byte_fails_1002() {
    let (error, code) = server_fails_with(&frame_to(Role::Server, true, 0, 8, &[0x03]));
    assert_eq!(error, ProtocolError::CloseFrameOneByte.into());
    assert_eq!(code, 1002);
}

#[test]
fn invalid_close_codes_fail_1002() {
    for bad in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        let (error, code) =
            server_fails_with(&frame_to(Role::Server, true, 0, 8, &bad.to_be_bytes()));
        assert_eq!(error, ProtocolError::InvalidCloseCode(bad).into());
        assert_eq!(code, 1002);
    }
}

#[test]
fn invalid_utf8_in_close_reason_fails_1007() {
    let (error, code) = server_fails_with(&frame_to(Role::Server, true, 0, 8, &[0x03, 0xe8, 0xff]));
    assert_eq!(error, ProtocolError::InvalidCloseReasonUtf8.into());
    assert_eq!(code, 1007);
}

#[test]
fn peer_close_is_echoed_with_its_code() {
    let mut conn = server();
    conn.receive(&frame_to(
        Role::Server,
        true,
        0,
        8,
        &[0x03, 0xe9, b'b', b'y', b'e'],
    ));
    let event = conn.poll_event().unwrap().unwrap();
    assert_eq!(
        event,
        Event::Close(Some(CloseFrame {
            code: CloseCode::GOING_AWAY,
            reason: "bye".into()
        }))
    );
    assert_eq!(drain(&mut conn), b"\x88\x02\x03\xe9");
    assert_eq!(conn.ready_state(), ReadyState::Closed);
    assert_eq!(
        conn.send_text("late"),
        Err(ApiMisuse::SendAfterClose.into())
    );
}

#[test]
fn empty_close_is_answered_with_empty_close() {
    let mut conn = server();
    conn.receive(&frame_to(Role::Server, true, 0, 8, &[]));
    assert_eq!(conn.poll_event(), Ok(Some(Event::Close(None))));
    assert_eq!(drain(&mut conn), b"\x88\x00");
}

#[test]
fn frames_after_close_are_ignored() {
    let mut conn = server();
    conn.receive(&frame_to(Role::Server, true, 0, 8, &[0x03, 0xe8]));
    conn.receive(&frame_to(Role::Server, true, 0, 1, b"ignored"));
    conn.receive(&[0xff, 0xff]);
    let (events, error) = events(&mut conn);
    assert_eq!(error, None);
    assert_eq!(events.len(), 1);
}

#[test]
fn our_close_then_peer_close_completes_the_handshake() {
    let mut conn = server();
    conn.close(CloseCode::NORMAL, "done").unwrap();
    assert_eq!(conn.ready_state(), ReadyState::Closing);
    assert_eq!(drain(&mut conn), b"\x88\x06\x03\xe8done");
    // Messages still arrive until the peer's close.
    conn.receive(&frame_to(Role::Server, true, 0, 1, b"in flight"));
    conn.receive(&frame_to(Role::Server, true, 0, 8, &[0x03, 0xe8]));
    let (events, _) = events(&mut conn);
    assert_eq!(events[0], Event::Message(Message::text("in flight")));
    assert!(matches!(events[1], Event::Close(Some(_))));
    assert_eq!(conn.ready_state(), ReadyState::Closed);
    assert!(drain(&mut conn).is_empty(), "no second close frame");
}

#[test]
fn close_with_a_reserved_code_or_long_reason_is_refused() {
    let mut conn = server();
    assert_eq!(
        conn.close(CloseCode::ABNORMAL, ""),
        Err(ApiMisuse::InvalidCloseCode(1006).into())
    );
    assert_eq!(
        conn.close(CloseCode::NORMAL, &"x".repeat(124)),
        Err(ApiMisuse::CloseReasonTooLong(124).into())
    );
    assert_eq!(conn.ready_state(), ReadyState::Open);
}

#[test]
fn no_pong_after_our_close() {
    let mut conn = server();
    conn.close(CloseCode::NORMAL, "").unwrap();
    drain(&mut conn);
    conn.receive(&frame_to(Role::Server, true, 0, 9, b"p"));
    assert!(matches!(conn.poll_event(), Ok(Some(Event::Ping(_)))));
    assert!(drain(&mut conn).is_empty());
}

#[test]
fn replies_to_earlier_messages_go_out_before_the_failure_close() {
    // Autobahn 3.2: a valid message, then one with RSV set: the echo comes first.
    let mut conn = server();
    conn.receive(&frame_to(Role::Server, true, 0, 1, b"first"));
    conn.receive(&frame_to(Role::Server, true, 1, 1, b"bad"));
    let Ok(Some(Event::Message(m))) = conn.poll_event() else {
        panic!()
    };
    conn.send_message(m).unwrap();
    assert!(conn.poll_event().is_err());
    let sent = drain(&mut conn);
    assert!(sent.starts_with(b"\x81\x05first\x88"));
}

// ----- limits ----------------------------------------------------------------------------

#[test]
fn frame_over_max_frame_size_fails_1009_from_the_header() {
    let mut conn = Connection::new(Role::Server, Config::default().max_frame_size(10));
    let frame = frame_to(Role::Server, true, 0, 2, &[0; 11]);
    conn.receive(&frame[..8]); // header and mask only
    assert_eq!(
        conn.poll_event(),
        Err(CapacityError::FrameTooLarge { size: 11, max: 10 }.into())
    );
    let sent = drain(&mut conn);
    assert_eq!(
        (sent[0], &sent[2..4]),
        (0x88, &[0x03, 0xf1][..]),
        "close 1009"
    );
}

#[test]
fn message_over_max_message_size_fails_1009_from_the_header() {
    let mut conn = Connection::new(Role::Server, Config::default().max_message_size(10));
    conn.receive(&frame_to(Role::Server, false, 0, 2, &[0; 6]));
    let next = frame_to(Role::Server, true, 0, 0, &[0; 6]);
    conn.receive(&next[..6]); // header and mask only
    assert_eq!(
        conn.poll_event(),
        Err(CapacityError::MessageTooLarge { size: 12, max: 10 }.into())
    );
}

// ----- sending ---------------------------------------------------------------------------

#[test]
fn outgoing_messages_are_fragmented_on_request() {
    let mut conn = server();
    conn.send_fragmented("abcde", 2).unwrap();
    assert_eq!(drain(&mut conn), b"\x01\x02ab\x00\x02cd\x80\x01e");
    let mut conn = Connection::new(Role::Server, Config::default().fragment_size(Some(3)));
    conn.send_binary(vec![1, 2, 3, 4]).unwrap();
    assert_eq!(drain(&mut conn), b"\x02\x03\x01\x02\x03\x80\x01\x04");
    assert_eq!(
        conn.send_fragmented("x", 0),
        Err(ApiMisuse::ZeroFragmentSize.into())
    );
}

#[test]
fn large_server_payload_is_queued_without_copy() {
    let payload = Bytes::from(vec![7u8; 8192]);
    let mut conn = server();
    conn.send_binary(payload.clone()).unwrap();
    let mut slices = [IoSlice::new(&[]); 4];
    let n = conn.transmit_slices(&mut slices);
    assert_eq!(n, 2);
    assert_eq!(&slices[0][..], b"\x82\x7e\x20\x00");
    assert_eq!(
        slices[1].as_ptr(),
        payload.as_ptr(),
        "the caller's bytes, not a copy"
    );
    assert_eq!(conn.buffered_amount(), 4 + 8192);
    conn.advance_transmit(3);
    conn.advance_transmit(100);
    assert_eq!(conn.buffered_amount(), 4 + 8192 - 103);
    conn.advance_transmit(10_000);
    assert!(!conn.wants_transmit());
}

#[test]
fn prepared_frames_are_shared_and_server_only() {
    let frame = encode_server_frame(&Message::text("all"));
    let mut a = server();
    a.send_prepared(&frame).unwrap();
    assert_eq!(drain(&mut a), b"\x81\x03all");
    let mut client = Connection::new(Role::Client, Config::default());
    assert_eq!(
        client.send_prepared(&frame),
        Err(ApiMisuse::PreparedFrameFromClient.into())
    );
}

#[test]
fn ping_payload_over_125_bytes_is_refused() {
    let mut conn = server();
    assert_eq!(
        conn.send_ping(vec![0; 126]),
        Err(ApiMisuse::ControlPayloadTooLong(126).into())
    );
}

#[test]
fn seeded_client_masks_are_reproducible() {
    let bytes = |seed| {
        let mut c = Connection::new(Role::Client, Config::default());
        c.set_mask_seed_insecure_for_tests(seed);
        c.send_text("same").unwrap();
        drain(&mut c)
    };
    assert_eq!(bytes(1), bytes(1));
    assert_ne!(bytes(1), bytes(2));
}

// ----- pair: client and server talking ---------------------------------------------------

fn pump(from: &mut Connection, to: &mut Connection) {
    while let Some(chunk) = from.poll_transmit() {
        to.receive(&chunk);
    }
}

#[test]
fn client_and_server_exchange_every_message_shape() {
    let mut client = Connection::new(Role::Client, Config::default());
    let mut server = server();
    let messages = [
        Message::text(""),
        Message::text("tom"),
        Message::binary(vec![0u8; 125]),
        Message::binary(vec![1u8; 126]),
        Message::binary(vec![2u8; 65535]),
        Message::binary(vec![3u8; 65536]),
        Message::text("κόσμε".repeat(1000)),
    ];
    for m in &messages {
        client.send_message(m.clone()).unwrap();
        server.send_fragmented(m.clone(), 1000).unwrap();
    }
    pump(&mut client, &mut server);
    pump(&mut server, &mut client);
    let (got_server, e1) = events(&mut server);
    let (got_client, e2) = events(&mut client);
    assert_eq!((e1, e2), (None, None));
    let expected: Vec<Event> = messages.iter().cloned().map(Event::Message).collect();
    assert_eq!(got_server, expected);
    assert_eq!(got_client, expected);

    client.close(CloseCode::NORMAL, "bye").unwrap();
    pump(&mut client, &mut server);
    assert!(matches!(
        server.poll_event(),
        Ok(Some(Event::Close(Some(_))))
    ));
    pump(&mut server, &mut client);
    assert!(matches!(
        client.poll_event(),
        Ok(Some(Event::Close(Some(_))))
    ));
    assert_eq!(client.ready_state(), ReadyState::Closed);
    assert_eq!(server.ready_state(), ReadyState::Closed);
}

// ----- properties ------------------------------------------------------------------------

fn arb_frame() -> impl Strategy<Value = (bool, u8, Vec<u8>)> {
    prop_oneof![
        (
            Just(true),
            Just(1u8),
            ".{0,30}".prop_map(String::into_bytes)
        ),
        (
            Just(true),
            Just(2u8),
            proptest::collection::vec(any::<u8>(), 0..300)
        ),
        (
            Just(true),
            Just(9u8),
            proptest::collection::vec(any::<u8>(), 0..125)
        ),
        (
            Just(true),
            Just(10u8),
            proptest::collection::vec(any::<u8>(), 0..125)
        ),
        (
            Just(true),
            Just(2u8),
            proptest::collection::vec(any::<u8>(), 65536..65600)
        ),
    ]
}

fn run_chunked(input: &[u8], cuts: &[usize]) -> (Vec<Event>, Option<Error>, Vec<u8>) {
    let mut conn = server();
    let mut all = Vec::new();
    let mut start = 0;
    let mut error = None;
    for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
        let cut = cut.clamp(start, input.len());
        conn.receive(&input[start..cut]);
        start = cut;
        let (events, e) = events(&mut conn);
        all.extend(events);
        if e.is_some() {
            error = e;
            break;
        }
    }
    (all, error, drain(&mut conn))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn any_split_of_the_input_gives_the_same_events(
        frames in proptest::collection::vec(arb_frame(), 1..6),
        garbage in proptest::collection::vec(any::<u8>(), 0..20),
        cuts in proptest::collection::vec(0usize..70000, 0..12),
    ) {
        let mut input = Vec::new();
        for (fin, op, payload) in &frames {
            input.extend(frame_to(Role::Server, *fin, 0, *op, payload));
        }
        input.extend(garbage);
        let mut cuts = cuts;
        cuts.sort_unstable();
        let whole = run_chunked(&input, &[]);
        let chunked = run_chunked(&input, &cuts);
        prop_assert_eq!(whole, chunked);
    }

    #[test]
    fn fragmented_text_with_any_fragment_size_round_trips(text in ".{0,200}", size in 1usize..50) {
        let mut client = Connection::new(Role::Client, Config::default());
        let mut server = server();
        client.send_fragmented(text.as_str(), size).unwrap();
        pump(&mut client, &mut server);
        prop_assert_eq!(server.poll_event(), Ok(Some(Event::Message(Message::text(text)))));
    }

    #[test]
    fn whole_frames_and_the_same_bytes_one_at_a_time_agree(
        frames in proptest::collection::vec(
            (
                any::<bool>(),
                prop_oneof![3 => Just(0u8), 1 => 0u8..8],
                prop_oneof![3 => 1u8..3, 1 => 0u8..16],
                any::<bool>(),
                proptest::collection::vec(any::<u8>(), 0..300),
            ),
            1..5,
        ),
    ) {
        // Whole frames take the one-step path; one byte at a time never does. Any header
        // (reserved opcodes and bits, unmasked, invalid UTF-8) must come out the same.
        let mut input = Vec::new();
        for (fin, rsv, opcode, masked, payload) in &frames {
            let mask = masked.then_some([0xa5, 0x01, 0x7f, 0x80]);
            input.extend(raw_frame(*fin, *rsv, *opcode, mask, payload));
        }
        let cuts: Vec<usize> = (1..input.len()).collect();
        prop_assert_eq!(run_chunked(&input, &[]), run_chunked(&input, &cuts));
    }

    #[test]
    fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut conn = server();
        conn.receive(&input);
        let _ = events(&mut conn);
        let _ = drain(&mut conn);
    }
}

#[test]
fn bytes_read_after_the_close_are_dropped() {
    let mut conn = server();
    conn.receive(&frame_to(Role::Server, true, 0, 8, &[]));
    assert!(matches!(conn.poll_event(), Ok(Some(Event::Close(None)))));
    conn.recv_buffer_mut().extend_from_slice(&[0u8; 4096]);
    assert_eq!(conn.poll_event(), Ok(None));
    assert!(conn.recv_buffer_mut().is_empty());
}

#[test]
fn connection_state_stays_small() {
    // Memory per idle connection matters to a server holding many of them.
    let size = size_of::<Connection>();
    assert!(size <= 320, "Connection is {size} bytes");
}

// ----- the whole-frame fast path --------------------------------------------------------

#[test]
fn whole_frames_and_the_general_path_interleave_in_order() {
    // Whole frames take the one-step path; a fragmented message, a ping, a 64-bit length
    // and a frame cut short take the general one. The order of events must not change.
    let big = vec![7u8; 70_000];
    let mut input = frame_to(Role::Server, true, 0, 1, b"one");
    input.extend(frame_to(Role::Server, true, 0, 2, &[1u8; 300]));
    input.extend(frame_to(Role::Server, false, 0, 1, b"fra"));
    input.extend(frame_to(Role::Server, true, 0, 9, b"p"));
    input.extend(frame_to(Role::Server, true, 0, 0, b"gment"));
    input.extend(frame_to(Role::Server, true, 0, 2, &big));
    input.extend(frame_to(Role::Server, true, 0, 1, b""));
    let last = frame_to(Role::Server, true, 0, 1, "κόσμε".as_bytes());
    input.extend(&last[..4]);
    let mut conn = server();
    conn.receive(&input);
    let (mut got, error) = events(&mut conn);
    assert_eq!(error, None);
    conn.receive(&last[4..]);
    got.extend(events(&mut conn).0);
    assert_eq!(
        got,
        vec![
            Event::Message(Message::text("one")),
            Event::Message(Message::Binary(Bytes::from(vec![1u8; 300]))),
            Event::Ping(Bytes::from_static(b"p")),
            Event::Message(Message::text("fragment")),
            Event::Message(Message::Binary(Bytes::from(big))),
            Event::Message(Message::text("")),
            Event::Message(Message::text("κόσμε")),
        ]
    );
}

#[test]
fn a_whole_frame_over_the_message_limit_still_fails_1009() {
    let mut conn = Connection::new(Role::Server, Config::default().max_message_size(3));
    conn.receive(&frame_to(Role::Server, true, 0, 1, b"ok!"));
    conn.receive(&frame_to(Role::Server, true, 0, 1, b"four"));
    let (got, error) = events(&mut conn);
    assert_eq!(got, vec![Event::Message(Message::text("ok!"))]);
    assert_eq!(
        error,
        Some(CapacityError::FrameTooLarge { size: 4, max: 3 }.into())
    );
    assert_eq!(conn.ready_state(), ReadyState::Closed);
}

#[test]
fn the_slice_count_is_what_transmit_slices_fills() {
    let mut conn = server();
    assert_eq!(conn.transmit_slice_count(), 0);
    conn.send_text("small").unwrap();
    assert_eq!(conn.transmit_slice_count(), 1, "one encoded buffer");
    for _ in 0..3 {
        conn.send_binary(Bytes::from(vec![7u8; 8192])).unwrap();
        conn.send_text("between").unwrap();
    }
    let mut slices = [IoSlice::new(&[]); 64];
    let filled = conn.transmit_slices(&mut slices);
    assert_eq!(
        filled, 7,
        "three headers with what came before, three payloads, a tail"
    );
    assert_eq!(conn.transmit_slice_count(), filled);
    let first = slices[0].len();
    conn.advance_transmit(first);
    assert_eq!(conn.transmit_slice_count(), filled - 1);
    conn.advance_transmit(usize::MAX);
    assert_eq!(conn.transmit_slice_count(), 0);
}

#[test]
fn the_send_buffer_is_replaced_only_while_nothing_is_queued() {
    let mut conn = server();
    let lent = BytesMut::with_capacity(1024);
    let lent_at = lent.as_ptr();
    assert!(conn.replace_send_buffer(lent).is_ok());
    conn.send_text("hi").unwrap();
    let mut slices = [IoSlice::new(&[]); 2];
    assert_eq!(conn.transmit_slices(&mut slices), 1);
    assert_eq!(slices[0].as_ptr(), lent_at, "encoded into the lent buffer");
    let refused = conn
        .replace_send_buffer(BytesMut::new())
        .expect_err("bytes are queued in it");
    assert_eq!(refused.capacity(), 0, "the caller's buffer comes back");
    conn.advance_transmit(4);
    let back = conn.replace_send_buffer(BytesMut::new()).unwrap();
    // The same allocation (written bytes are consumed from its front).
    assert_eq!(back.as_ptr() as usize - lent_at as usize, 4);
    assert!(back.is_empty());
    assert_eq!(drain(&mut conn), b"");
}

// ----- lent messages ---------------------------------------------------------------------

/// Any frame a client might send, well-formed or not: every opcode, fragments, reserved
/// bits, bad text, the three length encodings.
fn arb_any_frame() -> impl Strategy<Value = Vec<u8>> {
    let payload = prop_oneof![
        ".{0,20}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..40),
        proptest::collection::vec(any::<u8>(), 120..300),
        Just(vec![0xce, 0xba, 0xe1]), // text cut inside a code point
    ];
    let opcode = prop_oneof![
        4 => Just(1u8),
        4 => Just(2u8),
        2 => Just(0u8),
        1 => Just(9u8),
        1 => Just(10u8),
        1 => Just(8u8),
        1 => Just(3u8),
    ];
    (
        any::<bool>(),
        prop_oneof![8 => Just(0u8), 1 => Just(4u8)],
        opcode,
        payload,
    )
        .prop_map(|(fin, rsv, opcode, mut payload)| {
            if opcode == 8 {
                payload = [&1000u16.to_be_bytes()[..], b"bye"].concat();
            }
            if opcode >= 8 {
                payload.truncate(125);
            }
            let fin = fin || opcode >= 8;
            frame_to(Role::Server, fin, rsv, opcode, &payload)
        })
}

/// What a server fed `input` in the cut pieces reports and sends, answering each message with
/// its echo: as the reference (`poll_event`, each echo sent at once), or as a runtime lending
/// messages does (`poll_message_ref` runs whose echoes wait in a `FrameBuffer` until the next
/// `poll_event_ref`).
fn echo_server(
    config: Config,
    input: &[u8],
    cuts: &[usize],
    lent: bool,
) -> (Vec<Event>, Option<Error>, Vec<u8>) {
    let mut conn = Connection::new(Role::Server, config);
    let mut frames = FrameBuffer::new();
    let mut seen = Vec::new();
    let mut error = None;
    let mut start = 0;
    'input: for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
        let cut = cut.clamp(start, input.len());
        conn.receive(&input[start..cut]);
        start = cut;
        loop {
            if lent {
                let limit = conn.plain_frame_limit().unwrap_or(0);
                while let Some(message) = conn.poll_message_ref() {
                    assert!(message.len() <= limit);
                    frames.push(message);
                    seen.push(Event::Message(message.to_owned()));
                }
                if !frames.is_empty() {
                    conn.send_frames(&mut frames).unwrap();
                }
            }
            let polled = if lent {
                conn.poll_event_ref().map(|e| {
                    e.map(|e| match e {
                        EventRef::Message(m) => Event::Message(m.to_owned()),
                        EventRef::Owned(e) => e,
                    })
                })
            } else {
                conn.poll_event()
            };
            match polled {
                Ok(Some(event)) => {
                    if let Event::Message(m) = &event {
                        conn.send_message(m.clone()).unwrap();
                    }
                    seen.push(event);
                }
                Ok(None) => break,
                Err(e) => {
                    error = Some(e);
                    break 'input;
                }
            }
        }
    }
    (seen, error, drain(&mut conn))
}

#[test]
fn a_lent_text_message_is_checked_and_bad_text_is_left_masked_for_the_full_decoder() {
    let mut conn = server();
    conn.receive(&frame_to(Role::Server, true, 0, 1, "fine".as_bytes()));
    conn.receive(&frame_to(Role::Server, true, 0, 1, &[0xff, 0x41]));
    assert_eq!(conn.poll_message_ref(), Some(MessageRef::Text("fine")));
    assert_eq!(conn.poll_message_ref(), None, "bad text is not lent");
    assert_eq!(
        conn.poll_event_ref().unwrap_err(),
        Error::Protocol(ProtocolError::InvalidUtf8)
    );
    assert_eq!(conn.ready_state(), ReadyState::Closed);
}

#[test]
fn only_plain_frames_are_lent_by_poll_message_ref() {
    let cases: [(&str, Vec<u8>); 6] = [
        ("ping", frame_to(Role::Server, true, 0, 9, b"p")),
        ("first fragment", frame_to(Role::Server, false, 0, 1, b"a")),
        ("reserved bit", frame_to(Role::Server, true, 4, 2, b"a")),
        ("unmasked", raw_frame(true, 0, 2, None, b"a")),
        (
            "64-bit length",
            frame_to(Role::Server, true, 0, 2, &[7; 70000]),
        ),
        (
            "over MAX_LENT",
            frame_to(Role::Server, true, 0, 2, &[7; MAX_LENT + 1]),
        ),
    ];
    for (what, frame) in cases {
        let mut conn = server();
        conn.receive(&frame);
        assert_eq!(conn.poll_message_ref(), None, "{what}");
        assert!(drain(&mut conn).is_empty(), "{what}: nothing queued");
    }
    let mut conn = Connection::new(Role::Server, Config::default().max_message_size(10));
    conn.receive(&frame_to(Role::Server, true, 0, 2, &[1; 11]));
    assert_eq!(conn.poll_message_ref(), None, "over the size limit");

    // Whole messages up to MAX_LENT are lent by poll_event_ref; larger ones are given.
    let mut conn = server();
    for len in [MAX_LENT, MAX_LENT + 1] {
        conn.receive(&frame_to(Role::Server, true, 0, 2, &vec![7; len]));
    }
    assert!(matches!(conn.poll_event_ref(), Ok(Some(EventRef::Message(m))) if m.len() == MAX_LENT));
    assert!(matches!(
        conn.poll_event_ref(),
        Ok(Some(EventRef::Owned(Event::Message(m)))) if m.len() == MAX_LENT + 1
    ));
}

#[test]
fn frame_buffer_frames_are_what_send_message_queues() {
    for len in [0, 1, 125, 126, 0xffff, 0x10000] {
        for message in [
            Message::binary(vec![0x5a; len]),
            Message::text("é".repeat(len / 2)),
        ] {
            // Behind a queued frame, or a few bytes of them, the frames are copied; more than
            // 4 KiB with nothing queued are swapped in.
            for lead in [None, Some("first")] {
                let mut frames = FrameBuffer::new();
                frames.push(message.view());
                assert_eq!(frames.len(), FrameBuffer::frame_len(message.len()), "{len}");
                let (mut server, mut reference) = (server(), server());
                if let Some(lead) = lead {
                    server.send_text(lead).unwrap();
                    reference.send_text(lead).unwrap();
                }
                server.send_frames(&mut frames).unwrap();
                assert!(frames.is_empty());
                reference.send_message(message.clone()).unwrap();
                let expected = drain(&mut reference);
                assert_eq!(drain(&mut server), expected, "{len} {lead:?}");
                let lead = lead.map_or(0, |l| FrameBuffer::frame_len(l.len()));
                let prepared = encode_server_frame(&message);
                assert_eq!(prepared.as_bytes()[..], expected[lead..]);
            }
        }
    }
    let mut client = Connection::new(Role::Client, Config::default());
    assert_eq!(
        client.plain_frame_limit(),
        None,
        "a client masks its frames"
    );
    let mut frames = FrameBuffer::new();
    frames.push(MessageRef::Text("x"));
    assert!(client.send_frames(&mut frames).is_err());
    let mut server = server();
    server.close(CloseCode::NORMAL, "").unwrap();
    assert_eq!(
        server.plain_frame_limit(),
        None,
        "nothing after the close frame"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn lending_messages_changes_nothing_the_peer_sees(
        frames in proptest::collection::vec(arb_any_frame(), 1..8),
        garbage in proptest::collection::vec(any::<u8>(), 0..6),
        cuts in proptest::collection::vec(0usize..1000, 0..6),
        max in prop_oneof![Just(usize::MAX), 0usize..200],
    ) {
        let mut input: Vec<u8> = frames.concat();
        input.extend(garbage);
        let mut cuts = cuts;
        cuts.sort_unstable();
        let config = Config::default().max_message_size(max.min(64 << 20));
        let reference = echo_server(config.clone(), &input, &cuts, false);
        let lent = echo_server(config, &input, &cuts, true);
        prop_assert_eq!(reference, lent);
    }
}

/// A frame with its length in the form `form` asks for (0: 7 bits, 1: 16 bits, 2: 64 bits),
/// or the shortest longer one it fits: receivers accept lengths written longer than needed.
fn frame_with_length_form(
    fin: bool,
    rsv: u8,
    opcode: u8,
    mask: Option<[u8; 4]>,
    payload: &[u8],
    form: u8,
) -> Vec<u8> {
    let minimal = raw_frame(fin, rsv, opcode, mask, payload);
    let len = payload.len();
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let (head, skip) = match (form, len) {
        (1, 0..=125) => (
            [&[mask_bit | 126][..], &(len as u16).to_be_bytes()].concat(),
            1,
        ),
        (2, 0..=125) => (
            [&[mask_bit | 127][..], &(len as u64).to_be_bytes()].concat(),
            1,
        ),
        (2, 126..=0xffff) => (
            [&[mask_bit | 127][..], &(len as u64).to_be_bytes()].concat(),
            3,
        ),
        _ => return minimal,
    };
    [&minimal[..1], &head, &minimal[1 + skip..]].concat()
}

proptest! {
    /// The whole-frame fast path takes a frame exactly when `poll_event_ref` lends it, for
    /// either role, any header and any limit: both go through the decoder's one header check.
    #[test]
    fn poll_message_ref_lends_exactly_what_poll_event_ref_lends(
        client in any::<bool>(),
        fin in any::<bool>(),
        rsv in prop_oneof![4 => Just(0u8), 1 => 1u8..8],
        opcode in prop_oneof![4 => Just(1u8), 4 => Just(2u8), 1 => Just(0u8), 1 => Just(9u8), 1 => Just(3u8)],
        masked in any::<bool>(),
        payload in prop_oneof![
            ".{0,20}".prop_map(String::into_bytes),
            proptest::collection::vec(any::<u8>(), 0..300),
            Just(vec![b'x'; MAX_LENT]),
            Just(vec![b'x'; MAX_LENT + 1]),
        ],
        form in 0u8..3,
        max in prop_oneof![Just(usize::MAX), 0usize..300],
    ) {
        let role = if client { Role::Client } else { Role::Server };
        let mask = masked.then_some([9, 8, 7, 6]);
        let frame = frame_with_length_form(fin, rsv, opcode, mask, &payload, form);
        let config = Config::default().max_message_size(max.min(64 << 20));
        let mut fast = Connection::new(role, config.clone());
        fast.receive(&frame);
        let mut full = Connection::new(role, config);
        full.receive(&frame);
        let lent_fast = fast.poll_message_ref().map(|m| m.to_owned());
        let lent_full = match full.poll_event_ref() {
            Ok(Some(EventRef::Message(m))) => Some(m.to_owned()),
            _ => None,
        };
        prop_assert_eq!(lent_fast, lent_full);
    }
}

#[test]
fn the_handshake_response_goes_out_first_and_only_first() {
    let response = Bytes::from_static(b"HTTP/1.1 101 Switching Protocols\r\n\r\n");
    let mut conn = server();
    conn.queue_handshake_response(response.clone()).unwrap();
    conn.send_text("hi").unwrap();
    assert_eq!(drain(&mut conn), [&response[..], b"\x81\x02hi"].concat());

    // Never behind a frame, never twice, never from a client.
    let mut conn = server();
    conn.send_text("hi").unwrap();
    assert!(matches!(
        conn.queue_handshake_response(response.clone()),
        Err(Error::ApiMisuse(ApiMisuse::HandshakeResponseNotFirst))
    ));
    let mut client = Connection::new(Role::Client, Config::default());
    assert!(client.queue_handshake_response(response).is_err());
}

#[test]
fn frame_rest_counts_what_completes_the_arriving_frame() {
    let mut client = Connection::new(Role::Client, Config::default());
    let mut server = server();
    assert_eq!(server.frame_rest(), 0);
    client.send_binary(vec![7u8; 1000]).unwrap();
    let frame = drain(&mut client);
    // Header: 2 bytes, 2 of length, 4 of mask.
    server.receive(&frame[..8 + 400]);
    assert_eq!(events(&mut server).0, []);
    assert_eq!(server.frame_rest(), 600);
    server.receive(&frame[8 + 400..]);
    assert_eq!(events(&mut server).0.len(), 1);
    assert_eq!(server.frame_rest(), 0);
}

#[test]
fn a_few_frames_are_copied_and_the_caller_keeps_its_buffer() {
    // A fan-out's recipient hands over its frames each round: a swap would leave it the
    // worker's write buffer, one per recipient.
    let mut server = server();
    let mut frames = FrameBuffer::new();
    frames.push(MessageRef::Text("hello"));
    let capacity = frames.capacity();
    assert!(capacity > 0);
    server.send_frames(&mut frames).unwrap();
    assert!(frames.is_empty());
    assert_eq!(frames.capacity(), capacity, "copied, not swapped");
    assert_eq!(
        drain(&mut server),
        encode_server_frame(&Message::text("hello")).as_bytes()[..]
    );
}
