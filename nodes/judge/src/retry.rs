//! When to try a call again, and how long to wait first.

use std::time::{Duration, SystemTime};

use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

/// Retries of one call: full-jitter exponential backoff unless the server says how long.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt at most.
    pub max_retries: u32,
    /// The backoff's first ceiling.
    pub base: Duration,
    /// No backoff waits longer than this (a server's own wait is honoured whatever it is).
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 8,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry `retry` (0 for the first) of the call keyed `call`. A wait the
    /// server asked for (`Retry-After`) is honoured exactly: retrying sooner only buys
    /// another 429. Otherwise the wait is uniform in [0, min(cap, base * 2^retry)]: calls
    /// that failed together spread out instead of returning together. The draw is seeded by
    /// the call and the retry number, so it needs no process-wide RNG and a test can
    /// reproduce it.
    pub fn delay(&self, retry: u32, server_wait: Option<Duration>, call: &[u8; 32]) -> Duration {
        if let Some(wait) = server_wait {
            return wait;
        }
        let ceiling = self
            .base
            .saturating_mul(1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX))
            .min(self.cap);
        let mut seed = *call;
        for (b, r) in seed.iter_mut().zip(retry.to_le_bytes()) {
            *b ^= r;
        }
        let mut rng = rand_chacha::ChaCha8Rng::from_seed(seed);
        ceiling.mul_f64(rng.random::<f64>())
    }
}

/// Whether a status is worth retrying: rate limits, timeouts and server errors are
/// transient; any other 4xx says the request itself is wrong and would fail again.
pub fn is_transient(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
}

/// How long the server asked the client to wait: `retry-after-ms` (exact, as OpenAI-style
/// APIs send it) before `retry-after` (whole seconds, or an HTTP date, per RFC 9110).
pub fn server_wait(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let v = header("retry-after")?;
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_exact_wait_wins_over_the_rounded_one() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let h = headers(&[("retry-after", "2"), ("retry-after-ms", "1500")]);
        assert_eq!(server_wait(&h, now), Some(Duration::from_millis(1500)));
        assert_eq!(
            server_wait(&headers(&[("retry-after", "2")]), now),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            server_wait(&headers(&[("retry-after", "0.25")]), now),
            Some(Duration::from_millis(250))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(
            server_wait(&headers(&[("retry-after", &date)]), now),
            Some(Duration::from_secs(7))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(7));
        assert_eq!(
            server_wait(&headers(&[("retry-after", &past)]), now),
            Some(Duration::ZERO)
        );
        assert_eq!(server_wait(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(server_wait(&headers(&[("retry-after", "-1")]), now), None);
        assert_eq!(server_wait(&HeaderMap::new(), now), None);
    }

    #[test]
    fn backoff_grows_is_capped_and_is_jittered_per_call() {
        let p = RetryPolicy {
            max_retries: 10,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        let call = [7u8; 32];
        for retry in 0..12 {
            let ceiling = Duration::from_millis(100 * (1 << retry.min(10))).min(p.cap);
            let d = p.delay(retry, None, &call);
            assert!(d <= ceiling, "retry {retry}: {d:?} > {ceiling:?}");
            assert_eq!(d, p.delay(retry, None, &call), "reproducible");
        }
        let spread: std::collections::BTreeSet<Duration> =
            (0..16u8).map(|i| p.delay(3, None, &[i; 32])).collect();
        assert!(
            spread.len() > 12,
            "calls failing together spread out: {spread:?}"
        );
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(5)), &call),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn only_transient_statuses_are_retried() {
        for s in [429, 408, 500, 502, 503, 504, 529] {
            assert!(is_transient(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [400, 401, 403, 404, 422] {
            assert!(!is_transient(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }
}
