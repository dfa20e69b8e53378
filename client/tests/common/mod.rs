//! Shared by the client's integration tests: a HostFactory plugin folder as an admin installs it.

use std::path::{Path, PathBuf};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// HostFactory's plugin folder: the five scripts with the client binary beside them.
pub fn install_plugin() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(root().join("infra/hostfactory/scripts")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    std::fs::copy(env!("CARGO_BIN_EXE_hostfactory-client"), dir.path().join("hostfactory-client")).unwrap();
    dir
}
