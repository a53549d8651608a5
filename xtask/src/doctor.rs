//! `cargo xtask doctor`: every prerequisite checked at once, one table, one fix per line.

use anyhow::{Result, bail};
use clap::Args;

use crate::context::Context;
use crate::exec::{Cmd, DOCKER, TERRAFORM};
use crate::{config, ops, paths};
use tdsql_config_renderer::ForkSource;

/// Arguments of `cargo xtask doctor`.
#[derive(Debug, Args)]
pub(crate) struct DoctorArgs {}

/// The outcome of one check.
#[derive(Debug)]
pub(crate) struct Check {
    pub(crate) name: &'static str,
    pub(crate) ok: bool,
    /// Version when found, else what went wrong.
    pub(crate) detail: String,
    pub(crate) needed_by: &'static str,
    /// Whether the chosen profile needs it.
    pub(crate) required: bool,
    pub(crate) fix: String,
}

impl DoctorArgs {
    pub(crate) fn run(self, ctx: &Context) -> Result<()> {
        let checks = run_checks(ctx);
        print_table(&checks);
        let missing: Vec<&str> = checks.iter().filter(|c| c.required && !c.ok).map(|c| c.name).collect();
        if missing.is_empty() {
            println!("\nall prerequisites of profile `{}` are present", ctx.profile.name);
            return Ok(());
        }
        bail!(
            "profile `{}` cannot run here: missing {} (see the fix column above)",
            ctx.profile.name,
            missing.join(", ")
        )
    }
}

/// Runs every check; `up` runs the same ones as its preflight.
pub(crate) fn run_checks(ctx: &Context) -> Vec<Check> {
    let dsql = ctx.profile.name == "dsql";
    let mut checks = Vec::new();

    let cli = DOCKER.locate();
    let cli_ok = cli.is_ok();
    checks.push(match &cli {
        Ok(_) => Check {
            name: "docker CLI",
            ok: true,
            detail: version_line(ctx, Cmd::new(DOCKER).arg("--version")),
            needed_by: "up, down, ps, logs, restart, build",
            required: true,
            fix: String::new(),
        },
        Err(err) => Check {
            name: "docker CLI",
            ok: false,
            detail: "not found".to_owned(),
            needed_by: "up, down, ps, logs, restart, build",
            required: true,
            fix: err.to_string(),
        },
    });

    let engine =
        cli_ok.then(|| Cmd::new(DOCKER).args(["version", "--format", "{{.Server.Version}}"]).probe(ctx).ok());
    let engine_reachable = matches!(&engine, Some(Some(out)) if out.status.success());
    let engine_version = match &engine {
        Some(Some(out)) if out.status.success() => Some(out.stdout.trim().to_owned()),
        _ => None,
    };
    let too_old = engine_version.as_deref().and_then(engine_too_old);
    checks.push(Check {
        name: "docker engine",
        ok: engine_reachable && too_old.is_none(),
        detail: match (&engine, &engine_version, &too_old) {
            (_, Some(version), Some(why)) => format!("server {version}: {why}"),
            (_, Some(version), None) => format!("server {version}"),
            (Some(Some(out)), None, _) => first_meaningful_line(&out.stderr, "not reachable"),
            _ => "not checked (no docker CLI)".to_owned(),
        },
        needed_by: "up, down, ps, logs, restart, build",
        required: true,
        fix: if too_old.is_some() {
            format!(
                "upgrade the Docker engine to {MIN_ENGINE_MAJOR} or newer (Docker Desktop 4.27 or newer; Linux: \
                 https://docs.docker.com/engine/install/)"
            )
        } else {
            "start a Docker engine: Docker Desktop, or `sudo systemctl start docker` on Linux \
             (DOCKER_HOST / `docker context use` when it runs elsewhere)"
                .to_owned()
        },
    });
    let engine_ok = engine_reachable;

    let buildx = cli_ok.then(|| Cmd::new(DOCKER).args(["buildx", "version"]).probe(ctx).ok()).flatten();
    checks.push(Check {
        name: "docker buildx",
        ok: buildx.as_ref().is_some_and(|o| o.status.success()),
        detail: buildx.as_ref().map_or("not checked (no docker CLI)".to_owned(), |o| {
            if o.status.success() { o.first_line() } else { "plugin not installed".to_owned() }
        }),
        needed_by: "build, up (when the image is missing)",
        required: true,
        fix: "install the buildx plugin (included in Docker Desktop; Debian/Ubuntu: apt-get install \
              docker-buildx-plugin)"
            .to_owned(),
    });

    let compose =
        cli_ok.then(|| Cmd::new(DOCKER).args(["compose", "version", "--short"]).probe(ctx).ok()).flatten();
    checks.push(Check {
        name: "docker compose v2",
        ok: compose.as_ref().is_some_and(|o| o.status.success()),
        detail: compose.as_ref().map_or("not checked (no docker CLI)".to_owned(), |o| {
            if o.status.success() {
                format!("v{}", o.first_line().trim_start_matches('v'))
            } else {
                "plugin not installed".to_owned()
            }
        }),
        needed_by: "up, down, ps, logs, restart",
        required: true,
        fix: "install the compose v2 plugin (included in Docker Desktop; Debian/Ubuntu: apt-get \
              install docker-compose-plugin)"
            .to_owned(),
    });

    let terraform = TERRAFORM.locate();
    checks.push(match &terraform {
        Ok(_) => Check {
            name: "terraform",
            ok: true,
            detail: version_line(ctx, Cmd::new(TERRAFORM).arg("version")),
            needed_by: "infra (dsql profile)",
            required: dsql,
            fix: String::new(),
        },
        Err(err) => Check {
            name: "terraform",
            ok: engine_ok,
            detail: if engine_ok {
                "not installed; the official image will run through Docker".to_owned()
            } else {
                "not installed, and no Docker engine for the official image".to_owned()
            },
            needed_by: "infra (dsql profile)",
            required: dsql,
            fix: err.to_string(),
        },
    });

    checks.push(aws_credentials(ctx, dsql));
    checks.push(fork_source(ctx));
    if !dsql {
        checks.push(dsql_semantics(ctx));
    }
    checks
}

