//! Where and how Terraform runs for `terraform/shared`: the working directory, the state and plan
//! files, the local binary or the official image, and turning its failures into advice.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::exec::{Cmd, DOCKER, TERRAFORM};
use crate::paths;

/// The official image used when there is no local `terraform`; pinned like every other image.
pub(crate) const TERRAFORM_IMAGE: &str = "hashicorp/terraform:1.11.4";

/// Environment variable naming a directory that holds the Terraform working data instead of
/// `terraform/shared` (a copy of the module, `.terraform/`, the lock file, the state, the plan).
pub(crate) const STATE_DIR_ENV: &str = "TDSQL_TF_STATE_DIR";

/// The AWS variables handed into the Terraform container by name (values never printed).
const FORWARDED_ENV: [&str; 12] = [
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_DSQL",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_S3",
    "AWS_EC2_METADATA_DISABLED",
    "TF_LOG",
];

/// Written into `.terraform/` after a successful `init`, with what that init depended on.
const INIT_STAMP: &str = "tdsql-init-stamp";

/// Written into the working directory when the state lives in S3: the module declares
/// `backend "local"`, and an override file is how Terraform lets a run replace it.
const BACKEND_OVERRIDE: &str = "backend_override.tf";
const BACKEND_OVERRIDE_TEXT: &str =
    "# Written by `cargo xtask infra` because infra.state.backend = \"s3\"; removed when it is \"local\".
terraform {
  backend \"s3\" {}
}
";

/// The committed dependency lock file of `terraform/shared` (provider version and hashes).
pub(crate) const LOCK_FILE: &str = ".terraform.lock.hcl";

/// The platforms contributors use; the command that records their hashes needs the registry.
pub(crate) const LOCK_COMMAND: &str = "terraform -chdir=terraform/shared providers lock -platform=linux_amd64 \
     -platform=linux_arm64 -platform=darwin_amd64 -platform=darwin_arm64";

/// How Terraform is started.
#[derive(Debug, Clone)]
enum Runner {
    /// The local binary (`terraform` on PATH or `TDSQL_TERRAFORM`).
    Local,
    /// `docker run` of [`TERRAFORM_IMAGE`] with the directories it needs mounted at their own paths.
    Docker { uid_gid: Option<String> },
}

/// The Terraform working directory of `terraform/shared` and how to run Terraform in it.
#[derive(Debug, Clone)]
pub(crate) struct Workspace {
    /// The committed module (`terraform/shared`).
    pub(crate) module_dir: PathBuf,
    /// Where Terraform runs (`-chdir`): the module itself, or a copy under `TDSQL_TF_STATE_DIR`.
    pub(crate) work_dir: PathBuf,
    /// The local backend's state file.
    pub(crate) state_file: PathBuf,
    /// The saved plan that `apply` applies.
    pub(crate) plan_file: PathBuf,
    /// `TF_DATA_DIR` when Terraform runs in a throwaway copy (destroy); `None` = `<work_dir>/.terraform`.
    data_dir: Option<PathBuf>,
    runner: Runner,
}

impl Workspace {
    /// The workspace for this checkout, honouring `TDSQL_TF_STATE_DIR`.
    pub(crate) fn locate() -> Result<Self> {
        let module_dir = paths::project_root().join("terraform").join("shared");
        let work_dir = match std::env::var_os(STATE_DIR_ENV).filter(|v| !v.is_empty()) {
            Some(dir) => {
                let dir = PathBuf::from(dir);
                if dir.is_absolute() { dir } else { paths::project_root().join(dir) }
            }
            None => module_dir.clone(),
        };
        let runner = match TERRAFORM.locate() {
            Ok(_) => Runner::Local,
            // An explicit override that points nowhere is a mistake to report, not to paper over.
            Err(err) if std::env::var_os("TDSQL_TERRAFORM").is_some_and(|v| !v.is_empty()) => {
                return Err(err.into());
            }
            Err(_) => Runner::Docker { uid_gid: owner_of(&paths::project_root()) },
        };
        Ok(Self {
            state_file: work_dir.join("terraform.tfstate"),
            plan_file: work_dir.join("tfplan"),
            module_dir,
            work_dir,
            data_dir: None,
            runner,
        })
    }

