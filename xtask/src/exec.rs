//! The one place that starts external programs.
//!
//! It owns tool discovery (`which`, with an environment override per tool), echoing the command
//! (`▸ docker compose ...`) before it runs, `--dry-run` (print, do not run), streaming the child's
//! output, passing its exit code through, and errors that carry the command line and the tail of
//! the child's stderr. Arguments marked secret are never echoed. Nothing here goes through a shell.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use anyhow::{Context as _, Result};

use crate::context::Context;
use crate::paths;

/// An external program the xtask may run, with how to find it and how to get it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tool {
    /// The executable's name on PATH.
    pub(crate) name: &'static str,
    /// An environment variable that, when set, names the executable (a path or a name on PATH).
    pub(crate) env_override: Option<&'static str>,
    /// The one line that tells the user how to get it.
    pub(crate) install_hint: &'static str,
}

pub(crate) const DOCKER: Tool = Tool {
    name: "docker",
    env_override: Some("TDSQL_DOCKER"),
    install_hint: "install Docker (Docker Desktop, or Docker Engine: https://docs.docker.com/engine/install/)",
};

pub(crate) const TERRAFORM: Tool = Tool {
    name: "terraform",
    env_override: Some("TDSQL_TERRAFORM"),
    install_hint: "install Terraform >= 1.5 (https://developer.hashicorp.com/terraform/install), or let the xtask run its official image through Docker",
};

pub(crate) const CARGO: Tool = Tool {
    name: "cargo",
    env_override: Some("CARGO"),
    install_hint: "install Rust with rustup (https://rustup.rs)",
};

pub(crate) const PYTHON: Tool = Tool {
    name: "python3",
    env_override: Some("TDSQL_PYTHON"),
    install_hint: "install Python 3 (Debian/Ubuntu: apt-get install python3 python3-venv)",
};

/// A tool could not be found.
#[derive(Debug)]
pub(crate) struct ToolMissing {
    tool: Tool,
    detail: String,
}

