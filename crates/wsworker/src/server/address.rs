//! Listen addresses written as Workerman writes them: `websocket://HOST:PORT`, or
//! `websocket+tls://HOST:PORT` for TLS.

use std::net::{SocketAddr, ToSocketAddrs};

use crate::error::{Error, Result};

/// Parses `websocket://HOST:PORT` (HOST an IPv4 address, a bracketed IPv6 address or a
/// name that resolves; PORT may be 0 for any free port); `websocket+tls://` (or `wss://`)
/// asks for TLS, told by the `bool`.
pub(crate) fn parse(address: &str) -> Result<(SocketAddr, bool)> {
    let invalid = |reason| Error::InvalidAddress {
        address: address.to_owned(),
        reason,
    };
    let Some((scheme, rest)) = address.split_once("://") else {
        return Err(invalid("expected websocket://HOST:PORT"));
    };
    let tls = match scheme.to_ascii_lowercase().as_str() {
        "websocket" | "ws" => false,
        #[cfg(feature = "tls")]
        "websocket+tls" | "wss" => true,
        #[cfg(not(feature = "tls"))]
        "websocket+tls" | "wss" => {
            return Err(Error::Unsupported(
                "TLS listeners (websocket+tls://) need the `tls` feature of wsworker",
            ));
        }
        _ => {
            return Err(invalid(
                "unsupported scheme; expected websocket://HOST:PORT",
            ));
        }
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains('/') || authority.contains('@') {
        return Err(invalid("expected only HOST:PORT after the scheme"));
    }
    if let Ok(addr) = authority.parse::<SocketAddr>() {
        return Ok((addr, tls));
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
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|_| invalid("host does not resolve"))?
        .next()
        .ok_or_else(|| invalid("host does not resolve"))?;
    Ok((addr, tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workerman_addresses_parse() {
        assert_eq!(
            parse("websocket://0.0.0.0:2346").unwrap(),
            ("0.0.0.0:2346".parse().unwrap(), false)
        );
        assert_eq!(
            parse("websocket://[::1]:9001").unwrap(),
            ("[::1]:9001".parse().unwrap(), false)
        );
        assert_eq!(parse("websocket://127.0.0.1:0/").unwrap().0.port(), 0);
        assert_eq!(parse("websocket://localhost:9001").unwrap().0.port(), 9001);
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
    }

    #[test]
    #[cfg(feature = "tls")]
    fn tls_addresses_ask_for_tls() {
        assert_eq!(
            parse("websocket+tls://127.0.0.1:443").unwrap(),
            ("127.0.0.1:443".parse().unwrap(), true)
        );
        assert!(parse("WSS://[::1]:0").unwrap().1);
    }

    #[test]
    #[cfg(not(feature = "tls"))]
    fn tls_addresses_need_the_feature() {
        assert!(matches!(
            parse("websocket+tls://0.0.0.0:443"),
            Err(Error::Unsupported(_))
        ));
    }
}
