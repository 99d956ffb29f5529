//! criterion suite: the circuit breaker beside mutex baselines and its peers.

use criterion::{Criterion, criterion_group, criterion_main};

fn breaker(c: &mut Criterion) {
    resile_benches::criterion_suite(c, &resile_benches::breaker::cases());
}

criterion_group!(benches, breaker);
criterion_main!(benches);
