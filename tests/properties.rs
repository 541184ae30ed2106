//! Property tests (proptest) of what a peer controls: the frame decoder behind `recv_bytes` /
//! `recv_bytes_into` fed arbitrary bytes, the frames we write (CPython's, byte for byte), and
//! both roles of the authentication handshake against a peer that sends arbitrary bytes. Every
//! case runs over a real TCP connection (the same on every OS); the property is always "a value
//! or a clear error, never a panic or a hang".

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Mutex, OnceLock, mpsc};

use multiprocess::connection::{Address, Listener, client};
use multiprocess::{Connection, Error};
use proptest::prelude::*;

type Job = Box<dyn FnOnce() + Send>;

/// Runs `f` on the one thread that plays the raw peer in every case, and returns a receiver
/// of its result. (A thread per case would leave Wine's per-thread socket state to be freed
/// after the case's leak check.)
fn on_peer<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> mpsc::Receiver<R> {
    static PEER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let jobs = PEER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::spawn(move || {
            for job in rx {
                job();
            }
        });
        Mutex::new(tx)
    });
    let (tx, rx) = mpsc::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(f());
    });
    jobs.lock().unwrap().send(job).unwrap();
    rx
}

/// Starts a case: this thread and the peer thread have used sockets before resources are
/// counted.
fn start() -> common::Guard {
    common::start_with(|| {
        common::warm_sockets();
        on_peer(common::warm_sockets).recv().unwrap();
    })
}

fn loopback() -> Option<Address> {
    Some(Address::Tcp("127.0.0.1:0".parse().unwrap()))
}

fn tcp_address(listener: &Listener) -> std::net::SocketAddr {
    match listener.address() {
        Address::Tcp(a) => *a,
        other => panic!("{other:?}"),
    }
}

/// A connection accepted from a raw peer that writes `bytes` and closes.
fn fed(bytes: &[u8]) -> Connection {
    let listener = Listener::bind(loopback(), None).unwrap();
    let mut peer = TcpStream::connect(tcp_address(&listener)).unwrap();
    let conn = listener.accept().unwrap();
    peer.write_all(bytes).unwrap();
    peer.shutdown(Shutdown::Write).unwrap();
    conn
}

