//! Branding and the settings in force (rule ORG-13): GetBranding, UpdateBranding (the
//! organization's own values; for an operator also its ENFORCED fields) and
//! GetEffectiveSettings. A change publishes `BrandingChanged` with the branding in force, for
//! the organization and, for an operator, for each child whose branding in force it changed.

use orgplane_platform::Call;
use orgplane_platform::audit::Entry;
use orgplane_platform::convert::check_etag;
use orgplane_platform::events::WriteUnit;
use orgplane_platform::roles::OrgAction;
use orgplane_proto::events::v1::{BrandingChanged, event};
use orgplane_proto::organization::v1 as proto;

use super::access::Access;
use super::settings::{
    Effective, Group, Layers, branding_message, changed_children, layers, lock_family, provenance,
    require_operator_for_enforced, save,
};
use super::{App, Revised};
use crate::domain::authz::{Deleted, require_caller};
use crate::domain::settings::{BRANDING_FIELDS, enforced_from_request, enforced_to_stored};
use crate::domain::validate::{self, required};
use crate::domain::{Error, Result};
use crate::store::settings::branding;

/// The mutable paths of a branding.
const MUTABLE: [&str; 7] = [
    "display_name",
    "logo_uri",
    "icon_uri",
    "primary_color",
    "accent_color",
    "mail_sender_name",
    "enforced_fields",
];

/// UpdateBranding (ORG-13).
#[derive(Debug, Clone, Default)]
pub struct UpdateBranding {
    /// The new values (the request's `branding`, if any).
    pub branding: Option<proto::Branding>,
    /// The update mask's paths.
    pub paths: Vec<String>,
    /// The etag read, or empty.
    pub etag: String,
}

/// What GetEffectiveSettings answers.
#[derive(Debug, Clone)]
pub struct EffectiveSettings {
    /// The branding in force.
    pub branding: Effective<branding::Model>,
    /// The policy in force.
    pub policy: Effective<crate::store::security_policy::Model>,
    /// The organization's operator, or empty.
    pub operator_organization_id: String,
}

impl EffectiveSettings {
    /// The message.
    pub fn message(&self) -> proto::EffectiveSettings {
        let mut settings = provenance("branding", &self.branding);
        settings.extend(provenance("security_policy", &self.policy));
        proto::EffectiveSettings {
            organization_id: self.branding.model.organization_id.clone(),
            branding: Some(branding_message(&self.branding.model)),
            security_policy: Some(super::security::message(&self.policy.model)),
            settings,
            operator_organization_id: self.operator_organization_id.clone(),
        }
    }
}

/// The validated new own value of branding field `i` (empty clears it).
fn field_value(i: usize, b: &proto::Branding) -> Result<String> {
    let field = format!("branding.{}", BRANDING_FIELDS[i]);
    let raw = match i {
        0 => &b.display_name,
        1 => &b.logo_uri,
        2 => &b.icon_uri,
        3 => &b.primary_color,
        4 => &b.accent_color,
        _ => &b.mail_sender_name,
    };
    if raw.is_empty() {
        return Ok(String::new());
    }
    match i {
        1 | 2 => validate::https_uri(&field, raw),
        3 | 4 => validate::color(&field, raw),
        _ => validate::name(&field, raw),
    }
}

impl App {
    /// The caller's access to read an organization's settings: any member, an admin key, its
    /// operator's OWNER or ADMINs, a service.
    async fn settings_reader(&self, call: &Call, organization_id: &str) -> Result<Access> {
        require_caller(&call.principal)?;
        required("organization_id", organization_id)?;
        let access =
            Access::resolve(&self.db, &call.principal, organization_id, Deleted::Hidden).await?;
        access.require(OrgAction::Read)?;
        Ok(access)
    }

