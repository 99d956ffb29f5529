use super::*;
use crate::breaker::CircuitBreaker;
use crate::budget::RetryBudget;
use crate::bulkhead::Bulkhead;
use crate::clock::ManualClock;
use std::sync::Mutex as StdMutex;
use std::time::Duration;

fn breakers(max_keys: usize) -> (Registry<u32, CircuitBreaker<ManualClock>>, ManualClock) {
    let clock = ManualClock::new();
    let template = CircuitBreaker::builder()
        .count_window(4)
        .minimum_calls(2)
        .open_for(Duration::from_secs(10))
        .clock(clock.clone());
    (
        Registry::builder(template)
            .max_keys(max_keys)
            .build()
            .unwrap(),
        clock,
    )
}

#[test]
fn one_entry_per_key_and_lookups_share_it() {
    let (r, _) = breakers(4);
    let a = r.get_or_create(&1).unwrap();
    let b = r.get_or_create(&1).unwrap();
    assert!(Handle::ptr_eq(&a, &b));
    assert!(Handle::ptr_eq(&a, &r.get(&1).unwrap()));
    assert_eq!(r.len(), 1);
    assert_eq!(r.metrics().created, 1);
}

#[test]
fn builder_errors_name_the_field() {
    let e = Registry::<u32, Bulkhead>::builder(Bulkhead::builder())
        .max_keys(0)
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "max_keys");
    let e = Registry::<u32, Bulkhead>::builder(Bulkhead::builder())
        .eviction_scan(0)
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "eviction_scan");
    let e = Registry::<u32, Bulkhead>::builder(Bulkhead::builder().limit(0))
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "limit");
}

#[test]
fn idle_entries_are_evicted_oldest_first() {
    let (r, _) = breakers(2);
    drop(r.get_or_create(&1).unwrap());
    drop(r.get_or_create(&2).unwrap());
    drop(r.get_or_create(&3).unwrap());
    assert!(r.get(&1).is_none());
    assert!(r.get(&2).is_some() && r.get(&3).is_some());
    assert_eq!(r.metrics().evicted, 1);
}

#[test]
fn a_recent_lookup_gets_a_second_chance() {
    let (r, _) = breakers(2);
    drop(r.get_or_create(&1).unwrap());
    drop(r.get_or_create(&2).unwrap());
    drop(r.get(&1)); // 1 used since it was created
    drop(r.get_or_create(&3).unwrap());
    assert!(r.get(&1).is_some(), "the recently used key stays");
    assert!(r.get(&2).is_none());
}

#[test]
fn open_failing_and_held_entries_are_never_evicted() {
    let (r, _) = breakers(3);
    let open = r.get_or_create(&1).unwrap();
    for _ in 0..2 {
        let _ = open.call(|| Err::<(), _>(()));
    }
    assert_eq!(open.state(), State::Open);
    drop(open);
    let failing = r.get_or_create(&2).unwrap();
    let _ = failing.call(|| Err::<(), _>(()));
    assert_eq!(failing.state(), State::Closed);
    drop(failing);
    let held = r.get_or_create(&3).unwrap();
    for key in 4..100 {
        let e = r.get_or_create(&key).unwrap_err();
        assert_eq!(e, RegistryError::Full(RegistryFull { max_keys: 3 }));
    }
    assert_eq!(r.get(&1).unwrap().state(), State::Open);
    assert_eq!(r.get(&2).unwrap().metrics().failures, 1);
    assert!(Handle::ptr_eq(&held, &r.get(&3).unwrap()));
    let m = r.metrics();
    assert_eq!((m.keys, m.refused, m.evicted), (3, 96, 0));
    // Once the held handle goes, that entry is idle again and makes room.
    drop(held);
    assert!(r.get_or_create(&100).is_ok());
    assert!(r.get(&3).is_none());
}

#[test]
fn an_owned_permit_holds_its_entry() {
    let r = Registry::builder(Bulkhead::builder().limit(1))
        .max_keys(1)
        .build()
        .unwrap();
    let permit = r
        .get_or_create(&1)
        .unwrap()
        .as_arc()
        .try_acquire_owned()
        .unwrap();
    assert!(r.get_or_create(&2).is_err());
    drop(permit);
    assert!(r.get_or_create(&2).is_ok());
}

#[test]
fn forced_and_disabled_breakers_are_kept() {
    let (r, _) = breakers(2);
    r.get_or_create(&1).unwrap().force_open();
    r.get_or_create(&2).unwrap().disable();
    assert!(r.get_or_create(&3).is_err());
    r.get(&2).unwrap().reset();
    assert!(r.get_or_create(&3).is_ok());
    assert_eq!(r.get(&1).unwrap().state(), State::ForcedOpen);
}

#[test]
fn a_budget_is_idle_once_its_retries_age_out() {
    let clock = ManualClock::new();
    let template = RetryBudget::builder()
        .max_retries(2)
        .window(Duration::from_secs(1))
        .clock(clock.clone());
    let r = Registry::builder(template).max_keys(1).build().unwrap();
    r.get_or_create(&1).unwrap().try_withdraw().unwrap();
    assert!(r.get_or_create(&2).is_err(), "a spent retry is evidence");
    clock.advance(Duration::from_secs(2));
    assert!(r.get_or_create(&2).is_ok());
}

