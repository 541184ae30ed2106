//! CPython's `multiprocessing` docs, "The Process class": a child says hello.
//!
//! ```python
//! from multiprocessing import Process
//!
//! def f(name):
//!     print('hello', name)
//!
//! if __name__ == '__main__':
//!     p = Process(target=f, args=('bob',))
//!     p.start()
//!     p.join()
//! ```
//!
//! Run with `cargo run --example docs_process`.

use multiprocess::Process;

/// The child's work. Parameters are owned values (a `String`, not a `&str`): they are decoded
/// in the child.
fn f(name: String) {
    println!("hello {name}");
}

fn main() -> multiprocess::Result<()> {
    multiprocess::init(); // `if __name__ == '__main__':` — the first line of main
    let mut p = Process::new(f, ("bob".to_string(),)); // args: a tuple, `(x,)` for one
    p.start()?;
    p.join()?; // no timeout
    Ok(())
}
