//! Password hashing: argon2id with OWASP's parameters (m = 19456 KiB, t = 2, p = 1), stored as
//! PHC strings in `account.password`.
//!
//! Verifying also accepts the hashes of the systems whose users primer inherits: bcrypt
//! (`$2a$`/`$2b$`/`$2y$`, the chatbot model) and Better-Auth's scrypt (`salthex:keyhex`). A
//! match against one of those asks for an upgrade to argon2id; any other format fails closed.
//!
//! Hashing and verifying cost tens of milliseconds of CPU and 19 MiB of memory each, so they
//! run on the blocking pool, at most one per core at a time (a [`Workbench`]): a burst of logins
//! queues for a few seconds and then gets a 503, instead of starting hundreds of hashes that
//! each take their share of the CPU and leave their 19 MiB behind in the allocator. The argon2
//! work memory is allocated once per slot and reused, so memory stays where it started.

use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use argon2::password_hash::{
    Output, ParamsString, PasswordHash, PasswordVerifier, SaltString, rand_core::OsRng,
};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;
use unicode_normalization::UnicodeNormalization;

use crate::error::Error;

/// A password as the reader typed it; never printed, never logged.
#[derive(Clone)]
pub struct Password(SecretString);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

impl Password {
    /// Shortest accepted new password, in characters.
    pub const MIN_CHARS: usize = 8;
    /// Longest accepted new password, in characters.
    pub const MAX_CHARS: usize = 128;

    /// A new password: 8 to 128 characters.
    pub fn parse_new(raw: String) -> Result<Self, String> {
        let chars = raw.chars().count();
        if chars < Self::MIN_CHARS {
            return Err(format!("must be at least {} characters", Self::MIN_CHARS));
        }
        if chars > Self::MAX_CHARS {
            return Err(format!("must be at most {} characters", Self::MAX_CHARS));
        }
        Ok(Self(raw.into()))
    }

    /// A password offered to prove identity: only required to be present, since an old
    /// account may predate today's rules.
    pub fn parse_presented(raw: String) -> Result<Self, String> {
        if raw.is_empty() { Err("is required".into()) } else { Ok(Self(raw.into())) }
    }

    fn text(&self) -> &str {
        self.0.expose_secret()
    }
}

/// What checking a password against a stored hash found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Wrong password, or a hash in a format we do not accept.
    Mismatch,
    /// Right password, hash already current.
    Match,
    /// Right password, but the hash should be replaced by a current argon2id one.
    MatchNeedsRehash,
}

impl Verdict {
    /// True for either kind of match.
    pub fn matched(self) -> bool {
        self != Self::Mismatch
    }
}

fn hasher() -> Argon2<'static> {
    // OWASP's argon2id recommendation; any change makes old hashes "need rehash".
    let params = Params::new(19_456, 2, 1, None).expect("constant argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password into a PHC string.
pub async fn hash(password: &Password) -> Result<String, Error> {
    let password = password.clone();
    WORKBENCH.run(move |memory| hash_with(password.text(), memory)).await?
}

fn hash_with(password: &str, memory: &mut [Block]) -> Result<String, Error> {
    // Hashed as NFKC, as Better-Auth does: "é" typed precomposed or decomposed is one password.
    let normalized: String = password.nfkc().collect();
    let password = normalized.as_bytes();
    let salt = SaltString::generate(&mut OsRng);
    let mut raw_salt = [0u8; 64];
    let raw_salt = salt.decode_b64(&mut raw_salt).map_err(Error::internal)?;
    let mut out = [0u8; OUTPUT_BYTES];
    hasher().hash_password_into_with_memory(password, raw_salt, &mut out, memory).map_err(Error::internal)?;
    let params = ParamsString::try_from(hasher().params()).map_err(Error::internal)?;
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(Error::internal)?),
    };
    Ok(phc.to_string())
}

