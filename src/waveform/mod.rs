//! Waveforms: miniSEED 2 records in and out (through `miniseed-rs`, pure Rust), a plain
//! [`Trace`] type, and synthetic seismograms ([`synth`]) for testing the picker.
//!
//! SeedLink v3 carries fixed 512-byte miniSEED 2 records, so the encoder here writes exactly
//! those: Steim2 (integer counts) by default, or uncompressed INT32 / FLOAT32.

pub mod synth;

use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate, TimeDelta, Timelike};
use miniseed_rs::{EncodingFormat, MseedRecord, NanoTime, Samples};
use thiserror::Error;

use crate::domain::time::{add_seconds, seconds_between};
use crate::domain::UtcTime;

/// Length of a SeedLink v3 miniSEED record, bytes.
pub const RECORD_LEN: usize = 512;

/// Why a record or file could not be read or written.
#[derive(Debug, Error)]
pub enum WaveformError {
    /// A record failed to decode (corrupt bytes, unknown encoding, bad header).
    #[error("{source_name}: record {index} (byte offset {offset}): {reason}")]
    Record {
        source_name: String,
        index: usize,
        offset: usize,
        reason: String,
    },
    /// A record header holds a time no calendar has.
    #[error("record time out of range: year {year} day {day}")]
    BadTime { year: u16, day: u16 },
    /// A record has a non-positive or non-finite sample rate.
    #[error("record {nslc}: sample rate {rate_hz} Hz is not usable")]
    BadRate { nslc: String, rate_hz: f64 },
    /// Encoding failed (e.g. a sample does not fit the chosen encoding).
    #[error("encoding {nslc}: {reason}")]
    Encode { nslc: String, reason: String },
    /// File system error, with the path.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Network, station, location and channel codes of one stream (SEED NSLC).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId {
    /// FDSN network code.
    pub network: String,
    /// Station code.
    pub station: String,
    /// Location code (may be empty).
    pub location: String,
    /// SEED channel code, e.g. `HHZ`.
    pub channel: String,
}

impl StreamId {
    /// A stream id from its four codes.
    pub fn new(network: &str, station: &str, location: &str, channel: &str) -> Self {
        Self {
            network: network.to_string(),
            station: station.to_string(),
            location: location.to_string(),
            channel: channel.to_string(),
        }
    }
    /// The component letter: last character of the channel code (`Z`, `N`, `E`, `1`, `2`).
    pub fn component(&self) -> char {
        self.channel.chars().last().unwrap_or('?')
    }
    /// The station this stream belongs to.
    pub fn station_code(&self) -> crate::domain::StationCode {
        crate::domain::StationCode {
            network: self.network.clone(),
            station: self.station.clone(),
            location: self.location.clone(),
        }
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{}.{}.{}",
            self.network, self.station, self.location, self.channel
        )
    }
}

/// A contiguous run of evenly sampled data from one stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// Which stream.
    pub id: StreamId,
    /// Time of the first sample, UTC.
    pub start: UtcTime,
    /// Sampling rate, Hz.
    pub sample_rate_hz: f64,
    /// Samples, in counts (or physical units for float data).
    pub samples: Vec<f64>,
}

impl Trace {
    /// Time of sample `i`, UTC.
    pub fn time_of(&self, i: usize) -> UtcTime {
        add_seconds(&self.start, i as f64 / self.sample_rate_hz)
    }
    /// Time just after the last sample (start + n / rate), UTC.
    pub fn end(&self) -> UtcTime {
        self.time_of(self.samples.len())
    }
}

/// One decoded miniSEED record: its stream, timing and samples (as f64).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The record as a trace.
    pub trace: Trace,
    /// Encoding the record used.
    pub encoding: EncodingFormat,
    /// The 6-character SEED sequence number of the record.
    pub sequence_number: String,
}

