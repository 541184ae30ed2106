//! Seed §1.4.4: `if __name__ == "__main__":` and its Rust form, `multiprocess::init()`.
//!
//! ```python
//! def test(name):
//!     print("Process ID: %s" % (os.getpid()))
//!     print("Parent Process ID: %s" % (os.getppid()))
//!
//! if __name__ == "__main__":
//!     proc = Process(target=test, args=('nmask',))
//!     proc.start()
//!     proc.join()
//! ```
//!
//! Windows has no fork: Python starts a child by running the program again, so the code that
//! creates processes must sit under the `__main__` guard, or every child would create children
//! of its own. This crate starts children the same way on every OS (spawn), and
//! `multiprocess::init()` is the guard: in a spawned child it runs the child's target and exits,
//! so nothing after it ever runs there.
//!
//! Code *before* `init()` is like Python's module-level code: it runs again in every spawned
//! child. This example puts a `println!` there on purpose, to show it: the line appears once for
//! the parent and once more for each of the two children. In a real program, put nothing before
//! `init()`.
//!
//! Run with `cargo run --release --example seed_1_4_4_main_guard`.

use multiprocess::Process;

/// The target: prints its own pid and its parent's.
fn test(name: String) {
    println!("Process ID: {} (test({name:?}))", std::process::id());
    let parent = multiprocess::parent_process().expect("a child has a parent");
    println!("Parent Process ID: {}", parent.pid());
}

fn main() -> multiprocess::Result<()> {
    // Deliberately BEFORE init(), to demonstrate: like Python's module-level code, this runs in
    // the parent and again in every spawned child (which re-runs this program from the start).
    println!(
        "module-level code runs in every process (pid {})",
        std::process::id()
    );

    // The guard. In a spawned child this call runs `test(...)` and exits: the child never gets
    // past this line, so it cannot start children of its own by accident. In the parent it
    // returns at once.
    multiprocess::init();

    // From here on: only the main process (Python: the body of `if __name__ == "__main__":`).
    println!("main process {}: starting two children", std::process::id());
    let mut first = Process::new(test, ("nmask".to_string(),));
    first.start()?;
    first.join()?;
    let mut second = Process::new(test, ("second".to_string(),));
    second.start()?;
    second.join()?;
    Ok(())
}
