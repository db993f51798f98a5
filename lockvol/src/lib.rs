//! The recovery lock on the shared cluster volume.
//!
//! CTDB lets only the holder of this lock lead the cluster, so that a partitioned
//! minority can never act as a second leader. The lock is an fcntl (POSIX record)
//! lock on one byte of a file on the shared volume. fcntl locks belong to a process
//! and vanish when *any* descriptor of the file closes in that process, which is why
//! the daemon holds it in a small helper child: this crate's `ctdb-rs-reclock-helper`
//! binary (`src/bin/`), which speaks CTDB's cluster mutex helper protocol and is run by
//! `ctdbd`'s `reclock` module. This library is the lock primitive that helper uses,
//! [`deadline`], which bounds how long its liveness checks may take on a hung
//! volume, and [`fence`], which frees the lock held on GlusterFS's bricks by this
//! node's hung client, and [`mounts`], what we know of the volume that holds the
//! lock file.

pub mod deadline;
pub mod fence;
pub mod mounts;

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Why the lock could not be tried.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The lock file could not be opened or created: the volume may be missing.
    #[error("cannot open lock file {path}: {source}")]
    Open {
        /// The lock file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// fcntl failed for a reason other than contention.
    #[error("cannot lock {path}: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// A held fcntl lock; released when dropped (or when the process exits).
#[derive(Debug)]
pub struct FcntlLock {
    file: File,
    path: PathBuf,
}

impl FcntlLock {
    /// Tries once, without waiting. `Ok(None)` means another process holds it.
    pub fn try_acquire(path: &Path) -> Result<Option<FcntlLock>, LockError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|source| LockError::Open {
                path: path.to_owned(),
                source,
            })?;
        // Lock byte 0 only, as CTDB's fcntl helper does, so that either can see the
        // other's lock on the same file.
        let request = libc::flock {
            l_type: libc::F_WRLCK as libc::c_short,
            l_whence: libc::SEEK_SET as libc::c_short,
            l_start: 0,
            l_len: 1,
            l_pid: 0,
        };
        match nix::fcntl::fcntl(file.as_raw_fd(), nix::fcntl::FcntlArg::F_SETLK(&request)) {
            Ok(_) => Ok(Some(FcntlLock {
                file,
                path: path.to_owned(),
            })),
            Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EACCES) => Ok(None),
            Err(e) => Err(LockError::Lock {
                path: path.to_owned(),
                source: e.into(),
            }),
        }
    }

    /// The locked file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open lock file (for liveness checks such as comparing inodes).
    pub fn file(&self) -> &File {
        &self.file
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    fn temp_lock_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lockvol-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("reclock")
    }

    #[test]
    fn lock_is_exclusive_between_processes_and_freed_when_the_holder_exits() {
        let path = temp_lock_path("excl");
        // Another process takes the lock (fcntl locks are per process, so contention
        // can only be shown across processes) and says so on stdout.
        let mut holder = Command::new("python3")
            .args([
                "-c",
                "import fcntl,sys,os\n\
                 f=open(sys.argv[1],'a+')\n\
                 fcntl.lockf(f, fcntl.LOCK_EX|fcntl.LOCK_NB, 1, 0, os.SEEK_SET)\n\
                 print('locked', flush=True)\n\
                 sys.stdin.read()",
            ])
            .arg(&path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 is needed for this test");
        let mut line = String::new();
        BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked");
        assert!(FcntlLock::try_acquire(&path).unwrap().is_none());
        drop(holder.stdin.take()); // EOF: the holder exits, its lock goes with it
        holder.wait().unwrap();
        let lock = FcntlLock::try_acquire(&path).unwrap();
        assert!(lock.is_some());
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn missing_directory_is_an_open_error_naming_the_path() {
        let err = FcntlLock::try_acquire(Path::new("/nonexistent-volume/reclock")).unwrap_err();
        assert!(matches!(err, LockError::Open { .. }));
        assert!(err.to_string().contains("/nonexistent-volume/reclock"));
    }
}
