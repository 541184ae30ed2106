//! CPython's `multiprocessing` docs, "Examples": "how to use queues to feed tasks to a
//! collection of worker processes and collect the results" (`Doc/includes/mp_workers.py`).
//!
//! ```python
//! import time
//! import random
//!
//! from multiprocessing import Process, Queue, current_process, freeze_support
//!
//! #
//! # Function run by worker processes
//! #
//!
//! def worker(input, output):
//!     for func, args in iter(input.get, 'STOP'):
//!         result = calculate(func, args)
//!         output.put(result)
//!
//! #
//! # Function used to calculate result
//! #
//!
//! def calculate(func, args):
//!     result = func(*args)
//!     return '%s says that %s%s = %s' % \
//!         (current_process().name, func.__name__, args, result)
//!
//! #
//! # Functions referenced by tasks
//! #
//!
//! def mul(a, b):
//!     time.sleep(0.5*random.random())
//!     return a * b
//!
//! def plus(a, b):
//!     time.sleep(0.5*random.random())
//!     return a + b
//!
//! #
//! #
//! #
//!
//! def test():
//!     NUMBER_OF_PROCESSES = 4
//!     TASKS1 = [(mul, (i, 7)) for i in range(20)]
//!     TASKS2 = [(plus, (i, 8)) for i in range(10)]
//!
//!     # Create queues
//!     task_queue = Queue()
//!     done_queue = Queue()
//!
//!     # Submit tasks
//!     for task in TASKS1:
//!         task_queue.put(task)
//!
//!     # Start worker processes
//!     for i in range(NUMBER_OF_PROCESSES):
//!         Process(target=worker, args=(task_queue, done_queue)).start()
//!
//!     # Get and print results
//!     print('Unordered results:')
//!     for i in range(len(TASKS1)):
//!         print('\t', done_queue.get())
//!
//!     # Add more tasks using `put()`
//!     for task in TASKS2:
//!         task_queue.put(task)
//!
//!     # Get and print some more results
//!     for i in range(len(TASKS2)):
//!         print('\t', done_queue.get())
//!
//!     # Tell child processes to stop
//!     for i in range(NUMBER_OF_PROCESSES):
//!         task_queue.put('STOP')
//!
//!
//! if __name__ == '__main__':
//!     freeze_support()
//!     test()
//! ```
//!
//! Python puts functions on the queue; Rust sends data, so a task names its function with an
//! enum, and the `'STOP'` sentinel is a variant of the task type.
//!
//! Run with `cargo run --example docs_worker_queues`.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use multiprocess::{Process, Queue};
use serde::{Deserialize, Serialize};

/// The functions a task can ask for.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
enum Func {
    Mul,
    Plus,
}

/// What goes on the task queue.
#[derive(Debug, Serialize, Deserialize)]
enum Task {
    Call(Func, (i64, i64)),
    Stop,
}

//
// Function run by worker processes
//

fn worker(input: Queue<Task>, output: Queue<String>) {
    // Python's `iter(input.get, 'STOP')`: take tasks until the sentinel.
    while let Task::Call(func, args) = input.get().expect("get a task") {
        let result = calculate(func, args);
        output.put(&result).expect("put a result");
    }
}

//
// Function used to calculate result
//

fn calculate(func: Func, args: (i64, i64)) -> String {
    let (name, result) = match func {
        Func::Mul => ("mul", mul(args.0, args.1)),
        Func::Plus => ("plus", plus(args.0, args.1)),
    };
    // `{:?}` of a tuple prints `(3, 7)`, as Python's `%s` of one does.
    let me = multiprocess::current_process().name();
    format!("{me} says that {name}{args:?} = {result}")
}

//
// Functions referenced by tasks
//

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

//
//
//

fn test() -> multiprocess::Result<()> {
    const NUMBER_OF_PROCESSES: usize = 4;
    let tasks1: Vec<Task> = (0..20).map(|i| Task::Call(Func::Mul, (i, 7))).collect();
    let tasks2: Vec<Task> = (0..10).map(|i| Task::Call(Func::Plus, (i, 8))).collect();

    // Create queues
    let task_queue = Queue::new()?;
    let done_queue = Queue::<String>::new()?;

    // Submit tasks
    for task in &tasks1 {
        task_queue.put(task)?;
    }

    // Start worker processes (joined when main returns, as Python joins them at exit)
    for _ in 0..NUMBER_OF_PROCESSES {
        Process::new(worker, (task_queue.clone(), done_queue.clone())).start()?;
    }

    // Get and print results
    println!("Unordered results:");
    for _ in 0..tasks1.len() {
        println!("\t {}", done_queue.get()?); // print('\t', x): a tab, then print's space
    }

    // Add more tasks using `put()`
    for task in &tasks2 {
        task_queue.put(task)?;
    }

    // Get and print some more results
    for _ in 0..tasks2.len() {
        println!("\t {}", done_queue.get()?);
    }

    // Tell child processes to stop
    for _ in 0..NUMBER_OF_PROCESSES {
        task_queue.put(&Task::Stop)?;
    }
    Ok(())
}

fn main() -> multiprocess::Result<()> {
    multiprocess::init(); // `if __name__ == '__main__':` and `freeze_support()`, in one
    test()
}
