//! TLS on rustls, with ring as the crypto provider: server configurations from PEM files,
//! client configurations on the `webpki-roots` trust anchors (plus CAs of the caller's),
//! the two handshakes, and [`Error::Tls`] values that name their reason.
//!
//! The provider is always passed explicitly (`builder_with_provider`), so nothing here
//! depends on rustls' process-wide default provider, whatever else the process installs.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{CertificateError, ClientConfig, RootCertStore, ServerConfig};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::error::{Error, Result};

/// The stream a TLS server connection runs on.
pub(crate) type ServerStream = tokio_rustls::server::TlsStream<TcpStream>;
/// The stream a `wss://` client connection runs on.
pub(crate) type ClientStream = tokio_rustls::client::TlsStream<TcpStream>;

/// The application protocol both sides announce (ALPN): WebSocket runs on HTTP/1.1.
const ALPN_HTTP11: &[u8] = b"http/1.1";
/// The one the client announces for WebSockets over HTTP/2 (RFC 8441).
#[cfg(feature = "hyper")]
pub(crate) const ALPN_H2: &[u8] = b"h2";

/// The ring provider, made once.
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// An [`Error::Tls`].
pub(crate) fn error(
    reason: impl Into<String>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
) -> Error {
    Error::Tls {
        reason: reason.into().into_boxed_str(),
        source,
    }
}

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        error(
            format!("cannot read the {what} {}", path.display()),
            Some(Box::new(e)),
        )
    })
}

/// Every certificate in `pem`; at least one.
fn certificates(pem: &[u8], origin: &dyn fmt::Display) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(format!("invalid PEM in {origin}"), Some(Box::new(e))))?;
    if certs.is_empty() {
        return Err(error(
            format!("no certificate (BEGIN CERTIFICATE) in {origin}"),
            None,
        ));
    }
    Ok(certs)
}

// ----- server ----------------------------------------------------------------------------

/// A server configuration from a PEM certificate chain (leaf first) and a PEM private key
/// (PKCS#8, PKCS#1 or SEC1), announcing ALPN `http/1.1`.
pub(crate) fn server_config_from_pem(cert_chain: &Path, key: &Path) -> Result<Arc<ServerConfig>> {
    let chain = certificates(
        &read_file(cert_chain, "certificate chain")?,
        &cert_chain.display(),
    )?;
    let key_pem = read_file(key, "private key")?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        error(
            format!("no usable private key in {}", key.display()),
            Some(Box::new(e)),
        )
    })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| error("cannot configure the TLS versions", Some(Box::new(e))))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            error(
                "the certificate and key cannot be used together",
                Some(Box::new(e)),
            )
        })?;
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}

/// The server's TLS handshake with an accepted connection, within `deadline`. A failure
/// (a broken hello, a client that does not trust us, a timeout) costs this connection only:
/// it is logged at debug level and `None` is returned.
pub(crate) async fn accept(
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    deadline: Instant,
) -> Option<ServerStream> {
    match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(error)) => {
            tracing::debug!(%peer, reason = %describe_io(&error), "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

// ----- client ----------------------------------------------------------------------------

/// The client's TLS settings, gathered by the builder.
#[derive(Default)]
pub(crate) struct ClientTls {
    /// A whole configuration given by the caller: used as it is.
    config: Option<Arc<ClientConfig>>,
    /// CAs trusted in addition to the webpki roots.
    extra_roots: Vec<CertificateDer<'static>>,
    /// The first error met while gathering (an unreadable CA file), reported at connect.
    error: Option<Error>,
}

impl ClientTls {
    /// Trusts the certificates of a PEM file too.
    pub(crate) fn add_ca_pem_file(&mut self, path: &Path) {
        let added = read_file(path, "CA file").and_then(|pem| certificates(&pem, &path.display()));
        self.add(added);
    }

    /// Trusts the certificates of PEM text too.
    pub(crate) fn add_ca_pem(&mut self, pem: &[u8]) {
        let added = certificates(pem, &"the CA PEM given to tls_ca_pem");
        self.add(added);
    }

    fn add(&mut self, certs: Result<Vec<CertificateDer<'static>>>) {
        match certs {
            Ok(certs) => self.extra_roots.extend(certs),
            Err(error) => {
                self.error.get_or_insert(error);
            }
        }
    }

    /// Uses this configuration as it is (roots, ALPN, everything).
    pub(crate) fn set_config(&mut self, config: Arc<ClientConfig>) {
        self.config = Some(config);
    }

    /// What a connection needs: a connector for `wss://` (announcing `h2` alone when
    /// `http2`, in place of the configuration's ALPN), `None` for `ws://`; or the first error
    /// met in the settings, whatever the scheme.
    pub(crate) fn prepare(&mut self, tls: bool, http2: bool) -> Result<Option<Connector>> {
        if let Some(error) = self.error.take() {
            return Err(error);
        }
        if !tls {
            return Ok(None);
        }
        let config = match &self.config {
            Some(config) => config.clone(),
            None if self.extra_roots.is_empty() => default_client_config()?,
            None => client_config(&self.extra_roots)?,
        };
        #[cfg(feature = "hyper")]
        let config = if http2 {
            let mut config = ClientConfig::clone(&config);
            config.alpn_protocols = vec![ALPN_H2.to_vec()];
            Arc::new(config)
        } else {
            config
        };
        #[cfg(not(feature = "hyper"))]
        let _ = http2;
        Ok(Some(Connector(tokio_rustls::TlsConnector::from(config))))
    }
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("custom_config", &self.config.is_some())
            .field("extra_roots", &self.extra_roots.len())
            .field("error", &self.error)
            .finish()
    }
}

/// The configuration for `wss://` without extra CAs, made once.
fn default_client_config() -> Result<Arc<ClientConfig>> {
    static DEFAULT: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    if let Some(config) = DEFAULT.get() {
        return Ok(config.clone());
    }
    let config = client_config(&[])?;
    Ok(DEFAULT.get_or_init(|| config).clone())
}

/// A client configuration trusting the webpki roots and `extra`, announcing ALPN
/// `http/1.1`.
fn client_config(extra: &[CertificateDer<'static>]) -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for cert in extra {
        roots.add(cert.clone()).map_err(|e| {
            error(
                "a CA certificate cannot be used as a trust anchor",
                Some(Box::new(e)),
            )
        })?;
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| error("cannot configure the TLS versions", Some(Box::new(e))))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}

/// Makes the client's TLS connections.
#[derive(Clone)]
pub(crate) struct Connector(tokio_rustls::TlsConnector);

impl Connector {
    /// The client's TLS handshake over `stream`, for `host` (the URL's host: a name, or an IP
    /// address checked against the certificate's IP addresses). Sends `host` as SNI when it
    /// is a name.
    pub(crate) async fn connect(&self, host: &str, stream: TcpStream) -> Result<ClientStream> {
        let name = ServerName::try_from(host.to_owned()).map_err(|e| {
            error(
                format!("{host:?} is not a valid TLS server name"),
                Some(Box::new(e)),
            )
        })?;
        self.0.connect(name, stream).await.map_err(handshake_error)
    }
}

/// An [`Error::Tls`] for a failed client handshake: the reason, and the rustls error (or the
/// I/O error) as the source.
fn handshake_error(error: io::Error) -> Error {
    let reason = describe_io(&error);
    let from_rustls = error
        .get_ref()
        .is_some_and(|inner| inner.is::<rustls::Error>());
    let source: Box<dyn std::error::Error + Send + Sync> = if from_rustls {
        // The rustls error itself, so that callers can downcast the source to it.
        error
            .into_inner()
            .unwrap_or_else(|| Box::new(io::Error::other("TLS handshake failed")))
    } else {
        Box::new(error)
    };
    crate::tls::error(reason, Some(source))
}

/// Why a TLS handshake failed, in words.
fn describe_io(error: &io::Error) -> String {
    if let Some(tls) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return describe(tls);
    }
    match error.kind() {
        io::ErrorKind::UnexpectedEof => {
            "the peer closed the connection during the TLS handshake".into()
        }
        io::ErrorKind::ConnectionReset => {
            "the peer reset the connection during the TLS handshake".into()
        }
        _ => format!("i/o error during the TLS handshake: {error}"),
    }
}

