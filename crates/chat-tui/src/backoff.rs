//! The delay between reconnect attempts: short at first, so a blip costs
//! half a second, then doubling up to a ceiling, so a server that is down
//! for a while is not hammered.

use std::time::Duration;

/// Exponential backoff: `initial`, then twice the previous delay, never more
/// than `max`. A successful connection calls [`Backoff::reset`].
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    attempts: u32,
}

impl Backoff {
    /// The client's schedule: 0.5 s doubling to 10 s.
    pub(crate) fn reconnect() -> Backoff {
        Backoff::new(Duration::from_millis(500), Duration::from_secs(10))
    }

    pub(crate) fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            next: initial,
            attempts: 0,
        }
    }

    /// The delay before the next attempt, and the number of that attempt.
    pub(crate) fn next_delay(&mut self) -> (Duration, u32) {
        let delay = self.next.min(self.max);
        self.next = (delay * 2).min(self.max);
        self.attempts += 1;
        (delay, self.attempts)
    }

    /// Starts the schedule over after a connection succeeded.
    pub(crate) fn reset(&mut self) {
        self.next = self.initial;
        self.attempts = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delays(backoff: &mut Backoff, count: usize) -> Vec<u64> {
        (0..count)
            .map(|_| backoff.next_delay().0.as_millis() as u64)
            .collect()
    }

    #[test]
    fn reconnect_delays_start_at_half_a_second_and_double_up_to_ten_seconds() {
        let mut backoff = Backoff::reconnect();
        assert_eq!(
            delays(&mut backoff, 8),
            [500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]
        );
    }

    #[test]
    fn a_reset_starts_the_schedule_and_the_attempt_count_over() {
        let mut backoff = Backoff::reconnect();
        delays(&mut backoff, 4);
        backoff.reset();
        assert_eq!(backoff.next_delay(), (Duration::from_millis(500), 1));
        assert_eq!(backoff.next_delay(), (Duration::from_secs(1), 2));
    }
}
