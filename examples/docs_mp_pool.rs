//! CPython's `multiprocessing` docs, "Examples": "Using `Pool`" (`Doc/includes/mp_pool.py`, as
//! in the current docs): the same `calculate`/`mul`/`plus` tasks as `docs_worker_queues.rs`,
//! run through `apply_async`, `imap`, `imap_unordered` and `map`; then how a task's error
//! reaches the caller, and waiting with timeouts.
//!
//! The Python original (about 150 lines) is `tests/docs_examples/docs_mp_pool.py`; the
//! sections below follow its sections, line for line. Python puts functions in a task; Rust sends data, so a task names its
//! function with an enum. Python's `ZeroDivisionError` is a panic in the worker, which the
//! caller gets as `Error::Panicked` carrying the message.
//!
//! Run with `cargo run --example docs_mp_pool`.

use std::hash::{BuildHasher, RandomState};
use std::io::Write;
use std::time::Duration;

use multiprocess::{Error, Pool};
use serde::{Deserialize, Serialize};

//
// Functions used by test code
//

/// The functions a task can ask for.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
enum Func {
    Mul,
    Plus,
}

/// A task: a function and its arguments (Python's `(mul, (i, 7))`).
type Task = (Func, (i64, i64));

/// `calculate(func, args)`: runs in a worker, says which one.
fn calculate(func: Func, args: (i64, i64)) -> String {
    let (name, result) = match func {
        Func::Mul => ("mul", mul(args.0, args.1)),
        Func::Plus => ("plus", plus(args.0, args.1)),
    };
    let me = multiprocess::current_process().name();
    format!("{me} says that {name}{args:?} = {result}")
}

/// `calculatestar(args)`: `calculate(*args)`, for the one-argument `imap` and `map`.
fn calculatestar(task: Task) -> String {
    calculate(task.0, task.1)
}

/// Python's `random.random()`: a float in [0, 1), here from std's randomly keyed hasher.
fn random() -> f64 {
    (RandomState::new().hash_one(0u8) >> 11) as f64 / (1u64 << 53) as f64
}

fn mul(a: i64, b: i64) -> i64 {
    std::thread::sleep(Duration::from_secs_f64(0.5 * random()));
    a * b
}

fn plus(a: i64, b: i64) -> i64 {
    std::thread::sleep(Duration::from_secs_f64(0.5 * random()));
    a + b
}

/// `1.0 / (x - 5.0)`. Rust's float division by zero gives infinity; Python raises, so this
/// panics as Python's message says.
fn f(x: i64) -> f64 {
    let divisor = x as f64 - 5.0;
    assert!(divisor != 0.0, "float division by zero");
    1.0 / divisor
}

/// Whether `result` failed as `f(5)` does (Python's `except ZeroDivisionError`).
fn is_zero_division<T>(result: &multiprocess::Result<T>) -> bool {
    matches!(result, Err(Error::Panicked { message }) if message.contains("division by zero"))
}

//
// Test code
//

fn test() -> multiprocess::Result<()> {
    const PROCESSES: usize = 4;
    println!("Creating pool with {PROCESSES} processes\n");
    let pool = Pool::new(PROCESSES)?; // `with multiprocessing.Pool(PROCESSES) as pool:`

    //
    // Tests
    //

    let tasks: Vec<Task> = (0..10)
        .map(|i| (Func::Mul, (i, 7)))
        .chain((0..10).map(|i| (Func::Plus, (i, 8))))
        .collect();

    let results = tasks
        .iter()
        .map(|&(func, args)| pool.apply_async(calculate, (func, args)))
        .collect::<multiprocess::Result<Vec<_>>>()?;
    let imap_it = pool.imap(calculatestar, tasks.clone())?;
    let imap_unordered_it = pool.imap_unordered(calculatestar, tasks.clone())?;

    println!("Ordered results using pool.apply_async():");
    for r in results {
        println!("\t {}", r.get()?); // print('\t', x): a tab, then print's space
    }
    println!();

    println!("Ordered results using pool.imap():");
    for x in imap_it {
        println!("\t {}", x?);
    }
    println!();

    println!("Unordered results using pool.imap_unordered():");
    for x in imap_unordered_it {
        println!("\t {}", x?);
    }
    println!();

    println!("Ordered results using pool.map() --- will block till complete:");
    for x in pool.map(calculatestar, tasks.clone())? {
        println!("\t {x}");
    }
    println!();

    //
    // Test error handling
    //

    println!("Testing error handling:");

    let result = pool.apply(f, (5,));
    assert!(is_zero_division(&result), "expected ZeroDivisionError");
    println!("\tGot ZeroDivisionError as expected from pool.apply()");

    let result = pool.map(f, 0..10);
    assert!(is_zero_division(&result), "expected ZeroDivisionError");
    println!("\tGot ZeroDivisionError as expected from pool.map()");

    // `list(pool.imap(...))`: collecting into a `Result` stops at the first error.
    let result: multiprocess::Result<Vec<f64>> = pool.imap(f, 0..10)?.collect();
    assert!(is_zero_division(&result), "expected ZeroDivisionError");
    println!("\tGot ZeroDivisionError as expected from list(pool.imap())");

    // Item by item, only the sixth fails; the others come as usual.
    let mut count = 0;
    for (i, x) in pool.imap(f, 0..10)?.enumerate() {
        assert_eq!(is_zero_division(&x), i == 5, "item {i}: {x:?}");
        count += 1;
    }
    assert_eq!(count, 10);
    println!("\tGot ZeroDivisionError as expected from IMapIterator.next()");
    println!();

    //
    // Testing timeouts
    //

    let a_little = Duration::from_millis(20);
    print!("Testing ApplyResult.get() with timeout: ");
    let (func, args) = tasks[0];
    let res = pool.apply_async(calculate, (func, args))?;
    loop {
        std::io::stdout().flush()?;
        match res.get_timeout(a_little) {
            Ok(x) => {
                print!("\n\t{x}");
                break;
            }
            Err(Error::Timeout) => print!("."),
            Err(e) => return Err(e),
        }
    }
    println!();
    println!();

    print!("Testing IMapIterator.next() with timeout: ");
    let mut it = pool.imap(calculatestar, tasks.clone())?;
    loop {
        std::io::stdout().flush()?;
        match it.next_timeout(a_little) {
            Some(Ok(x)) => print!("\n\t{x}"),
            None => break, // StopIteration
            Some(Err(Error::Timeout)) => print!("."),
            Some(Err(e)) => return Err(e),
        }
    }
    println!();
    println!();
    Ok(()) // the pool is dropped here: terminated, as at the end of Python's `with`
}

fn main() -> multiprocess::Result<()> {
    multiprocess::init(); // `if __name__ == '__main__':` and `freeze_support()`, in one
    test()
}
