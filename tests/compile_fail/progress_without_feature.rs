fn main() {
    multiprocess::init();
    let _builder = multiprocess::Pool::builder().progress(true);
}
