//! A deadline for an async wait, made only once the wait has to queue.

use crate::timer::{SharedTimer, Sleep};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// A sleep of `wait` on `timer`, asked of the timer when first polled, so that a wait that never
/// has to queue (the acquire is polled first) never makes one.
#[derive(Debug)]
pub(crate) struct LazyTimer<'a> {
    make: Option<(&'a SharedTimer, Duration)>,
    sleep: Option<Sleep>,
}

impl<'a> LazyTimer<'a> {
    pub(crate) fn new(timer: &'a SharedTimer, wait: Duration) -> Self {
        Self {
            make: Some((timer, wait)),
            sleep: None,
        }
    }
}

impl Future for LazyTimer<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if let Some((timer, wait)) = this.make.take() {
            this.sleep = Some(timer.sleep(wait));
        }
        match &mut this.sleep {
            Some(sleep) => Pin::new(sleep).poll(cx),
            None => Poll::Pending,
        }
    }
}
