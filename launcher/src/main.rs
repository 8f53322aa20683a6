//! The `hybrun` program: the command line is [`cli`]; the work is the `hybrun`
//! library's.
//!
//! Started as C's `main`, without the Rust runtime's start-up (`#![no_main]`):
//! every rank of a job runs `hybrun exec`, and that start-up (the main thread's
//! stack bounds read from /proc/self/maps, an alternate signal stack and
//! handlers for stack overflows) was a third of the system calls a rank made
//! before its runtime (see scripts/bench-launch). What of it hybrun relies on is
//! done here: SIGPIPE ignored (writes to a closed pipe are errors, as in every
//! Rust program), standard descriptors 0-2 open, a panic's exit status 101, and
//! stdout flushed at the end. The arguments still reach `std::env::args` (glibc
//! passes them to `.init_array`, where std takes them). What is lost: the
//! "has overflowed its stack" message (a stack overflow ends in SIGSEGV).

// The test harness brings its own main.
#![cfg_attr(not(test), no_main)]

mod cli;

/// The process's entry, called by the C library (in a test build, the
/// harness's main replaces it).
#[cfg_attr(not(test), unsafe(no_mangle))]
pub extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    standard_descriptors();
    // SAFETY: installs SIG_IGN, no Rust code, before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // A panic has printed its message (the default hook); the status is Rust's.
    let code = std::panic::catch_unwind(cli::main).unwrap_or(101);
    // exit flushes stdout, as returning from a Rust main does.
    std::process::exit(code)
}

/// Opens /dev/null on any of descriptors 0-2 that is closed, as the Rust
/// runtime does, so that no file hybrun opens becomes stdout by accident.
fn standard_descriptors() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: poll reads and writes only the three entries of `fds`.
    if unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) } < 0 {
        return;
    }
    for pfd in fds {
        if pfd.revents & libc::POLLNVAL != 0 {
            // SAFETY: a NUL-terminated path; the descriptor is meant to stay open.
            let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
            if fd < 0 {
                std::process::abort();
            }
        }
    }
}
