//! The `wharf` binary: everything it does is in [`wharf::cli`] (argument
//! parsing, `serve`, the client commands), so this stays one call.

fn main() -> std::process::ExitCode {
    wharf::cli::main()
}
