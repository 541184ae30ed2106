//! Listener/Client cases K07–K08 of python-reference.md §2.3: the authkey handshake between our
//! ends, against the real CPython on this machine in both directions, bad peers, and addresses.
#![cfg(unix)]

mod common;

use std::io::{BufRead, Write};
use std::process::{Command, Stdio};

use multiprocess::Error;
use multiprocess::connection::{Address, Listener, client};

fn tcp() -> Option<Address> {
    Some(Address::Tcp("127.0.0.1:0".parse().unwrap()))
}

fn has_python() -> bool {
    let ok = Command::new("python3").arg("-V").output().is_ok();
    if !ok {
        println!("skipped: no python3 on this machine");
    }
    ok
}

/// K07: our ends authenticate each other and exchange objects both ways; a wrong key is refused
/// on both sides with Python's texts.
#[test]
fn k07_handshake_between_our_ends() {
    multiprocess::init_test();
    let _g = common::start();
    let listener = Listener::bind(tcp(), Some(b"secret")).unwrap();
    let address = listener.address().clone();
    let t = std::thread::spawn(move || {
        let conn = client(&address, Some(b"secret")).unwrap();
        conn.send(&vec![1u32, 2, 3]).unwrap();
        conn.recv::<String>().unwrap()
    });
    let conn = listener.accept().unwrap();
    assert_eq!(conn.recv::<Vec<u32>>().unwrap(), vec![1, 2, 3]);
    conn.send(&"thanks").unwrap();
    assert_eq!(t.join().unwrap(), "thanks");
    assert!(listener.last_accepted().is_some());

    let address = listener.address().clone();
    let t = std::thread::spawn(move || client(&address, Some(b"wrong")).map(|_| ()));
    match listener.accept() {
        Err(Error::Authentication(m)) => assert_eq!(m, "digest received was wrong"),
        other => panic!("{other:?}"),
    }
    match t.join().unwrap() {
        Err(Error::Authentication(m)) => assert_eq!(m, "digest sent was rejected"),
        other => panic!("{other:?}"),
    }
}

