// N-API entry points of moco3's native CPU kernels. The JavaScript side (src/engine/native-kernels.ts)
// owns shapes and dtypes and allocates every output; these functions only fill outputs in place.
#include <napi.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>
#include <mutex>
#include <thread>
#include <vector>

#include <cerrno>
#include <cstdio>

#ifndef _WIN32
#include <fcntl.h>
#include <unistd.h>
#endif
#ifdef __linux__
#include <csignal>
#include <sched.h>
#include <sys/prctl.h>
#endif

#ifdef MOCO3_ACCELERATE
#include <Accelerate/Accelerate.h>
#else
#include <cblas.h>
#endif

#include "kernels.h"
#include "pool.h"
#include "augment.h"

using namespace moco3;

namespace {

std::atomic<int> g_threads{1};
Pool* g_pool = nullptr;

// Below this many elements (or flops) a loop runs on the calling thread only: waking the pool costs more.
constexpr int64_t kGrainElems = 1 << 15;
constexpr double kGrainFlops = 1 << 18;
// products up to this many flops use the packed small-matrix kernel instead of BLAS
constexpr double kSmallGemmFlops = 2.0 * 96 * 96 * 96;
// the most slices one BLAS product (gemm_split) or one reduction is cut into, whatever the thread count
// (so that their rounding does not depend on it); batched products of fewer than kGemmSplitBatches are
// split one by one
constexpr int64_t kGemmSlices = 16;
constexpr int64_t kGemmMinUnits = 4;
constexpr int64_t kReduceParts = 16;
constexpr int64_t kGemmSplitBatches = 4;

// f(lo, hi, tid) over [0, n); split into a few chunks per thread when `work` reaches `grain`.
template <typename F>
void parallel_for(int64_t n, int64_t work, int64_t grain, F f) {
  const int T = g_pool ? g_pool->threads() : 1;
  if (T <= 1 || n <= 1 || work < grain) {
    f(0, n, 0);
    return;
  }
  int64_t chunks = std::min<int64_t>(n, 4 * T);
  if (grain > 0) chunks = std::min<int64_t>(chunks, std::max<int64_t>(T, work / grain));
  g_pool->run(n, chunks, [](void* ctx, int64_t lo, int64_t hi, int tid) { (*static_cast<F*>(ctx))(lo, hi, tid); }, &f);
}

// f(lo, hi, tid) over [0, n) in exactly `slices` pieces, [n*c/slices, n*(c+1)/slices) as the pool cuts them:
// on the pool, or in order on the caller with one thread. For sums whose rounding depends on where they are
// cut (a BLAS call's rows, a reduction's partial sums): the pieces, and so the bits, are the same whatever
// the thread count.
template <typename F>
void for_slices(int64_t n, int64_t slices, F f) {
  slices = std::max<int64_t>(1, std::min<int64_t>(slices, n));
  if (!g_pool || slices <= 1) {
    for (int64_t c = 0; c < slices; c++) {
      const int64_t lo = n * c / slices, hi = n * (c + 1) / slices;
      if (lo < hi) f(lo, hi, 0);
    }
    return;
  }
  g_pool->run(n, slices, [](void* ctx, int64_t lo, int64_t hi, int tid) { (*static_cast<F*>(ctx))(lo, hi, tid); }, &f);
}

// ------------------------------------------------------------------ argument helpers

// Throws msg, unless an argument's conversion has thrown already (a plain Array where a typed array goes): with
// C++ exceptions off, that error is pending, and a second throw is fatal to the process
bool fail(const Napi::Env& env, const std::string& msg) {
  if (!env.IsExceptionPending()) Napi::Error::New(env, "moco3 native: " + msg).ThrowAsJavaScriptException();
  return false;
}

// Whether a typed array's element type is the one T reads: float (Float32Array), double (Float64Array),
// int32_t (Int32Array), uint8_t (Uint8Array, a bool tensor's), uint32_t (any 4-byte type: a copy of bits).
// Sizes are counted in elements: a Uint8Array where floats go passed every size check, read 4 times its bytes.
template <typename T>
bool element_type_ok(napi_typedarray_type t) {
  if constexpr (std::is_same_v<T, float>) return t == napi_float32_array;
  else if constexpr (std::is_same_v<T, double>) return t == napi_float64_array;
  else if constexpr (std::is_same_v<T, int32_t>) return t == napi_int32_array;
  else if constexpr (std::is_same_v<T, uint8_t>) return t == napi_uint8_array || t == napi_uint8_clamped_array;
  else if constexpr (std::is_same_v<T, uint32_t>) return t == napi_float32_array || t == napi_int32_array || t == napi_uint32_array;
  else return false;
}

// The first element of a typed array of T's element type, whatever holds it: Napi::TypedArray::ArrayBuffer()
// fails on a SharedArrayBuffer (a null pointer, the kernel then wrote through it), napi_get_typedarray_info does
// not. Another element type, or no typed array: a TypeError pending (each kernel checks before it runs) and null.
template <typename T>
T* typed_data(const Napi::Value& v) {
  napi_env env = v.Env();
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  bool is = false;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is || napi_get_typedarray_info(env, v, &type, &length, &data, nullptr, nullptr) != napi_ok ||
      !element_type_ok<T>(type)) {
    if (!v.Env().IsExceptionPending()) Napi::TypeError::New(v.Env(), "moco3 native: an argument is not a typed array of the element type the kernel reads").ThrowAsJavaScriptException();
    return nullptr;
  }
  return static_cast<T*>(data);
}

int64_t typed_len(const Napi::Value& v) { return static_cast<int64_t>(v.As<Napi::TypedArray>().ElementLength()); }

// A list of sizes (a shape, a box's begin, axes, a permutation): whole numbers from 0 to 2^53, each read once and
// as far as the list's length when it was given (a getter that grows it is read no further, one that throws is
// its error). Else an error pending, and an empty list.
std::vector<int64_t> int_list(const Napi::Value& v) {
  Napi::Env env = v.Env();
  if (!v.IsArray()) {
    fail(env, "a list of sizes is not an array");
    return {};
  }
  Napi::Array arr = v.As<Napi::Array>();
  const uint32_t n = arr.Length();
  std::vector<int64_t> out(n);
  for (uint32_t i = 0; i < n; i++) {
    Napi::Value e = arr.Get(i);
    if (env.IsExceptionPending()) return {};
    const double d = e.IsNumber() ? e.As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 0 && d <= 9007199254740992.0 && d == std::floor(d))) {
      fail(env, "a size that is not a whole number from 0 to 2^53");
      return {};
    }
    out[i] = static_cast<int64_t>(d);
  }
  return out;
}

// The product of n sizes, or -1 where it passes int64: sizes up to 2^53 each can multiply to 2^64 + 4, which wraps
// to 4 and passed a size check of 4 elements, the strides then reaching far past the buffer.
int64_t checked_product(const int64_t* v, size_t n) {
  int64_t p = 1;
  for (size_t i = 0; i < n; i++) {
    if (__builtin_mul_overflow(p, v[i], &p)) return -1;
  }
  return p;
}

