//! The service's cryptography in one place: argon2id password hashing off the async workers,
//! random opaque tokens and their digests, the API-key format, sealing signing keys at rest, and
//! constant-time comparison.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use argon2::password_hash::{self, Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use orgplane_platform::error::Reason;
use orgplane_platform::{ApiError, ApiResult};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

pub use crate::domain::validation::{MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS};

/// OWASP's argon2id recommendation: 19 MiB of memory, 2 iterations, 1 lane.
pub const OWASP_MEMORY_KIB: u32 = 19_456;
/// OWASP's argon2id iteration count.
pub const OWASP_ITERATIONS: u32 = 2;

/// Hashes and verifies passwords with argon2id on the blocking pool, at most `permits` at once.
/// A permit is held by the computation itself, not by the request awaiting it: a request
/// cancelled mid-hash (a client deadline) does not free its permit before the hash finishes.
/// Each computation works in one of at most `permits` reusable memory areas ([`Memory`]), so the
/// memory argon2id needs (19 MiB each) is taken once and kept, flat under any burst; the
/// allocator never sees a 19 MiB request again (glibc would keep such freed areas in per-thread
/// arenas, and a burst on many blocking threads left hundreds of MiB resident).
#[derive(Clone)]
pub struct PasswordHasherPool {
    params: Params,
    permits: Arc<Semaphore>,
    bound: usize,
    memory: Arc<Memory>,
    /// argon2id computations running now, and the most ever seen at once.
    computing: Arc<(AtomicUsize, AtomicUsize)>,
    /// argon2id computations started since the pool was made (tests prove a path hashes none).
    runs: Arc<AtomicUsize>,
    /// Computations waiting for a permit (the `orgplane_password_hash_queue_depth` gauge).
    waiting: Arc<AtomicUsize>,
    /// A hash of a random password, verified against for unknown accounts so that their timing
    /// matches that of known ones.
    dummy: Arc<String>,
}

impl std::fmt::Debug for PasswordHasherPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasherPool")
            .field("m_cost", &self.params.m_cost())
            .field("t_cost", &self.params.t_cost())
            .finish_non_exhaustive()
    }
}

/// A computation waiting for a permit, counted until it gets one or is dropped (a caller that
/// went away).
struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    fn enter(waiting: &'a AtomicUsize) -> Self {
        let now = waiting.fetch_add(1, Ordering::SeqCst) + 1;
        orgplane_platform::metrics::record_password_hash_queue(now);
        Self(waiting)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        let now = self.0.fetch_sub(1, Ordering::SeqCst) - 1;
        orgplane_platform::metrics::record_password_hash_queue(now);
    }
}

/// The reusable argon2 memory areas of a [`PasswordHasherPool`]: one per computation running
/// at once (the pool's permits bound them), each of the configured parameters' block count.
#[derive(Debug)]
pub struct Memory {
    blocks: usize,
    free: Mutex<Vec<Vec<Block>>>,
}

impl Memory {
    fn new(blocks: usize) -> Self {
        Self {
            blocks,
            free: Mutex::new(Vec::new()),
        }
    }

    /// Runs `work` with `needed` blocks: a kept area (made on first use), or — for a stored hash
    /// with more memory than configured — a temporary one.
    fn with<T>(&self, needed: usize, work: impl FnOnce(&mut [Block]) -> T) -> T {
        if needed > self.blocks {
            return work(&mut vec![Block::default(); needed]);
        }
        let kept = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut area = kept.unwrap_or_else(|| vec![Block::default(); self.blocks]);
        let out = work(&mut area[..needed]);
        self.free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(area);
        out
    }

