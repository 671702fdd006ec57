//! The rig of the merge tests (ORG-15, BILL-6): two organizations seeded with overlapping
//! usage, the event that merges them, and a [`Snapshot`] of everything the usage and cost reports
//! say of an organization, which adds up key by key.

use std::collections::BTreeMap;
use std::str::FromStr;

use orgplane_billing_access::Config;
use orgplane_proto::billing::v1::*;
use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::organization::v1::OrgRole;
use rust_decimal::Decimal;
use sea_orm::entity::prelude::*;

use crate::support::{Rig, account_changed, merged, on_account, ts, usage};

pub const HOUR: i64 = 3_600_000;
pub const DAY: i64 = 86_400_000;
pub const PRIME: &str = "org_p";
pub const CANDIDATE: &str = "org_c";

/// Prices with many decimals, so that an amount changed by a rounding would show.
pub fn prices() -> Config {
    Config {
        price_table: Some(
            r#"{"currency_code":"EUR","models":{
                "m-small":{"input_per_million":"0.15","output_per_million":"0.6"},
                "m-large":{"input_per_million":"12.3456789","output_per_million":"0.000001"}}}"#
                .into(),
        ),
    }
}

/// Token sums of a report row: input, output, records.
pub type Tokens = (i64, i64, i64);
/// A daily bucket's start and the values of the grouped dimensions.
pub type Key = (i64, Vec<String>);

/// Everything the reports say of one organization over the seeded days.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Usage per day.
    pub usage_total: BTreeMap<Key, Tokens>,
    /// Usage per day, account and subaccount.
    pub usage_by_account: BTreeMap<Key, Tokens>,
    /// Usage per day and workspace.
    pub usage_by_workspace: BTreeMap<Key, Tokens>,
    /// Usage per day and every dimension.
    pub usage_by_everything: BTreeMap<Key, Tokens>,
    /// Cost per day (the bucket's total).
    pub cost_total: BTreeMap<Key, Decimal>,
    /// Cost per day, account and subaccount.
    pub cost_by_account: BTreeMap<Key, Decimal>,
    /// Cost per day and workspace (with its name).
    pub cost_by_workspace: BTreeMap<Key, Decimal>,
    /// Cost per day, model and token type.
    pub cost_by_description: BTreeMap<Key, Decimal>,
    /// Tokens per day, model and token type, as the cost report counts them.
    pub tokens_by_description: BTreeMap<Key, Tokens>,
}

fn add<V: Copy + Default>(
    into: &mut BTreeMap<Key, V>,
    from: &BTreeMap<Key, V>,
    plus: impl Fn(V, V) -> V,
) {
    for (k, v) in from {
        let e = into.entry(k.clone()).or_default();
        *e = plus(*e, *v);
    }
}

impl Snapshot {
    /// The two organizations' reports added up, key by key.
    pub fn union(&self, other: &Snapshot) -> Snapshot {
        let mut u = self.clone();
        let tokens = |a: Tokens, b: Tokens| (a.0 + b.0, a.1 + b.1, a.2 + b.2);
        add(&mut u.usage_total, &other.usage_total, tokens);
        add(&mut u.usage_by_account, &other.usage_by_account, tokens);
        add(&mut u.usage_by_workspace, &other.usage_by_workspace, tokens);
        add(
            &mut u.usage_by_everything,
            &other.usage_by_everything,
            tokens,
        );
        add(
            &mut u.tokens_by_description,
            &other.tokens_by_description,
            tokens,
        );
        let money = |a: Decimal, b: Decimal| a + b;
        add(&mut u.cost_total, &other.cost_total, money);
        add(&mut u.cost_by_account, &other.cost_by_account, money);
        add(&mut u.cost_by_workspace, &other.cost_by_workspace, money);
        add(
            &mut u.cost_by_description,
            &other.cost_by_description,
            money,
        );
        u
    }
}

