//! The recursive-descent parser: `or` binds looser than `and`, `not (…)` and parentheses group,
//! `attr[…]` filters the values of a multi-valued attribute. Limits: [`MAX_FILTER_BYTES`],
//! [`MAX_FILTER_DEPTH`], [`MAX_FILTER_TERMS`].

use super::super::discovery::definitions::{self, AttrType};
use super::super::error::ScimError;
use super::lexer::{Tok, Token, tokenize};
use super::path::AttrPath;
use super::{CompareOp, Expr, Literal, MAX_FILTER_BYTES, MAX_FILTER_DEPTH, MAX_FILTER_TERMS};

/// Parses a whole filter; errors are 400 `invalidFilter`.
pub(super) fn parse_filter(input: &str) -> Result<Expr, ScimError> {
    const KIND: &str = "invalidFilter";
    if input.len() > MAX_FILTER_BYTES {
        return Err(ScimError::bad_request(
            KIND,
            format!(
                "at byte {MAX_FILTER_BYTES}: the filter is {} bytes, more than {MAX_FILTER_BYTES}",
                input.len()
            ),
        ));
    }
    let tokens = tokenize(input, KIND)?;
    parse_tokens(&tokens, input, KIND, false)
}

/// Parses `tokens` (of `input`) as one filter; `in_value_filter` when they are the inside of
/// `attr[…]`, whose paths are sub-attributes and which cannot nest another value filter.
pub(super) fn parse_tokens(
    tokens: &[Token],
    input: &str,
    scim_type: &'static str,
    in_value_filter: bool,
) -> Result<Expr, ScimError> {
    let mut parser = Parser {
        tokens,
        pos: 0,
        depth: 0,
        terms: 0,
        end: input.len(),
        scim_type,
        in_value_filter,
    };
    let expr = parser.or_expr()?;
    match parser.peek() {
        None => Ok(expr),
        Some(t) => Err(parser.error_at(t.at, format!("unexpected {}", describe(&t.tok)))),
    }
}

struct Parser<'t> {
    tokens: &'t [Token],
    pos: usize,
    depth: usize,
    terms: usize,
    end: usize,
    scim_type: &'static str,
    in_value_filter: bool,
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Word(w) => format!("{w:?}"),
        Tok::Str(_) => "a string".to_owned(),
        Tok::Number(_) => "a number".to_owned(),
        Tok::LParen => "'('".to_owned(),
        Tok::RParen => "')'".to_owned(),
        Tok::LBracket => "'['".to_owned(),
        Tok::RBracket => "']'".to_owned(),
        Tok::Dot => "'.'".to_owned(),
    }
}

fn is_keyword(tok: &Tok, keyword: &str) -> bool {
    matches!(tok, Tok::Word(w) if w.eq_ignore_ascii_case(keyword))
}

impl<'t> Parser<'t> {
    fn peek(&self) -> Option<&'t Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<&'t Token> {
        let t = self.tokens.get(self.pos);
        self.pos += 1;
        t
    }

    fn error_at(&self, at: usize, what: impl std::fmt::Display) -> ScimError {
        ScimError::bad_request(self.scim_type, format!("at byte {at}: {what}"))
    }

    fn here(&self) -> usize {
        self.peek().map_or(self.end, |t| t.at)
    }

    fn expect(&mut self, tok: Tok, what: &str) -> Result<(), ScimError> {
        match self.next() {
            Some(t) if t.tok == tok => Ok(()),
            Some(t) => {
                Err(self.error_at(t.at, format!("expected {what}, found {}", describe(&t.tok))))
            }
            None => Err(self.error_at(self.end, format!("expected {what}, found the end"))),
        }
    }

    fn enter(&mut self, at: usize) -> Result<(), ScimError> {
        self.depth += 1;
        if self.depth > MAX_FILTER_DEPTH {
            return Err(self.error_at(at, format!("nested deeper than {MAX_FILTER_DEPTH} levels")));
        }
        Ok(())
    }

