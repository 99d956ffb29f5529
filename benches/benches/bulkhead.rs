//! criterion suite: the bulkhead beside mutex baselines and the peers' semaphores.

use criterion::{Criterion, criterion_group, criterion_main};

fn bulkhead(c: &mut Criterion) {
    resile_benches::criterion_suite(c, &resile_benches::bulkhead::cases());
}

criterion_group!(benches, bulkhead);
criterion_main!(benches);