/// Asserts `a == b` field by field, naming the first field that differs.
pub fn assert_same(a: &Snapshot, b: &Snapshot) {
    assert_eq!(a.usage_total, b.usage_total, "usage_total");
    assert_eq!(a.usage_by_account, b.usage_by_account, "usage_by_account");
    assert_eq!(
        a.usage_by_workspace, b.usage_by_workspace,
        "usage_by_workspace"
    );
    assert_eq!(
        a.usage_by_everything, b.usage_by_everything,
        "usage_by_everything"
    );
    assert_eq!(a.cost_total, b.cost_total, "cost_total");
    assert_eq!(a.cost_by_account, b.cost_by_account, "cost_by_account");
    assert_eq!(
        a.cost_by_workspace, b.cost_by_workspace,
        "cost_by_workspace"
    );
    assert_eq!(
        a.cost_by_description, b.cost_by_description,
        "cost_by_description"
    );
    assert_eq!(
        a.tokens_by_description, b.tokens_by_description,
        "tokens_by_description"
    );
    assert_eq!(a, b);
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn start(b: Option<&prost_types::Timestamp>) -> i64 {
    b.map(|t| t.seconds * 1000).unwrap()
}

pub async fn usage_map(
    rig: &Rig,
    org: &str,
    user: &str,
    day: i64,
    group_by: &[UsageDimension],
) -> BTreeMap<Key, Tokens> {
    use UsageDimension as U;
    let report = rig
        .client()
        .get_usage_report(rig.as_user(
            user,
            GetUsageReportRequest {
                organization_id: org.into(),
                start_time: Some(ts(day)),
                end_time: Some(ts(day + 2 * DAY)),
                bucket_width: BucketWidth::OneDay as i32,
                group_by: group_by.iter().map(|d| *d as i32).collect(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(report.next_page_token.is_empty());
    let mut out = BTreeMap::new();
    for b in &report.buckets {
        for r in &b.rows {
            let values = group_by
                .iter()
                .map(|d| match d {
                    U::Workspace => format!("{}|{}", r.workspace_id, r.workspace_name),
                    U::ApiKey => r.api_key_id.clone(),
                    U::Model => r.model.clone(),
                    U::User => r.user_id.clone(),
                    U::Account => r.account_id.clone(),
                    U::Subaccount => r.subaccount_id.clone(),
                    U::Unspecified => String::new(),
                })
                .collect();
            let e: &mut Tokens = out
                .entry((start(b.start_time.as_ref()), values))
                .or_default();
            *e = (
                e.0 + r.input_tokens,
                e.1 + r.output_tokens,
                e.2 + r.record_count,
            );
        }
    }
    out
}

/// A cost report's amounts per row, token counts per row, and totals per day.
type Costs = (
    BTreeMap<Key, Decimal>,
    BTreeMap<Key, Tokens>,
    BTreeMap<Key, Decimal>,
);

async fn cost_map(rig: &Rig, org: &str, user: &str, day: i64, group_by: &[CostDimension]) -> Costs {
    let report = rig
        .client()
        .get_cost_report(rig.as_user(
            user,
            GetCostReportRequest {
                organization_id: org.into(),
                start_time: Some(ts(day)),
                end_time: Some(ts(day + 2 * DAY)),
                group_by: group_by.iter().map(|d| *d as i32).collect(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let (mut rows, mut counts, mut totals) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    for b in &report.buckets {
        let at = start(b.start_time.as_ref());
        totals.insert((at, Vec::new()), dec(&b.total_amount));
        for r in &b.rows {
            let values = vec![
                format!("{}|{}", r.workspace_id, r.workspace_name),
                r.account_id.clone(),
                r.subaccount_id.clone(),
                format!("{}|{}", r.model, r.token_type),
            ];
            *rows.entry((at, values.clone())).or_default() += dec(&r.amount);
            let count: &mut Tokens = counts.entry((at, values)).or_default();
            count.0 += r.token_count;
        }
    }
    (rows, counts, totals)
}

/// What `user` reads in `org`'s usage and cost reports over the seeded days.
pub async fn snapshot(rig: &Rig, org: &str, user: &str, day: i64) -> Snapshot {
    use CostDimension as C;
    use UsageDimension as U;
    let (_, _, cost_total) = cost_map(rig, org, user, day, &[]).await;
    let (description, tokens_by_description, _) =
        cost_map(rig, org, user, day, &[C::Description]).await;
    Snapshot {
        usage_total: usage_map(rig, org, user, day, &[]).await,
        usage_by_account: usage_map(rig, org, user, day, &[U::Account, U::Subaccount]).await,
        usage_by_workspace: usage_map(rig, org, user, day, &[U::Workspace]).await,
        usage_by_everything: usage_map(
            rig,
            org,
            user,
            day,
            &[
                U::Workspace,
                U::ApiKey,
                U::Model,
                U::User,
                U::Account,
                U::Subaccount,
            ],
        )
        .await,
        cost_total,
        cost_by_account: cost_map(rig, org, user, day, &[C::Account, C::Subaccount])
            .await
            .0,
        cost_by_workspace: cost_map(rig, org, user, day, &[C::Workspace]).await.0,
        cost_by_description: description,
        tokens_by_description,
    }
}

/// Both organizations with members, workspaces, accounts and usage; the same idempotency keys in
/// both, and some usage of both in the same minute with the same dimensions (their rollups
/// collide in the prime).
pub async fn seed(rig: &Rig, day: i64) {
    rig.create_org(
        PRIME,
        &[
            ("p_billing", OrgRole::Billing),
            ("p_user", OrgRole::User),
            ("both", OrgRole::Billing),
        ],
    )
    .await;
    rig.create_org(
        CANDIDATE,
        &[
            ("c_user", OrgRole::User),
            ("c_billing", OrgRole::Billing),
            ("both", OrgRole::User),
        ],
    )
    .await;
    rig.create_workspace(PRIME, "ws_p", "Prime").await;
    rig.create_workspace(CANDIDATE, "ws_c1", "Candidate one")
        .await;
    rig.create_workspace(CANDIDATE, "ws_c2", "Candidate two")
        .await;
    rig.org_applied(vec![
        account_changed("acct_p", PRIME, "", None, ""),
        account_changed("acct_c", CANDIDATE, "", None, ""),
        account_changed("acct_cs", CANDIDATE, "acct_c", None, ""),
    ])
    .await;
    let t0 = day + HOUR;
    let rec = |org: &str, key: &str, ws: &str, account: &str, model: &str, tokens, at| {
        on_account(usage(org, key, [ws, "", "", model], tokens, at), account)
    };
    let results = rig
        .record(vec![
            rec(PRIME, "k1", "", "", "m-large", (1_000_000, 3), t0),
            rec(PRIME, "k2", "ws_p", "acct_p", "m-small", (2000, 20), t0),
            rec(PRIME, "k3", "", "", "m-small", (7, 7), day + DAY + 10),
            rec(
                PRIME,
                "k_p",
                "ws_p",
                "",
                "m-large",
                (123_457, 1),
                t0 + 60_000,
            ),
            // Same keys as the prime's; k1 also has the same minute and dimensions.
            rec(CANDIDATE, "k1", "", "", "m-large", (999_999, 5), t0),
            rec(
                CANDIDATE,
                "k2",
                "ws_c1",
                "acct_c",
                "m-small",
                (3000, 30),
                t0,
            ),
            rec(
                CANDIDATE,
                "k3",
                "ws_c2",
                "acct_cs",
                "m-large",
                (11, 13),
                day + DAY,
            ),
            rec(
                CANDIDATE,
                "k_c",
                "ws_c1",
                "acct_cs",
                "m-small",
                (1, 1),
                day + DAY + 20,
            ),
            rec(CANDIDATE, "k_c2", "", "acct_c", "m-large", (77_777, 0), t0),
        ])
        .await;
    assert!(
        results
            .iter()
            .all(|r| r.status == UsageRecordStatus::Accepted as i32),
        "{results:?}"
    );
}

/// The event the organization service publishes for the seeded pair.
pub fn merge_event() -> Payload {
    use OrgRole::{Admin, Billing, Unspecified, User};
    merged(
        PRIME,
        CANDIDATE,
        &[
            ("org_c_owner", OrgRole::Owner, Unspecified, Admin),
            ("c_user", User, Unspecified, User),
            ("c_billing", Billing, Unspecified, Billing),
            ("both", User, Billing, Billing),
        ],
        &["ws_c1", "ws_c2"],
        &["acct_c", "acct_cs"],
    )
}

/// The idempotency keys of `org`'s usage records, in order.
pub async fn record_keys(rig: &Rig, org: &str) -> Vec<String> {
    use orgplane_billing_access::store::entity::usage_record;
    use sea_orm::QueryOrder;
    usage_record::Entity::find()
        .filter(usage_record::Column::OrganizationId.eq(org))
        .order_by_asc(usage_record::Column::IdempotencyKey)
        .all(rig.db())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.idempotency_key)
        .collect()
}
