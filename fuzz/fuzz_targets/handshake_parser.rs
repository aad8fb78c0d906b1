//! The handshake parsers fed arbitrary bytes in arbitrary pieces: the server's request parser
//! (and everything an application does with the request), and the client's response check.
//! No panic; every error maps to an HTTP status; bytes after the head are never lost.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsworker_proto::handshake::{ClientHandshake, ServerHandshake};

fuzz_target!(|data: &[u8]| {
    let Some((&control, data)) = data.split_first() else {
        return;
    };
    let piece = usize::from(control & 0x7f) + 1;
    if control & 0x80 == 0 {
        let mut server = ServerHandshake::with_max_size(2048);
        for chunk in data.chunks(piece) {
            match server.receive(chunk) {
                Ok(None) => {}
                Ok(Some((request, rest))) => {
                    assert!(rest.len() <= data.len());
                    let _ = (request.path(), request.query(), request.origin(), request.host());
                    let _ = request.protocols().count();
                    let _ = request.extensions();
                    let _ = request.cookies().count();
                    // The accessors read the head directly; they agree with the `http` types
                    // built from it.
                    assert_eq!(request.path(), request.uri().path());
                    assert_eq!(request.query(), request.uri().query());
                    for name in request.headers().keys() {
                        let first = request.headers().get(name).and_then(|v| v.to_str().ok());
                        let first = first.map(|v| v.trim_matches([' ', '\t']));
                        assert_eq!(request.header(name.as_str()), first);
                    }
                    let protocol = request.protocols().next().map(str::to_owned);
                    let _ = request.is_websocket_upgrade();
                    match request.accept(protocol.as_deref(), None, &[]) {
                        Ok(response) => assert!(response.starts_with(b"HTTP/1.1 101 ")),
                        Err(e) => assert!((400..600).contains(&e.status())),
                    }
                    return;
                }
                Err(e) => {
                    assert!((400..600).contains(&e.status()));
                    let _ = e.to_response();
                    return;
                }
            }
        }
    } else {
        let Ok(client) = ClientHandshake::new("ws://127.0.0.1:9001/chat?x=1") else {
            return;
        };
        let Ok(mut client) = client.with_protocols(["chat", "superchat"]) else {
            return;
        };
        for chunk in data.chunks(piece) {
            match client.receive(chunk) {
                Ok(None) => {}
                Ok(Some(_)) | Err(_) => return,
            }
        }
    }
});