    /// How many areas are kept.
    pub fn areas(&self) -> usize {
        self.free.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

fn argon2(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

/// The argon2id PHC string of `password` with a fresh salt, computed in `memory`: the string
/// `PasswordHasher::hash_password` makes.
fn hash_blocking(params: &Params, memory: &Memory, password: &str) -> ApiResult<String> {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(ApiError::internal)?;
    let argon2 = argon2(params);
    let len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let output = memory
        .with(params.block_count(), |blocks| {
            Output::init_with(len, |out| {
                argon2
                    .hash_password_into_with_memory(password.as_bytes(), &salt_bytes, out, blocks)
                    .map_err(password_hash::Error::from)
            })
        })
        .map_err(ApiError::internal)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(ApiError::internal)?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `hash` (any argon2 variant, version and
/// parameters it names), computed in `memory`: what `PasswordVerifier::verify_password` decides.
fn verify_blocking(memory: &Memory, password: &str, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(&parsed),
    ) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let computed = memory.with(params.block_count(), |blocks| {
        Output::init_with(expected.len(), |out| {
            argon2
                .hash_password_into_with_memory(password.as_bytes(), salt, out, blocks)
                .map_err(password_hash::Error::from)
        })
    });
    // `Output` compares in constant time.
    computed.is_ok_and(|computed| computed == expected)
}

impl PasswordHasherPool {
    /// A pool with `memory_kib` and `iterations` (OWASP: 19456 and 2) running at most `parallel`
    /// hashes at once.
    pub fn new(memory_kib: u32, iterations: u32, parallel: usize) -> ApiResult<Self> {
        let params = Params::new(memory_kib, iterations, 1, None).map_err(ApiError::internal)?;
        let memory = Arc::new(Memory::new(params.block_count()));
        // The dummy is computed in an area of its own, freed at once (an allocation this large
        // is a mapping glibc returns): a process that never signs anyone in keeps no argon2
        // memory; the pool's areas are made by the first computations that need them.
        let random: [u8; 32] = rand::random();
        let dummy = hash_blocking(
            &params,
            &Memory::new(params.block_count()),
            &URL_SAFE_NO_PAD.encode(random),
        )?;
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(parallel.max(1))),
            bound: parallel.max(1),
            memory,
            computing: Arc::default(),
            runs: Arc::default(),
            waiting: Arc::default(),
            dummy: Arc::new(dummy),
        })
    }

    /// The most argon2id computations run at once.
    pub fn bound(&self) -> usize {
        self.bound
    }

    /// The kept memory areas (at most [`Self::bound`]).
    pub fn memory(&self) -> &Memory {
        &self.memory
    }

    /// How many argon2id computations run now.
    pub fn computing(&self) -> usize {
        self.computing.0.load(Ordering::SeqCst)
    }

    /// How many argon2id computations ran (or run) since the pool was made.
    pub fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }

    /// The most argon2id computations that ever ran at once (never above [`Self::bound`]).
    pub fn peak_computing(&self) -> usize {
        self.computing.1.load(Ordering::SeqCst)
    }

    /// Runs `work` on the blocking pool under a permit that lives as long as the work.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> ApiResult<T> {
        let queued = Queued::enter(&self.waiting);
        let permit =
            self.permits.clone().acquire_owned().await.map_err(|_| {
                ApiError::unavailable(Reason::ShuttingDown, "the service is stopping")
            })?;
        drop(queued);
        let computing = self.computing.clone();
        self.runs.fetch_add(1, Ordering::SeqCst);
        tokio::task::spawn_blocking(move || {
            let now = computing.0.fetch_add(1, Ordering::SeqCst) + 1;
            computing.1.fetch_max(now, Ordering::SeqCst);
            let out = work();
            computing.0.fetch_sub(1, Ordering::SeqCst);
            drop(permit);
            out
        })
        .await
        .map_err(ApiError::internal)
    }

    /// The argon2id PHC string of `password`.
    pub async fn hash(&self, password: &str) -> ApiResult<String> {
        let params = self.params.clone();
        let memory = self.memory.clone();
        let password = password.to_owned();
        self.run(move || hash_blocking(&params, &memory, &password))
            .await?
    }

    /// Whether `password` matches `hash`. An empty `hash` (no usable password) never matches,
    /// but costs the same time as a real check.
    pub async fn verify(&self, password: &str, hash: &str) -> ApiResult<bool> {
        let usable = !hash.is_empty();
        let hash = if usable {
            hash.to_owned()
        } else {
            self.dummy.as_str().to_owned()
        };
        let password = password.to_owned();
        let memory = self.memory.clone();
        let matched = self
            .run(move || verify_blocking(&memory, &password, &hash))
            .await?;
        Ok(usable && matched)
    }
}

/// Hex SHA-256 of `value`: how tokens and API-key secrets are stored.
pub fn sha256_hex(value: &str) -> String {
    hex(&Sha256::digest(value.as_bytes()))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two strings in time independent of where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (da, db) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    bool::from(da.ct_eq(&db))
}

/// A random opaque token: `prefix` and 256 random bits, base64url.
pub fn random_token(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `len` random base62 characters.
pub fn random_base62(len: usize) -> String {
    (0..len)
        .map(|_| BASE62[rand::random_range(0..BASE62.len())] as char)
        .collect()
}

fn base62_fixed(mut n: u64, len: usize) -> String {
    let mut out = vec![b'0'; len];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(out).unwrap_or_default()
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xedb8_8320 & mask);
        }
    }
    !crc
}

