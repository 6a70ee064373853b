//! What reading `pconnect.yml` reports: a [`Problem`] located at `file:line:column` (with the key
//! path and a hint when known), and [`LoadError`], every problem of one file.

use std::fmt;

use serde_saphyr::Location;

/// One problem in a project file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file, as given to [`load`](super::load::load) or [`parse`](super::load::parse).
    pub file: String,
    /// 1-based; 0 when the problem concerns the whole file (it cannot be read).
    pub line: u64,
    /// 1-based, in characters.
    pub column: u64,
    /// The key path (`/services/web/link/expires`), when it is known.
    pub path: Option<String>,
    pub message: String,
    /// A suggestion (`did you mean `services`?`).
    pub hint: Option<String>,
}

impl Problem {
    /// A problem at a parser position in `file`.
    pub(super) fn at(file: &str, at: Location, path: Option<String>, message: String, hint: Option<String>) -> Self {
        Problem { file: file.to_string(), line: at.line(), column: at.column(), path, message, hint }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.file)?;
        if self.line > 0 {
            write!(f, "{}:{}:", self.line, self.column)?;
        }
        if let Some(path) = &self.path {
            write!(f, " {path}:")?;
        }
        write!(f, " {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

/// Every problem found in a project file; displayed one line per problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub problems: Vec<Problem>,
}

impl LoadError {
    /// A problem with the whole file (it cannot be read), without a position.
    pub(super) fn whole(file: &str, message: String) -> Self {
        LoadError { problems: vec![Problem { file: file.into(), line: 0, column: 0, path: None, message, hint: None }] }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadError {}