impl fmt::Display for ToolMissing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` {}; {}", self.tool.name, self.detail, self.tool.install_hint)?;
        if let Some(var) = self.tool.env_override {
            write!(f, " (or set {var} to its path)")?;
        }
        Ok(())
    }
}

impl std::error::Error for ToolMissing {}

impl Tool {
    /// Resolves the executable: the override variable first, then PATH.
    pub(crate) fn locate(&self) -> Result<PathBuf, ToolMissing> {
        if let Some(var) = self.env_override
            && let Some(value) = std::env::var_os(var).filter(|v| !v.is_empty())
        {
            let candidate = PathBuf::from(&value);
            let found = if candidate.components().count() > 1 {
                candidate.is_file().then_some(candidate)
            } else {
                which::which(&value).ok()
            };
            return found.ok_or_else(|| ToolMissing {
                tool: *self,
                detail: format!("was not found where {var} points ({})", value.to_string_lossy()),
            });
        }
        which::which(self.name)
            .map_err(|_| ToolMissing { tool: *self, detail: "was not found on PATH".to_owned() })
    }

    /// The name to print for this tool in command lines: the override's value when set, so
    /// that a printed plan is exactly what would run.
    fn display_name(&self) -> String {
        self.env_override
            .and_then(std::env::var_os)
            .filter(|v| !v.is_empty() && self.name != "cargo")
            .map_or_else(|| self.name.to_owned(), |v| v.to_string_lossy().into_owned())
    }
}

#[derive(Debug, Clone)]
struct Arg {
    value: OsString,
    secret: bool,
}

#[derive(Debug, Clone)]
enum Program {
    Tool(Tool),
    Path(PathBuf),
}

/// A command line to run, print (dry run) or probe.
#[derive(Debug, Clone)]
pub(crate) struct Cmd {
    program: Program,
    args: Vec<Arg>,
    envs: Vec<(OsString, Arg)>,
    hidden_envs: Vec<(OsString, OsString)>,
    env_removes: Vec<OsString>,
    cwd: PathBuf,
    #[cfg(unix)]
    user: Option<(u32, u32)>,
}

/// A command that ran and failed.
#[derive(Debug)]
pub(crate) struct CommandFailed {
    command_line: String,
    status: ExitStatus,
    stderr_tail: String,
}

impl CommandFailed {
    /// The exit code xtask should end with: the child's own, or 128 + signal when it was killed.
    pub(crate) fn exit_code(&self) -> u8 {
        if let Some(code) = self.status.code() {
            return u8::try_from(code).ok().filter(|c| *c != 0).unwrap_or(1);
        }
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            if let Some(signal) = self.status.signal() {
                return u8::try_from(128 + signal).unwrap_or(1);
            }
        }
        1
    }
}

impl fmt::Display for CommandFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` failed ({})", self.command_line, describe_status(self.status))?;
        let tail = self.stderr_tail.trim_end();
        if !tail.is_empty() {
            write!(f, "\n--- last lines of its stderr ---\n{tail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CommandFailed {}

fn describe_status(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit code {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return format!("killed by signal {signal}");
        }
    }
    "no exit code".to_owned()
}

/// How many bytes of a failed child's stderr an error keeps.
const STDERR_TAIL_BYTES: usize = 4096;
/// How many lines of that tail an error shows.
const STDERR_TAIL_LINES: usize = 20;

impl Cmd {
    /// A command running `tool`; the executable is resolved when the command runs, so a dry run
    /// can print plans for tools this machine lacks.
    pub(crate) fn new(tool: Tool) -> Self {
        Self::with_program(Program::Tool(tool))
    }

    /// A command running the executable at `path`.
    pub(crate) fn from_path(path: impl Into<PathBuf>) -> Self {
        Self::with_program(Program::Path(path.into()))
    }

    fn with_program(program: Program) -> Self {
        Self {
            program,
            args: Vec::new(),
            envs: Vec::new(),
            hidden_envs: Vec::new(),
            env_removes: Vec::new(),
            cwd: paths::project_root(),
            #[cfg(unix)]
            user: None,
        }
    }

    pub(crate) fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(Arg { value: arg.as_ref().to_owned(), secret: false });
        self
    }

    pub(crate) fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for arg in args {
            self = self.arg(arg);
        }
        self
    }

    /// An argument that is passed on but never printed.
    #[allow(dead_code)]
    pub(crate) fn secret_arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(Arg { value: arg.as_ref().to_owned(), secret: true });
        self
    }

    /// An environment variable for the child, shown in printed command lines.
    #[allow(dead_code)]
    pub(crate) fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs.push((key.as_ref().to_owned(), Arg { value: value.as_ref().to_owned(), secret: false }));
        self
    }

    /// An environment variable whose value is never printed.
    pub(crate) fn secret_env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs.push((key.as_ref().to_owned(), Arg { value: value.as_ref().to_owned(), secret: true }));
        self
    }

    /// An environment variable that is neither shown nor part of the plan: context such as the
    /// test services' addresses, which would drown the command line.
    pub(crate) fn hidden_env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.hidden_envs.push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Removes a variable from the child's environment.
    #[allow(dead_code)]
    pub(crate) fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.env_removes.push(key.as_ref().to_owned());
        self
    }

    /// Runs the child in `dir` (default: the project root).
    pub(crate) fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = dir.as_ref().to_owned();
        self
    }

    /// Runs the child as another OS user (uid, gid); PostgreSQL's `initdb` refuses root.
    #[cfg(unix)]
    pub(crate) fn run_as_user(mut self, uid: u32, gid: u32) -> Self {
        self.user = Some((uid, gid));
        self
    }

    fn program_display(&self) -> String {
        match &self.program {
            Program::Tool(tool) => tool.display_name(),
            Program::Path(path) => path.display().to_string(),
        }
    }

    fn program_path(&self) -> Result<PathBuf> {
        match &self.program {
            Program::Tool(tool) => Ok(tool.locate()?),
            Program::Path(path) => Ok(path.clone()),
        }
    }

    /// The command line as a user could paste it into a POSIX shell; secrets show as `***`.
    pub(crate) fn display(&self) -> String {
        let mut words: Vec<String> = Vec::new();
        for (key, value) in &self.envs {
            let shown = if value.secret { "***".to_owned() } else { quote(&value.value) };
            words.push(format!("{}={shown}", key.to_string_lossy()));
        }
        words.push(quote(OsStr::new(&self.program_display())));
        for arg in &self.args {
            words.push(if arg.secret { "***".to_owned() } else { quote(&arg.value) });
        }
        words.join(" ")
    }

    fn build(&self) -> Result<Command> {
        let mut command = Command::new(self.program_path()?);
        command.args(self.args.iter().map(|a| &a.value));
        for key in &self.env_removes {
            command.env_remove(key);
        }
        for (key, value) in &self.hidden_envs {
            command.env(key, value);
        }
        for (key, value) in &self.envs {
            command.env(key, &value.value);
        }
        command.current_dir(&self.cwd);
        #[cfg(unix)]
        if let Some((uid, gid)) = self.user {
            use std::os::unix::process::CommandExt;
            command.uid(uid).gid(gid);
        }
        Ok(command)
    }

    /// Runs the command for its effect: echoed first, output streamed, a non-zero exit becomes a
    /// [`CommandFailed`] carrying the exit code and the tail of stderr. With `--dry-run` the
    /// command line is printed on stdout instead and nothing runs.
    pub(crate) fn run(&self, ctx: &Context) -> Result<()> {
        if ctx.dry_run {
            println!("{}", self.display());
            return Ok(());
        }
        self.run_now()
    }

    /// Like [`Cmd::run`], but runs even under `--dry-run`: for read-only steps a plan needs.
    pub(crate) fn run_now(&self) -> Result<()> {
        eprintln!("▸ {}", self.display());
        let mut child = self
            .build()?
            .stdin(Stdio::inherit())
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("could not start `{}`", self.display()))?;
        let stderr = child.stderr.take().expect("stderr was piped");
        let tee = std::thread::spawn(move || tee_stderr(stderr));
        let status = child.wait().with_context(|| format!("waiting for `{}`", self.display()))?;
        let tail = tee.join().unwrap_or_default();
        if status.success() {
            return Ok(());
        }
        Err(CommandFailed { command_line: self.display(), status, stderr_tail: tail }.into())
    }

    /// Runs a read-only probe (also under `--dry-run`) and returns its stdout; a non-zero exit
    /// is an error carrying stderr. Shown only with `-v`.
    pub(crate) fn read(&self, ctx: &Context) -> Result<String> {
        let output = self.probe(ctx)?;
        if output.status.success() {
            return Ok(output.stdout);
        }
        Err(CommandFailed {
            command_line: self.display(),
            status: output.status,
            stderr_tail: last_lines(&output.stderr),
        }
        .into())
    }

    /// Runs a read-only probe and returns its status and output whatever the exit code.
    pub(crate) fn probe(&self, ctx: &Context) -> Result<ProbeOutput> {
        if ctx.verbose > 0 {
            eprintln!("▹ {}", self.display());
        }
        let output = self
            .build()?
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("could not start `{}`", self.display()))?;
        Ok(ProbeOutput {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// Runs the command with its output discarded (teardown steps); returns whether it succeeded.
    pub(crate) fn probe_quiet(&self) -> Result<bool> {
        let status = self
            .build()?
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .with_context(|| format!("could not start `{}`", self.display()))?;
        Ok(status.success())
    }

    /// Starts the command in the background with stdout and stderr appended to `log`; used for
    /// the services of the test harness. The handle can be killed from any thread.
    pub(crate) fn spawn_logged(&self, log: &Path) -> Result<duct::Handle> {
        let program = self.program_path()?;
        let mut expression = duct::cmd(program, self.args.iter().map(|a| a.value.clone()))
            .dir(&self.cwd)
            .stdin_null()
            // duct applies the outer redirect first: stdout to the file, then stderr to stdout.
            .stderr_to_stdout()
            .stdout_path(log)
            .unchecked();
        for (key, value) in &self.hidden_envs {
            expression = expression.env(key, value);
        }
        for (key, value) in &self.envs {
            expression = expression.env(key, &value.value);
        }
        #[cfg(unix)]
        if let Some((uid, gid)) = self.user {
            use std::os::unix::process::CommandExt;
            expression = expression.before_spawn(move |command| {
                command.uid(uid).gid(gid);
                Ok(())
            });
        }
        expression.start().with_context(|| format!("could not start `{}`", self.display()))
    }
}

/// What a probe printed.
#[derive(Debug)]
pub(crate) struct ProbeOutput {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl ProbeOutput {
    /// The first non-empty line of stdout, else of stderr: most tools print their version there.
    pub(crate) fn first_line(&self) -> String {
        self.stdout
            .lines()
            .chain(self.stderr.lines())
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or_default()
            .to_owned()
    }
}

/// Copies the child's stderr to ours as it arrives and returns its last lines.
fn tee_stderr(mut stderr: impl Read) -> String {
    let mut tail: VecDeque<u8> = VecDeque::with_capacity(STDERR_TAIL_BYTES);
    let mut buf = [0_u8; 8192];
    let mut ours = std::io::stderr();
    while let Ok(n) = stderr.read(&mut buf) {
        if n == 0 {
            break;
        }
        let _ = ours.write_all(&buf[..n]);
        let _ = ours.flush();
        for &b in &buf[..n] {
            if tail.len() == STDERR_TAIL_BYTES {
                tail.pop_front();
            }
            tail.push_back(b);
        }
    }
    let bytes: Vec<u8> = tail.into_iter().collect();
    last_lines(&String::from_utf8_lossy(&bytes))
}

fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..].join("\n")
}

