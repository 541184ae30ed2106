//! CPython's `multiprocessing` docs, "Introduction": a `Pool` of five workers squares
//! `[1, 2, 3]` and prints `[1, 4, 9]`.
//!
//! ```python
//! from multiprocessing import Pool
//!
//! def f(x):
//!     return x*x
//!
//! if __name__ == '__main__':
//!     with Pool(5) as p:
//!         print(p.map(f, [1, 2, 3]))
//! ```
//!
//! Run with `cargo run --example docs_pool_intro`.

use multiprocess::Pool;

/// The work, done in a worker: a plain function (the workers find it by name, as Python's
/// find `f` by importing the main module).
fn f(x: i64) -> i64 {
    x * x
}

fn main() -> multiprocess::Result<()> {
    multiprocess::init(); // `if __name__ == '__main__':` — the first line of main
    let p = Pool::new(5)?;
    // `None`: Python's default chunk size. Prints `[1, 4, 9]`.
    println!("{:?}", p.map(f, [1, 2, 3])?);
    Ok(()) // `p` is dropped here: the pool is terminated, as at the end of Python's `with`
}