    /// Whether Terraform runs from its image rather than a local binary.
    pub(crate) fn uses_docker(&self) -> bool {
        matches!(self.runner, Runner::Docker { .. })
    }

    /// Whether the working directory is a copy of the module rather than the module itself.
    fn is_copy(&self) -> bool {
        self.work_dir != self.module_dir
    }

    /// Brings the copy of the module up to date (`*.tf` files and the lock file; tfvars, state
    /// and `.terraform/` stay). Nothing to do when Terraform runs in the module itself.
    pub(crate) fn sync_module(&self) -> Result<()> {
        if !self.is_copy() {
            return Ok(());
        }
        copy_module(&self.module_dir, &self.work_dir)
    }

    /// A workspace in `dir` that shares this one's state, `.terraform/` and lock file but runs on
    /// a copy of the module: `destroy` lifts `prevent_destroy` there without touching the
    /// committed files. Nothing is written until [`Workspace::fill_scratch`].
    pub(crate) fn scratch(&self, dir: &Path) -> Self {
        Self {
            work_dir: dir.to_owned(),
            data_dir: Some(self.data_dir()),
            plan_file: dir.join("tfplan"),
            ..self.clone()
        }
    }

    /// Writes the copy of the module for `scratch` (made by [`Workspace::scratch`]): the `*.tf`
    /// files, the lock file and tfvars of this workspace, and `extra` files.
    pub(crate) fn fill_scratch(&self, scratch: &Workspace, extra: &[(&str, &str)]) -> Result<()> {
        let dir = &scratch.work_dir;
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        copy_module(&self.module_dir, dir)?;
        for entry in std::fs::read_dir(&self.work_dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if matches!(name, "terraform.tfvars" | LOCK_FILE | BACKEND_OVERRIDE)
                || name.ends_with(".auto.tfvars")
            {
                std::fs::copy(&path, dir.join(name))
                    .with_context(|| format!("copying {}", path.display()))?;
            }
        }
        for (name, text) in extra {
            std::fs::write(dir.join(name), text)?;
        }
        Ok(())
    }