/// Checks a password against a stored hash. Unknown formats fail closed.
pub async fn verify(password: &Password, stored: &str) -> Result<Verdict, Error> {
    let (password, stored) = (password.clone(), stored.to_owned());
    WORKBENCH.run(move |memory| verify_with(password.text(), &stored, memory)).await
}

/// Spends the same effort as [`verify`] and always answers `Mismatch`: for logins with an
/// unknown email, so they cannot be told apart by their timing.
pub async fn verify_dummy(password: &Password) -> Result<Verdict, Error> {
    let password = password.clone();
    WORKBENCH
        .run(move |memory| {
            verify_with(password.text(), DUMMY_HASH, memory);
            Verdict::Mismatch
        })
        .await
}

/// A PHC string with the current parameters whose salt and output are random bytes, so that no
/// password matches it: a constant costs nothing at cold start, and a verify against it costs
/// what a real one does.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$Jjj1qkQ8BL0DpmFBDLTm1g$ZpcZtWEFUWcKK2sv9yAnkLdFHRPOxQfVvrDNoK0e5RM";

/// Bytes of an argon2id output as primer writes it (the PHC default).
const OUTPUT_BYTES: usize = 32;

/// How long a request waits for a free slot before it is a 503.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where hashes are computed: one slot per core, each with its argon2 work memory, reused.
struct Workbench {
    slots: Semaphore,
    memory: Mutex<Vec<Vec<Block>>>,
}

static WORKBENCH: LazyLock<Workbench> = LazyLock::new(Workbench::one_slot_per_core);

impl Workbench {
    fn one_slot_per_core() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Workbench { slots: Semaphore::new(cores), memory: Mutex::new(Vec::new()) }
    }

    /// Runs `work` on the blocking pool once a slot is free, lending it a slot's work memory.
    /// The slot and the memory go with the work: a request dropped while its hash runs (its
    /// client left) neither frees the slot early nor loses the memory, so at most one hash per
    /// core runs, and at most one work memory per core exists, whatever the clients do.
    ///
    /// Bounded by the queue's time-out and the hash itself, so exempt from the request's
    /// deadline ([`crate::infra::deadline`]).
    async fn run<T: Send + 'static>(
        &'static self,
        work: impl FnOnce(&mut [Block]) -> T + Send + 'static,
    ) -> Result<T, Error> {
        crate::infra::deadline::exempt(self.run_bounded(work)).await
    }

    async fn run_bounded<T: Send + 'static>(
        &'static self,
        work: impl FnOnce(&mut [Block]) -> T + Send + 'static,
    ) -> Result<T, Error> {
        let slot = tokio::time::timeout(QUEUE_TIMEOUT, self.slots.acquire())
            .await
            .map_err(|_| Error::Unavailable("every password-hashing slot stayed busy".into()))?
            .map_err(Error::internal)?;
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_default();
            memory.resize(hasher().params().block_count(), Block::default());
            let result = work(&mut memory);
            self.memory.lock().unwrap_or_else(|e| e.into_inner()).push(memory);
            result
        })
        .await
        .map_err(Error::internal)
    }
}

