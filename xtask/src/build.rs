//! `cargo xtask build`: the fork's runtime image, or with `--image dsql-local` the local DSQL
//! gateway's image, with `docker buildx build`, for the host's architecture, another one, or both
//! at once.
//!
//! The gateway's image is built from this workspace (docker/dsql-local/Dockerfile, its context
//! filtered by the ignore file next to it) and tagged with this repository's commit.
//!
//! The fork reaches BuildKit as the named build context `fork` (a local checkout or a git URL
//! pinned to a commit), so nothing is written into the checkout and a URL needs no checkout at
//! all. Everything that can be checked before Docker runs is checked first: the checkout's shape,
//! the commit the tags carry, whether the chosen output can hold the image.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use clap::{Args, ValueEnum};
use tdsql_config_renderer::Arch as ConfigArch;
pub(crate) use tdsql_config_renderer::ForkSource;

use crate::context::Context;
use crate::exec::{Cmd, DOCKER, ProbeOutput, Tool};
use crate::{config, paths};

/// The repository name of the image; tags are the fork's short commit and `latest`.
pub(crate) const IMAGE_REPOSITORY: &str = "temporal-dsql-server";

/// The repository name of the gateway's image; tags are this repository's short commit and `latest`.
pub(crate) const GATEWAY_REPOSITORY: &str = "temporal-dsql-local";

/// The gateway's Dockerfile, relative to the project root (its context is the root).
const GATEWAY_DOCKERFILE: &str = "docker/dsql-local/Dockerfile";

/// What the gateway's image is built from: a change here (committed or not) means a new image.
const GATEWAY_INPUTS: &[&str] = &["Cargo.toml", "Cargo.lock", "crates", "xtask", "docker/dsql-local"];

/// This repository, for the gateway image's source label (the workspace's `repository`).
const REPOSITORY_URL: &str = "https://github.com/iw/temporal-dsql-deploy";

/// The Go module the fork must declare.
const TEMPORAL_MODULE: &str = "go.temporal.io/server";

/// Where the fork lives when nothing is configured.
const FORK_URL: &str = "https://github.com/iw/temporal";

/// How many hex digits of the commit the image tag carries.
const SHORT_COMMIT_LEN: usize = 12;

/// Binaries the Dockerfile builds when their main package exists: (main package, binary).
const OPTIONAL_TOOLS: &[(&str, &str)] =
    &[("cmd/tools/dsql", "temporal-dsql-tool"), ("cmd/tools/elasticsearch", "temporal-elasticsearch-tool")];

/// git reads the fork's commit (local checkout) or resolves a ref (git URL); Docker never needs it.
const GIT: Tool = Tool {
    name: "git",
    env_override: Some("TDSQL_GIT"),
    install_hint: "install git (https://git-scm.com/downloads); the image tag carries the fork's commit",
};

/// Arguments of `cargo xtask build`.
#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
    /// Which image: the fork's Temporal server, or the local DSQL gateway built from this workspace
    #[arg(long, value_enum, default_value_t = Image::Fork)]
    image: Image,
    /// Local checkout of the fork [default: config fork.path, ../temporal next to this repo]
    #[arg(long, value_name = "PATH", conflicts_with = "git")]
    source: Option<PathBuf>,
    /// Build straight from a git URL (e.g. https://github.com/iw/temporal.git); no checkout needed
    /// [default: config fork.git]
    #[arg(long, value_name = "URL")]
    git: Option<String>,
    /// Branch, tag or full commit to build from the git URL [default: config fork.git_ref]
    #[arg(long = "ref", value_name = "REF", conflicts_with = "source")]
    git_ref: Option<String>,
    /// Target architecture; `all` builds one multi-platform image [default: config build.arch;
    /// `auto`: the Docker engine's, else this machine's]
    #[arg(long, value_enum)]
    arch: Option<Arch>,
    /// Load the image into the local Docker engine (the default)
    #[arg(long, conflicts_with = "push")]
    load: bool,
    /// Push the image to its registry (needs --tag with a registry name)
    #[arg(long)]
    push: bool,
    /// Image name to tag instead of temporal-dsql-server: a repository (tagged with the commit and
    /// `latest`) or a full `name:tag`; repeatable
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Export and import BuildKit's layer cache here (CI); needs a builder that can export cache
    /// (docker-container driver, or an engine with the containerd image store)
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
}

/// The images `build` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Image {
    /// temporal-dsql-server, from the fork (--source, --git, --ref)
    Fork,
    /// temporal-dsql-local, the dsql-local gateway from this workspace
    DsqlLocal,
}

/// A target architecture of the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Arch {
    Amd64,
    Arm64,
    /// linux/amd64 and linux/arm64 in one multi-platform image
    All,
}

