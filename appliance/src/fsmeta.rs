//! Reading and restoring file-system attributes (`lstat`, `chmod`, `lchown`,
//! `utimensat`).

use std::ffi::CString;
use std::fs::Metadata;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::meta::model::{Attrs, Timestamp};

/// The attributes of an `lstat` result.
pub fn attrs_of(m: &Metadata) -> Attrs {
    Attrs {
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
        size: m.size(),
        mtime: Timestamp { secs: m.mtime(), nanos: m.mtime_nsec() as u32 },
        atime: Timestamp { secs: m.atime(), nanos: m.atime_nsec() as u32 },
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

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path has a NUL byte"))
}

/// Restores ownership (when permitted), permissions (not on symlinks) and
/// times of `path`, without following a symlink.
pub fn apply(path: &Path, attrs: &Attrs, is_symlink: bool) -> io::Result<()> {
    let c = c_path(path)?;
    // SAFETY: valid C string; lchown does not follow symlinks.
    let rc = unsafe { libc::lchown(c.as_ptr(), attrs.uid, attrs.gid) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        // Only root may give files away; as a user, keep our own ownership.
        if err.raw_os_error() != Some(libc::EPERM) {
            return Err(err);
        }
    }
    if !is_symlink {
        // SAFETY: valid C string.
        if unsafe { libc::chmod(c.as_ptr(), attrs.mode & 0o7777) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let times = [
        libc::timespec { tv_sec: attrs.atime.secs, tv_nsec: attrs.atime.nanos as _ },
        libc::timespec { tv_sec: attrs.mtime.secs, tv_nsec: attrs.mtime.nanos as _ },
    ];
    // SAFETY: valid C string and a two-element timespec array.
    if unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The file type bits of a mode.
pub fn kind_name(mode: u32) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFREG => "file",
        libc::S_IFDIR => "dir",
        libc::S_IFLNK => "symlink",
        libc::S_IFSOCK => "socket",
        libc::S_IFIFO => "fifo",
        libc::S_IFCHR => "char device",
        libc::S_IFBLK => "block device",
        _ => "unknown",
    }
}
