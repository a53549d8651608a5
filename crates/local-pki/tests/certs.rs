//! The local PKI on disk and real TLS handshakes over loopback between `server_tls_config` and
//! `client_tls_config`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use tdsql_local_pki::{
    CertError, CertifiedKeyPem, Change, PkiPaths, ReplaceReason, client_tls_config, ensure_pki, generate_ca,
    issue_server_cert, server_tls_config,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use x509_parser::extensions::{GeneralName, ParsedExtension};

/// A fresh directory under the system temp dir, removed (made mutable first) on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "dsql-local-{label}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    fn pki(&self) -> PathBuf {
        self.0.join("pki")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(self.pki()).status();
        let _ = fs::set_permissions(self.pki(), fs::Permissions::from_mode(0o700));
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|name| (*name).to_owned()).collect()
}

fn read_all(paths: &PkiPaths) -> [Vec<u8>; 4] {
    [&paths.ca_cert, &paths.ca_key, &paths.server_cert, &paths.server_key]
        .map(|path| fs::read(path).expect("read"))
}

/// One TLS handshake over loopback, the client asking for `server_name`; the server's result
/// and the client's.
async fn handshake(
    server: Arc<rustls::ServerConfig>,
    client: rustls::ClientConfig,
    server_name: &str,
) -> (std::io::Result<()>, std::io::Result<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let address = listener.local_addr().expect("address");
    let server_side = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = TlsAcceptor::from(server).accept(tcp).await?;
        tls.write_all(b"ok").await?;
        tls.shutdown().await
    });
    let client_side = async {
        let tcp = TcpStream::connect(address).await?;
        let name = ServerName::try_from(server_name.to_owned()).expect("server name");
        let mut tls = TlsConnector::from(Arc::new(client)).connect(name, tcp).await?;
        let mut reply = [0_u8; 2];
        tls.read_exact(&mut reply).await?;
        assert_eq!(&reply, b"ok");
        Ok(())
    };
    let client_result = client_side.await;
    let server_result = server_side.await.expect("server task");
    (server_result, client_result)
}

fn rustls_error(error: &std::io::Error) -> &rustls::Error {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .unwrap_or_else(|| panic!("not a rustls error: {error:?}"))
}

#[tokio::test]
async fn handshakes_succeed_for_every_san_and_fail_for_other_names_and_other_cas() {
    let temp = TempDir::new("handshake");
    let (paths, change) =
        ensure_pki(&temp.pki(), &names(&["localhost", "127.0.0.1", "gw.dsql.local"])).expect("pki");
    assert_eq!((change.ca, change.server), (Change::Created, Change::Created));
    let server = server_tls_config(&paths).expect("server config");

    for name in ["localhost", "127.0.0.1", "gw.dsql.local", "LOCALHOST"] {
        let client = client_tls_config(&paths.ca_cert).expect("client config");
        let (server_result, client_result) = handshake(Arc::clone(&server), client, name).await;
        client_result.unwrap_or_else(|error| panic!("client handshake for {name}: {error}"));
        server_result.unwrap_or_else(|error| panic!("server handshake for {name}: {error}"));
    }

    for name in ["other.example", "127.0.0.2", "dsql.local"] {
        let client = client_tls_config(&paths.ca_cert).expect("client config");
        let (_, client_result) = handshake(Arc::clone(&server), client, name).await;
        let error = client_result.expect_err(name);
        assert!(
            matches!(
                rustls_error(&error),
                rustls::Error::InvalidCertificate(
                    rustls::CertificateError::NotValidForName
                        | rustls::CertificateError::NotValidForNameContext { .. }
                )
            ),
            "{name}: {error:?}"
        );
    }

    let other = TempDir::new("other-ca");
    let (other_paths, _) = ensure_pki(&other.pki(), &names(&["localhost"])).expect("other pki");
    let client = client_tls_config(&other_paths.ca_cert).expect("client config");
    let (_, client_result) = handshake(server, client, "localhost").await;
    let error = client_result.expect_err("a client trusting another CA");
    assert!(
        matches!(
            rustls_error(&error),
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
        ),
        "{error:?}"
    );
}

