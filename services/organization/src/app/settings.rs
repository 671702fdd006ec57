//! Settings in force (rule ORG-13): an organization's own rows of a settings group (security
//! policy, branding) and its operator's, loaded together and resolved per field by
//! [`crate::domain::settings::resolve`] over the system defaults. Admission, step-up,
//! GetSecurityPolicy, the role snapshot, GetBranding, GetEffectiveSettings and invite mail all
//! read settings through [`Layers`]; an operator's change reaches its children through
//! [`changed_children`].

use std::collections::{HashMap, HashSet};

use orgplane_platform::convert::{etag, etag_mismatch, timestamp_ms};
use orgplane_platform::policy::SecurityPolicy;
use orgplane_proto::organization::v1 as proto;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter,
    QuerySelect,
};

use super::App;
use super::security::mfa_number;
use crate::domain::settings::{
    BRANDING_FIELDS, Own, POLICY_FIELDS, Resolved, Source, enforced_from_stored, enforced_names,
    require_not_enforced, resolve,
};
use crate::domain::{Error, Result};
use crate::store::settings::branding;
use crate::store::{organization, security_policy};

/// A group of inherited settings stored one row per organization: the security policy or the
/// branding. Unset own values (0, "") inherit.
pub trait Group: Clone + Send + Sync + 'static {
    /// The table.
    type Table: EntityTrait<Model = Self>;
    /// One field's value.
    type Value: Clone + PartialEq + Send + Sync;
    /// The group's field names, in the order of [`Own::values`].
    const FIELDS: &'static [&'static str];
    /// The row of an organization that never set its own (version 0).
    fn blank(organization_id: &str) -> Self;
    /// The organization the row belongs to.
    fn organization_id(&self) -> &str;
    /// The row's own layer.
    fn layer(&self) -> Own<Self::Value>;
    /// Replaces the inherited fields' values (in field order).
    fn set_values(&mut self, values: Vec<Self::Value>);
    /// The organization id column.
    fn id_column() -> <Self::Table as EntityTrait>::Column;
    /// The version column.
    fn version_column() -> <Self::Table as EntityTrait>::Column;
}

impl Group for security_policy::Model {
    type Table = security_policy::Entity;
    type Value = i64;
    const FIELDS: &'static [&'static str] = &POLICY_FIELDS;

    fn blank(organization_id: &str) -> Self {
        Self {
            organization_id: organization_id.to_owned(),
            mfa_requirement: 0,
            reauth_max_age_secs: 0,
            sign_in_methods: 0,
            version: 0,
            update_time_ms: 0,
            restrict_invites_to_verified_domains: false,
            enforced_fields: String::new(),
            own_mfa_requirement: 0,
            own_reauth_max_age_secs: 0,
            own_sign_in_methods: 0,
        }
    }

    fn organization_id(&self) -> &str {
        &self.organization_id
    }

    fn layer(&self) -> Own<i64> {
        let set = |v: i64| (v != 0).then_some(v);
        Own {
            values: vec![
                set(self.own_mfa_requirement.into()),
                set(self.own_reauth_max_age_secs),
                set(self.own_sign_in_methods.into()),
            ],
            enforced: enforced_from_stored(&POLICY_FIELDS, &self.enforced_fields),
        }
    }

    /// The values in force go to the complete columns (those the previous release reads); the
    /// own values stay.
    fn set_values(&mut self, values: Vec<i64>) {
        if let [mfa, age, methods] = values[..] {
            self.mfa_requirement = i32::try_from(mfa).unwrap_or_default();
            self.reauth_max_age_secs = age;
            self.sign_in_methods = i32::try_from(methods).unwrap_or_default();
        }
    }

    fn id_column() -> security_policy::Column {
        security_policy::Column::OrganizationId
    }

    fn version_column() -> security_policy::Column {
        security_policy::Column::Version
    }
}

impl Group for branding::Model {
    type Table = branding::Entity;
    type Value = String;
    const FIELDS: &'static [&'static str] = &BRANDING_FIELDS;

    fn blank(organization_id: &str) -> Self {
        Self {
            organization_id: organization_id.to_owned(),
            ..Self::default()
        }
    }

    fn organization_id(&self) -> &str {
        &self.organization_id
    }

    fn layer(&self) -> Own<String> {
        Own {
            values: self
                .values()
                .into_iter()
                .map(|v| (!v.is_empty()).then_some(v))
                .collect(),
            enforced: enforced_from_stored(&BRANDING_FIELDS, &self.enforced_fields),
        }
    }

    fn set_values(&mut self, values: Vec<String>) {
        if let [display, logo, icon, primary, accent, sender] = &values[..] {
            self.display_name.clone_from(display);
            self.logo_uri.clone_from(logo);
            self.icon_uri.clone_from(icon);
            self.primary_color.clone_from(primary);
            self.accent_color.clone_from(accent);
            self.mail_sender_name.clone_from(sender);
        }
    }

    fn id_column() -> branding::Column {
        branding::Column::OrganizationId
    }

    fn version_column() -> branding::Column {
        branding::Column::Version
    }
}

