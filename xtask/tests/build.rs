//! `cargo xtask build`: exact `--dry-run` plans (snapshots), validation of the fork's source
//! before Docker runs, the Dockerfile (hadolint, its COPY sources, the build args the plan
//! passes) and the container entrypoint run by a real POSIX shell.
//!
//! Snapshots live in `tests/snapshots/`; `UPDATE_EXPECT=1 cargo nextest run -p xtask` rewrites
//! them. Plans are made machine-independent: explicit `--arch`, `SOURCE_DATE_EPOCH=0`, forks
//! committed with fixed dates (so their commit hashes are fixed), paths replaced by `<ROOT>` and
//! `<FORK>`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask is below the root").to_path_buf()
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tdsql-build-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("create parent");
    std::fs::write(path, text).expect("write file");
}

/// Writes an executable script.
fn write_script(path: &Path, text: &str) {
    write(path, text);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod +x");
    }
}

/// Runs git with a fixed identity and dates and no user or system config, so commits made here
/// have the same hash on every machine.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false"])
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "tdsql")
        .env("GIT_AUTHOR_EMAIL", "tdsql@example.com")
        .env("GIT_AUTHOR_DATE", "2026-01-27T00:00:00Z")
        .env("GIT_COMMITTER_NAME", "tdsql")
        .env("GIT_COMMITTER_EMAIL", "tdsql@example.com")
        .env("GIT_COMMITTER_DATE", "2026-01-27T00:00:00Z")
        .output()
        .expect("git must be installed to run these tests (apt-get install git)");
    assert!(out.status.success(), "git {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The files of a checkout shaped like the fork: Temporal's module, go.sum, the server's main
/// package, the DSQL and Elasticsearch tools, and the server version constant.
fn write_good_fork(dir: &Path) {
    write(
        &dir.join("go.mod"),
        "module go.temporal.io/server\n\ngo 1.25.5\n\nrequire (\n\tgithub.com/jackc/pgx/v5 v5.7.2\n)\n",
    );
    write(&dir.join("go.sum"), "github.com/jackc/pgx/v5 v5.7.2 h1:x=\n");
    write(&dir.join("cmd/server/main.go"), "package main\n\nfunc main() {}\n");
    write(&dir.join("cmd/tools/dsql/main.go"), "package main\n\nfunc main() {}\n");
    write(&dir.join("cmd/tools/elasticsearch/main.go"), "package main\n\nfunc main() {}\n");
    write(
        &dir.join("common/headers/version_checker.go"),
        "package headers\n\nconst (\n\tServerVersion = \"1.29.0\"\n)\n",
    );
}

/// A committed good fork with an `origin`; its commit hash is fixed.
fn good_fork(label: &str) -> TempDir {
    let fork = TempDir::new(label);
    write_good_fork(fork.path());
    git(fork.path(), &["init", "--quiet"]);
    git(fork.path(), &["add", "--all"]);
    git(fork.path(), &["commit", "--quiet", "--message", "fork"]);
    git(fork.path(), &["remote", "add", "origin", "https://github.com/iw/temporal.git"]);
    fork
}

/// The xtask binary with an environment that makes its plans the same everywhere: no tool
/// overrides, a fixed build time, and a Docker engine address where nothing answers.
fn xtask() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    for var in [
        "TDSQL_DOCKER",
        "TDSQL_GIT",
        "TDSQL_PROFILE",
        "TDSQL_FORK_PATH",
        "TDSQL_FORK_GIT",
        "TDSQL_FORK_GIT_REF",
        "TDSQL_BUILD_ARCH",
        "DOCKER_CONTEXT",
    ] {
        cmd.env_remove(var);
    }
    // Never the user's config.toml: built-in and profile defaults only, unless a test says otherwise.
    cmd.env(
        "TDSQL_CONFIG_FILE",
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/empty-config.toml"),
    );
    cmd.env("SOURCE_DATE_EPOCH", "0")
        .env("DOCKER_HOST", "unix:///nonexistent/tdsql-test-docker.sock")
        .env("CARGO_MANIFEST_DIR", env!("CARGO_MANIFEST_DIR"));
    cmd
}

