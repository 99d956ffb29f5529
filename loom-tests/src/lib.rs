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