/// The local profile's stand-in: through the dsql-local gateway (DSQL's semantics) or, opted
/// out, PostgreSQL directly.
fn dsql_semantics(ctx: &Context) -> Check {
    let config = crate::config::load(ctx);
    let through_gateway = config.as_ref().is_ok_and(|c| c.uses_gateway());
    Check {
        name: "DSQL semantics",
        ok: true,
        detail: if through_gateway {
            "dsql-local in front of PostgreSQL 16 (TLS, IAM tokens, DSQL's statement rules)".to_owned()
        } else if config.is_ok() {
            "off: Temporal talks to PostgreSQL directly (local.gateway.enabled = false)".to_owned()
        } else {
            "unknown: the configuration does not load (`cargo xtask config validate`)".to_owned()
        },
        needed_by: "up (local profile)",
        required: false,
        fix: String::new(),
    }
}

fn aws_credentials(ctx: &Context, dsql: bool) -> Check {
    let mut check = Check {
        name: "AWS credentials",
        ok: false,
        detail: String::new(),
        needed_by: "infra, schema, up (dsql profile)",
        required: dsql,
        fix: "configure credentials for the default chain: `aws configure`, `aws sso login`, \
              AWS_PROFILE, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
            .to_owned(),
    };
    if !dsql {
        check.ok = true;
        check.detail = format!("not needed by profile `{}`", ctx.profile.name);
        return check;
    }
    // The AWS SDK lives in the tdsql-ops helper so `cargo xtask --help` never compiles it.
    let probe = ops::command(["aws-credentials"]).probe(ctx);
    match probe {
        Ok(out) if out.status.success() => {
            check.ok = true;
            check.detail = out.first_line();
        }
        Ok(out) => check.detail = first_meaningful_line(&out.stderr, "not resolvable"),
        Err(err) => check.detail = format!("could not run the check: {err}"),
    }
    check
}