    /// Declares the S3 backend (an override file in the working directory) or takes that back.
    pub(crate) fn declare_s3_backend(&self, s3: bool) -> Result<()> {
        let path = self.work_dir.join(BACKEND_OVERRIDE);
        if s3 {
            std::fs::create_dir_all(&self.work_dir)?;
            return std::fs::write(&path, BACKEND_OVERRIDE_TEXT)
                .with_context(|| format!("writing {}", path.display()));
        }
        // Only a file of ours: someone's own override stays.
        if std::fs::read_to_string(&path).is_ok_and(|text| text == BACKEND_OVERRIDE_TEXT) {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
        Ok(())
    }

    /// The backend the last successful `init` configured, from Terraform's own record in the
    /// data directory; `None` before the first `init`.
    pub(crate) fn initialised_backend(&self) -> Option<InitialisedBackend> {
        #[derive(serde::Deserialize)]
        struct Record {
            backend: Option<InitialisedBackend>,
        }
        let text = std::fs::read_to_string(self.data_dir().join("terraform.tfstate")).ok()?;
        serde_json::from_str::<Record>(&text).ok()?.backend
    }

    /// Terraform's data directory (`.terraform/` of the working directory unless a scratch copy).
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| self.work_dir.join(".terraform"))
    }

    /// What an `init` depends on: the provider requirements and their lock, the backend
    /// configuration (`init` arguments), the runner.
    fn init_stamp(&self, backend_args: &[String]) -> String {
        let read = |name: &str| std::fs::read_to_string(self.module_dir.join(name)).unwrap_or_default();
        format!(
            "{}\n{}\n{}\n{}",
            backend_args.join(" "),
            self.uses_docker(),
            read("versions.tf"),
            read(LOCK_FILE)
        )
    }

    /// Whether an earlier `init` with these backend arguments still holds, so the next one can be
    /// skipped (each costs seconds).
    pub(crate) fn is_initialised(&self, backend_args: &[String]) -> bool {
        let data_dir = self.data_dir();
        self.work_dir.join(LOCK_FILE).is_file()
            && data_dir.join("providers").is_dir()
            && std::fs::read_to_string(data_dir.join(INIT_STAMP))
                .is_ok_and(|s| s == self.init_stamp(backend_args))
    }

    /// Records a successful `init`.
    pub(crate) fn mark_initialised(&self, backend_args: &[String]) -> Result<()> {
        let path = self.data_dir().join(INIT_STAMP);
        std::fs::write(&path, self.init_stamp(backend_args))
            .with_context(|| format!("writing {}", path.display()))
    }

    /// `terraform -chdir=<work dir> <args>`, locally or in the official image.
    pub(crate) fn terraform<I, S>(&self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let chdir = format!("-chdir={}", self.work_dir.display());
        let cmd = match &self.runner {
            Runner::Local => {
                let mut cmd = Cmd::new(TERRAFORM);
                if let Some(data_dir) = &self.data_dir {
                    cmd = cmd.env("TF_DATA_DIR", data_dir);
                }
                cmd.hidden_env("TF_IN_AUTOMATION", "1").arg(chdir)
            }
            Runner::Docker { uid_gid } => self.docker_run(uid_gid.as_deref()).arg(TERRAFORM_IMAGE).arg(chdir),
        };
        cmd.args(args)
    }

    fn docker_run(&self, uid_gid: Option<&str>) -> Cmd {
        let root = paths::project_root();
        let mut cmd = Cmd::new(DOCKER).args(["run", "--rm", "-i"]);
        if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            cmd = cmd.arg("-t");
        }
        // A local AWS endpoint (moto on 127.0.0.1) is only reachable from the host's network.
        if local_endpoint().is_some() {
            cmd = cmd.args(["--network", "host"]);
        }
        if let Some(uid_gid) = uid_gid {
            // Files written into the checkout (state, .terraform/) stay the user's.
            cmd = cmd.args(["--user", uid_gid]);
        }
        let mut mounts: Vec<PathBuf> = vec![root.clone()];
        if !self.work_dir.starts_with(&root) {
            mounts.push(self.work_dir.clone());
        }
        if let Some(data_dir) = &self.data_dir
            && !mounts.iter().any(|m| data_dir.starts_with(m))
        {
            mounts.push(data_dir.clone());
        }
        for mount in mounts {
            cmd = cmd.arg("--volume").arg(volume(&mount, &mount, ""));
        }
        // CHECKPOINT_DISABLE: no version check, which would write under the (not writable) HOME.
        cmd = cmd.args([
            "--env",
            "HOME=/tmp/terraform-home",
            "--env",
            "TF_IN_AUTOMATION=1",
            "--env",
            "CHECKPOINT_DISABLE=1",
        ]);
        if let Some(home) = std::env::var_os("HOME").map(PathBuf::from)
            && home.join(".aws").is_dir()
        {
            cmd = cmd.arg("--volume").arg(volume(
                &home.join(".aws"),
                Path::new("/tmp/terraform-home/.aws"),
                "",
            ));
        }
        if let Some(cli_config) = std::env::var_os("TF_CLI_CONFIG_FILE").map(PathBuf::from)
            && cli_config.is_file()
        {
            cmd = cmd
                .arg("--volume")
                .arg(volume(&cli_config, &cli_config, ":ro"))
                .arg("--env")
                .arg(format!("TF_CLI_CONFIG_FILE={}", cli_config.display()));
        }
        if let Some(data_dir) = &self.data_dir {
            cmd = cmd.arg("--env").arg(format!("TF_DATA_DIR={}", data_dir.display()));
        }
        for name in FORWARDED_ENV {
            if std::env::var_os(name).is_some() {
                // `--env NAME` copies the value from our environment without printing it.
                cmd = cmd.args(["--env", name]);
            }
        }
        cmd.arg("--workdir").arg(&self.work_dir)
    }
}

