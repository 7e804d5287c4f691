//! Sliding-window geometry shared by the convolutions and the pooling: padding rules and
//! output sizes.

use candle_core::{Result, bail};

/// Zero (or "ignored", for max pooling) border around each image plane, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Pads {
    pub(crate) top: usize,
    pub(crate) bottom: usize,
    pub(crate) left: usize,
    pub(crate) right: usize,
}

impl Pads {
    pub(crate) fn uniform(p: usize) -> Self {
        Self {
            top: p,
            bottom: p,
            left: p,
            right: p,
        }
    }

    pub(crate) fn is_zero(&self) -> bool {
        *self == Self::default()
    }

    /// The same border on all four sides, if it is one (candle's `conv2d` only takes that).
    pub(crate) fn symmetric(&self) -> Option<usize> {
        (self.top == self.bottom && self.left == self.right && self.top == self.left)
            .then_some(self.top)
    }
}

/// How a layer pads its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Padding {
    /// `p` pixels on every side (PyTorch's `padding=p`).
    Symmetric(usize),
    /// TensorFlow's `SAME`: output `ceil(i / s)`, the odd pixel of padding after, computed
    /// from the actual input size (what `Conv2dStaticSamePadding` does for its fixed size).
    TfSame,
}

/// TF-SAME padding of one axis: `(before, after)`.
pub(crate) fn tf_same(i: usize, k: usize, s: usize) -> (usize, usize) {
    let out = i.div_ceil(s);
    let total = (out.saturating_sub(1) * s + k).saturating_sub(i);
    (total / 2, total - total / 2)
}

/// A square `k×k` window moved by `stride`, over a padded input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) k: usize,
    pub(crate) stride: usize,
    pub(crate) pads: Pads,
}

impl Window {
    /// The window of a layer with `padding`, on an `h×w` input.
    pub(crate) fn new(k: usize, stride: usize, padding: Padding, h: usize, w: usize) -> Self {
        let pads = match padding {
            Padding::Symmetric(p) => Pads::uniform(p),
            Padding::TfSame => {
                let (top, bottom) = tf_same(h, k, stride);
                let (left, right) = tf_same(w, k, stride);
                Pads {
                    top,
                    bottom,
                    left,
                    right,
                }
            }
        };
        Self { k, stride, pads }
    }

    /// Output `(height, width)` on an `h×w` input; an error when the window does not fit.
    pub(crate) fn out_hw(&self, h: usize, w: usize) -> Result<(usize, usize)> {
        if self.k == 0 || self.stride == 0 {
            bail!(
                "window {}x{} with stride {} is empty",
                self.k,
                self.k,
                self.stride
            )
        }
        let ph = h + self.pads.top + self.pads.bottom;
        let pw = w + self.pads.left + self.pads.right;
        if h == 0 || w == 0 || ph < self.k || pw < self.k {
            bail!(
                "input {h}x{w} (padded {ph}x{pw}) is smaller than the {}x{} window",
                self.k,
                self.k
            )
        }
        Ok((
            (ph - self.k) / self.stride + 1,
            (pw - self.k) / self.stride + 1,
        ))
    }
}

/// Output positions `o` in `0..out` whose input `o*s + tap - pad` lies in `0..len`, as a
/// range (empty when none do).
pub(crate) fn valid_outputs(
    out: usize,
    len: usize,
    s: usize,
    tap: usize,
    pad: usize,
) -> std::ops::Range<usize> {
    // o*s + tap >= pad  <=>  o >= ceil((pad - tap) / s)
    let lo = pad.saturating_sub(tap).div_ceil(s);
    // o*s + tap - pad <= len - 1  <=>  o <= (len - 1 + pad - tap) / s
    let hi = match (len + pad).checked_sub(tap + 1) {
        Some(v) => (v / s + 1).min(out),
        None => 0,
    };
    lo.min(hi)..hi
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tf_same_padding_matches_the_formula() {
        // stride-2 3×3 on 224: 0 before, 1 after (the checkpoint's stem).
        assert_eq!(tf_same(224, 3, 2), (0, 1));
        assert_eq!(tf_same(112, 3, 1), (1, 1));
        assert_eq!(tf_same(112, 5, 2), (1, 2));
        assert_eq!(tf_same(7, 5, 1), (2, 2));
        assert_eq!(tf_same(7, 1, 1), (0, 0));
        // Odd sizes: out = ceil(i / s) always.
        for i in 1..40 {
            for k in [1, 3, 5, 7] {
                for s in [1, 2] {
                    let (b, a) = tf_same(i, k, s);
                    let w = Window {
                        k,
                        stride: s,
                        pads: Pads {
                            top: b,
                            bottom: a,
                            left: b,
                            right: a,
                        },
                    };
                    assert_eq!(w.out_hw(i, i).unwrap(), (i.div_ceil(s), i.div_ceil(s)));
                }
            }
        }
    }

    #[test]
    fn valid_outputs_is_exactly_the_in_range_taps() {
        for len in 1..12 {
            for s in 1..4 {
                for k in 1..8 {
                    for pad in 0..4 {
                        let padded = len + 2 * pad;
                        if padded < k {
                            continue;
                        }
                        let out = (padded - k) / s + 1;
                        for tap in 0..k {
                            let r = valid_outputs(out, len, s, tap, pad);
                            for o in 0..out {
                                let i = (o * s + tap) as isize - pad as isize;
                                let inside = i >= 0 && (i as usize) < len;
                                assert_eq!(
                                    r.contains(&o),
                                    inside,
                                    "len {len} s {s} k {k} pad {pad} tap {tap} o {o}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn too_small_input_is_an_error() {
        let w = Window {
            k: 7,
            stride: 2,
            pads: Pads::default(),
        };
        assert!(w.out_hw(5, 9).is_err());
        assert!(w.out_hw(0, 9).is_err());
    }
}
