//! Shared memory: case S05 of python-reference.md §2.3 — a named segment written by a child
//! (spawn, and fork on Unix) is seen by the parent; Python's errors for an existing name, an
//! unknown name, size 0 and a second unlink; the resource tracker removes a tracked segment
//! after its creator is SIGKILLed and leaves an untracked one; interop with CPython by name.
//! Every test checks that the segments it made are gone at the end.

mod common;

use std::io::ErrorKind;
#[cfg(unix)]
use std::time::{Duration, Instant};

use multiprocess::shared_memory::{SharedMemory, resource_tracker_process};
use multiprocess::{Error, Process};

/// `common::start()`, after a first look-up of a (missing) segment: on Windows the first named
/// object a process opens makes it open and keep the session's named-object directory (one
/// handle for the process's lifetime, not a leak; seen under Wine).
fn start() -> common::Guard {
    let _ = SharedMemory::attach_untracked("mp_no_such_segment");
    common::start()
}

/// The bytes a child writes.
fn pattern(seed: u8) -> Vec<u8> {
    (0..512u32)
        .map(|i| (i as u8).wrapping_mul(7) ^ seed)
        .collect()
}

/// True if segment `name` exists (checked without tracking it).
fn exists(name: &str) -> bool {
    match SharedMemory::attach_untracked(name) {
        Ok(_) => true,
        Err(Error::Io { source, .. }) if source.kind() == ErrorKind::NotFound => false,
        Err(e) => panic!("attaching to {name}: {e}"),
    }
}

/// Asserts that segment `name` is gone (on Linux also from /dev/shm).
fn assert_gone(name: &str) {
    assert!(!exists(name), "segment {name} left behind");
    #[cfg(target_os = "linux")]
    assert!(
        !std::path::Path::new("/dev/shm").join(name).exists(),
        "/dev/shm/{name} left behind"
    );
}

fn io_kind(e: &Error) -> Option<ErrorKind> {
    match e {
        Error::Io { source, .. } => Some(source.kind()),
        _ => None,
    }
}

/// Child: attaches by name, writes the pattern, reports its tracker's pid.
fn write_by_name(name: String, seed: u8) -> Option<u32> {
    let mut shm = SharedMemory::attach(&name).unwrap();
    assert!(shm.size() >= 512);
    shm.buf_mut()[..512].copy_from_slice(&pattern(seed));
    resource_tracker_process().map(|(pid, _)| pid)
}

/// Child: receives the segment itself (it travels by name) and writes the pattern.
fn write_by_object(mut shm: SharedMemory, seed: u8) -> (String, bool) {
    shm.buf_mut()[..512].copy_from_slice(&pattern(seed));
    (shm.name().to_owned(), shm.is_tracked())
}

/// S05: a 512-byte segment attached by name in a spawned child and written; the parent sees the
/// bytes. The child shares the parent's resource tracker.
#[test]
fn s05_spawned_child_writes() {
    multiprocess::init_test();
    let _g = start();
    let shm = SharedMemory::create(None, 512).unwrap();
    let name = shm.name().to_owned();
    assert!(
        name.starts_with("psm_") || name.starts_with("wnsm_"),
        "{name}"
    );
    assert_eq!(shm.size(), 512);
    assert!(shm.buf().iter().all(|&b| b == 0), "a new segment is zeroed");

    let mut p = Process::new(write_by_name, (name.clone(), 1u8));
    p.start().unwrap();
    p.join(None).unwrap();
    let child_tracker = p.result::<Option<u32>>().unwrap();
    assert_eq!(&shm.buf()[..512], &pattern(1)[..]);
    assert_eq!(
        child_tracker,
        resource_tracker_process().map(|(pid, _)| pid),
        "the child shares the parent's tracker"
    );

    // The segment itself as the argument (a second handle: `shm` keeps the first, which on
    // Windows keeps the segment alive).
    let mut p = Process::new(write_by_object, (SharedMemory::attach(&name).unwrap(), 2u8));
    p.start().unwrap();
    p.join(None).unwrap();
    assert_eq!(p.result::<(String, bool)>().unwrap(), (name.clone(), true));
    assert_eq!(&shm.buf()[..512], &pattern(2)[..]);
    shm.unlink().unwrap();
    drop(shm);
    drop(p);
    assert_gone(&name);
}

