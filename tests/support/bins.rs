//! Where the workspace's binaries are.
//!
//! Cargo sets `CARGO_BIN_EXE_<name>` only for a package's own binaries, and
//! ours belong to the server and client packages. `cargo test` and
//! `cargo bench` at the workspace root build every member's binaries into
//! the same profile directory before any test runs: the one above this test
//! executable's `deps/`.

use std::path::PathBuf;
use std::sync::OnceLock;

/// A binary of the workspace, found next to the running test.
pub struct Bin {
    name: &'static str,
    path: OnceLock<String>,
}

impl Bin {
    /// The binary called `name`.
    pub const fn new(name: &'static str) -> Bin {
        Bin {
            name,
            path: OnceLock::new(),
        }
    }

    /// Its absolute path. Panics (failing the test) with a hint when it was
    /// not built, e.g. after `cargo test -p p2pchat-tests` alone.
    pub fn path(&'static self) -> &'static str {
        self.path.get_or_init(|| {
            let exe = std::env::current_exe().expect("the test executable's path");
            let profile_dir: PathBuf = exe
                .parent()
                .and_then(|deps| deps.parent())
                .expect("tests run from <target>/<profile>/deps")
                .to_path_buf();
            let path = profile_dir.join(format!("{}{}", self.name, std::env::consts::EXE_SUFFIX));
            assert!(
                path.is_file(),
                "{} is not built at {}; run the tests from the workspace root with `cargo test` \
                 (or `cargo build --bins` first)",
                self.name,
                path.display()
            );
            path.to_string_lossy().into_owned()
        })
    }
}

/// The peer binary.
#[allow(dead_code)]
pub static PEER: Bin = Bin::new("peer");

/// The signaling server binary.
#[allow(dead_code)]
pub static SERVER: Bin = Bin::new("signaling-server");
