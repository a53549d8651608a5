//! IAM auth tokens: the SigV4 presigned URLs DSQL takes as passwords, verified against the
//! gateway's own key pair (`../shared/reference/aurora-dsql-platform.md` sections 2.3 and 5.1).
//!
//! A token is `<host>/?Action=DbConnect&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=...`
//! (the URL `GET https://<host>/?Action=...` presigned for the service `dsql`, without its
//! `https://`). [`TokenVerifier::verify`] rebuilds the SigV4 canonical request from the token,
//! derives the signing key from the local secret and compares signatures in constant time, then
//! checks the action for the role, the host, the region and the validity window.
//!
//! A [`TokenRejection`] says exactly what was wrong, for the gateway's log; the client only ever
//! sees DSQL's `access denied` ([`TokenRejection::to_sql_error`]). No rejection carries the
//! secret, the signature or the session token.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, percent_encode};
use sha2::{Digest, Sha256};

use crate::errors::SqlError;

/// The longest validity SigV4 presigning allows (one week), in seconds.
pub const MAX_EXPIRES_SECS: u64 = 604_800;

/// How far in the future a token's `X-Amz-Date` may be before it is [`TokenRejection::NotYetValid`]:
/// SigV4's usual tolerance for clocks that disagree a little.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

/// The longest token looked at: an SDK token with a long STS session token is about 2 KiB.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Most query parameters a token may have (the SDK writes 7 or 8).
const MAX_PARAMS: usize = 32;

/// The signing service name of DSQL tokens.
const SERVICE: &str = "dsql";
/// The only algorithm DSQL tokens use.
const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The SHA-256 of the empty payload: the SDK presigns `GET` with an empty body
/// (`SignableBody::Bytes(&[])`), not `UNSIGNED-PAYLOAD`.
const EMPTY_PAYLOAD_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// Longest excerpt of a client-supplied value quoted in a rejection message.
const EXCERPT_CHARS: usize = 64;

/// SigV4's URI encoding: everything but the unreserved characters `A-Z a-z 0-9 - _ . ~`.
const SIGV4_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

type HmacSha256 = Hmac<Sha256>;

/// The gateway's access key: the id tokens name in `X-Amz-Credential` and the secret they are
/// signed with. `Debug` shows the id only.
#[derive(Clone)]
pub struct KeyPair {
    access_key_id: String,
    secret_access_key: String,
}

impl KeyPair {
    /// A key pair from an access key id (e.g. `AKIA...` or `test`) and its secret.
    #[must_use]
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Self { access_key_id: access_key_id.into(), secret_access_key: secret_access_key.into() }
    }

    /// The access key id (public; it is in every token).
    #[must_use]
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// What a token allows: `DbConnectAdmin` for the `admin` role, `DbConnect` for every other role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// IAM action `dsql:DbConnect`: connect as a custom role.
    DbConnect,
    /// IAM action `dsql:DbConnectAdmin`: connect as `admin`.
    DbConnectAdmin,
}

impl Action {
    /// The action a token must carry to connect as `user`: `DbConnectAdmin` for `admin`
    /// (role names are case-sensitive, as in PostgreSQL), `DbConnect` for any other role.
    #[must_use]
    pub fn for_user(user: &str) -> Self {
        if user == "admin" { Self::DbConnectAdmin } else { Self::DbConnect }
    }

