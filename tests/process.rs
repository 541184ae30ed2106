//! Process acceptance cases P01–P21 of python-reference.md §2.3, with real processes.
//!
//! Every test starts with `multiprocess::init_test()` (a spawned child re-runs this binary,
//! filtered to the test, and becomes the child there) and `let _g = common::start();`, which
//! holds the guard that, dropped last, fails the test if a child, zombie, orphan or descriptor was
//! left behind.

mod common;

use std::time::{Duration, Instant};

use multiprocess::{
    Error, Process, StartMethod, active_children, current_process, get_all_start_methods,
    get_context, wait,
};

/// The exitcode of a child ended by `terminate()`: -SIGTERM. Windows has no signals; there both
/// `terminate()` and `kill()` call `TerminateProcess` and report -15, as CPython does.
const TERMINATED: i32 = -15;
/// The exitcode of a child ended by `kill()`: -SIGKILL on Unix, -15 on Windows (see above).
#[cfg(unix)]
const KILLED: i32 = -libc::SIGKILL;
#[cfg(windows)]
const KILLED: i32 = TERMINATED;

/// The start methods of this platform, by name: spawn and fork on Unix, spawn on Windows.
fn methods() -> Vec<StartMethod> {
    get_all_start_methods()
}

/// The guard for a test over every method: the fork server (where there is one) is started
/// before it counts, as it lives as long as the test binary.
fn start_all_methods() -> common::Guard {
    common::start_with(|| {
        let _ = multiprocess::forkserver::ensure_running();
    })
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn nothing() {}

fn secs(s: f64) -> Option<Duration> {
    Some(Duration::from_secs_f64(s))
}

#[test]
fn p01_main_identity() {
    multiprocess::init_test();
    let _g = common::start();
    let me = current_process();
    assert_eq!(me.name(), "MainProcess");
    assert!(multiprocess::parent_process().is_none());
    assert_eq!(me.pid(), std::process::id());
    assert!(me.is_alive());
    assert_eq!(me.exitcode(), None);
    assert!(me.ident().is_empty());
    assert!(multiprocess::cpu_count() >= 1);
}

#[test]
fn p02_automatic_names() {
    multiprocess::init_test();
    let _g = common::start();
    let a = Process::new(nothing, ());
    let b = Process::new(nothing, ());
    let mut c = Process::new(nothing, ());
    let n = a.ident()[0];
    assert_eq!(a.name(), format!("Process-{n}"));
    assert_eq!(b.name(), format!("Process-{}", n + 1));
    assert_eq!(c.name(), format!("Process-{}", n + 2));
    c.start().unwrap();
    c.join().unwrap();
    assert_eq!(c.exitcode().unwrap(), Some(0));
    let named = Process::new(nothing, ()).with_name("explicit");
    assert_eq!(named.name(), "explicit");
    let ctx = get_context(multiprocess::StartMethod::Spawn)
        .unwrap()
        .process(nothing, ());
    assert!(ctx.name().starts_with("SpawnProcess-"), "{}", ctx.name());
}

fn grandchild_report() -> (String, String, u32) {
    let parent = multiprocess::parent_process().expect("a parent");
    (
        current_process().name(),
        parent.name().to_owned(),
        parent.pid(),
    )
}

fn start_grandchild() -> (u32, (String, String, u32)) {
    let mut p = Process::new(grandchild_report, ());
    p.start().unwrap();
    (std::process::id(), p.result().unwrap())
}

/// Renames itself, then changes its authkey, creating a child before and after each: each
/// child gets the name and key its parent had when it was created (a process copies its name
/// and authkey into each child from a copy it keeps while they stay the same: issue 19).
fn rename_between_children() -> (String, bool, bool) {
    let first = Process::new(grandchild_report, ());
    current_process().set_name("Renamed");
    let mut renamed = Process::new(grandchild_report, ());
    let same_key = renamed.authkey() == first.authkey();
    current_process().set_authkey(&[7u8; 32]);
    let rekeyed = Process::new(grandchild_report, ());
    let new_key =
        rekeyed.authkey() == current_process().authkey() && rekeyed.authkey() != first.authkey();
    renamed.start().unwrap();
    let (_, parent_name, _): (String, String, u32) = renamed.result().unwrap();
    (parent_name, same_key, new_key)
}

#[test]
fn a_child_made_after_a_rename_gets_the_new_name_and_authkey() {
    multiprocess::init_test();
    let _g = start_all_methods();
    for method in methods() {
        let ctx = get_context(method).unwrap();
        let mut p = ctx.process(rename_between_children, ());
        p.start().unwrap();
        let (parent_name, same_key, new_key) = p.result::<(String, bool, bool)>().unwrap();
        assert_eq!(parent_name, "Renamed", "{method:?}");
        assert!(same_key && new_key, "{method:?}: {same_key} {new_key}");
    }
}

#[test]
fn p03_nested_names_and_parent() {
    multiprocess::init_test();
    let _g = common::start();
    let mut child = Process::new(start_grandchild, ());
    let name = child.name();
    child.start().unwrap();
    let (child_pid, (gc_name, gc_parent, gc_parent_pid)): (u32, (String, String, u32)) =
        child.result().unwrap();
    assert_eq!(gc_name, format!("{name}:1"));
    assert_eq!(gc_parent, name);
    assert_eq!(gc_parent_pid, child_pid);
    assert_eq!(Some(child_pid), child.pid());
}

#[test]
fn p04_normal_exit() {
    multiprocess::init_test();
    let _g = common::start();
    let mut p = Process::new(nothing, ());
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(0));
    assert!(!p.is_alive().unwrap());
    assert!(active_children().iter().all(|c| c.pid() != p.pid()));
    p.result::<()>().unwrap();
}

fn fails() -> u32 {
    panic!("the target failed with code 123")
}