impl Arch {
    fn platforms(self) -> &'static [&'static str] {
        match self {
            Self::Amd64 => &["linux/amd64"],
            Self::Arm64 => &["linux/arm64"],
            Self::All => &["linux/amd64", "linux/arm64"],
        }
    }

    /// The default target (`build.arch = "auto"`): the Docker engine's architecture, which is what
    /// the image must run on, else this machine's when no engine answers (a read-only probe).
    fn auto(ctx: &Context) -> Result<Self> {
        let engine = Cmd::new(DOCKER).args(["version", "--format", "{{.Server.Arch}}"]).probe(ctx);
        match engine.as_ref().map(|out| (out.status.success(), out.stdout.trim())) {
            Ok((true, "amd64")) => Ok(Self::Amd64),
            Ok((true, "arm64")) => Ok(Self::Arm64),
            Ok((true, other)) => bail!(
                "the Docker engine runs on `{other}`, which has no image of its own: pass --arch amd64, arm64 or all"
            ),
            _ => Self::host(),
        }
    }

    /// This machine's architecture.
    fn host() -> Result<Self> {
        match std::env::consts::ARCH {
            "x86_64" => Ok(Self::Amd64),
            "aarch64" => Ok(Self::Arm64),
            other => bail!(
                "this machine's architecture `{other}` has no image of its own: pass --arch amd64, arm64 or all"
            ),
        }
    }
}

/// Where this build takes the fork from (the config's [`ForkSource`], resolved).
#[derive(Debug, Clone)]
enum Source {
    /// A local checkout (absolute path).
    Path(PathBuf),
    /// A git URL and the ref to build (branch, tag, `HEAD` or a full commit).
    Git { url: String, git_ref: String },
}

impl Source {
    fn from_config(source: &ForkSource) -> Result<Self> {
        match source {
            ForkSource::Path(path) => Ok(Self::Path(path.clone())),
            ForkSource::Git { url, git_ref } => Ok(Self::Git { url: url.clone(), git_ref: git_ref.clone() }),
            other => bail!("this xtask cannot build from the fork source {other:?}"),
        }
    }
}

/// The commit an image is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Revision {
    /// The full commit hash.
    pub(crate) commit: String,
    /// Whether a local checkout has changes on top of the commit.
    pub(crate) dirty: bool,
}

impl Revision {
    /// The tag part: the short commit, with `-dirty` when the checkout has local changes.
    pub(crate) fn tag(&self) -> String {
        let short: String = self.commit.chars().take(SHORT_COMMIT_LEN).collect();
        if self.dirty { format!("{short}-dirty") } else { short }
    }
}

/// The image `build` produces for a fork revision, for `up` to check whether it already exists.
#[allow(dead_code)] // read by `up` (issue 6)
#[derive(Debug, Clone)]
pub(crate) struct ForkImage {
    /// `temporal-dsql-server:<short commit>[-dirty]`.
    pub(crate) reference: String,
    pub(crate) revision: Revision,
}

/// The image reference `build` tags for the fork's current commit. A dirty checkout's image may
/// be stale even when it exists, so `up` should rebuild then (the caches make that quick).
#[allow(dead_code)] // used by `up` (issue 6)
pub(crate) fn image_tag_for_fork(ctx: &Context, source: &ForkSource) -> Result<ForkImage> {
    let revision = match Source::from_config(source)? {
        Source::Path(path) => checkout_revision(ctx, &path)?,
        Source::Git { url, git_ref } => remote_revision(ctx, &url, &git_ref)?,
    };
    Ok(ForkImage { reference: format!("{IMAGE_REPOSITORY}:{}", revision.tag()), revision })
}

/// Whether the local Docker engine holds `reference` (a read-only probe, also under `--dry-run`).
#[allow(dead_code)] // used by `up` (issue 6)
pub(crate) fn image_exists(ctx: &Context, reference: &str) -> Result<bool> {
    let out = Cmd::new(DOCKER).args(["image", "inspect", "--format", "{{.Id}}", reference]).probe(ctx)?;
    image_presence(reference, &out)
}

/// Reads `docker image inspect`: found, not found, or the engine could not be asked.
fn image_presence(reference: &str, out: &ProbeOutput) -> Result<bool> {
    if out.status.success() {
        return Ok(true);
    }
    if out.stderr.to_ascii_lowercase().contains("no such image") {
        return Ok(false);
    }
    bail!(
        "could not ask the Docker engine for image {reference}: {} (run `cargo xtask doctor`)",
        failure_reason(out)
    )
}

/// What a local checkout offers, once validated.
#[derive(Debug)]
struct Checkout {
    /// The Go version for the builder image.
    go_version: String,
    /// Temporal's `ServerVersion`, when the checkout states it.
    server_version: Option<String>,
    /// The optional binaries whose main package exists.
    tools: Vec<&'static str>,
}

