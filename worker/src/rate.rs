//! The pace of DetectLabels calls: a fixed per-process limit, or a share of
//! the account's quota that adapts to throttling.
//!
//! Rekognition's DetectLabels quota is per account and region (transactions
//! per second), shared by every worker process. [`RateLimiter`] paces the
//! calls one process starts: every caller reserves the next slot under a
//! short lock and sleeps, outside the lock, until it (a token bucket in its
//! "generic cell rate" form: it keeps the time the next call is due, so it
//! holds no timer task). It uses tokio's clock, so tests run it with paused
//! time.
//!
//! # The fleet formula ([`Aimd::for_fleet`])
//!
//! With `R` the fleet's DetectLabels rate (`--fleet-rate`, the account
//! quota) and `N` the most worker processes that run at once
//! (`--fleet-size`, Batch's `max_vcpus / vcpus per job`):
//!
//! * a process starts at its share `s = R / N`, so a full fleet starts at
//!   the quota and never above it;
//! * while it has not been throttled for 60 s (or ever), it grows by 5% of
//!   its rate per second: a process alone in the fleet, or left with the
//!   quota of jobs that finished, finds the free quota within a minute or
//!   two (at equilibrium each process is throttled about every 20 s, so this
//!   only happens when the fleet has room);
//! * otherwise, additive increase: `+ s / 100` per second, spread over its
//!   successful calls (each adds `s / 100 / rate`);
//! * multiplicative decrease: a throttled call multiplies the rate by 0.8,
//!   at most once a second (the calls already in flight when the rate fell
//!   come back throttled too and must not count again);
//! * the rate stays within `[s / 10, min(R, --rate-limit)]`.
//!
//! At equilibrium, a fleet of `N` processes each adding `s/100` per second
//! gains `R/100` per second in total, and each throttle takes `0.2 · s` off
//! one process, so the fleet sees about `N / 20` throttled calls a second:
//! 0.8 of 50 calls a second (1.6%) for 16 processes, 0.2 (0.4%) for 4. The
//! bench (`make bench`, fleet runs) measures it against one shared limit.
//!
//! A throttled call is retried by the worker, not by the SDK, and only after
//! the limiter has slowed down ([`crate::run`]): throttling is back-pressure,
//! never a reason to fail an image.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// How an adaptive limiter moves its rate (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aimd {
    /// Rate at the start, per second.
    pub start: f64,
    /// Lowest rate.
    pub floor: f64,
    /// Highest rate.
    pub ceiling: f64,
    /// Additive increase, per second of successful calls.
    pub increase_per_second: f64,
    /// Growth per second while not throttled for `probe_after`, as a
    /// fraction of the rate.
    pub initial_growth: f64,
    /// Time without a throttle after which the rate grows by
    /// `initial_growth` again.
    pub probe_after: Duration,
    /// Factor applied on a throttle.
    pub decrease: f64,
    /// Least time between two decreases.
    pub cooldown: Duration,
}

impl Aimd {
    /// The limiter of one process of a fleet of at most `fleet_size`
    /// processes sharing `fleet_rate` calls a second, never above `cap`
    /// when one is given.
    pub fn for_fleet(fleet_rate: f64, fleet_size: u32, cap: Option<f64>) -> Self {
        let ceiling = cap.map_or(fleet_rate, |cap| cap.min(fleet_rate));
        let share = (fleet_rate / f64::from(fleet_size.max(1))).min(ceiling);
        Self {
            start: share,
            floor: share / 10.0,
            ceiling,
            increase_per_second: share / 100.0,
            initial_growth: 0.05,
            probe_after: Duration::from_secs(60),
            decrease: 0.8,
            cooldown: Duration::from_secs(1),
        }
    }
}

#[derive(Debug)]
struct State {
    rate: f64,
    next_due: Option<Instant>,
    last_decrease: Option<Instant>,
    last_throttle: Option<Instant>,
}

/// Paces callers to a rate: fixed ([`RateLimiter::per_second`]) or adaptive
/// ([`RateLimiter::adaptive`]).
#[derive(Debug)]
pub struct RateLimiter {
    tolerance_calls: u32,
    control: Option<Aimd>,
    state: Mutex<State>,
}

impl RateLimiter {
    /// A limiter of `per_second` calls a second (must be positive and
    /// finite) and bursts of `burst` calls (at least 1).
    pub fn new(per_second: f64, burst: u32) -> Self {
        Self::with(per_second, burst, None)
    }