#[test]
#[ignore = "scenario: run by p05_uncaught_panic"]
fn scenario_p05() {
    multiprocess::init_test();
    if !common::in_scenario() {
        return;
    }
    let mut p = Process::new(fails, ()).with_name("failing-child");
    p.start().unwrap();
    p.join().unwrap();
    println!("exitcode={:?}", p.exitcode().unwrap());
    match p.result::<u32>() {
        Err(Error::Panicked { message }) => println!("panicked={message}"),
        other => println!("unexpected={other:?}"),
    }
}

#[test]
fn p05_uncaught_panic() {
    multiprocess::init_test();
    let _g = common::start();
    let out = common::scenario("scenario_p05").wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("exitcode=Some(1)"), "{stdout}");
    assert!(
        stdout.contains("panicked=the target failed with code 123"),
        "{stdout}"
    );
    let banner = stderr.find("Process failing-child:").expect(&stderr);
    let message = stderr
        .find("the target failed with code 123")
        .expect(&stderr);
    assert!(banner < message, "{stderr}");
}

fn print_line(text: String) {
    println!("{text}");
}

fn print_and_start_grandchild() {
    println!("from the child");
    let mut p = Process::new(print_line, ("from the grandchild".to_string(),));
    p.start().unwrap();
    p.join_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(0));
}

#[test]
#[ignore = "scenario: run by test_children_print_no_harness_lines"]
fn scenario_child_stdout() {
    multiprocess::init_test();
    if !common::in_scenario() {
        return;
    }
    let mut p = Process::new(print_and_start_grandchild, ());
    p.start().unwrap();
    p.join_timeout(Duration::from_secs(30)).unwrap();
    println!("child exitcode={:?}", p.exitcode().unwrap());
}

/// A test binary's children (and theirs) re-run its harness, but libtest's `running 1 test`
/// lines stay out of the output (issue 17, item 1); what the children print still shows.
#[test]
fn test_children_print_no_harness_lines() {
    multiprocess::init_test();
    let _g = common::start();
    let mut child = common::scenario("scenario_child_stdout");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the scenario hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("from the child\n"), "{stdout}");
    assert!(stdout.contains("from the grandchild\n"), "{stdout}");
    assert!(stdout.contains("child exitcode=Some(0)"), "{stdout}");
    // Only the scenario's own harness speaks (under `-q`: its header and summary).
    assert_eq!(stdout.matches("running 1 test").count(), 1, "{stdout}");
}

fn exits_with(code: i32) {
    multiprocess::exit(code)
}

fn std_exits_with(code: i32) -> u8 {
    std::process::exit(code)
}

#[test]
fn p06_explicit_exit_codes() {
    multiprocess::init_test();
    let _g = common::start();
    for (code, expected) in [(0, 0), (3, 3), (255, 255), (256, 0), (-1, 255)] {
        let mut p = Process::new(exits_with, (code,));
        p.start().unwrap();
        p.join().unwrap();
        assert_eq!(p.exitcode().unwrap(), Some(expected), "exit({code})");
        // A `()` target's value is not sent: exit code 0 says it, whatever ended the target.
        match (p.result::<()>(), expected) {
            (Ok(()), 0) => {}
            (Err(Error::Exited { exitcode }), 1..) => assert_eq!(exitcode, expected),
            other => panic!("exit({code}): {other:?}"),
        }
        let mut q = Process::new(std_exits_with, (code,));
        q.start().unwrap();
        q.join().unwrap();
        assert_eq!(
            q.exitcode().unwrap(),
            Some(expected),
            "std::process::exit({code})"
        );
        match q.result::<u8>() {
            Err(Error::Exited { exitcode }) => assert_eq!(exitcode, expected),
            other => panic!("exit({code}): {other:?}"),
        }
    }
}

fn sleeper(ms: u64) {
    sleep_ms(ms)
}

fn ended_by(signal: &str) {
    multiprocess::init_test();
    let _g = common::start();
    let mut p = Process::new(sleeper, (30_000,));
    p.start().unwrap();
    assert!(p.is_alive().unwrap());
    let t = Instant::now();
    if signal == "term" {
        p.terminate().unwrap()
    } else {
        p.kill().unwrap()
    }
    p.join().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "join took {:?}",
        t.elapsed()
    );
    let expected = if signal == "term" { TERMINATED } else { KILLED };
    assert_eq!(p.exitcode().unwrap(), Some(expected));
    assert!(matches!(p.result::<()>(), Err(Error::Killed { signal }) if signal == -expected));
    // Python's repr names the signal.
    #[cfg(unix)]
    {
        let repr = format!("{p:?}");
        let name = if signal == "term" {
            "exitcode=-SIGTERM"
        } else {
            "exitcode=-SIGKILL"
        };
        assert!(repr.contains(name) && repr.contains(" stopped "), "{repr}");
    }
    // Once reaped, signalling is a no-op.
    p.terminate().unwrap();
    p.kill().unwrap();
}

#[test]
fn p07_terminate() {
    ended_by("term");
}

#[test]
fn p08_kill() {
    ended_by("kill");
}

/// P09: a signal from outside. SIGINT gives -2: a Rust child has no KeyboardInterrupt, so the
/// default disposition ends it (Python's child would exit with 1). This is our documented choice.
#[cfg(unix)]
#[test]
fn p09_external_signal() {
    multiprocess::init_test();
    let _g = common::start();
    for sig in [libc::SIGKILL, libc::SIGINT] {
        let mut p = Process::new(sleeper, (30_000,));
        p.start().unwrap();
        let pid = p.pid().unwrap();
        std::process::Command::new("kill")
            .args([format!("-{sig}"), pid.to_string()])
            .status()
            .unwrap();
        p.join_timeout(Duration::from_secs_f64(10.0)).unwrap();
        assert_eq!(p.exitcode().unwrap(), Some(-sig));
    }
}

