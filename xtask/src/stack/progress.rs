//! One progress line per stage of `up`: an indicatif spinner on a terminal, plain lines otherwise,
//! and `# [i/n] stage` comments in a `--dry-run` plan (on stdout, between the planned commands).

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};

use crate::context::Context;

/// Whether a stage runs child processes that write to the terminal themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    /// Only the stage line: a spinner may run while it works.
    Quiet,
    /// Children stream their output (compose, the build): no spinner over them.
    Streams,
}

/// Numbers and reports the stages of one command.
#[derive(Debug)]
pub(crate) struct Progress {
    total: usize,
    done: usize,
    dry_run: bool,
    tty: bool,
}

impl Progress {
    pub(crate) fn new(ctx: &Context, total: usize) -> Self {
        Self { total, done: 0, dry_run: ctx.dry_run, tty: std::io::stderr().is_terminal() }
    }

    /// Runs one stage; `f` returns its value and a one-line summary for the progress line.
    pub(crate) fn stage<T>(
        &mut self,
        name: &str,
        output: Output,
        f: impl FnOnce() -> Result<(T, String)>,
    ) -> Result<T> {
        self.done += 1;
        let label = format!("[{}/{}] {name}", self.done, self.total);
        if self.dry_run {
            println!("# {label}");
            let (value, summary) = f()?;
            println!("#   {summary}");
            return Ok(value);
        }
        let started = Instant::now();
        let spinner = (self.tty && output == Output::Quiet).then(|| {
            let bar = ProgressBar::new_spinner().with_message(label.clone());
            bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("a valid template"));
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        if output == Output::Streams {
            eprintln!("{label} ...");
        }
        let result = f();
        if let Some(bar) = spinner {
            bar.finish_and_clear();
        }
        let elapsed = started.elapsed().as_secs_f64();
        match result {
            Ok((value, summary)) => {
                let mark = if self.tty { "✔ " } else { "" };
                eprintln!("{mark}{label}: {summary} ({elapsed:.1} s)");
                Ok(value)
            }
            Err(err) => {
                let mark = if self.tty { "✘ " } else { "" };
                eprintln!("{mark}{label}: failed after {elapsed:.1} s");
                Err(err)
            }
        }
    }

    /// Reports a stage that has nothing to do this time.
    pub(crate) fn skip(&mut self, name: &str, why: &str) {
        self.done += 1;
        let label = format!("[{}/{}] {name}", self.done, self.total);
        if self.dry_run {
            println!("# {label}: skipped, {why}");
        } else {
            eprintln!("{label}: skipped, {why}");
        }
    }
}
