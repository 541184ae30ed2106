//! Connection cases K01–K06 of python-reference.md §2.3: CPython's framing byte for byte (checked
//! against a real CPython peer where python3 exists), send_bytes bounds, receive limits, end of
//! file, message boundaries, and wait().

mod common;

use std::time::{Duration, Instant};

use multiprocess::{Connection, Error, pipe, pipe_one_way, wait};

fn secs(s: f64) -> Option<Duration> {
    Some(Duration::from_secs_f64(s))
}

/// K01: the bytes on the wire are CPython's.
#[cfg(unix)]
#[test]
fn k01_wire_bytes() {
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    multiprocess::init_test();
    let _g = common::start();
    let (ours, mut raw) = UnixStream::pair().unwrap();
    let conn = Connection::from(std::os::fd::OwnedFd::from(ours));
    conn.send_bytes(b"abc").unwrap();
    conn.send_bytes(b"").unwrap();
    let mut got = [0u8; 11];
    raw.read_exact(&mut got).unwrap();
    assert_eq!(got, [0, 0, 0, 3, b'a', b'b', b'c', 0, 0, 0, 0]);
}

/// K01 against the real thing: a CPython `Connection` on the other end of a socket pair
/// receives our frames and answers with its own.
#[cfg(unix)]
#[test]
fn k01_interop_with_cpython() {
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::os::unix::net::UnixStream;
    use std::os::unix::process::CommandExt;
    multiprocess::init_test();
    let _g = common::start();
    if std::process::Command::new("python3")
        .arg("-V")
        .output()
        .is_err()
    {
        println!("skipped: no python3 on this machine");
        return;
    }
    let (ours, theirs) = UnixStream::pair().unwrap();
    let fd = theirs.as_raw_fd();
    let script = "from multiprocessing.connection import Connection\n\
                  c = Connection(3)\n\
                  for _ in range(3):\n\
                  \x20   m = c.recv_bytes()\n\
                  \x20   c.send_bytes(b'py:' + m)\n\
                  c.send_bytes(b'x' * 70000)\n";
    let mut cmd = std::process::Command::new("python3");
    cmd.args(["-c", script]);
    // SAFETY: only dup2 between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(theirs);
    let conn = Connection::from(OwnedFd::from(ours));
    for m in [&b"one"[..], b"", &[7u8; 20_000]] {
        conn.send_bytes(m).unwrap();
        let mut want = b"py:".to_vec();
        want.extend_from_slice(m);
        assert_eq!(conn.recv_bytes().unwrap(), want);
    }
    assert_eq!(conn.recv_bytes().unwrap(), vec![b'x'; 70000]);
    assert!(child.wait().unwrap().success());
    assert!(matches!(conn.recv_bytes(), Err(Error::Eof)));
}

/// K02: Python's offset/size rules for send_bytes.
#[test]
fn k02_send_bytes_bounds() {
    multiprocess::init_test();
    let _g = common::start();
    let (r, w) = pipe_one_way().unwrap();
    let buf: Vec<u8> = (b'a'..=b'z').collect();
    assert_eq!(buf.len(), 26);
    for (offset, size) in [(27, None), (22, Some(5)), (26, Some(1))] {
        assert!(matches!(
            w.send_bytes_range(&buf, offset, size),
            Err(Error::InvalidArgument(_))
        ));
    }
    w.send_bytes_range(&buf, 26, None).unwrap();
    w.send_bytes_range(&buf, 26, Some(0)).unwrap();
    w.send_bytes_range(&buf, 5, None).unwrap();
    w.send_bytes_range(&buf, 7, Some(8)).unwrap();
    assert_eq!(r.recv_bytes().unwrap(), b"");
    assert_eq!(r.recv_bytes().unwrap(), b"");
    assert_eq!(r.recv_bytes().unwrap(), &buf[5..]);
    assert_eq!(r.recv_bytes().unwrap(), &buf[7..15]);
}

/// K03: a message over `maxlength` is refused and the end can no longer receive; a buffer that
/// is too short gets the whole message back in the error.
#[test]
fn k03_receive_limits() {
    multiprocess::init_test();
    let _g = common::start();
    let (a, b) = pipe().unwrap();
    b.send_bytes(&[1u8; 10]).unwrap();
    let e = a.recv_bytes_max(5).unwrap_err();
    assert!(e.to_string().contains("bad message length"), "{e}");
    assert!(!a.readable());
    assert_eq!(
        a.recv_bytes().unwrap_err().to_string(),
        "connection is write-only"
    );
    a.send_bytes(b"still writable").unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"still writable");

    let (r, w) = pipe_one_way().unwrap();
    w.send_bytes(&[1u8; 10]).unwrap();
    assert!(r.recv_bytes_max(5).is_err());
    assert_eq!(r.recv_bytes().unwrap_err().to_string(), "handle is closed");

    let (a, b) = pipe().unwrap();
    let message: Vec<u8> = (0..110u8).collect();
    b.send_bytes(&message).unwrap();
    let mut buf = [0u8; 40];
    match a.recv_bytes_into(&mut buf, 0) {
        Err(Error::BufferTooShort(whole)) => assert_eq!(whole, message),
        other => panic!("{other:?}"),
    }
    b.send_bytes(b"fits").unwrap();
    assert_eq!(a.recv_bytes_into(&mut buf, 3).unwrap(), 4);
    assert_eq!(&buf[3..7], b"fits");
}

