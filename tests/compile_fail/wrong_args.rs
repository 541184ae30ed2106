use multiprocess::Process;

fn greet(name: String) {
    println!("hello, {name}");
}

fn main() {
    multiprocess::init();
    let _p = Process::new(greet, (5u32,));
}