// After a kernel's arguments are read: whether one of them failed (a TypeError pending), so that nothing runs.
bool args_failed(const Napi::Env& env) { return env.IsExceptionPending(); }

// ------------------------------------------------------------------ unary

// f(start, end) over [0, n) in chunks of 4096 elements, the chunks spread over the threads
template <class F>
void for_chunks(int64_t n, F f) {
  const int64_t chunk = 4096;
  const int64_t nchunks = (n + chunk - 1) / chunk;
  parallel_for(nchunks, n, kGrainElems, [&](int64_t lo, int64_t hi, int) { f(lo * chunk, std::min(n, hi * chunk)); });
}

Napi::Value Unary(const Napi::CallbackInfo& info) {
  const int op = info[0].As<Napi::Number>().Int32Value();
  const float* x = typed_data<float>(info[1]);
  float* o = typed_data<float>(info[2]);
  const float alpha = info[3].As<Napi::Number>().FloatValue();
  if (args_failed(info.Env())) return info.Env().Undefined();
  const int64_t n = typed_len(info[1]);
  if (typed_len(info[2]) != n || op < 0 || op >= U_COUNT) {
    fail(info.Env(), "unary: bad arguments");
    return info.Env().Undefined();
  }
  const KernelTable& K = kernels();
  for_chunks(n, [&](int64_t s, int64_t e) { K.unary(op, x + s, o + s, e - s, alpha); });
  return info.Env().Undefined();
}

// gelu(x, dy, out): GELU forward of x into out (dy null), or its backward dy * gelu'(x)
Napi::Value Gelu(const Napi::CallbackInfo& info) {
  const float* x = typed_data<float>(info[0]);
  const bool backward = info[1].IsTypedArray();
  const float* dy = backward ? typed_data<float>(info[1]) : nullptr;
  float* o = typed_data<float>(info[2]);
  if (args_failed(info.Env())) return info.Env().Undefined();
  const int64_t n = typed_len(info[0]);
  if (typed_len(info[2]) != n || (backward && typed_len(info[1]) != n)) {
    fail(info.Env(), "gelu: size mismatch");
    return info.Env().Undefined();
  }
  const KernelTable& K = kernels();
  for_chunks(n, [&](int64_t s, int64_t e) { K.gelu_range(x + s, dy ? dy + s : nullptr, o + s, e - s); });
  return info.Env().Undefined();
}

// ------------------------------------------------------------------ broadcasting binary

// Collapses the broadcast of shapes a, b (right-aligned) into as few dims as possible. Returns rank,
// fills dims and element strides (0 on broadcast dims). Rank 0 output is rank 1 with dim 1.
int collapse_broadcast(const std::vector<int64_t>& ash, const std::vector<int64_t>& bsh, int64_t* dims,
                       int64_t* as, int64_t* bs) {
  const int r = static_cast<int>(std::max(ash.size(), bsh.size()));
  std::vector<int64_t> ad(r, 1), bd(r, 1), od(r);
  for (size_t i = 0; i < ash.size(); i++) ad[r - ash.size() + i] = ash[i];
  for (size_t i = 0; i < bsh.size(); i++) bd[r - bsh.size() + i] = bsh[i];
  // strides of a and b in their own (padded) layouts
  std::vector<int64_t> ast(r), bst(r);
  int64_t sa = 1, sb = 1;
  for (int d = r - 1; d >= 0; d--) {
    ast[d] = sa;
    bst[d] = sb;
    sa *= ad[d];
    sb *= bd[d];
    // sizes that do not broadcast (neither equal nor one of them 1): the smaller operand was read past its end
    if (ad[d] != bd[d] && ad[d] != 1 && bd[d] != 1) return -2;
    // a size 0 against 1 is 0 (the larger was taken)
    od[d] = ad[d] == 1 ? bd[d] : ad[d];
  }
  int rank = 0;
  for (int d = 0; d < r; d++) {
    if (od[d] == 1) continue;
    const int64_t a_s = ad[d] == 1 ? 0 : ast[d];
    const int64_t b_s = bd[d] == 1 ? 0 : bst[d];
    if (rank > 0) {
      // merge into previous dim when both operands continue contiguously (or both stay broadcast)
      const int p = rank - 1;
      const bool aok = (as[p] == 0 && a_s == 0) || (as[p] != 0 && a_s != 0 && as[p] == a_s * od[d]);
      const bool bok = (bs[p] == 0 && b_s == 0) || (bs[p] != 0 && b_s != 0 && bs[p] == b_s * od[d]);
      if (aok && bok) {
        dims[p] *= od[d];
        as[p] = a_s;
        bs[p] = b_s;
        continue;
      }
    }
    if (rank >= MAX_RANK) return -1;
    dims[rank] = od[d];
    as[rank] = a_s;
    bs[rank] = b_s;
    rank++;
  }
  if (rank == 0) {
    dims[0] = 1;
    as[0] = 0;
    bs[0] = 0;
    rank = 1;
  }
  return rank;
}

template <bool CMP>
Napi::Value BinaryImpl(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int op = info[0].As<Napi::Number>().Int32Value();
  const float* a = typed_data<float>(info[1]);
  const std::vector<int64_t> ash = int_list(info[2]);
  const float* b = typed_data<float>(info[3]);
  const std::vector<int64_t> bsh = int_list(info[4]);
  float* of = CMP ? nullptr : typed_data<float>(info[5]);
  uint8_t* ou = CMP ? typed_data<uint8_t>(info[5]) : nullptr;
  if (args_failed(env)) return env.Undefined();
  int64_t dims[MAX_RANK], as[MAX_RANK], bs[MAX_RANK];
  const int rank = collapse_broadcast(ash, bsh, dims, as, bs);
  if (rank == -2) {
    fail(env, "binary: shapes that do not broadcast");
    return env.Undefined();
  }
  if (rank < 0 || op < 0 || op >= (CMP ? static_cast<int>(C_COUNT) : static_cast<int>(B_COUNT))) {
    fail(env, "binary: unsupported arguments");
    return env.Undefined();
  }
  const int64_t total = checked_product(dims, rank);
  // the operands hold what their shapes say (the strides above read that far)
  const int64_t an = checked_product(ash.data(), ash.size()), bn = checked_product(bsh.data(), bsh.size());
  if (total < 0 || an < 0 || bn < 0) {
    fail(env, "binary: sizes whose product passes 2^63");
    return env.Undefined();
  }
  if (typed_len(info[5]) != total) {
    fail(env, "binary: output size mismatch");
    return env.Undefined();
  }
  if (typed_len(info[1]) != an || typed_len(info[3]) != bn) {
    fail(env, "binary: operand size mismatch");
    return env.Undefined();
  }
  if (total == 0) return env.Undefined();
  const KernelTable& K = kernels();
  // a flat op is split into chunks; otherwise rows of the inner dim are the parallel unit
  if (rank == 1) {
    const int64_t n = dims[0];
    const int64_t chunk = 4096;
    const int64_t nch = (n + chunk - 1) / chunk;
    parallel_for(nch, n, kGrainElems, [&](int64_t lo, int64_t hi, int) {
      const int64_t s = lo * chunk, e = std::min(n, hi * chunk);
      int64_t dd[1] = {e - s};
      const float* ap = a + (as[0] ? s : 0);
      const float* bp = b + (bs[0] ? s : 0);
      if (CMP) K.compare_rows(op, ap, bp, ou + s, 1, dd, as, bs, 0, 1);
      else K.binary_rows(op, ap, bp, of + s, 1, dd, as, bs, 0, 1);
    });
  } else {
    const int64_t rows = total / dims[rank - 1];
    parallel_for(rows, total, kGrainElems, [&](int64_t lo, int64_t hi, int) {
      if (CMP) K.compare_rows(op, a, b, ou, rank, dims, as, bs, lo, hi);
      else K.binary_rows(op, a, b, of, rank, dims, as, bs, lo, hi);
    });
  }
  return env.Undefined();
}