#[test]
fn ensure_pki_keeps_what_is_valid_and_reissues_for_new_names() {
    let temp = TempDir::new("ensure");
    let (paths, first) = ensure_pki(&temp.pki(), &names(&["localhost", "127.0.0.1"])).expect("first");
    assert_eq!(first.ca, Change::Created);
    assert_eq!(first.server, Change::Created);
    assert_eq!(fs::metadata(temp.pki()).expect("dir").permissions().mode() & 0o777, 0o700);
    let before = read_all(&paths);

    // The same names in another order and case: nothing changes.
    let (_, again) = ensure_pki(&temp.pki(), &names(&["127.0.0.1", "LocalHost"])).expect("second");
    assert_eq!((again.ca, again.server), (Change::Kept, Change::Kept));
    assert_eq!(read_all(&paths), before);

    let (_, renamed) = ensure_pki(&temp.pki(), &names(&["localhost", "127.0.0.1", "::1"])).expect("third");
    assert_eq!(renamed.ca, Change::Kept);
    match renamed.server {
        Change::Replaced(ReplaceReason::NamesChanged { mut previous }) => {
            previous.sort();
            assert_eq!(previous, names(&["127.0.0.1", "localhost"]));
        }
        other => panic!("expected NamesChanged, got {other:?}"),
    }
    let after = read_all(&paths);
    assert_eq!(after[..2], before[..2], "the CA and its key are kept");
    assert_ne!(after[2], before[2], "a new server certificate");
    assert_ne!(after[3], before[3], "with a new key");

    for key in [&paths.ca_key, &paths.server_key] {
        assert_eq!(fs::metadata(key).expect("key").permissions().mode() & 0o777, 0o600, "{}", key.display());
    }
    for cert in [&paths.ca_cert, &paths.server_cert] {
        assert_eq!(
            fs::metadata(cert).expect("cert").permissions().mode() & 0o777,
            0o644,
            "{}",
            cert.display()
        );
    }
    // No temporary files are left behind.
    let entries: Vec<_> =
        fs::read_dir(temp.pki()).expect("dir").map(|entry| entry.expect("entry").file_name()).collect();
    assert_eq!(entries.len(), 4, "{entries:?}");

    // A key file someone opened up is narrowed again.
    fs::set_permissions(&paths.server_key, fs::Permissions::from_mode(0o644)).expect("chmod");
    ensure_pki(&temp.pki(), &names(&["localhost", "127.0.0.1", "::1"])).expect("fourth");
    assert_eq!(fs::metadata(&paths.server_key).expect("key").permissions().mode() & 0o777, 0o600);
}

#[test]
fn a_server_cert_from_another_ca_or_with_a_wrong_key_is_reissued() {
    let temp = TempDir::new("foreign");
    let list = names(&["localhost"]);
    let (paths, _) = ensure_pki(&temp.pki(), &list).expect("pki");
    let foreign = issue_server_cert(&generate_ca("someone else").expect("ca"), &list).expect("cert");
    fs::write(&paths.server_cert, &foreign.cert_pem).expect("write");
    fs::write(&paths.server_key, &foreign.key_pem).expect("write");
    let (_, change) = ensure_pki(&temp.pki(), &list).expect("again");
    assert!(
        matches!(&change.server, Change::Replaced(ReplaceReason::Invalid { reason }) if reason.contains("not issued by the CA")),
        "{change:?}"
    );

    let other_key = issue_server_cert(&generate_ca("x").expect("ca"), &list).expect("cert").key_pem;
    fs::write(&paths.server_key, other_key).expect("write");
    let (_, change) = ensure_pki(&temp.pki(), &list).expect("again");
    assert!(
        matches!(&change.server, Change::Replaced(ReplaceReason::Invalid { reason }) if reason.contains("key")),
        "{change:?}"
    );
    assert_eq!(change.ca, Change::Kept);
    server_tls_config(&paths).expect("a usable pair again");
}

