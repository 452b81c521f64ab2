//! Reading and restoring file-system attributes (`lstat`, `chmod`, `lchown`,
//! `utimensat`).

use std::fs::Metadata;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use rustix::fs::{utimensat, AtFlags, FileType, Timespec, Timestamps, CWD};

use crate::meta::model::{Attrs, Timestamp};

/// The attributes of an `lstat` result.
pub fn attrs_of(m: &Metadata) -> Attrs {
    Attrs {
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
        size: m.size(),
        mtime: Timestamp { secs: m.mtime(), nanos: m.mtime_nsec() as u32 },
        ctime: Timestamp { secs: m.ctime(), nanos: m.ctime_nsec() as u32 },
        inode: m.ino(),
        dev: m.dev(),
    }
}

/// True when a regular file occupies fewer blocks than its size: it has holes.
pub fn is_sparse(m: &Metadata) -> bool {
    m.size() > 0 && m.blocks() * 512 < m.size()
}

/// A stable id for the hard-link group of an inode.
pub fn link_group(m: &Metadata) -> Option<u64> {
    (m.nlink() > 1 && !m.is_dir()).then(|| m.dev().rotate_left(32) ^ m.ino())
}

/// Restores ownership (when permitted), permissions (not on symlinks) and
/// times of `path`, without following a symlink.
pub fn apply(path: &Path, attrs: &Attrs, is_symlink: bool) -> io::Result<()> {
    if let Err(err) = std::os::unix::fs::lchown(path, Some(attrs.uid), Some(attrs.gid)) {
        // Only root may give files away; as a user, keep our own ownership.
        if err.raw_os_error() != Some(rustix::io::Errno::PERM.raw_os_error()) {
            return Err(err);
        }
    }
    if !is_symlink {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(attrs.mode & 0o7777))?;
    }
    let times = Timestamps {
        // Access times are not kept (docs/METADATA.md): the modification time stands in.
        last_access: Timespec { tv_sec: attrs.mtime.secs, tv_nsec: attrs.mtime.nanos.into() },
        last_modification: Timespec { tv_sec: attrs.mtime.secs, tv_nsec: attrs.mtime.nanos.into() },
    };
    utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

/// The file type bits of a mode.
pub fn kind_name(mode: u32) -> &'static str {
    match FileType::from_raw_mode(mode) {
        FileType::RegularFile => "file",
        FileType::Directory => "dir",
        FileType::Symlink => "symlink",
        FileType::Socket => "socket",
        FileType::Fifo => "fifo",
        FileType::CharacterDevice => "char device",
        FileType::BlockDevice => "block device",
        FileType::Unknown => "unknown",
    }
}