#[test]
fn a_bulkhead_keeps_its_entry_while_its_limit_is_not_the_templates() {
    let r = Registry::builder(Bulkhead::builder().limit(4))
        .max_keys(1)
        .build()
        .unwrap();
    r.get_or_create(&1).unwrap().set_limit(2).unwrap();
    assert!(r.get_or_create(&2).is_err(), "a set limit is evidence");
    r.get(&1).unwrap().set_limit(4).unwrap();
    assert!(r.get_or_create(&2).is_ok());
    assert!(r.get(&1).is_none());
}

#[test]
fn an_adaptive_bulkhead_keeps_what_it_learned_and_what_it_heard() {
    use crate::bulkhead::adaptive::Aimd;
    let clock = ManualClock::new();
    let template = Bulkhead::builder()
        .adaptive(Aimd::default().initial_limit(10).min_limit(2))
        .adaptive_window(Duration::from_secs(1))
        .adaptive_min_samples(2)
        .clock(clock.clone());
    let r = Registry::builder(template).max_keys(1).build().unwrap();

    // A report in the open window (one of the two the window needs) is evidence.
    r.get_or_create(&1)
        .unwrap()
        .try_acquire()
        .unwrap()
        .dropped();
    assert!(r.get_or_create(&2).is_err(), "a report waits in the window");

    // The window closes on the second report: the limit backs off, and the entry stays.
    clock.advance(Duration::from_secs(1));
    r.get(&1).unwrap().try_acquire().unwrap().dropped();
    let learned = r.get(&1).unwrap().limit();
    assert!(learned < 10, "AIMD backs off on drops: {learned}");
    assert!(r.get_or_create(&2).is_err(), "a learned limit is evidence");
    assert_eq!(r.get(&1).unwrap().limit(), learned);
}

#[test]
fn overflow_is_shared_and_never_evicted() {
    let r = Registry::builder(Bulkhead::builder().limit(1))
        .max_keys(1)
        .when_full(WhenFull::Overflow)
        .build()
        .unwrap();
    let a = r.get_or_create(&1).unwrap();
    let b = r.get_or_create(&2).unwrap();
    let c = r.get_or_create(&3).unwrap();
    assert!(b.is_overflow() && Handle::ptr_eq(&b, &c));
    let _p = b.try_acquire().unwrap();
    assert!(c.try_acquire().is_err(), "one shared limit");
    assert_eq!(r.metrics().overflowed, 2);
    drop(a);
    assert!(!r.get_or_create(&4).unwrap().is_overflow());
}

#[test]
fn a_removed_handle_keeps_working_and_never_returns() {
    let (r, _) = breakers(2);
    let old = r.get_or_create(&1).unwrap();
    assert!(r.remove(&1));
    assert!(old.is_evicted());
    let _ = old.call(|| Err::<(), _>(()));
    let _ = old.call(|| Err::<(), _>(()));
    assert_eq!(old.state(), State::Open);
    let new = r.get_or_create(&1).unwrap();
    assert!(!Handle::ptr_eq(&old, &new));
    assert_eq!(new.state(), State::Closed);
    assert_eq!(r.len(), 1);
    let copy = old.clone();
    drop(old);
    assert!(copy.is_evicted());
}

#[test]
fn per_key_overrides_and_config_errors() {
    let r = Registry::builder(Bulkhead::builder().limit(1))
        .per_key(|k: &u32, b| b.limit(*k))
        .build()
        .unwrap();
    assert_eq!(r.get_or_create(&5).unwrap().limit(), 5);
    assert!(matches!(r.get_or_create(&0), Err(RegistryError::Config(_))));
    assert!(r.get(&0).is_none());
}

