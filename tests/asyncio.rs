//! The `tokio` feature's async forms, with real processes: `Process::join_async`,
//! `Connection::{send,recv,send_bytes,recv_bytes}_async`, `AsyncResult` as a future,
//! `Listener::accept_async`, `wait_async`, `imap` as a `Stream`. Every
//! await runs under a hard time limit (`tokio::time::timeout`), and every test under the leak
//! guard (the runtime is made after the guard and dropped before it, so its own descriptors
//! are not counted).
#![cfg(feature = "tokio")]

mod common;

use std::future::{Future, IntoFuture};
use std::time::{Duration, Instant};

use multiprocess::{Process, Result};

/// The hard limit on any one await in these tests.
const LIMIT: Duration = Duration::from_secs(30);

/// A single-threaded runtime: it proves that nothing here needs a second thread.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Awaits `f` under [`LIMIT`], failing the test past it.
async fn limited<T>(f: impl IntoFuture<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("an await went past the test's time limit")
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn exit_with(code: i32) {
    multiprocess::exit(code);
}

/// This process's resident memory in bytes (Linux; 0 elsewhere, where it is not checked).
#[cfg(unix)]
fn resident_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// The ids of this process's threads (Linux; empty elsewhere, where nothing is checked).
fn threads() -> std::collections::BTreeSet<u32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Default::default();
    };
    tasks
        .flatten()
        .filter_map(|task| task.file_name().to_str()?.parse().ok())
        .collect()
}

/// The names of the threads started since `before` and still running, but libtest's: it starts
/// a thread per test whenever another test ends, which may be while a test counts (tests that
/// need no guard do not wait for it), and names it after its test (`snake_case`, another than
/// this one's). A new thread carries the name of the thread that started it until it names
/// itself, so a name is read once it differs from the main thread's and this one's (or after
/// 200 ms: an unnamed thread started from here keeps this thread's name, and counts).
fn new_threads(before: &std::collections::BTreeSet<u32>) -> Vec<String> {
    let comm = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let (main, mine) = (comm("/proc/self/comm"), comm("/proc/thread-self/comm"));
    let libtest = |name: &str| {
        name != mine
            && name
                .trim_end()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    threads()
        .difference(before)
        .filter_map(|tid| {
            let path = format!("/proc/self/task/{tid}/comm");
            let deadline = Instant::now() + Duration::from_millis(200);
            let mut name = comm(&path);
            while (name == main || name == mine) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
                name = comm(&path);
            }
            // Empty: it ended meanwhile.
            (!name.is_empty() && !libtest(&name)).then(|| name.trim_end().to_owned())
        })
        .collect()
}

#[test]
fn join_async_waits_for_a_child_that_exits() -> Result<()> {
    multiprocess::init_test();
    let _g = common::start();
    let rt = runtime();
    let mut p = Process::new(exit_with, (7,));
    p.start()?;
    rt.block_on(limited(p.join_async(None)))?;
    assert_eq!(p.exitcode()?, Some(7));
    assert!(!p.is_alive()?);
    Ok(())
}

#[test]
fn join_async_of_a_killed_child_and_its_timeout() -> Result<()> {
    multiprocess::init_test();
    let _g = common::start();
    let rt = runtime();
    let mut p = Process::new(sleep_ms, (60_000,));
    p.start()?;
    rt.block_on(async {
        // The timeout passes without error, the child still running.
        let t = Instant::now();
        limited(p.join_async(Some(Duration::from_millis(100)))).await?;
        assert!(t.elapsed() >= Duration::from_millis(100));
        assert_eq!(p.exitcode()?, None);
        // A cancelled join (dropped mid-wait) leaves the child alone.
        let cancelled = tokio::time::timeout(Duration::from_millis(50), p.join_async(None)).await;
        assert!(cancelled.is_err());
        assert!(p.is_alive()?);
        p.kill()?;
        limited(p.join_async(None)).await
    })?;
    #[cfg(unix)]
    assert_eq!(p.exitcode()?, Some(-9));
    #[cfg(windows)]
    assert_eq!(p.exitcode()?, Some(-15));
    Ok(())
}

