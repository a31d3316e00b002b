fn main() {
    eprintln!("loadtest: no scenario yet (issue 3)");
    std::process::exit(2);
}
