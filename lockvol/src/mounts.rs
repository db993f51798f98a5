//! Which mount holds a file, and what we know about that file system's locks.
//!
//! Read from `/proc/self/mountinfo`, which the kernel answers without asking the
//! file system: a hung volume cannot block the lookup. Paths are taken lexically
//! (symlinks are not followed, since resolving them would ask the volume).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// The type GlusterFS's FUSE client mounts show in mountinfo.
pub const GLUSTERFS_FUSE: &str = "fuse.glusterfs";

/// How long GlusterFS may keep the fcntl lock of a client whose node lost power, at
/// its default options: the bricks free it only once they give the client up (its
/// `network.ping-timeout`, 42 s, and TCP's own timeouts after that). Measured on a
/// replica-3 volume in namespaces: 72–83 s (README "Running on GlusterFS",
/// `tests/vm/tests/gluster_leader.rs`); this bound leaves a margin above that.
pub const GLUSTERFS_DEFAULT_DEAD_LOCK: Duration = Duration::from_secs(90);

/// How long a lock on a file system of type `fstype` may outlive a holder whose node
/// lost power, at that file system's default options, where that is known to be
/// longer than a few seconds; `None` for file systems that free it at once or that we
/// have not measured.
pub fn dead_holder_lock_bound(fstype: &str) -> Option<Duration> {
    (fstype == GLUSTERFS_FUSE).then_some(GLUSTERFS_DEFAULT_DEAD_LOCK)
}

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

/// The mount holding `path` (made absolute against the current directory), read
/// from this process's `/proc/self/mountinfo`.
pub fn mount_holding(path: &Path) -> std::io::Result<Option<Mount>> {
    let absolute = std::path::absolute(path)?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(mount_of(&mountinfo, &absolute))
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
}
