use multiprocess::Process;

fn main() {
    multiprocess::init();
    let k = 3u64;
    let _p = Process::new(move |x: u64| x * k, (2,));
}
