use std::sync::Arc;

use bcrypt::BcryptError;
use chat_domain::Password;

use crate::AuthError;

/// Hashes and verifies passwords with bcrypt.
///
/// bcrypt is slow on purpose (about a quarter of a second at the default
/// cost), so every call runs on the hasher's own threads and the async
/// workers keep serving other clients meanwhile. Both methods must be called
/// from within a Tokio runtime.
///
/// Cloning is cheap; clones share one pool of hashing threads.
#[derive(Debug, Clone)]
pub struct PasswordHasher {
    cost: u32,
    /// A well-formed hash of the configured cost that no password matches,
    /// verified against when the user does not exist.
    dummy_hash: Arc<str>,
    pool: Arc<HashPool>,
}

impl PasswordHasher {
    /// The cost used unless configured otherwise; also the cost the original
    /// Python backend used.
    pub const DEFAULT_COST: u32 = 12;
    /// The lowest cost accepted: anything cheaper makes offline guessing of
    /// a leaked hash too fast.
    pub const MIN_COST: u32 = 10;
    /// The highest cost bcrypt supports.
    pub const MAX_COST: u32 = 31;
    /// The most bytes of a password bcrypt reads.
    const MAX_PASSWORD_BYTES: usize = 72;

    /// A hasher that writes hashes of the given cost (a base-2 logarithm of
    /// the number of rounds), from [`Self::MIN_COST`] to [`Self::MAX_COST`].
    pub fn new(cost: u32) -> Result<PasswordHasher, AuthError> {
        if cost < Self::MIN_COST {
            return Err(AuthError::CostTooLow {
                cost,
                min: Self::MIN_COST,
            });
        }
        if cost > Self::MAX_COST {
            return Err(AuthError::CostTooHigh {
                cost,
                max: Self::MAX_COST,
            });
        }
        Ok(PasswordHasher {
            cost,
            dummy_hash: dummy_hash(cost).into(),
            pool: Arc::new(HashPool::start()),
        })
    }

    /// The cost of the hashes this hasher writes.
    pub fn cost(&self) -> u32 {
        self.cost
    }

    /// Whether [`PasswordHasher::verify`] can check passwords against this
    /// stored hash: a well-formed `$2a$`, `$2b$` or `$2y$` bcrypt hash of a
    /// cost bcrypt supports. For hashes written elsewhere (an imported
    /// database), checked before they are stored.
    pub fn can_verify(hash: &str) -> bool {
        use std::str::FromStr;
        let versioned = ["$2a$", "$2b$", "$2y$"]
            .iter()
            .any(|prefix| hash.starts_with(prefix));
        versioned
            && bcrypt::HashParts::from_str(hash)
                .is_ok_and(|parts| (4..=Self::MAX_COST).contains(&parts.get_cost()))
    }

    /// Hashes a password that met the policy, with a fresh random salt.
    /// The result is a `$2b$` hash of this hasher's cost, ready to store.
    pub async fn hash(&self, password: &Password) -> Result<String, AuthError> {
        let password = password.clone();
        let cost = self.cost;
        self.blocking(move || bcrypt::hash(password.expose(), cost))
            .await?
            .map_err(|error| AuthError::HashingFailed {
                reason: error.to_string(),
            })
    }

