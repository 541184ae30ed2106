//! The forkserver start method (Unix): children forked by a server process that bootstrap as
//! spawned ones, with every rule of a spawned child; the server's own life.
#![cfg(unix)]

mod common;

use std::time::Duration;

use multiprocess::{Connection, Error, current_process, get_context, parent_process, pipe};

fn ctx() -> multiprocess::Context {
    get_context(multiprocess::StartMethod::Forkserver).unwrap()
}

/// Tests start the server before the guard counts descriptors (it lives as long as the test
/// binary); its children are counted as ours.
fn start() -> common::Guard {
    common::start_with(|| multiprocess::forkserver::ensure_running().unwrap())
}

fn square(x: u64) -> u64 {
    x * x
}

fn whoami() -> (String, Option<u32>, u32, Option<String>) {
    (
        current_process().name(),
        parent_process().map(|p| p.pid()),
        std::process::id(),
        multiprocess::get_start_method_allow_none().map(|m| m.name().to_owned()),
    )
}

fn panics() {
    panic!("boom in a served child");
}

fn exits(code: i32) {
    multiprocess::exit(code);
}

fn exits_after(code: i32, ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
    multiprocess::exit(code);
}

fn sleeper(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn echo(conn: Connection) -> usize {
    let mut n = 0;
    while let Ok(m) = conn.recv_bytes() {
        if m.is_empty() {
            break;
        }
        conn.send_bytes(&m).unwrap();
        n += 1;
    }
    n
}

fn nested() -> u64 {
    let mut p = ctx().process(square, (9u64,));
    p.start().unwrap();
    p.result::<u64>().unwrap()
}

/// Everything of a spawned child: the value, the name, the parent (us, not the server), the
/// method inherited, exit codes (exit, panic, kill, terminate), join with a timeout, a
/// connection among the arguments, children of its own.
#[test]
fn served_children_are_spawned_children_without_exec() {
    multiprocess::init_test();
    let _g = start();
    let server = multiprocess::forkserver::server_pid().unwrap();

    let mut p = ctx().process(square, (12u64,));
    p.start().unwrap();
    assert_eq!(p.result::<u64>().unwrap(), 144);
    assert_eq!(p.exitcode().unwrap(), Some(0));

    let mut p = ctx().process(whoami, ());
    p.start().unwrap();
    let (name, parent, pid, method) = p
        .result::<(String, Option<u32>, u32, Option<String>)>()
        .unwrap();
    assert!(name.starts_with("ForkServerProcess-"), "{name}");
    assert_eq!(name, p.name());
    assert_eq!(parent, Some(std::process::id()));
    assert_eq!(Some(pid), p.pid());
    assert_ne!(pid, server);
    assert_eq!(method.as_deref(), Some("forkserver"));

    let mut p = ctx().process(exits, (3,));
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(3));

    let mut p = ctx().process(panics, ());
    p.start().unwrap();
    match p.result::<()>() {
        Err(Error::Panicked { message }) => assert_eq!(
            message.split("\n\nRemote backtrace:\n").next(),
            Some("boom in a served child")
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(p.exitcode().unwrap(), Some(1));

    for (signal, code) in [("kill", -9), ("terminate", -15)] {
        let mut p = ctx().process(sleeper, (30_000u64,));
        p.start().unwrap();
        p.join_timeout(Duration::from_millis(50)).unwrap();
        assert!(p.is_alive().unwrap());
        assert_eq!(p.exitcode().unwrap(), None);
        if signal == "kill" {
            p.kill().unwrap();
        } else {
            p.terminate().unwrap();
        }
        p.join().unwrap();
        assert_eq!(p.exitcode().unwrap(), Some(code), "{signal}");
        assert!(!p.is_alive().unwrap());
        // Signalling an ended process does nothing.
        p.kill().unwrap();
    }

    let (a, b) = pipe().unwrap();
    let mut p = ctx().process(echo, (b,));
    p.start().unwrap();
    for m in [&b"one"[..], b"two"] {
        a.send_bytes(m).unwrap();
        assert_eq!(a.recv_bytes().unwrap(), m);
    }
    a.send_bytes(b"").unwrap();
    assert_eq!(p.result::<usize>().unwrap(), 2);

    let mut p = ctx().process(nested, ());
    p.start().unwrap();
    assert_eq!(p.result::<u64>().unwrap(), 81);
}

/// Threads start served children at once; each gets its own.
#[test]
fn served_children_from_many_threads() {
    multiprocess::init_test();
    let _g = start();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            s.spawn(move || {
                for i in 0..5u64 {
                    let x = t * 100 + i;
                    let mut p = ctx().process(square, (x,));
                    p.start().unwrap();
                    assert_eq!(p.result::<u64>().unwrap(), x * x);
                }
            });
        }
    });
}