    fn or_expr(&mut self) -> Result<Expr, ScimError> {
        let mut left = self.and_expr()?;
        while self.peek().is_some_and(|t| is_keyword(&t.tok, "or")) {
            self.pos += 1;
            let right = self.and_expr()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<Expr, ScimError> {
        let mut left = self.unary()?;
        while self.peek().is_some_and(|t| is_keyword(&t.tok, "and")) {
            self.pos += 1;
            let right = self.unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, ScimError> {
        let Some(token) = self.peek() else {
            return Err(self.error_at(self.end, "expected an expression, found the end"));
        };
        let not_paren = is_keyword(&token.tok, "not")
            && self
                .tokens
                .get(self.pos + 1)
                .is_some_and(|t| t.tok == Tok::LParen);
        if not_paren {
            self.enter(token.at)?;
            self.pos += 2;
            let inner = self.or_expr()?;
            self.expect(Tok::RParen, "')' closing not (")?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        if token.tok == Tok::LParen {
            self.enter(token.at)?;
            self.pos += 1;
            let inner = self.or_expr()?;
            self.expect(Tok::RParen, "')'")?;
            self.depth -= 1;
            return Ok(inner);
        }
        self.attr_expr()
    }

    fn attr_expr(&mut self) -> Result<Expr, ScimError> {
        let Some(token) = self.next() else {
            return Err(self.error_at(self.end, "expected an attribute, found the end"));
        };
        let Tok::Word(word) = &token.tok else {
            return Err(self.error_at(
                token.at,
                format!("expected an attribute, found {}", describe(&token.tok)),
            ));
        };
        let path = AttrPath::from_word(word, token.at, self.scim_type)?;
        if path.is_extension_root() {
            return Err(self.error_at(token.at, "a schema URN names no attribute"));
        }
        self.terms += 1;
        if self.terms > MAX_FILTER_TERMS {
            return Err(self.error_at(token.at, format!("more than {MAX_FILTER_TERMS} terms")));
        }
        let Some(next) = self.next() else {
            return Err(self.error_at(self.end, "expected an operator, found the end"));
        };
        if next.tok == Tok::LBracket {
            return self.value_path(path, next.at);
        }
        let Tok::Word(op_word) = &next.tok else {
            return Err(self.error_at(
                next.at,
                format!("expected an operator, found {}", describe(&next.tok)),
            ));
        };
        if op_word.eq_ignore_ascii_case("pr") {
            return Ok(Expr::Present(path));
        }
        let op = match op_word.to_ascii_lowercase().as_str() {
            "eq" => CompareOp::Eq,
            "ne" => CompareOp::Ne,
            "co" => CompareOp::Co,
            "sw" => CompareOp::Sw,
            "ew" => CompareOp::Ew,
            "gt" => CompareOp::Gt,
            "ge" => CompareOp::Ge,
            "lt" => CompareOp::Lt,
            "le" => CompareOp::Le,
            _ => {
                return Err(self.error_at(next.at, format!("unknown operator {op_word:?}")));
            }
        };
        let value_at = self.here();
        let value = match self.next().map(|t| &t.tok) {
            Some(Tok::Str(s)) => Literal::Str(s.clone()),
            Some(Tok::Number(n)) => Literal::Number(*n),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("true") => Literal::Bool(true),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("false") => Literal::Bool(false),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("null") => Literal::Null,
            Some(other) => {
                return Err(self.error_at(
                    value_at,
                    format!("expected a value, found {}", describe(other)),
                ));
            }
            None => return Err(self.error_at(value_at, "expected a value, found the end")),
        };
        self.check_operands(&path, op, &value, next.at)?;
        Ok(Expr::Compare { path, op, value })
    }

    fn value_path(&mut self, path: AttrPath, at: usize) -> Result<Expr, ScimError> {
        if self.in_value_filter {
            return Err(self.error_at(at, "a value filter cannot contain another"));
        }
        if path.sub.is_some() {
            return Err(self.error_at(
                at,
                "a value filter applies to an attribute, not a sub-attribute",
            ));
        }
        self.enter(at)?;
        self.in_value_filter = true;
        let inner = self.or_expr()?;
        self.in_value_filter = false;
        self.expect(Tok::RBracket, "']' closing the value filter")?;
        self.depth -= 1;
        Ok(Expr::ValuePath {
            path,
            filter: Box::new(inner),
        })
    }

    /// RFC 7644 §3.4.2.2: ordering and substring operators need strings, numbers or dates;
    /// on booleans (and on attributes the schemas define as boolean, binary or complex) they
    /// are `invalidFilter`.
    fn check_operands(
        &self,
        path: &AttrPath,
        op: CompareOp,
        value: &Literal,
        at: usize,
    ) -> Result<(), ScimError> {
        let substring = matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew);
        if op.is_ordering() || substring {
            match value {
                Literal::Bool(_) | Literal::Null => {
                    return Err(
                        self.error_at(at, "this operator cannot compare with true, false or null")
                    );
                }
                Literal::Number(_) if substring => {
                    return Err(self.error_at(at, "co, sw and ew compare strings"));
                }
                _ => {}
            }
            if !self.in_value_filter {
                let refused = definitions::any_attribute(path).is_some_and(|def| {
                    matches!(def.ty, AttrType::Boolean | AttrType::Binary)
                        || (op.is_ordering() && def.is_complex() && def.sub("value").is_none())
                });
                if refused {
                    return Err(self.error_at(
                        at,
                        format!("{} cannot be ordered or searched by substring", path.attr),
                    ));
                }
            }
        }
        Ok(())
    }
}
