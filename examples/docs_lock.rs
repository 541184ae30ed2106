//! CPython's `multiprocessing` docs, "Synchronization between processes": ten children take
//! turns at a shared `Lock` to print one line each.
//!
//! ```python
//! from multiprocessing import Process, Lock
//!
//! def f(l, i):
//!     l.acquire()
//!     try:
//!         print('hello world', i)
//!     finally:
//!         l.release()
//!
//! if __name__ == '__main__':
//!     lock = Lock()
//!
//!     for num in range(10):
//!         Process(target=f, args=(lock, num)).start()
//! ```
//!
//! The lines come in whatever order the children get the lock. As in Python, the children
//! are not joined explicitly: the program joins them when `main` returns.
//!
//! Run with `cargo run --example docs_lock`.

use multiprocess::{Lock, Process};

/// The child's work: `guard()` is `acquire()`, and dropping the guard is the `finally:
/// release()` (it also releases when the code in between panics).
fn f(l: Lock, i: u32) {
    let _held = l.guard().expect("acquire the lock");
    println!("hello world {i}");
}

fn main() -> multiprocess::Result<()> {
    multiprocess::init(); // `if __name__ == '__main__':` — the first line of main
    let lock = Lock::new()?;
    for num in 0..10 {
        // A clone is another handle on the same lock.
        Process::new(f, (lock.clone(), num)).start()?;
    }
    Ok(())
}
