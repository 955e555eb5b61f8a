//! Streaming an extract's CSV into a table with binary COPY: one thread
//! inflates, parses and encodes, the calling thread (which owns the database
//! connection) writes the encoded chunks to `COPY ... FROM STDIN (FORMAT
//! binary)`. A bounded channel between them keeps memory flat whatever the
//! extract's size.
//!
//! Any error (bad CSV, bad value, server refusal) leaves the COPY unfinished,
//! which aborts it; the caller's transaction is then rolled back.

use std::io::Write;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use postgres::Transaction;

use crate::encode::{COPY_HEADER, COPY_TRAILER, put_null, put_tuple_start};
use crate::error::{ExtractLabel, LoadError};
use crate::read::{LoadColumn, LocalExtract, csv_error, csv_reader, open_zip};

/// Encoded bytes sent to the COPY at a time.
const CHUNK: usize = 512 << 10;

/// Chunks in flight between the threads: with [`CHUNK`], at most a few MiB.
const CHANNEL_DEPTH: usize = 4;

/// What a COPY loaded.
#[derive(Debug, Clone, Default)]
pub struct CopySummary {
    /// Data rows.
    pub rows: u64,
}

/// The CSV's columns in COPY order, and whether a leading row ordinal
/// (`bigint`, 1 = first data row) is sent too.
#[derive(Debug, Clone)]
pub struct CopyShape<'a> {
    /// Columns of the CSV to send, each to its table column.
    pub columns: &'a [LoadColumn],
    /// Send the row's ordinal first.
    pub ordinal: bool,
}

/// Runs `copy_sql` (a `COPY ... FROM STDIN (FORMAT binary)` whose column
/// list matches `shape`) with the rows of the extract's CSV.
pub fn copy_extract(
    tx: &mut Transaction<'_>,
    copy_sql: &str,
    extract: &LocalExtract,
    shape: &CopyShape<'_>,
    label: &ExtractLabel,
) -> Result<CopySummary, LoadError> {
    let (sender, receiver) = sync_channel::<Chunk>(CHANNEL_DEPTH);
    let (recycle_sender, recycle) = sync_channel::<Vec<u8>>(CHANNEL_DEPTH + 2);

    std::thread::scope(|scope| {
        let producer = scope.spawn(move || encode_extract(extract, shape, label, sender, recycle));
        let written = write_chunks(tx, copy_sql, &receiver, &recycle_sender, label);
        // Unblock the producer if the COPY stopped early.
        drop(receiver);
        let produced = producer
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        match (produced, written) {
            (Err(e), _) => Err(e),
            (Ok(_), Err(CopyFailure::Server(e, row))) => {
                let line = row.and_then(|r| produced_line(extract, r, label));
                Err(LoadError::db_at_line(format!("{label}: COPY"), e, line))
            }
            (Ok(summary), Ok(())) => Ok(summary),
            (Ok(_), Err(CopyFailure::Aborted)) => Err(LoadError::Extract {
                extract: label.clone(),
                problem: "the CSV reader stopped without an error".into(),
            }),
        }
    })
}

/// What the encoding thread sends.
enum Chunk {
    /// Encoded tuples.
    Data(Vec<u8>),
    /// Every row was encoded and sent: the COPY may be completed.
    Done,
}

enum CopyFailure {
    /// The server refused the data; the row number it named, if any.
    Server(postgres::Error, Option<u64>),
    /// The producer stopped (its error is reported instead).
    Aborted,
}

fn write_chunks(
    tx: &mut Transaction<'_>,
    copy_sql: &str,
    receiver: &Receiver<Chunk>,
    recycle: &SyncSender<Vec<u8>>,
    label: &ExtractLabel,
) -> Result<(), CopyFailure> {
    let server = |e: postgres::Error| {
        let row = copy_row(&e);
        CopyFailure::Server(e, row)
    };
    let mut writer = tx.copy_in(copy_sql).map_err(server)?;
    loop {
        // A closed channel without Done: the producer failed. Dropping the
        // writer without finish() aborts the COPY.
        let Ok(chunk) = receiver.recv() else {
            return Err(CopyFailure::Aborted);
        };
        let mut data = match chunk {
            Chunk::Data(data) => data,
            Chunk::Done => break,
        };
        if let Err(e) = writer.write_all(&data) {
            tracing::debug!(extract = %label, error = %e, "COPY write failed");
            // The server's own error comes with finish().
            return Err(writer
                .finish()
                .map_err(server)
                .err()
                .unwrap_or(CopyFailure::Aborted));
        }
        data.clear();
        let _ = recycle.try_send(data);
    }
    writer.finish().map(|_| ()).map_err(server)
}

