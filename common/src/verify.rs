//! Checks that a downloaded extract is what D2L promises: a readable zip
//! holding exactly one CSV whose every byte matches its CRC, within sane
//! size limits.
//!
//! The zip is read from a local file (the zip format needs random access);
//! entry names are only reported, never used as file paths.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Limits against zip bombs.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest uncompressed CSV accepted, in bytes.
    pub max_uncompressed: u64,
    /// Largest ratio of uncompressed to compressed size accepted.
    pub max_ratio: u64,
}

impl Default for Limits {
    /// 256 GiB and 1000:1. Real BDS CSVs compress about 3 to 20 times.
    fn default() -> Self {
        Limits {
            max_uncompressed: 256 << 30,
            max_ratio: 1000,
        }
    }
}

/// What a verified extract holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipSummary {
    /// Name of the CSV entry inside the zip, e.g. `Users.csv`.
    pub entry_name: String,
    /// Index of that entry in the zip.
    pub entry_index: usize,
    /// Uncompressed size of the CSV in bytes.
    pub uncompressed_size: u64,
}

/// Why an extract was rejected.
#[derive(Debug, Error)]
pub enum VerifyError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Io {
        /// The zip file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The zip's structure is broken (truncated, not a zip).
    #[error("{path} is not a readable zip file")]
    NotAZip {
        /// The zip file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: zip::result::ZipError,
    },
    /// The zip does not hold exactly one CSV.
    #[error("{path} must hold exactly one CSV file, but holds {entries:?}")]
    WrongEntries {
        /// The zip file.
        path: PathBuf,
        /// Names of the entries found.
        entries: Vec<String>,
    },
    /// An entry's data does not match its CRC or declared size.
    #[error("entry {entry} of {path} is corrupt")]
    Corrupt {
        /// The zip file.
        path: PathBuf,
        /// The entry name.
        entry: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The entry would inflate beyond the limits.
    #[error(
        "entry {entry} of {path} inflates to {uncompressed} bytes from {compressed}, over the \
         limit (at most {max_uncompressed} bytes and a ratio of {max_ratio}:1)"
    )]
    TooLarge {
        /// The zip file.
        path: PathBuf,
        /// The entry name.
        entry: String,
        /// Declared or observed uncompressed size.
        uncompressed: u64,
        /// Compressed size.
        compressed: u64,
        /// The size limit.
        max_uncompressed: u64,
        /// The ratio limit.
        max_ratio: u64,
    },
}

/// Opens the zip at `path` and finds its single CSV entry, checking the
/// declared sizes against `limits`. Does not read the data: see
/// [`verify_zip`] for the CRC check.
pub fn inspect_zip(
    path: &Path,
    limits: Limits,
) -> Result<(zip::ZipArchive<File>, ZipSummary), VerifyError> {
    let file = File::open(path).map_err(|source| VerifyError::Io {
        path: path.into(),
        source,
    })?;
    let mut archive = zip::ZipArchive::new(file).map_err(|source| VerifyError::NotAZip {
        path: path.into(),
        source,
    })?;

    let names: Vec<String> = archive
        .file_names()
        .map(|n| {
            n.map(|n| n.into_owned())
                .unwrap_or_else(|_| "<unreadable name>".into())
        })
        .collect();
    let csv: Vec<usize> = names
        .iter()
        .enumerate()
        .filter(|(_, n)| n.to_ascii_lowercase().ends_with(".csv") && !n.ends_with('/'))
        .map(|(i, _)| i)
        .collect();
    if archive.len() != 1 || csv.len() != 1 {
        return Err(VerifyError::WrongEntries {
            path: path.into(),
            entries: names,
        });
    }

    let index = csv[0];
    let entry = archive
        .by_index_raw(index)
        .map_err(|source| VerifyError::NotAZip {
            path: path.into(),
            source,
        })?;
    let summary = ZipSummary {
        entry_name: names[index].clone(),
        entry_index: index,
        uncompressed_size: entry.size(),
    };
    check_limits(
        path,
        &summary.entry_name,
        entry.size(),
        entry.compressed_size(),
        limits,
    )?;
    drop(entry);
    Ok((archive, summary))
}

