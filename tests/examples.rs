//! The seed's examples, run as programs: their observable output must be the seed's (with sleeps
//! scaled down through `SEED_SLEEP_SCALE`). The leak guard (this process is a subreaper) also
//! checks that no example leaves a process behind.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

/// Runs `examples/<name>` (built by `cargo test`) and returns its stdout lines.
fn run(name: &str) -> Vec<String> {
    let _g = common::start();
    let mut path = std::env::current_exe().expect("current_exe");
    path.pop(); // deps/
    if path.ends_with("deps") {
        path.pop();
    }
    path.push("examples");
    path.push(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let out = Command::new(&path)
        .env("SEED_SLEEP_SCALE", "0.02")
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", path.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{name}: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.lines().map(str::to_owned).collect()
}

/// `<parent pid> ------- <own pid>` lines: (parent, child).
fn pid_pairs(lines: &[String]) -> Vec<(u32, u32)> {
    lines
        .iter()
        .filter_map(|l| l.split_once(" ------- "))
        .map(|(a, b)| (a.parse().unwrap(), b.parse().unwrap()))
        .collect()
}

#[test]
fn seed_1_3_basic() {
    let lines = run("seed_1_3_basic");
    assert!(lines.iter().any(|l| l == "exitcode = Some(0)"), "{lines:?}");
}

#[test]
fn seed_1_4_1_five_children() {
    let lines = run("seed_1_4_1_children");
    let pairs = pid_pairs(&lines);
    assert_eq!(pairs.len(), 5, "{lines:?}");
    assert_eq!(lines.iter().filter(|l| *l == "Testing").count(), 5);
    let parents: BTreeSet<_> = pairs.iter().map(|p| p.0).collect();
    let children: BTreeSet<_> = pairs.iter().map(|p| p.1).collect();
    assert_eq!(parents.len(), 1, "one parent pid");
    assert_eq!(children.len(), 5, "five different child pids");
    // Each child prints its two lines with two writes, as the seed's two print() calls do, so
    // children that wake together may interleave them: only the counts are fixed.
}

#[test]
fn seed_1_4_2_args() {
    let lines = run("seed_1_4_2_args");
    // Before the parent's join, its lines (the pid, "child", "true") and the child's ("10",
    // "worker ......", "10") may interleave (the child prints as soon as it runs, as in the
    // seed; a parent slowed down after `start` prints its pid after the child's first line):
    // check each process's own order, then the parent's part after the join exactly.
    let marker = lines
        .iter()
        .position(|l| l == "************main****************")
        .unwrap_or_else(|| panic!("no main marker: {lines:?}"));
    let before = &lines[..marker];
    let is_pid = |l: &str| l != "10" && l.parse::<u32>().is_ok();
    let parents: Vec<&str> = before
        .iter()
        .map(String::as_str)
        .filter(|l| ["child", "true"].contains(l) || is_pid(l))
        .collect();
    let child: Vec<&str> = before
        .iter()
        .map(String::as_str)
        .filter(|l| !["child", "true"].contains(l) && !is_pid(l))
        .collect();
    assert!(
        parents.len() == 3 && is_pid(parents[0]),
        "the pid first of the parent's lines: {lines:?}"
    );
    assert_eq!(parents[1..], ["child", "true"], "{lines:?}");
    assert_eq!(child, ["10", "worker ......", "10"], "{lines:?}");
    assert_eq!(&lines[marker + 1..], ["100000", "worker ......", "100000"]);
}

#[test]
fn seed_1_4_3_kwargs() {
    let lines = run("seed_1_4_3_kwargs");
    let pairs = pid_pairs(&lines);
    assert_eq!(pairs.len(), 5, "{lines:?}");
    assert_eq!(pairs.iter().map(|p| p.0).collect::<BTreeSet<_>>().len(), 1);
    assert_eq!(pairs.iter().map(|p| p.1).collect::<BTreeSet<_>>().len(), 5);
    assert_eq!(lines.iter().filter(|l| *l == "child process").count(), 5);
    // Every child sees its own copy of `a` (100), never the parent's later 100000.
    assert!(lines.iter().all(|l| l != "100000"), "{lines:?}");
    assert_eq!(lines.iter().filter(|l| *l == "100").count(), 10);
}

#[test]
fn seed_1_4_4_main_guard() {
    let lines = run("seed_1_4_4_main_guard");
    let banners = lines
        .iter()
        .filter(|l| l.starts_with("module-level code runs"))
        .count();
    assert_eq!(
        banners, 3,
        "code before init() runs in the parent and in each of two children"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("Parent Process ID: "))
            .count(),
        2
    );
}

#[test]
fn subclass_run() {
    let lines = run("subclass_run");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("parent got back \"HELLO FROM A CHILD\"")),
        "{lines:?}"
    );
}