// ------------------------------------------------------------------ softmax (last axis)

Napi::Value Softmax(const Napi::CallbackInfo& info) {
  const float* x = typed_data<float>(info[0]);
  float* o = typed_data<float>(info[1]);
  const int64_t n = info[2].As<Napi::Number>().Int64Value();
  if (args_failed(info.Env())) return info.Env().Undefined();
  const int64_t total = typed_len(info[0]);
  if (n <= 0 || total % n != 0 || typed_len(info[1]) != total) {
    fail(info.Env(), "softmax: bad arguments");
    return info.Env().Undefined();
  }
  const KernelTable& K = kernels();
  parallel_for(total / n, total * 8, kGrainElems, [&](int64_t lo, int64_t hi, int) { K.softmax_rows(x, o, n, lo, hi); });
  return info.Env().Undefined();
}

// ------------------------------------------------------------------ reductions

// How many pieces a reduction of `total` elements cuts the outermost of its collapsed dims (`dim0`) into:
// partitions of the outermost dim; when it is reduced each one needs its own accumulator. Their number follows
// the shape alone, not the thread count, so that the partial sums, and the bits, do not either. (The LayerNorm
// kernels' row means take their cuts from here too: they must sum as the Mean kernel does.)
int64_t reduce_parts(int64_t total, int64_t dim0, bool outerReduced, int64_t outSize) {
  int64_t nparts = total >= kGrainElems ? std::min<int64_t>(dim0, kReduceParts) : 1;
  if (outerReduced) nparts = std::max<int64_t>(1, std::min<int64_t>(nparts, (int64_t(1) << 22) / std::max<int64_t>(outSize, 1)));
  return nparts;
}

// Reduces x (of `shape`) over `axes` into out (of the kept dims' size): op 0 sum, 1 max, 2 min; mean divides the
// sum by the reduced count. The error, or null. Shared by Reduce and the LayerNorm backward's column sums (which
// must give the bits of the Sum kernel's, partitions and all).
const char* reduce_core(int op, const float* x, int64_t xlen, const std::vector<int64_t>& shape, const std::vector<int64_t>& axes,
                        float* out, int64_t outlen, bool mean) {
  if (op != R_SUM && op != R_MAX && op != R_MIN) return "reduce: unknown op";
  const int r = static_cast<int>(shape.size());
  std::vector<uint8_t> isred(r, 0);
  for (int64_t ax : axes) {
    if (ax < 0 || ax >= r) return "reduce: bad axis";
    isred[ax] = 1;
  }
  // collapse: drop size-1 dims, merge neighbours with the same flag
  int64_t dims[MAX_RANK];
  uint8_t red[MAX_RANK];
  int rank = 0;
  int64_t total = 1, outSize = 1;
  for (int d = 0; d < r; d++) {
    if (__builtin_mul_overflow(total, shape[d], &total) || (!isred[d] && __builtin_mul_overflow(outSize, shape[d], &outSize))) {
      return "reduce: sizes whose product passes 2^63";
    }
    if (shape[d] == 1) continue;
    if (rank > 0 && red[rank - 1] == isred[d]) {
      dims[rank - 1] *= shape[d];
      continue;
    }
    if (rank >= MAX_RANK) return "reduce: rank too high";
    dims[rank] = shape[d];
    red[rank] = isred[d];
    rank++;
  }
  if (outlen != outSize || xlen != total) return "reduce: size mismatch";
  const int64_t count = outSize == 0 ? 0 : total / std::max<int64_t>(outSize, 1);
  if (total == 0) {
    const float fill = op == R_SUM ? (mean ? NAN : 0.0f) : (op == R_MAX ? -INFINITY : INFINITY);
    for (int64_t i = 0; i < outSize; i++) out[i] = fill;
    return nullptr;
  }
  bool anyReduced = false;
  for (int d = 0; d < rank; d++) anyReduced |= red[d] != 0;
  if (!anyReduced) {  // nothing to reduce (no axes, or only size-1 axes)
    std::memcpy(out, x, total * sizeof(float));
    return nullptr;
  }
  int64_t ostr[MAX_RANK];
  {
    int64_t s = 1;
    for (int d = rank - 1; d >= 0; d--) {
      ostr[d] = red[d] ? 0 : s;
      if (!red[d]) s *= dims[d];
    }
  }
  const KernelTable& K = kernels();
  const bool outerReduced = red[0] != 0;
  const int64_t nparts = reduce_parts(total, dims[0], outerReduced, outSize);
  const int64_t nacc = outerReduced ? nparts : 1;
  const float init = op == R_MAX ? -INFINITY : INFINITY;
  std::vector<double> accd;
  std::vector<float> accf;
  if (op == R_SUM) accd.assign(static_cast<size_t>(outSize * nacc), 0.0);
  else accf.assign(static_cast<size_t>(outSize * nacc), init);
  for_slices(nparts, nparts, [&](int64_t t0, int64_t t1, int) {
    for (int64_t t = t0; t < t1; t++) {
      const int64_t lo = dims[0] * t / nparts, hi = dims[0] * (t + 1) / nparts;
      const size_t off = outerReduced ? static_cast<size_t>(t * outSize) : 0;
      K.reduce_block(op, x, op == R_SUM ? accd.data() + off : nullptr, op == R_SUM ? nullptr : accf.data() + off,
                     rank, dims, red, ostr, lo, hi);
    }
  });
  if (op == R_SUM) {
    const double scale = mean ? 1.0 / static_cast<double>(count) : 1.0;
    for (int64_t i = 0; i < outSize; i++) {
      double s = accd[i];
      for (int64_t a = 1; a < nacc; a++) s += accd[static_cast<size_t>(a * outSize + i)];
      out[i] = static_cast<float>(mean ? s * scale : s);
    }
  } else {
    for (int64_t i = 0; i < outSize; i++) {
      float m = accf[i];
      for (int64_t a = 1; a < nacc; a++) {
        const float v = accf[static_cast<size_t>(a * outSize + i)];
        if (v != v || m != m) m = v + m;
        else m = op == R_MAX ? (v > m ? v : m) : (v < m ? v : m);
      }
      out[i] = m;
    }
  }
  return nullptr;
}

