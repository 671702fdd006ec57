//! The price table (rule BILL-4): per model, a price per million input tokens and per million
//! output tokens, in one currency, as exact decimals. Loaded once from configuration.
//!
//! Format (JSON, prices as decimal *strings* so that nothing passes through a float):
//!
//! ```json
//! {"currency_code": "USD",
//!  "models": {"orgmodel-large-2": {"input_per_million": "3.00", "output_per_million": "15.00"}}}
//! ```

use std::collections::BTreeMap;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::Deserialize;

/// The built-in table, used when `--billing-price-table` is not set.
pub const DEFAULT_PRICE_TABLE: &str = r#"{
  "currency_code": "USD",
  "models": {
    "orgmodel-small-1":  {"input_per_million": "0.25", "output_per_million": "1.25"},
    "orgmodel-medium-1": {"input_per_million": "1.00", "output_per_million": "5.00"},
    "orgmodel-large-2":  {"input_per_million": "3.00", "output_per_million": "15.00"}
  }
}"#;

/// The prices of one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelPrice {
    /// Per million input tokens.
    pub input_per_million: Decimal,
    /// Per million output tokens.
    pub output_per_million: Decimal,
}

/// The configured prices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceTable {
    /// ISO 4217 code of every amount.
    pub currency_code: String,
    /// Prices by model name.
    pub models: BTreeMap<String, ModelPrice>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    currency_code: String,
    models: BTreeMap<String, RawPrice>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrice {
    input_per_million: String,
    output_per_million: String,
}

fn price(model: &str, which: &str, s: &str) -> Result<Decimal, String> {
    let d = Decimal::from_str_exact(s.trim())
        .or_else(|_| Decimal::from_str(s.trim()))
        .map_err(|e| format!("{model}.{which}: {s:?} is not a decimal number: {e}"))?;
    if d.is_sign_negative() {
        return Err(format!("{model}.{which}: must not be negative"));
    }
    if d.scale() > 12 {
        return Err(format!("{model}.{which}: at most 12 decimal places"));
    }
    Ok(d)
}

impl PriceTable {
    /// Parses a table from JSON text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let raw: RawTable =
            serde_json::from_str(text).map_err(|e| format!("invalid price table: {e}"))?;
        let code = raw.currency_code.trim();
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(format!(
                "currency_code {code:?} is not an ISO 4217 code such as USD"
            ));
        }
        let mut models = BTreeMap::new();
        for (name, p) in raw.models {
            if name.is_empty() || name.len() > 128 {
                return Err(format!("model name {name:?} must have 1-128 characters"));
            }
            models.insert(
                name.clone(),
                ModelPrice {
                    input_per_million: price(&name, "input_per_million", &p.input_per_million)?,
                    output_per_million: price(&name, "output_per_million", &p.output_per_million)?,
                },
            );
        }
        if models.is_empty() {
            return Err("the price table lists no model".into());
        }
        Ok(Self {
            currency_code: code.to_owned(),
            models,
        })
    }

    /// The table configured by `setting`: `None` for the built-in default, inline JSON (starting
    /// with `{`), or the path of a JSON file.
    pub fn load(setting: Option<&str>) -> Result<Self, String> {
        match setting.map(str::trim).filter(|s| !s.is_empty()) {
            None => Self::parse(DEFAULT_PRICE_TABLE),
            Some(inline) if inline.starts_with('{') => Self::parse(inline),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read the price table {path}: {e}"))?;
                Self::parse(&text)
            }
        }
    }

    /// The prices of `model`, if it is listed.
    pub fn get(&self, model: &str) -> Option<&ModelPrice> {
        self.models.get(model)
    }
}

/// The exact cost of `tokens` at `per_million` per million tokens: `tokens × price / 10⁶`, by
/// integer arithmetic on the decimal's mantissa (no rounding). `None` on overflow.
pub fn cost(tokens: i64, per_million: Decimal) -> Option<Decimal> {
    let mantissa = i128::from(tokens).checked_mul(per_million.mantissa())?;
    let scale = per_million.scale().checked_add(6)?;
    let exact = Decimal::try_from_i128_with_scale(mantissa, scale).ok()?;
    Some(exact.normalize())
}

/// `d` as the API writes amounts: plain digits, optional fraction, no trailing zeros.
pub fn format_amount(d: Decimal) -> String {
    d.normalize().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_table_parses() {
        let t = PriceTable::load(None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.currency_code, "USD");
        assert!(t.get("orgmodel-large-2").is_some());
    }

    #[test]
    fn tables_load_inline_or_from_a_file() {
        let json = r#"{"currency_code":"EUR","models":{"m":{"input_per_million":"1.5","output_per_million":"2"}}}"#;
        let inline = PriceTable::load(Some(json)).unwrap();
        assert_eq!(inline.currency_code, "EUR");
        let path = std::env::temp_dir().join(format!("prices-{}.json", uuid::Uuid::new_v4()));
        std::fs::write(&path, json).unwrap();
        let from_file = PriceTable::load(path.to_str()).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(from_file, inline);
        assert!(PriceTable::load(Some("/nonexistent/prices.json")).is_err());
    }

    #[test]
    fn costs_are_exact() {
        let p = Decimal::from_str_exact("3.00").unwrap_or_default();
        assert_eq!(cost(1, p).map(format_amount).as_deref(), Some("0.000003"));
        assert_eq!(
            cost(1_234_567, p).map(format_amount).as_deref(),
            Some("3.703701")
        );
        let odd = Decimal::from_str_exact("0.000000000001").unwrap_or_default();
        assert_eq!(
            cost(7, odd).map(format_amount).as_deref(),
            Some("0.000000000000000007")
        );
    }

    #[test]
    fn bad_tables_are_refused() {
        assert!(PriceTable::parse(r#"{"currency_code":"USD","models":{}}"#).is_err());
        assert!(
            PriceTable::parse(
                r#"{"currency_code":"usd","models":{"m":{"input_per_million":"1","output_per_million":"1"}}}"#
            )
            .is_err()
        );
        assert!(
            PriceTable::parse(
                r#"{"currency_code":"USD","models":{"m":{"input_per_million":"-1","output_per_million":"1"}}}"#
            )
            .is_err()
        );
        assert!(
            PriceTable::parse(
                r#"{"currency_code":"USD","models":{"m":{"input_per_million":1.5,"output_per_million":"1"}}}"#
            )
            .is_err(),
            "numbers must be strings: no float on the way"
        );
    }
}
