fn main() -> std::process::ExitCode {
    pcl::cli::main()
}
