//! Durations in the configuration file: `"10m"`, `"2s"`, `"500ms"`, `"1h"`, `"0"`.
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written with a unit, as in the configuration file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// Parses `<digits><unit>` with unit `ms`, `s`, `m`, `h` or `d`; a bare `0` is zero.
    pub fn parse(text: &str) -> Result<HumanDuration, String> {
        let text = text.trim();
        if text == "0" {
            return Ok(HumanDuration(Duration::ZERO));
        }
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let value: u64 = digits.parse().map_err(|_| {
            format!("{text:?} is not a duration (examples: \"10m\", \"2s\", \"500ms\")")
        })?;
        let millis = match unit {
            "ms" => Some(value),
            "s" => value.checked_mul(1000),
            "m" => value.checked_mul(60_000),
            "h" => value.checked_mul(3_600_000),
            "d" => value.checked_mul(86_400_000),
            _ => {
                return Err(format!(
                    "{text:?} has no valid unit (use ms, s, m, h or d, e.g. \"10m\")"
                ));
            }
        }
        .ok_or_else(|| format!("{text:?} is too long a duration"))?;
        Ok(HumanDuration(Duration::from_millis(millis)))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0");
        }
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1000),
        ] {
            if ms.is_multiple_of(size) {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        HumanDuration::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for (text, secs) in [
            ("10m", 600),
            ("2s", 2),
            ("1h", 3600),
            ("0", 0),
            ("1d", 86400),
        ] {
            let d = HumanDuration::parse(text).unwrap();
            assert_eq!(d.0, Duration::from_secs(secs));
            assert_eq!(d.to_string(), text);
        }
        assert_eq!(
            HumanDuration::parse("1500ms").unwrap().to_string(),
            "1500ms"
        );
        assert_eq!(HumanDuration::parse("90s").unwrap().to_string(), "90s");
        for bad in ["", "10", "m", "10x", "-1s", "1.5s", "99999999999999999999d"] {
            assert!(HumanDuration::parse(bad).is_err(), "{bad}");
        }
    }
}