    /// The value of the token's `Action` parameter.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DbConnect => "DbConnect",
            Self::DbConnectAdmin => "DbConnectAdmin",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value {
            "DbConnect" => Some(Self::DbConnect),
            "DbConnectAdmin" => Some(Self::DbConnectAdmin),
            _ => None,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The action the token carries (the one the user needs).
    pub action: Action,
    /// The access key id that signed it.
    pub access_key_id: String,
    /// When the token stops being accepted for new connections (an established connection
    /// outlives it, as on DSQL).
    pub expires_at: SystemTime,
}

/// Why a token was refused. The message is for the gateway's log: it names the part that was
/// wrong and never contains the secret, the signature or the session token.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    /// The token is not a DSQL presigned URL (missing or duplicated parameters, bad date,
    /// non-hex signature, ...).
    #[error("malformed auth token: {reason}")]
    Malformed {
        /// What is wrong with it.
        reason: String,
    },
    /// The token was valid but its lifetime is over.
    #[error(
        "auth token expired {seconds_ago}s ago (X-Amz-Date {signed_at}, X-Amz-Expires {expires_in}s); generate a fresh token, and check the client's clock if fresh tokens expire too"
    )]
    Expired {
        /// The token's `X-Amz-Date`.
        signed_at: String,
        /// The token's `X-Amz-Expires`, in seconds.
        expires_in: u64,
        /// How long ago it expired, in seconds.
        seconds_ago: u64,
    },
    /// The token's `X-Amz-Date` is further in the future than [`MAX_CLOCK_SKEW`].
    #[error(
        "auth token is signed {seconds_ahead}s in the future (X-Amz-Date {signed_at}); the client's clock is ahead of the gateway's by more than {}s",
        MAX_CLOCK_SKEW.as_secs()
    )]
    NotYetValid {
        /// The token's `X-Amz-Date`.
        signed_at: String,
        /// How far ahead of the gateway's clock it is, in seconds.
        seconds_ahead: u64,
    },
    /// The token's action does not fit the role (`admin` needs `DbConnectAdmin`, every other
    /// role `DbConnect`).
    #[error(
        "auth token is for {found} but this user needs {expected} (admin connects with a DbConnectAdmin token, every other role with DbConnect)"
    )]
    WrongAction {
        /// The action the user needs.
        expected: Action,
        /// The action in the token.
        found: Action,
    },
    /// The token was generated for a host the gateway does not answer to.
    #[error(
        "auth token is for host {found:?}, but this gateway answers to {expected:?}; generate the token for the host the client connects to"
    )]
    WrongHost {
        /// The token's host (without port, as sent).
        found: String,
        /// The names the gateway answers to.
        expected: Vec<String>,
    },
    /// The token's credential scope names another region.
    #[error("auth token is signed for region {found:?}, but this gateway is in {expected:?}")]
    WrongRegion {
        /// The region in the token's credential scope.
        found: String,
        /// The gateway's region.
        expected: String,
    },
    /// The token's credential scope names another service than `dsql`.
    #[error("auth token is signed for service {found:?}, not \"dsql\"")]
    WrongService {
        /// The service in the token's credential scope.
        found: String,
    },
    /// The token names an access key id the gateway does not have.
    #[error("auth token is signed with access key id {found:?}, but this gateway's key is {expected:?}")]
    UnknownAccessKey {
        /// The access key id in the token.
        found: String,
        /// The gateway's access key id.
        expected: String,
    },
    /// The signature does not match: the token was signed with another secret or altered.
    #[error(
        "auth token signature does not match: it was signed with another secret key or altered after signing"
    )]
    BadSignature,
    /// `X-Amz-Expires` is longer than SigV4 allows ([`MAX_EXPIRES_SECS`]).
    #[error(
        "auth token X-Amz-Expires is {expires_in}s, longer than the {MAX_EXPIRES_SECS}s (one week) SigV4 allows"
    )]
    ExpiryTooLong {
        /// The token's `X-Amz-Expires`, in seconds.
        expires_in: u64,
    },
}

impl TokenRejection {
    /// Whether the token was refused only because its lifetime is over (DSQL then adds
    /// `HINT: Signature expired`).
    #[must_use]
    pub fn is_expired(&self) -> bool {
        matches!(self, Self::Expired { .. })
    }

    /// A short `snake_case` label for metrics and logs, e.g. `expired`, `wrong_host`.
    #[must_use]
    pub fn rule(&self) -> &'static str {
        match self {
            Self::Malformed { .. } => "malformed",
            Self::Expired { .. } => "expired",
            Self::NotYetValid { .. } => "not_yet_valid",
            Self::WrongAction { .. } => "wrong_action",
            Self::WrongHost { .. } => "wrong_host",
            Self::WrongRegion { .. } => "wrong_region",
            Self::WrongService { .. } => "wrong_service",
            Self::UnknownAccessKey { .. } => "unknown_access_key",
            Self::BadSignature => "bad_signature",
            Self::ExpiryTooLong { .. } => "expiry_too_long",
        }
    }

    /// What the client sees: DSQL's `access denied`, with `HINT: Signature expired` when the
    /// token had expired.
    #[must_use]
    pub fn to_sql_error(&self) -> SqlError {
        SqlError::access_denied(self.is_expired())
    }
}

