//! Rule ID-14: the filter language — grammar, limits, evaluation — and a fuzz run.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::super::ResourceKind;
use super::*;

fn user() -> Value {
    json!({
        "schemas": [USER_SCHEMA, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "id": "usr_AbC123",
        "externalId": "Ext-42",
        "userName": "Bjensen@Example.com",
        "name": { "familyName": "Jensen", "givenName": "Barbara" },
        "displayName": "Babs Jensen",
        "active": true,
        "emails": [
            { "value": "bjensen@example.com", "type": "work", "primary": true },
            { "value": "babs@jensen.org", "type": "home" }
        ],
        "meta": {
            "resourceType": "User",
            "created": "2011-08-01T18:29:49.793Z",
            "lastModified": "2011-08-01T21:32:44.882Z",
            "version": "W/\"3\""
        },
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
            "employeeNumber": "701984",
            "department": "Tour Operations",
            "manager": { "value": "usr_boss", "displayName": "John Smith" }
        }
    })
}

fn group() -> Value {
    json!({
        "schemas": [GROUP_SCHEMA],
        "id": "grp_1",
        "displayName": "Engineering",
        "members": [{ "value": "usr_AbC123", "display": "Babs" }]
    })
}

fn matches(filter: &str) -> bool {
    match parse(filter) {
        Ok(f) => f.matches(&user()),
        Err(e) => panic!("{filter:?} did not parse: {e:?}"),
    }
}

fn refused(filter: &str) -> String {
    match parse(filter) {
        Ok(f) => panic!("{filter:?} parsed: {f:?}"),
        Err(e) => {
            assert_eq!(e.status.as_u16(), 400, "{filter:?}");
            assert_eq!(e.scim_type, Some("invalidFilter"), "{filter:?}");
            e.detail
        }
    }
}

#[test]
fn id_14_filter_operators_on_strings_ignore_case_unless_case_exact() {
    assert!(matches("userName eq \"bjensen@example.com\""));
    assert!(matches("USERNAME Eq \"BJENSEN@EXAMPLE.COM\""));
    assert!(matches("userName co \"jensen\""));
    assert!(matches("userName sw \"BJ\""));
    assert!(matches("userName ew \".COM\""));
    assert!(matches("userName ne \"other@example.com\""));
    assert!(!matches("userName ne \"bjensen@example.com\""));
    // id, externalId and meta.* are caseExact.
    assert!(matches("id eq \"usr_AbC123\""));
    assert!(!matches("id eq \"usr_abc123\""));
    assert!(matches("externalId eq \"Ext-42\""));
    assert!(!matches("externalId eq \"ext-42\""));
    assert!(!matches("meta.resourceType eq \"user\""));
    assert!(matches("meta.resourceType eq \"User\""));
    // Group members' value is caseExact too.
    let g = parse("members[value eq \"usr_abc123\"]").map(|f| f.matches(&group()));
    assert_eq!(g, Ok(false));
    let g = parse("members[value eq \"usr_AbC123\"]").map(|f| f.matches(&group()));
    assert_eq!(g, Ok(true));
    let g = parse("displayName eq \"engineering\"").map(|f| f.matches(&group()));
    assert_eq!(g, Ok(true));
}

#[test]
fn id_14_filter_urn_paths_sub_attributes_and_extension() {
    assert!(matches(
        "urn:ietf:params:scim:schemas:core:2.0:User:userName sw \"bjensen\""
    ));
    assert!(matches("name.familyName eq \"jensen\""));
    assert!(matches(
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq \"701984\""
    ));
    assert!(matches(
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq \"usr_boss\""
    ));
    // An unqualified extension attribute is found in the extension.
    assert!(matches("department co \"tour\""));
    // A URN the resource does not have matches nothing.
    assert!(!matches("urn:example:params:custom:1.0:Thing:userName pr"));
}

