//! Files that appear whole or not at all: each output is written under a temporary name
//! beside its destination (same folder, same extension, a leading dot) and renamed into place
//! once complete. A failed write (disk full, a folder that is not writable) leaves no partial
//! file where a report is expected, and the temporary is removed. A destination that exists
//! and is not a regular file (`/dev/null`, a pipe) is written in place.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// The temporary name of `dest`: `.NAME.tmp-PID.EXT` in its folder.
pub fn temp_path(dest: &Path) -> PathBuf {
    let stem = dest
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = dest
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    dest.with_file_name(format!(".{stem}.tmp-{}{ext}", std::process::id()))
}

/// A file being written; [`AtomicFile::commit`] renames it into place. Dropped without a
/// commit (an error on the way), its temporary is removed.
pub struct AtomicFile {
    dest: PathBuf,
    /// The temporary, or `None` when writing in place.
    tmp: Option<PathBuf>,
    file: Option<BufWriter<fs::File>>,
}

impl AtomicFile {
    /// Start writing `dest`.
    pub fn create(dest: &Path) -> io::Result<AtomicFile> {
        let special = fs::metadata(dest).is_ok_and(|m| !m.is_file());
        let tmp = (!special).then(|| temp_path(dest));
        let file = fs::File::create(tmp.as_deref().unwrap_or(dest))?;
        Ok(AtomicFile {
            dest: dest.to_path_buf(),
            tmp,
            file: Some(BufWriter::with_capacity(1 << 20, file)),
        })
    }

    /// Flush, and rename the file into place.
    pub fn commit(mut self) -> io::Result<()> {
        let Some(w) = self.file.take() else {
            return Ok(());
        };
        let file = w.into_inner().map_err(io::IntoInnerError::into_error);
        let Some(tmp) = self.tmp.take() else {
            return file.map(drop);
        };
        let done = file
            .and_then(|f| f.sync_data())
            .and_then(|()| fs::rename(&tmp, &self.dest));
        if done.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        done
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.file.as_mut() {
            Some(w) => w.write(buf),
            None => Err(io::Error::other("written after commit")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), Write::flush)
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if let (Some(_), Some(tmp)) = (self.file.take(), &self.tmp) {
            let _ = fs::remove_file(tmp);
        }
    }
}

/// `fs::write`, whole or not at all.
pub fn write(dest: &Path, bytes: impl AsRef<[u8]>) -> io::Result<()> {
    let mut f = AtomicFile::create(dest)?;
    f.write_all(bytes.as_ref())?;
    f.commit()
}

/// Run `fill` on the temporary name of `dest` (for writers that take a path, such as the PNG
/// encoder), then rename it into place; on an error the temporary is removed.
pub fn with_path<E>(dest: &Path, fill: impl FnOnce(&Path) -> Result<(), E>) -> Result<(), E>
where
    E: From<io::Error>,
{
    if fs::metadata(dest).is_ok_and(|m| !m.is_file()) {
        return fill(dest);
    }
    let tmp = temp_path(dest);
    match fill(&tmp) {
        Ok(()) => fs::rename(&tmp, dest).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            E::from(e)
        }),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A committed file is whole at its name; one dropped on the way leaves nothing.
    #[test]
    fn a_file_appears_whole_or_not_at_all() {
        let dir = std::env::temp_dir().join(format!("racetrace-atomic-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let dest = dir.join("analysis.json");
        let mut f = AtomicFile::create(&dest).unwrap();
        f.write_all(b"{\"half\":").unwrap();
        assert!(!dest.exists(), "visible before its commit");
        drop(f);
        assert!(!dest.exists());
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            0,
            "the temporary stayed"
        );
        write(&dest, b"{}").unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"{}");
        assert_eq!(temp_path(&dest).extension().unwrap(), "json");
        fs::remove_dir_all(&dir).unwrap();
        // A device is written in place, never replaced by a regular file.
        #[cfg(unix)]
        {
            let mut null = AtomicFile::create(Path::new("/dev/null")).unwrap();
            null.write_all(b"x").unwrap();
            null.commit().unwrap();
            assert!(!fs::metadata("/dev/null").unwrap().is_file());
        }
    }
}
