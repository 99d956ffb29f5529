//! criterion suite: the atomic floors every primitive is measured against.

use criterion::{Criterion, criterion_group, criterion_main};

fn floors(c: &mut Criterion) {
    resile_benches::criterion_suite(c, &resile_benches::floor::cases());
}

criterion_group!(benches, floors);
criterion_main!(benches);
