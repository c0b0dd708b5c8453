//! Rate limits: token buckets per client address (sign-up and sign-in) and
//! per WebSocket connection (messages).

use std::collections::HashMap;
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
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(f64::from(rate.burst));
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / rate.per_second.max(f64::MIN_POSITIVE);
            Err(Duration::from_secs_f64(wait.min(86_400.0)))
        }
    }

    fn is_full(&self, rate: Rate, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens + elapsed * rate.per_second >= f64::from(rate.burst)
    }
}

/// Token buckets keyed by client address.
#[derive(Debug)]
pub(crate) struct AddressLimiter {
    rate: Rate,
    /// Which limit it is, for the count of its refusals.
    limit: Limit,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

/// Addresses tracked before idle (full) buckets are dropped.
const MAX_TRACKED: usize = 100_000;

impl AddressLimiter {
    pub(crate) fn new(rate: Rate, limit: Limit) -> AddressLimiter {
        AddressLimiter {
            rate,
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Admits a request from `address`, or says when to retry.
    pub(crate) fn check(&self, address: IpAddr) -> Result<(), Duration> {
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
            .entry(address)
            .or_insert_with(|| Bucket::full(self.rate))
            .take(self.rate, now);
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
        let limiter = AddressLimiter::new(Rate::per_minute(1), Limit::Login);
        let a: IpAddr = "10.0.0.1".parse().expect("valid");
        let b: IpAddr = "10.0.0.2".parse().expect("valid");
        assert!(limiter.check(a).is_ok());
        assert!(limiter.check(a).is_err());
        assert!(limiter.check(b).is_ok());
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
