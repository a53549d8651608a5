//! What a statement is (DDL, DML, transaction control) and the shape of the tables and indexes
//! that `CREATE TABLE` / `CREATE INDEX` statements declare, read from their tokens.

use crate::lex::{self, Kind, Token};

/// The broad class of a statement, as DSQL's transaction rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Changes the catalog (`CREATE`, `ALTER`, `DROP`, `GRANT`, `TRUNCATE`, ...).
    Ddl,
    /// Changes rows (`INSERT`, `UPDATE`, `DELETE`, `MERGE`, `COPY`).
    Dml,
    /// Reads (`SELECT`, `WITH ... SELECT`, `SHOW`, `CALL`).
    Query,
    /// `BEGIN` / `START TRANSACTION`.
    Begin,
    /// `COMMIT` / `END` / `ROLLBACK` / `ABORT`.
    End,
    /// Anything else (`SET`, ...).
    Other,
}

/// Classifies a statement by its first words.
pub(crate) fn classify(tokens: &[Token]) -> Class {
    let Some(first) = tokens.first() else { return Class::Other };
    let Kind::Word(word) = &first.kind else { return Class::Other };
    match word.to_ascii_lowercase().as_str() {
        "create" | "alter" | "drop" | "grant" | "revoke" | "truncate" | "comment" | "reindex" => Class::Ddl,
        "insert" | "update" | "delete" | "merge" | "copy" | "upsert" => Class::Dml,
        "select" | "values" | "table" | "show" | "call" | "explain" => Class::Query,
        "with" => {
            let writes =
                tokens.iter().any(|t| t.is_word("insert") || t.is_word("update") || t.is_word("delete"));
            if writes { Class::Dml } else { Class::Query }
        }
        "begin" | "start" => Class::Begin,
        "commit" | "end" | "rollback" | "abort" => Class::End,
        _ => Class::Other,
    }
}

/// A column as a table definition declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDef {
    /// The column name.
    pub name: String,
    /// The type as PostgreSQL's catalog spells it (`integer`, `character varying(255)`, ...).
    pub data_type: String,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// The default expression, normalised (`0`, `''`), if any.
    pub default: Option<String>,
}

/// A table as a `CREATE TABLE` statement declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDef {
    /// The table name.
    pub name: String,
    /// The columns, in order.
    pub columns: Vec<ColumnDef>,
    /// The primary-key columns, in key order (empty: none).
    pub primary_key: Vec<String>,
    /// Columns of inline or table-level `UNIQUE` constraints.
    pub unique: Vec<Vec<String>>,
}

/// An index as a `CREATE INDEX` statement declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexDef {
    /// The index name.
    pub name: String,
    /// The indexed table.
    pub table: String,
    /// The key columns, in order.
    pub columns: Vec<String>,
    /// Whether it is a unique index.
    pub unique: bool,
    /// Whether it is declared `ASYNC` (DSQL).
    pub is_async: bool,
}

/// What a definition statement declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Definition {
    Table(TableDef),
    Index(IndexDef),
}

/// Why a definition statement could not be read.
pub(crate) type ParseError = String;

