//! When and where the next connection attempt goes: exponential backoff with full jitter, and
//! the next server.
//!
//! Each failed attempt doubles the ceiling (from `min` up to `max`), and the actual wait is drawn
//! uniformly between zero and that ceiling, so a fleet of agents that lost the same replica does
//! not come back in lockstep. After a lost connection the agent tries one of the *other*
//! servers at random ([`next_server`]), so the agents of a failed replica spread over all the
//! survivors instead of all landing on the next one in a shared list. The randomness is a
//! parameter, so tests can pin it.
//!
//! [`Reconnects`] puts these together into the supervisor's whole rule, apart from the
//! connections themselves, so the benchmark's simulated agents move exactly as the agent does.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::AgentConfig;

/// Which server the agent connects to next, and after how long a wait.
///
/// The first connection goes to the first server. Every ended connection moves on to another
/// server ([`next_server`]). A `shutdown` from a replica means "go elsewhere now", so the next
/// server is tried at once; any other end (or a second shutdown in a row) waits a [`Backoff`]
/// draw first. A connection that stayed registered for `stable_after` forgets earlier failures,
/// so one blip after hours of uptime does not wait 30 s.
#[derive(Debug)]
pub struct Reconnects {
    backoff: Backoff,
    stable_after: Duration,
    servers: usize,
    current: usize,
    previous_was_shutdown: bool,
    rng: StdRng,
}

impl Reconnects {
    /// The rule for `servers` servers, with `config`'s backoff bounds and `stable_after`.
    pub fn new(servers: usize, config: &AgentConfig) -> Self {
        Self {
            backoff: Backoff::new(config.backoff_min, config.backoff_max),
            stable_after: config.stable_after,
            servers,
            current: 0,
            previous_was_shutdown: false,
            rng: StdRng::from_os_rng(),
        }
    }

    /// The index of the server to connect to now.
    pub fn server(&self) -> usize {
        self.current
    }

    /// A connection to [`Self::server`] ended after it had been registered for
    /// `registered_for` (zero if it never was); `shutdown` says the server asked the agent to
    /// go. Moves on to the next server and returns how long to wait before connecting to it
    /// (`None`: at once).
    pub fn after(&mut self, registered_for: Duration, shutdown: bool) -> Option<Duration> {
        if registered_for >= self.stable_after {
            self.backoff.reset();
        }
        self.current = next_server(self.current, self.servers, &mut self.rng);
        if shutdown && !self.previous_was_shutdown {
            self.previous_was_shutdown = true;
            return None;
        }
        self.previous_was_shutdown = false;
        Some(self.backoff.next_delay(&mut self.rng))
    }
}

/// The server to try after `current` (of `count`): any other one, uniformly; with one server,
/// that one again.
pub fn next_server(current: usize, count: usize, rng: &mut impl Rng) -> usize {
    if count <= 1 {
        return 0;
    }
    let other = rng.random_range(0..count - 1);
    if other >= current { other + 1 } else { other }
}

#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            failures: 0,
        }
    }

    /// The ceiling of the next wait.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.failures.min(31)).unwrap_or(u32::MAX);
        self.min.saturating_mul(factor).min(self.max)
    }

    /// The wait before the next attempt; each call counts one more failure.
    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rng.random_range(0..=millis))
    }

    /// Forgets past failures (after a connection that lasted).
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_next_server_is_another_one_and_every_other_one_comes_up() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        assert_eq!(next_server(0, 1, &mut rng), 0, "one server: the same again");
        assert_eq!(next_server(0, 0, &mut rng), 0);
        for count in 2..6 {
            for current in 0..count {
                let mut seen = vec![0; count];
                for _ in 0..400 {
                    let next = next_server(current, count, &mut rng);
                    assert!(
                        next < count && next != current,
                        "{current} -> {next} of {count}"
                    );
                    seen[next] += 1;
                }
                let others = seen.iter().enumerate().filter(|(i, _)| *i != current);
                assert!(
                    others.clone().all(|(_, n)| *n > 0),
                    "{current} of {count}: {seen:?}"
                );
            }
        }
    }
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn ceiling_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
        let mut rng = StdRng::seed_from_u64(7);
        let mut ceilings = Vec::new();
        for _ in 0..10 {
            ceilings.push(b.ceiling().as_millis());
            let d = b.next_delay(&mut rng);
            assert!(d <= Duration::from_millis(*ceilings.last().unwrap_or(&0) as u64));
        }
        assert_eq!(
            ceilings,
            [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        for _ in 0..100 {
            b.next_delay(&mut rng);
        }
        assert_eq!(b.ceiling(), Duration::from_secs(30), "no overflow");
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(250));
    }

    #[test]
    fn a_first_shutdown_moves_on_at_once_and_other_ends_wait() {
        let config = AgentConfig::new(vec![], "a", "k", "/nonexistent");
        let mut r = Reconnects::new(3, &config);
        assert_eq!(r.server(), 0, "the first server first");
        assert_eq!(r.after(Duration::ZERO, true), None, "a shutdown: at once");
        assert_ne!(r.server(), 0, "and to another server");
        assert!(
            r.after(Duration::ZERO, true).is_some(),
            "a second shutdown waits"
        );
        let lost = r.after(Duration::ZERO, false);
        assert!(
            lost.is_some_and(|d| d <= config.backoff_min * 4),
            "{lost:?}"
        );
        for _ in 0..10 {
            r.after(Duration::ZERO, false);
        }
        assert_eq!(r.backoff.ceiling(), config.backoff_max);
        r.after(config.stable_after, false);
        assert_eq!(
            r.backoff.ceiling(),
            config.backoff_min * 2,
            "a stable connection forgets earlier failures"
        );
    }

    #[test]
    fn jitter_spreads_delays() {
        let mut rng = StdRng::seed_from_u64(1);
        let delays: std::collections::BTreeSet<Duration> = (0..50)
            .map(|_| {
                let mut b = Backoff::new(Duration::from_secs(8), Duration::from_secs(8));
                b.next_delay(&mut rng)
            })
            .collect();
        assert!(
            delays.len() > 10,
            "full jitter gives varied waits: {delays:?}"
        );
    }
}
