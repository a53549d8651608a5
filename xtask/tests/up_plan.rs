//! `cargo xtask up --dry-run` plans, compared with the committed files in `tests/snapshots/up/`.
//! `UPDATE_EXPECT=1 cargo test -p xtask --test up_plan` rewrites them.
//!
//! The machine is pinned so the plan is the same everywhere: no docker, terraform or cargo where
//! the overrides point (so preflight reports the same gaps and no probe reaches a real engine),
//! no user config, no `TDSQL_*` from the caller's shell.

use std::path::PathBuf;
use std::process::Command;

const MISSING: &str = "/nonexistent/tdsql-test";

/// An empty user config file, so the plan never depends on the developer's own config.toml.
fn empty_config() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("up-plan-config.toml");
    std::fs::write(&path, "# empty: defaults and the profile only\n").unwrap();
    path
}

/// The xtask binary on the pinned machine: a clean environment, no docker, terraform, cargo or
/// fork checkout where the overrides point, and an empty user config.
fn pinned() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", "/home/someone")
        .env("TDSQL_DOCKER", format!("{MISSING}/docker"))
        .env("TDSQL_TERRAFORM", format!("{MISSING}/terraform"))
        .env("CARGO", format!("{MISSING}/cargo"))
        .env("TDSQL_FORK_PATH", format!("{MISSING}/temporal"))
        .env("TDSQL_CONFIG_FILE", empty_config());
    cmd
}

fn plan(profile: &str, extra_env: &[(&str, &str)]) -> String {
    plan_with(profile, &[], extra_env)
}

fn plan_with(profile: &str, up_args: &[&str], extra_env: &[(&str, &str)]) -> String {
    let mut cmd = pinned();
    cmd.args(["--dry-run", "--profile", profile, "up"]).args(up_args);
    for (key, value) in extra_env {
        cmd.env(key, value);
    }
    let out = cmd.output().expect("the xtask binary runs");
    let stdout = String::from_utf8(out.stdout).expect("utf-8 stdout");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "up --dry-run --profile {profile} failed:\n{stderr}\n{stdout}");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().display().to_string();
    stdout.replace(&format!("{MISSING}/docker "), "docker ").replace(&format!("{root}/"), "")
}

