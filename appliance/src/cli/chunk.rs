//! `pastiche chunk FILE...`: print every chunk of every file.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use pastiche_core::Handle;

use crate::chunk_stream::ChunkStream;

/// Prints `OFFSET LENGTH HANDLE CHUNKID` for each chunk of each file, files in
/// order. A file that cannot be read is reported on stderr and skipped.
/// Returns whether every file was read.
pub fn run(files: &[PathBuf], out: &mut impl Write) -> io::Result<bool> {
    let mut all_ok = true;
    for path in files {
        match print_file(path, out) {
            Ok(()) => {}
            Err(FileError::Read(e)) => {
                all_ok = false;
                out.flush()?;
                eprintln!("pastiche: cannot read {}: {e}", path.display());
            }
            Err(FileError::Write(e)) => return Err(e),
        }
    }
    out.flush()?;
    Ok(all_ok)
}

enum FileError {
    Read(io::Error),
    Write(io::Error),
}

fn print_file(path: &Path, out: &mut impl Write) -> Result<(), FileError> {
    let file = File::open(path).map_err(FileError::Read)?;
    if file.metadata().map_err(FileError::Read)?.is_dir() {
        return Err(FileError::Read(io::Error::new(io::ErrorKind::IsADirectory, "is a directory")));
    }
    let mut stream = ChunkStream::new(file);
    let mut offset = 0u64;
    while let Some(chunk) = stream.next_chunk().map_err(FileError::Read)? {
        let handle = Handle::of(chunk);
        writeln!(out, "{offset} {} {handle} {}", chunk.len(), handle.chunk_id()).map_err(FileError::Write)?;
        offset += chunk.len() as u64;
    }
    Ok(())
}
