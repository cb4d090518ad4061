//! The UCI handwritten digits (1797 × 8×8, grey 0..16), bundled in `assets/` (CC BY 4.0).

use std::io::Read;

use flate2::read::GzDecoder;

use super::{DataError, ImageSet, Split};

const BUNDLED: &[u8] = include_bytes!("../../assets/digits.csv.gz");
const BUNDLED_NAME: &str = "assets/digits.csv.gz (bundled)";

/// One split of the bundled digits: every fifth image is the test split.
pub fn load(split: Split) -> Result<ImageSet, DataError> {
    parse(BUNDLED, BUNDLED_NAME, split)
}

/// Parse a gzipped digits CSV (64 pixels 0..16, then the label 0..9, per line).
pub fn parse(gz: &[u8], name: &str, split: Split) -> Result<ImageSet, DataError> {
    let mut text = String::new();
    GzDecoder::new(gz)
        .read_to_string(&mut text)
        .map_err(|e| DataError::file(name, format!("not a readable gzip of text: {e}")))?;
    let split_name = match split {
        Split::Train => "train",
        Split::Test => "test",
    };
    let mut set = ImageSet::empty(&format!("UCI digits ({split_name})"), 1, 8, 8, 10);
    let mut image = [0.0f32; 64];
    for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != 65 {
            return Err(DataError::file(
                name,
                format!("line {}: expected 65 values, found {}", i + 1, fields.len()),
            ));
        }
        let parse = |s: &str| -> Result<f32, DataError> {
            s.trim().parse::<f32>().map_err(|_| {
                DataError::file(name, format!("line {}: `{s}` is not a number", i + 1))
            })
        };
        for (p, f) in image.iter_mut().zip(&fields[..64]) {
            let v = parse(f)?;
            if !(0.0..=16.0).contains(&v) {
                return Err(DataError::file(
                    name,
                    format!("line {}: pixel {v} outside 0..16", i + 1),
                ));
            }
            *p = v / 16.0;
        }
        let label = parse(fields[64])?;
        if !(0.0..10.0).contains(&label) || label.fract() != 0.0 {
            return Err(DataError::file(
                name,
                format!("line {}: label {label} is not a digit", i + 1),
            ));
        }
        let is_test = i % 5 == 4;
        if is_test == (split == Split::Test) {
            set.push(&image, label as u32);
        }
    }
    if set.is_empty() {
        return Err(DataError::file(name, "holds no images"));
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;

    #[test]
    fn bundled_digits_load_with_the_documented_split() {
        let train = load(Split::Train).unwrap();
        let test = load(Split::Test).unwrap();
        assert_eq!(train.len() + test.len(), 1797);
        assert_eq!(test.len(), 359);
        assert_eq!((train.channels, train.height, train.width), (1, 8, 8));
        let counts = train.class_counts();
        assert!(counts.iter().all(|&c| c > 120), "{counts:?}");
    }

    #[test]
    fn malformed_csv_is_reported_with_its_line() {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(b"1,2,3\n").unwrap();
        let err = parse(&enc.finish().unwrap(), "bad.csv.gz", Split::Train).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("bad.csv.gz") && msg.contains("line 1"),
            "{msg}"
        );
        let err = parse(b"not gzip at all", "raw.csv.gz", Split::Train).unwrap_err();
        assert!(err.to_string().contains("raw.csv.gz"));
    }
}
