//! `cargo xtask up`: from the config to a healthy, observable stack, one stage at a time.
//!
//! config -> preflight -> infra (dsql profile, no cluster yet) -> build (image for the fork's commit
//! missing) -> render -> postgresql (local profile) -> schema -> start -> readiness.
//! Render comes before PostgreSQL because compose needs the rendered env file to start anything.
//! The infra, build and schema stages run those xtask commands (`cargo xtask <cmd>`), so `up` does
//! exactly what the user would do by hand and each piece keeps one entry point; render is a call.

use std::io::IsTerminal as _;
use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Args;

use super::Stack;
use super::progress::{Output, Progress};
use super::settings::StackSettings;
use crate::build::{self, ForkSource};
use crate::context::Context;
use crate::exec::{CARGO, Cmd};
use crate::{config, doctor};

/// `temporal.image`'s default: run the image `build` makes for the fork's current commit.
const DEFAULT_IMAGE: &str = "temporal-dsql-server:latest";
/// The namespace `up` makes sure exists, and its retention when it creates it.
const DEFAULT_NAMESPACE: &str = "default";
const DEFAULT_NAMESPACE_RETENTION: &str = "72h";
/// How long the readiness report waits for the frontend's gRPC health to say SERVING.
const HEALTH_DEADLINE: Duration = Duration::from_secs(60);
/// How long it retries the visibility query on an OpenSearch domain: a namespace just created
/// reaches the frontend's namespace cache within about 10 s.
const VISIBILITY_DEADLINE: Duration = Duration::from_secs(30);

/// Arguments of `cargo xtask up`.
#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// Seconds compose waits for every service to be running and healthy
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    wait_timeout: u32,
    /// Apply the infra stage's plan without asking (forwarded as `infra apply --yes`); needed
    /// when that stage runs and stdin is not a terminal
    #[arg(long, short = 'y')]
    yes: bool,
}