fn run(cmd: &mut Command) -> (Output, String, String) {
    let out = cmd.output().expect("run the xtask binary");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

fn dry_run_build(args: &[&str]) -> (Output, String, String) {
    run(xtask().args(["--dry-run", "build"]).args(args))
}

fn normalise(text: &str, fork: &Path) -> String {
    text.replace(&fork.display().to_string(), "<FORK>")
        .replace(&project_root().display().to_string(), "<ROOT>")
}

/// Compares with the committed snapshot; `UPDATE_EXPECT=1` rewrites it instead.
fn expect_snapshot(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots").join(name);
    if std::env::var_os("UPDATE_EXPECT").is_some_and(|v| v == "1") {
        write(&path, actual);
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("snapshot {} is missing; create it with UPDATE_EXPECT=1", path.display()));
    assert!(
        expected == actual,
        "plan differs from {} (rerun with UPDATE_EXPECT=1 to accept)\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

#[test]
fn plans_for_every_architecture_and_output() {
    let fork = good_fork("plans");
    let source = fork.path().display().to_string();
    let mut all = String::new();
    for arch in ["amd64", "arm64", "all"] {
        for output in
            [&[][..], &["--load"][..], &["--push", "--tag", "ghcr.io/example/temporal-dsql-server"][..]]
        {
            let mut args = vec!["--source", source.as_str(), "--arch", arch];
            args.extend_from_slice(output);
            let (out, stdout, stderr) = dry_run_build(&args);
            assert!(out.status.success(), "{args:?} failed: {stderr}");
            assert_eq!(stdout.lines().count(), 1, "one command per plan: {stdout}");
            assert!(stdout.starts_with("docker buildx build "), "{stdout}");
            let multi_platform_load = arch == "all" && !output.contains(&"--push");
            assert_eq!(
                stderr.contains("assumes it has the containerd image store"),
                multi_platform_load,
                "{args:?}: the assumption is stated exactly when a multi-platform image is loaded: {stderr}"
            );
            all.push_str(&format!("# build --arch {arch} {}\n", output.join(" ")).replace(" \n", "\n"));
            all.push_str(&normalise(&stdout, fork.path()));
        }
    }
    expect_snapshot("build_plans.txt", &all);
}

/// This repository's commit and the tag the gateway image gets for it (`-dirty` with changes to
/// the files it is built from), as the plans show them.
fn repository_tag() -> (String, String) {
    let root = project_root();
    let commit = git(&root, &["rev-parse", "HEAD"]);
    let changes = git(
        &root,
        &["status", "--porcelain", "--", "Cargo.toml", "Cargo.lock", "crates", "xtask", "docker/dsql-local"],
    );
    let short = &commit[..12];
    let tag = if changes.is_empty() { short.to_owned() } else { format!("{short}-dirty") };
    (commit, tag)
}

#[test]
fn gateway_plans_for_every_architecture_and_output() {
    let (commit, tag) = repository_tag();
    let mut all = String::new();
    for arch in ["amd64", "arm64", "all"] {
        for output in
            [&[][..], &["--load"][..], &["--push", "--tag", "ghcr.io/example/temporal-dsql-local"][..]]
        {
            let mut args = vec!["--image", "dsql-local", "--arch", arch];
            args.extend_from_slice(output);
            let (out, stdout, stderr) = dry_run_build(&args);
            assert!(out.status.success(), "{args:?} failed: {stderr}");
            assert_eq!(stdout.lines().count(), 1, "one command per plan: {stdout}");
            assert!(stderr.contains(&format!("commit {commit}")), "{stderr}");
            all.push_str(
                &format!("# build --image dsql-local --arch {arch} {}\n", output.join(" "))
                    .replace(" \n", "\n"),
            );
            all.push_str(
                &stdout
                    .replace(&commit, "<COMMIT>")
                    .replace(&format!(":{tag} "), ":<TAG> ")
                    .replace(&format!("VERSION={tag} "), "VERSION=<TAG> ")
                    .replace(&project_root().display().to_string(), "<ROOT>"),
            );
        }
    }
    expect_snapshot("build_plans_dsql_local.txt", &all);

    let (out, _, stderr) = dry_run_build(&["--image", "dsql-local", "--source", "/tmp", "--arch", "amd64"]);
    assert!(!out.status.success() && stderr.contains("built from this workspace"), "{stderr}");
    let (out, _, stderr) = dry_run_build(&["--image", "dsql-local", "--arch", "amd64", "--push"]);
    assert!(!out.status.success() && stderr.contains("--tag <registry>/temporal-dsql-local"), "{stderr}");
}

#[test]
fn plans_for_a_git_url_a_dirty_checkout_explicit_tags_and_a_cache_dir() {
    let fork = good_fork("variants");
    let source = fork.path().display().to_string();
    let url = format!("file://{source}");
    let commit = git(fork.path(), &["rev-parse", "HEAD"]);
    let cache = fork.path().join("cache").display().to_string();
    let mut all = String::new();
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("git URL, default ref", vec!["--git", &url, "--arch", "arm64"]),
        (
            "git URL, branch",
            vec![
                "--git",
                &url,
                "--ref",
                "main",
                "--arch",
                "amd64",
                "--push",
                "--tag",
                "registry.example.com/tdsql",
            ],
        ),
        (
            "git URL, full commit (no lookup)",
            vec![
                "--git",
                "https://github.com/iw/temporal",
                "--ref",
                &commit,
                "--arch",
                "all",
                "--push",
                "--tag",
                "ghcr.io/example/temporal-dsql-server",
            ],
        ),
        (
            "explicit name:tag",
            vec!["--source", &source, "--arch", "arm64", "--tag", "temporal-dsql-server:dev"],
        ),
        ("cache dir", vec!["--source", &source, "--arch", "amd64", "--cache-dir", &cache]),
    ];
    for (label, args) in &cases {
        let (out, stdout, stderr) = dry_run_build(args);
        assert!(out.status.success(), "{label}: {stderr}");
        all.push_str(&format!("# {label}\n{}", normalise(&stdout, fork.path())));
    }
    write(&fork.path().join("cmd/server/main.go"), "package main\n\nfunc main() { println() }\n");
    let (out, stdout, stderr) = dry_run_build(&["--source", &source, "--arch", "arm64"]);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("with local changes"), "{stderr}");
    all.push_str(&format!("# dirty checkout\n{}", normalise(&stdout, fork.path())));
    expect_snapshot("build_plan_variants.txt", &all);
}

#[test]
fn the_default_architecture_is_the_engines() {
    let fork = good_fork("engine-arch");
    let tools = TempDir::new("engine-arch");
    let docker = tools.path().join("docker");
    let host = if std::env::consts::ARCH == "aarch64" { "amd64" } else { "arm64" };
    write_script(
        &docker,
        &format!("#!/bin/sh\n[ \"$1\" = version ] && {{ echo {host}; exit 0; }}\nexit 99\n"),
    );
    let (out, stdout, stderr) = run(xtask().env("TDSQL_DOCKER", &docker).args([
        "--dry-run",
        "build",
        "--source",
        &fork.path().display().to_string(),
    ]));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains(&format!("--platform linux/{host} ")),
        "the image must run on the engine: {stdout}"
    );
}