#[test]
fn id_14_filter_precedence_not_and_grouping() {
    // and binds tighter than or: false and false or true = true.
    assert!(matches(
        "userName eq \"x\" and active eq false or displayName co \"babs\""
    ));
    // with grouping: false and (false or true) = false.
    assert!(!matches(
        "userName eq \"x\" and (active eq false or displayName co \"babs\")"
    ));
    assert!(matches("not (userName eq \"x\")"));
    assert!(!matches("NOT (userName pr)"));
    assert!(matches("((((active eq true))))"));
    assert!(matches(
        "active eq true AND title pr OR name.givenName eq \"barbara\""
    ));
}

#[test]
fn id_14_filter_multi_valued_and_value_filters() {
    assert!(matches("emails co \"jensen.org\""));
    assert!(matches("emails.value ew \"jensen.org\""));
    assert!(matches("emails.type eq \"home\""));
    assert!(matches(
        "emails[type eq \"work\" and value co \"@example.com\"]"
    ));
    assert!(!matches(
        "emails[type eq \"home\" and value co \"@example.com\"]"
    ));
    assert!(matches("emails[not (type eq \"work\")]"));
    assert!(matches("emails[primary eq true] and userName pr"));
    assert!(!matches("emails.type ne \"home\""));
}

#[test]
fn id_14_filter_presence_dates_numbers_booleans_null() {
    assert!(!matches("title pr"));
    assert!(matches("name pr"));
    assert!(matches("emails pr"));
    let empty = json!({"schemas": [USER_SCHEMA], "title": "", "emails": [], "name": {}});
    for f in ["title pr", "emails pr", "name pr"] {
        assert_eq!(parse(f).map(|p| p.matches(&empty)), Ok(false), "{f}");
    }
    assert!(matches("meta.lastModified gt \"2011-05-13T04:42:34Z\""));
    assert!(matches(
        "meta.lastModified lt \"2011-08-01T23:32:45+02:00\""
    ));
    assert!(!matches("meta.lastModified ge \"2011-08-01T21:32:45Z\""));
    assert!(matches("meta.created eq \"2011-08-01T20:29:49.793+02:00\""));
    assert!(matches("active eq true"));
    assert!(!matches("active eq false"));
    assert!(matches("title eq null"));
    assert!(!matches("userName eq null"));
    let counted = json!({"schemas": [USER_SCHEMA], "n": 5});
    assert_eq!(parse("n gt 4.5").map(|f| f.matches(&counted)), Ok(true));
    assert_eq!(parse("n le -1e2").map(|f| f.matches(&counted)), Ok(false));
}