impl branding::Model {
    /// The fields' values in [`BRANDING_FIELDS`] order.
    pub fn values(&self) -> Vec<String> {
        vec![
            self.display_name.clone(),
            self.logo_uri.clone(),
            self.icon_uri.clone(),
            self.primary_color.clone(),
            self.accent_color.clone(),
            self.mail_sender_name.clone(),
        ]
    }
}

/// One organization's own row of a group and, when it is a child whose operator exists, the
/// operator's id and row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layers<M> {
    /// The organization.
    pub organization_id: String,
    /// Its own row; `None` while it never set one.
    pub own: Option<M>,
    /// The operator's id and its row.
    pub operator: Option<(String, Option<M>)>,
}

/// An organization's security-policy layers.
pub type PolicyLayers = Layers<security_policy::Model>;
/// An organization's branding layers.
pub type BrandingLayers = Layers<branding::Model>;

/// A group in force: the organization's own row (or a blank one at version 0) with every
/// inherited field replaced by its value in force, and per field where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective<M: Group> {
    /// The row as answered: own version, update time and ENFORCED list, values in force.
    pub model: M,
    /// Per field, the value in force, its source and lock.
    pub fields: Vec<Resolved<M::Value>>,
}

impl<M: Group> Layers<M> {
    /// The operator's layer (empty when it never set its row), for a child with an operator.
    fn operator_layer(&self) -> Option<(&str, Own<M::Value>)> {
        self.operator.as_ref().map(|(id, row)| {
            let layer = row
                .as_ref()
                .map(Group::layer)
                .unwrap_or_else(|| Own::empty(M::FIELDS.len()));
            (id.as_str(), layer)
        })
    }

    /// The group in force over the system defaults `system` (one per field).
    pub fn effective(&self, system: &[M::Value]) -> Effective<M> {
        let own = self
            .own
            .as_ref()
            .map(Group::layer)
            .unwrap_or_else(|| Own::empty(M::FIELDS.len()));
        let operator = self.operator_layer();
        let fields = resolve(&own, operator.as_ref().map(|(_, l)| l), system);
        let mut model = self
            .own
            .clone()
            .unwrap_or_else(|| M::blank(&self.organization_id));
        model.set_values(fields.iter().map(|r| r.value.clone()).collect());
        Effective { model, fields }
    }

    /// The own row, or a blank one at version 0.
    pub fn own_or_blank(&self) -> M {
        self.own
            .clone()
            .unwrap_or_else(|| M::blank(&self.organization_id))
    }

    /// FAILED_PRECONDITION `SETTING_ENFORCED_BY_OPERATOR` when `fields` touch one the operator
    /// ENFORCED.
    pub fn refuse_enforced(&self, fields: &[String]) -> Result<()> {
        let operator = self.operator_layer();
        require_not_enforced(M::FIELDS, operator.as_ref().map(|(id, l)| (*id, l)), fields)
    }
}

/// Each organization's layers of group `M`, by organization id: own rows, and the operator's
/// for children whose operator still exists. Three queries whatever the number.
pub async fn layers_of<M: Group, C: ConnectionTrait>(
    db: &C,
    orgs: &[organization::Model],
) -> Result<HashMap<String, Layers<M>>> {
    let wanted: HashSet<String> = orgs
        .iter()
        .filter(|o| !o.operator_id.is_empty())
        .map(|o| o.operator_id.clone())
        .collect();
    let operators: HashSet<String> = if wanted.is_empty() {
        HashSet::new()
    } else {
        organization::Entity::find()
            .filter(organization::Column::Id.is_in(wanted))
            .all(db)
            .await?
            .into_iter()
            .map(|o| o.id)
            .collect()
    };
    let ids: Vec<String> = orgs
        .iter()
        .map(|o| o.id.clone())
        .chain(operators.iter().cloned())
        .collect();
    let rows: HashMap<String, M> = M::Table::find()
        .filter(M::id_column().is_in(ids))
        .all(db)
        .await?
        .into_iter()
        .map(|m| (m.organization_id().to_owned(), m))
        .collect();
    Ok(orgs
        .iter()
        .map(|o| {
            let layers = Layers {
                organization_id: o.id.clone(),
                own: rows.get(&o.id).cloned(),
                operator: operators
                    .contains(&o.operator_id)
                    .then(|| (o.operator_id.clone(), rows.get(&o.operator_id).cloned())),
            };
            (o.id.clone(), layers)
        })
        .collect())
}