fn volume(host: &Path, container: &Path, mode: &str) -> OsString {
    let mut spec = host.as_os_str().to_owned();
    spec.push(":");
    spec.push(container.as_os_str());
    spec.push(mode);
    spec
}

#[cfg(unix)]
fn owner_of(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(format!("{}:{}", meta.uid(), meta.gid()))
}

#[cfg(not(unix))]
fn owner_of(_path: &Path) -> Option<String> {
    None
}

/// Copies the module's `*.tf` files and its lock file into `dir`, and removes `*.tf` files the
/// module no longer has.
fn copy_module(module_dir: &Path, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let is_tf = |p: &Path| p.extension().is_some_and(|e| e == "tf") && p.is_file();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if is_tf(&path) && !module_dir.join(path.file_name().unwrap_or_default()).is_file() {
            std::fs::remove_file(&path)?;
        }
    }
    for entry in std::fs::read_dir(module_dir).with_context(|| format!("reading {}", module_dir.display()))? {
        let path = entry?.path();
        if is_tf(&path) || path.file_name().is_some_and(|n| n == LOCK_FILE) {
            let to = dir.join(path.file_name().unwrap_or_default());
            std::fs::copy(&path, &to)
                .with_context(|| format!("copying {} to {}", path.display(), to.display()))?;
        }
    }
    Ok(())
}

/// The backend Terraform's data directory records (`.terraform/terraform.tfstate`).
#[derive(Debug, Clone, serde::Deserialize)]
pub(crate) struct InitialisedBackend {
    /// `local`, `s3`, ...
    #[serde(rename = "type")]
    pub(crate) kind: String,
    #[serde(default)]
    config: serde_json::Map<String, serde_json::Value>,
}

impl InitialisedBackend {
    /// A string setting of the backend (`bucket`, `key`, `path`), when set.
    pub(crate) fn setting(&self, name: &str) -> Option<&str> {
        self.config.get(name).and_then(serde_json::Value::as_str)
    }
}

/// The endpoint of a local AWS API from the environment, if any (the most general one).
pub(crate) fn local_endpoint() -> Option<String> {
    ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DSQL", "AWS_ENDPOINT_URL_DYNAMODB"]
        .into_iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()))
}

/// Whether the S3 backend talks to a local API (moto, MinIO): AWS_ENDPOINT_URL or
/// AWS_ENDPOINT_URL_S3, which the backend reads itself.
pub(crate) fn local_s3_endpoint() -> bool {
    ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"]
        .into_iter()
        .any(|var| std::env::var(var).is_ok_and(|v| !v.is_empty()))
}

/// `-var` arguments for the endpoint variables of the module, from the same environment
/// variables the AWS SDKs read.
pub(crate) fn endpoint_vars() -> Vec<String> {
    [
        ("AWS_ENDPOINT_URL", "aws_endpoint_url"),
        ("AWS_ENDPOINT_URL_DSQL", "dsql_endpoint_url"),
        ("AWS_ENDPOINT_URL_DYNAMODB", "dynamodb_endpoint_url"),
    ]
    .into_iter()
    .filter_map(|(env, var)| std::env::var(env).ok().filter(|v| !v.is_empty()).map(|v| format!("{var}={v}")))
    .collect()
}

