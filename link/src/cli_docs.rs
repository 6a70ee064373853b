//! Shell completions and man pages, generated from a binary's own clap definition, so they can
//! never drift from the flags: `connect completion bash`, `pconnect-hub man --out-dir DIR`.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
pub use clap_complete::Shell;

/// The documentation commands both binaries have (`completion`, `man`), flattened into each
/// one's subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum DocsCommand {
    /// Print a shell completion script, e.g. `completion bash > /etc/bash_completion.d/<binary>`.
    Completion {
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the man page, or write one per command into a directory.
    Man {
        /// Write `<binary>.1`, `<binary>-<command>.1`, ... here instead of printing the top page.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<std::path::PathBuf>,
    },
}

impl DocsCommand {
    /// Runs it for the binary `command` describes; returns the files written (none when the
    /// output went to stdout).
    pub fn run(self, command: clap::Command) -> Result<Vec<std::path::PathBuf>> {
        let mut stdout = std::io::stdout().lock();
        match self {
            Self::Completion { shell } => completion(command, shell, &mut stdout),
            Self::Man { out_dir: Some(dir) } => return man_pages(command, &dir),
            Self::Man { out_dir: None } => man_page(command, &mut stdout)?,
        }
        Ok(Vec::new())
    }
}

/// Writes the completion script for `shell` to `out`.
pub fn completion(mut command: clap::Command, shell: Shell, out: &mut dyn Write) {
    let name = command.get_name().to_owned();
    clap_complete::generate(shell, &mut command, name, out);
}

/// Writes one man page per command and subcommand (`connect.1`, `connect-share-create.1`, ...)
/// into `dir`; returns the files written.
pub fn man_pages(command: clap::Command, dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    write_pages(command.clone(), command.get_name(), dir, &mut written)?;
    Ok(written)
}

fn write_pages(command: clap::Command, name: &str, dir: &Path, written: &mut Vec<std::path::PathBuf>) -> Result<()> {
    let command = command.name(name.to_owned());
    let path = dir.join(format!("{name}.1"));
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone()).render(&mut page).context("rendering a man page")?;
    std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
    written.push(path);
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        write_pages(sub.clone(), &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}

/// The top-level man page, for `man` on stdout.
pub fn man_page(command: clap::Command, out: &mut dyn Write) -> Result<()> {
    clap_mangen::Man::new(command).render(out).context("rendering the man page")
}
