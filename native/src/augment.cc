// MoCo v3's per-image view pipeline on uint8 pixels, a line-by-line port of src/data/pil.ts and
// augmentImage in src/data/augment.ts (Pillow's resample, blend, HSV and box-blur arithmetic, bit for
// bit). test/data/augment.test.ts checks that this file and the TypeScript give the same bytes.
//
// Floating point must follow the TypeScript exactly: `float` where Pillow computes in C float (the TS
// rounds with Math.fround there), `double` elsewhere, and no contraction into fused multiply-adds.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "augment.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

namespace moco3 {
namespace {

constexpr int kPrecisionBits = 22;

struct Coeffs {
  std::vector<int32_t> bounds;
  std::vector<int32_t> kk;
  int ksize = 0;
};

// Pillow's precompute_coeffs + normalize_coeffs_8bpc, bilinear filter (pil.ts resampleCoeffs).
Coeffs make_coeffs(int in_size, int out_size) {
  Coeffs c;
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double support = filterscale;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.bounds.assign(out_size * 2, 0);
  c.kk.assign(static_cast<size_t>(out_size) * c.ksize, 0);
  std::vector<double> k(c.ksize);
  const double ss = 1.0 / filterscale;
  for (int xx = 0; xx < out_size; xx++) {
    const double center = (xx + 0.5) * scale;
    int xmin = static_cast<int>(std::trunc(center - support + 0.5));
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(std::trunc(center + support + 0.5));
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0;
    for (int x = 0; x < xmax; x++) {
      const double t = std::fabs((x + xmin - center + 0.5) * ss);
      const double w = t < 1 ? 1 - t : 0;
      k[x] = w;
      ww += w;
    }
    for (int x = 0; x < xmax; x++) {
      const double v = ww != 0 ? k[x] / ww : k[x];
      c.kk[static_cast<size_t>(xx) * c.ksize + x] = static_cast<int32_t>(
          v < 0 ? std::trunc(-0.5 + v * (1 << kPrecisionBits)) : std::trunc(0.5 + v * (1 << kPrecisionBits)));
    }
    c.bounds[xx * 2] = xmin;
    c.bounds[xx * 2 + 1] = xmax;
  }
  return c;
}

// Coefficients by (in, out) size, shared by the threads; entries are never removed, so a pointer stays valid.
const Coeffs& coeffs(int in_size, int out_size) {
  static std::mutex m;
  static std::map<int64_t, Coeffs> cache;
  const int64_t key = static_cast<int64_t>(in_size) * 65536 + out_size;
  std::lock_guard<std::mutex> lk(m);
  auto it = cache.find(key);
  if (it == cache.end()) it = cache.emplace(key, make_coeffs(in_size, out_size)).first;
  return it->second;
}

inline uint8_t clip8(int32_t ss) {
  const int32_t v = ss >> kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

// pil.ts resizedCrop
void resized_crop(const uint8_t* src, int src_w, int c, int top, int left, int height, int width, int S,
                  uint8_t* out, std::vector<uint8_t>& tmp) {
  const int64_t stride = static_cast<int64_t>(src_w) * c;
  const bool need_h = width != S;
  const bool need_v = height != S;
  const int32_t half = 1 << (kPrecisionBits - 1);
  if (!need_h && !need_v) {
    for (int y = 0; y < S; y++) std::memcpy(out + static_cast<int64_t>(y) * S * c, src + (top + y) * stride + left * c, S * c);
    return;
  }
  const Coeffs* cy = need_v ? &coeffs(height, S) : nullptr;
  const int y_first = need_v ? cy->bounds[0] : 0;
  const int y_last = need_v ? cy->bounds[(S - 1) * 2] + cy->bounds[(S - 1) * 2 + 1] : S;
  const uint8_t* mid;
  int64_t mid_stride;
  if (need_h) {
    const Coeffs& cx = coeffs(width, S);
    tmp.resize(static_cast<size_t>(S) * std::max(S, height) * c);
    for (int y = y_first; y < y_last; y++) {
      const uint8_t* row = src + (top + y) * stride + left * c;
      uint8_t* o = tmp.data() + static_cast<int64_t>(y - y_first) * S * c;
      for (int xx = 0; xx < S; xx++) {
        const int xmin = cx.bounds[xx * 2];
        const int xmax = cx.bounds[xx * 2 + 1];
        const int32_t* k = cx.kk.data() + static_cast<int64_t>(xx) * cx.ksize;
        for (int ch = 0; ch < c; ch++) {
          int32_t ss = half;
          for (int x = 0; x < xmax; x++) ss += row[(x + xmin) * c + ch] * k[x];
          o[xx * c + ch] = clip8(ss);
        }
      }
    }
    mid = tmp.data() - static_cast<int64_t>(y_first) * S * c;
    mid_stride = static_cast<int64_t>(S) * c;
  } else {
    mid = src + top * stride + left * c;
    mid_stride = stride;
  }
  if (!need_v) {
    for (int y = 0; y < S; y++) std::memcpy(out + static_cast<int64_t>(y) * S * c, mid + y * mid_stride, S * c);
    return;
  }
  const int row_len = S * c;
  for (int yy = 0; yy < S; yy++) {
    const int ymin = cy->bounds[yy * 2];
    const int ymax = cy->bounds[yy * 2 + 1];
    const int32_t* k = cy->kk.data() + static_cast<int64_t>(yy) * cy->ksize;
    uint8_t* o = out + static_cast<int64_t>(yy) * row_len;
    for (int xc = 0; xc < row_len; xc++) {
      int32_t ss = half;
      for (int y = 0; y < ymax; y++) ss += mid[(y + ymin) * mid_stride + xc] * k[y];
      o[xc] = clip8(ss);
    }
  }
}

// Pillow's ImagingBlend, C float arithmetic
inline uint8_t blend_value(int in1, int in2, float alpha) {
  const float t = static_cast<float>(in1) + alpha * static_cast<float>(in2 - in1);
  return t <= 0 ? 0 : t >= 255 ? 255 : static_cast<uint8_t>(t);
}

inline int luma(int r, int g, int b) { return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16; }

// a blend with a constant image is a function of the byte: one table per op
void blend_const(uint8_t* img, int len, int in1, float a) {
  uint8_t lut[256];
  for (int v = 0; v < 256; v++) lut[v] = blend_value(in1, v, a);
  for (int i = 0; i < len; i++) img[i] = lut[img[i]];
}

void adjust_brightness(uint8_t* img, int len, double factor) {
  const float a = static_cast<float>(factor);
  if (a == 1) return;
  blend_const(img, len, 0, a);
}

void adjust_contrast(uint8_t* img, int len, int c, double factor) {
  const float a = static_cast<float>(factor);
  int64_t sum = 0;
  if (c == 3) {
    for (int i = 0; i < len; i += 3) sum += luma(img[i], img[i + 1], img[i + 2]);
  } else {
    for (int i = 0; i < len; i++) sum += img[i];
  }
  const int mean = static_cast<int>(std::trunc(static_cast<double>(sum) / (len / c) + 0.5));
  if (a == 1) return;
  blend_const(img, len, mean, a);
}

void adjust_saturation(uint8_t* img, int len, int c, double factor) {
  const float a = static_cast<float>(factor);
  if (c != 3 || a == 1) return;
  for (int i = 0; i < len; i += 3) {
    const int l = luma(img[i], img[i + 1], img[i + 2]);
    img[i] = blend_value(l, img[i], a);
    img[i + 1] = blend_value(l, img[i + 1], a);
    img[i + 2] = blend_value(l, img[i + 2], a);
  }
}

inline int clamp255(double v) { return v < 0 ? 0 : v > 255 ? 255 : static_cast<int>(v); }

// round() and trunc() of a value in [0, 2^31) without a libm call (baseline x86-64 has no SSE4.1 rounding):
// x - (int)x is exact, so these equal C's round (half away from zero) and trunc bit for bit.
inline int round_pos(double x) {
  const int i = static_cast<int>(x);
  return i + (x - i >= 0.5 ? 1 : 0);
}
inline int trunc_pos(double x) { return static_cast<int>(x); }

// Exact tables for the HSV round trip: every float division and every rounding of Pillow's rgb2hsv /
// hsv2rgb depends on at most two bytes, so it is computed once, with the same expressions.
struct HueTables {
  float div[256][256];        // div[a][b] = float(a) / float(b), b > 0
  float hf[256];              // f of hsv2rgb for h
  int hi[256];                // sector of hsv2rgb for h
  float fs[256];              // float(s / 255.0)
  uint8_t p[256][256];        // p[s][v]
  double one_minus_q[256][256];  // [s][h]: 1.0 - float(fs * f)
  double one_minus_t[256][256];  // [s][h]: 1.0 - fs * (1.0 - f)
  HueTables() {
    for (int x = 0; x < 256; x++) {
      div[x][0] = 0;
      for (int y = 1; y < 256; y++) div[x][y] = static_cast<float>(x) / static_cast<float>(y);
    }
    for (int h = 0; h < 256; h++) {
      hi[h] = static_cast<int>(std::floor(h * 6.0 / 255.0));
      hf[h] = static_cast<float>(h * 6.0 / 255.0 - hi[h]);
    }
    for (int s = 0; s < 256; s++) {
      fs[s] = static_cast<float>(s / 255.0);
      for (int v = 0; v < 256; v++) p[s][v] = static_cast<uint8_t>(clamp255(std::round(v * (1.0 - fs[s]))));
      for (int h = 0; h < 256; h++) {
        one_minus_q[s][h] = 1.0 - static_cast<float>(fs[s] * hf[h]);
        one_minus_t[s][h] = 1.0 - fs[s] * (1.0 - hf[h]);
      }
    }
  }
};

const HueTables& hue_tables() {
  static const HueTables* t = new HueTables();  // built once, thread-safe (magic static)
  return *t;
}

void adjust_hue(uint8_t* img, int len, int c, double factor) {
  if (c != 3) return;
  const HueTables& T = hue_tables();
  const int shift = ((static_cast<int>(std::trunc(factor * 255)) % 256) + 256) % 256;
  for (int i = 0; i < len; i += 3) {
    const int r = img[i], g = img[i + 1], b = img[i + 2];
    const int maxc = std::max(r, std::max(g, b));
    const int minc = std::min(r, std::min(g, b));
    int uh = 0, us = 0;
    const int v = maxc;
    if (minc != maxc) {
      const int icr = maxc - minc;
      const float s = T.div[icr][maxc];
      const float rc = T.div[maxc - r][icr];
      const float gc = T.div[maxc - g][icr];
      const float bc = T.div[maxc - b][icr];
      float h;
      if (r == maxc) h = bc - gc;
      else if (g == maxc) h = static_cast<float>(2.0 + rc - bc);
      else h = static_cast<float>(4.0 + gc - rc);
      // fmod(x, 1.0) for x = h/6 + 1 in [0, 2): exact either way
      const double x = h / 6.0 + 1.0;
      h = static_cast<float>(x >= 1.0 ? x - 1.0 : x);
      // h, s in [0, 1): the products are in [0, 255)
      uh = trunc_pos(h * 255.0);
      us = trunc_pos(s * 255.0);
    }
    uh = (uh + shift) & 255;
    if (us == 0) {
      img[i] = img[i + 1] = img[i + 2] = static_cast<uint8_t>(v);
      continue;
    }
    const int hi = T.hi[uh];
    // C round() and JS Math.round agree on non-negative values
    const uint8_t p = T.p[us][v];
    // v * (1 - ...) is in [0, 255]
    const uint8_t q = static_cast<uint8_t>(round_pos(v * T.one_minus_q[us][uh]));
    const uint8_t t = static_cast<uint8_t>(round_pos(v * T.one_minus_t[us][uh]));
    const uint8_t vv = static_cast<uint8_t>(v);
    switch (hi % 6) {
      case 0: img[i] = vv; img[i + 1] = t; img[i + 2] = p; break;
      case 1: img[i] = q; img[i + 1] = vv; img[i + 2] = p; break;
      case 2: img[i] = p; img[i + 1] = vv; img[i + 2] = t; break;
      case 3: img[i] = p; img[i + 1] = q; img[i + 2] = vv; break;
      case 4: img[i] = t; img[i + 1] = p; img[i + 2] = vv; break;
      default: img[i] = vv; img[i + 1] = p; img[i + 2] = q; break;
    }
  }
}

void to_grayscale(uint8_t* img, int len, int c) {
  if (c != 3) return;
  for (int i = 0; i < len; i += 3) img[i] = img[i + 1] = img[i + 2] = static_cast<uint8_t>(luma(img[i], img[i + 1], img[i + 2]));
}

void solarize(uint8_t* img, int len) {
  for (int i = 0; i < len; i++) if (img[i] >= 128) img[i] = static_cast<uint8_t>(255 - img[i]);
}

float box_radius_for(double radius_d) {
  const float radius = static_cast<float>(radius_d);
  const float sigma2 = radius * radius / 3.0f;
  const float L = static_cast<float>(std::sqrt(12.0 * sigma2 + 1.0));
  const float l = static_cast<float>(std::floor((L - 1.0) / 2.0));
  float a = (2 * l + 1) * (l * (l + 1) - 3 * sigma2);
  a /= 6 * (sigma2 - (l + 1) * (l + 1));
  return l + a;
}

// The four indices of Pillow's ImagingLineBoxBlur (pil.ts boxIndices) for output x: the pixel leaving and
// the pixel entering the box, and the box's two fractional ends. In all of Pillow's phases the left end stays
// at pixel 0 while x < edgeA and the right end at the last pixel once x >= edgeB.
inline void box_indices(int x, int radius, int lastx, int edgeA, int edgeB, int& sub, int& add, int& left, int& right) {
  sub = left = x < edgeA ? 0 : x - radius - 1;
  const bool at_end = x >= edgeB;
  add = at_end ? lastx : x + radius;
  right = at_end ? lastx : x + radius + 1;
}

// One box-blur pass down `in` (len rows of `lanes` bytes), every column at once: on each column the
// arithmetic of Pillow's line blur, with row-contiguous memory access.
void box_blur_lanes(const uint8_t* in, uint8_t* out, int len, int lanes, int radius, uint32_t ww, uint32_t fw, uint32_t* acc) {
  const int lastx = len - 1;
  const int edgeA = std::min(radius + 1, len);
  const int edgeB = std::max(len - radius - 1, 0);
  const uint8_t* first = in;
  const uint8_t* last = in + static_cast<int64_t>(lastx) * lanes;
  for (int j = 0; j < lanes; j++) acc[j] = first[j] * (radius + 1) + last[j] * (radius - edgeA + 1);
  for (int x = 0; x < edgeA - 1; x++) {
    const uint8_t* row = in + static_cast<int64_t>(x) * lanes;
    for (int j = 0; j < lanes; j++) acc[j] += row[j];
  }
  for (int x = 0; x < len; x++) {
    int s, a, l, r;
    box_indices(x, radius, lastx, edgeA, edgeB, s, a, l, r);
    const uint8_t* rs = in + static_cast<int64_t>(s) * lanes;
    const uint8_t* ra = in + static_cast<int64_t>(a) * lanes;
    const uint8_t* rl = in + static_cast<int64_t>(l) * lanes;
    const uint8_t* rr = in + static_cast<int64_t>(r) * lanes;
    uint8_t* o = out + static_cast<int64_t>(x) * lanes;
    for (int j = 0; j < lanes; j++) {
      acc[j] += ra[j] - rs[j];
      o[j] = static_cast<uint8_t>((acc[j] * ww + (rl[j] + rr[j]) * fw + (1u << 23)) >> 24);
    }
  }
}

// Pillow's GaussianBlur; `a_buf`, `b_buf`, `acc_buf`: scratch, grown as needed.
void gaussian_blur(uint8_t* img, int h, int w, int c, double sigma, std::vector<uint8_t>& a_buf, std::vector<uint8_t>& b_buf,
                   std::vector<uint32_t>& acc_buf) {
  const float fr = box_radius_for(sigma);
  if (fr == 0) return;
  const int radius = static_cast<int>(fr);
  const uint32_t ww = static_cast<uint32_t>(16777216.0f / (fr * 2 + 1));
  const uint32_t fw = (16777216u - (radius * 2 + 1) * ww) / 2;
  // As Pillow: 3 passes along the rows, then 3 along the columns. Both run as passes over whole rows of
  // bytes (every column at once): the row passes on the transposed image.
  const int64_t n = static_cast<int64_t>(h) * w * c;
  a_buf.resize(n);
  b_buf.resize(n);
  uint8_t* a = a_buf.data();
  uint8_t* b = b_buf.data();
  acc_buf.resize(static_cast<size_t>(std::max(h, w)) * c);
  uint32_t* acc = acc_buf.data();
  // img (h x w x c) -> a (w x h x c)
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int ch = 0; ch < c; ch++) a[(static_cast<int64_t>(x) * h + y) * c + ch] = img[(static_cast<int64_t>(y) * w + x) * c + ch];
  box_blur_lanes(a, b, w, h * c, radius, ww, fw, acc);
  box_blur_lanes(b, a, w, h * c, radius, ww, fw, acc);
  box_blur_lanes(a, b, w, h * c, radius, ww, fw, acc);
  // b (w x h x c) -> a (h x w x c), then the column passes: a -> b -> a -> img
  for (int x = 0; x < w; x++)
    for (int y = 0; y < h; y++)
      for (int ch = 0; ch < c; ch++) a[(static_cast<int64_t>(y) * w + x) * c + ch] = b[(static_cast<int64_t>(x) * h + y) * c + ch];
  box_blur_lanes(a, b, h, w * c, radius, ww, fw, acc);
  box_blur_lanes(b, a, h, w * c, radius, ww, fw, acc);
  box_blur_lanes(a, img, h, w * c, radius, ww, fw, acc);
}

// packed parameter layout (augment.ts PARAM_STRIDE and P_*)
enum {
  P_SRC = 0, P_TOP, P_LEFT, P_HEIGHT, P_WIDTH, P_JITTER, P_ORDER, P_BRIGHTNESS = 10, P_CONTRAST, P_SATURATION, P_HUE,
  P_GRAY, P_BLUR, P_SIGMA, P_SOLARIZE, P_FLIP
};
static_assert(P_BLUR == kAugmentBlur && P_SIGMA == kAugmentSigma, "augment.h names the blur's parameters as this layout");

}  // namespace

void AugmentScratch::reserve(int S, int c) { img.resize(static_cast<size_t>(S) * S * c); }

void augment_image(const uint8_t* images, int h, int w, int c, const double* p, int S, const float* lut, float* out,
                   AugmentScratch& scratch) {
  const int len = S * S * c;
  scratch.reserve(S, c);
  uint8_t* img = scratch.img.data();
  const uint8_t* src = images + static_cast<int64_t>(p[P_SRC]) * h * w * c;
  resized_crop(src, w, c, static_cast<int>(p[P_TOP]), static_cast<int>(p[P_LEFT]), static_cast<int>(p[P_HEIGHT]),
               static_cast<int>(p[P_WIDTH]), S, img, scratch.tmp);
  if (p[P_JITTER] != 0) {
    for (int k = 0; k < 4; k++) {
      const int op = static_cast<int>(p[P_ORDER + k]);
      if (op == 0) adjust_brightness(img, len, p[P_BRIGHTNESS]);
      else if (op == 1) adjust_contrast(img, len, c, p[P_CONTRAST]);
      else if (op == 2) adjust_saturation(img, len, c, p[P_SATURATION]);
      else adjust_hue(img, len, c, p[P_HUE]);
    }
  }
  if (p[P_GRAY] != 0) to_grayscale(img, len, c);
  if (p[P_BLUR] != 0) gaussian_blur(img, S, S, c, p[P_SIGMA], scratch.line, scratch.line_out, scratch.acc);
  if (p[P_SOLARIZE] != 0) solarize(img, len);
  const bool flip = p[P_FLIP] != 0;
  for (int y = 0; y < S; y++) {
    for (int x = 0; x < S; x++) {
      const uint8_t* px = img + (y * S + (flip ? S - 1 - x : x)) * c;
      float* o = out + (static_cast<int64_t>(y) * S + x) * 3;
      for (int k = 0; k < 3; k++) {
        const uint8_t v = px[c == 3 ? k : 0];
        o[k] = lut ? lut[k * 256 + v] : static_cast<float>(v);
      }
    }
  }
}

}  // namespace moco3