/// Many joins at once on one thread: each is a registration with the reactor, not a thread
/// (counted on Linux through /proc/self/task).
#[test]
fn many_concurrent_joins_on_one_thread() -> Result<()> {
    multiprocess::init_test();
    let _g = common::start();
    let rt = runtime();
    let mut children = Vec::new();
    for i in 0..16u64 {
        let mut p = Process::new(sleep_ms, (200 + 10 * i,));
        p.start()?;
        children.push(p);
    }
    let before = threads();
    let peak = rt.block_on(async {
        let joins: Vec<_> = children.iter().map(|p| p.join_async(None)).collect();
        let local = tokio::task::LocalSet::new();
        let handles: Vec<_> = joins.into_iter().map(|j| local.spawn_local(j)).collect();
        let mut peak = Vec::new();
        local
            .run_until(async {
                // Let every join start waiting, then look at the threads.
                tokio::time::sleep(Duration::from_millis(50)).await;
                peak = new_threads(&before);
                for h in handles {
                    limited(h).await.expect("join task")?;
                }
                Ok::<_, multiprocess::Error>(())
            })
            .await?;
        Ok::<_, multiprocess::Error>(peak)
    })?;
    assert_eq!(peak, Vec::<String>::new(), "a join used a thread");
    for p in &children {
        assert_eq!(p.exitcode()?, Some(0));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Connections

use multiprocess::{Connection, Error, pipe};

/// Echoes every message back until end of file; the number echoed.
fn echo(conn: Connection) -> u32 {
    let mut n = 0;
    while let Ok(m) = conn.recv_bytes() {
        if conn.send_bytes(&m).is_err() {
            break;
        }
        n += 1;
    }
    n
}

/// A message of `len` bytes, different at every offset that matters.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ seed ^ (i >> 16) as u8)
        .collect()
}

#[test]
fn async_send_and_recv_with_a_child_small_and_large() -> Result<()> {
    multiprocess::init_test();
    let _g = common::start();
    let rt = runtime();
    let (ours, theirs) = pipe()?;
    let mut p = Process::new(echo, (theirs,));
    p.start()?;
    rt.block_on(async {
        for i in 0..100u32 {
            limited(ours.send_bytes_async(&i.to_le_bytes())).await?;
            assert_eq!(limited(ours.recv_bytes_async()).await?, i.to_le_bytes());
        }
        // Serde values, both ways through the echo.
        limited(ours.send_async(&("hello", 42u64))).await?;
        assert_eq!(
            limited(ours.recv_async::<(String, u64)>()).await?,
            ("hello".to_string(), 42)
        );
        // 16 MiB, larger than the socket's buffer, each way: the async send waits for room,
        // the child's blocking send offers a copy between processes, which the async receive
        // declines (the payload follows in the stream).
        for seed in [1u8, 2] {
            let big = pattern(16 << 20, seed);
            limited(ours.send_bytes_async(&big)).await?;
            let back = limited(ours.recv_bytes_async()).await?;
            assert!(back == big, "16 MiB came back changed");
        }
        Ok::<_, Error>(())
    })?;
    drop(ours);
    drop(rt);
    p.join_timeout(LIMIT)?;
    assert_eq!(p.result_timeout::<u32>(LIMIT)?, 103);
    Ok(())
}

/// Sends two messages at once, then ends.
fn two_at_once(conn: Connection) {
    conn.send_bytes(b"first").unwrap();
    conn.send_bytes(b"second").unwrap();
}

/// Two messages that arrive together: the first receive reads both (read-ahead), and the
/// second is taken from the buffer, though the descriptor announces nothing any more.
#[test]
fn read_ahead_messages_are_not_waited_for() -> Result<()> {
    multiprocess::init_test();
    let _g = common::start();
    let rt = runtime();
    let (ours, theirs) = pipe()?;
    let mut p = Process::new(two_at_once, (theirs,));
    p.start()?;
    p.join_timeout(LIMIT)?;
    assert_eq!(p.exitcode()?, Some(0));
    rt.block_on(async {
        assert_eq!(limited(ours.recv_bytes_async()).await?, b"first");
        // Both are in the read-ahead buffer now; the stream holds only the end of file.
        assert!(ours.poll(Some(Duration::ZERO))?);
        assert_eq!(limited(ours.recv_bytes_async()).await?, b"second");
        assert!(matches!(
            limited(ours.recv_bytes_async()).await,
            Err(Error::Eof)
        ));
        Ok::<_, Error>(())
    })?;
    Ok(())
}

/// A receive dropped while half a message has arrived loses nothing: the next receive
/// returns the whole message (and the stream stays on its message boundaries).
#[cfg(unix)]
#[test]
fn a_cancelled_recv_loses_nothing() -> Result<()> {
    use std::io::Write;
    use std::os::fd::AsFd;
    multiprocess::init_test();
    let _g = common::start();
    let rt = runtime();
    let (ours, theirs) = pipe()?;
    // Write a frame by hand, half now and half later, through a duplicate of the descriptor.
    let mut raw = std::fs::File::from(theirs.as_fd().try_clone_to_owned().unwrap());
    let message = pattern(300_000, 9);
    let mut frame = (message.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&message);
    let (half, rest) = frame.split_at(frame.len() / 2);
    raw.write_all(half).unwrap();
    rt.block_on(async {
        let cancelled =
            tokio::time::timeout(Duration::from_millis(100), ours.recv_bytes_async()).await;
        assert!(cancelled.is_err(), "half a message was returned");
        raw.write_all(rest).unwrap();
        theirs.send_bytes(b"after")?;
        assert!(limited(ours.recv_bytes_async()).await? == message);
        assert_eq!(limited(ours.recv_bytes_async()).await?, b"after");
        // And a cancelled receive that had nothing leaves nothing to lose either.
        let idle = tokio::time::timeout(Duration::from_millis(20), ours.recv_bytes_async()).await;
        assert!(idle.is_err());
        theirs.send_bytes(b"last")?;
        assert_eq!(ours.recv_bytes()?, b"last");
        Ok::<_, Error>(())
    })?;
    Ok(())
}

/// A send dropped with part of its frame written leaves the stream off a message boundary:
/// the end refuses further sends, clearly; receiving on it still works.
#[test]
fn a_send_cancelled_mid_message_refuses_further_sends() -> Result<()> {
    multiprocess::init_test();
    let _g = common::start();
    let rt = runtime();
    let (ours, theirs) = pipe()?;
    let big = pattern(16 << 20, 3);
    rt.block_on(async {
        // Nobody reads: 16 MiB cannot fit the socket's buffer.
        let cut = tokio::time::timeout(Duration::from_millis(100), ours.send_bytes_async(&big));
        assert!(cut.await.is_err());
        Ok::<_, Error>(())
    })?;
    match ours.send_bytes(b"more") {
        Err(Error::State(m)) => assert!(m.contains("cut off mid-message"), "{m}"),
        other => panic!("a send after a cut one: {other:?}"),
    }
    theirs.send_bytes(b"still receiving")?;
    assert_eq!(ours.recv_bytes()?, b"still receiving");
    Ok(())
}

/// Sends of whole small messages into a stream nobody reads, each cancelled once it has to
/// wait, leave a defined state: every message the reader then gets is whole and in order, and
/// a later send either arrives whole after them or is refused clearly (`cancelled
/// mid-message`). (On Windows the last send's write may be in flight when it is dropped: it is
/// cancelled then, and refused only if some of its bytes went into the pipe.)
#[test]
fn sends_cancelled_while_waiting_leave_a_defined_state() -> Result<()> {
    multiprocess::init_test();
    let _g = common::start();
    let rt = runtime();
    let (ours, theirs) = pipe()?;
    let message = |i: u32| {
        let mut m = pattern(60_000, i as u8);
        m[..4].copy_from_slice(&i.to_le_bytes());
        m
    };
    let sent = rt.block_on(async {
        for i in 0..2_000u32 {
            let m = message(i);
            let send = ours.send_bytes_async(&m);
            if tokio::time::timeout(Duration::from_millis(50), send)
                .await
                .is_err()
            {
                return Ok::<u32, Error>(i);
            }
        }
        panic!("2000 messages of 60 kB fit in the stream");
    })?;
    assert!(sent > 0, "not even one message fitted");
    // The one cancelled may or may not have arrived (whole); the next send tells the state.
    let after = ours.send_bytes(b"after");
    let mut got = 0u32;
    loop {
        assert!(theirs.poll(Some(LIMIT))?, "a message went missing");
        let m = theirs.recv_bytes()?;
        if m == b"after" {
            assert!(after.is_ok());
            break;
        }
        assert!(m == message(got), "message {got} came changed");
        got += 1;
        if after.is_err() && got == sent {
            break;
        }
    }
    assert!(got == sent || got == sent + 1, "{got} of {sent}");
    if let Err(e) = after {
        // (Part of the cancelled message follows in the stream: that is why.)
        assert!(e.to_string().contains("cut off mid-message"), "{e}");
    }
    Ok(())
}

/// Reads one message once told to on `go` (or after 5 s: without the word, as when the
/// sender's thread is stuck in a blocking write, the sender is then freed and the test fails
/// on the order rather than hang), and answers with its length.
fn read_when_told(conn: Connection, go: Connection) {
    let _ = go.poll(Some(Duration::from_secs(5)));
    let m = conn.recv_bytes().expect("a message");
    conn.send(&(m.len() as u64)).expect("an answer");
}

/// An async send of more than the stream holds leaves the runtime thread free while it waits
/// for the reader (on Windows, where async writes used to be the blocking ones, too): another
/// task on the one thread runs meanwhile, and it is that task that tells the reader to read.
/// Checked by order, not by time.
#[test]
fn a_large_send_leaves_the_runtime_thread_free() -> Result<()> {
    multiprocess::init_test();
    let _g = common::start();
    let rt = runtime();
    let (ours, theirs) = pipe()?;
    let (go_rx, go_tx) = multiprocess::pipe_one_way()?;
    let mut p = Process::new(read_when_told, (theirs, go_rx));
    p.start()?;
    let big = pattern(16 << 20, 5);
    let order = std::sync::Mutex::new(Vec::new());
    rt.block_on(async {
        let send = async {
            limited(ours.send_bytes_async(&big)).await?;
            order.lock().unwrap().push("sent");
            Ok::<_, Error>(())
        };
        let tell = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            order.lock().unwrap().push("told");
            go_tx.send(&())
        };
        let (sent, told) = tokio::join!(send, tell);
        sent?;
        told?;
        assert_eq!(limited(ours.recv_async::<u64>()).await?, 16 << 20);
        Ok::<_, Error>(())
    })?;
    assert_eq!(*order.lock().unwrap(), ["told", "sent"]);
    p.join_timeout(LIMIT)?;
    assert_eq!(p.exitcode()?, Some(0));
    Ok(())
}

