//! CPython's `multiprocessing` docs, "Exchanging objects between processes", Queues: a child
//! puts a list on a `Queue`, the parent prints it.
//!
//! ```python
//! from multiprocessing import Process, Queue
//!
//! def f(q):
//!     q.put([42, None, 'hello'])
//!
//! if __name__ == '__main__':
//!     q = Queue()
//!     p = Process(target=f, args=(q,))
//!     p.start()
//!     print(q.get())    # prints "[42, None, 'hello']"
//!     p.join()
//! ```
//!
//! A Rust list holds one type, so Python's mixed list becomes a list of an enum with one
//! variant per kind of value; any serde type travels through a `Queue`.
//!
//! Run with `cargo run --example docs_queue`.

use std::fmt;

use multiprocess::{Process, Queue};
use serde::{Deserialize, Serialize};

/// A value of Python's list `[42, None, 'hello']`.
#[derive(Debug, Serialize, Deserialize)]
enum Obj {
    Int(i64),
    None,
    Str(String),
}

/// Shown as Python's `print` shows it.
impl fmt::Display for Obj {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Obj::Int(n) => write!(f, "{n}"),
            Obj::None => write!(f, "None"),
            Obj::Str(s) => write!(f, "'{s}'"),
        }
    }
}

/// A list as Python prints one: `[a, b, c]`.
fn show(list: &[Obj]) -> String {
    let items: Vec<String> = list.iter().map(Obj::to_string).collect();
    format!("[{}]", items.join(", "))
}

/// The child's work (a failure in a child is a panic: exit code 1 in the parent).
fn f(q: Queue<Vec<Obj>>) {
    let list = vec![Obj::Int(42), Obj::None, Obj::Str("hello".into())];
    q.put(&list).expect("put on the queue");
}

fn main() -> multiprocess::Result<()> {
    multiprocess::init(); // `if __name__ == '__main__':` — the first line of main
    let q = Queue::new()?;
    let mut p = Process::new(f, (q.clone(),)); // a clone is another handle on the same queue
    p.start()?;
    println!("{}", show(&q.get()?)); // prints "[42, None, 'hello']"
    p.join()?;
    Ok(())
}