/// Checks that `path` is a checkout the Dockerfile can build, naming everything that is missing.
fn validate_checkout(path: &Path) -> Result<Checkout> {
    let fix = format!(
        "clone the fork there (git clone {FORK_URL}.git {}), or pass --source PATH or --git URL",
        path.display()
    );
    if !path.exists() {
        bail!("fork source {} does not exist: {fix}", path.display());
    }
    if !path.is_dir() {
        bail!("fork source {} is not a directory: {fix}", path.display());
    }
    let mut problems = Vec::new();
    let mut go_version = None;
    let go_mod = path.join("go.mod");
    match std::fs::read_to_string(&go_mod) {
        Err(_) => problems.push(format!("no go.mod (Temporal's module {TEMPORAL_MODULE} is declared there)")),
        Ok(text) => {
            let facts = GoMod::parse(&text);
            match facts.module.as_deref() {
                Some(TEMPORAL_MODULE) => {}
                Some(other) => problems.push(format!(
                    "go.mod declares module `{other}`, not `{TEMPORAL_MODULE}` (is this the Temporal fork?)"
                )),
                None => problems.push(format!("go.mod has no `module {TEMPORAL_MODULE}` line")),
            }
            match facts.builder_go_version() {
                Some(Ok(version)) => go_version = Some(version),
                Some(Err(bad)) => {
                    problems.push(format!("go.mod names Go version `{bad}`, which is not a Go release"));
                }
                None => problems
                    .push("go.mod has no `go` directive (the builder's Go version comes from it)".to_owned()),
            }
        }
    }
    if !path.join("go.sum").is_file() {
        problems.push("no go.sum (the builder downloads the modules it lists)".to_owned());
    }
    let server = path.join("cmd/server");
    if !server.is_dir() {
        problems.push("no cmd/server directory (the main package of temporal-server)".to_owned());
    } else if !has_go_files(&server) {
        problems.push("cmd/server holds no .go files (the main package of temporal-server)".to_owned());
    }
    if !problems.is_empty() {
        let mut message = format!("{} is not a checkout of the Temporal DSQL fork:", path.display());
        for problem in &problems {
            let _ = write!(message, "\n  - {problem}");
        }
        let _ = write!(message, "\n{fix}");
        bail!(message);
    }
    let tools =
        OPTIONAL_TOOLS.iter().filter(|(dir, _)| has_go_files(&path.join(dir))).map(|(_, bin)| *bin).collect();
    Ok(Checkout {
        go_version: go_version.expect("set whenever there are no problems"),
        server_version: server_version(path),
        tools,
    })
}

fn has_go_files(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.filter_map(Result::ok).any(|e| e.path().extension().is_some_and(|ext| ext == "go"))
    })
}

/// The facts of a go.mod the build needs.
#[derive(Debug, Default)]
struct GoMod {
    module: Option<String>,
    go: Option<String>,
    toolchain: Option<String>,
}

impl GoMod {
    fn parse(text: &str) -> Self {
        let mut facts = Self::default();
        for line in text.lines() {
            let line = line.split("//").next().unwrap_or_default().trim();
            let mut words = line.split_whitespace();
            let (Some(keyword), Some(value), None) = (words.next(), words.next(), words.next()) else {
                continue;
            };
            let value = value.trim_matches('"').to_owned();
            match keyword {
                "module" => facts.module = Some(value),
                "go" => facts.go = Some(value),
                "toolchain" => facts.toolchain = Some(value),
                _ => {}
            }
        }
        facts
    }

    /// The `toolchain` line when present (it names the exact release the fork builds with),
    /// else the `go` directive; `Err` carries a value that is not a Go release.
    fn builder_go_version(&self) -> Option<Result<String, String>> {
        let raw = match &self.toolchain {
            Some(toolchain) if toolchain != "default" => toolchain.trim_start_matches("go").to_owned(),
            _ => self.go.clone()?,
        };
        Some(if is_go_release(&raw) { Ok(raw) } else { Err(raw) })
    }
}

/// `1.25`, `1.25.5`, `1.26rc1`: the forms `golang:<version>-alpine` images are tagged with.
fn is_go_release(version: &str) -> bool {
    let numeric_end = version.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(version.len());
    let (numbers, suffix) = version.split_at(numeric_end);
    let numbers_ok = numbers.split('.').count() >= 2
        && numbers.split('.').all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
    let suffix_ok = suffix.is_empty()
        || ["rc", "beta"].iter().any(|pre| {
            suffix.strip_prefix(pre).is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        });
    numbers_ok && suffix_ok
}

/// Temporal's `ServerVersion` constant, e.g. `1.29.0`.
fn server_version(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path.join("common/headers/version_checker.go")).ok()?;
    text.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("ServerVersion")?.trim_start().strip_prefix('=')?.trim();
        let version = rest.strip_prefix('"')?.split('"').next()?;
        (!version.is_empty()).then(|| version.to_owned())
    })
}

/// The commit a local checkout is at, and whether it has local changes.
fn checkout_revision(ctx: &Context, path: &Path) -> Result<Revision> {
    let git = |args: &[&str]| Cmd::new(GIT).arg("-C").arg(path).args(args).read(ctx);
    let commit = git(&["rev-parse", "--verify", "HEAD^{commit}"]).with_context(|| {
        format!(
            "cannot read the commit of the fork checkout {} (the image tag carries it); \
             is it a git clone with at least one commit? Otherwise pass --tag NAME:TAG",
            path.display()
        )
    })?;
    let status = git(&["status", "--porcelain"]).with_context(|| {
        format!("cannot tell whether the fork checkout {} has local changes", path.display())
    })?;
    Ok(Revision { commit: commit.trim().to_owned(), dirty: !status.trim().is_empty() })
}

