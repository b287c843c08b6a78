//! `resource.Quantity` strings as the scheduler counts them: CPU in
//! millicores, everything else in units, both rounded up (away from zero)
//! as upstream's `MilliValue()` and `Value()` do.

/// The value of `q` times 10^`scale` (0 for `Value()`, 3 for
/// `MilliValue()`), rounded away from zero; saturates at the `i64` range.
/// `None` when `q` is not a quantity.
fn scaled(q: &str, scale: i32) -> Option<i64> {
    let s = q.trim();
    let (negative, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let digits_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(digits_end);
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
        return None;
    }
    let (binary_shift, decimal_exp) = match suffix {
        "" => (0, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        other => {
            let exp = other.strip_prefix(['e', 'E'])?;
            (0, exp.parse::<i32>().ok()?)
        }
    };
    // Digits beyond 30 cannot change an i64 result meaningfully; keep the
    // arithmetic in i128 by dropping them (rounding up below covers it).
    let mut mantissa: i128 = 0;
    let mut frac_digits: i32 = 0;
    let mut dropped = false;
    for (i, c) in int_part.chars().chain(frac_part.chars()).enumerate() {
        let d = i128::from(c.to_digit(10)?);
        let in_fraction = i >= int_part.len();
        if mantissa > 10i128.pow(30) {
            if in_fraction {
                dropped |= d != 0;
                continue;
            }
            return Some(if negative { i64::MIN } else { i64::MAX });
        }
        mantissa = mantissa * 10 + d;
        if in_fraction {
            frac_digits += 1;
        }
    }
    let exp10 = decimal_exp + scale - frac_digits;
    let magnitude: i128 = if exp10 >= 0 {
        let pow = 10i128.checked_pow(u32::try_from(exp10).ok()?);
        pow.and_then(|p| mantissa.checked_mul(p))
            .and_then(|v| v.checked_mul(1i128 << binary_shift))
            .unwrap_or(i128::MAX)
    } else {
        let num = mantissa
            .checked_mul(1i128 << binary_shift)
            .unwrap_or(i128::MAX);
        match 10i128.checked_pow(u32::try_from(-exp10).ok()?) {
            Some(div) => {
                let q = num / div;
                if num % div != 0 || dropped { q + 1 } else { q }
            }
            // A divisor beyond i128: any non-zero value rounds up to 1.
            None => i128::from(num != 0),
        }
    };
    let v = i64::try_from(magnitude).unwrap_or(i64::MAX);
    Some(if negative { -v } else { v })
}

/// `Quantity.Value()`: the amount rounded up to a whole unit (0 if unparsable).
pub(crate) fn value(q: &str) -> i64 {
    scaled(q, 0).unwrap_or(0)
}

/// `Quantity.MilliValue()`: the amount in thousandths, rounded up (0 if unparsable).
pub(crate) fn milli_value(q: &str) -> i64 {
    scaled(q, 3).unwrap_or(0)
}

/// Whether `q` parses as a quantity.
#[cfg(test)]
pub(crate) fn is_quantity(q: &str) -> bool {
    scaled(q, 0).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_memory_forms() {
        assert_eq!(milli_value("100m"), 100);
        assert_eq!(milli_value("1"), 1000);
        assert_eq!(milli_value("0.5"), 500);
        assert_eq!(milli_value("2.0001"), 2001, "rounded up");
        assert_eq!(milli_value("1u"), 1, "rounded up to a millicore");
        assert_eq!(value("500Mi"), 500 * 1024 * 1024);
        assert_eq!(value("32Gi"), 32 << 30);
        assert_eq!(value("1G"), 1_000_000_000);
        assert_eq!(value("1.5Ki"), 1536);
        assert_eq!(value("1e3"), 1000);
        assert_eq!(value("1E-3"), 1, "rounded up");
        assert_eq!(value("110"), 110);
        assert_eq!(value("-1"), -1);
        assert_eq!(value(".5"), 1);
        assert_eq!(value("1Ei"), 1 << 60);
        assert_eq!(value("100E"), i64::MAX, "saturates");
        assert!(!is_quantity("abc") && !is_quantity("1.2.3") && !is_quantity("1Qi"));
        assert_eq!(value("bogus"), 0);
    }
}
