//! The examples of CPython's `multiprocessing` documentation, ported as `examples/docs_*.rs`:
//! each runs (built by a plain `cargo test`; `cargo test --test docs_examples` alone does not
//! rebuild them: run `cargo build --examples` first) and must print what CPython's original prints. The
//! originals are `tests/docs_examples/*.py`; where `python3` is installed each is run too and
//! the two outputs are compared after normalising what differs from run to run (pids,
//! addresses, which worker did what, the order of lines that come in any order, the number of
//! timeout dots): each test says what it normalises and why. Without `python3` the Rust side
//! is still checked against the output the docs give.
//!
//! Every program runs under a hard time limit. The leak guard (this process is a subreaper on
//! Linux) checks that no example leaves a process or descriptor behind; processes the Python
//! originals leave to us (orphans reparented to this process) are reaped, not counted.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What a program printed, and how it ended.
struct Run {
    status: ExitStatus,
    stdout: Vec<String>,
    stderr: String,
}

/// Runs `cmd` with its output captured; kills it and fails the test after `limit`.
fn run_limited(mut cmd: Command, limit: Duration) -> Run {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {what}: {e}"));
    let reader = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = reader(Box::new(child.stdout.take().expect("stdout")));
    let err = reader(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait().expect("try_wait") {
            Some(status) => break status,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what} still running after {limit:?}: killed");
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let stdout = out.join().expect("stdout reader");
    Run {
        status,
        stdout: stdout.lines().map(str::to_owned).collect(),
        stderr: err.join().expect("stderr reader"),
    }
}

/// The built `examples/<name>`.
fn example_path(name: &str) -> PathBuf {
    let mut path = std::env::current_exe().expect("current_exe");
    path.pop(); // deps/
    if path.ends_with("deps") {
        path.pop();
    }
    path.join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Waits up to 5 s for this process to have no children left (an example's helpers, such as
/// the shared-memory resource tracker, end just after it); fails if some remain.
fn assert_no_children(who: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut left = common::children_of_self();
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        left = common::children_of_self();
    }
    assert!(left.is_empty(), "{who} left processes behind: {left:?}");
}

/// Reaps the processes the Python original left to us (its resource tracker, orphaned when
/// Python exits, is reparented to this subreaper).
fn reap_python_orphans() {
    for (pid, _) in common::children_of_self() {
        common::reap_orphan(pid, Duration::from_secs(10));
    }
}

/// The first ```` ```python ```` block of an example's header comment.
fn header_python(name: &str) -> String {
    let source = std::fs::read_to_string(manifest_dir().join(format!("examples/{name}.rs")))
        .expect("read the example");
    let mut lines = source.lines().skip_while(|l| *l != "//! ```python").skip(1);
    let mut out = String::new();
    for line in lines.by_ref().take_while(|l| *l != "//! ```") {
        let line = line.strip_prefix("//!").expect("a header line");
        out.push_str(line.strip_prefix(' ').unwrap_or(line));
        out.push('\n');
    }
    out
}

/// How a port is checked.
struct Check {
    name: &'static str,
    /// The exit code both programs end with.
    code: i32,
    /// True when the example's header quotes the Python original exactly (the test checks that
    /// it does).
    header_is_original: bool,
    /// Makes the two outputs comparable.
    normalise: fn(Vec<String>) -> Vec<String>,
    limit: Duration,
}

impl Check {
    fn new(name: &'static str) -> Check {
        Check {
            name,
            code: 0,
            header_is_original: true,
            normalise: |lines| lines,
            limit: Duration::from_secs(30),
        }
    }

    /// Runs the example and, with `python3`, the original; asserts both end with `code` and
    /// print the same after normalising. Returns the example's normalised output.
    fn run(self) -> Vec<String> {
        let py_file = manifest_dir().join(format!("tests/docs_examples/{}.py", self.name));
        let original = std::fs::read_to_string(&py_file).expect("read the Python original");
        if self.header_is_original {
            assert_eq!(
                header_python(self.name),
                original,
                "the header of examples/{}.rs quotes {}",
                self.name,
                py_file.display()
            );
        }
        let _g = common::start();

        let rust = run_limited(Command::new(example_path(self.name)), self.limit);
        assert_no_children(self.name);
        assert_eq!(
            rust.status.code(),
            Some(self.code),
            "{}: {}\nstdout: {:?}\nstderr: {}",
            self.name,
            rust.status,
            rust.stdout,
            rust.stderr
        );
        let ours = (self.normalise)(rust.stdout);
        assert!(!ours.is_empty(), "{} printed nothing", self.name);

        // `-u`: unbuffered, so that the lines of the parent and of its children come in the
        // order they were printed, as Rust's line-buffered stdout gives them.
        let mut python = Command::new("python3");
        python.arg("-u").arg(&py_file).current_dir(manifest_dir());
        if Command::new("python3").arg("--version").output().is_err() {
            eprintln!("python3 not found: {} checked without CPython", self.name);
            return ours;
        }
        let py = run_limited(python, self.limit * 2);
        reap_python_orphans();
        assert_eq!(
            py.status.code(),
            Some(self.code),
            "CPython's {}: {}\nstdout: {:?}\nstderr: {}",
            self.name,
            py.status,
            py.stdout,
            py.stderr
        );
        let theirs = (self.normalise)(py.stdout);
        assert_eq!(ours, theirs, "{}: ours (left) and CPython's", self.name);
        ours
    }
}

/// Sorts `lines[range]`: lines that come in an order nobody chose.
fn sort_range(mut lines: Vec<String>, range: std::ops::Range<usize>) -> Vec<String> {
    let end = range.end.min(lines.len());
    lines[range.start.min(end)..end].sort();
    lines
}

/// Replaces every `<letters><marker><digits>` (a process name such as `ForkPoolWorker-3`)
/// with `<marker>N`.
fn mask_names(line: &str, marker: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(at) = rest.find(marker) {
        let before = &rest[..at];
        let kept = before.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        out.push_str(kept);
        out.push_str(marker);
        rest = &rest[at + marker.len()..];
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits > 0 {
            out.push('N');
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

/// Replaces every run of digits in `line` with `<pid>`.
fn mask_numbers(line: &str) -> String {
    let mut out = String::new();
    let mut in_number = false;
    for c in line.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                out.push_str("<pid>");
            }
            in_number = true;
        } else {
            out.push(c);
            in_number = false;
        }
    }
    out
}

#[test]
fn pool_intro() {
    let out = Check::new("docs_pool_intro").run();
    assert_eq!(out, ["[1, 4, 9]"]);
}

#[test]
fn process() {
    let out = Check::new("docs_process").run();
    assert_eq!(out, ["hello bob"]);
}

#[test]
fn info() {
    let out = Check {
        // The pids differ from run to run: each becomes P1, P2... in order of appearance, so
        // what is checked is their relation (the child's parent is the main process). Rust has
        // no `__name__`: its stand-in, `module_path!()`, is masked.
        normalise: |lines| {
            let mut seen: Vec<String> = Vec::new();
            lines
                .into_iter()
                .map(|l| {
                    if l.starts_with("module name: ") {
                        return "module name: <module>".to_string();
                    }
                    for prefix in ["parent process: ", "process id: "] {
                        if let Some(pid) = l.strip_prefix(prefix) {
                            let n = match seen.iter().position(|p| p == pid) {
                                Some(n) => n,
                                None => {
                                    seen.push(pid.to_string());
                                    seen.len() - 1
                                }
                            };
                            return format!("{prefix}P{}", n + 1);
                        }
                    }
                    l
                })
                .collect()
        },
        ..Check::new("docs_info")
    }
    .run();
    assert_eq!(
        out,
        [
            "main line",
            "module name: <module>",
            "parent process: P1",
            "process id: P2",
            "function f",
            "module name: <module>",
            "parent process: P2",
            "process id: P3",
            "hello bob"
        ]
    );
}

#[test]
fn start_method() {
    let out = Check::new("docs_start_method").run();
    assert_eq!(out, ["hello"]);
}

#[test]
fn get_context() {
    let out = Check::new("docs_get_context").run();
    assert_eq!(out, ["hello"]);
}

#[test]
fn queue() {
    let out = Check::new("docs_queue").run();
    assert_eq!(out, ["[42, None, 'hello']"]);
}

#[test]
fn pipe() {
    let out = Check::new("docs_pipe").run();
    assert_eq!(out, ["[42, None, 'hello']"]);
}

#[test]
fn lock() {
    let out = Check {
        // The children print in the order they get the lock: sorted.
        normalise: |mut lines| {
            lines.sort();
            lines
        },
        ..Check::new("docs_lock")
    }
    .run();
    let mut expected: Vec<String> = (0..10).map(|i| format!("hello world {i}")).collect();
    expected.sort();
    assert_eq!(out, expected);
}

#[test]
fn value_array() {
    let out = Check::new("docs_value_array").run();
    assert_eq!(
        out,
        ["3.1415927", "[0, -1, -2, -3, -4, -5, -6, -7, -8, -9]"]
    );
}

#[test]
fn manager() {
    let out = Check::new("docs_manager").run();
    assert_eq!(
        out,
        [
            "{1: '1', '2': 2, 0.25: None}",
            "[9, 8, 7, 6, 5, 4, 3, 2, 1, 0]"
        ]
    );
}

#[test]
fn pool() {
    let out = Check {
        // Lines 1-10 come from imap_unordered, in completion order: sorted. Lines 12 and 13
        // are worker pids: masked.
        normalise: |lines| {
            let mut lines = sort_range(lines, 1..11);
            for line in lines.iter_mut().skip(12).take(2) {
                *line = mask_numbers(line);
            }
            lines
        },
        ..Check::new("docs_pool")
    }
    .run();
    assert_eq!(out[0], "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]");
    assert_eq!(out[11], "400");
    assert_eq!(out[13], "[<pid>, <pid>, <pid>, <pid>]");
    assert_eq!(
        out[14],
        "We lacked patience and got a multiprocessing.TimeoutError"
    );
    assert_eq!(out.len(), 17);
}

#[test]
fn pool_reference() {
    // Both end with the timeout: a traceback (Python) or `Error: Timeout` (Rust) on stderr,
    // exit status 1.
    let out = Check {
        code: 1,
        ..Check::new("docs_pool_reference")
    }
    .run();
    assert_eq!(
        out,
        ["100", "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]", "0", "1", "4"]
    );
}

#[test]
fn listener_client() {
    let out = Check {
        // The peer's address (an ephemeral port) differs from run to run, and the two print it
        // differently (Python a tuple, Rust `ip:port`): masked.
        normalise: |lines| {
            lines
                .into_iter()
                .map(|l| match l.strip_prefix("connection accepted from ") {
                    Some(_) => "connection accepted from <address>".to_string(),
                    None => l,
                })
                .collect()
        },
        // The docs give a server and a client program; both are in one .py file here.
        header_is_original: false,
        ..Check::new("docs_listener_client")
    }
    .run();
    assert_eq!(
        out,
        [
            "connection accepted from <address>",
            "[2.25, None, 'junk', <class 'float'>]",
            "b'hello'",
            "8",
            "array('i', [42, 1729, 0, 0, 0])"
        ]
    );
}

#[test]
fn wait() {
    let out = Check {
        // The four children's messages interleave as they come: sorted.
        normalise: |mut lines| {
            lines.sort();
            lines
        },
        ..Check::new("docs_wait")
    }
    .run();
    assert_eq!(out.len(), 40);
    assert!(out.contains(&"(9, 'Process-4')".to_string()), "{out:?}");
}

#[test]
fn worker_queues() {
    let out = Check {
        // Which worker takes which task, and the order results come in, depend on random
        // sleeps: worker names are masked (Process-N) and each block of results is sorted.
        normalise: |lines| {
            let lines = lines
                .into_iter()
                .map(|l| mask_names(&l, "Process-"))
                .collect();
            sort_range(sort_range(lines, 1..21), 21..31)
        },
        ..Check::new("docs_worker_queues")
    }
    .run();
    assert_eq!(out.len(), 31);
    assert_eq!(out[0], "Unordered results:");
    assert!(out.contains(&"\t Process-N says that mul(19, 7) = 133".to_string()));
    assert!(out.contains(&"\t Process-N says that plus(9, 8) = 17".to_string()));
}

#[test]
fn mp_pool() {
    let out = Check {
        // Worker names differ by start method (ForkPoolWorker-3 in CPython on Linux,
        // SpawnPoolWorker-3 here) and by who took the task: masked to PoolWorker-N. The dots
        // printed per 20 ms timeout depend on timing: removed with the space before them. The
        // imap_unordered results come in completion order: that block is sorted.
        normalise: |lines| {
            let lines: Vec<String> = lines
                .into_iter()
                .map(|l| mask_names(&l, "PoolWorker-"))
                .map(|l| l.trim_end_matches('.').trim_end().to_string())
                .collect();
            let start = lines
                .iter()
                .position(|l| l == "Unordered results using pool.imap_unordered():")
                .map_or(0, |i| i + 1);
            sort_range(lines, start..start + 20)
        },
        // The header quotes it by parts; the whole original is the .py file.
        header_is_original: false,
        limit: Duration::from_secs(60),
        ..Check::new("docs_mp_pool")
    }
    .run();
    assert!(
        out.contains(&"\tGot ZeroDivisionError as expected from IMapIterator.next()".to_string())
    );
    assert!(out.contains(&"\t PoolWorker-N says that plus(9, 8) = 17".to_string()));
    assert!(out.contains(&"Testing IMapIterator.next() with timeout:".to_string()));
}
