//! A directory of PEM private keys, laid out as the kubelet mounts a Secret.
//!
//! The kubelet writes a Secret volume atomically: the files live in a hidden timestamped
//! directory, `..data` is a symlink to it, and each visible name is a symlink through
//! `..data`. An update writes a new timestamped directory and renames a fresh symlink over
//! `..data`, so a reader sees the old set or the new set, never a mix. [`write_atomic`]
//! produces exactly that layout (for `keys generate`, the embedded default and tests), and
//! [`read_pem_files`] reads it (or any plain directory of `*.pem` files).

use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use crate::{Error, Result};

const DATA_LINK: &str = "..data";
const DATA_TMP_LINK: &str = "..data_tmp";

/// One key file: its visible name and content.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyFile {
    pub name: String,
    pub contents: Vec<u8>,
}

impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The contents are private keys.
        f.debug_struct("KeyFile")
            .field("name", &self.name)
            .field("contents", &"***")
            .finish()
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::KeyDir {
        path: path.display().to_string(),
        source,
    }
}

/// Reads every visible `*.pem` file of `dir`, sorted by name. Hidden entries (the
/// kubelet's `..data` and timestamped directories) are skipped; symlinks are followed.
pub fn read_pem_files(dir: &Path) -> Result<Vec<KeyFile>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !name.ends_with(".pem") {
            continue;
        }
        let path = entry.path();
        let contents = match fs::read(&path) {
            Ok(contents) => contents,
            // A name whose target vanished between listing and reading is a swap in
            // progress; the next read sees the settled set.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(&path)(e)),
        };
        files.push(KeyFile { name, contents });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// Replaces the contents of `dir` with `files` the way the kubelet updates a Secret
/// volume. Files are written with mode 0600 and the directory is created 0700.
pub fn write_atomic(dir: &Path, files: &[KeyFile], stamp: &str) -> Result<()> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err(dir))?;

    let ts_name = format!("..{stamp}");
    let ts_dir = dir.join(&ts_name);
    fs::create_dir(&ts_dir).map_err(io_err(&ts_dir))?;
    for file in files {
        validate_name(&file.name)?;
        let path = ts_dir.join(&file.name);
        fs::write(&path, &file.contents).map_err(io_err(&path))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).map_err(io_err(&path))?;
    }

    let old_target = fs::read_link(dir.join(DATA_LINK)).ok();
    let tmp_link = dir.join(DATA_TMP_LINK);
    let _ = fs::remove_file(&tmp_link);
    symlink(&ts_name, &tmp_link).map_err(io_err(&tmp_link))?;
    fs::rename(&tmp_link, dir.join(DATA_LINK)).map_err(io_err(dir))?;

    // Visible names: add the new ones, drop the ones that left the set.
    for file in files {
        let link = dir.join(&file.name);
        if fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA_LINK).join(&file.name), &link).map_err(io_err(&link))?;
        }
    }
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && !files.iter().any(|f| f.name == name) {
            fs::remove_file(entry.path()).map_err(io_err(&entry.path()))?;
        }
    }
    if let Some(old) = old_target
        && old.as_os_str() != ts_name.as_str()
    {
        let old_dir = dir.join(old);
        fs::remove_dir_all(&old_dir).map_err(io_err(&old_dir))?;
    }
    Ok(())
}

/// Secret data keys allow `[-._a-zA-Z0-9]+`; we also refuse hidden names.
fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidKey {
            name: name.to_owned(),
            reason: "not a valid Secret key name".to_owned(),
        })
    }
}

/// A kubelet-style stamp for the hidden directory name, unique per call.
pub fn new_stamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut random = [0u8; 4];
    // Only uniqueness matters here; a failed RNG still leaves the nanoseconds.
    let _ = aws_lc_rs::rand::fill(&mut random);
    format!(
        "{}_{:09}.{}",
        now.as_secs(),
        now.subsec_nanos(),
        u32::from_le_bytes(random)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, contents: &str) -> KeyFile {
        KeyFile {
            name: name.to_owned(),
            contents: contents.as_bytes().to_vec(),
        }
    }

    #[test]
    fn swap_replaces_the_whole_set() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_atomic(
            dir.path(),
            &[file("a.pem", "A"), file("b.pem", "B")],
            &new_stamp(),
        )
        .expect("first write");
        assert_eq!(
            read_pem_files(dir.path()).expect("read"),
            vec![file("a.pem", "A"), file("b.pem", "B")]
        );
        write_atomic(
            dir.path(),
            &[file("b.pem", "B2"), file("c.pem", "C")],
            &new_stamp(),
        )
        .expect("second write");
        assert_eq!(
            read_pem_files(dir.path()).expect("read"),
            vec![file("b.pem", "B2"), file("c.pem", "C")]
        );
        // One timestamped directory left, and `..data` points at it.
        let hidden: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("..") && n != DATA_LINK)
            .collect();
        assert_eq!(hidden.len(), 1, "{hidden:?}");
    }

    #[test]
    fn hidden_and_bad_names_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(write_atomic(dir.path(), &[file("..x", "A")], &new_stamp()).is_err());
        assert!(write_atomic(dir.path(), &[file("a/b", "A")], &new_stamp()).is_err());
    }
}