/// With no engine to ask, this machine's architecture.
#[test]
fn the_default_architecture_is_this_machines() {
    let fork = good_fork("host-arch");
    let (out, stdout, stderr) = dry_run_build(&["--source", &fork.path().display().to_string()]);
    assert!(out.status.success(), "{stderr}");
    let expected = match std::env::consts::ARCH {
        "x86_64" => "--platform linux/amd64 ",
        "aarch64" => "--platform linux/arm64 ",
        other => panic!("no image architecture for a {other} test machine"),
    };
    assert!(stdout.contains(expected), "{stdout}");
    assert!(stdout.contains(" --load "), "loading into the local engine is the default: {stdout}");
}

/// Each broken checkout must be rejected before Docker is called (no plan on stdout), with a
/// message naming what is missing.
#[test]
fn broken_checkouts_are_rejected_naming_what_is_missing() {
    type Breakage = fn(&Path);
    let cases: &[(&str, Breakage, &[&str])] = &[
        (
            "empty directory",
            |dir| std::fs::remove_dir_all(dir).and_then(|()| std::fs::create_dir(dir)).unwrap(),
            &["no go.mod", "no go.sum", "no cmd/server directory"],
        ),
        (
            "another module",
            |dir| write(&dir.join("go.mod"), "module github.com/example/other\n\ngo 1.25.5\n"),
            &["declares module `github.com/example/other`, not `go.temporal.io/server`"],
        ),
        (
            "no module line",
            |dir| write(&dir.join("go.mod"), "go 1.25.5\n"),
            &["no `module go.temporal.io/server` line"],
        ),
        (
            "no go directive",
            |dir| write(&dir.join("go.mod"), "module go.temporal.io/server\n"),
            &["no `go` directive"],
        ),
        (
            "a bad go version",
            |dir| write(&dir.join("go.mod"), "module go.temporal.io/server\ngo latest\n"),
            &["Go version `latest`"],
        ),
        ("no go.sum", |dir| std::fs::remove_file(dir.join("go.sum")).unwrap(), &["no go.sum"]),
        (
            "no cmd/server",
            |dir| std::fs::remove_dir_all(dir.join("cmd/server")).unwrap(),
            &["no cmd/server directory"],
        ),
        (
            "cmd/server without Go files",
            |dir| std::fs::remove_file(dir.join("cmd/server/main.go")).unwrap(),
            &["cmd/server holds no .go files"],
        ),
    ];
    for (label, break_it, expected) in cases {
        let fork = TempDir::new("broken");
        write_good_fork(fork.path());
        break_it(fork.path());
        let (out, stdout, stderr) =
            dry_run_build(&["--source", &fork.path().display().to_string(), "--arch", "amd64"]);
        assert!(!out.status.success(), "{label}: accepted: {stdout}");
        assert!(stdout.is_empty(), "{label}: docker was planned although the source is broken: {stdout}");
        assert!(stderr.contains("is not a checkout of the Temporal DSQL fork"), "{label}: {stderr}");
        for needle in *expected {
            assert!(stderr.contains(needle), "{label}: `{needle}` not named in: {stderr}");
        }
        assert!(stderr.contains("--source PATH or --git URL"), "{label}: no fix given: {stderr}");
    }
}

