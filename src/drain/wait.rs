//! The drainer's futures: the wait for the drain, and the notice that it has started.

use super::word::{DRAINED, DRAINING};
use super::{Drained, Drainer};
use crate::clock::{Clock, SystemClock};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The future of [`Drainer::wait`]: resolves to [`Drained`].
///
/// ```
/// use resile::drain::Drainer;
/// let d = Drainer::new();
/// d.start_draining();
/// let fut: resile::drain::Wait<'_> = d.wait();
/// futures::executor::block_on(fut);
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct Wait<'a, C: Clock = SystemClock> {
    pub(super) drainer: &'a Drainer<C>,
    pub(super) key: Option<usize>,
}

impl<C: Clock> Future for Wait<'_, C> {
    type Output = Drained;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Drained> {
        let this = self.get_mut();
        let d = this.drainer;
        if d.poll_bit(DRAINED, &d.core().drained, &mut this.key, cx) {
            if let Some(k) = this.key.take() {
                d.core().drained.deregister(k);
            }
            Poll::Ready(d.drained_report())
        } else {
            Poll::Pending
        }
    }
}

impl<C: Clock> Drop for Wait<'_, C> {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            self.drainer.core().drained.deregister(k);
        }
    }
}

impl<C: Clock> fmt::Debug for Wait<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wait")
            .field("drainer", self.drainer)
            .finish()
    }
}

/// The future of [`Drainer::draining`]: resolves when draining starts.
///
/// ```
/// use resile::drain::Drainer;
/// let d = Drainer::new();
/// d.start_draining();
/// let fut: resile::drain::DrainingNotice<'_> = d.draining();
/// futures::executor::block_on(fut);
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct DrainingNotice<'a, C: Clock = SystemClock> {
    pub(super) drainer: &'a Drainer<C>,
    pub(super) key: Option<usize>,
}

impl<C: Clock> Future for DrainingNotice<'_, C> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let d = this.drainer;
        if d.poll_bit(DRAINING, &d.core().started, &mut this.key, cx) {
            if let Some(k) = this.key.take() {
                d.core().started.deregister(k);
            }
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl<C: Clock> Drop for DrainingNotice<'_, C> {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            self.drainer.core().started.deregister(k);
        }
    }
}

impl<C: Clock> fmt::Debug for DrainingNotice<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DrainingNotice")
            .field("drainer", self.drainer)
            .finish()
    }
}
