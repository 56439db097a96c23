//! Per-model circuit breaker over a sliding window of outcomes.
//!
//! Every method takes `now` instead of reading the clock, so the state machine
//! is deterministic under test and callers can reuse the `Instant` they already
//! took to measure latency.

use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct BreakerConfig {
    /// Sliding window of outcomes.
    pub window: Duration,
    /// No decision on fewer outcomes than this in the window.
    pub min_requests: u32,
    /// Open when errors/total >= this.
    pub error_rate: f64,
    /// A call slower than this counts as slow.
    pub slow_call: Duration,
    /// Open when slow/total >= this; 1.0 or more disables the check.
    pub slow_rate: f64,
    /// Time OPEN before letting probes through.
    pub open_for: Duration,
    /// Successes needed in HALF_OPEN to close (0 is treated as 1).
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(10),
            min_requests: 20,
            error_rate: 0.5,
            slow_call: Duration::from_millis(50),
            slow_rate: 0.8,
            open_for: Duration::from_secs(5),
            half_open_probes: 3,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// Admitted as a half-open probe; the caller must `record` its outcome.
    Probe,
    Rejected {
        retry_after: Duration,
    },
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub state: BreakerState,
    pub reason: String,
    pub changed_at: Instant,
    /// When an OPEN breaker starts admitting probes; `None` unless OPEN.
    pub probe_at: Option<Instant>,
    pub error_rate: f64,
    /// Upper bound of the histogram bucket holding the p99, capped at the
    /// largest latency seen in the window.
    pub p99: Duration,
    pub requests_in_window: u32,
}

pub struct CircuitBreaker {
    config: BreakerConfig,
    inner: Mutex<Inner>,
}

const SLOTS: usize = 10;

/// Inclusive upper bounds, 1-2-5 log spacing: p99 is exact to within one
/// step (at most 2.5x) with constant memory.
const BOUNDS: [Duration; 16] = [
    Duration::from_micros(100),
    Duration::from_micros(200),
    Duration::from_micros(500),
    Duration::from_millis(1),
    Duration::from_millis(2),
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(20),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(200),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(10),
];
/// One extra bucket for everything beyond the last bound.
const HIST: usize = BOUNDS.len() + 1;

#[derive(Clone, Copy, Default)]
struct Slot {
    epoch: u64,
    total: u32,
    errors: u32,
    slow: u32,
    max: Duration,
    hist: [u32; HIST],
}

#[derive(Default)]
struct Totals {
    total: u32,
    errors: u32,
    slow: u32,
}

/// Ring of time buckets: memory is constant whatever the request rate.
struct Window {
    origin: Instant,
    width_ns: u128,
    /// Newest bucket epoch seen; only moves forward.
    head: u64,
    slots: [Slot; SLOTS],
}

impl Window {
    fn new(window: Duration, now: Instant) -> Self {
        Self {
            origin: now,
            // Floor of 1ns so a zero window cannot divide by zero.
            width_ns: (window.as_nanos() / SLOTS as u128).max(1),
            head: 0,
            slots: [Slot::default(); SLOTS],
        }
    }

    fn epoch(&self, now: Instant) -> u64 {
        let e = now.saturating_duration_since(self.origin).as_nanos() / self.width_ns;
        u64::try_from(e).unwrap_or(u64::MAX)
    }

    /// Returns the epoch of `now`, dropping buckets that left the window.
    fn advance(&mut self, now: Instant) -> u64 {
        let e = self.epoch(now);
        // `now` is taken before the lock, so calls can arrive slightly out of
        // order; the window never moves backwards.
        if e > self.head {
            self.head = e;
            for s in &mut self.slots {
                if s.total != 0 && e - s.epoch >= SLOTS as u64 {
                    *s = Slot::default();
                }
            }
        }
        e
    }

