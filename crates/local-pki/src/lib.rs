//! The local CA and the gateway's certificate, so clients can verify the gateway as they verify
//! DSQL (`verify-full`: chain and host name; `../shared/reference/aurora-dsql-platform.md`
//! section 2.2), only with the local CA instead of Amazon Root CA 1.
//!
//! [`ensure_pki`] keeps a directory of four PEM files up to date: it keeps a valid CA (clients
//! already trust it) and issues the server certificate when it is missing, names other hosts,
//! or expires within [`RENEW_BEFORE_DAYS`]. Every file is written to a temporary file in the same
//! directory and renamed over the old one; private keys are created with mode 0600.

use std::collections::BTreeSet;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;

/// How long the CA is valid, in days (about ten years).
pub const CA_VALIDITY_DAYS: u64 = 3652;
/// How long a server certificate is valid, in days (about one year).
pub const SERVER_VALIDITY_DAYS: u64 = 365;
/// A certificate that expires within this many days is replaced by [`ensure_pki`].
pub const RENEW_BEFORE_DAYS: u64 = 30;

const SECS_PER_DAY: u64 = 86_400;

/// A certificate and its private key, both PEM. `Debug` does not show the key.
#[derive(Clone, PartialEq, Eq)]
pub struct CertifiedKeyPem {
    /// The certificate, PEM (`-----BEGIN CERTIFICATE-----`).
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub key_pem: String,
}

impl fmt::Debug for CertifiedKeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertifiedKeyPem")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Where [`ensure_pki`] keeps the four files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiPaths {
    /// The CA certificate (`ca.crt`): what clients trust (`sslrootcert`).
    pub ca_cert: PathBuf,
    /// The CA private key (`ca.key`, mode 0600).
    pub ca_key: PathBuf,
    /// The gateway's certificate (`server.crt`).
    pub server_cert: PathBuf,
    /// The gateway's private key (`server.key`, mode 0600).
    pub server_key: PathBuf,
}

impl PkiPaths {
    /// The four paths inside `dir`.
    #[must_use]
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
        }
    }
}

/// What [`ensure_pki`] did to one certificate (and its key).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// There was none; a new one was written.
    Created,
    /// The existing one is still good and was left as it was.
    Kept,
    /// The existing one was replaced.
    Replaced(ReplaceReason),
}

/// Why [`ensure_pki`] replaced a certificate.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplaceReason {
    /// It expires within [`RENEW_BEFORE_DAYS`] (or has expired).
    ExpiresSoon {
        /// Whole days left (0 when expired).
        days_left: u64,
    },
    /// The server certificate names other hosts than asked for.
    NamesChanged {
        /// The names it had.
        previous: Vec<String>,
    },
    /// The CA was created or replaced, so the server certificate had to be issued by it.
    NewCa,
    /// The server certificate was unreadable, did not match its key, or was not issued by the CA.
    Invalid {
        /// What was wrong.
        reason: String,
    },
}

/// What [`ensure_pki`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiChange {
    /// The CA.
    pub ca: Change,
    /// The server certificate.
    pub server: Change,
}