// reduce(op, x, shape, axes, out, mean): op 0 sum, 1 max, 2 min; mean divides the sum by the reduced count.
Napi::Value Reduce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int op = info[0].As<Napi::Number>().Int32Value();
  const float* x = typed_data<float>(info[1]);
  const std::vector<int64_t> shape = int_list(info[2]), axes = int_list(info[3]);
  float* out = typed_data<float>(info[4]);
  const bool mean = info[5].As<Napi::Boolean>().Value();
  if (args_failed(env)) return env.Undefined();
  const char* err = reduce_core(op, x, typed_len(info[1]), shape, axes, out, typed_len(info[4]), mean);
  if (err) fail(env, err);
  return env.Undefined();
}

// ------------------------------------------------------------------ LayerNorm

// How many pieces the Mean kernel cuts a row's sum into (reduce_core): a row among others is summed whole (the
// rows are its partitions), a single row is the collapsed [D], its outermost dim reduced to one output
int64_t ln_parts(int64_t rows, int64_t D) { return rows == 1 && D > 1 ? reduce_parts(D, D, true, 1) : 1; }

// layerNorm(x, gamma, beta, eps, y, mean, rstd): x, y [rows, D]; gamma, beta [D]; mean, rstd [rows]
Napi::Value LayerNorm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const float* x = typed_data<float>(info[0]);
  const float* g = typed_data<float>(info[1]);
  const float* b = typed_data<float>(info[2]);
  const float eps = info[3].As<Napi::Number>().FloatValue();
  float* y = typed_data<float>(info[4]);
  float* mean = typed_data<float>(info[5]);
  float* rstd = typed_data<float>(info[6]);
  if (args_failed(env)) return env.Undefined();
  const int64_t D = typed_len(info[1]), rows = typed_len(info[5]);
  if (D < 1 || rows < 1 || typed_len(info[2]) != D || typed_len(info[0]) != rows * D || typed_len(info[4]) != rows * D ||
      typed_len(info[6]) != rows) {
    fail(env, "layerNorm: size mismatch");
    return env.Undefined();
  }
  const KernelTable& K = kernels();
  const int64_t parts = ln_parts(rows, D);
  parallel_for(rows, rows * D * 4, kGrainElems, [&](int64_t lo, int64_t hi, int) {
    std::vector<float> work(static_cast<size_t>(D));
    K.layernorm_fwd_rows(x, g, b, eps, y, mean, rstd, D, parts, lo, hi, work.data());
  });
  return env.Undefined();
}

// layerNormBwd(dy, x, mean, rstd, gamma, dx, dgamma, dbeta, scratch): scratch [rows, D] takes dy·x̂ before its
// column sum; the column sums are the Sum kernel's (reduce_core), partitions and all
Napi::Value LayerNormBwd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const float* dy = typed_data<float>(info[0]);
  const float* x = typed_data<float>(info[1]);
  const float* mean = typed_data<float>(info[2]);
  const float* rstd = typed_data<float>(info[3]);
  const float* g = typed_data<float>(info[4]);
  float* dx = typed_data<float>(info[5]);
  float* dg = typed_data<float>(info[6]);
  float* db = typed_data<float>(info[7]);
  float* scratch = typed_data<float>(info[8]);
  if (args_failed(env)) return env.Undefined();
  const int64_t D = typed_len(info[4]), rows = typed_len(info[2]), n = rows * D;
  if (D < 1 || rows < 1 || typed_len(info[0]) != n || typed_len(info[1]) != n || typed_len(info[3]) != rows ||
      typed_len(info[5]) != n || typed_len(info[6]) != D || typed_len(info[7]) != D || typed_len(info[8]) != n) {
    fail(env, "layerNormBwd: size mismatch");
    return env.Undefined();
  }
  const KernelTable& K = kernels();
  const int64_t parts = ln_parts(rows, D);
  parallel_for(rows, n * 6, kGrainElems, [&](int64_t lo, int64_t hi, int) {
    std::vector<float> work(static_cast<size_t>(3 * D));
    K.layernorm_bwd_rows(dy, x, mean, rstd, g, dx, scratch, D, parts, lo, hi, work.data());
  });
  const std::vector<int64_t> shape = {rows, D}, axes = {0};
  const char* err = reduce_core(R_SUM, scratch, n, shape, axes, dg, D, false);
  if (!err) err = reduce_core(R_SUM, dy, n, shape, axes, db, D, false);
  if (err) fail(env, err);
  return env.Undefined();
}

// ------------------------------------------------------------------ transpose (any 4-byte dtype)

Napi::Value Transpose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const uint32_t* x = typed_data<uint32_t>(info[0]);
  const std::vector<int64_t> shape = int_list(info[1]);
  const std::vector<int64_t> perm = int_list(info[2]);
  uint32_t* o = typed_data<uint32_t>(info[3]);
  if (args_failed(env)) return env.Undefined();
  const int r = static_cast<int>(shape.size());
  if (static_cast<int>(perm.size()) != r) {
    fail(env, "transpose: perm length");
    return env.Undefined();
  }
  const int64_t total = checked_product(shape.data(), shape.size());
  if (total < 0) {
    fail(env, "transpose: sizes whose product passes 2^63");
    return env.Undefined();
  }
  if (typed_len(info[0]) != total || typed_len(info[3]) != total) {
    fail(env, "transpose: size mismatch");
    return env.Undefined();
  }
  if (total == 0) return env.Undefined();
  // input strides, then output dims in perm order; drop size-1 dims and merge runs that stay adjacent
  std::vector<int64_t> istr(r);
  {
    int64_t s = 1;
    for (int d = r - 1; d >= 0; d--) {
      istr[d] = s;
      s *= shape[d];
    }
  }
  int64_t odims[MAX_RANK], ist[MAX_RANK];
  int rank = 0;
  std::vector<bool> used(r, false);
  for (int k = 0; k < r; k++) {
    const int64_t p = perm[k];
    // each axis once: a repeated one would read past the input
    if (p < 0 || p >= r || used[p]) {
      fail(env, "transpose: bad perm");
      return env.Undefined();
    }
    used[p] = true;
    if (shape[p] == 1) continue;
    if (rank > 0 && ist[rank - 1] == istr[p] * shape[p]) {
      odims[rank - 1] *= shape[p];
      ist[rank - 1] = istr[p];
      continue;
    }
    if (rank >= MAX_RANK) {
      fail(env, "transpose: rank too high");
      return env.Undefined();
    }
    odims[rank] = shape[p];
    ist[rank] = istr[p];
    rank++;
  }
  const KernelTable& K = kernels();
  if (rank <= 1) {
    std::memcpy(o, x, total * 4);
    return env.Undefined();
  }
  // a batch of plain 2-D transposes: [P, R, C] -> [P, C, R]
  if (rank <= 3 && ist[rank - 1] == odims[rank - 2] && ist[rank - 2] == 1 &&
      (rank == 2 || ist[0] == odims[1] * odims[2])) {
    const int64_t C = odims[rank - 2], R = odims[rank - 1];
    const int64_t P = rank == 3 ? odims[0] : 1;
    if (P >= 2) {
      parallel_for(P, total, kGrainElems, [&](int64_t lo, int64_t hi, int) { K.transpose_planes(x, o, R, C, lo, hi); });
    } else {
      // split one plane by output rows (input columns), 8 at a time
      parallel_for((C + 7) / 8, total, kGrainElems, [&](int64_t lo, int64_t hi, int) {
        K.transpose_block(x, o, R, C, lo * 8, std::min(C, hi * 8));
      });
    }
    return env.Undefined();
  }
  const int64_t rows = total / odims[rank - 1];
  parallel_for(rows, total, kGrainElems, [&](int64_t lo, int64_t hi, int) { K.transpose_rows(x, o, rank, odims, ist, lo, hi); });
  return env.Undefined();
}