/// Resolves a ref of a remote repository to its commit with `git ls-remote` (no clone).
fn remote_revision(ctx: &Context, url: &str, git_ref: &str) -> Result<Revision> {
    if is_full_commit(git_ref) {
        return Ok(Revision { commit: git_ref.to_ascii_lowercase(), dirty: false });
    }
    // Fail instead of waiting for a password on the terminal; credential helpers still apply.
    let mut ls_remote = Cmd::new(GIT).hidden_env("GIT_TERMINAL_PROMPT", "0").args(["ls-remote", "--"]);
    ls_remote = if has_credentials(url) { ls_remote.secret_arg(url) } else { ls_remote.arg(url) };
    // An annotated tag is listed as the tag object; its `^{}` entry is the commit it points at.
    let listing = ls_remote.arg(git_ref).arg(format!("{git_ref}^{{}}")).read(ctx).with_context(|| {
        format!("cannot list the refs of {} (is the URL right and reachable?)", without_credentials(url))
    })?;
    let refs: Vec<(&str, &str)> = listing.lines().filter_map(|line| line.split_once('\t')).collect();
    let wanted = [
        git_ref.to_owned(),
        format!("refs/heads/{git_ref}"),
        format!("refs/tags/{git_ref}^{{}}"),
        format!("refs/tags/{git_ref}"),
    ];
    let commit = wanted
        .iter()
        .find_map(|name| refs.iter().find(|(_, r)| r == name).map(|(commit, _)| *commit))
        .or(match refs.as_slice() {
            [(commit, _)] => Some(*commit),
            _ => None,
        });
    match commit {
        Some(commit) => Ok(Revision { commit: commit.to_owned(), dirty: false }),
        None if git_ref.bytes().all(|b| b.is_ascii_hexdigit()) => bail!(
            "--ref {git_ref} is not a branch or tag of {}; to build a commit, give all 40 hex digits",
            without_credentials(url)
        ),
        None => bail!(
            "{} has no branch or tag `{git_ref}` (from --ref); `git ls-remote {}` lists them",
            without_credentials(url),
            without_credentials(url)
        ),
    }
}

fn is_full_commit(git_ref: &str) -> bool {
    git_ref.len() == 40 && git_ref.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether a URL carries `user:password@` (a token): such a URL is never printed.
fn has_credentials(url: &str) -> bool {
    url.split_once("://").is_some_and(|(_, rest)| {
        rest.split('/').next().is_some_and(|authority| authority.contains('@') && authority.contains(':'))
    })
}

/// The URL without any `user:password@` part, for messages and the image's source label.
fn without_credentials(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
            let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
            if path.is_empty() { format!("{scheme}://{host}") } else { format!("{scheme}://{host}/{path}") }
        }
        None => url.to_owned(),
    }
}

/// BuildKit treats an http(s) context as a git repository only when its path ends in `.git`.
fn git_context_url(url: &str) -> String {
    let is_http = url.starts_with("https://") || url.starts_with("http://");
    let trimmed = url.trim_end_matches('/');
    if is_http && !trimmed.ends_with(".git") { format!("{trimmed}.git") } else { trimmed.to_owned() }
}

/// The checkout's `origin` URL, for the image's source label.
fn origin_url(ctx: &Context, path: &Path) -> Option<String> {
    let out = Cmd::new(GIT).arg("-C").arg(path).args(["remote", "get-url", "origin"]).read(ctx).ok()?;
    let url = out.trim();
    (!url.is_empty()).then(|| without_credentials(url))
}

/// How the built image leaves the builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    Load,
    Push,
}

impl BuildArgs {
    /// What `up` runs when the image for the fork's commit is missing: this machine's
    /// architecture, loaded into the local engine.
    #[allow(dead_code)] // used by `up` (issue 6)
    pub(crate) fn for_fork(source: &ForkSource) -> Self {
        let (path, git, git_ref) = match source {
            ForkSource::Path(path) => (Some(path.clone()), None, None),
            ForkSource::Git { url, git_ref } => (None, Some(url.clone()), Some(git_ref.clone())),
            _ => (None, None, None),
        };
        Self {
            image: Image::Fork,
            source: path,
            git,
            git_ref,
            arch: None,
            load: true,
            push: false,
            tags: Vec::new(),
            cache_dir: None,
        }
    }

    /// What `up` runs when the gateway's image for this repository's commit is missing: this
    /// machine's architecture, loaded into the local engine.
    #[allow(dead_code)] // used by `up` (issue 15)
    pub(crate) fn for_gateway() -> Self {
        Self {
            image: Image::DsqlLocal,
            source: None,
            git: None,
            git_ref: None,
            arch: None,
            load: true,
            push: false,
            tags: Vec::new(),
            cache_dir: None,
        }
    }

