//! CPython's `multiprocessing` docs, "Sharing state between processes", Shared memory: a
//! child writes a shared `Value` and negates a shared `Array`; the parent prints both.
//!
//! ```python
//! from multiprocessing import Process, Value, Array
//!
//! def f(n, a):
//!     n.value = 3.1415927
//!     for i in range(len(a)):
//!         a[i] = -a[i]
//!
//! if __name__ == '__main__':
//!     num = Value('d', 0.0)
//!     arr = Array('i', range(10))
//!
//!     p = Process(target=f, args=(num, arr))
//!     p.start()
//!     p.join()
//!
//!     print(num.value)
//!     print(arr[:])
//! ```
//!
//! prints `3.1415927` and `[0, -1, -2, -3, -4, -5, -6, -7, -8, -9]`. Python's typecodes `'d'`
//! and `'i'` are Rust's `f64` and `i32`.
//!
//! Run with `cargo run --example docs_value_array`.

use multiprocess::{Array, Process, Value};

/// The child's work: `n` and `a` are the parent's memory, shared, not copies.
#[allow(clippy::approx_constant)] // the docs' number, printed as it is (not `f64::consts::PI`)
fn f(n: Value<f64>, a: Array<i32>) {
    n.set(3.1415927).expect("set the value");
    // Each `get`/`set` takes the array's lock, as Python's `a[i]` does; `a.lock()` would hold
    // it once for the whole loop and hand out a `&mut [i32]`.
    for i in 0..a.len() {
        let x = a.get(i).expect("read");
        a.set(i, -x).expect("write");
    }
}

fn main() -> multiprocess::Result<()> {
    multiprocess::init(); // `if __name__ == '__main__':` — the first line of main
    let num = Value::new(0.0f64)?;
    let arr = Array::from_slice(&(0..10).collect::<Vec<i32>>())?;

    let mut p = Process::new(f, (num.clone(), arr.clone())); // clones: handles on the same memory
    p.start()?;
    p.join()?;

    println!("{}", num.get()?);
    println!("{:?}", arr.to_vec()?);
    Ok(())
}