/// Fully verifies the extract at `path`: structure, exactly one CSV, sizes
/// within `limits`, every byte inflated and checked against the entry's CRC
/// and declared size.
pub fn verify_zip(path: &Path, limits: Limits) -> Result<ZipSummary, VerifyError> {
    let (mut archive, summary) = inspect_zip(path, limits)?;
    let corrupt = |source| VerifyError::Corrupt {
        path: path.into(),
        entry: summary.entry_name.clone(),
        source,
    };

    let mut entry =
        archive
            .by_index(summary.entry_index)
            .map_err(|source| VerifyError::NotAZip {
                path: path.into(),
                source,
            })?;
    let compressed = entry.compressed_size();
    // Read one byte past the declared size so a lying header is caught,
    // without ever inflating more than the limit allows.
    let cap = summary.uncompressed_size.min(limits.max_uncompressed) + 1;
    let read = io::copy(&mut (&mut entry).take(cap), &mut io::sink()).map_err(corrupt)?;
    if read != summary.uncompressed_size {
        let err = io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "inflated {read} bytes, header declares {}",
                summary.uncompressed_size
            ),
        );
        return Err(corrupt(err));
    }
    check_limits(path, &summary.entry_name, read, compressed, limits)?;
    Ok(summary)
}

/// What [`StreamCheck`] saw of a zip's first entry while the zip arrived:
/// where its data starts, how it is compressed, and the CRC and size of
/// what it inflates to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamedEntry {
    /// Offset of the entry's data in the file.
    pub data_start: u64,
    /// Compression method (0 stored, 8 deflated).
    pub method: u16,
    /// Bytes of entry data consumed.
    pub compressed: u64,
    /// Bytes the data inflated to.
    pub uncompressed: u64,
    /// CRC-32 of the inflated bytes.
    pub crc32: u32,
}

/// Checks a zip's first entry while its bytes arrive, so that a download
/// needs no second pass over the file: feed it every byte in order with
/// [`StreamCheck::update`], then hand [`StreamCheck::finish`] to
/// [`verify_zip_streamed`].
///
/// It only ever proves an entry good. Whatever it cannot follow (a stored
/// entry whose size comes after its data, encryption, another method, a
/// deflate error, output past the cap) makes it give up, and the caller
/// falls back to the full check, which then reports what is wrong.
#[derive(Debug)]
pub struct StreamCheck {
    state: Stream,
    header: Vec<u8>,
    crc: crc32fast::Hasher,
    consumed: u64,
    produced: u64,
    cap: u64,
    out: Vec<u8>,
}

#[derive(Debug)]
enum Stream {
    Header,
    Stored {
        data_start: u64,
        remaining: u64,
    },
    Deflated {
        data_start: u64,
        inflater: Box<flate2::Decompress>,
    },
    Done(StreamedEntry),
    GaveUp,
}

/// Local file header: signature, fixed fields, then name and extra field.
const LOCAL_HEADER: usize = 30;
const LOCAL_SIGNATURE: u32 = 0x0403_4b50;

impl StreamCheck {
    /// A check for a zip of `expected_size` bytes (its Content-Length, if
    /// known): inflating stops past what `limits` allow for that size.
    pub fn new(limits: Limits, expected_size: Option<u64>) -> Self {
        let by_ratio =
            expected_size.map_or(u64::MAX, |n| n.max(1).saturating_mul(limits.max_ratio));
        StreamCheck {
            state: Stream::Header,
            header: Vec::with_capacity(LOCAL_HEADER),
            crc: crc32fast::Hasher::new(),
            consumed: 0,
            produced: 0,
            cap: limits.max_uncompressed.min(by_ratio),
            out: Vec::new(),
        }
    }