// ------------------------------------------------------------------ matmul

inline void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
                  int64_t ldb, float* C, int64_t ldc) {
  if (K == 0) {
    for (int64_t i = 0; i < M; i++) std::memset(C + i * ldc, 0, N * sizeof(float));
    return;
  }
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(M),
              static_cast<int>(N), static_cast<int>(K), 1.0f, A, static_cast<int>(lda), B, static_cast<int>(ldb), 0.0f, C,
              static_cast<int>(ldc));
}

// One [M,K]x[K,N] product split over threads by rows of C (or columns when M is small). The slices follow the
// product's shape alone, never the thread count: each element of C is summed by the same BLAS call (whose
// rounding depends on the slice it is in) on 1 thread or 16, so a run gives the same bits with any
// MOCO3_THREADS, and a resume on a machine of another core count goes on as the run would have.
void gemm_split(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, const float* B, float* C) {
  const int64_t lda = ta ? M : K, ldb = tb ? K : N;
  const double flops = 2.0 * M * N * K;
  const bool byRows = M >= N || M >= 64;
  const int64_t units = byRows ? (M + 7) / 8 : (N + 7) / 8;  // keep slices a multiple of 8 wide
  const double grain = static_cast<double>(kGrainFlops) * 8;
  // at least kGemmMinUnits units (32 rows) a slice: each slice packs the whole of the other operand again, which
  // a thin slice of a tall-K product (a weight gradient: 64 rows, K = batch x tokens) pays more for than it gains
  const int64_t slices = flops < grain ? 1 : std::min<int64_t>({kGemmSlices, std::max<int64_t>(1, units / kGemmMinUnits), std::max<int64_t>(2, static_cast<int64_t>(flops / grain))});
  for_slices(units, slices, [&](int64_t lo, int64_t hi, int) {
    if (byRows) {
      const int64_t m0 = lo * 8, m1 = std::min(M, hi * 8);
      const float* Ap = ta ? A + m0 : A + m0 * lda;
      sgemm(ta, tb, m1 - m0, N, K, Ap, lda, B, ldb, C + m0 * N, N);
    } else {
      const int64_t n0 = lo * 8, n1 = std::min(N, hi * 8);
      const float* Bp = tb ? B + n0 * ldb : B + n0;
      sgemm(ta, tb, M, n1 - n0, K, A, lda, Bp, ldb, C + n0, N);
    }
  });
}

// matmul(a, b, out, nb, M, N, K, transA, transB, aStride, bStride, aIdx, bIdx)
// Batch i uses a + aIdx[i]*M*K (or i*aStride when aIdx is null) and likewise for b.
Napi::Value MatMul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const float* A = typed_data<float>(info[0]);
  const float* B = typed_data<float>(info[1]);
  float* C = typed_data<float>(info[2]);
  int64_t nb = info[3].As<Napi::Number>().Int64Value();
  int64_t M = info[4].As<Napi::Number>().Int64Value();
  const int64_t N = info[5].As<Napi::Number>().Int64Value();
  const int64_t K = info[6].As<Napi::Number>().Int64Value();
  const bool ta = info[7].As<Napi::Boolean>().Value();
  const bool tb = info[8].As<Napi::Boolean>().Value();
  const int64_t aStride = info[9].As<Napi::Number>().Int64Value();
  const int64_t bStride = info[10].As<Napi::Number>().Int64Value();
  const int32_t* aIdx = info[11].IsTypedArray() ? typed_data<int32_t>(info[11]) : nullptr;
  const int32_t* bIdx = info[12].IsTypedArray() ? typed_data<int32_t>(info[12]) : nullptr;
  if (args_failed(env)) return env.Undefined();
  // sizes that are negative, or whose product wraps around (2^62 batches of 0x4 checked as 0 elements), are no shape
  int64_t nbM = 0, out = 0, sizeA = 0, sizeB = 0;
  if (nb < 0 || M < 0 || N < 0 || K < 0 || aStride < 0 || bStride < 0 || __builtin_mul_overflow(nb, M, &nbM) ||
      __builtin_mul_overflow(nbM, N, &out) || __builtin_mul_overflow(M, K, &sizeA) || __builtin_mul_overflow(K, N, &sizeB) ||
      // BLAS takes its sizes and leading dimensions as int
      std::max({M, N, K}) > INT32_MAX) {
    fail(env, "matmul: bad sizes");
    return env.Undefined();
  }
  if (typed_len(info[2]) != out) {
    fail(env, "matmul: output size mismatch");
    return env.Undefined();
  }
  if (nb == 0 || M == 0 || N == 0) return env.Undefined();
  // whether every batch's operand lies within arr (its furthest start plus its size, neither wrapping around)
  auto covers = [&](const Napi::Value& arr, const int32_t* idx, const Napi::Value& idxArr, int64_t stride, int64_t size) {
    int64_t furthest = 0, end = 0;
    if (idx) {
      if (typed_len(idxArr) < nb) return false;
      for (int64_t i = 0; i < nb; i++) {
        int64_t at = 0;
        if (idx[i] < 0 || __builtin_mul_overflow(static_cast<int64_t>(idx[i]), size, &at)) return false;
        furthest = std::max(furthest, at);
      }
    } else {
      if (stride < 0 || (nb > 0 && __builtin_mul_overflow(nb - 1, stride, &furthest))) return false;
    }
    return !__builtin_add_overflow(furthest, size, &end) && end <= typed_len(arr);
  };
  if (!covers(info[0], aIdx, info[11], aStride, sizeA) || !covers(info[1], bIdx, info[12], bStride, sizeB)) {
    fail(env, "matmul: operand size mismatch");
    return env.Undefined();
  }
  // b shared by every batch and a contiguous, untransposed: one tall product
  if (nb > 1 && !aIdx && !bIdx && bStride == 0 && !ta && aStride == M * K) {
    M *= nb;
    nb = 1;
  }
  const int64_t mk = M * K, kn = K * N, mn = M * N;
  auto aPtr = [&](int64_t i) { return A + (aIdx ? static_cast<int64_t>(aIdx[i]) * mk : i * aStride); };
  auto bPtr = [&](int64_t i) { return B + (bIdx ? static_cast<int64_t>(bIdx[i]) * kn : i * bStride); };
  const double perFlops = 2.0 * M * N * K;
  const int64_t lda = ta ? M : K, ldb = tb ? K : N;
  const KernelTable& KT = kernels();
  if (perFlops <= kSmallGemmFlops && M <= 1024 && N <= 1024 && K <= 1024) {
    // BLAS's per-call cost dominates small products: our own kernel, batches spread over threads
    const size_t need = static_cast<size_t>(K * ((N + 15) & ~int64_t(15)) + (ta ? M * K : 0));
    parallel_for(nb, static_cast<int64_t>(perFlops * nb), static_cast<int64_t>(kGrainFlops), [&](int64_t lo, int64_t hi, int) {
      thread_local std::vector<float> work;
      if (work.size() < need) work.resize(need);
      for (int64_t i = lo; i < hi; i++) KT.small_gemm(ta, tb, M, N, K, aPtr(i), lda, bPtr(i), ldb, C + i * mn, N, work.data());
    });
  } else if (nb == 1) {
    gemm_split(ta, tb, M, N, K, aPtr(0), bPtr(0), C);
  } else if (perFlops >= 4e6 && nb < kGemmSplitBatches) {
    // a few large products: each split (as one product is); more: one BLAS call each, the batches over threads
    for (int64_t i = 0; i < nb; i++) gemm_split(ta, tb, M, N, K, aPtr(i), bPtr(i), C + i * mn);
  } else {
    parallel_for(nb, static_cast<int64_t>(perFlops * nb), static_cast<int64_t>(kGrainFlops), [&](int64_t lo, int64_t hi, int) {
      for (int64_t i = lo; i < hi; i++) sgemm(ta, tb, M, N, K, aPtr(i), lda, bPtr(i), ldb, C + i * mn, N);
    });
  }
  return env.Undefined();
}

