//! The comment-preserving editor: round trips, typed checks, atomic saves.

use std::path::PathBuf;

use tdsql_config_renderer::{ConfigError, ConfigFile, Loader};

const COMMENTED: &str = r#"# My Temporal on DSQL settings.
# Second line of the header.

[project]
name = "demo"        # used for AWS tags
region = "us-east-1"

# The cluster, written back by infra apply.
[dsql]
identifier = ""      # filled in later
# Pool size.
max_conns = 20
max_idle_conns = 20

[temporal]
# Shards are fixed once the database exists.
history_shards = 4
"#;

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("edit-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("config.toml")
}

#[test]
fn set_keeps_every_comment_and_the_layout() {
    let mut file = ConfigFile::parse("config.toml", COMMENTED).unwrap();
    file.set_many(&[
        ("dsql.identifier", "abcdefghijklmnopqrstuvwxyz"),
        ("dsql.max_conns", "40"),
        ("dsql.max_idle_conns", "40"),
        ("coordination.rate_limiter.table", "demo-rate-limiter"),
    ])
    .unwrap();
    let out = file.render();
    let expected = COMMENTED
        .replace(
            "identifier = \"\"      # filled in later",
            "identifier = \"abcdefghijklmnopqrstuvwxyz\"      # filled in later",
        )
        .replace("max_conns = 20\nmax_idle_conns = 20", "max_conns = 40\nmax_idle_conns = 40")
        + "\n[coordination.rate_limiter]\ntable = \"demo-rate-limiter\"\n";
    assert_eq!(out, expected);
    // Every comment line of the original is still there, in order.
    let comments = |t: &str| {
        t.lines()
            .filter(|l| l.contains('#'))
            .map(|l| l[l.find('#').unwrap()..].to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(comments(&out), comments(COMMENTED));
    // And the result loads.
    let loaded = Loader::new().text(&out, "config.toml").unwrap().load().unwrap();
    assert_eq!(loaded.config.dsql.max_conns, 40);
}

#[test]
fn setting_a_value_twice_is_idempotent() {
    let mut file = ConfigFile::parse("config.toml", COMMENTED).unwrap();
    file.set("temporal.history_shards", "4").unwrap();
    assert_eq!(file.render(), COMMENTED);
}

#[test]
fn dotted_keys_stay_dotted() {
    let text = "# top\ndsql.max_conns = 5 # small\n";
    let mut file = ConfigFile::parse("config.toml", text).unwrap();
    file.set("dsql.max_conns", "6").unwrap();
    assert_eq!(file.render(), "# top\ndsql.max_conns = 6 # small\n");
}

#[test]
fn wrong_keys_and_values_change_nothing() {
    let mut file = ConfigFile::parse("config.toml", COMMENTED).unwrap();
    let err = file
        .set_many(&[("dsql.max_conns", "30"), ("dsql.max_conn", "30"), ("dsql.port", "70000")])
        .unwrap_err();
    let ConfigError::Invalid(problems) = &err else { panic!("{err}") };
    assert_eq!(problems.len(), 2, "{err}");
    assert!(problems[0].to_string().contains("dsql.max_conn: is not a key"), "{err}");
    assert!(problems[1].to_string().starts_with("dsql.port:"), "{err}");
    assert!(file.set("dsql.tls", "sometimes").is_err());
    assert!(file.set("dsql.max_conn_lifetime", "55").is_err());
    assert!(file.set("dsql", "1").is_err());
    assert_eq!(file.render(), COMMENTED);
}

#[test]
fn a_section_written_as_a_value_is_not_clobbered() {
    let mut file = ConfigFile::parse("config.toml", "dsql = 5\n").unwrap();
    let err = file.set("dsql.max_conns", "6").unwrap_err();
    assert!(err.to_string().contains("sets `dsql` to a value"), "{err}");
    assert_eq!(file.render(), "dsql = 5\n");
}

#[test]
fn strings_are_escaped() {
    let mut file = ConfigFile::parse("config.toml", "").unwrap();
    file.set("project.name", "a\"b\\c\nd").unwrap();
    let out = file.render();
    let loaded = Loader::new().text(&out, "config.toml").unwrap();
    // The value round-trips exactly (validation then rejects it as a name, which is fine).
    let reparsed = ConfigFile::parse("config.toml", &out).unwrap();
    assert_eq!(reparsed.get("project.name").unwrap().as_str(), Some("a\"b\\c\nd"));
    assert!(loaded.load().is_err());
}

#[test]
fn save_is_atomic_and_keeps_the_text() {
    let path = scratch("save");
    std::fs::write(&path, COMMENTED).unwrap();
    let mut file = ConfigFile::open(&path).unwrap();
    file.set("dsql.max_conns", "20").unwrap();
    file.set("observability.grafana_admin_password", "generated-sentinel").unwrap();
    file.save().unwrap();
    let saved = std::fs::read_to_string(&path).unwrap();
    assert!(saved.starts_with(COMMENTED.trim_end()));
    assert!(saved.ends_with("[observability]\ngrafana_admin_password = \"generated-sentinel\"\n"), "{saved}");
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(leftovers, ["config.toml"]);
}

#[test]
fn a_new_file_is_created_private() {
    let path = scratch("new");
    let mut file = ConfigFile::open(&path).unwrap();
    file.set("dsql.identifier", "abcdefghijklmnopqrstuvwxyz").unwrap();
    file.save().unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "[dsql]\nidentifier = \"abcdefghijklmnopqrstuvwxyz\"\n"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
