//! Rule ID-15: the canonical form of addresses and domains.

use super::*;

fn key(raw: &str) -> String {
    canonical_email("email", raw)
        .map(|e| e.key)
        .unwrap_or_default()
}

#[test]
fn id_15_domain_is_idna_ascii_lower_case_and_local_ascii_letters_lower_cased() {
    let e = canonical_email("email", "  Ada.Lovelace@Bücher.Example ").unwrap_or_else(|e| {
        panic!("valid address refused: {e:?}");
    });
    assert_eq!(e.address, "Ada.Lovelace@xn--bcher-kva.example");
    assert_eq!(e.key, "ada.lovelace@xn--bcher-kva.example");
    assert_eq!(e.domain, "xn--bcher-kva.example");
    assert_eq!(key("ADA@EXAMPLE.COM"), key("ada@example.com"));
}

#[test]
fn id_15_local_part_is_nfc_so_composed_and_decomposed_spellings_meet() {
    // "é" precomposed (U+00E9) and as "e" + COMBINING ACUTE ACCENT (U+0301).
    assert_eq!(key("caf\u{e9}@example.com"), key("cafe\u{301}@example.com"));
    assert!(!key("caf\u{e9}@example.com").is_empty());
}

#[test]
fn id_15_characters_that_fold_to_ascii_are_refused() {
    for raw in [
        "\u{212a}elvin@example.com",   // KELVIN SIGN folds to k
        "\u{ff41}da@example.com",      // FULLWIDTH LATIN SMALL LETTER A
        "ada@\u{ff45}xample.com",      // fullwidth in the domain
        "\u{1d41a}da@example.com",     // MATHEMATICAL BOLD SMALL A
        "ada\u{2460}@example.com",     // CIRCLED DIGIT ONE
        "\u{017f}ecurity@example.com", // LATIN SMALL LETTER LONG S upper-cases to S
    ] {
        let err = canonical_email("email", raw).err();
        assert_eq!(
            err.as_ref().map(ApiError::reason),
            Some(CONFUSABLE_REASON.as_str_name()),
            "{raw:?} was not refused as confusable"
        );
    }
    // Letters with no ASCII fold stay valid.
    assert!(canonical_email("email", "\u{0431}\u{043e}\u{0440}\u{044f}@example.com").is_ok());
}

#[test]
fn malformed_addresses_and_domains_are_refused() {
    for raw in [
        "",
        "no-at-sign",
        "@example.com",
        "ada@",
        "ada@localhost",
        "ada@example..com",
        "ada@-example.com",
        "ada@example.com.",
        "a b@example.com",
        "ada@exa_mple.com",
        "ada@1.2.3.4",
    ] {
        assert!(canonical_email("email", raw).is_err(), "{raw:?} accepted");
    }
    let long_local = format!("{}@example.com", "a".repeat(65));
    assert!(canonical_email("email", &long_local).is_err());
}

#[test]
fn domains_take_the_same_canonical_form_as_addresses() {
    assert_eq!(
        canonical_domain("domain", "Bücher.EXAMPLE").ok().as_deref(),
        Some("xn--bcher-kva.example")
    );
    assert_eq!(
        canonical_domain("domain", "Bücher.EXAMPLE").ok().as_deref(),
        canonical_email("e", "x@bücher.example")
            .ok()
            .as_ref()
            .map(|e| e.domain.as_str())
    );
    assert!(canonical_domain("domain", "example").is_err());
    assert!(canonical_domain("domain", "exa mple.com").is_err());
    assert_eq!(domain_of("ada@example.com"), "example.com");
}