/// A certificate could not be made, read, written or used.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// No name was given for the server certificate.
    #[error("no host name for the gateway certificate; give at least one DNS name or IP address")]
    NoNames,
    /// A name cannot be a DNS name or IP address SAN.
    #[error(
        "{name:?} cannot be a certificate name; use a DNS name (e.g. localhost) or an IP address (e.g. 127.0.0.1)"
    )]
    InvalidName {
        /// The name.
        name: String,
        /// What rcgen said.
        #[source]
        source: rcgen::Error,
    },
    /// rcgen failed to make a key or a certificate.
    #[error("could not generate the {what}")]
    Generate {
        /// What was being generated.
        what: &'static str,
        /// What rcgen said.
        #[source]
        source: rcgen::Error,
    },
    /// A file or directory could not be read or written.
    #[error("could not {action} {path}")]
    Io {
        /// What was being done (`write`, `read`, `create directory`, ...).
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// An existing CA cannot be used; it is never replaced silently since clients trust it.
    #[error(
        "the CA in {path} cannot be used: {reason}; delete {path} and its key to create a new CA (clients must then trust the new one)"
    )]
    InvalidCa {
        /// The CA certificate's path.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A PEM file does not hold what it should.
    #[error("{path} is not a PEM {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What it should hold.
        what: &'static str,
        /// What the PEM parser said.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// rustls refused the certificate, key or roots.
    #[error("rustls refused the TLS configuration")]
    Tls(#[source] rustls::Error),
}

/// A CA certificate (`CN=<common_name>`) and its new key: `keyCertSign` and `cRLSign`, valid for
/// [`CA_VALIDITY_DAYS`] from yesterday (for clocks a little behind).
///
/// # Errors
/// [`CertError::Generate`] if rcgen fails.
pub fn generate_ca(common_name: &str) -> Result<CertifiedKeyPem, CertError> {
    generate_ca_at(common_name, SystemTime::now())
}

fn generate_ca_at(common_name: &str, now: SystemTime) -> Result<CertifiedKeyPem, CertError> {
    let what = "CA certificate";
    let key = KeyPair::generate().map_err(|source| CertError::Generate { what, source })?;
    let mut params = CertificateParams::default();
    params.distinguished_name.remove(DnType::CommonName);
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_validity(&mut params, now, CA_VALIDITY_DAYS);
    let cert = params.self_signed(&key).map_err(|source| CertError::Generate { what, source })?;
    Ok(CertifiedKeyPem { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// A server certificate issued by `ca` for `names` (each a DNS name or, when it parses as one,
/// an IP address SAN; the first is also the common name), with a new key, `serverAuth`, valid
/// for [`SERVER_VALIDITY_DAYS`] from yesterday.
///
/// # Errors
/// [`CertError::NoNames`], [`CertError::InvalidName`], or [`CertError::Generate`] (also when
/// `ca` is not a usable CA certificate and key).
pub fn issue_server_cert(ca: &CertifiedKeyPem, names: &[String]) -> Result<CertifiedKeyPem, CertError> {
    issue_server_cert_for(ca, names, SystemTime::now(), SERVER_VALIDITY_DAYS)
}

fn issue_server_cert_for(
    ca: &CertifiedKeyPem,
    names: &[String],
    now: SystemTime,
    days: u64,
) -> Result<CertifiedKeyPem, CertError> {
    let what = "server certificate";
    let first = names.first().ok_or(CertError::NoNames)?;
    let mut params = CertificateParams::default();
    for name in names {
        params.subject_alt_names.push(
            CertificateParams::new(vec![name.clone()])
                .map_err(|source| CertError::InvalidName { name: name.clone(), source })?
                .subject_alt_names
                .remove(0),
        );
    }
    params.distinguished_name.remove(DnType::CommonName);
    params.distinguished_name.push(DnType::CommonName, first.as_str());
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, now, days);

    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(|source| CertError::Generate { what, source })?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)
        .map_err(|source| CertError::Generate { what, source })?;
    let key = KeyPair::generate().map_err(|source| CertError::Generate { what, source })?;
    let cert = params.signed_by(&key, &issuer).map_err(|source| CertError::Generate { what, source })?;
    Ok(CertifiedKeyPem { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// From the start of yesterday (UTC) to `days` later.
fn set_validity(params: &mut CertificateParams, now: SystemTime, days: u64) {
    let today = now.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs() / SECS_PER_DAY);
    let start = today.saturating_sub(1);
    let date = |day: u64| {
        let (year, month, day) = civil_from_days(day);
        rcgen::date_time_ymd(year, month, day)
    };
    params.not_before = date(start);
    params.not_after = date(start + days);
}

/// The (year, month, day) of a day counted from 1970-01-01.
fn civil_from_days(mut days: u64) -> (i32, u8, u8) {
    let leap = |year: i32| (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let mut year = 1970;
    loop {
        let in_year = if leap(year) { 366 } else { 365 };
        if days < in_year {
            break;
        }
        days -= in_year;
        year += 1;
    }
    let lengths = [31, if leap(year) { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let mut month = 1;
    for length in lengths {
        if days < length {
            break;
        }
        days -= length;
        month += 1;
    }
    // days < 31 and month <= 12 here.
    (year, month, u8::try_from(days + 1).unwrap_or(1))
}

/// Makes sure `dir` holds a CA and a server certificate for exactly `names` that is valid for
/// more than [`RENEW_BEFORE_DAYS`], creating `dir` (mode 0700) if needed.
///
/// A valid CA is always kept; one that expires within [`RENEW_BEFORE_DAYS`] is replaced (and
/// the server certificate with it); an unusable one is an error rather than silently replaced.
/// Names are compared as a set (DNS names case-insensitively). Keys are written with mode 0600,
/// existing key files are narrowed to 0600.
///
/// # Errors
/// [`CertError::Io`] naming the path that could not be read or written (the old file is then
/// intact), [`CertError::InvalidCa`], or the errors of [`generate_ca`] and [`issue_server_cert`].
pub fn ensure_pki(dir: &Path, names: &[String]) -> Result<(PkiPaths, PkiChange), CertError> {
    ensure_pki_at(dir, names, SystemTime::now())
}

fn ensure_pki_at(dir: &Path, names: &[String], now: SystemTime) -> Result<(PkiPaths, PkiChange), CertError> {
    if names.is_empty() {
        return Err(CertError::NoNames);
    }
    if !dir.is_dir() {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|source| CertError::Io {
            action: "create directory",
            path: dir.to_owned(),
            source,
        })?;
    }
    let paths = PkiPaths::in_dir(dir);
    let now_secs = now.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs());

    let (ca, ca_change) = match load_ca(&paths, now_secs)? {
        CaState::Valid(ca) => (ca, Change::Kept),
        CaState::Missing => (generate_ca_at(&ca_common_name(now), now)?, Change::Created),
        CaState::ExpiresSoon(days_left) => (
            generate_ca_at(&ca_common_name(now), now)?,
            Change::Replaced(ReplaceReason::ExpiresSoon { days_left }),
        ),
    };
    if ca_change != Change::Kept {
        write_atomically(&paths.ca_key, ca.key_pem.as_bytes(), 0o600)?;
        write_atomically(&paths.ca_cert, ca.cert_pem.as_bytes(), 0o644)?;
    }

    let server_change = if ca_change == Change::Kept {
        match server_cert_state(&paths, &ca, names, now_secs)? {
            None => Change::Kept,
            Some(change) => change,
        }
    } else if paths.server_cert.exists() {
        Change::Replaced(ReplaceReason::NewCa)
    } else {
        Change::Created
    };
    if server_change != Change::Kept {
        let server = issue_server_cert_for(&ca, names, now, SERVER_VALIDITY_DAYS)?;
        write_atomically(&paths.server_key, server.key_pem.as_bytes(), 0o600)?;
        write_atomically(&paths.server_cert, server.cert_pem.as_bytes(), 0o644)?;
    }
    narrow_key_mode(&paths.ca_key)?;
    narrow_key_mode(&paths.server_key)?;
    Ok((paths, PkiChange { ca: ca_change, server: server_change }))
}

/// `dsql-local CA <8 hex digits>`: a name of its own for each CA, so two local CAs in one trust
/// store are told apart (same-named roots make a verifier report a bad signature instead of an
/// unknown issuer).
fn ca_common_name(now: SystemTime) -> String {
    let nanos = now.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_nanos());
    let seed = format!("{nanos} {} {:?}", std::process::id(), std::thread::current().id());
    let digest = Sha256::digest(seed.as_bytes());
    format!("dsql-local CA {:02x}{:02x}{:02x}{:02x}", digest[0], digest[1], digest[2], digest[3])
}

enum CaState {
    Missing,
    Valid(CertifiedKeyPem),
    ExpiresSoon(u64),
}

/// Reads the CA files if both exist.
fn load_ca(paths: &PkiPaths, now_secs: u64) -> Result<CaState, CertError> {
    let cert_pem = read_optional(&paths.ca_cert)?;
    let key_pem = read_optional(&paths.ca_key)?;
    let invalid = |reason: String| CertError::InvalidCa { path: paths.ca_cert.clone(), reason };
    let (cert_pem, key_pem) = match (cert_pem, key_pem) {
        (None, None) => return Ok(CaState::Missing),
        (Some(cert), Some(key)) => (cert, key),
        (Some(_), None) => return Err(invalid(format!("its key {} is missing", paths.ca_key.display()))),
        (None, Some(_)) => {
            return Err(invalid(format!("it is missing but its key {} exists", paths.ca_key.display())));
        }
    };
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|error| invalid(format!("no PEM certificate in it ({error})")))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|error| invalid(format!("the certificate does not parse ({error})")))?;
    if !cert.is_ca() {
        return Err(invalid("it is not a CA certificate (no basicConstraints CA:TRUE)".to_owned()));
    }
    let key = KeyPair::from_pem(&key_pem)
        .map_err(|error| invalid(format!("its key {} does not parse ({error})", paths.ca_key.display())))?;
    if cert.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err(invalid(format!("its key {} is not the certificate's key", paths.ca_key.display())));
    }
    let days_left = days_left(cert.validity().not_after.timestamp(), now_secs);
    if days_left < RENEW_BEFORE_DAYS {
        return Ok(CaState::ExpiresSoon(days_left));
    }
    Ok(CaState::Valid(CertifiedKeyPem { cert_pem, key_pem }))
}

/// `None` when the server certificate can stay, else why it must be (re)issued.
fn server_cert_state(
    paths: &PkiPaths,
    ca: &CertifiedKeyPem,
    names: &[String],
    now_secs: u64,
) -> Result<Option<Change>, CertError> {
    let (Some(cert_pem), Some(key_pem)) =
        (read_optional(&paths.server_cert)?, read_optional(&paths.server_key)?)
    else {
        return Ok(Some(if paths.server_cert.exists() {
            Change::Replaced(ReplaceReason::Invalid { reason: "its key is missing".to_owned() })
        } else {
            Change::Created
        }));
    };
    let invalid = |reason: String| Ok(Some(Change::Replaced(ReplaceReason::Invalid { reason })));
    let Ok(der) = CertificateDer::from_pem_slice(cert_pem.as_bytes()) else {
        return invalid("no PEM certificate in it".to_owned());
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
        return invalid("the certificate does not parse".to_owned());
    };
    let Ok(key) = KeyPair::from_pem(&key_pem) else {
        return invalid("its key does not parse".to_owned());
    };
    if cert.public_key().raw != key.subject_public_key_info().as_slice() {
        return invalid("its key is not the certificate's key".to_owned());
    }
    let ca_der = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).map_err(|source| CertError::Pem {
        path: paths.ca_cert.clone(),
        what: "certificate",
        source,
    })?;
    let ca_cert = x509_parser::parse_x509_certificate(&ca_der).map(|(_, cert)| cert).map_err(|error| {
        CertError::InvalidCa {
            path: paths.ca_cert.clone(),
            reason: format!("the certificate does not parse ({error})"),
        }
    })?;
    if cert.verify_signature(Some(ca_cert.public_key())).is_err() {
        return invalid("it was not issued by the CA".to_owned());
    }

    let wanted = name_set(names.iter().map(String::as_str));
    let mut present = Vec::new();
    if let Ok(Some(sans)) = cert.subject_alternative_name() {
        for name in &sans.value.general_names {
            match name {
                GeneralName::DNSName(dns) => present.push((*dns).to_owned()),
                GeneralName::IPAddress(bytes) => match bytes.len() {
                    4 => present
                        .push(IpAddr::from(<[u8; 4]>::try_from(*bytes).unwrap_or_default()).to_string()),
                    16 => present
                        .push(IpAddr::from(<[u8; 16]>::try_from(*bytes).unwrap_or_default()).to_string()),
                    _ => present.push(format!("<IP of {} bytes>", bytes.len())),
                },
                other => present.push(format!("{other}")),
            }
        }
    }
    if name_set(present.iter().map(String::as_str)) != wanted {
        return Ok(Some(Change::Replaced(ReplaceReason::NamesChanged { previous: present })));
    }
    let days_left = days_left(cert.validity().not_after.timestamp(), now_secs);
    if days_left < RENEW_BEFORE_DAYS {
        return Ok(Some(Change::Replaced(ReplaceReason::ExpiresSoon { days_left })));
    }
    Ok(None)
}

