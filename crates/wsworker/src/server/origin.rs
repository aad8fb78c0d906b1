//! The `Origin` allow-list: origins compared in their RFC 6454 serialization, so that
//! `HTTPS://Example.com:443` in the configuration matches the `https://example.com` a
//! browser sends.

/// The form origins are compared in: lower case, no trailing slash, no default port.
pub(crate) fn normalize(origin: &str) -> String {
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    for (scheme, port) in [
        ("https://", ":443"),
        ("wss://", ":443"),
        ("http://", ":80"),
        ("ws://", ":80"),
    ] {
        if origin.starts_with(scheme)
            && let Some(bare) = origin.strip_suffix(port)
        {
            return bare.to_owned();
        }
    }
    origin
}

/// Whether a request with this `Origin` header (or none) may open a connection.
pub(crate) fn allowed(origin: Option<&str>, allow_list: &[String]) -> bool {
    match origin {
        // Not a browser page: the check is for browsers (see `Worker::allowed_origins`).
        None => true,
        Some(origin) => {
            let origin = normalize(origin);
            allow_list.contains(&origin)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_as_rfc_6454_serializes_them() {
        let list: Vec<String> = ["HTTPS://Example.com:443/", "http://localhost:8080", "null"]
            .iter()
            .map(|o| normalize(o))
            .collect();
        assert!(allowed(Some("https://example.com"), &list));
        assert!(allowed(Some("http://localhost:8080"), &list));
        assert!(allowed(Some("null"), &list));
        assert!(allowed(None, &list));
        assert!(
            !allowed(Some("http://example.com"), &list),
            "another scheme"
        );
        assert!(!allowed(Some("https://example.com.evil.net"), &list));
        assert!(
            !allowed(Some("http://localhost:8081"), &list),
            "another port"
        );
        assert!(!allowed(Some("https://example.com:8443"), &list));
    }
}
