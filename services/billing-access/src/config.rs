//! The service's own settings (flags and environment variables of the `orgplane` binary).

use clap::Args;

/// The service's own settings; the defaults are written here once.
#[derive(Debug, Clone, Default, Args)]
#[group(skip)]
pub struct Config {
    /// The price table for cost reports: a JSON file path, or inline JSON starting with `{`.
    /// Format: `{"currency_code":"USD","models":{"<model>":{"input_per_million":"3.00",
    /// "output_per_million":"15.00"}}}` (prices as decimal strings). Default: a built-in USD
    /// table for `orgmodel-small-1`, `orgmodel-medium-1` and `orgmodel-large-2`.
    #[arg(long = "billing-price-table", env = "ORGPLANE_BILLING_PRICE_TABLE")]
    pub price_table: Option<String>,
}
