fn main() -> std::process::ExitCode {
    cloud_accounting::cli::send::main()
}
