// Baseline (any x86-64 / arm64) build of the kernels.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels.h"

namespace moco3 {
namespace isa_base {
#include "kernels.inc"
const KernelTable& table() { return kTable; }
}  // namespace isa_base
}  // namespace moco3