fn own_pid() -> u32 {
    std::process::id()
}

/// The server's answers (each child's pid) are read when a pid is asked for, in any order,
/// from any thread: each process gets its own child's. More starts than may wait for an
/// answer at once (64): the later ones wait for the earlier answers.
#[test]
fn pids_asked_for_in_any_order_are_each_their_own() {
    multiprocess::init_test();
    let _g = start();
    let mut ps: Vec<_> = (0..80)
        .map(|_| {
            let mut p = ctx().process(own_pid, ());
            p.start().unwrap();
            p
        })
        .collect();
    // The last first: the answers before it are read on the way and kept for the others.
    let mut pids: Vec<_> = ps.iter().rev().map(|p| p.pid().unwrap()).collect();
    pids.reverse();
    std::thread::scope(|s| {
        for (p, pid) in ps.iter_mut().zip(&pids) {
            s.spawn(move || assert_eq!(p.result::<u32>().unwrap(), *pid));
        }
    });
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 80);
}

fn sum_and_echo(bytes: Vec<u8>, conn: Connection) -> u64 {
    conn.send_bytes(&bytes[..8]).unwrap();
    bytes.iter().map(|&b| u64::from(b)).sum()
}

/// A bootstrap of each size a start sends its own way: a small one written before the child
/// exists, a middle one after, a large one by a helper thread; each with a handle.
#[test]
fn bootstraps_of_every_size_with_handles() {
    multiprocess::init_test();
    let _g = start();
    for len in [1000usize, 16 << 10, 200 << 10] {
        let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let want: u64 = bytes.iter().map(|&b| u64::from(b)).sum();
        let (a, b) = pipe().unwrap();
        let mut p = ctx().process(sum_and_echo, (bytes.clone(), b));
        p.start().unwrap();
        assert_eq!(a.recv_bytes().unwrap(), &bytes[..8], "{len}");
        assert_eq!(p.result::<u64>().unwrap(), want, "{len}");
    }
}

/// Sends each its index; returns how many, and the descriptors this process holds (Linux).
fn echo_each(conns: Vec<Connection>) -> (usize, usize) {
    for (i, conn) in conns.iter().enumerate() {
        conn.send(&i).unwrap();
    }
    #[cfg(target_os = "linux")]
    let fds = open_fds();
    #[cfg(not(target_os = "linux"))]
    let fds = 0;
    (conns.len(), fds)
}

/// A bootstrap with more handles than the fork server keeps room for below its children's
/// status pipes (they travel with the request, and the server holds them at its fork): each
/// reaches the child (300 of them: over the 250 one message carries, too), and the child holds
/// as many more descriptors as a spawned child given the same does (its running siblings'
/// status pipes not among them).
#[test]
fn a_bootstrap_with_many_handles() {
    multiprocess::init_test();
    let _g = start();
    let mut sleepers: Vec<_> = (0..3)
        .map(|_| {
            let mut p = ctx().process(sleeper, (3_000,));
            p.start().unwrap();
            p
        })
        .collect();
    let mut more = Vec::new();
    for method in ["spawn", "forkserver"] {
        let ctx = get_context(method.parse().unwrap()).unwrap();
        let mut alone = ctx.process(echo_each, (Vec::new(),));
        alone.start().unwrap();
        let (_, without) = alone.result::<(usize, usize)>().unwrap();
        let (mine, yours): (Vec<_>, Vec<_>) = (0..150).map(|_| pipe().unwrap()).unzip();
        let mut p = ctx.process(echo_each, (yours,));
        p.start().unwrap();
        for (i, conn) in mine.iter().enumerate() {
            assert_eq!(conn.recv::<usize>().unwrap(), i, "{method}");
        }
        let (n, with) = p.result::<(usize, usize)>().unwrap();
        assert_eq!(n, 150, "{method}");
        more.push(with - without);
    }
    if cfg!(target_os = "linux") {
        assert_eq!(
            more[1], more[0],
            "descriptors more with 150 connections: served, spawned"
        );
    }
    for p in &mut sleepers {
        p.kill().unwrap();
        p.join().unwrap();
        assert_eq!(p.exitcode().unwrap(), Some(-9));
    }
}

/// Many served children ending together, in another order than they started: the server is
/// woken once for several ends and reaps them all, and each status reaches its own `Process`.
#[test]
fn many_served_children_end_at_once() {
    multiprocess::init_test();
    let _g = start();
    let mut ps: Vec<_> = (0..48u64)
        .map(|i| ctx().process(exits_after, ((i % 7) as i32, (47 - i) % 5)))
        .collect();
    for p in ps.iter_mut() {
        p.start().unwrap();
    }
    for (i, p) in ps.iter_mut().enumerate() {
        p.join().unwrap();
        assert_eq!(p.exitcode().unwrap(), Some((i % 7) as i32), "child {i}");
    }
}