/// The futures are `Send`: spawned on a multi-threaded runtime, with a blocking peer thread.
#[test]
fn futures_can_be_spawned() -> Result<()> {
    multiprocess::init_test();
    let _g = common::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (ours, theirs) = pipe()?;
    let ours = std::sync::Arc::new(ours);
    let peer = std::thread::spawn(move || echo(theirs));
    let task = {
        let ours = ours.clone();
        rt.spawn(async move {
            ours.send_async(&7u16).await?;
            ours.recv_async::<u16>().await
        })
    };
    let got = rt.block_on(limited(task)).expect("task")?;
    assert_eq!(got, 7);
    drop(ours);
    assert_eq!(peer.join().unwrap(), 1);
    drop(rt);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// AsyncResult

use multiprocess::Pool;

fn square_after(x: u64) -> u64 {
    sleep_ms(20 * (x % 4));
    x * x
}

fn panics(_: u8) -> u8 {
    panic!("as asked")
}

/// `AsyncResult`s awaited, many at once on one thread: the job wakes each future (no thread
/// waits), errors arrive as `get` gives them, and `map_async` resolves to the whole list.
#[test]
fn async_results_are_awaited() -> Result<()> {
    multiprocess::init_test();
    let _g = common::start();
    let pool = Pool::new(2)?;
    let rt = runtime();
    let results = (0..12u64)
        .map(|x| pool.apply_async(square_after, (x,)))
        .collect::<Result<Vec<_>>>()?;
    let failing = pool.apply_async(panics, (0,))?;
    let mapped = pool.map_async_with(
        square_after,
        0..40u64,
        multiprocess::TaskOptions::new().chunksize(3),
    )?;
    let before = threads();
    rt.block_on(async {
        let local = tokio::task::LocalSet::new();
        let tasks: Vec<_> = results
            .into_iter()
            .map(|r| local.spawn_local(r.into_future()))
            .collect();
        local
            .run_until(async {
                tokio::time::sleep(Duration::from_millis(10)).await;
                assert_eq!(
                    new_threads(&before),
                    Vec::<String>::new(),
                    "an await used a thread"
                );
                for (x, t) in tasks.into_iter().enumerate() {
                    assert_eq!(limited(t).await.expect("task")?, (x * x) as u64);
                }
                match limited(failing).await {
                    Err(Error::Panicked { message, .. }) => assert!(message.contains("as asked")),
                    other => panic!("a panicking task gave {other:?}"),
                }
                let squares: Vec<u64> = (0..40).map(|x| x * x).collect();
                assert_eq!(limited(mapped).await?, squares);
                Ok::<_, Error>(())
            })
            .await
    })?;
    drop(rt);
    pool.close();
    pool.join()?;
    Ok(())
}

/// Two receives waiting on one connection at once (the second waits through a duplicate
/// descriptor, as the reactor refuses one twice): each gets one message, whole.
#[test]
fn two_receives_wait_on_one_connection() -> Result<()> {
    multiprocess::init_test();
    let _g = common::start();
    let rt = runtime();
    let (ours, theirs) = pipe()?;
    let ours = std::rc::Rc::new(ours);
    rt.block_on(async {
        let local = tokio::task::LocalSet::new();
        let tasks: Vec<_> = (0..2)
            .map(|_| {
                let ours = ours.clone();
                local.spawn_local(async move { ours.recv_bytes_async().await })
            })
            .collect();
        // The sends from another thread: 100 kB is more than a Windows pipe's buffer, and a
        // blocking send on this thread would wait for receives that only this thread runs.
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            theirs.send_bytes(&pattern(100_000, 1))?;
            theirs.send_bytes(&pattern(100_000, 2))
        });
        local
            .run_until(async {
                let mut got = Vec::new();
                for t in tasks {
                    got.push(limited(t).await.expect("task")?);
                }
                got.sort();
                let mut want = vec![pattern(100_000, 1), pattern(100_000, 2)];
                want.sort();
                assert!(got == want);
                Ok::<_, Error>(())
            })
            .await?;
        sender.join().expect("the sender thread")
    })?;
    Ok(())
}

/// Sums what arrives on the first end, then sends the sum on the second.
fn sum_simplex(ends: (Connection, Connection)) {
    let (input, output) = ends;
    let mut sum = 0u64;
    while let Ok(m) = input.recv_bytes() {
        sum += m.iter().map(|&b| u64::from(b)).sum::<u64>();
        sum += m.len() as u64;
    }
    output.send(&sum).unwrap();
}

