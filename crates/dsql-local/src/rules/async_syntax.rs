//! DSQL's `ASYNC` keyword, which PostgreSQL's grammar lacks: found with PostgreSQL's own scanner
//! (token kinds and byte positions), so a string, comment or quoted identifier never matches.
//!
//! - `CREATE [UNIQUE] INDEX ASYNC ...`: the token after `INDEX` is the identifier `async`
//!   (DSQL reads `CREATE INDEX async ON t (..)` as an unnamed async index; recorded).
//! - `ALTER TABLE ASYNC [IF EXISTS] [ONLY] name[.name] [*] VALIDATE CONSTRAINT ...`: only this
//!   exact sequence, so a table that is really called `async` is left alone.

use std::borrow::Cow;
use std::ops::Range;

use pg_query::protobuf::{ScanToken, Token};

use super::AsyncJob;

/// The `ASYNC` keywords of a query string.
#[derive(Debug, Default)]
pub(super) struct Marks {
    /// Byte range of each `ASYNC` token and the job its statement starts.
    found: Vec<(Range<usize>, AsyncJob)>,
    /// `CREATE INDEX ASYNC schema.name`: DSQL answers 42601 at the `.`.
    pub(super) qualified_index_name: bool,
}

/// Finds the `ASYNC` keywords of `sql`. Cheap when the text has no `async` at all (the common
/// case): a byte search decides whether the scanner runs.
pub(super) fn find(sql: &str) -> Marks {
    if !contains_async(sql) {
        return Marks::default();
    }
    let Ok(tokens) = pg_query::scan_tokens(sql) else {
        return Marks::default();
    };
    let tokens: Vec<&ScanToken> = tokens
        .iter()
        .filter(|t| !matches!(Token::try_from(t.token), Ok(Token::SqlComment | Token::CComment)))
        .collect();
    let kind = |i: usize| tokens.get(i).and_then(|t| Token::try_from(t.token).ok());
    let is_async = |i: usize| {
        tokens.get(i).is_some_and(|t| {
            kind(i) == Some(Token::Ident) && text(sql, t).is_some_and(|s| s.eq_ignore_ascii_case("async"))
        })
    };
    let mut marks = Marks::default();
    for i in 0..tokens.len() {
        match kind(i) {
            Some(Token::Create) => {
                let mut j = i + 1;
                if kind(j) == Some(Token::Unique) {
                    j += 1;
                }
                if kind(j) != Some(Token::Index) || !is_async(j + 1) {
                    continue;
                }
                marks.found.push((range(tokens[j + 1]), AsyncJob::IndexBuild));
                let mut name = j + 2;
                if kind(name) == Some(Token::IfP)
                    && kind(name + 1) == Some(Token::Not)
                    && kind(name + 2) == Some(Token::Exists)
                {
                    name += 3;
                }
                if kind(name) != Some(Token::On) && kind(name + 1) == Some(Token::Ascii46) {
                    marks.qualified_index_name = true;
                }
            }
            Some(Token::Alter)
                if kind(i + 1) == Some(Token::Table)
                    && is_async(i + 2)
                    && validates_constraint(&tokens, i + 3) =>
            {
                marks.found.push((range(tokens[i + 2]), AsyncJob::ValidateConstraint));
            }
            _ => {}
        }
    }
    marks
}

/// `[IF EXISTS] [ONLY] name[.name] [*] VALIDATE` from token `i` on.
fn validates_constraint(tokens: &[&ScanToken], mut i: usize) -> bool {
    let kind = |i: usize| tokens.get(i).and_then(|t| Token::try_from(t.token).ok());
    if kind(i) == Some(Token::IfP) && kind(i + 1) == Some(Token::Exists) {
        i += 2;
    }
    if kind(i) == Some(Token::Only) {
        i += 1;
    }
    // The name: one token, or two around a `.`.
    i += 1;
    if kind(i) == Some(Token::Ascii46) {
        i += 2;
    }
    if kind(i) == Some(Token::Ascii42) {
        i += 1;
    }
    kind(i) == Some(Token::Validate)
}

impl Marks {
    /// `sql` with each `ASYNC` replaced by spaces: PostgreSQL can parse it, and every byte
    /// position (statement locations) is the same as in `sql`.
    pub(super) fn blanked<'a>(&self, sql: &'a str) -> Cow<'a, str> {
        if self.found.is_empty() {
            return Cow::Borrowed(sql);
        }
        let mut text = sql.to_owned();
        for (range, _) in &self.found {
            text.replace_range(range.clone(), &" ".repeat(range.len()));
        }
        Cow::Owned(text)
    }

    /// The text of `span` with each `ASYNC` in it removed, with the whitespace after it.
    pub(super) fn cut(&self, sql: &str, span: Range<usize>) -> String {
        let mut out = String::with_capacity(span.len());
        let mut at = span.start;
        for (range, _) in self.found.iter().filter(|(r, _)| span.contains(&r.start)) {
            out.push_str(&sql[at..range.start]);
            let rest = &sql[range.end..span.end];
            at = range.end + (rest.len() - rest.trim_start().len());
        }
        out.push_str(&sql[at..span.end]);
        out
    }

    /// The job started by the statement at `span`, if it has an `ASYNC`.
    pub(super) fn job_in(&self, span: &Range<usize>) -> Option<AsyncJob> {
        self.found.iter().find(|(r, _)| span.contains(&r.start)).map(|(_, job)| *job)
    }
}

fn range(token: &ScanToken) -> Range<usize> {
    usize::try_from(token.start).unwrap_or(0)..usize::try_from(token.end).unwrap_or(0)
}

fn text<'a>(sql: &'a str, token: &ScanToken) -> Option<&'a str> {
    sql.get(range(token))
}

/// Whether `sql` contains `async` in any letter case: a byte search, no allocation.
fn contains_async(sql: &str) -> bool {
    sql.as_bytes().windows(5).any(|w| w.eq_ignore_ascii_case(b"async"))
}
