//! Streams CSV text into a one-entry zip on disk, the way D2L packages an
//! extract: UTF-8 BOM, header row, CRLF rows, deflate.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use zip::ZipWriter;
use zip::write::SimpleFileOptions;

use super::GeneratorError;
use super::values::CsvLine;

/// Buffered CSV text is handed to the compressor in chunks of this size.
const CHUNK: usize = 256 << 10;

/// A zip being written, with the CSV row being built.
#[derive(Debug)]
pub(crate) struct CsvZip {
    zip: ZipWriter<BufWriter<File>>,
    path: PathBuf,
    pub line: CsvLine,
}

impl CsvZip {
    /// Creates `path` with one entry `entry` and writes the BOM and header.
    /// `huge`: the CSV may pass 4 GiB, so zip64 sizes are needed.
    pub fn create(
        path: &Path,
        entry: &str,
        header: &[&str],
        huge: bool,
    ) -> Result<CsvZip, GeneratorError> {
        let file = File::create(path).map_err(|source| GeneratorError::Io {
            path: path.into(),
            source,
        })?;
        let mut zip = ZipWriter::new(BufWriter::with_capacity(1 << 20, file));
        let options = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .large_file(huge);
        zip.start_file(entry, options)
            .map_err(|source| GeneratorError::Zip {
                path: path.into(),
                source,
            })?;

        let mut line = CsvLine::default();
        line.buffer.extend_from_slice("\u{feff}".as_bytes());
        line.buffer.extend_from_slice(header.join(",").as_bytes());
        line.buffer.extend_from_slice(b"\r\n");
        Ok(CsvZip {
            zip,
            path: path.into(),
            line,
        })
    }

    /// Passes finished rows on to the compressor once enough have gathered.
    pub fn flush_if_full(&mut self) -> Result<(), GeneratorError> {
        if self.line.buffer.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), GeneratorError> {
        self.zip
            .write_all(&self.line.buffer)
            .map_err(|source| GeneratorError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.line.buffer.clear();
        Ok(())
    }

    /// Completes the zip; returns its (sha256, size).
    pub fn finish(mut self) -> Result<(String, u64), GeneratorError> {
        self.flush()?;
        let zip_error = |source| GeneratorError::Zip {
            path: self.path.clone(),
            source,
        };
        let mut out = self.zip.finish().map_err(zip_error)?;
        let io_error = |source| GeneratorError::Io {
            path: self.path.clone(),
            source,
        };
        out.flush().map_err(io_error)?;
        drop(out);
        bds_common::hash::sha256_file(&self.path).map_err(io_error)
    }
}
