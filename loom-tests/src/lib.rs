//! loom models of resile's primitives, one test file per primitive in `tests/`.
//!
//! Run them with
//!
//! ```text
//! RUSTFLAGS="--cfg resile_loom" LOOM_MAX_PREEMPTIONS=2 \
//!     CARGO_TARGET_DIR=target/loom cargo test -p resile-loom-tests --release
//! ```
//!
//! Without the cfg every model file compiles to nothing, so a plain `cargo test --workspace`
//! stays fast. The models use the public API only, with tiny configurations (windows of 2 to 4
//! slots) so that loom can explore every interleaving.

/// Runs `f` as a loom model with the crate's default bounds (`LOOM_MAX_PREEMPTIONS` and
/// `LOOM_MAX_BRANCHES` from the environment override them).
#[cfg(resile_loom)]
pub fn model<F>(f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(2);
    }
    b.check(f);
}

/// A clock that reads 0 and counts its drops (outside the model, with a std atomic): a
/// primitive drops its clock when it frees its shared state, so a model reads the count to check
/// that the state is freed exactly once.
#[derive(Clone)]
pub struct DropCountingClock(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl DropCountingClock {
    /// A clock and the count of its drops (and of its clones' drops).
    pub fn new() -> (Self, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        let drops = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        (Self(drops.clone()), drops)
    }
}

impl resile::clock::Clock for DropCountingClock {
    fn now(&self) -> u64 {
        0
    }
}

impl Drop for DropCountingClock {
    fn drop(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// How many times a [`DropCountingClock`] and its clones were dropped.
pub fn drop_count(count: &std::sync::atomic::AtomicUsize) -> usize {
    count.load(std::sync::atomic::Ordering::Relaxed)
}
