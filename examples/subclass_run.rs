//! Python's other way to make a process: subclass `Process` and override `run()`.
//!
//! ```python
//! class Shouter(mp.Process):
//!     def __init__(self, words, times):
//!         super().__init__()
//!         self.words, self.times = words, times
//!     def run(self):
//!         for _ in range(self.times):
//!             print(self.words.upper())
//!
//! p = Shouter("hello from a child", 3)
//! p.start()
//! p.join()
//! ```
//!
//! In Rust the "subclass" is a serde type implementing [`multiprocess::Run`]: its fields are the
//! subclass's attributes (they travel to the spawned child), its `run` is the child's work, and
//! what `run` returns comes back to the parent through `Process::result` (Python's `run` cannot
//! return anything).
//!
//! Run with `cargo run --release --example subclass_run`.

use multiprocess::{Process, Run};
use serde::{Deserialize, Serialize};

/// An upper-casing echo: prints its words in capitals `times` times and counts the letters it
/// shouted.
#[derive(Serialize, Deserialize)]
struct Shouter {
    words: String,
    times: u32,
}

impl Run for Shouter {
    type Output = (String, usize);

    fn run(self) -> (String, usize) {
        let me = multiprocess::current_process();
        let loud = self.words.to_uppercase();
        for _ in 0..self.times {
            println!("[{} pid {}] {loud}", me.name(), me.pid());
        }
        let letters = loud.chars().filter(|c| c.is_alphabetic()).count() * self.times as usize;
        (loud, letters)
    }
}

fn main() -> multiprocess::Result<()> {
    multiprocess::init();
    let mut p = Process::from_run(Shouter {
        words: "hello from a child".into(),
        times: 3,
    })
    .with_name("Shouter-1");
    p.start()?;
    p.join()?;
    let (loud, letters) = p.result::<(String, usize)>()?;
    println!(
        "parent {}: exitcode {:?}",
        std::process::id(),
        p.exitcode()?
    );
    println!("parent got back {loud:?} and {letters} letters shouted");
    Ok(())
}
