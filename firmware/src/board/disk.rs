//! The block device over a semihosting host file (SYS_OPEN/READ/WRITE/
//! SEEK/FLEN), behind `embedded-io` `Read + Write + Seek`, so the "disk"
//! outlives QEMU: killing QEMU loses only what was not yet handed to the
//! host (each write is a host `write(2)` before the call returns). There is
//! no semihosting fsync, so a host power cut may lose the host's page cache.

use embedded_io::{ErrorKind, ErrorType, Read, Seek, SeekFrom, Write};

use super::semihosting::{self as sh, Handle};
use cortex_m_semihosting::nr::open;

/// A host file used as a disk.
pub struct HostDisk {
    h: Handle,
    pos: u64,
    len: u64,
}

impl HostDisk {
    /// Opens `path` read-write, creating it if absent.
    pub fn open(path: &str) -> Option<HostDisk> {
        // "r+b" keeps the contents; it fails if the file does not exist, and
        // then "w+b" creates it.
        let h = sh::open(path, open::RW_BINARY).or_else(|| sh::open(path, open::RW_TRUNC_BINARY))?;
        let len = sh::flen(h)? as u64;
        Some(HostDisk { h, pos: 0, len })
    }

    /// The file's length when opened, or as grown since.
    pub fn len(&self) -> u64 {
        self.len
    }
}

impl ErrorType for HostDisk {
    type Error = ErrorKind;
}

impl Read for HostDisk {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        if !sh::seek(self.h, self.pos as usize) {
            return Err(ErrorKind::Other);
        }
        let want = buf.len().min(self.len.saturating_sub(self.pos) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = want - sh::read(self.h, &mut buf[..want]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for HostDisk {
    fn write(&mut self, data: &[u8]) -> Result<usize, ErrorKind> {
        if !sh::seek(self.h, self.pos as usize) {
            return Err(ErrorKind::Other);
        }
        let n = data.len() - sh::write(self.h, data);
        if n == 0 && !data.is_empty() {
            return Err(ErrorKind::Other);
        }
        self.pos += n as u64;
        self.len = self.len.max(self.pos);
        Ok(n)
    }

    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

impl Seek for HostDisk {
    fn seek(&mut self, pos: SeekFrom) -> Result<u64, ErrorKind> {
        let p = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let p = p.ok_or(ErrorKind::InvalidInput)?;
        self.pos = p;
        Ok(p)
    }
}
