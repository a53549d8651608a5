//! Two dialects from one source. The SQL files are written for Aurora DSQL (every standalone
//! index is `CREATE [UNIQUE] INDEX ASYNC`); the `postgres` dialect drops `ASYNC` so that the same
//! statements run on the local PostgreSQL stand-in.

use std::fmt;
use std::str::FromStr;

use crate::lex;

/// The SQL flavour the migrator speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// Aurora DSQL: asynchronous indexes, waited for with `sys.wait_for_job`.
    Dsql,
    /// PostgreSQL (the local profile's stand-in): plain `CREATE INDEX`.
    Postgres,
}

impl Dialect {
    /// Every dialect, for messages.
    pub const ALL: [Dialect; 2] = [Dialect::Dsql, Dialect::Postgres];

    /// The dialect's name as flags and messages spell it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Dsql => "dsql",
            Dialect::Postgres => "postgres",
        }
    }

    /// The statement as this dialect runs it.
    #[must_use]
    pub fn render(self, statement: &str) -> String {
        match self {
            Dialect::Dsql => statement.to_owned(),
            Dialect::Postgres => drop_async(statement),
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A dialect name that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown dialect `{0}`; known dialects: dsql, postgres")]
pub struct UnknownDialect(pub String);

impl FromStr for Dialect {
    type Err = UnknownDialect;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Dialect::ALL
            .into_iter()
            .find(|d| d.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownDialect(s.to_owned()))
    }
}

/// Removes the `ASYNC` of `CREATE [UNIQUE] INDEX ASYNC`, leaving every other byte as written.
fn drop_async(statement: &str) -> String {
    let Ok(tokens) = lex::tokenize(statement) else { return statement.to_owned() };
    let mut words = tokens.iter().take(4);
    let is_index = words.next().is_some_and(|t| t.is_word("create")) && {
        let mut next = words.next();
        if next.is_some_and(|t| t.is_word("unique")) {
            next = words.next();
        }
        next.is_some_and(|t| t.is_word("index"))
    };
    if !is_index {
        return statement.to_owned();
    }
    let Some(async_token) = tokens.iter().take(4).find(|t| t.is_word("async")) else {
        return statement.to_owned();
    };
    // Remove the word and the whitespace after it.
    let rest = statement[async_token.span.end..].trim_start();
    format!("{}{rest}", &statement[..async_token.span.start])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_drops_async_and_nothing_else() {
        let dsql = "CREATE UNIQUE INDEX ASYNC IF NOT EXISTS idx_namespaces_name ON namespaces (name)";
        assert_eq!(Dialect::Dsql.render(dsql), dsql);
        assert_eq!(
            Dialect::Postgres.render(dsql),
            "CREATE UNIQUE INDEX IF NOT EXISTS idx_namespaces_name ON namespaces (name)"
        );
        assert_eq!(Dialect::Postgres.render("create index async i on t (a)"), "create index i on t (a)");
        let table = "CREATE TABLE async (async INT)";
        assert_eq!(Dialect::Postgres.render(table), table);
    }

    #[test]
    fn names_round_trip() {
        for dialect in Dialect::ALL {
            assert_eq!(dialect.name().parse::<Dialect>().unwrap(), dialect);
        }
        assert_eq!(
            "mysql".parse::<Dialect>().unwrap_err().to_string(),
            "unknown dialect `mysql`; known dialects: dsql, postgres"
        );
    }
}