/// P09 on Windows, which has no signals: a child ended from outside by `TerminateProcess`
/// reports the exit code its killer chose (the helper uses 1).
#[cfg(windows)]
#[test]
fn p09_external_termination() {
    multiprocess::init_test();
    let _g = common::start();
    let mut p = Process::new(sleeper, (30_000,));
    p.start().unwrap();
    common::kill_and_reap(p.pid().unwrap());
    p.join_timeout(Duration::from_secs_f64(10.0)).unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(1));
}

#[test]
fn p10_join_timeout() {
    multiprocess::init_test();
    let _g = common::start();
    let mut p = Process::new(sleeper, (30_000,));
    assert_eq!(p.exitcode().unwrap(), None);
    assert_eq!(p.pid(), None);
    assert!(!p.is_alive().unwrap());
    p.start().unwrap();
    assert!(matches!(
        p.result_timeout::<()>(Duration::from_millis(50)),
        Err(Error::Timeout)
    ));
    let t = Instant::now();
    p.join_timeout(Duration::from_secs_f64(0.2)).unwrap();
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    let t = Instant::now();
    p.join_timeout(Duration::ZERO).unwrap();
    assert!(t.elapsed() < Duration::from_secs(1));
    assert!(p.is_alive().unwrap());
    assert_eq!(p.exitcode().unwrap(), None);
    p.terminate().unwrap();
    p.join().unwrap();
}

#[cfg(unix)]
fn try_join(mut p: Process) -> String {
    match p.join() {
        Err(e) => {
            let join = e.to_string();
            let start = p
                .start()
                .map_or_else(|e| e.to_string(), |()| "started".into());
            format!("{join} / {start}")
        }
        Ok(()) => "joined".into(),
    }
}

fn default_daemon_flag() -> bool {
    Process::new(nothing, ()).daemon()
}

#[test]
fn p11_misuse_errors() {
    multiprocess::init_test();
    let _g = common::start();
    let mut p = Process::new(nothing, ());
    assert_eq!(
        p.join().unwrap_err().to_string(),
        "can only join a started process"
    );
    p.start().unwrap();
    assert_eq!(
        p.start().unwrap_err().to_string(),
        "cannot start a process twice"
    );
    assert_eq!(
        p.set_daemon(true).unwrap_err().to_string(),
        "process has already started"
    );
    p.join().unwrap();
    // A process object used by a process other than its creator: only a forked child can hold
    // one (a spawned child cannot receive a Process), and Windows has no fork.
    #[cfg(unix)]
    used_by_another_process();
    // The constructor's daemon flag is honoured; the default is the creator's flag.
    assert!(!Process::new(nothing, ()).daemon());
    assert!(Process::new(nothing, ()).with_daemon(true).daemon());
    let mut d = Process::new(default_daemon_flag, ()).with_daemon(true);
    d.start().unwrap();
    assert!(
        d.result::<bool>().unwrap(),
        "a daemon's children default to daemonic"
    );
}

#[cfg(unix)]
fn used_by_another_process() {
    let mut sleeping = Process::new(sleeper, (200,));
    sleeping.start().unwrap();
    let shared = Process::new(nothing, ());
    let mut fork = get_context(multiprocess::StartMethod::Fork)
        .unwrap()
        .process_closure(move || try_join(shared));
    fork.start().unwrap();
    assert_eq!(
        fork.result::<String>().unwrap(),
        "can only join a child process / can only start a process object created by current process"
    );
    sleeping.join().unwrap();
}

fn value_then_slow_exit() -> u32 {
    // Runs at the exit, after the value is reported.
    multiprocess::util::Finalize::new(|| std::thread::sleep(Duration::from_millis(150)), Some(0));
    7
}

/// A daemonic child whose value is in keeps its channel until it has ended: the parent's end
/// closing is what tells a daemonic child that its parent died.
#[test]
fn a_daemonic_child_lives_out_its_exit_after_its_value() {
    multiprocess::init_test();
    let _g = start_all_methods();
    for method in methods() {
        let ctx = get_context(method).unwrap();
        let mut p = ctx.process(value_then_slow_exit, ()).with_daemon(true);
        p.start().unwrap();
        assert_eq!(p.result::<u32>().unwrap(), 7, "{method:?}");
        assert_eq!(p.exitcode().unwrap(), Some(0), "{method:?}");
    }
}

fn start_from_daemon() {
    let mut p = Process::new(nothing, ());
    p.start().unwrap();
}

