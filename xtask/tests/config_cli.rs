//! `cargo xtask config ...` end to end through the real binary, on a config file of its own
//! (`TDSQL_CONFIG_FILE`), so the checkout's `config.toml` is never touched.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tdsql-config-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    fn config(&self) -> PathBuf {
        self.0.join("config.toml")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `xtask <args>` with `config` as the user's file and no other `TDSQL_*` overrides.
fn xtask(config: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TDSQL_") {
            cmd.env_remove(name);
        }
    }
    cmd.env("TDSQL_CONFIG_FILE", config).args(args).output().expect("run xtask")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn init_writes_a_loadable_file_and_never_overwrites_without_force() {
    let dir = TempDir::new("init");
    let config = dir.config();
    let out = xtask(&config, &["config", "init", "--name", "team-a", "--region", "us-west-2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let first = std::fs::read_to_string(&config).unwrap();
    assert!(first.contains("name = \"team-a\"") && first.contains("region = \"us-west-2\""));

    let again = xtask(&config, &["config", "init", "--name", "other"]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already exists") && stderr(&again).contains("--force"),
        "{}",
        stderr(&again)
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), first);

    let forced = xtask(&config, &["config", "init", "--name", "other", "--force"]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert!(std::fs::read_to_string(&config).unwrap().contains("name = \"other\""));
    assert_eq!(std::fs::read_to_string(config.with_extension("toml.bak")).unwrap(), first);

    let show = xtask(&config, &["config", "show"]);
    assert!(show.status.success(), "{}", stderr(&show));
    let line = stdout(&show).lines().find(|l| l.starts_with("project.name ")).unwrap().to_owned();
    assert!(line.contains("\"other\"") && line.ends_with("config.toml:9"), "{line}");
}

#[test]
fn init_dry_run_writes_nothing() {
    let dir = TempDir::new("init-dry");
    let out = xtask(&dir.config(), &["--dry-run", "config", "init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("[project]"));
    assert!(!dir.config().exists());
}

#[test]
fn set_keeps_comments_and_refuses_an_invalid_result() {
    let dir = TempDir::new("set");
    let config = dir.config();
    std::fs::write(&config, "# mine\n[dsql]\nmax_conns = 10 # small\nmax_idle_conns = 10\n").unwrap();

    let alone = xtask(&config, &["config", "set", "dsql.max_conns", "12"]);
    assert!(!alone.status.success());
    assert!(
        stderr(&alone).contains("not saved") && stderr(&alone).contains("dsql.max_idle_conns"),
        "{}",
        stderr(&alone)
    );

    let both = xtask(&config, &["config", "set", "dsql.max_conns", "12", "dsql.max_idle_conns", "12"]);
    assert!(both.status.success(), "{}", stderr(&both));
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        "# mine\n[dsql]\nmax_conns = 12 # small\nmax_idle_conns = 12\n"
    );

    let unknown = xtask(&config, &["config", "set", "dsql.max_con", "12"]);
    assert!(!unknown.status.success());
    assert!(stderr(&unknown).contains("did you mean `dsql.max_conns`"), "{}", stderr(&unknown));
}

/// Switching the coordination tables on leaves a table to name, which `infra apply` does: `set`
/// saves and says so, while `validate` (strict) still fails until the apply has run.
#[test]
fn set_enables_a_table_that_infra_apply_will_name_and_validate_stays_strict() {
    let dir = TempDir::new("pending");
    let config = dir.config();
    std::fs::write(&config, "# mine\n").unwrap();
    let out = xtask(&config, &["config", "set", "coordination.rate_limiter.enabled", "true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("note: coordination.rate_limiter.table: is empty while")
            && stderr(&out).contains("cargo xtask infra apply"),
        "{}",
        stderr(&out)
    );
    assert!(std::fs::read_to_string(&config).unwrap().contains("enabled = true"));

    let validate = xtask(&config, &["config", "validate"]);
    assert_eq!(validate.status.code(), Some(1), "{}", stderr(&validate));
    assert!(
        stderr(&validate).contains("coordination.rate_limiter.table: is empty while"),
        "{}",
        stderr(&validate)
    );
}

#[test]
fn validate_names_key_file_and_line_and_fails() {
    let dir = TempDir::new("validate");
    let config = dir.config();
    std::fs::write(&config, "[dsql]\n\nmax_idle_conns = 3\n").unwrap();
    let out = xtask(&config, &["config", "validate"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{}:3: dsql.max_idle_conns: 3 must equal dsql.max_conns", config.display())),
        "{err}"
    );
}

#[test]
fn render_dry_run_lists_the_files_and_writes_nothing() {
    let dir = TempDir::new("render");
    let config = dir.config();
    let out = xtask(&config, &["--dry-run", "config", "render"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    for name in [
        "compose.env",
        "temporal.env",
        "temporal/config.yaml",
        "temporal/dynamicconfig.yaml",
        "grafana/datasources.yaml",
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("would write ")
                    && l.ends_with(&format!("profiles/local/generated/{name}"))),
            "{name} missing from {lines:#?}"
        );
    }
    // The password is generated on a real render only; a dry run writes no config file.
    assert!(!config.exists());

    let dsql = xtask(&config, &["--profile", "dsql", "config", "render"]);
    assert!(!dsql.status.success());
    assert!(stderr(&dsql).contains("no DSQL cluster configured"), "{}", stderr(&dsql));
}

#[test]
fn render_generates_the_grafana_password_once_into_the_config_only() {
    let dir = TempDir::new("password");
    let config = dir.config();
    std::fs::write(&config, "# my settings\n[project]\nname = \"pw-test\"\n").unwrap();
    let first = xtask(&config, &["config", "render"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let saved = std::fs::read_to_string(&config).unwrap();
    assert!(saved.starts_with("# my settings\n[project]\nname = \"pw-test\"\n"), "{saved}");
    let password = saved
        .lines()
        .find_map(|l| l.strip_prefix("grafana_admin_password = \""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap_or_else(|| panic!("no password in {saved}"))
        .to_owned();
    assert_eq!(password.len(), 24);
    for path in stdout(&first).lines() {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(!text.contains(&password), "{path} holds the password");
    }
    let second = xtask(&config, &["config", "render"]);
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(std::fs::read_to_string(&config).unwrap(), saved, "a second render keeps the password");
    assert!(!stderr(&second).contains("generated"));
}
