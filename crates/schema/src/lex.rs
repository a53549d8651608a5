//! A small SQL lexer: enough of PostgreSQL's lexical rules to split scripts, classify statements,
//! lint them and read table definitions. Comments and whitespace are dropped; every token keeps
//! its byte span so callers can cut the original text.

use std::ops::Range;

/// What a token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An unquoted identifier or keyword, as written.
    Word(String),
    /// A `"quoted identifier"`, unescaped.
    Quoted(String),
    /// A string literal (`'...'`, `E'...'`), unescaped.
    Str(String),
    /// A dollar-quoted string (`$tag$...$tag$`), its body.
    Dollar(String),
    /// A numeric literal.
    Number(String),
    /// A positional parameter (`$1`).
    Param(String),
    /// One of `( ) , ; . [ ]`.
    Punct(char),
    /// A run of operator characters (`::`, `=`, `<>`, ...).
    Op(String),
}

/// One token and where it is in the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) kind: Kind,
    pub(crate) span: Range<usize>,
}

impl Token {
    /// Whether this is the keyword `word` (unquoted, any case).
    pub(crate) fn is_word(&self, word: &str) -> bool {
        matches!(&self.kind, Kind::Word(w) if w.eq_ignore_ascii_case(word))
    }

    /// Whether this is the punctuation `c`.
    pub(crate) fn is_punct(&self, c: char) -> bool {
        self.kind == Kind::Punct(c)
    }

    /// The identifier this token names, folded the way PostgreSQL folds it (unquoted: lower case).
    pub(crate) fn ident(&self) -> Option<String> {
        match &self.kind {
            Kind::Word(w) => Some(w.to_ascii_lowercase()),
            Kind::Quoted(q) => Some(q.clone()),
            _ => None,
        }
    }
}

/// A lexical error: something opened and never closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LexError {
    /// What was left open (`string literal`, `block comment`, ...).
    pub(crate) what: &'static str,
    /// Byte offset where it started.
    pub(crate) offset: usize,
}

const OPERATOR_CHARS: &str = "+-*/<>=~!@#%^&|`?:";

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