    /// Checks a login attempt.
    ///
    /// `stored_hash` is the user's stored hash, or `None` when no user has the
    /// name given. For an unknown user the password is still run through
    /// bcrypt at the same cost and the answer is `false`, so a login takes as
    /// long whether or not the name exists and the timing does not tell
    /// which names are registered.
    ///
    /// A password longer than 72 bytes is `false` without hashing: bcrypt
    /// would silently ignore everything after the 72nd byte, and such a
    /// password can never have been registered. `$2a$`, `$2b$` and `$2y$`
    /// hashes of any cost are accepted, including those the original Python
    /// backend wrote. A stored hash that is not a bcrypt hash is
    /// [`AuthError::MalformedHash`].
    pub async fn verify(
        &self,
        password: &str,
        stored_hash: Option<&str>,
    ) -> Result<bool, AuthError> {
        if password.len() > Self::MAX_PASSWORD_BYTES {
            return Ok(false);
        }
        let password = password.to_owned();
        let Some(stored_hash) = stored_hash else {
            let dummy_hash = Arc::clone(&self.dummy_hash);
            // The outcome is ignored: only the time spent matters here.
            let _ = self
                .blocking(move || bcrypt::verify(password, &dummy_hash))
                .await?;
            return Ok(false);
        };
        let stored_hash = stored_hash.to_owned();
        self.blocking(move || bcrypt::verify(password, &stored_hash))
            .await?
            .map_err(|error| match error {
                BcryptError::InvalidHash(reason) => AuthError::MalformedHash {
                    reason: reason.to_owned(),
                },
                BcryptError::CostNotAllowed(cost) => AuthError::MalformedHash {
                    reason: format!("its cost {cost} is outside what bcrypt supports"),
                },
                other => AuthError::HashingFailed {
                    reason: other.to_string(),
                },
            })
    }
}

impl Default for PasswordHasher {
    /// A hasher of [`PasswordHasher::DEFAULT_COST`].
    fn default() -> Self {
        PasswordHasher {
            cost: Self::DEFAULT_COST,
            dummy_hash: dummy_hash(Self::DEFAULT_COST).into(),
            pool: Arc::new(HashPool::start()),
        }
    }
}

/// A syntactically valid `$2b$` hash of the given cost whose salt and digest
/// are all zero bits (`.` is the zero digit of bcrypt's base64).
///
/// Verifying any password against it costs exactly what verifying against a
/// real hash of that cost does, since bcrypt's work depends only on the cost,
/// and no password can be expected to match it (that would take a bcrypt
/// output of 184 zero bits). Building it from text needs no randomness and no
/// hashing, so `new` stays cheap and infallible beyond the cost check.
fn dummy_hash(cost: u32) -> String {
    format!("$2b${cost:02}${}", ".".repeat(53))
}

impl PasswordHasher {
    /// Runs bcrypt on the hashing threads and waits for the result.
    async fn blocking<T, F>(&self, work: F) -> Result<T, AuthError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (done, result) = tokio::sync::oneshot::channel();
        self.pool.submit(Box::new(move || {
            // The caller may have given up (its request was cancelled).
            let _ = done.send(work());
        }))?;
        result.await.map_err(|_| AuthError::HashingFailed {
            reason: "the hashing thread stopped before finishing".to_owned(),
        })
    }
}

/// Work for a hashing thread.
type Job = Box<dyn FnOnce() + Send>;

/// The threads that run bcrypt: all cores but one, each at the lowest
/// scheduling priority.
///
/// bcrypt is meant to be slow. Left to Tokio's blocking pool, a burst of
/// sign-ins would take every core and stall the WebSocket traffic of
/// everyone already signed in. Here at most `cores - 1` hashes run at once
/// and the rest queue, and on Linux the threads run at nice 19, so whenever
/// a socket has work the scheduler gives the core to it: sign-ins wait,
/// messages do not. With nothing else to do, hashing still gets the CPU.
///
/// The threads end when the last clone of the hasher is dropped.
#[derive(Debug)]
struct HashPool {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl HashPool {
    /// The lowest priority a thread can ask for on Linux.
    #[cfg(target_os = "linux")]
    const NICE: i32 = 19;

