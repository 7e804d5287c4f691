//! Resizing 8-bit RGB exactly as Pillow's `Image.resize` does for its convolution filters
//! (`Resample.c`): separable passes, horizontal first, coefficients computed in f64 and
//! stored as 22-bit fixed point, rounding and clipping to 8 bits after each pass. Bit-exact
//! equality with Pillow is what makes a torchvision model's answers reproducible here:
//! a one-level difference in a pixel already moves a normalized input by ~0.017.
//!
//! Only a window of the resized image is computed (the centre crop a model looks at); every
//! output pixel depends only on its own coefficients, so the window equals the same region
//! of a full resize.

use std::f64::consts::PI;

pub use crate::infer::manifest::Interpolation as Filter;

fn support(filter: Filter) -> f64 {
    match filter {
        Filter::Box => 0.5,
        Filter::Bilinear | Filter::Hamming => 1.0,
        Filter::Bicubic => 2.0,
        Filter::Lanczos => 3.0,
    }
}

fn weight(filter: Filter, x: f64) -> f64 {
    match filter {
        Filter::Box => {
            if x > -0.5 && x <= 0.5 {
                1.0
            } else {
                0.0
            }
        }
        Filter::Bilinear => {
            let x = x.abs();
            if x < 1.0 { 1.0 - x } else { 0.0 }
        }
        Filter::Hamming => {
            let x = x.abs();
            if x == 0.0 {
                1.0
            } else if x >= 1.0 {
                0.0
            } else {
                let x = x * PI;
                x.sin() / x * (0.54 + 0.46 * x.cos())
            }
        }
        Filter::Bicubic => {
            const A: f64 = -0.5;
            let x = x.abs();
            if x < 1.0 {
                ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
            } else if x < 2.0 {
                (((x - 5.0) * x + 8.0) * x - 4.0) * A
            } else {
                0.0
            }
        }
        Filter::Lanczos => {
            if (-3.0..3.0).contains(&x) {
                sinc(x) * sinc(x / 3.0)
            } else {
                0.0
            }
        }
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * PI;
        x.sin() / x
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Fixed-point weights of every output position along one axis.
struct Coefficients {
    /// First input index each output position reads.
    start: Vec<usize>,
    /// The weights, `len[i]` of them for output position `i`, at `i * stride`.
    weights: Vec<i32>,
    len: Vec<usize>,
    stride: usize,
}

impl Coefficients {
    /// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for resizing `in_size`
    /// samples to `out_size`.
    fn new(in_size: usize, out_size: usize, filter: Filter) -> Self {
        let scale = in_size as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = support(filter) * filterscale;
        let stride = support.ceil() as usize * 2 + 1;
        let mut c = Self {
            start: Vec::with_capacity(out_size),
            weights: vec![0; out_size * stride],
            len: Vec::with_capacity(out_size),
            stride,
        };
        let mut prekk = vec![0.0f64; stride];
        for xx in 0..out_size {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            // C's (int) casts truncate toward zero, as `as` does.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let n = xmax.saturating_sub(xmin).min(stride);
            let mut total = 0.0;
            for (x, w) in prekk.iter_mut().enumerate().take(n) {
                *w = weight(filter, (x as f64 + xmin as f64 - center + 0.5) * ss);
                total += *w;
            }
            let row = &mut c.weights[xx * stride..xx * stride + n];
            for (k, w) in row.iter_mut().zip(&prekk[..n]) {
                let w = if total != 0.0 { w / total } else { *w };
                let fixed = w * f64::from(1u32 << PRECISION_BITS);
                *k = if fixed < 0.0 {
                    (-0.5 + fixed) as i32
                } else {
                    (0.5 + fixed) as i32
                };
            }
            c.start.push(xmin);
            c.len.push(n);
        }
        c
    }

    fn of(&self, i: usize) -> (usize, &[i32]) {
        let w = &self.weights[i * self.stride..i * self.stride + self.len[i]];
        (self.start[i], w)
    }
}

fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// A rectangle of a resized image: `x0..x0 + width`, `y0..y0 + height` in output pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub x0: usize,
    pub y0: usize,
    pub width: usize,
    pub height: usize,
}

/// Resizes the packed RGB image `src` (`src_w × src_h`) to `out_w × out_h` with `filter`
/// and returns the pixels of `window` (packed RGB, `window.width × window.height`), equal
/// to that region of Pillow's `resize((out_w, out_h), filter)`.
///
/// `window` must lie inside the output; `src` must hold `src_w * src_h * 3` bytes.
pub fn resize_window(
    src: &[u8],
    (src_w, src_h): (usize, usize),
    (out_w, out_h): (usize, usize),
    window: Window,
    filter: Filter,
) -> Vec<u8> {
    debug_assert_eq!(src.len(), src_w * src_h * 3);
    debug_assert!(window.x0 + window.width <= out_w && window.y0 + window.height <= out_h);
    let need_horizontal = out_w != src_w;
    let need_vertical = out_h != src_h;
    let horiz = Coefficients::new(src_w, out_w, filter);
    let vert = Coefficients::new(src_h, out_h, filter);
    let rows = window.y0..window.y0 + window.height;

    // Source rows the window's output rows read.
    let (first, last) = if need_vertical {
        let first = rows.clone().map(|y| vert.of(y).0).min().unwrap_or(0);
        let last = rows
            .clone()
            .map(|y| {
                let (start, w) = vert.of(y);
                start + w.len()
            })
            .max()
            .unwrap_or(0);
        (first, last)
    } else {
        (window.y0, window.y0 + window.height)
    };

    // Horizontal pass over the rows needed: `mid` is `(last - first) × window.width`.
    let mid_w = window.width;
    let mut mid = vec![0u8; (last - first) * mid_w * 3];
    for (r, y) in (first..last).enumerate() {
        let src_row = &src[y * src_w * 3..(y + 1) * src_w * 3];
        let out_row = &mut mid[r * mid_w * 3..(r + 1) * mid_w * 3];
        if !need_horizontal {
            out_row.copy_from_slice(&src_row[window.x0 * 3..(window.x0 + mid_w) * 3]);
            continue;
        }
        for (ox, out) in out_row.chunks_exact_mut(3).enumerate() {
            let (start, weights) = horiz.of(window.x0 + ox);
            let mut acc = [1i32 << (PRECISION_BITS - 1); 3];
            let taps = &src_row[start * 3..(start + weights.len()) * 3];
            for (px, &k) in taps.chunks_exact(3).zip(weights) {
                acc[0] += i32::from(px[0]) * k;
                acc[1] += i32::from(px[1]) * k;
                acc[2] += i32::from(px[2]) * k;
            }
            out.copy_from_slice(&[clip8(acc[0]), clip8(acc[1]), clip8(acc[2])]);
        }
    }
    if !need_vertical {
        return mid;
    }

    // Vertical pass over the window's rows.
    let row_len = mid_w * 3;
    let mut out = vec![0u8; window.height * row_len];
    let mut acc = vec![0i32; row_len];
    for (oy, out_row) in out.chunks_exact_mut(row_len).enumerate() {
        let (start, weights) = vert.of(window.y0 + oy);
        acc.fill(1 << (PRECISION_BITS - 1));
        for (i, &k) in weights.iter().enumerate() {
            let r = start + i - first;
            let mid_row = &mid[r * row_len..(r + 1) * row_len];
            for (a, &v) in acc.iter_mut().zip(mid_row) {
                *a += i32::from(v) * k;
            }
        }
        for (o, &a) in out_row.iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(w: usize, h: usize) -> Window {
        Window {
            x0: 0,
            y0: 0,
            width: w,
            height: h,
        }
    }

    #[test]
    fn same_size_is_a_copy() {
        let src: Vec<u8> = (0..4 * 3 * 3).map(|i| i as u8).collect();
        assert_eq!(
            resize_window(&src, (4, 3), (4, 3), full(4, 3), Filter::Bilinear),
            src
        );
    }

    #[test]
    fn a_flat_image_stays_flat_with_every_filter() {
        let src = vec![77u8; 17 * 9 * 3];
        for filter in [
            Filter::Box,
            Filter::Bilinear,
            Filter::Hamming,
            Filter::Bicubic,
            Filter::Lanczos,
        ] {
            for (w, h) in [(5, 3), (40, 21), (17, 4)] {
                let out = resize_window(&src, (17, 9), (w, h), full(w, h), filter);
                assert!(out.iter().all(|&v| v == 77), "{filter:?} {w}×{h}");
            }
        }
    }

    #[test]
    fn a_window_equals_the_same_region_of_a_full_resize() {
        let src: Vec<u8> = (0..31 * 23 * 3).map(|i| (i * 37 % 251) as u8).collect();
        let whole = resize_window(&src, (31, 23), (19, 13), full(19, 13), Filter::Bicubic);
        let win = Window {
            x0: 3,
            y0: 2,
            width: 11,
            height: 7,
        };
        let part = resize_window(&src, (31, 23), (19, 13), win, Filter::Bicubic);
        for y in 0..7 {
            let a = &whole[((y + 2) * 19 + 3) * 3..((y + 2) * 19 + 14) * 3];
            assert_eq!(&part[y * 33..(y + 1) * 33], a, "row {y}");
        }
    }

    #[test]
    fn halving_with_bilinear_matches_pillow() {
        // Pillow 12: Image.frombytes("RGB", (4, 1), bytes([0,0,0, 100,100,100, 200,200,200,
        // 40,40,40])).resize((2, 1), Image.BILINEAR) gives [(71,71,71), (117,117,117)]:
        // downscaling widens the triangle to 3 taps (antialiasing).
        let src = [0, 0, 0, 100, 100, 100, 200, 200, 200, 40, 40, 40];
        let out = resize_window(&src, (4, 1), (2, 1), full(2, 1), Filter::Bilinear);
        assert_eq!(out, [71, 71, 71, 117, 117, 117]);
    }
}
