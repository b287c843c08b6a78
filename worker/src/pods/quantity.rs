//! Resource quantities (`100m`, `64Mi`, `1.5`, `1e3`) as exact integers of nano-units, for
//! cgroup settings, QoS and `resourceFieldRef`.

/// A quantity in billionths of its unit (cores or bytes); `None` for what does not parse.
pub(crate) fn nanos(quantity: &str) -> Option<i128> {
    let q = quantity.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let (negative, number) = match number.strip_prefix('-') {
        Some(n) => (true, n),
        None => (false, number.strip_prefix('+').unwrap_or(number)),
    };
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let mut value: i128 = 0;
    for c in int_part.chars() {
        value = value
            .checked_mul(10)?
            .checked_add(i128::from(c.to_digit(10)?))?;
    }
    value = value.checked_mul(1_000_000_000)?;
    let mut scale: i128 = 100_000_000;
    for c in frac_part.chars() {
        value = value.checked_add(i128::from(c.to_digit(10)?).checked_mul(scale)?)?;
        scale /= 10;
    }
    let (mul, div): (i128, i128) = match suffix {
        "" => (1, 1),
        "n" => (1, 1_000_000_000),
        "u" => (1, 1_000_000),
        "m" => (1, 1000),
        "k" => (1000, 1),
        "M" => (1_000_000, 1),
        "G" => (1_000_000_000, 1),
        "T" => (1_000_000_000_000, 1),
        "P" => (1_000_000_000_000_000, 1),
        "E" => (1_000_000_000_000_000_000, 1),
        "Ki" => (1 << 10, 1),
        "Mi" => (1 << 20, 1),
        "Gi" => (1 << 30, 1),
        "Ti" => (1 << 40, 1),
        "Pi" => (1 << 50, 1),
        "Ei" => (1 << 60, 1),
        s if s.starts_with(['e', 'E']) => {
            let exp: u32 = s[1..].parse().ok()?;
            (10_i128.checked_pow(exp)?, 1)
        }
        _ => return None,
    };
    let value = value.checked_mul(mul)? / div;
    Some(if negative { -value } else { value })
}

/// Millicores of a CPU quantity, rounded up as upstream's `MilliValue`.
pub(crate) fn milli_cpu(quantity: &str) -> Option<i64> {
    let n = nanos(quantity)?;
    i64::try_from((n + 999_999).div_euclid(1_000_000)).ok()
}

/// Bytes of a memory quantity, rounded up.
pub(crate) fn bytes(quantity: &str) -> Option<i64> {
    let n = nanos(quantity)?;
    i64::try_from((n + 999_999_999).div_euclid(1_000_000_000)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_upstream_forms() {
        assert_eq!(milli_cpu("100m"), Some(100));
        assert_eq!(milli_cpu("1"), Some(1000));
        assert_eq!(milli_cpu("1.5"), Some(1500));
        assert_eq!(milli_cpu("0.0001"), Some(1));
        assert_eq!(bytes("64Mi"), Some(64 << 20));
        assert_eq!(bytes("1G"), Some(1_000_000_000));
        assert_eq!(bytes("1e3"), Some(1000));
        assert_eq!(bytes("128974848"), Some(128_974_848));
        assert_eq!(bytes("129e6"), Some(129_000_000));
        assert_eq!(bytes("123Mi"), Some(123 << 20));
        assert_eq!(bytes("1.5Gi"), Some(3 << 29));
        assert_eq!(nanos("abc"), None);
        assert_eq!(nanos("1Zi"), None);
        assert_eq!(nanos(""), None);
    }
}
