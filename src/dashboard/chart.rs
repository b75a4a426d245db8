//! The geometry of the dashboard's curves, drawn as SVG on the server: hourly series become
//! polyline points in a fixed view box, events (rollout steps) become vertical marks. Pure,
//! so a curve's points can be counted without a browser.

/// The view box every chart is drawn in (the page scales it to its width, keeping its shape,
/// so the labels drawn in it stay legible: about a card's width in CSS pixels).
pub const WIDTH: f64 = 360.0;
pub const HEIGHT: f64 = 150.0;
/// Room left at the edges: for the y-axis labels on the left, the time labels below.
pub const LEFT: f64 = 36.0;
pub const RIGHT: f64 = 10.0;
pub const TOP: f64 = 10.0;
pub const BOTTOM: f64 = 20.0;

/// One chart: the hours it spans and the largest value it shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Frame {
    pub from_hour: u64,
    pub to_hour: u64,
    pub max: f64,
}

impl Frame {
    /// A frame over `[from_hour, to_hour]` (at least two hours wide, so a line shows) whose
    /// top is `max` (at least 1).
    pub fn new(from_hour: u64, to_hour: u64, max: f64) -> Self {
        Frame {
            from_hour: from_hour.min(to_hour.saturating_sub(1)),
            to_hour,
            max: if max.is_finite() && max > 1.0 {
                max
            } else {
                1.0
            },
        }
    }

    /// The x of an hour (fractional hours for events inside one).
    pub fn x(&self, hour: f64) -> f64 {
        let span = (self.to_hour - self.from_hour).max(1) as f64;
        let t = ((hour - self.from_hour as f64) / span).clamp(0.0, 1.0);
        LEFT + t * (WIDTH - LEFT - RIGHT)
    }

    /// The y of a value (0 at the bottom).
    pub fn y(&self, value: f64) -> f64 {
        let t = (value / self.max).clamp(0.0, 1.0);
        HEIGHT - BOTTOM - t * (HEIGHT - TOP - BOTTOM)
    }

    /// An SVG `points` attribute: one `x,y` per (hour, value), in order.
    pub fn points(&self, series: &[(u64, f64)]) -> String {
        let mut out = String::with_capacity(series.len() * 12);
        for (i, (hour, value)) in series.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(&format!(
                "{:.1},{:.1}",
                self.x(*hour as f64),
                self.y(*value)
            ));
        }
        out
    }
}

/// A scale top a little above `max`, rounded to a readable figure (1, 2 or 5 × 10^n).
pub fn nice_max(max: f64) -> f64 {
    if !(max.is_finite() && max > 0.0) {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|top| *top >= max)
        .unwrap_or(10.0 * magnitude)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_point_per_hour_from_left_to_right_bottom_up() {
        let f = Frame::new(100, 103, 4.0);
        let pts = f.points(&[(100, 0.0), (101, 4.0), (102, 2.0), (103, 0.0)]);
        let pts: Vec<&str> = pts.split(' ').collect();
        assert_eq!(pts.len(), 4);
        assert_eq!(pts[0], format!("{LEFT:.1},{:.1}", HEIGHT - BOTTOM));
        assert_eq!(pts[1], format!("{:.1},{TOP:.1}", f.x(101.0)));
        assert_eq!(
            pts[3],
            format!("{:.1},{:.1}", WIDTH - RIGHT, HEIGHT - BOTTOM)
        );
    }

    #[test]
    fn a_single_hour_still_spans_the_chart_and_max_is_at_least_one() {
        let f = Frame::new(7, 7, 0.0);
        assert_eq!((f.from_hour, f.to_hour, f.max), (6, 7, 1.0));
        assert_eq!(nice_max(37.0), 50.0);
        assert_eq!(nice_max(0.04), 0.05);
        assert_eq!(nice_max(0.0), 1.0);
    }
}
