// The per-image view pipeline of the MoCo v3 augmentation (augment.cc).
#pragma once
#include <cstdint>
#include <vector>

namespace moco3 {

constexpr int kAugmentParamStride = 20;  // src/data/augment.ts PARAM_STRIDE
constexpr int kAugmentBlur = 15;         // P_BLUR
constexpr int kAugmentSigma = 16;        // P_SIGMA
constexpr double kAugmentMaxSigma = 1e6;

struct AugmentScratch {
  std::vector<uint8_t> img, tmp, line, line_out;
  std::vector<uint32_t> acc;
  void reserve(int S, int c);
};

// One view: parameters `p` (one packed row) applied to image p[0] of `images` (n x h x w x c, HWC uint8),
// written as S*S*3 floats to `out`, through `lut` (3 x 256 normalisation table) or raw 0..255 when null.
void augment_image(const uint8_t* images, int h, int w, int c, const double* p, int S, const float* lut, float* out,
                   AugmentScratch& scratch);

}  // namespace moco3