/// Splits `src` into tokens, skipping whitespace and `--` / nested `/* */` comments.
pub(crate) fn tokenize(src: &str) -> Result<Vec<Token>, LexError> {
    let mut lexer = Lexer { src, pos: 0, tokens: Vec::new() };
    lexer.run()?;
    Ok(lexer.tokens)
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    tokens: Vec<Token>,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.src[self.pos..].chars().nth(n)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn push(&mut self, kind: Kind, start: usize) {
        self.tokens.push(Token { kind, span: start..self.pos });
    }

    fn run(&mut self) -> Result<(), LexError> {
        while let Some(c) = self.peek() {
            let start = self.pos;
            match c {
                c if c.is_whitespace() => {
                    self.bump();
                }
                '-' if self.peek_at(1) == Some('-') => self.line_comment(),
                '/' if self.peek_at(1) == Some('*') => self.block_comment()?,
                '\'' => {
                    let text = self.quoted('\'', false, "string literal")?;
                    self.push(Kind::Str(text), start);
                }
                'e' | 'E' if self.peek_at(1) == Some('\'') => {
                    self.bump();
                    let text = self.quoted('\'', true, "string literal")?;
                    self.push(Kind::Str(text), start);
                }
                '"' => {
                    let text = self.quoted('"', false, "quoted identifier")?;
                    self.push(Kind::Quoted(text), start);
                }
                '$' => self.dollar()?,
                '(' | ')' | ',' | ';' | '[' | ']' => {
                    self.bump();
                    self.push(Kind::Punct(c), start);
                }
                '.' if !self.peek_at(1).is_some_and(|d| d.is_ascii_digit()) => {
                    self.bump();
                    self.push(Kind::Punct('.'), start);
                }
                c if c.is_ascii_digit() || c == '.' => self.number(),
                c if is_ident_start(c) => {
                    while self.peek().is_some_and(is_ident_char) {
                        self.bump();
                    }
                    let word = self.src[start..self.pos].to_owned();
                    self.push(Kind::Word(word), start);
                }
                c if OPERATOR_CHARS.contains(c) => self.operator(),
                _ => {
                    self.bump();
                    self.push(Kind::Op(c.to_string()), start);
                }
            }
        }
        Ok(())
    }

    fn line_comment(&mut self) {
        while let Some(c) = self.bump() {
            if c == '\n' {
                break;
            }
        }
    }

    fn block_comment(&mut self) -> Result<(), LexError> {
        let start = self.pos;
        let mut depth = 0_usize;
        loop {
            match (self.peek(), self.peek_at(1)) {
                (Some('/'), Some('*')) => {
                    self.pos += 2;
                    depth += 1;
                }
                (Some('*'), Some('/')) => {
                    self.pos += 2;
                    depth -= 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                (Some(_), _) => {
                    self.bump();
                }
                (None, _) => return Err(LexError { what: "block comment", offset: start }),
            }
        }
    }

    /// Reads a `quote`-delimited literal (doubled quote = one quote); with `backslash`, `\x`
    /// escapes the next character as in `E'...'` strings.
    fn quoted(&mut self, quote: char, backslash: bool, what: &'static str) -> Result<String, LexError> {
        let start = self.pos;
        self.bump();
        let mut text = String::new();
        loop {
            match self.bump() {
                Some('\\') if backslash => match self.bump() {
                    Some(c) => text.push(c),
                    None => return Err(LexError { what, offset: start }),
                },
                Some(c) if c == quote => {
                    if self.peek() == Some(quote) {
                        self.bump();
                        text.push(quote);
                    } else {
                        return Ok(text);
                    }
                }
                Some(c) => text.push(c),
                None => return Err(LexError { what, offset: start }),
            }
        }
    }

    fn dollar(&mut self) -> Result<(), LexError> {
        let start = self.pos;
        self.bump();
        if self.peek().is_some_and(|c| c.is_ascii_digit()) {
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.bump();
            }
            let param = self.src[start..self.pos].to_owned();
            self.push(Kind::Param(param), start);
            return Ok(());
        }
        // `$tag$` opens a dollar-quoted string; the tag may be empty.
        let tag_start = self.pos;
        while self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_') {
            self.bump();
        }
        if self.peek() != Some('$') {
            self.pos = start + 1;
            self.push(Kind::Op("$".to_owned()), start);
            return Ok(());
        }
        let delimiter = format!("${}$", &self.src[tag_start..self.pos]);
        self.bump();
        let body_start = self.pos;
        match self.src[body_start..].find(&delimiter) {
            Some(len) => {
                let body = self.src[body_start..body_start + len].to_owned();
                self.pos = body_start + len + delimiter.len();
                self.push(Kind::Dollar(body), start);
                Ok(())
            }
            None => Err(LexError { what: "dollar-quoted string", offset: start }),
        }
    }

    fn number(&mut self) {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_') {
            // An exponent sign belongs to the number: 1e-5.
            let exponent = matches!(self.peek(), Some('e' | 'E'))
                && matches!(self.peek_at(1), Some('+' | '-'))
                && self.src[start..self.pos].chars().all(|c| c.is_ascii_digit() || c == '.');
            self.bump();
            if exponent {
                self.bump();
            }
        }
        let number = self.src[start..self.pos].to_owned();
        self.push(Kind::Number(number), start);
    }

    fn operator(&mut self) {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if !OPERATOR_CHARS.contains(c) {
                break;
            }
            // A comment starts inside an operator run: `a=--x` is `a =` then a comment.
            if (c == '-' && self.peek_at(1) == Some('-')) || (c == '/' && self.peek_at(1) == Some('*')) {
                break;
            }
            self.bump();
        }
        let op = self.src[start..self.pos].to_owned();
        self.push(Kind::Op(op), start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<Kind> {
        tokenize(src).unwrap().into_iter().map(|t| t.kind).collect()
    }

    #[test]
    fn literals_comments_and_operators() {
        assert_eq!(
            kinds(
                "SELECT 'it''s', E'a\\'b', \"Mixed\"\"Case\", $$x;y$$, $q$ $$ $q$ -- c\n/* a /* b */ c */ x::int, $1"
            ),
            vec![
                Kind::Word("SELECT".into()),
                Kind::Str("it's".into()),
                Kind::Punct(','),
                Kind::Str("a'b".into()),
                Kind::Punct(','),
                Kind::Quoted("Mixed\"Case".into()),
                Kind::Punct(','),
                Kind::Dollar("x;y".into()),
                Kind::Punct(','),
                Kind::Dollar(" $$ ".into()),
                Kind::Word("x".into()),
                Kind::Op("::".into()),
                Kind::Word("int".into()),
                Kind::Punct(','),
                Kind::Param("$1".into()),
            ]
        );
    }

    #[test]
    fn unterminated_things_are_errors() {
        assert_eq!(tokenize("SELECT 'x").unwrap_err().what, "string literal");
        assert_eq!(tokenize("/* /* */").unwrap_err().what, "block comment");
        assert_eq!(tokenize("$a$ x $b$").unwrap_err().what, "dollar-quoted string");
        assert_eq!(tokenize("\"x").unwrap_err().what, "quoted identifier");
    }
}