/// One organization's layers of group `M`.
pub async fn layers<M: Group, C: ConnectionTrait>(
    db: &C,
    org: &organization::Model,
) -> Result<Layers<M>> {
    Ok(layers_of(db, std::slice::from_ref(org))
        .await?
        .remove(&org.id)
        .unwrap_or_else(|| Layers {
            organization_id: org.id.clone(),
            own: None,
            operator: None,
        }))
}

/// The children of operator `operator_id` whose values in force change when the operator's row
/// becomes `after`, each with its group in force afterwards (rule ORG-13: an operator's change
/// reaches every child that inherits it). Children that are purged are gone from the table.
pub async fn changed_children<M: Group, C: ConnectionTrait>(
    db: &C,
    operator_id: &str,
    after: &M,
    system: &[M::Value],
) -> Result<Vec<Effective<M>>> {
    let children = organization::Entity::find()
        .filter(organization::Column::OperatorId.eq(operator_id))
        .all(db)
        .await?;
    let mut changed = Vec::new();
    for (_, before) in layers_of::<M, _>(db, &children).await? {
        let mut now = before.clone();
        now.operator = Some((operator_id.to_owned(), Some(after.clone())));
        let (was, is) = (before.effective(system), now.effective(system));
        let values =
            |e: &Effective<M>| e.fields.iter().map(|r| r.value.clone()).collect::<Vec<_>>();
        if values(&was) != values(&is) {
            changed.push(is);
        }
    }
    changed.sort_by(|a, b| a.model.organization_id().cmp(b.model.organization_id()));
    Ok(changed)
}

/// Writes `after`, an organization's own row of a group, if its version is still
/// `before_version` (inserted when that is 0); ABORTED `ETAG_MISMATCH` otherwise.
pub async fn save<M, C>(db: &C, after: M, before_version: i64, resource: &str) -> Result<()>
where
    M: Group + IntoActiveModel<<M::Table as EntityTrait>::ActiveModel>,
    <M::Table as EntityTrait>::ActiveModel: ActiveModelTrait<Entity = M::Table> + Send,
    C: ConnectionTrait,
{
    let id = after.organization_id().to_owned();
    let active = after.into_active_model();
    if before_version == 0 {
        M::Table::insert(active).exec(db).await.map_err(|e| {
            if orgplane_platform::db::is_unique_violation(&e) {
                etag_mismatch(resource).into()
            } else {
                Error::from(e)
            }
        })?;
        return Ok(());
    }
    let updated = M::Table::update_many()
        .set(active.reset_all())
        .filter(M::id_column().eq(id))
        .filter(M::version_column().eq(before_version))
        .exec(db)
        .await?;
    if updated.rows_affected == 0 {
        return Err(etag_mismatch(resource).into());
    }
    Ok(())
}

/// Locks the row of the operator of `org`'s family (its operator's, or its own when it has none)
/// inside a transaction, so that an operator's change of settings and its children's changes are
/// serial and each publishes what is in force after the other (PostgreSQL; SQLite writers are
/// serial anyway).
pub async fn lock_family<C: ConnectionTrait>(txn: &C, org: &organization::Model) -> Result<()> {
    let root = if org.operator_id.is_empty() {
        &org.id
    } else {
        &org.operator_id
    };
    organization::Entity::find_by_id(root.clone())
        .lock_exclusive()
        .one(txn)
        .await?;
    Ok(())
}

/// FAILED_PRECONDITION `NOT_AN_OPERATOR` when a change lists ENFORCED fields (`asked`) for an
/// organization that is not an operator (ORG-13).
pub fn require_operator_for_enforced(org: &organization::Model, asked: bool) -> Result<()> {
    if asked && org.kind != proto::OrganizationKind::Operator as i32 {
        return Err(Error::NotAnOperator {
            organization_id: org.id.clone(),
        });
    }
    Ok(())
}

/// The system defaults of the policy fields, with `reauth_max_age_secs` as the age.
pub fn policy_defaults(reauth_max_age_secs: i64) -> Vec<i64> {
    let p = SecurityPolicy::with_reauth_max_age(reauth_max_age_secs);
    vec![
        mfa_number(p.mfa).into(),
        p.reauth_max_age_secs,
        p.methods_bits().into(),
    ]
}