    /// Feeds the next bytes of the zip.
    pub fn update(&mut self, mut input: &[u8]) {
        while !input.is_empty() {
            match &mut self.state {
                Stream::Header => {
                    let taken = self.take_header(input);
                    input = &input[taken..];
                }
                Stream::Stored {
                    data_start,
                    remaining,
                } => {
                    let n = input
                        .len()
                        .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                    self.crc.update(&input[..n]);
                    *remaining -= n as u64;
                    self.consumed += n as u64;
                    self.produced += n as u64;
                    input = &input[n..];
                    if *remaining == 0 {
                        let data_start = *data_start;
                        self.state = Stream::Done(self.entry(data_start, 0));
                    }
                }
                Stream::Deflated { .. } => {
                    let taken = self.inflate(input);
                    input = &input[taken..];
                }
                Stream::Done(_) | Stream::GaveUp => return,
            }
        }
    }

    /// True once more bytes cannot change the outcome: the entry's end was
    /// seen, or the check gave up.
    pub fn settled(&self) -> bool {
        matches!(self.state, Stream::Done(_) | Stream::GaveUp)
    }

    /// What was seen of the first entry, if it was followed to its end.
    pub fn finish(self) -> Option<StreamedEntry> {
        match self.state {
            Stream::Done(entry) => Some(entry),
            _ => None,
        }
    }

    fn entry(&self, data_start: u64, method: u16) -> StreamedEntry {
        StreamedEntry {
            data_start,
            method,
            compressed: self.consumed,
            uncompressed: self.produced,
            crc32: self.crc.clone().finalize(),
        }
    }

    /// Gathers the local header; once whole, moves on to the data. Returns
    /// the bytes of `input` used.
    fn take_header(&mut self, input: &[u8]) -> usize {
        let variable = |h: &[u8]| (le(&h[26..28]) + le(&h[28..30])) as usize;
        let wanted = if self.header.len() < LOCAL_HEADER {
            LOCAL_HEADER
        } else {
            LOCAL_HEADER + variable(&self.header)
        };
        let n = (wanted - self.header.len()).min(input.len());
        self.header.extend_from_slice(&input[..n]);
        if self.header.len() < wanted {
            return n;
        }
        if wanted == LOCAL_HEADER {
            if le(&self.header[0..4]) != u64::from(LOCAL_SIGNATURE) {
                self.state = Stream::GaveUp;
                return n;
            }
            // A header with a name or an extra field is finished on the
            // next call.
            if variable(&self.header) > 0 {
                return n;
            }
        }
        self.state = self.data_state();
        self.header = Vec::new();
        n
    }

    /// How to follow the data after a complete local header.
    fn data_state(&self) -> Stream {
        let h = &self.header;
        let flags = le(&h[6..8]);
        let method = le(&h[8..10]);
        let data_start = h.len() as u64;
        let encrypted = flags & 1 != 0;
        let sizes_follow = flags & 8 != 0;
        match method {
            _ if encrypted => Stream::GaveUp,
            8 => Stream::Deflated {
                data_start,
                inflater: Box::new(flate2::Decompress::new(false)),
            },
            0 if !sizes_follow => match local_compressed_size(h) {
                Some(0) => Stream::Done(StreamedEntry {
                    data_start,
                    method: 0,
                    compressed: 0,
                    uncompressed: 0,
                    crc32: 0,
                }),
                Some(remaining) => Stream::Stored {
                    data_start,
                    remaining,
                },
                None => Stream::GaveUp,
            },
            _ => Stream::GaveUp,
        }
    }

