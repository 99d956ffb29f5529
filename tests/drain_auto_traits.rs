//! The drainer and its guards keep the auto traits a user relies on: they move into threads and
//! tasks, are shared, and are usable inside `catch_unwind`.

use resile::drain::{DrainGuard, Drainer, OwnedDrainGuard};
use std::panic::{RefUnwindSafe, UnwindSafe};

fn shared<T: Send + Sync + UnwindSafe + RefUnwindSafe>() {}

#[test]
fn drainer_and_guards_are_send_sync_and_unwind_safe() {
    shared::<Drainer>();
    shared::<OwnedDrainGuard>();
    shared::<DrainGuard<'static>>();
    let d = std::sync::Arc::new(Drainer::new());
    let g = d.enter_owned().unwrap();
    let r = std::panic::catch_unwind(|| {
        let _inner = d.enter().unwrap();
        panic!("work failed");
    });
    assert!(r.is_err());
    assert_eq!(d.in_flight(), 1, "the panicking work's guard was released");
    drop(g);
}