#[test]
fn p12_daemonic_children_forbidden() {
    multiprocess::init_test();
    let _g = common::start();
    let mut p = Process::new(start_from_daemon, ()).with_daemon(true);
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(1));
    match p.result::<()>() {
        Err(Error::Panicked { message }) => {
            assert!(message.contains("daemonic processes are not allowed to have children"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
#[ignore = "scenario: run by p13_exit_policy"]
fn scenario_p13() {
    multiprocess::init_test();
    if !common::in_scenario() {
        return;
    }
    // Return without joining: the exit policy terminates the daemon and joins the worker.
    daemon_and_worker(10_000, 1_500, 0);
}

/// Starts a daemonic and a non-daemonic sleeper, prints `pids <daemon> <worker>`, then lingers.
/// The start method comes from `SCENARIO_METHOD` (default: the default method).
fn daemon_and_worker(daemon_ms: u64, worker_ms: u64, linger_ms: u64) {
    let make = |ms: u64| match std::env::var("SCENARIO_METHOD") {
        Ok(method) => get_context(method.parse().unwrap())
            .unwrap()
            .process(sleeper, (ms,)),
        Err(_) => Process::new(sleeper, (ms,)),
    };
    let mut daemon = make(daemon_ms).with_daemon(true);
    let mut worker = make(worker_ms);
    daemon.start().unwrap();
    worker.start().unwrap();
    // With forkserver, the server's pid too (it is our child; its children are the others),
    // and the resource tracker's if the server's start started one.
    let server = multiprocess::forkserver::server_pid().map_or(String::new(), |p| format!(" {p}"));
    let tracker = common::own_tracker().map_or(String::new(), |t| format!(" {t}"));
    println!(
        "pids {} {}{server}{tracker}",
        daemon.pid().unwrap(),
        worker.pid().unwrap()
    );
    sleep_ms(linger_ms);
}

/// P13: at exit the daemonic child gets SIGTERM at once and the other child is joined; the
/// program ends after about 1.5 s with status 0.
#[test]
fn p13_exit_policy() {
    multiprocess::init_test();
    let _g = common::start();
    let t = Instant::now();
    let out = common::scenario("scenario_p13").wait_with_output().unwrap();
    let took = t.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took >= Duration::from_millis(1_500), "{took:?}");
    assert!(
        took < Duration::from_secs(8),
        "the daemon was not terminated: {took:?}"
    );
    let pids: Vec<u32> = stdout
        .lines()
        .find_map(|l| l.strip_prefix("pids "))
        .expect(&stdout)
        .split(' ')
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(pids.iter().all(|&p| !common::running(p)));
}

#[test]
fn p14_close_rules() {
    multiprocess::init_test();
    let _g = common::start();
    let p = Process::new(nothing, ());
    p.close().unwrap(); // before start: allowed
    let mut p = Process::new(sleeper, (300,));
    p.start().unwrap();
    assert!(
        p.close()
            .unwrap_err()
            .to_string()
            .starts_with("Cannot close a process while it is still running")
    );
    p.join().unwrap();
    p.close().unwrap();
    let closed = "process object is closed";
    assert_eq!(p.is_alive().unwrap_err().to_string(), closed);
    assert_eq!(p.join().unwrap_err().to_string(), closed);
    assert_eq!(p.terminate().unwrap_err().to_string(), closed);
    assert_eq!(p.exitcode().unwrap_err().to_string(), closed);
    assert_eq!(p.sentinel().unwrap_err().to_string(), closed);
    assert_eq!(p.start().unwrap_err().to_string(), closed);
    assert_eq!(p.pid(), None);
    p.close().unwrap();
}

#[test]
fn p15_sentinel() {
    multiprocess::init_test();
    let _g = common::start();
    let mut quick = Process::new(sleeper, (100,));
    let mut slow = Process::new(sleeper, (30_000,));
    assert_eq!(
        quick.sentinel().unwrap_err().to_string(),
        "process not started"
    );
    quick.start().unwrap();
    slow.start().unwrap();
    let (qs, ss) = (quick.sentinel().unwrap(), slow.sentinel().unwrap());
    assert!(wait(&[&qs, &ss], Some(Duration::ZERO)).unwrap().is_empty());
    assert_eq!(wait(&[&qs, &ss], secs(10.0)).unwrap(), vec![0]);
    assert!(qs.wait_timeout(Duration::ZERO).unwrap());
    // The same handle twice (Windows' WaitForMultipleObjects refuses duplicates by itself).
    let again = qs.clone();
    assert_eq!(wait(&[&qs, &again], secs(1.0)).unwrap(), vec![0, 1]);
    let t = Instant::now();
    assert!(wait(&[&ss], secs(0.2)).unwrap().is_empty());
    assert!(t.elapsed() >= Duration::from_millis(200));
    slow.kill().unwrap();
    assert_eq!(wait(&[&ss], secs(10.0)).unwrap(), vec![0]);
    assert_eq!(wait(&[&qs, &ss], Some(Duration::ZERO)).unwrap(), vec![0, 1]);
    quick.join().unwrap();
    slow.join().unwrap();
}

/// Forks a grandchild that sleeps `ms` and exits; returns its pid at once.
#[cfg(unix)]
fn leave_grandchild(ms: u64) -> u32 {
    // SAFETY: fork in a single-threaded test child; the grandchild only sleeps and _exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        sleep_ms(ms);
        // SAFETY: ends the grandchild without running the parent's exit handlers.
        unsafe { libc::_exit(0) };
    }
    pid as u32
}

/// Starts a grandchild that sleeps `ms` and exits, with `std::process::Command`, which lets the
/// grandchild inherit every inheritable handle; returns its pid at once. (Windows has no
/// zombies: a process that is not waited for leaves nothing behind.)
#[cfg(windows)]
#[allow(clippy::zombie_processes)]
fn leave_grandchild(ms: u64) -> u32 {
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["scenario_sleep", "--exact", "--ignored", "-q"])
        .env("MULTIPROCESS_SCENARIO", ms.to_string())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    child.id()
}

#[test]
#[ignore = "scenario: a grandchild of p16 that sleeps"]
fn scenario_sleep() {
    multiprocess::init_test();
    if let Some(ms) = std::env::var_os("MULTIPROCESS_SCENARIO").and_then(|v| v.into_string().ok()) {
        sleep_ms(ms.parse().unwrap_or(0));
    }
}

#[test]
fn p16_sentinel_not_held_by_descendants() {
    multiprocess::init_test();
    let _g = start_all_methods();
    for ctx in methods() {
        let mut p = get_context(ctx)
            .unwrap()
            .process(leave_grandchild, (3_000,));
        p.start().unwrap();
        let sentinel = p.sentinel().unwrap();
        let t = Instant::now();
        assert!(
            sentinel
                .wait_timeout(Duration::from_secs_f64(10.0))
                .unwrap()
        );
        p.join_timeout(Duration::from_secs_f64(10.0)).unwrap();
        assert!(
            t.elapsed() < Duration::from_millis(1_500),
            "{ctx}: {:?}",
            t.elapsed()
        );
        let grandchild = p.result::<u32>().unwrap();
        assert!(
            t.elapsed() < Duration::from_millis(1_500),
            "{ctx}: {:?}",
            t.elapsed()
        );
        common::kill_and_reap(grandchild);
    }
}

#[test]
fn p17_reaping() {
    multiprocess::init_test();
    let _g = common::start();
    let mut p = Process::new(nothing, ());
    p.start().unwrap();
    let pid = p.pid().unwrap();
    assert!(common::wait_gone(pid, Duration::from_secs(10)));
    assert!(active_children().iter().all(|c| c.pid() != Some(pid)));
    // Zombies are a Unix notion: on Windows an ended process needs no reaping (its object lives
    // while our sentinel handle does, and goes with it).
    #[cfg(unix)]
    assert!(
        common::stat(pid).is_none(),
        "zombie left after active_children()"
    );
    // start() reaps too.
    let mut q = Process::new(nothing, ());
    q.start().unwrap();
    let qpid = q.pid().unwrap();
    assert!(common::wait_gone(qpid, Duration::from_secs(10)));
    let mut r = Process::new(nothing, ());
    r.start().unwrap();
    #[cfg(unix)]
    assert!(common::stat(qpid).is_none(), "zombie left after start()");
    assert_eq!(q.exitcode().unwrap(), Some(0));
    r.join().unwrap();
    drop(p);
}

/// The reaping scan skips our children when the OS says none has ended (issue 19): it must still
/// find the one that has, beside a live one, for every method (the fork server's children are
/// not ours to wait for: their exits come on status pipes).
#[test]
fn p17_reaping_beside_a_live_child() {
    multiprocess::init_test();
    let _g = start_all_methods();
    for method in methods() {
        let ctx = get_context(method).unwrap();
        let mut live = ctx.process(sleeper, (20_000,));
        live.start().unwrap();
        let mut done = ctx.process(nothing, ());
        done.start().unwrap();
        let pid = done.pid();
        assert!(
            done.sentinel()
                .unwrap()
                .wait_timeout(Duration::from_secs(10))
                .unwrap(),
            "{method:?}: the child did not end"
        );
        let active = active_children();
        assert!(
            active.iter().all(|c| c.pid() != pid),
            "{method:?}: an ended child is still listed"
        );
        assert!(
            active.iter().any(|c| c.pid() == live.pid()),
            "{method:?}: the live child is not listed"
        );
        #[cfg(unix)]
        if method != StartMethod::Forkserver {
            assert!(
                common::stat(pid.unwrap()).is_none(),
                "{method:?}: zombie left beside a live child"
            );
        }
        assert_eq!(done.exitcode().unwrap(), Some(0));
        live.kill().unwrap();
        live.join_timeout(Duration::from_secs(10)).unwrap();
        assert!(live.exitcode().unwrap().is_some(), "{method:?}: not killed");
    }
}

/// Where the OS names the child that ended (Linux), `start()` reaps the ones it names; a
/// child it names that is not ours (a `std::process::Command` child nobody waited for yet)
/// sends it to the scan of every child, which still reaps ours that ended.
#[cfg(unix)]
#[test]
fn p17_reaping_beside_a_foreign_zombie() {
    multiprocess::init_test();
    let _g = common::start();
    let mut foreign = std::process::Command::new("true")
        .spawn()
        .expect("run `true`");
    let foreign_pid = foreign.id();
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while common::stat(foreign_pid).is_some_and(|(_, state)| state != 'Z') {
        assert!(std::time::Instant::now() < until, "`true` did not end");
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut done = Process::new(nothing, ());
    done.start().unwrap();
    let pid = done.pid().unwrap();
    assert!(
        done.sentinel()
            .unwrap()
            .wait_timeout(Duration::from_secs(10))
            .unwrap(),
        "the child did not end"
    );
    let mut next = Process::new(nothing, ());
    next.start().unwrap();
    assert!(
        common::stat(pid).is_none(),
        "our ended child is still a zombie after start() beside a foreign one"
    );
    assert_eq!(
        common::stat(foreign_pid).map(|(_, state)| state),
        Some('Z'),
        "the foreign child was reaped by start(), not by its owner"
    );
    assert!(foreign.wait().expect("wait for `true`").success());
    next.join().unwrap();
    assert_eq!(done.exitcode().unwrap(), Some(0));
}

fn my_authkey() -> Vec<u8> {
    current_process().authkey().to_vec()
}

/// What a child knows of itself and of its parent, and its name after it renames itself.
type SelfView = (
    String,
    Vec<u64>,
    bool,
    Vec<u8>,
    Option<(String, u32)>,
    String,
);

fn who_am_i() -> SelfView {
    let me = multiprocess::current_process();
    let seen = (
        me.name(),
        me.ident(),
        me.daemon(),
        me.authkey().to_vec(),
        multiprocess::parent_process().map(|p| (p.name().to_owned(), p.pid())),
    );
    me.set_name("renamed");
    (seen.0, seen.1, seen.2, seen.3, seen.4, me.name())
}

/// Every start method gives the child the identity its parent's record holds at `start()`
/// (name, ident, daemon flag and authkey set after `new`), and its parent's name and pid. A
/// forked child takes its copy of that record as its own (Python's child becomes the
/// `Process` object itself): renaming itself there changes nothing in the parent.
#[test]
fn a_child_knows_itself_and_its_parent_under_every_method() {
    multiprocess::init_test();
    let _g = start_all_methods();
    let me = multiprocess::current_process();
    me.set_name("Parent");
    for method in multiprocess::get_all_start_methods() {
        let ctx = multiprocess::get_context(method).unwrap();
        let mut p = ctx
            .process(who_am_i, ())
            .with_name("given")
            .with_daemon(true)
            .with_authkey(b"child key");
        p.set_name("given later");
        let ident = p.ident().to_vec();
        p.start().unwrap();
        let seen: SelfView = p.result().unwrap();
        assert_eq!(
            seen,
            (
                "given later".to_owned(),
                ident,
                true,
                b"child key".to_vec(),
                Some(("Parent".to_owned(), std::process::id())),
                "renamed".to_owned(),
            ),
            "{method:?}"
        );
        assert_eq!(p.name(), "given later", "{method:?}");
    }
    assert_eq!(me.name(), "Parent");
    me.set_name("MainProcess");
}

#[test]
fn p18_authkey_inheritance() {
    multiprocess::init_test();
    let _g = common::start();
    let key = current_process().authkey();
    assert_eq!(key.len(), 32);
    let mut p = Process::new(my_authkey, ());
    p.start().unwrap();
    assert_eq!(p.result::<Vec<u8>>().unwrap(), key.to_vec());
    let mut q = Process::new(my_authkey, ()).with_authkey(b"secret");
    q.start().unwrap();
    assert_eq!(q.result::<Vec<u8>>().unwrap(), b"secret".to_vec());
    assert_eq!(format!("{key:?}"), "AuthKey(<32 bytes>)");
}

fn watch_parent(path: String) {
    let parent = multiprocess::parent_process().unwrap();
    common::append_line(path.as_ref(), &format!("before {}", parent.is_alive()));
    let ended = !multiprocess::wait(&[&parent], secs(20.0))
        .unwrap()
        .is_empty();
    common::append_line(
        path.as_ref(),
        &format!("after {} {ended}", parent.is_alive()),
    );
}

fn start_watcher(path: String) {
    let mut p = Process::new(watch_parent, (path.clone(),));
    p.start().unwrap();
    common::append_line(path.as_ref(), &p.pid().unwrap().to_string());
    sleep_ms(60_000);
}

#[test]
fn p19_parent_death_seen_by_grandchild() {
    multiprocess::init_test();
    let _g = common::start();
    let path = common::scratch("p19");
    let mut child = Process::new(start_watcher, (path.display().to_string(),));
    child.start().unwrap();
    let lines = common::read_lines(&path, 2, Duration::from_secs(20));
    assert!(lines.contains(&"before true".to_owned()), "{lines:?}");
    let grandchild: u32 = lines
        .iter()
        .find_map(|l| l.parse().ok())
        .expect("grandchild pid");
    child.kill().unwrap();
    child.join().unwrap();
    assert_eq!(child.exitcode().unwrap(), Some(KILLED));
    let lines = common::read_lines(&path, 3, Duration::from_secs(20));
    assert!(lines.contains(&"after false true".to_owned()), "{lines:?}");
    common::reap_orphan(grandchild, Duration::from_secs(10));
}

#[test]
#[ignore = "scenario: run by p20_orphan_policy"]
fn scenario_p20() {
    multiprocess::init_test();
    if !common::in_scenario() {
        return;
    }
    daemon_and_worker(30_000, 30_000, 60_000);
}

/// P20: the owner of a daemonic and a non-daemonic child is SIGKILLed. Our choice: the daemonic
/// child dies with it (within a second); the non-daemonic child survives, reparented, as in
/// Python (daemon means "ends with its parent", nothing else does).
#[test]
fn p20_orphan_policy() {
    multiprocess::init_test();
    let _g = common::start();
    orphan_policy(None);
}

/// P20 with forked children.
#[cfg(unix)]
#[test]
fn p20_orphan_policy_fork() {
    multiprocess::init_test();
    let _g = common::start();
    orphan_policy(Some("fork"));
}

/// P20 with children of a fork server: the daemonic one still dies with the process that
/// started it (not with the server, its parent in the OS's eyes); the server ends too.
#[cfg(unix)]
#[test]
fn p20_orphan_policy_forkserver() {
    multiprocess::init_test();
    let _g = common::start();
    orphan_policy(Some("forkserver"));
}

fn large_value(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// A daemonic child's final report, larger than its channel's buffer: the child waits until the
/// parent reads it (300 ms later) and is not taken for an orphan meanwhile. (On Linux the OS
/// ends a daemonic child when its channel turns readable; kernels that also signal a writer
/// when room appears after it waited would end this one, had it not disarmed first.)
#[test]
fn daemon_reports_more_than_its_channel_holds() {
    multiprocess::init_test();
    let _g = start_all_methods();
    for m in methods() {
        let ctx = get_context(m).unwrap();
        let mut p = ctx.process(large_value, (4 << 20,)).with_daemon(true);
        p.start().unwrap();
        sleep_ms(300);
        assert!(
            p.result::<Vec<u8>>().unwrap() == large_value(4 << 20),
            "{m:?}"
        );
        assert_eq!(p.exitcode().unwrap(), Some(0), "{m:?}");
    }
}

fn orphan_policy(method: Option<&str>) {
    let (mut owner, pids) =
        common::scenario_pids("scenario_p20", method.map(|m| ("SCENARIO_METHOD", m)));
    owner.kill().unwrap();
    owner.wait().unwrap();
    let (daemon, worker) = (pids[0], pids[1]);
    assert!(
        common::wait_gone(daemon, Duration::from_secs(1)),
        "daemon outlived its parent"
    );
    assert!(
        common::running(worker),
        "the non-daemonic child should survive"
    );
    common::kill_and_reap(worker);
    common::reap_orphan(daemon, Duration::from_secs(5));
    // The server, and the scenario's own tracker (both end once the owner is gone).
    for &pid in &pids[2..] {
        common::reap_orphan(pid, Duration::from_secs(5));
    }
}

fn threads_and_stdin() -> (bool, usize) {
    use std::io::Read;
    use std::sync::atomic::{AtomicBool, Ordering};
    let flag = AtomicBool::new(false);
    // A detached thread plays Python's daemon thread: it does not hold the process up.
    std::thread::spawn(|| sleep_ms(20_000));
    let mut input = Vec::new();
    let n = std::io::stdin().read_to_end(&mut input).unwrap();
    // Rust has no non-daemon threads; a target that must wait for its threads scopes them.
    std::thread::scope(|s| {
        s.spawn(|| {
            sleep_ms(500);
            flag.store(true, Ordering::SeqCst);
        });
    });
    (flag.load(Ordering::SeqCst), n)
}

#[test]
fn p21_child_threads_and_stdin() {
    multiprocess::init_test();
    let _g = start_all_methods();
    for ctx in methods() {
        let mut p = get_context(ctx).unwrap().process(threads_and_stdin, ());
        let t = Instant::now();
        p.start().unwrap();
        p.join_timeout(Duration::from_secs_f64(15.0)).unwrap();
        assert!(t.elapsed() >= Duration::from_millis(500));
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{ctx}: {:?}",
            t.elapsed()
        );
        assert_eq!(p.result::<(bool, usize)>().unwrap(), (true, 0), "{ctx}");
    }
}

/// A child of the fork test below: uses the shared-memory tracker (its parent's, inherited).
#[cfg(unix)]
fn shared_memory_round() {
    let shm = multiprocess::SharedMemory::create(None, 64).unwrap();
    shm.unlink().unwrap();
}

/// The pool task of the fork test below (Unix only: Windows has no fork).
#[cfg(unix)]
fn square_u64(x: u64) -> u64 {
    x * x
}

/// Issue 14, item 8: children forked (fork method: `Process` and `Pool`; and forkserver) while
/// other threads of the parent keep using the library's own state (this process's identity,
/// the default start method, the shared-memory tracker's link, the fork server's slot) start,
/// use it, and end normally: nothing the library owns stays locked in a child.
#[cfg(unix)]
#[test]
fn fork_while_other_threads_hold_the_library_locks() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    multiprocess::init_test();
    // The fork server lives as long as the test binary: started once the test has the
    // machine to itself, before the guard counts descriptors.
    let _g = common::start_with(|| {
        multiprocess::forkserver::ensure_running().unwrap();
        // The shared-memory tracker too (forked children use this process's).
        shared_memory_round();
    });
    let stop = Arc::new(AtomicBool::new(false));
    // Two more threads use the fork server: one asks it for children, one keeps checking that
    // it runs (each holds the server's slot meanwhile).
    let served = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let ctx = get_context(multiprocess::StartMethod::Forkserver).unwrap();
            while !stop.load(Ordering::Relaxed) {
                let mut p = ctx.process(nothing, ());
                p.start().unwrap();
                p.join_timeout(Duration::from_secs(20)).unwrap();
                assert_eq!(p.exitcode().unwrap(), Some(0), "a served child");
            }
        })
    };
    let checker = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                multiprocess::forkserver::ensure_running().unwrap();
                std::hint::black_box(multiprocess::forkserver::server_pid());
            }
        })
    };
    let hammers: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let me = current_process();
                    std::hint::black_box((me.name(), me.authkey(), me.daemon()));
                    std::hint::black_box(multiprocess::get_start_method_allow_none());
                    // The shared-memory tracker's link.
                    let shm = multiprocess::SharedMemory::create(None, 64).unwrap();
                    shm.unlink().unwrap();
                }
            })
        })
        .collect();
    for method in [StartMethod::Fork, StartMethod::Forkserver] {
        let ctx = get_context(method).unwrap();
        for i in 0..60 {
            // Served children use shared memory too: with this process's tracker, which the
            // fork server inherited.
            let mut p = if method == StartMethod::Fork && i % 2 == 1 {
                // The fork server's slot: the child starts a served child of its own.
                ctx.process(served_child, ())
            } else {
                ctx.process(shared_memory_round, ())
            };
            p.start().unwrap();
            p.join_timeout(Duration::from_secs(20)).unwrap();
            if p.exitcode().unwrap().is_none() {
                p.kill().unwrap();
                p.join().unwrap();
                panic!("{method} child {i} hung: a library lock stayed held after the fork");
            }
            assert_eq!(p.exitcode().unwrap(), Some(0), "{method} child {i}");
        }
        let pool = multiprocess::Pool::builder()
            .processes(2)
            .maxtasksperchild(1)
            .context(ctx)
            .build()
            .unwrap();
        let squares = pool
            .map_async_with(
                square_u64,
                0..40u64,
                multiprocess::TaskOptions::new().chunksize(1),
            )
            .unwrap();
        let got = squares.get_timeout(Duration::from_secs(60));
        assert_eq!(got.unwrap().len(), 40, "{method} pool");
    }
    stop.store(true, Ordering::Relaxed);
    for h in hammers {
        h.join().unwrap();
    }
    served.join().unwrap();
    checker.join().unwrap();
}

