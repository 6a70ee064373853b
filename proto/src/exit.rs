//! The exit codes of both binaries, one table scripts can rely on (README "Exit codes"):
//! a usage error never shares a code with "changes pending" (terraform's `-detailed-exitcode`).

/// Done, nothing pending.
pub const SUCCESS: u8 = 0;
/// The command failed; stderr (or `{"error": …}` with `--json`) says why and what to do next.
/// `connect status` also exits 1 when the running `connect up`'s last apply failed.
pub const FAILURE: u8 = 1;
/// `connect plan`: the hub differs from `pconnect.yml`; `connect up` would change something.
pub const CHANGES_PENDING: u8 = 2;
/// The command line itself is wrong (unknown flag, missing argument, bad value): sysexits' EX_USAGE.
pub const USAGE: u8 = 64;
/// Stopped by a second Ctrl+C or SIGTERM before it could finish.
pub const INTERRUPTED: u8 = 130;