struct Cursor<'a> {
    tokens: &'a [Token],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<&'a Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<&'a Token> {
        let token = self.tokens.get(self.pos);
        self.pos += 1;
        token
    }

    fn eat_word(&mut self, word: &str) -> bool {
        if self.peek().is_some_and(|t| t.is_word(word)) {
            self.pos += 1;
            return true;
        }
        false
    }

    fn eat_words(&mut self, words: &[&str]) -> bool {
        let matches = words
            .iter()
            .enumerate()
            .all(|(i, w)| self.tokens.get(self.pos + i).is_some_and(|t| t.is_word(w)));
        if matches {
            self.pos += words.len();
        }
        matches
    }

    fn eat_punct(&mut self, c: char) -> bool {
        if self.peek().is_some_and(|t| t.is_punct(c)) {
            self.pos += 1;
            return true;
        }
        false
    }

    fn expect_punct(&mut self, c: char) -> Result<(), ParseError> {
        if self.eat_punct(c) { Ok(()) } else { Err(format!("expected `{c}` {}", self.here())) }
    }

    /// A possibly schema-qualified name; the schema is dropped.
    fn name(&mut self) -> Result<String, ParseError> {
        let mut name =
            self.next().and_then(Token::ident).ok_or_else(|| format!("expected a name {}", self.here()))?;
        while self.eat_punct('.') {
            name = self
                .next()
                .and_then(Token::ident)
                .ok_or_else(|| format!("expected a name {}", self.here()))?;
        }
        Ok(name)
    }

    fn column_list(&mut self) -> Result<Vec<String>, ParseError> {
        self.expect_punct('(')?;
        let mut columns = Vec::new();
        loop {
            columns.push(self.name()?);
            // Tolerate per-column options such as ASC/DESC/NULLS FIRST in what a catalog prints.
            while self.peek().is_some_and(|t| matches!(t.kind, Kind::Word(_))) {
                self.pos += 1;
            }
            if self.eat_punct(')') {
                return Ok(columns);
            }
            self.expect_punct(',')?;
        }
    }

    fn here(&self) -> String {
        match self.peek() {
            Some(token) => format!("at byte {}", token.span.start),
            None => "at the end of the statement".to_owned(),
        }
    }
}

/// Reads a `CREATE TABLE` or `CREATE INDEX` statement; `Ok(None)` for any other statement.
pub(crate) fn parse_definition(text: &str) -> Result<Option<Definition>, ParseError> {
    let tokens = lex::tokenize(text).map_err(|e| format!("unterminated {}", e.what))?;
    let mut cursor = Cursor { tokens: &tokens, pos: 0 };
    if !cursor.eat_word("create") {
        return Ok(None);
    }
    let unique = cursor.eat_word("unique");
    if cursor.eat_word("index") {
        let is_async = cursor.eat_word("async");
        cursor.eat_word("concurrently");
        cursor.eat_words(&["if", "not", "exists"]);
        let name = cursor.name()?;
        if !cursor.eat_word("on") {
            return Err(format!("expected ON {}", cursor.here()));
        }
        cursor.eat_word("only");
        let table = cursor.name()?;
        if cursor.eat_word("using") {
            cursor.next();
        }
        let columns = cursor.column_list()?;
        return Ok(Some(Definition::Index(IndexDef { name, table, columns, unique, is_async })));
    }
    if unique {
        return Ok(None);
    }
    // Temporary/unlogged tables are still tables to the lint.
    while cursor.eat_word("temp") || cursor.eat_word("temporary") || cursor.eat_word("unlogged") {}
    if !cursor.eat_word("table") {
        return Ok(None);
    }
    cursor.eat_words(&["if", "not", "exists"]);
    let name = cursor.name()?;
    cursor.expect_punct('(')?;
    let mut table = TableDef { name, columns: Vec::new(), primary_key: Vec::new(), unique: Vec::new() };
    loop {
        table_element(&mut cursor, &mut table)?;
        if cursor.eat_punct(')') {
            break;
        }
        cursor.expect_punct(',')?;
    }
    Ok(Some(Definition::Table(table)))
}

fn table_element(cursor: &mut Cursor<'_>, table: &mut TableDef) -> Result<(), ParseError> {
    if cursor.eat_word("constraint") {
        cursor.name()?;
    }
    if cursor.eat_words(&["primary", "key"]) {
        table.primary_key = cursor.column_list()?;
        return Ok(());
    }
    if cursor.eat_word("unique") {
        let columns = cursor.column_list()?;
        table.unique.push(columns);
        return Ok(());
    }
    if cursor.peek().is_some_and(|t| t.is_word("check") || t.is_word("foreign") || t.is_word("exclude")) {
        skip_to_element_end(cursor);
        return Ok(());
    }
    let name = cursor.name()?;
    let data_type = data_type(cursor)?;
    let mut column = ColumnDef { name, data_type, nullable: true, default: None };
    while let Some(token) = cursor.peek() {
        if token.is_punct(',') || token.is_punct(')') {
            break;
        }
        if cursor.eat_words(&["not", "null"]) {
            column.nullable = false;
        } else if cursor.eat_word("null") {
            column.nullable = true;
        } else if cursor.eat_word("default") {
            column.default = Some(default_expression(cursor));
        } else if cursor.eat_words(&["primary", "key"]) {
            column.nullable = false;
            table.primary_key = vec![column.name.clone()];
        } else if cursor.eat_word("unique") {
            table.unique.push(vec![column.name.clone()]);
        } else if cursor.eat_word("constraint") {
            cursor.name()?;
        } else {
            // CHECK (...), REFERENCES ..., GENERATED ...: not part of what we model.
            skip_one(cursor);
        }
    }
    table.columns.push(column);
    Ok(())
}

