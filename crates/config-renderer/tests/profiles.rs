//! The committed profiles load, validate and say what they are for.

use std::path::PathBuf;

use tdsql_config_renderer::{Backend, Loader, Origin};

fn profile(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../profiles").join(name).join("profile.toml")
}

#[test]
fn local_profile_drives_the_plugin_against_the_postgresql_container() {
    let loaded =
        Loader::new().file(&profile("local"), "profiles/local/profile.toml").unwrap().load().unwrap();
    let c = &loaded.config;
    assert_eq!(c.dsql.backend, Backend::Postgres);
    assert_eq!(c.endpoint().as_deref(), Some("postgresql"));
    assert_eq!(c.dsql.port, 5432);
    assert!(!c.dsql.tls);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert!(matches!(loaded.origin("dsql.endpoint"), Origin::File { .. }));
}

#[test]
fn dsql_profile_uses_tls_and_waits_for_a_cluster() {
    let loaded = Loader::new().file(&profile("dsql"), "profiles/dsql/profile.toml").unwrap().load().unwrap();
    let c = &loaded.config;
    assert_eq!(c.dsql.backend, Backend::Dsql);
    assert!(c.dsql.tls);
    assert_eq!(c.endpoint(), None);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let with_cluster = Loader::new()
        .file(&profile("dsql"), "profiles/dsql/profile.toml")
        .unwrap()
        .flag("dsql.identifier", "abcdefghijklmnopqrstuvwxyz", "--identifier")
        .load()
        .unwrap();
    assert_eq!(
        with_cluster.config.endpoint().as_deref(),
        Some("abcdefghijklmnopqrstuvwxyz.dsql.eu-west-1.on.aws")
    );
}
