//! criterion suite: one request through each tower layer beside tower's ConcurrencyLimit.

use criterion::{Criterion, criterion_group, criterion_main};

fn tower(c: &mut Criterion) {
    resile_benches::criterion_suite(c, &resile_benches::tower_layers::cases());
}

criterion_group!(benches, tower);
criterion_main!(benches);
