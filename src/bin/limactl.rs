fn main() {
    std::process::exit(lima::cli::main());
}
