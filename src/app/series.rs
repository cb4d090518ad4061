//! The full history of every metric series, and the views the plots draw from it: a min/max
//! decimation (so 100 000 points draw as a few thousand), exponential smoothing, and lines broken
//! at NaN (a NaN point ends a segment instead of hiding the series).

use std::collections::BTreeMap;

/// Every metric point received so far, by series name, in arrival order.
#[derive(Debug, Default, Clone)]
pub struct SeriesStore {
    series: BTreeMap<String, Vec<[f64; 2]>>,
    points: usize,
}

impl SeriesStore {
    pub fn push(&mut self, name: &str, x: f64, y: f64) {
        match self.series.get_mut(name) {
            Some(v) => v.push([x, y]),
            None => {
                self.series.insert(name.to_owned(), vec![[x, y]]);
            }
        }
        self.points += 1;
    }

    pub fn get(&self, name: &str) -> Option<&[[f64; 2]]> {
        self.series.get(name).map(Vec::as_slice)
    }

    /// Series whose name starts with `prefix`, in name order.
    pub fn with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a [[f64; 2]])> + 'a {
        self.series
            .range(prefix.to_owned()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.series.keys().map(String::as_str)
    }

    /// Total points over all series.
    pub fn len(&self) -> usize {
        self.points
    }

    pub fn is_empty(&self) -> bool {
        self.points == 0
    }

    pub fn clear(&mut self) {
        self.series.clear();
        self.points = 0;
    }

    /// The metrics as CSV (`series,step,value`), one row per point.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("series,step,value\n");
        for (name, points) in &self.series {
            for [x, y] in points {
                out.push_str(&format!("{name},{x},{y}\n"));
            }
        }
        out
    }
}

/// At most `2 * buckets` points that keep the shape of `points` (sorted by x): for each of
/// `buckets` equal slices of the index range, its minimum and maximum in x order. NaN points are
/// kept as they are (they break the line); a series no longer than `2 * buckets` is returned whole.
pub fn decimate(points: &[[f64; 2]], buckets: usize) -> Vec<[f64; 2]> {
    let buckets = buckets.max(1);
    if points.len() <= 2 * buckets {
        return points.to_vec();
    }
    let mut out = Vec::with_capacity(2 * buckets + 2);
    let per = points.len() as f64 / buckets as f64;
    for b in 0..buckets {
        let lo = (b as f64 * per) as usize;
        let hi = (((b + 1) as f64 * per) as usize).min(points.len());
        let slice = &points[lo..hi];
        if let Some(nan) = slice.iter().find(|p| p[1].is_nan()) {
            out.push(*nan);
            continue;
        }
        let (mut imin, mut imax) = (0, 0);
        for (i, p) in slice.iter().enumerate() {
            if p[1] < slice[imin][1] {
                imin = i;
            }
            if p[1] > slice[imax][1] {
                imax = i;
            }
        }
        let (first, second) = if imin <= imax {
            (imin, imax)
        } else {
            (imax, imin)
        };
        out.push(slice[first]);
        if second != first {
            out.push(slice[second]);
        }
    }
    out
}

/// Exponential moving average with weight `smoothing` in [0, 1) on the past (0 = raw). NaN
/// stays NaN and restarts the average after it.
pub fn smooth(points: &[[f64; 2]], smoothing: f64) -> Vec<[f64; 2]> {
    let w = smoothing.clamp(0.0, 0.999);
    let mut avg: Option<f64> = None;
    points
        .iter()
        .map(|&[x, y]| {
            if y.is_nan() {
                avg = None;
                return [x, y];
            }
            let next = match avg {
                Some(a) => w * a + (1.0 - w) * y,
                None => y,
            };
            avg = Some(next);
            [x, next]
        })
        .collect()
}

/// The runs of finite points between NaN values: each is drawn as its own line.
pub fn segments(points: &[[f64; 2]]) -> Vec<Vec<[f64; 2]>> {
    points
        .split(|p| !p[1].is_finite())
        .filter(|s| !s.is_empty())
        .map(<[_]>::to_vec)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimation_keeps_extremes_and_bounds_the_count() {
        let points: Vec<[f64; 2]> = (0..100_000)
            .map(|i| [i as f64, (i as f64 * 0.01).sin()])
            .collect();
        let mut spiky = points.clone();
        spiky[54_321][1] = 7.0;
        spiky[12_345][1] = -5.0;
        let d = decimate(&spiky, 1000);
        assert!(d.len() <= 2000, "{} points", d.len());
        assert!(d.contains(&[54_321.0, 7.0]));
        assert!(d.contains(&[12_345.0, -5.0]));
        assert!(d.windows(2).all(|w| w[0][0] < w[1][0]), "x stays sorted");
        assert_eq!(decimate(&points[..50], 1000), points[..50].to_vec());
    }

    #[test]
    fn nan_breaks_the_line_into_segments() {
        let p = [[0.0, 1.0], [1.0, 2.0], [2.0, f64::NAN], [3.0, 4.0]];
        let s = segments(&p);
        assert_eq!(s, vec![vec![[0.0, 1.0], [1.0, 2.0]], vec![[3.0, 4.0]]]);
        let d = decimate(
            &[[0.0, 1.0]; 10]
                .iter()
                .copied()
                .chain([[10.0, f64::NAN]])
                .collect::<Vec<_>>(),
            2,
        );
        assert!(
            d.iter().any(|p| p[1].is_nan()),
            "decimation keeps the break"
        );
    }

    #[test]
    fn smoothing_averages_and_restarts_after_nan() {
        let p = [[0.0, 0.0], [1.0, 1.0], [2.0, f64::NAN], [3.0, 5.0]];
        let s = smooth(&p, 0.5);
        assert_eq!(s[0], [0.0, 0.0]);
        assert_eq!(s[1], [1.0, 0.5]);
        assert!(s[2][1].is_nan());
        assert_eq!(s[3], [3.0, 5.0]);
        assert_eq!(smooth(&p[..2], 0.0), p[..2].to_vec());
    }

    #[test]
    fn store_lists_series_by_prefix_and_exports_csv() {
        let mut s = SeriesStore::default();
        s.push("attack/ref/original/restricted_acc", 0.0, 0.1);
        s.push("attack/ref/protected/restricted_acc", 0.0, 0.2);
        s.push("sophon/fts_loss", 1.0, 0.5);
        let names: Vec<_> = s.with_prefix("attack/").map(|(n, _)| n).collect();
        assert_eq!(names.len(), 2);
        assert_eq!(s.len(), 3);
        assert!(s.to_csv().contains("sophon/fts_loss,1,0.5\n"));
    }
}
