//! [`ReconnectPolicy`]: when a client connection that was lost (or could not be made) is
//! tried again, and after how long — jittered exponential backoff, an optional bound on the
//! attempts, and which closes are worth a new attempt.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use wsworker_proto::CloseCode;

use crate::shared::CloseInfo;

type Decide = dyn Fn(&CloseInfo) -> bool + Send + Sync;

/// How a client reconnects ([`WebSocketBuilder::reconnect`](super::WebSocketBuilder::reconnect)).
///
/// The delay before attempt `n` (1 for the first after a loss) is
/// `min(max_delay, initial_delay × factor^(n-1))`, less a random share of up to `jitter` of
/// it (so that clients dropped together do not come back together): with the defaults,
/// 250–500 ms, 0.5–1 s, 1–2 s, 2–4 s, … up to 15–30 s. The count starts again after each
/// connection that opens.
///
/// A connection that ends is tried again when [`ReconnectPolicy::should_reconnect`] says
/// so (by default: going away, dropped, server error, restart, try again later, bad gateway),
/// unless the application closed it; every failed attempt (refused, timed out, rejected, a
/// failed TLS or WebSocket handshake) is tried again. A URL that cannot be used at all (not
/// `ws://` or `wss://`, a bad header) fails at once.
///
/// ```
/// use std::time::Duration;
/// use wsworker::client::ReconnectPolicy;
///
/// let policy = ReconnectPolicy::default()
///     .initial_delay(Duration::from_millis(100))
///     .max_delay(Duration::from_secs(2))
///     .max_attempts(10);
/// # drop(policy);
/// ```
#[derive(Clone)]
pub struct ReconnectPolicy {
    initial_delay: Duration,
    max_delay: Duration,
    factor: f64,
    jitter: f64,
    max_attempts: Option<u32>,
    decide: Option<Arc<Decide>>,
}

impl Default for ReconnectPolicy {
    /// 500 ms, doubling up to 30 s, with a jitter of 0.5, attempts without end.
    fn default() -> Self {
        Self {
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            factor: 2.0,
            jitter: 0.5,
            max_attempts: None,
            decide: None,
        }
    }
}

impl ReconnectPolicy {
    /// The default policy (see [`ReconnectPolicy::default`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// The delay before the first attempt after a loss. Default 500 ms.
    #[must_use]
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// The longest delay between attempts. Default 30 s.
    #[must_use]
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// What each delay is multiplied by for the next attempt (at least 1). Default 2.
    #[must_use]
    pub fn factor(mut self, factor: f64) -> Self {
        // `max` also turns NaN into 1.
        self.factor = factor.max(1.0);
        self
    }

    /// The share of each delay taken off at random, from 0 (exact delays) to 1 (anything
    /// between 0 and the delay). Default 0.5.
    #[must_use]
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        self
    }

    /// At most this many attempts after a loss (counted again after each connection that
    /// opens); when the last fails, the connection is over (its [`WsEvent::Close`]). Default:
    /// no limit.
    ///
    /// [`WsEvent::Close`]: super::WsEvent::Close
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// Decides instead of the default rule (see [`ReconnectPolicy::should_reconnect`])
    /// which ends of an open connection are tried again. A close by the application never
    /// is; a failed attempt always is.
    #[must_use]
    pub fn reconnect_on(
        mut self,
        decide: impl Fn(&CloseInfo) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.decide = Some(Arc::new(decide));
        self
    }

    /// Whether a connection that ended so is tried again. The default rule: yes for 1001
    /// (going away), 1006 (dropped without a close), 1011 (server error), 1012 (service
    /// restart), 1013 (try again later) and 1014 (bad gateway); no for 1000 (the end), 1005
    /// (closed without a code), the protocol and policy errors (1002, 1003, 1007–1010) and
    /// the application's codes (3000–4999), which a new attempt would not change.
    pub fn should_reconnect(&self, close: &CloseInfo) -> bool {
        if let Some(decide) = &self.decide {
            return decide(close);
        }
        matches!(
            close.code,
            CloseCode::GOING_AWAY
                | CloseCode::ABNORMAL
                | CloseCode::INTERNAL_ERROR
                | CloseCode::SERVICE_RESTART
                | CloseCode::TRY_AGAIN_LATER
                | CloseCode::BAD_GATEWAY
        )
    }

    /// Whether attempt `attempt` (from 1) may be made.
    pub(super) fn allows(&self, attempt: u32) -> bool {
        self.max_attempts.is_none_or(|max| attempt <= max)
    }

    /// The delay before attempt `attempt` (from 1), with a random jitter.
    pub(super) fn delay(&self, attempt: u32) -> Duration {
        self.backoff(attempt, rand::random::<f64>())
    }

    /// The delay before attempt `attempt` (from 1) for the random draw `unit` (in [0, 1)):
    /// the exponential delay, capped, less `jitter × unit` of it.
    pub(super) fn backoff(&self, attempt: u32, unit: f64) -> Duration {
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let max = self.max_delay.as_secs_f64();
        let base = self.initial_delay.as_secs_f64() * self.factor.powi(exponent);
        // 0 × ∞ (no initial delay, a factor overflowing) stays 0; past the cap (infinity
        // too): the cap.
        let base = if base.is_nan() { 0.0 } else { base.min(max) };
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let delay = base * (1.0 - self.jitter * unit);
        Duration::try_from_secs_f64(delay).unwrap_or(self.max_delay)
    }
}

