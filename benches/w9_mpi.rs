//! Benchmark W9: a `Pool` over MPI ranks (cargo feature `mpi`; Linux, with Open MPI and
//! `mpi4py` installed), on this machine.
//!
//! ```text
//! cargo bench --features mpi --bench w9_mpi            # writes BENCHMARKS.md's W9 block
//! cargo bench --features mpi --bench w9_mpi -- --no-write --no-python
//! ```
//!
//! Run by cargo, the binary is the driver: it runs itself under `mpirun -n 3` (rank 0 measures,
//! ranks 1 and 2 are the pool's workers), then CPython's counterpart under `mpirun -n 3 python3
//! -m mpi4py.futures bench/python/w9_mpi.py`, and writes the table. The rows:
//!
//! - map x → x·x over 1,000,000 `u64` (default chunks: Python's, 125,000 for 2 workers) on a
//!   `Pool::builder().mpi()` of 2 ranks; the same on a local `Pool::new(2)` (spawn, in rank 0);
//!   and mpi4py.futures' `MPIPoolExecutor().map(square, range(N), chunksize=N/8)` on 2 ranks;
//!   a sample is one whole map (results checked), its value items per second;
//! - CPU-bound: W7's task (splitmix64 steps calibrated to ~1 ms here), 1,500 of them, mapped on
//!   an MPI pool of 1 rank and of 2 ranks (the ranks' time, no other work); a sample's value is
//!   the map's time in seconds.
//!
//! Targets (issue 15): ≥ 10× mpi4py.futures' throughput; ≥ 0.5× the local Pool's; CPU-bound
//! speedup from 1 to 2 ranks ≥ 1.9×.

fn main() {
    multiprocess::init(); // under mpirun: ranks other than 0 serve from here
    #[cfg(all(target_os = "linux", feature = "mpi"))]
    w9::main();
    #[cfg(not(all(target_os = "linux", feature = "mpi")))]
    eprintln!("w9: run with --features mpi, on Linux");
}

/// The map's work.
pub fn square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

#[cfg(all(target_os = "linux", feature = "mpi"))]
mod common;

#[cfg(all(target_os = "linux", feature = "mpi"))]
mod w9 {
    use super::common::{
        CpuUse, Stats, burn, calibrate, command_line, disturbance_line, machine, ratio, write_md,
    };
    use super::square;
    use multiprocess::Pool;
    use std::path::Path;
    use std::process::Command;
    use std::time::{Duration, Instant};

    const ITEMS: u64 = 1_000_000;
    const BURN_TASKS: u64 = 1500;
    const BEGIN: &str = "<!-- w9:begin -->";
    const END: &str = "<!-- w9:end -->";

    pub(crate) fn main() {
        let under_mpi = std::env::var_os("OMPI_COMM_WORLD_SIZE").is_some();
        let result = if under_mpi { measure() } else { drive() };
        if let Err(e) = result {
            eprintln!("w9: {e}");
            std::process::exit(1);
        }
    }

    // -------------------------------------------------------------------------------------------
    // Rank 0 under mpirun: the measurements, printed as one JSON line.