/// The resource tracker a process uses after creating and unlinking a segment.
fn tracker_after_shared_memory() -> Option<u32> {
    let shm = multiprocess::SharedMemory::create(None, 64).unwrap();
    shm.unlink().unwrap();
    multiprocess::shared_memory::resource_tracker_process().map(|(pid, _)| pid)
}

/// A served child registers shared memory with this process's resource tracker, which the
/// fork server inherited (as in CPython), instead of starting one of its own (which outlived
/// the child as an orphan).
#[test]
fn served_children_share_the_resource_tracker() {
    multiprocess::init_test();
    let _g = start();
    let mine = multiprocess::shared_memory::resource_tracker_process().map(|(pid, _)| pid);
    assert!(mine.is_some(), "the fork server started without a tracker");
    for _ in 0..3 {
        let mut p = ctx().process(tracker_after_shared_memory, ());
        p.start().unwrap();
        assert_eq!(p.result::<Option<u32>>().unwrap(), mine);
    }
}

/// A pool whose workers are served children.
#[test]
fn pool_with_forkserver_workers() {
    multiprocess::init_test();
    let _g = start();
    let pool = multiprocess::Pool::builder()
        .processes(2)
        .context(ctx())
        .build()
        .unwrap();
    let squares: Vec<u64> = pool.map(square, 0..100u64).unwrap();
    assert_eq!(squares, (0..100u64).map(|x| x * x).collect::<Vec<_>>());
    pool.close();
    pool.join().unwrap();
}

#[test]
#[ignore = "scenario: run by a_killed_server_is_replaced"]
fn scenario_server_killed() {
    multiprocess::init_test();
    if !common::in_scenario() {
        return;
    }
    let mut p = ctx().process(square, (3u64,));
    p.start().unwrap();
    assert_eq!(p.result::<u64>().unwrap(), 9);
    let first = multiprocess::forkserver::server_pid().unwrap();
    // A child still running when the server dies: its status can no longer come (Python's
    // 255), while the child itself goes on.
    let mut running = ctx().process(sleeper, (1_000u64,));
    running.start().unwrap();
    // The start does not wait for the server's fork; the pid does.
    let running_pid = running.pid().unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(first as i32, libc::SIGKILL) };
    running.join_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(running.exitcode().unwrap(), Some(255));
    let mut p = ctx().process(square, (4u64,));
    p.start().unwrap();
    assert_eq!(p.result::<u64>().unwrap(), 16);
    let second = multiprocess::forkserver::server_pid().unwrap();
    assert_ne!(first, second);
    // The dead server was reaped, not left a zombie.
    assert!(common::stat(first).is_none_or(|(_, state)| state != 'Z'));
    // Starts the server has not answered when it dies (a start does not wait for the server's
    // fork): stopped, it takes none of them; killed, it forks none. Each ends with Python's
    // 255, without a pid or a value, and none hangs.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(second as i32, libc::SIGSTOP) };
    let mut unanswered: Vec<_> = (0..8)
        .map(|_| {
            let mut p = ctx().process(own_pid, ());
            p.start().unwrap();
            p
        })
        .collect();
    // One of them given a connection: the bootstrap's handles travel with the request, so the
    // server's end frees them, and the other end sees its end without a join (the starting
    // process keeps the child's end of the channel, which carries bytes alone).
    let (mine, yours) = pipe().unwrap();
    let mut handed = ctx().process(echo, (yours,));
    handed.start().unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(second as i32, libc::SIGKILL) };
    assert!(
        mine.poll(Some(Duration::from_secs(10))).unwrap(),
        "a connection given to a child never forked stays open"
    );
    assert!(matches!(mine.recv_bytes(), Err(Error::Eof)));
    unanswered.push(handed);
    for p in &mut unanswered {
        p.join_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(p.exitcode().unwrap(), Some(255));
        assert_eq!(p.pid(), None);
        assert!(p.result::<u32>().is_err());
    }
    // The tracker this scenario started, if the test binary had none to hand down: it ends
    // after the scenario, an orphan too.
    let tracker = common::own_tracker().map_or(String::new(), |t| format!(" {t}"));
    println!("replaced {first} {second} {running_pid}{tracker}");
}