/// Simplex connections (OS pipes, which have no `MSG_DONTWAIT`): async sends, small and
/// larger than the pipe's buffer, and an async receive of the reply.
#[test]
fn async_over_simplex_pipes() -> Result<()> {
    multiprocess::init_test();
    let _g = common::start();
    let rt = runtime();
    let (their_in, our_out) = multiprocess::pipe_one_way()?;
    let (our_in, their_out) = multiprocess::pipe_one_way()?;
    let mut p = Process::new(sum_simplex, ((their_in, their_out),));
    p.start()?;
    let big = pattern(16 << 20, 5);
    let want: u64 = big.iter().map(|&b| u64::from(b)).sum::<u64>() + big.len() as u64 + 4;
    rt.block_on(async {
        limited(our_out.send_bytes_async(&[1, 1])).await?;
        limited(our_out.send_bytes_async(&big)).await?;
        limited(our_out.send_bytes_async(&[])).await?;
        Ok::<_, Error>(())
    })?;
    drop(our_out);
    let sum = rt.block_on(limited(our_in.recv_async::<u64>()))?;
    assert_eq!(sum, want);
    p.join_timeout(LIMIT)?;
    assert_eq!(p.exitcode()?, Some(0));
    Ok(())
}

/// Receives a connection, and answers through it.
#[cfg(unix)]
fn answer_through(control: Connection) {
    let (target, word): (Connection, String) = control.recv().unwrap();
    target.send(&format!("{word} back")).unwrap();
}

/// A `Connection` inside a value sent with `send_async` travels with it (Unix, duplex).
#[cfg(unix)]
#[test]
fn connections_travel_inside_async_messages() -> Result<()> {
    multiprocess::init_test();
    let _g = common::start();
    let rt = runtime();
    let (control, theirs) = pipe()?;
    let (reply_here, reply_there) = pipe()?;
    let mut p = Process::new(answer_through, (theirs,));
    p.start()?;
    rt.block_on(async {
        limited(control.send_async(&(reply_there, "hello".to_string()))).await?;
        assert_eq!(
            limited(reply_here.recv_async::<String>()).await?,
            "hello back"
        );
        Ok::<_, Error>(())
    })?;
    p.join_timeout(LIMIT)?;
    assert_eq!(p.exitcode()?, Some(0));
    // And the other way: a value carrying a connection, received with recv_async.
    let (a, b) = pipe()?;
    let (x, y) = pipe()?;
    b.send(&(y, 5u8))?;
    let (y, five): (Connection, u8) = rt.block_on(limited(a.recv_async()))?;
    assert_eq!(five, 5);
    y.send_bytes(b"through y")?;
    assert_eq!(x.recv_bytes()?, b"through y");
    Ok(())
}

/// A message over `maxlength` is refused as `recv_bytes` refuses it, and the end then stops
/// receiving; a blocking `recv` holding the read lock makes an async receive wait its turn.
#[test]
fn maxlength_and_a_blocking_receiver_alongside() -> Result<()> {
    multiprocess::init_test();
    let _g = common::start();
    let rt = runtime();
    let (ours, theirs) = pipe()?;
    theirs.send_bytes(&[0u8; 100])?;
    assert!(rt.block_on(limited(ours.recv_bytes_max_async(10))).is_err());
    assert!(matches!(ours.recv_bytes(), Err(Error::State(_))));

    let (ours, theirs) = pipe()?;
    std::thread::scope(|s| {
        // The blocking receive takes the read lock first and holds it until a message comes.
        let blocking = s.spawn(|| ours.recv_bytes());
        sleep_ms(50);
        let got = rt.block_on(async {
            let later = async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                theirs.send_bytes(b"one")?;
                theirs.send_bytes(b"two")
            };
            let (got, sent) = tokio::join!(limited(ours.recv_bytes_async()), later);
            sent?;
            got
        })?;
        let first = blocking.join().expect("blocking receiver")?;
        let mut both = vec![first, got];
        both.sort();
        assert_eq!(both, [b"one".to_vec(), b"two".to_vec()]);
        Ok::<_, Error>(())
    })?;
    Ok(())
}

/// A peer that announces a huge frame and sends little of it: the async receive waits
/// without reserving the announced length (memory follows the bytes), and end of file inside
/// the frame is the error `recv_bytes` gives.
#[cfg(unix)]
#[test]
fn an_announced_length_is_not_trusted() -> Result<()> {
    use std::io::Write;
    use std::os::fd::AsFd;
    multiprocess::init_test();
    let _g = common::start();
    let rt = runtime();
    let (ours, mut theirs) = pipe()?;
    let mut raw = std::fs::File::from(theirs.as_fd().try_clone_to_owned().unwrap());
    raw.write_all(&(1i32 << 30).to_be_bytes()).unwrap();
    raw.write_all(&[7u8; 1000]).unwrap();
    let before = resident_bytes();
    rt.block_on(async {
        let waiting =
            tokio::time::timeout(Duration::from_millis(50), ours.recv_bytes_async()).await;
        assert!(waiting.is_err());
    });
    assert!(
        resident_bytes().saturating_sub(before) < 256 << 20,
        "an announced 1 GiB frame took memory before its bytes came"
    );
    drop(raw);
    theirs.close();
    match rt.block_on(limited(ours.recv_bytes_async())) {
        Err(Error::Io { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::UnexpectedEof)
        }
        other => panic!(
            "end of file inside a frame gave {:?}",
            other.map(|m| m.len())
        ),
    }
    Ok(())
}

// --- Listener::accept_async, wait_async, imap as a Stream -----------------------------------

use multiprocess::connection::{Address, Listener, client};

/// A client in a child: connects with `key`, sends its number, and waits for the reply.
fn dial(address: Address, key: Vec<u8>, n: u32) -> u32 {
    let conn = client(&address, Some(&key)).expect("connects");
    conn.send(&n).expect("sends");
    conn.recv::<u32>().expect("a reply")
}

/// A client in a child with the wrong key: true if the listener refused it.
fn dial_refused(address: Address, key: Vec<u8>) -> bool {
    matches!(
        client(&address, Some(&key)),
        Err(multiprocess::Error::Authentication(_))
    )
}

/// A client in a child that connects and then says nothing for `ms` milliseconds.
fn dial_silently(address: Address, ms: u64) {
    let _stream = multiprocess::connection::client(&address, None);
    sleep_ms(ms);
}