/// K04: end of file before and inside a message, wrong direction, closed ends.
#[test]
fn k04_eof_direction_closed() {
    multiprocess::init_test();
    let _g = common::start();
    let (a, mut b) = pipe().unwrap();
    b.close();
    b.close(); // again: nothing
    assert!(b.closed());
    assert_eq!(
        b.send_bytes(b"x").unwrap_err().to_string(),
        "handle is closed"
    );
    assert_eq!(
        b.poll(Some(Duration::ZERO)).unwrap_err().to_string(),
        "handle is closed"
    );
    assert!(
        a.poll(Some(Duration::ZERO)).unwrap(),
        "end of file makes poll true"
    );
    assert!(matches!(a.recv_bytes(), Err(Error::Eof)));
    assert!(wait(&[&b], Some(Duration::ZERO)).is_err());

    let (r, w) = pipe_one_way().unwrap();
    assert!(r.readable() && !r.writable() && w.writable() && !w.readable());
    assert_eq!(
        r.send_bytes(b"x").unwrap_err().to_string(),
        "connection is read-only"
    );
    assert_eq!(
        w.recv_bytes().unwrap_err().to_string(),
        "connection is write-only"
    );
}

/// K04, the peer dies in the middle of a message (a forked child writes half a frame).
#[cfg(unix)]
#[test]
fn k04_eof_inside_a_message() {
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    multiprocess::init_test();
    let _g = common::start();
    let (ours, theirs) = UnixStream::pair().unwrap();
    let mut p = multiprocess::get_context(multiprocess::StartMethod::Fork)
        .unwrap()
        .process_closure(move || {
            let _ = (&theirs).write_all(&[0, 0, 0, 10, 1, 2, 3]);
        });
    p.start().unwrap();
    p.join().unwrap();
    let conn = Connection::from(std::os::fd::OwnedFd::from(ours));
    let e = conn.recv_bytes().unwrap_err();
    assert!(
        e.to_string().contains("got end of file during message"),
        "{e}"
    );
}

/// K05: message boundaries survive; poll never consumes; empty messages count.
#[cfg(unix)]
#[test]
fn k05_message_boundaries_across_processes() {
    multiprocess::init_test();
    let _g = common::start();
    let (r, w) = pipe_one_way().unwrap();
    let mut p = multiprocess::get_context(multiprocess::StartMethod::Fork)
        .unwrap()
        .process_closure(move || {
            for m in [&b"a"[..], b"b", b"cd", b""] {
                w.send_bytes(m).unwrap();
            }
        });
    p.start().unwrap();
    p.join().unwrap();
    for _ in 0..3 {
        assert!(r.poll(Some(Duration::ZERO)).unwrap());
    }
    for m in [&b"a"[..], b"b", b"cd"] {
        assert!(r.poll(Some(Duration::ZERO)).unwrap());
        assert_eq!(r.recv_bytes().unwrap(), m);
    }
    assert!(
        r.poll(Some(Duration::ZERO)).unwrap(),
        "an empty message makes poll true"
    );
    assert_eq!(r.recv_bytes().unwrap(), b"");
    assert!(matches!(r.recv_bytes(), Err(Error::Eof)));
}

/// K05 within one process (threads), on every platform; serde values too.
#[test]
fn k05_message_boundaries_threads() {
    multiprocess::init_test();
    let _g = common::start();
    let (a, b) = pipe().unwrap();
    let sender = std::thread::spawn(move || {
        for i in 0..1000u32 {
            b.send(&(i, format!("n{i}"))).unwrap();
        }
        b
    });
    for i in 0..1000u32 {
        assert_eq!(a.recv::<(u32, String)>().unwrap(), (i, format!("n{i}")));
    }
    let b = sender.join().unwrap();
    // Larger than any socket buffer: the sender blocks until we read.
    let big = std::thread::spawn(move || {
        b.send_bytes(&[9u8; 300_000]).unwrap();
        b
    });
    assert_eq!(a.recv_bytes().unwrap().len(), 300_000);
    let b = big.join().unwrap();
    // A value that does not decode as asked is an error, not a panic.
    b.send(&"text").unwrap();
    assert!(matches!(a.recv::<(u64, u64, u64)>(), Err(Error::Codec(_))));
}

fn slow_exit(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// K06: wait() over pipes and a sentinel.
#[test]
fn k06_wait() {
    multiprocess::init_test();
    let _g = common::start();
    let (a1, b1) = pipe().unwrap();
    let (a2, b2) = pipe().unwrap();
    let mut p = multiprocess::Process::new(slow_exit, (30_000,));
    p.start().unwrap();
    let s = p.sentinel().unwrap();
    let t = Instant::now();
    assert!(wait(&[&a1, &a2, &s], secs(0.5)).unwrap().is_empty());
    assert!(t.elapsed() >= Duration::from_millis(500));
    let t = Instant::now();
    assert!(
        wait(&[&a1, &a2, &s], Some(Duration::ZERO))
            .unwrap()
            .is_empty()
    );
    assert!(t.elapsed() < Duration::from_millis(500));
    b2.send_bytes(b"x").unwrap();
    assert_eq!(wait(&[&a1, &a2, &s], secs(10.0)).unwrap(), vec![1]);
    p.kill().unwrap();
    assert!(wait(&[&s], secs(10.0)).unwrap() == vec![0]);
    assert_eq!(wait(&[&a1, &a2, &s], None).unwrap(), vec![1, 2]);
    p.join().unwrap();
    drop((b1, a2));
}

/// Connects to `port` on the loopback, waits `ms`, then writes one line and waits for the
/// parent to close.
fn connect_write_later(port: u16, ms: u64) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::thread::sleep(Duration::from_millis(ms));
    s.write_all(b"late hello\n").unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
}

