// A small fork-join thread pool. Work is cut into chunks that the caller and the workers claim from a
// shared counter, so a worker that the OS does not schedule (a busy, shared machine) delays a kernel
// by at most the chunk it holds instead of half the kernel, as a static split would.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MOCO3_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define MOCO3_PAUSE() __asm__ __volatile__("yield")
#else
#define MOCO3_PAUSE() ((void)0)
#endif

// Test hooks (native/test/pool_stress.cc defines them to stall a thread at the points where the OS may
// deschedule it); empty in the addon.
#ifndef MOCO3_POOL_HOOK_PUBLISH
#define MOCO3_POOL_HOOK_PUBLISH() ((void)0)
#endif
#ifndef MOCO3_POOL_HOOK_CLAIM
#define MOCO3_POOL_HOOK_CLAIM(tid) ((void)0)
#endif

namespace moco3 {

class Pool {
 public:
  using Fn = void (*)(void* ctx, int64_t lo, int64_t hi, int tid);

  ~Pool() { resize(1); }
  Pool() = default;
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  int threads() const { return threads_.load(std::memory_order_relaxed); }
  // jobs run in parallel / run alone by the contention guard, since start
  int64_t parallel_jobs() const { return parallel_.load(std::memory_order_relaxed); }
  int64_t guarded_jobs() const { return guarded_.load(std::memory_order_relaxed); }

  // Total threads including the caller (1 = run everything on the caller). Waits for a running job.
  // Where the system gives fewer threads than asked (a limit on processes or on address space), the pool
  // keeps half of those it got, leaving the process room for its own threads and memory; info() reports it.
  void resize(int n) {
    n = std::max(1, std::min(n, 256));
    while (busy_.exchange(true, std::memory_order_acquire)) std::this_thread::yield();
    stop_workers();
    for (;;) {
      threads_ = n;
      try {
        for (int i = 1; i < n; i++) workers_.emplace_back([this, i] { loop(i); });
        break;
      } catch (const std::system_error&) {
        const int got = static_cast<int>(workers_.size()) + 1;
        stop_workers();
        n = std::max(1, got / 2);
      }
    }
    busy_.store(false, std::memory_order_release);
  }

