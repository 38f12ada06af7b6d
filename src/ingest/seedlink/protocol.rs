//! SeedLink v3 wire format shared by the client and the playback server: data frames
//! (`SL` + 6 hex digits of sequence number + a 512-byte miniSEED record), INFO frames
//! (`SLINFO *` / `SLINFO  ` + a 512-byte record holding XML text), the `END` terminator,
//! command lines and stream selectors.

use chrono::{Datelike, NaiveDate, Timelike};
use thiserror::Error;

use crate::domain::UtcTime;
use crate::waveform::RECORD_LEN;

/// Length of a frame header (`SL` + 6 hex digits, or `SLINFO` + 2 flag bytes), bytes.
pub const HEADER_LEN: usize = 8;
/// Length of a whole frame, bytes.
pub const FRAME_LEN: usize = HEADER_LEN + RECORD_LEN;
/// Largest SeedLink sequence number (24 bits); the next one is 0.
pub const MAX_SEQUENCE: u32 = 0xFF_FFFF;

/// A protocol violation.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ProtocolError {
    /// A frame header is neither `SLxxxxxx` nor `SLINFO`.
    #[error("bad frame header {0:?}")]
    BadHeader(String),
    /// A command line could not be parsed.
    #[error("bad command {0:?}: {1}")]
    BadCommand(String, &'static str),
}

/// What an 8-byte frame header announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A data record with this sequence number.
    Data(u32),
    /// An INFO record; `more` is true when further INFO records follow.
    Info { more: bool },
}

/// Parses a frame header.
pub fn parse_header(h: &[u8; HEADER_LEN]) -> Result<FrameKind, ProtocolError> {
    if &h[..6] == b"SLINFO" {
        return Ok(FrameKind::Info { more: h[7] == b'*' });
    }
    let bad = || ProtocolError::BadHeader(String::from_utf8_lossy(h).into_owned());
    if &h[..2] != b"SL" {
        return Err(bad());
    }
    let hex = std::str::from_utf8(&h[2..]).map_err(|_| bad())?;
    u32::from_str_radix(hex, 16)
        .map(FrameKind::Data)
        .map_err(|_| bad())
}

/// The header of a data frame with sequence number `seq` (taken modulo 2^24).
pub fn data_header(seq: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h.copy_from_slice(format!("SL{:06X}", seq & MAX_SEQUENCE).as_bytes());
    h
}

/// The next sequence number after `seq`, wrapping at 2^24.
pub fn next_sequence(seq: u32) -> u32 {
    (seq + 1) & MAX_SEQUENCE
}

/// Formats a time as SeedLink does in DATA/TIME commands: `YYYY,MM,DD,hh,mm,ss`.
pub fn format_time(t: &UtcTime) -> String {
    format!(
        "{:04},{:02},{:02},{:02},{:02},{:02}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Parses `YYYY,MM,DD,hh,mm,ss[.ffffff]` (fewer fields mean zeros).
pub fn parse_time(s: &str) -> Option<UtcTime> {
    let parts: Vec<&str> = s.split(',').collect();
    if parts.len() < 3 || parts.len() > 6 {
        return None;
    }
    let num = |i: usize| -> Option<u32> { parts.get(i).map_or(Some(0), |p| p.parse().ok()) };
    let (sec, frac) = match parts.get(5) {
        Some(p) => {
            let v: f64 = p.parse().ok()?;
            (v.trunc() as u32, v.fract())
        }
        None => (0, 0.0),
    };
    let date = NaiveDate::from_ymd_opt(parts[0].parse().ok()?, num(1)?, num(2)?)?;
    let t = date.and_hms_opt(num(3)?, num(4)?, sec)?.and_utc();
    Some(t + chrono::TimeDelta::nanoseconds((frac * 1e9).round() as i64))
}

/// A SELECT pattern: `[!][LL]CCC[.T]`, `?` matching any one character; LL may be `--` for
/// an empty location code. Without a location part any location matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    negate: bool,
    location: Option<String>,
    channel: String,
    kind: Option<char>,
}

impl Selector {
    /// Parses a selector.
    pub fn parse(text: &str) -> Result<Self, ProtocolError> {
        let bad = |why| ProtocolError::BadCommand(text.to_string(), why);
        let (negate, rest) = match text.strip_prefix('!') {
            Some(r) => (true, r),
            None => (false, text),
        };
        let (body, kind) = match rest.split_once('.') {
            Some((b, k)) if k.len() == 1 => (b, k.chars().next()),
            Some(_) => return Err(bad("type after '.' must be one letter")),
            None => (rest, None),
        };
        let ok = |s: &str| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '?' || c == '-' || c == ' ')
        };
        if !ok(body) {
            return Err(bad("only letters, digits, '?' and '-' allowed"));
        }
        let (location, channel) = match body.len() {
            3 => (None, body.to_string()),
            5 => (Some(body[..2].replace('-', " ")), body[2..].to_string()),
            _ => return Err(bad("expected CCC or LLCCC")),
        };
        Ok(Self {
            negate,
            location,
            channel,
            kind,
        })
    }

    /// True when `!` negates the selector.
    pub fn is_negated(&self) -> bool {
        self.negate
    }

    /// Does the pattern (ignoring negation) match this location, channel and record type?
    pub fn matches(&self, location: &str, channel: &str, kind: char) -> bool {
        let loc_ok = self.location.as_ref().is_none_or(|l| {
            wildcard_match(l.trim_end(), location.trim_end()) || wildcard_match(l, location)
        });
        loc_ok && wildcard_match(&self.channel, channel) && self.kind.is_none_or(|k| k == kind)
    }
}

