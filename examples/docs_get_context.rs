//! CPython's `multiprocessing` docs, "Contexts and start methods": a context object chooses
//! the start method for the processes made through it, leaving the program's default alone.
//!
//! ```python
//! import multiprocessing as mp
//!
//! def foo(q):
//!     q.put('hello')
//!
//! if __name__ == '__main__':
//!     ctx = mp.get_context('spawn')
//!     q = ctx.Queue()
//!     p = ctx.Process(target=foo, args=(q,))
//!     p.start()
//!     print(q.get())
//!     p.join()
//! ```
//!
//! Queues, locks and shared values do not depend on the start method in this crate, so
//! `Queue::new()` stands for `ctx.Queue()`.
//!
//! Run with `cargo run --example docs_get_context`.

use multiprocess::Queue;

/// The child's work (a failure in a child is a panic: exit code 1 in the parent).
fn foo(q: Queue<String>) {
    q.put("hello").expect("put on the queue");
}

fn main() -> multiprocess::Result<()> {
    multiprocess::init(); // `if __name__ == '__main__':` — the first line of main
    let ctx = multiprocess::get_context(multiprocess::StartMethod::Spawn)?;
    let q = Queue::new()?;
    let mut p = ctx.process(foo, (q.clone(),));
    p.start()?;
    println!("{}", q.get()?);
    p.join()?;
    Ok(())
}