  // Runs fn over [0, n) in `chunks` pieces; returns when all are done. Not reentrant: a nested or
  // concurrent call runs on its own thread.
  void run(int64_t n, int64_t chunks, Fn fn, void* ctx) {
    chunks = std::max<int64_t>(1, std::min<int64_t>(std::min<int64_t>(chunks, n), 0x7fffffff));
    if (threads_.load(std::memory_order_relaxed) <= 1 || chunks <= 1 || n <= 1 || busy_.exchange(true, std::memory_order_acquire)) {
      serial(n, chunks, fn, ctx);
      return;
    }
    if (serial_left_ > 0) {
      // the workers lagged recently (busy machine): run alone for a while, then try again
      serial_left_--;
      guarded_.fetch_add(1, std::memory_order_relaxed);
      serial(n, chunks, fn, ctx);
      busy_.store(false, std::memory_order_release);
      return;
    }
    parallel_.fetch_add(1, std::memory_order_relaxed);
    const auto t0 = std::chrono::steady_clock::now();
    fn_.store(fn, std::memory_order_relaxed);
    ctx_.store(ctx, std::memory_order_relaxed);
    n_.store(n, std::memory_order_relaxed);
    nchunks_.store(chunks, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    MOCO3_POOL_HOOK_PUBLISH();
    // new generation, chunk counter 0 (seq_cst: pairs with the sleeping_ check below)
    const uint64_t gen = (state_.load(std::memory_order_relaxed) >> 32) + 1;
    state_.store(gen << 32);
    if (sleeping_.load() > 0) {
      std::lock_guard<std::mutex> lk(m_);
      cv_.notify_all();
    }
    work(gen, 0);
    const auto t1 = std::chrono::steady_clock::now();
    // wait for chunks other threads hold; yield so a preempted worker on this core can finish
    int spins = 0;
    while (done_.load(std::memory_order_acquire) < chunks) {
      if (++spins < 2000) MOCO3_PAUSE();
      else std::this_thread::yield();
    }
    // Close this generation before the next job's fields are written. Its counter stops at `chunks`, and
    // a worker descheduled between its last chunk and its next look at state_ would otherwise find that
    // counter below the *next* job's chunk count while the generation is still this one: its claim would
    // succeed, and it would run a chunk of the next job twice, add to the next job's done_ (so that job's
    // caller could return while a chunk still ran on its stack frame), or pair the next job's fn_ with
    // this one's ctx_. A counter of all ones is above any chunk count, so such a claim now fails.
    state_.fetch_or(0xffffffffu, std::memory_order_acq_rel);
    // Share of the job spent waiting for other threads after ours ran out. Balanced chunks keep it
    // small; a worker the OS keeps descheduled makes it large, and then one thread is faster.
    const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    if (total > 0) straggle_ = 0.9 * straggle_ + 0.1 * (waited / total);
    if (straggle_ > 0.3) {
      serial_left_ = 200;
      straggle_ = 0;
    }
    busy_.store(false, std::memory_order_release);
  }

 private:
  // The same chunks, in order, on the caller: a chunk's results never depend on which thread ran it or
  // on whether the job ran in parallel, so runs are bit-for-bit repeatable on a busy machine too.
  static void serial(int64_t n, int64_t chunks, Fn fn, void* ctx) {
    for (int64_t c = 0; c < chunks; c++) {
      const int64_t lo = n * c / chunks, hi = n * (c + 1) / chunks;
      if (lo < hi) fn(ctx, lo, hi, 0);
    }
  }

  // stops and joins the workers (the caller holds busy_)
  void stop_workers() {
    if (workers_.empty()) return;
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_.store(true);
      state_.fetch_add(uint64_t(1) << 32);
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
    stop_.store(false);
  }

  // claim and run chunks of generation gen until none is left
  void work(uint64_t gen, int tid) {
    for (;;) {
      uint64_t s = state_.load(std::memory_order_acquire);
      int64_t c;
      for (;;) {
        if ((s >> 32) != gen) return;
        c = static_cast<int64_t>(s & 0xffffffffu);
        MOCO3_POOL_HOOK_CLAIM(tid);
        if (c >= nchunks_.load(std::memory_order_relaxed)) return;
        if (state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel, std::memory_order_acquire)) break;
      }
      // the claimed chunk keeps this generation's job alive until done_ counts it
      const int64_t n = n_.load(std::memory_order_relaxed), nc = nchunks_.load(std::memory_order_relaxed);
      const int64_t lo = n * c / nc, hi = n * (c + 1) / nc;
      if (lo < hi) fn_.load(std::memory_order_relaxed)(ctx_.load(std::memory_order_relaxed), lo, hi, tid);
      done_.fetch_add(1, std::memory_order_acq_rel);
    }
  }

  void loop(int tid) {
    uint64_t seen = state_.load(std::memory_order_acquire) >> 32;
    for (;;) {
      // spin ~50 us (kernels come back to back during a step, a few us of JavaScript apart), then
      // sleep; spinning longer only steals the core from other work when the machine is busy
      uint64_t gen = seen;
      for (int i = 0; i < 2000; i++) {
        gen = state_.load(std::memory_order_acquire) >> 32;
        if (gen != seen) break;
        MOCO3_PAUSE();
      }
      if (gen == seen) {
        std::unique_lock<std::mutex> lk(m_);
        sleeping_.fetch_add(1);
        cv_.wait(lk, [&] { return stop_.load() || (state_.load() >> 32) != seen; });
        sleeping_.fetch_sub(1);
        if (stop_.load()) return;
        gen = state_.load(std::memory_order_acquire) >> 32;
      }
      if (stop_.load()) return;
      seen = gen;
      work(gen, tid);
    }
  }

  std::atomic<int> threads_{1};
  // contention guard, touched only by the thread holding busy_
  double straggle_ = 0;
  int serial_left_ = 0;
  std::atomic<int64_t> parallel_{0};
  std::atomic<int64_t> guarded_{0};
  std::vector<std::thread> workers_;
  std::mutex m_;
  std::condition_variable cv_;
  std::atomic<bool> busy_{false};
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> state_{0};  // generation << 32 | next chunk
  std::atomic<int64_t> done_{0};
  std::atomic<int> sleeping_{0};
  // the current job; written before its generation is published
  std::atomic<Fn> fn_{nullptr};
  std::atomic<void*> ctx_{nullptr};
  std::atomic<int64_t> n_{0};
  std::atomic<int64_t> nchunks_{0};
};

}  // namespace moco3