impl UpArgs {
    pub(crate) fn run(self, ctx: &Context) -> Result<()> {
        let stack = Stack::new(ctx);
        let local = ctx.profile.name == "local";
        let mut progress = Progress::new(ctx, if local { 10 } else { 8 });

        let mut settings = progress.stage("config", Output::Quiet, || {
            let settings = StackSettings::load_before_infra(ctx)?;
            let mut summary = match (&settings.endpoint(), settings.local) {
                (Some(endpoint), true) => format!("PostgreSQL 16 stands in for DSQL ({endpoint})"),
                (Some(endpoint), false) => format!("Aurora DSQL at {endpoint}"),
                (None, _) => "no DSQL cluster configured yet".to_owned(),
            };
            if !settings.pending.is_empty() {
                summary.push_str(&format!("; infra apply fills in {}", settings.pending.join(", ")));
            }
            if infra_stage_needed(&settings) {
                check_confirmation(ctx, self.yes)?;
            }
            Ok((settings, summary))
        })?;
        let needs_infra = infra_stage_needed(&settings);

        progress.stage("preflight", Output::Quiet, || preflight(ctx, &stack, &settings, needs_infra))?;

        if needs_infra {
            progress.stage("infra", Output::Streams, || {
                let mut apply = xtask(ctx, ["infra", "apply"]);
                if self.yes {
                    apply = apply.arg("--yes");
                }
                apply.run(ctx)?;
                if !ctx.dry_run {
                    settings = StackSettings::load(ctx)?;
                }
                Ok(((), "cluster created or adopted; its identifier is in config.toml".to_owned()))
            })?;
        } else {
            let why = if settings.local { "the local stand-in needs no AWS" } else { "cluster configured" };
            progress.skip("infra", why);
        }

        let image = progress.stage("build", Output::Streams, || build_stage(ctx, &settings))?;
        if settings.config.uses_gateway() {
            progress.stage("gateway image", Output::Streams, || gateway_image_stage(ctx))?;
        } else if local {
            progress.skip(
                "gateway image",
                "local.gateway.enabled is false: Temporal talks to PostgreSQL directly",
            );
        }

        let password = progress.stage("render", Output::Quiet, || {
            if ctx.dry_run && needs_infra {
                let why = "renders once infra apply has written the cluster into config.toml";
                return Ok(("<generated on first run>".to_owned(), why.to_owned()));
            }
            let image_flag =
                config::Flag { key: "temporal.image", value: &image, flag: "up (the fork's image)" };
            let files = config::render(ctx, &config::load_with(ctx, &[image_flag])?)?;
            // Rendering saved a generated Grafana password into config.toml on first use.
            let password = config::grafana_admin_password(ctx, &*config::load(ctx)?)?;
            Ok((password, format!("{} files in profiles/{}/generated/", files.len(), ctx.profile.name)))
        })?;

        if local && settings.config.uses_gateway() {
            // The schema goes through the gateway in the DSQL dialect, as on a real cluster.
            progress.stage("dsql-local", Output::Streams, || {
                stack
                    .compose(Some(&password))
                    .args(["up", "--detach", "--wait", "postgresql", "dsql-local"])
                    .run(ctx)?;
                let port = settings.config.local.gateway.port;
                Ok(((), format!("{DSQL_SEMANTICS}, healthy on 127.0.0.1:{port}")))
            })?;
        } else if local {
            progress.stage("postgresql", Output::Streams, || {
                stack.compose(Some(&password)).args(["up", "--detach", "--wait", "postgresql"]).run(ctx)?;
                let port = settings.ports.postgres.unwrap_or_default();
                Ok(((), format!("PostgreSQL 16 healthy on 127.0.0.1:{port}")))
            })?;
        }

        progress.stage("schema", Output::Streams, || {
            // setup installs on an empty database (a no-op otherwise); update brings an older one up.
            xtask(ctx, ["schema", "setup"]).run(ctx)?;
            xtask(ctx, ["schema", "update"]).run(ctx)?;
            Ok(((), "the database has the schema version the server expects".to_owned()))
        })?;

        progress.stage("start", Output::Streams, || {
            if settings.config.uses_opensearch() {
                // Elasticsearch and its job from a start in the other visibility mode: compose's
                // --remove-orphans leaves services whose profile is off (docker/compose#13027).
                stack
                    .compose(None)
                    .args(["--profile", tdsql_config_renderer::render::COMPOSE_PROFILE_ELASTICSEARCH])
                    .args(["rm", "--stop", "--force", "elasticsearch", "elasticsearch-setup"])
                    .run(ctx)?;
            }
            stack
                .compose(Some(&password))
                .args(["up", "--detach", "--wait", "--remove-orphans", "--wait-timeout"])
                .arg(self.wait_timeout.to_string())
                .run(ctx)?;
            Ok(((), "every service running, every healthcheck passing".to_owned()))
        })?;

        progress.stage("readiness", Output::Quiet, || readiness(ctx, &stack, &settings))?;

        print_urls(ctx, &settings);
        Ok(())
    }
}

/// Aurora DSQL without a cluster yet, or with coordination tables still to create and name.
fn infra_stage_needed(settings: &StackSettings) -> bool {
    !settings.local && (settings.cluster_id.is_none() || !settings.pending.is_empty())
}

/// `infra apply` asks before it changes anything; without a terminal nobody can answer, so a run
/// without `--yes` stops here, before any stage has changed anything.
fn check_confirmation(ctx: &Context, yes: bool) -> Result<()> {
    if yes || std::io::stdin().is_terminal() {
        return Ok(());
    }
    let rerun = format!("cargo xtask --profile {} up --yes", ctx.profile.name);
    if ctx.dry_run {
        eprintln!("note: without a terminal a real run stops before its infra stage: pass --yes (`{rerun}`)");
        return Ok(());
    }
    bail!(
        "`up` would run `infra apply`, which asks before it changes AWS resources, and stdin is not a terminal; \
         rerun as `{rerun}` to apply without asking (the plan is still printed), or run `cargo xtask --profile {} \
         infra apply` first",
        ctx.profile.name
    )
}

/// `cargo xtask --profile <p> <args>`: another xtask command, exactly as a user would run it.
fn xtask<const N: usize>(ctx: &Context, args: [&str; N]) -> Cmd {
    Cmd::new(CARGO).args(["xtask", "--profile", ctx.profile.name.as_str()]).args(args)
}

