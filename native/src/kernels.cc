// Picks the kernel build for this CPU: AVX2+FMA where the CPU has it (GCC on x86-64), else baseline.
// One binary is then both portable and fast, without -march=native.
#include "kernels.h"

namespace moco3 {

namespace isa_base {
const KernelTable& table();
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MOCO3_HAVE_AVX2_VARIANT 1
namespace isa_avx2 {
const KernelTable& table();
}
#endif

static bool use_avx2() {
#ifdef MOCO3_HAVE_AVX2_VARIANT
  static const bool yes = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return yes;
#else
  return false;
#endif
}

const KernelTable& kernels() {
#ifdef MOCO3_HAVE_AVX2_VARIANT
  if (use_avx2()) return isa_avx2::table();
#endif
  return isa_base::table();
}

const char* kernels_isa() { return use_avx2() ? "avx2+fma" : "baseline"; }

}  // namespace moco3
