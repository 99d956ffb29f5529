//! criterion suite: the retry budget (deposit + withdraw) beside mutex baselines and tower's
//! `TpsBudget`, and the cost of one backoff computation.

use criterion::{Criterion, criterion_group, criterion_main};

fn budget(c: &mut Criterion) {
    resile_benches::criterion_suite(c, &resile_benches::budget::cases());
}

criterion_group!(benches, budget);
criterion_main!(benches);
