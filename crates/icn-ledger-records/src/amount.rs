//! Amounts in a currency's units (`12.5`) and in minor units (`1250` with 2 decimals).

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("`{0}` is not an amount: write digits with at most one '.', such as 12 or 1.5")]
    Syntax(String),
    #[error("`{amount}` has more than the currency's {decimals} decimal places")]
    TooPrecise { amount: String, decimals: u32 },
    #[error("`{0}` is too large")]
    TooLarge(String),
}

/// Parses `1.5` in a currency with `decimals` places into minor units (150 for 2).
pub fn parse_amount(text: &str, decimals: u32) -> Result<i64, AmountError> {
    let syntax = || AmountError::Syntax(text.to_string());
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(syntax());
    }
    if fraction.len() > decimals as usize {
        return Err(AmountError::TooPrecise { amount: text.to_string(), decimals });
    }
    let digits = format!("{whole}{fraction:0<width$}", width = decimals as usize);
    digits.parse::<i64>().map_err(|_| AmountError::TooLarge(text.to_string()))
}

/// Shows minor units in a currency's units: 150 with 2 decimals is `1.50`.
pub fn format_amount(minor: i64, decimals: u32) -> String {
    if decimals == 0 {
        return minor.to_string();
    }
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs().to_string();
    let padded = format!("{abs:0>width$}", width = decimals as usize + 1);
    let (whole, fraction) = padded.split_at(padded.len() - decimals as usize);
    format!("{sign}{whole}.{fraction}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_read_and_print_in_units() {
        assert_eq!(parse_amount("1.5", 2), Ok(150));
        assert_eq!(parse_amount("12", 0), Ok(12));
        assert_eq!(parse_amount(".25", 2), Ok(25));
        assert!(matches!(parse_amount("1.234", 2), Err(AmountError::TooPrecise { .. })));
        assert!(matches!(parse_amount("-1", 2), Err(AmountError::Syntax(_))));
        assert!(matches!(parse_amount("1e3", 2), Err(AmountError::Syntax(_))));
        assert!(matches!(parse_amount("99999999999999999999", 0), Err(AmountError::TooLarge(_))));
        assert_eq!(format_amount(150, 2), "1.50");
        assert_eq!(format_amount(-5, 2), "-0.05");
        assert_eq!(format_amount(7, 0), "7");
    }
}
