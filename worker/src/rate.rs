//! A client-side rate limit for DetectLabels calls.
//!
//! Rekognition's quota is per account and region (transactions per second);
//! the SDK retries throttled calls, but a fleet of array children that all
//! start at once spends most of its retries being throttled. `--rate-limit`
//! paces the calls each process starts instead. It gates the first attempt
//! of each DetectLabels call; the SDK's retries of a throttled call already
//! back off on their own.
//!
//! The limiter is a token bucket in its "generic cell rate" form: it keeps
//! the theoretical time the next call is due, so it holds no timer task and
//! needs no refill loop. Every caller reserves the next slot under a short
//! lock and then sleeps, outside the lock, until its slot. It uses tokio's
//! clock, so tests run it with paused time.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Paces callers to at most `rate` per second, letting up to `burst` through
/// at once after an idle period.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    tolerance: Duration,
    next_due: Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// A limiter of `per_second` calls a second (must be positive and
    /// finite) and bursts of `burst` calls (at least 1).
    pub fn new(per_second: f64, burst: u32) -> Self {
        assert!(
            per_second.is_finite() && per_second > 0.0,
            "a rate must be a positive number, not {per_second}"
        );
        let interval = Duration::from_secs_f64(1.0 / per_second);
        Self {
            interval,
            tolerance: interval * burst.max(1).saturating_sub(1),
            next_due: Mutex::new(None),
        }
    }

    /// A limiter that spaces calls evenly, `per_second` a second, no burst.
    pub fn per_second(per_second: f64) -> Self {
        Self::new(per_second, 1)
    }

    /// Time between two calls at the steady rate.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Waits for the caller's turn.
    pub async fn acquire(&self) {
        let wait_until = {
            let mut next_due = self
                .next_due
                .lock()
                .expect("the rate limiter lock is never poisoned");
            let now = Instant::now();
            let slot = next_due.map_or(now, |due| due.max(now));
            *next_due = Some(slot + self.interval);
            let ahead = slot - now;
            (ahead > self.tolerance).then(|| now + (ahead - self.tolerance))
        };
        if let Some(at) = wait_until {
            tokio::time::sleep_until(at).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn calls_are_spaced_by_the_interval() {
        let limiter = RateLimiter::per_second(4.0);
        let start = Instant::now();
        let mut times = Vec::new();

        for _ in 0..5 {
            limiter.acquire().await;
            times.push(start.elapsed());
        }

        let ms: Vec<u128> = times.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [0, 250, 500, 750, 1000]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_passes_at_once_and_then_the_rate_applies() {
        let limiter = RateLimiter::new(2.0, 3);
        let start = Instant::now();
        let mut times = Vec::new();

        for _ in 0..5 {
            limiter.acquire().await;
            times.push(start.elapsed().as_millis());
        }

        assert_eq!(times, [0, 0, 0, 500, 1000]);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_time_does_not_save_up_more_than_one_burst() {
        let limiter = RateLimiter::new(10.0, 2);
        limiter.acquire().await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        let start = Instant::now();
        let mut times = Vec::new();

        for _ in 0..4 {
            limiter.acquire().await;
            times.push(start.elapsed().as_millis());
        }

        assert_eq!(times, [0, 0, 100, 200]);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_rate() {
        let limiter = Arc::new(RateLimiter::per_second(5.0));
        let start = Instant::now();

        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let limiter = Arc::clone(&limiter);
                tokio::spawn(async move {
                    limiter.acquire().await;
                    start.elapsed()
                })
            })
            .collect();
        let mut times = Vec::new();
        for task in tasks {
            times.push(task.await.unwrap());
        }
        times.sort();

        assert_eq!(times.first().copied(), Some(Duration::ZERO));
        assert_eq!(times.last().map(Duration::as_millis), Some(1800));
        assert!(times.windows(2).all(|w| w[1] - w[0] >= limiter.interval()));
    }
}
