//! A tiny single-threaded executor on simulated time: the scenarios run the crate's real futures
//! (the policy's `call_async`, the bulkhead's waits) against a simulated dependency, and a
//! `sleep` that moves a `ManualClock` instead of waiting: also the crate's timer, through
//! [`Sim::timer`]. Thousands of simulated seconds take milliseconds.

use resile::clock::{Clock, ManualClock};
use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

type Task = Pin<Box<dyn Future<Output = ()>>>;

struct TaskWaker {
    id: usize,
    ready: Arc<Mutex<VecDeque<usize>>>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.ready.lock().expect("not poisoned").push_back(self.id);
    }
}

#[derive(Default)]
struct Timers {
    heap: BinaryHeap<Reverse<(u64, u64)>>,
    wakers: Vec<Option<Waker>>,
}

/// The executor, and a handle to it that tasks clone to spawn and sleep.
#[derive(Clone)]
pub(crate) struct Sim {
    pub(crate) clock: ManualClock,
    timers: Arc<Mutex<Timers>>,
    spawned: Rc<RefCell<Vec<Task>>>,
}

impl Sim {
    pub(crate) fn new() -> Self {
        Self {
            clock: ManualClock::new(),
            timers: Arc::default(),
            spawned: Rc::default(),
        }
    }

    /// Simulated time now, in seconds.
    pub(crate) fn now_secs(&self) -> f64 {
        self.clock.now() as f64 / 1e9
    }

    pub(crate) fn now(&self) -> u64 {
        self.clock.now()
    }

    pub(crate) fn spawn(&self, f: impl Future<Output = ()> + 'static) {
        self.spawned.borrow_mut().push(Box::pin(f));
    }

    /// A future that completes once the simulated clock reaches now + `d`.
    pub(crate) fn sleep(&self, d: Duration) -> Sleep {
        self.timer()
            .sleep_until(self.clock.now() + d.as_nanos() as u64)
    }

    /// The simulated time as the crate's timer (for a retry's backoff, a bulkhead's wait).
    pub(crate) fn timer(&self) -> SimTimer {
        SimTimer {
            clock: self.clock.clone(),
            timers: self.timers.clone(),
        }
    }

    /// Runs every task until none can progress and no timer is due before `until` (ns); returns
    /// how many tasks were left unfinished.
    pub(crate) fn run_until(&self, until: u64) -> usize {
        let ready = Arc::new(Mutex::new(VecDeque::new()));
        let mut tasks: Vec<Option<Task>> = Vec::new();
        let mut live = 0;
        loop {
            for t in self.spawned.borrow_mut().drain(..) {
                ready.lock().expect("not poisoned").push_back(tasks.len());
                tasks.push(Some(t));
                live += 1;
            }
            let next = ready.lock().expect("not poisoned").pop_front();
            if let Some(id) = next {
                let waker = Waker::from(Arc::new(TaskWaker {
                    id,
                    ready: ready.clone(),
                }));
                if let Some(task) = tasks[id].as_mut() {
                    if task
                        .as_mut()
                        .poll(&mut Context::from_waker(&waker))
                        .is_ready()
                    {
                        tasks[id] = None;
                        live -= 1;
                    }
                }
                continue;
            }
            if !self.spawned.borrow().is_empty() {
                continue;
            }
            // Nothing ready: move the clock to the next timer.
            let mut timers = self.timers.lock().expect("not poisoned");
            let Some(Reverse((at, slot))) = timers.heap.pop() else {
                break;
            };
            if at > until {
                timers.heap.push(Reverse((at, slot)));
                break;
            }
            if at > self.clock.now() {
                self.clock.set(at);
            }
            if let Some(w) = timers.wakers[slot as usize].take() {
                w.wake();
            }
        }
        // Drop what is left (the process "exits"): their guards and permits are released.
        drop(tasks);
        live
    }
}

/// The simulation's timers, shareable with the crate (it is `Send + Sync`).
#[derive(Clone)]
pub(crate) struct SimTimer {
    clock: ManualClock,
    timers: Arc<Mutex<Timers>>,
}

impl SimTimer {
    fn sleep_until(&self, at: u64) -> Sleep {
        Sleep {
            timer: self.clone(),
            at,
        }
    }
}

impl resile::timer::Timer for SimTimer {
    fn sleep(&self, d: Duration) -> resile::timer::Sleep {
        resile::timer::Sleep::new(self.sleep_until(self.clock.now() + d.as_nanos() as u64))
    }
}

pub(crate) struct Sleep {
    timer: SimTimer,
    at: u64,
}

impl Future for Sleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.timer.clock.now() >= self.at {
            return Poll::Ready(());
        }
        let mut timers = self.timer.timers.lock().expect("not poisoned");
        let slot = timers.wakers.len() as u64;
        timers.wakers.push(Some(cx.waker().clone()));
        timers.heap.push(Reverse((self.at, slot)));
        Poll::Pending
    }
}