    /// A limiter that spaces calls evenly, `per_second` a second, no burst.
    pub fn per_second(per_second: f64) -> Self {
        Self::new(per_second, 1)
    }

    /// A limiter that moves its rate by `control`, calls evenly spaced.
    pub fn adaptive(control: Aimd) -> Self {
        Self::with(control.start, 1, Some(control))
    }

    fn with(per_second: f64, burst: u32, control: Option<Aimd>) -> Self {
        assert!(
            per_second.is_finite() && per_second > 0.0,
            "a rate must be a positive number, not {per_second}"
        );
        Self {
            tolerance_calls: burst.max(1) - 1,
            control,
            state: Mutex::new(State {
                rate: per_second,
                next_due: None,
                last_decrease: None,
                last_throttle: None,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("the rate limiter lock is never poisoned")
    }

    /// The current rate, calls per second.
    pub fn rate(&self) -> f64 {
        self.state().rate
    }

    /// Time between two calls at the current rate.
    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.rate())
    }

    /// Waits for the caller's turn.
    pub async fn acquire(&self) {
        let wait_until = {
            let mut state = self.state();
            let interval = Duration::from_secs_f64(1.0 / state.rate);
            let now = Instant::now();
            let slot = state.next_due.map_or(now, |due| due.max(now));
            state.next_due = Some(slot + interval);
            let tolerance = interval * self.tolerance_calls;
            let ahead = slot - now;
            (ahead > tolerance).then(|| now + (ahead - tolerance))
        };
        if let Some(at) = wait_until {
            tokio::time::sleep_until(at).await;
        }
    }

    /// A call went through: an adaptive limiter speeds up a little.
    pub fn succeeded(&self) {
        let Some(c) = self.control else { return };
        let mut state = self.state();
        let probing = state
            .last_throttle
            .is_none_or(|at| at.elapsed() >= c.probe_after);
        let step = if probing {
            c.initial_growth * state.rate
        } else {
            c.increase_per_second
        };
        state.rate = (state.rate + step / state.rate).min(c.ceiling);
    }

    /// A call was throttled: an adaptive limiter slows down (once per
    /// cooldown), and the next call waits at least one new interval.
    pub fn throttled(&self) {
        let Some(c) = self.control else { return };
        let now = Instant::now();
        let mut state = self.state();
        state.last_throttle = Some(now);
        if state
            .last_decrease
            .is_some_and(|at| now.duration_since(at) < c.cooldown)
        {
            return;
        }
        state.last_decrease = Some(now);
        state.rate = (state.rate * c.decrease).max(c.floor);
        let pause = now + Duration::from_secs_f64(1.0 / state.rate);
        state.next_due = Some(state.next_due.map_or(pause, |due| due.max(pause)));
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

    #[test]
    fn a_fleet_process_starts_at_its_share_within_the_quota_and_the_cap() {
        let c = Aimd::for_fleet(50.0, 16, None);
        assert_eq!((c.start, c.floor, c.ceiling), (3.125, 0.3125, 50.0));
        assert_eq!(c.increase_per_second, 0.03125);

        let capped = Aimd::for_fleet(50.0, 2, Some(10.0));
        assert_eq!((capped.start, capped.ceiling), (10.0, 10.0));
        let alone = Aimd::for_fleet(5.0, 0, None);
        assert_eq!(alone.start, 5.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttle_slows_the_process_once_per_cooldown_and_never_below_the_floor() {
        let limiter = RateLimiter::adaptive(Aimd::for_fleet(40.0, 4, None));
        assert_eq!(limiter.rate(), 10.0);

        limiter.throttled();
        limiter.throttled();
        assert_eq!(
            limiter.rate(),
            8.0,
            "the second throttle is in the cooldown"
        );

        for _ in 0..40 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            limiter.throttled();
        }
        assert_eq!(limiter.rate(), 1.0, "the floor is a tenth of the share");
    }

    #[tokio::test(start_paused = true)]
    async fn successes_grow_the_rate_by_a_hundredth_of_the_share_a_second_after_a_throttle() {
        let limiter = RateLimiter::adaptive(Aimd::for_fleet(40.0, 4, None));
        limiter.throttled();
        let after = limiter.rate();
        // One second's worth of calls at the current rate.
        let calls = after.round() as usize;
        for _ in 0..calls {
            limiter.succeeded();
        }
        let grown = limiter.rate() - after;
        assert!((grown - 0.1).abs() < 0.01, "grew by {grown}");
    }

    #[tokio::test(start_paused = true)]
    async fn before_its_first_throttle_a_process_grows_five_percent_a_second_up_to_the_ceiling() {
        let limiter = RateLimiter::adaptive(Aimd::for_fleet(50.0, 16, None));
        // About one second's worth of calls at 3.125 a second.
        for _ in 0..3 {
            limiter.succeeded();
        }
        let grown = limiter.rate() / 3.125;
        assert!((grown - 1.05).abs() < 0.01, "grew by a factor {grown}");
        for _ in 0..100_000 {
            limiter.succeeded();
        }
        assert_eq!(limiter.rate(), 50.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fixed_limiter_ignores_throttles_and_successes() {
        let limiter = RateLimiter::per_second(4.0);
        limiter.throttled();
        limiter.succeeded();
        assert_eq!(limiter.rate(), 4.0);
    }

    /// A simulated account quota: a token bucket of `rate` a second and a
    /// burst of one second, on tokio's clock.
    struct Quota {
        rate: f64,
        tokens: f64,
        at: Instant,
    }

    impl Quota {
        fn take(&mut self) -> bool {
            let now = Instant::now();
            let refill = now.duration_since(self.at).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + refill).min(self.rate);
            self.at = now;
            if self.tokens >= 1.0 {
                self.tokens -= 1.0;
                true
            } else {
                false
            }
        }
    }

    /// `processes` adaptive limiters calling for `seconds` against one
    /// quota of 50 a second, each call taking 50 ms: (accepted, throttled)
    /// in the last third of the run.
    async fn fleet(processes: u32, in_flight: usize, seconds: u64, half_leave: bool) -> (u64, u64) {
        let quota = Arc::new(Mutex::new(Quota {
            rate: 50.0,
            tokens: 50.0,
            at: Instant::now(),
        }));
        let start = Instant::now();
        let end = start + Duration::from_secs(seconds);
        let settled = start + Duration::from_secs(seconds * 2 / 3);
        let counts = Arc::new(Mutex::new((0u64, 0u64)));
        let mut tasks = Vec::new();
        for p in 0..processes {
            let limiter = Arc::new(RateLimiter::adaptive(Aimd::for_fleet(
                50.0, processes, None,
            )));
            // Half the fleet (when asked) finishes a third of the way in.
            let end = if half_leave && p % 2 == 0 {
                start + Duration::from_secs(seconds / 3)
            } else {
                end
            };
            for _ in 0..in_flight {
                let (limiter, quota, counts) = (limiter.clone(), quota.clone(), counts.clone());
                tasks.push(tokio::spawn(async move {
                    while Instant::now() < end {
                        limiter.acquire().await;
                        let accepted = quota.lock().unwrap().take();
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        if accepted {
                            limiter.succeeded();
                        } else {
                            limiter.throttled();
                        }
                        if Instant::now() >= settled {
                            let mut c = counts.lock().unwrap();
                            if accepted {
                                c.0 += 1;
                            } else {
                                c.1 += 1;
                            }
                        }
                    }
                }));
            }
        }
        for task in tasks {
            task.await.unwrap();
        }
        let c = *counts.lock().unwrap();
        c
    }

    #[tokio::test(start_paused = true)]
    async fn a_simulated_fleet_holds_the_shared_quota_with_few_throttles_even_when_half_of_it_leaves(
    ) {
        for (processes, in_flight, half_leave) in [(16, 8, false), (4, 32, false), (16, 8, true)] {
            let seconds = 360;
            let (accepted, throttled) = fleet(processes, in_flight, seconds, half_leave).await;
            let measured = (seconds - seconds * 2 / 3) as f64;
            let utilisation = accepted as f64 / measured / 50.0;
            let throttled_share = throttled as f64 / (accepted + throttled) as f64;
            println!("{processes} x {in_flight} (half leave: {half_leave}): {utilisation:.3} of the quota, {throttled_share:.4} throttled");
            assert!(
                utilisation >= 0.9,
                "{processes} x {in_flight}: {utilisation:.3} of the quota"
            );
            assert!(
                throttled_share <= 0.05,
                "{processes} x {in_flight}: {throttled_share:.3} of calls throttled"
            );
        }
    }
}