/// miniSEED `NanoTime` (year, day-of-year, h:m:s, ns) to UTC.
pub fn nanotime_to_utc(t: &NanoTime) -> Result<UtcTime, WaveformError> {
    let bad = || WaveformError::BadTime {
        year: t.year,
        day: t.day,
    };
    let date = NaiveDate::from_yo_opt(i32::from(t.year), u32::from(t.day)).ok_or_else(bad)?;
    // A leap second (60) is carried as one more second on the minute.
    let base = date
        .and_hms_opt(u32::from(t.hour), u32::from(t.minute), 0)
        .ok_or_else(bad)?
        .and_utc();
    Ok(base
        + TimeDelta::seconds(i64::from(t.second))
        + TimeDelta::nanoseconds(i64::from(t.nanosecond)))
}

/// UTC to miniSEED `NanoTime`.
pub fn utc_to_nanotime(t: &UtcTime) -> NanoTime {
    NanoTime {
        year: t.year() as u16,
        day: t.ordinal() as u16,
        hour: t.hour() as u8,
        minute: t.minute() as u8,
        second: t.second().min(59) as u8,
        nanosecond: t.nanosecond().min(999_999_999),
    }
}

/// Decodes one miniSEED (2 or 3) record. `source_name`, `index` and `offset` only label errors.
pub fn decode_record(
    bytes: &[u8],
    source_name: &str,
    index: usize,
    offset: usize,
) -> Result<Record, WaveformError> {
    let err = |reason: String| WaveformError::Record {
        source_name: source_name.to_string(),
        index,
        offset,
        reason,
    };
    let r = miniseed_rs::decode(bytes).map_err(|e| err(e.to_string()))?;
    let id = StreamId::new(&r.network, &r.station, &r.location, &r.channel);
    if !(r.sample_rate.is_finite() && r.sample_rate > 0.0) {
        return Err(err(format!(
            "{id}: sample rate {} Hz is not usable",
            r.sample_rate
        )));
    }
    let start = nanotime_to_utc(&r.start_time).map_err(|e| err(e.to_string()))?;
    let samples: Vec<f64> = match &r.samples {
        Samples::Int(v) => v.iter().map(|&x| f64::from(x)).collect(),
        Samples::Float(v) => v.iter().map(|&x| f64::from(x)).collect(),
        Samples::Double(v) => v.clone(),
    };
    if samples.iter().any(|x| !x.is_finite()) {
        return Err(err(format!("{id}: non-finite sample")));
    }
    Ok(Record {
        trace: Trace {
            id,
            start,
            sample_rate_hz: r.sample_rate,
            samples,
        },
        encoding: r.encoding,
        sequence_number: r.sequence_number.clone(),
    })
}

/// Encoding of records written by [`encode_trace`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Steim2 compression of integer counts (samples are rounded).
    Steim2,
    /// Uncompressed big-endian 32-bit integers (samples are rounded).
    Int32,
    /// Uncompressed big-endian IEEE 32-bit floats.
    Float32,
}

