//! criterion suite: the sliding windows beside mutex baselines, and the clocks' read cost.

use criterion::{Criterion, criterion_group, criterion_main};

fn windows(c: &mut Criterion) {
    resile_benches::criterion_suite(c, &resile_benches::window::cases());
}

criterion_group!(benches, windows);
criterion_main!(benches);
