//! The commented `config.toml` that `cargo xtask config init` writes.

use std::fmt::Write as _;

use toml_edit::Value;

use crate::error::{ConfigError, Problem};
use crate::keys;
use crate::load::check_value;

/// A `config.toml` with `project.name` and `project.region` set and every other key listed, commented
/// out, with its default and one line of documentation. Values are TOML-escaped.
///
/// # Errors
/// [`ConfigError::Invalid`] when `name` or `region` is not usable.
pub fn init_template(name: &str, region: &str) -> Result<String, ConfigError> {
    let set = [("project.name", Value::from(name)), ("project.region", Value::from(region))];
    let mut problems = Vec::new();
    for (key, value) in &set {
        if let Err(message) = check_value(key, value) {
            problems.push(Problem::error(key, message));
        }
    }
    // Use the same rules as loading so `init` never writes a file that then fails to load.
    let mut config = crate::model::Config::default();
    config.project.name = name.to_owned();
    config.project.region = region.to_owned();
    problems.extend(crate::validate::validate(&config).into_iter().filter(|p| p.key.starts_with("project.")));
    if !problems.is_empty() {
        return Err(ConfigError::Invalid(problems));
    }
    let mut out = String::from(
        "# temporal-dsql-deploy: your own settings (git-ignored). Every key is optional: a key left out\n\
         # takes the profile's value (profiles/<profile>/profile.toml), else the built-in default shown.\n\
         # Edit by hand or with `cargo xtask config set KEY VALUE` (comments are kept);\n\
         # `cargo xtask config show` prints every effective value and where it came from.\n\
         # Environment variables override this file: TDSQL_<KEY>, e.g. TDSQL_DSQL_MAX_CONNS.\n",
    );
    let mut section = String::new();
    for info in keys::all() {
        let (this_section, leaf) = info.key.rsplit_once('.').expect("every key is in a section");
        if this_section != section {
            section = this_section.to_owned();
            let _ = write!(out, "\n[{section}]\n");
        }
        let chosen = set.iter().find(|(k, _)| *k == info.key).map(|(_, v)| v);
        let _ = writeln!(out, "# {}", info.doc);
        match chosen {
            Some(value) => {
                let _ = writeln!(out, "{leaf} = {value}");
            }
            None => {
                let mut default = info.default.clone();
                default.decor_mut().clear();
                let _ = writeln!(out, "# {leaf} = {default}");
            }
        }
    }
    Ok(out)
}
