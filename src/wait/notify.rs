//! A one-shot broadcast: wakes every waiter exactly once (the drainer's slow path).