#[test]
fn accept_async_serves_clients_in_children() -> Result<()> {
    multiprocess::init_test();
    let _g = common::start();
    let rt = runtime();
    let listener = Listener::bind(None, Some(b"secret"))?;
    let mut children = Vec::new();
    for n in 0..3u32 {
        let mut p = Process::new(dial, (listener.address().clone(), b"secret".to_vec(), n));
        p.start()?;
        children.push(p);
    }
    rt.block_on(async {
        let mut seen = Vec::new();
        for _ in 0..3 {
            let conn = limited(listener.accept_async()).await?;
            let n: u32 = limited(conn.recv_async()).await?;
            limited(conn.send_async(&(n * 10))).await?;
            seen.push(n);
        }
        seen.sort();
        assert_eq!(seen, [0, 1, 2]);
        Ok::<(), multiprocess::Error>(())
    })?;
    for p in children {
        p.join_timeout(LIMIT)?;
        assert_eq!(p.exitcode()?, Some(0));
    }
    assert!(listener.last_accepted().is_some());
    Ok(())
}

#[test]
fn accept_async_refuses_a_wrong_key_and_times_out_a_silent_client() -> Result<()> {
    multiprocess::init_test();
    let _g = common::start();
    let rt = runtime();
    let mut listener = Listener::bind(None, Some(b"right"))?;
    listener.set_handshake_timeout(Some(Duration::from_millis(300)));
    // A wrong key: the child's client fails, and so does our accept.
    let mut wrong = Process::new(
        dial_refused,
        (listener.address().clone(), b"wrong".to_vec()),
    );
    wrong.start()?;
    let got = rt.block_on(limited(listener.accept_async()));
    assert!(
        matches!(got, Err(multiprocess::Error::Authentication(_))),
        "{got:?}"
    );
    wrong.join_timeout(LIMIT)?;
    assert!(
        wrong.result::<bool>()?,
        "the child's client was refused too"
    );
    // A client that says nothing: the handshake timeout ends the accept, and the runtime
    // thread was free meanwhile (a timer ticks during it).
    let mut silent = Process::new(dial_silently, (listener.address().clone(), 5_000));
    silent.start()?;
    rt.block_on(async {
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let ticker = {
            let ticks = ticks.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            })
        };
        let t = Instant::now();
        let got = limited(listener.accept_async()).await;
        assert!(matches!(got, Err(multiprocess::Error::Timeout)), "{got:?}");
        assert!(t.elapsed() >= Duration::from_millis(300));
        assert!(
            ticks.load(std::sync::atomic::Ordering::Relaxed) >= 5,
            "the runtime thread was blocked during the handshake"
        );
        ticker.abort();
    });
    silent.terminate()?;
    silent.join_timeout(LIMIT)?;
    Ok(())
}

#[test]
fn a_cancelled_accept_loses_no_client() -> Result<()> {
    multiprocess::init_test();
    let _g = common::start();
    let rt = runtime();
    let listener = Listener::bind(None, Some(b"k"))?;
    rt.block_on(async {
        // No client yet: the accept is cut short by a timeout (dropped).
        let cut = tokio::time::timeout(Duration::from_millis(50), listener.accept_async()).await;
        assert!(cut.is_err(), "no client, no connection");
        Ok::<(), multiprocess::Error>(())
    })?;
    let mut p = Process::new(dial, (listener.address().clone(), b"k".to_vec(), 5));
    p.start()?;
    rt.block_on(async {
        let conn = limited(listener.accept_async()).await?;
        assert_eq!(limited(conn.recv_async::<u32>()).await?, 5);
        limited(conn.send_async(&0u32)).await
    })?;
    p.join_timeout(LIMIT)?;
    assert_eq!(p.exitcode()?, Some(0));
    Ok(())
}

#[test]
fn accept_async_alongside_a_blocking_accept() -> Result<()> {
    multiprocess::init_test();
    let _g = common::start();
    let rt = runtime();
    let listener = std::sync::Arc::new(Listener::bind(None, Some(b"k"))?);
    // A thread blocks in accept (holding the accept side) while the async one retries.
    let blocking = {
        let listener = listener.clone();
        std::thread::spawn(move || {
            let conn = listener.accept().expect("accepts");
            let n: u32 = conn.recv().expect("a number");
            conn.send(&n).expect("replies");
            n
        })
    };
    sleep_ms(50);
    let mut children = Vec::new();
    for n in [1u32, 2] {
        let mut p = Process::new(dial, (listener.address().clone(), b"k".to_vec(), n));
        p.start()?;
        children.push(p);
    }
    let n = rt.block_on(async {
        let conn = limited(listener.accept_async()).await?;
        let n: u32 = limited(conn.recv_async()).await?;
        limited(conn.send_async(&n)).await?;
        Ok::<u32, multiprocess::Error>(n)
    })?;
    let m = blocking.join().expect("the blocking accept");
    assert_eq!(n + m, 3, "each accept took one client");
    for p in children {
        p.join_timeout(LIMIT)?;
        assert_eq!(p.exitcode()?, Some(0));
    }
    Ok(())
}

/// Waits (up to [`LIMIT`]) for a word on `go`, then sends `"late"` on `conn` (if any).
fn send_when_told(go: Connection, conn: Option<Connection>) {
    let _ = go.poll(Some(LIMIT));
    if let Some(conn) = conn {
        conn.send(&"late").expect("sends");
    }
}