#[test]
fn a_missing_source_and_a_checkout_without_git_are_rejected() {
    let parent = TempDir::new("missing");
    let missing = parent.path().join("temporal");
    let (out, stdout, stderr) =
        dry_run_build(&["--source", &missing.display().to_string(), "--arch", "amd64"]);
    assert!(!out.status.success() && stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("does not exist") && stderr.contains("git clone https://github.com/iw/temporal.git"),
        "{stderr}"
    );

    // Default source: the config's fork.path (here from its environment override).
    let (out, _, stderr) =
        run(xtask().env("TDSQL_FORK_PATH", &missing).args(["--dry-run", "build", "--arch", "amd64"]));
    assert!(!out.status.success() && stderr.contains(&missing.display().to_string()), "{stderr}");

    let plain = TempDir::new("no-git");
    write_good_fork(plain.path());
    let (out, stdout, stderr) =
        dry_run_build(&["--source", &plain.path().display().to_string(), "--arch", "amd64"]);
    assert!(!out.status.success() && stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("cannot read the commit of the fork checkout") && stderr.contains("--tag"),
        "{stderr}"
    );
    let (out, stdout, stderr) = dry_run_build(&[
        "--source",
        &plain.path().display().to_string(),
        "--arch",
        "amd64",
        "--tag",
        "temporal-dsql-server:dev",
    ]);
    assert!(out.status.success(), "an explicit name:tag needs no commit: {stderr}");
    assert!(stdout.contains("--tag temporal-dsql-server:dev --load"), "{stdout}");
}

#[test]
fn defaults_come_from_the_config_and_flags_override_them() {
    let fork = good_fork("config");
    let url = format!("file://{}", fork.path().display());
    let commit = git(fork.path(), &["rev-parse", "HEAD"]);
    git(fork.path(), &["branch", "release"]);
    let dir = TempDir::new("config");
    let config = dir.path().join("config.toml");
    let with_config = || {
        let mut cmd = xtask();
        cmd.env("TDSQL_CONFIG_FILE", &config).args(["--dry-run", "build"]);
        cmd
    };

    write(&config, &format!("[fork]\npath = \"{}\"\n\n[build]\narch = \"arm64\"\n", fork.path().display()));
    let (out, stdout, stderr) = run(&mut with_config());
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains(&format!("fork={} ", fork.path().display())),
        "fork.path is the source: {stdout}"
    );
    assert!(stdout.contains("--platform linux/arm64 "), "build.arch is the default: {stdout}");
    let (_, stdout, _) = run(with_config().args(["--arch", "amd64"]));
    assert!(stdout.contains("--platform linux/amd64 "), "--arch wins over build.arch: {stdout}");
    let (out, _, stderr) = run(with_config().args(["--ref", "release"]));
    assert!(!out.status.success() && stderr.contains("--ref needs a git source"), "{stderr}");

    write(&config, &format!("[fork]\ngit = \"{url}\"\ngit_ref = \"release\"\n"));
    let (out, stdout, stderr) = run(with_config().args(["--arch", "amd64"]));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains(&format!("fork={url}#{commit}")), "fork.git and fork.git_ref: {stdout}");
    assert!(stderr.contains("(release)"), "{stderr}");
    let (out, _, stderr) = run(with_config().args(["--arch", "amd64", "--ref", "no-such-branch"]));
    assert!(
        !out.status.success() && stderr.contains("no branch or tag `no-such-branch`"),
        "--ref wins: {stderr}"
    );
    let source = fork.path().display().to_string();
    let (out, stdout, stderr) = run(with_config().args(["--arch", "amd64", "--source", &source]));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains(&format!("fork={source} ")), "--source wins over fork.git: {stdout}");
}

#[test]
fn git_refs_are_resolved_or_rejected_before_docker_runs() {
    let fork = good_fork("refs");
    let url = format!("file://{}", fork.path().display());
    let commit = git(fork.path(), &["rev-parse", "HEAD"]);
    git(fork.path(), &["tag", "--annotate", "--message", "release", "v1.29.0-dsql"]);
    let (out, stdout, stderr) = dry_run_build(&["--git", &url, "--ref", "v1.29.0-dsql", "--arch", "amd64"]);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains(&format!("#{commit}'")), "an annotated tag resolves to its commit: {stdout}");

    let (out, stdout, stderr) = dry_run_build(&["--git", &url, "--ref", "no-such-branch", "--arch", "amd64"]);
    assert!(!out.status.success() && stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("has no branch or tag `no-such-branch`"), "{stderr}");

    let (out, _, stderr) = dry_run_build(&["--git", &url, "--ref", &commit[..12], "--arch", "amd64"]);
    assert!(!out.status.success() && stderr.contains("give all 40 hex digits"), "{stderr}");
}

