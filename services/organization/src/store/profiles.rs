//! `user_profiles`: the latest display name and email identity published for each user
//! (`UserProfileChanged`), so that members are answered with their names without a call to
//! identity. Identity's events write it (newest wins, in revision order); a user it has no row
//! for yet (an account older than this table) is asked of identity once and filled in only
//! while still absent, so a lookup can never overwrite a newer event. Additive only: the
//! previous release keeps working on the same database during a rolling update.

use std::collections::HashMap;

use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set};
use sea_orm_migration::prelude::*;
use sea_orm_migration::{MigrationTrait, SchemaManager};

use orgplane_platform::schema::text;

/// Rows of `user_profiles`.
pub mod user_profile {
    use sea_orm::entity::prelude::*;

    /// What identity last said about one user.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "user_profiles")]
    pub struct Model {
        /// The user.
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        /// Their display name.
        pub display_name: String,
        /// Their email address as they wrote it.
        pub email: String,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

impl From<&orgplane_platform::clients::identity::UserFacts> for user_profile::Model {
    fn from(u: &orgplane_platform::clients::identity::UserFacts) -> Self {
        Self {
            user_id: u.id.clone(),
            display_name: u.display_name.clone(),
            email: u.email.clone(),
        }
    }
}

/// Users looked up per statement (well under SQLite's bound-parameter limit).
const IDS_PER_STATEMENT: usize = 500;

/// The stored profiles of `ids` (those it has).
pub async fn load<C: ConnectionTrait>(
    db: &C,
    ids: &[String],
) -> Result<HashMap<String, user_profile::Model>, DbErr> {
    let mut found = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(IDS_PER_STATEMENT) {
        let rows = user_profile::Entity::find()
            .filter(user_profile::Column::UserId.is_in(chunk.iter().cloned()))
            .all(db)
            .await?;
        found.extend(rows.into_iter().map(|r| (r.user_id.clone(), r)));
    }
    Ok(found)
}

/// Stores `profile` as the user's latest (an event of identity's, applied in revision order).
pub async fn replace<C: ConnectionTrait>(
    db: &C,
    profile: user_profile::Model,
) -> Result<(), DbErr> {
    user_profile::Entity::insert(user_profile::ActiveModel::from(profile))
        .on_conflict(
            OnConflict::column(user_profile::Column::UserId)
                .update_columns([
                    user_profile::Column::DisplayName,
                    user_profile::Column::Email,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Stores what a lookup of identity answered, for users that still have no row: an event
/// applied meanwhile is newer than the lookup and stays.
pub async fn fill<C: ConnectionTrait>(
    db: &C,
    profiles: Vec<user_profile::Model>,
) -> Result<(), DbErr> {
    if profiles.is_empty() {
        return Ok(());
    }
    user_profile::Entity::insert_many(profiles.into_iter().map(|p| user_profile::ActiveModel {
        user_id: Set(p.user_id),
        display_name: Set(p.display_name),
        email: Set(p.email),
    }))
    .on_conflict(
        OnConflict::column(user_profile::Column::UserId)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// Forgets a deleted user's profile.
pub async fn forget<C: ConnectionTrait>(db: &C, user_id: &str) -> Result<(), DbErr> {
    user_profile::Entity::delete_many()
        .filter(user_profile::Column::UserId.eq(user_id.to_owned()))
        .exec(db)
        .await?;
    Ok(())
}

/// Creates `user_profiles`.
#[derive(Debug, Clone, Copy, Default)]
pub struct AddUserProfiles;

impl MigrationName for AddUserProfiles {
    fn name(&self) -> &str {
        "m20261223_000001_add_user_profiles"
    }
}

#[derive(DeriveIden)]
enum UserProfiles {
    Table,
    UserId,
    DisplayName,
    Email,
}

#[async_trait::async_trait]
impl MigrationTrait for AddUserProfiles {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(UserProfiles::Table)
                .if_not_exists()
                .col(text(UserProfiles::UserId).primary_key())
                .col(text(UserProfiles::DisplayName))
                .col(text(UserProfiles::Email))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(UserProfiles::Table).to_owned())
            .await
    }
}