/// In a forked child: starts a child of the fork server (the child's own: the parent's server
/// is not inherited) and waits for it.
#[cfg(unix)]
fn served_child() {
    let mut p = get_context(multiprocess::StartMethod::Forkserver)
        .unwrap()
        .process(nothing, ());
    p.start().unwrap();
    p.join_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(0));
}

/// `result()` before `start()` says so in its own words, not `join`'s.
#[test]
fn result_before_start_says_so() {
    multiprocess::init_test();
    let _g = common::start();
    let p = Process::new(nothing, ());
    match p.result::<()>() {
        Err(multiprocess::Error::State(m)) => assert!(m.contains("not started"), "{m}"),
        other => panic!("{other:?}"),
    }
}

/// Registers finalizers that print `tag: ...` lines: two of priority 0, one of 10, one of -5,
/// one cancelled, one without a priority, and one called at once.
fn register_finalizers(tag: String) {
    use multiprocess::util::Finalize;
    let line = |what: &'static str| {
        let tag = tag.clone();
        move || println!("{tag}: {what}")
    };
    Finalize::new(line("low -5"), Some(-5));
    Finalize::new(line("zero first"), Some(0));
    Finalize::new(line("high 10"), Some(10));
    Finalize::new(line("zero second"), Some(0));
    let cancelled = Finalize::new(line("cancelled"), Some(100));
    cancelled.cancel();
    assert!(!cancelled.still_active());
    let no_priority = Finalize::new(line("no priority"), None);
    assert!(no_priority.still_active());
    let once = Finalize::new(line("called once"), Some(50));
    assert!(once.call());
    assert!(!once.call());
    println!("{tag}: body done");
}