/// A rustls error, in words.
fn describe(error: &rustls::Error) -> String {
    match error {
        rustls::Error::InvalidCertificate(cert) => {
            format!("certificate verify failed: {}", describe_certificate(cert))
        }
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            format!("the peer does not speak TLS, or broke it ({error})")
        }
        rustls::Error::AlertReceived(alert) => {
            format!("the peer refused the handshake (alert {alert:?})")
        }
        rustls::Error::NoApplicationProtocol => {
            "no common application protocol (ALPN): the peer does not offer http/1.1 \
             (or h2, for WebSockets over HTTP/2)"
                .into()
        }
        rustls::Error::NoCertificatesPresented => "the peer sent no certificate".into(),
        other => other.to_string(),
    }
}

fn describe_certificate(error: &CertificateError) -> String {
    match error {
        CertificateError::UnknownIssuer => "unknown issuer".into(),
        CertificateError::BadSignature => "bad signature".into(),
        CertificateError::BadEncoding => "bad certificate encoding".into(),
        CertificateError::Expired => "certificate expired".into(),
        CertificateError::NotValidYet => "certificate not valid yet".into(),
        CertificateError::Revoked => "certificate revoked".into(),
        CertificateError::NotValidForName => "certificate not valid for this host name".into(),
        CertificateError::InvalidPurpose => {
            "certificate not allowed for server authentication".into()
        }
        // webpki's own errors; their text is the variant's name.
        CertificateError::Other(other) => match other.to_string().as_str() {
            "CaUsedAsEndEntity" => "the server's certificate is a CA certificate \
                 (a self-signed server certificate needs basicConstraints CA:FALSE)"
                .into(),
            text => text.to_owned(),
        },
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_errors_name_their_reason() {
        let io = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        let error = handshake_error(io);
        assert_eq!(
            error.to_string(),
            "tls error: certificate verify failed: unknown issuer"
        );
        let source = std::error::Error::source(&error).unwrap();
        assert!(source.downcast_ref::<rustls::Error>().is_some());
    }

    #[test]
    fn eof_during_the_handshake_is_described() {
        let error = handshake_error(io::ErrorKind::UnexpectedEof.into());
        assert!(
            error.to_string().contains("closed the connection"),
            "{error}"
        );
    }

    #[test]
    fn bad_ca_pem_is_reported_at_connect() {
        let mut tls = ClientTls::default();
        tls.add_ca_pem(b"not pem at all");
        assert!(matches!(tls.prepare(false, false), Err(Error::Tls { .. })));
        let mut tls = ClientTls::default();
        assert!(tls.prepare(false, false).unwrap().is_none());
        assert!(tls.prepare(true, false).unwrap().is_some());
        tls.add_ca_pem_file(Path::new("/nonexistent/ca.pem"));
        let error = tls.prepare(true, false).err().unwrap();
        assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
    }

    #[test]
    fn missing_server_files_are_clear_errors() {
        let error = server_config_from_pem(Path::new("/nonexistent/cert.pem"), Path::new("k"))
            .err()
            .unwrap();
        assert_eq!(
            error.to_string(),
            "tls error: cannot read the certificate chain /nonexistent/cert.pem"
        );
    }
}