#[test]
fn push_needs_a_registry_name() {
    let fork = good_fork("push");
    let (out, stdout, stderr) =
        dry_run_build(&["--source", &fork.path().display().to_string(), "--arch", "arm64", "--push"]);
    assert!(!out.status.success() && stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("--push needs an image name in a registry") && stderr.contains("--tag"),
        "{stderr}"
    );
}

/// A stand-in for the docker CLI that answers `docker info` like an engine with or without the
/// containerd image store (the build machines have no engine to ask).
fn fake_docker(dir: &Path, driver_status: &str) -> PathBuf {
    let path = dir.join("docker");
    write_script(
        &path,
        &format!(
            "#!/bin/sh\n[ \"$1\" = info ] && {{ echo '{driver_status}'; exit 0; }}\necho \"unexpected: $*\" >&2\nexit 99\n"
        ),
    );
    path
}

#[test]
fn a_multi_platform_load_needs_the_containerd_image_store() {
    let fork = good_fork("containerd");
    let source = fork.path().display().to_string();
    let tools = TempDir::new("fake-docker");

    let classic = fake_docker(tools.path(), r#"[["Backing Filesystem","extfs"],["Supports d_type","true"]]"#);
    let (out, stdout, stderr) = run(xtask().env("TDSQL_DOCKER", &classic).args([
        "--dry-run",
        "build",
        "--source",
        &source,
        "--arch",
        "all",
    ]));
    assert!(!out.status.success() && stdout.is_empty(), "{stdout}");
    for needle in ["containerd image store", "--push", "--arch amd64", "containerd-snapshotter"] {
        assert!(stderr.contains(needle), "`{needle}` missing from: {stderr}");
    }

    let containerd = fake_docker(tools.path(), r#"[["driver-type","io.containerd.snapshotter.v1"]]"#);
    let (out, stdout, stderr) = run(xtask().env("TDSQL_DOCKER", &containerd).args([
        "--dry-run",
        "build",
        "--source",
        &source,
        "--arch",
        "all",
    ]));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("--platform linux/amd64,linux/arm64") && stdout.contains("--load"), "{stdout}");
    assert!(!stderr.contains("assumes"), "nothing to assume when the engine answered: {stderr}");

    // One platform loads into any engine: the engine is not even asked.
    let (out, _, stderr) = run(xtask().env("TDSQL_DOCKER", &classic).args([
        "--dry-run",
        "build",
        "--source",
        &source,
        "--arch",
        "arm64",
    ]));
    assert!(out.status.success(), "{stderr}");
}

fn dockerfile() -> String {
    std::fs::read_to_string(project_root().join("Dockerfile")).expect("read the Dockerfile")
}

#[test]
fn hadolint_passes_on_the_dockerfile() {
    let out = Command::new(tdsql_test_support::hadolint())
        .arg(project_root().join("Dockerfile"))
        .output()
        .expect("run hadolint");
    assert!(
        out.status.success(),
        "hadolint reports:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn hadolint_passes_on_the_gateway_dockerfile() {
    let out = Command::new(tdsql_test_support::hadolint())
        .arg(project_root().join("docker/dsql-local/Dockerfile"))
        .output()
        .expect("run hadolint");
    assert!(
        out.status.success(),
        "hadolint reports:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The gateway's context is the workspace, filtered by the ignore file next to its Dockerfile: it
/// must let in what cargo loads (every member's manifest and sources, the lock file) and keep out
/// the rest (target/, rendered files, the user's config).
#[test]
fn the_gateway_context_holds_the_workspace_sources_only() {
    let ignore = std::fs::read_to_string(project_root().join("docker/dsql-local/Dockerfile.dockerignore"))
        .expect("docker/dsql-local/Dockerfile.dockerignore (BuildKit reads it for this Dockerfile)");
    let rules: Vec<&str> =
        ignore.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    assert_eq!(rules.first(), Some(&"*"), "an allow-list: everything is excluded first");
    for needed in [
        "!Cargo.toml",
        "!Cargo.lock",
        "!crates/*/Cargo.toml",
        "!crates/*/src",
        "!xtask/Cargo.toml",
        "!xtask/src",
    ] {
        assert!(rules.contains(&needed), "the gateway context lacks {needed}");
    }
    assert!(
        !rules.iter().any(|r| r.contains("target") || r.contains("generated") || r.contains("config.toml")),
        "{rules:?}"
    );
    // Every [[test]] a manifest names explicitly must be in the context (cargo loads it).
    for entry in std::fs::read_dir(project_root().join("crates")).expect("crates/").flatten() {
        let manifest = std::fs::read_to_string(entry.path().join("Cargo.toml")).unwrap_or_default();
        let crate_dir = entry.file_name().to_string_lossy().into_owned();
        for block in manifest.split("[[test]]").skip(1) {
            let name = block.lines().find_map(|l| l.trim().strip_prefix("name = ")).expect("a test name");
            let file = format!("!crates/{crate_dir}/tests/{}.rs", name.trim_matches('"'));
            assert!(
                rules.contains(&file.as_str()),
                "the gateway context lacks {file} (a [[test]] of {crate_dir})"
            );
        }
    }
    let dockerfile =
        std::fs::read_to_string(project_root().join("docker/dsql-local/Dockerfile")).expect("read it");
    for needed in [
        "--locked",
        "-p tdsql-dsql-local --bin tdsql-dsql-local",
        "FROM --platform=$BUILDPLATFORM rust:",
        "ENTRYPOINT [\"/usr/local/bin/tdsql-dsql-local\"]",
    ] {
        assert!(dockerfile.contains(needed), "the gateway Dockerfile lacks `{needed}`");
    }
}

/// Every shell script the project ships or runs (found by its shebang, so a new one is covered).
fn shell_scripts() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read a project folder").flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "generated") {
                    walk(&path, out);
                }
            } else if std::fs::read(&path).is_ok_and(|bytes| {
                let first = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
                first.starts_with(b"#!") && (first.ends_with(b"sh") || first.ends_with(b"bash"))
            }) {
                out.push(path);
            }
        }
    }
    let mut scripts = Vec::new();
    for dir in [".ci", "docker", "profiles", "terraform"] {
        walk(&project_root().join(dir), &mut scripts);
    }
    scripts.sort();
    scripts
}

