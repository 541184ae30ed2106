//! Shared memory: case S05 of python-reference.md §2.3 — a named segment written by a child
//! (spawn, and fork on Unix) is seen by the parent; Python's errors for an existing name, an
//! unknown name, size 0 and a second unlink; the resource tracker removes a tracked segment
//! after its creator is SIGKILLed and leaves an untracked one; interop with CPython by name.
//! Every test checks that the segments it made are gone at the end.

mod common;

use std::io::ErrorKind;
use std::time::Duration;
#[cfg(unix)]
use std::time::Instant;

use multiprocess::shared_memory::{Item, ShareableList, SharedMemory, resource_tracker_process};
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
    p.join().unwrap();
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
    p.join().unwrap();
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
    let mut p = multiprocess::get_context(multiprocess::StartMethod::Fork)
        .unwrap()
        .process_closure(move || write_by_name(child_name, 3));
    p.start().unwrap();
    p.join().unwrap();
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

#[cfg(unix)]
#[test]
#[ignore = "scenario: run by a_program_started_with_command_has_its_own_tracker"]
fn scenario_leak_and_exit() {
    use std::io::Write;
    multiprocess::init_test();
    if !common::in_scenario() {
        return;
    }
    let leaked = SharedMemory::create(None, 512).unwrap();
    let (tracker, _) = resource_tracker_process().expect("a tracker");
    // A name registered whose segment is gone by the end (here: never made): the tracker
    // cannot unlink it and says so, one line for the name, as CPython's does.
    let gone = format!("psm_gone_{}", std::process::id());
    multiprocess::resource_tracker::register(&gone, "shared_memory").unwrap();
    println!("names {} {tracker} {gone}", leaked.name());
    let _ = std::io::stdout().flush();
    // Neither closed nor unlinked: the program ends normally with the segment leaked.
    std::mem::forget(leaked);
}

