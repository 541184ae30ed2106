//! CPython's `multiprocessing` docs, "Exchanging objects between processes", Pipes: a child
//! sends a list through its end of a `Pipe`, the parent receives it at the other end.
//!
//! ```python
//! from multiprocessing import Process, Pipe
//!
//! def f(conn):
//!     conn.send([42, None, 'hello'])
//!     conn.close()
//!
//! if __name__ == '__main__':
//!     parent_conn, child_conn = Pipe()
//!     p = Process(target=f, args=(child_conn,))
//!     p.start()
//!     print(parent_conn.recv())   # prints "[42, None, 'hello']"
//!     p.join()
//! ```
//!
//! Python's mixed list becomes a list of an enum (see `docs_queue.rs`); `send` and `recv`
//! carry any serde type.
//!
//! Run with `cargo run --example docs_pipe`.

use std::fmt;

use multiprocess::{Connection, Process};
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

/// The child's work: its end of the pipe arrives as an argument.
fn f(mut conn: Connection) {
    let list = vec![Obj::Int(42), Obj::None, Obj::Str("hello".into())];
    conn.send(&list).expect("send");
    conn.close();
}

fn main() -> multiprocess::Result<()> {
    multiprocess::init(); // `if __name__ == '__main__':` — the first line of main
    let (parent_conn, child_conn) = multiprocess::pipe()?; // duplex, Python's default
    let mut p = Process::new(f, (child_conn,));
    p.start()?;
    println!("{}", show(&parent_conn.recv::<Vec<Obj>>()?)); // prints "[42, None, 'hello']"
    p.join()?;
    Ok(())
}
