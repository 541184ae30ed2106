//! A `Pool` whose workers are the ranks of an MPI job (cargo feature `mpi`): run it with
//!
//! ```text
//! cargo build --release --features mpi --example cluster_map
//! mpirun -n 3 target/release/examples/cluster_map
//! ```
//!
//! Rank 0 runs `main`; `multiprocess::init()` makes ranks 1 and 2 serve the pool's workers. It
//! prints which host and rank served each chunk of a map, then checks the results.

use std::collections::BTreeMap;

/// The work: x·x, and who did it.
fn square_where(x: u64) -> (u64, String) {
    let rank = std::env::var("OMPI_COMM_WORLD_RANK")
        .or_else(|_| std::env::var("PMI_RANK"))
        .unwrap_or_else(|_| "?".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "?".into());
    (x.wrapping_mul(x), format!("{host} rank {rank}"))
}

fn main() -> multiprocess::Result<()> {
    multiprocess::init();
    let pool = multiprocess::Pool::builder().mpi().build()?;
    println!("a pool whose workers are the other ranks of this MPI job");
    let n = 1000u64;
    let results = pool.map(square_where, 0..n, Some(100))?;
    let mut served: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (x, (square, by)) in (0..n).zip(&results) {
        assert_eq!(*square, x * x, "a wrong square for {x}");
        if x % 100 == 0 {
            served.entry(by.clone()).or_default().push(x / 100);
        }
    }
    for (by, chunks) in &served {
        println!("{by} served chunks {chunks:?}");
    }
    println!("{n} squares, all right");
    pool.close();
    pool.join()?;
    Ok(())
}
