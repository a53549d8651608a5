//! `cargo xtask config render` for the local profile: the local CA, the gateway's certificate and
//! the local key pair, checked on disk (certificates are not goldens: their properties are).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::pem::parse_x509_pem;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn xtask(config: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TDSQL_") {
            cmd.env_remove(name);
        }
    }
    cmd.env("TDSQL_CONFIG_FILE", config).args(args).output().expect("run xtask")
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

fn pem(path: &Path) -> Vec<u8> {
    let text = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (_, pem) = parse_x509_pem(&text).expect("PEM");
    pem.contents
}

fn keypair(path: &Path) -> (String, String) {
    let text = fs::read_to_string(path).unwrap();
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} missing from {text}"))
            .to_owned()
    };
    (value("AWS_ACCESS_KEY_ID"), value("AWS_SECRET_ACCESS_KEY"))
}

#[test]
fn render_makes_the_local_pki_and_key_pair_and_keeps_them() {
    let dir = std::env::temp_dir().join(format!("tdsql-render-pki-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.toml");
    fs::write(&config, "[observability]\ngrafana_admin_password = \"render-pki-test\"\n").unwrap();

    let first = xtask(&config, &["config", "render"]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let stdout = String::from_utf8_lossy(&first.stdout).into_owned();
    let keypair_env = PathBuf::from(
        stdout
            .lines()
            .find(|l| l.ends_with("profiles/local/generated/dsql-local/keypair.env"))
            .unwrap_or_else(|| panic!("keypair.env not listed in {stdout}")),
    );
    let generated = keypair_env.parent().unwrap().parent().unwrap().to_path_buf();
    let pki = generated.join("dsql-local/pki");

    // Keys and the key pair are private to the user; certificates are not secrets.
    assert_eq!(mode(&pki.join("ca.key")), 0o600);
    assert_eq!(mode(&pki.join("server.key")), 0o600);
    assert_eq!(mode(&keypair_env), 0o600);

    let ca_der = pem(&pki.join("ca.crt"));
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).expect("CA certificate");
    assert!(ca.is_ca(), "ca.crt is a CA");
    let server_der = pem(&pki.join("server.crt"));
    let (_, server) = x509_parser::parse_x509_certificate(&server_der).expect("server certificate");
    assert!(!server.is_ca());
    assert_eq!(server.issuer(), ca.subject(), "the server certificate is issued by the CA");
    let mut names = Vec::new();
    for ext in server.extensions() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() {
            for name in &san.general_names {
                names.push(match name {
                    GeneralName::DNSName(dns) => (*dns).to_owned(),
                    GeneralName::IPAddress(ip) => {
                        std::net::IpAddr::from(<[u8; 4]>::try_from(*ip).expect("IPv4")).to_string()
                    }
                    other => panic!("unexpected SAN {other:?}"),
                });
            }
        }
    }
    names.sort();
    assert_eq!(names, ["127.0.0.1", "dsql-local", "localhost"]);
    let now = x509_parser::time::ASN1Time::now();
    assert!(ca.validity().is_valid_at(now) && server.validity().is_valid_at(now));
    let days = |c: &x509_parser::certificate::X509Certificate<'_>| {
        (c.validity().not_after.timestamp() - now.timestamp()) / 86_400
    };
    assert!((3000..=3653).contains(&days(&ca)), "CA valid for about ten years: {} days", days(&ca));
    assert!((300..=366).contains(&days(&server)), "server valid for about a year: {} days", days(&server));

    let (key_id, secret) = keypair(&keypair_env);
    assert!(key_id.starts_with("TDSQLLOCAL") && key_id.len() == 20, "{key_id}");
    assert!(key_id.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()), "{key_id}");
    assert_eq!(secret.len(), 40);

    // Temporal's config trusts exactly this CA, at the path compose mounts it.
    let server_config = fs::read_to_string(generated.join("temporal/config.yaml")).unwrap();
    assert!(server_config.contains("caFile: \"/etc/temporal/dsql-local/ca.crt\""), "{server_config}");
    let compose_env = fs::read_to_string(generated.join("compose.env")).unwrap();
    assert!(compose_env.contains("\nTDSQL_HOST_UID="), "{compose_env}");
    let temporal_env = fs::read_to_string(generated.join("temporal.env")).unwrap();
    assert!(!temporal_env.contains("AWS_SECRET_ACCESS_KEY"));

    // A second render keeps all of it: running containers go on trusting and signing.
    let before: Vec<Vec<u8>> = ["ca.crt", "ca.key", "server.crt", "server.key"]
        .iter()
        .map(|f| fs::read(pki.join(f)).unwrap())
        .collect();
    let second = xtask(&config, &["config", "render"]);
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    let after: Vec<Vec<u8>> = ["ca.crt", "ca.key", "server.crt", "server.key"]
        .iter()
        .map(|f| fs::read(pki.join(f)).unwrap())
        .collect();
    assert!(before == after, "the PKI changed across renders");
    assert_eq!(keypair(&keypair_env), (key_id, secret), "the key pair changed across renders");
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("dsql-local/pki: kept ca.crt"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn generated_files_are_never_tracked() {
    let ignore = fs::read_to_string(root().join(".gitignore")).unwrap();
    assert!(ignore.lines().any(|l| l.trim() == "/profiles/*/generated/"), "{ignore}");
}