// ------------------------------------------------------------------ box copy (slice, split, concat, pad)

// copyBox(x, xShape, xBegin, size, out, outShape, outBegin): out[outBegin + i] = x[xBegin + i] for every
// index i of the box `size`; 4-byte elements of any dtype.
Napi::Value CopyBox(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const uint32_t* x = typed_data<uint32_t>(info[0]);
  const std::vector<int64_t> xsh = int_list(info[1]);
  const std::vector<int64_t> xb = int_list(info[2]);
  const std::vector<int64_t> sz = int_list(info[3]);
  uint32_t* o = typed_data<uint32_t>(info[4]);
  const std::vector<int64_t> osh = int_list(info[5]);
  const std::vector<int64_t> ob = int_list(info[6]);
  if (args_failed(env)) return env.Undefined();
  const int r = static_cast<int>(sz.size());
  if (static_cast<int>(xsh.size()) != r || static_cast<int>(xb.size()) != r || static_cast<int>(osh.size()) != r ||
      static_cast<int>(ob.size()) != r) {
    fail(env, "copyBox: rank mismatch");
    return env.Undefined();
  }
  for (int d = 0; d < r; d++) {
    if (xb[d] < 0 || ob[d] < 0 || xb[d] + sz[d] > xsh[d] || ob[d] + sz[d] > osh[d]) {
      fail(env, "copyBox: box out of bounds");
      return env.Undefined();
    }
  }
  const int64_t xtot = checked_product(xsh.data(), r), otot = checked_product(osh.data(), r), total = checked_product(sz.data(), r);
  if (xtot < 0 || otot < 0 || total < 0) {
    fail(env, "copyBox: sizes whose product passes 2^63");
    return env.Undefined();
  }
  if (typed_len(info[0]) != xtot || typed_len(info[4]) != otot) {
    fail(env, "copyBox: size mismatch");
    return env.Undefined();
  }
  if (total == 0) return env.Undefined();
  std::vector<int64_t> xst(r), ost(r);
  int64_t xoff = 0, ooff = 0;
  {
    int64_t a = 1, b = 1;
    for (int d = r - 1; d >= 0; d--) {
      xst[d] = a;
      ost[d] = b;
      a *= xsh[d];
      b *= osh[d];
      xoff += xb[d] * xst[d];
      ooff += ob[d] * ost[d];
    }
  }
  int64_t dims[MAX_RANK], xs[MAX_RANK], os[MAX_RANK];
  int rank = 0;
  for (int d = 0; d < r; d++) {
    if (sz[d] == 1) continue;
    if (rank > 0 && xs[rank - 1] == xst[d] * sz[d] && os[rank - 1] == ost[d] * sz[d]) {
      dims[rank - 1] *= sz[d];
      xs[rank - 1] = xst[d];
      os[rank - 1] = ost[d];
      continue;
    }
    if (rank >= MAX_RANK) {
      fail(env, "copyBox: rank too high");
      return env.Undefined();
    }
    dims[rank] = sz[d];
    xs[rank] = xst[d];
    os[rank] = ost[d];
    rank++;
  }
  if (rank == 0) {
    o[ooff] = x[xoff];
    return env.Undefined();
  }
  // the innermost dim must be contiguous in both; otherwise append a unit dim
  if (xs[rank - 1] != 1 || os[rank - 1] != 1) {
    if (rank >= MAX_RANK) {
      fail(env, "copyBox: rank too high");
      return env.Undefined();
    }
    dims[rank] = 1;
    xs[rank] = 1;
    os[rank] = 1;
    rank++;
  }
  const KernelTable& K = kernels();
  const int64_t rows = total / dims[rank - 1];
  parallel_for(rows, total, kGrainElems * 4, [&](int64_t lo, int64_t hi, int) {
    K.copy_box_rows(x + xoff, o + ooff, rank, dims, xs, os, lo, hi);
  });
  return env.Undefined();
}

