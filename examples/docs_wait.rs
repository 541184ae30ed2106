//! CPython's `multiprocessing` docs, "Listeners and Clients", the `wait()` example: four
//! children each send ten messages down their own pipe; the parent waits on all the pipes at
//! once and prints what comes, until every pipe is closed.
//!
//! ```python
//! import time, random
//! from multiprocessing import Process, Pipe, current_process
//! from multiprocessing.connection import wait
//!
//! def foo(w):
//!     for i in range(10):
//!         w.send((i, current_process().name))
//!     w.close()
//!
//! if __name__ == '__main__':
//!     readers = []
//!
//!     for i in range(4):
//!         r, w = Pipe(duplex=False)
//!         readers.append(r)
//!         p = Process(target=foo, args=(w,))
//!         p.start()
//!         # We close the writable end of the pipe now to be sure that
//!         # p is the only process which owns a handle for it.  This
//!         # ensures that when p closes its handle for the writable end,
//!         # wait() will promptly report the readable end as being ready.
//!         w.close()
//!
//!     while readers:
//!         for r in wait(readers):
//!             try:
//!                 msg = r.recv()
//!             except EOFError:
//!                 readers.remove(r)
//!             else:
//!                 print(msg)
//! ```
//!
//! The messages of different children come in any order.
//!
//! Run with `cargo run --example docs_wait`.

use multiprocess::{Connection, Error, Process, Waitable};

/// The child's work: ten messages, then close its end.
fn foo(mut w: Connection) {
    for i in 0..10u32 {
        // the receiver decodes a (u32, String): send exactly that type
        w.send(&(i, multiprocess::current_process().name()))
            .expect("send");
    }
    w.close();
}

fn main() -> multiprocess::Result<()> {
    multiprocess::init(); // `if __name__ == '__main__':` — the first line of main
    let mut readers = Vec::new();

    for _ in 0..4 {
        let (r, w) = multiprocess::pipe_one_way()?; // (read end, write end)
        readers.push(r);
        // The write end moves into the Process: once the child has started, the parent's
        // copy is closed (Python's `w.close()` here), so that when the child closes its end,
        // wait() reports the read end as ready (at end of file).
        Process::new(foo, (w,)).start()?;
    }

    while !readers.is_empty() {
        let waitables: Vec<&dyn Waitable> = readers.iter().map(|r| r as &dyn Waitable).collect();
        let ready = multiprocess::wait(&waitables, None)?; // indices of the ready ones
        let mut finished = Vec::new();
        for i in ready {
            match readers[i].recv::<(u32, String)>() {
                Ok((n, name)) => println!("({n}, '{name}')"), // a tuple, as Python prints it
                Err(Error::Eof) => finished.push(i),
                Err(e) => return Err(e),
            }
        }
        // readers.remove(r), highest index first so the others stay valid
        for i in finished.into_iter().rev() {
            readers.remove(i);
        }
    }
    Ok(())
}