    /// Inflates what `input` holds; returns the bytes of it used.
    fn inflate(&mut self, input: &[u8]) -> usize {
        const OUT: usize = 256 << 10;
        if self.out.is_empty() {
            self.out = vec![0; OUT];
        }
        let Stream::Deflated {
            data_start,
            inflater,
        } = &mut self.state
        else {
            return input.len();
        };
        let data_start = *data_start;
        let (before_in, before_out) = (inflater.total_in(), inflater.total_out());
        let status = inflater.decompress(input, &mut self.out, flate2::FlushDecompress::None);
        let used = (inflater.total_in() - before_in) as usize;
        let made = (inflater.total_out() - before_out) as usize;
        self.crc.update(&self.out[..made]);
        self.consumed += used as u64;
        self.produced += made as u64;
        self.state = match status {
            _ if self.produced > self.cap => Stream::GaveUp,
            Ok(flate2::Status::StreamEnd) => Stream::Done(self.entry(data_start, 8)),
            Ok(_) if used > 0 || made > 0 => return used,
            // Neither in nor out moved: the stream is stuck.
            Ok(_) | Err(_) => Stream::GaveUp,
        };
        used
    }
}

/// The compressed size a complete local header declares, from its zip64
/// extra field when the 32-bit field says so.
fn local_compressed_size(header: &[u8]) -> Option<u64> {
    let size = le(&header[18..22]);
    if size != 0xFFFF_FFFF {
        return Some(size);
    }
    // Zip64: the extra field with id 1 holds the uncompressed, then the
    // compressed size.
    let name = le(&header[26..28]) as usize;
    let mut extra = &header[LOCAL_HEADER + name..];
    while extra.len() >= 4 {
        let (id, len) = (le(&extra[0..2]), le(&extra[2..4]) as usize);
        let body = extra.get(4..4 + len)?;
        if id == 1 {
            return body.get(8..16).map(le);
        }
        extra = &extra[4 + len..];
    }
    None
}

/// A little-endian unsigned field of a zip header (at most 8 bytes).
fn le(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .fold(0, |n, &byte| (n << 8) | u64::from(byte))
}

/// [`verify_zip`], with the data check already done while the zip arrived:
/// when `streamed` matches the entry the central directory describes
/// (offset, method, sizes and CRC), the data is not read again. Otherwise
/// (nothing streamed, or any difference) the full check runs and decides.
pub fn verify_zip_streamed(
    path: &Path,
    limits: Limits,
    streamed: Option<StreamedEntry>,
) -> Result<ZipSummary, VerifyError> {
    if let Some(streamed) = streamed {
        let (mut archive, summary) = inspect_zip(path, limits)?;
        let matches = archive
            .by_index_raw(summary.entry_index)
            .is_ok_and(|entry| {
                !entry.encrypted()
                    && entry.data_start() == Some(streamed.data_start)
                    && entry.compression()
                        == match streamed.method {
                            0 => zip::CompressionMethod::Stored,
                            _ => zip::CompressionMethod::Deflated,
                        }
                    && entry.compressed_size() == streamed.compressed
                    && entry.size() == streamed.uncompressed
                    && entry.crc32() == streamed.crc32
            });
        if matches {
            return Ok(summary);
        }
        tracing::debug!(path = %path.display(), "the streamed check differs; reading the zip again");
    }
    verify_zip(path, limits)
}