/// K07: a peer that sends 300 bytes, or no challenge, gets an error, never a crash or hang.
#[test]
fn k07_bad_peers() {
    multiprocess::init_test();
    let _g = common::start();
    let listener = Listener::bind(tcp(), Some(b"k")).unwrap();
    let Address::Tcp(addr) = listener.address().clone() else {
        unreachable!()
    };
    let t = std::thread::spawn(move || {
        let mut raw = std::net::TcpStream::connect(addr).unwrap();
        let mut big = 300u32.to_be_bytes().to_vec();
        big.extend_from_slice(&[b'x'; 300]);
        let _ = raw.write_all(&big); // an "answer" far over the 256-byte limit
        raw
    });
    let e = listener.accept().unwrap_err();
    assert!(e.to_string().contains("bad message length"), "{e}");
    drop(t.join().unwrap());

    // A "listener" that greets with something other than a challenge.
    let fake = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = fake.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let (mut s, _) = fake.accept().unwrap();
        s.write_all(&[0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o'])
            .unwrap();
        s
    });
    match client(&Address::Tcp(addr), Some(b"k")) {
        Err(Error::Authentication(m)) => {
            assert!(m.starts_with("Protocol error, expected challenge"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    drop(t.join().unwrap());
}

/// K07 interop: a CPython `Client` authenticates to our `Listener`; a wrong key is refused on
/// both sides.
#[test]
fn k07_cpython_client_to_our_listener() {
    multiprocess::init_test();
    let _g = common::start();
    if !has_python() {
        return;
    }
    for (key, ok) in [(&b"shared key"[..], true), (&b"wrong key"[..], false)] {
        let listener = Listener::bind(tcp(), Some(b"shared key")).unwrap();
        let Address::Tcp(addr) = listener.address().clone() else {
            unreachable!()
        };
        let script = format!(
            "from multiprocessing.connection import Client\n\
             c = Client(('127.0.0.1', {}), authkey={:?})\n\
             c.send_bytes(b'from python')\n\
             print(c.recv_bytes().decode())\n",
            addr.port(),
            String::from_utf8_lossy(key).to_string(),
        )
        .replace("authkey=\"", "authkey=b\"");
        let child = Command::new("python3")
            .args(["-c", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let accepted = listener.accept();
        if ok {
            let conn = accepted.unwrap();
            assert_eq!(conn.recv_bytes(None).unwrap(), b"from python");
            conn.send_bytes(b"from rust").unwrap();
        } else {
            match accepted {
                Err(Error::Authentication(m)) => assert_eq!(m, "digest received was wrong"),
                other => panic!("{other:?}"),
            }
        }
        let out = child.wait_with_output().unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        if ok {
            assert!(out.status.success(), "{stderr}");
            assert_eq!(stdout.trim(), "from rust");
        } else {
            assert!(!out.status.success());
            assert!(stderr.contains("digest sent was rejected"), "{stderr}");
        }
    }
}

/// K07 interop: our `client` authenticates to a CPython `Listener`; a wrong key is refused on
/// both sides.
#[test]
fn k07_our_client_to_cpython_listener() {
    multiprocess::init_test();
    let _g = common::start();
    if !has_python() {
        return;
    }
    for (key, ok) in [(&b"shared key"[..], true), (&b"wrong key"[..], false)] {
        let script = "import sys\n\
             from multiprocessing.connection import Listener\n\
             l = Listener(('127.0.0.1', 0), authkey=b'shared key')\n\
             print(l.address[1], flush=True)\n\
             c = l.accept()\n\
             c.send_bytes(c.recv_bytes().upper())\n";
        let mut child = Command::new("python3")
            .args(["-c", script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut port = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut port)
            .unwrap();
        let address = Address::Tcp(format!("127.0.0.1:{}", port.trim()).parse().unwrap());
        let result = client(&address, Some(key));
        if ok {
            let conn = result.unwrap();
            conn.send_bytes(b"shout").unwrap();
            assert_eq!(conn.recv_bytes(None).unwrap(), b"SHOUT");
        } else {
            match result {
                Err(Error::Authentication(m)) => assert_eq!(m, "digest sent was rejected"),
                other => panic!("{other:?}"),
            }
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if ok {
            assert!(out.status.success(), "{stderr}");
        } else {
            assert!(stderr.contains("digest received was wrong"), "{stderr}");
        }
    }
}

/// K08: addresses. Binding twice fails; accept after close fails; a Unix socket file is removed
/// on close; Linux abstract names work; no key means no handshake.
#[test]
fn k08_addresses() {
    multiprocess::init_test();
    let _g = common::start();
    let mut a = Listener::bind(None, None).unwrap();
    let Address::Unix(path) = a.address().clone() else {
        panic!("default is a Unix socket")
    };
    assert!(path.exists());
    let e = Listener::bind(Some(Address::Unix(path.clone())), None).unwrap_err();
    assert!(e.to_string().to_lowercase().contains("in use"), "{e}");
    let t = {
        let address = a.address().clone();
        std::thread::spawn(move || client(&address, None).unwrap().send(&7u8).unwrap())
    };
    assert_eq!(a.accept().unwrap().recv::<u8>().unwrap(), 7);
    t.join().unwrap();
    a.close();
    a.close();
    assert!(!path.exists(), "socket file removed on close");
    assert_eq!(a.accept().unwrap_err().to_string(), "listener is closed");

    let tcp1 = Listener::bind(tcp(), None).unwrap();
    let e = Listener::bind(Some(tcp1.address().clone()), None).unwrap_err();
    assert!(e.to_string().to_lowercase().contains("in use"), "{e}");

    if cfg!(target_os = "linux") {
        let name = format!("multiprocess-test-{}", std::process::id()).into_bytes();
        let l = Listener::bind(Some(Address::Abstract(name.clone())), Some(b"k")).unwrap();
        let t = std::thread::spawn(move || {
            client(&Address::Abstract(name), Some(b"k"))
                .unwrap()
                .send(&"abstract")
                .unwrap()
        });
        assert_eq!(l.accept().unwrap().recv::<String>().unwrap(), "abstract");
        t.join().unwrap();
    }
}