fn finalize_methods() -> Vec<StartMethod> {
    methods()
        .into_iter()
        .filter(|m| *m != StartMethod::Forkserver)
        .collect()
}

fn print_later(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
    println!("late child done");
}

#[test]
#[ignore = "scenario: run by finalizers_run_at_exit_by_priority"]
fn scenario_finalize() {
    multiprocess::init_test();
    if !common::in_scenario() {
        return;
    }
    register_finalizers("main".into());
    // Not the fork server here: it outlives this program a moment, and the test's guard
    // would find it unreaped.
    for method in finalize_methods() {
        let mut p = get_context(method)
            .unwrap()
            .process(register_finalizers, (method.to_string(),));
        p.start().unwrap();
        p.join_timeout(Duration::from_secs(60)).unwrap();
        assert_eq!(p.exitcode().unwrap(), Some(0));
    }
    // Still running at exit: joined between the finalizers of priority >= 0 and the others.
    Process::new(print_later, (300u64,)).start().unwrap();
}

/// Python's `util.Finalize`: at exit, the finalizers with a priority run once each, highest
/// first (later first among equals), those below 0 only after the children are joined; in
/// children too, and a forked child runs none of its parent's.
#[test]
fn finalizers_run_at_exit_by_priority() {
    multiprocess::init_test();
    let _g = common::start();
    let child = common::scenario("scenario_finalize");
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains(": ") || l.starts_with("late"))
        .collect();
    let mut tags: Vec<String> = vec!["main".into()];
    tags.extend(finalize_methods().iter().map(|m| m.to_string()));
    for tag in &tags {
        let mine: Vec<&str> = lines
            .iter()
            .filter_map(|l| l.strip_prefix(&format!("{tag}: ")))
            .collect();
        assert_eq!(
            mine,
            [
                "called once",
                "body done",
                "high 10",
                "zero second",
                "zero first",
                "low -5"
            ],
            "{tag}:\n{stdout}"
        );
    }
    let at = |l: &str| lines.iter().position(|x| *x == l).expect(l);
    assert!(at("main: zero first") < at("late child done"), "{stdout}");
    assert!(at("late child done") < at("main: low -5"), "{stdout}");
}