#[test]
fn wait_async_on_connections_and_sentinels() {
    multiprocess::init_test();
    // Under `run`: this test once failed in CI (under Wine) with only its children's
    // descriptors to show, the error it returned early being hidden by the leak check.
    common::run(|| {
        let rt = runtime();
        let (a, b) = multiprocess::pipe()?;
        let (c, d) = multiprocess::pipe()?;
        // Told when to send and when to end (no timing: starting a child under Wine can take
        // longer than a sleep would).
        let (go_send, tell_send) = multiprocess::pipe_one_way()?;
        let (go_end, tell_end) = multiprocess::pipe_one_way()?;
        let mut sender = Process::new(send_when_told, (go_send, Some(d)));
        sender.start()?;
        let mut sleeper = Process::new(send_when_told, (go_end, None));
        sleeper.start()?;
        let (s1, s2) = (sender.sentinel()?, sleeper.sentinel()?);
        rt.block_on(async {
            // Nothing ready: a zero timeout only looks, a short one passes.
            let ready = multiprocess::wait_async(&[&a, &c, &s1, &s2], Some(Duration::ZERO)).await?;
            assert!(ready.is_empty(), "ready at once: {ready:?}");
            let t = Instant::now();
            let none = limited(multiprocess::wait_async(
                &[&a, &c, &s2],
                Some(Duration::from_millis(30)),
            ))
            .await?;
            assert!(none.is_empty() && t.elapsed() >= Duration::from_millis(30));
            // The child's message arrives first.
            tell_send.send(&())?;
            let first = limited(multiprocess::wait_async(&[&a, &c, &s2], None)).await?;
            assert_eq!(first, [1]);
            assert_eq!(limited(c.recv_async::<String>()).await?, "late");
            // Then the sleeper ends.
            tell_end.send(&())?;
            let ended = limited(multiprocess::wait_async(&[&a, &s2], None)).await?;
            assert_eq!(ended, [1]);
            // A message already read ahead counts as ready at once.
            b.send(&1u8)?;
            b.send(&2u8)?;
            assert_eq!(limited(a.recv_async::<u8>()).await?, 1);
            assert_eq!(limited(multiprocess::wait_async(&[&a], None)).await?, [0]);
            assert_eq!(a.recv::<u8>()?, 2);
            Ok::<(), multiprocess::Error>(())
        })?;
        sender.join_timeout(LIMIT)?;
        sleeper.join_timeout(LIMIT)?;
        // Many waits at once on one thread, each on its own pipe, polled together.
        let pairs: Vec<_> = (0..8)
            .map(|_| multiprocess::pipe())
            .collect::<Result<_>>()?;
        let lists: Vec<[&(dyn multiprocess::Waitable + Sync); 1]> =
            pairs.iter().map(|(r, _)| [r as _]).collect();
        rt.block_on(async {
            let mut waits: Vec<_> = lists
                .iter()
                .map(|l| Some(Box::pin(multiprocess::wait_async(l, None))))
                .collect();
            let writer = async {
                for (_, w) in pairs.iter().rev() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    w.send(&0u8)?;
                }
                Ok::<(), multiprocess::Error>(())
            };
            let all = std::future::poll_fn(|cx| {
                let mut pending = false;
                for slot in waits.iter_mut() {
                    if let Some(w) = slot {
                        match w.as_mut().poll(cx) {
                            std::task::Poll::Ready(r) => {
                                assert_eq!(r.expect("waits"), [0]);
                                *slot = None;
                            }
                            std::task::Poll::Pending => pending = true,
                        }
                    }
                }
                if pending {
                    std::task::Poll::Pending
                } else {
                    std::task::Poll::Ready(())
                }
            });
            let (_, written) = limited(async { tokio::join!(all, writer) }).await;
            written
        })?;
        // A closed connection is an error, as for `wait`.
        let (mut e, _f) = multiprocess::pipe()?;
        e.close();
        assert!(rt.block_on(multiprocess::wait_async(&[&e], None)).is_err());
        Ok::<(), multiprocess::Error>(())
    });
}

fn cube(x: u64) -> u64 {
    if x == 13 {
        panic!("thirteen");
    }
    sleep_ms(x % 3);
    x * x * x
}

/// The next item of a stream (what `StreamExt::next` does).
async fn next<S: futures_core::Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *s).poll_next(cx)).await
}

#[test]
fn imap_is_a_stream() -> Result<()> {
    multiprocess::init_test();
    let _g = common::start();
    let rt = runtime();
    let pool = multiprocess::Pool::new(3)?;
    rt.block_on(async {
        // In order, a failing item in place, and the end.
        let mut ordered = pool.imap_chunked(cube, 0..40u64, 3)?;
        let mut got = Vec::new();
        while let Some(item) = limited(next(&mut ordered)).await {
            got.push(item.map_err(|e| e.to_string()));
        }
        // The same items as the iterator: chunk [12, 13, 14] fails whole, as in Python.
        let blocking: Vec<_> = pool
            .imap_chunked(cube, 0..40u64, 3)?
            .map(|item| item.map_err(|e| e.to_string()))
            .collect();
        assert_eq!(got, blocking);
        assert_eq!(got.len(), 38);
        assert!(got[12].as_ref().is_err_and(|e| e.contains("thirteen")));
        // Unordered: every result once.
        let mut unordered = pool.imap_unordered(cube, 100..160u64)?;
        let mut all = Vec::new();
        while let Some(item) = limited(next(&mut unordered)).await {
            all.push(item?);
        }
        all.sort();
        assert_eq!(all, (100..160u64).map(|x| x.pow(3)).collect::<Vec<_>>());
        // A cancelled `next` loses nothing: the stream goes on with every item.
        let mut s = pool.imap(cube, 0..6u64)?;
        let mut rest = Vec::new();
        // (Resolved at the first poll if the worker was quick: then it is the first item.)
        if let Ok(Some(first)) = tokio::time::timeout(Duration::ZERO, next(&mut s)).await {
            rest.push(first?);
        }
        while let Some(item) = limited(next(&mut s)).await {
            rest.push(item?);
        }
        assert_eq!(rest, [0, 1, 8, 27, 64, 125]);
        Ok::<(), multiprocess::Error>(())
    })?;
    // An endless input, read lazily; dropping the stream cancels what is queued.
    rt.block_on(async {
        let mut endless = pool.imap(cube, 20u64..)?;
        for x in 20..30u64 {
            assert_eq!(
                limited(next(&mut endless)).await.expect("an item")?,
                x.pow(3)
            );
        }
        Ok::<(), multiprocess::Error>(())
    })?;
    pool.close();
    pool.join()?;
    Ok(())
}

// --- Queue::get_async, Queue::put_async ------------------------------------------------------

use multiprocess::Queue;

/// Puts `n` numbers, each after `gap_ms`.
fn put_numbers(q: Queue<u64>, n: u64, gap_ms: u64) {
    for i in 0..n {
        if gap_ms > 0 {
            sleep_ms(gap_ms);
        }
        q.put(&i).expect("puts");
    }
}

/// Takes `n` numbers with the blocking `get` and returns their sum.
fn get_numbers(q: Queue<u64>, n: u64) -> u64 {
    (0..n).map(|_| q.get().expect("gets")).sum()
}

