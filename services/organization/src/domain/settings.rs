//! Settings resolved per field (rule ORG-13): an organization's branding and security policy
//! fields each take the organization's own value, else its operator's, else the system default;
//! a field the operator ENFORCED takes the operator's value (or the system default when the
//! operator left it unset) whatever the child set. Pure: the use cases turn stored rows into
//! [`Own`] layers and the answer back into messages.

use std::collections::BTreeSet;

use super::{Error, Result};

/// The branding fields, in the order of [`Own::values`] for branding (the `Branding` message's
/// field names).
pub const BRANDING_FIELDS: [&str; 6] = [
    "display_name",
    "logo_uri",
    "icon_uri",
    "primary_color",
    "accent_color",
    "mail_sender_name",
];

/// The inherited security-policy fields, in the order of [`Own::values`] for a policy (the
/// `SecurityPolicy` message's field names).
pub const POLICY_FIELDS: [&str; 3] = [
    "mfa_requirement",
    "reauthentication_max_age",
    "allowed_sign_in_methods",
];

/// Where a value in force came from (`SettingSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The deployment's default.
    System,
    /// The operator's value.
    Operator,
    /// The organization's own value.
    Organization,
}

/// One organization's own layer of a group of fields: per field its value (`None`: inherit) and,
/// for an operator, whether it ENFORCED the field for its children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Own<V> {
    /// Per field (in the group's field order), the organization's own value.
    pub values: Vec<Option<V>>,
    /// Per field, whether an operator locks it for its children.
    pub enforced: Vec<bool>,
}

impl<V> Own<V> {
    /// A layer that sets nothing and enforces nothing, for a group of `n` fields.
    pub fn empty(n: usize) -> Self {
        Self {
            values: (0..n).map(|_| None).collect(),
            enforced: vec![false; n],
        }
    }
}

/// One field's value in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved<V> {
    /// The value.
    pub value: V,
    /// Where it came from.
    pub source: Source,
    /// Whether the operator ENFORCED it (the organization cannot override it).
    pub enforced: bool,
}

/// Resolves every field of a group: `own` is the organization's layer, `operator` its operator's
/// (`None` for an organization without one), `system` the defaults (one per field).
pub fn resolve<V: Clone>(
    own: &Own<V>,
    operator: Option<&Own<V>>,
    system: &[V],
) -> Vec<Resolved<V>> {
    system
        .iter()
        .enumerate()
        .map(|(i, default)| {
            let from_operator = operator.and_then(|o| o.values.get(i).cloned().flatten());
            let enforced = operator.is_some_and(|o| o.enforced.get(i).copied().unwrap_or(false));
            let own_value = own.values.get(i).cloned().flatten();
            let (value, source) = match (enforced, own_value, from_operator) {
                (true, _, Some(v)) => (v, Source::Operator),
                (true, _, None) => (default.clone(), Source::System),
                (false, Some(v), _) => (v, Source::Organization),
                (false, None, Some(v)) => (v, Source::Operator),
                (false, None, None) => (default.clone(), Source::System),
            };
            Resolved {
                value,
                source,
                enforced,
            }
        })
        .collect()
}

/// FAILED_PRECONDITION `SETTING_ENFORCED_BY_OPERATOR` when a change to `fields` (names of the
/// group `names`) touches one the operator ENFORCED.
pub fn require_not_enforced(
    names: &[&str],
    operator: Option<(&str, &Own<impl Clone>)>,
    fields: &[String],
) -> Result<()> {
    let Some((operator_id, layer)) = operator else {
        return Ok(());
    };
    for field in fields {
        let locked = names
            .iter()
            .position(|n| n == field)
            .is_some_and(|i| layer.enforced.get(i).copied().unwrap_or(false));
        if locked {
            return Err(Error::SettingEnforcedByOperator {
                field: field.clone(),
                operator_organization_id: operator_id.to_owned(),
            });
        }
    }
    Ok(())
}

/// The ENFORCED flags of a group as stored: a comma-separated list of field names.
pub fn enforced_from_stored(names: &[&str], stored: &str) -> Vec<bool> {
    let set: BTreeSet<&str> = stored.split(',').filter(|s| !s.is_empty()).collect();
    names.iter().map(|n| set.contains(n)).collect()
}

/// The stored form of ENFORCED flags.
pub fn enforced_to_stored(names: &[&str], enforced: &[bool]) -> String {
    names
        .iter()
        .zip(enforced)
        .filter(|(_, e)| **e)
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(",")
}

/// The field names an operator lists as ENFORCED, as flags; INVALID_ARGUMENT on an unknown or
/// repeated name (`field` names the request field).
pub fn enforced_from_request(names: &[&str], field: &str, given: &[String]) -> Result<Vec<bool>> {
    let mut flags = vec![false; names.len()];
    for g in given {
        let Some(i) = names.iter().position(|n| n == g) else {
            return Err(Error::invalid(
                field,
                format!(
                    "`{g}` is not a field children inherit; one of {}",
                    names.join(", ")
                ),
            ));
        };
        if flags[i] {
            return Err(Error::invalid(field, format!("`{g}` is listed twice")));
        }
        flags[i] = true;
    }
    Ok(flags)
}