/// The image to run: `temporal.image` when the user set one, else the fork's commit's image,
/// built when the engine lacks it (or the checkout has local changes).
fn build_stage(ctx: &Context, settings: &StackSettings) -> Result<(String, String)> {
    let configured = &settings.config.temporal.image;
    if configured != DEFAULT_IMAGE {
        return Ok((configured.clone(), format!("{configured} (temporal.image)")));
    }
    let source = settings.fork_source();
    let mut build = xtask(ctx, ["build"]);
    build = match &source {
        ForkSource::Path(path) => build.arg("--source").arg(path),
        ForkSource::Git { url, git_ref } => build.args(["--git", url, "--ref", git_ref]),
        other => bail!("`up` cannot build from the fork source {other:?}: run `cargo xtask build` yourself"),
    };
    let fork = match build::image_tag_for_fork(ctx, &source) {
        Ok(fork) => fork,
        Err(err) if ctx.dry_run => {
            eprintln!("build: {err:#}");
            build.run(ctx)?;
            let image = format!("{}:unknown-fork-commit", build::IMAGE_REPOSITORY);
            return Ok((image, "the fork's commit is unknown here: a real run builds it".to_owned()));
        }
        Err(err) => return Err(err.context("cannot tell which image the fork's commit needs")),
    };
    let image = fork.reference;
    let present = match build::image_exists(ctx, &image) {
        Ok(present) => present,
        Err(_) if ctx.dry_run => false,
        Err(err) => return Err(err),
    };
    if present && !fork.revision.dirty {
        return Ok((image.clone(), format!("{image} is present")));
    }
    build.run(ctx)?;
    let why = if fork.revision.dirty { "the checkout has local changes" } else { "it was not in the engine" };
    Ok((image, format!("built, {why}")))
}

/// The gateway's image for this repository's commit, built when the engine lacks it or the
/// sources it is built from have local changes.
fn gateway_image_stage(ctx: &Context) -> Result<((), String)> {
    if ctx.dry_run {
        // The plan does not depend on this checkout's commit or on what the engine holds.
        xtask(ctx, ["build", "--image", "dsql-local"]).run(ctx)?;
        return Ok(((), "a real run builds it when the engine lacks this commit's image".to_owned()));
    }
    let image = match build::gateway_image(ctx) {
        Ok(image) => image,
        Err(err) => return Err(err.context("cannot tell which gateway image this checkout needs")),
    };
    if !image.needs_build {
        return Ok(((), format!("{} is present", image.reference)));
    }
    xtask(ctx, ["build", "--image", "dsql-local"]).run(ctx)?;
    let why =
        if image.revision.dirty { "the checkout has local changes" } else { "it was not in the engine" };
    Ok(((), format!("{} built, {why}", image.reference)))
}

/// What the local profile's readiness report says about its database.
const DSQL_SEMANTICS: &str = "DSQL semantics: dsql-local in front of PostgreSQL 16";

/// The doctor's checks plus free host ports. A real run stops at the first problem; a dry run
/// notes what a real run would stop on and plans the rest.
fn preflight(
    ctx: &Context,
    stack: &Stack,
    settings: &StackSettings,
    needs_infra: bool,
) -> Result<((), String)> {
    let checks = doctor::run_checks(ctx);
    // Terraform is only needed when the infra stage runs.
    let missing: Vec<&doctor::Check> =
        checks.iter().filter(|c| c.required && !c.ok && (needs_infra || c.name != "terraform")).collect();
    let engine_ok = checks.iter().any(|c| c.name == "docker engine" && c.ok);
    let busy = if engine_ok { busy_ports(ctx, stack, settings) } else { Vec::new() };

    let mut problems: Vec<String> =
        missing.iter().map(|c| format!("{}: {} ({})", c.name, c.detail, c.fix)).collect();
    problems.extend(busy.iter().map(|(what, port)| {
        format!(
            "port {port} ({what}) is in use on 127.0.0.1: stop what holds it (another profile's stack? \
             `cargo xtask --profile <other> down`), or choose another port in config.toml"
        )
    }));
    if problems.is_empty() {
        return Ok((
            (),
            format!("{} checks passed, {} host ports free", checks.len(), settings.ports.all().len()),
        ));
    }
    let names: Vec<String> = missing
        .iter()
        .map(|c| c.name.to_owned())
        .chain(busy.iter().map(|(_, port)| format!("port {port}")))
        .collect();
    if ctx.dry_run {
        for problem in &problems {
            eprintln!("preflight: {problem}");
        }
        return Ok(((), format!("a real run would stop here: missing {}", names.join(", "))));
    }
    bail!(
        "cannot start profile `{}`: {}\n  {}\n(`cargo xtask doctor` shows every check)",
        ctx.profile.name,
        names.join(", "),
        problems.join("\n  ")
    )
}