/// S05 with a forked child.
#[cfg(unix)]
#[test]
fn s05_forked_child_writes() {
    multiprocess::init_test();
    let _g = start();
    let shm = SharedMemory::create(None, 512).unwrap();
    let name = shm.name().to_owned();
    let child_name = name.clone();
    let mut p = multiprocess::get_context("fork")
        .unwrap()
        .process_closure(move || write_by_name(child_name, 3));
    p.start().unwrap();
    p.join(None).unwrap();
    assert_eq!(
        p.result::<Option<u32>>().unwrap(),
        resource_tracker_process().map(|(pid, _)| pid),
        "the forked child shares the parent's tracker"
    );
    assert_eq!(&shm.buf()[..512], &pattern(3)[..]);
    shm.unlink().unwrap();
    drop(shm);
    assert_gone(&name);
}

/// S05 errors: create again → exists; unknown name → not found; size 0 → error; double unlink →
/// not found. Messages name the segment.
#[test]
fn s05_errors() {
    multiprocess::init_test();
    let _g = start();
    let mut shm = SharedMemory::create(None, 64).unwrap();
    let name = shm.name().to_owned();

    let e = SharedMemory::create(Some(&name), 64).unwrap_err();
    assert_eq!(io_kind(&e), Some(ErrorKind::AlreadyExists), "{e}");
    assert!(e.to_string().contains(&name), "{e}");

    let unknown = format!("{name}x");
    let e = SharedMemory::attach(&unknown).unwrap_err();
    assert_eq!(io_kind(&e), Some(ErrorKind::NotFound), "{e}");
    assert!(e.to_string().contains(&unknown), "{e}");

    assert!(matches!(
        SharedMemory::create(None, 0),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        SharedMemory::create(Some("a/b"), 8),
        Err(Error::InvalidArgument(_))
    ));

    assert_eq!(
        format!("{shm:?}"),
        format!("SharedMemory({name:?}, size=64)")
    );
    shm.buf_mut()[0] = 9;
    shm.unlink().unwrap();
    let e = shm.unlink().unwrap_err();
    assert_eq!(io_kind(&e), Some(ErrorKind::NotFound), "{e}");
    assert!(e.to_string().contains(&name), "{e}");

    // Unlinked, the mapping still works; close is idempotent.
    assert_eq!(shm.buf()[0], 9);
    shm.close();
    shm.close();
    assert!(shm.is_closed() && shm.buf().is_empty() && shm.as_ptr().is_null());
    drop(shm);
    assert_gone(&name);
}

/// A segment created with a chosen name, and one attached untracked, behave like the others.
#[test]
fn s05_named_and_untracked() {
    multiprocess::init_test();
    let _g = start();
    let mut nonce = [0u8; 4];
    getrandom::fill(&mut nonce).unwrap();
    let name = format!("mp_test_{:08x}", u32::from_le_bytes(nonce));
    let mut shm = SharedMemory::create_untracked(Some(&name), 100).unwrap();
    assert_eq!(shm.name(), name);
    assert!(!shm.is_tracked());
    shm.buf_mut()[..3].copy_from_slice(b"abc");
    let other = SharedMemory::attach_untracked(&name).unwrap();
    assert!(other.size() >= 100);
    assert_eq!(&other.buf()[..3], b"abc");
    drop(other);
    shm.unlink().unwrap();
    drop(shm);
    assert_gone(&name);
}

#[cfg(unix)]
#[test]
#[ignore = "scenario: run by s05_tracker_cleans_up_after_sigkill"]
fn scenario_s05_owner() {
    use std::io::Write;
    multiprocess::init_test();
    if !common::in_scenario() {
        return;
    }
    let tracked = SharedMemory::create(None, 512).unwrap();
    let untracked = SharedMemory::create_untracked(None, 512).unwrap();
    let (tracker, _) = resource_tracker_process().expect("a tracker");
    println!("names {} {} {tracker}", tracked.name(), untracked.name());
    let _ = std::io::stdout().flush();
    std::thread::sleep(Duration::from_secs(60));
}

