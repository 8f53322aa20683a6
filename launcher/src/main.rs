//! The `hybrun` program: the command line is [`cli`]; the work is the `hybrun`
//! library's.

mod cli;

fn main() {
    std::process::exit(cli::main());
}