/// Published ports something else holds. When this stack already runs, its own ports are taken by
/// design and `up` is a no-op for them, so nothing is reported.
fn busy_ports(ctx: &Context, stack: &Stack, settings: &StackSettings) -> Vec<(&'static str, u16)> {
    let busy: Vec<(&'static str, u16)> = settings
        .ports
        .all()
        .into_iter()
        .filter(|(_, port)| TcpListener::bind((Ipv4Addr::LOCALHOST, *port)).is_err())
        .collect();
    if busy.is_empty() {
        return busy;
    }
    let ours = stack
        .compose(None)
        .args(["ps", "--quiet"])
        .probe(ctx)
        .is_ok_and(|out| out.status.success() && !out.stdout.trim().is_empty());
    if ours { Vec::new() } else { busy }
}

/// Frontend gRPC health, the default namespace (created when missing), the visibility index: asked
/// of the Elasticsearch container, or on an OpenSearch domain through Temporal itself (a visibility
/// query fails when the index is missing or the domain refuses the frontend's signed requests).
fn readiness(ctx: &Context, stack: &Stack, settings: &StackSettings) -> Result<((), String)> {
    let cli = |args: &[&str]| {
        stack.compose(None).args(["run", "--rm", "--no-deps", "--quiet-pull", "temporal-cli"]).args(args)
    };
    let health = cli(&["operator", "cluster", "health"]);
    let describe = cli(&["operator", "namespace", "describe", "--namespace", DEFAULT_NAMESPACE]);
    let create = cli(&[
        "operator",
        "namespace",
        "create",
        "--namespace",
        DEFAULT_NAMESPACE,
        "--retention",
        DEFAULT_NAMESPACE_RETENTION,
    ]);
    let index = settings.ports.elasticsearch.map(|port| {
        stack
            .compose(None)
            .args(["exec", "-T", "elasticsearch", "curl", "-sf", "-o", "/dev/null"])
            .arg(format!("http://localhost:{port}/{}", settings.es_index))
    });
    // On an OpenSearch domain there is no container to ask: the frontend answers a visibility query
    // from the index, with requests signed by the same credentials the services run with.
    let visibility_query = cli(&["workflow", "count", "--namespace", DEFAULT_NAMESPACE]);
    let opensearch_index = format!("visibility index {} on the OpenSearch domain answers", settings.es_index);

    let gateway = stack.compose(None).args([
        "exec",
        "-T",
        "dsql-local",
        "/usr/local/bin/tdsql-dsql-local",
        "probe",
        "--addr",
        "127.0.0.1:5432",
    ]);

    if ctx.dry_run {
        health.run(ctx)?;
        describe.run(ctx)?;
        println!("# when `describe` fails:");
        create.run(ctx)?;
        let mut report = match &index {
            Some(index) => {
                index.run(ctx)?;
                "frontend SERVING, namespace default, visibility index present".to_owned()
            }
            None => {
                visibility_query.run(ctx)?;
                format!("frontend SERVING, namespace default, {opensearch_index}")
            }
        };
        if settings.config.uses_gateway() {
            gateway.run(ctx)?;
            report.push_str(&format!("; {DSQL_SEMANTICS}"));
        }
        return Ok(((), report));
    }

    let started = Instant::now();
    loop {
        let out = health.probe(ctx)?;
        if out.status.success() && out.stdout.contains("SERVING") && !out.stdout.contains("NOT_SERVING") {
            break;
        }
        if started.elapsed() > HEALTH_DEADLINE {
            bail!(
                "the frontend did not report SERVING within {} s (last answer: {}): see `cargo xtask logs temporal-frontend --tail 100`",
                HEALTH_DEADLINE.as_secs(),
                out.first_line()
            );
        }
        std::thread::sleep(Duration::from_secs(2));
    }

    let namespace = if describe.probe(ctx)?.status.success() {
        "namespace default registered"
    } else {
        create.run(ctx).context("could not create the `default` namespace")?;
        "namespace default created"
    };

    let visibility = match &index {
        Some(index) if !index.probe(ctx)?.status.success() => bail!(
            "the visibility index `{}` is missing in Elasticsearch: see `cargo xtask logs elasticsearch-setup`, \
             then `cargo xtask up` again (the setup job is idempotent)",
            settings.es_index
        ),
        Some(_) => format!("visibility index {} present", settings.es_index),
        None => {
            opensearch_visibility(ctx, &visibility_query, settings)?;
            opensearch_index
        }
    };
    let mut report = format!("frontend SERVING, {namespace}, {visibility}");
    if settings.config.uses_gateway() {
        if !gateway.probe(ctx)?.status.success() {
            bail!("the dsql-local gateway does not answer: see `cargo xtask logs dsql-local --tail 100`");
        }
        report.push_str(&format!("; {DSQL_SEMANTICS}"));
    }
    Ok(((), report))
}

/// Runs the visibility query until it succeeds, for at most [`VISIBILITY_DEADLINE`]; then fails
/// with its last answer and where to look.
fn opensearch_visibility(ctx: &Context, query: &Cmd, settings: &StackSettings) -> Result<()> {
    let started = Instant::now();
    loop {
        let out = query.probe(ctx)?;
        if out.status.success() {
            return Ok(());
        }
        if started.elapsed() > VISIBILITY_DEADLINE {
            // The CLI's error is its last line on stderr (`Error: failed counting workflows: ...`).
            let answer = out
                .stderr
                .lines()
                .rev()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map_or_else(|| out.first_line(), str::to_owned);
            bail!(
                "Temporal cannot query the visibility index `{index}` on the OpenSearch domain {endpoint} (last answer: \
                 {answer}): the index is missing or the domain refuses the signed requests. See `cargo xtask --profile \
                 {profile} logs opensearch-setup` (it creates the index) and `cargo xtask --profile {profile} infra \
                 status` (the domain and the index), then run `cargo xtask --profile {profile} up` again (the setup job \
                 is idempotent)",
                index = settings.es_index,
                endpoint = settings.config.opensearch.endpoint.trim(),
                profile = ctx.profile.name,
            );
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn print_urls(ctx: &Context, settings: &StackSettings) {
    let p = &settings.ports;
    let prefix = if ctx.dry_run { "# " } else { "" };
    let user = &settings.config.observability.grafana_admin_user;
    let persistence = match &settings.cluster_id {
        Some(id) => format!("http://localhost:{}/d/dsql-persistence?var-dsql_cluster={id}", p.grafana),
        None => format!("http://localhost:{}/d/dsql-persistence", p.grafana),
    };
    let mut lines = vec![
        format!("Temporal gRPC      127.0.0.1:{}", p.frontend_grpc),
        format!("Temporal UI        http://localhost:{}", p.ui),
        format!(
            "Grafana            http://localhost:{} (anonymous viewer; admin: {user}, password in config.toml, \
             observability.grafana_admin_password)",
            p.grafana
        ),
        format!("  server health    http://localhost:{}/d/temporal-server-health", p.grafana),
        format!("  DSQL persistence {persistence}"),
        format!("Mimir (Prometheus) http://localhost:{}/prometheus", p.mimir),
        format!("Alloy              http://localhost:{}", p.alloy),
    ];
    match p.elasticsearch {
        Some(port) => lines.push(format!("Elasticsearch      http://localhost:{port}")),
        None => lines.push(format!("OpenSearch         {}", settings.config.opensearch.endpoint.trim())),
    }
    if settings.config.uses_gateway() {
        let gateway = &settings.config.local.gateway;
        lines.push(format!(
            "dsql-local         localhost:{} (TLS verify-full, CA profiles/{}/generated/dsql-local/pki/ca.crt; user admin, \
             password: an IAM token, `cargo xtask dsql-local token` with the key pair of generated/dsql-local/keypair.env)",
            gateway.port, ctx.profile.name
        ));
    }
    if let Some(port) = p.postgres {
        lines.push(format!(
            "PostgreSQL         postgres://admin@127.0.0.1:{port}/postgres (directly, without DSQL's rules)"
        ));
    }
    let xtask = if ctx.profile.name == "local" {
        "cargo xtask".to_owned()
    } else {
        format!("cargo xtask --profile {}", ctx.profile.name)
    };
    lines.extend([
        String::new(),
        "next:".to_owned(),
        format!("  {xtask} smoke              one workflow per feature against the frontend"),
        format!("  {xtask} logs [SERVICE] -f  follow the logs (e.g. temporal-history)"),
        format!("  {xtask} down               stop the stack (--volumes: and delete its data)"),
    ]);
    if !ctx.dry_run {
        println!("\nthe stack of profile `{}` is ready:", ctx.profile.name);
    }
    for line in lines {
        if line.is_empty() {
            println!();
        } else {
            println!("{prefix}{line}");
        }
    }
}
