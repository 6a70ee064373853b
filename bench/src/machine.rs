//! Facts about the machine printed at the top of the report.

/// CPU count, CPU model and kernel.
#[derive(Debug, Clone)]
pub(crate) struct Machine {
    /// Logical CPUs available to this process (what `nproc` prints).
    pub(crate) nproc: usize,
    /// First `model name` of `/proc/cpuinfo`, when present.
    pub(crate) cpu: Option<String>,
    /// `/proc/version`.
    pub(crate) kernel: String,
    /// The 1, 5 and 15 minute load averages at the start (other work skews the numbers).
    pub(crate) loadavg: Option<String>,
}

/// Reads the machine facts.
pub(crate) fn facts() -> Machine {
    let nproc = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|info| {
        info.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, model)| model.trim().to_owned())
    });
    let kernel =
        std::fs::read_to_string("/proc/version").map_or_else(|e| format!("unknown ({e})"), |v| v.trim().to_owned());
    let loadavg = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    Machine { nproc, cpu, kernel, loadavg }
}
