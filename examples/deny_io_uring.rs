//! `deny_io_uring [--allow-setup] PROGRAM [ARGS...]`: runs PROGRAM under a seccomp filter
//! that answers the three io_uring syscalls with EPERM, as Docker >= 25's default profile
//! does, and allows everything else. `--allow-setup` lets `io_uring_setup` through and
//! refuses only `io_uring_enter` and `io_uring_register`: a ring that can be made but never
//! entered. The test rig's way to show the I/O backend's fallback without a container
//! (`tests/io_backend.rs`).

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, ExitCode};

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

/// io_uring_setup, io_uring_enter, io_uring_register: one number on every architecture
/// (the generic table, and x86_64's own).
const IO_URING_SETUP: i64 = 425;
const IO_URING_ENTER_REGISTER: [i64; 2] = [426, 427];
const EPERM: u32 = 1;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1).peekable();
    let allow_setup = args.next_if(|a| a == "--allow-setup").is_some();
    let Some(program) = args.next() else {
        eprintln!("usage: deny_io_uring [--allow-setup] PROGRAM [ARGS...]");
        return ExitCode::from(2);
    };
    if let Err(e) = deny_io_uring(allow_setup) {
        eprintln!("deny_io_uring: cannot install the seccomp filter: {e}");
        return ExitCode::FAILURE;
    }
    let e = Command::new(&program).args(args).exec();
    eprintln!(
        "deny_io_uring: cannot run {}: {e}",
        program.to_string_lossy()
    );
    ExitCode::FAILURE
}

fn deny_io_uring(allow_setup: bool) -> Result<(), Box<dyn std::error::Error>> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)?;
    let setup = (!allow_setup).then_some(IO_URING_SETUP);
    let rules = IO_URING_ENTER_REGISTER
        .into_iter()
        .chain(setup)
        .map(|nr| (nr, Vec::new()))
        .collect::<BTreeMap<_, _>>();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(EPERM),
        arch,
    )?;
    let program = BpfProgram::try_from(filter)?;
    // Sets no_new_privs, then the filter; both survive exec.
    seccompiler::apply_filter(&program)?;
    Ok(())
}