impl fmt::Debug for ReconnectPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReconnectPolicy")
            .field("initial_delay", &self.initial_delay)
            .field("max_delay", &self.max_delay)
            .field("factor", &self.factor)
            .field("jitter", &self.jitter)
            .field("max_attempts", &self.max_attempts)
            .field("reconnect_on", &self.decide.as_ref().map(|_| "custom"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn close(code: u16) -> CloseInfo {
        CloseInfo {
            code: CloseCode::new(code),
            reason: String::new(),
            was_clean: code != 1006,
        }
    }

    #[test]
    fn delays_grow_by_the_factor_up_to_the_cap() {
        let policy = ReconnectPolicy::new()
            .initial_delay(ms(100))
            .max_delay(ms(2_000))
            .jitter(0.0);
        let delays: Vec<_> = (1..=8).map(|n| policy.backoff(n, 0.7)).collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800, 1_600, 2_000, 2_000, 2_000].map(ms)
        );
        assert_eq!(policy.backoff(u32::MAX, 0.5), ms(2_000), "no overflow");
        let triple = policy.clone().factor(3.0);
        assert_eq!(triple.backoff(3, 0.0), ms(900));
        assert_eq!(
            policy.clone().factor(0.5).backoff(5, 0.0),
            ms(100),
            "at least 1"
        );
        assert_eq!(policy.factor(f64::NAN).backoff(5, 0.0), ms(100));
    }

    #[test]
    fn jitter_takes_a_random_share_off_each_delay() {
        let policy = ReconnectPolicy::new().initial_delay(ms(1_000)).jitter(0.5);
        assert_eq!(policy.backoff(1, 0.0), ms(1_000));
        assert_eq!(policy.backoff(1, 0.5), ms(750));
        assert_eq!(policy.backoff(2, 1.0), ms(1_000));
        let full = policy.clone().jitter(7.0);
        assert_eq!(full.backoff(1, 0.25), ms(750));
        assert_eq!(policy.clone().jitter(-1.0).backoff(1, 0.9), ms(1_000));
        assert_eq!(policy.backoff(1, f64::NAN), ms(1_000));
        // The random draws stay in range.
        let policy = ReconnectPolicy::new();
        for attempt in 1..50 {
            let delay = policy.delay(attempt);
            let base = policy.backoff(attempt, 0.0);
            assert!(delay <= base && delay >= base / 2, "{attempt}: {delay:?}");
        }
    }

    #[test]
    fn a_zero_initial_delay_stays_zero_and_a_huge_one_is_capped() {
        let zero = ReconnectPolicy::new().initial_delay(Duration::ZERO);
        assert_eq!(zero.backoff(1, 0.3), Duration::ZERO);
        assert_eq!(
            zero.backoff(5_000, 0.3),
            Duration::ZERO,
            "0 × ∞ is not a delay"
        );
        let huge = ReconnectPolicy::new()
            .initial_delay(Duration::MAX)
            .max_delay(Duration::MAX)
            .jitter(0.0);
        assert_eq!(huge.backoff(3, 0.0), Duration::MAX);
    }

    #[test]
    fn attempts_are_bounded_only_when_asked() {
        let policy = ReconnectPolicy::new();
        assert!(policy.allows(1) && policy.allows(u32::MAX));
        let policy = policy.max_attempts(2);
        assert!(policy.allows(1) && policy.allows(2) && !policy.allows(3));
        assert!(!ReconnectPolicy::new().max_attempts(0).allows(1));
    }

    #[test]
    fn the_default_rule_retries_what_a_new_attempt_may_fix() {
        let policy = ReconnectPolicy::new();
        for code in [1001, 1006, 1011, 1012, 1013, 1014] {
            assert!(policy.should_reconnect(&close(code)), "{code}");
        }
        for code in [1000, 1002, 1003, 1005, 1007, 1008, 1009, 1010, 3000, 4999] {
            assert!(!policy.should_reconnect(&close(code)), "{code}");
        }
        let custom = policy.reconnect_on(|close| close.code.as_u16() >= 4000);
        assert!(custom.should_reconnect(&close(4001)));
        assert!(!custom.should_reconnect(&close(1006)));
        assert!(format!("{custom:?}").contains("custom"));
    }
}
