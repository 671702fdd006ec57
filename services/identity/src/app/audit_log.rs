//! The organization's audit log as identity keeps it (rule ORG-10): who may read it. The listing
//! itself is the platform's ([`orgplane_platform::audit::AuditLogWriter::list`]).

use orgplane_platform::roles::OrgAction;
use orgplane_platform::{ApiError, ApiResult, Call};

use super::App;
use super::standing::OrgStanding;
use crate::domain::Error;

impl App {
    /// ListAuditEvents' checks: OWNER or ADMIN of `org` (an admin key counts as ADMIN; services
    /// do not read it). Records of a user's own account carry no organization and are never
    /// listed.
    pub fn authorize_audit_read(&self, call: &Call, org: &str) -> ApiResult<()> {
        if org.is_empty() {
            return Err(ApiError::invalid_argument("organization_id", "required"));
        }
        let standing = self.standing(&call.principal, org)?;
        if standing == OrgStanding::Service || !standing.allows(OrgAction::ReadAuditLog) {
            return Err(
                Error::InsufficientRole("only an OWNER or ADMIN may read the audit log").into(),
            );
        }
        Ok(())
    }
}
