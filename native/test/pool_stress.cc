// Stress test of the thread pool (native/src/pool.h), run by test/engine/pool.test.ts: back-to-back jobs
// with varying chunk counts, as the kernels issue them, with threads stalled now and then at the points
// where the OS may deschedule them on a busy machine. Checks that every chunk of every job runs exactly
// once, on that job's context, and never after run() returned. Prints one line of counts; exit 0.
//   g++ -O2 -std=gnu++17 -pthread -I native/src native/test/pool_stress.cc -o pool_stress && ./pool_stress 2
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>

static void busy_us(double us) {
  const auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() < us) {
  }
}

// the caller stalls after writing a job's fields, before publishing its generation (every 8th job);
// a worker stalls after reading the pool's state, before claiming a chunk (every 16th look)
#define MOCO3_POOL_HOOK_PUBLISH()              \
  do {                                         \
    static unsigned k_ = 0;                    \
    if (++k_ % 8 == 0) busy_us(20);            \
  } while (0)
#define MOCO3_POOL_HOOK_CLAIM(tid)             \
  do {                                         \
    static thread_local unsigned k_ = 0;       \
    if ((tid) != 0 && ++k_ % 16 == 0) busy_us(15); \
  } while (0)
#include "pool.h"

namespace {
struct Job {
  std::atomic<int> alive{0};
  std::atomic<int> runs[64];
};
std::atomic<int64_t> late{0}, twice{0}, missing{0}, wrong{0};
std::atomic<Job*> current{nullptr};
Job ring[4096];  // never freed: a late worker may still read a finished job
}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 2;
  moco3::Pool pool;
  pool.resize(2);
  std::mt19937 rng(1);
  const auto t0 = std::chrono::steady_clock::now();
  int64_t jobs = 0;
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < seconds) {
    Job* job = &ring[jobs % 4096];
    for (auto& r : job->runs) r = 0;
    job->alive = 1;
    const int64_t chunks = 2 + rng() % 7;  // 2-8 chunks, one unit each
    current = job;
    pool.run(chunks, chunks, [](void* ctx, int64_t lo, int64_t hi, int) {
      Job* j = static_cast<Job*>(ctx);
      if (!j->alive.load() ) late++;
      if (current.load() != j) wrong++;
      busy_us(0.2 * (lo % 3));
      for (int64_t i = lo; i < hi; i++) j->runs[i]++;
      if (!j->alive.load()) late++;
    }, job);
    for (int64_t i = 0; i < chunks; i++) {
      const int r = job->runs[i].load();
      if (r > 1) twice++;
      if (r == 0) missing++;  // run() returned before this chunk ran
    }
    job->alive = 0;
    // the JavaScript between two kernels: mostly short, sometimes long enough for a worker to sleep
    const unsigned g = rng() % 100;
    busy_us(g < 50 ? rng() % 5 : g < 90 ? 150 + rng() % 100 : 400);
    jobs++;
  }
  std::printf("jobs %lld parallel %lld twice %lld missing %lld late %lld wrong_context %lld\n", (long long)jobs,
              (long long)pool.parallel_jobs(), (long long)twice.load(), (long long)missing.load(), (long long)late.load(),
              (long long)wrong.load());
  std::fflush(stdout);
  std::_Exit(0);
}
