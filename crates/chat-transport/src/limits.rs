//! Rate limits: token buckets per client address (sign-up and sign-in),
//! per user (KeyPackage claims) and per WebSocket connection (messages).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::HttpRequest;

use crate::metrics::Limit;

/// How many requests a bucket allows: `burst` at once, refilled at `rate`
/// per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Most requests at once.
    pub burst: u32,
    /// Requests per second, sustained.
    pub per_second: f64,
}

impl Rate {
    /// `count` per minute, all of which may come at once.
    pub fn per_minute(count: u32) -> Rate {
        Rate {
            burst: count.max(1),
            per_second: f64::from(count.max(1)) / 60.0,
        }
    }
}

/// The limits the server enforces; `None` in the configuration turns them
/// all off (for load tests from one address).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimits {
    /// Registrations per client address.
    pub register: Rate,
    /// Sign-ins per client address.
    pub login: Rate,
    /// Frames per WebSocket connection.
    pub ws_frames: Rate,
    /// KeyPackages claimed per user, counted per user named in a claim:
    /// each takes one package of every device of that user, so this is
    /// what keeps one account from exhausting everyone's stock.
    pub key_package_claims: Rate,
    /// Refused frames in a row after which a connection is closed (1008).
    pub ws_strikes: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            register: Rate::per_minute(5),
            login: Rate::per_minute(10),
            ws_frames: Rate {
                burst: 30,
                per_second: 10.0,
            },
            // Four claims of a full batch (32 users) at once, then one user
            // every three seconds.
            key_package_claims: Rate {
                burst: 128,
                per_second: 20.0 / 60.0,
            },
            ws_strikes: 50,
        }
    }
}

/// One token bucket.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    pub(crate) fn full(rate: Rate) -> Bucket {
        Bucket {
            tokens: f64::from(rate.burst),
            updated: Instant::now(),
        }
    }

    /// Takes a token, or says how long until one is free.
    pub(crate) fn take(&mut self, rate: Rate, now: Instant) -> Result<(), Duration> {
        self.take_many(1, rate, now)
    }

    /// Takes `cost` tokens at once, or none and says how long until there
    /// are enough. A cost above the burst needs a full bucket, so that it
    /// can ever pass.
    pub(crate) fn take_many(
        &mut self,
        cost: u32,
        rate: Rate,
        now: Instant,
    ) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(f64::from(rate.burst));
        self.updated = now;
        let cost = f64::from(cost.clamp(1, rate.burst.max(1)));
        if self.tokens >= cost {
            self.tokens -= cost;
            Ok(())
        } else {
            let wait = (cost - self.tokens) / rate.per_second.max(f64::MIN_POSITIVE);
            Err(Duration::from_secs_f64(wait.min(86_400.0)))
        }
    }

    fn is_full(&self, rate: Rate, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens + elapsed * rate.per_second >= f64::from(rate.burst)
    }
}

/// Token buckets keyed by who is limited: a client address, a user.
#[derive(Debug)]
pub(crate) struct Limiter<K> {
    rate: Rate,
    /// Which limit it is, for the count of its refusals.
    limit: Limit,
    buckets: Mutex<HashMap<K, Bucket>>,
}

/// Keys tracked before idle (full) buckets are dropped.
const MAX_TRACKED: usize = 100_000;

impl<K: Hash + Eq> Limiter<K> {
    pub(crate) fn new(rate: Rate, limit: Limit) -> Limiter<K> {
        Limiter {
            rate,
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Admits a request of `key` that costs `cost` tokens (one for most),
    /// or takes nothing and says when to retry.
    pub(crate) fn check(&self, key: K, cost: u32) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_TRACKED {
            // A full bucket is the same as no bucket: forget those.
            let rate = self.rate;
            buckets.retain(|_, bucket| !bucket.is_full(rate, now));
        }
        let admitted = buckets
            .entry(key)
            .or_insert_with(|| Bucket::full(self.rate))
            .take_many(cost, self.rate, now);
        if admitted.is_err() {
            crate::metrics::rate_limited(self.limit);
        }
        admitted
    }
}

/// The client's address: the socket's peer, unless that peer is a trusted
/// proxy, in which case the nearest address in `X-Forwarded-For` that is
/// not itself a trusted proxy. A client cannot spoof it by sending the
/// header directly.
pub(crate) fn client_address(req: &HttpRequest, trusted: &[IpAddr]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|part| part.trim().parse().ok())
        .collect();
    Some(
        forwarded
            .into_iter()
            .rev()
            .find(|address| !trusted.contains(address))
            .unwrap_or(peer),
    )
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_asks_to_wait() {
        let rate = Rate::per_minute(5);
        let mut bucket = Bucket::full(rate);
        let now = Instant::now();
        for _ in 0..5 {
            assert!(bucket.take(rate, now).is_ok());
        }
        let wait = bucket.take(rate, now).expect_err("the sixth is refused");
        assert!(
            wait > Duration::from_secs(11) && wait <= Duration::from_secs(12),
            "{wait:?}"
        );
        // Twelve seconds later one more is allowed.
        assert!(bucket.take(rate, now + Duration::from_secs(12)).is_ok());
    }

    #[test]
    fn addresses_have_separate_buckets() {
        let limiter = Limiter::new(Rate::per_minute(1), Limit::Login);
        let a: IpAddr = "10.0.0.1".parse().expect("valid");
        let b: IpAddr = "10.0.0.2".parse().expect("valid");
        assert!(limiter.check(a, 1).is_ok());
        assert!(limiter.check(a, 1).is_err());
        assert!(limiter.check(b, 1).is_ok());
    }

    #[test]
    fn a_costly_request_takes_all_its_tokens_or_none() {
        let rate = Rate {
            burst: 10,
            per_second: 1.0,
        };
        let mut bucket = Bucket::full(rate);
        let now = Instant::now();
        assert!(bucket.take_many(8, rate, now).is_ok());
        // Two left: a cost of three waits a second and takes nothing.
        let wait = bucket.take_many(3, rate, now).expect_err("one short");
        assert_eq!(wait, Duration::from_secs(1));
        assert!(bucket.take_many(2, rate, now).is_ok());
        // More than the burst needs the whole bucket, and then passes.
        assert!(
            bucket
                .take_many(50, rate, now + Duration::from_secs(9))
                .is_err()
        );
        assert!(
            bucket
                .take_many(50, rate, now + Duration::from_secs(10))
                .is_ok()
        );
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let proxy: IpAddr = "127.0.0.1".parse().expect("valid");
        let request = || {
            TestRequest::default()
                .peer_addr("127.0.0.1:5000".parse().expect("valid"))
                .insert_header(("x-forwarded-for", "203.0.113.9, 198.51.100.7"))
                .to_http_request()
        };
        // Untrusted peer: the header is ignored.
        assert_eq!(client_address(&request(), &[]), Some(proxy));
        // Trusted peer: the nearest untrusted address in the chain.
        assert_eq!(
            client_address(&request(), &[proxy]),
            Some("198.51.100.7".parse().expect("valid"))
        );
    }
}