/// Skips one token, or a whole parenthesised group.
fn skip_one(cursor: &mut Cursor<'_>) {
    if cursor.eat_punct('(') {
        let mut depth = 1;
        while let Some(token) = cursor.next() {
            if token.is_punct('(') {
                depth += 1;
            } else if token.is_punct(')') {
                depth -= 1;
                if depth == 0 {
                    return;
                }
            }
        }
    } else {
        cursor.next();
    }
}

fn skip_to_element_end(cursor: &mut Cursor<'_>) {
    while let Some(token) = cursor.peek() {
        if token.is_punct(',') || token.is_punct(')') {
            return;
        }
        skip_one(cursor);
    }
}

/// Reads a column type and spells it the way `information_schema.columns` reports it.
fn data_type(cursor: &mut Cursor<'_>) -> Result<String, ParseError> {
    let first =
        cursor.next().and_then(Token::ident).ok_or_else(|| format!("expected a type {}", cursor.here()))?;
    let mut words = vec![first];
    // Multi-word types: character varying, double precision, timestamp with[out] time zone.
    while let Some(token) = cursor.peek() {
        let continues = token.is_word("varying")
            || token.is_word("precision")
            || ((token.is_word("with") || token.is_word("without"))
                && cursor.tokens.get(cursor.pos + 1).is_some_and(|t| t.is_word("time")));
        if !continues {
            break;
        }
        words.push(token.ident().unwrap_or_default());
        cursor.pos += 1;
        if words.last().is_some_and(|w| w == "with" || w == "without") {
            cursor.eat_words(&["time", "zone"]);
            words.push("time zone".to_owned());
        }
    }
    let mut modifier = String::new();
    if cursor.eat_punct('(') {
        let mut parts = Vec::new();
        while let Some(token) = cursor.next() {
            match &token.kind {
                Kind::Punct(')') => break,
                Kind::Number(n) => parts.push(n.clone()),
                _ => {}
            }
        }
        modifier = format!("({})", parts.join(","));
    }
    let array = cursor.eat_punct('[');
    if array {
        cursor.eat_punct(']');
    }
    let spelled = words.join(" ");
    let base = match spelled.as_str() {
        "int" | "int4" | "integer" => "integer",
        "int8" | "bigint" => "bigint",
        "int2" | "smallint" => "smallint",
        "bool" | "boolean" => "boolean",
        "varchar" | "character varying" => "character varying",
        "char" | "character" | "bpchar" => "character",
        "float8" | "double precision" => "double precision",
        "float4" | "real" => "real",
        "timestamp" | "timestamp without time zone" => "timestamp without time zone",
        "timestamptz" | "timestamp with time zone" => "timestamp with time zone",
        other => other,
    };
    let suffix = if array { "[]" } else { "" };
    Ok(format!("{base}{modifier}{suffix}"))
}

/// Reads a default expression up to the next column option or element end, normalised.
fn default_expression(cursor: &mut Cursor<'_>) -> String {
    let start = cursor.pos;
    while let Some(token) = cursor.peek() {
        let ends = token.is_punct(',')
            || token.is_punct(')')
            || token.is_word("not")
            || token.is_word("null")
            || token.is_word("primary")
            || token.is_word("unique")
            || token.is_word("constraint")
            || token.is_word("check")
            || token.is_word("references");
        if ends {
            break;
        }
        skip_one(cursor);
    }
    normalize_default_tokens(&cursor.tokens[start..cursor.pos])
}

