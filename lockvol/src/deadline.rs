//! A check that may block forever, asked with a deadline.
//!
//! On a hung cluster volume (a FUSE client that stopped answering, a server gone
//! silent) a `stat` of the lock file does not fail: it blocks, for as long as the
//! volume stays hung. A lock holder that ran that `stat` itself would block with it
//! and never notice that its lock has become worthless. [`DeadlineCheck`] runs the
//! check on a thread of its own and waits for the answer no longer than a deadline;
//! a check that overran leaves its thread blocked (nothing can unblock it) and every
//! later call fails at once, so the caller gives up rather than piling up threads.

use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::time::Duration;

/// Why a [`DeadlineCheck`] has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeadlineError {
    /// The check did not answer within the deadline; its thread is still in it.
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    /// An earlier check overran its deadline and has still not answered.
    #[error("an earlier check has still not answered")]
    Stuck,
    /// The checking thread ended (the check panicked).
    #[error("the checking thread ended")]
    Gone,
}

/// A check run on its own thread, asked with [`DeadlineCheck::run`].
#[derive(Debug)]
pub struct DeadlineCheck<T> {
    requests: SyncSender<()>,
    answers: mpsc::Receiver<T>,
    /// Set when a check overran: its late answer must not be taken for a later one.
    stuck: bool,
}

impl<T: Send + 'static> DeadlineCheck<T> {
    /// Starts the thread `name` that runs `check` once per [`DeadlineCheck::run`].
    /// The thread ends when the `DeadlineCheck` is dropped (after its current check).
    pub fn spawn(
        name: &str,
        mut check: impl FnMut() -> T + Send + 'static,
    ) -> std::io::Result<Self> {
        let (requests, asked) = mpsc::sync_channel::<()>(1);
        let (answer, answers) = mpsc::sync_channel::<T>(1);
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                while asked.recv().is_ok() {
                    if answer.send(check()).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Self {
            requests,
            answers,
            stuck: false,
        })
    }

    /// Runs the check and returns its answer, or an error if it has none within
    /// `deadline`. After [`DeadlineError::TimedOut`] every call returns
    /// [`DeadlineError::Stuck`].
    pub fn run(&mut self, deadline: Duration) -> Result<T, DeadlineError> {
        if self.stuck {
            return Err(DeadlineError::Stuck);
        }
        self.requests.send(()).map_err(|_| DeadlineError::Gone)?;
        match self.answers.recv_timeout(deadline) {
            Ok(answer) => Ok(answer),
            Err(RecvTimeoutError::Timeout) => {
                self.stuck = true;
                Err(DeadlineError::TimedOut(deadline))
            }
            Err(RecvTimeoutError::Disconnected) => Err(DeadlineError::Gone),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    #[test]
    fn an_answering_check_is_returned_every_time() {
        let mut count = 0;
        let mut check = DeadlineCheck::spawn("count", move || {
            count += 1;
            count
        })
        .unwrap();
        for want in 1..=3 {
            assert_eq!(check.run(Duration::from_secs(10)), Ok(want));
        }
    }

    /// A check that blocks until the test lets it go stands for a `stat` on a hung
    /// volume: the caller is answered at the deadline, not when the check returns,
    /// and the late answer is never taken for a later check's.
    #[test]
    fn a_blocked_check_times_out_at_the_deadline_and_stays_stuck() {
        let (release, released) = mpsc::channel::<()>();
        let released = Arc::new(Mutex::new(released));
        let mut calls = 0;
        let mut check = DeadlineCheck::spawn("hang", move || {
            calls += 1;
            if calls == 2 {
                // The second check hangs until released (or the sender is dropped).
                let _ = released.lock().unwrap().recv();
            }
            calls
        })
        .unwrap();
        assert_eq!(check.run(Duration::from_secs(10)), Ok(1));

        let deadline = Duration::from_millis(200);
        let started = Instant::now();
        assert_eq!(check.run(deadline), Err(DeadlineError::TimedOut(deadline)));
        assert!(
            started.elapsed() >= deadline,
            "answered before the deadline"
        );

        release.send(()).unwrap(); // the hung check returns 2, late
        assert_eq!(
            check.run(Duration::from_secs(10)),
            Err(DeadlineError::Stuck)
        );
    }

    #[test]
    fn a_check_that_panics_is_reported_gone() {
        let mut check = DeadlineCheck::<()>::spawn("panics", || panic!("check failed")).unwrap();
        assert_eq!(check.run(Duration::from_secs(10)), Err(DeadlineError::Gone));
    }
}