    pub(crate) fn run(self, ctx: &Context) -> Result<()> {
        let settings = config::load(ctx)?;
        if self.image == Image::DsqlLocal {
            return self.run_gateway(ctx, &settings);
        }
        let source = match (&self.source, &self.git) {
            (Some(path), _) => Source::Path(std::path::absolute(path).unwrap_or_else(|_| path.clone())),
            (None, Some(url)) => Source::Git {
                url: url.clone(),
                git_ref: self.git_ref.clone().unwrap_or_else(|| settings.fork.git_ref.clone()),
            },
            (None, None) => match Source::from_config(&settings.fork.source(&paths::project_root()))? {
                Source::Git { url, git_ref } => {
                    Source::Git { url, git_ref: self.git_ref.clone().unwrap_or(git_ref) }
                }
                Source::Path(_) if self.git_ref.is_some() => bail!(
                    "--ref needs a git source: pass --git URL, or set fork.git (`cargo xtask config set \
                     fork.git URL`)"
                ),
                path @ Source::Path(_) => path,
            },
        };
        let arch = match (self.arch, settings.build.arch) {
            (Some(arch), _) => arch,
            (None, ConfigArch::Amd64) => Arch::Amd64,
            (None, ConfigArch::Arm64) => Arch::Arm64,
            (None, _) => Arch::auto(ctx)?,
        };
        let output = if self.push { Output::Push } else { Output::Load };

        // Everything that can be wrong with the source or the flags is found before Docker runs.
        let checkout = match &source {
            Source::Path(path) => Some(validate_checkout(path)?),
            Source::Git { .. } => None,
        };
        if output == Output::Push && self.tags.is_empty() {
            bail!(
                "--push needs an image name in a registry you can push to: add --tag \
                 <registry>/{IMAGE_REPOSITORY} (e.g. ghcr.io/<you>/{IMAGE_REPOSITORY})"
            );
        }
        for tag in &self.tags {
            if tag.is_empty() || tag.chars().any(char::is_whitespace) {
                bail!(
                    "--tag `{tag}` is not an image name (no spaces; e.g. ghcr.io/<you>/{IMAGE_REPOSITORY})"
                );
            }
        }
        let revision = match &source {
            Source::Path(path) => match checkout_revision(ctx, path) {
                Ok(revision) => Some(revision),
                Err(err) if !self.tags.is_empty() && self.tags.iter().all(|t| has_explicit_tag(t)) => {
                    eprintln!("note: building without a commit: {err:#}");
                    None
                }
                Err(err) => return Err(err),
            },
            Source::Git { url, git_ref } => Some(remote_revision(ctx, url, git_ref)?),
        };
        if arch == Arch::All && output == Output::Load {
            check_multi_platform_load(ctx)?;
        }

        let plan = Plan {
            source: &source,
            checkout: checkout.as_ref(),
            revision: revision.as_ref(),
            origin: match &source {
                Source::Path(path) => origin_url(ctx, path),
                Source::Git { url, .. } => Some(without_credentials(url)),
            },
            platforms: arch.platforms(),
            output,
            tags: &self.tags,
            cache_dir: self
                .cache_dir
                .as_deref()
                .map(|d| std::path::absolute(d).unwrap_or_else(|_| d.to_owned())),
            created: created_timestamp()?,
        };
        let command = plan.command();
        if !ctx.dry_run {
            require_buildx(ctx)?;
        }
        eprintln!("{}", plan.summary());
        command.run(ctx)?;
        if !ctx.dry_run {
            eprintln!("built {}", plan.references().join(", "));
        }
        Ok(())
    }
}

impl BuildArgs {
    /// `--image dsql-local`: the gateway from this workspace, tagged with this repository's commit.
    fn run_gateway(self, ctx: &Context, settings: &tdsql_config_renderer::Config) -> Result<()> {
        if self.source.is_some() || self.git.is_some() || self.git_ref.is_some() {
            bail!(
                "--image dsql-local is built from this workspace: drop --source, --git and --ref \
                 (they choose the fork for --image fork)"
            );
        }
        let arch = self.resolve_arch(ctx, settings)?;
        let output = if self.push { Output::Push } else { Output::Load };
        check_tags(&self.tags, output, GATEWAY_REPOSITORY)?;
        let revision = match repository_revision(ctx) {
            Ok(revision) => Some(revision),
            Err(err) if !self.tags.is_empty() && self.tags.iter().all(|t| has_explicit_tag(t)) => {
                eprintln!("note: building without a commit: {err:#}");
                None
            }
            Err(err) => return Err(err),
        };
        if arch == Arch::All && output == Output::Load {
            check_multi_platform_load(ctx)?;
        }
        let plan = GatewayPlan {
            revision: revision.as_ref(),
            platforms: arch.platforms(),
            output,
            tags: &self.tags,
            cache_dir: self
                .cache_dir
                .as_deref()
                .map(|d| std::path::absolute(d).unwrap_or_else(|_| d.to_owned())),
            created: created_timestamp()?,
        };
        let command = plan.command();
        if !ctx.dry_run {
            require_buildx(ctx)?;
        }
        let references = references(GATEWAY_REPOSITORY, plan.tags, plan.revision);
        let mut summary = format!(
            "building {} for {} from this workspace",
            references.join(", "),
            arch.platforms().join(", ")
        );
        if let Some(revision) = plan.revision {
            let _ = write!(summary, ", commit {}", revision.commit);
            if revision.dirty {
                summary.push_str(" with local changes");
            }
        }
        eprintln!("{summary}");
        command.run(ctx)?;
        if !ctx.dry_run {
            eprintln!("built {}", references.join(", "));
        }
        Ok(())
    }

    /// `--arch`, else the config's `build.arch`, else the engine's (or this machine's).
    fn resolve_arch(&self, ctx: &Context, settings: &tdsql_config_renderer::Config) -> Result<Arch> {
        Ok(match (self.arch, settings.build.arch) {
            (Some(arch), _) => arch,
            (None, ConfigArch::Amd64) => Arch::Amd64,
            (None, ConfigArch::Arm64) => Arch::Arm64,
            (None, _) => Arch::auto(ctx)?,
        })
    }
}