fn malformed(reason: impl Into<String>) -> TokenRejection {
    TokenRejection::Malformed { reason: reason.into() }
}

/// A client-supplied value quoted in a message: escaped and cut to [`EXCERPT_CHARS`].
fn excerpt(value: &str) -> String {
    let mut chars = value.chars();
    let head: String = chars.by_ref().take(EXCERPT_CHARS).collect();
    if chars.next().is_some() { format!("{head:?}...") } else { format!("{head:?}") }
}

/// Checks tokens against the gateway's region, host names and key pair.
#[derive(Debug, Clone)]
pub struct TokenVerifier {
    region: String,
    hosts: Vec<String>,
    keys: KeyPair,
}

impl TokenVerifier {
    /// A verifier for a gateway in `region` that answers to `hosts` (a token's host must be one
    /// of them, compared case-insensitively and without port; an empty list refuses every
    /// token), with the local key pair `keys`.
    #[must_use]
    pub fn new(region: impl Into<String>, hosts: Vec<String>, keys: KeyPair) -> Self {
        let hosts = hosts.iter().map(|host| strip_port(host).to_ascii_lowercase()).collect();
        Self { region: region.into(), hosts, keys }
    }

    /// Verifies `token` (the password of a connection as `user`) at time `now`.
    ///
    /// Checks, in order: the shape of the token ([`TokenRejection::Malformed`],
    /// [`TokenRejection::ExpiryTooLong`]), the credential scope (service, region, access key),
    /// the host, the action for `user`, the signature, and last the validity window, so that
    /// [`TokenRejection::Expired`] is only said of a token that is otherwise genuine.
    ///
    /// # Errors
    /// A [`TokenRejection`] naming the first check that failed.
    pub fn verify(&self, token: &str, user: &str, now: SystemTime) -> Result<VerifiedToken, TokenRejection> {
        let parsed = ParsedToken::parse(token)?;

        if parsed.service != SERVICE {
            return Err(TokenRejection::WrongService { found: excerpt_raw(&parsed.service) });
        }
        if parsed.region != self.region {
            return Err(TokenRejection::WrongRegion {
                found: excerpt_raw(&parsed.region),
                expected: self.region.clone(),
            });
        }
        if parsed.access_key_id != self.keys.access_key_id {
            return Err(TokenRejection::UnknownAccessKey {
                found: excerpt_raw(&parsed.access_key_id),
                expected: self.keys.access_key_id.clone(),
            });
        }
        let host = strip_port(&parsed.host);
        if !self.hosts.iter().any(|known| known.eq_ignore_ascii_case(host)) {
            return Err(TokenRejection::WrongHost { found: excerpt_raw(host), expected: self.hosts.clone() });
        }
        let expected = Action::for_user(user);
        if parsed.action != expected {
            return Err(TokenRejection::WrongAction { expected, found: parsed.action });
        }

        self.check_signature(&parsed)?;

        let now_secs = now.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs());
        if parsed.signed_at_secs > now_secs.saturating_add(MAX_CLOCK_SKEW.as_secs()) {
            return Err(TokenRejection::NotYetValid {
                signed_at: parsed.amz_date.clone(),
                seconds_ahead: parsed.signed_at_secs - now_secs,
            });
        }
        // Accepted up to and including the last second of its lifetime.
        let expires_at_secs = parsed.signed_at_secs + parsed.expires_in;
        if now_secs > expires_at_secs {
            return Err(TokenRejection::Expired {
                signed_at: parsed.amz_date.clone(),
                expires_in: parsed.expires_in,
                seconds_ago: now_secs - expires_at_secs,
            });
        }

