#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The plot module draws real PNGs with the set-up font (`scripts/setup.sh` runs first):
//! each chart decodes as a PNG of the stated size, is not blank, shows its series'
//! colours (in proportion to the data where that is checkable) and its text; bad input
//! is an error and writes nothing.

use std::path::Path;

use image::{Rgb, RgbImage};
use steerfeed_eval::plot::{
    self, HEIGHT, HISTOGRAM_ALPHA, PALETTE, PlotError, Series, WIDTH, bar_chart, histogram,
    line_chart,
};

fn decode(path: &Path) -> RgbImage {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    let img = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png)
        .expect("decodes as PNG")
        .to_rgb8();
    assert_eq!((img.width(), img.height()), (WIDTH, HEIGHT));
    img
}

fn count(img: &RgbImage, pred: impl Fn(&Rgb<u8>) -> bool) -> usize {
    img.pixels().filter(|p| pred(p)).count()
}

fn exactly(c: (u8, u8, u8)) -> impl Fn(&Rgb<u8>) -> bool {
    move |p| p.0 == [c.0, c.1, c.2]
}

fn near(c: (u8, u8, u8), tol: i16) -> impl Fn(&Rgb<u8>) -> bool {
    move |p| {
        let d = |a: u8, b: u8| (i16::from(a) - i16::from(b)).abs() <= tol;
        d(p.0[0], c.0) && d(p.0[1], c.1) && d(p.0[2], c.2)
    }
}

/// Dark pixels (text, axes) in the rows `rows` of the image.
fn dark_in_rows(img: &RgbImage, rows: std::ops::Range<u32>) -> usize {
    rows.flat_map(|y| (0..img.width()).map(move |x| (x, y)))
        .filter(|&(x, y)| img.get_pixel(x, y).0.iter().all(|&v| v < 90))
        .count()
}

fn not_blank(img: &RgbImage) {
    let background = count(img, exactly((255, 255, 255)));
    assert!(
        background < (WIDTH * HEIGHT) as usize,
        "every pixel is the background"
    );
}

#[test]
fn line_chart_draws_each_series_in_its_colour_with_title_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hr.png");
    let series = vec![
        Series::new(
            "steerfeed",
            vec![(1.0, 0.05), (5.0, 0.12), (10.0, 0.2), (20.0, 0.31)],
        ),
        Series::new(
            "popularity",
            vec![(1.0, 0.01), (5.0, 0.04), (10.0, 0.07), (20.0, 0.1)],
        ),
        Series::new("tradeoff", vec![(0.1, 0.3), (0.5, 0.2), (0.9, 0.1)]).with_labels(vec![
            "w=0.1".into(),
            "w=0.5".into(),
            "w=0.9".into(),
        ]),
    ];
    line_chart(&path, "HR@K by method", "K", "HR@K", &series).unwrap();
    let img = decode(&path);
    not_blank(&img);
    for (i, _) in series.iter().enumerate() {
        let n = count(&img, exactly(PALETTE[i]));
        assert!(
            n > 50,
            "series {i} colour {:?} drawn on {n} pixels",
            PALETTE[i]
        );
    }
    // A colour no series uses stays absent.
    assert_eq!(count(&img, exactly(PALETTE[5])), 0);
    // The title is text drawn with the font in the top band.
    assert!(dark_in_rows(&img, 0..45) > 100, "no title text");
}

#[test]
fn line_chart_accepts_a_single_point_and_equal_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("one.png");
    line_chart(
        &path,
        "one",
        "x",
        "y",
        &[Series::new("a", vec![(3.0, 3.0)])],
    )
    .unwrap();
    let img = decode(&path);
    assert!(
        count(&img, exactly(PALETTE[0])) > 10,
        "the one point is marked"
    );
}

#[test]
fn bar_chart_draws_taller_bars_for_larger_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steer.png");
    let categories = vec![
        "topic".to_string(),
        "mood".to_string(),
        "creator".to_string(),
    ];
    let groups = vec![
        ("before".to_string(), vec![0.1, 0.2, 0.15]),
        ("after".to_string(), vec![0.6, 0.7, 0.65]),
    ];
    bar_chart(&path, "Steering compliance", "share", &categories, &groups).unwrap();
    let img = decode(&path);
    not_blank(&img);
    let before = count(&img, exactly(PALETTE[0]));
    let after = count(&img, exactly(PALETTE[1]));
    assert!(before > 100, "before bars: {before} pixels");
    // Same widths, about four times the heights: the "after" bars cover clearly more.
    assert!(after > 3 * before, "after {after} vs before {before}");
    // Category names are written under the axis (dark pixels near the bottom).
    assert!(
        dark_in_rows(&img, HEIGHT - 60..HEIGHT) > 50,
        "no category labels"
    );
}

#[test]
fn bar_chart_handles_negative_and_zero_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("neg.png");
    let groups = vec![("delta".to_string(), vec![-0.3, 0.0, 0.4])];
    let categories = vec!["a".to_string(), "b".to_string(), "c".to_string()];
    bar_chart(&path, "delta", "change", &categories, &groups).unwrap();
    assert!(count(&decode(&path), exactly(PALETTE[0])) > 100);
}