/// `--push` needs a registry name, and every `--tag` must be an image name.
fn check_tags(tags: &[String], output: Output, repository: &str) -> Result<()> {
    if output == Output::Push && tags.is_empty() {
        bail!(
            "--push needs an image name in a registry you can push to: add --tag \
             <registry>/{repository} (e.g. ghcr.io/<you>/{repository})"
        );
    }
    for tag in tags {
        if tag.is_empty() || tag.chars().any(char::is_whitespace) {
            bail!("--tag `{tag}` is not an image name (no spaces; e.g. ghcr.io/<you>/{repository})");
        }
    }
    Ok(())
}

/// The references to tag: each `--tag` repository (or the default one) with the commit's tag and
/// `latest`; a `--tag name:tag` as given.
fn references(default_repository: &str, tags: &[String], revision: Option<&Revision>) -> Vec<String> {
    let tag = revision.map(Revision::tag);
    let expand = |repository: &str| -> Vec<String> {
        tag.iter()
            .map(|t| format!("{repository}:{t}"))
            .chain(std::iter::once(format!("{repository}:latest")))
            .collect()
    };
    if tags.is_empty() {
        return expand(default_repository);
    }
    tags.iter().flat_map(|t| if has_explicit_tag(t) { vec![t.clone()] } else { expand(t) }).collect()
}

/// This repository's commit, dirty when the files the gateway image is built from have changes.
fn repository_revision(ctx: &Context) -> Result<Revision> {
    let root = paths::project_root();
    let git = |args: &[&str]| Cmd::new(GIT).arg("-C").arg(&root).args(args).read(ctx);
    let commit = git(&["rev-parse", "--verify", "HEAD^{commit}"]).with_context(|| {
        format!(
            "cannot read this repository's commit at {} (the gateway image's tag carries it); \
             pass --tag NAME:TAG to build without one",
            root.display()
        )
    })?;
    let mut status = vec!["status", "--porcelain", "--"];
    status.extend(GATEWAY_INPUTS);
    let changes = git(&status).context("cannot tell whether this repository has local changes")?;
    Ok(Revision { commit: commit.trim().to_owned(), dirty: !changes.trim().is_empty() })
}

/// The gateway image `build --image dsql-local` tags for this repository's current commit.
#[allow(dead_code)] // used by `up` (issue 15)
#[derive(Debug, Clone)]
pub(crate) struct GatewayImage {
    /// `temporal-dsql-local:<short commit>[-dirty]`.
    pub(crate) reference: String,
    pub(crate) revision: Revision,
    /// Whether `up` must build it first: the engine lacks the tag, or the tree has changes to the
    /// files it is built from (an existing `-dirty` image may predate them; the caches make the
    /// rebuild quick).
    pub(crate) needs_build: bool,
}

/// The gateway image for the current commit and whether it must be built: what `up` runs before
/// compose (`BuildArgs::for_gateway().run(ctx)` when `needs_build`). Probes are read-only.
#[allow(dead_code)] // used by `up` (issue 15)
pub(crate) fn gateway_image(ctx: &Context) -> Result<GatewayImage> {
    let revision = repository_revision(ctx)?;
    let reference = format!("{GATEWAY_REPOSITORY}:{}", revision.tag());
    let needs_build = revision.dirty || !image_exists(ctx, &reference)?;
    Ok(GatewayImage { reference, revision, needs_build })
}

/// The `docker buildx build` command line of the gateway's image.
#[derive(Debug)]
struct GatewayPlan<'a> {
    revision: Option<&'a Revision>,
    platforms: &'static [&'static str],
    output: Output,
    tags: &'a [String],
    cache_dir: Option<PathBuf>,
    created: String,
}

impl GatewayPlan<'_> {
    fn command(&self) -> Cmd {
        let root = paths::project_root();
        let mut cmd = Cmd::new(DOCKER)
            .args(["buildx", "build", "--file"])
            .arg(root.join(GATEWAY_DOCKERFILE))
            .arg("--platform")
            .arg(self.platforms.join(","));
        for (key, value) in [
            ("SOURCE", REPOSITORY_URL.to_owned()),
            ("REVISION", self.revision.map(|r| r.commit.clone()).unwrap_or_default()),
            ("CREATED", self.created.clone()),
            ("VERSION", self.revision.map(Revision::tag).unwrap_or_default()),
        ] {
            cmd = cmd.arg("--build-arg").arg(format!("{key}={value}"));
        }
        for reference in references(GATEWAY_REPOSITORY, self.tags, self.revision) {
            cmd = cmd.arg("--tag").arg(reference);
        }
        output_and_cache(cmd, self.output, self.cache_dir.as_deref()).arg(root)
    }
}

/// `--load` or `--push`, and the local layer cache when there is one (read and written, all
/// stages: `mode=max`).
fn output_and_cache(cmd: crate::exec::Cmd, output: Output, cache_dir: Option<&Path>) -> crate::exec::Cmd {
    let mut cmd = cmd.arg(match output {
        Output::Load => "--load",
        Output::Push => "--push",
    });
    if let Some(dir) = cache_dir {
        let mut from = std::ffi::OsString::from("type=local,src=");
        from.push(dir);
        let mut to = std::ffi::OsString::from("type=local,dest=");
        to.push(dir);
        to.push(",mode=max");
        cmd = cmd.arg("--cache-from").arg(from).arg("--cache-to").arg(to);
    }
    cmd
}