        Ok(VerifiedToken {
            action: parsed.action,
            access_key_id: parsed.access_key_id,
            expires_at: UNIX_EPOCH + Duration::from_secs(expires_at_secs),
        })
    }

    /// Recomputes the SigV4 signature of the token's canonical request with the local secret and
    /// compares it with the token's in constant time.
    fn check_signature(&self, parsed: &ParsedToken) -> Result<(), TokenRejection> {
        let expected = signature(
            &self.keys.secret_access_key,
            &self.region,
            &parsed.scope_date,
            &parsed.amz_date,
            &parsed.host,
            &parsed.canonical_query,
        );
        // Constant time: every byte is compared whatever the first difference.
        let difference = expected.iter().zip(parsed.signature).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if difference == 0 { Ok(()) } else { Err(TokenRejection::BadSignature) }
    }
}

/// The SigV4 signature of a presigned `GET https://<host>/?<canonical_query>` for service `dsql`,
/// signed header `host` and the empty payload, as aws-sdk-dsql's token generator signs it.
fn signature(
    secret: &str,
    region: &str,
    scope_date: &str,
    amz_date: &str,
    host: &str,
    canonical_query: &str,
) -> [u8; 32] {
    let canonical_request = format!("GET\n/\n{canonical_query}\nhost:{host}\n\nhost\n{EMPTY_PAYLOAD_SHA256}");
    let scope = format!("{scope_date}/{region}/{SERVICE}/aws4_request");
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{hash}",
        hash = hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let date_key = hmac(format!("AWS4{secret}").as_bytes(), scope_date.as_bytes());
    let region_key = hmac(&date_key, region.as_bytes());
    let service_key = hmac(&region_key, SERVICE.as_bytes());
    let signing_key = hmac(&service_key, b"aws4_request");
    hmac(&signing_key, string_to_sign.as_bytes())
}

/// Why a token could not be signed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The lifetime is outside what DSQL accepts.
    #[error("a token lifetime of {0:?} is outside 1 s to 1 week (604800 s)")]
    Lifetime(Duration),
    /// The clock is before 1970.
    #[error("the system clock is before 1970")]
    Clock,
}

/// Signs an IAM auth token for `host` as aws-sdk-dsql does (a SigV4 presigned URL without its
/// `https://`), with the local key pair: the password for a client of the gateway that has no
/// AWS SDK (psql, the fork's `go test` runs). `DbConnectAdmin` for `admin`, `DbConnect` otherwise.
///
/// # Errors
/// A lifetime outside 1 s ..= 1 week, or a clock before 1970.
pub fn sign_token(
    keys: &KeyPair,
    host: &str,
    region: &str,
    action: Action,
    expires_in: Duration,
    now: SystemTime,
) -> Result<String, SignError> {
    let secs = expires_in.as_secs();
    if !(1..=MAX_EXPIRES_SECS).contains(&secs) {
        return Err(SignError::Lifetime(expires_in));
    }
    let unix = now.duration_since(UNIX_EPOCH).map_err(|_| SignError::Clock)?.as_secs();
    let (year, month, day) = civil_from_days(unix / 86_400);
    let of_day = unix % 86_400;
    let scope_date = format!("{year:04}{month:02}{day:02}");
    let amz_date = format!("{scope_date}T{:02}{:02}{:02}Z", of_day / 3600, of_day / 60 % 60, of_day % 60);
    let credential = format!("{}/{scope_date}/{region}/{SERVICE}/aws4_request", keys.access_key_id);
    let params = [
        ("Action", action.as_str().to_owned()),
        ("X-Amz-Algorithm", ALGORITHM.to_owned()),
        ("X-Amz-Credential", credential),
        ("X-Amz-Date", amz_date.clone()),
        ("X-Amz-Expires", secs.to_string()),
        ("X-Amz-SignedHeaders", "host".to_owned()),
    ];
    // Already in canonical (sorted) order.
    let query = params
        .iter()
        .map(|(name, value)| format!("{name}={}", percent_encode(value.as_bytes(), SIGV4_ENCODE)))
        .collect::<Vec<_>>()
        .join("&");
    let signature = signature(&keys.secret_access_key, region, &scope_date, &amz_date, host, &query);
    Ok(format!("{host}/?{query}&X-Amz-Signature={}", hex(&signature)))
}

/// Year, month and day of the `days`-th day after 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Howard Hinnant's algorithm, shifted to start the era on 0000-03-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// HMAC-SHA256 of `data` under `key`.
fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// A client-supplied value kept in a rejection: cut to [`EXCERPT_CHARS`] (the `{:?}` of the
/// message escapes it).
fn excerpt_raw(value: &str) -> String {
    value.chars().take(EXCERPT_CHARS).collect()
}