/// Normalises a default expression so that what we declare (`0`, `''`) and what the catalog prints
/// (`0`, `''::character varying`) compare equal: casts and outer parentheses are dropped.
pub(crate) fn normalize_default(text: &str) -> String {
    match lex::tokenize(text) {
        Ok(tokens) => normalize_default_tokens(&tokens),
        Err(_) => text.trim().to_owned(),
    }
}

fn normalize_default_tokens(tokens: &[Token]) -> String {
    let mut out = Vec::new();
    let mut skip_type = false;
    for token in tokens {
        if skip_type {
            // The type after `::` may be several words (`character varying`).
            if matches!(token.kind, Kind::Word(_)) {
                continue;
            }
            skip_type = false;
            if token.is_punct('(') || token.is_punct(')') {
                continue;
            }
        }
        match &token.kind {
            Kind::Op(op) if op == "::" => skip_type = true,
            Kind::Punct('(' | ')') => {}
            Kind::Str(s) => out.push(format!("'{}'", s.replace('\'', "''"))),
            Kind::Word(w) => out.push(w.to_ascii_lowercase()),
            Kind::Number(n) | Kind::Op(n) => out.push(n.clone()),
            Kind::Quoted(q) => out.push(format!("\"{q}\"")),
            Kind::Dollar(d) => out.push(format!("'{}'", d.replace('\'', "''"))),
            Kind::Param(p) => out.push(p.clone()),
            Kind::Punct(c) => out.push(c.to_string()),
        }
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_table_with_inline_and_table_keys() {
        let sql = "CREATE TABLE IF NOT EXISTS public.t (
            id INT NOT NULL DEFAULT 0 PRIMARY KEY,
            name VARCHAR(255) NOT NULL UNIQUE,
            at TIMESTAMP,
            tz timestamp with time zone,
            enc VARCHAR(16) NOT NULL DEFAULT '',
            CONSTRAINT c CHECK (id = 0)
        )";
        let Some(Definition::Table(table)) = parse_definition(sql).unwrap() else { panic!("not a table") };
        assert_eq!(table.name, "t");
        assert_eq!(table.primary_key, ["id"]);
        assert_eq!(table.unique, [vec!["name".to_owned()]]);
        let shape: Vec<(&str, &str, bool, Option<&str>)> = table
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.data_type.as_str(), c.nullable, c.default.as_deref()))
            .collect();
        assert_eq!(
            shape,
            [
                ("id", "integer", false, Some("0")),
                ("name", "character varying(255)", false, None),
                ("at", "timestamp without time zone", true, None),
                ("tz", "timestamp with time zone", true, None),
                ("enc", "character varying(16)", false, Some("''")),
            ]
        );
    }

    #[test]
    fn reads_indexes_as_written_and_as_the_catalog_prints_them() {
        let ours = parse_definition("CREATE UNIQUE INDEX ASYNC IF NOT EXISTS i ON t (a, b)").unwrap();
        let catalog = parse_definition("CREATE UNIQUE INDEX i ON public.t USING btree (a, b)").unwrap();
        let (Some(Definition::Index(ours)), Some(Definition::Index(catalog))) = (ours, catalog) else {
            panic!("not indexes")
        };
        assert!(ours.is_async && !catalog.is_async);
        assert_eq!((ours.name.as_str(), ours.table.as_str(), ours.unique), ("i", "t", true));
        assert_eq!(ours.columns, catalog.columns);
    }

    #[test]
    fn catalog_defaults_compare_equal_to_declared_ones() {
        assert_eq!(normalize_default("''::character varying"), "''");
        assert_eq!(normalize_default("(0)::bigint"), "0");
        assert_eq!(normalize_default("0"), "0");
    }

    #[test]
    fn classifies_statements() {
        let class = |sql: &str| classify(&lex::tokenize(sql).unwrap());
        assert_eq!(class("CREATE TABLE t (a INT)"), Class::Ddl);
        assert_eq!(class("insert into t values (1)"), Class::Dml);
        assert_eq!(class("WITH x AS (DELETE FROM t RETURNING *) SELECT 1"), Class::Dml);
        assert_eq!(class("SELECT 1"), Class::Query);
        assert_eq!(class("BEGIN"), Class::Begin);
        assert_eq!(class("COMMIT"), Class::End);
    }
}