/// Python's `wait` takes sockets: a listener is ready when a child connects, and the accepted
/// stream when the child writes after a delay; `wait` returns that socket's index among pipes.
#[test]
fn wait_on_sockets() {
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    multiprocess::init_test();
    // Windows: the first socket calls of a process leave an event handle of Winsock's own (it
    // stays for the process's life, under Wine at least): make it before the leak check counts.
    let _g = common::start_with(|| {
        let warm = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let client = std::net::TcpStream::connect(warm.local_addr().unwrap()).unwrap();
        let (served, _) = warm.accept().unwrap();
        let _ = wait(&[&warm, &served, &client], Some(Duration::ZERO));
    });
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let (a, b) = pipe().unwrap();
    assert!(
        wait(&[&a, &listener], Some(Duration::ZERO))
            .unwrap()
            .is_empty()
    );
    let port = listener.local_addr().unwrap().port();
    let mut p = multiprocess::Process::new(connect_write_later, (port, 300u64));
    p.start().unwrap();
    assert_eq!(wait(&[&a, &listener], secs(10.0)).unwrap(), vec![1]);
    let (stream, _) = listener.accept().unwrap();
    let t = Instant::now();
    assert!(
        wait(&[&a, &stream], Some(Duration::ZERO))
            .unwrap()
            .is_empty()
    );
    assert_eq!(wait(&[&a, &stream], secs(10.0)).unwrap(), vec![1]);
    assert!(
        t.elapsed() >= Duration::from_millis(100),
        "ready before the child wrote"
    );
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).unwrap();
    assert_eq!(line, "late hello\n");
    drop(stream);
    p.join_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(0));
    // A Unix stream pair takes part too.
    #[cfg(not(unix))]
    drop(b);
    #[cfg(unix)]
    {
        use std::io::Write;
        let (x, mut y) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(wait(&[&x], Some(Duration::ZERO)).unwrap().is_empty());
        y.write_all(b"!").unwrap();
        assert_eq!(wait(&[&a, &x, &b], secs(10.0)).unwrap(), vec![1]);
    }
}

/// Echoes messages back, upper-cased, until `bye`. (Not until end of file: a forked child
/// inherits the parent's end too, as with Python's fork, so it would never see one.)
fn echo_upper(conn: multiprocess::Connection) -> u32 {
    let mut n = 0;
    while let Ok(m) = conn.recv::<String>() {
        if m == "bye" {
            break;
        }
        conn.send(&m.to_uppercase()).unwrap();
        n += 1;
    }
    n
}

/// Handles inside messages: a Connection given as a Process argument arrives working, with
/// spawn (its descriptor travels out of band) and with fork; the parent keeps its own end.
#[test]
fn connection_as_process_argument() {
    multiprocess::init_test();
    let _g = common::start();
    let methods: &[&str] = if cfg!(unix) {
        &["spawn", "fork"]
    } else {
        &["spawn"]
    };
    for method in methods {
        let (ours, theirs) = pipe().unwrap();
        let mut p = multiprocess::get_context(method.parse().unwrap())
            .unwrap()
            .process(echo_upper, (theirs,));
        p.start().unwrap();
        for word in ["hello", "from", "the parent"] {
            ours.send(&word).unwrap();
            assert_eq!(
                ours.recv::<String>().unwrap(),
                word.to_uppercase(),
                "{method}"
            );
        }
        ours.send(&"bye").unwrap();
        assert_eq!(p.result::<u32>().unwrap(), 3, "{method}");
    }
}

fn sum_all(ends: Vec<multiprocess::Connection>) -> u64 {
    ends.iter().map(|c| c.recv::<u64>().unwrap()).sum()
}

/// More handles than one SCM_RIGHTS message carries, and simplex ends keep their direction.
#[test]
fn many_connections_to_a_child() {
    multiprocess::init_test();
    let _g = common::start();
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for _ in 0..300 {
        let (r, w) = pipe_one_way().unwrap();
        readers.push(r);
        writers.push(w);
    }
    let mut p = multiprocess::Process::new(sum_all, (readers,));
    p.start().unwrap();
    for (i, w) in writers.iter().enumerate() {
        w.send(&(i as u64)).unwrap();
    }
    assert_eq!(p.result::<u64>().unwrap(), (0..300).sum::<u64>());
}