/// S05: the creator of a tracked and an untracked segment is SIGKILLed; its tracker (which
/// outlives it) removes the tracked one with CPython's warning; the untracked one survives.
#[cfg(unix)]
#[test]
fn s05_tracker_cleans_up_after_sigkill() {
    use std::io::{BufRead, Read};
    multiprocess::init_test();
    let _g = start();
    // An empty value: the owner is its own process tree, with its own tracker.
    let mut owner = common::scenario_with(
        "scenario_s05_owner",
        Some(("MULTIPROCESS_RESOURCE_TRACKER", "")),
    );
    let mut out = std::io::BufReader::new(owner.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("names ") {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            let _ = owner.kill();
            let _ = owner.wait();
            panic!("the owner printed no names");
        }
    }
    let fields: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
    let (tracked, untracked) = (fields[1].clone(), fields[2].clone());
    let tracker: u32 = fields[3].parse().unwrap();
    assert_ne!(Some(tracker), resource_tracker_process().map(|(p, _)| p));
    assert!(exists(&tracked) && exists(&untracked));

    owner.kill().unwrap();
    owner.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while exists(&tracked) {
        assert!(
            Instant::now() < deadline,
            "the tracker did not remove {tracked}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    common::reap_orphan(tracker, Duration::from_secs(10));
    let mut err = String::new();
    owner
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        err.contains(
            "resource_tracker: There appear to be 1 leaked shared_memory objects to clean up at shutdown"
        ),
        "stderr: {err}"
    );
    assert!(exists(&untracked), "an untracked segment survives");
    SharedMemory::attach_untracked(&untracked)
        .unwrap()
        .unlink()
        .unwrap();
    assert_gone(&tracked);
    assert_gone(&untracked);
}

/// Interop: CPython attaches to our segment by name and writes; we attach to CPython's.
#[cfg(target_os = "linux")]
#[test]
fn s05_interop_with_cpython() {
    use std::process::Command;
    multiprocess::init_test();
    let _g = start();
    if Command::new("python3").arg("-V").output().is_err() {
        println!("skipped: no python3 on this machine");
        return;
    }
    // CPython 3.11 registers attached segments with its own tracker, which would unlink ours
    // when it exits (gh-82300): switch that off, as `track=False` does in 3.13.
    let prelude = "import sys\n\
                   from multiprocessing import resource_tracker, shared_memory\n\
                   resource_tracker.register = resource_tracker.unregister = lambda *a: None\n";
    let mut ours = SharedMemory::create(None, 512).unwrap();
    ours.buf_mut()[..4].copy_from_slice(b"rust");
    let script = format!(
        "{prelude}s = shared_memory.SharedMemory(sys.argv[1])\n\
         print(bytes(s.buf[:4]).decode(), s.size)\n\
         s.buf[4:6] = b'py'\n\
         s.close()\n"
    );
    let out = Command::new("python3")
        .args(["-c", &script, ours.name()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "rust 512");
    assert_eq!(&ours.buf()[..6], b"rustpy");
    let name = ours.name().to_owned();
    ours.unlink().unwrap();
    drop(ours);
    assert_gone(&name);

    let script = format!(
        "{prelude}s = shared_memory.SharedMemory(create=True, size=64)\n\
         s.buf[:2] = b'py'\n\
         print(s.name)\n\
         s.close()\n"
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs_name = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(theirs_name.starts_with("psm_"), "{theirs_name}");
    let mut theirs = SharedMemory::attach_untracked(&theirs_name).unwrap();
    assert_eq!(theirs.size(), 64);
    assert_eq!(&theirs.buf()[..2], b"py");
    theirs.buf_mut()[2] = b'!';
    theirs.unlink().unwrap();
    drop(theirs);
    assert_gone(&theirs_name);
}