    fn add(&mut self, now: Instant, latency: Duration, ok: bool, slow: bool) {
        let e = self.advance(now);
        if self.head - e >= SLOTS as u64 {
            return; // already older than the window
        }
        let s = &mut self.slots[(e % SLOTS as u64) as usize];
        if s.epoch != e {
            *s = Slot { epoch: e, ..Slot::default() };
        }
        s.total = s.total.saturating_add(1);
        s.errors = s.errors.saturating_add(u32::from(!ok));
        s.slow = s.slow.saturating_add(u32::from(slow));
        s.max = s.max.max(latency);
        let b = BOUNDS.partition_point(|&b| b < latency);
        s.hist[b] = s.hist[b].saturating_add(1);
    }

    fn clear(&mut self) {
        self.slots = [Slot::default(); SLOTS];
    }

    fn totals(&self) -> Totals {
        self.slots.iter().fold(Totals::default(), |t, s| Totals {
            total: t.total.saturating_add(s.total),
            errors: t.errors.saturating_add(s.errors),
            slow: t.slow.saturating_add(s.slow),
        })
    }

    fn p99(&self) -> Duration {
        let mut hist = [0u64; HIST];
        let mut max = Duration::ZERO;
        for s in &self.slots {
            for (h, &c) in hist.iter_mut().zip(&s.hist) {
                *h += u64::from(c);
            }
            max = max.max(s.max);
        }
        let total: u64 = hist.iter().sum();
        let rank = (total * 99).div_ceil(100);
        let mut seen = 0;
        for (i, &c) in hist.iter().enumerate() {
            seen += c;
            if seen >= rank && c > 0 {
                return BOUNDS.get(i).map_or(max, |&b| b.min(max));
            }
        }
        Duration::ZERO
    }
}

#[derive(Clone, Copy)]
enum Phase {
    Closed {
        recovered: bool,
    },
    /// `probe_at` is `None` only if `now + open_for` overflows `Instant`.
    Open {
        probe_at: Option<Instant>,
    },
    HalfOpen {
        in_flight: u32,
        successes: u32,
        last_activity: Instant,
    },
}

struct Inner {
    phase: Phase,
    changed_at: Instant,
    /// Why the breaker last opened; reused buffer so tripping on the hot path
    /// does not allocate once it has grown.
    cause: String,
    window: Window,
}

impl Inner {
    fn open(&mut self, cfg: &BreakerConfig, now: Instant) {
        self.phase = Phase::Open { probe_at: now.checked_add(cfg.open_for) };
        self.changed_at = now;
    }

    /// OPEN turns HALF_OPEN lazily; stamping the change at `probe_at` rather
    /// than `now` keeps `changed_at` independent of who looked first.
    fn poll(&mut self, now: Instant) {
        if let Phase::Open { probe_at: Some(at) } = self.phase
            && now >= at
        {
            self.phase = Phase::HalfOpen { in_flight: 0, successes: 0, last_activity: at };
            self.changed_at = at;
        }
    }

    fn evaluate(&mut self, cfg: &BreakerConfig, now: Instant) {
        let t = self.window.totals();
        if t.total == 0 || t.total < cfg.min_requests {
            return;
        }
        let total = f64::from(t.total);
        let errors = f64::from(t.errors) / total;
        let slow = f64::from(t.slow) / total;
        if errors >= cfg.error_rate {
            self.cause.clear();
            let _ = write!(
                self.cause,
                "error rate {:.0}% over {} requests in the last {:?}",
                errors * 100.0,
                t.total,
                cfg.window
            );
        } else if cfg.slow_rate < 1.0 && slow >= cfg.slow_rate {
            self.cause.clear();
            let _ = write!(
                self.cause,
                "{:.0}% of {} requests slower than {:?} in the last {:?}",
                slow * 100.0,
                t.total,
                cfg.slow_call,
                cfg.window
            );
        } else {
            return;
        }
        self.open(cfg, now);
    }
}

