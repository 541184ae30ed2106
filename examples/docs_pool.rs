//! CPython's `multiprocessing` docs, "Using a pool of workers": `map`, `imap_unordered`,
//! `apply_async` with `get(timeout)`, and a `get` that gives up on a task sleeping 10 s.
//!
//! ```python
//! from multiprocessing import Pool, TimeoutError
//! import time
//! import os
//!
//! def f(x):
//!     return x*x
//!
//! if __name__ == '__main__':
//!     # start 4 worker processes
//!     with Pool(processes=4) as pool:
//!
//!         # print "[0, 1, 4,..., 81]"
//!         print(pool.map(f, range(10)))
//!
//!         # print same numbers in arbitrary order
//!         for i in pool.imap_unordered(f, range(10)):
//!             print(i)
//!
//!         # evaluate "f(20)" asynchronously
//!         res = pool.apply_async(f, (20,))      # runs in *only* one process
//!         print(res.get(timeout=1))             # prints "400"
//!
//!         # evaluate "os.getpid()" asynchronously
//!         res = pool.apply_async(os.getpid, ()) # runs in *only* one process
//!         print(res.get(timeout=1))             # prints the PID of that process
//!
//!         # launching multiple evaluations asynchronously *may* use more processes
//!         multiple_results = [pool.apply_async(os.getpid, ()) for i in range(4)]
//!         print([res.get(timeout=1) for res in multiple_results])
//!
//!         # make a single worker sleep for 10 secs
//!         res = pool.apply_async(time.sleep, (10,))
//!         try:
//!             print(res.get(timeout=1))
//!         except TimeoutError:
//!             print("We lacked patience and got a multiprocessing.TimeoutError")
//!
//!         print("For the moment, the pool remains available for more work")
//!
//!     # exiting the 'with'-block has stopped the pool
//!     print("Now the pool is closed and no longer available")
//! ```
//!
//! Run with `cargo run --example docs_pool`.

use std::time::Duration;

use multiprocess::{Error, Pool};

fn f(x: u64) -> u64 {
    x * x
}

/// `os.getpid`: a pool task is a function of ours, so it is wrapped in one.
fn getpid() -> u32 {
    std::process::id()
}

/// `time.sleep`, likewise.
fn sleep(secs: u64) {
    std::thread::sleep(Duration::from_secs(secs));
}

fn main() -> multiprocess::Result<()> {
    multiprocess::init(); // `if __name__ == '__main__':` — the first line of main
    let one_second = Duration::from_secs(1);
    {
        // start 4 worker processes
        let pool = Pool::new(4)?;

        // print "[0, 1, 4,..., 81]" (`None`: the default chunk size)
        println!("{:?}", pool.map(f, 0..10)?);

        // print same numbers in arbitrary order (chunks of 1, Python's default for imap);
        // each item is a `Result`: a task can fail on its own
        for i in pool.imap_unordered(f, 0..10)? {
            println!("{}", i?);
        }

        // evaluate "f(20)" asynchronously
        let res = pool.apply_async(f, (20,))?; // runs in *only* one process
        println!("{}", res.get_timeout(one_second)?); // prints "400"

        // evaluate "getpid()" asynchronously
        let res = pool.apply_async(getpid, ())?; // runs in *only* one process
        println!("{}", res.get_timeout(one_second)?); // prints the PID of that process

        // launching multiple evaluations asynchronously *may* use more processes
        let multiple_results = (0..4)
            .map(|_| pool.apply_async(getpid, ()))
            .collect::<multiprocess::Result<Vec<_>>>()?;
        let pids = multiple_results
            .iter()
            .map(|res| res.get_timeout(one_second))
            .collect::<multiprocess::Result<Vec<_>>>()?;
        println!("{pids:?}");

        // make a single worker sleep for 10 secs
        let res = pool.apply_async(sleep, (10,))?;
        match res.get_timeout(one_second) {
            Ok(()) => println!("None"),
            Err(Error::Timeout) => {
                println!("We lacked patience and got a multiprocessing.TimeoutError")
            }
            Err(e) => return Err(e),
        }

        println!("For the moment, the pool remains available for more work");
    } // dropping the pool terminates it, as exiting the `with` block does

    println!("Now the pool is closed and no longer available");
    Ok(())
}
