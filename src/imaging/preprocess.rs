//! An upright RGB image to a model's input tensor, as torchvision's
//! `Resize(S)` → `CenterCrop(h, w)` → `ToTensor()` → `Normalize(mean, std)` computes it on a
//! PIL image: the same sizes (truncated aspect, round-half-even crop offsets, zero padding
//! when the image is smaller than the crop), Pillow's resampling bit for bit, and the same
//! float32 operations in the same order.

use image::RgbImage;

use crate::imaging::resample::{Window, resize_window};
use crate::infer::manifest::Preprocess;

/// Size after torchvision's `Resize(shorter)` of a `w × h` image: the shorter side becomes
/// `shorter`, the longer keeps the aspect ratio, truncated.
pub fn resized_size(w: u32, h: u32, shorter: u32) -> (u32, u32) {
    let (short, long) = if w <= h { (w, h) } else { (h, w) };
    // Python: int(shorter * long / short), a true division of exact integers.
    let new_long = (f64::from(shorter) * f64::from(long) / f64::from(short)) as u32;
    if w <= h {
        (shorter, new_long)
    } else {
        (new_long, shorter)
    }
}

/// Where a centre crop of `crop` samples sits along an axis of `size` samples, as
/// torchvision computes it: the offset of the crop in the (padded) image, and the padding
/// before the image when the image is the smaller one.
fn crop_axis(size: u32, crop: u32) -> (u32, u32) {
    if crop > size {
        // Padded by (crop - size) / 2 before; the crop is then the whole padded axis.
        (0, (crop - size) / 2)
    } else {
        // Python's round(): half to even.
        let offset = (f64::from(size - crop) / 2.0).round_ties_even() as u32;
        (offset, 0)
    }
}

/// The model input for `image`: `3 × crop[0] × crop[1]` f32, channels first.
pub fn prepare(image: &RgbImage, p: &Preprocess) -> Vec<f32> {
    let (src_w, src_h) = image.dimensions();
    let (out_w, out_h) = resized_size(src_w, src_h, p.resize_shorter);
    let [crop_h, crop_w] = p.crop;
    let (x0, pad_left) = crop_axis(out_w, crop_w);
    let (y0, pad_top) = crop_axis(out_h, crop_h);
    let window = Window {
        x0: x0 as usize,
        y0: y0 as usize,
        width: out_w.min(crop_w) as usize,
        height: out_h.min(crop_h) as usize,
    };
    let pixels = resize_window(
        image.as_raw(),
        (src_w as usize, src_h as usize),
        (out_w as usize, out_h as usize),
        window,
        p.interpolation,
    );

    let (crop_w, crop_h) = (crop_w as usize, crop_h as usize);
    let plane = crop_w * crop_h;
    let mut out = vec![0.0f32; 3 * plane];
    for c in 0..3 {
        // Zero padding is a black pixel: it is normalized like any other value.
        let normalize = |v: u8| (f32::from(v) / p.scale_divisor - p.mean[c]) / p.std[c];
        out[c * plane..(c + 1) * plane].fill(normalize(0));
        for y in 0..window.height {
            let src_row = &pixels[y * window.width * 3..(y + 1) * window.width * 3];
            let dst = (c * plane) + (y + pad_top as usize) * crop_w + pad_left as usize;
            for (x, px) in src_row.chunks_exact(3).enumerate() {
                out[dst + x] = normalize(px[c]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::manifest::Interpolation;

    #[test]
    fn sizes_follow_torchvision() {
        assert_eq!(resized_size(451, 300, 256), (384, 256));
        assert_eq!(resized_size(300, 451, 256), (256, 384));
        assert_eq!(resized_size(800, 556, 256), (368, 256));
        assert_eq!(resized_size(256, 256, 256), (256, 256));
        assert_eq!(resized_size(23, 17, 256), (346, 256));
    }

    #[test]
    fn crop_offsets_round_half_to_even_and_pad_when_small() {
        assert_eq!(crop_axis(341, 224), (58, 0)); // 58.5 → 58
        assert_eq!(crop_axis(343, 224), (60, 0)); // 59.5 → 60
        assert_eq!(crop_axis(224, 224), (0, 0));
        assert_eq!(crop_axis(200, 224), (0, 12));
        assert_eq!(crop_axis(201, 224), (0, 11));
    }

    #[test]
    fn a_small_image_is_padded_with_normalized_black() {
        let p = Preprocess {
            resize_shorter: 4,
            interpolation: Interpolation::Bilinear,
            crop: [6, 6],
            scale_divisor: 255.0,
            mean: [0.5, 0.5, 0.5],
            std: [0.5, 0.5, 0.5],
        };
        let white = RgbImage::from_pixel(4, 4, image::Rgb([255, 255, 255]));
        let t = prepare(&white, &p);
        assert_eq!(t.len(), 3 * 36);
        assert_eq!(t[0], -1.0, "padding");
        assert_eq!(t[6 + 1], 1.0, "image starts at (1, 1)");
        assert_eq!(t[5 * 6 + 5], -1.0);
    }
}
