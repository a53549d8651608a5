//! `cargo xtask config init|show|set|validate|render`, and the one way every other command gets
//! the configuration.
//!
//! For other commands:
//! - [`load`] (or [`load_with`] to add the command's own flags) gives the typed, validated config of
//!   `ctx.profile` ([`Effective`], which derefs to [`Config`]) and where every value came from.
//! - [`load_before_infra`] is the same for `infra` and `up` before its infra stage: a value that
//!   `infra apply` fills in (an enabled coordination table without a name) is listed in
//!   `loaded.pending` instead of failing the load.
//! - [`write_back`] sets keys in the user's `config.toml`, keeping its comments (infra apply).
//! - [`grafana_admin_password`] gives the password compose gets as `TDSQL_GRAFANA_ADMIN_PASSWORD`
//!   (generated into `config.toml` on first use).
//!
//! Layers, lowest first: built-in defaults < `profiles/<p>/profile.toml` < `config.toml` at the
//! repository root (or the file named by `TDSQL_CONFIG_FILE`) < `TDSQL_*` environment < flags.

use std::io::Read;
use std::ops::Deref;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use tdsql_config_renderer::{
    Config, ConfigError, ConfigFile, Loaded, Loader, Problem, Severity, init_template, keys,
    render as renderer,
};

use crate::context::Context;
use crate::{ops, paths};

/// Names the user's config file instead of `config.toml` at the repository root.
pub(crate) const CONFIG_FILE_ENV: &str = "TDSQL_CONFIG_FILE";

/// The effective configuration of one profile.
#[derive(Debug)]
pub(crate) struct Effective {
    /// The config with the origin of every value (`loaded.origin("dsql.max_conns")`).
    pub(crate) loaded: Loaded,
    /// `profiles/<p>/profile.toml`.
    pub(crate) profile_file: PathBuf,
    /// The user's config file (it may not exist).
    pub(crate) user_file: PathBuf,
}

impl Deref for Effective {
    type Target = Config;

    fn deref(&self) -> &Config {
        &self.loaded.config
    }
}

/// A command-line flag that overrides a key, e.g. `Flag { key: "build.arch", value: "arm64", flag: "--arch" }`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flag<'a> {
    pub(crate) key: &'a str,
    pub(crate) value: &'a str,
    pub(crate) flag: &'a str,
}

/// The effective config of `ctx.profile` (no flags). Prints warnings to stderr.
pub(crate) fn load(ctx: &Context) -> Result<Effective> {
    load_with(ctx, &[])
}

