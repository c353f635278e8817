//! Byte sizes as fio writes them: `4096`, `4k`, `128K`, `1m`, `10G`, `2t`, with an optional
//! `b`/`ib` after the unit (`4KiB`, `1mb`). Units are powers of 1024, as fio's default
//! `kb_base=1024`.

/// Why a size did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("empty size (write e.g. 4k, 128k, 1m, 10g)")]
    Empty,
    #[error("{0:?} is not a size: write a number with an optional unit k, m, g or t (e.g. 4k)")]
    Malformed(String),
    #[error("{0:?} does not fit in 64 bits")]
    TooLarge(String),
}

/// Parses a size in bytes.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(SizeError::Empty);
    }
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(digits_end);
    if digits.is_empty() {
        return Err(SizeError::Malformed(text.to_string()));
    }
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(SizeError::Malformed(text.to_string())),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| SizeError::TooLarge(text.to_string()))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| SizeError::TooLarge(text.to_string()))
}

/// Formats a byte count with the largest exact binary unit: 4096 -> "4k", 1536 -> "1536".
pub fn format_size(bytes: u64) -> String {
    for (shift, unit) in [(40, "t"), (30, "g"), (20, "m"), (10, "k")] {
        if bytes != 0 && bytes.is_multiple_of(1u64 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_binary() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("128k"), Ok(131072));
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert_eq!(parse_size("1mb"), Ok(1 << 20));
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("2t"), Ok(2 << 40));
        assert_eq!(parse_size(" 512b "), Ok(512));
        assert_eq!(parse_size("0"), Ok(0));
    }

    #[test]
    fn bad_sizes_are_refused() {
        assert_eq!(parse_size(""), Err(SizeError::Empty));
        assert!(matches!(parse_size("k"), Err(SizeError::Malformed(_))));
        assert!(matches!(parse_size("4x"), Err(SizeError::Malformed(_))));
        assert!(matches!(parse_size("1.5m"), Err(SizeError::Malformed(_))));
        assert!(matches!(parse_size("-4k"), Err(SizeError::Malformed(_))));
        assert!(matches!(
            parse_size("99999999999t"),
            Err(SizeError::TooLarge(_))
        ));
        assert!(parse_size("4q").unwrap_err().to_string().contains("4k"));
    }

    #[test]
    fn format_picks_the_largest_exact_unit() {
        assert_eq!(format_size(4096), "4k");
        assert_eq!(format_size(1 << 20), "1m");
        assert_eq!(format_size(1536), "1536");
        assert_eq!(format_size(0), "0");
        assert_eq!(format_size(3 << 30), "3g");
    }
}
