//! `--hdr-log`: per-second histograms in the HdrHistogram interval log format (the one
//! HdrHistogram's HistogramLogProcessor and HdrHistogram_py read): a header, then one line per
//! interval and operation, `Tag=read,<start s>,<length s>,<max>,<base64 V2 compressed>`.
//!
//! Lines are produced as intervals are collected and kept in memory (a few hundred bytes per
//! second and operation); the file is written at the end, header first, with StartTime and
//! BaseTime set to the start of measurement so interval timestamps count from 0. Values are
//! nanoseconds.

use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;

use crate::result::Op;

/// An interval log being built.
pub struct HdrLog {
    body: Vec<u8>,
    serializer: V2DeflateSerializer,
    error: Option<String>,
}

impl Default for HdrLog {
    fn default() -> Self {
        HdrLog::new()
    }
}

impl HdrLog {
    pub fn new() -> HdrLog {
        HdrLog {
            body: Vec::new(),
            serializer: V2DeflateSerializer::new(),
            error: None,
        }
    }

    /// Appends the histogram of `op` for measured second `index`.
    pub fn push(&mut self, index: u64, op: Op, h: &Histogram<u64>) {
        if self.error.is_some() {
            return;
        }
        // A builder without headers writes nothing itself: each call appends one line.
        let written = IntervalLogWriterBuilder::new()
            .begin_log_with(&mut self.body, &mut self.serializer)
            .map_err(|e| e.to_string())
            .and_then(|mut log| {
                log.write_histogram(
                    h,
                    Duration::from_secs(index),
                    Duration::from_secs(1),
                    Tag::new(op.name()),
                )
                .map_err(|e| e.to_string())
            });
        if let Err(e) = written {
            self.error = Some(e);
        }
    }

    /// The whole log text, with `start` as StartTime and BaseTime.
    pub fn render(&self, start: SystemTime) -> io::Result<Vec<u8>> {
        if let Some(e) = &self.error {
            return Err(io::Error::other(format!(
                "a histogram could not be encoded: {e}"
            )));
        }
        let secs = start
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut out = Vec::with_capacity(self.body.len() + 512);
        writeln!(
            out,
            "#[ringsan-perf interval log: latencies in nanoseconds, tags read and write]"
        )?;
        writeln!(out, "#[Histogram log format version 1.3]")?;
        writeln!(out, "#[StartTime: {secs:.3} (seconds since epoch)]")?;
        writeln!(out, "#[BaseTime: {secs:.3} (seconds since epoch)]")?;
        writeln!(out, "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"")?;
        out.extend_from_slice(&self.body);
        Ok(out)
    }

    /// Writes the log to `path`.
    pub fn write_to(&self, path: &Path, start: SystemTime) -> io::Result<()> {
        std::fs::write(path, self.render(start)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histo;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;

    #[test]
    fn the_log_parses_back_with_hdrhistograms_reader() {
        let mut log = HdrLog::new();
        for index in 0..3u64 {
            let mut r = histo::new_histogram();
            let w = histo::new_histogram();
            for v in 0..=index * 10 {
                histo::record(&mut r, 1000 + v);
            }
            log.push(index, Op::Read, &r);
            log.push(index, Op::Write, &w);
        }
        let text = log
            .render(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
            .unwrap();
        let shown = String::from_utf8_lossy(&text);
        assert!(shown.contains("#[StartTime: 1700000000.000"), "{shown}");
        assert!(shown.contains("\"StartTimestamp\""), "{shown}");
        let mut intervals = Vec::new();
        let mut start_time = None;
        for entry in IntervalLogIterator::new(&text) {
            match entry.unwrap() {
                LogEntry::StartTime(t) => start_time = Some(t),
                LogEntry::Interval(i) => intervals.push((
                    i.tag().map(|t| t.as_str().to_string()),
                    i.start_timestamp().as_secs(),
                    i.encoded_histogram().to_string(),
                )),
                LogEntry::BaseTime(_) => {}
            }
        }
        assert_eq!(start_time.map(|d| d.as_secs()), Some(1_700_000_000));
        assert_eq!(intervals.len(), 6);
        assert_eq!(intervals[4].0.as_deref(), Some("read"));
        assert_eq!(intervals[4].1, 2);
        assert_eq!(intervals[5].0.as_deref(), Some("write"));
        let bytes = decode_base64(&intervals[4].2);
        let h: Histogram<u64> = Deserializer::new().deserialize(&mut &bytes[..]).unwrap();
        assert_eq!(h.len(), 21);
    }

    /// A tiny base64 decoder for the test (the crate keeps its own private).
    fn decode_base64(s: &str) -> Vec<u8> {
        let table = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = Vec::new();
        let (mut acc, mut bits) = (0u32, 0);
        for c in s.bytes().filter(|&c| c != b'=') {
            let v = table.iter().position(|&t| t == c).unwrap() as u32;
            acc = acc << 6 | v;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        out
    }
}
