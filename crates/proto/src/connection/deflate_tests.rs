//! permessage-deflate on a connection (RFC 7692 §6 and §7.2): one test per rule, named after
//! it, the RFC's own examples as exact bytes, and round trips over every parameter
//! combination.

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::deflate::{DeflateConfig, DeflateParams};
use crate::error::{CapacityError, ProtocolError};
use crate::handshake::Extension;
use crate::message::Event;

// ----- helpers -----------------------------------------------------------------------------

const MASK: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

/// One frame as a client sends it to a server: masked with [`MASK`].
fn client_frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let header = FrameHeader {
        fin,
        rsv,
        opcode: OpCode::from_bits(opcode).unwrap(),
        mask: Some(MASK),
        payload_len: payload.len() as u64,
    };
    let mut head = [0u8; crate::frame::MAX_HEADER_LEN];
    let len = header.encode(&mut head);
    let mut out = head[..len].to_vec();
    let start = out.len();
    out.extend_from_slice(payload);
    crate::mask::apply_mask(&mut out[start..], MASK, 0);
    out
}

fn params() -> DeflateParams {
    DeflateParams::default()
}

fn deflate_server(params: DeflateParams) -> Connection {
    Connection::new(Role::Server, Config::default().deflate(Some(params)))
}

fn deflate_client(params: DeflateParams) -> Connection {
    Connection::new(Role::Client, Config::default().deflate(Some(params)))
}

fn drain(conn: &mut Connection) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = conn.poll_transmit() {
        out.extend_from_slice(&chunk);
    }
    out
}

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

/// The close code of the (unmasked) close frame a server sent last.
fn server_close_code(sent: &[u8]) -> u16 {
    let at = sent
        .iter()
        .rposition(|&b| b == 0x88)
        .expect("a close frame was sent");
    u16::from_be_bytes([sent[at + 2], sent[at + 3]])
}

fn fails_with(conn: &mut Connection, input: &[u8]) -> (Error, u16) {
    conn.receive(input);
    let (_, error) = events(conn);
    let error = error.expect("the connection should fail");
    let code = server_close_code(&drain(conn));
    assert_eq!(conn.ready_state(), ReadyState::Closed);
    (error, code)
}

fn pump(from: &mut Connection, to: &mut Connection) {
    while let Some(chunk) = from.poll_transmit() {
        to.receive(&chunk);
    }
}

const HELLO_DEFLATED: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];

// ----- §7.2.3 the RFC's examples ------------------------------------------------------------

#[test]
fn rfc7692_7_2_3_1_hello_goes_out_uncompressed_as_deflate_would_not_shrink_it() {
    // Deflated, "Hello" is the 7 bytes of §7.2.3.1 (see the codec's tests): longer than the
    // 5 bytes it came from, so it is sent as it is, RSV1 clear (§6 lets any message go out
    // uncompressed).
    let mut server = deflate_server(DeflateParams {
        threshold: 0,
        ..params()
    });
    server.send_text("Hello").unwrap();
    assert_eq!(drain(&mut server), b"\x81\x05Hello");
    server.send_text("Hello Hello Hello Hello").unwrap();
    let sent = drain(&mut server);
    assert_eq!(sent[0], 0xc1);
    assert!(sent.len() < 2 + 23, "{sent:?}");
}

#[test]
fn rfc7692_7_2_3_1_hello_is_received() {
    let mut server = deflate_server(params());
    server.receive(&client_frame(true, 0b100, 1, &HELLO_DEFLATED));
    assert_eq!(
        server.poll_event(),
        Ok(Some(Event::Message(Message::text("Hello"))))
    );
}

#[test]
fn rfc7692_7_2_3_1_fragmented_compressed_message_is_received() {
    // "Hello" compressed, then split: RSV1 on the first frame only.
    let mut server = deflate_server(params());
    server.receive(&client_frame(false, 0b100, 1, &HELLO_DEFLATED[..3]));
    server.receive(&client_frame(true, 0, 0, &HELLO_DEFLATED[3..]));
    assert_eq!(
        events(&mut server),
        (vec![Event::Message(Message::text("Hello"))], None)
    );
}

#[test]
fn rfc7692_7_2_3_2_context_takeover_second_hello_refers_back() {
    let mut server = deflate_server(params());
    server.receive(&client_frame(true, 0b100, 1, &HELLO_DEFLATED));
    server.receive(&client_frame(
        true,
        0b100,
        1,
        &[0xf2, 0x00, 0x11, 0x00, 0x00],
    ));
    let hello = Event::Message(Message::text("Hello"));
    assert_eq!(events(&mut server), (vec![hello.clone(), hello], None));
}

