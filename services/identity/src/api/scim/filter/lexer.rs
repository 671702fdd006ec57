//! Tokens of the filter language (RFC 7644 §3.4.2.2) and of PATCH paths, each with its byte
//! offset so that errors can say where.

use super::super::error::ScimError;

/// A token's kind.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    /// An attribute path, operator or keyword (`name.givenName`, `eq`, `and`, `true`, a URN).
    Word(String),
    /// A JSON string literal, unescaped.
    Str(String),
    /// A JSON number.
    Number(f64),
    LParen,
    RParen,
    LBracket,
    RBracket,
    /// A `.` starting a sub-attribute after `]` (PATCH paths).
    Dot,
}

/// A token and the byte offset where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Token {
    pub tok: Tok,
    pub at: usize,
}

fn word_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'$' || c == b'_'
}

fn word_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'$' | b'_' | b'-' | b':' | b'.')
}

/// Splits `input` into tokens; `scim_type` is the error kind to report (`invalidFilter` or
/// `invalidPath`).
pub(super) fn tokenize(input: &str, scim_type: &'static str) -> Result<Vec<Token>, ScimError> {
    let bytes = input.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let at = i;
        let simple = match c {
            b'(' => Some(Tok::LParen),
            b')' => Some(Tok::RParen),
            b'[' => Some(Tok::LBracket),
            b']' => Some(Tok::RBracket),
            b'.' => Some(Tok::Dot),
            _ => None,
        };
        if let Some(tok) = simple {
            out.push(Token { tok, at });
            i += 1;
        } else if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'"' {
            let (s, next) = string(input, i, scim_type)?;
            out.push(Token {
                tok: Tok::Str(s),
                at,
            });
            i = next;
        } else if c == b'-' || c.is_ascii_digit() {
            let (n, next) = number(input, i, scim_type)?;
            out.push(Token {
                tok: Tok::Number(n),
                at,
            });
            i = next;
        } else if word_start(c) {
            let mut end = i + 1;
            while end < bytes.len() && word_char(bytes[end]) {
                end += 1;
            }
            out.push(Token {
                tok: Tok::Word(input[i..end].to_owned()),
                at,
            });
            i = end;
        } else {
            let shown = input[i..].chars().next().unwrap_or('?');
            return Err(ScimError::bad_request(
                scim_type,
                format!("at byte {at}: unexpected character {shown:?}"),
            ));
        }
    }
    Ok(out)
}

/// A JSON string starting at `start` (the opening quote): its value and the offset after it.
fn string(
    input: &str,
    start: usize,
    scim_type: &'static str,
) -> Result<(String, usize), ScimError> {
    let bytes = input.as_bytes();
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => {
                let literal = &input[start..=i];
                return serde_json::from_str::<String>(literal)
                    .map(|s| (s, i + 1))
                    .map_err(|e| {
                        ScimError::bad_request(
                            scim_type,
                            format!("at byte {start}: malformed string literal ({e})"),
                        )
                    });
            }
            _ => i += 1,
        }
    }
    Err(ScimError::bad_request(
        scim_type,
        format!("at byte {start}: unterminated string literal"),
    ))
}

/// A JSON number starting at `start`: its value and the offset after it.
fn number(input: &str, start: usize, scim_type: &'static str) -> Result<(f64, usize), ScimError> {
    let bytes = input.as_bytes();
    let mut end = start;
    while end < bytes.len() && matches!(bytes[end], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
    {
        end += 1;
    }
    let text = &input[start..end];
    // The JSON grammar, stricter than Rust's float syntax (no `inf`, `.5`, `1.`).
    match serde_json::from_str::<serde_json::Number>(text)
        .ok()
        .and_then(|n| n.as_f64())
    {
        Some(n) if n.is_finite() => Ok((n, end)),
        _ => Err(ScimError::bad_request(
            scim_type,
            format!("at byte {start}: malformed number {text:?}"),
        )),
    }
}
