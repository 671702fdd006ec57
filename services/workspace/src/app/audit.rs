//! ListAuditEvents (ORG-10): who may read this service's audit log of an organization. The
//! listing itself is the platform's ([`orgplane_platform::audit::AuditLogWriter::list`]), which
//! speaks the proto filter and records; the API adapter calls it once this check passed.

use orgplane_platform::Call;
use orgplane_platform::error::{ApiError, ApiResult};
use orgplane_platform::roles::OrgAction;

use super::Core;

impl Core {
    /// OK when the caller may read `organization_id`'s audit log (OWNER/ADMIN, admin API keys);
    /// NOT_FOUND for outsiders, PERMISSION_DENIED for other members.
    pub fn may_read_audit_log(&self, call: &Call, organization_id: &str) -> ApiResult<()> {
        let principal = call.principal.require_authenticated()?;
        if organization_id.is_empty() {
            return Err(ApiError::invalid_argument("organization_id", "required"));
        }
        self.standing(principal, organization_id)?
            .require(OrgAction::ReadAuditLog)
    }
}
