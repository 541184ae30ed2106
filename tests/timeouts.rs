//! Every timeout a caller gives may be `Duration::MAX`, a common way of saying "for ever": no
//! call panics on it (`Instant + Duration` overflows there), each waits as long as it takes,
//! here for something that is ready or comes soon. That includes the manager, which gets the
//! timeout as seconds from its client and must not panic on any number either.

mod common;

use std::time::Duration;

use multiprocess::connection::{Listener, client_timeout};
use multiprocess::{Manager, Pool, Process, Queue, pipe, wait};

const FOREVER: Duration = Duration::MAX;

fn quick() {}

fn square(x: u64) -> u64 {
    x * x
}

#[test]
fn duration_max_waits_for_ever_and_panics_nowhere() {
    multiprocess::init_test();
    let _g = common::start_with_sockets();

    let q = Queue::<u32>::new().unwrap();
    q.put(&1).unwrap();
    assert_eq!(q.get_timeout(true, Some(FOREVER)).unwrap(), 1);

    let lock = multiprocess::Lock::new().unwrap();
    assert!(lock.acquire_timeout(FOREVER).unwrap());
    lock.release().unwrap();

    let event = multiprocess::Event::new().unwrap();
    event.set();
    assert!(event.wait_timeout(FOREVER));

    let mut p = Process::new(quick, ());
    p.start().unwrap();
    p.join_timeout(FOREVER).unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(0));

    let pool = Pool::new(1).unwrap();
    let r = pool.apply_async(square, (9,)).unwrap();
    assert_eq!(r.get_timeout(FOREVER).unwrap(), 81);
    pool.close();
    assert!(pool.join_timeout(FOREVER).unwrap());

    let (a, b) = pipe().unwrap();
    b.send_timeout(&"x", FOREVER).unwrap();
    assert!(a.poll(Some(FOREVER)).unwrap());
    assert_eq!(wait(&[&a], Some(FOREVER)).unwrap(), vec![0]);
    assert_eq!(a.recv_timeout::<String>(FOREVER).unwrap(), "x");

    let listener = Listener::bind(None, Some(b"key")).unwrap();
    let address = listener.address().clone();
    let t = std::thread::spawn(move || {
        client_timeout(&address, Some(b"key"), FOREVER).map(|c| c.send(&2u8))
    });
    let conn = listener.accept_timeout(FOREVER).unwrap();
    assert_eq!(conn.recv::<u8>().unwrap(), 2);
    t.join().unwrap().unwrap().unwrap();

    let manager = Manager::start().unwrap();
    manager.set_timeout(Some(FOREVER));
    let mq = manager.queue::<u32>().unwrap();
    mq.put(&3).unwrap();
    assert_eq!(mq.get_timeout(Some(FOREVER)).unwrap(), 3);
    let me = manager.event().unwrap();
    me.set().unwrap();
    assert!(me.wait_timeout(FOREVER).unwrap());
    // The manager answers on after all of them.
    mq.put(&4).unwrap();
    assert_eq!(mq.get().unwrap(), 4);
}
