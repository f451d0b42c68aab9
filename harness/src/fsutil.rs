//! File writing that never leaves a partial file behind, and the checks a command runs on its
//! output paths before long work.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A file or directory that cannot be written, and the operating system's reason.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {}: {reason}", path.display())]
pub struct WriteError {
    /// The file or directory.
    pub path: PathBuf,
    /// Why (the message already holds it, so it is not a separate `source`).
    pub reason: std::io::Error,
}

impl WriteError {
    fn new(path: &Path, reason: std::io::Error) -> WriteError {
        WriteError {
            path: path.to_path_buf(),
            reason,
        }
    }
}

/// Writes `bytes` to `path` so that readers see the old file or the whole new one, never half of
/// it: the bytes go to a new temporary file in the same directory ([`temp_path`], created
/// exclusively), are flushed to disk, and the file is renamed over `path`; the directory is then
/// flushed too (where the platform allows) so the rename survives a crash. On any failure the
/// temporary file is removed and `path` is untouched.
///
/// `path` must be a regular file or not exist: a symbolic link, FIFO, device node or socket is
/// refused ([`check_replaceable`]), since the rename would replace the link or node itself.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    check_replaceable(path).map_err(|e| WriteError::new(path, e))?;
    let tmp = temp_path(path).map_err(|e| WriteError::new(path, e))?;
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(WriteError::new(path, e));
    }
    // The new file is in place; flushing the directory makes the rename durable. Platforms that
    // cannot open a directory as a file skip it.
    if let Ok(d) = std::fs::File::open(parent_dir(path)) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The temporary file [`write_atomic`] writes `path` through (and [`check_output_file`] probes):
/// `.NAME.PID-N.tmp` in the same directory, `N` unique to the call. NAME is `path`'s file name,
/// shortened at a character boundary so that the temporary name is never longer than the longer
/// of `path`'s name and 64 bytes: a name the file system takes for the output, it takes for the
/// temporary file too.
pub fn temp_path(path: &Path) -> std::io::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("it is not a file path"))?;
    let suffix = format!(
        ".{}-{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let limit = name.len().max(64);
    let mut stem = name.to_string_lossy().into_owned();
    let keep = limit.saturating_sub(1 + suffix.len());
    while stem.len() > keep {
        stem.pop();
    }
    Ok(parent_dir(path).join(format!(".{stem}{suffix}")))
}

/// Whether `path` may be replaced by [`write_atomic`]: it does not exist or is a regular file. A
/// directory, symbolic link, FIFO, device node or socket is refused with a message saying which.
pub fn check_replaceable(path: &Path) -> std::io::Result<()> {
    use std::io::{Error, ErrorKind};
    let meta = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    let t = meta.file_type();
    let what = if t.is_file() {
        return Ok(());
    } else if t.is_dir() {
        return Err(Error::new(ErrorKind::IsADirectory, "it is a directory"));
    } else if t.is_symlink() {
        "a symbolic link (give the path it points to)"
    } else {
        "not a regular file (a FIFO, device node or socket)"
    };
    Err(Error::other(format!(
        "it is {what}; outputs are written to a new file renamed over the path, which would \
         replace it"
    )))
}

/// The most bytes [`read_input`] reads from a pipe or device, whose length is not known
/// beforehand: 256 MiB (a regular file may be as large as the memory budget).
pub const STREAM_LIMIT: u64 = 256 << 20;

/// Reads an input file whole: a directory is refused by name, and so is a regular file larger
/// than the memory budget ([`crate::budget`]) or a stream (a pipe, `/dev/zero`) longer than
/// [`STREAM_LIMIT`], before it fills memory.
pub fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    use anyhow::{bail, Context};
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if meta.is_dir() {
        bail!("it is a directory, not a file");
    }
    let budget = crate::budget::budget();
    let (limit, why) = if meta.is_file() {
        (budget.bytes, budget.source)
    } else {
        let limit = budget.bytes.min(STREAM_LIMIT);
        (limit, "the limit on reading a pipe or device")
    };
    let too_big = || {
        format!(
            "it is larger than the {} of {why}",
            crate::budget::Bytes(limit)
        )
    };
    if meta.is_file() && meta.len() > limit {
        bail!(too_big());
    }
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .context("reading failed")?;
    if bytes.len() as u64 > limit {
        bail!(too_big());
    }
    Ok(bytes)
}

/// [`read_input`] of a UTF-8 text file.
pub fn read_text(path: &Path) -> anyhow::Result<String> {
    String::from_utf8(read_input(path)?).map_err(|e| {
        anyhow::anyhow!(
            "it is not UTF-8 text (byte {})",
            e.utf8_error().valid_up_to()
        )
    })
}

/// Writes `value` as pretty-printed JSON with a final newline to `path`, atomically
/// ([`write_atomic`]).
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    Ok(write_atomic(path, text.as_bytes())?)
}

