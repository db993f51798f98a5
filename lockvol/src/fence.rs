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

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// The file system type whose client the fence kills.
pub const FENCED_FSTYPE: &str = "fuse.glusterfs";

/// One line of `/proc/self/mountinfo`, the parts the fence needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Where it is mounted (unescaped).
    pub mount_point: PathBuf,
    /// Its file system type, e.g. `fuse.glusterfs`.
    pub fstype: String,
}

/// The mount that holds `path` according to `mountinfo` (the text of
/// `/proc/self/mountinfo`): the one with the longest mount point that contains
/// `path`, and of several at the same point the last, which hides the others.
/// `path` must be absolute and is taken lexically (`.` and `..` resolved, symlinks
/// not).
pub fn mount_of(mountinfo: &str, path: &Path) -> Option<Mount> {
    let path = normalize(path)?;
    let mut best: Option<Mount> = None;
    for line in mountinfo.lines() {
        let Some(mount) = parse_mountinfo_line(line) else {
            continue;
        };
        let deeper_or_same = best.as_ref().is_none_or(|b| {
            mount.mount_point.components().count() >= b.mount_point.components().count()
        });
        if path.starts_with(&mount.mount_point) && deeper_or_same {
            best = Some(mount);
        }
    }
    best
}

/// `path` made lexically absolute and clean: `None` if it is relative.
fn normalize(path: &Path) -> Option<PathBuf> {
    if !path.is_absolute() {
        return None;
    }
    let mut out = PathBuf::from("/");
    for part in path.components() {
        match part {
            Component::Normal(name) => out.push(name),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Some(out)
}

/// The mount point (field 5) and the file system type (the first field after `-`)
/// of one mountinfo line; `None` for a line that does not have them.
fn parse_mountinfo_line(line: &str) -> Option<Mount> {
    let mut fields = line.split(' ');
    let mount_point = fields.nth(4)?;
    // Optional fields (shared:N, master:N, ...) come next, ended by a lone "-".
    let fstype = fields.skip_while(|f| *f != "-").nth(1)?;
    Some(Mount {
        mount_point: PathBuf::from(OsStr::from_bytes(&unescape(mount_point))),
        fstype: fstype.to_owned(),
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space, and so on).
fn unescape(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|digits| {
            let text = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

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

    const MOUNTINFO: &str = "\
22 1 252:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
40 22 0:37 / /srv rw,relatime shared:20 - tmpfs tmpfs rw
41 40 0:38 / /srv/shared rw,relatime shared:21 - fuse.glusterfs n0:/gv0 rw,user_id=0
42 40 0:39 / /srv/my\\040share rw,relatime - fuse.glusterfs n0:/gv1 rw
43 40 0:40 / /srv/shared rw,relatime - tmpfs tmpfs rw
";

    #[test]
    fn the_deepest_mount_holding_the_path_is_found() {
        let mount = mount_of(MOUNTINFO, Path::new("/srv/my share/.ctdb/reclock")).unwrap();
        assert_eq!(mount.mount_point, Path::new("/srv/my share"));
        assert_eq!(mount.fstype, "fuse.glusterfs");
        let root = mount_of(MOUNTINFO, Path::new("/etc/ctdb/reclock")).unwrap();
        assert_eq!(root.mount_point, Path::new("/"));
        assert_eq!(root.fstype, "ext4");
    }

    #[test]
    fn a_later_mount_on_the_same_point_hides_the_earlier_one() {
        // Line 43 was mounted over the GlusterFS mount of line 41.
        let mount = mount_of(MOUNTINFO, Path::new("/srv/shared/reclock")).unwrap();
        assert_eq!(mount.fstype, "tmpfs");
        let without_over_mount: String = MOUNTINFO
            .lines()
            .take(4)
            .map(|l| l.to_owned() + "\n")
            .collect();
        let mount = mount_of(&without_over_mount, Path::new("/srv/shared/reclock")).unwrap();
        assert_eq!(mount.fstype, "fuse.glusterfs");
    }

    #[test]
    fn the_path_is_taken_lexically_and_only_whole_components_match() {
        let only_gluster = "41 40 0:38 / /srv/shared rw - fuse.glusterfs n0:/gv0 rw\n";
        assert!(mount_of(only_gluster, Path::new("/srv/shared/./x/../reclock")).is_some());
        assert!(mount_of(only_gluster, Path::new("/srv/shared-not/reclock")).is_none());
        assert!(mount_of(only_gluster, Path::new("/srv/shared/../reclock")).is_none());
        assert!(mount_of(only_gluster, Path::new("srv/shared/reclock")).is_none());
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let text = "garbage\n41 40 0:38 / /srv/shared rw no-separator fuse\n";
        assert_eq!(mount_of(text, Path::new("/srv/shared/reclock")), None);
    }

    #[test]
    fn a_client_names_the_mount_point_as_a_whole_argument() {
        let cmdline =
            b"/usr/sbin/glusterfs\0--volfile-server=10.0.0.1\0--volfile-id=/gv0\0/srv/shared\0";
        assert!(names_mount_point(cmdline, Path::new("/srv/shared")));
        assert!(!names_mount_point(cmdline, Path::new("/srv")));
        assert!(!names_mount_point(cmdline, Path::new("/srv/shared2")));
    }
}
