use multiprocess::Process;

fn greet(name: &str) {
    println!("hello, {name}");
}

fn main() {
    multiprocess::init();
    let _p = Process::new(greet, ("bob",));
}