    fn measure() -> Result<(), String> {
        let e = |e: multiprocess::Error| e.to_string();
        let batches: usize = std::env::var("W9_BATCHES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20);
        let mpi = Pool::builder().mpi().processes(2).build().map_err(e)?;
        let local = Pool::new(2).map_err(e)?;
        let want_last = square(ITEMS - 1);
        let map_rate = |pool: &Pool| -> Result<f64, String> {
            let t = Instant::now();
            let out: Vec<u64> = pool.map(square, 0..ITEMS).map_err(e)?;
            let d = t.elapsed();
            if out.len() != ITEMS as usize || out[out.len() - 1] != want_last {
                return Err("wrong results".into());
            }
            Ok(ITEMS as f64 / d.as_secs_f64())
        };
        let (mut mpi_rates, mut local_rates) = (Vec::new(), Vec::new());
        map_rate(&mpi)?;
        map_rate(&local)?;
        for _ in 0..batches {
            mpi_rates.push(map_rate(&mpi)?);
            local_rates.push(map_rate(&local)?);
        }
        local.close();
        local.join().map_err(e)?;
        mpi.close();
        mpi.join().map_err(e)?;

        let iters = calibrate(Duration::from_millis(1));
        let tasks: Vec<(u64, u64)> = (0..BURN_TASKS).map(|i| (i, iters)).collect();
        let one = Pool::builder().mpi().processes(1).build().map_err(e)?;
        let burn_time = |pool: &Pool| -> Result<f64, String> {
            let t = Instant::now();
            let out: Vec<u64> = pool.map(burn, tasks.iter().copied()).map_err(e)?;
            if out.len() != tasks.len() {
                return Err("wrong results".into());
            }
            Ok(t.elapsed().as_secs_f64())
        };
        let (mut t1, mut t2) = (Vec::new(), Vec::new());
        burn_time(&one)?;
        for _ in 0..(batches / 4).max(3) {
            t1.push(burn_time(&one)?);
        }
        one.close();
        one.join().map_err(e)?;
        let two = Pool::builder().mpi().processes(2).build().map_err(e)?;
        burn_time(&two)?;
        for _ in 0..(batches / 4).max(3) {
            t2.push(burn_time(&two)?);
        }
        two.close();
        two.join().map_err(e)?;
        let json = serde_json::json!({
            "mpi_map": mpi_rates, "local_map": local_rates,
            "burn1": t1, "burn2": t2, "iters": iters,
        });
        println!("W9JSON {json}");
        Ok(())
    }

    // -------------------------------------------------------------------------------------------
    // The driver

    fn mpirun() -> Vec<String> {
        [
            "mpirun",
            "--oversubscribe",
            "--allow-run-as-root",
            "-n",
            "3",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// Runs `args` under mpirun; its stdout.
    fn run_mpi(args: &[String]) -> Result<String, String> {
        let mut cmd = Command::new("timeout");
        cmd.arg("-s")
            .arg("KILL")
            .arg("900")
            .args(mpirun())
            .args(args);
        let out = cmd.output().map_err(|e| format!("running mpirun: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mpirun {args:?}: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn drive() -> Result<(), String> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let no_python = args.iter().any(|a| a == "--no-python");
        let no_write = args.iter().any(|a| a == "--no-write");
        let cpu = CpuUse::now();
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let ours = run_mpi(&[exe.display().to_string()])?;
        let line = ours
            .lines()
            .find_map(|l| l.strip_prefix("W9JSON "))
            .ok_or("no measurements from rank 0")?;
        let j: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let others = cpu.others_since();
        let series = |k: &str| -> Vec<f64> {
            j[k].as_array()
                .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
                .unwrap_or_default()
        };
        let mpi = Stats::of(&series("mpi_map")).ok_or("no samples")?;
        let local = Stats::of(&series("local_map")).ok_or("no samples")?;
        let b1 = Stats::of(&series("burn1")).ok_or("no samples")?;
        let b2 = Stats::of(&series("burn2")).ok_or("no samples")?;
        let (py, py_label) = if no_python {
            (None, String::new())
        } else {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            let script = root.join("bench/python/w9_mpi.py");
            let out = run_mpi(&[
                "python3".into(),
                "-m".into(),
                "mpi4py.futures".into(),
                script.display().to_string(),
            ])?;
            let pj: serde_json::Value = out
                .lines()
                .find_map(|l| serde_json::from_str(l).ok())
                .ok_or("no JSON from the CPython script")?;
            let s = Stats::from_json(&pj["results"]["ppe_mpi_map"], "_ips");
            let label = format!(
                "CPython {} + mpi4py {} `MPIPoolExecutor().map(square, range(1,000,000), chunksize=125,000)` (SPMD: `mpirun -n 3 python3 -m mpi4py.futures`)",
                pj["python"].as_str().unwrap_or("?"),
                pj["mpi4py"].as_str().unwrap_or("?")
            );
            (s, label)
        };
        let k = |v: f64| format!("{:.0}", v / 1000.0);
        let mut md = String::from(
            "## W9: a Pool over MPI ranks (1 host: `mpirun -n 3`, 2 worker ranks)\n\n",
        );
        md += "- Command: `cargo bench --features mpi --bench w9_mpi`\n";
        md += &format!("- Machine: {}\n", machine());
        md += &format!(
            "- MPI: {}\n",
            command_line("mpirun", &["--version"])
                .and_then(|v| v.lines().next().map(str::to_owned))
                .unwrap_or_else(|| "?".into())
        );
        md += &disturbance_line(others);
        md += &format!(
            "- Each row: 1 warmup + samples as listed; a map sample is one whole `map` (results checked), items/s = items ÷ its time; CPU-bound: {BURN_TASKS} tasks of {} splitmix64 steps (~1 ms here), a sample is the map's time\n\n",
            j["iters"]
        );
        md += "| row | median k items/s | p10 | p90 | samples | × mpi4py.futures | ÷ local Pool |\n|---|---:|---:|---:|---:|---:|---:|\n";
        let py_median = py.as_ref().map(|s| s.median);
        md += &format!(
            "| multiprocess `Pool::builder().mpi().processes(2)`, `map(square, 0..1,000,000)` | {} | {} | {} | {} | {} | {} |\n",
            k(mpi.median),
            k(mpi.p10),
            k(mpi.p90),
            mpi.n,
            ratio(mpi.median, py_median),
            ratio(mpi.median, Some(local.median))
        );
        md += &format!(
            "| multiprocess `Pool::new(2)` (local, spawn), the same map | {} | {} | {} | {} | {} | 1.00× |\n",
            k(local.median),
            k(local.p10),
            k(local.p90),
            local.n,
            ratio(local.median, py_median)
        );
        if let Some(p) = &py {
            md += &format!(
                "| {py_label} | {} | {} | {} | {} | 1.00× | {} |\n",
                k(p.median),
                k(p.p10),
                k(p.p90),
                p.n,
                ratio(p.median, Some(local.median))
            );
        }
        md += "\n| CPU-bound map | median s | p10 | p90 | samples | speedup |\n|---|---:|---:|---:|---:|---:|\n";
        md += &format!(
            "| MPI pool of 1 rank | {:.3} | {:.3} | {:.3} | {} | |\n",
            b1.median, b1.p10, b1.p90, b1.n
        );
        md += &format!(
            "| MPI pool of 2 ranks | {:.3} | {:.3} | {:.3} | {} | {:.2}× |\n\n",
            b2.median,
            b2.p10,
            b2.p90,
            b2.n,
            b1.median / b2.median
        );
        let verdict = |ok: bool| if ok { "**met**" } else { "**not met**" };
        md += "| target (issue 15) | measured | verdict |\n|---|---|---|\n";
        if let Some(p) = py_median {
            md += &format!(
                "| ≥ 10× mpi4py.futures' throughput | {} / {} k items/s = {:.1}× | {} |\n",
                k(mpi.median),
                k(p),
                mpi.median / p,
                verdict(mpi.median / p >= 10.0)
            );
        }
        md += &format!(
            "| ≥ 0.5× the local Pool's throughput | {} / {} k items/s = {:.2}× | {} |\n",
            k(mpi.median),
            k(local.median),
            mpi.median / local.median,
            verdict(mpi.median / local.median >= 0.5)
        );
        md += &format!(
            "| CPU-bound speedup 1 → 2 ranks ≥ 1.9× | {:.3} / {:.3} s = {:.2}× | {} |\n",
            b1.median,
            b2.median,
            b1.median / b2.median,
            verdict(b1.median / b2.median >= 1.9)
        );
        println!("{md}");
        if !no_write {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
            write_md(&path, BEGIN, END, &md)?;
            eprintln!("w9: wrote the W9 block into {}", path.display());
        }
        Ok(())
    }
}