/// `host` without a `:port` (`[v6]:port` keeps its brackets).
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// The parts of a token, decoded.
#[derive(Debug)]
struct ParsedToken {
    host: String,
    action: Action,
    access_key_id: String,
    scope_date: String,
    region: String,
    service: String,
    amz_date: String,
    signed_at_secs: u64,
    expires_in: u64,
    signature: [u8; 32],
    /// Every parameter but `X-Amz-Signature`, SigV4-encoded, sorted and joined.
    canonical_query: String,
}

/// The decoded `(name, value)` pairs of the query string, in order.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: &str) -> Result<Self, TokenRejection> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for piece in query.split('&').filter(|piece| !piece.is_empty()) {
            if pairs.len() == MAX_PARAMS {
                return Err(malformed(format!("more than {MAX_PARAMS} query parameters")));
            }
            let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
            let name = form_decode(name)?;
            let value = form_decode(value)?;
            if pairs.iter().any(|(seen, _)| *seen == name) {
                return Err(malformed(format!("parameter {} appears more than once", excerpt(&name))));
            }
            pairs.push((name, value));
        }
        Ok(Self(pairs))
    }

    fn get(&self, name: &str) -> Result<&str, TokenRejection> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .ok_or_else(|| malformed(format!("missing the {name} parameter")))
    }

    /// The canonical query string: every parameter but the signature, names and values
    /// SigV4-encoded, sorted by encoded name then value.
    fn canonical_query(&self) -> String {
        let mut encoded: Vec<(String, String)> = self
            .0
            .iter()
            .filter(|(name, _)| name != "X-Amz-Signature")
            .map(|(name, value)| {
                (
                    percent_encode(name.as_bytes(), SIGV4_ENCODE).to_string(),
                    percent_encode(value.as_bytes(), SIGV4_ENCODE).to_string(),
                )
            })
            .collect();
        encoded.sort();
        let mut query = String::new();
        for (name, value) in encoded {
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str(&name);
            query.push('=');
            query.push_str(&value);
        }
        query
    }
}

/// Decodes one name or value of an `application/x-www-form-urlencoded` query, as the SDK's URL
/// builder encoded it (`+` is a space).
fn form_decode(raw: &str) -> Result<String, TokenRejection> {
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(std::borrow::Cow::into_owned)
        .map_err(|_| malformed("a query parameter is not UTF-8 after percent-decoding"))
}

