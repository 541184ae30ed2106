//! A `Pool` whose workers are MPI ranks (cargo feature `mpi`): run it with
//!
//! ```text
//! cargo build --release --features mpi --example cluster_map
//! mpirun -n 3 target/release/examples/cluster_map    # SPMD: ranks 1 and 2 serve
//! target/release/examples/cluster_map                # spawn mode: it spawns its workers
//! ```
//!
//! Rank 0 runs `main`; `multiprocess::init()` makes the other ranks (or, in spawn mode, the
//! processes the pool spawns) serve the pool's workers. It prints which host and rank served
//! each chunk of a map (in spawn mode, the rank within the spawned group), then checks the
//! results.
//! `cluster_map N MS` maps N items of MS milliseconds each, one a chunk (for trying what a lost
//! host does: see `.ci/mpi-hosts.sh`).

use std::collections::BTreeMap;

/// The work: x·x, and who did it, after `ms` milliseconds.
fn square_where(x: u64, ms: u64) -> (u64, String) {
    std::thread::sleep(std::time::Duration::from_millis(ms));
    let rank = std::env::var("OMPI_COMM_WORLD_RANK")
        .or_else(|_| std::env::var("PMI_RANK"))
        .or_else(|_| std::env::var("PMIX_RANK"))
        .unwrap_or_else(|_| "?".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "?".into());
    (x.wrapping_mul(x), format!("{host} rank {rank}"))
}

fn main() -> multiprocess::Result<()> {
    multiprocess::init();
    let pool = multiprocess::Pool::builder().mpi().build()?;
    println!("a pool whose workers are MPI ranks (this job's others, or spawned ones)");
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<u64>().unwrap_or(0));
    let n = args.next().unwrap_or(1000).max(1);
    let ms = args.next().unwrap_or(0);
    let chunk = if ms > 0 { 1 } else { n.div_ceil(10) };
    let started = std::time::Instant::now();
    let results = pool.starmap_chunked(square_where, (0..n).map(|x| (x, ms)), chunk as usize)?;
    let mut served: BTreeMap<String, usize> = BTreeMap::new();
    for (x, (square, by)) in (0..n).zip(&results) {
        assert_eq!(*square, x * x, "a wrong square for {x}");
        *served.entry(by.clone()).or_default() += 1;
    }
    for (by, items) in &served {
        println!("{by} served {items} items");
    }
    println!("map of {n} items took {:?}", started.elapsed());
    println!("{n} squares, all right");
    pool.close();
    pool.join()?;
    Ok(())
}
