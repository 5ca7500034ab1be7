//! One timer that bounds a connection's waits in turn.
//!
//! A keep-alive connection waits twice per request: for the client's next
//! request and for the upstream's answer. A runtime timer armed and dropped
//! around each wait costs a lock and a timer-wheel update each time, for
//! deadlines (seconds away) that requests almost never reach. An [`Alarm`]
//! stays armed across waits and is only moved when it goes off before the
//! deadline of the wait at hand, or when that deadline comes sooner.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use tokio::time::{Instant, Sleep};

pub struct Alarm {
    sleep: Pin<Box<Sleep>>,
    /// When the timer is set to go off.
    due: Instant,
}

impl Alarm {
    pub fn new(due: Instant) -> Alarm {
        Alarm {
            sleep: Box::pin(tokio::time::sleep_until(due)),
            due,
        }
    }

    /// What `future` gives, or `None` if `deadline` comes first.
    pub async fn within<F: Future>(&mut self, deadline: Instant, future: F) -> Option<F::Output> {
        if deadline < self.due {
            self.set(deadline);
        }
        let mut future = std::pin::pin!(future);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(output) = future.as_mut().poll(cx) {
                return Poll::Ready(Some(output));
            }
            // Gone off: at the deadline, or earlier, for a wait before this one.
            while self.sleep.as_mut().poll(cx).is_ready() {
                if self.due >= deadline {
                    return Poll::Ready(None);
                }
                self.set(deadline);
            }
            Poll::Pending
        })
        .await
    }

    fn set(&mut self, due: Instant) {
        self.sleep.as_mut().reset(due);
        self.due = due;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn each_wait_ends_at_its_own_deadline() {
        let start = Instant::now();
        let mut alarm = Alarm::new(start + Duration::from_secs(10));
        let never = std::future::pending::<()>;

        // A wait that ends first leaves the alarm as it was.
        let quick = alarm
            .within(start + Duration::from_secs(10), async { 7 })
            .await;
        assert_eq!(quick, Some(7));

        // A later deadline: the alarm goes off at 10 s, is moved, and the wait
        // ends at 30 s, not before.
        assert_eq!(
            alarm.within(start + Duration::from_secs(30), never()).await,
            None
        );
        assert_eq!(Instant::now() - start, Duration::from_secs(30));

        // A sooner deadline moves the alarm forward.
        let now = Instant::now();
        assert_eq!(
            alarm.within(now + Duration::from_secs(2), never()).await,
            None
        );
        assert_eq!(Instant::now() - now, Duration::from_secs(2));

        // A wait that ends before its deadline, across an early alarm.
        let now = Instant::now();
        let mut alarm = Alarm::new(now + Duration::from_secs(1));
        let slow = tokio::time::sleep(Duration::from_secs(3));
        assert_eq!(
            alarm
                .within(now + Duration::from_secs(5), async {
                    slow.await;
                    "answered"
                })
                .await,
            Some("answered")
        );
        assert_eq!(Instant::now() - now, Duration::from_secs(3));
    }
}
