//! The Prometheus text format (0.0.4) at byte level: one output buffer handed on in chunks,
//! label slots worked out once per family, numbers written by `itoa`/`ryu`. No allocation
//! per series: a page of 400,000 series must render in tens of milliseconds.

use std::borrow::Cow;

/// Where rendered bytes go: whole chunks of about `chunk_bytes`, in page order.
pub(super) struct Out<'a> {
    buf: Vec<u8>,
    chunk_bytes: usize,
    sink: &'a mut dyn FnMut(Vec<u8>),
}

impl<'a> Out<'a> {
    pub(super) fn new(chunk_bytes: usize, sink: &'a mut dyn FnMut(Vec<u8>)) -> Out<'a> {
        // Room for one more series past the chunk size, so a chunk never reallocates.
        let capacity = chunk_bytes.saturating_add(SERIES_BYTES_TYPICAL).min(CAPACITY_MAX);
        Out { buf: Vec::with_capacity(capacity), chunk_bytes, sink }
    }

    #[inline]
    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Hands the chunk on once it is full; called between series, so chunks end on lines.
    #[inline]
    fn end_line(&mut self) {
        if self.buf.len() >= self.chunk_bytes {
            let capacity = self.buf.capacity();
            let full = std::mem::replace(&mut self.buf, Vec::with_capacity(capacity));
            (self.sink)(full);
        }
    }

    pub(super) fn finish(self) {
        if !self.buf.is_empty() {
            (self.sink)(self.buf);
        }
    }
}

/// A series line is about 110 bytes; a chunk is allowed this much slack.
const SERIES_BYTES_TYPICAL: usize = 4 << 10;
/// A one-chunk render (`usize::MAX`) starts small and grows.
const CAPACITY_MAX: usize = 1 << 20;

/// A metric family: name, help, type and its own label names (constant labels are merged
/// in by [`FamilyWriter::new`]).
pub(super) struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: &'static str,
    pub labels: &'static [&'static str],
}

/// Where a label's value comes from: the i-th value given per series, or the j-th
/// constant label.
#[derive(Clone, Copy)]
enum Slot {
    Value(usize),
    Constant(usize),
}

/// Writes the series of one family. HELP and TYPE come with the first series, so an empty
/// family leaves nothing on the page.
pub(super) struct FamilyWriter<'f, 'o, 'a> {
    out: &'o mut Out<'a>,
    family: &'f Family,
    constants: &'f [(String, String)],
    /// Per label in name order: the text before its value (`name{key="` or `",key="`).
    slots: Vec<(Vec<u8>, Slot)>,
    started: bool,
}

impl<'f, 'o, 'a> FamilyWriter<'f, 'o, 'a> {
    /// `constants` are (name, already escaped value) pairs added to every series.
    pub(super) fn new(out: &'o mut Out<'a>, family: &'f Family, constants: &'f [(String, String)]) -> Self {
        let mut names: Vec<(&str, Slot)> =
            family.labels.iter().enumerate().map(|(i, l)| (*l, Slot::Value(i))).collect();
        names.extend(constants.iter().enumerate().map(|(j, (k, _))| (k.as_str(), Slot::Constant(j))));
        names.sort_by(|a, b| a.0.cmp(b.0));
        let slots = names
            .iter()
            .enumerate()
            .map(|(index, (key, slot))| {
                let lead = if index == 0 { format!("{}{{{key}=\"", family.name) } else { format!("\",{key}=\"") };
                (lead.into_bytes(), *slot)
            })
            .collect();
        FamilyWriter { out, family, constants, slots, started: false }
    }

    fn head(&mut self) {
        self.started = true;
        let f = self.family;
        let head = format!("# HELP {} {}\n# TYPE {} {}\n", f.name, f.help, f.name, f.kind);
        self.out.push(head.as_bytes());
    }

