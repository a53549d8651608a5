//! `tdsql-ops pki`: one line per file saying what happened to it, keys 0600, errors non-zero.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn pki(dir: &Path, endpoints: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tdsql-ops"));
    command.arg("pki").arg("--dir").arg(dir);
    for endpoint in endpoints {
        command.args(["--endpoint", endpoint]);
    }
    command.output().expect("run tdsql-ops")
}

fn temp_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tdsql-ops-pki-{label}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn creates_then_keeps_then_reissues_for_new_names() {
    let dir = temp_dir("cycle");
    let first = pki(&dir, &["dsql-local", "localhost", "127.0.0.1"]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let lines: Vec<String> = stdout(&first).lines().map(str::to_owned).collect();
    let expected: Vec<String> = ["ca.crt", "ca.key", "server.crt", "server.key"]
        .iter()
        .map(|file| format!("created {}", dir.join(file).display()))
        .collect();
    assert_eq!(lines, expected);
    for key in ["ca.key", "server.key"] {
        let mode = fs::metadata(dir.join(key)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }
    let ca = fs::read(dir.join("ca.crt")).unwrap();

    let second = pki(&dir, &["dsql-local", "localhost", "127.0.0.1"]);
    assert!(second.status.success());
    assert!(stdout(&second).lines().all(|line| line.starts_with("kept ")), "{}", stdout(&second));

    let third = pki(&dir, &["dsql-local"]);
    assert!(third.status.success());
    let text = stdout(&third);
    assert!(text.contains(&format!("kept {}", dir.join("ca.crt").display())), "{text}");
    assert!(text.contains("replaced (it named "), "{text}");
    assert_eq!(fs::read(dir.join("ca.crt")).unwrap(), ca, "the CA clients trust is kept");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unwritable_dir_or_an_unusable_ca_fails_with_the_reason() {
    let file = temp_dir("file");
    fs::write(&file, "not a directory").unwrap();
    let output = pki(&file, &["localhost"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("cannot prepare the local PKI in {}", file.display())), "{stderr}");
    fs::remove_file(&file).unwrap();

    let dir = temp_dir("bad");

    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("ca.crt"), "garbage").unwrap();
    fs::write(dir.join("ca.key"), "garbage").unwrap();
    let output = pki(&dir, &["localhost"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot be used") && stderr.contains("delete"), "{stderr}");
    assert_eq!(fs::read_to_string(dir.join("ca.crt")).unwrap(), "garbage", "a CA is never replaced silently");
    fs::remove_dir_all(&dir).unwrap();
}
