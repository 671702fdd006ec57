//! The rules of verified domains (rule ORG-14), free of I/O: what a registrable domain is (IDNA
//! ASCII, no `www.` label, not a public suffix, not a consumer mail domain), the challenge
//! record, a domain's state read at a time, and what a DNS answer means.

use orgplane_platform::error::Reason;
use std::collections::HashSet;

use orgplane_platform::ApiError;
use orgplane_platform::email::canonical_domain;
use orgplane_proto::organization::v1::{DomainCheckOutcome, DomainPolicy, DomainState};

use super::{Error, Result};

/// The most domains one organization may register (ORG-14).
pub const MAX_DOMAINS_PER_ORGANIZATION: u64 = 100;

/// The most TXT values a check keeps, and the most characters of each.
pub const MAX_FOUND_VALUES: usize = 20;
/// See [`MAX_FOUND_VALUES`].
pub const MAX_FOUND_VALUE_CHARS: usize = 255;

/// What the challenge record's value starts with; the token follows.
pub const CHALLENGE_VALUE_PREFIX: &str = "orgplane-domain-verification=";

/// The consumer mail domains vendored from the npm package `free-email-domains` (see
/// `data/consumer-mail-domains.LICENSE`), one per line.
const VENDORED_CONSUMER_DOMAINS: &str = include_str!("../../data/consumer-mail-domains.txt");

/// Consumer mail domains (`gmail.com`, …), which no organization may register: the vendored
/// list plus the operator's additions (`--organization-consumer-mail-domains-file`).
#[derive(Debug, Clone)]
pub struct ConsumerDomains(HashSet<String>);

impl ConsumerDomains {
    /// The vendored list, plus the domains of `extra` (a file's text: one domain per line,
    /// `#` starts a comment, blank lines ignored). An entry that is not a domain name is an
    /// error naming its line.
    pub fn with_additions(extra: &str) -> std::result::Result<Self, String> {
        let mut set: HashSet<String> = parse(VENDORED_CONSUMER_DOMAINS)?;
        set.extend(parse(extra)?);
        Ok(Self(set))
    }

    /// Whether `domain` (IDNA ASCII lower case) is a consumer mail domain.
    pub fn contains(&self, domain: &str) -> bool {
        self.0.contains(domain)
    }

    /// How many domains the list holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the list is empty (never, with the vendored list).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn parse(text: &str) -> std::result::Result<HashSet<String>, String> {
    let mut out = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or_default().trim();
        if entry.is_empty() {
            continue;
        }
        let domain = canonical_domain("domain", entry)
            .map_err(|e| format!("line {}: {entry:?}: {}", i + 1, e.message()))?;
        out.insert(domain);
    }
    Ok(out)
}

/// A domain name to register, canonical (IDNA ASCII lower case), or INVALID_ARGUMENT on
/// `field` with reason `DOMAIN_MALFORMED`, `DOMAIN_WWW_LABEL`, `DOMAIN_PUBLIC_SUFFIX` or
/// `DOMAIN_CONSUMER_MAIL` (ID-15 confusables keep their own reason).
pub fn registrable(field: &str, raw: &str, consumer: &ConsumerDomains) -> Result<String> {
    let domain = canonical_domain(field, raw).map_err(|e| {
        if e.error_reason() == orgplane_platform::email::CONFUSABLE_REASON || raw.trim().is_empty()
        {
            Error::Api(e)
        } else {
            refused(Reason::DomainMalformed, field, "not a valid host name")
        }
    })?;
    if domain.starts_with("www.") {
        return Err(refused(
            Reason::DomainWwwLabel,
            field,
            "register the domain without its `www.` label",
        ));
    }
    if is_public_suffix(&domain) {
        return Err(refused(
            Reason::DomainPublicSuffix,
            field,
            format!("{domain} is a public suffix; register a domain under it"),
        ));
    }
    if consumer.contains(&domain) {
        return Err(refused(
            Reason::DomainConsumerMail,
            field,
            format!("{domain} is a consumer mail domain, which no organization may claim"),
        ));
    }
    Ok(domain)
}

fn refused(reason: Reason, field: &str, why: impl Into<String>) -> Error {
    Error::Api(ApiError::invalid_argument_because(reason, field, why))
}

/// Whether `domain` is itself a public suffix (`co.uk`, `github.io`), by the public suffix
/// list, private section included.
pub fn is_public_suffix(domain: &str) -> bool {
    psl::suffix(domain.as_bytes()).is_some_and(|s| s.as_bytes() == domain.as_bytes())
}

/// A domain policy given by a request: DOMAIN_POLICY_UNSPECIFIED is NONE on create, refused on
/// update.
pub fn policy(field: &str, v: i32, on_create: bool) -> Result<DomainPolicy> {
    match DomainPolicy::try_from(v) {
        Ok(DomainPolicy::Unspecified) if on_create => Ok(DomainPolicy::None),
        Ok(DomainPolicy::Unspecified) => Err(Error::invalid(
            field,
            "required: NONE, RESTRICTED, AUTO_ENROLL or BLOCKED",
        )),
        Ok(p) => Ok(p),
        Err(_) => Err(Error::invalid(field, "unknown policy")),
    }
}

/// Whether a policy is enforcing: one organization per domain (RESTRICTED, AUTO_ENROLL).
pub fn is_enforcing(policy: i32) -> bool {
    policy == DomainPolicy::Restricted as i32 || policy == DomainPolicy::AutoEnroll as i32
}

