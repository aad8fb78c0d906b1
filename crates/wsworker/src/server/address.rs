//! Listen addresses written as Workerman writes them: `websocket://HOST:PORT`.

use std::net::{SocketAddr, ToSocketAddrs};

use crate::error::{Error, Result};

/// Parses `websocket://HOST:PORT` (HOST an IPv4 address, a bracketed IPv6 address or a
/// name that resolves; PORT may be 0 for any free port).
pub(crate) fn parse(address: &str) -> Result<SocketAddr> {
    let invalid = |reason| Error::InvalidAddress {
        address: address.to_owned(),
        reason,
    };
    let Some((scheme, rest)) = address.split_once("://") else {
        return Err(invalid("expected websocket://HOST:PORT"));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "websocket" | "ws" => {}
        "websocket+tls" | "wss" => {
            return Err(Error::Unsupported(
                "TLS listeners (websocket+tls://) are not available in this build yet",
            ));
        }
        _ => {
            return Err(invalid(
                "unsupported scheme; expected websocket://HOST:PORT",
            ));
        }
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains('/') || authority.contains('@') {
        return Err(invalid("expected only HOST:PORT after the scheme"));
    }
    if let Ok(addr) = authority.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let Some((host, port)) = authority.rsplit_once(':') else {
        return Err(invalid("missing :PORT"));
    };
    if host.is_empty() {
        return Err(invalid("missing HOST"));
    }
    if host.starts_with('[') || host.contains(':') {
        return Err(invalid("invalid IPv6 address"));
    }
    let port: u16 = port.parse().map_err(|_| invalid("invalid port"))?;
    (host, port)
        .to_socket_addrs()
        .map_err(|_| invalid("host does not resolve"))?
        .next()
        .ok_or_else(|| invalid("host does not resolve"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workerman_addresses_parse() {
        assert_eq!(
            parse("websocket://0.0.0.0:2346").unwrap(),
            "0.0.0.0:2346".parse().unwrap()
        );
        assert_eq!(
            parse("websocket://[::1]:9001").unwrap(),
            "[::1]:9001".parse().unwrap()
        );
        assert_eq!(parse("websocket://127.0.0.1:0/").unwrap().port(), 0);
        assert_eq!(parse("websocket://localhost:9001").unwrap().port(), 9001);
    }

    #[test]
    fn bad_addresses_are_clear_errors() {
        for bad in [
            "http://0.0.0.0:1",
            "websocket://0.0.0.0",
            "websocket://:80",
            "websocket://0.0.0.0:99999",
            "0.0.0.0:80",
            "websocket://[::1:80",
            "websocket://h:80/path",
        ] {
            assert!(
                matches!(parse(bad), Err(Error::InvalidAddress { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            parse("websocket+tls://0.0.0.0:443"),
            Err(Error::Unsupported(_))
        ));
    }
}
