//! ID-3: password hashing works in memory the pool keeps. A counting global allocator (this
//! binary's only test, so nothing else allocates meanwhile) shows that after warm-up, hashes and
//! verifications through `PasswordHasherPool` allocate next to nothing, while the argon2 crate's
//! own path — the code before the pool (control) — allocates its 19 MiB for every hash.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::System;

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use orgplane_identity::crypto::{OWASP_ITERATIONS, OWASP_MEMORY_KIB, PasswordHasherPool};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const MIB: usize = 1 << 20;
/// Rounds of one hash and one verification running at once.
const ROUNDS: usize = 6;
const PASSWORD: &str = "correct horse battery staple";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_3_hashing_after_warm_up_allocates_no_argon2_memory_control_crate_path_does() {
    let pool = PasswordHasherPool::new(OWASP_MEMORY_KIB, OWASP_ITERATIONS, 2).unwrap();
    // Warm-up: two computations at once make the two areas the bound allows.
    let stored = pool.hash(PASSWORD).await.unwrap();
    let (a, b) = tokio::join!(pool.verify(PASSWORD, &stored), pool.hash(PASSWORD));
    assert!(a.unwrap());
    b.unwrap();
    assert_eq!(pool.memory().areas(), 2);

    let region = Region::new(GLOBAL);
    for _ in 0..ROUNDS {
        let (ok, hashed) = tokio::join!(pool.verify(PASSWORD, &stored), pool.hash(PASSWORD));
        assert!(ok.unwrap());
        hashed.unwrap();
    }
    let pooled = region.change().bytes_allocated;
    assert_eq!(pool.memory().areas(), 2, "no area was added");

    // Control: the crate's own hashing path allocates the whole memory cost each time.
    let params = Params::new(OWASP_MEMORY_KIB, OWASP_ITERATIONS, 1, None).unwrap();
    let salt = SaltString::encode_b64(b"sixteen byte salt").unwrap();
    let region = Region::new(GLOBAL);
    for _ in 0..ROUNDS {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
            .hash_password(PASSWORD.as_bytes(), &salt)
            .unwrap();
    }
    let unpooled = region.change().bytes_allocated;
    println!(
        "{} pooled computations allocated {pooled} bytes; {ROUNDS} crate hashes allocated {} MiB",
        2 * ROUNDS,
        unpooled / MIB
    );
    assert!(
        pooled < MIB,
        "pooled hashing allocated {pooled} bytes for {} computations",
        2 * ROUNDS
    );
    assert!(
        unpooled >= ROUNDS * 19 * MIB,
        "the control should allocate >= 19 MiB per hash: {unpooled} bytes"
    );
}
