//! The visibility index on an OpenSearch domain: one SigV4-signed `HEAD <endpoint>/<index>`
//! (service `es`), as Temporal's own requests to the domain are signed, with a bounded wait.
//!
//! Every outcome is a result, never an error: `infra status` shows the domain and the cluster
//! whatever the index check says.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper::{Method, Request, Uri, header};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;

/// How long the whole check (credentials, connect, TLS, the answer) may take.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(5);

/// The signing name of Amazon OpenSearch Service's data plane (provisioned domains).
const SERVICE: &str = "es";

/// What the domain said about the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Presence {
    /// 200: the index exists.
    Present,
    /// 404: no such index.
    Missing,
    /// 403: the access policy does not allow the signer, or the signature was refused.
    Refused,
    /// Any other HTTP status.
    Unexpected,
    /// No answer: name resolution, connect, TLS or the timeout failed.
    Unreachable,
    /// The credential chain gave nothing to sign with.
    Unsigned,
}

/// The index check's outcome, as `tdsql-ops infra-status` reports it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct IndexState {
    pub(crate) index: String,
    /// The URL asked (`<endpoint>/<index>`).
    pub(crate) url: String,
    pub(crate) presence: Presence,
    /// The HTTP status, when there was an answer.
    pub(crate) status: Option<u16>,
    /// Why there was no answer (or no signature).
    pub(crate) reason: Option<String>,
}

/// Asks `<base_url>/<index>` with a `HEAD` signed for `region` with `credentials`, within `timeout`.
/// `base_url` is `https://<host>[:port]` (`http://` too, which only a local listener serves).
pub(crate) async fn check(
    base_url: &str,
    index: &str,
    region: &str,
    credentials: Result<Credentials, String>,
    timeout: Duration,
) -> IndexState {
    let url = format!("{}/{index}", base_url.trim_end_matches('/'));
    let mut state = IndexState {
        index: index.to_owned(),
        url,
        presence: Presence::Unreachable,
        status: None,
        reason: None,
    };
    let credentials = match credentials {
        Ok(credentials) => credentials,
        Err(reason) => {
            state.presence = Presence::Unsigned;
            state.reason = Some(reason);
            return state;
        }
    };
    match tokio::time::timeout(timeout, head(&state.url, index, region, credentials)).await {
        Ok(Ok(status)) => {
            state.status = Some(status);
            state.presence = match status {
                200 => Presence::Present,
                404 => Presence::Missing,
                403 => Presence::Refused,
                _ => Presence::Unexpected,
            };
        }
        Ok(Err(reason)) => state.reason = Some(reason),
        Err(_) => state.reason = Some(format!("no answer within {} ms", timeout.as_millis())),
    }
    state
}

/// The signed request's status, or why there was none.
async fn head(url: &str, index: &str, region: &str, credentials: Credentials) -> Result<u16, String> {
    let uri: Uri = url.parse().map_err(|err| format!("`{url}` is not a URL: {err}"))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(format!("`{url}` is neither https:// nor http://")),
    };
    let (Some(host), Some(authority)) = (uri.host(), uri.authority()) else {
        return Err(format!("`{url}` names no host"));
    };
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let request = signed_head(url, &format!("/{index}"), authority.as_str(), region, credentials)?;
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|err| format!("cannot connect to {host}:{port}: {err}"))?;
    if !https {
        return send(TokioIo::new(tcp), request).await;
    }
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|err| format!("`{host}` is not a TLS server name: {err}"))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(tls_config()?))
        .connect(name, tcp)
        .await
        .map_err(|err| format!("TLS handshake with {host} failed: {err}"))?;
    send(TokioIo::new(tls), request).await
}

/// HTTP/1.1 over one connection, for one request.
async fn send<T>(io: T, request: Request<Empty<Bytes>>) -> Result<u16, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|err| format!("HTTP handshake failed: {err}"))?;
    let driver = tokio::spawn(connection);
    let answer = sender.send_request(request).await;
    driver.abort();
    answer.map(|response| response.status().as_u16()).map_err(|err| format!("HEAD failed: {err}"))
}

/// `HEAD <path>` with `Host`, `X-Amz-Date`, `Authorization` (and `X-Amz-Security-Token` for
/// temporary credentials) as SigV4 makes them for `url`.
fn signed_head(
    url: &str,
    path: &str,
    authority: &str,
    region: &str,
    credentials: Credentials,
) -> Result<Request<Empty<Bytes>>, String> {
    let identity = credentials.into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|err| format!("cannot sign the request: {err}"))?
        .into();
    let signable =
        SignableRequest::new("HEAD", url, std::iter::once(("host", authority)), SignableBody::Bytes(&[]))
            .map_err(|err| format!("cannot sign the request: {err}"))?;
    let (instructions, _signature) =
        sign(signable, &params).map_err(|err| format!("cannot sign the request: {err}"))?.into_parts();
    // Origin form on the wire (one connection to the host), the whole URL in the signature.
    let mut request = Request::builder()
        .method(Method::HEAD)
        .uri(path)
        .header(header::HOST, authority)
        .body(Empty::new())
        .map_err(|err| format!("cannot build the request: {err}"))?;
    instructions.apply_to_request_http1x(&mut request);
    Ok(request)
}