/// Encodes a trace as consecutive 512-byte miniSEED 2 records (quality `D`, big-endian,
/// Blockette 1000). Sequence numbers start at `first_sequence` and wrap after 999999.
/// Integer encodings round samples and fail if one does not fit in an i32.
pub fn encode_trace(
    trace: &Trace,
    encoding: Encoding,
    first_sequence: u32,
) -> Result<Vec<Vec<u8>>, WaveformError> {
    let nslc = trace.id.to_string();
    let enc_err = |reason: String| WaveformError::Encode {
        nslc: nslc.clone(),
        reason,
    };
    if !(trace.sample_rate_hz.is_finite() && trace.sample_rate_hz > 0.0) {
        return Err(WaveformError::BadRate {
            nslc: nslc.clone(),
            rate_hz: trace.sample_rate_hz,
        });
    }
    let ints: Vec<i32> = if encoding == Encoding::Float32 {
        Vec::new()
    } else {
        trace
            .samples
            .iter()
            .map(|&x| {
                let r = x.round();
                if r.is_finite() && r >= f64::from(i32::MIN) && r <= f64::from(i32::MAX) {
                    Ok(r as i32)
                } else {
                    Err(enc_err(format!("sample {x} does not fit a 32-bit integer")))
                }
            })
            .collect::<Result<_, _>>()?
    };
    // Data bytes available: 512 - 64 (Steim: header + B1000 padded to a 64-byte frame);
    // uncompressed data start right after B1000 at byte 56.
    let fixed_capacity = (RECORD_LEN - 56) / 4;
    let mut out = Vec::new();
    let mut i = 0;
    let mut seq = first_sequence % 1_000_000;
    while i < trace.samples.len() {
        let remaining = trace.samples.len() - i;
        let (n, samples) = match encoding {
            Encoding::Int32 => {
                let n = remaining.min(fixed_capacity);
                (n, Samples::Int(ints[i..i + n].to_vec()))
            }
            Encoding::Float32 => {
                let n = remaining.min(fixed_capacity);
                (
                    n,
                    Samples::Float(trace.samples[i..i + n].iter().map(|&x| x as f32).collect()),
                )
            }
            Encoding::Steim2 => {
                let n = steim2_fit(&ints[i..], RECORD_LEN - 64).map_err(&enc_err)?;
                (n, Samples::Int(ints[i..i + n].to_vec()))
            }
        };
        let rec = MseedRecord::new()
            .with_nslc(
                &trace.id.network,
                &trace.id.station,
                &trace.id.location,
                &trace.id.channel,
            )
            .with_start_time(utc_to_nanotime(&trace.time_of(i)))
            .with_sample_rate(trace.sample_rate_hz)
            .with_encoding(match encoding {
                Encoding::Steim2 => EncodingFormat::Steim2,
                Encoding::Int32 => EncodingFormat::Int32,
                Encoding::Float32 => EncodingFormat::Float32,
            })
            .with_samples(samples);
        let mut rec = rec;
        rec.sequence_number = format!("{seq:06}");
        let bytes = miniseed_rs::encode(&rec).map_err(|e| enc_err(e.to_string()))?;
        out.push(bytes);
        i += n;
        seq = (seq + 1) % 1_000_000;
    }
    Ok(out)
}

/// The largest prefix of `x` whose Steim2 encoding fits in `capacity` bytes (binary search
/// over the encoder itself, so the packing rules live in one place).
fn steim2_fit(x: &[i32], capacity: usize) -> Result<usize, String> {
    let fits = |n: usize| -> Result<bool, String> {
        let b = miniseed_rs::steim::encode_steim2(&x[..n], miniseed_rs::ByteOrder::Big)
            .map_err(|e| e.to_string())?;
        Ok(b.len() <= capacity)
    };
    // 7 frames hold at most 7*15 - 2 words of 7 differences each.
    let mut hi = x.len().min(7 * 15 * 7);
    if fits(hi)? {
        return Ok(hi);
    }
    let mut lo = 1;
    if !fits(lo)? {
        return Err("a single sample does not fit a record".into());
    }
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if fits(mid)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// A record's raw 512 bytes and its decoded form.
pub type RawRecord = (Vec<u8>, Record);

/// Counts of what [`read_file`] met in a file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Records decoded.
    pub records_ok: usize,
    /// Records skipped (corrupt, unknown encoding, truncated).
    pub records_bad: usize,
}

