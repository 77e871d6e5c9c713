// Kernel table shared by the instruction-set variants in kernels.cc.
#pragma once
#include <cstdint>

namespace moco3 {

constexpr int MAX_RANK = 8;

enum UnaryOp {
  U_NEG = 0, U_EXP, U_LOG, U_SQRT, U_RSQRT, U_SQUARE, U_ABS, U_RELU, U_STEP, U_ERF, U_SIGMOID, U_TANH,
  U_RECIPROCAL, U_RELU6, U_LEAKYRELU, U_ELU, U_LOG1P, U_SIN, U_COS, U_SOFTPLUS, U_COUNT
};
enum BinaryOp { B_ADD = 0, B_SUB, B_MUL, B_DIV, B_MAX, B_MIN, B_SQDIFF, B_POW, B_COUNT };
enum CompareOp { C_GREATER = 0, C_GREATER_EQ, C_LESS, C_LESS_EQ, C_EQUAL, C_NOT_EQUAL, C_COUNT };
enum ReduceOp { R_SUM = 0, R_MAX, R_MIN };

struct KernelTable {
  void (*unary)(int op, const float* x, float* o, int64_t n, float alpha);
  void (*binary_rows)(int op, const float* a, const float* b, float* o, int rank, const int64_t* dims,
                      const int64_t* as, const int64_t* bs, int64_t r0, int64_t r1);
  void (*compare_rows)(int op, const float* a, const float* b, uint8_t* o, int rank, const int64_t* dims,
                       const int64_t* as, const int64_t* bs, int64_t r0, int64_t r1);
  void (*softmax_rows)(const float* x, float* o, int64_t n, int64_t r0, int64_t r1);
  void (*reduce_block)(int op, const float* x, double* accd, float* accf, int rank, const int64_t* dims,
                       const uint8_t* red, const int64_t* ostr, int64_t lo, int64_t hi);
  void (*transpose_rows)(const uint32_t* x, uint32_t* o, int rank, const int64_t* odims, const int64_t* ist,
                         int64_t r0, int64_t r1);
  void (*transpose_planes)(const uint32_t* x, uint32_t* o, int64_t R, int64_t C, int64_t p0, int64_t p1);
  void (*transpose_block)(const uint32_t* x, uint32_t* o, int64_t R, int64_t C, int64_t j0, int64_t j1);
  void (*add_bias_rows)(float* o, const float* bias, int64_t n, int64_t nbias, int64_t r0, int64_t r1);
  void (*small_gemm)(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
                     int64_t ldb, float* C, int64_t ldc, float* work);
  void (*copy_box_rows)(const uint32_t* x, uint32_t* o, int rank, const int64_t* dims, const int64_t* xs,
                        const int64_t* os, int64_t r0, int64_t r1);
  // GELU forward (dy null: o = gelu(x)) or backward (o = dy * gelu'(x)) of n elements
  void (*gelu_range)(const float* x, const float* dy, float* o, int64_t n);
  // LayerNorm forward / backward of rows [r0, r1) of [rows, D] (kernels.inc; work: D / 3·D floats)
  void (*layernorm_fwd_rows)(const float* x, const float* g, const float* b, float eps, float* y, float* mean,
                             float* rstd, int64_t D, int64_t parts, int64_t r0, int64_t r1, float* work);
  void (*layernorm_bwd_rows)(const float* dy, const float* x, const float* mean, const float* rstd, const float* g,
                             float* dx, float* dyxh, int64_t D, int64_t parts, int64_t r0, int64_t r1, float* work);
};

// Picks the AVX2+FMA variant when the CPU has it, else the baseline one.
const KernelTable& kernels();
const char* kernels_isa();

}  // namespace moco3
