//! criterion suite: a keyed registry's hit lookup plus a closed breaker's call, beside
//! `RwLock<HashMap>` registries of the same breakers.

use criterion::{Criterion, criterion_group, criterion_main};

fn registry(c: &mut Criterion) {
    resile_benches::criterion_suite(c, &resile_benches::registry::cases());
}

criterion_group!(benches, registry);
criterion_main!(benches);