/// TLS as the rest of the workspace does it: rustls on aws-lc-rs with the Mozilla roots (Amazon's
/// certificate authorities are among them).
fn tls_config() -> Result<rustls::ClientConfig, String> {
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let mut config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|err| format!("TLS setup failed: {err}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    //! Against a listener on 127.0.0.1 that answers like a domain would: no OpenSearch runs here,
    //! and the signature is checked for its shape (scope, signed headers), which is what
    //! the domain verifies before it looks at the access policy.

    use std::io::{BufRead as _, BufReader, Write as _};
    use std::net::TcpListener;
    use std::time::Duration;

    use aws_credential_types::Credentials;

    use super::{Presence, check};

    const INDEX: &str = "temporal_visibility_v1_dev";

    /// A listener that answers one request with `status` and returns the request's head lines.
    fn answer_once(status: u16) -> (String, std::thread::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut lines = Vec::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let line = line.trim_end().to_owned();
                if line.is_empty() {
                    break;
                }
                lines.push(line);
            }
            let mut stream = stream;
            write!(stream, "HTTP/1.1 {status} Whatever\r\ncontent-length: 0\r\n\r\n").unwrap();
            lines
        });
        (base, handle)
    }

    fn header<'a>(lines: &'a [String], name: &str) -> &'a str {
        lines
            .iter()
            .find_map(|l| {
                l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim())
            })
            .unwrap_or_else(|| panic!("no {name} header in {lines:?}"))
    }

    fn credentials(token: Option<&str>) -> Result<Credentials, String> {
        Ok(Credentials::new("AKIDINDEXCHECK", "secret-not-sent", token.map(str::to_owned), None, "test"))
    }

    #[tokio::test]
    async fn statuses_map_to_presence_and_the_request_is_signed_for_es() {
        for (status, presence) in [
            (200, Presence::Present),
            (404, Presence::Missing),
            (403, Presence::Refused),
            (500, Presence::Unexpected),
        ] {
            let (base, listener) = answer_once(status);
            let state = check(&base, INDEX, "eu-west-1", credentials(None), Duration::from_secs(5)).await;
            let lines = listener.join().unwrap();
            assert_eq!((state.presence, state.status), (presence, Some(status)), "{state:?}");
            assert_eq!(state.url, format!("{base}/{INDEX}"));

            assert_eq!(lines[0], format!("HEAD /{INDEX} HTTP/1.1"), "{lines:?}");
            assert_eq!(header(&lines, "host"), base.trim_start_matches("http://"));
            let date = header(&lines, "x-amz-date");
            assert_eq!(date.len(), 16, "yyyymmddThhmmssZ: {date}");
            let authorization = header(&lines, "authorization");
            let scope = format!(
                "AWS4-HMAC-SHA256 Credential=AKIDINDEXCHECK/{}/eu-west-1/es/aws4_request,",
                &date[..8]
            );
            assert!(authorization.starts_with(&scope), "{authorization}");
            let signed = authorization
                .split(", ")
                .find_map(|p| p.strip_prefix("SignedHeaders="))
                .unwrap_or_else(|| panic!("no SignedHeaders in {authorization}"));
            let signed: Vec<&str> = signed.split(';').collect();
            assert!(signed.contains(&"host") && signed.contains(&"x-amz-date"), "{signed:?}");
            assert!(!authorization.contains("secret-not-sent"), "the secret never travels");
        }
    }

    #[tokio::test]
    async fn temporary_credentials_send_and_sign_their_session_token() {
        let (base, listener) = answer_once(200);
        let state =
            check(&base, INDEX, "us-east-1", credentials(Some("session-token-1")), Duration::from_secs(5))
                .await;
        let lines = listener.join().unwrap();
        assert_eq!(state.presence, Presence::Present);
        assert_eq!(header(&lines, "x-amz-security-token"), "session-token-1");
        assert!(header(&lines, "authorization").contains("x-amz-security-token"), "{lines:?}");
    }

    #[tokio::test]
    async fn no_answer_is_unreachable_with_the_reason() {
        // A port nothing listens on: the connect is refused.
        let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let state =
            check(&format!("http://{closed}"), INDEX, "eu-west-1", credentials(None), Duration::from_secs(5))
                .await;
        assert_eq!((state.presence, state.status), (Presence::Unreachable, None));
        let reason = state.reason.unwrap();
        assert!(reason.contains(&format!("cannot connect to 127.0.0.1:{}", closed.port())), "{reason}");

        // A listener that accepts and never answers: the timeout ends the wait.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", silent.local_addr().unwrap());
        let started = std::time::Instant::now();
        let state = check(&base, INDEX, "eu-west-1", credentials(None), Duration::from_millis(300)).await;
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        assert_eq!(state.presence, Presence::Unreachable);
        assert_eq!(state.reason.as_deref(), Some("no answer within 300 ms"));
        drop(silent);

        // No credentials: nothing is sent, and the chain's reason is kept.
        let state = check(
            &base,
            INDEX,
            "eu-west-1",
            Err("no credentials in the chain".to_owned()),
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(
            (state.presence, state.reason.as_deref()),
            (Presence::Unsigned, Some("no credentials in the chain"))
        );
    }
}
