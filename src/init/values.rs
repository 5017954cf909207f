//! The typed scalar values of the init configuration — sizes, durations,
//! flags, file modes, owners, signals, server addresses — and their parsing
//! from either a config file (typed TOML/YAML) or an environment variable
//! (always a string). Each parse error says what was expected and what was
//! given; `settings` prefixes the name of the variable.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A scalar as either source gives it: env values are always strings,
/// files give typed booleans and integers.
enum Scalar {
    Str(String),
    Int(i128),
    Bool(bool),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Str(s) => f.write_str(s),
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Bool(b) => write!(f, "{b}"),
        }
    }
}

struct ScalarVisitor;

impl Visitor<'_> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, number or boolean")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar::Str(v.to_owned()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar::Int(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar::Int(v.into()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Scalar, E> {
        Ok(Scalar::Int(v))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar::Bool(v))
    }
}

fn scalar<'de, D: Deserializer<'de>>(d: D) -> Result<Scalar, D::Error> {
    d.deserialize_any(ScalarVisitor)
}

/// Parses a boolean the way ZConfig and the plone images accept it:
/// true/false, on/off, yes/no, 1/0 (any case).
pub fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let v = scalar(d)?;
    match &v {
        Scalar::Bool(b) => return Ok(*b),
        Scalar::Int(0) => return Ok(false),
        Scalar::Int(1) => return Ok(true),
        Scalar::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "on" | "yes" | "1" => return Ok(true),
            "false" | "off" | "no" | "0" => return Ok(false),
            _ => {}
        },
        Scalar::Int(_) => {}
    }
    Err(de::Error::custom(format!(
        "expected a boolean (true/false, on/off, yes/no), got '{v}'"
    )))
}

/// Parses a non-negative integer given as a number or a decimal string.
pub fn number<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i128> + FromStr,
{
    let v = scalar(d)?;
    let parsed = match &v {
        Scalar::Int(i) => T::try_from(*i).ok(),
        Scalar::Str(s) => s.trim().parse::<T>().ok(),
        Scalar::Bool(_) => None,
    };
    parsed.ok_or_else(|| de::Error::custom(format!("expected a whole number, got '{v}'")))
}

/// Parses a string; numbers are taken as their decimal text (a ZEO storage
/// name "1" arrives as an integer from TOML and YAML).
pub fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match scalar(d)? {
        Scalar::Bool(b) => Err(de::Error::custom(format!(
            "expected a string, got the boolean '{b}'"
        ))),
        v => Ok(v.to_string()),
    }
}

/// A list given as a list, or as one string separated by commas or spaces
/// (the environment can only give strings). An empty string is an empty
/// list.
pub fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Form::deserialize(d)? {
        Form::One(s) => s
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        Form::Many(v) => v,
    })
}

/// A byte count written like ZConfig's `byte-size`: `128MB`, `500000000`,
/// `4 kb`; KB, MB and GB are powers of 1024 as in ZConfig. Templates see
/// the canonical ZConfig spelling, so it can be pasted into zope.conf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl Size {
    pub fn parse(s: &str) -> Option<Size> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let n: u64 = digits.parse().ok()?;
        let shift = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 0,
            "k" | "kb" | "kib" => 10,
            "m" | "mb" | "mib" => 20,
            "g" | "gb" | "gib" => 30,
            _ => return None,
        };
        n.checked_mul(1 << shift).map(Size)
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, shift) in [("GB", 30), ("MB", 20), ("KB", 10)] {
            if self.0 != 0 && self.0 % (1 << shift) == 0 {
                return write!(f, "{}{unit}", self.0 >> shift);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = scalar(d)?;
        let parsed = match &v {
            Scalar::Int(i) => u64::try_from(*i).ok().map(Size),
            Scalar::Str(s) => Size::parse(s),
            Scalar::Bool(_) => None,
        };
        parsed.ok_or_else(|| de::Error::custom(format!("expected a size like 128MB, got '{v}'")))
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A duration: `500ms`, `10s`, `5m`, `2h`, `1d`; a bare number is seconds.
/// Templates see whole milliseconds (haproxy's default time unit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span(pub Duration);

impl Span {
    pub fn parse(s: &str) -> Option<Span> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let n: u64 = digits.parse().ok()?;
        let ms = match unit.trim() {
            "ms" => 1,
            "" | "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return None,
        };
        n.checked_mul(ms).map(|ms| Span(Duration::from_millis(ms)))
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = scalar(d)?;
        let parsed = match &v {
            Scalar::Int(i) => u64::try_from(*i).ok().map(|s| Span(Duration::from_secs(s))),
            Scalar::Str(s) => Span::parse(s),
            Scalar::Bool(_) => None,
        };
        parsed.ok_or_else(|| {
            de::Error::custom(format!("expected a duration like 10s or 500ms, got '{v}'"))
        })
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX))
    }
}