#[test]
fn rfc7692_7_2_3_3_uncompressed_message_between_compressed_ones() {
    let mut server = deflate_server(params());
    server.receive(&client_frame(true, 0b100, 1, &HELLO_DEFLATED));
    server.receive(&client_frame(true, 0, 1, b"plain"));
    server.receive(&client_frame(true, 0b100, 1, &HELLO_DEFLATED));
    let (got, error) = events(&mut server);
    assert_eq!(error, None);
    assert_eq!(
        got,
        ["Hello", "plain", "Hello"].map(|t| Event::Message(Message::text(t)))
    );
}

// ----- §6.1 RSV1 ---------------------------------------------------------------------------

#[test]
fn rfc7692_6_1_rsv1_is_set_on_the_first_frame_only() {
    let mut server = deflate_server(DeflateParams {
        threshold: 0,
        ..params()
    });
    let text = "abcabcabc".repeat(50);
    server.send_fragmented(text.as_str(), 4).unwrap();
    let sent = drain(&mut server);
    // Walk the (unmasked, short) frames.
    let mut at = 0;
    let mut frames = Vec::new();
    while at < sent.len() {
        let len = usize::from(sent[at + 1] & 0x7f);
        frames.push((sent[at] & 0x80 != 0, (sent[at] >> 4) & 7, sent[at] & 0x0f));
        at += 2 + len;
    }
    assert!(frames.len() > 1);
    assert_eq!(frames[0], (false, 0b100, 1));
    for (i, &(fin, rsv, opcode)) in frames.iter().enumerate().skip(1) {
        assert_eq!((rsv, opcode), (0, 0), "frame {i}");
        assert_eq!(fin, i == frames.len() - 1);
    }
    let mut client = deflate_client(params());
    client.receive(&sent);
    assert_eq!(
        client.poll_event(),
        Ok(Some(Event::Message(Message::text(text))))
    );
}

#[test]
fn rfc7692_6_1_rsv1_on_a_continuation_frame_fails_1002() {
    let mut server = deflate_server(params());
    let mut input = client_frame(false, 0b100, 1, &HELLO_DEFLATED[..3]);
    input.extend(client_frame(true, 0b100, 0, &HELLO_DEFLATED[3..]));
    let (error, code) = fails_with(&mut server, &input);
    assert_eq!(error, ProtocolError::Rsv1OutsideFirstFrame.into());
    assert_eq!(code, 1002);
}

#[test]
fn rfc7692_6_1_rsv1_on_a_control_frame_fails_1002() {
    for opcode in [8, 9, 10] {
        let mut server = deflate_server(params());
        let (error, code) = fails_with(&mut server, &client_frame(true, 0b100, opcode, b""));
        assert_eq!(error, ProtocolError::Rsv1OutsideFirstFrame.into());
        assert_eq!(code, 1002);
    }
}

#[test]
fn rfc7692_6_rsv2_and_rsv3_still_fail_1002() {
    for rsv in [0b010, 0b001, 0b110] {
        let mut server = deflate_server(params());
        let (error, code) = fails_with(&mut server, &client_frame(true, rsv, 1, b"x"));
        assert_eq!(error, ProtocolError::ReservedBitsSet(rsv).into());
        assert_eq!(code, 1002);
    }
}

#[test]
fn rsv1_without_negotiated_deflate_fails_1002() {
    let mut server = Connection::new(Role::Server, Config::default());
    let (error, code) = fails_with(&mut server, &client_frame(true, 0b100, 1, &HELLO_DEFLATED));
    assert_eq!(error, ProtocolError::ReservedBitsSet(0b100).into());
    assert_eq!(code, 1002);
}

#[test]
fn rfc7692_6_control_frames_are_never_compressed() {
    let mut server = deflate_server(DeflateParams {
        threshold: 0,
        ..params()
    });
    server.send_ping("ping ping ping ping ping ping").unwrap();
    server
        .close(CloseCode::NORMAL, "bye bye bye bye bye bye")
        .unwrap();
    let sent = drain(&mut server);
    assert_eq!(sent[0], 0x89);
    assert_eq!(&sent[2..31], b"ping ping ping ping ping ping");
    assert_eq!(sent[31], 0x88);
}

#[test]
fn messages_below_the_threshold_are_sent_uncompressed() {
    let mut server = deflate_server(DeflateParams {
        threshold: 10,
        ..params()
    });
    server.send_text("aaaaaaaaa").unwrap();
    assert_eq!(drain(&mut server), b"\x81\x09aaaaaaaaa");
    server.send_text("aaaaaaaaaa").unwrap();
    assert_eq!(drain(&mut server)[0], 0xc1);
}