#[test]
fn shellcheck_passes_on_every_shell_script() {
    let scripts = shell_scripts();
    for expected in ["docker/entrypoint.sh", ".ci/run"] {
        assert!(scripts.contains(&project_root().join(expected)), "{expected} not found among {scripts:?}");
    }
    let out = Command::new(tdsql_test_support::shellcheck())
        .args(["--severity=style", "--external-sources"])
        .args(&scripts)
        .output()
        .expect("run shellcheck");
    assert!(
        out.status.success(),
        "shellcheck reports:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The Dockerfile's instructions, continuation lines joined, comments dropped.
fn instructions(text: &str) -> Vec<String> {
    let mut result = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                result.push(std::mem::take(&mut current));
            }
        }
    }
    result
}

/// The sources of every COPY that reads this repository's context (not `--from=` a stage).
fn context_copy_sources() -> Vec<String> {
    instructions(&dockerfile())
        .iter()
        .filter_map(|i| i.strip_prefix("COPY "))
        .filter(|rest| !rest.contains("--from="))
        .flat_map(|rest| {
            let words: Vec<&str> = rest.split_whitespace().filter(|w| !w.starts_with("--")).collect();
            words[..words.len() - 1].iter().map(|w| (*w).to_owned()).collect::<Vec<_>>()
        })
        .collect()
}

/// The files `.dockerignore` lets into the build context. The file is an allow-list (`*`, then
/// `!path` lines); anything else would need a full matcher, so it is rejected here.
fn context_files() -> BTreeSet<String> {
    let text = std::fs::read_to_string(project_root().join(".dockerignore")).expect("read .dockerignore");
    let patterns: Vec<&str> =
        text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    assert_eq!(patterns.first(), Some(&"*"), ".dockerignore must start by excluding everything");
    patterns[1..]
        .iter()
        .map(|p| {
            let path =
                p.strip_prefix('!').unwrap_or_else(|| panic!("only `!path` lines may follow `*`: {p}"));
            assert!(!path.contains(['*', '?', '[']), "allow-list entries are plain paths: {p}");
            path.to_owned()
        })
        .collect()
}

#[test]
fn every_copy_source_exists_and_is_in_the_context() {
    let sources = context_copy_sources();
    assert!(sources.contains(&"docker/entrypoint.sh".to_owned()), "{sources:?}");
    let allowed = context_files();
    for source in &sources {
        assert!(
            project_root().join(source).is_file(),
            "the Dockerfile copies {source}, which does not exist"
        );
        assert!(allowed.contains(source), ".dockerignore keeps {source} out of the build context");
    }
    for path in &allowed {
        assert!(project_root().join(path).exists(), ".dockerignore lets in {path}, which does not exist");
        assert!(sources.contains(path), ".dockerignore lets in {path}, which no COPY reads");
    }
    let bytes: u64 = allowed.iter().map(|p| std::fs::metadata(project_root().join(p)).unwrap().len()).sum();
    assert!(bytes < 16 * 1024, "the build context should be the entrypoint only, not {bytes} bytes");
}

