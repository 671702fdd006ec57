//! What every Orgplane token is, known to the verifier, the minting side and the revocation
//! store alike (a leaf module: it imports nothing of the platform).

/// `aud` of access tokens issued to users.
pub const USER_AUDIENCE: &str = "orgplane";
/// `aud` of service tokens; only service principals carry it.
pub const SERVICE_AUDIENCE: &str = "orgplane-internal";
/// Lifetime of user access tokens (rule ID-4): identity mints them with it, and revocations
/// ([`crate::revocation`]) are kept at least this long.
pub const ACCESS_TOKEN_TTL_SECS: i64 = 15 * 60;
/// Tokens larger than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// The metadata key of API keys.
pub const API_KEY_HEADER: &str = "x-api-key";
/// Clock skew tolerated on `exp`/`nbf`.
pub const LEEWAY_SECS: u64 = 5;
