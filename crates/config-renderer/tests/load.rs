//! Layered loading: precedence, provenance, and errors that name key, file and line.

use tdsql_config_renderer::{ConfigError, Loader, Origin, Severity};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn errors(result: Result<tdsql_config_renderer::Loaded, ConfigError>) -> Vec<String> {
    match result {
        Err(ConfigError::Invalid(problems)) => problems.iter().map(ToString::to_string).collect(),
        Err(other) => panic!("expected invalid values, got {other}"),
        Ok(_) => panic!("expected invalid values, got a config"),
    }
}

#[test]
fn empty_layers_give_the_defaults() {
    let loaded = Loader::new().load().unwrap();
    assert_eq!(loaded.config, tdsql_config_renderer::Config::default());
    assert!(loaded.entries().iter().all(|e| e.origin == Origin::Default));
}

#[test]
fn later_layers_win_and_provenance_names_each_one() {
    let profile = "[dsql]\nmax_conns = 20\nmax_idle_conns = 20\n\n[project]\nregion = \"us-east-1\"\n";
    let user = "# mine\n[dsql]\nmax_conns = 30\nmax_idle_conns = 30\n[temporal]\nhistory_shards = 8\n";
    let loaded = Loader::new()
        .text(profile, "profiles/dsql/profile.toml")
        .unwrap()
        .text(user, "config.toml")
        .unwrap()
        .env(env(&[("TDSQL_TEMPORAL_HISTORY_SHARDS", "16"), ("TDSQL_UNRELATED", "x")]))
        .flag("project.region", "eu-central-1", "--region")
        .load()
        .unwrap();
    let c = &loaded.config;
    assert_eq!(c.dsql.max_conns, 30);
    assert_eq!(c.temporal.history_shards, 16);
    assert_eq!(c.project.region, "eu-central-1");
    assert_eq!(loaded.origin("dsql.max_conns"), &Origin::File { path: "config.toml".into(), line: 3 });
    assert_eq!(loaded.origin("dsql.max_idle_conns"), &Origin::File { path: "config.toml".into(), line: 4 });
    assert_eq!(
        loaded.origin("temporal.history_shards"),
        &Origin::Env { var: "TDSQL_TEMPORAL_HISTORY_SHARDS".into() }
    );
    assert_eq!(loaded.origin("project.region"), &Origin::Flag { flag: "--region".into() });
    assert_eq!(loaded.origin("dsql.port"), &Origin::Default);
    assert_eq!(loaded.origin("temporal.history_shards").to_string(), "env TDSQL_TEMPORAL_HISTORY_SHARDS");
}

#[test]
fn dotted_and_inline_tables_are_read_with_their_lines() {
    let text = "dsql.reservoir.target_ready = 10\n\ndsql.reservoir = { low_watermark = 5 }\n";
    // Both forms in one file are not valid TOML (the table is defined twice), so use two files.
    let err = Loader::new().text(text, "a.toml").unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { line: 3, .. }), "{err}");
    let loaded = Loader::new()
        .text("dsql.reservoir.target_ready = 10\n", "a.toml")
        .unwrap()
        .text("\n[dsql]\nreservoir = { low_watermark = 5 }\n", "b.toml")
        .unwrap()
        .load()
        .unwrap();
    assert_eq!(loaded.config.dsql.reservoir.target_ready, 10);
    assert_eq!(loaded.config.dsql.reservoir.low_watermark, 5);
    assert_eq!(
        loaded.origin("dsql.reservoir.low_watermark"),
        &Origin::File { path: "b.toml".into(), line: 3 }
    );
}

#[test]
fn a_wrong_value_is_reported_with_key_file_and_line() {
    let text =
        "[project]\nname = \"demo\"\n\n[dsql]\nmax_conns = \"fifty\"\ntoken_duration = \"90\"\nport = -1\n";
    let messages = errors(Loader::new().text(text, "config.toml").unwrap().load());
    assert_eq!(messages.len(), 3, "{messages:#?}");
    assert!(
        messages[0].starts_with("config.toml:5: dsql.max_conns: expected an integer, found string"),
        "{messages:#?}"
    );
    assert!(messages[1].starts_with("config.toml:6: dsql.token_duration: `90` has no unit"), "{messages:#?}");
    assert!(messages[2].starts_with("config.toml:7: dsql.port:"), "{messages:#?}");
}

#[test]
fn unknown_keys_and_sections_are_errors_with_a_suggestion() {
    let text = "[dsql]\nmax_con = 5\n\n[nonsense]\n";
    let messages = errors(Loader::new().text(text, "config.toml").unwrap().load());
    assert_eq!(messages.len(), 2, "{messages:#?}");
    assert!(
        messages[0].contains("config.toml:2: dsql.max_con: is not a key")
            && messages[0].contains("dsql.max_conns")
    );
    assert!(messages[1].starts_with("config.toml:4: nonsense: is not a key"), "{messages:#?}");
}