    /// One series; `values` are escaped (see [`escaped`]) and in the family's label order.
    #[inline]
    pub(super) fn series(&mut self, values: &[&str], value: Value) {
        if !self.started {
            self.head();
        }
        if self.slots.is_empty() {
            self.out.push(self.family.name.as_bytes());
            self.out.push(b" ");
        } else {
            for (lead, slot) in &self.slots {
                self.out.push(lead);
                let text = match *slot {
                    Slot::Value(i) => values.get(i).copied().unwrap_or(""),
                    Slot::Constant(j) => self.constants.get(j).map_or("", |(_, v)| v.as_str()),
                };
                self.out.push(text.as_bytes());
            }
            self.out.push(b"\"} ");
        }
        value.write(self.out);
        self.out.push(b"\n");
        self.out.end_line();
    }
}

/// A sample value.
#[derive(Clone, Copy)]
pub(super) enum Value {
    Int(i64),
    Float(f64),
}

impl Value {
    fn write(self, out: &mut Out<'_>) {
        match self {
            Value::Int(n) => out.push(itoa::Buffer::new().format(n).as_bytes()),
            // Whole numbers (offsets, counts) print as integers: cheaper and exact.
            Value::Float(x) if x.fract() == 0.0 && x.abs() < 1e15 => Value::Int(x as i64).write(out),
            Value::Float(x) if x.is_nan() => out.push(b"NaN"),
            Value::Float(x) if x.is_infinite() => out.push(if x > 0.0 { b"+Inf" } else { b"-Inf" }),
            Value::Float(x) => out.push(ryu::Buffer::new().format_finite(x).as_bytes()),
        }
    }
}

/// A label value as the text format needs it: backslash, double quote and newline escaped.
/// Borrowed when nothing needs escaping (nearly always).
pub(super) fn escaped(value: &str) -> Cow<'_, str> {
    if !value.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(chunk_bytes: usize, lines: usize) -> Vec<Vec<u8>> {
        let mut chunks = Vec::new();
        let mut sink = |chunk: Vec<u8>| chunks.push(chunk);
        let mut out = Out::new(chunk_bytes, &mut sink);
        let family = Family { name: "m", help: "h", kind: "gauge", labels: &["b"] };
        let constants = [("a".to_string(), "x".to_string())];
        let mut writer = FamilyWriter::new(&mut out, &family, &constants);
        for i in 0..lines {
            writer.series(&["v"], Value::Int(i as i64));
        }
        out.finish();
        chunks
    }

    // Shows chunks end on line boundaries and concatenate to the one-chunk page, and
    // constant labels sort among the family's own (text format 0.0.4: labels in any order,
    // sorted here so pages are stable).
    #[test]
    fn chunks_end_on_lines_and_join_to_the_page() {
        let whole = write(usize::MAX, 1_000).concat();
        let chunks = write(100, 1_000);
        assert!(chunks.len() > 10, "{} chunks", chunks.len());
        assert!(chunks.iter().all(|c| c.ends_with(b"\n")));
        assert_eq!(chunks.concat(), whole);
        let text = String::from_utf8(whole).expect("ASCII in, ASCII out");
        assert!(text.starts_with("# HELP m h\n# TYPE m gauge\nm{a=\"x\",b=\"v\"} 0\n"), "{text}");
    }

    // Shows special floats use the spellings the text format defines (+Inf, -Inf, NaN) and
    // fractions round-trip.
    #[test]
    fn floats_in_text_format_spelling() {
        let mut bytes = Vec::new();
        let mut sink = |chunk: Vec<u8>| bytes.extend(chunk);
        let mut out = Out::new(usize::MAX, &mut sink);
        for x in [f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 2.5, 1e20, -3.0] {
            Value::Float(x).write(&mut out);
            out.push(b" ");
        }
        out.finish();
        assert_eq!(String::from_utf8_lossy(&bytes), "+Inf -Inf NaN 2.5 1e20 -3 ");
    }
}