/// A connection that cannot carry handles (a simplex pipe on Unix) refuses to send a
/// Connection: a clear error, and nothing is sent.
#[test]
fn connection_over_a_pipe_is_refused() {
    multiprocess::init_test();
    let _g = common::start();
    let (c, _d) = pipe().unwrap();
    #[cfg(unix)]
    {
        let (r, w) = pipe_one_way().unwrap();
        match w.send(&c) {
            Err(Error::Codec(m)) => assert!(m.contains("cannot carry a Connection"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(!r.poll(Some(Duration::ZERO)).unwrap(), "nothing was sent");
    }
    // Serialising one outside our messages (here with another serde format) is refused.
    let e = serde_json::to_string(&c).unwrap_err().to_string();
    assert!(e.contains("can only travel to another process"), "{e}");
}

/// Receives a Connection over `control`, then says hello through it.
fn hello_through_received(control: Connection) -> bool {
    let (target, label): (Connection, String) = control.recv().unwrap();
    target.send(&format!("hello via {label}")).is_ok()
}

/// Handles inside messages over a Connection: a Connection sent with `send` to a child arrives
/// working there (Unix: `SCM_RIGHTS`; Windows: the child takes the handles out of our process).
#[test]
fn connection_sent_over_a_connection() {
    multiprocess::init_test();
    let _g = common::start();
    let (control_parent, control_child) = pipe().unwrap();
    let mut p = multiprocess::Process::new(hello_through_received, (control_child,));
    p.start().unwrap();
    let (reader, writer) = pipe_one_way().unwrap();
    control_parent
        .send(&(writer, String::from("a sent pipe end")))
        .unwrap();
    assert_eq!(
        reader.recv::<String>().unwrap(),
        "hello via a sent pipe end"
    );
    assert!(p.result::<bool>().unwrap());
}

/// Sends, without waiting, a burst of messages: text, one pipe end, text, and 260 pipe ends
/// (two `SCM_RIGHTS` batches on Unix). Each end's pipe already holds its own index.
fn send_burst(control: Connection) -> bool {
    let mut ends = Vec::new();
    for i in 0..261u32 {
        let (r, w) = pipe_one_way().unwrap();
        w.send(&i).unwrap();
        ends.push(r);
    }
    let first = ends.remove(0);
    let sent = control.send(&("a".to_string(), vec![first])).is_ok()
        && control
            .send(&("b".to_string(), Vec::<Connection>::new()))
            .is_ok()
        && control.send(&("c".to_string(), ends)).is_ok();
    // Stay until the parent has them (on Windows it takes the handles out of this process).
    sent && control.recv::<()>().is_ok()
}

/// Messages read ahead together keep their handles apart: each value gets exactly its own,
/// in order, even when one read brought several messages and their handles at once.
#[test]
fn read_ahead_keeps_each_message_its_handles() {
    multiprocess::init_test();
    let _g = common::start();
    let (ours, theirs) = pipe().unwrap();
    let mut p = multiprocess::Process::new(send_burst, (theirs,));
    p.start().unwrap();
    // Let the burst arrive whole, so that the first recv reads it all.
    std::thread::sleep(Duration::from_millis(300));
    let (a, one): (String, Vec<Connection>) = ours.recv().unwrap();
    assert_eq!((a.as_str(), one.len()), ("a", 1));
    assert_eq!(one[0].recv::<u32>().unwrap(), 0);
    let (b, none): (String, Vec<Connection>) = ours.recv().unwrap();
    assert_eq!((b.as_str(), none.len()), ("b", 0));
    let (c, many): (String, Vec<Connection>) = ours.recv().unwrap();
    assert_eq!((c.as_str(), many.len()), ("c", 260));
    for (i, end) in many.iter().enumerate() {
        assert_eq!(end.recv::<u32>().unwrap(), i as u32 + 1);
    }
    ours.send(&()).unwrap();
    assert!(p.result::<bool>().unwrap());
}

fn sum_two(control: Connection) -> u32 {
    let conn: Connection = control.recv().unwrap();
    conn.recv::<u32>().unwrap() + conn.recv::<u32>().unwrap()
}

/// Bytes a connection read ahead count as readable for `poll` and `wait`, and move with the
/// connection when it is passed to another process (they are not duplicated).
#[test]
fn unread_bytes_move_with_the_connection() {
    multiprocess::init_test();
    let _g = common::start();
    let (a, b) = pipe().unwrap();
    for v in [1u32, 2, 3] {
        a.send(&v).unwrap();
    }
    assert_eq!(b.recv::<u32>().unwrap(), 1);
    assert!(b.poll(Some(Duration::ZERO)).unwrap());
    assert_eq!(wait(&[&a, &b], Some(Duration::ZERO)).unwrap(), vec![1]);
    let (control, control_child) = pipe().unwrap();
    let mut p = multiprocess::Process::new(sum_two, (control_child,));
    p.start().unwrap();
    control.send(&b).unwrap();
    assert_eq!(p.result::<u32>().unwrap(), 5);
    assert!(!b.poll(Some(Duration::ZERO)).unwrap(), "the bytes moved");
    a.send(&4u32).unwrap();
    assert_eq!(b.recv::<u32>().unwrap(), 4);
}

/// Echoes byte messages back until an empty one.
fn echo_bytes(conn: Connection) -> usize {
    let mut n = 0;
    loop {
        let m = conn.recv_bytes().unwrap();
        if m.is_empty() {
            return n;
        }
        conn.send_bytes(&m).unwrap();
        n += 1;
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Messages larger than the read-ahead buffer and the socket's: back to back before the reader
/// reads, into a caller's buffer at an offset, too long for it (`BufferTooShort` with the whole
/// message), typed, to a spawned child and back, and refused over a `maxlength`.
#[test]
fn large_messages_between_our_own_ends() {
    multiprocess::init_test();
    let _g = common::start();
    let mb = 1 << 20;
    let (a, b) = pipe().unwrap();
    let (one, two, three) = (
        pattern(2 * mb, 1),
        pattern(3 * mb, 2),
        pattern(5 * mb + 7, 3),
    );
    // Senders in threads: a socket's buffers may hold less than these messages.
    let mut buf = vec![0u8; 7 * mb];
    std::thread::scope(|s| {
        s.spawn(|| {
            for m in [&one, &two, &three] {
                a.send_bytes(m).unwrap();
            }
        });
        assert!(b.recv_bytes().unwrap() == one);
        assert!(b.recv_bytes().unwrap() == two);
        let n = b.recv_bytes_into(&mut buf, mb).map_err(|e| e.to_string());
        assert_eq!(n, Ok(three.len()));
        assert!(buf[mb..mb + three.len()] == three[..]);
    });
    std::thread::scope(|s| {
        s.spawn(|| {
            b.send_bytes(&two).unwrap();
            b.send(&multiprocess::Bytes(one.clone())).unwrap();
        });
        match a.recv_bytes_into(&mut buf[..mb], 0) {
            Err(Error::BufferTooShort(m)) => assert!(m == two),
            other => panic!("{:?}", other.map(|_| ())),
        }
        assert!(a.recv::<multiprocess::Bytes>().unwrap().0 == one);
    });

    let mut p = multiprocess::Process::new(echo_bytes, (b,));
    p.start().unwrap();
    for m in [&one, &three, &two, &one] {
        a.send_bytes(m).unwrap();
        assert!(a.recv_bytes().unwrap() == *m);
    }
    a.send_bytes(b"").unwrap();
    assert_eq!(p.result::<usize>().unwrap(), 4);

    let (c, mut d) = pipe().unwrap();
    std::thread::scope(|s| {
        // Fails once `d` is closed, if the socket's buffers do not hold the message.
        s.spawn(|| c.send_bytes(&two).is_ok());
        let e = d.recv_bytes_max(1000).unwrap_err().to_string();
        assert!(e.contains("bad message length"), "{e}");
        d.close();
    });
}

/// Receives one message after a pause, and returns its length and a checksum.
fn late_receiver(conn: Connection) -> (usize, u64) {
    std::thread::sleep(Duration::from_millis(300));
    let m = conn.recv_bytes().unwrap();
    (m.len(), checksum(&m))
}

fn checksum(m: &[u8]) -> u64 {
    m.iter().enumerate().fold(0u64, |h, (i, &b)| {
        h.wrapping_mul(31).wrapping_add(b as u64 ^ i as u64)
    })
}

/// A large message to a process that is not yet receiving: the sender does not wait for it
/// to take the message from its memory, but sends it through the stream, as a plain send
/// would (and, as one, returns once the receiver has it). Both kinds of pipe.
#[test]
fn large_message_to_a_late_receiver() {
    multiprocess::init_test();
    let _g = common::start();
    for duplex in [true, false] {
        let (r, w) = if duplex { pipe() } else { pipe_one_way() }.unwrap();
        let m = pattern(6 << 20, 9);
        let mut p = multiprocess::Process::new(late_receiver, (r,));
        p.start().unwrap();
        w.send_bytes(&m).unwrap();
        let got = p.result_timeout::<(usize, u64)>(Duration::from_secs(60));
        assert_eq!(got.unwrap(), (m.len(), checksum(&m)), "duplex {duplex}");
    }
}

/// Sends large messages until the connection fails.
fn large_sender(conn: Connection) {
    let m = pattern(16 << 20, 4);
    while conn.send_bytes(&m).is_ok() {}
}

/// Receives large messages, checking each, until the connection fails.
fn large_receiver(conn: Connection) {
    let mut buf = vec![0u8; 16 << 20];
    while conn.recv_bytes_into(&mut buf, 0).is_ok() {}
}

/// A peer killed while large messages flow, in either direction, at whatever point of a
/// message: the survivor's call returns an error (never hangs), and every message it did get
/// whole is intact.
#[test]
fn large_messages_survive_a_killed_peer() {
    multiprocess::init_test();
    let _g = common::start();
    let expected = pattern(16 << 20, 4);
    for (round, delay) in [(0, 30), (1, 75), (2, 150)] {
        // The child sends; we receive.
        let (a, b) = pipe().unwrap();
        let mut p = multiprocess::Process::new(large_sender, (b,));
        p.start().unwrap();
        let start = Instant::now();
        let mut buf = vec![0u8; 16 << 20];
        let mut killed = false;
        let error = loop {
            if !killed && start.elapsed() > Duration::from_millis(delay) {
                p.kill().unwrap();
                killed = true;
            }
            match a.recv_bytes_into(&mut buf, 0) {
                Ok(n) => assert!(n == expected.len() && buf == expected, "round {round}"),
                Err(e) => break e,
            }
        };
        assert!(killed, "round {round}: {error}");
        p.join().unwrap();

        // The child receives; we send.
        let (a, b) = pipe().unwrap();
        let mut p = multiprocess::Process::new(large_receiver, (b,));
        p.start().unwrap();
        let start = Instant::now();
        let mut killed = false;
        loop {
            if !killed && start.elapsed() > Duration::from_millis(delay) {
                p.kill().unwrap();
                killed = true;
            }
            if a.send_bytes(&expected).is_err() {
                break;
            }
        }
        assert!(killed, "round {round}");
        p.join().unwrap();
    }
}

/// A large typed message that carries a connection: the handle travels after the payload,
/// which went straight between the processes' memory.
#[cfg(unix)]
#[test]
fn large_typed_message_carrying_a_connection() {
    multiprocess::init_test();
    let _g = common::start();
    let (a, b) = pipe().unwrap();
    let (c, d) = pipe().unwrap();
    let big = multiprocess::Bytes(pattern(3 << 20, 5));
    std::thread::scope(|s| {
        s.spawn(|| a.send(&(big.clone(), c)).unwrap());
        let (got, c) = b.recv::<(multiprocess::Bytes, Connection)>().unwrap();
        assert!(got.0 == big.0);
        c.send_bytes(b"through the passed end").unwrap();
        assert_eq!(d.recv_bytes().unwrap(), b"through the passed end");
    });
}

/// Sends `count` large messages, each filled with `seed`, on a sending end it shares with
/// another process.
#[cfg(target_os = "linux")]
fn shared_sender(conn: std::sync::Arc<Connection>, seed: u8, count: usize) -> bool {
    for i in 0..count {
        let m = vec![seed.wrapping_add(i as u8); (3 << 20) + i];
        conn.send_bytes(&m).unwrap();
    }
    true
}

/// Two processes send large messages on one shared end at once, with no lock of their own:
/// each message still arrives whole (a large message holds its direction until the receiver
/// has it, across processes). Linux: elsewhere large messages go through the stream, where
/// senders sharing an end need a lock, as in Python.
#[cfg(target_os = "linux")]
#[test]
fn two_processes_share_a_sending_end() {
    multiprocess::init_test();
    let _g = common::start();
    let (r, w) = pipe().unwrap();
    let w = std::sync::Arc::new(w);
    let mut a = multiprocess::Process::new(shared_sender, (w.clone(), 10u8, 6usize));
    let mut b = multiprocess::Process::new(shared_sender, (w, 100u8, 6usize));
    a.start().unwrap();
    b.start().unwrap();
    let mut seen = Vec::new();
    for _ in 0..12 {
        let m = r.recv_bytes().unwrap();
        let first = m[0];
        assert!(
            m.iter().all(|&x| x == first),
            "a message mixed with another"
        );
        let i = m.len() - (3 << 20);
        assert!(
            first == 10 + i as u8 || first == 100 + i as u8,
            "{first} {i}"
        );
        seen.push(first);
    }
    seen.sort_unstable();
    let mut want: Vec<u8> = (0..6u8).flat_map(|i| [10 + i, 100 + i]).collect();
    want.sort_unstable();
    assert_eq!(seen, want);
    assert!(a.result::<bool>().unwrap() && b.result::<bool>().unwrap());
}

/// Issue 14, item 1: `recv::<T>` on a message `send` did not write (our own `send_bytes`, a
/// CPython pickle) is a codec error at once that names `recv_bytes`, and the connection goes on
/// with the next message, on both kinds of pipe. Each receive runs under a hard time limit.
#[test]
fn typed_recv_of_foreign_bytes_is_an_error_not_a_hang() {
    multiprocess::init_test();
    let _g = common::start();
    for duplex in [true, false] {
        let (a, b) = if duplex { pipe() } else { pipe_one_way() }.unwrap();
        let (reader, writer) = if duplex { (b, a) } else { (a, b) };
        let pickle = b"\x80\x04\x95\t\x00\x00\x00\x00\x00\x00\x00\x8c\x05hello\x94.";
        writer.send_bytes(b"hello").unwrap();
        writer.send_bytes(pickle).unwrap();
        writer.send(&"next".to_string()).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let receiving = std::thread::spawn(move || {
            for _ in 0..3 {
                let got = reader.recv::<String>();
                if tx.send(got).is_err() {
                    break;
                }
            }
            reader
        });
        let next = || {
            rx.recv_timeout(Duration::from_secs(10))
                .expect("recv::<String> hung on a message send did not write")
        };
        match next() {
            Err(Error::Codec(m)) => assert!(m.contains("recv_bytes"), "{m}"),
            other => panic!("{other:?}"),
        }
        match next() {
            Err(Error::Codec(m)) => assert!(m.contains("pickle"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(next().unwrap(), "next");
        let reader = receiving.join().unwrap();
        assert!(reader.readable());
        drop(writer);
    }
}

/// Waits with `poll(2)` until `fd` is readable or `ms` pass; whether it is.
#[cfg(unix)]
fn poll_readable(fd: std::os::fd::RawFd, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    n == 1 && p.revents & (libc::POLLIN | libc::POLLHUP) != 0
}

/// A `Connection`'s and a process sentinel's OS handles can be waited on by other code (here
/// `poll(2)`, as a reactor would): readable when a message arrives, when the process ends;
/// `fileno()` is the same number; a closed connection has none.
#[cfg(unix)]
#[test]
fn os_handles_for_reactors() {
    use std::os::fd::{AsFd, AsRawFd};
    multiprocess::init_test();
    let _g = common::start();
    let (a, mut b) = pipe().unwrap();
    assert_eq!(a.fileno().unwrap(), i64::from(a.as_raw_fd()));
    assert_eq!(a.as_fd().as_raw_fd(), a.as_raw_fd());
    assert!(!poll_readable(a.as_raw_fd(), 0), "nothing sent yet");
    b.send(&7u32).unwrap();
    assert!(poll_readable(a.as_raw_fd(), 5_000), "a message is there");
    assert_eq!(a.recv::<u32>().unwrap(), 7);
    b.close();
    assert_eq!(b.as_raw_fd(), -1);
    assert!(matches!(b.fileno(), Err(Error::State(_))));

    let mut p = multiprocess::Process::new(slow_exit, (200,));
    p.start().unwrap();
    let sentinel = p.sentinel().unwrap();
    assert!(!poll_readable(sentinel.as_raw_fd(), 0), "still running");
    assert!(poll_readable(sentinel.as_fd().as_raw_fd(), 10_000), "ended");
    p.join_timeout(Duration::from_secs_f64(10.0)).unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(0));
}

/// Windows: a `Connection`'s pipe handle and a sentinel's process handle are there for other
/// code; the sentinel's is signalled when the process ends.
#[cfg(windows)]
#[test]
fn os_handles_for_reactors() {
    use std::os::windows::io::{AsHandle, AsRawHandle};
    use windows_sys::Win32::Foundation::WAIT_OBJECT_0;
    use windows_sys::Win32::System::Threading::WaitForSingleObject;
    multiprocess::init_test();
    let _g = common::start();
    let (a, mut b) = pipe().unwrap();
    assert!(!a.as_raw_handle().is_null());
    assert_eq!(a.fileno().unwrap(), a.as_raw_handle() as i64);
    assert_eq!(a.as_handle().as_raw_handle(), a.as_raw_handle());
    b.close();
    assert!(b.as_raw_handle().is_null());
    assert!(matches!(b.fileno(), Err(Error::State(_))));

    let mut p = multiprocess::Process::new(slow_exit, (200,));
    p.start().unwrap();
    let sentinel = p.sentinel().unwrap();
    // SAFETY: a valid process handle, borrowed from the sentinel that outlives the wait.
    let waited = unsafe { WaitForSingleObject(sentinel.as_raw_handle(), 10_000) };
    assert_eq!(waited, WAIT_OBJECT_0, "ended");
    p.join_timeout(Duration::from_secs_f64(10.0)).unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(0));
}

/// Receives a file's handle over `conn` and writes into the file through it.
fn write_through_received(conn: Connection) -> u32 {
    use std::io::Write as _;
    let handle: multiprocess::Handle = conn.recv().unwrap();
    let mut file = std::fs::File::from(handle.into_inner());
    file.write_all(b"through a sent handle").unwrap();
    7
}

/// Python's `reduction.send_handle`/`recv_handle`: any OS handle (here a file's) sent inside a
/// message to a running child, which uses it; the sender keeps its own.
#[test]
fn any_handle_travels_in_a_message() {
    multiprocess::init_test();
    let _g = common::start();
    let path = common::scratch("sent-handle");
    let file = std::fs::File::create(&path).unwrap();
    let (ours, theirs) = pipe().unwrap();
    let mut p = multiprocess::Process::new(write_through_received, (theirs,));
    p.start().unwrap();
    let handle = multiprocess::Handle::from(file);
    ours.send(&handle).unwrap();
    p.join_timeout(Duration::from_secs_f64(30.0)).unwrap();
    assert_eq!(p.result::<u32>().unwrap(), 7);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "through a sent handle"
    );
    // Ours still works (a duplicate was sent).
    let copy = handle.try_clone().unwrap();
    drop(copy);
    drop(handle);
    let _ = std::fs::remove_file(&path);
}

/// `recv_timeout` / `recv_bytes_timeout` (beyond Python): nothing there gives `Timeout` after
/// the timeout, not before; a message that comes is taken; the stream stays usable.
#[test]
fn recv_with_a_timeout() {
    multiprocess::init_test();
    let _g = common::start();
    for (a, b) in [pipe().unwrap(), {
        let (r, w) = pipe_one_way().unwrap();
        (r, w)
    }] {
        let t = Instant::now();
        assert!(matches!(
            a.recv_bytes_timeout(Duration::from_millis(150)),
            Err(Error::Timeout)
        ));
        assert!(
            t.elapsed() >= Duration::from_millis(150),
            "{:?}",
            t.elapsed()
        );
        assert!(matches!(
            a.recv_timeout::<u32>(Duration::ZERO),
            Err(Error::Timeout)
        ));
        b.send(&41u32).unwrap();
        b.send_bytes(b"raw").unwrap();
        assert_eq!(a.recv_timeout::<u32>(Duration::from_secs(30)).unwrap(), 41);
        assert_eq!(
            a.recv_bytes_timeout(Duration::from_secs(30)).unwrap(),
            b"raw"
        );
        drop(b);
        assert!(matches!(
            a.recv_bytes_timeout(Duration::from_secs(30)),
            Err(Error::Eof)
        ));
    }
}

/// A message larger than every buffer on the way (the stream's, the read-ahead's, and the
/// size above which `pipe()` copies straight between processes, an offer the timed receive
/// declines) arrives whole through `recv_bytes_timeout`, from another process that writes it
/// while we gather it; and a `Connection` inside a message arrives through `recv_timeout`.
#[test]
fn recv_timeout_takes_large_messages_and_handles() {
    multiprocess::init_test();
    let _g = common::start();
    let big: Vec<u8> = (0..24u32 << 20).map(|i| (i % 251) as u8).collect();
    let (a, b) = pipe().unwrap();
    let mut p = multiprocess::Process::new(send_big, (b, 24u32 << 20));
    p.start().unwrap();
    let got = a.recv_bytes_timeout(Duration::from_secs(120)).unwrap();
    assert_eq!(got.len(), big.len());
    assert!(got == big, "the payload arrived intact");
    p.join_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(0));

    // (A Connection travels inside a message on Unix only.)
    #[cfg(unix)]
    {
        let (a, b) = pipe().unwrap();
        let (inner_a, inner_b) = pipe().unwrap();
        b.send(&inner_b).unwrap();
        let inner: Connection = a.recv_timeout(Duration::from_secs(30)).unwrap();
        inner.send(&"through the passed end").unwrap();
        assert_eq!(
            inner_a
                .recv_timeout::<String>(Duration::from_secs(30))
                .unwrap(),
            "through the passed end"
        );
    }
}

fn send_big(c: Connection, n: u32) {
    let big: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
    c.send_bytes(&big).unwrap();
}

/// A peer that stops half way through a message (its header, then part of its payload)
/// holds a `recv_bytes_timeout` no longer than its timeout, and what arrived is kept: once
/// the rest comes, the message is whole, and the next one follows on its boundary.
#[cfg(unix)]
#[test]
fn recv_timeout_outlasts_a_peer_silent_mid_message() {
    use std::io::Write;
    use std::os::fd::AsFd;
    multiprocess::init_test();
    let _g = common::start();
    let (a, b) = pipe().unwrap();
    let mut raw = std::fs::File::from(b.as_fd().try_clone_to_owned().unwrap());
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let mut frame = (payload.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&payload);
    // Half a header.
    raw.write_all(&frame[..2]).unwrap();
    let t = Instant::now();
    assert!(matches!(
        a.recv_bytes_timeout(Duration::from_millis(200)),
        Err(Error::Timeout)
    ));
    assert!(
        t.elapsed() >= Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
    // The rest of the header and part of the payload.
    raw.write_all(&frame[2..40_000]).unwrap();
    assert!(matches!(
        a.recv_bytes_timeout(Duration::from_millis(200)),
        Err(Error::Timeout)
    ));
    raw.write_all(&frame[40_000..]).unwrap();
    assert_eq!(
        a.recv_bytes_timeout(Duration::from_secs(30)).unwrap(),
        payload
    );
    b.send(&"next").unwrap();
    assert_eq!(a.recv::<String>().unwrap(), "next");
}

/// Receives `count` messages after a pause (a slow reader), returning each one's length and
/// checksum.
fn slow_reader(conn: Connection, count: usize) -> Vec<(usize, u64)> {
    std::thread::sleep(Duration::from_millis(200));
    (0..count)
        .map(|_| {
            let m = conn.recv_bytes().unwrap();
            (m.len(), checksum(&m))
        })
        .collect()
}

/// Reads nothing and ends after a pause.
fn leave_unread(conn: Connection, ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
    drop(conn);
}

/// `send_timeout` / `send_bytes_timeout` (beyond Python, whose `send` blocks while the peer
/// does not read), on both kinds of pipe, with messages larger than every buffer on the way:
/// - a peer that never reads: the send gives up with `Timeout` after the limit, not before;
///   part of the message went, so the end then refuses to send (`cut off`) and, duplex,
///   still receives; a small message on a fresh pair goes at once;
/// - a peer in another process that reads late and slowly: three 12 MiB messages arrive whole
///   and intact (each through the stream, not the cross-process copy);
/// - a peer that ends without reading: the send fails with the peer's end, not a timeout.
#[test]
fn send_with_a_timeout() {
    multiprocess::init_test();
    let _g = common::start();
    let big = pattern(12 << 20, 5);
    for duplex in [true, false] {
        let (r, w) = if duplex { pipe() } else { pipe_one_way() }.unwrap();
        w.send_timeout(&7u32, Duration::ZERO).unwrap();
        assert_eq!(r.recv::<u32>().unwrap(), 7);
        let t = Instant::now();
        match w.send_bytes_timeout(&big, Duration::from_millis(200)) {
            Err(Error::Timeout) => {}
            other => panic!("duplex {duplex}: {other:?}"),
        }
        let waited = t.elapsed();
        assert!(waited >= Duration::from_millis(200), "{waited:?}");
        // A hang guard only.
        assert!(waited < Duration::from_secs(20), "{waited:?}");
        match w.send_bytes(b"more") {
            Err(Error::State(m)) => assert!(m.contains("cut off mid-message"), "{m}"),
            other => panic!("duplex {duplex}: {other:?}"),
        }
        if duplex {
            r.send(&"the other way").unwrap();
            assert_eq!(w.recv::<String>().unwrap(), "the other way");
        }

        let (r, w) = if duplex { pipe() } else { pipe_one_way() }.unwrap();
        let mut p = multiprocess::Process::new(slow_reader, (r, 3usize));
        p.start().unwrap();
        for _ in 0..3 {
            w.send_bytes_timeout(&big, Duration::from_secs(120))
                .unwrap();
        }
        let got = p.result_timeout::<Vec<(usize, u64)>>(Duration::from_secs(120));
        assert_eq!(
            got.unwrap(),
            vec![(big.len(), checksum(&big)); 3],
            "duplex {duplex}"
        );

        let (r, w) = if duplex { pipe() } else { pipe_one_way() }.unwrap();
        let mut p = multiprocess::Process::new(leave_unread, (r, 150u64));
        p.start().unwrap();
        let t = Instant::now();
        match w.send_bytes_timeout(&big, Duration::from_secs(60)) {
            Err(Error::Io { .. } | Error::Eof) => {}
            other => panic!("duplex {duplex}: {other:?}"),
        }
        assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
        p.join_timeout(Duration::from_secs(60)).unwrap();
    }

    // A Connection inside a message (Unix: duplex ends carry handles).
    #[cfg(unix)]
    {
        let (a, b) = pipe().unwrap();
        let (inner_a, inner_b) = pipe().unwrap();
        b.send_timeout(&inner_b, Duration::from_secs(30)).unwrap();
        let inner: Connection = a.recv().unwrap();
        inner
            .send_timeout(&"through the passed end", Duration::from_secs(30))
            .unwrap();
        assert_eq!(inner_a.recv::<String>().unwrap(), "through the passed end");
    }
}