#[test]
fn incompressible_messages_are_sent_uncompressed() {
    let mut server = deflate_server(DeflateParams {
        threshold: 0,
        ..params()
    });
    server.send_binary(Bytes::from_static(b"\x01\x02")).unwrap();
    assert_eq!(drain(&mut server), b"\x82\x02\x01\x02");
}

// ----- §8 limits on the inflated size ----------------------------------------------------

/// A small compressed message that inflates to `size` zero bytes.
fn bomb(size: usize) -> Vec<u8> {
    let mut client = deflate_client(params());
    client.set_mask_seed_insecure_for_tests(1);
    client.send_binary(vec![0u8; size]).unwrap();
    drain(&mut client)
}

#[test]
fn rfc7692_8_1_small_message_inflating_past_the_limit_fails_1009() {
    let input = bomb(1 << 20);
    assert!(input.len() < 2048, "{}", input.len());
    let mut server = Connection::new(
        Role::Server,
        Config::default()
            .max_message_size(64 << 10)
            .deflate(Some(params())),
    );
    let (error, code) = fails_with(&mut server, &input);
    assert!(
        matches!(
            error,
            Error::Capacity(CapacityError::MessageTooLarge { max: 65536, .. })
        ),
        "{error:?}"
    );
    assert_eq!(code, 1009);
}

#[test]
fn rfc7692_8_1_limit_fails_before_the_frame_has_fully_arrived() {
    let input = bomb(16 << 20);
    let mut server = Connection::new(
        Role::Server,
        Config::default()
            .max_message_size(1 << 20)
            .deflate(Some(params())),
    );
    // All but the last byte: the message already inflates past 1 MiB.
    server.receive(&input[..input.len() - 1]);
    let (_, error) = events(&mut server);
    assert!(
        matches!(error, Some(Error::Capacity(_))),
        "{error:?} after {} of {} bytes",
        input.len() - 1,
        input.len()
    );
}

#[test]
fn compressed_message_of_exactly_the_limit_is_accepted() {
    let input = bomb(64 << 10);
    let mut server = Connection::new(
        Role::Server,
        Config::default()
            .max_message_size(64 << 10)
            .deflate(Some(params())),
    );
    server.receive(&input);
    assert_eq!(
        server.poll_event(),
        Ok(Some(Event::Message(Message::binary(vec![0u8; 64 << 10]))))
    );
}

#[test]
fn fragments_of_a_compressed_message_count_towards_the_limit_together() {
    let mut client = deflate_client(params());
    client.send_fragmented(vec![0u8; 200_000], 10).unwrap();
    let input = drain(&mut client);
    let mut server = Connection::new(
        Role::Server,
        Config::default()
            .max_message_size(100_000)
            .deflate(Some(params())),
    );
    let (error, code) = fails_with(&mut server, &input);
    assert!(matches!(error, Error::Capacity(_)), "{error:?}");
    assert_eq!(code, 1009);
}

// ----- §7.2.2 what does not inflate, and UTF-8 after inflating -----------------------------

#[test]
fn rfc7692_7_2_2_data_that_does_not_inflate_fails_1007() {
    let mut server = deflate_server(params());
    let (error, code) = fails_with(&mut server, &client_frame(true, 0b100, 2, &[0xff; 20]));
    assert_eq!(error, ProtocolError::InvalidCompressedData.into());
    assert_eq!(code, 1007);
}

#[test]
fn rfc6455_8_1_invalid_utf8_after_inflating_fails_1007() {
    let mut client = deflate_client(DeflateParams {
        threshold: 0,
        ..params()
    });
    client.set_mask_seed_insecure_for_tests(1);
    // A binary message on the wire, its opcode then turned into text: 0xff is never UTF-8.
    client
        .send_binary(Bytes::from(b"valid so far \xff and more".repeat(4)))
        .unwrap();
    let mut input = drain(&mut client);
    assert_eq!(input[0], 0xc2);
    input[0] = 0xc1;
    let mut server = deflate_server(params());
    let (error, code) = fails_with(&mut server, &input);
    assert_eq!(error, ProtocolError::InvalidUtf8.into());
    assert_eq!(code, 1007);
}

