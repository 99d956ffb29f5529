//! criterion suite: the drainer's enter + exit beside mutex baselines, TaskTracker and the floor.

use criterion::{Criterion, criterion_group, criterion_main};

fn drain(c: &mut Criterion) {
    resile_benches::criterion_suite(c, &resile_benches::drain::cases());
}

criterion_group!(benches, drain);
criterion_main!(benches);
