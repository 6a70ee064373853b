//! The open-file limit: the memory run holds 2 sockets per tunnel in this process (and about 1 per
//! tunnel in each agent), which does not fit the usual soft limit of 1024.
//!
//! Without libc (and with `unsafe` forbidden) the process cannot call `setrlimit` itself, so it
//! asks util-linux `prlimit --pid <own pid>` to raise its soft limit up to the hard limit (and the
//! hard limit too when it is below what is needed, which needs root with CAP_SYS_RESOURCE).
//! Children spawned afterwards inherit the raised limit.

use std::process::Command;

use anyhow::{Context, Result, bail};

/// The open-file soft limit before and after [`ensure`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct FdLimit {
    pub(crate) before: u64,
    pub(crate) after: u64,
}

/// Soft limit set when raising: at least what is needed, 65536 when the hard limit allows.
const PREFERRED: u64 = 65_536;

/// Makes sure the soft open-file limit is at least `needed`.
pub(crate) fn ensure(needed: u64) -> Result<FdLimit> {
    let (soft, hard) = read()?;
    if soft >= needed {
        return Ok(FdLimit { before: soft, after: soft });
    }
    let spec = if hard >= needed {
        format!("{}:", needed.max(PREFERRED.min(hard)))
    } else {
        let target = needed.max(PREFERRED);
        format!("{target}:{target}")
    };
    let outcome = Command::new("prlimit")
        .arg("--pid")
        .arg(std::process::id().to_string())
        .arg(format!("--nofile={spec}"))
        .output();
    let (after, _) = read()?;
    if after < needed {
        let why = match outcome {
            Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            Err(e) => format!("cannot run prlimit: {e}"),
        };
        bail!(
            "the open-file limit is {soft} (hard {hard}) but this run needs {needed}, and raising it \
             failed ({why}). Raising the hard limit needs root with CAP_SYS_RESOURCE: run the \
             benchmark from a shell with a higher one (`ulimit -n 65536`), or lower --conns"
        );
    }
    Ok(FdLimit { before: soft, after })
}

/// Reads the (soft, hard) "Max open files" of this process.
fn read() -> Result<(u64, u64)> {
    let limits = std::fs::read_to_string("/proc/self/limits").context("cannot read /proc/self/limits")?;
    let line =
        limits.lines().find(|l| l.starts_with("Max open files")).context("no `Max open files` in /proc/self/limits")?;
    let mut fields = line["Max open files".len()..].split_whitespace().map(|f| match f {
        "unlimited" => Ok(u64::MAX),
        n => n.parse::<u64>().with_context(|| format!("bad open-file limit `{n}`")),
    });
    let soft = fields.next().context("no soft open-file limit")??;
    let hard = fields.next().context("no hard open-file limit")??;
    Ok((soft, hard))
}