fn check_limits(
    path: &Path,
    entry: &str,
    uncompressed: u64,
    compressed: u64,
    limits: Limits,
) -> Result<(), VerifyError> {
    let ratio_ok = uncompressed <= compressed.max(1).saturating_mul(limits.max_ratio);
    if uncompressed > limits.max_uncompressed || !ratio_ok {
        return Err(VerifyError::TooLarge {
            path: path.into(),
            entry: entry.to_string(),
            uncompressed,
            compressed,
            max_uncompressed: limits.max_uncompressed,
            max_ratio: limits.max_ratio,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use zip::write::SimpleFileOptions;

    fn make_zip(entries: &[(&str, &[u8])]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut w = zip::ZipWriter::new(file.reopen().unwrap());
        for (name, data) in entries {
            w.start_file(*name, SimpleFileOptions::default()).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap();
        file
    }

    #[test]
    fn accepts_one_csv() {
        let z = make_zip(&[("Users.csv", b"\xEF\xBB\xBFUserId\r\n1\r\n")]);
        let s = verify_zip(z.path(), Limits::default()).unwrap();
        assert_eq!(s.entry_name, "Users.csv");
        assert_eq!(s.uncompressed_size, 14);
    }

    #[test]
    fn rejects_two_entries_and_names_them() {
        let z = make_zip(&[("a.csv", b"x"), ("b.txt", b"y")]);
        let err = verify_zip(z.path(), Limits::default()).unwrap_err();
        assert!(err.to_string().contains("b.txt"), "{err}");
    }

    #[test]
    fn rejects_a_flipped_byte() {
        let data = "UserId,Name\r\n".repeat(1000);
        let z = make_zip(&[("Users.csv", data.as_bytes())]);
        let mut bytes = std::fs::read(z.path()).unwrap();
        bytes[60] ^= 0x55;
        std::fs::write(z.path(), &bytes).unwrap();
        assert!(verify_zip(z.path(), Limits::default()).is_err());
    }

    #[test]
    fn rejects_a_truncated_zip() {
        let z = make_zip(&[("Users.csv", b"UserId\r\n1\r\n")]);
        let bytes = std::fs::read(z.path()).unwrap();
        std::fs::write(z.path(), &bytes[..bytes.len() - 10]).unwrap();
        assert!(matches!(
            verify_zip(z.path(), Limits::default()),
            Err(VerifyError::NotAZip { .. })
        ));
    }

    fn zip_with(data: &[u8], options: SimpleFileOptions) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        w.start_file("Users.csv", options).unwrap();
        w.write_all(data).unwrap();
        w.finish().unwrap().into_inner()
    }

    /// Feeds `zip` to a stream check in pieces of `step` bytes.
    fn stream(zip: &[u8], step: usize, limits: Limits) -> Option<StreamedEntry> {
        let mut check = StreamCheck::new(limits, Some(zip.len() as u64));
        for piece in zip.chunks(step) {
            check.update(piece);
        }
        check.finish()
    }

    fn rows(n: usize) -> Vec<u8> {
        (0..n)
            .flat_map(|i| format!("{i},user{},{}\r\n", i * 7919 % 1000, i % 3).into_bytes())
            .collect()
    }

    #[test]
    fn a_streamed_entry_matches_what_the_full_check_reads() {
        let data = rows(50_000);
        let stored =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        let zip64 = stored.large_file(true);
        let deflated = SimpleFileOptions::default();
        for (what, options) in [("stored", stored), ("zip64", zip64), ("deflated", deflated)] {
            let bytes = zip_with(&data, options);
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), &bytes).unwrap();
            let full = verify_zip(file.path(), Limits::default()).unwrap();
            for step in [1, 7, 4096, 1 << 20] {
                let streamed = stream(&bytes, step, Limits::default())
                    .unwrap_or_else(|| panic!("{what}, step {step}: gave up"));
                assert_eq!(streamed.uncompressed, data.len() as u64, "{what}");
                assert_eq!(streamed.crc32, crc32fast::hash(&data), "{what}");
                let summary =
                    verify_zip_streamed(file.path(), Limits::default(), Some(streamed)).unwrap();
                assert_eq!(summary, full, "{what}, step {step}");
            }
        }
    }

    #[test]
    fn what_the_stream_cannot_follow_is_read_again() {
        // Written to a stream: sizes come after the data, which a stored
        // entry cannot be followed through.
        let stored =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        let mut w = zip::ZipWriter::new_stream(Vec::new());
        w.start_file("Users.csv", stored).unwrap();
        w.write_all(&rows(1000)).unwrap();
        let bytes = w.finish().unwrap().into_inner();
        assert_eq!(stream(&bytes, 100, Limits::default()), None);
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &bytes).unwrap();
        verify_zip_streamed(file.path(), Limits::default(), None).unwrap();

        // Not a zip at all.
        assert_eq!(
            stream(b"PK\x05\x06 not a local header", 3, Limits::default()),
            None
        );
    }

    #[test]
    fn a_streamed_entry_that_differs_is_not_trusted() {
        let data = rows(10_000);
        let bytes = zip_with(&data, SimpleFileOptions::default());
        let file = tempfile::NamedTempFile::new().unwrap();
        let streamed = stream(&bytes, 512, Limits::default()).unwrap();

        // A flipped byte in the data: the stream sees a different CRC or a
        // broken deflate stream, and the full check reports the corruption.
        let mut flipped = bytes.clone();
        flipped[200] ^= 0x20;
        std::fs::write(file.path(), &flipped).unwrap();
        let seen = stream(&flipped, 512, Limits::default());
        assert_ne!(seen, Some(streamed));
        let err = verify_zip_streamed(file.path(), Limits::default(), seen).unwrap_err();
        assert!(matches!(err, VerifyError::Corrupt { .. }), "{err}");

        // A good file with a streamed CRC that does not match it: read again, accepted.
        std::fs::write(file.path(), &bytes).unwrap();
        let wrong = StreamedEntry {
            crc32: streamed.crc32 ^ 1,
            ..streamed
        };
        verify_zip_streamed(file.path(), Limits::default(), Some(wrong)).unwrap();
    }

    #[test]
    fn a_flipped_byte_in_a_stored_entry_is_a_crc_mismatch() {
        // Stored data has no deflate framing that could break first: only
        // the CRC tells the flipped byte apart from the real one.
        let data = rows(2_000);
        let stored =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        let bytes = zip_with(&data, stored);
        let honest = stream(&bytes, 4096, Limits::default()).unwrap();
        let data_start = usize::try_from(honest.data_start).unwrap();
        let mut flipped = bytes.clone();
        flipped[data_start + data.len() / 2] ^= 0x01;
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &flipped).unwrap();

        let is_crc_mismatch = |err: &VerifyError| match err {
            VerifyError::Corrupt { source, .. } => {
                source.to_string().to_ascii_lowercase().contains("checksum")
            }
            _ => false,
        };
        let err = verify_zip(file.path(), Limits::default()).unwrap_err();
        assert!(is_crc_mismatch(&err), "{err:?}");

        // The stream follows the stored entry to its end, sizes and all, but
        // the CRC it computes is the flipped data's, which the central
        // directory does not declare; the full check then names the fault.
        let seen = stream(&flipped, 4096, Limits::default()).unwrap();
        assert_eq!(seen.uncompressed, honest.uncompressed);
        assert_ne!(seen.crc32, honest.crc32);
        let err = verify_zip_streamed(file.path(), Limits::default(), Some(seen)).unwrap_err();
        assert!(is_crc_mismatch(&err), "{err:?}");
    }

    #[test]
    fn the_stream_stops_inflating_a_bomb() {
        let bytes = zip_with(&vec![b'0'; 10 << 20], SimpleFileOptions::default());
        let limits = Limits {
            max_uncompressed: 1 << 40,
            max_ratio: 100,
        };
        assert_eq!(stream(&bytes, 1 << 16, limits), None);
        let generous = Limits {
            max_ratio: 2000,
            ..limits
        };
        assert!(stream(&bytes, 1 << 16, generous).is_some());
    }

    #[test]
    fn rejects_a_zip_bomb() {
        let data = vec![b'0'; 10 << 20];
        let z = make_zip(&[("bomb.csv", &data)]);
        let limits = Limits {
            max_uncompressed: 1 << 40,
            max_ratio: 100,
        };
        let err = verify_zip(z.path(), limits).unwrap_err();
        assert!(matches!(err, VerifyError::TooLarge { .. }), "{err}");
    }
}