/// The request's form of ENFORCED flags: the field names, in field order.
pub fn enforced_names(names: &[&str], enforced: &[bool]) -> Vec<String> {
    names
        .iter()
        .zip(enforced)
        .filter(|(_, e)| **e)
        .map(|(n, _)| (*n).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// One step of a random settings history.
    #[derive(Debug, Clone)]
    enum Step {
        ChildSets(usize, u8),
        ChildClears(usize),
        OperatorSets(usize, u8),
        OperatorClears(usize),
        OperatorEnforces(usize, bool),
        /// A child's change to a field: refused while the operator enforces it.
        ChildTriesEnforced(usize, u8),
    }

    fn random_step(rng: &mut StdRng, n: usize) -> Step {
        let f = rng.random_range(0..n);
        let v = rng.random_range(0..4u8);
        match rng.random_range(0..6) {
            0 => Step::ChildSets(f, v),
            1 => Step::ChildClears(f),
            2 => Step::OperatorSets(f, v),
            3 => Step::OperatorClears(f),
            4 => Step::OperatorEnforces(f, rng.random_bool(0.5)),
            _ => Step::ChildTriesEnforced(f, v),
        }
    }

    /// ORG-13: over random operator/child histories, the value in force is the nearest explicit
    /// value (child, then operator, then system) unless the operator ENFORCED the field, in which
    /// case it is the operator's (or the system's); the source and lock are reported right; and
    /// a child's change to an ENFORCED field is refused and changes nothing.
    #[test]
    fn org_13_effective_value_is_the_nearest_explicit_one_unless_enforced() {
        let n = BRANDING_FIELDS.len();
        let system: Vec<u8> = (0..n as u8).map(|i| 100 + i).collect();
        for seed in 0..2_000u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut child = Own::<u8>::empty(n);
            let mut operator = Own::<u8>::empty(n);
            let steps = rng.random_range(1..40);
            for _ in 0..steps {
                match random_step(&mut rng, n) {
                    Step::ChildSets(f, v) | Step::ChildTriesEnforced(f, v) => {
                        let fields = vec![BRANDING_FIELDS[f].to_owned()];
                        let before = child.clone();
                        match require_not_enforced(
                            &BRANDING_FIELDS,
                            Some(("org_op", &operator)),
                            &fields,
                        ) {
                            Ok(()) => child.values[f] = Some(v),
                            Err(e) => {
                                assert!(operator.enforced[f], "seed {seed}: refused unlocked");
                                assert!(matches!(e, Error::SettingEnforcedByOperator { .. }));
                                assert_eq!(child, before);
                            }
                        }
                    }
                    Step::ChildClears(f) => {
                        if !operator.enforced[f] {
                            child.values[f] = None;
                        }
                    }
                    Step::OperatorSets(f, v) => operator.values[f] = Some(v),
                    Step::OperatorClears(f) => operator.values[f] = None,
                    Step::OperatorEnforces(f, on) => operator.enforced[f] = on,
                }
                let got = resolve(&child, Some(&operator), &system);
                for f in 0..n {
                    let r = &got[f];
                    assert_eq!(r.enforced, operator.enforced[f], "seed {seed} field {f}");
                    let (want, source) = if operator.enforced[f] {
                        match operator.values[f] {
                            Some(v) => (v, Source::Operator),
                            None => (system[f], Source::System),
                        }
                    } else if let Some(v) = child.values[f] {
                        (v, Source::Organization)
                    } else if let Some(v) = operator.values[f] {
                        (v, Source::Operator)
                    } else {
                        (system[f], Source::System)
                    };
                    assert_eq!((r.value, r.source), (want, source), "seed {seed} field {f}");
                }
                // The operator itself answers its own values, never locked.
                for (f, r) in resolve(&operator, None, &system).iter().enumerate() {
                    assert!(!r.enforced);
                    match operator.values[f] {
                        Some(v) => assert_eq!((r.value, r.source), (v, Source::Organization)),
                        None => assert_eq!((r.value, r.source), (system[f], Source::System)),
                    }
                }
            }
        }
    }

    #[test]
    fn org_13_enforced_flags_round_trip_and_refuse_unknown_or_repeated_names() {
        let flags = enforced_from_request(
            &POLICY_FIELDS,
            "security_policy.enforced_fields",
            &["allowed_sign_in_methods".into(), "mfa_requirement".into()],
        )
        .unwrap();
        assert_eq!(flags, vec![true, false, true]);
        let stored = enforced_to_stored(&POLICY_FIELDS, &flags);
        assert_eq!(stored, "mfa_requirement,allowed_sign_in_methods");
        assert_eq!(enforced_from_stored(&POLICY_FIELDS, &stored), flags);
        assert_eq!(enforced_from_stored(&POLICY_FIELDS, ""), vec![false; 3]);
        assert_eq!(
            enforced_names(&POLICY_FIELDS, &flags),
            vec!["mfa_requirement", "allowed_sign_in_methods"]
        );
        for bad in [
            vec!["restrict_invites_to_verified_domains".to_owned()],
            vec!["mfa_requirement".into(), "mfa_requirement".into()],
            vec![String::new()],
        ] {
            assert!(matches!(
                enforced_from_request(&POLICY_FIELDS, "f", &bad),
                Err(Error::Invalid { .. })
            ));
        }
    }
}
