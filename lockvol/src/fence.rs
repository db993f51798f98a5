//! Fencing this node's GlusterFS client when its volume hangs under the lock.
//!
//! On GlusterFS the recovery lock is not held by our helper's process as far as the
//! cluster can tell: it is held on the bricks by this node's FUSE client (the
//! `glusterfs` process that serves the mount), on the helper's behalf. When that
//! client hangs while its TCP connections stay up (a deadlock, a stopped process),
//! every request through the mount blocks, the helper's check of the lock file with
//! it, and the bricks keep the lock for as long as the client lives: the helper
//! exiting cannot free it, because its unlock would have to pass through the hung
//! client. Until the client resumes or dies, no other node can take the lock, and so
//! no node can lead.
//!
//! The fence ends that wait: once the helper has given the lock up (and told the
//! daemon), it kills the FUSE client of the mount that holds the lock file. Its TCP
//! connections close, the bricks free its locks at once, and another node takes the
//! lock. Nothing on this node could use the mount any more anyway; the node is
//! UNHEALTHY (its monitor's probes of the volume time out) and an administrator
//! remounts the volume to bring it back.
//!
//! Only `fuse.glusterfs` mounts are fenced: that is where killing the client is
//! known to free its locks at once (`tests/vm/tests/gluster_faults.rs`). On other file
//! systems the helper gives the lock up as before and kills nothing.
//!
//! The mount is found from `/proc/self/mountinfo` by the lock file's path as given
//! (lexically; symlinks are not followed, since resolving them would ask the volume),
//! and its client among the processes of this mount namespace that have `/dev/fuse`
//! open and the mount point among their arguments. Reading `/proc` never touches the
//! hung volume.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::mounts::Mount;

/// The file system type whose client the fence kills.
pub const FENCED_FSTYPE: &str = crate::mounts::GLUSTERFS_FUSE;

/// Whether a process whose arguments are `cmdline` (NUL-separated, as in
/// `/proc/PID/cmdline`) names `mount_point` as one of them.
pub fn names_mount_point(cmdline: &[u8], mount_point: &Path) -> bool {
    cmdline
        .split(|b| *b == 0)
        .any(|arg| arg == mount_point.as_os_str().as_bytes())
}

/// The processes of this mount namespace that serve `mount` as its FUSE client: they
/// have `/dev/fuse` open and the mount point among their arguments. Processes that
/// end while being looked at are skipped.
pub fn fuse_clients(mount: &Mount) -> Vec<i32> {
    let Ok(own_namespace) = std::fs::read_link("/proc/self/ns/mnt") else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let dir = entry.path();
        let same_namespace = std::fs::read_link(dir.join("ns/mnt"))
            .is_ok_and(|namespace| namespace == own_namespace);
        let serves_mount = std::fs::read(dir.join("cmdline"))
            .is_ok_and(|cmdline| names_mount_point(&cmdline, &mount.mount_point));
        if same_namespace && serves_mount && has_fuse_device_open(&dir) {
            found.push(pid);
        }
    }
    found
}

fn has_fuse_device_open(process_dir: &Path) -> bool {
    let Ok(fds) = std::fs::read_dir(process_dir.join("fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target| target == Path::new("/dev/fuse"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_names_the_mount_point_as_a_whole_argument() {
        let cmdline =
            b"/usr/sbin/glusterfs\0--volfile-server=10.0.0.1\0--volfile-id=/gv0\0/srv/shared\0";
        assert!(names_mount_point(cmdline, Path::new("/srv/shared")));
        assert!(!names_mount_point(cmdline, Path::new("/srv")));
        assert!(!names_mount_point(cmdline, Path::new("/srv/shared2")));
    }
}