impl ParsedToken {
    fn parse(token: &str) -> Result<Self, TokenRejection> {
        if token.is_empty() {
            return Err(malformed("the token is empty"));
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(malformed(format!(
                "the token is {} bytes, longer than {MAX_TOKEN_BYTES}",
                token.len()
            )));
        }
        let (host, query) = token
            .split_once("/?")
            .ok_or_else(|| malformed("no \"/?\" after the host (expected <host>/?Action=...)"))?;
        if host.is_empty() {
            return Err(malformed("no host before \"/?\""));
        }
        if !host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b)) {
            return Err(malformed(format!(
                "the host {} has characters a host name cannot have",
                excerpt(host)
            )));
        }
        let params = Params::parse(query)?;

        let action_value = params.get("Action")?;
        let action = Action::parse(action_value).ok_or_else(|| {
            malformed(format!("Action is {}, expected DbConnect or DbConnectAdmin", excerpt(action_value)))
        })?;
        let algorithm = params.get("X-Amz-Algorithm")?;
        if algorithm != ALGORITHM {
            return Err(malformed(format!(
                "X-Amz-Algorithm is {}, expected {ALGORITHM}",
                excerpt(algorithm)
            )));
        }
        let signed_headers = params.get("X-Amz-SignedHeaders")?;
        if signed_headers != "host" {
            return Err(malformed(format!(
                "X-Amz-SignedHeaders is {}, expected \"host\"",
                excerpt(signed_headers)
            )));
        }

        let amz_date = params.get("X-Amz-Date")?;
        let signed_at_secs = parse_amz_date(amz_date).ok_or_else(|| {
            malformed(format!("X-Amz-Date is {}, expected yyyymmddTHHMMSSZ (UTC)", excerpt(amz_date)))
        })?;

        let expires_value = params.get("X-Amz-Expires")?;
        let expires_in = parse_expires(expires_value)?;

        let credential = params.get("X-Amz-Credential")?;
        let scope: Vec<&str> = credential.split('/').collect();
        let [access_key_id, scope_date, region, service, terminator] = scope[..] else {
            return Err(malformed(format!(
                "X-Amz-Credential has {} parts, expected <access key id>/<yyyymmdd>/<region>/dsql/aws4_request",
                scope.len()
            )));
        };
        if access_key_id.is_empty() || region.is_empty() {
            return Err(malformed("X-Amz-Credential has an empty access key id or region"));
        }
        if terminator != "aws4_request" {
            return Err(malformed(format!(
                "X-Amz-Credential ends with {}, expected aws4_request",
                excerpt(terminator)
            )));
        }
        if scope_date != &amz_date[..8] {
            return Err(malformed(format!(
                "X-Amz-Credential's date {} is not the day of X-Amz-Date {amz_date}",
                excerpt(scope_date)
            )));
        }

        let signature_hex = params.get("X-Amz-Signature")?;
        let signature = parse_signature(signature_hex).ok_or_else(|| {
            malformed(format!(
                "X-Amz-Signature is not 64 hex digits ({} characters)",
                signature_hex.chars().count()
            ))
        })?;

        Ok(Self {
            host: host.to_owned(),
            action,
            access_key_id: access_key_id.to_owned(),
            scope_date: scope_date.to_owned(),
            region: region.to_owned(),
            service: service.to_owned(),
            amz_date: amz_date.to_owned(),
            signed_at_secs,
            expires_in,
            signature,
            canonical_query: params.canonical_query(),
        })
    }
}

/// `X-Amz-Expires`: decimal seconds, 1 to [`MAX_EXPIRES_SECS`].
fn parse_expires(value: &str) -> Result<u64, TokenRejection> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed(format!("X-Amz-Expires is {}, expected a number of seconds", excerpt(value))));
    }
    // All digits: the only parse failure left is overflow, which is too long as well.
    let expires_in = value.parse::<u64>().unwrap_or(u64::MAX);
    if expires_in == 0 {
        return Err(malformed("X-Amz-Expires is 0, expected at least 1 second"));
    }
    if expires_in > MAX_EXPIRES_SECS {
        return Err(TokenRejection::ExpiryTooLong { expires_in });
    }
    Ok(expires_in)
}

/// 64 hex digits (either case) to the 32 signature bytes.
fn parse_signature(value: &str) -> Option<[u8; 32]> {
    let digits = value.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let mut signature = [0_u8; 32];
    for (byte, pair) in signature.iter_mut().zip(digits.chunks_exact(2)) {
        let high = char::from(pair[0]).to_digit(16)?;
        let low = char::from(pair[1]).to_digit(16)?;
        *byte = u8::try_from(high * 16 + low).ok()?;
    }
    Some(signature)
}

/// `yyyymmddTHHMMSSZ` (UTC) to seconds since the Unix epoch; `None` unless it is exactly that
/// shape and a real date and time from 1970 on.
fn parse_amz_date(value: &str) -> Option<u64> {
    let bytes = value.as_bytes();
    if bytes.len() != 16 || bytes[8] != b'T' || bytes[15] != b'Z' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let digits = &bytes[range];
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(digits.iter().fold(0, |acc, digit| acc * 10 + u32::from(digit - b'0')))
    };
    let year = number(0..4)?;
    let month = number(4..6)?;
    let day = number(6..8)?;
    let hour = number(9..11)?;
    let minute = number(11..13)?;
    let second = number(13..15)?;
    if year < 1970 || !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + u64::from(hour * 3600 + minute * 60 + second))
}

fn is_leap_year(year: u32) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (year >= 1970): whole
/// years, then whole months of the year, then the day.
fn days_from_civil(year: u32, month: u32, day: u32) -> u64 {
    let years = u64::from(year - 1970);
    // Leap days in 1970..year: leap years counted up to year - 1, minus those before 1970.
    let leaps_before = |y: u64| y / 4 - y / 100 + y / 400;
    let leap_days = leaps_before(u64::from(year) - 1) - leaps_before(1969);
    let month_days: u32 = (1..month).map(|m| days_in_month(year, m)).sum();
    years * 365 + leap_days + u64::from(month_days) + u64::from(day - 1)
}

