#pragma once
// parallel_for: an OpenMP loop over independent work items whose exceptions are not lost.
//
// An exception must not escape an OpenMP region (the program would terminate), so each item runs
// inside try/catch; the exception of the LOWEST failing index is kept and rethrown after the
// region. Items above a known failure are skipped, items below it still run, so the error that
// reaches the caller is the one a serial loop would have thrown first, at any thread count.
// Results are identical at any thread count as long as items write disjoint outputs.
#include <atomic>
#include <cstddef>
#include <exception>
#include <limits>

namespace tq {

template <class Body>
void parallel_for(size_t n, bool parallel, Body&& body) {
  std::atomic<size_t> first_fail{std::numeric_limits<size_t>::max()};
  std::exception_ptr error;
  const auto count = static_cast<long long>(n);
#pragma omp parallel for schedule(static) if (parallel && n > 1)
  for (long long i = 0; i < count; ++i) {
    const auto item = static_cast<size_t>(i);
    if (item > first_fail.load(std::memory_order_relaxed)) continue;
    try {
      body(item);
    } catch (...) {
#pragma omp critical(tq_parallel_for_error)
      {
        if (item < first_fail.load(std::memory_order_relaxed)) {
          first_fail.store(item, std::memory_order_relaxed);
          error = std::current_exception();
        }
      }
    }
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace tq
