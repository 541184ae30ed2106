//! CPython's `multiprocessing` docs, "Listeners and Clients": a server that listens with an
//! authentication key and sends a list, bytes and an array's bytes; a client that receives
//! them. The docs give two programs; here the client runs in a child process.
//!
//! ```python
//! from multiprocessing.connection import Listener
//! from array import array
//!
//! address = ('localhost', 6000)     # family is deduced to be 'AF_INET'
//!
//! with Listener(address, authkey=b'secret password') as listener:
//!     with listener.accept() as conn:
//!         print('connection accepted from', listener.last_accepted)
//!
//!         conn.send([2.25, None, 'junk', float])
//!
//!         conn.send_bytes(b'hello')
//!
//!         conn.send_bytes(array('i', [42, 1729]))
//! ```
//!
//! ```python
//! from multiprocessing.connection import Client
//! from array import array
//!
//! address = ('localhost', 6000)
//!
//! with Client(address, authkey=b'secret password') as conn:
//!     print(conn.recv())                  # => [2.25, None, 'junk', float]
//!
//!     print(conn.recv_bytes())            # => 'hello'
//!
//!     arr = array('i', [0, 0, 0, 0, 0])
//!     print(conn.recv_bytes_into(arr))    # => 8
//!     print(arr)                          # => array('i', [42, 1729, 0, 0, 0])
//! ```
//!
//! Port 0 instead of 6000 lets the OS pick a free port; the child is given the listener's
//! actual address. Python's mixed list becomes a list of an enum; Rust has no type objects,
//! so `float` becomes a variant naming the type.
//!
//! Run with `cargo run --example docs_listener_client`.

use std::fmt;
use std::net::SocketAddr;

use multiprocess::Process;
use multiprocess::connection::{Address, Listener, client};
use serde::{Deserialize, Serialize};

/// A value of Python's list `[2.25, None, 'junk', float]`.
#[derive(Debug, Serialize, Deserialize)]
enum Obj {
    Float(f64),
    None,
    Str(String),
    /// A Python type object, by name.
    Type(String),
}

/// Shown as Python's `print` shows it.
impl fmt::Display for Obj {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Obj::Float(x) => write!(f, "{x:?}"),
            Obj::None => write!(f, "None"),
            Obj::Str(s) => write!(f, "'{s}'"),
            Obj::Type(name) => write!(f, "<class '{name}'>"),
        }
    }
}

/// A list as Python prints one: `[a, b, c]`.
fn show(list: &[Obj]) -> String {
    let items: Vec<String> = list.iter().map(Obj::to_string).collect();
    format!("[{}]", items.join(", "))
}

const AUTHKEY: &[u8] = b"secret password";

/// The docs' client program, run in a child process.
fn client_side(address: Address) {
    let conn = client(&address, Some(AUTHKEY)).expect("connect");
    // => [2.25, None, 'junk', <class 'float'>]
    println!("{}", show(&conn.recv::<Vec<Obj>>().expect("recv")));

    let hello = conn.recv_bytes().expect("recv_bytes"); // no size limit
    println!("b'{}'", hello.escape_ascii()); // => b'hello', as Python prints bytes

    let mut arr = [0i32; 5]; // array('i', [0, 0, 0, 0, 0])
    let n = conn
        .recv_bytes_into(bytemuck::cast_slice_mut(&mut arr), 0) // its bytes, at offset 0
        .expect("recv_bytes_into");
    println!("{n}"); // => 8
    println!("array('i', {arr:?})"); // => array('i', [42, 1729, 0, 0, 0])
}

fn main() -> multiprocess::Result<()> {
    multiprocess::init(); // `if __name__ == '__main__':` — the first line of main
    let address = Address::Tcp(SocketAddr::from(([127, 0, 0, 1], 0))); // family: TCP
    let listener = Listener::bind(Some(address), Some(AUTHKEY))?;

    let mut p = Process::new(client_side, (listener.address().clone(),));
    p.start()?;
    {
        let conn = listener.accept()?; // closed at the end of this block, like `with`
        let peer = listener.last_accepted().unwrap_or_default();
        println!("connection accepted from {peer}");

        let list = vec![
            Obj::Float(2.25),
            Obj::None,
            Obj::Str("junk".into()),
            Obj::Type("float".into()),
        ];
        conn.send(&list)?;

        conn.send_bytes(b"hello")?;

        conn.send_bytes(bytemuck::cast_slice(&[42i32, 1729]))?; // array('i', [42, 1729])
    }
    p.join()?;
    Ok(())
}
