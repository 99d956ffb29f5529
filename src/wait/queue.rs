//! A FIFO of waiters served by direct hand-off (the bulkhead's slow path).
