fn main() -> std::process::ExitCode {
    cloud_accounting::cli::extract::main()
}
