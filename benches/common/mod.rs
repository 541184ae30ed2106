//! Helpers shared by the benchmark harnesses: options from the environment, percentiles, how
//! quiet the machine was while we measured, the machine's description, and writing one block of
//! BENCHMARKS.md.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::time::Instant;

pub(crate) fn env_usize(name: &str) -> Result<Option<usize>, String> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .map(Some)
            .map_err(|_| format!("{name}={v:?} is not a number")),
        Err(_) => Ok(None),
    }
}

/// Linear-interpolated percentile of sorted values, as the Python script computes it.
pub(crate) fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = (sorted.len() - 1) as f64 * q / 100.0;
    let lo = pos as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

pub(crate) fn command_line(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

pub(crate) fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "?".into());
    let rustc = command_line("rustc", &["--version"]).unwrap_or_else(|| "rustc ?".into());
    format!("nproc {cpus}; Linux {kernel}; {model}; {rustc}")
}

pub(crate) fn ratio(a: f64, b: Option<f64>) -> String {
    match b {
        Some(b) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "—".into(),
    }
}

/// Replaces the generated block between the markers `begin` and `end` in `path` (or appends
/// one).
pub(crate) fn write_md(path: &Path, begin: &str, end: &str, block: &str) -> Result<(), String> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let new_block = format!("{begin}\n{block}{end}");
    let new = match (old.find(begin), old.find(end)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{new_block}{}", &old[..b], &old[e + end.len()..])
        }
        _ if old.is_empty() => format!("# Benchmarks\n\n{new_block}\n"),
        _ => format!("{}\n\n{new_block}\n", old.trim_end()),
    };
    std::fs::write(path, new).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// CPU seconds spent by the whole machine (busy time over all CPUs) and by this process with its
/// reaped children, so that the difference is what other programs took during the run.
pub(crate) struct CpuUse {
    machine: f64,
    ours: f64,
    at: Instant,
}

impl CpuUse {
    pub(crate) fn now() -> CpuUse {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let machine = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| {
                let line = s.lines().next()?.strip_prefix("cpu ")?.to_owned();
                let f: Vec<f64> = line
                    .split_whitespace()
                    .map(|x| x.parse().unwrap_or(0.0))
                    .collect();
                // user nice system idle iowait irq softirq steal: busy = all but idle, iowait.
                Some(f.iter().take(8).sum::<f64>() - f.get(3)? - f.get(4)?)
            })
            .unwrap_or(0.0)
            / hz;
        let mut ours = 0.0;
        for who in [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN] {
            // SAFETY: getrusage fills the zeroed struct we pass.
            let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
            if unsafe { libc::getrusage(who, &mut ru) } == 0 {
                let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
                ours += tv(ru.ru_utime) + tv(ru.ru_stime);
            }
        }
        CpuUse {
            machine,
            ours,
            at: Instant::now(),
        }
    }

    /// The share of one CPU that other programs used since `self` (0.5 = half a CPU).
    pub(crate) fn others_since(&self) -> f64 {
        let now = CpuUse::now();
        let wall = now.at.duration_since(self.at).as_secs_f64().max(1e-9);
        ((now.machine - self.machine) - (now.ours - self.ours)).max(0.0) / wall
    }
}