/// Quotes a word for a POSIX shell when it needs it.
fn quote(word: &OsStr) -> String {
    let text = word.to_string_lossy();
    let plain =
        !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,^".contains(c));
    if plain { text.into_owned() } else { format!("'{}'", text.replace('\'', r"'\''")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_and_masks_secrets() {
        let cmd = Cmd::new(DOCKER)
            .env("A", "plain")
            .secret_env("TOKEN", "hunter2")
            .args(["compose", "--project-name", "my stack"])
            .secret_arg("s3cret")
            .arg("it's");
        let shown = cmd.display();
        assert_eq!(shown, r"A=plain TOKEN=*** docker compose --project-name 'my stack' *** 'it'\''s'");
        assert!(!shown.contains("hunter2") && !shown.contains("s3cret"));
    }

    #[test]
    fn a_missing_tool_names_itself_and_the_fix() {
        let tool = Tool {
            name: "tdsql-no-such-tool",
            env_override: Some("TDSQL_TEST_NO_SUCH_TOOL_OVERRIDE"),
            install_hint: "install it from the moon",
        };
        let err = tool.locate().unwrap_err().to_string();
        assert!(err.contains("`tdsql-no-such-tool` was not found on PATH"), "{err}");
        assert!(err.contains("install it from the moon"), "{err}");
        assert!(err.contains("TDSQL_TEST_NO_SUCH_TOOL_OVERRIDE"), "{err}");
    }

    #[test]
    fn a_failed_child_passes_its_exit_code_and_stderr_tail() {
        let err = Cmd::from_path("/bin/sh")
            .args(["-c", "echo first >&2; echo boom >&2; exit 7"])
            .run_now()
            .unwrap_err();
        let failed = err.downcast_ref::<CommandFailed>().expect("a CommandFailed");
        assert_eq!(failed.exit_code(), 7);
        let message = failed.to_string();
        assert!(message.contains("exit code 7") && message.contains("boom"), "{message}");
        assert!(message.contains("/bin/sh -c"), "{message}");
    }

    #[test]
    fn stderr_tail_keeps_the_last_lines_only() {
        let text: String = (0..50).map(|i| format!("line {i}\n")).collect();
        let tail = last_lines(&text);
        assert!(tail.starts_with("line 30") && tail.ends_with("line 49"), "{tail}");
    }
}
