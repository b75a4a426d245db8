//! Shares of devices, as a rollout holds them: basis points (0.01 % steps), written as
//! people write percentages (`5`, `0.25`, `1,5,25,100`).

use crate::domain::item::AttrValue;

/// Shares are counted in basis points: 0.01 % steps.
pub const FULL: u32 = 10_000;

/// A share as people write it: 5, 0.25, 100 (percent, 0.01 steps).
pub fn percent_text(bp: u32) -> String {
    if bp.is_multiple_of(100) {
        format!("{}%", bp / 100)
    } else {
        let s = format!("{:.2}", f64::from(bp) / 100.0);
        format!("{}%", s.trim_end_matches('0'))
    }
}

/// A percentage (0–100, in 0.01 steps) as basis points.
pub fn parse_percent(p: f64) -> Result<u32, String> {
    let bp = (p * 100.0).round();
    if !(0.0..=f64::from(FULL)).contains(&bp) || !p.is_finite() {
        return Err(format!("{p} is not a percentage between 0 and 100"));
    }
    if (p * 100.0 - bp).abs() > 1e-6 {
        return Err(format!("{p} is finer than 0.01 %"));
    }
    Ok(bp as u32)
}

/// `1,5,25,100` as ascending basis points.
pub fn parse_steps(s: &str) -> Result<Vec<u32>, String> {
    let mut steps = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let p: f64 = part
            .trim_end_matches('%')
            .parse()
            .map_err(|_| format!("step {part:?} is not a percentage"))?;
        let bp = parse_percent(p)?;
        if bp == 0 || steps.last().is_some_and(|last| *last >= bp) {
            return Err("steps must be ascending percentages above 0, such as 1,5,25,100".into());
        }
        steps.push(bp);
    }
    Ok(steps)
}

pub fn steps_text(steps: &[u32]) -> String {
    steps
        .iter()
        .map(|bp| percent_text(*bp).trim_end_matches('%').to_owned())
        .collect::<Vec<_>>()
        .join(",")
}

/// A share as the number `rollout_percent` holds.
pub fn percent_number(bp: u32) -> AttrValue {
    if bp.is_multiple_of(100) {
        AttrValue::N((bp / 100).into())
    } else {
        AttrValue::N(serde_json::Number::from_f64(f64::from(bp) / 100.0).unwrap_or(0.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages() {
        assert_eq!(parse_percent(5.0), Ok(500));
        assert_eq!(parse_percent(0.01), Ok(1));
        assert_eq!(parse_percent(0.07), Ok(7));
        assert!(parse_percent(0.001).is_err());
        assert!(parse_percent(101.0).is_err());
        assert!(parse_percent(-1.0).is_err());
        assert_eq!(percent_text(25), "0.25%");
        assert_eq!(percent_text(500), "5%");
        assert_eq!(percent_text(50), "0.5%");
        assert_eq!(parse_steps("1,5,25,100"), Ok(vec![100, 500, 2500, FULL]));
        assert!(parse_steps("5,1").is_err());
        assert_eq!(steps_text(&[100, 25, FULL]), "1,0.25,100");
        assert_eq!(percent_number(500), AttrValue::N(5.into()));
    }
}