    /// GetBranding (ORG-13): the branding in force.
    pub async fn get_branding(
        &self,
        call: &Call,
        organization_id: &str,
    ) -> Result<branding::Model> {
        let access = self.settings_reader(call, organization_id).await?;
        Ok(self.branding_of(&self.db, &access.org).await?.model)
    }

    /// GetEffectiveSettings (ORG-13): branding and policy in force, with provenance.
    pub async fn get_effective_settings(
        &self,
        call: &Call,
        organization_id: &str,
    ) -> Result<EffectiveSettings> {
        let access = self.settings_reader(call, organization_id).await?;
        Ok(EffectiveSettings {
            branding: self.branding_of(&self.db, &access.org).await?,
            policy: self.security_policy_of(&access.policy),
            operator_organization_id: access.org.operator_id.clone(),
        })
    }

    /// UpdateBranding (ORG-13): changes the organization's own branding and answers the
    /// branding in force.
    pub async fn update_branding(
        &self,
        call: &Call,
        cmd: UpdateBranding,
    ) -> Result<Revised<branding::Model>> {
        require_caller(&call.principal)?;
        let input = cmd
            .branding
            .ok_or_else(|| Error::invalid("branding", "required"))?;
        required("branding.organization_id", &input.organization_id)?;
        let paths = validate::mask_paths(&cmd.paths, &MUTABLE)?;
        let mut values = Vec::new();
        let mut enforced = None;
        for p in &paths {
            match BRANDING_FIELDS.iter().position(|f| f == p) {
                Some(i) => values.push((i, field_value(i, &input)?)),
                None => {
                    enforced = Some(enforced_from_request(
                        &BRANDING_FIELDS,
                        "branding.enforced_fields",
                        &input.enforced_fields,
                    )?)
                }
            }
        }
        let access = Access::resolve(
            &self.db,
            &call.principal,
            &input.organization_id,
            Deleted::Hidden,
        )
        .await?;
        access.require_or_operator(OrgAction::ManageOrganization)?;
        let org = &access.org;
        require_operator_for_enforced(org, enforced.is_some())?;
        let mut txn = WriteUnit::begin(&self.outbox, call).await?;
        lock_family(&*txn, org).await?;
        let layers = layers::<branding::Model, _>(&*txn, org).await?;
        let fields: Vec<String> = values
            .iter()
            .map(|(i, _)| BRANDING_FIELDS[*i].to_owned())
            .collect();
        layers.refuse_enforced(&fields)?;
        let before = layers.own_or_blank();
        check_etag(&cmd.etag, before.version, "branding")?;
        let mut own = before.values();
        for (i, v) in values {
            own[i] = v;
        }
        let mut after = before.clone();
        after.set_values(own);
        if let Some(e) = &enforced {
            after.enforced_fields = enforced_to_stored(&BRANDING_FIELDS, e);
        }
        after.version = before.version + 1;
        after.update_time_ms = self.now_ms();
        let defaults = self.branding_defaults();
        let in_force = Layers {
            own: Some(after.clone()),
            ..layers
        }
        .effective(&defaults);
        let children = if org.kind == proto::OrganizationKind::Operator as i32 {
            changed_children(&*txn, &org.id, &after, &defaults).await?
        } else {
            Vec::new()
        };
        save(&*txn, after.clone(), before.version, "branding").await?;
        self.audit
            .write(
                &*txn,
                call,
                Entry::new(&org.id, "branding.update", "branding", &org.id)
                    .change(
                        Some(&branding_message(&before)),
                        Some(&branding_message(&after)),
                    )
                    .as_operator(access.acting_operator()),
            )
            .await?;
        for m in std::iter::once(&in_force.model).chain(children.iter().map(|c| &c.model)) {
            txn.append(event::Payload::BrandingChanged(BrandingChanged {
                organization_id: m.organization_id.clone(),
                branding: Some(branding_message(m)),
            }))
            .await?;
        }
        let revision = txn.commit_at_revision().await?;
        Ok(Revised {
            value: in_force.model,
            revision,
        })
    }
}