/// Like [`load`], with the calling command's flags as the top layer.
pub(crate) fn load_with(ctx: &Context, flags: &[Flag<'_>]) -> Result<Effective> {
    load_layers(ctx, flags, false)
}

/// Like [`load`], for `infra` and the part of `up` before its infra stage: the values
/// `infra apply` fills in (an enabled coordination table without a name yet) are listed in
/// `loaded.pending` instead of failing the load.
pub(crate) fn load_before_infra(ctx: &Context) -> Result<Effective> {
    load_layers(ctx, &[], true)
}

fn load_layers(ctx: &Context, flags: &[Flag<'_>], before_infra: bool) -> Result<Effective> {
    let (loader, profile_file, user_file) = layers(ctx, None)?;
    let loader = flags.iter().fold(loader, |l, f| l.flag(f.key, f.value, f.flag));
    let loaded = if before_infra { loader.load_before_infra() } else { loader.load() }.map_err(fix_hint)?;
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(Effective { loaded, profile_file, user_file })
}

/// Sets `key = value` pairs in the user's config file, keeping its comments and layout, written
/// atomically. Under `--dry-run` it prints what it would set and writes nothing.
pub(crate) fn write_back(ctx: &Context, pairs: &[(&str, &str)]) -> Result<()> {
    let path = user_file()?;
    let mut file = ConfigFile::open(&path)?;
    file.set_many(pairs).with_context(|| format!("cannot update {}", path.display()))?;
    if ctx.dry_run {
        for (key, value) in pairs {
            let shown = if keys::is_secret(key) { "********" } else { value };
            println!("would set {key} = {shown} in {}", path.display());
        }
        return Ok(());
    }
    file.save()?;
    if ctx.verbose > 0 {
        let names: Vec<&str> = pairs.iter().map(|(k, _)| *k).collect();
        eprintln!("wrote {} to {}", names.join(", "), path.display());
    }
    Ok(())
}

/// The Grafana admin password: from the config (file or `TDSQL_GRAFANA_ADMIN_PASSWORD`), else a new
/// random one saved into the user's config file. Never put it in a rendered file: give it to compose
/// with `Cmd::secret_env(keys::GRAFANA_PASSWORD_ENV, ..)`. Under `--dry-run` nothing is written and
/// a placeholder is returned.
pub(crate) fn grafana_admin_password(ctx: &Context, config: &Config) -> Result<String> {
    let current = &config.observability.grafana_admin_password;
    if !current.is_empty() {
        return Ok(current.clone());
    }
    // Another step (or a `config render` child process) may have generated it since `config` was
    // loaded: reuse that one rather than replacing it.
    let key = "observability.grafana_admin_password";
    let path = user_file()?;
    let saved = ConfigFile::open(&path)?.get(key).and_then(|v| v.as_str().map(str::to_owned));
    if let Some(saved) = saved.filter(|s| !s.is_empty()) {
        return Ok(saved);
    }
    if ctx.dry_run {
        return Ok("<generated on first run>".to_owned());
    }
    let password = random_password();
    write_back(ctx, &[(key, &password)])?;
    eprintln!(
        "generated a Grafana admin password into {} (user: {})",
        path.display(),
        config.observability.grafana_admin_user
    );
    Ok(password)
}

/// Renders every generated file of `ctx.profile` into [`generated_dir`] and returns their paths (for
/// `up`). Makes sure a Grafana admin password exists first (in config.toml, never in a rendered file).
/// Under `--dry-run` it prints what it would write and writes nothing.
pub(crate) fn render(ctx: &Context, eff: &Effective) -> Result<Vec<PathBuf>> {
    grafana_admin_password(ctx, eff)?;
    let files = renderer::render_all_as(eff, &ctx.profile.name, Some(host_user()?))?;
    let dir = generated_dir(ctx);
    let keypair = dir.join(renderer::LOCAL_KEYPAIR_ENV);
    let pki = ops::command(["pki", "--dir"])
        .arg(dir.join(renderer::GATEWAY_PKI_DIR))
        .args(GATEWAY_CERT_NAMES.iter().flat_map(|name| ["--endpoint", name]));
    if ctx.dry_run {
        let mut paths: Vec<PathBuf> = files.iter().map(|f| dir.join(f.path)).collect();
        if eff.is_local() {
            paths.push(keypair);
        }
        for path in &paths {
            println!("would write {}", path.display());
        }
        if eff.is_local() {
            println!("would run {}", pki.display());
        }
        return Ok(paths);
    }
    let mut paths = renderer::write_all(&dir, &files)?;
    // Written for the opt-out too: the compose file names the key pair's env file and the CA either way.
    if eff.is_local() {
        ensure_keypair(&keypair)?;
        paths.push(keypair);
        let report = pki.read(ctx).context("could not create the local CA and the gateway's certificate")?;
        // `created /…/ca.key` -> `dsql-local/pki: created ca.key` (stdout lists only written files).
        for line in report.lines() {
            let (what, path) = line.split_once(' ').unwrap_or((line, ""));
            let file = Path::new(path).file_name().map_or_else(|| path.into(), |f| f.to_string_lossy());
            eprintln!("{}: {what} {file}", renderer::GATEWAY_PKI_DIR);
        }
    }
    Ok(paths)
}

/// The names the gateway's certificate carries: its compose service (what Temporal connects to)
/// and the host's loopback names (its port published on 127.0.0.1).
const GATEWAY_CERT_NAMES: [&str; 3] = [renderer::GATEWAY_SERVICE, "localhost", "127.0.0.1"];

/// Prefix of the local key pair's access key id (`TDSQLLOCAL` + 10 random characters, 20 like AWS's).
const LOCAL_ACCESS_KEY_PREFIX: &str = "TDSQLLOCAL";

/// Creates the local key pair's env file (mode 0600) unless it exists: running containers keep
/// signing and verifying with the one they started with. Created under a temporary name and
/// hard-linked into place, so two renders at once agree on one key pair.
fn ensure_keypair(path: &Path) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    let upper = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let secret = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/";
    let text = format!(
        "# The local key pair (`cargo xtask config render`, kept across renders): the Temporal containers\n\
         # sign IAM tokens with it, the dsql-local gateway verifies them. Local only; never an AWS key.\n\
         AWS_ACCESS_KEY_ID={LOCAL_ACCESS_KEY_PREFIX}{}\nAWS_SECRET_ACCESS_KEY={}\n",
        random_chars(upper, 10),
        random_chars(secret, 40),
    );
    let tmp = path.with_extension(format!("env.{}.new", std::process::id()));
    tdsql_config_renderer::write_atomic(&tmp, text.as_bytes(), true)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(err).with_context(|| format!("could not create {}", path.display())),
    }
}

