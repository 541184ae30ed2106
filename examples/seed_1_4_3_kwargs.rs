//! Seed §1.4.3: keyword arguments (a dict in Python, a struct here), five children started one
//! per second.
//!
//! ```python
//! a = 100
//! def worker(sec, msg):
//!     print(a)
//!     sleep(sec)
//!     print(os.getppid(), '-------', os.getpid())
//!     print(msg)
//!     print(a)
//! for i in range(5):
//!     p = mp.Process(name='Child%d' % i, target=worker,
//!                    # args=(2, "child process"),
//!                    kwargs={'sec': 2, 'msg': "child process"})
//!     p.start()
//!     sleep(1)
//! a = 100000
//! p.join()
//! ```
//!
//! Each child prints its own copy of `a` (100), its parent's pid and its own, and the message.
//! The struct `Kwargs` stands for the dict; a two-field tuple `(2, "child process".to_string())`
//! and a two-parameter `worker` would do the same, as `args=` does in Python.
//!
//! Set `SEED_SLEEP_SCALE` (a float, default 1.0) to scale the sleeps.
//! Run with `cargo run --release --example seed_1_4_3_kwargs`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use multiprocess::Process;
use serde::{Deserialize, Serialize};

/// Python's module-level `a = 100`.
static A: AtomicU64 = AtomicU64::new(100);

/// Python's `kwargs={'sec': 2, 'msg': "child process"}`.
#[derive(Serialize, Deserialize)]
struct Kwargs {
    sec: u64,
    msg: String,
}

/// The sleep multiplier from `SEED_SLEEP_SCALE` (children inherit the environment).
fn scale() -> f64 {
    std::env::var("SEED_SLEEP_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(1.0)
}

/// Sleeps `sec` seconds, times the scale.
fn sleep(sec: u64) {
    std::thread::sleep(Duration::from_secs_f64(sec as f64 * scale()));
}

/// The target: `worker(sec=..., msg=...)`.
fn worker(Kwargs { sec, msg }: Kwargs) {
    println!("{}", A.load(Ordering::Relaxed));
    sleep(sec);
    let ppid = multiprocess::parent_process()
        .expect("a child has a parent")
        .pid();
    println!("{} ------- {}", ppid, std::process::id());
    println!("{msg}");
    println!("{}", A.load(Ordering::Relaxed));
}

fn main() -> multiprocess::Result<()> {
    multiprocess::init();
    let mut last = None;
    for i in 0..5 {
        let kwargs = Kwargs {
            sec: 2,
            msg: "child process".into(),
        };
        let mut p = Process::new(worker, (kwargs,)).with_name(format!("Child{i}"));
        p.start()?;
        sleep(1);
        last = Some(p);
    }
    A.store(100_000, Ordering::Relaxed); // a = 100000: the children keep 100
    // As in the seed, only the last child is joined; the exit policy joins the others when
    // main returns (Python's rule: the main process waits for its non-daemonic children).
    if let Some(p) = last {
        p.join()?;
    }
    Ok(())
}
