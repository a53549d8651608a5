//! The committed profiles load, validate and say what they are for.

use std::path::PathBuf;

use tdsql_config_renderer::{Backend, Loader, Origin};

fn profile(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../profiles").join(name).join("profile.toml")
}

#[test]
fn local_profile_drives_the_plugin_through_the_gateway() {
    let loaded =
        Loader::new().file(&profile("local"), "profiles/local/profile.toml").unwrap().load().unwrap();
    let c = &loaded.config;
    assert_eq!(c.dsql.backend, Backend::Postgres);
    assert_eq!(c.endpoint().as_deref(), Some("dsql-local"));
    assert_eq!(c.dsql.port, 5432);
    assert!(c.uses_gateway());
    assert!(c.tls(), "the gateway is reached with TLS");
    assert!(!c.dsql.tls, "PostgreSQL itself, reached only with the gateway off, has no certificate");
    assert!(matches!(loaded.origin("local.gateway.port"), Origin::File { .. }));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert!(matches!(loaded.origin("local.postgres_host"), Origin::File { .. }));
}

/// What `cargo xtask infra apply` leaves in config.toml, which overlays every profile.
const AFTER_INFRA_APPLY: &str = r#"
[project]
region = "us-east-1"

[dsql]
identifier = "abcdefghijklmnopqrstuvwxyz"
endpoint = "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"
"#;

#[test]
fn a_dsql_endpoint_in_config_toml_points_the_dsql_profile_at_the_cluster_and_leaves_the_local_one_alone() {
    let load = |name: &str| {
        Loader::new()
            .file(&profile(name), &format!("profiles/{name}/profile.toml"))
            .unwrap()
            .text(AFTER_INFRA_APPLY, "config.toml")
            .unwrap()
            .load()
            .unwrap()
    };
    let cluster = "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws";
    let local = load("local");
    assert!(local.warnings.is_empty(), "{:?}", local.warnings);
    assert_eq!(
        local.config.endpoint().as_deref(),
        Some("dsql-local"),
        "the local stack stays on its gateway"
    );
    assert_eq!(local.config.cluster_endpoint().as_deref(), Some(cluster), "the cluster is still known");
    let dsql = load("dsql");
    assert_eq!(dsql.config.endpoint().as_deref(), Some(cluster));
    assert_eq!(dsql.origin("dsql.endpoint"), &Origin::File { path: "config.toml".into(), line: 7 });
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

#[test]
fn init_template_loads_sets_name_and_region_and_lists_every_key() {
    let text = tdsql_config_renderer::init_template("team-a", "us-west-2").unwrap();
    let loaded = Loader::new().text(&text, "config.toml").unwrap().load().unwrap();
    assert_eq!(loaded.config.project.name, "team-a");
    assert_eq!(loaded.config.project.region, "us-west-2");
    assert_eq!(loaded.origin("project.name"), &Origin::File { path: "config.toml".into(), line: 9 });
    // Everything else is commented out, so the profile's values still apply.
    let mut expected = tdsql_config_renderer::Config::default();
    expected.project.name = "team-a".into();
    expected.project.region = "us-west-2".into();
    assert_eq!(loaded.config, expected);
    for info in tdsql_config_renderer::keys::all() {
        let leaf = info.key.rsplit('.').next().unwrap();
        assert!(text.contains(&format!("{leaf} = ")), "{} is not listed", info.key);
        assert!(text.contains(info.doc), "{} has no doc line", info.key);
    }
}

#[test]
fn init_template_escapes_or_refuses_what_it_writes() {
    let err = tdsql_config_renderer::init_template("a\"b\n[x]", "eu-west-1").unwrap_err();
    assert!(err.to_string().contains("project.name"), "{err}");
    let err = tdsql_config_renderer::init_template("ok", "eu west 1").unwrap_err();
    assert!(err.to_string().contains("project.region"), "{err}");
}