#[test]
fn invalid_utf8_fails_inside_a_compressed_frame_that_has_not_fully_arrived() {
    let mut client = deflate_client(params());
    client.set_mask_seed_insecure_for_tests(3);
    let mut text = b"\xff".to_vec();
    text.extend((0..100_000u32).flat_map(|i| (i % 251).to_le_bytes()));
    client.send_binary(text).unwrap();
    let mut input = drain(&mut client);
    input[0] = 0xc1;
    let mut server = deflate_server(params());
    server.receive(&input[..input.len() / 2]);
    let (_, error) = events(&mut server);
    assert_eq!(error, Some(ProtocolError::InvalidUtf8.into()));
}

// ----- round trips -------------------------------------------------------------------------

fn negotiated(server: &DeflateConfig, client: &DeflateConfig) -> DeflateParams {
    let offer = Extension::parse_list(&client.offer()).unwrap();
    let (server_params, answer) = server.negotiate(&offer).expect("accepted");
    let client_params = client
        .accept_response(&Extension::parse_list(&answer).unwrap())
        .unwrap()
        .expect("compression on");
    assert_eq!(
        (
            server_params.server_no_context_takeover,
            server_params.client_no_context_takeover,
            server_params.server_max_window_bits,
            server_params.client_max_window_bits,
        ),
        (
            client_params.server_no_context_takeover,
            client_params.client_no_context_takeover,
            client_params.server_max_window_bits,
            client_params.client_max_window_bits,
        ),
        "both sides agree"
    );
    client_params
}

fn sample_messages() -> Vec<Message> {
    vec![
        Message::text(""),
        Message::text("tom"),
        Message::text("κόσμε 🎉 ".repeat(300)),
        Message::binary(vec![0u8; 70_000]),
        Message::text(
            (0..2000)
                .map(|i| format!("{{\"id\":{i},\"name\":\"n{}\"}}", i % 17))
                .collect::<String>(),
        ),
        Message::binary(
            (0..5000u32)
                .map(|i| (i * 7 % 256) as u8)
                .collect::<Vec<_>>(),
        ),
        Message::text("tom"),
    ]
}

/// Every message both ways, twice, with and without fragmentation.
fn round_trip(params: DeflateParams) {
    let mut client = deflate_client(params);
    let mut server = deflate_server(params);
    let messages = sample_messages();
    for round in 0..2 {
        for m in &messages {
            if round == 0 {
                client.send_message(m.clone()).unwrap();
                server.send_message(m.clone()).unwrap();
            } else {
                client.send_fragmented(m.clone(), 1000).unwrap();
                server.send_fragmented(m.clone(), 777).unwrap();
            }
        }
        pump(&mut client, &mut server);
        pump(&mut server, &mut client);
        let expected: Vec<Event> = messages.iter().cloned().map(Event::Message).collect();
        assert_eq!(events(&mut server), (expected.clone(), None), "{params:?}");
        assert_eq!(events(&mut client), (expected, None), "{params:?}");
    }
    // With no context takeover both ways, nothing stays allocated between messages.
    if params.server_no_context_takeover && params.client_no_context_takeover {
        assert!(!client.deflate.as_deref().unwrap().holds_state());
        assert!(!server.deflate.as_deref().unwrap().holds_state());
    }
}

#[test]
fn every_parameter_combination_round_trips() {
    for snct in [false, true] {
        for cnct in [false, true] {
            for (sbits, cbits) in [(15, 15), (8, 15), (15, 8), (9, 12), (12, 9), (8, 8)] {
                let server = DeflateConfig::default()
                    .server_no_context_takeover(snct)
                    .server_max_window_bits(sbits)
                    .client_max_window_bits(15);
                let client = DeflateConfig::default()
                    .client_no_context_takeover(cnct)
                    .client_max_window_bits(cbits);
                let params = negotiated(&server, &client);
                assert_eq!(params.server_max_window_bits, sbits);
                assert_eq!(params.client_max_window_bits, cbits);
                assert_eq!(params.server_no_context_takeover, snct);
                assert_eq!(params.client_no_context_takeover, cnct);
                round_trip(params);
            }
        }
    }
}

#[test]
fn compression_state_is_allocated_on_first_use() {
    let mut server = deflate_server(params());
    assert!(!server.deflate.as_deref().unwrap().holds_state());
    server.send_text("short").unwrap();
    assert!(!server.deflate.as_deref().unwrap().holds_state());
    server
        .send_text("long enough to be compressed, long enough")
        .unwrap();
    assert!(server.deflate.as_deref().unwrap().holds_state());
}

#[test]
fn failing_releases_the_compression_state() {
    let mut server = deflate_server(params());
    server.receive(&client_frame(true, 0b100, 1, &HELLO_DEFLATED));
    assert!(server.poll_event().unwrap().is_some());
    assert!(server.deflate.as_deref().unwrap().holds_state());
    let _ = fails_with(&mut server, &client_frame(true, 0b100, 9, b""));
    assert!(!server.deflate.as_deref().unwrap().holds_state());
}

