//! Teardown that runs exactly once: at the end of the run, on an early error, or on Ctrl-C.

use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context as _, Result};

type Task = Box<dyn FnOnce() + Send>;

/// A stack of teardown tasks shared with the Ctrl-C handler.
#[derive(Clone)]
pub(crate) struct Cleanup {
    tasks: Arc<Mutex<Vec<(String, Task)>>>,
}

impl std::fmt::Debug for Cleanup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cleanup").finish_non_exhaustive()
    }
}

impl Cleanup {
    /// Creates the stack and installs the Ctrl-C / SIGTERM handler that drains it.
    pub(crate) fn install() -> Result<Self> {
        let cleanup = Self { tasks: Arc::new(Mutex::new(Vec::new())) };
        let on_signal = cleanup.clone();
        ctrlc::set_handler(move || {
            eprintln!("\ninterrupted: stopping the test services");
            on_signal.run_all();
            std::process::exit(130);
        })
        .context("could not install the Ctrl-C handler")?;
        Ok(cleanup)
    }

    /// Registers a task; tasks run in reverse order of registration.
    pub(crate) fn push(&self, what: impl Into<String>, task: impl FnOnce() + Send + 'static) {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner).push((what.into(), Box::new(task)));
    }

    /// Runs every registered task once.
    pub(crate) fn run_all(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        for (what, task) in tasks.into_iter().rev() {
            eprintln!("  stopping {what}");
            task();
        }
    }
}