#[test]
fn get_async_waits_for_a_child_and_frees_the_runtime_thread() -> Result<()> {
    multiprocess::init_test();
    let _g = common::start();
    let rt = runtime();
    let q = Queue::<u64>::new()?;
    let mut p = Process::new(put_numbers, (q.clone(), 20, 5));
    p.start()?;
    let before = threads();
    rt.block_on(async {
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let ticker = {
            let ticks = ticks.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            })
        };
        for i in 0..20u64 {
            assert_eq!(limited(q.get_async()).await?, i);
        }
        assert!(
            ticks.load(std::sync::atomic::Ordering::Relaxed) >= 5,
            "the runtime thread was blocked while the queue was empty"
        );
        ticker.abort();
        Ok::<(), multiprocess::Error>(())
    })?;
    // A thread of this process that was already ending (a start's helper thread) may take a
    // moment to go; a thread parked for the queue (tokio's blocking pool keeps them 10 s)
    // would stay.
    let settle = std::time::Instant::now() + Duration::from_secs(2);
    while !new_threads(&before).is_empty() && std::time::Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        new_threads(&before),
        Vec::<String>::new(),
        "no thread waits for the queue"
    );
    p.join_timeout(LIMIT)?;
    assert_eq!(p.exitcode()?, Some(0));
    Ok(())
}

#[test]
fn put_async_waits_for_room_made_by_a_child() -> Result<()> {
    multiprocess::init_test();
    let _g = common::start();
    let rt = runtime();
    let q = Queue::<u64>::bounded(2)?;
    rt.block_on(async {
        limited(q.put_async(&100)).await?;
        limited(q.put_async(&200)).await?;
        // Full: a put waits, cut by a timeout, and has put nothing.
        let cut = tokio::time::timeout(Duration::from_millis(30), q.put_async(&999)).await;
        assert!(cut.is_err(), "a full queue took a value");
        assert_eq!(q.qsize(), 2);
        Ok::<(), multiprocess::Error>(())
    })?;
    // A child takes 102 items, slowly at first; our puts wait for room each time.
    let mut p = Process::new(get_numbers, (q.clone(), 102));
    p.start()?;
    rt.block_on(async {
        for i in 0..100u64 {
            limited(q.put_async(&i)).await?;
        }
        Ok::<(), multiprocess::Error>(())
    })?;
    p.join_timeout(LIMIT)?;
    assert_eq!(p.result::<u64>()?, 300 + (0..100).sum::<u64>());
    assert!(q.empty());
    Ok(())
}

#[test]
fn a_cancelled_get_async_takes_nothing() -> Result<()> {
    multiprocess::init_test();
    let _g = common::start();
    let rt = runtime();
    let q = Queue::<String>::new()?;
    rt.block_on(async {
        for _ in 0..3 {
            let cut = tokio::time::timeout(Duration::from_millis(20), q.get_async()).await;
            assert!(cut.is_err());
        }
        Ok::<(), multiprocess::Error>(())
    })?;
    q.put(&"kept".to_string())?;
    assert_eq!(q.qsize(), 1, "the cancelled gets took nothing");
    assert_eq!(q.get_timeout(true, Some(LIMIT))?, "kept");
    rt.block_on(async {
        q.put(&"again".to_string())?;
        assert_eq!(limited(q.get_async()).await?, "again");
        Ok::<(), multiprocess::Error>(())
    })
}

#[test]
fn many_async_getters_and_blocking_ones_share_a_queue() -> Result<()> {
    multiprocess::init_test();
    let _g = common::start();
    let q = Queue::<u64>::new()?;
    // Two children take with the blocking get, 8 async getters here, and a child puts.
    let mut takers: Vec<Process> = (0..2)
        .map(|_| Process::new(get_numbers, (q.clone(), 50)))
        .collect();
    for t in &mut takers {
        t.start()?;
    }
    let mut producer = Process::new(put_numbers, (q.clone(), 500, 0));
    producer.start()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let async_sum = rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let q = q.clone();
            tasks.push(tokio::spawn(async move {
                let mut sum = 0;
                for _ in 0..50 {
                    sum += limited(q.get_async()).await?;
                }
                Ok::<u64, multiprocess::Error>(sum)
            }));
        }
        let mut sum = 0;
        for t in tasks {
            sum += t.await.expect("a task")?;
        }
        Ok::<u64, multiprocess::Error>(sum)
    })?;
    drop(rt);
    producer.join_timeout(LIMIT)?;
    let mut blocking_sum = 0;
    for t in takers {
        t.join_timeout(LIMIT)?;
        blocking_sum += t.result::<u64>()?;
    }
    assert_eq!(async_sum + blocking_sum, (0..500u64).sum::<u64>());
    assert!(q.empty());
    Ok(())
}

#[test]
fn queue_async_values_with_handles_and_large_ones() -> Result<()> {
    multiprocess::init_test();
    let _g = common::start();
    let rt = runtime();
    // A value carrying an OS handle (Unix: Windows refuses them in queues).
    if cfg!(unix) {
        let q = Queue::<Connection>::new()?;
        let (a, b) = pipe()?;
        rt.block_on(async {
            limited(q.put_async(&a)).await?;
            let a2 = limited(q.get_async()).await?;
            a2.send(&"through the queue")?;
            assert_eq!(
                limited(b.recv_async::<String>()).await?,
                "through the queue"
            );
            Ok::<(), multiprocess::Error>(())
        })?;
    }
    // Larger than the ring: streamed (the runtime thread blocks while it streams).
    let q = Queue::<Vec<u8>>::with_capacity(0, 4096)?;
    let big = pattern(64 * 1024, 3);
    let mut p = Process::new(echo_queue, (q.clone(), 1));
    p.start()?;
    rt.block_on(async {
        limited(q.put_async(&big)).await?;
        Ok::<(), multiprocess::Error>(())
    })?;
    p.join_timeout(LIMIT)?;
    assert_eq!(p.result::<usize>()?, big.len());
    Ok(())
}

/// Takes `n` byte vectors with the blocking get and returns their total length.
fn echo_queue(q: Queue<Vec<u8>>, n: usize) -> usize {
    (0..n).map(|_| q.get().expect("gets").len()).sum()
}

/// The futures of this feature are `Send` (a multi-threaded runtime can spawn them): checked
/// when this file compiles.
#[allow(dead_code)]
fn the_futures_are_send(l: &Listener, q: &Queue<u64>, c: &Connection) {
    fn send<T: Send>(_: T) {}
    send(l.accept_async());
    send(q.put_async(&1));
    send(q.get_async());
    send(multiprocess::wait_async(&[c], None));
}

