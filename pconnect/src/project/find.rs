//! Discovery of the project file: `pconnect.yml` (or `pconnect.yaml`) in a directory or the nearest
//! of its parents.

use std::path::{Path, PathBuf};

/// The names `pconnect.yml` may have, in order of preference.
pub const FILE_NAMES: [&str; 2] = ["pconnect.yml", "pconnect.yaml"];

/// `pconnect.yml` (or `pconnect.yaml`) in `start` or the nearest of its parents.
pub fn find(start: &Path) -> Option<PathBuf> {
    let start = std::path::absolute(start).unwrap_or_else(|_| start.to_path_buf());
    start.ancestors().flat_map(|dir| FILE_NAMES.iter().map(move |name| dir.join(name))).find(|path| path.is_file())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::project::load::load;
    use crate::project::load::testing::{VALID, parse_ok};

    #[test]
    fn the_file_is_found_from_a_subdirectory() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("src/components");
        fs::create_dir_all(&sub).unwrap();
        fs::write(dir.path().join("pconnect.yaml"), VALID).unwrap();
        assert_eq!(find(&sub), Some(dir.path().join("pconnect.yaml")));
        fs::write(dir.path().join("pconnect.yml"), VALID).unwrap();
        assert_eq!(find(&sub), Some(dir.path().join("pconnect.yml")));
        let loaded = load(&find(&sub).unwrap()).unwrap();
        assert_eq!(loaded.spec, parse_ok(VALID));
    }
}