/// The owner of the project directory: the user the gateway container runs as, so it can read the
/// 0600 keys that this process (run by that user) wrote.
fn host_user() -> Result<renderer::HostUser> {
    use std::os::unix::fs::MetadataExt as _;
    let root = paths::project_root();
    let meta = std::fs::metadata(&root).with_context(|| format!("could not stat {}", root.display()))?;
    Ok(renderer::HostUser { uid: meta.uid(), gid: meta.gid() })
}

/// `profiles/<p>/generated/` (git-ignored).
pub(crate) fn generated_dir(ctx: &Context) -> PathBuf {
    paths::profiles_dir().join(&ctx.profile.name).join("generated")
}

/// The user's config file: `TDSQL_CONFIG_FILE` (relative to the current directory), else
/// `config.toml` at the repository root.
pub(crate) fn user_file() -> Result<PathBuf> {
    match std::env::var_os(CONFIG_FILE_ENV) {
        Some(path) if !path.is_empty() => std::path::absolute(PathBuf::from(&path))
            .with_context(|| format!("{CONFIG_FILE_ENV}={} is not a usable path", path.to_string_lossy())),
        _ => Ok(paths::project_root().join("config.toml")),
    }
}

/// `profiles/<p>/profile.toml`.
pub(crate) fn profile_file(ctx: &Context) -> PathBuf {
    paths::profiles_dir().join(&ctx.profile.name).join("profile.toml")
}

/// The file layers of `ctx.profile`; `user_text` replaces the user file's content (for `set`).
fn layers(ctx: &Context, user_text: Option<&str>) -> Result<(Loader, PathBuf, PathBuf)> {
    let profile_file = profile_file(ctx);
    let user_file = user_file()?;
    let mut loader = Loader::new().file(&profile_file, &shown(&profile_file))?;
    let user_shown = shown(&user_file);
    match user_text {
        Some(text) => loader = loader.text(text, &user_shown)?,
        // A missing file is an empty layer, wherever it is (`config show` says "absent").
        None if user_file.exists() => loader = loader.file(&user_file, &user_shown)?,
        None => {}
    }
    Ok((loader.env(std::env::vars()), profile_file, user_file))
}

/// A path relative to the repository root when it is inside it (shorter messages).
fn shown(path: &Path) -> String {
    path.strip_prefix(paths::project_root()).unwrap_or(path).display().to_string()
}

fn fix_hint(err: ConfigError) -> anyhow::Error {
    match err {
        ConfigError::Invalid(_) => anyhow::anyhow!(
            "{err}\nfix: edit the file named on each line, or `cargo xtask config set KEY VALUE` (comments are kept)"
        ),
        other => other.into(),
    }
}