#[test]
fn histogram_overlays_semi_transparent_series() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.png");
    // Deterministic data: two spreads that overlap in the middle.
    let without: Vec<f64> = (0..400).map(|i| f64::from(i % 40)).collect();
    let with: Vec<f64> = (0..400).map(|i| 10.0 + f64::from(i % 20)).collect();
    let series = vec![
        ("no throttles".to_string(), without),
        ("throttles".to_string(), with),
    ];
    histogram(&path, "Session length", "cards", &series, 20).unwrap();
    let img = decode(&path);
    not_blank(&img);
    // Outlines in the opaque colours.
    for (i, &c) in PALETTE.iter().take(2).enumerate() {
        assert!(count(&img, exactly(c)) > 100, "outline of series {i}");
    }
    // Fills are the colour blended over white, so the background shows through.
    let over_white = |c: (u8, u8, u8)| {
        let mix = |v: u8| {
            (f64::from(v) * HISTOGRAM_ALPHA + 255.0 * (1.0 - HISTOGRAM_ALPHA)).round() as u8
        };
        (mix(c.0), mix(c.1), mix(c.2))
    };
    for (i, &c) in PALETTE.iter().take(2).enumerate() {
        let n = count(&img, near(over_white(c), 3));
        assert!(n > 1000, "translucent fill of series {i}: {n} pixels");
    }
}

#[test]
fn histogram_of_identical_values_still_draws() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("same.png");
    histogram(&path, "same", "x", &[("a".to_string(), vec![7.0; 10])], 5).unwrap();
    assert!(count(&decode(&path), exactly(PALETTE[0])) > 50);
}

#[test]
fn bad_input_is_an_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.png");
    let s = |pts: Vec<(f64, f64)>| Series::new("s", pts);

    let cases: Vec<(&str, PlotError)> = vec![
        (
            "no series",
            line_chart(&path, "t", "x", "y", &[]).unwrap_err(),
        ),
        (
            "empty series",
            line_chart(&path, "t", "x", "y", &[s(vec![])]).unwrap_err(),
        ),
        (
            "NaN",
            line_chart(&path, "t", "x", "y", &[s(vec![(1.0, f64::NAN)])]).unwrap_err(),
        ),
        (
            "infinite x",
            line_chart(&path, "t", "x", "y", &[s(vec![(f64::INFINITY, 1.0)])]).unwrap_err(),
        ),
        (
            "labels",
            line_chart(
                &path,
                "t",
                "x",
                "y",
                &[s(vec![(1.0, 1.0), (2.0, 2.0)]).with_labels(vec!["one".into()])],
            )
            .unwrap_err(),
        ),
        (
            "no categories",
            bar_chart(&path, "t", "y", &[], &[("g".into(), vec![])]).unwrap_err(),
        ),
        (
            "no groups",
            bar_chart(&path, "t", "y", &["a".into()], &[]).unwrap_err(),
        ),
        (
            "mismatch",
            bar_chart(
                &path,
                "t",
                "y",
                &["a".into(), "b".into()],
                &[("g".into(), vec![1.0])],
            )
            .unwrap_err(),
        ),
        (
            "bar NaN",
            bar_chart(
                &path,
                "t",
                "y",
                &["a".into()],
                &[("g".into(), vec![f64::NAN])],
            )
            .unwrap_err(),
        ),
        (
            "zero bins",
            histogram(&path, "t", "x", &[("a".into(), vec![1.0])], 0).unwrap_err(),
        ),
        (
            "no hist series",
            histogram(&path, "t", "x", &[], 5).unwrap_err(),
        ),
        (
            "empty hist",
            histogram(&path, "t", "x", &[("a".into(), vec![])], 5).unwrap_err(),
        ),
        (
            "hist inf",
            histogram(
                &path,
                "t",
                "x",
                &[("a".into(), vec![1.0, f64::NEG_INFINITY])],
                5,
            )
            .unwrap_err(),
        ),
    ];
    for (name, err) in &cases {
        let ok = match *name {
            "no series" | "empty series" | "no categories" | "no groups" | "no hist series"
            | "empty hist" => matches!(err, PlotError::Empty(_)),
            "NaN" | "infinite x" | "bar NaN" | "hist inf" => {
                matches!(err, PlotError::NotFinite { .. })
            }
            "labels" => matches!(
                err,
                PlotError::Mismatch {
                    got: 1,
                    expected: 2,
                    ..
                }
            ),
            "mismatch" => matches!(
                err,
                PlotError::Mismatch {
                    got: 1,
                    expected: 2,
                    ..
                }
            ),
            "zero bins" => matches!(err, PlotError::Invalid(_)),
            _ => false,
        };
        assert!(ok, "{name}: unexpected error {err:?}");
        assert!(!err.to_string().is_empty());
    }
    assert!(!path.exists(), "a failed chart left a file");
}

#[test]
fn a_missing_or_broken_font_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.ttf");
    let err = plot::load_font(&missing).unwrap_err();
    assert!(matches!(err, PlotError::Font { .. }), "{err:?}");
    assert!(err.to_string().contains("setup.sh"), "{err}");

    let junk = dir.path().join("junk.ttf");
    std::fs::write(&junk, b"this is not a font at all").unwrap();
    assert!(matches!(
        plot::load_font(&junk).unwrap_err(),
        PlotError::Font { .. }
    ));

    // A file with a font's magic number but no tables is refused by the parser.
    let fake = dir.path().join("fake.ttf");
    std::fs::write(&fake, [0u8, 1, 0, 0, 0, 0]).unwrap();
    assert!(matches!(
        plot::load_font(&fake).unwrap_err(),
        PlotError::Font { .. }
    ));
}

#[test]
fn the_font_is_looked_for_in_the_setup_cache() {
    let path = plot::font_path();
    assert!(path.ends_with("fonts/DejaVuSans.ttf"), "{}", path.display());
    // The set-up put it there (tests run after scripts/setup.sh), and it loads.
    plot::load_font(&path).unwrap();
}