fn panics_in_target() -> u32 {
    panic!("deliberate panic in a target")
}

fn panics_in_task(x: u32) -> u32 {
    panic!("deliberate panic in task {x}")
}

#[test]
#[ignore = "scenario: run by panics_carry_the_remote_backtrace"]
fn scenario_remote_backtrace() {
    multiprocess::init_test();
    if !common::in_scenario() {
        return;
    }
    let mut p = Process::new(panics_in_target, ());
    p.start().unwrap();
    match p.result::<u32>() {
        Err(Error::Panicked { message }) => println!("target={message:?}"),
        other => println!("target unexpected {other:?}"),
    }
    let pool = multiprocess::Pool::new(1).unwrap();
    match pool.apply(panics_in_task, (7,)) {
        Err(Error::Panicked { message }) => println!("task={message:?}"),
        other => println!("task unexpected {other:?}"),
    }
    pool.close();
    pool.join().unwrap();
}

/// Python's remote traceback: with `RUST_BACKTRACE=1` a target's and a pool task's panic
/// come back with the child's backtrace after the message (naming the panicking function);
/// with `RUST_BACKTRACE=0`, the message alone.
#[test]
fn panics_carry_the_remote_backtrace() {
    multiprocess::init_test();
    let _g = common::start();
    for setting in ["1", "0"] {
        let out = common::scenario_with(
            "scenario_remote_backtrace",
            Some(("RUST_BACKTRACE", setting)),
        )
        .wait_with_output()
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for (key, text, function) in [
            (
                "target=",
                "deliberate panic in a target",
                "panics_in_target",
            ),
            ("task=", "deliberate panic in task 7", "panics_in_task"),
        ] {
            let line = stdout
                .lines()
                .find(|l| l.starts_with(key))
                .unwrap_or_else(|| panic!("no {key} line: {stdout}"));
            let heading = "\\n\\nRemote backtrace:\\n";
            if setting == "1" {
                let expected = format!("{key}\"{text}{heading}");
                assert!(line.starts_with(&expected), "{line}");
                assert!(line.contains(function), "{line}");
            } else {
                assert_eq!(line, format!("{key}\"{text}\""));
            }
        }
    }
}