/// Prefix of admin API keys.
pub const ADMIN_KEY_PREFIX: &str = "opk_admin_";
/// Prefix of workspace API keys.
pub const WORKSPACE_KEY_PREFIX: &str = "opk_";
const KEY_ID_CHARS: usize = 16;
const KEY_SECRET_CHARS: usize = 32; // 32 × log2(62) ≈ 190 bits
const KEY_CHECKSUM_CHARS: usize = 6;

/// A freshly minted API key.
pub struct NewApiKey {
    /// The key's id, `key_<16 base62>`.
    pub id: String,
    /// The full secret, shown once.
    pub secret: String,
    /// Prefix and last four characters.
    pub hint: String,
}

/// Mints an API key in the GitHub shape: `<prefix><id>_<secret><checksum>`, where the checksum
/// is the CRC32 of everything before it in base62, so scanners can recognise real keys offline.
pub fn mint_api_key(admin: bool) -> NewApiKey {
    let prefix = if admin {
        ADMIN_KEY_PREFIX
    } else {
        WORKSPACE_KEY_PREFIX
    };
    let id_part = random_base62(KEY_ID_CHARS);
    let body = format!("{prefix}{id_part}_{}", random_base62(KEY_SECRET_CHARS));
    let checksum = base62_fixed(u64::from(crc32(body.as_bytes())), KEY_CHECKSUM_CHARS);
    let secret = format!("{body}{checksum}");
    let hint = format!("{prefix}…{}", &secret[secret.len() - 4..]);
    NewApiKey {
        id: format!("key_{id_part}"),
        secret,
        hint,
    }
}

/// The id and kind (`true` for admin) of a well-formed API key, or `None` when the shape or the
/// checksum is wrong.
pub fn parse_api_key(secret: &str) -> Option<(String, bool)> {
    let (admin, rest) = if let Some(rest) = secret.strip_prefix(ADMIN_KEY_PREFIX) {
        (true, rest)
    } else {
        (false, secret.strip_prefix(WORKSPACE_KEY_PREFIX)?)
    };
    let (id_part, tail) = rest.split_once('_')?;
    let ok_chars = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric());
    if id_part.len() != KEY_ID_CHARS
        || tail.len() != KEY_SECRET_CHARS + KEY_CHECKSUM_CHARS
        || !ok_chars(id_part)
        || !ok_chars(tail)
    {
        return None;
    }
    let (body, checksum) = secret.split_at(secret.len() - KEY_CHECKSUM_CHARS);
    let expected = base62_fixed(u64::from(crc32(body.as_bytes())), KEY_CHECKSUM_CHARS);
    constant_time_eq(checksum, &expected).then(|| (format!("key_{id_part}"), admin))
}

