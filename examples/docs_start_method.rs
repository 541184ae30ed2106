//! CPython's `multiprocessing` docs, "Contexts and start methods": choose the start method
//! once, in the main process, then pass a `Queue` to a child.
//!
//! ```python
//! import multiprocessing as mp
//!
//! def foo(q):
//!     q.put('hello')
//!
//! if __name__ == '__main__':
//!     mp.set_start_method('spawn')
//!     q = mp.Queue()
//!     p = mp.Process(target=foo, args=(q,))
//!     p.start()
//!     print(q.get())
//!     p.join()
//! ```
//!
//! (spawn is already this crate's default on every OS; fork and forkserver are the others.)
//!
//! Run with `cargo run --example docs_start_method`.

use multiprocess::{Process, Queue};

/// The child's work. A target returns a value, not a `Result`: a failure in a child is a
/// panic, which the parent sees as exit code 1 and `Error::Panicked` from `result()`.
fn foo(q: Queue<String>) {
    q.put("hello").expect("put on the queue");
}

fn main() -> multiprocess::Result<()> {
    multiprocess::init(); // `if __name__ == '__main__':` — the first line of main
    multiprocess::set_start_method(multiprocess::StartMethod::Spawn)?; // force=False, as Python's default
    let q = Queue::new()?;
    let mut p = Process::new(foo, (q.clone(),)); // a clone is another handle on the same queue
    p.start()?;
    println!("{}", q.get()?);
    p.join()?;
    Ok(())
}
