//! Seed §1.4.2: positional arguments as a tuple, and a global the parent rebinds after the start.
//!
//! ```python
//! a = 10
//! def worker(sec):
//!     print(a)
//!     sleep(sec)
//!     print('worker ......')
//!     print(a)
//! p = mp.Process(name='child', target=worker, args=(5,))   # note the comma in (5,)
//! p.start()
//! print(p.pid)
//! print(p.name)
//! print(p.is_alive())
//! a = 100000
//! p.join()
//! print("************main****************")
//! worker(1)
//! ```
//!
//! Output: the pid, `child`, `true`, the child's `10 … 10`, then the parent's `100000 … 100000`.
//! The child was started by spawn: it runs this program again and its `init()` calls `worker`
//! directly, so `main` never runs there and the child's `A` keeps its initial value 10. Rebinding
//! the parent's copy after the start cannot reach it.
//!
//! Set `SEED_SLEEP_SCALE` (a float, default 1.0) to scale the sleeps.
//! Run with `cargo run --release --example seed_1_4_2_args`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use multiprocess::Process;

/// Python's module-level `a = 10`.
static A: AtomicU64 = AtomicU64::new(10);

/// The sleep multiplier from `SEED_SLEEP_SCALE` (children inherit the environment).
fn scale() -> f64 {
    std::env::var("SEED_SLEEP_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(1.0)
}

/// The target; the parent also calls it itself at the end.
fn worker(sec: u64) {
    println!("{}", A.load(Ordering::Relaxed));
    std::thread::sleep(Duration::from_secs_f64(sec as f64 * scale()));
    println!("worker ......");
    println!("{}", A.load(Ordering::Relaxed));
}

fn main() -> multiprocess::Result<()> {
    multiprocess::init();
    // args=(5,): a one-element tuple needs the trailing comma in Rust too.
    let mut p = Process::new(worker, (5,)).with_name("child");
    // p = p.daemon(true); // would not matter here: the join below waits anyway
    p.start()?;
    println!("{}", p.pid().expect("started"));
    println!("{}", p.name());
    println!("{}", p.is_alive()?);
    A.store(100_000, Ordering::Relaxed); // a = 100000: the parent's copy only
    p.join()?;
    println!("************main****************");
    worker(1);
    Ok(())
}