/// Seals and opens signing-key seeds with ChaCha20-Poly1305 (the key from configuration).
#[derive(Clone)]
pub struct Sealer {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// A sealer with the 32-byte `key`.
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            cipher: ChaCha20Poly1305::new(&Key::from(*key)),
        }
    }

    /// nonce ‖ ciphertext of `plain`, bound to `aad`.
    pub fn seal(&self, plain: &[u8], aad: &str) -> ApiResult<Vec<u8>> {
        let nonce: [u8; 12] = rand::random();
        let sealed = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plain,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| ApiError::internal("sealing failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// The plaintext of [`Self::seal`]'s output, or an error when the key or `aad` is wrong.
    pub fn open(&self, sealed: &[u8], aad: &str) -> Result<Vec<u8>, String> {
        if sealed.len() < 12 {
            return Err("sealed value too short".into());
        }
        let (nonce, body) = sealed.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| "bad nonce".to_owned())?;
        self.cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: body,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| "cannot decrypt: wrong encryption key?".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn id_3_cancelled_verifications_keep_their_permit_so_hashing_stays_bounded() {
        let pool = PasswordHasherPool::new(OWASP_MEMORY_KIB, OWASP_ITERATIONS, 2).unwrap();
        let hash = pool.hash("correct horse battery staple").await.unwrap();
        let calls: Vec<_> = (0..12)
            .map(|i| {
                let (pool, hash) = (pool.clone(), hash.clone());
                tokio::spawn(async move {
                    // Every other caller gives up almost at once, mid-hash or while queued.
                    let limit = Duration::from_millis(if i % 2 == 0 { 2 } else { 60_000 });
                    tokio::time::timeout(limit, pool.verify("wrong password!", &hash)).await
                })
            })
            .collect();
        for c in calls {
            let _ = c.await.unwrap();
        }
        while pool.computing() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(pool.bound(), 2);
        assert!(pool.peak_computing() >= 1);
        assert!(
            pool.peak_computing() <= 2,
            "{} argon2id computations at once",
            pool.peak_computing()
        );
    }

    #[tokio::test]
    async fn id_3_a_new_pool_keeps_no_argon2_memory_until_it_hashes() {
        let pool = PasswordHasherPool::new(1024, OWASP_ITERATIONS, 2).unwrap();
        assert_eq!(pool.memory().areas(), 0, "the dummy's area is not kept");
        let stored = pool.hash("hunter2 hunter2").await.unwrap();
        assert_eq!(pool.memory().areas(), 1);
        assert!(pool.verify("hunter2 hunter2", &stored).await.unwrap());
        // Unknown accounts verify against the dummy, which still matches nothing.
        assert!(!pool.verify("hunter2 hunter2", "").await.unwrap());
        assert_eq!(
            pool.memory().areas(),
            1,
            "one computation at a time, one area"
        );
    }

    #[tokio::test]
    async fn id_3_pooled_hashes_and_the_argon2_crates_phc_strings_verify_both_ways() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        const KIB: u32 = 1024;
        let pool = PasswordHasherPool::new(KIB, OWASP_ITERATIONS, 2).unwrap();
        // New hashes verify with the crate's own path (the code before the pool)...
        let pooled = pool.hash("correct horse battery staple").await.unwrap();
        assert!(
            pooled.starts_with("$argon2id$v=19$m=1024,t=2,p=1$"),
            "{pooled}"
        );
        let parsed = PasswordHash::new(&pooled).unwrap();
        let crate_path = Argon2::default();
        assert!(
            crate_path
                .verify_password(b"correct horse battery staple", &parsed)
                .is_ok()
        );
        assert!(crate_path.verify_password(b"wrong", &parsed).is_err());
        // ...and hashes stored by it (these parameters, others, more memory than the pool keeps,
        // argon2i) verify in the pool.
        let salt = SaltString::encode_b64(b"sixteen byte salt").unwrap();
        for (algorithm, m, t) in [
            (Algorithm::Argon2id, KIB, OWASP_ITERATIONS),
            (Algorithm::Argon2id, 512, 3),
            (Algorithm::Argon2id, 4 * KIB, 1),
            (Algorithm::Argon2i, KIB, 2),
        ] {
            let params = Params::new(m, t, 1, None).unwrap();
            let stored = Argon2::new(algorithm, Version::V0x13, params)
                .hash_password(b"hunter2 hunter2", &salt)
                .unwrap()
                .to_string();
            assert!(
                pool.verify("hunter2 hunter2", &stored).await.unwrap(),
                "{stored}"
            );
            assert!(
                !pool.verify("hunter3 hunter3", &stored).await.unwrap(),
                "{stored}"
            );
        }
        assert!(!pool.verify("x", "not a phc string").await.unwrap());
        assert!(!pool.verify("x", "").await.unwrap());
        assert!(pool.memory().areas() <= pool.bound());
    }

    #[test]
    fn api_keys_round_trip_and_checksums_catch_typos() {
        for admin in [true, false] {
            let key = mint_api_key(admin);
            assert!(
                key.secret
                    .starts_with(if admin { "opk_admin_" } else { "opk_" })
            );
            assert_eq!(parse_api_key(&key.secret), Some((key.id.clone(), admin)));
            let mut typo = key.secret.clone().into_bytes();
            let i = typo.len() - 10;
            typo[i] = if typo[i] == b'a' { b'b' } else { b'a' };
            assert_eq!(parse_api_key(&String::from_utf8(typo).unwrap()), None);
        }
        assert_eq!(parse_api_key("opk_"), None);
        assert_eq!(parse_api_key("nonsense"), None);
    }

    #[test]
    fn crc32_matches_the_standard() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn sealed_seeds_open_only_with_the_right_key_and_kid() {
        let sealer = Sealer::new(&[7; 32]);
        let sealed = sealer.seal(b"seed", "kid1").unwrap();
        assert_eq!(sealer.open(&sealed, "kid1").unwrap(), b"seed");
        assert!(sealer.open(&sealed, "kid2").is_err());
        assert!(Sealer::new(&[8; 32]).open(&sealed, "kid1").is_err());
    }
}