#[test]
fn events_in_order() {
    let log = StdArc::new(StdMutex::new(Vec::new()));
    let l = log.clone();
    let r = Registry::builder(Bulkhead::builder())
        .max_keys(1)
        .on_event(move |e: RegistryEvent<'_, u32>| l.lock().unwrap().push(format!("{e:?}")))
        .build()
        .unwrap();
    let held = r.get_or_create(&1).unwrap();
    assert!(r.get_or_create(&2).is_err());
    drop(held);
    drop(r.get_or_create(&2).unwrap());
    assert!(r.remove(&2));
    assert_eq!(
        *log.lock().unwrap(),
        [
            "Created(1)",
            "Refused(2)",
            "Evicted(1)",
            "Created(2)",
            "Removed(2)"
        ]
    );
}

#[test]
fn a_bounded_scan_refuses_then_moves_on() {
    let r = Registry::builder(Bulkhead::builder())
        .max_keys(4)
        .eviction_scan(2)
        .build()
        .unwrap();
    let held: Vec<_> = (0..2).map(|k| r.get_or_create(&k).unwrap()).collect();
    drop(r.get_or_create(&2).unwrap());
    drop(r.get_or_create(&3).unwrap());
    assert!(r.get_or_create(&4).is_err(), "the two oldest are held");
    assert!(
        r.get_or_create(&5).is_ok(),
        "the next scan reaches the idle ones"
    );
    drop(held);
}

#[test]
fn for_each_stops_at_the_limit() {
    let (r, _) = breakers(100);
    for k in 0..10 {
        r.get_or_create(&k).unwrap();
    }
    let mut keys = Vec::new();
    assert_eq!(r.for_each(4, |k, _| keys.push(*k)), 4);
    assert_eq!(keys.len(), 4);
    assert_eq!(r.for_each(100, |_, _| ()), 10);
}

#[test]
fn threads_creating_one_key_get_one_entry() {
    let (r, _) = breakers(8);
    let handles: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| s.spawn(|| r.get_or_create(&7).unwrap()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(handles.windows(2).all(|w| Handle::ptr_eq(&w[0], &w[1])));
    assert_eq!(r.metrics().created, 1);
}

#[test]
fn string_keys_are_looked_up_by_str() {
    let log = StdArc::new(StdMutex::new(Vec::new()));
    let l = log.clone();
    let r = Registry::<String, _>::builder(Bulkhead::builder())
        .on_event(move |e: RegistryEvent<'_, String>| l.lock().unwrap().push(format!("{e:?}")))
        .build()
        .unwrap();
    let a = r.get_or_create("api").unwrap();
    assert!(Handle::ptr_eq(&a, &r.get("api").unwrap()));
    assert!(Handle::ptr_eq(
        &a,
        &r.get_or_create(&"api".to_string()).unwrap()
    ));
    assert!(r.get("other").is_none());
    assert!(r.remove("api"));
    assert!(!r.remove("api"));
    assert_eq!(
        *log.lock().unwrap(),
        [r#"Created("api")"#, r#"Removed("api")"#]
    );
}

#[test]
fn with_pins_the_entry_while_it_runs() {
    let (r, _) = breakers(1);
    drop(r.get_or_create(&1).unwrap());
    // While `f` runs on 1, the only entry is pinned: a new key finds nothing idle.
    let refused = r
        .with_or_create(&1, |_| r.get_or_create(&2).is_err())
        .unwrap();
    assert!(refused);
    assert_eq!(r.metrics().refused, 1);
    // Done: 1 is idle again, and a new key evicts it.
    assert_eq!(r.with(&1, |b| b.metrics().calls), Some(0));
    assert!(
        r.with_or_create(&2, |b| b.call(|| Ok::<_, ()>(())).is_ok())
            .unwrap()
    );
    assert!(r.with(&1, |_| ()).is_none());
    assert_eq!(r.with(&2, |b| b.metrics().calls), Some(1));
}

#[test]
fn with_or_create_builds_a_new_key_and_reports_a_refusal() {
    let (r, _) = breakers(1);
    let held = r.get_or_create(&1).unwrap();
    assert!(matches!(
        r.with_or_create(&2, |_| unreachable!("refused: `f` not called")),
        Err(RegistryError::Full(_))
    ));
    drop(held);
    assert_eq!(r.with_or_create(&2, |b| b.metrics().calls).unwrap(), 0);
    assert_eq!((r.len(), r.metrics().created), (1, 2));
}

#[test]
fn a_panic_in_with_unpins_the_entry() {
    let (r, _) = breakers(1);
    drop(r.get_or_create(&1).unwrap());
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        r.with(&1, |_| panic!("in f"));
    }));
    assert!(caught.is_err());
    drop(r.get_or_create(&2).unwrap()); // 1 was unpinned: evicted
    assert!(r.get(&1).is_none());
}

/// A primitive of the user's whose idle check panics while `panics` is set.
struct Touchy {
    panics: StdArc<StdMutex<bool>>,
}

impl Keyed for Touchy {
    fn is_idle(&self) -> bool {
        assert!(!*self.panics.lock().unwrap(), "idle check failed");
        true
    }
}

#[derive(Clone)]
struct TouchyTemplate(StdArc<StdMutex<bool>>);

impl Template for TouchyTemplate {
    type Primitive = Touchy;

    fn build_keyed(self) -> Result<Touchy, ConfigError> {
        Ok(Touchy { panics: self.0 })
    }
}

#[test]
fn a_panicking_idle_check_loses_no_entry() {
    let panics = StdArc::new(StdMutex::new(true));
    let r = Registry::builder(TouchyTemplate(panics.clone()))
        .max_keys(1)
        .build()
        .unwrap();
    drop(r.get_or_create(&1).unwrap());
    let create = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        drop(r.get_or_create(&2));
    }));
    assert!(create.is_err(), "the idle check's panic reaches the caller");
    assert_eq!(r.len(), 1, "the entry examined is still in the ring");
    *panics.lock().unwrap() = false;
    assert!(r.get_or_create(&2).is_ok(), "and it is evicted once idle");
    assert!(r.get(&1).is_none());
    assert_eq!((r.len(), r.metrics().evicted), (1, 1));
}