/// buildx is a CLI plugin: without it, `docker buildx` fails with a message that does not say
/// how to get it.
fn require_buildx(ctx: &Context) -> Result<()> {
    let out = Cmd::new(DOCKER).args(["buildx", "version"]).probe(ctx)?;
    if out.status.success() {
        return Ok(());
    }
    bail!(
        "the docker buildx plugin is missing ({}): install it (included in Docker Desktop; Debian/Ubuntu: \
         apt-get install docker-buildx-plugin), then run `cargo xtask doctor`",
        failure_reason(&out)
    )
}

fn has_explicit_tag(reference: &str) -> bool {
    reference.rsplit('/').next().is_some_and(|last| last.contains(':'))
}

/// A plain `--load` of a multi-platform image needs the engine's containerd image store; the
/// classic store holds one platform per tag. Read-only probe; under `--dry-run` without an engine
/// the plan states its assumption instead.
fn check_multi_platform_load(ctx: &Context) -> Result<()> {
    let alternatives = "use --push with --tag <registry>/<name>, build one architecture at a time \
                        (--arch amd64 or --arch arm64), or enable the containerd image store (Docker \
                        Desktop: Settings > General > \"Use containerd for pulling and storing images\"; \
                        Docker Engine: {\"features\": {\"containerd-snapshotter\": true}} in daemon.json)";
    let probe = Cmd::new(DOCKER).args(["info", "--format", "{{json .DriverStatus}}"]).probe(ctx);
    match probe {
        Ok(out) if out.status.success() => {
            if out.stdout.contains("io.containerd.snapshotter") {
                return Ok(());
            }
            bail!(
                "--arch all with --load needs the Docker engine's containerd image store, and this engine \
                 stores images without it (it can hold only one platform per tag): {alternatives}"
            )
        }
        failed if ctx.dry_run => {
            let why = match failed {
                Ok(out) => failure_reason(&out),
                Err(err) => err.to_string(),
            };
            eprintln!(
                "note: no Docker engine answered `docker info` ({why}); this plan assumes it has the \
                 containerd image store, which --arch all with --load needs. Without it: {alternatives}"
            );
            Ok(())
        }
        Ok(out) => bail!(
            "cannot check whether the Docker engine can load a multi-platform image: {} (run `cargo xtask doctor`)",
            failure_reason(&out)
        ),
        Err(err) => {
            Err(err.context("cannot check whether the Docker engine can load a multi-platform image"))
        }
    }
}

/// Why a probe failed: the first line of its stderr, else of its stdout.
fn failure_reason(out: &ProbeOutput) -> String {
    out.stderr
        .lines()
        .chain(out.stdout.lines())
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no output")
        .to_owned()
}

/// The build time for the `created` label: `SOURCE_DATE_EPOCH` when set (reproducible builds),
/// else now.
fn created_timestamp() -> Result<String> {
    let seconds = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(value) if !value.is_empty() => value
            .trim()
            .parse::<u64>()
            .with_context(|| format!("SOURCE_DATE_EPOCH={value} is not a number of seconds since 1970"))?,
        _ => SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default(),
    };
    Ok(rfc3339_utc(seconds))
}

/// `1970-01-01T00:00:00Z` form of a Unix time (days to civil date after Howard Hinnant's algorithm).
fn rfc3339_utc(seconds: u64) -> String {
    let days = i64::try_from(seconds / 86_400).unwrap_or(i64::MAX / 2);
    let rem = seconds % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3_600, rem % 3_600 / 60, rem % 60)
}

/// Everything the `docker buildx build` command line is made of.
#[derive(Debug)]
struct Plan<'a> {
    source: &'a Source,
    checkout: Option<&'a Checkout>,
    revision: Option<&'a Revision>,
    origin: Option<String>,
    platforms: &'static [&'static str],
    output: Output,
    tags: &'a [String],
    cache_dir: Option<PathBuf>,
    created: String,
}