/// Reads a file of 512-byte miniSEED 2 records. A bad record is logged, counted and skipped;
/// the good ones are kept. Returns (raw bytes, decoded record) pairs in file order.
pub fn read_file(path: &Path) -> Result<(Vec<RawRecord>, ReadStats), WaveformError> {
    let data = std::fs::read(path).map_err(|source| WaveformError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let name = path.display().to_string();
    let mut stats = ReadStats::default();
    let mut out = Vec::new();
    for (index, chunk) in data.chunks(RECORD_LEN).enumerate() {
        let offset = index * RECORD_LEN;
        if chunk.len() < RECORD_LEN {
            tracing::warn!(file = %name, offset, "truncated trailing record skipped");
            stats.records_bad += 1;
            continue;
        }
        match decode_record(chunk, &name, index, offset) {
            Ok(r) => {
                stats.records_ok += 1;
                out.push((chunk.to_vec(), r));
            }
            Err(e) => {
                tracing::warn!(error = %e, "bad miniSEED record skipped");
                stats.records_bad += 1;
            }
        }
    }
    Ok((out, stats))
}

/// Joins the records of one stream into traces, splitting at gaps and overlaps larger than
/// half a sample; the records are sorted by start time first.
pub fn merge_records(mut records: Vec<Record>) -> Vec<Trace> {
    records.sort_by(|a, b| (&a.trace.id, a.trace.start).cmp(&(&b.trace.id, b.trace.start)));
    let mut out: Vec<Trace> = Vec::new();
    for r in records {
        let t = r.trace;
        if let Some(last) = out.last_mut() {
            if last.id == t.id
                && (last.sample_rate_hz - t.sample_rate_hz).abs() < 1e-9 * t.sample_rate_hz
            {
                let mismatch_s = seconds_between(&last.end(), &t.start);
                if mismatch_s.abs() < 0.5 / t.sample_rate_hz {
                    last.samples.extend_from_slice(&t.samples);
                    continue;
                }
            }
        }
        out.push(t);
    }
    out
}

/// Writes records (each 512 bytes) to a file.
pub fn write_file(path: &Path, records: &[Vec<u8>]) -> Result<(), WaveformError> {
    let mut data = Vec::with_capacity(records.len() * RECORD_LEN);
    for r in records {
        data.extend_from_slice(r);
    }
    std::fs::write(path, data).map_err(|source| WaveformError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::parse_utc;

    fn trace(n: usize) -> Trace {
        let samples = (0..n)
            .map(|i| ((i as f64 * 0.37).sin() * 1000.0 + (i % 7) as f64 * 13.0).round())
            .collect();
        Trace {
            id: StreamId::new("XX", "STA1", "00", "HHZ"),
            start: parse_utc("2024-03-01T12:00:00.01Z").unwrap(),
            sample_rate_hz: 100.0,
            samples,
        }
    }

    #[test]
    fn every_encoding_round_trips_sample_for_sample() {
        let t = trace(2500);
        for enc in [Encoding::Steim2, Encoding::Int32, Encoding::Float32] {
            let recs = encode_trace(&t, enc, 1).unwrap();
            assert!(recs.iter().all(|r| r.len() == RECORD_LEN));
            let decoded: Vec<Record> = recs
                .iter()
                .enumerate()
                .map(|(i, b)| decode_record(b, "mem", i, 0).unwrap())
                .collect();
            assert_eq!(decoded[1].sequence_number, "000002");
            let merged = merge_records(decoded);
            assert_eq!(merged.len(), 1, "{enc:?}: one contiguous trace");
            assert_eq!(merged[0].samples, t.samples, "{enc:?}");
            assert_eq!(merged[0].start, t.start);
        }
    }

    #[test]
    fn steim2_packs_more_than_uncompressed() {
        let t = trace(5000);
        let steim = encode_trace(&t, Encoding::Steim2, 1).unwrap().len();
        let int32 = encode_trace(&t, Encoding::Int32, 1).unwrap().len();
        assert!(steim < int32, "{steim} vs {int32}");
    }

    #[test]
    fn corrupt_and_unknown_encoding_are_errors_not_panics() {
        let t = trace(300);
        let mut rec = encode_trace(&t, Encoding::Int32, 1).unwrap().remove(0);
        let mut unknown = rec.clone();
        unknown[52] = 99; // blockette 1000 encoding code
        assert!(decode_record(&unknown, "mem", 0, 0).is_err());
        rec[6] = b'#';
        assert!(decode_record(&rec, "mem", 0, 0).is_err());
        assert!(decode_record(&[0u8; 20], "mem", 0, 0).is_err());
    }

    #[test]
    fn gaps_split_traces() {
        let t = trace(1000);
        let mut recs: Vec<Record> = encode_trace(&t, Encoding::Int32, 1)
            .unwrap()
            .iter()
            .map(|b| decode_record(b, "mem", 0, 0).unwrap())
            .collect();
        recs.remove(1);
        assert_eq!(merge_records(recs).len(), 2);
    }
}