/// 24 characters from the OS's random source (`/dev/urandom`), or from the standard library's
/// randomly keyed hasher where that file does not exist.
fn random_password() -> String {
    random_chars(b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789", 24)
}

/// `len` (at most 48) characters of `alphabet` (at most 128), uniformly, from the OS's random
/// source as [`random_password`] says.
fn random_chars(alphabet: &[u8], len: usize) -> String {
    let limit = 256 - 256 % alphabet.len();
    let mut bytes = [0u8; 192];
    let from_os = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).is_ok();
    if !from_os {
        use std::hash::{BuildHasher, Hasher};
        for (i, chunk) in bytes.chunks_mut(8).enumerate() {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_usize(i);
            chunk.copy_from_slice(&hasher.finish().to_le_bytes());
        }
    }
    bytes
        .iter()
        .filter(|b| usize::from(**b) < limit)
        .take(len)
        .map(|b| char::from(alphabet[usize::from(*b) % alphabet.len()]))
        .collect()
}

/// Arguments of `cargo xtask config`.
#[derive(Debug, Args)]
pub(crate) struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Write a commented config.toml (every key, its default and what it does); never overwrites
    /// an existing one without --force
    Init {
        /// Project name (prefixes AWS resources and the compose project)
        #[arg(long, default_value = "temporal-dev")]
        name: String,
        /// AWS region of the DSQL cluster
        #[arg(long, default_value = "eu-west-1")]
        region: String,
        /// Replace an existing file (the old one is kept as config.toml.bak)
        #[arg(long)]
        force: bool,
    },
    /// Print every effective value and where it came from (profile, config.toml, env, flag, default)
    Show,
    /// Set keys in config.toml, keeping its comments: `config set KEY VALUE [KEY VALUE ...]`
    Set {
        /// Alternating keys and values, such as `dsql.max_conns 40 dsql.max_idle_conns 40`
        #[arg(value_name = "KEY VALUE", num_args = 2.., required = true)]
        pairs: Vec<String>,
    },
    /// Check the effective config of the profile; every problem with key, file and line
    Validate,
    /// Write the generated files of the profile (compose.env, temporal.env, Temporal server and
    /// dynamic config, Grafana datasources and dashboards) into profiles/<p>/generated/ and print
    /// their paths
    Render,
}

impl ConfigArgs {
    pub(crate) fn run(self, ctx: &Context) -> Result<()> {
        match self.command {
            ConfigCommand::Init { name, region, force } => init(ctx, &name, &region, force),
            ConfigCommand::Show => show(ctx),
            ConfigCommand::Render => {
                let eff = load(ctx)?;
                for path in render(ctx, &eff)? {
                    if !ctx.dry_run {
                        println!("{}", path.display());
                    }
                }
                Ok(())
            }
            ConfigCommand::Set { pairs } => set(ctx, &pairs),
            ConfigCommand::Validate => validate(ctx),
        }
    }
}

fn init(ctx: &Context, name: &str, region: &str, force: bool) -> Result<()> {
    let path = user_file()?;
    let text = init_template(name, region).context("cannot write a config with these values")?;
    if path.exists() && !force {
        bail!(
            "{} already exists; edit it with `cargo xtask config set`, or pass --force to replace it",
            path.display()
        );
    }
    if ctx.dry_run {
        println!("would write {}:\n{text}", path.display());
        return Ok(());
    }
    if path.exists() {
        let backup = path.with_extension("toml.bak");
        std::fs::copy(&path, &backup)
            .with_context(|| format!("cannot keep a backup of {} at {}", path.display(), backup.display()))?;
        eprintln!("kept the old file as {}", backup.display());
    }
    tdsql_config_renderer::write_atomic(&path, text.as_bytes(), true)?;
    println!("wrote {}", path.display());
    Ok(())
}

