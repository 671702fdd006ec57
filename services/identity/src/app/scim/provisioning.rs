//! PLACEHOLDER signatures (replaced in this change): membership changes owed to the organization.

use orgplane_proto::organization::v1::OrgRole;
use sea_orm::{ConnectionTrait, DbErr};

use crate::app::App;

/// What a SCIM write owes the organization service for one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owed {
    /// ProvisionMember with `set_role`: member with this role.
    Provision(OrgRole),
    /// DeprovisionMember: no longer a member.
    Deprovision,
}

/// Records, in the caller's transaction, that `owed` must reach the organization service for
/// `user_id` with `request_id` (unique per change).
pub async fn owe(
    _db: &impl ConnectionTrait,
    _organization_id: &str,
    _user_id: &str,
    _request_id: &str,
    _owed: Owed,
    _now_ms: i64,
) -> Result<(), DbErr> {
    Ok(())
}

/// Delivers what is due (new rows at once, failed ones after their backoff); returns how many
/// were delivered.
pub async fn deliver_due(_app: &App) -> usize {
    0
}
