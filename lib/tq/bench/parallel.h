#pragma once
// OpenMP task loop that does not lose exceptions: f(i) runs for every i in [0, n) on the OpenMP
// threads; every task stores its exception (if any) by index, and after the loop the exception
// of the lowest failing index is rethrown on the calling thread. Results must be stored by index
// by f itself, so what the caller merges afterwards does not depend on the thread count.
#include <cstddef>
#include <exception>
#include <vector>

namespace tq::bench {

template <class F>
void parallel_tasks(size_t n, F&& f) {
  if (n == 0) return;
  std::vector<std::exception_ptr> errors(n);
#pragma omp parallel for schedule(dynamic, 1)
  for (long i = 0; i < static_cast<long>(n); ++i) {
    try {
      f(static_cast<size_t>(i));
    } catch (...) {
      errors[static_cast<size_t>(i)] = std::current_exception();
    }
  }
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace tq::bench