fn show(ctx: &Context) -> Result<()> {
    let eff = load(ctx)?;
    println!(
        "profile `{}`: defaults < {} < {}{} < TDSQL_* env < flags",
        ctx.profile.name,
        shown(&eff.profile_file),
        shown(&eff.user_file),
        if eff.user_file.is_file() { "" } else { " (absent)" }
    );
    let entries = eff.loaded.entries();
    let key_width = entries.iter().map(|e| e.key.len()).max().unwrap_or(0);
    let value_width = entries.iter().map(|e| e.value.chars().count()).max().unwrap_or(0).min(40);
    for entry in entries {
        println!("{:key_width$}  {:value_width$}  {}", entry.key, entry.value, entry.origin);
    }
    if let Some(endpoint) = eff.endpoint() {
        println!("\nendpoint: {endpoint}");
    }
    Ok(())
}

fn set(ctx: &Context, pairs: &[String]) -> Result<()> {
    if !pairs.len().is_multiple_of(2) {
        bail!("`config set` takes KEY VALUE pairs; `{}` has no value", pairs[pairs.len() - 1]);
    }
    let pairs: Vec<(&str, &str)> = pairs.chunks(2).map(|p| (p[0].as_str(), p[1].as_str())).collect();
    let path = user_file()?;
    let mut file = ConfigFile::open(&path)?;
    let before = current_errors(ctx, None)?;
    file.set_many(&pairs)?;
    // Refuse to save a file that makes the config invalid (problems that were there before are not
    // this command's to fix), so config.toml never holds a half-made change.
    let after = current_errors(ctx, Some(&file.render()))?;
    let new: Vec<&Problem> =
        after.iter().filter(|p| !before.iter().any(|b| b.key == p.key && b.message == p.message)).collect();
    // An enabled table without a name is what `infra apply` completes: save, and say so.
    let (pending, new): (Vec<&Problem>, Vec<&Problem>) =
        new.into_iter().partition(|p| p.severity == Severity::Pending);
    if !new.is_empty() {
        let list: String = new.iter().map(|p| format!("\n  - {}: {}", p.key, p.message)).collect();
        bail!(
            "not saved: {} would make the configuration invalid:{list}\nset related keys together, e.g. \
             `cargo xtask config set dsql.max_conns 40 dsql.max_idle_conns 40`",
            path.display()
        );
    }
    if ctx.dry_run {
        for (key, value) in &pairs {
            let shown = if keys::is_secret(key) { "********" } else { value };
            println!("would set {key} = {shown} in {}", path.display());
        }
        return Ok(());
    }
    file.save()?;
    for problem in &pending {
        eprintln!("note: {}: {}", problem.key, problem.message);
    }
    for (key, _) in &pairs {
        let shown = file.get(key).map(|mut v| {
            v.decor_mut().clear();
            if keys::is_secret(key) { "\"********\"".to_owned() } else { v.to_string() }
        });
        println!("{key} = {} in {}", shown.unwrap_or_default(), path.display());
    }
    Ok(())
}

/// Errors of the effective config, with `user_text` standing in for the user's file.
fn current_errors(ctx: &Context, user_text: Option<&str>) -> Result<Vec<Problem>> {
    let (loader, _, _) = match layers(ctx, user_text) {
        Ok(layers) => layers,
        // An unreadable or broken file: report nothing here; `set_many` or the load says why.
        Err(_) if user_text.is_none() => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    Ok(match loader.load() {
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid(problems)) => problems,
        Err(other) => return Err(other.into()),
    })
}

fn validate(ctx: &Context) -> Result<()> {
    let eff = load(ctx)?;
    match eff.endpoint() {
        Some(endpoint) => println!("profile `{}`: valid (endpoint {endpoint})", ctx.profile.name),
        None => println!(
            "profile `{}`: valid; no DSQL cluster yet (`cargo xtask infra apply` creates one and writes \
             dsql.identifier and dsql.endpoint)",
            ctx.profile.name
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::random_password;

    #[test]
    fn passwords_are_long_random_and_shell_safe() {
        let (a, b) = (random_password(), random_password());
        assert_eq!(a.len(), 24);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, b);
    }
}