fn check(name: &str, actual: &str) {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/up").join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; write it with UPDATE_EXPECT=1", path.display()));
    assert!(
        expected == actual,
        "the plan differs from {} (UPDATE_EXPECT=1 rewrites it):\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

#[test]
fn local_profile_plan() {
    let plan = plan("local", &[]);
    assert!(plan.contains("up --detach --wait postgresql"), "{plan}");
    assert!(!plan.contains("infra apply"), "{plan}");
    check("local", &plan);
}

#[test]
fn dsql_profile_without_a_cluster_plans_the_infra_first() {
    let plan = plan_with("dsql", &["--yes"], &[]);
    let infra = plan.find("infra apply --yes").expect("an infra stage, --yes forwarded");
    let start = plan.find("up --detach --wait --remove-orphans").expect("a start stage");
    assert!(infra < start && !plan.contains("postgresql"), "{plan}");
    check("dsql", &plan);
}

/// Enabled coordination tables without names are what `infra apply` fills in: the config stage
/// notes them instead of failing, and the infra stage runs even though a cluster is configured.
#[test]
fn dsql_profile_with_tables_to_create_plans_the_infra() {
    let plan = plan_with(
        "dsql",
        &["--yes"],
        &[
            ("TDSQL_DSQL_IDENTIFIER", "abcdefghijklmnopqrstuvwxyz"),
            ("TDSQL_COORDINATION_RATE_LIMITER_ENABLED", "true"),
        ],
    );
    assert!(plan.contains("infra apply fills in coordination.rate_limiter.table"), "{plan}");
    assert!(plan.contains("cargo xtask --profile dsql infra apply --yes"), "{plan}");
}

/// The doctor (and so `up`'s preflight) reads the fork source even while a table waits for
/// `infra apply`, instead of calling the whole configuration invalid.
#[test]
fn doctor_reads_the_fork_source_while_a_table_waits_for_infra() {
    let out = pinned()
        .env("TDSQL_COORDINATION_RATE_LIMITER_ENABLED", "true")
        .args(["--profile", "dsql", "doctor"])
        .output()
        .expect("the xtask binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("no checkout at {MISSING}/temporal (fork.path)")), "{stdout}");
    assert!(!stdout.contains("configuration invalid"), "{stdout}");
}

/// The local profile never runs infra: an unnamed table stays an error there, saying what to do.
#[test]
fn local_profile_with_an_unnamed_table_fails_at_config() {
    let out = pinned()
        .env("TDSQL_COORDINATION_CONN_LEASE_ENABLED", "true")
        .args(["--dry-run", "up"])
        .output()
        .expect("the xtask binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "coordination.conn_lease.table: is empty while coordination.conn_lease.enabled is true"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("cargo xtask infra apply"), "{stderr}");
}

/// Without a terminal nobody can answer `infra apply`'s question: `up` stops in its config stage,
/// before preflight and before anything changed, and names `--yes`.
#[test]
fn a_real_dsql_run_without_a_terminal_needs_yes_before_anything_runs() {
    let out = pinned()
        .args(["--profile", "dsql", "up"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("the xtask binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("[1/8] config: failed"), "{stderr}");
    assert!(stderr.contains("stdin is not a terminal"), "{stderr}");
    assert!(stderr.contains("cargo xtask --profile dsql up --yes"), "{stderr}");
    assert!(!stderr.contains("[2/8]") && !stderr.contains("▸ "), "nothing ran after config: {stderr}");
}

#[test]
fn dsql_profile_with_a_cluster_links_its_cloudwatch_panels() {
    let plan = plan("dsql", &[("TDSQL_DSQL_IDENTIFIER", "abcdefghijklmnopqrstuvwxyz")]);
    assert!(!plan.contains("infra apply"), "{plan}");
    assert!(plan.contains("var-dsql_cluster=abcdefghijklmnopqrstuvwxyz"), "{plan}");
    check("dsql-with-cluster", &plan);
}

/// `visibility.backend = "opensearch"`: compose.env starts no Elasticsearch, so `up` asks no
/// Elasticsearch container for the index; a visibility query through the frontend checks the
/// domain's index instead, and the domain is listed instead of the container's URL.
#[test]
fn dsql_profile_with_opensearch_visibility_leaves_elasticsearch_out() {
    let plan = plan(
        "dsql",
        &[
            ("TDSQL_DSQL_IDENTIFIER", "abcdefghijklmnopqrstuvwxyz"),
            ("TDSQL_VISIBILITY_BACKEND", "opensearch"),
            ("TDSQL_OPENSEARCH_ENDPOINT", "https://search-plan-abc123.us-east-1.es.amazonaws.com"),
        ],
    );
    assert!(!plan.contains("exec -T elasticsearch"), "{plan}");
    // Elasticsearch left from a start in the other mode goes before the stack starts.
    let start = &plan[plan.find("] start").expect("a start stage")..];
    let remove = start.find("--profile elasticsearch rm --stop --force elasticsearch elasticsearch-setup");
    let up = start.find("up --detach --wait --remove-orphans");
    assert!(remove.is_some() && remove < up, "{plan}");
    let readiness = &plan[plan.find("readiness").expect("a readiness stage")..];
    assert!(
        readiness.contains("run --rm --no-deps --quiet-pull temporal-cli workflow count --namespace default"),
        "{plan}"
    );
    assert!(
        readiness.contains("visibility index temporal_visibility_v1_dev on the OpenSearch domain answers")
    );
    assert!(!plan.contains("not checked"), "{plan}");
    assert!(
        plan.contains("OpenSearch         https://search-plan-abc123.us-east-1.es.amazonaws.com"),
        "{plan}"
    );
    assert!(!plan.contains("Elasticsearch      http"), "{plan}");
    check("dsql-opensearch", &plan);
}

#[test]
fn a_real_run_without_docker_stops_at_preflight_naming_what_is_missing() {
    let out = pinned().arg("up").output().expect("the xtask binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot start profile `local`: docker CLI, docker engine"), "{stderr}");
    assert!(stderr.contains("[2/10] preflight: failed"), "{stderr}");
    assert!(!stderr.contains("[3/10]"), "nothing runs after preflight: {stderr}");
}

#[test]
fn lifecycle_commands_pass_the_project_env_file_and_compose_file() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .env("TDSQL_DOCKER", "docker")
            .env_remove("TDSQL_PROFILE")
            .arg("--dry-run")
            .args(args)
            .output()
            .expect("the xtask binary runs");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let base = "TDSQL_GRAFANA_ADMIN_PASSWORD=*** docker compose --project-name tdsql-local \
                --env-file profiles/local/generated/compose.env -f profiles/local/compose.yaml";
    assert_eq!(run(&["down"]), format!("{base} --profile '*' down --remove-orphans\n"));
    assert_eq!(
        run(&["down", "--volumes"]),
        format!("{base} --profile '*' down --remove-orphans --volumes\n")
    );
    assert_eq!(run(&["ps"]), format!("{base} ps\n"));
    assert_eq!(
        run(&["logs", "temporal-history", "-f", "--tail", "50"]),
        format!("{base} logs --follow --tail 50 temporal-history\n")
    );
    assert_eq!(
        run(&["restart", "temporal-history", "temporal-matching"]),
        format!("{base} restart temporal-history temporal-matching\n")
    );
    let dsql = run(&["--profile", "dsql", "ps"]);
    assert!(
        dsql.contains("--project-name tdsql-dsql --env-file profiles/dsql/generated/compose.env"),
        "{dsql}"
    );
}

#[test]
fn an_unknown_service_is_refused_with_the_known_ones() {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .env_remove("TDSQL_PROFILE")
        .args(["--dry-run", "logs", "temporal-histroy"])
        .output()
        .expect("the xtask binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("unknown service `temporal-histroy`") && stderr.contains("temporal-history"),
        "{stderr}"
    );
}

#[test]
fn every_xtask_command_up_runs_exists() {
    let commands: &[&[&str]] = &[
        &["build", "--source", "x"],
        &["schema", "setup"],
        &["schema", "update"],
        &["infra", "apply", "--yes"],
    ];
    for args in commands {
        let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(*args)
            .arg("--help")
            .output()
            .expect("the xtask binary runs");
        assert!(
            out.status.success(),
            "`cargo xtask {}` is gone: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
