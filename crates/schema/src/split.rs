//! Splits SQL scripts into statements.
//!
//! Unlike the upstream Temporal splitter, this one knows PostgreSQL's lexical rules rather than
//! guessing at blocks: a `;` ends a statement unless it is inside a `--` or (nested) `/* */`
//! comment, a quoted string or identifier, or a dollar-quoted body, and a word such as `IF` (as in
//! `IF NOT EXISTS`) is just a word.

use crate::lex::{self, Kind};

/// One statement of a script, without its terminating `;`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The statement's text from its first token to its last, comments inside it kept.
    pub text: String,
    /// The 1-based line of the script where the statement starts.
    pub line: usize,
}

/// A script could not be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SplitError {
    /// A string, quoted identifier, comment or dollar-quoted body is never closed.
    #[error("unterminated {what} starting on line {line}")]
    Unterminated {
        /// What was left open.
        what: &'static str,
        /// The 1-based line where it starts.
        line: usize,
    },
}

/// Splits `sql` into its statements; empty statements (`;;`, comment-only tails) are dropped.
///
/// # Errors
/// [`SplitError::Unterminated`] when a literal or comment is never closed.
pub fn split(sql: &str) -> Result<Vec<Statement>, SplitError> {
    let tokens = lex::tokenize(sql)
        .map_err(|e| SplitError::Unterminated { what: e.what, line: line_of(sql, e.offset) })?;
    let mut statements = Vec::new();
    let mut start: Option<usize> = None;
    let mut end = 0;
    for token in &tokens {
        if token.kind == Kind::Punct(';') {
            if let Some(from) = start.take() {
                statements.push(Statement { text: sql[from..end].to_owned(), line: line_of(sql, from) });
            }
            continue;
        }
        start.get_or_insert(token.span.start);
        end = token.span.end;
    }
    if let Some(from) = start {
        statements.push(Statement { text: sql[from..end].to_owned(), line: line_of(sql, from) });
    }
    Ok(statements)
}

fn line_of(sql: &str, offset: usize) -> usize {
    sql[..offset].bytes().filter(|b| *b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(sql: &str) -> Vec<String> {
        split(sql).unwrap().into_iter().map(|s| s.text).collect()
    }

    #[test]
    fn if_not_exists_is_not_a_block() {
        let sql = "CREATE TABLE IF NOT EXISTS a (x INT);\nCREATE INDEX ASYNC IF NOT EXISTS i ON a (x);";
        assert_eq!(
            texts(sql),
            ["CREATE TABLE IF NOT EXISTS a (x INT)", "CREATE INDEX ASYNC IF NOT EXISTS i ON a (x)"]
        );
    }

    #[test]
    fn semicolons_inside_comments_quotes_and_dollar_bodies_do_not_split() {
        let sql = "-- one; two\nSELECT 'a;b', \"c;d\" /* e; /* nested; */ f; */ FROM t;\n\
                   CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $body$ SELECT 1; $body$;\n\
                   SELECT E'\\';' ;  ;\n-- trailing comment only";
        let statements = split(sql).unwrap();
        assert_eq!(statements.len(), 3, "{statements:#?}");
        assert!(statements[0].text.starts_with("SELECT 'a;b'") && statements[0].text.ends_with("FROM t"));
        assert_eq!(statements[0].line, 2);
        assert!(statements[1].text.ends_with("$body$ SELECT 1; $body$"));
        assert_eq!(statements[2].text, "SELECT E'\\';'");
    }

    #[test]
    fn a_last_statement_without_semicolon_counts() {
        assert_eq!(texts("SELECT 1; SELECT 2"), ["SELECT 1", "SELECT 2"]);
    }

    #[test]
    fn unterminated_literals_name_the_line() {
        let err = split("SELECT 1;\nSELECT 'oops;\n").unwrap_err();
        assert_eq!(err, SplitError::Unterminated { what: "string literal", line: 2 });
        assert_eq!(err.to_string(), "unterminated string literal starting on line 2");
    }
}
