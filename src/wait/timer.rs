//! A timer made only when a wait has to queue.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// A timer made by `sleep(wait)` when first polled, so that a wait that never has to queue
/// (the acquire is polled first) never asks the runtime for one. Boxed once made, so that it is
/// `Unpin` whatever the runtime's timer is.
pub(crate) struct LazyTimer<S, F> {
    make: Option<(S, Duration)>,
    timer: Option<Pin<Box<F>>>,
}

impl<S, F> LazyTimer<S, F> {
    pub(crate) fn new(sleep: S, wait: Duration) -> Self {
        Self {
            make: Some((sleep, wait)),
            timer: None,
        }
    }
}

// `S` is only ever moved out (never pinned), and the timer is boxed.
impl<S, F> Unpin for LazyTimer<S, F> {}

impl<S: FnOnce(Duration) -> F, F: Future> Future for LazyTimer<S, F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if let Some((sleep, wait)) = this.make.take() {
            this.timer = Some(Box::pin(sleep(wait)));
        }
        match &mut this.timer {
            Some(timer) => timer.as_mut().poll(cx).map(|_| ()),
            // Made above on the first poll; `make` and `timer` are never both empty.
            None => Poll::Ready(()),
        }
    }
}
