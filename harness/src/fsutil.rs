//! File writing that never leaves a partial file behind.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so
/// readers see the old file or the whole new one, never half of it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| format!("{} is not a file path", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}: {e}", path.display())
    })
}

/// Checks, before long work, that `path` can be written: it is not a directory, and its
/// directory exists and takes a new file (a probe file is created there and removed). A mistyped
/// or unwritable output path then fails at once, not after the work it was meant to keep; a
/// later write can still fail (a full disk), and [`write_atomic`] then leaves no partial file.
pub fn check_output_file(path: &Path) -> Result<(), String> {
    if path.is_dir() {
        return Err(format!(
            "cannot write {}: it is a directory",
            path.display()
        ));
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    probe(dir).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Creates `dir` (and its parents) if it does not exist and checks that it takes a new file, as
/// [`check_output_file`] does, before the long work whose results go there.
pub fn prepare_output_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir)
        .and_then(|_| probe(dir))
        .map_err(|e| format!("cannot write into {}: {e}", dir.display()))
}

/// [`check_output_file`] on every file of `files` and [`prepare_output_dir`] on `dir` (if any):
/// what a command runs before its long work.
pub fn check_outputs<'a>(
    files: impl IntoIterator<Item = &'a Path>,
    dir: Option<&Path>,
) -> Result<(), String> {
    for f in files {
        check_output_file(f)?;
    }
    dir.map_or(Ok(()), prepare_output_dir)
}

/// Creates and removes an empty file in `dir`.
fn probe(dir: &Path) -> std::io::Result<()> {
    let tmp = dir.join(format!(".tessera-probe{}", std::process::id()));
    std::fs::File::create(&tmp)?;
    std::fs::remove_file(&tmp)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system's temporary directory, removed at the end.
    struct Scratch(std::path::PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("tessera-fsutil-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("scratch directory");
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn output_checks_accept_writable_places_and_leave_nothing() {
        let s = Scratch::new("ok");
        check_output_file(&s.0.join("out.json")).expect("a file in an existing directory");
        let nested = s.0.join("a/b");
        prepare_output_dir(&nested).expect("a new nested directory");
        assert!(nested.is_dir());
        assert_eq!(std::fs::read_dir(&nested).expect("listing").count(), 0);
        assert_eq!(
            std::fs::read_dir(&s.0).expect("listing").count(),
            1,
            "only a/"
        );
    }

    #[test]
    fn output_checks_name_the_path_that_cannot_be_written() {
        let s = Scratch::new("bad");
        let missing = s.0.join("no/such/dir/out.json");
        let e = check_output_file(&missing).expect_err("missing directory");
        assert!(e.contains("no/such/dir/out.json"), "{e}");
        let e = check_output_file(&s.0).expect_err("a directory");
        assert!(e.contains("is a directory"), "{e}");
        let file = s.0.join("plain-file");
        std::fs::write(&file, b"x").expect("file");
        let e = prepare_output_dir(&file.join("sub")).expect_err("under a file");
        assert!(e.contains("plain-file/sub"), "{e}");
        assert!(!missing.parent().expect("parent").exists());
    }
}