/// A program started with `std::process::Command` (not spawned by us) has a tracker of its
/// own, as in CPython, even when its parent has one: the segment it leaks is unlinked when it
/// ends (not when the parent's whole tree does), with CPython's warning, and its tracker is
/// gone by the time it has exited (no orphan). A leaked name whose segment is already gone
/// gets a warning of its own (issue 17, item 13), as CPython's tracker gives.
#[cfg(unix)]
#[test]
fn a_program_started_with_command_has_its_own_tracker() {
    multiprocess::init_test();
    let _g = start();
    multiprocess::resource_tracker::ensure_running().unwrap();
    let ours = multiprocess::resource_tracker::pid().expect("our tracker");
    let out = common::scenario("scenario_leak_and_exit")
        .wait_with_output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("names "))
        .unwrap_or_else(|| panic!("{stdout}\n{stderr}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (name, theirs): (&str, u32) = (fields[1], fields[2].parse().unwrap());
    assert_ne!(theirs, ours, "the program used its parent's tracker");
    assert!(!exists(name), "{name} outlived the program that leaked it");
    assert!(
        stderr.contains(
            "resource_tracker: There appear to be 2 leaked shared_memory objects to clean up at shutdown"
        ),
        "{stderr}"
    );
    let gone = fields[3];
    assert!(
        stderr.contains(&format!(
            "resource_tracker: '/{gone}': No such file or directory"
        )),
        "{stderr}"
    );
    assert!(
        !stderr.contains(&format!("'/{name}'")),
        "a name unlinked at the end gets no warning: {stderr}"
    );
}

#[cfg(unix)]
#[test]
#[ignore = "scenario: run by public_resource_tracker_unlinks_what_was_registered"]
fn scenario_tracker_register() {
    use multiprocess::resource_tracker;
    use std::io::Write;
    multiprocess::init_test();
    if !common::in_scenario() {
        return;
    }
    assert_eq!(resource_tracker::pid(), None);
    resource_tracker::ensure_running().unwrap();
    let tracker = resource_tracker::pid().expect("a tracker");
    assert_eq!(
        resource_tracker_process(),
        Some((tracker, resource_tracker::getfd().unwrap()))
    );
    let registered = SharedMemory::create_untracked(None, 512).unwrap();
    let unregistered = SharedMemory::create_untracked(None, 512).unwrap();
    // CPython's form of the name, with the slash, and ours.
    resource_tracker::register(&format!("/{}", registered.name()), "shared_memory").unwrap();
    resource_tracker::register(unregistered.name(), "shared_memory").unwrap();
    resource_tracker::unregister(unregistered.name(), "shared_memory").unwrap();
    assert!(matches!(
        resource_tracker::register(registered.name(), "semaphore"),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(resource_tracker::pid(), Some(tracker));
    println!(
        "names {} {} {tracker}",
        registered.name(),
        unregistered.name()
    );
    let _ = std::io::stdout().flush();
    std::thread::sleep(Duration::from_secs(60));
}

/// `multiprocess::resource_tracker` (Python's): a program registers an untracked segment and
/// is SIGKILLed; its tracker unlinks that segment, and not the one it registered and then
/// unregistered.
#[cfg(unix)]
#[test]
fn public_resource_tracker_unlinks_what_was_registered() {
    use std::io::BufRead;
    multiprocess::init_test();
    let _g = start();
    let mut owner = common::scenario_with(
        "scenario_tracker_register",
        Some(("MULTIPROCESS_RESOURCE_TRACKER", "")),
    );
    let mut out = std::io::BufReader::new(owner.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("names ") {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            let _ = owner.kill();
            let out = owner.wait_with_output().unwrap();
            panic!(
                "the owner printed no names: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let fields: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
    let (registered, unregistered) = (fields[1].clone(), fields[2].clone());
    let tracker: u32 = fields[3].parse().unwrap();
    assert!(exists(&registered) && exists(&unregistered));
    owner.kill().unwrap();
    owner.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while exists(&registered) {
        assert!(
            Instant::now() < deadline,
            "the tracker did not remove {registered}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    common::reap_orphan(tracker, Duration::from_secs(10));
    assert!(exists(&unregistered), "an unregistered segment survives");
    SharedMemory::attach_untracked(&unregistered)
        .unwrap()
        .unlink()
        .unwrap();
    assert_gone(&registered);
    assert_gone(&unregistered);
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

// ---------------------------------------------------------------------------------------------
// ShareableList

/// One item of every kind, with the edges of each: what a list must give back unchanged.
fn every_kind() -> Vec<Item> {
    vec![
        Item::Int(-5),
        Item::Int(i64::MAX),
        Item::Int(i64::MIN),
        Item::Float(2.5),
        Item::Float(f64::INFINITY),
        Item::Bool(true),
        Item::Bool(false),
        Item::None,
        Item::from(""),
        Item::from("1234567"),  // fills its 8 bytes but one
        Item::from("12345678"), // needs 16
        Item::from("héllo wörld €"),
        Item::from(&b"a\0b"[..]), // a NUL inside is kept
        Item::from(Vec::<u8>::new()),
    ]
}

/// Every kind stored and read back, with CPython's formats and segment size; attached again
/// by name in this process the list is the same.
#[test]
fn shareable_list_round_trips() {
    multiprocess::init_test();
    let _g = start();
    let items = every_kind();
    let list = ShareableList::new(items.clone(), None).unwrap();
    assert_eq!(list.len(), items.len());
    for (i, item) in items.iter().enumerate() {
        let got = list.get(i).unwrap();
        assert_eq!(&got, item, "item {i}");
        assert_eq!(
            format!("{got:?}"),
            format!("{item:?}"),
            "item {i}, same kind"
        );
    }
    assert_eq!(
        list.format().unwrap(),
        "qqqddxxxxxxx?xxxxxxx?xxxxxx?x8s8s16s24s8s8s"
    );
    // 8 (length) + 15 * 8 (offsets) + 136 (data) + 14 * 8 (formats) + 14 (codes).
    assert_eq!(list.shm().size(), 8 + 15 * 8 + 136 + 14 * 8 + 14);
    let again = ShareableList::attach(list.name()).unwrap();
    assert_eq!(again.to_vec().unwrap(), items);
    assert!(format!("{again:?}").starts_with("ShareableList([Int(-5), Int("));
    drop(again);

    // Python's NaN equals nothing, not even itself; trailing NULs go, as in CPython.
    let mut odd = ShareableList::new([Item::Float(f64::NAN), Item::from("x\0\0")], None).unwrap();
    assert!(matches!(odd.get(0).unwrap(), Item::Float(f) if f.is_nan()));
    assert_eq!(odd.get(1).unwrap(), Item::from("x"));
    assert_eq!(odd.count(&Item::Float(f64::NAN)).unwrap(), 0);
    odd.set(1, &b"\0\0"[..]).unwrap();
    assert_eq!(odd.get(1).unwrap(), Item::Bytes(vec![]));

    let empty = ShareableList::new(Vec::<Item>::new(), None).unwrap();
    assert!(empty.is_empty() && empty.to_vec().unwrap().is_empty());
    assert_eq!(empty.format().unwrap(), "");
    assert_eq!(empty.shm().size(), 16);

    for l in [&list, &odd, &empty] {
        l.unlink().unwrap();
    }
    let names: Vec<String> = [&list, &odd, &empty]
        .iter()
        .map(|l| l.name().to_owned())
        .collect();
    drop((list, odd, empty));
    names.iter().for_each(|n| assert_gone(n));
}

/// Replacing items: any kind that fits the item's room, Python's errors otherwise; `count` and
/// `index` with Python's `==`.
#[test]
fn shareable_list_set_count_index_and_errors() {
    multiprocess::init_test();
    let _g = start();
    let mut list = ShareableList::new(
        [Item::Int(1), Item::from("twelve bytes"), Item::Bool(true)],
        None,
    )
    .unwrap();
    assert_eq!(list.format().unwrap(), "q16sxxxxxxx?");

    // A number's 8 bytes take a str of up to 8 bytes, and back.
    list.set(0, "eight b.").unwrap();
    assert_eq!(list.get(0).unwrap(), Item::from("eight b."));
    assert_eq!(list.format().unwrap(), "8s16sxxxxxxx?");
    let e = list.set(0, "nine byte").unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArgument(m) if m == "bytes/str item exceeds available storage"),
        "{e}"
    );
    list.set(0, 3.25).unwrap();
    assert_eq!(list.get(0).unwrap(), Item::Float(3.25));
    // The text item keeps its 16 bytes of room, whatever it holds.
    list.set(1, Item::None).unwrap();
    assert_eq!(list.format().unwrap(), "dxxxxxx?xxxxxxxx?");
    list.set(1, &b"sixteen bytes..."[..]).unwrap();
    assert_eq!(list.get(1).unwrap(), Item::from(&b"sixteen bytes..."[..]));
    assert!(list.set(1, "seventeen bytes..").is_err());
    list.set(1, "short").unwrap();
    assert_eq!(list.format().unwrap(), "d16sxxxxxxx?");
    assert_eq!(list.get(1).unwrap(), Item::from("short"));
    assert_eq!(list.get(2).unwrap(), Item::Bool(true));

    // Python's IndexError.
    let e = list.get(3).unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArgument(m) if m.contains("index out of range")),
        "{e}"
    );
    let e = list.set(3, 0).unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArgument(m) if m.contains("assignment index out of range")),
        "{e}"
    );

    // count and index compare as Python does: True == 1 == 1.0.
    list.set(0, 1).unwrap();
    assert_eq!(list.count(&Item::Float(1.0)).unwrap(), 2);
    assert_eq!(list.index(&Item::Bool(true)).unwrap(), 0);
    assert_eq!(list.index(&Item::from("short")).unwrap(), 1);
    assert_eq!(list.count(&Item::from(&b"short"[..])).unwrap(), 0);
    let e = list.index(&Item::None).unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArgument(m) if m.contains("not in this container")),
        "{e}"
    );

    // A segment that holds no list is refused, not trusted.
    let mut raw = SharedMemory::create(None, 64).unwrap();
    raw.buf_mut()[..8].copy_from_slice(&1000i64.to_ne_bytes());
    let e = ShareableList::attach(raw.name()).unwrap_err();
    assert!(matches!(e, Error::Codec(_)), "{e}");
    raw.buf_mut()[..8].copy_from_slice(&(-1i64).to_ne_bytes());
    assert!(matches!(
        ShareableList::attach(raw.name()),
        Err(Error::Codec(_))
    ));

    let e = ShareableList::new([vec![0u8; 10_000_000]], None).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");

    let names = [list.name().to_owned(), raw.name().to_owned()];
    list.unlink().unwrap();
    raw.unlink().unwrap();
    drop((list, raw));
    names.iter().for_each(|n| assert_gone(n));
}

/// Child: attaches by name, reads every item, changes two.
fn change_list(name: String) -> Vec<String> {
    let mut list = ShareableList::attach(&name).unwrap();
    let seen = list.iter().map(|i| format!("{:?}", i.unwrap())).collect();
    list.set(0, list.get(0).unwrap() == Item::Int(42)).unwrap();
    list.set(1, "from the child").unwrap();
    seen
}

/// Child: the list itself as the argument (it travels by name).
fn bump_list(mut list: ShareableList) -> usize {
    if let Item::Int(n) = list.get(2).unwrap() {
        list.set(2, n + 1).unwrap();
    }
    list.len()
}

/// A spawned child attaches to the list (by name, and as the argument itself) and changes it.
#[test]
fn shareable_list_changed_by_a_spawned_child() {
    multiprocess::init_test();
    let _g = start();
    let list = ShareableList::new(
        [Item::Int(42), Item::from("a room of 16...."), Item::Int(1)],
        None,
    )
    .unwrap();
    let mut p = multiprocess::get_context(multiprocess::StartMethod::Spawn)
        .unwrap()
        .process(change_list, (list.name().to_owned(),));
    p.start().unwrap();
    p.join_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(
        p.result::<Vec<String>>().unwrap(),
        ["Int(42)", "Str(\"a room of 16....\")", "Int(1)"]
    );
    assert_eq!(list.get(0).unwrap(), Item::Bool(true));
    assert_eq!(list.get(1).unwrap(), Item::from("from the child"));

    let mut p = Process::new(bump_list, (ShareableList::attach(list.name()).unwrap(),));
    p.start().unwrap();
    p.join_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(p.result::<usize>().unwrap(), 3);
    assert_eq!(list.get(2).unwrap(), Item::Int(2));
    drop(p);
    let name = list.name().to_owned();
    list.unlink().unwrap();
    drop(list);
    assert_gone(&name);
}

/// Runs `script` with python3 (arguments after it), returning its stdout; `None` (skip) when
/// there is no python3.
#[cfg(unix)]
fn python(script: &str, args: &[&str]) -> Option<String> {
    use std::process::Command;
    if Command::new("python3").arg("-V").output().is_err() {
        println!("skipped: no python3 on this machine");
        return None;
    }
    // CPython before 3.13 registers attached segments with its own tracker, which would unlink
    // ours when it exits (gh-82300), and unlinks what it created and left: switch it off.
    let prelude = "import sys\n\
                   from multiprocessing import resource_tracker, shared_memory\n\
                   resource_tracker.register = resource_tracker.unregister = lambda *a: None\n";
    let mut child = Command::new("python3")
        .args(["-c", &format!("{prelude}{script}")])
        .args(args)
        .env("PYTHONIOENCODING", "utf-8")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("python3 did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

/// Interop: CPython attaches to our list by name, reads it and changes it; we attach to one
/// CPython made.
#[cfg(unix)]
#[test]
fn shareable_list_interop_with_cpython() {
    multiprocess::init_test();
    let _g = start();
    let list = ShareableList::new(every_kind(), None).unwrap();
    let format = list.format().unwrap();
    let script = "sl = shared_memory.ShareableList(name=sys.argv[1])\n\
                  print(repr(list(sl)))\n\
                  print(sl.format, len(sl))\n\
                  sl[0] = 'py'\n\
                  sl[3] = True\n\
                  sl[10] = b'from python'\n\
                  sl[11] = None\n\
                  sl.shm.close()\n";
    let Some(out) = python(script, &[list.name()]) else {
        list.unlink().unwrap();
        return;
    };
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "[-5, 9223372036854775807, -9223372036854775808, 2.5, inf, True, False, None, '', \
             '1234567', '12345678', 'héllo wörld €', b'a\\x00b', b'']",
            &format!("{format} 14"),
        ]
    );
    assert_eq!(list.get(0).unwrap(), Item::from("py"));
    assert!(matches!(list.get(3).unwrap(), Item::Bool(true)));
    assert_eq!(list.get(10).unwrap(), Item::from(&b"from python"[..]));
    assert_eq!(list.get(11).unwrap(), Item::None);
    assert_eq!(list.get(12).unwrap(), Item::from(&b"a\0b"[..]));
    let name = list.name().to_owned();
    list.unlink().unwrap();
    drop(list);
    assert_gone(&name);

    let script = "sl = shared_memory.ShareableList([7, -1.5, False, None, 'ab', b'cd\\x00e', \
                  'x' * 20])\n\
                  print(sl.shm.name, sl.format)\n\
                  sl.shm.close()\n";
    let out = python(script, &[]).expect("python3 ran above");
    let (name, format) = out.trim().split_once(' ').unwrap();
    let mut theirs = ShareableList::attach(name).unwrap();
    assert_eq!(theirs.format().unwrap(), format);
    assert_eq!(
        theirs.to_vec().unwrap(),
        [
            Item::Int(7),
            Item::Float(-1.5),
            Item::Bool(false),
            Item::None,
            Item::from("ab"),
            Item::from(&b"cd\0e"[..]),
            Item::from("x".repeat(20)),
        ]
    );
    assert!(matches!(theirs.get(2).unwrap(), Item::Bool(false)));
    theirs.set(6, "y".repeat(24)).unwrap();
    assert!(theirs.set(6, "y".repeat(25)).is_err());
    assert_eq!(theirs.get(6).unwrap(), Item::from("y".repeat(24)));
    theirs.unlink().unwrap();
    drop(theirs);
    assert_gone(name);
}

// ---------------------------------------------------------------------------------------------
// SharedMemoryManager

use multiprocess::managers::SharedMemoryManager;

/// The segments made through a manager are unlinked by its shutdown (a segment unlinked
/// before is passed over), and by its drop; its process is gone; afterwards it makes none.
#[test]
fn shared_memory_manager_unlinks_at_shutdown_and_drop() {
    multiprocess::init_test();
    let _g = start();
    let mut smm = SharedMemoryManager::start().unwrap();
    let keeper = smm.process().and_then(Process::pid).expect("a pid");
    let mut shm = smm.shared_memory(64).unwrap();
    shm.buf_mut()[0] = 7;
    let list = smm.shareable_list(["a", "bc"]).unwrap();
    let early = smm.shared_memory(8).unwrap();
    early.unlink().unwrap();
    let names = [
        shm.name().to_owned(),
        list.name().to_owned(),
        early.name().to_owned(),
    ];
    assert!(exists(&names[0]) && exists(&names[1]));

    smm.shutdown().unwrap();
    assert!(smm.process().is_none());
    assert!(!common::running(keeper), "the manager's process ended");
    #[cfg(unix)]
    assert!(
        !exists(&names[0]) && !exists(&names[1]),
        "unlinked while still mapped here"
    );
    // The mappings stay valid until closed.
    assert_eq!(shm.buf()[0], 7);
    assert_eq!(list.get(1).unwrap(), Item::from("bc"));
    let e = smm.shared_memory(8).unwrap_err();
    assert!(
        matches!(&e, Error::State(m) if m.contains("shut down")),
        "{e}"
    );
    smm.shutdown().unwrap();
    drop((shm, list, early));
    names.iter().for_each(|n| assert_gone(n));

    let smm = SharedMemoryManager::start().unwrap();
    let shm = smm.shared_memory(16).unwrap();
    let name = shm.name().to_owned();
    drop(smm);
    drop(shm);
    assert_gone(&name);
}

#[cfg(unix)]
#[test]
#[ignore = "scenario: run by shared_memory_manager_unlinks_when_its_owner_is_killed"]
fn scenario_smm_owner() {
    use std::io::Write;
    multiprocess::init_test();
    if !common::in_scenario() {
        return;
    }
    let smm = SharedMemoryManager::start().unwrap();
    let shm = smm.shared_memory(512).unwrap();
    let list = smm.shareable_list([1, 2]).unwrap();
    let keeper = smm.process().and_then(Process::pid).unwrap();
    let (tracker, _) = resource_tracker_process().expect("a tracker");
    println!("names {} {} {keeper} {tracker}", shm.name(), list.name());
    let _ = std::io::stdout().flush();
    std::thread::sleep(Duration::from_secs(60));
}

/// The owner of a manager is SIGKILLed: the manager's process unlinks its segments at once
/// (the resource tracker, which would only warn of a leak, finds nothing left) and ends.
#[cfg(unix)]
#[test]
fn shared_memory_manager_unlinks_when_its_owner_is_killed() {
    use std::io::{BufRead, Read};
    multiprocess::init_test();
    let _g = start();
    // Its own process tree, with its own tracker.
    let mut owner = common::scenario_with(
        "scenario_smm_owner",
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
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (shm, list) = (fields[1], fields[2]);
    let keeper: u32 = fields[3].parse().unwrap();
    let tracker: u32 = fields[4].parse().unwrap();
    assert!(exists(shm) && exists(list));

    owner.kill().unwrap();
    owner.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while exists(shm) || exists(list) {
        assert!(Instant::now() < deadline, "the manager did not unlink them");
        std::thread::sleep(Duration::from_millis(20));
    }
    common::reap_orphan(keeper, Duration::from_secs(10));
    common::reap_orphan(tracker, Duration::from_secs(10));
    let mut err = String::new();
    owner
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!err.contains("leaked"), "stderr: {err}");
    assert_gone(shm);
    assert_gone(list);
}