/// Regions where Aurora DSQL is offered, per the AWS General Reference page "Amazon Aurora DSQL
/// endpoints and quotas" (docs.aws.amazon.com/general/latest/gr/dsql.html) as read in 2026.
/// `--any-region` skips the check for regions added since.
pub(crate) const DSQL_REGIONS: [&str; 12] = [
    "us-east-1",
    "us-east-2",
    "us-west-2",
    "ap-east-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-southeast-4",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
];

/// Regions where moto (the local AWS API of the tests) implements Aurora DSQL.
pub(crate) const MOTO_DSQL_REGIONS: [&str; 2] = ["us-east-1", "us-east-2"];

/// What went wrong in a failed Terraform run, recognised from its error output.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    NoCredentials,
    AccessDenied,
    PreventDestroy(Vec<String>),
    DeletionProtection,
    RegionWithoutDsql,
    StateLocked,
    /// `init` could not get the provider: from the registry (`mirror: false`) or from the
    /// filesystem mirror the CLI configuration names (`mirror: true`).
    ProviderUnavailable {
        mirror: bool,
    },
    /// The provider package found for this platform has no hash in the lock file.
    ProviderNotInLockFile,
}

/// Recognises a known failure in Terraform's output (ANSI colours, the box around diagnostics
/// and line wrapping are ignored).
pub(crate) fn classify(output: &str) -> Option<Failure> {
    let text =
        strip_ansi(output).replace(['│', '╷', '╵'], " ").split_whitespace().collect::<Vec<_>>().join(" ");
    let has = |needle: &str| text.contains(needle);
    if has("has lifecycle.prevent_destroy") {
        let resources = text
            .split("Resource ")
            .skip(1)
            .filter_map(|rest| {
                rest.split_once(" has lifecycle.prevent_destroy").map(|(r, _)| r.trim().to_owned())
            })
            .filter(|r| !r.contains(char::is_whitespace))
            .collect();
        return Some(Failure::PreventDestroy(resources));
    }
    if has("Deletion protection is enabled") {
        return Some(Failure::DeletionProtection);
    }
    if has("No valid credential sources found")
        || has("failed to refresh cached credentials")
        || has("InvalidClientTokenId")
        || has("UnrecognizedClientException")
        || has("ExpiredToken")
        || has("security token included in the request is invalid")
        || has("no credentials found in chain")
    {
        return Some(Failure::NoCredentials);
    }
    if has("AccessDenied") || has("not authorized to perform") {
        return Some(Failure::AccessDenied);
    }
    // Real AWS: the regional API host does not exist. moto: its backend has no such region, which
    // it answers with an HTML error page (HTTP 500) that the provider cannot decode.
    let moto_without_region =
        has("DSQL") && (has("KeyError") || (has("StatusCode: 500") && has("invalid character '<'")));
    if ((has("no such host") || has("dns error")) && has("dsql")) || moto_without_region {
        return Some(Failure::RegionWithoutDsql);
    }
    if has("Error acquiring the state lock") {
        return Some(Failure::StateLocked);
    }
    if has("doesn't match any of the checksums previously recorded in the dependency lock file") {
        return Some(Failure::ProviderNotInLockFile);
    }
    if has("Failed to query available provider packages") || has("Failed to install provider") {
        let mirror = has("cannot search ") || has("was not found in any of the search locations");
        return Some(Failure::ProviderUnavailable { mirror });
    }
    None
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI sequences end with a letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prevent_destroy_names_the_resources() {
        let output = "\u{1b}[31mError: Instance cannot be destroyed\u{1b}[0m\n\n  on main.tf line 49:\n\
                      Resource aws_dynamodb_table.rate_limiter[0] has lifecycle.prevent_destroy\nset, but the plan \
                      calls for this resource to be destroyed.\nResource aws_dynamodb_table.conn_lease[0] has \
                      lifecycle.prevent_destroy set";
        assert_eq!(
            classify(output),
            Some(Failure::PreventDestroy(vec![
                "aws_dynamodb_table.rate_limiter[0]".to_owned(),
                "aws_dynamodb_table.conn_lease[0]".to_owned()
            ]))
        );
    }

    #[test]
    fn known_failures_are_recognised() {
        assert_eq!(classify("Error: No valid credential sources found"), Some(Failure::NoCredentials));
        assert_eq!(
            classify("ConflictException: Deletion protection is enabled for this cluster."),
            Some(Failure::DeletionProtection)
        );
        assert_eq!(
            classify("dial tcp: lookup dsql.sa-east-1.api.aws on 127.0.0.53:53: no such host"),
            Some(Failure::RegionWithoutDsql)
        );
        // moto 5.2.5 outside us-east-1/2, as terraform prints it (`infra apply --any-region`).
        assert_eq!(
            classify(
                "operation error DSQL: CreateCluster, exceeded maximum number of attempts, 1,\nhttps response \
                 error StatusCode: 500, RequestID: , deserialization failed,\nfailed to decode response body, \
                 invalid character '<' looking for beginning\nof value"
            ),
            Some(Failure::RegionWithoutDsql)
        );
        // A real server error of the DSQL API is not taken for a missing region.
        assert_eq!(
            classify(
                "operation error DSQL: CreateCluster, https response error StatusCode: 500, InternalServerException"
            ),
            None
        );
        assert_eq!(classify("Error: Error acquiring the state lock"), Some(Failure::StateLocked));
        assert_eq!(
            classify(
                "GetCluster x failed: dispatch failure: other: no credentials found in chain. Attempted:"
            ),
            Some(Failure::NoCredentials)
        );
        assert_eq!(classify("Error: something else"), None);
    }

    /// Terraform 1.11.4's `init` output when the provider cannot be had, as printed here.
    #[test]
    fn an_unavailable_provider_is_recognised() {
        let registry = "Error: Failed to query available provider packages\n\nCould not retrieve the list of \
                        available versions for provider hashicorp/aws:\ncould not connect to registry.terraform.io: \
                        failed to request discovery\ndocument: Get \"https://registry.terraform.io/.well-known/\
                        terraform.json\":\ndial tcp: lookup registry.terraform.io on 10.255.255.53:53: no such host";
        assert_eq!(classify(registry), Some(Failure::ProviderUnavailable { mirror: false }));
        let mirror = "Error: Failed to query available provider packages\n\nCould not retrieve the list of \
                      available versions for provider hashicorp/aws:\ncannot search /tmp/no-such-mirror: lstat \
                      /tmp/no-such-mirror: no such file or\ndirectory";
        assert_eq!(classify(mirror), Some(Failure::ProviderUnavailable { mirror: true }));
        let checksum = "Error: Failed to install provider\n\nError while installing hashicorp/aws v5.100.0: the \
                        current package for registry.terraform.io/hashicorp/aws 5.100.0\ndoesn't match any of the \
                        checksums previously recorded in the dependency lock file";
        assert_eq!(classify(checksum), Some(Failure::ProviderNotInLockFile));
    }

    #[test]
    fn the_module_copy_follows_the_module() {
        let base = std::env::temp_dir().join(format!("tdsql-infra-copy-{}", std::process::id()));
        let (module, copy) = (base.join("module"), base.join("copy"));
        std::fs::create_dir_all(&module).unwrap();
        std::fs::create_dir_all(&copy).unwrap();
        std::fs::write(module.join("main.tf"), "# new").unwrap();
        std::fs::write(copy.join("old.tf"), "# gone from the module").unwrap();
        std::fs::write(copy.join("terraform.tfvars"), "x = 1").unwrap();
        copy_module(&module, &copy).unwrap();
        assert_eq!(std::fs::read_to_string(copy.join("main.tf")).unwrap(), "# new");
        assert!(!copy.join("old.tf").exists());
        assert!(copy.join("terraform.tfvars").exists(), "user files stay");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