#[test]
fn every_build_arg_the_plan_passes_is_declared_and_the_builder_cross_compiles() {
    let text = dockerfile();
    let steps = instructions(&text);
    let declared: BTreeSet<String> = steps
        .iter()
        .filter_map(|i| i.strip_prefix("ARG "))
        .map(|rest| rest.split(['=', ' ']).next().unwrap().to_owned())
        .collect();
    let fork = good_fork("args");
    let (out, stdout, stderr) =
        dry_run_build(&["--source", &fork.path().display().to_string(), "--arch", "all"]);
    assert!(out.status.success(), "{stderr}");
    let words: Vec<&str> = stdout.split_whitespace().collect();
    let passed: Vec<&str> =
        words.windows(2).filter(|w| w[0] == "--build-arg").map(|w| w[1].split('=').next().unwrap()).collect();
    assert!(passed.contains(&"GO_VERSION") && passed.contains(&"REVISION"), "{passed:?}");
    for arg in &passed {
        assert!(
            declared.contains(*arg),
            "the plan passes --build-arg {arg}, which the Dockerfile never declares"
        );
    }

    let froms: Vec<&String> = steps.iter().filter(|i| i.starts_with("FROM ")).collect();
    assert!(froms[0].starts_with("FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}"), "{}", froms[0]);
    let runtime = froms.last().unwrap();
    assert_eq!(
        runtime.as_str(),
        "FROM alpine:${ALPINE_VERSION}",
        "the runtime base is Alpine for the target"
    );
    let alpine = steps
        .iter()
        .find_map(|i| i.strip_prefix("ARG ALPINE_VERSION="))
        .expect("ALPINE_VERSION has a default");
    assert!(
        alpine.split('.').count() == 3 && alpine.split('.').all(|p| p.parse::<u32>().is_ok()),
        "the runtime Alpine is pinned to a release: {alpine}"
    );
    let runtime_stage = steps.iter().skip_while(|i| *i != *runtime).collect::<Vec<_>>();
    assert!(
        !runtime_stage.iter().any(|i| i.starts_with("RUN ")),
        "the target-platform stage must run nothing, so cross-architecture builds need no emulation"
    );
    assert!(text.contains("CGO_ENABLED=0") && text.contains("GOARCH=\"$TARGETARCH\""), "cross-compiles");
    assert!(text.contains("type=cache,id=tdsql-go-mod") && text.contains("type=cache,id=tdsql-go-build"));
    assert!(steps.iter().any(|i| i == "USER 1000:1000"), "runs as uid 1000");
    assert!(steps.iter().any(|i| i.starts_with("ENTRYPOINT [\"/usr/local/bin/entrypoint.sh\"]")));
    for label in ["source", "revision", "created", "version"] {
        assert!(text.contains(&format!("org.opencontainers.image.{label}=")), "OCI label {label}");
    }
}

/// Runs the entrypoint with a real POSIX shell and a `temporal-server` stand-in that prints what
/// it was started with.
fn entrypoint(env: &[(&str, &str)], args: &[&str], stubs: &[(&str, &str)]) -> (Output, String, String) {
    let bin = TempDir::new("entrypoint");
    let mut all_stubs = vec![(
        "temporal-server",
        "#!/bin/sh\necho \"args=$*\"\necho \"bind=$BIND_ON_IP\"\necho \"broadcast=$TEMPORAL_BROADCAST_ADDRESS\"\necho \"environment=${TEMPORAL_ENVIRONMENT:-unset}\"\n",
    )];
    all_stubs.extend_from_slice(stubs);
    for (name, script) in all_stubs {
        write_script(&bin.path().join(name), script);
    }
    let mut cmd = Command::new("/bin/sh");
    cmd.arg(project_root().join("docker/entrypoint.sh"))
        .args(args)
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", bin.path().display()));
    for (key, value) in env {
        cmd.env(key, value);
    }
    let out = cmd.output().expect("run /bin/sh");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

/// What this machine's resolver says its hostname is, as the entrypoint asks it.
fn own_address() -> String {
    let host = String::from_utf8(Command::new("hostname").output().expect("hostname").stdout).unwrap();
    let out = Command::new("getent").args(["hosts", host.trim()]).output().expect("getent");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().expect("the hostname resolves").to_owned()
}

const SERVER_ARGS: &str =
    "args=--config-file /etc/temporal/config/config.yaml --allow-no-auth start --service history";

#[test]
fn the_entrypoint_resolves_the_container_address_and_starts_the_service() {
    let (out, stdout, stderr) =
        entrypoint(&[("SERVICE", "history"), ("TEMPORAL_ENVIRONMENT", "development")], &[], &[]);
    assert!(out.status.success(), "{stderr}");
    let ip = own_address();
    assert!(stdout.contains(SERVER_ARGS), "{stdout}");
    assert!(
        stdout.contains(&format!("bind={ip}\n")) && stdout.contains(&format!("broadcast={ip}\n")),
        "{stdout}"
    );
    assert!(stdout.contains("environment=unset"), "deprecated flags conflict with --config-file: {stdout}");

    // Preset values are kept; a wildcard bind is not advertised.
    let (_, stdout, _) = entrypoint(&[("SERVICE", "history"), ("BIND_ON_IP", "10.1.2.3")], &[], &[]);
    assert!(stdout.contains("bind=10.1.2.3\n") && stdout.contains("broadcast=10.1.2.3\n"), "{stdout}");
    let (_, stdout, _) = entrypoint(
        &[("SERVICE", "history"), ("BIND_ON_IP", "10.1.2.3"), ("TEMPORAL_BROADCAST_ADDRESS", "10.9.9.9")],
        &[],
        &[],
    );
    assert!(stdout.contains("broadcast=10.9.9.9\n"), "{stdout}");
    let (_, stdout, _) = entrypoint(&[("SERVICE", "history"), ("BIND_ON_IP", "0.0.0.0")], &[], &[]);
    assert!(stdout.contains("bind=0.0.0.0\n") && stdout.contains(&format!("broadcast={ip}\n")), "{stdout}");
}

#[test]
fn the_entrypoint_prefers_a_routable_ipv4_address() {
    // A container's /etc/hosts as Docker writes it, answered by a getent stand-in.
    let getent = "#!/bin/sh\nprintf '127.0.0.1 %s\\nfd00::5 %s\\n172.18.0.5 %s\\n' \"$2\" \"$2\" \"$2\"\n";
    let (out, stdout, stderr) = entrypoint(&[("SERVICE", "matching")], &[], &[("getent", getent)]);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("bind=172.18.0.5\n") && stdout.contains("broadcast=172.18.0.5\n"), "{stdout}");
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[test]
fn the_entrypoint_needs_a_service_and_runs_other_commands_as_given() {
    let (out, _, stderr) = entrypoint(&[], &[], &[]);
    assert!(!out.status.success(), "started without SERVICE");
    assert!(stderr.contains("set SERVICE to the Temporal service to run"), "{stderr}");

    let (out, stdout, stderr) = entrypoint(&[], &["echo", "index", "setup"], &[]);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, "index setup\n");
}

