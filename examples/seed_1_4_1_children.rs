//! Seed §1.4.1: five children, each sleeping a random 0–4 s, then printing
//! `<parent pid> ------- <own pid>` and `Testing`.
//!
//! ```python
//! def test():
//!     sleep(randint(0, 4))
//!     print(os.getppid(), '-------', os.getpid())
//!     print("Testing")
//! for i in range(5):
//!     p = mp.Process(target=test)
//!     p.start()
//! ```
//!
//! The output shows one parent pid and five different child pids, in the order the sleeps end.
//! Set `SEED_SLEEP_SCALE` (a float, default 1.0) to scale the sleeps, e.g. `0.1` for a fast run.
//!
//! Run with `cargo run --release --example seed_1_4_1_children`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use multiprocess::Process;

/// The sleep multiplier from `SEED_SLEEP_SCALE` (children inherit the environment).
fn scale() -> f64 {
    std::env::var("SEED_SLEEP_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(1.0)
}

/// Sleeps `sec` seconds, times the scale.
fn sleep(sec: f64) {
    std::thread::sleep(Duration::from_secs_f64(sec * scale()));
}

/// Python's `randint(lo, hi)` (both ends included), from a splitmix64 step seeded with this
/// process's pid and the clock: enough for a demo, no dependency needed.
fn randint(lo: u64, hi: u64) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut z = (u64::from(std::process::id()) << 32 ^ nanos).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    lo + z % (hi - lo + 1)
}

/// The child's work.
fn test() {
    sleep(randint(0, 4) as f64);
    let ppid = multiprocess::parent_process()
        .expect("a child has a parent")
        .pid(); // os.getppid()
    println!("{} ------- {}", ppid, std::process::id());
    println!("Testing");
}

fn main() -> multiprocess::Result<()> {
    multiprocess::init();
    let mut children = Vec::new();
    for _ in 0..5 {
        // `test` is now more than a function: the Process object turns it into a process.
        let mut p = Process::new(test, ());
        p.start()?;
        children.push(p);
    }
    // Python's main process waits for its children at exit without a join; so would this
    // program (the exit policy), but joining keeps the order of events explicit.
    for p in &children {
        p.join()?;
    }
    Ok(())
}