/// A server that dies is replaced by the next start.
#[test]
fn a_killed_server_is_replaced() {
    multiprocess::init_test();
    let _g = common::start();
    let out = common::scenario("scenario_server_killed")
        .wait_with_output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pids: Vec<u32> = stdout
        .lines()
        .find_map(|l| l.strip_prefix("replaced "))
        .expect(&stdout)
        .split(' ')
        .map(|p| p.parse().unwrap())
        .collect();
    // The second server ended with the scenario; the orphaned sleeper and the scenario's own
    // tracker (if it started one) end by themselves.
    for pid in pids {
        common::reap_orphan(pid, Duration::from_secs(10));
    }
}

#[test]
#[ignore = "scenario: run by the_server_ends_with_its_process_not_with_a_forked_child"]
fn scenario_server_and_forked_child() {
    multiprocess::init_test();
    if !common::in_scenario() {
        return;
    }
    multiprocess::forkserver::ensure_running().unwrap();
    let server = multiprocess::forkserver::server_pid().unwrap();
    let mut forked = get_context(multiprocess::StartMethod::Fork)
        .unwrap()
        .process(sleeper, (30_000u64,));
    forked.start().unwrap();
    let tracker = common::own_tracker().map_or(String::new(), |t| format!(" {t}"));
    println!("pids {} {server}{tracker}", forked.pid().unwrap());
    std::thread::sleep(Duration::from_secs(60));
}

/// The fork server ends when the process that started it dies, even while a child that
/// process forked runs on: the child lets go of its copies of the server's channels.
#[test]
fn the_server_ends_with_its_process_not_with_a_forked_child() {
    multiprocess::init_test();
    let _g = common::start();
    let (mut owner, pids) = common::scenario_pids("scenario_server_and_forked_child", None);
    owner.kill().unwrap();
    owner.wait().unwrap();
    let (forked, server) = (pids[0], pids[1]);
    assert!(
        common::wait_gone(server, Duration::from_secs(5)),
        "the fork server outlived the process that started it"
    );
    assert!(common::running(forked), "the forked child should survive");
    common::kill_and_reap(forked);
    for &pid in &pids[1..] {
        common::reap_orphan(pid, Duration::from_secs(5));
    }
}

/// The sockets a child holds (Linux, from /proc).
#[cfg(target_os = "linux")]
fn open_sockets() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:"))
        })
        .count()
}

/// A served child holds what a spawned one holds (Python's TestCloseFds): of sockets, only its
/// own channel; the server's channel to its parent, inherited by the fork, is cut.
#[cfg(target_os = "linux")]
#[test]
fn served_children_hold_only_their_own_channel() {
    multiprocess::init_test();
    let _g = start();
    for method in ["spawn", "forkserver"] {
        let mut p = get_context(method.parse().unwrap())
            .unwrap()
            .process(open_sockets, ());
        p.start().unwrap();
        assert_eq!(p.result::<usize>().unwrap(), 1, "{method}");
    }
}

/// The descriptors this process has open.
#[cfg(target_os = "linux")]
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Issue 14, item 9 (CPython's test_child_fd_inflation): a served child holds exactly the
/// descriptors a spawned child holds, however many of its siblings are running (the server
/// keeps no copy of their sentinels across a fork).
#[cfg(target_os = "linux")]
#[test]
fn served_children_hold_no_siblings_descriptors() {
    multiprocess::init_test();
    let _g = start();
    let spawned = get_context(multiprocess::StartMethod::Spawn).unwrap();
    let mut alone = spawned.process(open_fds, ());
    alone.start().unwrap();
    let want = alone.result::<usize>().unwrap();
    alone.join().unwrap();
    let mut sleepers: Vec<_> = (0..5)
        .map(|_| {
            let mut p = ctx().process(sleeper, (3_000,));
            p.start().unwrap();
            p
        })
        .collect();
    let mut served = ctx().process(open_fds, ());
    served.start().unwrap();
    let got = served.result::<usize>().unwrap();
    served.join().unwrap();
    for p in &mut sleepers {
        p.kill().unwrap();
        p.join().unwrap();
    }
    assert_eq!(
        got, want,
        "a served child with 5 running siblings holds {got} descriptors, a spawned one {want}"
    );
}

/// A served child's end of its channel, which the starting process keeps while the child runs
/// (so that the child's exit is not the socket's last close: see `sys::ProcHandle::served`),
/// is closed at its join with our end, whose reports are all read by then: a joined process
/// holds its sentinel alone, as Python's does, and nothing once dropped.
#[cfg(target_os = "linux")]
#[test]
fn a_joined_served_child_holds_its_sentinel_alone() {
    multiprocess::init_test();
    let _g = start();
    let before = open_fds();
    let mut p = ctx().process(square, (7,));
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(p.result::<u64>().unwrap(), 49);
    assert_eq!(open_fds(), before + 1, "after the join: the sentinel only");
    drop(p);
    assert_eq!(open_fds(), before, "after the drop: nothing");
}
