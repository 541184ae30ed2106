//! Benchmark W12: the async 8-byte round trip over a `Connection` (cargo feature `tokio`)
//! against the blocking one (Linux only; elsewhere the binary says so and exits).
//!
//! One echo child (spawned, blocking `recv_bytes`/`send_bytes`) serves both rows. A sample is a
//! batch of round trips and its value the batch's mean time per round trip; the rows' batches
//! alternate, so drift hits both alike. Rows: blocking `send_bytes` + `recv_bytes`; the same
//! with `send_bytes_async` + `recv_bytes_async` awaited on a current-thread tokio runtime.
//! Prints median, p10 and p90 in microseconds and the async/blocking ratio of the medians
//! (issue 18's target: at most 1.3×). Unpinned (the scheduler's placement).
//!
//! ```text
//! cargo bench --features tokio --bench w12_async                 # 20 batches × 2000
//! W12_BATCHES=10 W12_BATCH_SIZE=500 cargo bench --features tokio --bench w12_async
//! ```

fn main() {
    // The spawned echo child runs its target inside init() and exits there.
    multiprocess::init();
    #[cfg(target_os = "linux")]
    w12::main();
    #[cfg(not(target_os = "linux"))]
    eprintln!("w12: this benchmark runs on Linux only");
}

#[cfg(target_os = "linux")]
mod w12 {
    use std::time::Instant;

    use multiprocess::{Connection, Process, pipe};

    fn env(name: &str, default: usize) -> usize {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    /// Echoes every message until end of file.
    fn echo(conn: Connection) {
        while let Ok(m) = conn.recv_bytes() {
            if conn.send_bytes(&m).is_err() {
                break;
            }
        }
    }

    fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        (at(0.5), at(0.1), at(0.9))
    }

    pub fn main() {
        let batches = env("W12_BATCHES", 20);
        let size = env("W12_BATCH_SIZE", 2000);
        let (ours, theirs) = pipe().expect("pipe");
        let mut child = Process::new(echo, (theirs,));
        child.start().expect("start the echo child");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let msg = 0x0123_4567_89ab_cdefu64.to_le_bytes();
        // Warm-up of both paths.
        for _ in 0..size / 4 {
            ours.send_bytes(&msg).unwrap();
            ours.recv_bytes().unwrap();
        }
        rt.block_on(async {
            for _ in 0..size / 4 {
                ours.send_bytes_async(&msg).await.unwrap();
                ours.recv_bytes_async(None).await.unwrap();
            }
        });
        let (mut blocking, mut asynchronous) = (Vec::new(), Vec::new());
        for _ in 0..batches {
            let t = Instant::now();
            for _ in 0..size {
                ours.send_bytes(&msg).unwrap();
                assert_eq!(ours.recv_bytes().unwrap(), msg);
            }
            blocking.push(t.elapsed().as_secs_f64() * 1e6 / size as f64);
            let t = Instant::now();
            rt.block_on(async {
                for _ in 0..size {
                    ours.send_bytes_async(&msg).await.unwrap();
                    assert_eq!(ours.recv_bytes_async(None).await.unwrap(), msg);
                }
            });
            asynchronous.push(t.elapsed().as_secs_f64() * 1e6 / size as f64);
        }
        drop(ours);
        child.join().expect("join the echo child");
        let (b, a) = (stats(blocking), stats(asynchronous));
        println!("W12: 8-byte round trip with a spawned echo child, {batches} batches x {size}");
        println!("| row | median µs | p10 | p90 |");
        println!("|---|---|---|---|");
        println!(
            "| blocking send_bytes + recv_bytes | {:.2} | {:.2} | {:.2} |",
            b.0, b.1, b.2
        );
        println!(
            "| async send_bytes_async + recv_bytes_async (current-thread tokio) | {:.2} | {:.2} | {:.2} |",
            a.0, a.1, a.2
        );
        println!("async / blocking (medians): {:.2}x", a.0 / b.0);
    }
}