/// A docker CLI stand-in that has buildx, records the arguments of `buildx build` one per line,
/// and exits with `exit_code`.
fn recording_docker(dir: &Path, exit_code: i32) -> (PathBuf, PathBuf) {
    let record = dir.join("recorded-args");
    let script = format!(
        "#!/bin/sh\n\
         if [ \"$1 $2\" = \"buildx version\" ]; then echo 'github.com/docker/buildx v0.30.0'; exit 0; fi\n\
         if [ \"$1 $2\" = \"buildx build\" ]; then for a in \"$@\"; do printf '%s\\n' \"$a\"; done > '{}'; exit {exit_code}; fi\n\
         echo \"unexpected: $*\" >&2; exit 99\n",
        record.display()
    );
    let path = dir.join("docker");
    write_script(&path, &script);
    (path, record)
}

#[test]
fn a_real_run_executes_exactly_the_planned_command_and_passes_its_exit_code() {
    let fork = good_fork("real-run");
    let source = fork.path().display().to_string();
    let tools = TempDir::new("recording-docker");
    let (docker, record) = recording_docker(tools.path(), 0);
    let args = ["build", "--source", source.as_str(), "--arch", "arm64"];

    let (out, plan, stderr) = run(xtask().env("TDSQL_DOCKER", &docker).arg("--dry-run").args(args));
    assert!(out.status.success(), "{stderr}");
    assert!(!record.exists(), "a dry run ran docker buildx build");

    let (out, _, stderr) = run(xtask().env("TDSQL_DOCKER", &docker).args(args));
    assert!(out.status.success(), "{stderr}");
    let recorded = std::fs::read_to_string(&record).expect("docker buildx build ran");
    let planned: Vec<&str> = plan.split_whitespace().skip(1).collect();
    let ran: Vec<&str> = recorded.lines().collect();
    assert_eq!(ran, planned, "the run differs from the plan");

    let (failing, _) = recording_docker(tools.path(), 3);
    let (out, _, stderr) = run(xtask().env("TDSQL_DOCKER", &failing).args(args));
    assert_eq!(out.status.code(), Some(3), "docker's exit code passes through: {stderr}");
}

#[test]
fn a_docker_without_buildx_is_named_before_the_build() {
    let fork = good_fork("no-buildx");
    let tools = TempDir::new("no-buildx");
    let docker = tools.path().join("docker");
    write_script(&docker, "#!/bin/sh\necho \"docker: unknown command: docker $1\" >&2\nexit 1\n");
    let (out, _, stderr) = run(xtask().env("TDSQL_DOCKER", &docker).args([
        "build",
        "--source",
        &fork.path().display().to_string(),
        "--arch",
        "amd64",
    ]));
    assert!(!out.status.success());
    assert!(
        stderr.contains("buildx plugin is missing") && stderr.contains("docker-buildx-plugin"),
        "{stderr}"
    );
}