fn arb_params() -> impl Strategy<Value = DeflateParams> {
    (
        any::<bool>(),
        any::<bool>(),
        8u8..=15,
        8u8..=15,
        0usize..64,
        0u8..=9,
        1u8..=9,
    )
        .prop_map(
            |(snct, cnct, sbits, cbits, threshold, level, mem_level)| DeflateParams {
                server_no_context_takeover: snct,
                client_no_context_takeover: cnct,
                server_max_window_bits: sbits,
                client_max_window_bits: cbits,
                threshold,
                level,
                mem_level,
            },
        )
}

fn arb_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        ".{0,200}".prop_map(Message::text),
        "(ab|cd|κό|🎉){0,400}".prop_map(Message::text),
        proptest::collection::vec(any::<u8>(), 0..600).prop_map(Message::binary),
        (0usize..20_000, any::<u8>()).prop_map(|(n, b)| Message::binary(vec![b; n])),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn compressed_messages_round_trip_in_any_pieces(
        params in arb_params(),
        messages in proptest::collection::vec(arb_message(), 1..8),
        fragment in proptest::option::of(1usize..300),
        cuts in proptest::collection::vec(0usize..40_000, 0..10),
    ) {
        let mut client = deflate_client(params);
        let mut server = deflate_server(params);
        for m in &messages {
            match fragment {
                Some(size) => client.send_fragmented(m.clone(), size).unwrap(),
                None => client.send_message(m.clone()).unwrap(),
            }
        }
        let wire = drain(&mut client);
        let mut cuts = cuts;
        cuts.sort_unstable();
        let mut got = Vec::new();
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&wire.len())) {
            let cut = cut.clamp(start, wire.len());
            server.receive(&wire[start..cut]);
            start = cut;
            let (events, error) = events(&mut server);
            prop_assert_eq!(error, None);
            got.extend(events);
        }
        let expected: Vec<Event> = messages.into_iter().map(Event::Message).collect();
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn arbitrary_bytes_with_deflate_never_panic(
        input in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut conn = deflate_server(params());
        conn.receive(&input);
        let _ = events(&mut conn);
        let _ = drain(&mut conn);
    }
}

#[test]
fn only_messages_below_the_compression_threshold_are_plain_frames() {
    for (threshold, level, limit) in [
        (0, 1, None),
        (1, 1, Some(0)),
        (64, 6, Some(63)),
        (0, 0, Some(usize::MAX)),
    ] {
        let server = deflate_server(DeflateParams {
            threshold,
            level,
            ..params()
        });
        assert_eq!(
            server.plain_frame_limit(),
            limit,
            "threshold {threshold}, level {level}"
        );
    }
    let mut capped = Connection::new(
        Role::Server,
        Config::default()
            .fragment_size(Some(10))
            .deflate(Some(DeflateParams {
                threshold: 64,
                ..params()
            })),
    );
    assert_eq!(
        capped.plain_frame_limit(),
        Some(10),
        "one frame: no fragments"
    );
    capped.close(CloseCode::NORMAL, "").unwrap();
    assert_eq!(capped.plain_frame_limit(), None);
}

// ----- sleeping between messages ------------------------------------------------------------

#[test]
fn the_peers_context_survives_a_sleep() {
    // The RFC's second "Hello" refers back into the first: the decompressor's window must
    // come through the sleep.
    let mut server = deflate_server(params());
    server.receive(&client_frame(true, 0b100, 1, &HELLO_DEFLATED));
    let hello = Event::Message(Message::text("Hello"));
    assert_eq!(events(&mut server), (vec![hello.clone()], None));
    let dormant = server.sleep().expect("at rest");
    let mut server = Connection::wake(dormant);
    server.receive(&client_frame(
        true,
        0b100,
        1,
        &[0xf2, 0x00, 0x11, 0x00, 0x00],
    ));
    assert_eq!(events(&mut server), (vec![hello], None));
}

#[test]
fn a_woken_connection_still_compresses() {
    let mut client = deflate_client(params());
    let mut server = deflate_server(params());
    let dormant = server.sleep().expect("at rest");
    let mut server = Connection::wake(dormant);
    let text = "compress me ".repeat(50);
    server.send_text(text.clone()).unwrap();
    let sent = server.buffered_amount();
    assert!(sent < text.len() / 4, "{sent} bytes for {}", text.len());
    pump(&mut server, &mut client);
    assert_eq!(
        events(&mut client),
        (vec![Event::Message(Message::text(text))], None)
    );
}
