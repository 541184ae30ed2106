//! CPython's `multiprocessing` docs, "Sharing state between processes", Server process: a
//! `Manager` holds a dict and a list; a child changes both through proxies.
//!
//! ```python
//! from multiprocessing import Process, Manager
//!
//! def f(d, l):
//!     d[1] = '1'
//!     d['2'] = 2
//!     d[0.25] = None
//!     l.reverse()
//!
//! if __name__ == '__main__':
//!     with Manager() as manager:
//!         d = manager.dict()
//!         l = manager.list(range(10))
//!
//!         p = Process(target=f, args=(d, l))
//!         p.start()
//!         p.join()
//!
//!         print(d)
//!         print(l)
//! ```
//!
//! prints `{1: '1', '2': 2, 0.25: None}` and `[9, 8, 7, 6, 5, 4, 3, 2, 1, 0]`. The proxies
//! are typed: Python's mixed keys and values become an enum (a dict's keys are compared by
//! their encoding, so a float key is fine).
//!
//! Run with `cargo run --example docs_manager`.

use std::fmt;

use multiprocess::Manager;
use multiprocess::Process;
use multiprocess::managers::{DictProxy, ListProxy};
use serde::{Deserialize, Serialize};

/// A Python value of the kinds the example stores.
#[derive(Debug, Serialize, Deserialize)]
enum Obj {
    Int(i64),
    Float(f64),
    Str(String),
    None,
}

/// Shown as Python's `print` shows it.
impl fmt::Display for Obj {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Obj::Int(n) => write!(f, "{n}"),
            Obj::Float(x) => write!(f, "{x:?}"), // `{:?}` keeps the `.0` of 1.0, as Python
            Obj::Str(s) => write!(f, "'{s}'"),
            Obj::None => write!(f, "None"),
        }
    }
}

/// The child's work: every call on a proxy is a request to the manager's process.
fn f(d: DictProxy<Obj, Obj>, l: ListProxy<i64>) {
    d.set(&Obj::Int(1), &Obj::Str("1".into())).expect("d[1]");
    d.set(&Obj::Str("2".into()), &Obj::Int(2)).expect("d['2']");
    d.set(&Obj::Float(0.25), &Obj::None).expect("d[0.25]");
    // `l.reverse()`: the list proxy has no `reverse` yet, so read the list, reverse it here
    // and write it back (not one step, as Python's is; nobody else uses `l` meanwhile).
    let reversed: Vec<i64> = l.to_vec().expect("read").into_iter().rev().collect();
    for (i, x) in reversed.iter().enumerate() {
        l.set(i as i64, x).expect("write");
    }
}

fn main() -> multiprocess::Result<()> {
    multiprocess::init(); // `if __name__ == '__main__':` — the first line of main
    let manager = Manager::start()?; // `with Manager() as manager:`, shut down when dropped
    let d = manager.dict::<Obj, Obj>()?;
    let l = manager.list::<i64>()?;
    for i in 0..10 {
        l.append(&i)?; // `manager.list(range(10))`: no list from initial items yet
    }

    let mut p = Process::new(f, (d.clone(), l.clone())); // clones: proxies of the same objects
    p.start()?;
    p.join()?;

    // `print(d)`: the entries in insertion order, as a Python dict prints them.
    let entries: Vec<String> = d
        .items()?
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    println!("{{{}}}", entries.join(", "));
    println!("{:?}", l.to_vec()?);
    Ok(())
}