/// Checks, before long work, that `path` can be written: it is a regular file or does not exist
/// ([`check_replaceable`]), its name is one the file system takes (a path that does not exist is
/// created and removed), and its directory takes the temporary file [`write_atomic`] will use
/// (one of the same name length, [`temp_path`], is created and removed). A mistyped, too long or
/// unwritable output path then fails at once, not after the work it was meant to keep; a later
/// write can still fail (a full disk), and [`write_atomic`] then leaves no partial file.
pub fn check_output_file(path: &Path) -> Result<(), WriteError> {
    let check = || -> std::io::Result<()> {
        check_replaceable(path)?;
        if std::fs::symlink_metadata(path).is_err() {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)?;
            std::fs::remove_file(path)?;
        }
        probe(&temp_path(path)?)
    };
    check().map_err(|e| WriteError::new(path, e))
}

/// Creates `dir` (and its parents) if it does not exist and checks that it takes a new file, as
/// [`check_output_file`] does, before the long work whose results go there.
pub fn prepare_output_dir(dir: &Path) -> Result<(), WriteError> {
    if dir.exists() && !dir.is_dir() {
        let e = std::io::Error::new(std::io::ErrorKind::NotADirectory, "it is not a directory");
        return Err(WriteError::new(dir, e));
    }
    std::fs::create_dir_all(dir)
        .and_then(|_| probe(&dir.join(format!(".tessera-probe{}", std::process::id()))))
        .map_err(|e| WriteError::new(dir, e))
}

/// [`check_output_file`] on every file of `files` and [`prepare_output_dir`] on `dir` (if any):
/// what a command runs before its long work.
pub fn check_outputs<'a>(
    files: impl IntoIterator<Item = &'a Path>,
    dir: Option<&Path>,
) -> Result<(), WriteError> {
    for f in files {
        check_output_file(f)?;
    }
    dir.map_or(Ok(()), prepare_output_dir)
}

/// The directory `path` is in (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Creates (exclusively) and removes the empty file `tmp`.
fn probe(tmp: &Path) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)?;
    std::fs::remove_file(tmp)
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
        let e = check_output_file(&missing)
            .expect_err("missing directory")
            .to_string();
        assert!(e.contains("no/such/dir/out.json"), "{e}");
        let e = check_output_file(&s.0)
            .expect_err("a directory")
            .to_string();
        assert!(e.contains("is a directory"), "{e}");
        let file = s.0.join("plain-file");
        std::fs::write(&file, b"x").expect("file");
        let e = prepare_output_dir(&file.join("sub"))
            .expect_err("under a file")
            .to_string();
        assert!(e.contains("plain-file/sub"), "{e}");
        assert!(!missing.parent().expect("parent").exists());
    }

    #[test]
    fn atomic_writes_replace_whole_files_and_leave_no_temporary() {
        let s = Scratch::new("atomic");
        let path = s.0.join("out.bin");
        write_atomic(&path, b"first").expect("new file");
        write_atomic(&path, b"second, longer").expect("replacement");
        assert_eq!(std::fs::read(&path).expect("read"), b"second, longer");
        let e = write_atomic(&s.0.join("no/dir/out.bin"), b"x").expect_err("missing directory");
        assert!(e.to_string().contains("no/dir/out.bin"), "{e}");
        let e = write_atomic(&s.0, b"x").expect_err("a directory");
        assert!(e.to_string().starts_with("cannot write"), "{e}");
        let names: Vec<_> = std::fs::read_dir(&s.0)
            .expect("listing")
            .map(|d| d.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["out.bin"], "no temporary file is left");
    }

    #[test]
    fn long_names_are_probed_with_the_temporary_name_the_write_uses() {
        let s = Scratch::new("long");
        let ok = s.0.join("a".repeat(254));
        check_output_file(&ok).expect("a 254-byte name");
        let tmp = temp_path(&ok).expect("temporary name");
        assert!(tmp.file_name().expect("name").len() <= 254, "{tmp:?}");
        write_atomic(&ok, b"x").expect("written under a 254-byte name");
        let too_long = s.0.join("b".repeat(256));
        let e = check_output_file(&too_long).expect_err("a 256-byte name");
        assert!(e.to_string().contains("cannot write"), "{e}");
        let names: Vec<_> = std::fs::read_dir(&s.0).expect("listing").collect();
        assert_eq!(names.len(), 1, "only the 254-byte file is left");
    }

    #[cfg(unix)]
    #[test]
    fn symbolic_links_are_refused_and_left_alone() {
        let s = Scratch::new("link");
        let target = s.0.join("target");
        std::fs::write(&target, b"keep").expect("target");
        let link = s.0.join("link");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        for e in [
            check_output_file(&link).expect_err("pre-check"),
            write_atomic(&link, b"new").expect_err("write"),
        ] {
            assert!(e.to_string().contains("symbolic link"), "{e}");
        }
        let meta = std::fs::symlink_metadata(&link).expect("link");
        assert!(meta.file_type().is_symlink());
        assert_eq!(std::fs::read(&target).expect("target"), b"keep");
    }
}
