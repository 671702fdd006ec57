//! Column definitions the services' migrations share: the NOT NULL kinds every table uses.

use sea_orm_migration::prelude::{ColumnDef, IntoIden};

/// A NOT NULL text column.
pub fn text(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c).string().not_null().to_owned()
}

/// A NOT NULL 64-bit integer column (times in Unix milliseconds, versions, counters).
pub fn big(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c).big_integer().not_null().to_owned()
}

/// A NOT NULL 32-bit integer column (enums as their proto numbers).
pub fn int(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c).integer().not_null().to_owned()
}