/// Names as a certificate compares them: IP addresses in canonical form, DNS names in lower case.
fn name_set<'a>(names: impl Iterator<Item = &'a str>) -> BTreeSet<String> {
    names
        .map(|name| name.parse::<IpAddr>().map_or_else(|_| name.to_ascii_lowercase(), |ip| ip.to_string()))
        .collect()
}

fn days_left(not_after: i64, now_secs: u64) -> u64 {
    let not_after = u64::try_from(not_after).unwrap_or(0);
    not_after.saturating_sub(now_secs) / SECS_PER_DAY
}

/// The file's text, or `None` if it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>, CertError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CertError::Io { action: "read", path: path.to_owned(), source }),
    }
}

/// Narrows a key file to 0600 if group or others may read it.
fn narrow_key_mode(path: &Path) -> Result<(), CertError> {
    let io_error = |source| CertError::Io { action: "restrict the mode of", path: path.to_owned(), source };
    let mode = fs::metadata(path).map_err(io_error)?.permissions().mode();
    if mode & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io_error)?;
    }
    Ok(())
}

/// Writes `contents` to a new file created with `mode` next to `path`, then renames it over
/// `path`: readers see the old file or the new one, and a failure leaves the old one intact.
fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), CertError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let io_error = |source| CertError::Io { action: "write", path: path.to_owned(), source };
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let file_name = path.file_name().map_or_else(|| "pki".into(), |name| name.to_string_lossy());
    let temp = dir.join(format!(
        ".{file_name}.{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(&temp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        // The rename itself is durable once the directory is synced.
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        // Best effort: the temporary file may not exist (e.g. the directory is read-only).
        let _ = fs::remove_file(&temp);
    }
    result.map_err(io_error)
}