// biasAct(out, n, bias|null, act, alpha): out viewed as rows of n; adds bias (length n or 1), then an
// activation given as a unary op code (-1 for none), in place.
Napi::Value BiasAct(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  float* o = typed_data<float>(info[0]);
  const int64_t n = info[1].As<Napi::Number>().Int64Value();
  const int act = info[3].As<Napi::Number>().Int32Value();
  const float alpha = info[4].As<Napi::Number>().FloatValue();
  const float* bias = info[2].IsTypedArray() ? typed_data<float>(info[2]) : nullptr;
  if (args_failed(env)) return env.Undefined();
  const int64_t total = typed_len(info[0]);
  if (n <= 0 || total % n != 0 || act >= U_COUNT) {
    fail(env, "biasAct: bad arguments");
    return env.Undefined();
  }
  const KernelTable& K = kernels();
  if (bias) {
    const int64_t nbias = typed_len(info[2]);
    if (nbias != n && nbias != 1) {
      fail(env, "biasAct: bias length");
      return env.Undefined();
    }
    parallel_for(total / n, total, kGrainElems, [&](int64_t lo, int64_t hi, int) { K.add_bias_rows(o, bias, n, nbias, lo, hi); });
  }
  if (act >= 0) {
    const int64_t chunk = 4096;
    const int64_t nch = (total + chunk - 1) / chunk;
    parallel_for(nch, total, kGrainElems, [&](int64_t lo, int64_t hi, int) {
      const int64_t s = lo * chunk, e = std::min(total, hi * chunk);
      K.unary(act, o + s, o + s, e - s, alpha);
    });
  }
  return env.Undefined();
}

// ------------------------------------------------------------------ augmentation

struct AugmentArgs {
  const uint8_t* src;
  int64_t n;
  int h, w, c;
  const double* params;
  int64_t count;
  int S;
  const float* lut;
  float* out;
};

// Reads and checks augment's arguments: (src u8, n, h, w, c, params f64, count, S, lut f32|null, out f32).
bool parse_augment(const Napi::CallbackInfo& info, AugmentArgs& a) {
  Napi::Env env = info.Env();
  a.src = typed_data<uint8_t>(info[0]);
  a.n = info[1].As<Napi::Number>().Int64Value();
  a.h = info[2].As<Napi::Number>().Int32Value();
  a.w = info[3].As<Napi::Number>().Int32Value();
  a.c = info[4].As<Napi::Number>().Int32Value();
  a.params = typed_data<double>(info[5]);
  a.count = info[6].As<Napi::Number>().Int64Value();
  a.S = info[7].As<Napi::Number>().Int32Value();
  a.lut = info[8].IsNull() || info[8].IsUndefined() ? nullptr : typed_data<float>(info[8]);
  a.out = typed_data<float>(info[9]);
  if (args_failed(env)) return false;
  // sizes whose products wrap around (an image size of 2^31 - 1) or go backwards (a negative count) are none:
  // S within augment.ts's limit, the counts checked by their products
  int64_t srcLen = 0, paramLen = 0, outLen = 0;
  if ((a.c != 1 && a.c != 3) || a.h < 1 || a.w < 1 || a.S < 1 || a.S > 4096 || a.n < 0 || a.count < 0 ||
      __builtin_mul_overflow(a.n, static_cast<int64_t>(a.h) * a.w * a.c, &srcLen) ||
      __builtin_mul_overflow(a.count, static_cast<int64_t>(kAugmentParamStride), &paramLen) ||
      __builtin_mul_overflow(a.count, static_cast<int64_t>(a.S) * a.S * 3, &outLen) || typed_len(info[0]) != srcLen ||
      typed_len(info[5]) < paramLen || typed_len(info[9]) < outLen || (a.lut && typed_len(info[8]) < 3 * 256)) {
    return fail(env, "augment: bad arguments");
  }
  for (int64_t j = 0; j < a.count; j++) {
    const double* p = a.params + j * kAugmentParamStride;
    if (!(p[0] >= 0 && p[0] < a.n && p[1] >= 0 && p[2] >= 0 && p[3] >= 1 && p[4] >= 1 && p[1] + p[3] <= a.h && p[2] + p[4] <= a.w)) {
      return fail(env, "augment: a crop box outside its image");
    }
    // the blur's box radius is an int, its weights 24-bit fixed point (augment.cc gaussian_blur)
    if (p[kAugmentBlur] != 0 && !(p[kAugmentSigma] > 0 && p[kAugmentSigma] <= kAugmentMaxSigma)) {
      return fail(env, "augment: a blur sigma that is not a number from 0 to 1e6");
    }
  }
  return true;
}

// One image per task across the pool (run alone on the calling thread when the pool is busy).
void run_augment(const AugmentArgs& a) {
  const int64_t per_image = static_cast<int64_t>(a.S) * a.S * 40 + static_cast<int64_t>(a.h) * a.w;
  parallel_for(a.count, a.count * per_image, kGrainElems, [&](int64_t lo, int64_t hi, int) {
    AugmentScratch scratch;
    for (int64_t j = lo; j < hi; j++) {
      augment_image(a.src, a.h, a.w, a.c, a.params + j * kAugmentParamStride, a.S, a.lut, a.out + j * a.S * a.S * 3, scratch);
    }
  });
}

// augment(...): the views of src/data/augment.ts augmentPacked, written to `out` before it returns.
Napi::Value Augment(const Napi::CallbackInfo& info) {
  AugmentArgs a;
  if (parse_augment(info, a)) run_augment(a);
  return info.Env().Undefined();
}

// augmentAsync(...): the same on a libuv thread; a promise that resolves once `out` is written. The
// arrays are held by references until then; the parameters and the table, checked here, are copied: the
// caller may change its arrays meanwhile, and a crop box changed after the check would be read out of bounds.
// The references keep the arrays, not their memory where it moves: the caller must not transfer or detach
// src's or out's buffer before the promise settles (src/data/augment.ts never does).
class AugmentWorker : public Napi::AsyncWorker {
 public:
  AugmentWorker(Napi::Env env, const AugmentArgs& a, const Napi::CallbackInfo& info)
      : Napi::AsyncWorker(env, "moco3.augment"),
        args_(a),
        params_(a.params, a.params + a.count * kAugmentParamStride),
        lut_(a.lut ? std::vector<float>(a.lut, a.lut + 3 * 256) : std::vector<float>()),
        deferred_(Napi::Promise::Deferred::New(env)) {
    args_.params = params_.data();
    args_.lut = a.lut ? lut_.data() : nullptr;
    for (int i : {0, 9}) {
      if (info[i].IsObject()) refs_.push_back(Napi::Persistent(info[i].As<Napi::Object>()));
    }
  }
  Napi::Promise Promise() const { return deferred_.Promise(); }
  void Execute() override { run_augment(args_); }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  AugmentArgs args_;
  std::vector<double> params_;
  std::vector<float> lut_;
  Napi::Promise::Deferred deferred_;
  std::vector<Napi::ObjectReference> refs_;
};

Napi::Value AugmentAsync(const Napi::CallbackInfo& info) {
  AugmentArgs a;
  if (!parse_augment(info, a)) return info.Env().Undefined();
  auto* worker = new AugmentWorker(info.Env(), a, info);
  Napi::Promise p = worker->Promise();
  worker->Queue();
  return p;
}