/// Takes `n` items with the blocking get, marking each done; returns their sum.
fn work_joinable(q: multiprocess::JoinableQueue<u64>, n: u64) -> u64 {
    let mut sum = 0;
    for _ in 0..n {
        sum += q.get().expect("gets");
        q.task_done().expect("task_done");
    }
    sum
}

#[test]
fn simple_and_joinable_queues_have_the_async_forms() -> Result<()> {
    multiprocess::init_test();
    let _g = common::start();
    let rt = runtime();
    // SimpleQueue: a child puts, we get.
    let s = multiprocess::SimpleQueue::<u64>::new()?;
    let mut p = Process::new(put_simple, (s.clone(), 10));
    p.start()?;
    let sum = rt.block_on(async {
        let mut sum = 0;
        for _ in 0..10 {
            sum += limited(s.get_async()).await?;
        }
        Ok::<u64, multiprocess::Error>(sum)
    })?;
    assert_eq!(sum, 45);
    p.join_timeout(LIMIT)?;
    // JoinableQueue (bounded): our puts count tasks; a cancelled put counts none.
    let q = multiprocess::JoinableQueue::<u64>::bounded(1)?;
    rt.block_on(async {
        limited(q.put_async(&1)).await?;
        let cut = tokio::time::timeout(Duration::from_millis(20), q.put_async(&2)).await;
        assert!(cut.is_err(), "the queue was full");
        Ok::<(), multiprocess::Error>(())
    })?;
    let mut worker = Process::new(work_joinable, (q.clone(), 5));
    worker.start()?;
    rt.block_on(async {
        for x in 2..6u64 {
            limited(q.put_async(&x)).await?;
        }
        Ok::<(), multiprocess::Error>(())
    })?;
    // Five tasks counted (the cancelled put none): join returns once the worker did five.
    assert!(q.join_timeout(LIMIT)?, "every task done");
    worker.join_timeout(LIMIT)?;
    assert_eq!(worker.result::<u64>()?, 1 + 2 + 3 + 4 + 5);
    Ok(())
}

fn put_simple(q: multiprocess::SimpleQueue<u64>, n: u64) {
    for i in 0..n {
        q.put(&i).expect("puts");
    }
}

/// Takes `n` items slowly with the blocking get, marking each done.
fn work_slowly(q: multiprocess::JoinableQueue<u64>, n: u64) {
    for _ in 0..n {
        q.get().expect("gets");
        sleep_ms(10);
        q.task_done().expect("task_done");
    }
}

#[test]
fn join_async_of_a_joinable_queue_waits_for_a_child_s_task_done() -> Result<()> {
    multiprocess::init_test();
    let _g = common::start();
    let rt = runtime();
    let q = multiprocess::JoinableQueue::<u64>::new()?;
    // Nothing unfinished: at once.
    rt.block_on(limited(q.join_async()))?;
    for x in 0..5u64 {
        q.put(&x)?;
    }
    rt.block_on(async {
        // Cancelled while tasks are unfinished: nothing changes.
        let cut = tokio::time::timeout(Duration::from_millis(10), q.join_async()).await;
        assert!(cut.is_err());
        Ok::<(), multiprocess::Error>(())
    })?;
    let mut worker = Process::new(work_slowly, (q.clone(), 5));
    worker.start()?;
    let t = Instant::now();
    rt.block_on(limited(q.join_async()))?;
    assert!(
        t.elapsed() >= Duration::from_millis(40),
        "joined before the tasks were done"
    );
    assert!(q.queue().empty());
    worker.join_timeout(LIMIT)?;
    assert_eq!(worker.exitcode()?, Some(0));
    Ok(())
}

/// After `ms` milliseconds: sends on `conn`, puts on `q`, connects to `address`, and ends.
fn act_late(conn: Connection, q: Queue<u64>, address: Address, ms: u64) {
    sleep_ms(ms);
    conn.send(&1u8).expect("sends");
    q.put(&2).expect("puts");
    let _client = client(&address, None).expect("connects");
}

/// A waker that counts its wakes, then passes them on.
struct CountingWaker {
    inner: std::task::Waker,
    wakes: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

impl std::task::Wake for CountingWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.wakes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.wake_by_ref();
    }
}

/// Awaits `f`, counting how often it wakes its task (not how often it is polled: `join!`
/// polls every branch when any one wakes).
async fn count_wakes<F: Future>(f: F) -> (F::Output, u32) {
    let mut f = std::pin::pin!(f);
    let wakes = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let out = std::future::poll_fn(|cx| {
        let waker = std::task::Waker::from(std::sync::Arc::new(CountingWaker {
            inner: cx.waker().clone(),
            wakes: wakes.clone(),
        }));
        f.as_mut().poll(&mut std::task::Context::from_waker(&waker))
    })
    .await;
    (out, wakes.load(std::sync::atomic::Ordering::Relaxed))
}

/// The waits are woken by what they wait for, not by a timer: a receive, a queue's `get`, an
/// accept and a join, waiting together for a second, each wake their task a few times (a timer looking
/// every 20 ms at most would wake each 50 times; Windows' queue wait also looks every 250 ms).
#[test]
fn waits_are_woken_by_events_not_timers() -> Result<()> {
    multiprocess::init_test();
    let _g = common::start();
    let rt = runtime();
    let (ours, theirs) = pipe()?;
    let q = Queue::<u64>::new()?;
    let listener = Listener::bind(None, None)?;
    let p = {
        let address = listener.address().clone();
        let mut p = Process::new(act_late, (theirs, q.clone(), address, 1000));
        p.start()?;
        p
    };
    let waits = rt.block_on(async {
        tokio::join!(
            count_wakes(limited(ours.recv_async::<u8>())),
            count_wakes(limited(q.get_async())),
            count_wakes(limited(listener.accept_async())),
            count_wakes(limited(p.join_async(None))),
        )
    });
    let ((got, recv_wakes), (item, get_wakes), (accepted, accept_wakes), (joined, join_wakes)) =
        waits;
    assert_eq!((got?, item?), (1, 2));
    drop(accepted?);
    joined?;
    assert_eq!(p.exitcode()?, Some(0));
    for (what, wakes) in [
        ("recv", recv_wakes),
        ("get", get_wakes),
        ("accept", accept_wakes),
        ("join", join_wakes),
    ] {
        assert!(
            wakes <= 12,
            "{what}_async woke its task {wakes} times in a second"
        );
    }
    Ok(())
}