/// A PEM error about `path`: the OS error of reading it, or what the file holds.
fn pem_error(path: &Path, what: &'static str, error: rustls::pki_types::pem::Error) -> CertError {
    match error {
        rustls::pki_types::pem::Error::Io(source) => {
            CertError::Io { action: "read", path: path.to_owned(), source }
        }
        source => CertError::Pem { path: path.to_owned(), what, source },
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let pem_error = |error| pem_error(path, "certificate", error);
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error)?;
    if certs.is_empty() {
        return Err(pem_error(rustls::pki_types::pem::Error::NoItemsFound));
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The gateway's TLS configuration: its certificate and key from `paths`, rustls' aws-lc-rs
/// provider, TLS 1.2 and 1.3, no client certificates.
///
/// # Errors
/// [`CertError::Io`] or [`CertError::Pem`] naming the file, or [`CertError::Tls`] if rustls
/// refuses the pair (e.g. the key is not the certificate's).
pub fn server_tls_config(paths: &PkiPaths) -> Result<Arc<rustls::ServerConfig>, CertError> {
    let chain = read_certs(&paths.server_cert)?;
    let key = PrivateKeyDer::from_pem_file(&paths.server_key)
        .map_err(|error| pem_error(&paths.server_key, "private key", error))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(CertError::Tls)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(CertError::Tls)?;
    Ok(Arc::new(config))
}

/// A client TLS configuration that trusts only the CA in `ca_cert` and verifies the chain and
/// the host name (`verify-full`), with rustls' aws-lc-rs provider.
///
/// # Errors
/// [`CertError::Io`] or [`CertError::Pem`] naming the file, or [`CertError::Tls`].
pub fn client_tls_config(ca_cert: &Path) -> Result<rustls::ClientConfig, CertError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(ca_cert)? {
        roots.add(cert).map_err(CertError::Tls)?;
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(CertError::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn civil_dates_from_day_numbers() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        assert_eq!(civil_from_days(19_962), (2024, 8, 27));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
        assert_eq!(civil_from_days(10_956), (1999, 12, 31));
    }

    #[test]
    fn a_server_cert_that_expires_soon_is_reissued_and_the_ca_kept() {
        let dir = std::env::temp_dir().join(format!("dsql-local-certs-unit-{}", std::process::id()));
        let names = vec!["localhost".to_owned()];
        let (paths, _) = ensure_pki(&dir, &names).expect("first");
        let ca = CertifiedKeyPem {
            cert_pem: fs::read_to_string(&paths.ca_cert).expect("ca"),
            key_pem: fs::read_to_string(&paths.ca_key).expect("ca key"),
        };
        let short = issue_server_cert_for(&ca, &names, SystemTime::now(), 20).expect("20-day cert");
        write_atomically(&paths.server_cert, short.cert_pem.as_bytes(), 0o644).expect("write");
        write_atomically(&paths.server_key, short.key_pem.as_bytes(), 0o600).expect("write");
        let (_, change) = ensure_pki(&dir, &names).expect("second");
        assert_eq!(change.ca, Change::Kept);
        assert!(
            matches!(change.server, Change::Replaced(ReplaceReason::ExpiresSoon { days_left: 18..=19 })),
            "{change:?}"
        );
        // In 350 days the year-long certificate is due too.
        let later = SystemTime::now() + Duration::from_secs(350 * SECS_PER_DAY);
        let (_, change) = ensure_pki_at(&dir, &names, later).expect("later");
        assert!(matches!(change.server, Change::Replaced(ReplaceReason::ExpiresSoon { .. })), "{change:?}");
        assert_eq!(change.ca, Change::Kept);
        fs::remove_dir_all(&dir).expect("clean up");
    }
}
