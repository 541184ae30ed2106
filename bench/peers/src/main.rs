//! The comparison rows of benchmark W1 (`benches/w1_process_start.rs`) that need other crates:
//! `procspawn` and `crossmist`, each starting a process that runs an empty function and joining
//! it. W1 builds this program, starts it once and asks for one sample at a time, interleaved
//! with its own rows: each line `procspawn` or `crossmist` on standard input gets back one line
//! on standard output, the microseconds of one start + join timed here, or `error: ` and why.
//! Standard input's end ends the program.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

/// The empty target, as crossmist wants it.
#[crossmist::func]
fn crossmist_empty() {}

fn main() {
    // Each library that re-executes this program detects its child here: procspawn by its
    // __PROCSPAWN_CONTENT_PROCESS_ID variable, crossmist by argv[0] == "_crossmist_".
    procspawn::init();
    crossmist::init();
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let sample = match line.trim() {
            "procspawn" => procspawn_once(),
            "crossmist" => crossmist_once(),
            other => Err(format!("no row named {other:?}")),
        };
        let answer = match sample {
            Ok(d) => format!("{:.3}", d.as_secs_f64() * 1e6),
            Err(e) => format!("error: {}", e.replace('\n', " ")),
        };
        if writeln!(out, "{answer}")
            .and_then(|()| out.flush())
            .is_err()
        {
            break;
        }
    }
}

fn procspawn_once() -> Result<Duration, String> {
    let t = Instant::now();
    let handle = procspawn::spawn((), |()| ());
    handle.join().map_err(|e| e.to_string())?;
    Ok(t.elapsed())
}

/// crossmist, with a panic inside it turned into an error: crossmist 1.1.2 panics on toolchains
/// where `[T; 1]::clone` no longer skips `Clone::clone` for `Copy` types, which its
/// `implements!` trait probe relies on (see BENCHMARKS.md).
fn crossmist_once() -> Result<Duration, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = std::panic::catch_unwind(|| {
        let t = Instant::now();
        let child = crossmist_empty.spawn().map_err(|e| e.to_string())?;
        child.join().map_err(|e| e.to_string())?;
        Ok(t.elapsed())
    });
    std::panic::set_hook(hook);
    outcome.unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a non-string panic".into());
        Err(format!("crossmist panicked in spawn: {message}"))
    })
}
