// The right way (a pass case): values go as arguments, owned types as parameters. Its presence
// also makes trybuild build (not only check) every case, which `capture_copy` needs.
use multiprocess::Process;

fn greet(name: String, times: u64) -> String {
    name.repeat(times as usize)
}

fn main() {
    multiprocess::init();
    let _p = Process::new(greet, ("bob".to_string(), 2));
    let _q = Process::new(|x: u64| x * 3, (2,));
}
