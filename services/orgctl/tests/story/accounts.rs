//! The accounts part of the README story (rules ACC-1 … ACC-5): Olivia's accounts, the compliance
//! default, a subaccount, a grant to Dana and what Dana may do with it.

use crate::support::Orgctl;

/// Runs the accounts commands as Olivia (the current context) and Dana, in organization `org`.
pub fn story(ctl: &Orgctl, org: &str, dana_id: &str) {
    let org = org.to_owned();
    let dana_id = dana_id.to_owned();
    // Accounts (ACC-1 … ACC-5): the compliance default applies to accounts created afterwards,
    // a subaccount takes its parent's designation, Dana sees only what she was granted.
    let first = ctl.json(&["accounts", "create", "Acme Retail"]);
    let first_id = first["account"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        first["account"]["compliance"],
        "COMPLIANCE_DESIGNATION_NONE"
    );
    ctl.ok(&["accounts", "compliance", "set", "hipaa"], None);
    let health = ctl.json(&["accounts", "create", "Acme Health"]);
    let health_id = health["account"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        health["account"]["compliance"],
        "COMPLIANCE_DESIGNATION_HIPAA"
    );
    assert_eq!(
        health["account"]["complianceSource"],
        "COMPLIANCE_SOURCE_ORGANIZATION_DEFAULT"
    );
    let retail = ctl.json(&["accounts", "get", &first_id]);
    assert_eq!(
        retail["account"]["compliance"], "COMPLIANCE_DESIGNATION_NONE",
        "existing accounts keep their designation"
    );
    let sub = ctl.json(&[
        "accounts",
        "subaccounts",
        "create",
        &health_id,
        "Clinic North",
    ]);
    assert_eq!(sub["subaccount"]["parentAccountId"], health_id.as_str());
    assert_eq!(
        sub["subaccount"]["complianceSource"],
        "COMPLIANCE_SOURCE_PARENT"
    );
    let table = ctl.ok(&["accounts", "list"], None);
    assert!(
        table.contains("Acme Retail") && table.contains("HIPAA"),
        "{table}"
    );
    assert!(
        !table.contains("Clinic North"),
        "subaccounts are listed apart: {table}"
    );
    let subs = ctl.ok(&["accounts", "subaccounts", "list", &health_id], None);
    assert!(subs.contains("Clinic North"), "{subs}");
    ctl.ok(&["accounts", "members", "add", &first_id, &dana_id], None);
    let dana_sees = ctl.json(&["--context", "dana", "accounts", "list", "--org", &org]);
    let ids: Vec<&str> = dana_sees
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        vec![first_id.as_str()],
        "Dana sees what she was granted"
    );
    let err = ctl.fails(
        &["--context", "dana", "accounts", "close", &first_id],
        None,
        1,
    );
    assert!(err.contains("INSUFFICIENT_ROLE"), "{err}");
    let err = ctl.fails(&["accounts", "close", &health_id], None, 1);
    assert!(
        err.contains("reason: ACCOUNT_HAS_SUBACCOUNTS") && err.contains("hint:"),
        "{err}"
    );
    let renamed = ctl.json(&["accounts", "update", &first_id, "--name", "Acme Stores"]);
    assert_eq!(renamed["account"]["displayName"], "Acme Stores");
    ctl.fails(&["accounts", "update", &first_id], None, 2);
}