    fn start() -> HashPool {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let threads = cores.saturating_sub(1).max(1);
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = Arc::new(std::sync::Mutex::new(queue));
        for index in 0..threads {
            let queue = Arc::clone(&queue);
            let spawned = std::thread::Builder::new()
                .name(format!("bcrypt-{index}"))
                .spawn(move || {
                    Self::lower_priority();
                    loop {
                        // The lock is held only while waiting for the next
                        // job, never while hashing.
                        let job = match queue.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            // Fewer threads only means more queueing; with none at all, every
            // call fails with "no hashing thread is running".
            drop(spawned);
        }
        HashPool { jobs }
    }

    fn submit(&self, job: Job) -> Result<(), AuthError> {
        self.jobs.send(job).map_err(|_| AuthError::HashingFailed {
            reason: "no hashing thread is running".to_owned(),
        })
    }

    /// Puts the calling thread at nice 19. Linux keeps a nice value per
    /// thread, so this leaves the rest of the process as it was.
    #[cfg(target_os = "linux")]
    fn lower_priority() {
        // Raising one's own nice value needs no privilege; should it fail
        // anyway, the thread hashes at normal priority, as it would elsewhere.
        let thread = rustix::thread::gettid();
        let _ = rustix::process::setpriority_process(Some(thread), Self::NICE);
    }

    #[cfg(not(target_os = "linux"))]
    fn lower_priority() {}
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    /// The cheapest cost accepted keeps the tests fast.
    fn hasher() -> PasswordHasher {
        PasswordHasher::new(PasswordHasher::MIN_COST).expect("valid cost")
    }

    fn password(text: &str) -> Password {
        Password::parse(text).expect("meets the policy")
    }

    #[test]
    fn only_well_formed_bcrypt_hashes_can_be_verified() {
        // Made by the original backend (passlib, cost 12).
        let python = "$2b$12$UDgi06aM.s9qHqpZGyyGr.woRo46y3Uh2gDst6w7yux2MQplWywlO";
        assert!(PasswordHasher::can_verify(python));
        assert!(PasswordHasher::can_verify(
            &python.replacen("$2b$", "$2y$", 1)
        ));
        for hash in [
            "",
            "secret123",
            "$2x$12$UDgi06aM.s9qHqpZGyyGr.woRo46y3Uh2gDst6w7yux2MQplWywlO",
            "$2b$99$UDgi06aM.s9qHqpZGyyGr.woRo46y3Uh2gDst6w7yux2MQplWywlO",
            &python[..59],
            "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
        ] {
            assert!(!PasswordHasher::can_verify(hash), "{hash:?}");
        }
    }

    #[tokio::test]
    async fn a_hashed_password_verifies() {
        let hasher = hasher();
        let hash = hasher
            .hash(&password("correct horse"))
            .await
            .expect("hashes");
        assert!(hash.starts_with("$2b$10$"), "{hash}");
        assert_eq!(hasher.verify("correct horse", Some(&hash)).await, Ok(true));
    }

    #[tokio::test]
    async fn a_wrong_password_does_not_verify() {
        let hasher = hasher();
        let hash = hasher
            .hash(&password("correct horse"))
            .await
            .expect("hashes");
        assert_eq!(hasher.verify("correct horsf", Some(&hash)).await, Ok(false));
        assert_eq!(hasher.verify("", Some(&hash)).await, Ok(false));
    }

    #[tokio::test]
    async fn the_same_password_hashes_differently_each_time() {
        let hasher = hasher();
        let first = hasher.hash(&password("correct horse")).await;
        let second = hasher.hash(&password("correct horse")).await;
        assert_ne!(first.expect("hashes"), second.expect("hashes"));
    }

    #[tokio::test]
    async fn the_default_cost_is_twelve() {
        assert_eq!(PasswordHasher::default().cost(), 12);
        assert_eq!(PasswordHasher::DEFAULT_COST, 12);
    }

    #[test]
    fn a_cost_below_ten_is_rejected() {
        assert_eq!(
            PasswordHasher::new(9).map(|h| h.cost()),
            Err(AuthError::CostTooLow { cost: 9, min: 10 })
        );
        assert!(PasswordHasher::new(4).is_err());
        assert!(PasswordHasher::new(10).is_ok());
    }

    #[test]
    fn a_cost_above_thirty_one_is_rejected() {
        assert_eq!(
            PasswordHasher::new(32).map(|h| h.cost()),
            Err(AuthError::CostTooHigh { cost: 32, max: 31 })
        );
        assert!(PasswordHasher::new(31).is_ok());
    }

    #[tokio::test]
    async fn an_unknown_user_never_verifies() {
        let hasher = hasher();
        assert_eq!(hasher.verify("correct horse", None).await, Ok(false));
        assert_eq!(hasher.verify("", None).await, Ok(false));
    }

    #[test]
    fn the_dummy_hash_is_a_valid_hash_of_the_same_cost() {
        for cost in [10, 12, 31] {
            let hasher = PasswordHasher::new(cost).expect("valid cost");
            let parts = bcrypt::HashParts::from_str(&hasher.dummy_hash).expect("well-formed");
            assert_eq!(parts.get_cost(), cost);
        }
    }

    #[tokio::test]
    async fn a_password_over_72_bytes_never_verifies() {
        let hasher = hasher();
        let seventy_two = "a".repeat(72);
        let hash = hasher.hash(&password(&seventy_two)).await.expect("hashes");
        assert_eq!(hasher.verify(&seventy_two, Some(&hash)).await, Ok(true));
        // bcrypt alone would accept this: it reads only the first 72 bytes.
        let seventy_three = "a".repeat(73);
        assert_eq!(bcrypt::verify(&seventy_three, &hash).ok(), Some(true));
        assert_eq!(hasher.verify(&seventy_three, Some(&hash)).await, Ok(false));
    }

    #[tokio::test]
    async fn a_malformed_stored_hash_is_an_error() {
        let hasher = hasher();
        let wrong_prefix = format!("$9z$10${}", ".".repeat(53));
        let not_base64 = format!("$2b$10${}", "!".repeat(53));
        for stored in ["", "not a hash", "$2b$10$short", &wrong_prefix, &not_base64] {
            let result = hasher.verify("correct horse", Some(stored)).await;
            assert!(
                matches!(result, Err(AuthError::MalformedHash { .. })),
                "{stored:?}: {result:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_stored_hash_with_an_impossible_cost_is_an_error() {
        let hasher = hasher();
        let stored = format!("$2b$99${}", ".".repeat(53));
        let result = hasher.verify("correct horse", Some(&stored)).await;
        assert!(
            matches!(result, Err(AuthError::MalformedHash { .. })),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn more_hashes_than_threads_all_finish() {
        let hasher = hasher();
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let calls: Vec<_> = (0..cores * 3)
            .map(|_| {
                let hasher = hasher.clone();
                tokio::spawn(async move { hasher.hash(&password("correct horse battery")).await })
            })
            .collect();
        for call in calls {
            let hash = call.await.expect("task").expect("hashes");
            let verified = hasher.verify("correct horse battery", Some(&hash)).await;
            assert!(verified.expect("verifies"));
        }
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashing_threads_run_at_the_lowest_priority() {
        let hasher = hasher();
        // The threads lower their priority before taking their first job.
        hasher
            .hash(&password("correct horse battery"))
            .await
            .expect("hashes");
        let mut seen = 0;
        for task in std::fs::read_dir("/proc/self/task").expect("task list") {
            let task = task.expect("task entry").path();
            let name = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
            if !name.starts_with("bcrypt-") {
                continue;
            }
            let stat = std::fs::read_to_string(task.join("stat")).expect("stat");
            // Fields after the parenthesised name; nice is field 19 of stat.
            let fields: Vec<&str> = stat
                .rsplit_once(") ")
                .expect("stat format")
                .1
                .split(' ')
                .collect();
            assert_eq!(
                fields[16],
                "19",
                "{} runs at nice {}",
                name.trim(),
                fields[16]
            );
            seen += 1;
        }
        assert!(seen >= 1, "no hashing thread found");
    }
}
