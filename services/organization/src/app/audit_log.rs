//! The organization's audit log read (rule ORG-10).

use orgplane_platform::Call;
use orgplane_platform::roles::OrgAction;
use orgplane_proto::audit::v1::{AuditEvent, AuditEventFilter};

use super::access::Access;
use super::{App, Page};
use crate::domain::authz::{Deleted, require_caller};
use crate::domain::validate::required;
use crate::domain::{Error, Result};

/// ListAuditEvents (ORG-10).
#[derive(Debug, Clone, Default)]
pub struct ListAuditEvents {
    /// The organization.
    pub organization_id: String,
    /// The platform's filter.
    pub filter: AuditEventFilter,
    /// Requested page size.
    pub page_size: i32,
    /// Token of the page to read.
    pub page_token: String,
}

impl App {
    /// ListAuditEvents (rule ORG-10).
    pub async fn list_audit_events(
        &self,
        call: &Call,
        cmd: ListAuditEvents,
    ) -> Result<Page<AuditEvent>> {
        require_caller(&call.principal)?;
        required("organization_id", &cmd.organization_id)?;
        let filter = cmd.filter;
        if let (Some(s), Some(e)) = (&filter.start_time, &filter.end_time)
            && (e.seconds, e.nanos) <= (s.seconds, s.nanos)
        {
            return Err(Error::invalid(
                "filter.end_time",
                "must be after filter.start_time",
            ));
        }
        let access = Access::resolve(
            &self.db,
            &call.principal,
            &cmd.organization_id,
            Deleted::Hidden,
        )
        .await?;
        access.require(OrgAction::ReadAuditLog)?;
        let (items, next_page_token) = self
            .audit
            .list(
                &self.db,
                &self.runtime.page_tokens,
                &access.org.id,
                &filter,
                cmd.page_size,
                &cmd.page_token,
            )
            .await?;
        Ok(Page {
            items,
            next_page_token,
        })
    }
}
