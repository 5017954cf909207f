//! Shared by the protocol tests: reading the decoded capture transcripts in
//! the spec (`captures/*.txt`) and the Python `repr` of the values in them.
//! Included by the test crates with `#[path]`.

use std::path::PathBuf;

use zeod::protocol::Value;

/// `ZEOD_SPEC_DIR`, else `shared/spec` beside the repository (or beside
/// one of its ancestors, for git worktrees nested a level deeper).
pub fn spec_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ZEOD_SPEC_DIR") {
        return PathBuf::from(dir);
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .skip(1)
        .map(|dir| dir.join("shared/spec"))
        .find(|dir| dir.is_dir())
        .unwrap_or_else(|| manifest.join("../shared/spec"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    ToServer,
    ToClient,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Shown {
    /// `raw b'…'`: the payload's repr, `None` if truncated.
    Raw(Option<Vec<u8>>),
    /// `pickle-proto=N <repr>`.
    Pickle { repr: String },
    /// `msgpack <repr>`.
    Msgpack { repr: String },
}

#[derive(Debug, Clone)]
pub struct Frame {
    pub file: String,
    pub line: usize,
    pub conn: u32,
    pub dir: Dir,
    pub len: usize,
    pub hdr: String,
    pub shown: Shown,
    /// Payload bytes from the `hex:` line (pickled frames under 300 bytes).
    pub hex: Option<Vec<u8>>,
}

impl Frame {
    /// The exact payload, when the transcript has it.
    pub fn payload(&self) -> Option<Vec<u8>> {
        match (&self.hex, &self.shown) {
            (Some(hex), _) => Some(hex.clone()),
            (None, Shown::Raw(Some(bytes))) => Some(bytes.clone()),
            _ => None,
        }
    }

    pub fn at(&self) -> String {
        format!("{}:{} [{}]", self.file, self.line, self.conn)
    }
}

pub fn capture_files() -> Vec<PathBuf> {
    let dir = spec_dir().join("captures");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 6,
        "expected the six capture files in {}",
        dir.display()
    );
    files
}

pub fn read_frames(path: &std::path::Path) -> Vec<Frame> {
    let file = path.file_name().unwrap().to_string_lossy().into_owned();
    let text = std::fs::read_to_string(path).unwrap();
    let mut frames: Vec<Frame> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(hex) = line.trim_start().strip_prefix("hex: ") {
            let frame = frames.last_mut().expect("hex line after a frame");
            frame.hex = Some(unhex(hex.trim()));
            continue;
        }
        let Some(rest) = line.strip_prefix('[') else {
            continue;
        };
        let (conn, rest) = rest.split_once("] ").unwrap();
        let (dir, rest) = match rest.split_once(' ') {
            Some(("C>S", rest)) => (Dir::ToServer, rest),
            Some(("S>C", rest)) => (Dir::ToClient, rest),
            _ => continue, // OPEN, EOF markers
        };
        let (len, rest) = rest.strip_prefix("len=").unwrap().split_once(' ').unwrap();
        let (hdr, rest) = rest.strip_prefix("hdr=").unwrap().split_once(' ').unwrap();
        let len: usize = len.parse().unwrap();
        let shown = if let Some(repr) = rest.strip_prefix("raw ") {
            let bytes = parse_py(repr).and_then(|v| match v {
                Value::Bytes(b) if b.len() == len => Some(b),
                _ => None,
            });
            Shown::Raw(bytes)
        } else if let Some(repr) = rest.strip_prefix("msgpack ") {
            Shown::Msgpack {
                repr: repr.to_owned(),
            }
        } else if let Some(rest) = rest.strip_prefix("pickle-proto=") {
            let (_, repr) = rest.split_once(' ').unwrap();
            Shown::Pickle {
                repr: repr.to_owned(),
            }
        } else {
            panic!("{file}:{}: unknown frame kind: {rest}", i + 1);
        };
        frames.push(Frame {
            file: file.clone(),
            line: i + 1,
            conn: conn.parse().unwrap(),
            dir,
            len,
            hdr: hdr.to_owned(),
            shown,
            hex: None,
        });
    }
    frames
}

pub fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Parses the subset of Python `repr` the transcripts use. `None` for
/// anything else (truncated text ending in `...`, exception instances).
pub fn parse_py(s: &str) -> Option<Value> {
    let mut p = Py {
        s: s.as_bytes(),
        i: 0,
    };
    let v = p.value()?;
    p.ws();
    (p.i == p.s.len()).then_some(v)
}