/// The `SettingSource` of a source.
pub fn source_number(s: Source) -> i32 {
    let s = match s {
        Source::System => proto::SettingSource::System,
        Source::Operator => proto::SettingSource::Operator,
        Source::Organization => proto::SettingSource::Organization,
    };
    s as i32
}

/// One `EffectiveSetting` per field of a group, named `<prefix>.<field>`.
pub fn provenance<M: Group>(prefix: &str, e: &Effective<M>) -> Vec<proto::EffectiveSetting> {
    M::FIELDS
        .iter()
        .zip(&e.fields)
        .map(|(f, r)| proto::EffectiveSetting {
            field: format!("{prefix}.{f}"),
            source: source_number(r.source),
            enforced: r.enforced,
        })
        .collect()
}

/// The `Branding` message of a branding row (own or in force).
pub fn branding_message(m: &branding::Model) -> proto::Branding {
    proto::Branding {
        organization_id: m.organization_id.clone(),
        display_name: m.display_name.clone(),
        logo_uri: m.logo_uri.clone(),
        icon_uri: m.icon_uri.clone(),
        primary_color: m.primary_color.clone(),
        accent_color: m.accent_color.clone(),
        mail_sender_name: m.mail_sender_name.clone(),
        enforced_fields: enforced_names(
            &BRANDING_FIELDS,
            &enforced_from_stored(&BRANDING_FIELDS, &m.enforced_fields),
        ),
        etag: etag(m.version),
        update_time: (m.version > 0).then(|| timestamp_ms(m.update_time_ms)),
    }
}

impl App {
    /// The system defaults of the policy fields: the deployment's default policy.
    pub fn policy_defaults(&self) -> Vec<i64> {
        policy_defaults(self.config.step_up_max_age_secs)
    }

    /// The system defaults of the branding fields (configured names, other fields empty).
    pub fn branding_defaults(&self) -> Vec<String> {
        vec![
            self.config.branding_display_name.clone(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            self.config.branding_mail_sender_name.clone(),
        ]
    }

    /// The branding in force in `org` (rule ORG-13).
    pub async fn branding_of<C: ConnectionTrait>(
        &self,
        db: &C,
        org: &organization::Model,
    ) -> Result<Effective<branding::Model>> {
        Ok(layers::<branding::Model, _>(db, org)
            .await?
            .effective(&self.branding_defaults()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(
        id: &str,
        mfa: i32,
        age: i64,
        methods: i32,
        enforced: &str,
    ) -> security_policy::Model {
        security_policy::Model {
            own_mfa_requirement: mfa,
            own_reauth_max_age_secs: age,
            own_sign_in_methods: methods,
            version: 4,
            enforced_fields: enforced.into(),
            ..security_policy::Model::blank(id)
        }
    }

    /// ORG-13 on stored rows: 0 inherits, an own value wins unless the operator ENFORCED the
    /// field; the row keeps its own version, invite restriction and ENFORCED list.
    #[test]
    fn org_13_stored_zeros_inherit_and_enforced_fields_take_the_operators_value() {
        let mut own = policy("org_c", 0, 600, 3, "");
        own.restrict_invites_to_verified_domains = true;
        let layers = Layers {
            organization_id: "org_c".into(),
            own: Some(own),
            operator: Some((
                "org_op".into(),
                Some(policy("org_op", 2, 900, 1, "allowed_sign_in_methods")),
            )),
        };
        let e = layers.effective(&policy_defaults(300));
        assert_eq!(
            (
                e.model.mfa_requirement,
                e.model.reauth_max_age_secs,
                e.model.sign_in_methods
            ),
            (2, 600, 1)
        );
        assert!(e.model.restrict_invites_to_verified_domains);
        assert_eq!((e.model.version, e.model.enforced_fields.as_str()), (4, ""));
        let sources: Vec<(Source, bool)> =
            e.fields.iter().map(|r| (r.source, r.enforced)).collect();
        assert_eq!(
            sources,
            vec![
                (Source::Operator, false),
                (Source::Organization, false),
                (Source::Operator, true)
            ]
        );
        assert!(
            layers
                .refuse_enforced(&["reauthentication_max_age".into()])
                .is_ok()
        );
        assert!(matches!(
            layers.refuse_enforced(&["allowed_sign_in_methods".into()]),
            Err(Error::SettingEnforcedByOperator { .. })
        ));
        // Without an operator row the defaults fill in, at version 0.
        let alone = Layers::<security_policy::Model> {
            organization_id: "org_s".into(),
            own: None,
            operator: None,
        }
        .effective(&policy_defaults(300));
        assert_eq!(alone.model.reauth_max_age_secs, 300);
        assert_eq!(alone.model.version, 0);
        assert!(alone.fields.iter().all(|r| r.source == Source::System));
    }
}