/// Frames as CPython writes them.
fn cpython_frames(payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in payloads {
        out.extend_from_slice(&(p.len() as i32).to_be_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// The payload `Connection::send` writes for `(n, s)`: the value as postcard (varints), no
/// handles (a 4-byte count), and send's 4-byte mark.
fn sent(n: u32, s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for mut v in [n as u64, s.len() as u64] {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            out.push(if v == 0 { byte } else { byte | 0x80 });
            if v == 0 {
                break;
            }
        }
    }
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(b"\xa7mpS");
    out
}

/// Arbitrary bytes: mostly valid frames with garbage mixed in, so that both the happy path
/// and every way of failing are reached.
fn stream_bytes() -> impl Strategy<Value = Vec<u8>> {
    let frame = prop::collection::vec(any::<u8>(), 0..300).prop_map(|p| cpython_frames(&[p]));
    let header = prop_oneof![
        any::<i32>().prop_map(|n| n.to_be_bytes().to_vec()),
        any::<u64>()
            .prop_map(|n| [(-1i32).to_be_bytes().to_vec(), n.to_be_bytes().to_vec()].concat()),
        (any::<u64>(), any::<u64>(), any::<u8>()).prop_map(|(l, id, a)| {
            [
                (-2i32).to_be_bytes().to_vec(),
                l.to_be_bytes().to_vec(),
                id.to_be_bytes().to_vec(),
                vec![a],
            ]
            .concat()
        }),
    ];
    let garbage = prop::collection::vec(any::<u8>(), 0..40);
    prop::collection::vec(prop_oneof![4 => frame, 1 => header, 1 => garbage], 0..8)
        .prop_map(|parts| parts.concat())
}

/// Cases per property: 64; 16 on Windows, where CI runs them under Wine, each case's pipes and
/// threads about 15 times slower than here (72 s for the five properties at 64): the decoding
/// they exercise is the same code on every platform.
const CASES: u32 = if cfg!(windows) { 16 } else { 64 };

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    /// Whatever a peer sends, receiving yields frames until an error (end of file for a clean
    /// end), and never panics, nor waits once the peer has closed.
    #[test]
    fn decoder_takes_any_bytes(bytes in stream_bytes(), limit in prop::option::of(0usize..400), into in any::<bool>()) {
        multiprocess::init_test();
        let _g = start();
        let conn = fed(&bytes);
        let mut buf = vec![0u8; 200];
        for _ in 0..bytes.len() + 1 {
            let got = if into {
                conn.recv_bytes_into(&mut buf, 0).map(|n| buf[..n].to_vec())
            } else {
                limit.map_or_else(|| conn.recv_bytes(), |l| conn.recv_bytes_max(l))
            };
            match got {
                Ok(_) | Err(Error::BufferTooShort(_)) => {}
                Err(Error::Eof) | Err(Error::Io { .. }) | Err(Error::State(_)) => break,
                Err(e) => prop_assert!(false, "unexpected error kind: {e:?}"),
            }
        }
    }

    /// `recv::<T>` over frames of arbitrary bytes with genuine `send` messages among them:
    /// each frame gives its value or a codec error, and never more than one frame is taken
    /// (the next genuine message still arrives); nothing panics or waits.
    #[test]
    fn typed_recv_takes_any_frames(frames in prop::collection::vec(prop_oneof![
        prop::collection::vec(any::<u8>(), 0..60).prop_map(Err),
        (any::<u32>(), "[a-z]{0,20}").prop_map(Ok),
    ], 0..8)) {
        multiprocess::init_test();
        let _g = start();
        let payloads: Vec<Vec<u8>> = frames
            .iter()
            .map(|f| match f {
                Ok((n, s)) => sent(*n, s),
                Err(garbage) => garbage.clone(),
            })
            .collect();
        let conn = fed(&cpython_frames(&payloads));
        for f in &frames {
            match (f, conn.recv::<(u32, String)>()) {
                (Ok(want), Ok(got)) => prop_assert_eq!(want, &got),
                (Err(_), Err(Error::Codec(_))) => {}
                (f, got) => prop_assert!(false, "{f:?} gave {got:?}"),
            }
        }
        prop_assert!(matches!(conn.recv::<(u32, String)>(), Err(Error::Eof)));
    }

    /// What we send is CPython's framing, byte for byte, and reads back as sent.
    #[test]
    fn frames_are_cpythons(payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..70_000), 0..6)) {
        multiprocess::init_test();
        let _g = start();
        let listener = Listener::bind(loopback(), None).unwrap();
        let mut raw = TcpStream::connect(tcp_address(&listener)).unwrap();
        let conn = listener.accept().unwrap();
        let expected = cpython_frames(&payloads);
        let reader = on_peer(move || {
            let mut got = vec![0u8; expected.len()];
            raw.read_exact(&mut got).map(|()| (got == expected, raw))
        });
        for p in &payloads {
            conn.send_bytes(p).unwrap();
        }
        let (same, mut raw) = reader.recv().unwrap().unwrap();
        prop_assert!(same);
        // And back: CPython's frames decode as the same payloads.
        raw.write_all(&cpython_frames(&payloads)).unwrap();
        for p in &payloads {
            prop_assert!(conn.recv_bytes().unwrap() == *p);
        }
    }

    /// A client that answers the challenge with arbitrary bytes is refused with an error.
    #[test]
    fn listener_refuses_any_answer(answer in stream_bytes()) {
        multiprocess::init_test();
        let _g = start();
        let listener = Listener::bind(loopback(), Some(b"secret")).unwrap();
        let mut peer = TcpStream::connect(tcp_address(&listener)).unwrap();
        let writer = on_peer(move || {
            let _ = peer.write_all(&answer);
            let _ = peer.shutdown(Shutdown::Write);
            // Drain what the listener says, until it hangs up.
            let _ = std::io::copy(&mut peer, &mut std::io::sink());
        });
        prop_assert!(listener.accept().is_err());
        drop(listener);
        writer.recv().unwrap();
    }

    /// A server that sends arbitrary bytes instead of a challenge is refused with an error.
    #[test]
    fn client_refuses_any_challenge(challenge in stream_bytes()) {
        multiprocess::init_test();
        let _g = start();
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = Address::Tcp(server.local_addr().unwrap());
        let talker = on_peer(move || {
            let (mut s, _) = server.accept().unwrap();
            let _ = s.write_all(&challenge);
            let _ = s.shutdown(Shutdown::Write);
            let _ = std::io::copy(&mut s, &mut std::io::sink());
        });
        prop_assert!(client(&address, Some(b"secret")).is_err());
        talker.recv().unwrap();
    }
}
