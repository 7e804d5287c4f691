//! `image.precision`: the bundled EfficientNet-Lite0 served in f16 and in bf16 (candle's
//! generic kernels on the CPU, the ops a GPU runs) answers the fixture photos with the
//! same top-1 as in f32, close in probability; the figures it prints are docs/models.md's.

use crate::support::photos;
use crate::support::{Gateway, Options, runtime};

/// `(photos whose top-5 lists the same classes in the same order, photos with the same
/// top-1, the largest difference of a top-5 confidence)` between two answers.
fn agreement(
    got: &[(String, Vec<(u64, f64)>)],
    want: &[(String, Vec<(u64, f64)>)],
) -> (usize, usize, f64) {
    let mut same_top5 = 0;
    let mut same_top1 = 0;
    let mut largest: f64 = 0.0;
    for ((name, g), (wname, w)) in got.iter().zip(want) {
        assert_eq!(name, wname);
        let ids = |r: &[(u64, f64)]| r.iter().map(|(id, _)| *id).collect::<Vec<_>>();
        same_top5 += usize::from(ids(g) == ids(w));
        same_top1 += usize::from(g[0].0 == w[0].0);
        // A class in both lists: how far its confidence moved.
        for (id, p) in g {
            if let Some((_, q)) = w.iter().find(|(wid, _)| wid == id) {
                largest = largest.max((p - q).abs());
            }
        }
    }
    (same_top5, same_top1, largest)
}

#[test]
fn sixteen_bit_precisions_keep_f32s_top1_on_the_photos() {
    let f32_gw = Gateway::start(Options::default());
    let want = runtime().block_on(photos::top5(&f32_gw));
    drop(f32_gw);
    for (precision, tolerance) in [("f16", 0.02), ("bf16", 0.2)] {
        let gw = Gateway::start(Options::default().env("INFERGATE_IMAGE__PRECISION", precision));
        let got = runtime().block_on(async {
            let meta = gw.get_json("/v2/models/efficientnet-lite0").await;
            assert_eq!(meta["precision"], precision, "{meta}");
            photos::top5(&gw).await
        });
        let (same_top5, same_top1, largest) = agreement(&got, &want);
        eprintln!(
            "precision {precision} against f32, {} photos: top-5 identical on {same_top5}, \
             top-1 on {same_top1}, largest confidence difference {largest:.5}",
            want.len()
        );
        assert_eq!(same_top1, want.len(), "{precision}: {got:?}\nf32: {want:?}");
        assert!(largest <= tolerance, "{precision}: {largest}");
        // Computed in 16 bits indeed: not f32's answers to the last digit.
        assert!(largest > 0.0, "{precision} answered exactly as f32");
    }
}