/// Applies a station's selector list as SeedLink servers do: with no positive selector
/// everything matches; a negated selector that matches excludes.
pub fn selectors_match(sel: &[Selector], location: &str, channel: &str, kind: char) -> bool {
    let positives: Vec<&Selector> = sel.iter().filter(|s| !s.negate).collect();
    let included =
        positives.is_empty() || positives.iter().any(|s| s.matches(location, channel, kind));
    included
        && !sel
            .iter()
            .any(|s| s.negate && s.matches(location, channel, kind))
}

/// `?` matches one character, `*` any run (network/station wildcards).
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

/// Builds INFO frames carrying `xml`: 512-byte miniSEED records of ASCII text (encoding 0),
/// each behind `SLINFO *` except the last (`SLINFO  `).
pub fn info_frames(xml: &str, now: &UtcTime) -> Vec<u8> {
    const DATA_OFFSET: usize = 56;
    let chunks: Vec<&[u8]> = xml.as_bytes().chunks(RECORD_LEN - DATA_OFFSET).collect();
    let mut out = Vec::with_capacity(chunks.len() * FRAME_LEN);
    for (i, chunk) in chunks.iter().enumerate() {
        out.extend_from_slice(if i + 1 < chunks.len() {
            b"SLINFO *"
        } else {
            b"SLINFO  "
        });
        let mut r = [0u8; RECORD_LEN];
        r[..6].copy_from_slice(b"000000");
        r[6] = b'D';
        r[7] = b' ';
        r[8..20].copy_from_slice(b"INFO   LOGSL");
        r[20..22].copy_from_slice(&(now.year() as u16).to_be_bytes());
        r[22..24].copy_from_slice(&(now.ordinal() as u16).to_be_bytes());
        r[24] = now.hour() as u8;
        r[25] = now.minute() as u8;
        r[26] = now.second().min(59) as u8;
        r[30..32].copy_from_slice(&(chunk.len() as u16).to_be_bytes());
        r[39] = 1; // one blockette
        r[44..46].copy_from_slice(&(DATA_OFFSET as u16).to_be_bytes());
        r[46..48].copy_from_slice(&48u16.to_be_bytes());
        r[48..50].copy_from_slice(&1000u16.to_be_bytes());
        r[52] = 0; // ASCII text
        r[53] = 1; // big-endian
        r[54] = 9; // 2^9 = 512 bytes
        r[DATA_OFFSET..DATA_OFFSET + chunk.len()].copy_from_slice(chunk);
        out.extend_from_slice(&r);
    }
    out
}

/// The text of an INFO record (its ASCII payload), as written by [`info_frames`] or a server.
pub fn info_text(record: &[u8]) -> Option<String> {
    if record.len() < 48 {
        return None;
    }
    let n = u16::from_be_bytes([record[30], record[31]]) as usize;
    let off = u16::from_be_bytes([record[44], record[45]]) as usize;
    record
        .get(off..off + n)
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_garbage_is_rejected() {
        assert_eq!(
            parse_header(&data_header(0x1A2B3C)).unwrap(),
            FrameKind::Data(0x1A2B3C)
        );
        assert_eq!(
            parse_header(b"SLINFO *").unwrap(),
            FrameKind::Info { more: true }
        );
        assert_eq!(
            parse_header(b"SLINFO  ").unwrap(),
            FrameKind::Info { more: false }
        );
        assert!(parse_header(b"XX000001").is_err());
        assert!(parse_header(b"SL00G001").is_err());
        assert_eq!(next_sequence(MAX_SEQUENCE), 0);
    }

    #[test]
    fn selectors_follow_seedlink_rules() {
        let s = |t: &str| Selector::parse(t).unwrap();
        assert!(selectors_match(&[], "00", "HHZ", 'D'));
        assert!(selectors_match(&[s("HH?")], "00", "HHN", 'D'));
        assert!(!selectors_match(&[s("HH?")], "00", "BHN", 'D'));
        assert!(selectors_match(&[s("00HHZ")], "00", "HHZ", 'D'));
        assert!(!selectors_match(&[s("10HHZ")], "00", "HHZ", 'D'));
        assert!(selectors_match(&[s("--HHZ")], "", "HHZ", 'D'));
        assert!(selectors_match(&[s("  HHZ")], "", "HHZ", 'D'));
        assert!(!selectors_match(&[s("!HHE")], "", "HHE", 'D'));
        assert!(selectors_match(&[s("!HHE")], "", "HHZ", 'D'));
        assert!(!selectors_match(&[s("HHZ.D")], "", "HHZ", 'E'));
        assert!(Selector::parse("HHZZ").is_err());
        assert!(wildcard_match("S0*", "S001") && !wildcard_match("S0?", "S001"));
    }

    #[test]
    fn times_and_info_frames() {
        let t = crate::domain::parse_utc("2024-05-01T10:02:03Z").unwrap();
        assert_eq!(format_time(&t), "2024,05,01,10,02,03");
        assert_eq!(parse_time(&format_time(&t)), Some(t));
        assert!(parse_time("2024,13,01").is_none());
        let xml = "x".repeat(1000);
        let frames = info_frames(&xml, &t);
        assert_eq!(frames.len(), 3 * FRAME_LEN);
        let text: String = frames
            .chunks(FRAME_LEN)
            .map(|f| info_text(&f[8..]).unwrap())
            .collect();
        assert_eq!(text, xml);
    }
}