#[test]
fn an_unusable_ca_is_an_error_not_replaced() {
    let temp = TempDir::new("bad-ca");
    let list = names(&["localhost"]);
    let (paths, _) = ensure_pki(&temp.pki(), &list).expect("pki");
    let ca_cert = fs::read(&paths.ca_cert).expect("ca");

    fs::remove_file(&paths.ca_key).expect("remove key");
    let error = ensure_pki(&temp.pki(), &list).expect_err("CA without key");
    assert!(matches!(error, CertError::InvalidCa { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("ca.crt") && message.contains("ca.key") && message.contains("delete"),
        "{message}"
    );

    fs::write(&paths.ca_key, generate_ca("other").expect("ca").key_pem).expect("write key");
    let error = ensure_pki(&temp.pki(), &list).expect_err("CA with another key");
    assert!(error.to_string().contains("is not the certificate's key"), "{error}");

    fs::write(&paths.ca_cert, "not pem").expect("write");
    let error = ensure_pki(&temp.pki(), &list).expect_err("garbage CA");
    assert!(matches!(error, CertError::InvalidCa { .. }), "{error:?}");
    assert_ne!(fs::read(&paths.ca_cert).expect("ca"), ca_cert);
    assert_eq!(
        fs::read(&paths.ca_cert).expect("ca"),
        b"not pem",
        "an unusable CA is left for the user to look at"
    );
}

#[test]
fn a_read_only_directory_is_an_error_naming_the_path_and_leaves_the_files() {
    let temp = TempDir::new("read-only");
    let (paths, _) = ensure_pki(&temp.pki(), &names(&["localhost"])).expect("pki");
    let before = read_all(&paths);

    fs::set_permissions(temp.pki(), fs::Permissions::from_mode(0o500)).expect("chmod");
    // Root ignores the mode; an immutable directory stops root too.
    let probe = temp.pki().join("probe");
    if fs::write(&probe, b"").is_ok() {
        fs::remove_file(&probe).expect("remove probe");
        let status = Command::new("chattr").arg("+i").arg(temp.pki()).status().expect(
            "running as root, the test needs chattr (e2fsprogs) to make the directory immutable: apt-get install e2fsprogs",
        );
        assert!(
            status.success(),
            "chattr +i {} failed (needs an ext4/xfs/btrfs temp dir)",
            temp.pki().display()
        );
    }

    let error = ensure_pki(&temp.pki(), &names(&["localhost", "gw.local"])).expect_err("cannot write");
    match &error {
        CertError::Io { path, .. } => assert!(path.starts_with(temp.pki()), "{}", path.display()),
        other => panic!("expected an Io error, got {other:?}"),
    }
    assert!(error.to_string().contains(&temp.pki().display().to_string()), "{error}");
    assert_eq!(read_all(&paths), before);
    server_tls_config(&paths).expect("the old pair still works");
}

#[test]
fn generated_certificates_have_the_promised_extensions() {
    let ca = generate_ca("dsql-local test CA").expect("ca");
    assert!(!format!("{ca:?}").contains(&ca.key_pem[30..60]), "Debug shows the key");
    let der = rustls::pki_types::CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).expect("pem");
    let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("parse");
    assert!(cert.is_ca());
    let usage = cert.key_usage().expect("key usage").expect("present").value;
    assert!(usage.key_cert_sign() && usage.crl_sign());
    let years =
        (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp()) / 86_400 / 365;
    assert_eq!(years, 10);

    let server = issue_server_cert(&ca, &names(&["gw.dsql.local", "127.0.0.1", "::1"])).expect("server");
    let der = rustls::pki_types::CertificateDer::from_pem_slice(server.cert_pem.as_bytes()).expect("pem");
    let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("parse");
    assert!(!cert.is_ca());
    assert!(cert.extended_key_usage().expect("eku").expect("present").value.server_auth);
    let days = (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp()) / 86_400;
    assert_eq!(days, 365);
    let mut sans = Vec::new();
    for extension in cert.extensions() {
        if let ParsedExtension::SubjectAlternativeName(san) = extension.parsed_extension() {
            for name in &san.general_names {
                sans.push(match name {
                    GeneralName::DNSName(dns) => format!("dns:{dns}"),
                    GeneralName::IPAddress(bytes) => format!("ip:{} bytes", bytes.len()),
                    other => format!("{other}"),
                });
            }
        }
    }
    assert_eq!(sans, ["dns:gw.dsql.local", "ip:4 bytes", "ip:16 bytes"]);

    assert!(matches!(issue_server_cert(&ca, &[]), Err(CertError::NoNames)));
    let bad = issue_server_cert(&ca, &names(&["bad name with spaces é"])).expect_err("invalid name");
    assert!(matches!(bad, CertError::InvalidName { .. }), "{bad:?}");
    let not_ca = CertifiedKeyPem { cert_pem: "junk".to_owned(), key_pem: ca.key_pem.clone() };
    assert!(matches!(issue_server_cert(&not_ca, &names(&["localhost"])), Err(CertError::Generate { .. })));
}

#[test]
fn tls_configs_name_missing_or_wrong_files() {
    let temp = TempDir::new("configs");
    let missing = temp.0.join("nowhere.crt");
    let error = client_tls_config(&missing).expect_err("missing CA file");
    assert!(error.to_string().contains("nowhere.crt"), "{error}");
    let (paths, _) = ensure_pki(&temp.pki(), &names(&["localhost"])).expect("pki");
    let error = client_tls_config(&paths.ca_key).expect_err("a key is not a certificate");
    assert!(error.to_string().contains("ca.key"), "{error}");
    let swapped = PkiPaths { server_key: paths.ca_key.clone(), ..paths.clone() };
    assert!(matches!(server_tls_config(&swapped), Err(CertError::Tls(_))));
}