/// The fork source from the config (`fork.path`, or `fork.git` + `fork.git_ref`).
fn fork_source(ctx: &Context) -> Check {
    let mut check = Check {
        name: "fork source",
        ok: false,
        detail: String::new(),
        needed_by: "build (from a local checkout)",
        required: false,
        fix: "clone the fork next to this repo (git clone https://github.com/iw/temporal ../temporal), or \
              point the config at it: `cargo xtask config set fork.path <dir>` (or fork.git <url> to build \
              from git)"
            .to_owned(),
    };
    // Only fork.* matters here: a table `infra apply` has yet to name is no reason to say more.
    let source = match config::load_before_infra(ctx) {
        Ok(eff) => eff.fork.source(&paths::project_root()),
        Err(err) => {
            check.detail =
                format!("configuration invalid: {}", first_meaningful_line(&format!("{err:#}"), ""));
            check.fix = "cargo xtask config validate".to_owned();
            return check;
        }
    };
    let path = match source {
        ForkSource::Path(path) => path,
        ForkSource::Git { url, git_ref } => {
            check.ok = true;
            check.detail = format!("{url} at {git_ref} (fork.git)");
            return check;
        }
        _ => unreachable!("ForkSource has two variants"),
    };
    let go_mod = path.join("go.mod");
    let module_ok = std::fs::read_to_string(&go_mod)
        .is_ok_and(|text| text.lines().any(|l| l.trim() == "module go.temporal.io/server"));
    check.ok = module_ok;
    check.detail = if module_ok {
        path.display().to_string()
    } else if go_mod.is_file() {
        format!("{} is not Temporal's module (go.temporal.io/server)", go_mod.display())
    } else {
        format!("no checkout at {} (fork.path)", path.display())
    };
    check
}

/// The oldest Docker engine major version the compose files work with: their healthchecks use
/// `start_interval`, which engines before 25 reject.
const MIN_ENGINE_MAJOR: u32 = 25;

/// Why an engine version (`docker version --format {{.Server.Version}}`, e.g. `27.3.1` or
/// `24.0.7-ce`) is too old, or `None` when it is recent enough or cannot be read (then the engine
/// gets the benefit of the doubt: compose will say what it rejects).
fn engine_too_old(version: &str) -> Option<String> {
    let major: u32 = version.trim().split(['.', '-', '+']).next()?.parse().ok()?;
    (major < MIN_ENGINE_MAJOR).then(|| {
        format!("older than {MIN_ENGINE_MAJOR}, whose healthcheck `start_interval` the compose files use")
    })
}

fn version_line(ctx: &Context, cmd: Cmd) -> String {
    cmd.probe(ctx).map_or_else(|e| format!("version unknown ({e})"), |out| out.first_line())
}

fn first_meaningful_line(text: &str, fallback: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map_or_else(|| fallback.to_owned(), |l| l.chars().take(110).collect())
}

fn print_table(checks: &[Check]) {
    let status = |c: &Check| match (c.ok, c.required) {
        (true, _) => "ok",
        (false, true) => "MISSING",
        (false, false) => "missing (optional here)",
    };
    let width =
        |f: &dyn Fn(&Check) -> usize, header: &str| checks.iter().map(f).max().unwrap_or(0).max(header.len());
    let w_name = width(&|c| c.name.len(), "check");
    let w_status = width(&|c| status(c).len(), "status");
    let w_detail = width(&|c| c.detail.chars().count(), "version / detail");
    let w_needed = width(&|c| c.needed_by.len(), "needed by");
    println!(
        "{:<w_name$}  {:<w_status$}  {:<w_detail$}  {:<w_needed$}  fix",
        "check", "status", "version / detail", "needed by"
    );
    for c in checks {
        let fix = if c.ok { "" } else { c.fix.as_str() };
        println!(
            "{:<w_name$}  {:<w_status$}  {:<w_detail$}  {:<w_needed$}  {fix}",
            c.name,
            status(c),
            c.detail,
            c.needed_by
        );
    }
}

#[cfg(test)]
mod tests {
    use super::engine_too_old;

    #[test]
    fn engines_before_25_are_too_old() {
        for old in ["24.0.7", "20.10.24+dfsg1", "19.03.15-ce"] {
            let why = engine_too_old(old).unwrap_or_else(|| panic!("{old} should be too old"));
            assert!(why.contains("start_interval") && why.contains("25"), "{why}");
        }
        for new in ["25.0.0", "27.3.1", "28.0.0-rc.1", "100.1"] {
            assert_eq!(engine_too_old(new), None, "{new}");
        }
        assert_eq!(engine_too_old("dev"), None, "an unreadable version is not held against the engine");
    }
}