/// In a forked child, the parent's other children are another process's: their objects (here
/// one the closure captured) act as closed, and the child lets go of its copy of the parent's
/// channel to them without touching them (the parent still sees that child run and joins it).
#[cfg(unix)]
#[test]
fn forked_child_sees_its_siblings_closed() {
    multiprocess::init_test();
    let _g = common::start();
    let ctx = get_context(StartMethod::Fork).unwrap();
    let mut sibling = ctx.process(sleeper, (30_000,));
    sibling.start().unwrap();
    let sibling = std::sync::Arc::new(std::sync::Mutex::new(sibling));
    let seen = std::sync::Arc::clone(&sibling);
    let mut p = ctx.process_closure(move || {
        let seen = seen.lock().unwrap();
        let code = seen.exitcode().map_err(|e| e.to_string());
        let ended = seen.terminate().map_err(|e| e.to_string());
        format!("{code:?} {ended:?}")
    });
    p.start().unwrap();
    let said: String = p.result().unwrap();
    assert_eq!(
        said,
        "Err(\"process object is closed\") Err(\"process object is closed\")"
    );
    let sibling = sibling.lock().unwrap();
    assert!(sibling.is_alive().unwrap());
    sibling.terminate().unwrap();
    sibling.join().unwrap();
    assert_eq!(sibling.exitcode().unwrap(), Some(TERMINATED));
}