impl CircuitBreaker {
    pub fn new(config: BreakerConfig, now: Instant) -> Self {
        let window = Window::new(config.window, now);
        Self {
            config,
            inner: Mutex::new(Inner {
                phase: Phase::Closed { recovered: false },
                changed_at: now,
                cause: String::with_capacity(128),
                window,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update leaves Inner consistent, so a panic elsewhere while the
        // lock was held must not take the serving path down with it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn probes_needed(&self) -> u32 {
        self.config.half_open_probes.max(1)
    }

    pub fn admit(&self, now: Instant) -> Admission {
        let cfg = &self.config;
        let mut g = self.lock();
        g.poll(now);
        match g.phase {
            Phase::Closed { .. } => Admission::Allowed,
            Phase::Open { probe_at } => Admission::Rejected {
                retry_after: probe_at.map_or(cfg.open_for, |at| at.saturating_duration_since(now)),
            },
            Phase::HalfOpen { mut in_flight, successes, last_activity } => {
                let limit = self.probes_needed();
                // A caller that drops a probe without recording it would
                // otherwise hold its slot forever.
                if in_flight >= limit && now.saturating_duration_since(last_activity) >= cfg.open_for {
                    in_flight = 0;
                }
                if in_flight < limit {
                    g.phase =
                        Phase::HalfOpen { in_flight: in_flight + 1, successes, last_activity: now.max(last_activity) };
                    Admission::Probe
                } else {
                    // A healthy probe finishes within `slow_call`, after which
                    // a slot frees up or the breaker has closed.
                    Admission::Rejected { retry_after: cfg.slow_call }
                }
            }
        }
    }

    pub fn record(&self, now: Instant, latency: Duration, ok: bool) {
        let cfg = &self.config;
        let mut g = self.lock();
        g.poll(now);
        let slow = latency > cfg.slow_call;
        g.window.add(now, latency, ok, slow);
        match g.phase {
            // Outcomes of calls admitted before opening: kept for the
            // snapshot's stats only.
            Phase::Open { .. } => {}
            Phase::Closed { .. } => g.evaluate(cfg, now),
            // No probe outstanding: a straggler from before the breaker
            // opened, which says nothing about recovery.
            Phase::HalfOpen { in_flight: 0, .. } => {}
            Phase::HalfOpen { in_flight, successes, last_activity } => {
                let needed = self.probes_needed();
                // When slowness can trip the breaker, a slow probe must not
                // close it, or it would flap.
                let slow_fail = slow && cfg.slow_rate < 1.0;
                if !ok || slow_fail {
                    g.cause.clear();
                    let _ = if ok {
                        write!(
                            g.cause,
                            "probe failed: took {latency:?}, slower than {:?}; reopened for {:?}",
                            cfg.slow_call, cfg.open_for
                        )
                    } else {
                        write!(
                            g.cause,
                            "probe failed after {successes} of {needed} successful probes; reopened for {:?}",
                            cfg.open_for
                        )
                    };
                    g.open(cfg, now);
                } else if successes + 1 >= needed {
                    g.window.clear();
                    g.phase = Phase::Closed { recovered: true };
                    g.changed_at = now;
                } else {
                    g.phase = Phase::HalfOpen {
                        in_flight: in_flight - 1,
                        successes: successes + 1,
                        last_activity: now.max(last_activity),
                    };
                }
            }
        }
    }

    pub fn trip(&self, now: Instant, reason: &str) {
        let mut g = self.lock();
        g.cause.clear();
        g.cause.push_str(reason);
        // Re-tripping an open breaker restarts `open_for`: the condition
        // (e.g. a full queue) is still there.
        g.open(&self.config, now);
    }

    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let cfg = &self.config;
        let mut g = self.lock();
        g.poll(now);
        g.window.advance(now);
        let t = g.window.totals();
        let (state, reason, probe_at) = match g.phase {
            Phase::Closed { recovered: false } => (BreakerState::Closed, "closed since start".to_owned(), None),
            Phase::Closed { recovered: true } => (
                BreakerState::Closed,
                format!("closed after {} successful probes; last opened because: {}", self.probes_needed(), g.cause),
                None,
            ),
            Phase::Open { probe_at } => (BreakerState::Open, g.cause.clone(), probe_at),
            Phase::HalfOpen { .. } => (
                BreakerState::HalfOpen,
                format!("probing after {:?} open; opened because: {}", cfg.open_for, g.cause),
                None,
            ),
        };
        Snapshot {
            state,
            reason,
            changed_at: g.changed_at,
            probe_at,
            error_rate: if t.total == 0 { 0.0 } else { f64::from(t.errors) / f64::from(t.total) },
            p99: g.window.p99(),
            requests_in_window: t.total,
        }
    }

    pub fn state(&self, now: Instant) -> BreakerState {
        let mut g = self.lock();
        g.poll(now);
        match g.phase {
            Phase::Closed { .. } => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: Duration = Duration::from_millis(5);
    const SLOW: Duration = Duration::from_millis(100);

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    fn record_n(b: &CircuitBreaker, now: Instant, n: u32, latency: Duration, ok: bool) {
        for _ in 0..n {
            b.record(now, latency, ok);
        }
    }

    /// Opens a default breaker at `t0 + 1s` with 20 errors.
    fn opened() -> (CircuitBreaker, Instant, Instant) {
        let t0 = Instant::now();
        let b = CircuitBreaker::new(BreakerConfig::default(), t0);
        let opened_at = ms(t0, 1_000);
        record_n(&b, opened_at, 20, FAST, false);
        assert_eq!(b.state(opened_at), BreakerState::Open);
        (b, t0, opened_at)
    }

    #[test]
    fn is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<CircuitBreaker>();
    }

    #[test]
    fn stays_closed_below_min_requests() {
        let t0 = Instant::now();
        let b = CircuitBreaker::new(BreakerConfig::default(), t0);
        record_n(&b, ms(t0, 100), 19, FAST, false);
        assert_eq!(b.state(ms(t0, 100)), BreakerState::Closed);
        assert_eq!(b.admit(ms(t0, 100)), Admission::Allowed);
        let s = b.snapshot(ms(t0, 100));
        assert_eq!(s.requests_in_window, 19);
        assert_eq!(s.error_rate, 1.0);
        assert_eq!(s.changed_at, t0);
    }

    #[test]
    fn opens_at_error_rate_threshold() {
        let t0 = Instant::now();
        let b = CircuitBreaker::new(BreakerConfig::default(), t0);
        let now = ms(t0, 500);
        record_n(&b, now, 10, FAST, true);
        record_n(&b, now, 9, FAST, false);
        assert_eq!(b.state(now), BreakerState::Closed);
        b.record(now, FAST, false);
        let s = b.snapshot(now);
        assert_eq!(s.state, BreakerState::Open);
        assert_eq!(s.reason, "error rate 50% over 20 requests in the last 10s");
        assert_eq!(s.changed_at, now);
        assert_eq!(s.probe_at, Some(now + Duration::from_secs(5)));
        assert_eq!(s.error_rate, 0.5);
    }

    #[test]
    fn below_threshold_stays_closed() {
        let t0 = Instant::now();
        let b = CircuitBreaker::new(BreakerConfig::default(), t0);
        let now = ms(t0, 500);
        record_n(&b, now, 11, FAST, true);
        record_n(&b, now, 9, FAST, false);
        assert_eq!(b.state(now), BreakerState::Closed);
    }

    #[test]
    fn rejects_while_open_with_retry_after() {
        let (b, _, opened_at) = opened();
        assert_eq!(b.admit(opened_at), Admission::Rejected { retry_after: Duration::from_secs(5) });
        let later = opened_at + Duration::from_millis(3_200);
        assert_eq!(b.admit(later), Admission::Rejected { retry_after: Duration::from_millis(1_800) });
        assert_eq!(b.state(later), BreakerState::Open);
    }

    #[test]
    fn half_open_after_open_for_admits_only_probes() {
        let (b, _, opened_at) = opened();
        let probe_at = opened_at + Duration::from_secs(5);
        assert_eq!(b.admit(probe_at), Admission::Probe);
        assert_eq!(b.state(probe_at), BreakerState::HalfOpen);
        assert_eq!(b.admit(probe_at), Admission::Probe);
        assert_eq!(b.admit(probe_at), Admission::Probe);
        assert_eq!(b.admit(probe_at), Admission::Rejected { retry_after: Duration::from_millis(50) });
        let s = b.snapshot(probe_at);
        assert_eq!(s.state, BreakerState::HalfOpen);
        assert_eq!(s.changed_at, probe_at);
        assert_eq!(s.probe_at, None);
        assert!(s.reason.contains("error rate 100%"), "{}", s.reason);
        // A finished probe frees its slot.
        b.record(probe_at, FAST, true);
        assert_eq!(b.admit(probe_at), Admission::Probe);
    }

    #[test]
    fn failed_probe_reopens() {
        let (b, _, opened_at) = opened();
        let probe_at = opened_at + Duration::from_secs(5);
        assert_eq!(b.admit(probe_at), Admission::Probe);
        assert_eq!(b.admit(probe_at), Admission::Probe);
        b.record(probe_at, FAST, true);
        let fail_at = probe_at + Duration::from_millis(10);
        b.record(fail_at, FAST, false);
        let s = b.snapshot(fail_at);
        assert_eq!(s.state, BreakerState::Open);
        assert_eq!(s.changed_at, fail_at);
        assert!(s.reason.starts_with("probe failed"), "{}", s.reason);
        assert_eq!(b.admit(fail_at), Admission::Rejected { retry_after: Duration::from_secs(5) });
    }

    #[test]
    fn slow_probe_reopens() {
        let (b, _, opened_at) = opened();
        let probe_at = opened_at + Duration::from_secs(5);
        assert_eq!(b.admit(probe_at), Admission::Probe);
        b.record(probe_at, SLOW, true);
        let s = b.snapshot(probe_at);
        assert_eq!(s.state, BreakerState::Open);
        assert_eq!(s.reason, "probe failed: took 100ms, slower than 50ms; reopened for 5s");
    }

    #[test]
    fn successful_probes_close_and_clear_window() {
        let (b, _, opened_at) = opened();
        let probe_at = opened_at + Duration::from_secs(5);
        for _ in 0..3 {
            assert_eq!(b.admit(probe_at), Admission::Probe);
        }
        b.record(probe_at, FAST, true);
        b.record(probe_at, FAST, true);
        assert_eq!(b.state(probe_at), BreakerState::HalfOpen);
        let close_at = probe_at + Duration::from_millis(20);
        b.record(close_at, FAST, true);
        let s = b.snapshot(close_at);
        assert_eq!(s.state, BreakerState::Closed);
        assert_eq!(s.changed_at, close_at);
        assert_eq!(s.requests_in_window, 0);
        assert!(s.reason.contains("3 successful probes"), "{}", s.reason);
        assert_eq!(b.admit(close_at), Admission::Allowed);
    }

    #[test]
    fn stragglers_in_half_open_are_not_probes() {
        let (b, _, opened_at) = opened();
        let probe_at = opened_at + Duration::from_secs(5);
        b.record(probe_at, FAST, false);
        assert_eq!(b.state(probe_at), BreakerState::HalfOpen);
    }

    #[test]
    fn lost_probe_slots_are_reclaimed() {
        let (b, _, opened_at) = opened();
        let probe_at = opened_at + Duration::from_secs(5);
        for _ in 0..3 {
            assert_eq!(b.admit(probe_at), Admission::Probe);
        }
        assert!(matches!(b.admit(probe_at + Duration::from_secs(4)), Admission::Rejected { .. }));
        assert_eq!(b.admit(probe_at + Duration::from_secs(5)), Admission::Probe);
    }

    #[test]
    fn slow_calls_open_it() {
        let t0 = Instant::now();
        let b = CircuitBreaker::new(BreakerConfig::default(), t0);
        let now = ms(t0, 2_000);
        record_n(&b, now, 4, FAST, true);
        record_n(&b, now, 15, SLOW, true);
        assert_eq!(b.state(now), BreakerState::Closed);
        b.record(now, SLOW, true);
        let s = b.snapshot(now);
        assert_eq!(s.state, BreakerState::Open);
        assert_eq!(s.reason, "80% of 20 requests slower than 50ms in the last 10s");
        assert_eq!(s.error_rate, 0.0);
    }

    #[test]
    fn slow_rate_one_disables_slow_check() {
        let t0 = Instant::now();
        let cfg = BreakerConfig { slow_rate: 1.0, ..BreakerConfig::default() };
        let b = CircuitBreaker::new(cfg, t0);
        record_n(&b, ms(t0, 10), 50, SLOW, true);
        assert_eq!(b.state(ms(t0, 10)), BreakerState::Closed);
    }

    #[test]
    fn old_outcomes_expire() {
        let t0 = Instant::now();
        let b = CircuitBreaker::new(BreakerConfig::default(), t0);
        record_n(&b, ms(t0, 500), 15, FAST, false);
        let now = ms(t0, 11_500);
        record_n(&b, now, 5, FAST, false);
        record_n(&b, now, 15, FAST, true);
        let s = b.snapshot(now);
        assert_eq!(s.state, BreakerState::Closed);
        assert_eq!(s.requests_in_window, 20);
        assert_eq!(s.error_rate, 0.25);
        // With nothing new, the window drains on read too.
        assert_eq!(b.snapshot(ms(t0, 30_000)).requests_in_window, 0);
    }

    #[test]
    fn recent_outcomes_still_count() {
        let t0 = Instant::now();
        let b = CircuitBreaker::new(BreakerConfig::default(), t0);
        record_n(&b, ms(t0, 5_000), 15, FAST, false);
        record_n(&b, ms(t0, 13_000), 5, FAST, false);
        assert_eq!(b.state(ms(t0, 13_000)), BreakerState::Open);
    }

    #[test]
    fn out_of_order_times_do_not_corrupt_window() {
        let t0 = Instant::now();
        let b = CircuitBreaker::new(BreakerConfig::default(), t0);
        b.record(ms(t0, 20_000), FAST, true);
        b.record(ms(t0, 19_990), FAST, true);
        b.record(ms(t0, 1_000), FAST, false); // older than the window
        let s = b.snapshot(ms(t0, 20_000));
        assert_eq!(s.requests_in_window, 2);
        assert_eq!(s.error_rate, 0.0);
    }

    #[test]
    fn p99_within_histogram_bucket() {
        let t0 = Instant::now();
        let b = CircuitBreaker::new(BreakerConfig::default(), t0);
        let now = ms(t0, 100);
        record_n(&b, now, 980, Duration::from_millis(3), true);
        record_n(&b, now, 10, Duration::from_millis(120), true);
        record_n(&b, now, 10, Duration::from_millis(180), true);
        // True p99 (990th of 1000) is 120ms, in the (100ms, 200ms] bucket.
        let p99 = b.snapshot(now).p99;
        assert!(p99 > Duration::from_millis(100) && p99 <= Duration::from_millis(200), "{p99:?}");

        let b = CircuitBreaker::new(BreakerConfig::default(), t0);
        record_n(&b, now, 995, Duration::from_millis(3), true);
        record_n(&b, now, 5, Duration::from_secs(30), true);
        let p99 = b.snapshot(now).p99;
        assert!(p99 > Duration::from_millis(2) && p99 <= Duration::from_millis(5), "{p99:?}");

        let empty = CircuitBreaker::new(BreakerConfig::default(), t0);
        assert_eq!(empty.snapshot(now).p99, Duration::ZERO);
    }

    #[test]
    fn trip_opens_immediately() {
        let t0 = Instant::now();
        let b = CircuitBreaker::new(BreakerConfig::default(), t0);
        let now = ms(t0, 42);
        b.trip(now, "queue full: 512 requests waiting");
        let s = b.snapshot(now);
        assert_eq!(s.state, BreakerState::Open);
        assert_eq!(s.reason, "queue full: 512 requests waiting");
        assert_eq!(s.changed_at, now);
        assert_eq!(b.admit(now), Admission::Rejected { retry_after: Duration::from_secs(5) });
    }
}
