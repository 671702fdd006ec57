//! What rule ORG-13 stores: organizations' kind and operator (columns of `organizations`), the
//! operator's ENFORCED security-policy fields (a column of `security_policies`), and each
//! organization's own branding (`organization_branding`). Own values that are unset (an empty
//! string; 0 in `security_policies`) inherit: the operator's value, else the system default.

use sea_orm_migration::prelude::*;
use sea_orm_migration::{MigrationTrait, SchemaManager};

/// Rows of `organization_branding`: an organization's own branding; no row, or an empty column,
/// means the field inherits.
pub mod branding {
    use sea_orm::entity::prelude::*;

    /// One organization's own branding, as last changed by UpdateBranding.
    #[derive(Clone, Debug, PartialEq, Eq, Default, DeriveEntityModel)]
    #[sea_orm(table_name = "organization_branding")]
    pub struct Model {
        /// The organization.
        #[sea_orm(primary_key, auto_increment = false)]
        pub organization_id: String,
        /// The name shown to people, or empty.
        pub display_name: String,
        /// The logo's `https://` address, or empty.
        pub logo_uri: String,
        /// The icon's `https://` address, or empty.
        pub icon_uri: String,
        /// `#rrggbb`, or empty.
        pub primary_color: String,
        /// `#rrggbb`, or empty.
        pub accent_color: String,
        /// The mail sender name, or empty.
        pub mail_sender_name: String,
        /// An operator's ENFORCED fields, comma-separated field names.
        pub enforced_fields: String,
        /// Change counter (the etag); 0 while the organization has no row.
        pub version: i64,
        /// Last changed at.
        pub update_time_ms: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Adds operators and inherited settings (rule ORG-13): `organizations.kind` (STANDARD for every
/// existing row) and `organizations.operator_id`, `security_policies.enforced_fields`, and the
/// `organization_branding` table. Additive only, so the previous release runs on the same
/// database during a rolling update.
#[derive(Debug, Clone, Copy, Default)]
pub struct AddOperators;

impl MigrationName for AddOperators {
    fn name(&self) -> &str {
        "m20261216_000002_add_operators"
    }
}

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Kind,
    OperatorId,
    State,
}

#[derive(DeriveIden)]
enum SecurityPolicies {
    Table,
    EnforcedFields,
    OwnMfaRequirement,
    OwnReauthMaxAgeSecs,
    OwnSignInMethods,
}

#[derive(DeriveIden)]
enum OrganizationBranding {
    Table,
    OrganizationId,
    DisplayName,
    LogoUri,
    IconUri,
    PrimaryColor,
    AccentColor,
    MailSenderName,
    EnforcedFields,
    Version,
    UpdateTimeMs,
}

/// `OrganizationKind::Standard` as stored.
const STANDARD: i32 = 1;

#[async_trait::async_trait]
impl MigrationTrait for AddOperators {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let text =
            |c: OrganizationBranding| ColumnDef::new(c).string().not_null().default("").to_owned();
        // SQLite alters one column per statement.
        m.alter_table(
            Table::alter()
                .table(Organizations::Table)
                .add_column(
                    ColumnDef::new(Organizations::Kind)
                        .integer()
                        .not_null()
                        .default(STANDARD),
                )
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Organizations::Table)
                .add_column(
                    ColumnDef::new(Organizations::OperatorId)
                        .string()
                        .not_null()
                        .default(""),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_organizations_operator")
                .table(Organizations::Table)
                .col(Organizations::OperatorId)
                .col(Organizations::State)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(SecurityPolicies::Table)
                .add_column(
                    ColumnDef::new(SecurityPolicies::EnforcedFields)
                        .string()
                        .not_null()
                        .default(""),
                )
                .to_owned(),
        )
        .await?;
        // The own values (ORG-13) beside the columns the previous release reads, which keep the
        // complete policy in force; every existing row's values were its own.
        for (column, big) in [
            (SecurityPolicies::OwnMfaRequirement, false),
            (SecurityPolicies::OwnReauthMaxAgeSecs, true),
            (SecurityPolicies::OwnSignInMethods, false),
        ] {
            let mut def = ColumnDef::new(column);
            if big {
                def.big_integer();
            } else {
                def.integer();
            }
            m.alter_table(
                Table::alter()
                    .table(SecurityPolicies::Table)
                    .add_column(def.not_null().default(0))
                    .to_owned(),
            )
            .await?;
        }
        m.get_connection()
            .execute_unprepared(
                "UPDATE security_policies SET own_mfa_requirement = mfa_requirement, \
                 own_reauth_max_age_secs = reauth_max_age_secs, \
                 own_sign_in_methods = sign_in_methods",
            )
            .await?;
        m.create_table(
            Table::create()
                .table(OrganizationBranding::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(OrganizationBranding::OrganizationId)
                        .string()
                        .not_null()
                        .primary_key(),
                )
                .col(text(OrganizationBranding::DisplayName))
                .col(text(OrganizationBranding::LogoUri))
                .col(text(OrganizationBranding::IconUri))
                .col(text(OrganizationBranding::PrimaryColor))
                .col(text(OrganizationBranding::AccentColor))
                .col(text(OrganizationBranding::MailSenderName))
                .col(text(OrganizationBranding::EnforcedFields))
                .col(
                    ColumnDef::new(OrganizationBranding::Version)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(OrganizationBranding::UpdateTimeMs)
                        .big_integer()
                        .not_null(),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(OrganizationBranding::Table).to_owned())
            .await?;
        m.drop_index(
            Index::drop()
                .name("idx_organizations_operator")
                .table(Organizations::Table)
                .to_owned(),
        )
        .await?;
        for (table, column) in [
            (
                Organizations::Table.into_iden(),
                Organizations::Kind.into_iden(),
            ),
            (
                Organizations::Table.into_iden(),
                Organizations::OperatorId.into_iden(),
            ),
            (
                SecurityPolicies::Table.into_iden(),
                SecurityPolicies::EnforcedFields.into_iden(),
            ),
            (
                SecurityPolicies::Table.into_iden(),
                SecurityPolicies::OwnMfaRequirement.into_iden(),
            ),
            (
                SecurityPolicies::Table.into_iden(),
                SecurityPolicies::OwnReauthMaxAgeSecs.into_iden(),
            ),
            (
                SecurityPolicies::Table.into_iden(),
                SecurityPolicies::OwnSignInMethods.into_iden(),
            ),
        ] {
            m.alter_table(Table::alter().table(table).drop_column(column).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, Database, EntityTrait};
    use sea_orm_migration::MigratorTrait;

    use super::AddOperators;
    use crate::store::migration::Migrator;
    use crate::store::security_policy;
    use sea_orm_migration::MigrationName;

    /// ORG-13 on upgrade: a policy written before this migration was all the organization's own
    /// (MFA REQUIRED stays required), and the complete columns are left as they were.
    #[tokio::test]
    async fn org_13_existing_policies_keep_their_values_as_their_own() {
        let db = Database::connect("sqlite::memory:").await.unwrap();
        let before = Migrator::migrations()
            .iter()
            .position(|m| m.name() == AddOperators.name())
            .unwrap();
        Migrator::up(&db, Some(before as u32)).await.unwrap();
        db.execute_unprepared(
            "INSERT INTO security_policies (organization_id, mfa_requirement, \
             reauth_max_age_secs, sign_in_methods, version, update_time_ms, \
             restrict_invites_to_verified_domains) VALUES ('org_old', 2, 900, 1, 3, 1, false)",
        )
        .await
        .unwrap();
        Migrator::up(&db, None).await.unwrap();
        let row = security_policy::Entity::find_by_id("org_old".to_owned())
            .one(&db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                row.own_mfa_requirement,
                row.own_reauth_max_age_secs,
                row.own_sign_in_methods
            ),
            (2, 900, 1)
        );
        assert_eq!(
            (
                row.mfa_requirement,
                row.reauth_max_age_secs,
                row.sign_in_methods
            ),
            (2, 900, 1)
        );
        assert_eq!(row.enforced_fields, "");
    }
}
