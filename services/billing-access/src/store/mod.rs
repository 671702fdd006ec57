//! The billing-access database: sea-orm entities, migrations, and the queries the use cases
//! share.

pub mod account_migration;
pub mod accounts;
pub mod entity;
pub mod merge;
pub mod merge_migration;
pub mod migration;
pub mod rollups;
pub mod tier_migration;
pub mod usage;
pub mod workspaces;

use orgplane_platform::error::ApiError;

use crate::domain::Error;

impl From<sea_orm::DbErr> for Error {
    fn from(err: sea_orm::DbErr) -> Self {
        Error::Api(ApiError::from(err))
    }
}
