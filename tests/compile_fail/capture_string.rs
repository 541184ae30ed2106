use multiprocess::Process;

fn main() {
    multiprocess::init();
    let greeting = String::from("hello");
    let _p = Process::new(move || println!("{greeting}"), ());
}