struct Py<'a> {
    s: &'a [u8],
    i: usize,
}

impl Py<'_> {
    fn ws(&mut self) {
        while self.s.get(self.i).is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn eat(&mut self, t: &str) -> bool {
        self.ws();
        if self.s[self.i..].starts_with(t.as_bytes()) {
            self.i += t.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Option<Value> {
        self.ws();
        let c = *self.s.get(self.i)?;
        match c {
            b'N' if self.eat("None") => Some(Value::None),
            b'T' if self.eat("True") => Some(Value::Bool(true)),
            b'F' if self.eat("False") => Some(Value::Bool(false)),
            b'b' => {
                self.i += 1;
                self.string()
                    .map(|chars| Value::Bytes(chars.into_iter().map(|c| c as u8).collect()))
            }
            b'\'' | b'"' => self
                .string()
                .map(|chars| Value::Str(chars.into_iter().filter_map(char::from_u32).collect())),
            b'(' => {
                self.i += 1;
                let (items, trailing_comma) = self.items(")")?;
                if items.len() == 1 && !trailing_comma {
                    items.into_iter().next()
                } else {
                    Some(Value::Tuple(items))
                }
            }
            b'[' => {
                self.i += 1;
                self.items("]").map(|(items, _)| Value::List(items))
            }
            b'{' => {
                self.i += 1;
                let mut pairs = Vec::new();
                loop {
                    if self.eat("}") {
                        return Some(Value::Dict(pairs));
                    }
                    let k = self.value()?;
                    if !self.eat(":") {
                        return None;
                    }
                    let v = self.value()?;
                    pairs.push((k, v));
                    if !self.eat(",") {
                        return self.eat("}").then_some(Value::Dict(pairs));
                    }
                }
            }
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn items(&mut self, close: &str) -> Option<(Vec<Value>, bool)> {
        let mut items = Vec::new();
        let mut trailing = false;
        loop {
            if self.eat(close) {
                return Some((items, trailing));
            }
            items.push(self.value()?);
            trailing = self.eat(",");
            if !trailing {
                return self.eat(close).then_some((items, false));
            }
        }
    }

    fn number(&mut self) -> Option<Value> {
        let start = self.i;
        while self
            .s
            .get(self.i)
            .is_some_and(|c| c.is_ascii_digit() || b"-+.eE".contains(c))
        {
            self.i += 1;
        }
        let text = std::str::from_utf8(&self.s[start..self.i]).ok()?;
        if text.contains(['.', 'e', 'E']) {
            text.parse().ok().map(Value::Float)
        } else {
            text.parse().ok().map(Value::Int)
        }
    }

    /// A quoted literal's code points (bytes literals stay below 256).
    fn string(&mut self) -> Option<Vec<u32>> {
        let quote = *self.s.get(self.i)?;
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let c = *self.s.get(self.i)?;
            self.i += 1;
            if c == quote {
                return Some(out);
            }
            if c != b'\\' {
                // Transcripts are UTF-8; decode multi-byte characters.
                if c < 0x80 {
                    out.push(u32::from(c));
                } else {
                    let rest = std::str::from_utf8(&self.s[self.i - 1..]).ok()?;
                    let ch = rest.chars().next()?;
                    out.push(u32::from(ch));
                    self.i += ch.len_utf8() - 1;
                }
                continue;
            }
            let e = *self.s.get(self.i)?;
            self.i += 1;
            let hex = |p: &mut Self, n: usize| -> Option<u32> {
                let h = std::str::from_utf8(p.s.get(p.i..p.i + n)?).ok()?;
                p.i += n;
                u32::from_str_radix(h, 16).ok()
            };
            out.push(match e {
                b'\\' | b'\'' | b'"' => u32::from(e),
                b'n' => 10,
                b'r' => 13,
                b't' => 9,
                b'x' => hex(self, 2)?,
                b'u' => hex(self, 4)?,
                b'U' => hex(self, 8)?,
                _ => return None,
            });
        }
    }
}

/// msgpack has no tuple/list distinction: compare modulo that.
pub fn lists_as_tuples(v: &Value) -> Value {
    match v {
        Value::List(items) | Value::Tuple(items) => {
            Value::Tuple(items.iter().map(lists_as_tuples).collect())
        }
        Value::Dict(pairs) => Value::Dict(
            pairs
                .iter()
                .map(|(k, v)| (lists_as_tuples(k), lists_as_tuples(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}
