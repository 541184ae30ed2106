//! What the library tells: Python's stderr log (`log_to_stderr`, inherited by children) and
//! `tracing` events with fields.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use multiprocess::log::{Level, get_logger, log_to_stderr};
use multiprocess::{Pool, Process};

fn quick() -> u32 {
    7
}

fn sleeper(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[test]
#[ignore = "scenario: run by log_to_stderr_in_python_format"]
fn scenario_log_to_stderr() {
    multiprocess::init_test();
    if !common::in_scenario() {
        return;
    }
    log_to_stderr(Some(Level::Debug));
    let mut p = Process::new(quick, ()).with_name("Worker-A");
    p.start().unwrap();
    p.join_timeout(Duration::from_secs(30)).unwrap();
    println!("exitcode={:?}", p.exitcode().unwrap());
    get_logger().set_level(Some(Level::Warning));
    let mut q = Process::new(quick, ()).with_name("Worker-B");
    q.start().unwrap();
    q.join_timeout(Duration::from_secs(30)).unwrap();
}

/// `log_to_stderr(DEBUG)` prints Python's `[LEVEL/ProcessName] message` lines: the parent's
/// (started, ended) and the child's (it inherits the level: calling run, exiting with its
/// code); a child started after the level was raised to WARNING prints nothing.
#[test]
fn log_to_stderr_in_python_format() {
    multiprocess::init_test();
    let _g = common::start();
    let out = common::scenario("scenario_log_to_stderr")
        .wait_with_output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("exitcode=Some(0)"), "{stdout}");
    for line in [
        "[INFO/Worker-A] child process calling self.run()",
        "[INFO/Worker-A] process exiting with exitcode 0",
        "[DEBUG/Worker-A] process shutting down",
        "[DEBUG/MainProcess] Worker-A ended with exitcode 0",
    ] {
        assert!(stderr.contains(line), "missing {line:?} in:\n{stderr}");
    }
    assert!(
        stderr.contains("[DEBUG/MainProcess] started Worker-A (pid "),
        "{stderr}"
    );
    assert!(!stderr.contains("Worker-B"), "{stderr}");
}

/// A `tracing` subscriber that keeps each event's level, fields and message.
#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }
}

impl tracing::Subscriber for Collect {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields(format!(
            "{} {}",
            event.metadata().level(),
            event.metadata().target()
        ));
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// With a subscriber installed, the library's events arrive with their fields: a process
/// started and ended (name, pid, exitcode), a pool worker added, and a task past its time
/// limit (a warning naming the task).
#[test]
fn tracing_events_with_fields() {
    multiprocess::init_test();
    let _g = common::start();
    let seen = Collect::default();
    let events = seen.0.clone();
    // Global: the pool reports from its own threads. (The only subscriber of this test binary;
    // scenarios run in processes of their own.)
    tracing::subscriber::set_global_default(seen).unwrap();
    {
        let mut p = Process::new(quick, ()).with_name("traced");
        p.start().unwrap();
        p.join_timeout(Duration::from_secs(30)).unwrap();
        let pool = Pool::builder()
            .processes(1)
            .task_timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        let r = pool.apply_async(sleeper, (5_000,)).unwrap();
        assert!(r.get_timeout(Duration::from_secs(30)).is_err());
        drop(pool);
    }
    let events = events.lock().unwrap().clone();
    let has = |parts: &[&str]| events.iter().any(|e| parts.iter().all(|p| e.contains(p)));
    assert!(
        has(&[
            "DEBUG multiprocess",
            "name=traced",
            "pid=",
            "started traced"
        ]),
        "{events:#?}"
    );
    assert!(
        has(&["DEBUG multiprocess", "name=traced", "exitcode=0"]),
        "{events:#?}"
    );
    assert!(has(&["added pool worker", "worker=1"]), "{events:#?}");
    assert!(
        has(&["WARN multiprocess", "task=", "time limit"]),
        "{events:#?}"
    );
}
