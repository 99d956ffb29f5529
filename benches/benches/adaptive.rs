//! criterion suite: the adaptive bulkhead beside the static one, a mutex baseline and the peers' adaptive layers.

use criterion::{Criterion, criterion_group, criterion_main};

fn adaptive(c: &mut Criterion) {
    resile_benches::criterion_suite(c, &resile_benches::adaptive::cases());
}

criterion_group!(benches, adaptive);
criterion_main!(benches);
