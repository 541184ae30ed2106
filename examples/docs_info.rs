//! CPython's `multiprocessing` docs, "The Process class", the expanded example: the main
//! process and a child each print their module name, their parent's pid and their own pid.
//!
//! ```python
//! from multiprocessing import Process
//! import os
//!
//! def info(title):
//!     print(title)
//!     print('module name:', __name__)
//!     print('parent process:', os.getppid())
//!     print('process id:', os.getpid())
//!
//! def f(name):
//!     info('function f')
//!     print('hello', name)
//!
//! if __name__ == '__main__':
//!     info('main line')
//!     p = Process(target=f, args=('bob',))
//!     p.start()
//!     p.join()
//! ```
//!
//! Rust has no `__name__`: `module_path!()` (this program's crate name, `docs_info`) stands in
//! for it. The child's "parent process" is the main process's "process id".
//!
//! Run with `cargo run --example docs_info`.

use multiprocess::Process;

/// Python's `os.getppid()`.
fn getppid() -> u32 {
    #[cfg(unix)]
    let ppid = std::os::unix::process::parent_id();
    // Windows has no getppid(); a child knows its parent through `parent_process()`.
    #[cfg(not(unix))]
    let ppid = multiprocess::parent_process().map_or(0, |p| p.pid());
    ppid
}

fn info(title: &str) {
    println!("{title}");
    println!("module name: {}", module_path!());
    println!("parent process: {}", getppid());
    println!("process id: {}", std::process::id()); // os.getpid()
}

/// The child's work.
fn f(name: String) {
    info("function f");
    println!("hello {name}");
}

fn main() -> multiprocess::Result<()> {
    multiprocess::init(); // `if __name__ == '__main__':` — the first line of main
    info("main line");
    let mut p = Process::new(f, ("bob".to_string(),));
    p.start()?;
    p.join()?;
    Ok(())
}
