//! Waiting for a condition with a deadline, never for a fixed time.
//!
//! Every wait in `tests/vm` is a probe polled until it reports success or the
//! deadline passes; on timeout the caller gets what the probe saw last, so a
//! failure message shows the state the test was stuck in (STYLE §11).

use std::fmt;
use std::time::{Duration, Instant};

/// How often probes are polled. Short enough that waits end promptly, long enough
/// that a probe running a command does not keep a core busy.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A wait that ran out of time.
#[derive(Debug)]
pub struct TimedOut<S> {
    /// How long the wait lasted.
    pub waited: Duration,
    /// What the probe reported on its last call.
    pub last_seen: S,
}

impl<S: fmt::Debug> fmt::Display for TimedOut<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "timed out after {:.1?}; last seen: {:#?}",
            self.waited, self.last_seen
        )
    }
}

impl<S: fmt::Debug> std::error::Error for TimedOut<S> {}

/// Calls `probe` until it returns `Ok`, at most until `timeout` has passed.
///
/// `probe` returns `Err(seen)` while the condition does not hold; `seen` is kept
/// and returned in [`TimedOut`] if the deadline passes first. The probe runs at
/// least once, even with a zero timeout.
pub fn wait_until<T, S>(
    timeout: Duration,
    mut probe: impl FnMut() -> Result<T, S>,
) -> Result<T, TimedOut<S>> {
    let start = Instant::now();
    loop {
        match probe() {
            Ok(value) => return Ok(value),
            Err(seen) => {
                if start.elapsed() >= timeout {
                    return Err(TimedOut {
                        waited: start.elapsed(),
                        last_seen: seen,
                    });
                }
            }
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_value_once_the_condition_holds() {
        let mut calls = 0;
        let got = wait_until(Duration::from_secs(5), || {
            calls += 1;
            if calls == 3 {
                Ok(calls)
            } else {
                Err(calls)
            }
        });
        assert_eq!(got.unwrap(), 3);
    }

    #[test]
    fn reports_the_last_state_seen_on_timeout() {
        let mut calls = 0;
        let got: Result<(), _> = wait_until(Duration::ZERO, || {
            calls += 1;
            Err(format!("call {calls}"))
        });
        assert_eq!(got.unwrap_err().last_seen, "call 1");
    }
}