/// A file mode, always written as an octal string (`"0640"`): a bare YAML
/// or TOML integer is ambiguous between decimal and octal, so it is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode(pub u32);

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = scalar(d)?;
        if let Scalar::Str(s) = &v {
            let digits = s.trim().trim_start_matches("0o");
            if let Ok(mode) = u32::from_str_radix(digits, 8) {
                if mode <= 0o7777 && !digits.is_empty() {
                    return Ok(Mode(mode));
                }
            }
        }
        Err(de::Error::custom(format!(
            "expected an octal mode as a string like \"0640\", got '{v}'"
        )))
    }
}

impl Serialize for Mode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{:04o}", self.0))
    }
}

/// A numeric `uid:gid` pair (scratch images have no /etc/passwd to look
/// names up in). `uid` alone means `uid:uid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

impl Owner {
    pub fn parse(s: &str) -> Option<Owner> {
        let s = s.trim();
        let (uid, gid) = s.split_once(':').unwrap_or((s, s));
        Some(Owner {
            uid: uid.parse().ok()?,
            gid: gid.parse().ok()?,
        })
    }
}

impl FromStr for Owner {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Owner::parse(s).ok_or_else(|| format!("expected a numeric uid:gid like 500:500, got '{s}'"))
    }
}

impl<'de> Deserialize<'de> for Owner {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = scalar(d)?;
        v.to_string().parse().map_err(de::Error::custom)
    }
}

impl Serialize for Owner {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{}:{}", self.uid, self.gid))
    }
}

/// A signal to send, named `SIGHUP`, `HUP` or `hup`, or by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalName(pub Signal);

impl SignalName {
    pub fn parse(s: &str) -> Option<SignalName> {
        let s = s.trim();
        if let Ok(n) = s.parse::<i32>() {
            return Signal::try_from(n).ok().map(SignalName);
        }
        let upper = s.to_ascii_uppercase();
        let name = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        Signal::from_str(&name).ok().map(SignalName)
    }
}

impl<'de> Deserialize<'de> for SignalName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = scalar(d)?;
        SignalName::parse(&v.to_string()).ok_or_else(|| {
            de::Error::custom(format!("expected a signal name like SIGHUP, got '{v}'"))
        })
    }
}

impl Serialize for SignalName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

/// A signal, or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reopen(pub Option<Signal>);

impl<'de> Deserialize<'de> for Reopen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = scalar(d)?.to_string();
        if v.trim().eq_ignore_ascii_case("none") {
            return Ok(Reopen(None));
        }
        SignalName::parse(&v)
            .map(|s| Reopen(Some(s.0)))
            .ok_or_else(|| {
                de::Error::custom(format!(
                    "expected a signal name like SIGUSR2, or none, got '{v}'"
                ))
            })
    }
}

impl Serialize for Reopen {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.map_or("none", |sig| sig.as_str()))
    }
}

/// One or more server addresses, `HOST:PORT` or a unix socket path,
/// separated by spaces or commas (or given as a list). ZEO's `<zeoclient>`
/// takes one `server` line per address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Addresses(pub Vec<String>);

impl Addresses {
    fn check(item: &str) -> Result<(), String> {
        if item.starts_with('/') {
            return Ok(());
        }
        match item.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
            _ => Err(format!(
                "expected HOST:PORT (or a unix socket path), got '{item}'"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Addresses {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let items = list(d)?;
        for item in &items {
            Addresses::check(item).map_err(de::Error::custom)?;
        }
        Ok(Addresses(items))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_zconfig_and_print_canonically() {
        assert_eq!(Size::parse("128MB"), Some(Size(128 << 20)));
        assert_eq!(Size::parse("100mb"), Some(Size(100 << 20)));
        assert_eq!(Size::parse("4 KB"), Some(Size(4 << 10)));
        assert_eq!(Size::parse("500000000"), Some(Size(500_000_000)));
        assert_eq!(Size::parse("lots"), None);
        assert_eq!(Size::parse("12XB"), None);
        assert_eq!(Size(128 << 20).to_string(), "128MB");
        assert_eq!(Size(1 << 30).to_string(), "1GB");
        assert_eq!(Size(1000).to_string(), "1000");
    }

    #[test]
    fn spans_and_signals_parse() {
        assert_eq!(Span::parse("500ms"), Some(Span(Duration::from_millis(500))));
        assert_eq!(Span::parse("10"), Some(Span(Duration::from_secs(10))));
        assert_eq!(Span::parse("1d"), Some(Span(Duration::from_secs(86_400))));
        assert_eq!(Span::parse("soon"), None);
        assert_eq!(SignalName::parse("hup"), Some(SignalName(Signal::SIGHUP)));
        assert_eq!(
            SignalName::parse("SIGUSR2"),
            Some(SignalName(Signal::SIGUSR2))
        );
        assert_eq!(SignalName::parse("10"), Some(SignalName(Signal::SIGUSR1)));
        assert_eq!(SignalName::parse("SIGNOPE"), None);
        assert_eq!(Owner::parse("500"), Some(Owner { uid: 500, gid: 500 }));
        assert_eq!(Owner::parse("500:0"), Some(Owner { uid: 500, gid: 0 }));
        assert_eq!(Owner::parse("plone"), None);
    }
}
