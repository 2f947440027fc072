fn main() -> std::process::ExitCode {
    pcl::main()
}
