//! PIL's separable, antialiased resize in 8-bit fixed point: what `PIL.Image.resize` and
//! torchvision's uint8 CPU resize compute, so what transformers 5 feeds BLIP.

use image::RgbImage;

/// PIL's resampling filters (the `resample` number of an image processor config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Box,
    Bilinear,
    Hamming,
    Bicubic,
    Lanczos,
}

impl Filter {
    pub fn from_pil(resample: u32) -> Option<Filter> {
        match resample {
            1 => Some(Filter::Lanczos),
            2 => Some(Filter::Bilinear),
            3 => Some(Filter::Bicubic),
            4 => Some(Filter::Box),
            5 => Some(Filter::Hamming),
            _ => None,
        }
    }

    fn support(self) -> f64 {
        match self {
            Filter::Box => 0.5,
            Filter::Bilinear | Filter::Hamming => 1.0,
            Filter::Bicubic => 2.0,
            Filter::Lanczos => 3.0,
        }
    }

    fn eval(self, x: f64) -> f64 {
        match self {
            Filter::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Filter::Bilinear => (1.0 - x.abs()).max(0.0),
            Filter::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    let px = x * std::f64::consts::PI;
                    px.sin() / px * (0.54 + 0.46 * px.cos())
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
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let px = x * std::f64::consts::PI;
        px.sin() / px
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// The fixed-point arithmetic of a uint8 resize. Both share the filter taps; they differ in
/// how many bits the taps are rounded to, which moves a rare pixel by one level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Arithmetic {
    /// torch's uint8 antialiased CPU kernel (what torchvision, so transformers 5, runs): taps
    /// as int16 with the most bits that keep the largest tap below 2^15.
    #[default]
    Torch,
    /// Pillow's `Image.resize`: taps with 22 fractional bits.
    Pil,
}

/// Fixed-point filter taps for one axis: for each output index, the first input index, the
/// number of taps, and `ksize` coefficients with `precision` fractional bits.
struct Coeffs {
    bounds: Vec<(usize, usize)>,
    ksize: usize,
    k: Vec<i32>,
    precision: u32,
}

/// PIL's `precompute_coeffs` (Resample.c; torch's `_compute_index_ranges_weights` computes the
/// same taps), then the rounding to fixed point of `arithmetic`.
fn coeffs(in_size: usize, out_size: usize, filter: Filter, arithmetic: Arithmetic) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut weights = vec![0f64; out_size * ksize];
    let mut bounds = Vec::with_capacity(out_size);
    let mut w_max = 0f64;
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C's (int) truncates toward zero.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) - xmin;
        let (xmin, xmax) = (xmin as usize, xmax.max(0) as usize);
        let taps = &mut weights[xx * ksize..xx * ksize + xmax];
        let mut ww = 0.0;
        for (x, t) in taps.iter_mut().enumerate() {
            *t = filter.eval(((x + xmin) as f64 - center + 0.5) * ss);
            ww += *t;
        }
        for t in taps.iter_mut() {
            if ww != 0.0 {
                *t /= ww;
            }
            w_max = w_max.max(*t);
        }
        bounds.push((xmin, xmax));
    }
    let precision = match arithmetic {
        Arithmetic::Pil => PRECISION_BITS,
        Arithmetic::Torch => {
            let mut p = 0;
            while p < 22 && ((0.5 + w_max * f64::from(1u32 << (p + 1))) as i64) < (1 << 15) {
                p += 1;
            }
            p
        }
    };
    let one = f64::from(1u32 << precision);
    let k = weights
        .iter()
        .map(|&w| {
            if w < 0.0 {
                (-0.5 + w * one) as i32
            } else {
                (0.5 + w * one) as i32
            }
        })
        .collect();
    Coeffs {
        bounds,
        ksize,
        k,
        precision,
    }
}

#[inline]
fn clip8(v: i32, precision: u32) -> u8 {
    (v >> precision).clamp(0, 255) as u8
}

/// Resize RGB8 as torchvision's `resize(antialias=True)` does on a uint8 CPU tensor (what
/// transformers 5 runs), which is `PIL.Image.resize` up to the rounding of the taps (see
/// [`Arithmetic`]): a horizontal pass, then a vertical one, each with 8-bit rounding, each
/// skipped when that side keeps its size.
pub fn resize_rgb8(src: &RgbImage, width: u32, height: u32, filter: Filter) -> RgbImage {
    resize_rgb8_with(src, width, height, filter, Arithmetic::Torch)
}

