//! Temporary directories for the identity tests (std only): a fresh,
//! uniquely named directory under the system temp dir, removed on drop.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A directory removed (with its contents) when dropped.
pub(crate) struct TestDir(PathBuf);

impl TestDir {
    /// A new empty directory whose name contains `label`.
    pub(crate) fn new(label: &str) -> TestDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "p2pchat-identity-{label}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).unwrap();
        TestDir(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Whether this process can read a file of mode 000 (root, or a process
/// with `CAP_DAC_OVERRIDE`): probed on a scratch file in `dir`, so the
/// answer is what the test's own file will do, whatever the reason.
pub(crate) fn can_read_mode_000(dir: &Path) -> bool {
    let probe = dir.join(".probe-000");
    fs::write(&probe, b"x").unwrap();
    fs::set_permissions(&probe, fs::Permissions::from_mode(0o000)).unwrap();
    let readable = fs::read(&probe).is_ok();
    let _ = fs::remove_file(&probe);
    readable
}