/// The formats a stored hash may be in, told apart by their shape.
enum StoredHash<'a> {
    /// A PHC string of argon2 (ours, possibly with older parameters).
    Argon2(PasswordHash<'a>),
    /// A bcrypt hash of the chatbot model.
    Bcrypt(&'a str),
    /// Better-Auth's default: scrypt over the NFKC password, salted with the salt's hex text.
    BetterAuthScrypt {
        /// The 32 hex characters, used as they are (their bytes), not decoded.
        salt: &'a str,
        /// The derived key.
        key: [u8; BETTER_AUTH_KEY_BYTES],
    },
}

/// Better-Auth's scrypt parameters (`@better-auth/utils/password`): N = 2^14, r = 16, p = 1.
const BETTER_AUTH_LOG_N: u8 = 14;
const BETTER_AUTH_R: u32 = 16;
const BETTER_AUTH_P: u32 = 1;
const BETTER_AUTH_KEY_BYTES: usize = 64;
/// Better-Auth's salts are 16 random bytes written as hex.
const BETTER_AUTH_SALT_HEX: usize = 32;

impl<'a> StoredHash<'a> {
    fn parse(stored: &'a str) -> Option<Self> {
        if ["$2a$", "$2b$", "$2y$"].iter().any(|prefix| stored.starts_with(prefix)) {
            return Some(Self::Bcrypt(stored));
        }
        if stored.starts_with("$argon2") {
            let parsed = PasswordHash::new(stored).ok()?;
            let argon2 = [argon2::ARGON2ID_IDENT, argon2::ARGON2I_IDENT, argon2::ARGON2D_IDENT];
            return argon2.contains(&parsed.algorithm).then_some(Self::Argon2(parsed));
        }
        let (salt, key) = stored.split_once(':')?;
        let salt_ok = salt.len() == BETTER_AUTH_SALT_HEX && salt.bytes().all(|b| b.is_ascii_hexdigit());
        let mut key_bytes = [0u8; BETTER_AUTH_KEY_BYTES];
        (salt_ok && hex::decode_to_slice(key, &mut key_bytes).is_ok())
            .then_some(Self::BetterAuthScrypt { salt, key: key_bytes })
    }
}

fn verify_with(password: &str, stored: &str, memory: &mut [Block]) -> Verdict {
    match StoredHash::parse(stored) {
        None => Verdict::Mismatch,
        Some(StoredHash::Argon2(parsed)) => verify_argon2(password, &parsed, memory),
        // Both legacy formats are weaker than argon2id: a match is upgraded at once.
        Some(StoredHash::Bcrypt(stored)) => match bcrypt::verify(password, stored) {
            Ok(true) => Verdict::MatchNeedsRehash,
            _ => Verdict::Mismatch,
        },
        Some(StoredHash::BetterAuthScrypt { salt, key }) => {
            if verify_better_auth_scrypt(password, salt, &key) {
                Verdict::MatchNeedsRehash
            } else {
                Verdict::Mismatch
            }
        }
    }
}

fn verify_argon2(password: &str, parsed: &PasswordHash<'_>, memory: &mut [Block]) -> Verdict {
    let current = parsed.algorithm == argon2::ARGON2ID_IDENT
        && parsed.version == Some(Version::V0x13.into())
        && Params::try_from(parsed).is_ok_and(|p| {
            let want = hasher();
            let want = want.params();
            (p.m_cost(), p.t_cost(), p.p_cost()) == (want.m_cost(), want.t_cost(), want.p_cost())
        });
    if !current {
        // Older parameters: the library's own verify, with its own memory, then an upgrade.
        let matched = hasher().verify_password(password.as_bytes(), parsed).is_ok();
        return if matched { Verdict::MatchNeedsRehash } else { Verdict::Mismatch };
    }
    // Current parameters: recompute into the slot's memory and compare in constant time, over
    // the NFKC password (how primer hashes); a password hashed as typed before that still
    // matches, and is then hashed again.
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else { return Verdict::Mismatch };
    let mut raw_salt = [0u8; 64];
    let Ok(raw_salt) = salt.decode_b64(&mut raw_salt) else { return Verdict::Mismatch };
    let mut matches = |candidate: &str| {
        let mut out = vec![0u8; expected.len()];
        hasher()
            .hash_password_into_with_memory(candidate.as_bytes(), raw_salt, &mut out, &mut *memory)
            .is_ok()
            && same_bytes(&out, expected.as_bytes())
    };
    let normalized: String = password.nfkc().collect();
    if matches(&normalized) {
        Verdict::Match
    } else if normalized != password && matches(password) {
        Verdict::MatchNeedsRehash
    } else {
        Verdict::Mismatch
    }
}

/// What to hash again after a login whose verdict was `verdict` against `stored`, if anything:
/// the password the old scheme really matched. Better-Auth's scrypt compared the NFKC text,
/// which is what primer hashes too; bcrypt compared only the first 72 bytes, so a longer
/// password is not pinned (it may differ from the real one after byte 72) and stays
/// verify-only. With `keep_better_auth` (a Better-Auth frontend shares the database), its scrypt
/// hashes are kept, so that frontend can still sign its users in.
pub fn upgrade_of(
    password: &Password,
    stored: &str,
    verdict: Verdict,
    keep_better_auth: bool,
) -> Option<Password> {
    if verdict != Verdict::MatchNeedsRehash {
        return None;
    }
    match StoredHash::parse(stored)? {
        StoredHash::Bcrypt(_) if password.text().len() > BCRYPT_MAX_BYTES => None,
        StoredHash::BetterAuthScrypt { .. } if keep_better_auth => None,
        _ => Some(password.clone()),
    }
}

/// bcrypt reads at most this many bytes of a password.
const BCRYPT_MAX_BYTES: usize = 72;

fn verify_better_auth_scrypt(password: &str, salt: &str, key: &[u8; BETTER_AUTH_KEY_BYTES]) -> bool {
    // Better-Auth normalises before hashing, so "ﬁ" and "fi" are one password there; same here.
    let normalized: String = password.nfkc().collect();
    let params = scrypt::Params::new(BETTER_AUTH_LOG_N, BETTER_AUTH_R, BETTER_AUTH_P, BETTER_AUTH_KEY_BYTES)
        .expect("Better-Auth's scrypt parameters are valid");
    let mut derived = [0u8; BETTER_AUTH_KEY_BYTES];
    scrypt::scrypt(normalized.as_bytes(), salt.as_bytes(), &params, &mut derived).is_ok()
        && same_bytes(&derived, key)
}

/// Compares without stopping at the first difference, so the time taken reveals nothing.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::PasswordHasher;

    use super::*;

    fn pw(s: &str) -> Password {
        Password::parse_new(s.into()).unwrap()
    }

    #[tokio::test]
    async fn hash_is_argon2id_with_owasp_parameters() {
        let phc = hash(&pw("correct horse battery")).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        // A standard PHC string: the library's own verifier (and so any argon2 one) accepts it.
        assert!(
            hasher().verify_password(b"correct horse battery", &PasswordHash::new(&phc).unwrap()).is_ok()
        );
        assert_eq!(verify(&pw("correct horse battery"), &phc).await.unwrap(), Verdict::Match);
        assert_eq!(verify(&pw("correct horse batterx"), &phc).await.unwrap(), Verdict::Mismatch);
    }

    #[tokio::test]
    async fn weaker_argon2_hash_matches_but_needs_rehash() {
        let weak = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(8, 1, 1, None).unwrap());
        let salt = SaltString::generate(&mut OsRng);
        let phc = weak.hash_password(b"old password", &salt).unwrap().to_string();
        assert_eq!(verify(&pw("old password"), &phc).await.unwrap(), Verdict::MatchNeedsRehash);
    }

    #[tokio::test]
    async fn unknown_formats_fail_closed() {
        for stored in [
            "",
            "plaintext",
            "$md5$abc",
            "deadbeef:cafe",
            "$2x$04$wBO3sCyIUa6HWD3KagSjp.UmofRS0mInbUxKd7aBCUKw4kSOHa4ne",
            "$scrypt$ln=14,r=16,p=1$c2FsdA$aGFzaA",
        ] {
            assert_eq!(verify(&pw("whatever123"), stored).await.unwrap(), Verdict::Mismatch, "{stored}");
        }
    }

    fn presented(s: &str) -> Password {
        Password::parse_presented(s.into()).unwrap()
    }

    /// Made by better-auth 1.7.25's own hasher (`node tests/better-auth/interop.mjs
    /// hash-passwords '{"passwords": [...]}'`).
    const BETTER_AUTH_SCRYPT: &[(&str, &str)] = &[
        (
            "correct horse battery",
            "07e8eeddb1d57ee9719e9a861cacb654:5f28db96418a4f80c8af06c8efbe26514a365c30f3e59ed5c9bb40882713708abd1ef21de90969359497557d6f559c2a02d7753b30da5e159e775bc10fe44756",
        ),
        (
            "\u{fb01}anc\u{e9} \u{c5}",
            "2350a7ce5931d500d822ac2d5a72bc76:5a46fffaf6deec5287f0d224cf9993b7241e9c1d488173dcdcf099e0d4400f2d8096885ddbd3e9f72ad02083ea662dec1644cd422236c3c7f1f342e7d27d9d8b",
        ),
    ];

    /// Made by the system's crypt(3) (libxcrypt), as the chatbot model's Python bcrypt would; the last
    /// is OpenBSD's own test vector.
    const BCRYPT: &[(&str, &str)] = &[
        ("correct horse battery", "$2b$04$wBO3sCyIUa6HWD3KagSjp.UmofRS0mInbUxKd7aBCUKw4kSOHa4ne"),
        ("chatbot password", "$2a$04$eFMl6LBc45qcbUgq7/QVj.SY/Cx1iQzbeE.8A2bqyEK30Xfn4wziq"),
        (
            "p\u{e4}ssw\u{f6}rd \u{fc}n\u{ef}code",
            "$2y$04$m7UkvqhwKpW7RP4BoB4c6.6SU5M278ZETr6mb2UgyCOsBhBRFGeIy",
        ),
        ("U*U", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"),
    ];

    #[tokio::test]
    async fn better_auth_scrypt_hashes_match_and_ask_for_an_upgrade() {
        for (password, stored) in BETTER_AUTH_SCRYPT {
            assert_eq!(
                verify(&presented(password), stored).await.unwrap(),
                Verdict::MatchNeedsRehash,
                "{password}"
            );
            let wrong = format!("{password}!");
            assert_eq!(verify(&presented(&wrong), stored).await.unwrap(), Verdict::Mismatch, "{wrong}");
        }
    }

    #[tokio::test]
    async fn better_auth_scrypt_compares_nfkc_normalized_passwords() {
        // The ligature "ﬁ" and the precomposed letters, typed as plain "fi" and combining marks.
        let (_, stored) = BETTER_AUTH_SCRYPT[1];
        let decomposed = presented("fiance\u{301} A\u{30a}");
        assert_eq!(verify(&decomposed, stored).await.unwrap(), Verdict::MatchNeedsRehash);
    }

    #[tokio::test]
    async fn bcrypt_hashes_match_and_ask_for_an_upgrade() {
        for (password, stored) in BCRYPT {
            assert_eq!(
                verify(&presented(password), stored).await.unwrap(),
                Verdict::MatchNeedsRehash,
                "{stored}"
            );
            let wrong = format!("{password}!");
            assert_eq!(verify(&presented(&wrong), stored).await.unwrap(), Verdict::Mismatch, "{stored}");
        }
    }

    #[tokio::test]
    async fn tampered_legacy_hashes_fail_closed() {
        let (password, stored) = BETTER_AUTH_SCRYPT[0];
        let (salt, key) = stored.split_once(':').unwrap();
        let flipped_key = format!("{salt}:{}{}", if key.starts_with('0') { '1' } else { '0' }, &key[1..]);
        let short_salt = format!("{}:{key}", &salt[1..]);
        let short_key = format!("{salt}:{}", &key[2..]);
        let (bcrypt_password, bcrypt_stored) = BCRYPT[0];
        let cut_bcrypt = &bcrypt_stored[..bcrypt_stored.len() - 1];
        for (password, stored) in [
            (password, flipped_key.as_str()),
            (password, short_salt.as_str()),
            (password, short_key.as_str()),
            (bcrypt_password, cut_bcrypt),
        ] {
            assert_eq!(verify(&presented(password), stored).await.unwrap(), Verdict::Mismatch, "{stored}");
        }
    }

    #[tokio::test]
    async fn the_dummy_hash_has_the_current_parameters() {
        // A verify against it must cost what a real one does: same algorithm, same parameters.
        let parsed = PasswordHash::new(DUMMY_HASH).unwrap();
        assert!(matches!(StoredHash::parse(DUMMY_HASH), Some(StoredHash::Argon2(_))));
        assert_eq!(parsed.algorithm, argon2::ARGON2ID_IDENT);
        assert_eq!(Params::try_from(&parsed).unwrap().m_cost(), hasher().params().m_cost());
        assert_eq!(verify_dummy(&pw("correct horse battery")).await.unwrap(), Verdict::Mismatch);
    }

    #[tokio::test]
    async fn many_hashes_at_once_all_finish_and_reuse_the_slots_memory() {
        let phcs: Vec<_> =
            (0..8).map(|n| tokio::spawn(async move { hash(&pw(&format!("password {n}"))).await })).collect();
        for (n, phc) in phcs.into_iter().enumerate() {
            let phc = phc.await.unwrap().unwrap();
            assert_eq!(verify(&pw(&format!("password {n}")), &phc).await.unwrap(), Verdict::Match);
        }
        let slots = std::thread::available_parallelism().map_or(1, usize::from);
        let buffers = WORKBENCH.memory.lock().unwrap().len();
        assert!(buffers <= slots, "{buffers} work memories for {slots} slots");
    }

    /// Clients that leave while their password is hashed (their requests dropped) must not
    /// free the slot early: the hashes already running would go on beside new ones.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_request_keeps_its_slot_until_its_hash_is_done() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static RUNNING: AtomicUsize = AtomicUsize::new(0);
        static MOST: AtomicUsize = AtomicUsize::new(0);
        // Its own workbench: the process's is shared with the other tests' hashes, whose slots
        // would blur what this one watches.
        static BENCH: LazyLock<Workbench> = LazyLock::new(Workbench::one_slot_per_core);
        let slots = std::thread::available_parallelism().map_or(1, usize::from);
        let left: Vec<_> = (0..slots * 4)
            .map(|_| {
                let work = BENCH.run(|_| {
                    MOST.fetch_max(RUNNING.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(100));
                    RUNNING.fetch_sub(1, Ordering::SeqCst);
                });
                // The client waits 20 ms for its answer, then is gone.
                tokio::spawn(
                    async move { tokio::time::timeout(Duration::from_millis(20), work).await.is_ok() },
                )
            })
            .collect();
        for client in left {
            assert!(!client.await.unwrap(), "no answer within 20 ms");
        }
        let started = std::time::Instant::now();
        while RUNNING.load(Ordering::SeqCst) > 0 || BENCH.slots.available_permits() < slots {
            assert!(started.elapsed() < Duration::from_secs(10), "the hashes never finished");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let most = MOST.load(Ordering::SeqCst);
        assert!(most <= slots, "{most} hashes ran at once on {slots} slots");
        let buffers = BENCH.memory.lock().unwrap().len();
        assert!(buffers <= slots, "{buffers} work memories for {slots} slots");
    }

    #[test]
    fn new_password_length_is_bounded() {
        assert!(Password::parse_new("short".into()).is_err());
        assert!(Password::parse_new("x".repeat(129)).is_err());
        assert!(Password::parse_new("ünïcödé!".into()).is_ok());
        assert!(Password::parse_presented(String::new()).is_err());
    }

    #[test]
    fn debug_does_not_show_the_password() {
        assert_eq!(format!("{:?}", pw("hunter2hunter2")), "Password(..)");
    }
}