/// The 1-based row number in a COPY error's context (`COPY t, line 12`).
fn copy_row(error: &postgres::Error) -> Option<u64> {
    let context = error.as_db_error()?.where_()?;
    let after = context.split("line ").nth(1)?;
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The CSV line of data row `row` (1-based), found by re-reading the CSV:
/// only done once, when reporting an error.
fn produced_line(extract: &LocalExtract, row: u64, label: &ExtractLabel) -> Option<u64> {
    let mut zip = open_zip(&extract.path, label).ok()?;
    let mut reader = csv_reader(&mut zip, extract.entry_index, label).ok()?;
    let mut record = csv::ByteRecord::new();
    for _ in 0..row {
        if !reader.read_byte_record(&mut record).ok()? {
            return None;
        }
    }
    record.position().map(|p| p.line() + extract.line_offset)
}

fn encode_extract(
    extract: &LocalExtract,
    shape: &CopyShape<'_>,
    label: &ExtractLabel,
    sender: SyncSender<Chunk>,
    recycle: Receiver<Vec<u8>>,
) -> Result<CopySummary, LoadError> {
    let mut zip = open_zip(&extract.path, label)?;
    let mut reader = csv_reader(&mut zip, extract.entry_index, label)?;
    let offset = extract.line_offset;
    reader
        .byte_headers()
        .map_err(|e| csv_error(e, label, offset))?;
    let fields = u16::try_from(shape.columns.len() + usize::from(shape.ordinal)).map_err(|_| {
        LoadError::Extract {
            extract: label.clone(),
            problem: "more than 65535 columns".into(),
        }
    })?;

    let mut record = csv::ByteRecord::new();
    let mut buffer = Vec::with_capacity(CHUNK + (64 << 10));
    buffer.extend_from_slice(COPY_HEADER);
    let mut rows = 0u64;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_error(e, label, offset)),
        }
        rows += 1;
        encode_record(&record, shape, rows, fields, &mut buffer, label)
            .map_err(|e| with_line_offset(e, offset))?;
        if buffer.len() >= CHUNK {
            let next = recycle
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(CHUNK + (64 << 10)));
            if sender
                .send(Chunk::Data(std::mem::replace(&mut buffer, next)))
                .is_err()
            {
                // The COPY side stopped; it reports why.
                return Ok(CopySummary { rows });
            }
        }
    }
    buffer.extend_from_slice(COPY_TRAILER);
    let _ = sender.send(Chunk::Data(buffer));
    let _ = sender.send(Chunk::Done);
    Ok(CopySummary { rows })
}

fn with_line_offset(error: LoadError, offset: u64) -> LoadError {
    match error {
        LoadError::Value {
            extract,
            line,
            column,
            problem,
        } => LoadError::Value {
            extract,
            line: line + offset,
            column,
            problem,
        },
        other => other,
    }
}

fn encode_record(
    record: &csv::ByteRecord,
    shape: &CopyShape<'_>,
    ordinal: u64,
    fields: u16,
    out: &mut Vec<u8>,
    label: &ExtractLabel,
) -> Result<(), LoadError> {
    put_tuple_start(out, fields);
    if shape.ordinal {
        out.extend_from_slice(&8i32.to_be_bytes());
        out.extend_from_slice(&(ordinal as i64).to_be_bytes());
    }
    for column in shape.columns {
        let field = record.get(column.index).unwrap_or_default();
        if field.is_empty() {
            put_null(out);
            continue;
        }
        if let Err(problem) = column.kind.encode(field, out) {
            return Err(LoadError::Value {
                extract: label.clone(),
                line: record.position().map_or(0, |p| p.line()),
                column: column.header.clone(),
                problem,
            });
        }
    }
    Ok(())
}