// ------------------------------------------------------------------ setup

std::string blas_name() {
#ifdef MOCO3_ACCELERATE
  return "Accelerate";
#else
  const char* cfg = openblas_get_config();
  std::string s = cfg ? cfg : "OpenBLAS";
  const char* core = openblas_get_corename();
  if (core) s += std::string(" (") + core + ")";
  return s;
#endif
}

void set_threads(int n) {
  if (!g_pool) g_pool = new Pool();
  g_pool->resize(std::max(1, n));
  g_threads = g_pool->threads();
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  set_threads(info[0].As<Napi::Number>().Int32Value());
  return Napi::Number::New(info.Env(), g_threads.load());
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("blas", blas_name());
  o.Set("threads", g_threads.load());
  o.Set("isa", kernels_isa());
  o.Set("parallelJobs", static_cast<double>(g_pool ? g_pool->parallel_jobs() : 0));
  o.Set("guardedJobs", static_cast<double>(g_pool ? g_pool->guarded_jobs() : 0));
  return o;
}

// Holding what native libraries write to the process's stderr (fd 2), e.g. Dawn's warnings while it probes
// a Vulkan adapter: holdStderr() points fd 2 at a temporary file, releaseStderr() points it back and returns
// what was written meanwhile, for the caller to filter and pass on. For the main thread only (not nested,
// not from workers); both are no-ops on Windows.
#ifndef _WIN32
FILE* g_held = nullptr;
int g_saved_fd = -1;

int dup2_retry(int from, int to) {
  int r;
  do r = dup2(from, to); while (r < 0 && errno == EINTR);
  return r;
}
#endif

// dieWithParent(parentPid): this process is killed (SIGKILL) when its parent ends, even while it is stopped
// (SIGSTOP), when nothing of its own can run: a supervised sweep's child, stopped with its supervisor by
// Ctrl-Z, whose supervisor is then killed outright. False where the system has no such request (not Linux).
Napi::Value DieWithParent(const Napi::CallbackInfo& info) {
#ifdef __linux__
  const pid_t parent = static_cast<pid_t>(info[0].As<Napi::Number>().Int32Value());
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) return Napi::Boolean::New(info.Env(), false);
  // the parent ended before the request: no signal will come for it
  if (getppid() != parent) raise(SIGKILL);
  return Napi::Boolean::New(info.Env(), true);
#else
  return Napi::Boolean::New(info.Env(), false);
#endif
}

Napi::Value HoldStderr(const Napi::CallbackInfo& info) {
#ifndef _WIN32
  if (g_held) return Napi::Boolean::New(info.Env(), false);
  FILE* f = std::tmpfile();
  if (!f) return Napi::Boolean::New(info.Env(), false);
  std::fflush(stderr);
  const int saved = fcntl(2, F_DUPFD_CLOEXEC, 3);
  if (saved < 0 || dup2_retry(fileno(f), 2) < 0) {
    if (saved >= 0) close(saved);
    std::fclose(f);
    return Napi::Boolean::New(info.Env(), false);
  }
  g_held = f;
  g_saved_fd = saved;
  return Napi::Boolean::New(info.Env(), true);
#else
  return Napi::Boolean::New(info.Env(), false);
#endif
}

Napi::Value ReleaseStderr(const Napi::CallbackInfo& info) {
  std::string out;
#ifndef _WIN32
  if (g_held) {
    std::fflush(stderr);
    // the saved descriptor is the only way back to the real stderr: closed only once fd 2 points at it again
    if (dup2_retry(g_saved_fd, 2) < 0) {
      out = "moco3: could not restore stderr after holding it\n";
    } else {
      close(g_saved_fd);
      g_saved_fd = -1;
    }
    std::rewind(g_held);
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, g_held)) > 0) out.append(buf, n);
    if (g_saved_fd < 0) {
      std::fclose(g_held);
      g_held = nullptr;
    }
  }
#endif
  return Napi::String::New(info.Env(), out);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
#ifndef MOCO3_ACCELERATE
  // BLAS runs single-threaded inside our own threads; two pools on two cores would fight.
  openblas_set_num_threads(1);
#endif
  // one pool per process, made by the first environment that loads the addon (worker_threads share it)
  static std::once_flag once;
  std::call_once(once, [&env] {
    int n = static_cast<int>(std::thread::hardware_concurrency());
    if (n <= 0) n = 1;
#ifdef __linux__
    // the cores this process may run on (taskset, a Slurm task's or a container's cpuset), not all the machine's
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (sched_getaffinity(0, sizeof(allowed), &allowed) == 0 && CPU_COUNT(&allowed) > 0) n = std::min(n, CPU_COUNT(&allowed));
#endif
    if (const char* e = std::getenv("MOCO3_THREADS")) {
      // 1..256 (the pool's ceiling); 0, empty or not a number: the default (moco3 checks the value before it loads the addon)
      char* end = nullptr;
      const long v = std::strtol(e, &end, 10);
      while (end != nullptr && (*end == ' ' || *end == '\t' || *end == '\n')) end++;  // "1 " as moco3's check reads it
      if (end != e && *end == '\0' && v > 0) n = static_cast<int>(std::min<long>(v, 256));
    }
    set_threads(n);
    // stop the workers when that environment goes away (process exit)
    napi_add_env_cleanup_hook(env, [](void*) { if (g_pool) g_pool->resize(1); }, nullptr);
  });
  exports.Set("unary", Napi::Function::New(env, Unary));
  exports.Set("gelu", Napi::Function::New(env, Gelu));
  exports.Set("layerNorm", Napi::Function::New(env, LayerNorm));
  exports.Set("layerNormBwd", Napi::Function::New(env, LayerNormBwd));
  exports.Set("binary", Napi::Function::New(env, BinaryImpl<false>));
  exports.Set("compare", Napi::Function::New(env, BinaryImpl<true>));
  exports.Set("softmax", Napi::Function::New(env, Softmax));
  exports.Set("reduce", Napi::Function::New(env, Reduce));
  exports.Set("transpose", Napi::Function::New(env, Transpose));
  exports.Set("matmul", Napi::Function::New(env, MatMul));
  exports.Set("biasAct", Napi::Function::New(env, BiasAct));
  exports.Set("copyBox", Napi::Function::New(env, CopyBox));
  exports.Set("augment", Napi::Function::New(env, Augment));
  exports.Set("augmentAsync", Napi::Function::New(env, AugmentAsync));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  exports.Set("info", Napi::Function::New(env, Info));
  exports.Set("holdStderr", Napi::Function::New(env, HoldStderr));
  exports.Set("dieWithParent", Napi::Function::New(env, DieWithParent));
  exports.Set("releaseStderr", Napi::Function::New(env, ReleaseStderr));
  return exports;
}

}  // namespace

NODE_API_MODULE(moco3_native, Init)
