//! Load + validate + render, per profile: prints the time one `cargo xtask config render` spends
//! in this crate (the process start and file writes come on top).
//!
//! `cargo bench -p tdsql-config-renderer --bench render`

use std::path::PathBuf;
use std::time::Instant;

use tdsql_config_renderer::{Loader, render};

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    for profile in ["local", "dsql"] {
        let file = root.join("profiles").join(profile).join("profile.toml");
        let text = std::fs::read_to_string(&file).expect("profile exists");
        let user = "[dsql]\nidentifier = \"abcdefghijklmnopqrstuvwxyz\"\n";
        let run = || {
            let loaded =
                Loader::new().text(&text, "profile.toml").unwrap().text(user, "config.toml").unwrap().load();
            let config = loaded.expect("profile loads").config;
            render::render_all(&config, profile).expect("renders")
        };
        run();
        let iterations = 2_000u32;
        let start = Instant::now();
        let mut bytes = 0;
        for _ in 0..iterations {
            bytes += run().iter().map(|f| f.contents.len()).sum::<usize>();
        }
        let per = start.elapsed() / iterations;
        println!(
            "{profile:>5}: load + validate + render {:>7.1} us per run ({iterations} runs, {} bytes per run)",
            per.as_secs_f64() * 1e6,
            bytes / iterations as usize
        );
    }
}
