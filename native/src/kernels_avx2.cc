// AVX2+FMA build of the kernels (GCC on x86-64), used when the CPU has both; see kernels.cc.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace moco3 {
namespace isa_avx2 {
#include "kernels.inc"
const KernelTable& table() { return kTable; }
}  // namespace isa_avx2
}  // namespace moco3
#pragma GCC pop_options
#endif