#[test]
fn id_14_filter_strings_use_json_escapes() {
    let doc = json!({"schemas": [USER_SCHEMA], "displayName": "Quote \" and \\ and é"});
    let f = parse(r#"displayName eq "quote \" and \\ and \u00e9""#);
    assert_eq!(f.map(|f| f.matches(&doc)), Ok(true));
    refused(r#"displayName eq "bad \x escape""#);
    refused("displayName eq \"unterminated");
}

#[test]
fn id_14_filter_malformed_input_is_invalid_filter_with_offset() {
    let detail = refused("userName eq");
    assert!(detail.contains("byte 11"), "{detail}");
    let detail = refused("userName xx \"a\"");
    assert!(
        detail.contains("byte 9") && detail.contains("xx"),
        "{detail}"
    );
    for bad in [
        "",
        "   ",
        "userName",
        "userName eq \"a\" and",
        "(userName pr",
        "userName pr)",
        "not userName pr",
        "emails[type eq \"work\"",
        "emails[type eq \"work\"].value eq \"x\"",
        "emails[type[value pr]]",
        "name.givenName[value pr]",
        "userName eq bareword",
        "userName eq \"a\" \"b\"",
        "a.b.c pr",
        "1abc pr",
        "userName eq 01x",
        "userName # \"a\"",
        "urn:ietf:params:scim:schemas:core:2.0:User pr",
        "active gt true",
        "active gt \"x\"",
        "userName co 5",
        "userName lt null",
        "name gt \"x\"",
        "userName eq 1e999",
    ] {
        refused(bad);
    }
}

#[test]
fn id_14_filter_limits_length_depth_terms() {
    let long = format!("userName eq \"{}\"", "a".repeat(MAX_FILTER_BYTES));
    assert!(refused(&long).contains("4096"));
    let ok_depth = format!(
        "{}userName pr{}",
        "(".repeat(MAX_FILTER_DEPTH),
        ")".repeat(MAX_FILTER_DEPTH)
    );
    assert!(parse(&ok_depth).is_ok());
    let too_deep = format!(
        "{}userName pr{}",
        "(".repeat(MAX_FILTER_DEPTH + 1),
        ")".repeat(MAX_FILTER_DEPTH + 1)
    );
    assert!(refused(&too_deep).contains("deeper"));
    let nots = format!("{}userName pr{}", "not (".repeat(40), ")".repeat(40));
    assert!(refused(&nots).contains("deeper"));
    let terms = |n: usize| vec!["a pr"; n].join(" or ");
    assert!(parse(&terms(MAX_FILTER_TERMS)).is_ok());
    assert!(refused(&terms(MAX_FILTER_TERMS + 1)).contains("terms"));
}

#[test]
fn id_14_filter_equality_on_is_only_a_whole_equality() {
    let f = parse("userName eq \"Bjensen@Example.com\"").ok();
    assert_eq!(
        f.as_ref().and_then(|f| f.equality_on("username")),
        Some("Bjensen@Example.com")
    );
    assert_eq!(f.as_ref().and_then(|f| f.equality_on("externalId")), None);
    let f = parse("urn:ietf:params:scim:schemas:core:2.0:User:externalId eq \"e1\"").ok();
    assert_eq!(
        f.as_ref().and_then(|f| f.equality_on("externalId")),
        Some("e1")
    );
    for other in [
        "userName ne \"a\"",
        "userName eq \"a\" or userName eq \"b\"",
        "userName eq \"a\" and active eq true",
        "not (userName eq \"a\")",
        "name.userName eq \"a\"",
        "userName eq 1",
    ] {
        let f = parse(other).ok();
        assert_eq!(
            f.as_ref().and_then(|f| f.equality_on("userName")),
            None,
            "{other}"
        );
    }
}

#[test]
fn id_14_filter_patch_paths() {
    let p = parse_patch_path("emails[type eq \"work\"].value");
    let p = p.as_ref().ok();
    assert_eq!(p.map(|p| p.path.attr.as_str()), Some("emails"));
    assert_eq!(p.and_then(|p| p.path.sub.as_deref()), Some("value"));
    assert!(p.is_some_and(|p| p.filter.is_some()));
    let p = parse_patch_path(
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
    );
    let p = p.as_ref().ok();
    assert_eq!(
        p.and_then(|p| p.path.urn.as_deref()),
        Some(super::super::ENTERPRISE_USER_SCHEMA)
    );
    assert_eq!(p.map(|p| p.path.attr.as_str()), Some("manager"));
    let p = parse_patch_path("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User");
    assert!(p.is_ok_and(|p| p.path.is_extension_root()));
    for bad in [
        "",
        "emails[",
        "emails[type eq \"work\"]value",
        "emails[type eq \"work\"].",
        "a b",
        "members[value eq \"x\"].value.x",
    ] {
        let err = parse_patch_path(bad).err();
        assert_eq!(
            err.map(|e| e.scim_type),
            Some(Some("invalidPath")),
            "{bad:?}"
        );
    }
}

// --- fuzzing -----------------------------------------------------------------------------

const ATTRS: &[&str] = &[
    "userName",
    "name.familyName",
    "emails",
    "emails.value",
    "active",
    "meta.lastModified",
    "id",
    "externalId",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
    "urn:ietf:params:scim:schemas:core:2.0:User:userName",
    "members.value",
    "x",
];
const OPS: &[&str] = &[
    "eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le", "EQ", "Pr",
];
const VALUES: &[&str] = &[
    "\"bjensen\"",
    "\"\"",
    "\"2011-05-13T04:42:34Z\"",
    "\"\\u00e9\\n\\\"\"",
    "true",
    "false",
    "null",
    "42",
    "-1.5e3",
];

fn gen_filter(rng: &mut StdRng, depth: usize, in_value: bool) -> String {
    let choice = if depth > 6 { 0 } else { rng.random_range(0..7) };
    match choice {
        0 | 1 => {
            let attr = ATTRS[rng.random_range(0..ATTRS.len())];
            let op = OPS[rng.random_range(0..OPS.len())];
            if op.eq_ignore_ascii_case("pr") {
                format!("{attr} {op}")
            } else {
                format!("{attr} {op} {}", VALUES[rng.random_range(0..VALUES.len())])
            }
        }
        2 => format!(
            "{} and {}",
            gen_filter(rng, depth + 1, in_value),
            gen_filter(rng, depth + 1, in_value)
        ),
        3 => format!(
            "{} OR {}",
            gen_filter(rng, depth + 1, in_value),
            gen_filter(rng, depth + 1, in_value)
        ),
        4 => format!("not ({})", gen_filter(rng, depth + 1, in_value)),
        5 => format!("({})", gen_filter(rng, depth + 1, in_value)),
        _ if !in_value => format!("emails[{}]", gen_filter(rng, depth + 1, true)),
        _ => "type eq \"work\"".to_owned(),
    }
}

fn mutate(rng: &mut StdRng, input: &str) -> Vec<u8> {
    let mut bytes = input.as_bytes().to_vec();
    const INTERESTING: &[u8] = b"()[]\"\\. :-$_aeEnotr0123456789\x00\xff\xc3\xa9";
    for _ in 0..rng.random_range(1..6) {
        let op = rng.random_range(0..5);
        let at = if bytes.is_empty() {
            0
        } else {
            rng.random_range(0..bytes.len())
        };
        match op {
            0 if !bytes.is_empty() => {
                bytes.remove(at);
            }
            1 => bytes.insert(at, INTERESTING[rng.random_range(0..INTERESTING.len())]),
            2 if !bytes.is_empty() => bytes[at] = rng.random(),
            3 if !bytes.is_empty() => {
                let end = rng.random_range(at..bytes.len());
                let chunk = bytes[at..=end].to_vec();
                let to = rng.random_range(0..=bytes.len());
                bytes.splice(to..to, chunk);
            }
            _ => bytes.truncate(at),
        }
    }
    bytes
}

fn check_one(input: &str, docs: &[Value], parsed: &mut usize) {
    match parse(input) {
        Ok(f) => {
            *parsed += 1;
            for doc in docs {
                let _ = f.matches(doc);
                let _ = f.matches_as(doc, ResourceKind::Group);
            }
            let _ = f.equality_on("userName");
        }
        Err(e) => {
            assert_eq!(e.status.as_u16(), 400, "{input:?}");
            assert_eq!(e.scim_type, Some("invalidFilter"), "{input:?}");
        }
    }
    let _ = parse_patch_path(input);
}

#[test]
fn id_14_filter_fuzz_no_panic_only_ok_or_invalid_filter() {
    let mut rng = StdRng::seed_from_u64(0x5c1a_f11e);
    let docs = [
        user(),
        group(),
        json!({}),
        json!({"emails": "x", "name": [1, {"value": null}]}),
    ];
    let (mut total, mut parsed) = (0usize, 0usize);
    while total < 210_000 {
        let valid = gen_filter(&mut rng, 0, false);
        check_one(&valid, &docs, &mut parsed);
        total += 1;
        for _ in 0..3 {
            let bytes = mutate(&mut rng, &valid);
            let text = String::from_utf8_lossy(&bytes);
            check_one(&text, &docs, &mut parsed);
            total += 1;
        }
        if total % 20 == 0 {
            let len = rng.random_range(0..40);
            let random: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            check_one(&String::from_utf8_lossy(&random), &docs, &mut parsed);
            total += 1;
        }
    }
    // The generator must exercise the evaluator, and mutation must reach the error paths.
    assert!(
        parsed > total / 10,
        "only {parsed} of {total} inputs parsed"
    );
    assert!(parsed < total, "no input was refused");
}
