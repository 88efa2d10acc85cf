//! Opening an input: a file or `-` (standard input), transparently decompressed when its
//! first bytes are a gzip or zstd magic number.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};

use crate::error::{Error, Result};

/// An opened input, ready to hand to the capture reader.
pub struct Source {
    /// The byte stream (already decompressed).
    pub reader: Box<dyn Read + Send>,
    /// Size on disk in bytes (`None` for standard input).
    pub size: Option<u64>,
    /// The compression recognised by its magic bytes, if any.
    pub compression: Option<&'static str>,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Told how many bytes each read took from an input (as stored, before decompression), for
/// a progress display. Called at most once per buffer fill (256 KiB), from the reader thread.
#[derive(Clone)]
pub struct Progress(pub std::sync::Arc<dyn Fn(u64) + Send + Sync>);

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress")
    }
}

/// Counts the bytes read from the stored input into a [`Progress`].
struct Counted<R> {
    inner: R,
    progress: Progress,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.progress.0)(n as u64);
        Ok(n)
    }
}

/// Open `name` (a path, or `-` for standard input); `progress` hears of every read.
pub fn open(name: &str, progress: Option<&Progress>) -> Result<Source> {
    let io_err = |source| Error::Io {
        file: name.to_string(),
        source,
    };
    let (raw, size): (Box<dyn Read + Send>, Option<u64>) = if name == "-" {
        (Box::new(io::stdin()), None)
    } else {
        let f = File::open(name).map_err(io_err)?;
        let meta = f.metadata().map_err(io_err)?;
        if meta.is_dir() {
            return Err(Error::NotACapture {
                file: name.to_string(),
                detail: "a directory".into(),
            });
        }
        (Box::new(f), Some(meta.len()))
    };
    let raw: Box<dyn Read + Send> = match progress {
        Some(p) => Box::new(Counted {
            inner: raw,
            progress: p.clone(),
        }),
        None => raw,
    };
    let mut buffered = BufReader::with_capacity(256 * 1024, raw);
    let head = buffered.fill_buf().map_err(io_err)?;
    if head.is_empty() {
        return Err(Error::Empty {
            file: name.to_string(),
        });
    }
    let (reader, compression): (Box<dyn Read + Send>, _) = if head.starts_with(&GZIP_MAGIC) {
        (
            Box::new(flate2::read::MultiGzDecoder::new(buffered)),
            Some("gzip"),
        )
    } else if head.starts_with(&ZSTD_MAGIC) {
        let dec = zstd::stream::read::Decoder::with_buffer(buffered).map_err(io_err)?;
        (Box::new(dec), Some("zstd"))
    } else {
        (Box::new(buffered), None)
    };
    Ok(Source {
        reader: Box::new(FullRead(reader)),
        size,
        compression,
    })
}

/// A reader whose `read` fills the whole buffer unless the stream ends: pcap-parser's reader
/// takes a short read for the end of a header, and pipes and decompressors return short reads.
struct FullRead<R>(R);

impl<R: Read> Read for FullRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.0.read(buf.get_mut(filled..).unwrap_or_default()) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if filled > 0 => {
                    // Hand over what was read; the error comes back on the next call.
                    let _ = e;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(filled)
    }
}
