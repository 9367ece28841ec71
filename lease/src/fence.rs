//! [`Fence`]: a cheap, synchronous "does this process still lead?" for
//! every writer, so that a leader stops writing the moment its Lease may
//! no longer be its own, not when its renewer gets round to noticing.
//!
//! The leadership is valid until `renew_deadline` after the last renewal
//! was sent: the renewer gives up at that point anyway, and a standby
//! takes over only `lease_duration` (longer) after it saw that renewal. So
//! a write checked against the fence leaves `lease_duration -
//! renew_deadline` of slack before anyone else may lead. The check reads
//! the clock itself: a process stopped (SIGSTOP, a long GC-like pause, a
//! frozen VM) and woken up sees itself fenced at once, whichever of its
//! tasks runs first.

use tokio::sync::watch;
use tokio::time::Instant;

/// Clones share one leadership. [`Fence::unfenced`] always leads (leader
/// election off).
#[derive(Clone, Debug, Default)]
pub struct Fence {
    /// `None`: unfenced. The value: valid until then; `None` once lost or
    /// released. A closed channel (the renewer is gone) means lost.
    until: Option<watch::Receiver<Option<Instant>>>,
}

impl Fence {
    /// A fence that never closes: for a process without leader election.
    pub fn unfenced() -> Self {
        Fence { until: None }
    }

    /// A fence open until the instant the channel holds (`None`: closed),
    /// and closed once its sender is gone: what [`Leadership::fence`]
    /// hands out, and for tests that open and close one by hand.
    ///
    /// [`Leadership::fence`]: crate::Leadership::fence
    pub fn from_channel(until: watch::Receiver<Option<Instant>>) -> Self {
        Fence { until: Some(until) }
    }

    /// True while this process may write as the leader.
    pub fn is_leading(&self) -> bool {
        match &self.until {
            None => true,
            Some(until) => leading(*until.borrow(), until.has_changed().is_ok(), Instant::now()),
        }
    }
}

/// Whether a leadership valid until `valid_until` (`None`: lost), whose
/// renewer is `renewer_alive`, still holds at `now`.
pub(crate) fn leading(valid_until: Option<Instant>, renewer_alive: bool, now: Instant) -> bool {
    renewer_alive && valid_until.is_some_and(|until| now < until)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn leading_until_the_deadline_while_the_renewer_lives() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        // (case, valid until, renewer alive, expected)
        let table = [
            ("before the deadline", Some(now + ms(1)), true, true),
            ("at the deadline", Some(now), true, false),
            (
                "past the deadline, not yet noticed",
                Some(now - ms(1)),
                true,
                false,
            ),
            ("lost or released", None, true, false),
            ("renewer gone", Some(now + ms(1_000)), false, false),
        ];
        for (case, until, alive, expected) in table {
            assert_eq!(leading(until, alive, now), expected, "{case}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_fence_closes_on_time_without_a_renewer_update_and_when_dropped() {
        assert!(Fence::unfenced().is_leading());
        assert!(Fence::default().is_leading());
        let deadline = Instant::now() + Duration::from_secs(10);
        let (tx, rx) = watch::channel(Some(deadline));
        let fence = Fence::from_channel(rx);
        assert!(fence.is_leading());
        // A paused process wakes up past the deadline: closed at once.
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(!fence.clone().is_leading());
        tx.send_replace(Some(Instant::now() + Duration::from_secs(10)));
        assert!(fence.is_leading(), "renewed");
        tx.send_replace(None);
        assert!(!fence.is_leading(), "lost");
        tx.send_replace(Some(Instant::now() + Duration::from_secs(10)));
        drop(tx);
        assert!(!fence.is_leading(), "renewer gone");
    }
}
