//! CPython's `multiprocessing` docs, "Process Pools", the example after `AsyncResult`:
//! `apply_async`, `map` and `imap`, then a `get(timeout=1)` on a task that sleeps 10 s,
//! which fails with a timeout and ends the program with that error.
//!
//! ```python
//! from multiprocessing import Pool
//! import time
//!
//! def f(x):
//!     return x*x
//!
//! if __name__ == '__main__':
//!     with Pool(processes=4) as pool:         # start 4 worker processes
//!         result = pool.apply_async(f, (10,)) # evaluate "f(10)" asynchronously in a single process
//!         print(result.get(timeout=1))        # prints "100" unless your computer is *very* slow
//!
//!         print(pool.map(f, range(10)))       # prints "[0, 1, 4,..., 81]"
//!
//!         it = pool.imap(f, range(10))
//!         print(next(it))                     # prints "0"
//!         print(next(it))                     # prints "1"
//!         print(it.next(timeout=1))           # prints "4" unless your computer is *very* slow
//!
//!         result = pool.apply_async(time.sleep, (10,))
//!         print(result.get(timeout=1))        # raises multiprocessing.TimeoutError
//! ```
//!
//! Python ends with a traceback and exit status 1; this program with `Error: Timeout` on
//! stderr and exit status 1 (`main` returns the error).
//!
//! Run with `cargo run --example docs_pool_reference`.

use std::time::Duration;

use multiprocess::Pool;

fn f(x: u64) -> u64 {
    x * x
}

/// `time.sleep`: a pool task is a function of ours, so it is wrapped in one.
fn sleep(secs: u64) {
    std::thread::sleep(Duration::from_secs(secs));
}

fn main() -> multiprocess::Result<()> {
    multiprocess::init(); // `if __name__ == '__main__':` — the first line of main
    let one_second = Duration::from_secs(1);
    let pool = Pool::new(4)?; // start 4 worker processes; dropped (terminated) when main returns
    let result = pool.apply_async(f, (10,))?; // evaluate "f(10)" asynchronously in a single process
    println!("{}", result.get_timeout(one_second)?); // prints "100" unless your computer is *very* slow

    println!("{:?}", pool.map(f, 0..10)?); // prints "[0, 1, 4,..., 81]"

    // imap gives `Option<Result<_>>`: `None` past the end (Python's StopIteration), an `Err`
    // for a task that failed. Ten items, so the first three are there.
    let mut it = pool.imap(f, 0..10)?;
    println!("{}", it.next().expect("ten items")?); // prints "0"
    println!("{}", it.next().expect("ten items")?); // prints "1"
    // prints "4" unless your computer is *very* slow
    println!("{}", it.next_timeout(one_second).expect("ten items")?);

    let result = pool.apply_async(sleep, (10,))?;
    println!("{:?}", result.get_timeout(one_second)?); // fails with Error::Timeout
    Ok(())
}