impl Plan<'_> {
    /// The image references to tag.
    fn references(&self) -> Vec<String> {
        let tag = self.revision.map(Revision::tag);
        let expand = |repository: &str| -> Vec<String> {
            tag.iter()
                .map(|t| format!("{repository}:{t}"))
                .chain(std::iter::once(format!("{repository}:latest")))
                .collect()
        };
        if self.tags.is_empty() {
            return expand(IMAGE_REPOSITORY);
        }
        self.tags.iter().flat_map(|t| if has_explicit_tag(t) { vec![t.clone()] } else { expand(t) }).collect()
    }

    fn command(&self) -> Cmd {
        let root = paths::project_root();
        let mut cmd = Cmd::new(DOCKER).args(["buildx", "build", "--file"]).arg(root.join("Dockerfile"));
        cmd = match self.source {
            Source::Path(path) => {
                let mut context = std::ffi::OsString::from("fork=");
                context.push(path);
                cmd.arg("--build-context").arg(context)
            }
            Source::Git { url, git_ref } => {
                let pinned = self.revision.map_or(git_ref.as_str(), |r| r.commit.as_str());
                let context = format!("fork={}#{pinned}", git_context_url(url));
                let cmd = cmd.arg("--build-context");
                if has_credentials(url) { cmd.secret_arg(context) } else { cmd.arg(context) }
            }
        };
        cmd = cmd.arg("--platform").arg(self.platforms.join(","));
        if let Some(checkout) = self.checkout {
            cmd = cmd.arg("--build-arg").arg(format!("GO_VERSION={}", checkout.go_version));
        }
        let commit = self.revision.map(|r| r.commit.clone()).unwrap_or_default();
        let version = self
            .checkout
            .and_then(|c| c.server_version.clone())
            .or_else(|| self.revision.map(Revision::tag))
            .unwrap_or_default();
        for (key, value) in [
            ("SOURCE", self.origin.clone().unwrap_or_default()),
            ("REVISION", commit),
            ("CREATED", self.created.clone()),
            ("VERSION", version),
        ] {
            cmd = cmd.arg("--build-arg").arg(format!("{key}={value}"));
        }
        for reference in self.references() {
            cmd = cmd.arg("--tag").arg(reference);
        }
        output_and_cache(cmd, self.output, self.cache_dir.as_deref()).arg(root)
    }

    /// One line on stderr saying what is about to be built.
    fn summary(&self) -> String {
        let from = match self.source {
            Source::Path(path) => path.display().to_string(),
            Source::Git { url, git_ref } => format!("{} ({git_ref})", without_credentials(url)),
        };
        let mut line = format!(
            "building {} for {} from {from}",
            self.references().join(", "),
            self.platforms.join(", ")
        );
        if let Some(revision) = self.revision {
            let _ = write!(line, ", commit {}", revision.commit);
            if revision.dirty {
                line.push_str(" with local changes");
            }
        }
        match self.checkout {
            Some(checkout) => {
                let _ = write!(line, ", Go {}", checkout.go_version);
                let mut binaries = vec!["temporal-server"];
                binaries.extend(&checkout.tools);
                let _ = write!(line, ", binaries: {}", binaries.join(", "));
            }
            None => line.push_str(", Go from the Dockerfile's default (newer toolchains fetched on demand)"),
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_mod_facts_and_builder_version() {
        let facts =
            GoMod::parse("module go.temporal.io/server // the server\n\ngo 1.25.5\n\nrequire (\n\tx v1\n)\n");
        assert_eq!(facts.module.as_deref(), Some(TEMPORAL_MODULE));
        assert_eq!(facts.builder_go_version(), Some(Ok("1.25.5".to_owned())));
        let with_toolchain = GoMod::parse("module m\ngo 1.24\ntoolchain go1.25.6\n");
        assert_eq!(with_toolchain.builder_go_version(), Some(Ok("1.25.6".to_owned())));
        assert_eq!(GoMod::parse("module m\n").builder_go_version(), None);
        assert_eq!(GoMod::parse("go 1.x\n").builder_go_version(), Some(Err("1.x".to_owned())));
    }

    #[test]
    fn go_release_forms() {
        for ok in ["1.25", "1.25.5", "1.26rc1", "1.26beta2"] {
            assert!(is_go_release(ok), "{ok}");
        }
        for bad in ["1", "1.", "1..2", "1.25-alpine", "1.26rc", "latest", ""] {
            assert!(!is_go_release(bad), "{bad}");
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_767_225_599), "2025-12-31T23:59:59Z");
    }

    #[test]
    fn credentials_never_reach_labels_or_messages() {
        let url = "https://user:ghp_secret@github.com/iw/temporal.git";
        assert!(has_credentials(url));
        assert_eq!(without_credentials(url), "https://github.com/iw/temporal.git");
        assert!(!has_credentials("https://github.com/iw/temporal"));
        assert!(!has_credentials("git@github.com:iw/temporal.git"));
    }

    #[test]
    fn http_git_contexts_end_in_dot_git() {
        assert_eq!(git_context_url("https://github.com/iw/temporal"), "https://github.com/iw/temporal.git");
        assert_eq!(
            git_context_url("https://github.com/iw/temporal.git/"),
            "https://github.com/iw/temporal.git"
        );
        assert_eq!(git_context_url("git@github.com:iw/temporal.git"), "git@github.com:iw/temporal.git");
    }

    #[cfg(unix)]
    #[test]
    fn image_presence_tells_missing_from_unreachable() {
        use std::os::unix::process::ExitStatusExt;
        let probe = |code: i32, stderr: &str| ProbeOutput {
            status: std::process::ExitStatus::from_raw(code << 8),
            stdout: String::new(),
            stderr: stderr.to_owned(),
        };
        let image = "temporal-dsql-server:0123456789ab";
        assert!(image_presence(image, &probe(0, "")).unwrap());
        let missing =
            probe(1, "Error response from daemon: No such image: temporal-dsql-server:0123456789ab");
        assert!(!image_presence(image, &missing).unwrap());
        let down = probe(1, "Cannot connect to the Docker daemon at unix:///var/run/docker.sock.");
        let err = image_presence(image, &down).unwrap_err().to_string();
        assert!(err.contains("Cannot connect to the Docker daemon") && err.contains("doctor"), "{err}");
    }

    #[test]
    fn dirty_revisions_are_tagged_as_such() {
        let commit = "0123456789abcdef0123456789abcdef01234567".to_owned();
        assert_eq!(Revision { commit: commit.clone(), dirty: false }.tag(), "0123456789ab");
        assert_eq!(Revision { commit, dirty: true }.tag(), "0123456789ab-dirty");
    }
}