#[test]
fn a_toml_syntax_error_names_file_line_and_column() {
    let err = Loader::new().text("[dsql]\nmax_conns = = 5\n", "config.toml").unwrap_err();
    let ConfigError::Syntax { path, line, column, .. } = &err else { panic!("{err}") };
    assert_eq!((path.as_str(), *line), ("config.toml", 2));
    assert!(*column > 1);
    assert!(err.to_string().starts_with("config.toml:2:"), "{err}");
}

#[test]
fn bad_env_and_flag_values_name_the_variable_and_flag() {
    let messages = errors(
        Loader::new()
            .env(env(&[("TDSQL_DSQL_MAX_CONNS", "many"), ("TDSQL_DSQL_TLS", "maybe")]))
            .flag("project.region", "Mars", "--region")
            .load(),
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("env TDSQL_DSQL_MAX_CONNS: dsql.max_conns: `many` is not an integer"))
    );
    assert!(
        messages.iter().any(|m| m.starts_with("env TDSQL_DSQL_TLS: dsql.tls: `maybe` is not true or false"))
    );
    assert!(
        messages.iter().any(|m| m.starts_with("flag --region: project.region: `Mars` is not an AWS region"))
    );
}

#[test]
fn a_validation_error_points_at_the_layer_that_set_the_value() {
    let profile = "[dsql]\nmax_conns = 50\nmax_idle_conns = 50\n";
    let user = "\n\n[dsql]\nmax_idle_conns = 10\n";
    let messages = errors(
        Loader::new()
            .text(profile, "profiles/local/profile.toml")
            .unwrap()
            .text(user, "config.toml")
            .unwrap()
            .load(),
    );
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert!(messages[0].starts_with("config.toml:4: dsql.max_idle_conns: 10 must equal dsql.max_conns (50)"));
}

#[test]
fn warnings_do_not_stop_loading() {
    let loaded =
        Loader::new().text("[dsql]\ntoken_duration = \"1h\"\n", "config.toml").unwrap().load().unwrap();
    assert_eq!(loaded.warnings.len(), 1);
    assert_eq!(loaded.warnings[0].severity, Severity::Warning);
    assert!(loaded.warnings[0].to_string().starts_with("config.toml:2: dsql.token_duration:"));
}

#[test]
fn show_masks_secrets_and_lists_every_key() {
    let loaded =
        Loader::new().env(env(&[("TDSQL_GRAFANA_ADMIN_PASSWORD", "hunter2-sentinel")])).load().unwrap();
    assert_eq!(loaded.config.observability.grafana_admin_password, "hunter2-sentinel");
    let entries = loaded.entries();
    assert_eq!(entries.len(), tdsql_config_renderer::keys::all().len());
    let password = entries.iter().find(|e| e.key == "observability.grafana_admin_password").unwrap();
    assert_eq!(password.value, "\"********\"");
    assert!(entries.iter().all(|e| !e.value.contains("hunter2")));
    let shards = entries.iter().find(|e| e.key == "temporal.history_shards").unwrap();
    assert_eq!((shards.value.as_str(), shards.env_var.as_str()), ("4", "TDSQL_TEMPORAL_HISTORY_SHARDS"));
}

/// The visibility keys load, override and show like every other key.
#[test]
fn visibility_keys_have_origins_env_names_and_docs() {
    let user = "[visibility]\nbackend = \"opensearch\"\n[opensearch]\nindex = \"team_visibility\"\n";
    let endpoint = "https://search-t-abc.eu-west-1.es.amazonaws.com";
    let loaded = Loader::new()
        .text(
            "[project]\nregion = \"eu-west-1\"\n[dsql]\nidentifier = \"abcdefghijklmnopqrstuvwxyz\"\n",
            "profile.toml",
        )
        .unwrap()
        .text(user, "config.toml")
        .unwrap()
        .env(env(&[("TDSQL_OPENSEARCH_ENDPOINT", endpoint)]))
        .load()
        .unwrap();
    assert!(loaded.config.uses_opensearch());
    assert_eq!(loaded.config.opensearch_region(), "eu-west-1");
    assert_eq!(loaded.origin("visibility.backend"), &Origin::File { path: "config.toml".into(), line: 2 });
    assert_eq!(loaded.origin("opensearch.index"), &Origin::File { path: "config.toml".into(), line: 4 });
    assert_eq!(
        loaded.origin("opensearch.endpoint"),
        &Origin::Env { var: "TDSQL_OPENSEARCH_ENDPOINT".into() }
    );
    assert_eq!(loaded.origin("opensearch.region"), &Origin::Default);
    let entries = loaded.entries();
    let entry = |key: &str| entries.iter().find(|e| e.key == key).unwrap_or_else(|| panic!("no {key}"));
    assert_eq!(entry("visibility.backend").value, "\"opensearch\"");
    assert_eq!(entry("visibility.backend").env_var, "TDSQL_VISIBILITY_BACKEND");
    assert_eq!(entry("opensearch.endpoint").value, format!("\"{endpoint}\""));
    for key in ["visibility.backend", "opensearch.endpoint", "opensearch.region", "opensearch.index"] {
        assert!(!entry(key).doc.is_empty(), "{key} has no doc line");
    }
}
