//! Query pieces the use cases share: keyset pagination and LIKE patterns.

use sea_orm::{ColumnTrait, Condition};

/// `key > k OR (key = k AND id > i)` (or `<` when descending): the keyset condition.
pub fn keyset<C: ColumnTrait, I: ColumnTrait, V>(
    key: C,
    k: V,
    id: I,
    i: String,
    desc: bool,
) -> Condition
where
    V: Into<sea_orm::Value> + Clone,
{
    // The leading `key >= k` (or `<=`) lets the index seek straight to the cursor; the OR alone
    // makes SQLite scan the organization's rows from the start on every page.
    if desc {
        Condition::all().add(key.lte(k.clone())).add(
            Condition::any()
                .add(key.lt(k.clone()))
                .add(Condition::all().add(key.eq(k)).add(id.lt(i))),
        )
    } else {
        Condition::all().add(key.gte(k.clone())).add(
            Condition::any()
                .add(key.gt(k.clone()))
                .add(Condition::all().add(key.eq(k)).add(id.gt(i))),
        )
    }
}

/// `s` escaped for a SQL LIKE pattern with `\` as the escape character.
pub fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A new id `<prefix>_<uuidv7>`: opaque, sorts by creation time.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// Takes the write lock of organization `id`'s row until the transaction ends (an update that
/// changes nothing), so that checks of the form "count, then insert" on the organization's
/// children (the domain limit) cannot interleave on PostgreSQL. SQLite serializes writers anyway.
pub async fn lock_organization<C: sea_orm::ConnectionTrait>(
    conn: &C,
    id: &str,
) -> Result<(), sea_orm::DbErr> {
    use super::organization;
    use sea_orm::{EntityTrait, QueryFilter};
    organization::Entity::update_many()
        .col_expr(
            organization::Column::Version,
            sea_orm::sea_query::Expr::col(organization::Column::Version),
        )
        .filter(organization::Column::Id.eq(id))
        .exec(conn)
        .await?;
    Ok(())
}

/// Takes the write lock of organization `id`'s row, as [`lock_organization`], and says whether
/// the organization is still ACTIVE under it. A membership is written only after this answered
/// true in the same transaction: a merge (ORG-15) or a deletion locks the same row first, so a
/// member never joins an organization that stopped being ACTIVE meanwhile, and a merge's plan,
/// read under the lock, always sees every member that joined before it.
pub async fn lock_active_organization<C: sea_orm::ConnectionTrait>(
    conn: &C,
    id: &str,
) -> Result<bool, sea_orm::DbErr> {
    use super::organization;
    use orgplane_proto::organization::v1::OrganizationState;
    use sea_orm::{EntityTrait, QueryFilter};
    let locked = organization::Entity::update_many()
        .col_expr(
            organization::Column::Version,
            sea_orm::sea_query::Expr::col(organization::Column::Version),
        )
        .filter(organization::Column::Id.eq(id))
        .filter(organization::Column::State.eq(OrganizationState::Active as i32))
        .exec(conn)
        .await?;
    Ok(locked.rows_affected > 0)
}