#[cfg(test)]
mod sign_tests {
    use super::*;

    #[test]
    fn signed_tokens_verify_and_only_with_the_right_key() {
        let keys = KeyPair::new("AKIDLOCAL", "local-secret");
        let now = UNIX_EPOCH + Duration::from_secs(1_796_300_000);
        let token = sign_token(
            &keys,
            "localhost",
            "us-east-1",
            Action::DbConnectAdmin,
            Duration::from_secs(900),
            now,
        )
        .unwrap();
        let verifier = TokenVerifier::new("us-east-1", vec!["localhost".to_owned()], keys);
        verifier.verify(&token, "admin", now + Duration::from_secs(10)).expect("our own token verifies");
        let other =
            TokenVerifier::new("us-east-1", vec!["localhost".to_owned()], KeyPair::new("AKIDLOCAL", "other"));
        assert!(matches!(other.verify(&token, "admin", now), Err(TokenRejection::BadSignature)));
        assert!(verifier.verify(&token, "admin", now + Duration::from_secs(901)).unwrap_err().is_expired());
        assert!(
            sign_token(&KeyPair::new("a", "b"), "h", "r", Action::DbConnect, Duration::ZERO, now).is_err()
        );
    }

    #[test]
    fn civil_dates_round_trip() {
        for days in [0, 59, 60, 365, 10_957, 11_016, 20_000, 20_790] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(
                days_from_civil(
                    u32::try_from(y).unwrap(),
                    u32::try_from(m).unwrap(),
                    u32::try_from(d).unwrap()
                ),
                days
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdks_own_fixed_vector_verifies() {
        // aws-sdk-dsql 1.79.0 `src/auth_token.rs` test `signing_works`: key "akid"/"secret",
        // signed at 1724716800 (2024-08-27T00:00:00Z) for 450 s.
        let token = "peccy.dsql.us-east-1.on.aws/?Action=DbConnect&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=akid%2F20240827%2Fus-east-1%2Fdsql%2Faws4_request&X-Amz-Date=20240827T000000Z&X-Amz-Expires=450&X-Amz-SignedHeaders=host&X-Amz-Signature=f5f2ad764ca5df44045d4ab6ccecba0eef941b0007e5765885a0b6ed3702a3f8";
        let verifier = TokenVerifier::new(
            "us-east-1",
            vec!["peccy.dsql.us-east-1.on.aws".to_owned()],
            KeyPair::new("akid", "secret"),
        );
        let signed_at = UNIX_EPOCH + Duration::from_secs(1_724_716_800);
        let verified = verifier.verify(token, "app", signed_at).expect("the SDK's vector verifies");
        assert_eq!(verified.expires_at, signed_at + Duration::from_secs(450));
        assert_eq!(verified.action, Action::DbConnect);
    }

    #[test]
    fn amz_dates_convert_to_unix_seconds() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20240827T000000Z"), Some(1_724_716_800));
        assert_eq!(parse_amz_date("20000229T235959Z"), Some(951_868_799));
        assert_eq!(parse_amz_date("21000301T000000Z"), Some(4_107_542_400));
        for bad in [
            "19691231T235959Z",
            "21000229T000000Z",
            "20240827T240000Z",
            "20240827T000060Z",
            "2024-08-27T0000Z",
            "20240827 000000Z",
            "２0240827T00000Z",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn ports_are_stripped_from_hosts() {
        assert_eq!(strip_port("localhost:5432"), "localhost");
        assert_eq!(strip_port("localhost"), "localhost");
        assert_eq!(strip_port("[::1]:5432"), "[::1]");
        assert_eq!(strip_port("host:"), "host:");
    }

    #[test]
    fn only_admin_needs_db_connect_admin() {
        assert_eq!(Action::for_user("admin"), Action::DbConnectAdmin);
        for user in ["app", "Admin", "admin ", ""] {
            assert_eq!(Action::for_user(user), Action::DbConnect, "{user:?}");
        }
    }
}