/// [`resize_rgb8`] with a choice of fixed-point arithmetic.
pub fn resize_rgb8_with(
    src: &RgbImage,
    width: u32,
    height: u32,
    filter: Filter,
    arithmetic: Arithmetic,
) -> RgbImage {
    let (w0, h0) = (src.width() as usize, src.height() as usize);
    let (w1, h1) = (width as usize, height as usize);
    let mut cur: Vec<u8> = src.as_raw().clone();
    let mut cur_w = w0;
    if w1 != w0 {
        let c = coeffs(w0, w1, filter, arithmetic);
        let mut out = vec![0u8; w1 * h0 * 3];
        for y in 0..h0 {
            let row = &cur[y * w0 * 3..(y + 1) * w0 * 3];
            let orow = &mut out[y * w1 * 3..(y + 1) * w1 * 3];
            for (xx, &(xmin, n)) in c.bounds.iter().enumerate() {
                let k = &c.k[xx * c.ksize..xx * c.ksize + n];
                let half = (1i32 << c.precision) >> 1;
                let mut ss = [half; 3];
                for (x, &kx) in k.iter().enumerate() {
                    let p = &row[(xmin + x) * 3..(xmin + x) * 3 + 3];
                    ss[0] += i32::from(p[0]) * kx;
                    ss[1] += i32::from(p[1]) * kx;
                    ss[2] += i32::from(p[2]) * kx;
                }
                orow[xx * 3] = clip8(ss[0], c.precision);
                orow[xx * 3 + 1] = clip8(ss[1], c.precision);
                orow[xx * 3 + 2] = clip8(ss[2], c.precision);
            }
        }
        cur = out;
        cur_w = w1;
    }
    if h1 != h0 {
        let c = coeffs(h0, h1, filter, arithmetic);
        let stride = cur_w * 3;
        let mut out = vec![0u8; h1 * stride];
        let mut acc = vec![0i32; stride];
        for (yy, &(ymin, n)) in c.bounds.iter().enumerate() {
            acc.fill((1i32 << c.precision) >> 1);
            let k = &c.k[yy * c.ksize..yy * c.ksize + n];
            for (y, &ky) in k.iter().enumerate() {
                let row = &cur[(ymin + y) * stride..(ymin + y + 1) * stride];
                for (a, &p) in acc.iter_mut().zip(row) {
                    *a += i32::from(p) * ky;
                }
            }
            for (o, &a) in out[yy * stride..(yy + 1) * stride].iter_mut().zip(&acc) {
                *o = clip8(a, c.precision);
            }
        }
        cur = out;
    }
    // The buffer has exactly width × height × 3 bytes by construction.
    RgbImage::from_raw(width, height, cur).unwrap_or_else(|| RgbImage::new(width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_identity_and_constant_stays_constant() {
        let img = RgbImage::from_fn(17, 9, |x, y| image::Rgb([x as u8 * 10, y as u8 * 20, 7]));
        assert_eq!(resize_rgb8(&img, 17, 9, Filter::Bicubic), img);
        let flat = RgbImage::from_pixel(50, 30, image::Rgb([200, 13, 99]));
        for (w, h) in [(64, 64), (7, 5), (50, 64), (13, 30)] {
            let out = resize_rgb8(&flat, w, h, Filter::Bicubic);
            assert!(out.pixels().all(|p| p.0 == [200, 13, 99]), "{w}x{h}");
        }
    }

    #[test]
    fn bicubic_taps_sum_to_one() {
        for (i, o) in [(500, 384), (375, 384), (64, 64), (3, 384)] {
            let c = coeffs(i, o, Filter::Bicubic, Arithmetic::Pil);
            for (xx, &(_, n)) in c.bounds.iter().enumerate() {
                let s: i64 = c.k[xx * c.ksize..xx * c.ksize + n]
                    .iter()
                    .map(|&k| i64::from(k))
                    .sum();
                assert!(
                    (s - (1 << PRECISION_BITS)).abs() <= n as i64,
                    "{i}->{o} at {xx}: {s}"
                );
            }
        }
    }
}
