//! The bulkhead's futures: a FIFO wait for a slot, borrowed or owned.

use super::{Bulkhead, BulkheadError, BulkheadPermit, OwnedBulkheadPermit, Refusal, StdArcSlot};
use crate::clock::{Clock, SystemClock};
use crate::sync::lock;
use crate::wait::Waiter;
use crate::wait::queue::SlotState;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc as StdArc;
use std::task::{Context, Poll, Waker};

/// Where an acquire future is.
#[derive(Debug)]
pub(super) enum WaitState {
    /// Not polled yet.
    Start,
    /// Queued: its ticket, its slot, and the waker last registered.
    Queued {
        ticket: u64,
        slot: StdArcSlot,
        waker: Waker,
    },
    /// Resolved (the permit, or an error, was returned).
    Done,
}

impl WaitState {
    /// Polls for a slot; `Ready(Ok)` means the caller now owns one.
    fn poll<C: Clock>(
        &mut self,
        b: &Bulkhead<C>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), BulkheadError>> {
        loop {
            match self {
                WaitState::Start => match b.try_admit() {
                    Ok(()) => {
                        *self = WaitState::Done;
                        return Poll::Ready(Ok(()));
                    }
                    Err(Refusal::Full(_)) => {
                        match b.register(Waiter::Task(cx.waker().clone())) {
                            Ok((ticket, slot)) => {
                                *self = WaitState::Queued {
                                    ticket,
                                    slot,
                                    waker: cx.waker().clone(),
                                };
                                // Loop: the hand-off in `register` may have granted it already.
                            }
                            Err(r) => {
                                *self = WaitState::Done;
                                return Poll::Ready(Err(b.refuse(r)));
                            }
                        }
                    }
                    Err(r) => {
                        *self = WaitState::Done;
                        return Poll::Ready(Err(b.refuse(r)));
                    }
                },
                WaitState::Queued {
                    ticket,
                    slot,
                    waker,
                } => {
                    match slot.state() {
                        SlotState::Granted => {
                            *self = WaitState::Done;
                            return Poll::Ready(Ok(()));
                        }
                        SlotState::Closed => {
                            *self = WaitState::Done;
                            return Poll::Ready(Err(b.refuse(Refusal::Closed)));
                        }
                        SlotState::Waiting => {}
                    }
                    if waker.will_wake(cx.waker()) {
                        return Poll::Pending;
                    }
                    // A new task or waker: replace it under the lock, unless it was served
                    // meanwhile (then loop to read what it got).
                    let queued = lock(&b.core().queue).set_waker(*ticket, cx.waker());
                    *waker = cx.waker().clone();
                    if queued {
                        return Poll::Pending;
                    }
                }
                WaitState::Done => panic!("bulkhead acquire future polled after completion"),
            }
        }
    }

    /// On drop: leave the queue; a slot already handed over goes to the next waiter.
    fn cancel<C: Clock>(&mut self, b: &Bulkhead<C>) {
        if let WaitState::Queued { ticket, slot, .. } = std::mem::replace(self, WaitState::Done) {
            if b.cancel(ticket, &slot) == SlotState::Granted {
                b.release();
            }
        }
    }
}

/// The future of [`Bulkhead::acquire`]. Dropping it leaves the queue; a slot already handed to it
/// goes to the next waiter.
///
/// Awaiting it yields a [`BulkheadPermit`] once a slot is handed to it, before any newcomer:
///
/// ```
/// use futures::FutureExt;
/// use resile::bulkhead::Bulkhead;
///
/// let b = Bulkhead::builder().limit(1).build()?;
/// let held = b.try_acquire()?;
/// let mut waiting = b.acquire();
/// assert!((&mut waiting).now_or_never().is_none()); // full: queued
/// assert_eq!(b.metrics().waiting, 1);
/// drop(held); // the freed slot goes straight to the oldest waiter...
/// assert!(b.try_acquire().unwrap_err().is_full()); // ...not to a newcomer
/// let permit = futures::executor::block_on(waiting)?;
/// assert_eq!(b.metrics().in_flight, 1);
/// # drop(permit);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct Acquire<'a, C: Clock = SystemClock> {
    pub(super) bulkhead: &'a Bulkhead<C>,
    pub(super) wait: WaitState,
}

impl<'a, C: Clock> Future for Acquire<'a, C> {
    type Output = Result<BulkheadPermit<'a, C>, BulkheadError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let b = this.bulkhead;
        this.wait.poll(b, cx).map_ok(|()| BulkheadPermit {
            bulkhead: b,
            stamp: b.core().stamp(),
        })
    }
}

impl<C: Clock> Drop for Acquire<'_, C> {
    fn drop(&mut self) {
        self.wait.cancel(self.bulkhead);
    }
}

/// The future of [`Bulkhead::acquire_owned`]; cancels as [`Acquire`] does.
///
/// It owns an `Arc` of the bulkhead, so it can move to another thread or task; awaiting it
/// yields an [`OwnedBulkheadPermit`], or [`BulkheadError::Closed`] once the bulkhead is closed:
///
/// ```
/// use resile::bulkhead::Bulkhead;
/// use std::sync::Arc;
///
/// let b = Arc::new(Bulkhead::builder().limit(1).build()?);
/// let held = b.try_acquire_owned()?;
/// let waiting = b.clone().acquire_owned(); // 'static
/// let task = std::thread::spawn(move || futures::executor::block_on(waiting));
/// drop(held); // the slot is handed to the waiter
/// let permit = task.join().unwrap()?;
/// assert_eq!(permit.bulkhead_name(), "bulkhead");
/// b.close();
/// let e = futures::executor::block_on(b.clone().acquire_owned()).unwrap_err();
/// assert!(e.is_closed());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct AcquireOwned<C: Clock = SystemClock> {
    pub(super) bulkhead: StdArc<Bulkhead<C>>,
    pub(super) wait: WaitState,
}

impl<C: Clock> Future for AcquireOwned<C> {
    type Output = Result<OwnedBulkheadPermit<C>, BulkheadError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let b = &this.bulkhead;
        this.wait.poll(b, cx).map_ok(|()| OwnedBulkheadPermit {
            core: b.core,
            stamp: b.core().stamp(),
            _owns: PhantomData,
        })
    }
}

impl<C: Clock> Drop for AcquireOwned<C> {
    fn drop(&mut self) {
        self.wait.cancel(&self.bulkhead);
    }
}
