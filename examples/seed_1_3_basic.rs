//! Seed §1.3, the basic example: create a process whose target does nothing, start it, join it.
//!
//! ```python
//! import multiprocessing as mp
//! def test(): pass
//! p = mp.Process(target=test)  # create the child
//! p.start()                    # run it
//! p.join()                     # wait for it to end
//! ```
//!
//! Run with `cargo run --release --example seed_1_3_basic`.

use multiprocess::Process;

/// The child's work: nothing (Python's `def test(): pass`).
fn test() {}

fn main() -> multiprocess::Result<()> {
    multiprocess::init(); // Rust's `if __name__ == "__main__":` — always the first line
    let mut p = Process::new(test, ()); // create the child (a Process object, not yet a process)
    p.start()?; // run it
    p.join()?; // wait for it to end (and reap it)
    println!("{p:?}");
    println!("exitcode = {:?}", p.exitcode()?);
    Ok(())
}
