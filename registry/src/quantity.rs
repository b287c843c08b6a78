//! Resource quantities (`resource.Quantity` upstream): `500m`, `128Mi`,
//! `1.5`, `2e3`. Held exactly as a count of nano-units, so sums and
//! comparisons never round; printed in upstream's canonical form (the
//! largest suffix that keeps the number whole, binary suffixes only for
//! whole multiples of 1024), which is what ResourceQuota status and the
//! quota and LimitRange messages show.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde_json::Value;

/// How a quantity prints (upstream's `Format`): from the suffix it was
/// written with, and kept through arithmetic by the left operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `m`, `k`, `M`, … or none.
    #[default]
    DecimalSi,
    /// `Ki`, `Mi`, `Gi`, ….
    BinarySi,
    /// `e3`, `E-2`, ….
    DecimalExponent,
}

/// A quantity, exact to 10⁻⁹.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quantity {
    nanos: i128,
    format: Format,
}

/// Why a string is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuantityError {
    /// Not of the form `<number><suffix>` (upstream's `ErrFormatWrong`).
    #[error(
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )]
    Format,
    /// The number does not fit.
    #[error("quantity {0:?} is too large")]
    TooLarge(String),
}

const NANO: i128 = 1_000_000_000;

fn pow10(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

/// Divides rounding away from zero (upstream rounds sub-nano values up).
fn div_ceil(a: i128, b: i128) -> i128 {
    let q = a / b;
    if a % b == 0 {
        q
    } else if a > 0 {
        q + 1
    } else {
        q - 1
    }
}

impl Quantity {
    /// Zero, printed as decimal.
    pub const ZERO: Quantity = Quantity {
        nanos: 0,
        format: Format::DecimalSi,
    };

    /// `n` whole units.
    pub fn from_units(n: i64) -> Self {
        Quantity {
            nanos: i128::from(n) * NANO,
            format: Format::DecimalSi,
        }
    }

    /// The value in thousandths, rounded up (upstream's `MilliValue`).
    pub fn milli_value(&self) -> i128 {
        div_ceil(self.nanos, 1_000_000)
    }

    /// The value in whole units, rounded up (upstream's `Value`).
    pub fn value(&self) -> i128 {
        div_ceil(self.nanos, NANO)
    }

    /// Whether the quantity is zero.
    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// The quantity as the typed `k8s-openapi` value (its canonical string).
    pub fn to_openapi(&self) -> k8s_openapi::apimachinery::pkg::api::resource::Quantity {
        k8s_openapi::apimachinery::pkg::api::resource::Quantity(self.to_string())
    }
}

/// `self + other`, in `self`'s format (upstream's `Add`), or in `other`'s
/// when `self` is zero (so that `0 + 256Mi` reads `256Mi`); saturating.
impl std::ops::Add for Quantity {
    type Output = Quantity;

    fn add(self, other: Quantity) -> Quantity {
        Quantity {
            nanos: self.nanos.saturating_add(other.nanos),
            format: if self.nanos == 0 {
                other.format
            } else {
                self.format
            },
        }
    }
}

/// `self - other`, in `self`'s format; saturating.
impl std::ops::Sub for Quantity {
    type Output = Quantity;

    fn sub(self, other: Quantity) -> Quantity {
        Quantity {
            nanos: self.nanos.saturating_sub(other.nanos),
            format: self.format,
        }
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, QuantityError> {
        let too_large = || QuantityError::TooLarge(s.to_string());
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
            .unwrap_or(s.len());
        let (number, suffix) = s.split_at(split);
        let (negative, digits) = match number.as_bytes().first() {
            Some(b'-') => (true, &number[1..]),
            Some(b'+') => (false, &number[1..]),
            _ => (false, number),
        };
        let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let well_formed = !(whole.is_empty() && frac.is_empty())
            && whole.bytes().all(|b| b.is_ascii_digit())
            && frac.bytes().all(|b| b.is_ascii_digit());
        if !well_formed {
            return Err(QuantityError::Format);
        }
        let mut mantissa: i128 = 0;
        for b in whole.bytes().chain(frac.bytes()) {
            mantissa = mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(i128::from(b - b'0')))
                .ok_or_else(too_large)?;
        }
        let frac_digits = i32::try_from(frac.len()).map_err(|_| too_large())?;
        // value = mantissa × 10^-frac_digits × multiplier; nanos = value × 10^9.
        let (format, decimal_exp, binary_exp) = match suffix {
            "" => (Format::DecimalSi, 0, 0),
            "n" => (Format::DecimalSi, -9, 0),
            "u" => (Format::DecimalSi, -6, 0),
            "m" => (Format::DecimalSi, -3, 0),
            "k" => (Format::DecimalSi, 3, 0),
            "M" => (Format::DecimalSi, 6, 0),
            "G" => (Format::DecimalSi, 9, 0),
            "T" => (Format::DecimalSi, 12, 0),
            "P" => (Format::DecimalSi, 15, 0),
            "E" => (Format::DecimalSi, 18, 0),
            "Ki" => (Format::BinarySi, 0, 10),
            "Mi" => (Format::BinarySi, 0, 20),
            "Gi" => (Format::BinarySi, 0, 30),
            "Ti" => (Format::BinarySi, 0, 40),
            "Pi" => (Format::BinarySi, 0, 50),
            "Ei" => (Format::BinarySi, 0, 60),
            other => {
                let exp = other
                    .strip_prefix('e')
                    .or_else(|| other.strip_prefix('E'))
                    .ok_or(QuantityError::Format)?;
                let exp: i32 = exp.parse().map_err(|_| QuantityError::Format)?;
                if !(-100..=100).contains(&exp) {
                    return Err(too_large());
                }
                (Format::DecimalExponent, exp, 0)
            }
        };
        let scaled = mantissa
            .checked_mul(1i128 << binary_exp)
            .ok_or_else(too_large)?;
        let exp10 = decimal_exp + 9 - frac_digits;
        let nanos = if exp10 >= 0 {
            let p = pow10(exp10.unsigned_abs()).ok_or_else(too_large)?;
            scaled.checked_mul(p).ok_or_else(too_large)?
        } else {
            match pow10(exp10.unsigned_abs()) {
                Some(p) => div_ceil(scaled, p),
                // Far below a nano-unit: rounds up to one.
                None => i128::from(scaled != 0),
            }
        };
        Ok(Quantity {
            nanos: if negative { -nanos } else { nanos },
            format,
        })
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        let whole = self.nanos % NANO == 0;
        let small = self.nanos.abs() < 1024 * NANO;
        if self.format == Format::BinarySi && whole && !small {
            let mut units = self.nanos / NANO;
            let mut suffix = 0usize;
            while suffix < 6 && units % 1024 == 0 {
                units /= 1024;
                suffix += 1;
            }
            let name = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
                .get(suffix)
                .copied()
                .unwrap_or("");
            return write!(f, "{units}{name}");
        }
        // The largest power of 1000 (from 10^-9) that keeps the mantissa whole.
        let mut mantissa = self.nanos;
        let mut exp = -9i32;
        while exp < 18 && mantissa % 1000 == 0 {
            mantissa /= 1000;
            exp += 3;
        }
        if self.format == Format::DecimalExponent {
            return if exp == 0 {
                write!(f, "{mantissa}")
            } else {
                write!(f, "{mantissa}e{exp}")
            };
        }
        let suffix = match exp {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            18 => "E",
            _ => "",
        };
        write!(f, "{mantissa}{suffix}")
    }
}

/// A resource list (`requests`, `limits`, a quota's `hard`): name to quantity.
pub type ResourceList = BTreeMap<String, Quantity>;

/// The resource list in a JSON object of quantity strings (entries that
/// do not parse are skipped: stored objects were validated).
pub fn resource_list(v: Option<&Value>) -> ResourceList {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, q)| Some((k.clone(), q.as_str()?.parse().ok()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// The resource list of a typed `k8s-openapi` map.
pub fn from_openapi(
    m: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> ResourceList {
    m.map(|m| {
        m.iter()
            .filter_map(|(k, q)| Some((k.clone(), q.0.parse().ok()?)))
            .collect()
    })
    .unwrap_or_default()
}

/// `a + b` per resource (upstream's `quota.Add`: a key of `a` keeps its format).
pub fn add(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut out = a.clone();
    for (k, v) in b {
        out.entry(k.clone())
            .and_modify(|q| *q = *q + *v)
            .or_insert(*v);
    }
    out
}

/// `name=value,…` sorted by name, as upstream's quota messages print lists.
pub fn pretty(list: &ResourceList) -> String {
    list.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        s.parse().unwrap()
    }

    #[test]
    fn canonical_forms() {
        for (input, want) in [
            ("100m", "100m"),
            ("0.1", "100m"),
            ("1000m", "1"),
            ("1.5", "1500m"),
            ("1500", "1500"),
            ("2000", "2k"),
            ("1Ki", "1Ki"),
            ("1024", "1024"),
            ("2048Ki", "2Mi"),
            ("1.5Gi", "1536Mi"),
            ("512Ki", "512Ki"),
            ("0.5Ki", "512"),
            ("1e3", "1e3"),
            ("0", "0"),
            ("128974848", "128974848"),
            ("129e6", "129e6"),
            ("129M", "129M"),
            ("0.1n", "1n"),
            ("-250m", "-250m"),
        ] {
            assert_eq!(q(input).to_string(), want, "{input}");
        }
    }

    #[test]
    fn sums_keep_the_left_format_and_compare_exactly() {
        assert_eq!((q("100m") + q("200m")).to_string(), "300m");
        assert_eq!((q("1") + q("500m")).to_string(), "1500m");
        assert_eq!((q("64Mi") + q("64Mi")).to_string(), "128Mi");
        assert_eq!((q("0") + q("256Mi") + q("256Mi")).to_string(), "512Mi");
        assert_eq!((q("128Mi") - q("128Mi")).to_string(), "0");
        assert!(q("1") == q("1000m"));
        assert!(q("1Gi") > q("1G"));
        assert_eq!(q("1.5").milli_value(), 1500);
        assert_eq!(q("1500m").value(), 2);
    }

    #[test]
    fn bad_quantities() {
        for bad in ["", "abc", "1.2.3", "1Zi", "--1", "1e", "m"] {
            assert!(bad.parse::<Quantity>().is_err(), "{bad}");
        }
        assert!(
            "99999999999999999999999999999999999999"
                .parse::<Quantity>()
                .is_err()
        );
    }

    #[test]
    fn pretty_lists() {
        let mut l = ResourceList::new();
        l.insert("pods".into(), q("1"));
        l.insert("limits.cpu".into(), q("500m"));
        assert_eq!(pretty(&l), "limits.cpu=500m,pods=1");
    }
}
