//! Shared test helpers: serialisation of process tests and the leak check every test ends with.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Held by every test that starts processes: they run one at a time, so that counting this
/// process's descriptors and children before and after a test is meaningful.
static SERIAL: Mutex<()> = Mutex::new(());

/// What a test started with; checked when it ends.
pub struct Guard {
    fds: BTreeSet<String>,
    _lock: MutexGuard<'static, ()>,
}

/// Starts a leak-checked test: `let _g = common::start();` right after
/// `multiprocess::init_test()`.
///
/// The test process becomes a child subreaper, so anything our children leave behind (orphaned
/// grandchildren) is reparented to us and shows up in the end-of-test check.
pub fn start() -> Guard {
    let lock = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    Guard {
        fds: open_fds(),
        _lock: lock,
    }
}

impl Drop for Guard {
    /// Checks that no child, zombie, orphan or descriptor is left (waiting a little for
    /// processes that are already ending); kills and reaps leftovers before failing. Declared
    /// first in a test, the guard is dropped last, after the test's `Process` values.
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut left = children_of_self();
        while !left.is_empty() && Instant::now() < deadline && !std::thread::panicking() {
            std::thread::sleep(Duration::from_millis(20));
            left = children_of_self();
        }
        for &(pid, _) in &left {
            kill_and_reap(pid);
        }
        if std::thread::panicking() {
            return;
        }
        assert!(
            left.is_empty(),
            "processes left behind (pid, state): {left:?}"
        );
        let fds = open_fds();
        let leaked: Vec<_> = fds
            .difference(&self.fds)
            .map(|fd| describe_fd(fd))
            .collect();
        assert!(leaked.is_empty(), "descriptors leaked: {leaked:?}");
    }
}

fn open_fds() -> BTreeSet<String> {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect()
}

fn describe_fd(fd: &str) -> String {
    let target = std::fs::read_link(format!("/proc/self/fd/{fd}"));
    format!(
        "{fd} -> {}",
        target.map_or_else(|_| "?".into(), |p| p.display().to_string())
    )
}

/// Processes whose parent is this process: (pid, state letter).
pub fn children_of_self() -> Vec<(u32, char)> {
    let me = std::process::id();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Some((ppid, state)) = stat(pid) {
            if ppid == me {
                out.push((pid, state));
            }
        }
    }
    out
}

/// (ppid, state) of a process, if it exists.
pub fn stat(pid: u32) -> Option<(u32, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((ppid, state))
}

/// True if `pid` exists and is not a zombie.
pub fn running(pid: u32) -> bool {
    matches!(stat(pid), Some((_, s)) if s != 'Z')
}

/// Waits until `pid` is gone or a zombie, up to `timeout`; true if it ended.
pub fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while running(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// SIGKILLs `pid` and, if it is our child (an orphan reparented to us), reaps it.
pub fn kill_and_reap(pid: u32) {
    // SAFETY: plain syscalls; a pid that is not ours makes them fail harmlessly.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
        if stat(pid).is_some_and(|(ppid, _)| ppid == std::process::id()) {
            libc::waitpid(pid as i32, std::ptr::null_mut(), 0);
        }
    }
}

/// Reaps `pid` (an orphan reparented to us) once it ends, waiting up to `timeout`.
pub fn reap_orphan(pid: u32, timeout: Duration) {
    assert!(wait_gone(pid, timeout), "pid {pid} still running");
    // SAFETY: waitpid on a specific pid that was reparented to us.
    unsafe { libc::waitpid(pid as i32, std::ptr::null_mut(), libc::WNOHANG) };
}

/// A fresh scratch file path for side-channel messages between test processes.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("multiprocess-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

/// Reads a scratch file, waiting until it has at least `lines` lines.
pub fn read_lines(path: &std::path::Path, lines: usize, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let got: Vec<String> = text.lines().map(str::to_owned).collect();
        if got.len() >= lines || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Appends a line to a scratch file.
pub fn append_line(path: &std::path::Path, line: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open");
    // One write, so that lines appended by several processes never interleave.
    f.write_all(format!("{line}\n").as_bytes()).expect("write");
}

/// Runs the `#[ignore]`d scenario test `name` of this test binary as a separate program (it
/// plays a whole program's `main`), returning the child handle with piped stdout and stderr.
pub fn scenario(name: &str) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().expect("current_exe"))
        .args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env("MULTIPROCESS_SCENARIO", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run scenario")
}

/// True inside a scenario run (see [`scenario`]); scenario tests do nothing otherwise.
pub fn in_scenario() -> bool {
    std::env::var_os("MULTIPROCESS_SCENARIO").is_some()
}