/// The state of a domain stored as `state`, never verified when `verify_time_ms` is `None`,
/// at `now_ms`: a never verified domain past its expire time is EXPIRED.
pub fn state_at(
    state: i32,
    verify_time_ms: Option<i64>,
    expire_time_ms: i64,
    now_ms: i64,
) -> DomainState {
    let state = DomainState::try_from(state).unwrap_or(DomainState::Unspecified);
    if verify_time_ms.is_none() && state != DomainState::Verified && now_ms >= expire_time_ms {
        DomainState::Expired
    } else {
        state
    }
}

/// The challenge record's value for `token`.
pub fn challenge_value(token: &str) -> String {
    format!("{CHALLENGE_VALUE_PREFIX}{token}")
}

/// The challenge record's name for `domain` under `prefix`.
pub fn challenge_name(prefix: &str, domain: &str) -> String {
    format!("{prefix}.{domain}")
}

/// A new challenge token: 128 random bits from the thread-local CSPRNG (seeded by the operating
/// system), in hex.
pub fn new_token() -> String {
    let bits: u128 = rand::random();
    format!("{bits:032x}")
}

/// What a DNS lookup of the challenge name answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxtAnswer {
    /// The TXT values at the name (each record's strings joined).
    Values(Vec<String>),
    /// The name does not exist, or has no TXT records.
    NoRecords,
    /// The resolver failed or timed out (the reason).
    Failed(String),
}

/// One check's conclusion: its outcome, the values kept, and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What the check concluded.
    pub outcome: DomainCheckOutcome,
    /// The values found (at most [`MAX_FOUND_VALUES`], each cut to [`MAX_FOUND_VALUE_CHARS`]).
    pub found: Vec<String>,
    /// The sentence.
    pub detail: String,
}

/// Judges `answer` for the record `name` that must hold `expected`.
pub fn judge(answer: TxtAnswer, name: &str, expected: &str) -> Check {
    match answer {
        TxtAnswer::Values(values) => {
            let found_it = values.iter().any(|v| v.trim() == expected);
            let found: Vec<String> = values
                .into_iter()
                .take(MAX_FOUND_VALUES)
                .map(|v| v.chars().take(MAX_FOUND_VALUE_CHARS).collect())
                .collect();
            if found_it {
                Check {
                    outcome: DomainCheckOutcome::Found,
                    found,
                    detail: format!("The TXT record at {name} holds the expected value."),
                }
            } else {
                Check {
                    outcome: DomainCheckOutcome::Mismatch,
                    detail: format!(
                        "{name} has {} TXT value(s), none of them {expected:?}; publish that value \
                         (other TXT records may stay) and check again.",
                        found.len()
                    ),
                    found,
                }
            }
        }
        TxtAnswer::NoRecords => Check {
            outcome: DomainCheckOutcome::NotFound,
            found: Vec::new(),
            detail: format!(
                "No TXT record exists at {name}; publish a TXT record there with the value \
                 {expected:?} and check again (DNS changes can take a while to propagate)."
            ),
        },
        TxtAnswer::Failed(why) => Check {
            outcome: DomainCheckOutcome::LookupFailed,
            found: Vec::new(),
            detail: format!("The DNS lookup of {name} failed ({why}); try again later."),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_14_registrable_domains_are_canonical_and_refused_with_distinct_reasons() {
        let consumer =
            ConsumerDomains::with_additions("# ours\nmail.acme-consumer.test\n").unwrap();
        assert_eq!(
            registrable("d", " Bücher.Example ", &consumer).unwrap(),
            "xn--bcher-kva.example"
        );
        let reason = |raw: &str| match registrable("d", raw, &consumer) {
            Err(e) => orgplane_platform::ApiError::from(e).reason().to_owned(),
            Ok(d) => format!("ok {d}"),
        };
        assert_eq!(reason("www.acme.com"), "DOMAIN_WWW_LABEL");
        assert_eq!(reason("co.uk"), "DOMAIN_PUBLIC_SUFFIX");
        assert_eq!(reason("github.io"), "DOMAIN_PUBLIC_SUFFIX");
        assert_eq!(reason("gmail.com"), "DOMAIN_CONSUMER_MAIL");
        assert_eq!(reason("mail.acme-consumer.test"), "DOMAIN_CONSUMER_MAIL");
        assert_eq!(reason("not a domain"), "DOMAIN_MALFORMED");
        assert_eq!(reason("acme.co.uk"), "ok acme.co.uk");
        assert!(ConsumerDomains::with_additions("bad domain\n").is_err());
    }

    #[test]
    fn org_14_a_never_verified_domain_expires_a_verified_one_does_not() {
        let pending = DomainState::Pending as i32;
        assert_eq!(state_at(pending, None, 10, 9), DomainState::Pending);
        assert_eq!(state_at(pending, None, 10, 10), DomainState::Expired);
        let failed = DomainState::Failed as i32;
        assert_eq!(state_at(failed, Some(1), 10, 11), DomainState::Failed);
    }

    #[test]
    fn org_14_checks_judge_found_mismatch_and_cap_values() {
        let many: Vec<String> = (0..30).map(|i| format!("{i}{}", "x".repeat(300))).collect();
        let c = judge(TxtAnswer::Values(many), "n", "v");
        assert_eq!(c.outcome, DomainCheckOutcome::Mismatch);
        assert_eq!(c.found.len(), MAX_FOUND_VALUES);
        assert!(
            c.found
                .iter()
                .all(|v| v.chars().count() == MAX_FOUND_VALUE_CHARS)
        );
        let c = judge(TxtAnswer::Values(vec!["a".into(), "v".into()]), "n", "v");
        assert_eq!(c.outcome, DomainCheckOutcome::Found);
        assert_eq!(
            judge(TxtAnswer::NoRecords, "n", "v").outcome,
            DomainCheckOutcome::NotFound
        );
        assert_ne!(new_token(), new_token());
        assert_eq!(new_token().len(), 32);
    }
}
